// The part of JSON Schema (draft 2020-12) the blueprints' parameter schemas use, turned
// into form fields: objects become groups, strings text/email inputs or selects (enum),
// integers and numbers numeric inputs, booleans checkboxes. Field values are kept as the
// form holds them (strings and booleans) under the JSON pointer of the parameter, e.g.
// `storage/database`; `toParams` turns them back into the `params` object, keeping only
// values that differ from the schema's defaults (the blueprint applies its defaults to
// the rest, so a store records only what its owner chose).

export interface JsonSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  multipleOf?: number;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  readOnly?: boolean;
  writeOnly?: boolean;
  deprecated?: boolean;
}

/** A secret (`format: password` or `writeOnly`): never kept anywhere but the form. */
export function isSecret(schema: JsonSchema): boolean {
  return schema.format === "password" || schema.writeOnly === true;
}

export type FieldKind = "text" | "email" | "select" | "integer" | "number" | "checkbox" | "unsupported";

export interface LeafField {
  kind: FieldKind;
  /** JSON pointer below `params`, without the leading slash: `storage/database`. */
  pointer: string;
  name: string;
  schema: JsonSchema;
  required: boolean;
}

export interface GroupField {
  kind: "group";
  pointer: string;
  name: string;
  schema: JsonSchema;
  children: Field[];
}

export type Field = LeafField | GroupField;

/** What a form input holds: text for text-like fields, a flag for checkboxes. */
export type FormValue = string | boolean;
export type FormValues = Record<string, FormValue>;

function escapeSegment(s: string): string {
  return s.replace(/~/g, "~0").replace(/\//g, "~1");
}

export function join(parent: string, name: string): string {
  return parent ? `${parent}/${escapeSegment(name)}` : escapeSegment(name);
}

export function typeOf(schema: JsonSchema): string | undefined {
  if (Array.isArray(schema.type)) return schema.type.find((t) => t !== "null");
  if (schema.type) return schema.type;
  if (schema.properties) return "object";
  if (schema.enum) return "string";
  return undefined;
}

function kindOf(schema: JsonSchema): FieldKind {
  const t = typeOf(schema);
  if (schema.enum && schema.enum.length > 0 && (t === "string" || t === "integer" || t === "number")) return "select";
  switch (t) {
    case "string":
      return schema.format === "email" ? "email" : "text";
    case "integer":
      return "integer";
    case "number":
      return "number";
    case "boolean":
      return "checkbox";
    default:
      return "unsupported";
  }
}

/** The fields of an object schema, in the schema's property order. */
export function fieldsOf(schema: JsonSchema, parent = ""): Field[] {
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties ?? {})
    .filter(([, s]) => !s.readOnly)
    .map(([name, s]): Field => {
      const pointer = join(parent, name);
      if (typeOf(s) === "object" && s.properties) {
        return { kind: "group", pointer, name, schema: s, children: fieldsOf(s, pointer) };
      }
      return { kind: kindOf(s), pointer, name, schema: s, required: required.has(name) };
    });
}

export function leaves(fields: Field[]): LeafField[] {
  return fields.flatMap((f) => (f.kind === "group" ? leaves(f.children) : [f]));
}

/** A schema default as the form shows it. */
function formValue(field: LeafField, value: unknown): FormValue {
  if (field.kind === "checkbox") return value === true;
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : String(value);
}

/**
 * The default of a leaf: its own `default`, else what its enclosing objects' defaults
 * say for it.
 */
function defaultOf(root: JsonSchema, pointer: string): unknown {
  let schema: JsonSchema | undefined = root;
  let inherited: unknown = root.default;
  for (const raw of pointer.split("/")) {
    const seg = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    schema = schema?.properties?.[seg];
    inherited =
      typeof inherited === "object" && inherited !== null ? (inherited as Record<string, unknown>)[seg] : undefined;
    if (schema?.default !== undefined) inherited = schema.default;
  }
  return inherited;
}

/** Every field's starting value: its default, or empty. */
export function initialValues(schema: JsonSchema): FormValues {
  const values: FormValues = {};
  for (const f of leaves(fieldsOf(schema))) values[f.pointer] = formValue(f, defaultOf(schema, f.pointer));
  return values;
}

/**
 * The typed value a field's text stands for. Numbers that do not parse are sent as they
 * are typed, so the API's own message explains what is wrong with them.
 */
function isNumeric(field: LeafField): boolean {
  const t = typeOf(field.schema);
  return t === "integer" || t === "number";
}

function typed(field: LeafField, value: FormValue): unknown {
  if (typeof value === "boolean") return value;
  if (isNumeric(field) && value.trim() !== "") {
    const n = Number(value.trim());
    return Number.isFinite(n) ? n : value;
  }
  return value;
}

function setAt(target: Record<string, unknown>, pointer: string, value: unknown): void {
  const segs = pointer.split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  let obj = target;
  segs.slice(0, -1).forEach((s) => {
    const next = obj[s];
    if (typeof next !== "object" || next === null) obj[s] = {};
    obj = obj[s] as Record<string, unknown>;
  });
  obj[segs[segs.length - 1] ?? ""] = value;
}

/**
 * The `params` to send: each field whose value differs from its default. An empty text
 * field without a default, and an emptied number field, are left out (the parameter is
 * not set); a required one is sent empty so the API names it.
 */
export function toParams(schema: JsonSchema, values: FormValues): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const f of leaves(fieldsOf(schema))) {
    if (f.kind === "unsupported") continue;
    const value = values[f.pointer];
    if (value === undefined) continue;
    const def = defaultOf(schema, f.pointer);
    if (value === formValue(f, def)) continue;
    if (value === "" && def === undefined && !f.required) continue;
    // An emptied optional number is not set: its default applies (text would be refused).
    if (isNumeric(f) && typeof value === "string" && value.trim() === "" && !f.required) continue;
    if (value === false && def === undefined) continue;
    setAt(params, f.pointer, typed(f, value));
  }
  return params;
}

/** Short human hints for a field's constraints: lengths, ranges, the pattern. */
export function hints(schema: JsonSchema): string[] {
  const out: string[] = [];
  const { minLength, maxLength, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf } = schema;
  if (minLength !== undefined && maxLength !== undefined) out.push(`${minLength} to ${maxLength} characters`);
  else if (maxLength !== undefined) out.push(`At most ${maxLength} characters`);
  else if (minLength !== undefined && minLength > 0) out.push(`At least ${minLength} characters`);
  const t = typeOf(schema);
  if (t === "integer" || t === "number") {
    const what = t === "integer" ? "A whole number" : "A number";
    const lower = minimum !== undefined ? `at least ${minimum}` : exclusiveMinimum !== undefined ? `above ${exclusiveMinimum}` : null;
    const upper = maximum !== undefined ? `at most ${maximum}` : exclusiveMaximum !== undefined ? `below ${exclusiveMaximum}` : null;
    if (minimum !== undefined && maximum !== undefined) out.push(`${what} from ${minimum} to ${maximum}`);
    else if (lower || upper) out.push(`${what}, ${[lower, upper].filter(Boolean).join(" and ")}`);
    else out.push(what);
    if (multipleOf !== undefined) out.push(`in steps of ${multipleOf}`);
  }
  return out;
}

/**
 * Splits the API's field errors (`errors[].field`: `name`, `engine`,
 * `params/storage/database`) into the ones a field of the form can show and the rest.
 */
export function routeErrors(
  errors: { field: string; message: string }[],
  known: Set<string>,
): { byField: Record<string, string>; unplaced: { field: string; message: string }[] } {
  const byField: Record<string, string> = {};
  const unplaced: { field: string; message: string }[] = [];
  for (const e of errors) {
    if (known.has(e.field)) byField[e.field] = byField[e.field] ? `${byField[e.field]} ${e.message}` : e.message;
    else unplaced.push(e);
  }
  return { byField, unplaced };
}
