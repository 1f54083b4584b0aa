// The store list against a fake server whose answers the test releases in its own order
// (or replaces, e.g. with a 429).
import { act, cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { aStore, json, tooMany } from "../test/api";
import { StoreList } from "./StoreList";

// `n` stores, the first still provisioning (so the list refreshes every 5 s); pages of 20.
const storesOf = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    aStore({
      id: `0190a4c2-0000-7000-8000-000000000${String(i).padStart(3, "0")}`,
      name: `shop-${i}`,
      ...(i === 0 ? { status: "provisioning" as const, urls: [] } : {}),
    }),
  );
let STORES = storesOf(25);

interface Held {
  query: URLSearchParams;
  release: (instead?: Response) => void;
}
let held: Held[] = [];

function page(query: URLSearchParams): Response {
  const start = query.get("cursor") ? Number(query.get("cursor")) : 0;
  const end = start + Number(query.get("limit"));
  return json(200, { items: STORES.slice(start, end), next_cursor: end < STORES.length ? String(end) : null });
}

beforeEach(() => {
  held = [];
  STORES = storesOf(25);
  vi.useFakeTimers({ shouldAdvanceTime: true });
  vi.spyOn(globalThis, "fetch").mockImplementation((input, init) => {
    const req = input instanceof Request ? input : new Request(input, init);
    const query = new URL(req.url).searchParams;
    return new Promise((resolve) => held.push({ query, release: (instead) => resolve(instead ?? page(query)) }));
  });
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

async function answer(which: (h: Held) => boolean, instead?: Response) {
  await waitFor(() => expect(held.some(which)).toBe(true));
  const i = held.findIndex(which);
  const [h] = held.splice(i, 1);
  await act(async () => h?.release(instead));
}

const rows = () => document.querySelectorAll("tbody tr").length;

describe("StoreList", () => {
  it("keeps the stores shown by “Show more” when a refresh started before it answers after it", async () => {
    render(<StoreList />);
    await answer(() => true);
    await waitFor(() => expect(rows()).toBe(20));

    // The 5-second refresh asks for the first 20 ...
    await act(async () => vi.advanceTimersByTime(5000));
    await waitFor(() => expect(held).toHaveLength(1));
    // ... and before it answers, "Show more stores" fetches the next page.
    fireEvent.click(screen.getByRole("button", { name: "Show more stores" }));
    await answer((h) => h.query.has("cursor"));
    await waitFor(() => expect(rows()).toBe(25));

    // The stale refresh answers last: it must not shrink the list back to 20.
    await answer((h) => !h.query.has("cursor"));
    expect(rows()).toBe(25);

    // The next refresh asks for everything shown.
    await act(async () => vi.advanceTimersByTime(5000));
    await waitFor(() => expect(held.some((h) => h.query.get("limit") === "25")).toBe(true));
  });

  it("waits a refresh's 429 out for its Retry-After, and says so", async () => {
    render(<StoreList />);
    await answer(() => true);
    await waitFor(() => expect(rows()).toBe(20));

    await act(async () => vi.advanceTimersByTime(5000));
    await answer(() => true, tooMany(20));
    expect(screen.getByRole("alert").textContent).toContain("Too many requests; trying again in 20 s");
    // Not at the usual 5 s ...
    await act(async () => vi.advanceTimersByTime(15_000));
    expect(held).toHaveLength(0);
    // ... but once the 20 s are up; then the list is current again.
    await act(async () => vi.advanceTimersByTime(5_000));
    await answer(() => true);
    expect(screen.queryByRole("alert")).toBeNull();
    expect(rows()).toBe(20);
  });

  it("tries again after a first load that failed (the server away), every 5 s", async () => {
    render(<StoreList />);
    await answer(() => true, json(503, { type: "https://storeplane.dev/problems/unavailable", title: "Service Unavailable", status: 503, detail: "the database is unavailable; retry shortly", errors: [] }));
    await waitFor(() => expect(screen.getByRole("alert").textContent).toContain("unavailable"));
    await act(async () => vi.advanceTimersByTime(4_000));
    expect(held).toHaveLength(0);
    await act(async () => vi.advanceTimersByTime(1_000));
    await answer(() => true);
    await waitFor(() => expect(rows()).toBe(20));
  });

  it("tries again after a 429 on the first load, though nothing is known to be busy", async () => {
    render(<StoreList />);
    await answer(() => true, tooMany(10));
    expect(screen.getByRole("alert").textContent).toContain("Too many requests; trying again in 10 s");
    await act(async () => vi.advanceTimersByTime(9_000));
    expect(held).toHaveLength(0);
    await act(async () => vi.advanceTimersByTime(1_000));
    await answer(() => true);
    await waitFor(() => expect(rows()).toBe(20));
  });

  it("keeps more than 100 shown stores through a refresh (the API's page limit) and focuses the last page's first row", async () => {
    STORES = storesOf(130);
    render(<StoreList />);
    await answer(() => true);
    await waitFor(() => expect(rows()).toBe(20));
    for (let shown = 40; shown <= 120; shown += 20) {
      fireEvent.click(screen.getByRole("button", { name: "Show more stores" }));
      await answer((h) => h.query.has("cursor"));
      await waitFor(() => expect(rows()).toBe(shown));
    }

    // The refresh asks for 100, then follows the cursor for the other 20.
    await act(async () => vi.advanceTimersByTime(5000));
    await answer((h) => !h.query.has("cursor") && h.query.get("limit") === "100");
    await answer((h) => h.query.get("cursor") === "100" && h.query.get("limit") === "20");
    await waitFor(() => expect(held).toHaveLength(0));
    expect(rows()).toBe(120);

    // The last page: the button goes, focus lands on the first row it added.
    fireEvent.click(screen.getByRole("button", { name: "Show more stores" }));
    await answer((h) => h.query.get("cursor") === "120");
    await waitFor(() => expect(rows()).toBe(130));
    expect(screen.queryByRole("button", { name: "Show more stores" })).toBeNull();
    await waitFor(() => expect(document.activeElement?.textContent).toBe("shop-120"));
  });

  it("clears a failed “Show more” message once a later one succeeds", async () => {
    render(<StoreList />);
    await answer(() => true);
    await waitFor(() => expect(rows()).toBe(20));
    fireEvent.click(screen.getByRole("button", { name: "Show more stores" }));
    await answer((h) => h.query.has("cursor"), json(503, { type: "https://storeplane.dev/problems/unavailable", title: "Service Unavailable", status: 503, detail: "the database is unavailable; retry shortly", errors: [] }));
    await waitFor(() => expect(screen.getByRole("alert").textContent).toContain("unavailable"));
    expect(rows()).toBe(20);

    fireEvent.click(screen.getByRole("button", { name: "Show more stores" }));
    await answer((h) => h.query.has("cursor"));
    await waitFor(() => expect(rows()).toBe(25));
    expect(screen.queryByRole("alert")).toBeNull();
  });
});
