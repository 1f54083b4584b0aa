import { describe, expect, it } from "vitest";
import { blueprintSchema, KITCHEN_SINK } from "../test/blueprints";
import { fieldsOf, hints, initialValues, leaves, routeErrors, toParams } from "./jsonSchema";

describe("fieldsOf", () => {
  it("maps each schema type to its kind of control, nesting objects as groups", () => {
    const fields = fieldsOf(KITCHEN_SINK);
    const kinds = Object.fromEntries(leaves(fields).map((f) => [f.pointer, f.kind]));
    expect(kinds).toEqual({
      plan: "select",
      contact: "email",
      replicas: "integer",
      ratio: "number",
      debug: "checkbox",
      backups: "checkbox",
      tags: "unsupported",
      "storage/database": "text",
      "storage/cache/size": "text",
    });
    const storage = fields.find((f) => f.name === "storage");
    expect(storage?.kind).toBe("group");
    expect(leaves(fields).find((f) => f.pointer === "storage/database")?.required).toBe(true);
  });

  it("covers every parameter of the built-in blueprints with an editable control", () => {
    for (const engine of ["woocommerce", "medusa"]) {
      const all = leaves(fieldsOf(blueprintSchema(engine)));
      expect(all.length).toBeGreaterThan(5);
      expect(all.filter((f) => f.kind === "unsupported")).toEqual([]);
    }
  });
});

describe("initialValues and toParams", () => {
  it("pre-fills defaults and sends nothing when nothing changed", () => {
    const schema = blueprintSchema("woocommerce");
    const values = initialValues(schema);
    expect(values).toMatchObject({ plan: "small", title: "My Store", "storage/database": "5Gi", domain: "" });
    expect(toParams(schema, values)).toEqual({});
  });

  it("sends only the changed values, nested by their pointer", () => {
    const schema = blueprintSchema("woocommerce");
    const values = { ...initialValues(schema), plan: "large", "storage/database": "20Gi" };
    expect(toParams(schema, values)).toEqual({ plan: "large", storage: { database: "20Gi" } });
  });

  it("types numbers and booleans, and sends unparseable numbers as typed for the API to refuse", () => {
    const values = { ...initialValues(KITCHEN_SINK), replicas: "3", ratio: "0.5", debug: true, backups: false };
    expect(toParams(KITCHEN_SINK, values)).toEqual({ replicas: 3, ratio: 0.5, debug: true, backups: false });
    expect(toParams(KITCHEN_SINK, { ...values, replicas: "three" })).toMatchObject({ replicas: "three" });
  });

  it("leaves out empty optional fields without a default, and a value set back to its default", () => {
    const values = { ...initialValues(KITCHEN_SINK), contact: "", "storage/cache/size": "", replicas: "2" };
    expect(toParams(KITCHEN_SINK, values)).toEqual({});
  });

  it("leaves out an emptied optional number that has a default: the default applies", () => {
    const values = { ...initialValues(KITCHEN_SINK), replicas: "", ratio: " " };
    expect(toParams(KITCHEN_SINK, values)).toEqual({});
  });

  it("sends an emptied required field, so the API names it", () => {
    const values = { ...initialValues(KITCHEN_SINK), "storage/database": "" };
    expect(toParams(KITCHEN_SINK, values)).toEqual({ storage: { database: "" } });
  });
});

describe("hints", () => {
  it("describes lengths and numeric ranges in words", () => {
    expect(hints({ type: "string", minLength: 1, maxLength: 200 })).toEqual(["1 to 200 characters"]);
    expect(hints({ type: "string", maxLength: 253 })).toEqual(["At most 253 characters"]);
    expect(hints({ type: "integer", minimum: 1, maximum: 10 })).toEqual(["A whole number from 1 to 10"]);
    expect(hints({ type: "number", exclusiveMinimum: 0 })).toEqual(["A number, above 0"]);
  });
});

describe("routeErrors", () => {
  it("places the API's errors on known fields and keeps the rest for the summary", () => {
    const { byField, unplaced } = routeErrors(
      [
        { field: "name", message: "contains 'B'" },
        { field: "params/storage/database", message: "does not match" },
        { field: "params/foo", message: "unknown parameter `foo`" },
      ],
      new Set(["name", "engine", "params/storage/database"]),
    );
    expect(byField).toEqual({ name: "contains 'B'", "params/storage/database": "does not match" });
    expect(unplaced).toEqual([{ field: "params/foo", message: "unknown parameter `foo`" }]);
  });
});
