// One store: status with the current phase while it provisions, the failure reason and
// a Retry button when it failed, its URLs when ready, and its event log, all kept live by
// the event stream (or a 5-second refresh when the stream is unavailable). Deleting asks
// for confirmation first.
import { useEffect, useRef, useState } from "react";
import { api, unwrap } from "../api/client";
import { describe, tooManyRequests } from "../api/problem";
import type { Store, StoreEvent } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { ErrorNotice, InfoNotice } from "../components/Notice";
import { Page } from "../components/Page";
import { StatusBadge } from "../components/StatusBadge";
import { engineName, eventLabel, isFailureEvent } from "../lib/labels";
import { Link, navigate, useLocation } from "../lib/router";
import { useStoreFeed, type FeedMode } from "../lib/storeFeed";
import { ago, clock, exact, useNow } from "../lib/time";

const MODE_TEXT: Record<FeedMode, string> = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  polling: "Refreshing every 5 s (the live stream is unavailable)",
  ended: "Not updating",
};

function Progress({ store, onRetry, retrying }: { store: Store; onRetry: () => void; retrying: boolean }) {
  switch (store.status) {
    case "provisioning":
      return (
        <p className="progress">
          <span className="spinner" aria-hidden="true" />
          <span>
            <strong>Provisioning</strong> — {eventLabel(store.progress.type)}: {store.progress.message}
          </span>
        </p>
      );
    case "ready":
      return (
        <div className="progress progress-ready">
          <p>
            <strong>Ready.</strong> The store is served at:
          </p>
          <ul className="urls urls-big">
            {store.urls.map((u) => (
              <li key={u.name}>
                <span className="url-name">{u.name}</span>{" "}
                <a href={u.url} target="_blank" rel="noopener noreferrer">
                  {u.url}
                  <span className="visually-hidden"> (opens in a new tab)</span>
                </a>
              </li>
            ))}
          </ul>
        </div>
      );
    case "failed":
      return (
        <div className="notice notice-error failure">
          <p className="notice-title">Provisioning failed</p>
          <p className="failure-reason">{store.error_message ?? store.progress.message}</p>
          <button type="button" className="button button-primary" onClick={onRetry} disabled={retrying}>
            {retrying ? "Retrying…" : "Retry"}
          </button>
        </div>
      );
    case "deleting":
      return (
        <p className="progress">
          <span className="spinner" aria-hidden="true" />
          <span>
            <strong>Deleting</strong> — {store.progress.message}
          </span>
        </p>
      );
  }
}

function Timeline({ events, now }: { events: StoreEvent[]; now: number }) {
  if (events.length === 0) return <p className="muted">No events yet.</p>;
  return (
    <ol className="timeline">
      {events.map((e) => (
        <li key={e.id} className={isFailureEvent(e.type) ? "event event-failed" : "event"} data-type={e.type}>
          <time dateTime={e.created_at} title={`${exact(e.created_at)} (${ago(e.created_at, now)})`}>
            {clock(e.created_at)}
          </time>
          <span className="event-type">{eventLabel(e.type)}</span>
          <span className="event-message">{e.message}</span>
        </li>
      ))}
    </ol>
  );
}

function Facts({ store, now }: { store: Store; now: number }) {
  const params = Object.keys(store.params).length ? JSON.stringify(store.params, null, 2) : null;
  return (
    <dl className="facts">
      <dt>Engine</dt>
      <dd>
        {engineName(store.engine)} (blueprint {store.blueprint_version})
      </dd>
      <dt>Namespace</dt>
      <dd>
        <code>{store.namespace}</code>
      </dd>
      <dt>Created</dt>
      <dd>
        <time dateTime={store.created_at} title={exact(store.created_at)}>
          {ago(store.created_at, now)}
        </time>
      </dd>
      <dt>Parameters</dt>
      <dd>{params ? <pre>{params}</pre> : "the blueprint's defaults"}</dd>
    </dl>
  );
}

export function StoreDetail({ id }: { id: string }) {
  const { notice } = useLocation();
  const now = useNow(5000);
  const [state, feed] = useStoreFeed(id);
  const [confirming, setConfirming] = useState(false);
  const [acting, setActing] = useState(false);
  const [actionError, setActionError] = useState<string | null>(null);
  const status = useRef<HTMLDivElement>(null);
  const { store, events, mode, gone, error, limitedMs } = state;
  const failure = error ? (limitedMs !== null ? tooManyRequests(limitedMs) : describe(error)) : "";
  // Gone after it was shown: deleted when the stream said so, or when it was being
  // deleted (its row goes once its namespace is gone); otherwise this account may no
  // longer see it (a role taken away) — not "deleted", which would be a guess.
  const deleted = gone && (error === null || store?.status === "deleting");

  // Deleted while its confirmation was open: the dialog closes (`open` below), and focus,
  // which would return to the Delete button that is now gone too, moves to the status.
  const deletedWhileConfirming = confirming && gone;
  useEffect(() => {
    if (deletedWhileConfirming) status.current?.focus();
  }, [deletedWhileConfirming]);

  async function retry() {
    setActing(true);
    setActionError(null);
    try {
      feed.setStore(await unwrap(api.POST("/api/stores/{id}/retry", { params: { path: { id } } })));
      // The Retry button goes away with the failure: keep focus on the news, not <body>.
      status.current?.focus();
    } catch (e) {
      setActionError(describe(e));
    } finally {
      setActing(false);
    }
  }

  async function remove() {
    if (!store) return;
    setActing(true);
    setActionError(null);
    try {
      await unwrap(api.DELETE("/api/stores/{id}", { params: { path: { id } } }));
      setConfirming(false);
      navigate("/", {
        notice: `Deleting “${store.name}”: it disappears from this list once its namespace is gone.`,
      });
    } catch (e) {
      setConfirming(false);
      setActionError(describe(e));
    } finally {
      setActing(false);
    }
  }

  if (gone && !store) {
    return (
      <Page title="Store not found">
        <p>This store does not exist, or it belongs to another account.</p>
        <p>
          <Link href="/">Back to your stores</Link>
        </p>
      </Page>
    );
  }
  if (!store) {
    return (
      <Page title="Store">
        {error ? (
          <ErrorNotice title="Could not load the store">
            {limitedMs !== null ? failure : `${failure} Trying again…`}
          </ErrorNotice>
        ) : (
          <p className="muted" role="status">
            Loading the store…
          </p>
        )}
      </Page>
    );
  }

  return (
    <Page
      title={store.name}
      heading={
        <>
          {store.name} <StatusBadge status={store.status} />
        </>
      }
      actions={
        gone ? null : (
          <button
            type="button"
            className="button button-danger"
            onClick={() => setConfirming(true)}
            disabled={store.status === "deleting" || acting}
          >
            Delete store
          </button>
        )
      }
    >
      {/* The only notice this page is opened with says provisioning has started: stale
          once the store is ready or failed. */}
      {notice && store.status === "provisioning" && !gone ? <InfoNotice>{notice}</InfoNotice> : null}
      {actionError ? <ErrorNotice title="That did not work">{actionError}</ErrorNotice> : null}
      {gone ? (
        <InfoNotice>
          {deleted
            ? "This store has been deleted. "
            : "This store is no longer available to your account: it was deleted, or your access to it ended. "}
          <Link href="/">Back to your stores</Link>
        </InfoNotice>
      ) : null}
      <section aria-labelledby="status-title" className="card">
        <h2 id="status-title">Status</h2>
        <div ref={status} tabIndex={-1} aria-live="polite" aria-atomic="true" className="status-live">
          {gone ? <p>{deleted ? "Deleted." : "No longer available."}</p> : <Progress store={store} onRetry={() => void retry()} retrying={acting} />}
        </div>
        <p className="muted feed-mode" data-mode={mode}>
          <span className={`dot dot-${mode}`} aria-hidden="true" /> {MODE_TEXT[mode]}
          {error && mode !== "live" && !gone ? ` — ${failure}` : ""}
        </p>
      </section>
      <section aria-labelledby="events-title" className="card">
        <h2 id="events-title">Events</h2>
        <Timeline events={events} now={now} />
      </section>
      <section aria-labelledby="facts-title" className="card">
        <h2 id="facts-title">Details</h2>
        <Facts store={store} now={now} />
      </section>
      <ConfirmDialog
        open={confirming && !gone}
        title={`Delete “${store.name}”?`}
        confirmLabel="Delete store"
        busy={acting}
        onConfirm={() => void remove()}
        onCancel={() => setConfirming(false)}
      >
        <p>
          Its namespace <code>{store.namespace}</code> and everything in it — database, uploads, orders — are deleted.
          This cannot be undone.
        </p>
      </ConfirmDialog>
    </Page>
  );
}
