//! The orphan audit: namespaces that carry a store's labels but whose store is not in
//! the database. They are what a database restored from a backup older than its
//! stores, an orchestrator pointed at the wrong database, or a second Storeplane
//! installation on the same cluster leave behind: pods that keep running and volumes
//! that keep their data, with nothing that would ever delete them.
//!
//! Each is reported — a warning naming it (once per process while it stays an orphan)
//! and the `storeplane_orphan_namespaces` gauge — and never deleted: deleting what the
//! database does not know would turn a wrong database URL into the loss of every store.
//! docs/deploy.md says how to check one and remove it.
//!
//! No race makes a live store look orphaned: a store's row is written before its
//! namespace is created and removed only after the namespace is gone. The namespaces
//! are listed, then the rows read, then the namespaces listed again: one still there
//! (same uid, not terminating) was there all along, so its row, if it ever had one,
//! was there when read. A namespace that went or began terminating meanwhile is not
//! reported.

use super::Context;
use crate::apply::{Applier, StoreNamespace};
use crate::db::{Db, DbError};
use crate::telemetry::error_chain;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Longest time between two audits, whatever the resync period.
const MAX_AUDIT_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// How long one audit may take (one paged LIST and one query per 500 namespaces).
const AUDIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A namespace labelled as a store's that no store in the database owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub namespace: String,
    /// The `storeplane.dev/store-id` label as written.
    pub store_id: String,
    pub reason: OrphanReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrphanReason {
    /// No store has this id.
    NoStore,
    /// The label is not a store id (not a UUID).
    NotAStoreId,
    /// The store exists, in another namespace.
    OtherNamespace(String),
}

impl fmt::Display for Orphan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Orphan {
            namespace,
            store_id,
            reason,
        } = self;
        match reason {
            OrphanReason::NoStore => write!(
                f,
                "namespace {namespace} is labelled as store {store_id}, which is not in the database"
            ),
            OrphanReason::NotAStoreId => write!(
                f,
                "namespace {namespace} has store-id label `{store_id}`, which is not a store id"
            ),
            OrphanReason::OtherNamespace(other) => write!(
                f,
                "namespace {namespace} is labelled as store {store_id}, whose namespace is {other}"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot list store namespaces: {}", error_chain(.0))]
    Cluster(#[from] kube::Error),
    #[error("cannot read stores: {}", error_chain(.0))]
    Database(#[from] DbError),
}

/// Every namespace labelled as a store's (not terminating) that no store owns, by name.
pub async fn find_orphans(applier: &Applier, db: &Db) -> Result<Vec<Orphan>, AuditError> {
    let found: Vec<StoreNamespace> = applier
        .store_namespaces()
        .await?
        .into_iter()
        .filter(|ns| !ns.terminating)
        .collect();
    let ids: Vec<Uuid> = found
        .iter()
        .filter_map(|ns| Uuid::parse_str(&ns.store_id).ok())
        .collect();
    let owners = db.store_namespaces(&ids).await?;
    let still: HashSet<String> = applier
        .store_namespaces()
        .await?
        .into_iter()
        .filter(|ns| !ns.terminating)
        .map(|ns| ns.uid)
        .collect();
    let mut orphans: Vec<Orphan> = found
        .into_iter()
        .filter(|ns| still.contains(&ns.uid))
        .filter_map(|ns| {
            let reason = match Uuid::parse_str(&ns.store_id) {
                Err(_) => OrphanReason::NotAStoreId,
                Ok(id) => match owners.get(&id) {
                    None => OrphanReason::NoStore,
                    Some(owned) if *owned == ns.name => return None,
                    Some(owned) => OrphanReason::OtherNamespace(owned.clone()),
                },
            };
            Some(Orphan {
                namespace: ns.name,
                store_id: ns.store_id,
                reason,
            })
        })
        .collect();
    orphans.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    Ok(orphans)
}

/// Audits at start and then once per resync period until `shutdown`: sets the gauge,
/// warns about each orphan when it is first seen, counts audits that fail (so that an
/// audit that can never run — no `list` on namespaces, say — shows).
pub(super) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let period = ctx.settings.resync_period.min(MAX_AUDIT_PERIOD);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let audit = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(AUDIT_TIMEOUT, find_orphans(&ctx.applier, &ctx.db)) => r,
        };
        match audit {
            Ok(Ok(orphans)) => {
                ctx.metrics.orphan_namespaces.set(orphans.len() as i64);
                let now: HashSet<String> = orphans.iter().map(|o| o.namespace.clone()).collect();
                for orphan in orphans.iter().filter(|o| !reported.contains(&o.namespace)) {
                    tracing::warn!(
                        namespace = %orphan.namespace,
                        store_id = %orphan.store_id,
                        "orphaned store namespace: {orphan}; Storeplane never deletes it on its own (see docs/deploy.md, \"Orphaned namespaces\")"
                    );
                }
                reported = now;
            }
            Ok(Err(e)) => {
                ctx.metrics.orphan_audit_failures.inc();
                tracing::warn!(error = %e, "orphan audit failed; trying again next period");
            }
            Err(_) => {
                ctx.metrics.orphan_audit_failures.inc();
                tracing::warn!(
                    timeout_s = AUDIT_TIMEOUT.as_secs(),
                    "orphan audit timed out; trying again next period"
                );
            }
        }
    }
}
