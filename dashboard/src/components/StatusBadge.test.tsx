// A status this build does not know (a newer server) is shown as it is, not a crash.
import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import type { StoreStatus } from "../api/types";
import { StatusBadge } from "./StatusBadge";

afterEach(cleanup);

describe("StatusBadge", () => {
  it("names a known status in words", () => {
    render(<StatusBadge status="failed" />);
    expect(screen.getByText("Failed")).toBeTruthy();
  });

  it("shows an unknown status as the server spells it", () => {
    render(<StatusBadge status={"suspended" as StoreStatus} />);
    expect(screen.getByText("suspended").getAttribute("data-status")).toBe("suspended");
  });
});
