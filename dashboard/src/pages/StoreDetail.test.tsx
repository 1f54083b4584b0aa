// The detail page against a fake server with a live event stream the test writes to.
import { cleanup, render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Store } from "../api/types";
import { aStore, eventStream, json, problem, tooMany } from "../test/api";
import { navigate } from "../lib/router";
import { StoreDetail } from "./StoreDetail";

let getStore: () => Response;
let send: ((event: string, data: unknown) => void) | null = null;
let end: (() => void) | null = null;
let streamAnswer: (() => Response) | null = null;
const retried = aStore({ status: "provisioning", progress: { type: "retry_requested", message: "retrying", at: "2024-05-01T10:01:00Z" } });

beforeEach(() => {
  send = null;
  end = null;
  streamAnswer = null;
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const req = input instanceof Request ? input : new Request(input, init);
    const path = new URL(req.url).pathname;
    if (path.endsWith("/events/stream")) {
      if (streamAnswer) return streamAnswer();
      const s = eventStream(req.signal);
      send = s.send;
      end = s.end;
      return s.response;
    }
    if (path.endsWith("/retry") && req.method === "POST") return json(200, retried);
    if (req.method === "GET" && path.startsWith("/api/stores/")) return getStore();
    return problem(404);
  });
  // jsdom has no modal dialogs; the page only needs `open` to follow these.
  HTMLDialogElement.prototype.showModal = function (this: HTMLDialogElement) {
    this.open = true;
  };
  HTMLDialogElement.prototype.close = function (this: HTMLDialogElement) {
    this.open = false;
  };
});
afterEach(() => {
  cleanup();
  // The router keeps the last location (and its notice) in module state.
  navigate("/", { replace: true });
});

function show(store: Store) {
  getStore = () => json(200, store);
  return render(<StoreDetail id={store.id} />);
}

describe("StoreDetail", () => {
  it("says a malformed store address is not found, and stops loading", async () => {
    getStore = () => problem(400, "`foo` is not a store id");
    render(<StoreDetail id="foo" />);
    expect(await screen.findByRole("heading", { name: "Store not found" })).toBeTruthy();
    expect(screen.queryByText("Loading the store…")).toBeNull();
  });

  it("shows a failure to load without also saying it is loading", async () => {
    getStore = () => problem(503, "the database is unavailable");
    streamAnswer = () => problem(503, "the database is unavailable");
    render(<StoreDetail id={aStore().id} />);
    expect(await screen.findByText("Could not load the store")).toBeTruthy();
    expect(screen.getByRole("alert").textContent).toContain("the database is unavailable");
    expect(screen.queryByText("Loading the store…")).toBeNull();
  });

  it("says when too many requests make it wait, and for how long", async () => {
    getStore = () => tooMany(30);
    streamAnswer = () => tooMany(30);
    render(<StoreDetail id={aStore().id} />);
    expect(await screen.findByText("Could not load the store")).toBeTruthy();
    expect(screen.getByRole("alert").textContent).toContain("Too many requests; trying again in 30 s");
  });

  it("loads the store when the stream opens after a failed first load", async () => {
    const store = aStore({ name: "second-try" });
    let calls = 0;
    getStore = () => (++calls === 1 ? problem(503) : json(200, store));
    render(<StoreDetail id={store.id} />);
    expect(await screen.findByRole("heading", { name: /second-try/ })).toBeTruthy();
  });

  it("moves focus to the status after a successful Retry (the button goes away)", async () => {
    show(aStore({ status: "failed", error_message: "the pods were refused", urls: [] }));
    const retry = await screen.findByRole("button", { name: "Retry" });
    await userEvent.setup().click(retry);
    await screen.findByText(/retrying/);
    expect(screen.queryByRole("button", { name: "Retry" })).toBeNull();
    const status = document.querySelector(".status-live");
    expect(status).not.toBeNull();
    expect(document.activeElement).toBe(status);
  });

  it("closes the delete confirmation when the live stream says the store is gone", async () => {
    const store = aStore();
    show(store);
    const user = userEvent.setup();
    await user.click((await screen.findAllByRole("button", { name: "Delete store" }))[0]!);
    const dialog = document.querySelector("dialog");
    expect(dialog?.open).toBe(true);
    await waitFor(() => expect(send).not.toBeNull());
    send?.("deleted", { id: store.id });
    expect(await screen.findByText(/This store has been deleted/)).toBeTruthy();
    await waitFor(() => expect(dialog?.open).toBe(false));
    expect(document.activeElement).toBe(document.querySelector(".status-live"));
  });

  it("says a store that stops answering was lost to this account, not that it was deleted", async () => {
    show(aStore({ status: "ready" }));
    await waitFor(() => expect(end).not.toBeNull());
    // The server ends the stream (the account lost its admin role) and every later
    // request for the store is a 404.
    streamAnswer = () => problem(404, "no store with this id");
    getStore = () => problem(404, "no store with this id");
    end?.();
    expect(await screen.findByText(/no longer available to your account/, undefined, { timeout: 4000 })).toBeTruthy();
    expect(screen.queryByText(/has been deleted/)).toBeNull();
    expect(screen.queryByRole("button", { name: "Delete store" })).toBeNull();
  });

  it("shows the provisioning notice it was opened with only while the store provisions", async () => {
    const store0 = aStore();
    navigate(`/stores/${store0.id}`, { notice: "Store “shop” requested; provisioning has started." });
    const store = aStore({ status: "provisioning", progress: { type: "created", message: "requested", at: "2024-05-01T10:00:00Z" } });
    show(store);
    expect(await screen.findByText(/provisioning has started/)).toBeTruthy();
    await waitFor(() => expect(send).not.toBeNull());
    send?.("store", { ...store, status: "ready", progress: { type: "store_ready", message: "the store is ready", at: store.created_at } });
    await waitFor(() => expect(screen.queryByText(/provisioning has started/)).toBeNull());
  });

  it("labels an event type it does not know by its name", async () => {
    const store = aStore();
    show(store);
    await waitFor(() => expect(send).not.toBeNull());
    send?.("store_event", { id: 9, type: "quota_warning", message: "near the quota", created_at: store.created_at });
    const item = await screen.findByText("near the quota");
    expect(item.closest("li")?.querySelector(".event-type")?.textContent).toBe("quota warning");
  });
});
