// One store kept up to date: its DTO and its event log. Follows the server-sent event
// stream (`streamStoreEvents`, read with fetch so the token stays in a header),
// reconnecting with `Last-Event-ID` after a dropped connection or one that went quiet
// (no keep-alive for 45 s), after a randomised wait (so that the tabs a server restart
// disconnected do not all come back in the same second). A stream counts as working
// only once it has stayed open for 10 s: after three attempts in a row that did not (a
// `too-many-streams` refusal counts as one, so does a stream the server closes at once)
// it falls back to refreshing every five seconds — `getStore`,
// and `listStoreEvents` only when the store's latest event changed — and tries the
// stream again after six refreshes. A 429 (too many requests) is waited out for its
// `Retry-After` before the next request, whichever it was. Framework-free;
// `useStoreFeed` binds it to React.
import { useEffect, useMemo, useSyncExternalStore } from "react";
import { api, unwrap } from "../api/client";
import { ApiProblem, rateLimitWait, toProblem } from "../api/problem";
import { readEventStream, type SseMessage } from "../api/sse";
import type { Store, StoreEvent } from "../api/types";

export type FeedMode = "connecting" | "live" | "reconnecting" | "polling" | "ended";

export interface FeedState {
  store: Store | null;
  events: StoreEvent[];
  mode: FeedMode;
  /** The store is gone: deleted (the stream said so, and `error` is null), or not
   * visible to this account (any more), with the API's answer in `error`. */
  gone: boolean;
  /** The last error, when it matters to the person (not found, server unreachable). */
  error: ApiProblem | null;
  /** After a 429: how long the feed waits (its `Retry-After`) before asking again. */
  limitedMs: number | null;
}

export interface FeedOptions {
  pollMs: number;
  /** Refreshes in a row before the stream is tried again. */
  pollRounds: number;
  maxStreamFailures: number;
  backoffMs: number;
  /** Each wait before a reconnect is `backoffMs`-based times 1 ± this (0: exact). */
  jitter: number;
  /** Where the jitter's draws in [0, 1) come from. */
  random: () => number;
  /** A stream that stayed open this long worked: the failures in a row start again. */
  healthyMs: number;
  /** A live stream that sends nothing for this long is taken for dead. */
  idleMs: number;
}

/** Pages of the event log one refresh reads at most (1000 events each). */
const MAX_EVENT_PAGES = 50;

const DEFAULTS: FeedOptions = {
  pollMs: 5000,
  pollRounds: 6,
  maxStreamFailures: 3,
  backoffMs: 1000,
  jitter: 0.5,
  random: Math.random,
  healthyMs: 10_000,
  idleMs: 45_000,
};

/** Waits `ms`, or less when `signal` aborts; leaves no listener on the signal either way. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === "AbortError";
}

/** Answers that asking again will not change: a malformed id (400), another account's
 * store (403) or no such store (404). The page shows "not found" and stops. */
function isFinal(e: unknown): e is ApiProblem {
  return e instanceof ApiProblem && (e.status === 400 || e.status === 403 || e.status === 404);
}

export class StoreFeed {
  private state: FeedState = { store: null, events: [], mode: "connecting", gone: false, error: null, limitedMs: null };
  private readonly listeners = new Set<() => void>();
  private controller: AbortController | null = null;
  private readonly opts: FeedOptions;
  /** How many times `setStore` was called: a refresh notes it before asking. */
  private localWrites = 0;

  constructor(readonly id: string, opts: Partial<FeedOptions> = {}) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getState = (): FeedState => this.state;

  private update(patch: Partial<FeedState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of this.listeners) l();
  }

  /** A fresher store from an action (retry, delete) on this page. */
  setStore(store: Store): void {
    this.localWrites++;
    this.update({ store });
  }

  /** The store a refresh read, as a patch: none when `setStore` was called after the
   * refresh noted `writes` (`localWrites` before its request). Answers can cross: a
   * refresh in flight while Retry answered may bring the store as it was before. Which
   * copy is newer is decided by when the request started, on this page, not by
   * `updated_at`: API pods and orchestrators write that with their own clocks, and one
   * running behind would make a newer store look older. The stream's `store` messages
   * are not checked: they come in the server's order on one connection. */
  private refreshed(store: Store, writes: number): Partial<FeedState> {
    return this.localWrites === writes ? { store } : {};
  }

  private get lastId(): number | undefined {
    return this.state.events.at(-1)?.id;
  }

  private addEvents(events: StoreEvent[]): void {
    const last = this.lastId ?? -1;
    const fresh = events.filter((e) => e.id > last);
    if (fresh.length) this.update({ events: [...this.state.events, ...fresh] });
  }

  private goneWith(error: ApiProblem | null): void {
    this.update({ gone: true, mode: "ended", error });
  }

  start(): void {
    this.stop();
    const controller = new AbortController();
    this.controller = controller;
    void this.run(controller.signal);
  }

  stop(): void {
    this.controller?.abort();
    this.controller = null;
  }

  /** Shows a failure that the feed will retry. After a 429 that is how long it waits
   * first (its `Retry-After`, at least `usual`), returned; null for any other failure. */
  private failed(e: unknown, usual: number): number | null {
    const limited = rateLimitWait(e, usual);
    this.update({ error: e instanceof ApiProblem ? e : null, limitedMs: limited });
    return limited;
  }

  private async run(signal: AbortSignal): Promise<void> {
    try {
      const writes = this.localWrites;
      const store = await this.getStore(signal);
      this.update({ ...this.refreshed(store, writes), error: null, limitedMs: null });
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      if (isFinal(e)) return this.goneWith(e);
      const limited = this.failed(e, this.opts.backoffMs);
      if (limited !== null) await sleep(limited, signal);
    }
    let failures = 0;
    while (!signal.aborted && !this.state.gone) {
      let received = false;
      const opened = Date.now();
      try {
        await this.stream(signal, () => {
          received = true;
        });
      } catch (e) {
        if (isAbort(e) || signal.aborted) return;
        if (isFinal(e)) return this.goneWith(e);
        if (e instanceof ApiProblem && e.status === 401) return this.update({ mode: "ended" });
        if (rateLimitWait(e, 0) !== null) {
          // Asked to wait. Too many requests is not broken: not a failure that leads to
          // the fallback. Too many streams (the account's other tabs) is, or this page
          // would wait for a stream slot for ever without refreshing.
          this.update({ mode: "reconnecting" });
          await sleep(this.failed(e, this.opts.backoffMs) ?? 0, signal);
          if (!(e instanceof ApiProblem && e.slug === "too-many-streams")) continue;
        }
      }
      if (this.state.gone || signal.aborted) return;
      failures = received && Date.now() - opened >= this.opts.healthyMs ? 0 : failures + 1;
      if (failures >= this.opts.maxStreamFailures) {
        await this.poll(signal);
        failures = 0;
        continue;
      }
      this.update({ mode: "reconnecting" });
      const spread = 1 + this.opts.jitter * (2 * this.opts.random() - 1);
      await sleep(this.opts.backoffMs * 2 ** Math.max(0, failures - 1) * spread, signal);
    }
  }

  private getStore(signal: AbortSignal): Promise<Store> {
    return unwrap(api.GET("/api/stores/{id}", { params: { path: { id: this.id } }, signal }));
  }

  private async stream(signal: AbortSignal, onMessage: () => void): Promise<void> {
    const last = this.lastId;
    const { data, error, response } = await api.GET("/api/stores/{id}/events/stream", {
      params: { path: { id: this.id }, header: last === undefined ? {} : { "Last-Event-ID": last } },
      parseAs: "stream",
      signal,
    });
    if (!response.ok || !data) {
      throw toProblem(error ?? "the event stream could not be opened", response);
    }
    if (!this.state.store) {
      // The stream sends the store only when it changes: read it now if the first read failed.
      try {
        const writes = this.localWrites;
        const store = await this.getStore(signal);
        this.update(this.refreshed(store, writes));
      } catch (e) {
        void data.cancel().catch(() => undefined);
        throw e;
      }
    }
    this.update({ mode: "live", error: null, limitedMs: null });
    await readEventStream(
      data,
      (m) => {
        onMessage();
        this.message(m);
      },
      "",
      this.opts.idleMs,
    );
  }

  private message(m: SseMessage): void {
    let body: unknown;
    try {
      body = JSON.parse(m.data);
    } catch {
      return;
    }
    // The stream's data is JSON of the spec's Event, Store and StoreDeleted schemas (see
    // `streamStoreEvents`); the event name says which.
    switch (m.event) {
      case "store_event":
        this.addEvents([body as StoreEvent]);
        break;
      case "store":
        this.update({ store: body as Store });
        break;
      case "deleted":
        this.goneWith(null);
        break;
      default:
        break;
    }
  }

  /** The fallback: the store every `pollMs`, and its new events when its latest event
   * changed (one request a round, not two, against the per-IP rate limit); back to the
   * stream after `pollRounds` rounds. */
  private async poll(signal: AbortSignal): Promise<void> {
    this.update({ mode: "polling" });
    // The latest event (`progress.at`) the event log was last read up to.
    let readUpTo: string | null = null;
    for (let round = 0; round < this.opts.pollRounds && !signal.aborted && !this.state.gone; round++) {
      try {
        const writes = this.localWrites;
        const store = await this.getStore(signal);
        const latest = store.progress?.at ?? null;
        if (readUpTo === null || latest !== readUpTo) {
          // The log may be longer than a page: follow `next_cursor`, within a bound so a
          // server that keeps answering one cannot hold the refresh for ever.
          for (let pages = 0; pages < MAX_EVENT_PAGES; pages++) {
            const page = await unwrap(
              api.GET("/api/stores/{id}/events", {
                params: { path: { id: this.id }, query: { after: this.lastId, limit: 1000 } },
                signal,
              }),
            );
            this.addEvents(page.items);
            if (page.next_cursor === null || page.next_cursor === undefined) break;
          }
          readUpTo = latest ?? "";
        }
        // Checked now, after the event log too: a `setStore` while that was read also
        // came after this store was asked for.
        this.update({ ...this.refreshed(store, writes), error: null, limitedMs: null, mode: "polling" });
      } catch (e) {
        if (isAbort(e) || signal.aborted) return;
        if (isFinal(e)) return this.goneWith(e);
        if (e instanceof ApiProblem && e.status === 401) return this.update({ mode: "ended" });
        await sleep(this.failed(e, this.opts.pollMs) ?? this.opts.pollMs, signal);
        continue;
      }
      await sleep(this.opts.pollMs, signal);
    }
    if (!signal.aborted && !this.state.gone) this.update({ mode: "reconnecting" });
  }
}

/** The live state of one store while the component is mounted. */
export function useStoreFeed(id: string): [FeedState, StoreFeed] {
  const feed = useMemo(() => new StoreFeed(id), [id]);
  useEffect(() => {
    feed.start();
    return () => feed.stop();
  }, [feed]);
  return [useSyncExternalStore(feed.subscribe, feed.getState), feed];
}
