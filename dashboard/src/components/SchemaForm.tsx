// Form fields built from a blueprint's parameter JSON Schema: a fieldset per object
// (its title as the legend, its description below), one labelled control per leaf with
// the schema's description as help, its constraints as hints, its default pre-filled,
// and the API's message for it when the last attempt was refused.
//
// Validation is the API's: the form sends what was typed and shows what the API says,
// so the browser and the server never disagree about a rule.
import type { ChangeEvent } from "react";
import {
  fieldsOf,
  hints,
  type Field,
  type FormValue,
  type FormValues,
  type JsonSchema,
  type LeafField,
} from "../lib/jsonSchema";
import { FieldShell } from "./FieldShell";

export interface SchemaFormProps {
  schema: JsonSchema;
  values: FormValues;
  onChange: (pointer: string, value: FormValue) => void;
  /** Messages by field pointer (`storage/database`). */
  errors?: Record<string, string>;
  /** Prefix of the controls' ids, unique on the page. */
  idPrefix?: string;
  disabled?: boolean;
}

/** A control's id: the pointer with `/` as `-`, `_` as `__` and any other character but
 * letters and digits as `_<hex code>_`, so no two parameters (`a/b`, `a-b`, `a_b`) share
 * one, and the id needs no escaping in a CSS selector. */
export function fieldId(prefix: string, pointer: string): string {
  const encoded = pointer.replace(/[^A-Za-z0-9]/gu, (c) =>
    c === "/" ? "-" : c === "_" ? "__" : `_${(c.codePointAt(0) ?? 0).toString(16)}_`,
  );
  return `${prefix}-${encoded}`;
}

function label(field: Field): string {
  return field.schema.title ?? field.name;
}

interface LeafProps {
  field: LeafField;
  id: string;
  value: FormValue | undefined;
  error: string | undefined;
  disabled: boolean;
  onChange: (pointer: string, value: FormValue) => void;
}

function Leaf({ field, id, value, error, disabled, onChange }: LeafProps) {
  const { schema } = field;
  const text = typeof value === "string" ? value : "";
  const change = (e: ChangeEvent<HTMLInputElement | HTMLSelectElement>) =>
    onChange(field.pointer, e.target instanceof HTMLInputElement && e.target.type === "checkbox" ? e.target.checked : e.target.value);
  const common = { name: `params.${field.pointer}`, disabled, onChange: change };
  const shell = { id, label: label(field), help: schema.description, error, required: field.required };

  switch (field.kind) {
    case "checkbox":
      return (
        <FieldShell {...shell} inline>
          <input type="checkbox" checked={value === true} {...common} />
        </FieldShell>
      );
    case "select": {
      const options = (schema.enum ?? []).map(String);
      return (
        <FieldShell {...shell}>
          <select value={text} {...common}>
            {options.includes(text) ? null : <option value={text}>{text ? text : "Choose…"}</option>}
            {options.map((o) => (
              <option key={o} value={o}>
                {o}
              </option>
            ))}
          </select>
        </FieldShell>
      );
    }
    case "integer":
    case "number":
      return (
        <FieldShell {...shell} hints={hints(schema)}>
          <input
            type="text"
            inputMode={field.kind === "integer" ? "numeric" : "decimal"}
            autoComplete="off"
            value={text}
            {...common}
          />
        </FieldShell>
      );
    case "email":
    case "text":
      return (
        <FieldShell {...shell} hints={hints(schema)} pattern={schema.pattern}>
          <input
            type={field.kind === "email" ? "email" : "text"}
            autoComplete={field.kind === "email" ? "email" : "off"}
            spellCheck={false}
            maxLength={schema.maxLength}
            value={text}
            {...common}
          />
        </FieldShell>
      );
    case "unsupported":
      return (
        <div className="field">
          <p className="field-label">{label(field)}</p>
          <p className="field-help">{schema.description}</p>
          <p className="field-hints">Not editable here: the blueprint's default applies.</p>
        </div>
      );
  }
}

function Fields({ fields, props }: { fields: Field[]; props: SchemaFormProps }) {
  const prefix = props.idPrefix ?? "param";
  return (
    <>
      {fields.map((f) =>
        f.kind === "group" ? (
          <fieldset
            key={f.pointer}
            className="group"
            aria-describedby={f.schema.description ? `${fieldId(prefix, f.pointer)}-help` : undefined}
          >
            <legend>{label(f)}</legend>
            {f.schema.description ? (
              <p id={`${fieldId(prefix, f.pointer)}-help`} className="group-help">
                {f.schema.description}
              </p>
            ) : null}
            <Fields fields={f.children} props={props} />
          </fieldset>
        ) : (
          <Leaf
            key={f.pointer}
            field={f}
            id={fieldId(prefix, f.pointer)}
            value={props.values[f.pointer]}
            error={props.errors?.[f.pointer]}
            disabled={props.disabled ?? false}
            onChange={props.onChange}
          />
        ),
      )}
    </>
  );
}

export function SchemaForm(props: SchemaFormProps) {
  return <Fields fields={fieldsOf(props.schema)} props={props} />;
}
