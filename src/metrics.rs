//! Prometheus metrics shared by the API and the orchestrator, in one registry that
//! `GET /metrics` encodes. Owns metric names and help texts; it must not decide when
//! anything is measured.

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApplyErrorLabels {
    /// `retried` (the store will be worked again on its own) or `failed` (the store
    /// became `failed` and waits for a retry request).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template, never the raw path (ids would explode cardinality).
    pub route: String,
    pub status: u16,
}

/// Every metric Storeplane exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub stores: Family<StatusLabel, Gauge>,
    pub provisioning_seconds: Histogram,
    pub apply_errors: Family<ApplyErrorLabels, Counter>,
    pub queue_depth: Gauge,
    pub workers_busy: Gauge,
    pub reconciles: Counter,
    pub applies_skipped: Counter,
    pub stores_known_converged: Gauge,
    pub orphan_namespaces: Gauge,
    pub orphan_audit_failures: Counter,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_request_seconds: Histogram,
    pub rate_limited: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("storeplane");
        let stores = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "stores",
            "Stores by status, counted in the shared database (every replica reports the \
             same numbers: aggregate with max, not sum)",
            stores.clone(),
        );
        let provisioning_seconds = Histogram::new(exponential_buckets(0.25, 2.0, 14));
        registry.register(
            "provisioning_duration_seconds",
            "Time from a store's creation to ready, for stores ready without a retry",
            provisioning_seconds.clone(),
        );
        let apply_errors = Family::<ApplyErrorLabels, Counter>::default();
        registry.register(
            "apply_errors",
            "Failed store attempts (apply, render, database), by whether the store will be \
             retried or became failed",
            apply_errors.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Stores due for work and leased by no replica, counted in the shared database \
             (every replica reports the same number: aggregate with max, not sum)",
            queue_depth.clone(),
        );
        let workers_busy = Gauge::default();
        registry.register(
            "workers_busy",
            "Stores this replica is working on right now",
            workers_busy.clone(),
        );
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Store reconciliations finished by this replica",
            reconciles.clone(),
        );
        let applies_skipped = Counter::default();
        registry.register(
            "applies_skipped",
            "Store applies not sent: the render and every object's resourceVersion were \
             unchanged since an apply that changed nothing and found the store ready",
            applies_skipped.clone(),
        );
        let stores_known_converged = Gauge::default();
        registry.register(
            "stores_known_converged",
            "Stores this replica remembers as converged, whose resync sends no apply while \
             nothing changes (updated at each sweep)",
            stores_known_converged.clone(),
        );
        let orphan_namespaces = Gauge::default();
        registry.register(
            "orphan_namespaces",
            "Namespaces labelled as a store's whose store is not in the database (found by \
             the orchestrator's audit each resync period; never deleted automatically)",
            orphan_namespaces.clone(),
        );
        let orphan_audit_failures = Counter::default();
        registry.register(
            "orphan_audit_failures",
            "Orphan audits that failed or timed out (the gauge keeps its last value meanwhile)",
            orphan_audit_failures.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        let http_request_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_request_seconds.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "Requests refused with 429",
            rate_limited.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            stores,
            provisioning_seconds,
            apply_errors,
            queue_depth,
            workers_busy,
            reconciles,
            applies_skipped,
            stores_known_converged,
            orphan_namespaces,
            orphan_audit_failures,
            http_requests,
            http_request_seconds,
            rate_limited,
        }
    }

    /// The text exposition format served at `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_registered_metrics() {
        let m = Metrics::new();
        m.stores
            .get_or_create(&StatusLabel {
                status: "ready".into(),
            })
            .set(3);
        m.provisioning_seconds.observe(2.0);
        let text = m.encode();
        assert!(
            text.contains("storeplane_stores{status=\"ready\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("storeplane_provisioning_duration_seconds_count 1"),
            "{text}"
        );
    }
}
