// Errors from the API (RFC 9457 problem+json) and from the network, as one type the
// pages can show: a status, the problem's detail and its per-field errors.
import type { FieldError, Problem } from "./types";

export class ApiProblem extends Error {
  readonly status: number;
  readonly problem: Problem;
  /** The answer's `Retry-After`, in seconds, when it had one (429 and 503 answers do). */
  retryAfter: number | null = null;

  constructor(status: number, problem: Problem) {
    super(problem.detail || problem.title);
    this.name = "ApiProblem";
    this.status = status;
    this.problem = problem;
  }

  get errors(): FieldError[] {
    return this.problem.errors ?? [];
  }

  /** The last segment of the problem type URI, e.g. `duplicate-name`. */
  get slug(): string {
    return this.problem.type.split("/").pop() ?? "";
  }
}

function isProblem(v: unknown): v is Problem {
  return (
    typeof v === "object" &&
    v !== null &&
    typeof (v as Problem).title === "string" &&
    typeof (v as Problem).status === "number"
  );
}

/** `Retry-After` as seconds: a number of seconds, or an HTTP date. */
function retryAfterOf(response: Response | undefined): number | null {
  const v = response?.headers.get("Retry-After")?.trim();
  if (!v) return null;
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** Turns whatever an operation failed with into an ApiProblem. */
export function toProblem(error: unknown, response: Response | undefined): ApiProblem {
  const p = problemOf(error, response);
  p.retryAfter = retryAfterOf(response);
  return p;
}

function problemOf(error: unknown, response: Response | undefined): ApiProblem {
  const status = response?.status ?? 0;
  if (isProblem(error)) return new ApiProblem(status || error.status, error);
  const text = typeof error === "string" && error.trim() ? error.trim() : response?.statusText || "no details";
  return new ApiProblem(status, {
    type: "about:blank",
    title: status ? `HTTP ${status}` : "Network error",
    status,
    detail: status
      ? `the server answered ${status}: ${text}`
      : "cannot reach the Storeplane server; check your connection and try again",
    errors: [],
  });
}

/** A failure that is not an HTTP answer at all (offline, server down). */
export function networkProblem(cause: unknown): ApiProblem {
  const p = toProblem(undefined, undefined);
  if (cause instanceof Error) p.cause = cause;
  return p;
}

/** After a 429, how long to wait before asking again: its `Retry-After`, but never less
 * than the `usual` wait; null for any other error. */
export function rateLimitWait(err: unknown, usual: number): number | null {
  if (!(err instanceof ApiProblem) || err.status !== 429) return null;
  return Math.max(usual, (err.retryAfter ?? 0) * 1000);
}

/** What a page that asks again by itself says while it waits out a 429. */
export function tooManyRequests(waitMs: number): string {
  return `Too many requests; trying again in ${Math.ceil(waitMs / 1000)} s`;
}

/** What to show a person for an error of any kind. */
export function describe(err: unknown): string {
  if (err instanceof ApiProblem) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
