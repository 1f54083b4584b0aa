// Where sign-in may send a person back to: only a path of this app.
import { describe, expect, it } from "vitest";
import { safeNext } from "./App";

describe("safeNext", () => {
  it("keeps paths of this app, with their query", () => {
    expect(safeNext("/stores/new")).toBe("/stores/new");
    expect(safeNext("/stores/0190a4c2?tab=events#log")).toBe("/stores/0190a4c2?tab=events#log");
  });

  it("refuses anything the browser would read as another origin", () => {
    for (const next of [
      "//evil.example",
      "/\\evil.example",
      "/\\/evil.example",
      "/\t/evil.example",
      "\\\\evil.example",
      "https://evil.example/",
      "javascript:alert(1)",
      "stores/new",
    ]) {
      expect(safeNext(next), next).toBe("/");
    }
  });

  it("does not return to sign-in, and defaults to the store list", () => {
    expect(safeNext("/signin")).toBe("/");
    expect(safeNext("/signin?next=%2F")).toBe("/");
    expect(safeNext(null)).toBe("/");
    expect(safeNext("")).toBe("/");
  });
});
