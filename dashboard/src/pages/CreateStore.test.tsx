// The create page against recorded API answers: the engines and WooCommerce's schema as
// `getBlueprint` serves them, and a 422 problem shaped exactly like the server's (the
// end-to-end tests check the same against the real server). Also the draft kept in
// sessionStorage across an expired session.
import { cleanup, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { keptValues } from "../lib/draft";
import { initialValues, type JsonSchema } from "../lib/jsonSchema";
import { blueprintSchema } from "../test/blueprints";
import { CreateStore } from "./CreateStore";

const requests: { method: string; path: string; body: unknown }[] = [];
let createAnswer: { status: number; body: unknown } = { status: 500, body: {} };
let wooParams: JsonSchema = blueprintSchema("woocommerce");
// How many of the next requests for the engine list, and for WooCommerce's settings, fail (503).
let listFailures = 0;
let wooFailures = 0;

function json(status: number, body: unknown, type = "application/json"): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": type } });
}

function unavailable(): Response {
  return json(503, { type: "https://storeplane.dev/problems/unavailable", title: "Service Unavailable", status: 503, detail: "the database is unavailable; retry shortly", errors: [] }, "application/problem+json");
}

async function fakeApi(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const req = input instanceof Request ? input : new Request(input, init);
  const path = new URL(req.url).pathname;
  const body = req.method === "POST" ? await req.json() : undefined;
  requests.push({ method: req.method, path, body });
  if (path === "/api/blueprints") {
    if (listFailures > 0) {
      listFailures--;
      return unavailable();
    }
    return json(200, [
      { engine: "medusa", version: "1.0.0", description: "Medusa", plans: ["small"] },
      { engine: "woocommerce", version: "1.0.0", description: "WordPress with WooCommerce", plans: ["small", "medium", "large"] },
    ]);
  }
  if (path === "/api/blueprints/woocommerce") {
    if (wooFailures > 0) {
      wooFailures--;
      return unavailable();
    }
    return json(200, {
      engine: "woocommerce",
      version: "1.0.0",
      description: "WordPress with WooCommerce",
      plans: ["small", "medium", "large"],
      parameters: wooParams,
    });
  }
  if (path === "/api/stores" && req.method === "POST") {
    const ok = createAnswer.status < 300;
    return json(createAnswer.status, createAnswer.body, ok ? "application/json" : "application/problem+json");
  }
  return json(404, { type: "about:blank", title: "Not found", status: 404, detail: path });
}

beforeEach(() => {
  requests.length = 0;
  listFailures = 0;
  wooFailures = 0;
  wooParams = blueprintSchema("woocommerce");
  sessionStorage.clear();
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
    // Named by its heading and announced by taking focus, not also as an alert (read twice).
    const summary = await screen.findByRole("group", { name: "There are 3 problems with the store" });
    expect(within(summary).getByRole("heading", { name: "There are 3 problems with the store" })).toBeTruthy();
    expect(screen.queryByRole("alert")).toBeNull();
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

  it("clears a failed settings load once another engine's settings load", async () => {
    const user = userEvent.setup();
    render(<CreateStore />);
    await screen.findByLabelText("Database volume");
    // The fake server has no Medusa blueprint: its settings cannot be loaded.
    await user.click(screen.getByLabelText("Medusa"));
    expect(await screen.findByText("Could not load the Medusa settings")).toBeTruthy();
    // Not "the engines": the list loaded. And not still "loading" either.
    expect(screen.queryByText("Could not load the engines")).toBeNull();
    expect(screen.queryByText(/Loading Medusa settings/)).toBeNull();
    await user.click(screen.getByLabelText("WooCommerce"));
    await screen.findByLabelText("Database volume");
    expect(screen.queryByText("Could not load the Medusa settings")).toBeNull();
  });

  it("offers to try again after the engine list failed to load, without also saying it is loading", async () => {
    listFailures = 1;
    const user = userEvent.setup();
    render(<CreateStore />);
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("Could not load the engines");
    expect(alert.textContent).toContain("the database is unavailable");
    expect(screen.queryByText("Loading engines…")).toBeNull();
    expect(screen.getByRole("button", { name: "Create store" })).toHaveProperty("disabled", true);

    await user.click(within(alert).getByRole("button", { name: "Try again" }));
    await screen.findByLabelText("Database volume");
    expect(screen.queryByRole("alert")).toBeNull();
    expect(screen.getByRole("button", { name: "Create store" })).toHaveProperty("disabled", false);
    expect(requests.filter((r) => r.path === "/api/blueprints")).toHaveLength(2);
  });

  it("offers to try again after an engine's settings failed to load", async () => {
    wooFailures = 1;
    const user = userEvent.setup();
    render(<CreateStore />);
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("Could not load the WooCommerce settings");
    expect(screen.queryByText(/Loading WooCommerce settings/)).toBeNull();
    // The engines themselves loaded.
    expect(screen.getByLabelText<HTMLInputElement>("WooCommerce").checked).toBe(true);

    await user.click(within(alert).getByRole("button", { name: "Try again" }));
    await screen.findByLabelText("Database volume");
    expect(screen.queryByRole("alert")).toBeNull();
    expect(screen.getByRole("button", { name: "Create store" })).toHaveProperty("disabled", false);
    expect(requests.filter((r) => r.path === "/api/blueprints")).toHaveLength(1);
  });

  it("lists a refused parameter the form has no control for (an array) without a link to nowhere", async () => {
    wooParams = { ...wooParams, properties: { ...wooParams.properties, tags: { title: "Tags", type: "array" } } };
    createAnswer = {
      status: 422,
      body: {
        type: "https://storeplane.dev/problems/validation-failed",
        title: "The request is invalid",
        status: 422,
        detail: "1 field was refused; see `errors`",
        errors: [{ field: "params/tags", message: "must be an array of strings" }],
      },
    };
    const user = userEvent.setup();
    render(<CreateStore />);
    await screen.findByLabelText("Database volume");
    await user.type(screen.getByLabelText(/Store name/), "shop");
    await user.click(screen.getByRole("button", { name: "Create store" }));
    const summary = await screen.findByRole("group", { name: "There is a problem with the store" });
    expect(summary.textContent).toContain("params/tags: must be an array of strings");
    expect(within(summary).queryByRole("link")).toBeNull();
  });
});

/** Everything in sessionStorage, to look for what must not be there. */
function stored(): string {
  let out = "";
  for (let i = 0; i < sessionStorage.length; i++) out += `${sessionStorage.key(i)}=${sessionStorage.getItem(sessionStorage.key(i) ?? "")}\n`;
  return out;
}

const RESTORED = /What you entered before has been restored/;

describe("CreateStore's draft", () => {
  async function fillIn() {
    const user = userEvent.setup();
    const view = render(<CreateStore />);
    const db = await screen.findByLabelText("Database volume");
    await user.type(screen.getByLabelText(/Store name/), "my-shop");
    await user.clear(db);
    await user.type(db, "20Gi");
    return { user, view };
  }

  it("survives a submit refused with 401 (the session expired) and is restored, with a notice", async () => {
    createAnswer = { status: 401, body: { type: "about:blank", title: "Unauthorized", status: 401, detail: "the token has expired" } };
    const { user, view } = await fillIn();
    expect(screen.queryByText(RESTORED)).toBeNull();
    await user.click(screen.getByRole("button", { name: "Create store" }));
    await waitFor(() => expect(requests.some((r) => r.method === "POST")).toBe(true));
    // The app swaps in sign-in; after signing in the page is mounted afresh.
    view.unmount();
    render(<CreateStore />);
    const db = await screen.findByLabelText<HTMLInputElement>("Database volume");
    await waitFor(() => expect(db.value).toBe("20Gi"));
    expect(screen.getByLabelText<HTMLInputElement>(/Store name/).value).toBe("my-shop");
    expect(screen.getByLabelText<HTMLInputElement>("WooCommerce").checked).toBe(true);
    expect(screen.getByText(RESTORED)).toBeTruthy();

    // Created: the draft is gone.
    createAnswer = { status: 201, body: { id: "0190a4c2-0000-7000-8000-000000000001", name: "my-shop" } };
    await user.click(screen.getByRole("button", { name: "Create store" }));
    await waitFor(() => expect(location.pathname).toBe("/stores/0190a4c2-0000-7000-8000-000000000001"));
    expect(stored()).toBe("");
  });

  it("is forgotten on Cancel and on Start over", async () => {
    const { user, view } = await fillIn();
    expect(stored()).toContain("20Gi");
    await user.click(screen.getByRole("link", { name: "Cancel" }));
    expect(stored()).toBe("");
    view.unmount();

    const again = await fillIn();
    again.view.unmount();
    render(<CreateStore />);
    await waitFor(() => expect(screen.getByLabelText<HTMLInputElement>("Database volume").value).toBe("20Gi"));
    await user.click(screen.getByRole("button", { name: "Start over" }));
    expect(stored()).toBe("");
    expect(screen.queryByText(RESTORED)).toBeNull();
    // The button left with the notice; focus went on to the first field, not to <body>.
    expect(document.activeElement?.id).toBe("store-name");
    expect(screen.getByLabelText<HTMLInputElement>(/Store name/).value).toBe("");
    expect(screen.getByLabelText<HTMLInputElement>("Database volume").value).not.toBe("20Gi");
  });

  it("never keeps a secret parameter (format: password, or writeOnly)", async () => {
    wooParams = {
      ...wooParams,
      properties: {
        ...wooParams.properties,
        api_key: { title: "API key", type: "string", format: "password" },
        hook_token: { title: "Webhook token", type: "string", writeOnly: true },
      },
    };
    const { user, view } = await fillIn();
    await user.type(screen.getByLabelText("API key"), "sk-live-123");
    await user.type(screen.getByLabelText("Webhook token"), "whsec-456");
    expect(stored()).toContain("20Gi");
    expect(stored()).not.toContain("sk-live-123");
    expect(stored()).not.toContain("whsec-456");
    view.unmount();
    render(<CreateStore />);
    await waitFor(() => expect(screen.getByLabelText<HTMLInputElement>("Database volume").value).toBe("20Gi"));
    expect(screen.getByLabelText<HTMLInputElement>("API key").value).toBe("");
    expect(screen.getByLabelText<HTMLInputElement>("Webhook token").value).toBe("");
  });

  // Secrets are generated by the blueprints, never asked for; a secret parameter would need
  // more than leaving it out of the draft (the form shows text fields in clear).
  it("keeps every parameter of the built-in blueprints: none is a secret", () => {
    for (const engine of ["woocommerce", "medusa"]) {
      const schema = blueprintSchema(engine);
      const all = initialValues(schema);
      expect(Object.keys(keptValues(schema, all))).toEqual(Object.keys(all));
    }
  });
});
