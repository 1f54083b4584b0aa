import { cleanup, render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { useState } from "react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { initialValues, toParams, type FormValues, type JsonSchema } from "../lib/jsonSchema";
import { blueprintSchema, KITCHEN_SINK } from "../test/blueprints";
import { SchemaForm, fieldId } from "./SchemaForm";

afterEach(cleanup);

/** The form as a page uses it: state held above it, params computed from it. */
function Harness({ schema, errors, onParams }: { schema: JsonSchema; errors?: Record<string, string>; onParams?: (p: unknown) => void }) {
  const [values, setValues] = useState<FormValues>(() => initialValues(schema));
  return (
    <form>
      <SchemaForm
        schema={schema}
        values={values}
        errors={errors}
        onChange={(pointer, value) => {
          const next = { ...values, [pointer]: value };
          setValues(next);
          onParams?.(toParams(schema, next));
        }}
      />
    </form>
  );
}

function describedText(el: HTMLElement): string {
  return (el.getAttribute("aria-describedby") ?? "")
    .split(" ")
    .filter(Boolean)
    .map((id) => document.getElementById(id)?.textContent ?? `<missing #${id}>`)
    .join(" | ");
}

describe("SchemaForm on the WooCommerce blueprint", () => {
  it("labels every field with its title, pre-fills its default and describes it", () => {
    render(<Harness schema={blueprintSchema("woocommerce")} />);
    const plan = screen.getByLabelText("Plan");
    expect(plan.tagName).toBe("SELECT");
    expect((plan as HTMLSelectElement).value).toBe("small");
    expect(within(plan).getAllByRole("option").map((o) => o.textContent)).toEqual(["small", "medium", "large"]);
    expect(describedText(plan)).toContain("Size of the store.");

    const title = screen.getByLabelText("Store title");
    expect((title as HTMLInputElement).value).toBe("My Store");
    expect(describedText(title)).toContain("1 to 200 characters");

    const domain = screen.getByLabelText("Domain") as HTMLInputElement;
    expect(domain.value).toBe("");
    expect(domain.maxLength).toBe(253);
    expect(describedText(domain)).toContain("Pattern:");
  });

  it("groups nested objects in fieldsets named by their title", () => {
    const schema = blueprintSchema("woocommerce");
    render(<Harness schema={schema} />);
    const storage = screen.getByRole("group", { name: "Storage" });
    expect(within(storage).getByLabelText("Database volume")).toHaveProperty("value", "5Gi");
    expect(within(storage).getByLabelText("Content volume")).toHaveProperty("value", "5Gi");
    expect(describedText(storage)).toContain("Volume sizes.");
    const images = screen.getByRole("group", { name: "Images" });
    // The blueprint's default, whichever MySQL version it pins.
    expect(within(images).getByLabelText("MySQL image")).toHaveProperty("value", initialValues(schema)["images/mysql"]);
    expect(initialValues(schema)["images/mysql"]).toMatch(/^mysql:/);
  });

  it("sends only what the person changed", async () => {
    const user = userEvent.setup();
    const onParams = vi.fn();
    render(<Harness schema={blueprintSchema("woocommerce")} onParams={onParams} />);
    await user.selectOptions(screen.getByLabelText("Plan"), "medium");
    const db = screen.getByLabelText("Database volume");
    await user.clear(db);
    await user.type(db, "10Gi");
    expect(onParams).toHaveBeenLastCalledWith({ plan: "medium", storage: { database: "10Gi" } });
    await user.selectOptions(screen.getByLabelText("Plan"), "small");
    expect(onParams).toHaveBeenLastCalledWith({ storage: { database: "10Gi" } });
  });

  it("shows the API's message at the field it names, marked invalid and read first", () => {
    render(
      <Harness
        schema={blueprintSchema("woocommerce")}
        errors={{ "storage/database": '"5X" does not match "^[1-9][0-9]{0,5}(Mi|Gi|Ti)$"' }}
      />,
    );
    const db = screen.getByLabelText("Database volume");
    expect(db.getAttribute("aria-invalid")).toBe("true");
    const first = (db.getAttribute("aria-describedby") ?? "").split(" ")[0] ?? "";
    expect(document.getElementById(first)?.textContent).toContain('"5X" does not match');
    expect(screen.getByLabelText("Content volume").getAttribute("aria-invalid")).toBeNull();
  });
});

describe("SchemaForm on every supported type", () => {
  it("renders email, numeric, checkbox and select controls with their hints", () => {
    render(<Harness schema={KITCHEN_SINK} />);
    expect(screen.getByLabelText("Contact")).toHaveProperty("type", "email");
    const replicas = screen.getByLabelText("Replicas") as HTMLInputElement;
    expect(replicas.inputMode).toBe("numeric");
    expect(replicas.value).toBe("2");
    expect(describedText(replicas)).toContain("A whole number from 1 to 10");
    expect(describedText(screen.getByLabelText("Cache ratio"))).toContain("A number, above 0 and at most 1");
    expect(screen.getByRole("checkbox", { name: "Debug logging" })).toHaveProperty("checked", false);
    expect(screen.getByRole("checkbox", { name: "Backups" })).toHaveProperty("checked", true);
    expect(screen.getByText("Not editable here: the blueprint's default applies.")).toBeTruthy();
    const cache = screen.getByRole("group", { name: "Cache" });
    expect(within(cache).getByLabelText("Cache size")).toHaveProperty("maxLength", 8);
    expect(screen.getByLabelText(/Database volume/).getAttribute("aria-required")).toBe("true");
  });

  it("turns typed numbers and ticked boxes into typed params", async () => {
    const user = userEvent.setup();
    const onParams = vi.fn();
    render(<Harness schema={KITCHEN_SINK} onParams={onParams} />);
    await user.click(screen.getByRole("checkbox", { name: "Debug logging" }));
    const replicas = screen.getByLabelText("Replicas");
    await user.clear(replicas);
    await user.type(replicas, "4");
    expect(onParams).toHaveBeenLastCalledWith({ debug: true, replicas: 4 });
    await user.click(screen.getByRole("checkbox", { name: "Backups" }));
    expect(onParams).toHaveBeenLastCalledWith({ debug: true, replicas: 4, backups: false });
  });

  it("every control has a unique id and a label", () => {
    const { container } = render(<Harness schema={KITCHEN_SINK} />);
    const controls = [...container.querySelectorAll("input, select")];
    const ids = controls.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const c of controls) expect(container.querySelector(`label[for="${c.id}"]`)).not.toBeNull();
  });

  it("gives parameters whose names differ only in punctuation ids of their own", () => {
    const schema: JsonSchema = {
      type: "object",
      properties: {
        a: { type: "object", properties: { b: { title: "Nested b", type: "string" } } },
        "a-b": { title: "Hyphenated", type: "string" },
        a_b: { title: "Underscored", type: "string" },
        "a.b": { title: "Dotted", type: "string" },
        "a/b": { title: "Slashed", type: "string" },
      },
    };
    const { container } = render(<Harness schema={schema} />);
    const ids = [...container.querySelectorAll("input")].map((c) => c.id);
    expect(ids).toHaveLength(5);
    expect(new Set(ids).size).toBe(5);
    expect(fieldId("param", "storage/database")).toBe("param-storage-database");
    // Safe in a CSS selector as it is (`#${id}-error`).
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
  });
});
