// A 401 ends the session only when it refused the session's own token.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { aSession, problem } from "../test/api";
import { api } from "./client";
import * as session from "./session";

beforeEach(() => {
  vi.spyOn(globalThis, "fetch").mockImplementation(async () => problem(401, "the token has expired"));
});
afterEach(() => {
  session.end("signed-out");
});

describe("the API client", () => {
  it("ends the session when the current token is refused", async () => {
    session.signedIn(aSession("current"));
    await api.GET("/api/me");
    expect(session.snapshot()).toEqual({ session: null, ended: "expired" });
  });

  it("keeps the session when a request made with an earlier token is refused late", async () => {
    session.signedIn(aSession("current"));
    await api.GET("/api/me", { headers: { Authorization: "Bearer earlier" } });
    expect(session.token()).toBe("current");
  });

  it("does not call a refused sign-in an expired session", async () => {
    session.end("signed-out");
    await api.POST("/api/auth/login", { body: { email: "a@example.test", password: "wrong" } });
    expect(session.snapshot().ended).toBe("signed-out");
  });
});
