// Signing out does not wait for the server: the token is forgotten here at once and
// revoked in the background.
import { cleanup, render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import * as session from "../api/session";
import { aSession } from "../test/api";
import { Layout } from "./Layout";

afterEach(() => {
  cleanup();
  session.end("signed-out");
});

describe("Layout", () => {
  it("signs out at once while the server does not answer, and still asks it to revoke the token", async () => {
    const sent: Request[] = [];
    // A server that never answers: the logout request hangs until it is aborted.
    vi.spyOn(globalThis, "fetch").mockImplementation((input, init) => {
      const req = input instanceof Request ? input : new Request(input, init);
      sent.push(req);
      return new Promise<Response>((_, reject) =>
        req.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")), { once: true }),
      );
    });
    const s = aSession("sp_signing_out");
    session.signedIn(s);
    render(
      <Layout user={s.user}>
        <p>content</p>
      </Layout>,
    );
    await userEvent.setup().click(screen.getByRole("button", { name: "Sign out" }));
    expect(session.snapshot()).toEqual({ session: null, ended: "signed-out" });
    expect(window.location.pathname).toBe("/signin");
    expect(sent).toHaveLength(1);
    expect(new URL(sent[0]!.url).pathname).toBe("/api/auth/logout");
    expect(sent[0]!.method).toBe("POST");
    expect(sent[0]!.headers.get("Authorization")).toBe("Bearer sp_signing_out");
    expect(sent[0]!.signal.aborted).toBe(false); // bounded by its own timeout, not waited for
  });
});
