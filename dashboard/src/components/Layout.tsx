// The frame around signed-in pages: a skip link, the header with navigation, the account
// and sign-out, and the main landmark.
import type { ReactNode } from "react";
import { api } from "../api/client";
import * as session from "../api/session";
import type { Me } from "../api/types";
import { Link, navigate, useLocation } from "../lib/router";

/** How long the revocation may take before the page stops waiting for it. */
const LOGOUT_TIMEOUT_MS = 5000;

/** Signs out at once: the token is forgotten here first, then revoked on the server in
 * the background (within a bound), so a server that does not answer cannot keep the
 * person signed in. Offline, the token expires on its own. */
export function signOut(): void {
  const t = session.token();
  session.end("signed-out");
  navigate("/signin", { replace: true });
  if (!t) return;
  void api
    .POST("/api/auth/logout", {
      headers: { Authorization: `Bearer ${t}` },
      signal: AbortSignal.timeout(LOGOUT_TIMEOUT_MS),
    })
    .catch(() => undefined);
}

function NavLink({ href, children }: { href: string; children: ReactNode }) {
  const { path } = useLocation();
  return (
    <Link href={href} aria-current={path === href ? "page" : undefined}>
      {children}
    </Link>
  );
}

export function Layout({ user, children }: { user: Me | null; children: ReactNode }) {
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link href="/" className="brand">
          Storeplane
        </Link>
        {user ? (
          <>
            <nav aria-label="Main">
              <NavLink href="/">Stores</NavLink>
              <NavLink href="/stores/new">New store</NavLink>
            </nav>
            <div className="account">
              <span className="account-email" title={user.role === "admin" ? "Administrator" : undefined}>
                {user.email}
                {user.role === "admin" ? " (admin)" : ""}
              </span>
              <button type="button" className="button button-quiet" onClick={signOut}>
                Sign out
              </button>
            </div>
          </>
        ) : null}
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </>
  );
}
