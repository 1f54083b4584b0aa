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

  it("is forgotten on sign-out", () => {
    saveDraft(draft);
    session.end("signed-out");
    expect(readDraft()).toBeNull();
  });
});
