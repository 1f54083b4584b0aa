// The new-store draft outlives an expired session (to be restored after signing in again)
// but not a sign-out.
import { beforeEach, describe, expect, it } from "vitest";
import * as session from "../api/session";
import { readDraft, saveDraft } from "./draft";

const draft = { name: "my-shop", engine: "woocommerce", values: { "storage/database": "20Gi" } };

beforeEach(() => sessionStorage.clear());

describe("the new-store draft", () => {
  it("is kept when the session expires", () => {
    saveDraft(draft);
    session.end("expired");
    expect(readDraft()).toEqual(draft);
  });

  it("is restored only to the account that wrote it", () => {
    const signIn = (id: string) =>
      session.signedIn({
        token: "sp_x",
        expires_at: "2999-01-01T00:00:00Z",
        user: { id, email: `${id}@example.com`, role: "member", store_limit: 10, store_count: 0 },
      } as Parameters<typeof session.signedIn>[0]);
    saveDraft({ ...draft, owner: "alice" });
    session.end("expired");
    signIn("alice");
    expect(readDraft()).toEqual({ ...draft, owner: "alice" });
    session.end("expired");
    signIn("bob");
    expect(readDraft()).toBeNull();
  });

  it("is forgotten on sign-out", () => {
    saveDraft(draft);
    session.end("signed-out");
    expect(readDraft()).toBeNull();
  });
});
