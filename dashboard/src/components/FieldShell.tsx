// A labelled form control with its help text, constraint hints and error message, all
// tied to the control with aria-describedby (the error first, so it is read first), and
// aria-invalid when the API refused the value.
import type { ReactElement, ReactNode } from "react";
import { cloneElement } from "react";

export interface FieldShellProps {
  id: string;
  label: ReactNode;
  help?: ReactNode;
  hints?: string[];
  /** A regular expression the value must match, shown as a hint. */
  pattern?: string | undefined;
  error?: string | undefined;
  required?: boolean;
  /** Checkboxes put the label after the control. */
  inline?: boolean;
  children: ReactElement<Record<string, unknown>>;
}

export function describedBy(id: string, parts: { error?: unknown; help?: unknown; hints?: unknown }): string | undefined {
  const ids = [parts.error ? `${id}-error` : null, parts.help ? `${id}-help` : null, parts.hints ? `${id}-hints` : null];
  return ids.filter(Boolean).join(" ") || undefined;
}

export function FieldShell({ id, label, help, hints, pattern, error, required, inline, children }: FieldShellProps) {
  const hasHints = (hints !== undefined && hints.length > 0) || Boolean(pattern);
  const control = cloneElement(children, {
    id,
    "aria-invalid": error ? true : undefined,
    "aria-describedby": describedBy(id, { error, help, hints: hasHints }),
    "aria-required": required || undefined,
  });
  const labelEl = (
    <label htmlFor={id}>
      {label}
      {required ? <span className="required"> (required)</span> : null}
    </label>
  );
  return (
    <div className={`field${inline ? " field-inline" : ""}${error ? " field-invalid" : ""}`}>
      {inline ? (
        <div className="field-check">
          {control}
          {labelEl}
        </div>
      ) : (
        <>
          {labelEl}
          {control}
        </>
      )}
      {error ? (
        <p id={`${id}-error`} className="field-error">
          <span aria-hidden="true">⚠ </span>
          {error}
        </p>
      ) : null}
      {help ? (
        <p id={`${id}-help`} className="field-help">
          {help}
        </p>
      ) : null}
      {hasHints ? (
        <p id={`${id}-hints`} className="field-hints">
          {(hints ?? []).join(" · ")}
          {pattern ? (
            <>
              {hints?.length ? " · " : ""}
              Pattern: <code>{pattern}</code>
            </>
          ) : null}
        </p>
      ) : null}
    </div>
  );
}
