// The create page against recorded API answers: the engines and WooCommerce's schema as
// `getBlueprint` serves them, and a 422 problem shaped exactly like the server's (the
// end-to-end tests check the same against the real server).
import { cleanup, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { blueprintSchema } from "../test/blueprints";
import { CreateStore } from "./CreateStore";

const requests: { method: string; path: string; body: unknown }[] = [];
let createAnswer: { status: number; body: unknown } = { status: 500, body: {} };

function json(status: number, body: unknown, type = "application/json"): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": type } });
}

async function fakeApi(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const req = input instanceof Request ? input : new Request(input, init);
  const path = new URL(req.url).pathname;
  const body = req.method === "POST" ? await req.json() : undefined;
  requests.push({ method: req.method, path, body });
  if (path === "/api/blueprints") {
    return json(200, [
      { engine: "medusa", version: "1.0.0", description: "Medusa", plans: ["small"] },
      { engine: "woocommerce", version: "1.0.0", description: "WordPress with WooCommerce", plans: ["small", "medium", "large"] },
    ]);
  }
  if (path === "/api/blueprints/woocommerce") {
    return json(200, {
      engine: "woocommerce",
      version: "1.0.0",
      description: "WordPress with WooCommerce",
      plans: ["small", "medium", "large"],
      parameters: blueprintSchema("woocommerce"),
    });
  }
  if (path === "/api/stores" && req.method === "POST") {
    return json(createAnswer.status, createAnswer.body, "application/problem+json");
  }
  return json(404, { type: "about:blank", title: "Not found", status: 404, detail: path });
}

beforeEach(() => {
  requests.length = 0;
  vi.spyOn(globalThis, "fetch").mockImplementation(fakeApi);
});
afterEach(cleanup);

async function fillAndSubmit() {
  const user = userEvent.setup();
  render(<CreateStore />);
  const db = await screen.findByLabelText("Database volume");
  await user.type(screen.getByLabelText(/Store name/), "Bad Name");
  await user.clear(db);
  await user.type(db, "5X");
  await user.click(screen.getByRole("button", { name: "Create store" }));
}

describe("CreateStore", () => {
  it("posts the name, the chosen engine and only the changed params", async () => {
    createAnswer = { status: 409, body: { type: "https://storeplane.dev/problems/duplicate-name", title: "Conflict", status: 409, detail: "you already have a store named `bad`" } };
    await fillAndSubmit();
    await waitFor(() => expect(requests.some((r) => r.method === "POST")).toBe(true));
    const post = requests.find((r) => r.method === "POST");
    expect(post?.body).toEqual({ name: "Bad Name", engine: "woocommerce", params: { storage: { database: "5X" } } });
    // A duplicate name is about the name: it is shown there.
    const name = screen.getByLabelText(/Store name/);
    await waitFor(() => expect(name.getAttribute("aria-invalid")).toBe("true"));
    expect(document.getElementById("store-name-error")?.textContent).toContain("you already have a store named `bad`");
  });

  it("shows each refused field's message at the field and every message, placed or not, in a focused summary", async () => {
    createAnswer = {
      status: 422,
      body: {
        type: "https://storeplane.dev/problems/validation-failed",
        title: "The request is invalid",
        status: 422,
        detail: "3 fields were refused; see `errors`",
        errors: [
          { field: "name", message: "contains 'B'; use only lowercase letters a-z, digits 0-9 and '-'" },
          { field: "params/storage/database", message: '"5X" does not match "^[1-9][0-9]{0,5}(Mi|Gi|Ti)$"' },
          { field: "params/extra", message: "unknown parameter `extra`" },
        ],
      },
    };
    await fillAndSubmit();
    const summary = await screen.findByRole("alert");
    expect(summary.textContent).toContain("There are 3 problems with the store");
    expect(within(summary).getByText(/unknown parameter `extra`/).textContent).toContain("params/extra");
    await waitFor(() => expect(document.activeElement).toBe(summary));

    const name = screen.getByLabelText(/Store name/);
    expect(name.getAttribute("aria-invalid")).toBe("true");
    expect(document.getElementById("store-name-error")?.textContent).toContain("contains 'B'");
    const db = screen.getByLabelText("Database volume");
    expect(db.getAttribute("aria-invalid")).toBe("true");
    expect(db.getAttribute("aria-describedby")).toContain(`${db.id}-error`);
    expect(document.getElementById(`${db.id}-error`)?.textContent).toContain('"5X" does not match');

    // The summary links to the field.
    await userEvent.setup().click(within(summary).getByRole("link", { name: /Database volume/ }));
    expect(document.activeElement).toBe(db);
  });

  it("clears a failed engine load once another engine's settings load", async () => {
    const user = userEvent.setup();
    render(<CreateStore />);
    await screen.findByLabelText("Database volume");
    // The fake server has no Medusa blueprint: its settings cannot be loaded.
    await user.click(screen.getByLabelText("Medusa"));
    expect(await screen.findByText("Could not load the engines")).toBeTruthy();
    await user.click(screen.getByLabelText("WooCommerce"));
    await screen.findByLabelText("Database volume");
    expect(screen.queryByText("Could not load the engines")).toBeNull();
  });
});
