// The live feed against a fake server: which answers end it, waiting out a 429, reading
// the whole event log, keeping the store set here over a refresh that crossed it, and
// that stopping it leaves no timer or open stream behind.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import * as session from "../api/session";
import type { StoreEvent } from "../api/types";
import { aSession, aStore, eventStream, json, problem, tooMany } from "../test/api";
import { type FeedOptions, StoreFeed, sleep } from "./storeFeed";

afterEach(() => {
  vi.useRealTimers();
});

describe("sleep", () => {
  it("removes its abort listener when the time is up", async () => {
    vi.useFakeTimers();
    const c = new AbortController();
    const add = vi.spyOn(c.signal, "addEventListener");
    const remove = vi.spyOn(c.signal, "removeEventListener");
    const done = sleep(1000, c.signal);
    await vi.advanceTimersByTimeAsync(1000);
    await done;
    expect(add).toHaveBeenCalledTimes(1);
    expect(remove).toHaveBeenCalledWith("abort", add.mock.calls[0]?.[1]);
  });

  it("ends at once when aborted", async () => {
    vi.useFakeTimers();
    const c = new AbortController();
    const done = sleep(60_000, c.signal);
    c.abort();
    await done;
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("StoreFeed", () => {
  const requests: string[] = [];
  let answer: (path: string) => Response;
  let feed: StoreFeed | null = null;

  beforeEach(() => {
    requests.length = 0;
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      const req = input instanceof Request ? input : new Request(input, init);
      const path = new URL(req.url).pathname;
      requests.push(path);
      return answer(path);
    });
  });
  afterEach(() => {
    feed?.stop();
    feed = null;
  });

  function start(id: string, opts: Partial<FeedOptions> = {}): StoreFeed {
    feed = new StoreFeed(id, { pollMs: 1, pollRounds: 1_000_000, backoffMs: 1, maxStreamFailures: 2, jitter: 0, ...opts });
    feed.start();
    return feed;
  }

  // `/stores/foo` is not an id: the API answers 400; another account's store is 403 or
  // 404. None of them will change by asking again.
  for (const status of [400, 403, 404]) {
    it(`ends as gone, without opening the stream, when the store answers ${status}`, async () => {
      answer = () => problem(status);
      const f = start("foo");
      await vi.waitFor(() => expect(f.getState().gone).toBe(true));
      expect(f.getState()).toMatchObject({ mode: "ended", store: null, error: { status } });
      expect(requests).toEqual(["/api/stores/foo"]);
    });

    it(`ends as gone when the event stream answers ${status}`, async () => {
      const store = aStore();
      answer = (path) => (path.endsWith("/stream") ? problem(status) : json(200, store));
      const f = start(store.id);
      await vi.waitFor(() => expect(f.getState().gone).toBe(true));
      expect(f.getState().mode).toBe("ended");
      expect(requests.filter((p) => p.endsWith("/stream"))).toHaveLength(1);
    });

    it(`ends as gone when the fallback refresh answers ${status}`, async () => {
      const store = aStore();
      answer = (path) =>
        path.endsWith("/stream") ? problem(503) : path.endsWith("/events") ? problem(status) : json(200, store);
      const f = start(store.id);
      await vi.waitFor(() => expect(f.getState().gone).toBe(true));
      expect(f.getState().mode).toBe("ended");
      expect(requests.filter((p) => p.endsWith("/events"))).toHaveLength(1);
    });
  }

  it("waits a 429's Retry-After before opening the stream again, and says why", async () => {
    vi.useFakeTimers();
    const store = aStore();
    let streams = 0;
    answer = (path) => (path.endsWith("/stream") ? (++streams === 1 ? tooMany(7) : problem(503)) : json(200, store));
    const f = start(store.id);
    await vi.advanceTimersByTimeAsync(50);
    expect(streams).toBe(1);
    expect(f.getState()).toMatchObject({ mode: "reconnecting", limitedMs: 7000, error: { status: 429, retryAfter: 7 } });
    await vi.advanceTimersByTimeAsync(6900);
    expect(streams).toBe(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(streams).toBeGreaterThan(1); // then every few ms (backoffMs: 1)
  });

  it("waits a 429's Retry-After between fallback refreshes", async () => {
    vi.useFakeTimers();
    const store = aStore();
    let refreshes = 0;
    answer = (path) =>
      path.endsWith("/stream")
        ? problem(503)
        : path.endsWith("/events")
          ? ++refreshes === 1
            ? tooMany(30)
            : json(200, { items: [] })
          : json(200, store);
    const f = start(store.id);
    await vi.advanceTimersByTimeAsync(50);
    expect(refreshes).toBe(1);
    expect(f.getState()).toMatchObject({ mode: "polling", limitedMs: 30_000, error: { status: 429 } });
    await vi.advanceTimersByTimeAsync(29_900);
    expect(refreshes).toBe(1);
    await vi.advanceTimersByTimeAsync(200);
    expect(refreshes).toBeGreaterThan(1); // then every few ms (pollMs: 1)
    expect(f.getState()).toMatchObject({ limitedMs: null, error: null });
  });

  it("refreshes with one request a round while nothing changes, and tries the stream again", async () => {
    vi.useFakeTimers();
    const store = aStore({ status: "provisioning" });
    answer = (path) =>
      path.endsWith("/stream") ? problem(503) : path.endsWith("/events") ? json(200, { items: [] }) : json(200, store);
    start(store.id, { pollMs: 5000, pollRounds: 6, backoffMs: 1000 });
    // Two stream attempts (at 0 and 1 s: maxStreamFailures 2), then six refreshes 5 s
    // apart (1 s to 26 s), each followed by its 5 s wait.
    await vi.advanceTimersByTimeAsync(1_000 + 6 * 5_000 - 100);
    const streams = () => requests.filter((p) => p.endsWith("/stream")).length;
    const events = () => requests.filter((p) => p.endsWith("/events")).length;
    expect(streams()).toBe(2);
    // The event log only on the first refresh: the store's latest event never moved.
    expect(events()).toBe(1);
    expect(requests.filter((p) => p === `/api/stores/${store.id}`).length).toBe(1 + 6);
    await vi.advanceTimersByTimeAsync(200);
    expect(streams()).toBe(3); // the stream again
  });

  it("counts a stream the server closes at once as a failure, backs off and falls back to refreshing", async () => {
    vi.useFakeTimers();
    const store = aStore();
    // Opens, sends the store, ends: what a server that accepts and then drops the
    // connection (a proxy's timeout, a crash loop) looks like.
    const closing = () =>
      new Response(`event: store\ndata: ${JSON.stringify(store)}\n\n`, {
        status: 200,
        headers: { "Content-Type": "text/event-stream" },
      });
    answer = (path) =>
      path.endsWith("/stream") ? closing() : path.endsWith("/events") ? json(200, { items: [] }) : json(200, store);
    const f = start(store.id, { pollMs: 5000, pollRounds: 6, backoffMs: 1000, maxStreamFailures: 3 });
    const streams = () => requests.filter((p) => p.endsWith("/stream")).length;
    // Attempts at 0, 1 s and 3 s (1 s, then 2 s between them), then the refresh.
    await vi.advanceTimersByTimeAsync(900);
    expect(streams()).toBe(1);
    await vi.advanceTimersByTimeAsync(1000); // 1.9 s
    expect(streams()).toBe(2);
    await vi.advanceTimersByTimeAsync(1000); // 2.9 s
    expect(streams()).toBe(2);
    await vi.advanceTimersByTimeAsync(200); // 3.1 s
    expect(streams()).toBe(3);
    expect(f.getState().mode).toBe("polling");
    await vi.advanceTimersByTimeAsync(20_000);
    expect(streams()).toBe(3);
  });

  it("spreads reconnects over half to one and a half times the back-off", async () => {
    vi.useFakeTimers();
    const store = aStore();
    answer = (path) => (path.endsWith("/stream") ? problem(503) : json(200, store));
    // The lowest draw for the first wait, the highest for the second.
    const draws = [0, 0.999_999];
    start(store.id, { backoffMs: 1000, jitter: 0.5, maxStreamFailures: 5, random: () => draws.shift() ?? 0.5 });
    const streams = () => requests.filter((p) => p.endsWith("/stream")).length;
    await vi.advanceTimersByTimeAsync(450);
    expect(streams()).toBe(1);
    await vi.advanceTimersByTimeAsync(100); // 0.55 s
    expect(streams()).toBe(2); // after 500 ms (1 s × 0.5), not 1 s
    await vi.advanceTimersByTimeAsync(2900); // 3.45 s
    expect(streams()).toBe(2); // the next wait is close to 3 s (2 s × 1.5)
    await vi.advanceTimersByTimeAsync(200); // 3.65 s
    expect(streams()).toBe(3);
  });

  it("counts a too-many-streams refusal towards the fallback instead of waiting for ever", async () => {
    vi.useFakeTimers();
    const store = aStore();
    answer = (path) => {
      if (!path.endsWith("/stream")) return path.endsWith("/events") ? json(200, { items: [] }) : json(200, store);
      const r = json(429, { type: "https://storeplane.dev/problems/too-many-streams", title: "Too Many Requests", status: 429, detail: "too many streams", errors: [] }, "application/problem+json");
      r.headers.set("Retry-After", "5");
      return r;
    };
    const f = start(store.id);
    await vi.advanceTimersByTimeAsync(10_100);
    expect(f.getState().mode).toBe("polling");
    expect(requests.filter((p) => p.endsWith("/events")).length).toBeGreaterThan(0);
  });

  it("takes a stream that went quiet for dead and reconnects where it left off", async () => {
    vi.useFakeTimers();
    const store = aStore();
    const opened: Array<ReturnType<typeof eventStream>> = [];
    const lastIds: Array<string | null> = [];
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      const req = input instanceof Request ? input : new Request(input, init);
      const path = new URL(req.url).pathname;
      requests.push(path);
      if (!path.endsWith("/stream")) return json(200, store);
      lastIds.push(req.headers.get("Last-Event-ID"));
      const s = eventStream(req.signal);
      opened.push(s);
      return s.response;
    });
    const f = start(store.id, { idleMs: 45_000, backoffMs: 1000 });
    await vi.advanceTimersByTimeAsync(10);
    expect(f.getState().mode).toBe("live");
    opened[0]?.send("store_event", { id: 7, store_id: store.id, type: "phase_completed", message: "data", at: store.created_at });
    await vi.advanceTimersByTimeAsync(44_000);
    expect(opened).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000 + 1_000 + 10);
    expect(opened).toHaveLength(2);
    expect(lastIds).toEqual([null, "7"]);
    expect(f.getState().mode).toBe("live");
  });

  it("keeps trying after an answer that may change (503)", async () => {
    const store = aStore();
    let calls = 0;
    answer = (path) =>
      path.endsWith("/stream") || ++calls === 1
        ? problem(503)
        : path.endsWith("/events")
          ? json(200, { items: [] })
          : json(200, store);
    const f = start(store.id);
    await vi.waitFor(() => expect(f.getState().store).toEqual(store));
    expect(f.getState()).toMatchObject({ gone: false, mode: "polling", error: null });
  });

  const anEvent = (id: number): StoreEvent => ({ id, type: "phase_completed", message: `event ${id}`, created_at: "2024-05-01T10:00:00Z" });

  /** The fetch mock, answering with the request itself at hand. */
  function serve(answer: (req: Request, path: string) => Response | Promise<Response>): void {
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      const req = input instanceof Request ? input : new Request(input, init);
      const path = new URL(req.url).pathname;
      requests.push(path);
      return answer(req, path);
    });
  }

  it("follows the event log's next_cursor on a fallback refresh", async () => {
    vi.useFakeTimers();
    const store = aStore();
    const afters: Array<string | null> = [];
    serve((req, path) => {
      if (path.endsWith("/stream")) return problem(503);
      if (!path.endsWith("/events")) return json(200, store);
      const after = new URL(req.url).searchParams.get("after");
      afters.push(after);
      return after === null
        ? json(200, { items: [anEvent(1), anEvent(2)], next_cursor: 2 })
        : after === "2"
          ? json(200, { items: [anEvent(3)], next_cursor: null })
          : json(200, { items: [] });
    });
    const f = start(store.id, { pollMs: 5000 });
    await vi.advanceTimersByTimeAsync(100);
    expect(f.getState().events.map((e) => e.id)).toEqual([1, 2, 3]);
    expect(afters).toEqual([null, "2"]);
  });

  it("reads at most 50 pages of the event log in one refresh", async () => {
    vi.useFakeTimers();
    const store = aStore();
    let next = 0;
    serve((_req, path) => {
      if (path.endsWith("/stream")) return problem(503);
      if (!path.endsWith("/events")) return json(200, store);
      next++;
      return json(200, { items: [anEvent(next)], next_cursor: next });
    });
    const f = start(store.id, { pollMs: 5000 });
    await vi.advanceTimersByTimeAsync(100);
    expect(requests.filter((p) => p.endsWith("/events"))).toHaveLength(50);
    expect(f.getState()).toMatchObject({ mode: "polling", error: null });
  });

  it("keeps the store set here (after Retry) over a refresh in flight, and takes the next refresh's", async () => {
    // The times say nothing of which is newer: each server writes `updated_at` with its
    // own clock, and these run behind one another.
    const failed = aStore({ status: "failed", updated_at: "2024-05-01T10:00:00Z" });
    const retried = aStore({ status: "provisioning", updated_at: "2024-05-01T09:59:00Z" });
    const ready = aStore({ status: "ready", updated_at: "2024-05-01T09:58:00Z" });
    let current = failed;
    const held: Array<() => void> = [];
    let gets = 0;
    serve(async (_req, path) => {
      if (path.endsWith("/stream")) return problem(503);
      if (path.endsWith("/events")) return json(200, { items: [] });
      if (++gets > 1) await new Promise<void>((resolve) => held.push(resolve));
      return json(200, current);
    });
    const f = start(failed.id, { pollMs: 1 });
    await vi.waitFor(() => expect(held).toHaveLength(1)); // a refresh's getStore in flight
    f.setStore(retried);
    held[0]?.();
    await vi.waitFor(() => expect(held).toHaveLength(2)); // its answer was dealt with
    expect(f.getState().store).toEqual(retried);
    // The next refresh was asked for after Retry: its store is taken, older time or not.
    current = ready;
    held[1]?.();
    await vi.waitFor(() => expect(held).toHaveLength(3));
    expect(f.getState().store).toEqual(ready);
  });

  it("takes every store the stream sends, even one with an older updated_at than the one held", async () => {
    const store = aStore({ status: "failed", updated_at: "2024-05-01T10:00:00Z" });
    const opened: Array<ReturnType<typeof eventStream>> = [];
    serve((req, path) => {
      if (!path.endsWith("/stream")) return json(200, store);
      const s = eventStream(req.signal);
      opened.push(s);
      return s.response;
    });
    const f = start(store.id);
    await vi.waitFor(() => expect(f.getState().mode).toBe("live"));
    f.setStore(aStore({ status: "provisioning", updated_at: "2024-05-01T10:01:00Z" }));
    // Written by an orchestrator whose clock is behind the API pod's.
    const ready = aStore({ status: "ready", updated_at: "2024-05-01T10:00:30Z" });
    opened[0]?.send("store", ready);
    await vi.waitFor(() => expect(f.getState().store).toEqual(ready));
  });

  it("aborts the open stream when stopped and leaves no timer behind", async () => {
    vi.useFakeTimers();
    const store = aStore();
    const signals: AbortSignal[] = [];
    serve((req, path) => {
      if (!path.endsWith("/stream")) return json(200, store);
      signals.push(req.signal);
      return eventStream(req.signal).response;
    });
    const f = start(store.id, { idleMs: 45_000 });
    await vi.advanceTimersByTimeAsync(10);
    expect(f.getState().mode).toBe("live");
    expect(vi.getTimerCount()).toBeGreaterThan(0); // the stream's idle watch
    f.stop();
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toHaveLength(1);
    expect(signals[0]?.aborted).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(signals).toHaveLength(1); // and it does not reconnect
  });

  it("leaves no timer behind when stopped while waiting between refreshes", async () => {
    vi.useFakeTimers();
    const store = aStore();
    answer = (path) =>
      path.endsWith("/stream") ? problem(503) : path.endsWith("/events") ? json(200, { items: [] }) : json(200, store);
    const f = start(store.id, { pollMs: 5000 });
    await vi.advanceTimersByTimeAsync(100);
    expect(f.getState().mode).toBe("polling");
    expect(vi.getTimerCount()).toBe(1);
    f.stop();
    await vi.advanceTimersByTimeAsync(0);
    expect(vi.getTimerCount()).toBe(0);
    const asked = requests.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(requests).toHaveLength(asked);
  });

  it("opens the stream with the token in the Authorization header, never in the URL", async () => {
    session.signedIn(aSession("tok-secret-123"));
    try {
      const store = aStore();
      const streams: Request[] = [];
      serve((req, path) => {
        if (!path.endsWith("/stream")) return json(200, store);
        streams.push(req);
        return eventStream(req.signal).response;
      });
      const f = start(store.id);
      await vi.waitFor(() => expect(f.getState().mode).toBe("live"));
      expect(streams[0]?.headers.get("Authorization")).toBe("Bearer tok-secret-123");
      expect(streams[0]?.url).not.toContain("tok-secret-123");
      expect(streams[0]?.url).not.toMatch(/token/i);
    } finally {
      session.end("signed-out");
    }
  });
});
