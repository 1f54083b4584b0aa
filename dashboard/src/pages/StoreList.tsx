// The signed-in account's stores: name, engine, status (with the current phase while
// provisioning, the reason when failed), URLs and age. Refreshes every five seconds while
// any store is provisioning or deleting; after a 429 (too many requests) waits its
// `Retry-After` before asking again, and says so. Explains what to do when there are none.
import { useCallback, useEffect, useRef, useState } from "react";
import { api, unwrap } from "../api/client";
import { describe, rateLimitWait, tooManyRequests } from "../api/problem";
import type { Store, StoreList as StorePage } from "../api/types";
import { ErrorNotice, InfoNotice } from "../components/Notice";
import { Page } from "../components/Page";
import { StatusBadge, isBusy } from "../components/StatusBadge";
import { engineName } from "../lib/labels";
import { Link, useLocation } from "../lib/router";
import { ago, exact, useNow } from "../lib/time";

const REFRESH_MS = 5000;
const PAGE = 20;

function Urls({ store }: { store: Store }) {
  if (store.urls.length === 0) return <span className="muted">{store.status === "provisioning" ? "not yet" : "none"}</span>;
  return (
    <ul className="urls">
      {store.urls.map((u) => (
        <li key={u.name}>
          <a href={u.url} target="_blank" rel="noopener noreferrer">
            {u.name}
            <span className="visually-hidden"> of {store.name} (opens in a new tab)</span>
          </a>
        </li>
      ))}
    </ul>
  );
}

function StatusCell({ store }: { store: Store }) {
  return (
    <>
      <StatusBadge status={store.status} />
      {isBusy(store.status) ? (
        <span className="phase" title={store.progress.message}>
          {store.progress.message}
        </span>
      ) : null}
      {store.status === "failed" && store.error_message ? (
        <span className="phase phase-failed" title={store.error_message}>
          {store.error_message}
        </span>
      ) : null}
    </>
  );
}

function summary(stores: Store[]): string {
  const busy = stores.filter((s) => s.status === "provisioning").length;
  const failed = stores.filter((s) => s.status === "failed").length;
  const parts = [`${stores.length} ${stores.length === 1 ? "store" : "stores"}`];
  if (busy) parts.push(`${busy} provisioning`);
  if (failed) parts.push(`${failed} failed`);
  return parts.join(" · ");
}

function Empty() {
  return (
    <section className="empty" aria-labelledby="empty-title">
      <h2 id="empty-title">You have no stores yet</h2>
      <p>
        A store is an isolated WooCommerce or Medusa shop with a Kubernetes namespace of its own. Choose an engine, give
        the store a name, and Storeplane provisions it; this page shows its progress and its address when it is ready.
      </p>
      <Link href="/stores/new" className="button button-primary">
        Create your first store
      </Link>
    </section>
  );
}

export function StoreList() {
  const { notice } = useLocation();
  const now = useNow();
  const [stores, setStores] = useState<Store[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loadingMore, setLoadingMore] = useState(false);
  // Set while a 429 is waited out: the list asks again then even if nothing is busy.
  const [limited, setLimited] = useState(false);
  // How long until the next refresh: 5 s, or a 429's `Retry-After`.
  const wait = useRef(REFRESH_MS);
  const shown = useRef(PAGE);
  // Numbers the list's versions: a refresh applies its answer only if nothing newer (a
  // later refresh, or "Show more") started or finished while it was in flight.
  const version = useRef(0);
  // A store whose row gets focus once rendered (after "Show more" loaded the last page).
  const focusAfterMore = useRef<string | null>(null);
  useEffect(() => {
    const id = focusAfterMore.current;
    if (!id || !stores?.some((s) => s.id === id)) return;
    focusAfterMore.current = null;
    const row = [...document.querySelectorAll<HTMLElement>("tr[data-store-id]")].find((tr) => tr.dataset.storeId === id);
    row?.querySelector<HTMLAnchorElement>("a")?.focus();
  }, [stores]);

  const load = useCallback(async (signal?: AbortSignal) => {
    const mine = ++version.current;
    try {
      // As many stores as are shown; the API answers at most 100 per request, so after
      // enough "Show more" a refresh follows the cursor.
      const want = shown.current;
      const items: Store[] = [];
      let cursor: string | null = null;
      do {
        const page: StorePage = await unwrap(
          api.GET("/api/stores", {
            params: { query: { limit: Math.min(100, want - items.length), ...(cursor ? { cursor } : {}) } },
            signal,
          }),
        );
        items.push(...page.items);
        cursor = page.next_cursor ?? null;
      } while (cursor && items.length < want);
      wait.current = REFRESH_MS;
      setLimited(false);
      if (mine !== version.current) return;
      setStores(items);
      setNext(cursor);
      setError(null);
    } catch (e) {
      if (signal?.aborted) return;
      const limitedMs = rateLimitWait(e, REFRESH_MS);
      wait.current = limitedMs ?? REFRESH_MS;
      setLimited(limitedMs !== null);
      if (mine !== version.current) return;
      setError(limitedMs !== null ? tooManyRequests(limitedMs) : describe(e));
    }
  }, []);

  useEffect(() => {
    const c = new AbortController();
    void load(c.signal);
    return () => c.abort();
  }, [load]);

  const busy = stores?.some((s) => isBusy(s.status)) ?? false;
  // The first load failed (the server restarting, its database away): ask again.
  const unloaded = stores === null && error !== null;
  useEffect(() => {
    if (!busy && !limited && !unloaded) return;
    const c = new AbortController();
    let t: ReturnType<typeof setTimeout>;
    const tick = () => {
      void load(c.signal).then(() => {
        if (!c.signal.aborted) t = setTimeout(tick, wait.current);
      });
    };
    t = setTimeout(tick, wait.current);
    return () => {
      clearTimeout(t);
      c.abort();
    };
  }, [busy, limited, unloaded, load]);

  async function more() {
    if (!next) return;
    setLoadingMore(true);
    version.current++; // a refresh in flight asked for fewer stores than this will show
    try {
      const page = await unwrap(api.GET("/api/stores", { params: { query: { limit: PAGE, cursor: next } } }));
      version.current++; // and so did one that started meanwhile
      setStores((s) => [...(s ?? []), ...page.items]);
      shown.current += page.items.length;
      setNext(page.next_cursor ?? null);
      setError(null); // a failed "Show more" before this one
      // The last page removes the focused button: keyboard users continue at the first
      // row it added instead of at the top of the document.
      if (!page.next_cursor && page.items[0]) focusAfterMore.current = page.items[0].id;
    } catch (e) {
      setError(describe(e));
    } finally {
      setLoadingMore(false);
    }
  }

  return (
    <Page
      title="Stores"
      actions={
        <Link href="/stores/new" className="button button-primary">
          New store
        </Link>
      }
    >
      {notice ? <InfoNotice>{notice}</InfoNotice> : null}
      {error ? <ErrorNotice title="Could not load your stores">{error}</ErrorNotice> : null}
      {stores === null && !error ? <p className="muted" role="status">Loading your stores…</p> : null}
      {stores !== null && stores.length === 0 ? <Empty /> : null}
      {stores !== null && stores.length > 0 ? (
        <>
          <p className="muted" aria-live="polite">
            {summary(stores)}
            {busy ? " · refreshing every 5 s" : ""}
          </p>
          <table className="stores" role="table">
            <caption className="visually-hidden">Your stores</caption>
            <thead>
              <tr role="row">
                <th scope="col" role="columnheader">Name</th>
                <th scope="col" role="columnheader">Engine</th>
                <th scope="col" role="columnheader">Status</th>
                <th scope="col" role="columnheader">URLs</th>
                <th scope="col" role="columnheader">Age</th>
              </tr>
            </thead>
            <tbody>
              {stores.map((s) => (
                <tr key={s.id} role="row" data-store={s.name} data-store-id={s.id}>
                  <th scope="row" role="rowheader" data-label="Name">
                    <Link href={`/stores/${s.id}`}>{s.name}</Link>
                  </th>
                  <td role="cell" data-label="Engine">{engineName(s.engine)}</td>
                  <td role="cell" data-label="Status">
                    <StatusCell store={s} />
                  </td>
                  <td role="cell" data-label="URLs">
                    <Urls store={s} />
                  </td>
                  <td role="cell" data-label="Age">
                    <time dateTime={s.created_at} title={exact(s.created_at)}>
                      {ago(s.created_at, now)}
                    </time>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {next ? (
            <div className="actions">
              <button type="button" className="button" onClick={() => void more()} disabled={loadingMore}>
                {loadingMore ? "Loading…" : "Show more stores"}
              </button>
            </div>
          ) : null}
        </>
      ) : null}
    </Page>
  );
}
