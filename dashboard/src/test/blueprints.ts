// The real parameter schemas of the built-in blueprints, read from templates/*/blueprint.yaml
// (what `getBlueprint` serves), so the form is tested on what it will really be given.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import type { JsonSchema } from "../lib/jsonSchema";

export function blueprintSchema(engine: string): JsonSchema {
  const here = dirname(fileURLToPath(import.meta.url));
  const path = join(here, "..", "..", "..", "templates", engine, "blueprint.yaml");
  const doc = parse(readFileSync(path, "utf8")) as { parameters: JsonSchema };
  return doc.parameters;
}

/** A schema with every kind of field the form supports, beyond what the blueprints use. */
export const KITCHEN_SINK: JsonSchema = {
  type: "object",
  title: "Test store",
  properties: {
    plan: { title: "Plan", type: "string", enum: ["small", "medium", "large"], default: "small" },
    contact: { title: "Contact", description: "Who hears about outages.", type: "string", format: "email" },
    replicas: { title: "Replicas", type: "integer", minimum: 1, maximum: 10, default: 2 },
    ratio: { title: "Cache ratio", type: "number", exclusiveMinimum: 0, maximum: 1 },
    debug: { title: "Debug logging", description: "Verbose logs.", type: "boolean", default: false },
    backups: { title: "Backups", type: "boolean", default: true },
    tags: { title: "Tags", type: "array" },
    storage: {
      title: "Storage",
      description: "Volume sizes.",
      type: "object",
      required: ["database"],
      properties: {
        database: { title: "Database volume", type: "string", pattern: "^[1-9][0-9]*Gi$", default: "5Gi" },
        cache: {
          title: "Cache",
          type: "object",
          properties: { size: { title: "Cache size", type: "string", maxLength: 8 } },
        },
      },
    },
  },
};
