// Page-level messages: an error (role=alert, read at once) or an information notice
// (role=status, read politely).
import type { ReactNode } from "react";

export function ErrorNotice({ title, children }: { title?: string; children: ReactNode }) {
  return (
    <div className="notice notice-error" role="alert">
      {title ? <p className="notice-title">{title}</p> : null}
      <div>{children}</div>
    </div>
  );
}

export function InfoNotice({ children }: { children: ReactNode }) {
  return (
    <div className="notice notice-info" role="status">
      {children}
    </div>
  );
}
