// A page's frame: sets the document title and, after in-app navigation, moves focus to
// the page's heading so screen readers announce the new page (as a full load would).
import { useEffect, useRef, type ReactNode } from "react";

let firstPage = true;

export function Page({ title, heading, actions, children }: { title: string; heading?: ReactNode; actions?: ReactNode; children: ReactNode }) {
  const h1 = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} · Storeplane`;
  }, [title]);
  useEffect(() => {
    if (firstPage) {
      firstPage = false;
      return;
    }
    h1.current?.focus();
  }, []);
  return (
    <>
      <div className="page-head">
        <h1 ref={h1} tabIndex={-1}>
          {heading ?? title}
        </h1>
        {actions ? <div className="page-actions">{actions}</div> : null}
      </div>
      {children}
    </>
  );
}
