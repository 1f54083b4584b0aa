// The session ends as expired when its token does, not only at the next request.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { aSession } from "../test/api";
import * as session from "./session";

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

  it("waits out an expiry further off than setTimeout can wait at once", () => {
    const days = 30 * 24 * 3_600_000;
    session.signedIn(aSession("t1", days));
    vi.advanceTimersByTime(2 ** 31);
    expect(session.token()).toBe("t1");
    vi.advanceTimersByTime(days - 2 ** 31);
    expect(session.snapshot().ended).toBe("expired");
  });
});
