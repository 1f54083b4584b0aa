// The router's one-off notices: shown on the page they were sent to, once.
import { act, cleanup, renderHook } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { match, navigate, useLocation } from "./router";

afterEach(cleanup);

describe("navigate with a notice", () => {
  it("shows the notice on arrival and drops it from history, so a reload or Back/Forward does not show it again", async () => {
    const { result } = renderHook(() => useLocation());
    act(() => navigate("/stores/abc?x=1", { notice: "Store “shop” requested; provisioning has started." }));
    expect(result.current.notice).toBe("Store “shop” requested; provisioning has started.");
    expect(result.current.path).toBe("/stores/abc");
    // The entry keeps its URL but no longer carries the notice.
    expect(location.pathname + location.search).toBe("/stores/abc?x=1");
    expect((history.state as { notice?: unknown } | null)?.notice).toBeUndefined();

    // Back/Forward to this entry.
    act(() => {
      window.dispatchEvent(new PopStateEvent("popstate", { state: history.state }));
    });
    expect(result.current.notice).toBeNull();
    expect(result.current.path).toBe("/stores/abc");

    // A reload reads the location afresh.
    vi.resetModules();
    const fresh = await import("./router");
    const reloaded = renderHook(() => fresh.useLocation());
    expect(reloaded.result.current.notice).toBeNull();
  });

  it("navigates without a notice as before", () => {
    const { result } = renderHook(() => useLocation());
    act(() => navigate("/stores/new"));
    expect(result.current).toMatchObject({ path: "/stores/new", notice: null });
  });
});

describe("match", () => {
  it("decodes parameters, and a malformed escape matches nothing instead of throwing", () => {
    expect(match("/stores/:id", "/stores/a%20b")).toEqual({ id: "a b" });
    expect(match("/stores/:id", "/stores/%")).toBeNull();
    expect(match("/stores/:id", "/stores/%E0%A4")).toBeNull();
  });
});
