// A tiny router on the History API: the current location as an external store
// (useSyncExternalStore), `navigate`, a `Link` that keeps ordinary clicks in the app, and
// `match` for the few routes the dashboard has. The server answers every non-API path
// with index.html, so deep links and reloads work.
import { useSyncExternalStore, type AnchorHTMLAttributes, type MouseEvent } from "react";

export interface Location {
  path: string;
  search: URLSearchParams;
  /** A one-off message carried to the next page (e.g. "Deleting shop…"), shown once: not
   * again after a reload or Back/Forward to the same entry. */
  notice: string | null;
}

const listeners = new Set<() => void>();
let current = read();

function read(): Location {
  const state = (globalThis.history?.state ?? null) as { notice?: unknown } | null;
  const notice = typeof state?.notice === "string" ? state.notice : null;
  if (notice !== null) {
    // Read once: drop it from the history entry (same URL), so it is not shown again.
    const { notice: _shown, ...rest } = state ?? {};
    history.replaceState(Object.keys(rest).length ? rest : null, "", location.href);
  }
  return {
    path: globalThis.location?.pathname ?? "/",
    search: new URLSearchParams(globalThis.location?.search ?? ""),
    notice,
  };
}

function changed(): void {
  current = read();
  for (const l of listeners) l();
}

globalThis.addEventListener?.("popstate", changed);

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function useLocation(): Location {
  return useSyncExternalStore(subscribe, () => current);
}

export function navigate(to: string, opts: { replace?: boolean; notice?: string } = {}): void {
  const state = opts.notice ? { notice: opts.notice } : null;
  if (opts.replace) history.replaceState(state, "", to);
  else history.pushState(state, "", to);
  changed();
}

/** `pattern` like `/stores/:id`; the parameters, or null when the path does not match. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split("/");
  const have = path.replace(/\/+$/, "").split("/");
  if (path === "/" && pattern === "/") return {};
  if (want.length !== have.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i] ?? "";
    const h = have[i] ?? "";
    if (w.startsWith(":")) {
      if (!h) return null;
      try {
        params[w.slice(1)] = decodeURIComponent(h);
      } catch {
        return null; // a malformed escape (`/stores/%E0`) matches nothing: "Page not found"
      }
    } else if (w !== h) return null;
  }
  return params;
}

type LinkProps = AnchorHTMLAttributes<HTMLAnchorElement> & { href: string };

/** An in-app link: a plain click navigates without reloading; modified clicks work as usual. */
export function Link({ href, onClick, ...rest }: LinkProps) {
  function click(e: MouseEvent<HTMLAnchorElement>) {
    onClick?.(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  }
  return <a href={href} onClick={click} {...rest} />;
}
