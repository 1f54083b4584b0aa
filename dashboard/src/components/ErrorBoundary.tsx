// The last resort around the whole app: an error while rendering (say, an answer this
// build does not understand) shows a message and a way out instead of a blank page.
import { Component, type ReactNode } from "react";

interface State {
  error: Error | null;
}

export class ErrorBoundary extends Component<{ children: ReactNode }, State> {
  override state: State = { error: null };

  static getDerivedStateFromError(error: unknown): State {
    return { error: error instanceof Error ? error : new Error(String(error)) };
  }

  override render() {
    const { error } = this.state;
    if (!error) return this.props.children;
    return (
      <main id="main">
        <div className="notice notice-error" role="alert">
          <p className="notice-title">Something went wrong</p>
          <p>The page could not be shown: {error.message}</p>
          <p>
            <button type="button" className="button" onClick={() => location.reload()}>
              Reload the page
            </button>
          </p>
        </div>
      </main>
    );
  }
}
