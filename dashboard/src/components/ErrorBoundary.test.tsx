// An error while rendering shows a readable message and a way to reload, not a blank page.
import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ErrorBoundary } from "./ErrorBoundary";

afterEach(cleanup);

function Broken(): never {
  throw new Error("no look for status `suspended`");
}

describe("ErrorBoundary", () => {
  it("shows its children while they render", () => {
    render(
      <ErrorBoundary>
        <p>the app</p>
      </ErrorBoundary>,
    );
    expect(screen.getByText("the app")).toBeTruthy();
  });

  it("replaces a page that failed to render with the error and a reload button", () => {
    vi.spyOn(console, "error").mockImplementation(() => undefined); // React reports the error too
    render(
      <ErrorBoundary>
        <Broken />
      </ErrorBoundary>,
    );
    const alert = screen.getByRole("alert");
    expect(alert.textContent).toContain("Something went wrong");
    expect(alert.textContent).toContain("no look for status `suspended`");
    expect(screen.getByRole("button", { name: "Reload the page" })).toBeTruthy();
  });
});
