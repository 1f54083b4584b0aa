// A store's status as a badge: a word and a symbol, never colour alone.
import type { StoreStatus } from "../api/types";

interface Look {
  text: string;
  symbol: string;
}

const LOOK: Record<StoreStatus, Look> = {
  provisioning: { text: "Provisioning", symbol: "◌" },
  ready: { text: "Ready", symbol: "✓" },
  failed: { text: "Failed", symbol: "✕" },
  deleting: { text: "Deleting", symbol: "−" },
};

export function StatusBadge({ status }: { status: StoreStatus }) {
  // A status this build does not know yet (a newer server): shown as the server spells it.
  const known: Look | undefined = LOOK[status];
  const look = known ?? { text: String(status), symbol: "•" };
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
