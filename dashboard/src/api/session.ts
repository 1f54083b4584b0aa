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
  expiresAt: string;
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
    if (Date.parse(parsed.expiresAt) <= Date.now()) return null;
    return parsed as SignedIn;
  } catch {
    return null;
  }
}

/** Ends the session as expired when its token does, rather than at the next request,
 * so a page left open goes to sign-in instead of showing data it can no longer refresh. */
function watchExpiry(): void {
  clearTimeout(expiry);
  expiry = undefined;
  const s = state.session;
  if (!s) return;
  const ms = Date.parse(s.expiresAt) - Date.now();
  if (Number.isNaN(ms)) return;
  expiry = setTimeout(() => {
    if (Date.parse(s.expiresAt) <= Date.now()) end("expired");
    else watchExpiry(); // the delay was capped
  }, Math.min(Math.max(ms, 0), MAX_DELAY));
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
  set({ session: { token: s.token, expiresAt: s.expires_at, user: s.user }, ended: null });
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
