// The session ends as expired when its token does, not only at the next request, by this
// browser's clock only when that clock agrees with the server's.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { aSession } from "../test/api";
import * as session from "./session";

const HOUR = 3_600_000;
const KEY = "storeplane.session";

/** The module as a reload of the tab finds it: its session read back from storage. */
async function reloaded(): Promise<typeof session> {
  vi.resetModules();
  return import("./session");
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  session.end("signed-out");
  vi.useRealTimers();
});

describe("session", () => {
  it("ends as expired at its expiry time", () => {
    session.signedIn(aSession("t1", 60_000));
    vi.advanceTimersByTime(59_000);
    expect(session.token()).toBe("t1");
    vi.advanceTimersByTime(1_000);
    expect(session.snapshot()).toEqual({ session: null, ended: "expired" });
  });

  it("keeps one expiry timer: a new session replaces it, signing out clears it", () => {
    session.signedIn(aSession("t1", 60_000));
    session.signedIn(aSession("t2", 120_000));
    vi.advanceTimersByTime(1); // jsdom's storage events, queued by each save
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(60_000);
    expect(session.token()).toBe("t2"); // the first session's time is not the second's
    session.end("signed-out");
    vi.advanceTimersByTime(1);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(120_000);
    expect(session.snapshot().ended).toBe("signed-out");
  });

  it("keeps a session read back after a reload, and still ends it at its expiry", async () => {
    session.signedIn(aSession("t1", HOUR));
    vi.advanceTimersByTime(HOUR / 2);
    const again = await reloaded();
    try {
      expect(again.token()).toBe("t1");
      vi.advanceTimersByTime(HOUR / 2);
      expect(again.snapshot()).toEqual({ session: null, ended: "expired" });
    } finally {
      again.end("signed-out");
    }
  });

  it("keeps the session when the browser's clock is a day ahead of the server's", async () => {
    const serverNow = Date.now();
    const s = aSession("t1", 12 * HOUR); // expires in 12 h by the server's clock
    vi.setSystemTime(serverNow + 24 * HOUR);
    session.signedIn(s);
    vi.advanceTimersByTime(1); // jsdom's storage event
    expect(session.snapshot()).toMatchObject({ session: { token: "t1", localExpiresAt: null }, ended: null });
    expect(vi.getTimerCount()).toBe(0); // no expiry timer: the API's 401 ends it
    vi.advanceTimersByTime(HOUR);
    expect(session.token()).toBe("t1");
    const again = await reloaded();
    try {
      expect(again.token()).toBe("t1");
    } finally {
      again.end("signed-out");
    }
  });

  it("reads a session saved without localExpiresAt by its server expiry time", async () => {
    const saved = { token: "t1", expiresAt: new Date(Date.now() + HOUR).toISOString(), user: aSession("t1").user };
    sessionStorage.setItem(KEY, JSON.stringify(saved));
    let again = await reloaded();
    try {
      expect(again.snapshot().session).toEqual({ ...saved, localExpiresAt: Date.parse(saved.expiresAt) });
      vi.advanceTimersByTime(HOUR);
      expect(again.snapshot().ended).toBe("expired");
    } finally {
      again.end("signed-out");
    }
    sessionStorage.setItem(KEY, JSON.stringify({ ...saved, expiresAt: new Date(Date.now() - 1).toISOString() }));
    again = await reloaded();
    expect(again.token()).toBeNull();
  });

  it("waits out an expiry further off than setTimeout can wait at once", () => {
    const days = 30 * 24 * 3_600_000;
    session.signedIn(aSession("t1", days));
    vi.advanceTimersByTime(2 ** 31);
    expect(session.token()).toBe("t1");
    vi.advanceTimersByTime(days - 2 ** 31);
    expect(session.snapshot().ended).toBe("expired");
  });
});
