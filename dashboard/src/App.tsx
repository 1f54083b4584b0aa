// Routes and the sign-in guard: without a session every page shows sign-in (under
// /signin?next=…), and a session that ends (sign-out, or a 401 from any call) lands
// there too.
import { useEffect, useSyncExternalStore } from "react";
import { api } from "./api/client";
import * as session from "./api/session";
import { Layout } from "./components/Layout";
import { Page } from "./components/Page";
import { CreateStore } from "./pages/CreateStore";
import { SignIn } from "./pages/SignIn";
import { StoreDetail } from "./pages/StoreDetail";
import { StoreList } from "./pages/StoreList";
import { Link, match, navigate, useLocation } from "./lib/router";

/** Where to go after signing in: `next` only if it is a path of this app (never another
 * origin: the URL parser reads `/\evil.example` as `//evil.example`), else the list. */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith("/") || next.startsWith("//")) return "/";
  let url: URL;
  try {
    url = new URL(next, location.origin);
  } catch {
    return "/";
  }
  return url.origin === location.origin && url.pathname !== "/signin" ? next : "/";
}

function NotFound() {
  return (
    <Page title="Page not found">
      <p>There is no such page.</p>
      <p>
        <Link href="/">Back to your stores</Link>
      </p>
    </Page>
  );
}

function Routes({ path }: { path: string }) {
  if (match("/", path)) return <StoreList />;
  if (match("/stores/new", path)) return <CreateStore />;
  const detail = match("/stores/:id", path);
  if (detail?.id) return <StoreDetail key={detail.id} id={detail.id} />;
  return <NotFound />;
}

export function App() {
  const { session: current, ended } = useSyncExternalStore(session.subscribe, session.snapshot);
  const { path, search } = useLocation();
  const signedIn = current !== null;

  useEffect(() => {
    if (!signedIn && path !== "/signin") {
      const next = path === "/" ? "" : `?next=${encodeURIComponent(path + (location.search || ""))}`;
      navigate(`/signin${next}`, { replace: true });
    } else if (signedIn && path === "/signin") {
      navigate(safeNext(search.get("next")), { replace: true });
    }
  }, [signedIn, path, search]);

  // Refresh the account (role, store count) once per session; a stale token gets a 401
  // here, which ends the session.
  const token = current?.token;
  useEffect(() => {
    if (!token) return;
    const c = new AbortController();
    api
      .GET("/api/me", { signal: c.signal })
      .then(({ data }) => data && session.updateUser(data))
      .catch(() => undefined);
    return () => c.abort();
  }, [token]);

  if (!signedIn || path === "/signin") {
    return (
      <Layout user={null}>
        <SignIn key={ended ?? "none"} reason={signedIn ? null : ended} />
      </Layout>
    );
  }
  return (
    <Layout user={current.user}>
      <Routes path={path} />
    </Layout>
  );
}
