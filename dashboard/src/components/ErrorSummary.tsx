// The list of what the API refused, at the top of a form: each entry links to its field
// (when the form has one), and the summary takes focus so a keyboard or screen-reader
// user learns at once that the form needs attention. Focus is what announces it (its
// heading names it): it is not also role="alert", which would have it read twice.
import { useEffect, useRef } from "react";

export interface SummaryItem {
  /** The field's label, or the API's field path when the form has no such field. */
  label: string;
  message: string;
  /** The control's id, to link to. */
  target?: string;
}

export function ErrorSummary({ title, items, detail }: { title: string; items: SummaryItem[]; detail?: string }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    ref.current?.focus();
  }, [title, items, detail]);
  return (
    <div ref={ref} className="notice notice-error error-summary" role="group" tabIndex={-1} aria-labelledby="error-summary-title">
      <h2 id="error-summary-title" className="notice-title">
        {title}
      </h2>
      {detail ? <p>{detail}</p> : null}
      {items.length ? (
        <ul>
          {items.map((i) => (
            <li key={`${i.label}:${i.message}`}>
              {i.target ? (
                <a
                  href={`#${i.target}`}
                  onClick={(e) => {
                    e.preventDefault();
                    document.getElementById(i.target ?? "")?.focus();
                  }}
                >
                  {i.label}: {i.message}
                </a>
              ) : (
                <>
                  <strong>{i.label}</strong>: {i.message}
                </>
              )}
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
