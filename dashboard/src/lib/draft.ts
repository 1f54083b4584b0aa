// The new-store form's draft, kept in sessionStorage as the person edits, so that a form
// filled in and submitted after the session expired (a 401 sends them to sign-in) is
// still there when they come back — and after a reload of the tab. Only the name, the
// engine and the parameters' values: never a secret parameter (`format: password` or
// `writeOnly`). Cleared after a successful create, on Cancel or Start over, on
// sign-out, and when another account signs in in the tab (a draft names its account).
import { fieldsOf, initialValues, isSecret, leaves, type FormValues, type JsonSchema } from "./jsonSchema";

const KEY = "storeplane.draft.new-store";

export interface Draft {
  name: string;
  engine: string;
  values: FormValues;
  /** The id of the account that wrote it. */
  owner?: string;
}

export function readDraft(): Draft | null {
  try {
    const raw = globalThis.sessionStorage?.getItem(KEY);
    if (!raw) return null;
    const d = JSON.parse(raw) as Partial<Draft>;
    if (typeof d.name !== "string" || typeof d.engine !== "string" || typeof d.values !== "object" || !d.values) {
      return null;
    }
    return d as Draft;
  } catch {
    return null;
  }
}

export function saveDraft(draft: Draft): void {
  try {
    sessionStorage.setItem(KEY, JSON.stringify(draft));
  } catch {
    // Storage may be unavailable or full: the form simply has no draft.
  }
}

export function clearDraft(): void {
  try {
    globalThis.sessionStorage?.removeItem(KEY);
  } catch {
    // As above.
  }
}

/** The values worth keeping: every field of `schema` except its secrets. */
export function keptValues(schema: JsonSchema, values: FormValues): FormValues {
  const out: FormValues = {};
  for (const f of leaves(fieldsOf(schema))) {
    const v = values[f.pointer];
    if (v !== undefined && !isSecret(f.schema)) out[f.pointer] = v;
  }
  return out;
}

/** The form's starting values with a draft's laid over them: only fields the schema still
 * has, holding the same kind of value, and never a secret. */
export function restoredValues(schema: JsonSchema, saved: FormValues): FormValues {
  const values = initialValues(schema);
  for (const [pointer, v] of Object.entries(keptValues(schema, saved))) {
    if (typeof v === typeof values[pointer]) values[pointer] = v;
  }
  return values;
}
