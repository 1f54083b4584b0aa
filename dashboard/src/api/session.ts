// The signed-in session: the bearer token from `login` and the account it belongs to.
//
// Kept in sessionStorage: it survives a reload of the tab and is forgotten when the tab
// closes; other tabs sign in on their own. Any script running on this origin could read
// it (that is the trade-off against an HttpOnly cookie, which the bearer-only API does
// not offer); the server's Content-Security-Policy (`script-src 'self'`) is what keeps
// foreign scripts out. The token is never put in a URL.
import { clearDraft, readDraft } from "../lib/draft";
import type { Me, Session } from "./types";

const KEY = "storeplane.session";

export interface SignedIn {
  token: string;
  /** When the token stops working, by the server's clock (`Session.expires_at`). */
  expiresAt: string;
  /** The same moment by this browser's clock (epoch ms), the one the session ends at; null
   * when this browser's clock cannot be trusted for it (see `localDeadline`): the API's
   * 401 then ends the session. */
  localExpiresAt: number | null;
  user: Me;
}

/** Why the last session ended, for the sign-in page to say. */
export type EndReason = "signed-out" | "expired" | null;

interface State {
  session: SignedIn | null;
  ended: EndReason;
}

// The longest delay setTimeout keeps (about 24.8 days); a longer one fires at once.
const MAX_DELAY = 2 ** 31 - 1;

// Less time left than this by the browser's clock, on a token just issued, means that
// clock is wrong, not that the token is about to expire.
const MIN_LIFETIME = 60_000;

const listeners = new Set<() => void>();
let expiry: ReturnType<typeof setTimeout> | undefined;
let state: State = { session: read(), ended: null };
watchExpiry();

function read(): SignedIn | null {
  try {
    const raw = globalThis.sessionStorage?.getItem(KEY);
    if (!raw) return null;
    const parsed = JSON.parse(raw) as Partial<SignedIn>;
    if (typeof parsed.token !== "string" || typeof parsed.expiresAt !== "string" || !parsed.user) return null;
    let local = parsed.localExpiresAt;
    // A session saved before `localExpiresAt` existed: its deadline is the server's time,
    // as it was then.
    if (local === undefined) local = Date.parse(parsed.expiresAt);
    if (local !== null && !(typeof local === "number" && Number.isFinite(local))) return null;
    if (local !== null && local <= Date.now()) return null;
    return { token: parsed.token, expiresAt: parsed.expiresAt, localExpiresAt: local, user: parsed.user };
  } catch {
    return null;
  }
}

/** The browser-clock moment a token just issued stops working, or null when the browser's
 * clock disagrees with the server's. `expires_at` is the server's time; the login answer
 * carries no time of issue to measure it from, so it is read on this browser's clock,
 * which is right when the two clocks agree. A clock ahead of the server's by more than
 * the token's lifetime (12 h by default) would see a new token as expired and sign the
 * person out at once after every sign-in: when the time left looks impossible for a
 * token just issued (past, or under a minute), there is no local deadline and the
 * API's 401 says when the token ended. */
function localDeadline(expiresAt: string): number | null {
  const now = Date.now();
  const left = Date.parse(expiresAt) - now;
  return Number.isFinite(left) && left >= MIN_LIFETIME ? now + left : null;
}

/** Ends the session as expired when its token does, rather than at the next request,
 * so a page left open goes to sign-in instead of showing data it can no longer refresh. */
function watchExpiry(): void {
  clearTimeout(expiry);
  expiry = undefined;
  const s = state.session;
  const deadline = s?.localExpiresAt ?? null;
  if (deadline === null) return;
  expiry = setTimeout(
    () => {
      if (deadline <= Date.now()) end("expired");
      else watchExpiry(); // the delay was capped
    },
    Math.min(Math.max(deadline - Date.now(), 0), MAX_DELAY),
  );
}

function set(next: State): void {
  state = next;
  watchExpiry();
  try {
    if (next.session) sessionStorage.setItem(KEY, JSON.stringify(next.session));
    else sessionStorage.removeItem(KEY);
  } catch {
    // Storage may be unavailable (private mode quotas); the session then lasts until reload.
  }
  for (const l of listeners) l();
}

export function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function snapshot(): State {
  return state;
}

export function token(): string | null {
  return state.session?.token ?? null;
}

export function signedIn(s: Session): void {
  // A draft another account left when its session expired is not this one's to see.
  if (readDraft()?.owner !== s.user.id) clearDraft();
  const session = { token: s.token, expiresAt: s.expires_at, localExpiresAt: localDeadline(s.expires_at), user: s.user };
  set({ session, ended: null });
}

/** The account changed (e.g. `getMe` after a reload): keep the token, refresh the user. */
export function updateUser(user: Me): void {
  if (state.session) set({ ...state, session: { ...state.session, user } });
}

/** Ends the session. Signing out also forgets the new-store draft (lib/draft.ts); an
 * expired session keeps it, for after signing in again. */
export function end(reason: Exclude<EndReason, null>): void {
  if (reason === "signed-out") clearDraft();
  if (state.session || state.ended !== reason) set({ session: null, ended: reason });
}
