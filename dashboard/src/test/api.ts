// Answers for the server in component tests: JSON and problem+json responses, a store as
// the API returns it, and an event stream the test writes to.
import type { Session, Store } from "../api/types";

export function json(status: number, body: unknown, type = "application/json"): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": type } });
}

export function problem(status: number, detail = `problem ${status}`): Response {
  return json(status, { type: "about:blank", title: `HTTP ${status}`, status, detail, errors: [] }, "application/problem+json");
}

/** A 429 refusal that asks to wait `seconds` (`Retry-After`). */
export function tooMany(seconds: number): Response {
  const r = problem(429, "too many requests");
  r.headers.set("Retry-After", String(seconds));
  return r;
}

export function aStore(over: Partial<Store> = {}): Store {
  const at = "2024-05-01T10:00:00Z";
  return {
    id: "0190a4c2-0000-7000-8000-000000000001",
    name: "shop",
    engine: "woocommerce",
    blueprint_version: "1.0.0",
    status: "ready",
    namespace: "store-shop",
    urls: [{ name: "storefront", url: "http://shop.example.test/" }],
    error_message: null,
    params: {},
    progress: { type: "store_ready", message: "the store is ready", at },
    created_at: at,
    updated_at: at,
    ...over,
  };
}

/** A `login` answer for `token`, valid for `ms` from now. */
export function aSession(token: string, ms = 3_600_000): Session {
  return {
    token,
    expires_at: new Date(Date.now() + ms).toISOString(),
    user: { id: "0190a4c2-0000-7000-8000-0000000000aa", email: "alice@example.test", role: "member", store_limit: 5, store_count: 0 },
  };
}

/** An open `text/event-stream` answer; `send` writes one message, `end` closes it as a
 * server would, and aborting the request ends it. */
export function eventStream(signal: AbortSignal): {
  response: Response;
  send: (event: string, data: unknown) => void;
  end: () => void;
} {
  let out!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      out = c;
    },
  });
  signal.addEventListener("abort", () => out.error(new DOMException("aborted", "AbortError")), { once: true });
  const enc = new TextEncoder();
  return {
    response: new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } }),
    send: (event, data) => out.enqueue(enc.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)),
    end: () => out.close(),
  };
}
