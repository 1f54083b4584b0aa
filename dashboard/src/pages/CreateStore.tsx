// The create-store form: a name, an engine, and the engine's parameters as fields built
// from its JSON Schema (`getBlueprint`). The API validates; what it refuses is shown at
// the field it names (`name`, `engine`, `params/storage/database`) and summarised at the
// top, with anything the form has no field for. What the person enters is kept as a draft
// (lib/draft.ts) until the store is created or they cancel, so an expired session or a
// reload does not throw it away.
import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { api, unwrap } from "../api/client";
import { ApiProblem, describe } from "../api/problem";
import type { Blueprint, BlueprintSummary } from "../api/types";
import { ErrorSummary, type SummaryItem } from "../components/ErrorSummary";
import { FieldShell } from "../components/FieldShell";
import { ErrorNotice, InfoNotice } from "../components/Notice";
import { Page } from "../components/Page";
import { SchemaForm, fieldId } from "../components/SchemaForm";
import {
  fieldsOf,
  initialValues,
  leaves,
  routeErrors,
  toParams,
  type FormValue,
  type FormValues,
  type JsonSchema,
} from "../lib/jsonSchema";
import * as session from "../api/session";
import { clearDraft, keptValues, readDraft, restoredValues, saveDraft } from "../lib/draft";
import { engineName } from "../lib/labels";
import { Link, navigate } from "../lib/router";

const PREFIX = "param";

interface Refusal {
  title: string;
  detail?: string;
  byField: Record<string, string>;
  items: SummaryItem[];
}

/** Every field the form has, by the API's name for it, with its label and control id. */
function knownFields(schema: JsonSchema | null): Map<string, { label: string; id: string }> {
  const known = new Map<string, { label: string; id: string }>([
    ["name", { label: "Store name", id: "store-name" }],
    ["engine", { label: "Engine", id: "engine-options" }],
  ]);
  if (schema) {
    for (const f of leaves(fieldsOf(schema))) {
      // An unsupported parameter (an array) has no control to show its message or link to.
      if (f.kind === "unsupported") continue;
      known.set(`params/${f.pointer}`, { label: f.schema.title ?? f.name, id: fieldId(PREFIX, f.pointer) });
    }
  }
  return known;
}

function refusal(err: unknown, schema: JsonSchema | null): Refusal {
  const known = knownFields(schema);
  if (!(err instanceof ApiProblem)) return { title: "Could not create the store", detail: describe(err), byField: {}, items: [] };
  const errors = [...err.errors];
  if (err.slug === "duplicate-name") errors.push({ field: "name", message: err.message });
  if (errors.length === 0) return { title: "Could not create the store", detail: err.message, byField: {}, items: [] };
  const { byField, unplaced } = routeErrors(errors, new Set(known.keys()));
  const items: SummaryItem[] = [
    ...Object.entries(byField).map(([field, message]) => {
      const k = known.get(field);
      return { label: k?.label ?? field, message, target: k?.id };
    }),
    ...unplaced.map((e) => ({ label: e.field || "Request", message: e.message })),
  ];
  const n = items.length;
  return { title: n === 1 ? "There is a problem with the store" : `There are ${n} problems with the store`, byField, items };
}

function EnginePicker({
  blueprints,
  value,
  error,
  onChange,
}: {
  blueprints: BlueprintSummary[];
  value: string;
  error: string | undefined;
  onChange: (engine: string) => void;
}) {
  return (
    <fieldset
      id="engine-options"
      className={`group engines${error ? " field-invalid" : ""}`}
      aria-invalid={error ? true : undefined}
      aria-describedby={error ? "engine-error" : undefined}
      tabIndex={-1}
    >
      <legend>Engine</legend>
      {error ? (
        <p id="engine-error" className="field-error">
          <span aria-hidden="true">⚠ </span>
          {error}
        </p>
      ) : null}
      {blueprints.map((b) => (
        <div className="engine" key={b.engine}>
          <input
            type="radio"
            id={`engine-${b.engine}`}
            name="engine"
            value={b.engine}
            checked={value === b.engine}
            onChange={() => onChange(b.engine)}
            aria-describedby={`engine-${b.engine}-help`}
          />
          <label htmlFor={`engine-${b.engine}`}>{engineName(b.engine)}</label>
          <p id={`engine-${b.engine}-help`} className="field-help">
            {b.description} · blueprint {b.version} · plans: {b.plans.join(", ")}
          </p>
        </div>
      ))}
    </fieldset>
  );
}

export function CreateStore() {
  const [draft] = useState(readDraft);
  // The draft's parameter values, until its engine's schema loads and they are laid over it.
  const pending = useRef(draft);
  // Saved only once the person edits something (not while the draft is being restored).
  const edited = useRef(false);
  const [restored, setRestored] = useState(draft !== null);
  const [blueprints, setBlueprints] = useState<BlueprintSummary[] | null>(null);
  const [engine, setEngine] = useState(draft?.engine ?? "");
  const [blueprint, setBlueprint] = useState<Blueprint | null>(null);
  const [name, setName] = useState(draft?.name ?? "");
  const [values, setValues] = useState<FormValues>({});
  // Why the engine list, or the chosen engine's settings, could not be loaded; "Try
  // again" bumps the attempt of whichever failed, which re-runs its effect.
  const [listError, setListError] = useState<string | null>(null);
  const [settingsError, setSettingsError] = useState<string | null>(null);
  const [listAttempt, setListAttempt] = useState(0);
  const [settingsAttempt, setSettingsAttempt] = useState(0);
  const [refused, setRefused] = useState<Refusal | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const c = new AbortController();
    setListError(null);
    unwrap(api.GET("/api/blueprints", { signal: c.signal }))
      .then((list) => {
        setBlueprints(list);
        setEngine((e) =>
          list.some((b) => b.engine === e) ? e : ((list.find((b) => b.engine === "woocommerce") ?? list[0])?.engine ?? ""),
        );
      })
      .catch((e: unknown) => {
        if (!c.signal.aborted) setListError(describe(e));
      });
    return () => c.abort();
  }, [listAttempt]);

  useEffect(() => {
    if (!engine) return;
    const c = new AbortController();
    setBlueprint(null);
    setSettingsError(null); // it was about the other engine, or the last attempt
    unwrap(api.GET("/api/blueprints/{engine}", { params: { path: { engine } }, signal: c.signal }))
      .then((bp) => {
        const params = bp.parameters as JsonSchema; // see `schema` below
        const saved = pending.current?.engine === engine ? pending.current.values : null;
        pending.current = null;
        setBlueprint(bp);
        setValues(saved ? restoredValues(params, saved) : initialValues(params));
      })
      .catch((e: unknown) => {
        if (!c.signal.aborted) setSettingsError(describe(e));
      });
    return () => c.abort();
  }, [engine, settingsAttempt]);

  // The spec types `parameters` as an open JSON object; it is a JSON Schema document.
  const schema = useMemo(() => (blueprint ? (blueprint.parameters as JsonSchema) : null), [blueprint]);

  useEffect(() => {
    if (!edited.current) return;
    const current = schema && blueprint?.engine === engine;
    const saved = pending.current?.engine === engine ? pending.current.values : {};
    saveDraft({
      name,
      engine,
      values: current ? keptValues(schema, values) : saved,
      owner: session.snapshot().session?.user.id,
    });
  }, [name, engine, values, schema, blueprint]);

  function startOver() {
    clearDraft();
    edited.current = false;
    setRestored(false);
    setRefused(null);
    setName("");
    if (schema) setValues(initialValues(schema));
    // The button goes away with the notice it sits in: continue at the first field.
    document.getElementById("store-name")?.focus();
  }

  function tryAgain() {
    if (listError) setListAttempt((n) => n + 1);
    if (settingsError) setSettingsAttempt((n) => n + 1);
    // The button goes away with the notice it sits in: continue at the first field.
    document.getElementById("store-name")?.focus();
  }

  const paramErrors = useMemo(() => {
    const out: Record<string, string> = {};
    for (const [field, message] of Object.entries(refused?.byField ?? {})) {
      if (field.startsWith("params/")) out[field.slice("params/".length)] = message;
    }
    return out;
  }, [refused]);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!schema || busy) return;
    setBusy(true);
    try {
      const params = toParams(schema, values);
      const store = await unwrap(
        api.POST("/api/stores", {
          body: { name: name.trim(), engine, ...(Object.keys(params).length ? { params } : {}) },
        }),
      );
      clearDraft();
      navigate(`/stores/${store.id}`, { notice: `Store “${store.name}” requested; provisioning has started.` });
    } catch (err) {
      setRefused(refusal(err, schema));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Page title="New store">
      {listError || settingsError ? (
        <ErrorNotice title={listError ? "Could not load the engines" : `Could not load the ${engineName(engine)} settings`}>
          {listError ?? settingsError}{" "}
          <button type="button" className="button" onClick={tryAgain}>
            Try again
          </button>
        </ErrorNotice>
      ) : null}
      {restored ? (
        <InfoNotice>
          What you entered before has been restored.{" "}
          <button type="button" className="button button-quiet" onClick={startOver}>
            Start over
          </button>
        </InfoNotice>
      ) : null}
      {refused ? <ErrorSummary title={refused.title} detail={refused.detail} items={refused.items} /> : null}
      <form className="form" onSubmit={(e) => void submit(e)} noValidate aria-busy={busy}>
        <FieldShell
          id="store-name"
          label="Store name"
          required
          error={refused?.byField.name}
          help="Lowercase letters a-z, digits and '-', starting with a letter (a DNS label). Unique among your stores; it becomes part of the store's address."
          hints={["1 to 40 characters"]}
        >
          <input
            type="text"
            name="name"
            autoComplete="off"
            spellCheck={false}
            autoCapitalize="none"
            value={name}
            onChange={(e) => {
              edited.current = true;
              setName(e.target.value);
            }}
          />
        </FieldShell>
        {blueprints ? (
          <EnginePicker
            blueprints={blueprints}
            value={engine}
            error={refused?.byField.engine}
            onChange={(e) => {
              edited.current = true;
              setEngine(e);
              setRefused(null); // its messages were about the other engine's fields
            }}
          />
        ) : listError ? null : (
          <p className="muted" role="status">Loading engines…</p>
        )}
        {schema ? (
          <fieldset className="group params">
            <legend>{schema.title ?? `${engineName(engine)} settings`}</legend>
            <p className="group-help">Every setting has a default; change only what you need.</p>
            <SchemaForm
              schema={schema}
              values={values}
              errors={paramErrors}
              idPrefix={PREFIX}
              disabled={busy}
              onChange={(pointer: string, value: FormValue) => {
                edited.current = true;
                setValues((v) => ({ ...v, [pointer]: value }));
              }}
            />
          </fieldset>
        ) : engine && !settingsError ? (
          <p className="muted" role="status">Loading {engineName(engine)} settings…</p>
        ) : null}
        <div className="actions">
          <button type="submit" className="button button-primary" disabled={busy || !schema}>
            {busy ? "Creating…" : "Create store"}
          </button>
          <Link href="/" className="button" onClick={clearDraft}>
            Cancel
          </Link>
        </div>
      </form>
    </Page>
  );
}
