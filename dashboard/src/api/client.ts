// The typed API client: openapi-fetch over the paths generated from openapi/openapi.json
// (`npm run gen`). Same origin as the page, so URLs are relative. A middleware adds the
// bearer token; a 401 to the current token on any call but `login` ends the session,
// which sends the person back to sign-in.
import createClient, { type Middleware } from "openapi-fetch";
import type { paths } from "./schema";
import { ApiProblem, networkProblem, toProblem } from "./problem";
import * as session from "./session";

const auth: Middleware = {
  onRequest({ request }) {
    const t = session.token();
    if (t && !request.headers.has("Authorization")) request.headers.set("Authorization", `Bearer ${t}`);
    return request;
  },
  onResponse({ request, response }) {
    // Only a refusal of the current token ends the session: a late answer to a request
    // made with an earlier one (before signing in again, or as another account) does not.
    const t = session.token();
    if (
      response.status === 401 &&
      t &&
      request.headers.get("Authorization") === `Bearer ${t}` &&
      !new URL(request.url).pathname.endsWith("/api/auth/login")
    ) {
      session.end("expired");
    }
    return response;
  },
};

export const api = createClient<paths>({
  baseUrl: globalThis.location?.origin ?? "http://localhost",
  // Looked up at each call, not captured once, so tests can answer for the server.
  fetch: (request) => globalThis.fetch(request),
});
api.use(auth);

interface Result<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** The operation's data, or an ApiProblem (HTTP errors and network failures alike). */
export async function unwrap<T>(call: Promise<Result<T>>): Promise<T> {
  let result: Result<T>;
  try {
    result = await call;
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw networkProblem(e);
  }
  if (result.error !== undefined || !result.response.ok) throw toProblem(result.error, result.response);
  // openapi-fetch types `data` as possibly undefined; it is set on every 2xx with a body
  // (and undefined only for 204 answers, whose T is `never`/unused).
  return result.data as T;
}

export { ApiProblem };
