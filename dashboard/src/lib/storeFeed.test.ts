// The live feed against a fake server: which answers end it, waiting out a 429, and its
// timer's cleanup.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { aStore, json, problem, tooMany } from "../test/api";
import { StoreFeed, sleep } from "./storeFeed";

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

  function start(id: string): StoreFeed {
    feed = new StoreFeed(id, { pollMs: 1, backoffMs: 1, maxStreamFailures: 2 });
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
});
