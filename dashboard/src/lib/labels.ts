// Words for the API's identifiers.
import type { EventType } from "../api/types";

const ENGINES: Record<string, string> = { woocommerce: "WooCommerce", medusa: "Medusa" };

export function engineName(engine: string): string {
  return ENGINES[engine] ?? engine.charAt(0).toUpperCase() + engine.slice(1);
}

export const EVENT_LABELS: Record<EventType, string> = {
  created: "Requested",
  namespace_created: "Namespace created",
  phase_completed: "Phase completed",
  resources_applied: "Resources applied",
  retry_scheduled: "Retry scheduled",
  provisioning_failed: "Provisioning failed",
  store_ready: "Ready",
  drift_repaired: "Drift repaired",
  retry_requested: "Retry requested",
  deleting: "Deletion requested",
  namespace_deleted: "Namespace deleted",
};

/** The words for an event type; a type this dashboard does not know yet (a newer
 * server's) is shown as its name. */
export function eventLabel(t: EventType | string): string {
  return (EVENT_LABELS as Record<string, string>)[t] ?? t.replaceAll("_", " ");
}

export function isFailureEvent(t: EventType): boolean {
  return t === "provisioning_failed" || t === "retry_scheduled";
}
