// A store's status as a badge: a word and a symbol, never colour alone.
import type { StoreStatus } from "../api/types";

const LOOK: Record<StoreStatus, { text: string; symbol: string }> = {
  provisioning: { text: "Provisioning", symbol: "◌" },
  ready: { text: "Ready", symbol: "✓" },
  failed: { text: "Failed", symbol: "✕" },
  deleting: { text: "Deleting", symbol: "−" },
};

export function StatusBadge({ status }: { status: StoreStatus }) {
  const look = LOOK[status];
  const busy = status === "provisioning" || status === "deleting";
  return (
    <span className={`badge badge-${status}`} data-status={status}>
      <span className={busy ? "badge-symbol spin" : "badge-symbol"} aria-hidden="true">
        {look.symbol}
      </span>
      {look.text}
    </span>
  );
}

export function isBusy(status: StoreStatus): boolean {
  return status === "provisioning" || status === "deleting";
}
