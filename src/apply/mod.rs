//! Every write Storeplane makes to a cluster: server-side apply with field manager
//! `storeplane`, phase by phase with bounded concurrency, readiness per kind driven by
//! watches, inventory and pruning by the store's labels, and namespace teardown.
//!
//! Conflict policy: every apply is forced (`force=true`). Storeplane is the only intended
//! writer of the fields its blueprints set, so a field another manager changed (a
//! `kubectl edit`, say) is taken back — that is what drift repair means. Fields a
//! blueprint does not set stay with whoever set them.
//!
//! This module knows objects, namespaces and the cluster; it must not know about HTTP,
//! users or the database. It is handed rendered objects and reports what happened.

mod readiness;
mod wait;

pub use readiness::{Readiness, assess, needs_wait};

use readiness::job_failed;

use crate::blueprint::RenderedObject;
use crate::domain::{FIELD_MANAGER, Phase, labels};
use crate::telemetry::error_chain;
use base64::Engine as _;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta, Time};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PropagationPolicy,
};
use kube::discovery::{ApiCapabilities, Scope};
use kube::{Client, ResourceExt};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// One object Storeplane wants in the cluster, and the phase it belongs to.
#[derive(Debug, Clone)]
pub struct Desired {
    pub phase: Phase,
    pub gvk: GroupVersionKind,
    pub object: DynamicObject,
}

impl From<RenderedObject> for Desired {
    fn from(o: RenderedObject) -> Self {
        Desired {
            phase: o.phase,
            gvk: o.gvk,
            object: o.object,
        }
    }
}

impl Desired {
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.gvk.kind.clone(),
            name: self.object.name_any(),
        }
    }
}

/// `Kind/name`: how objects are named in errors, events and inventories.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Kinds Storeplane may create inside a store's namespace, and so may prune from it
/// (all but [`KEPT_ON_PRUNE`], which it keeps and reports). Pruning only ever touches objects that carry the store's id label *and* whose
/// fields are owned by the `storeplane` field manager, so objects created by
/// controllers (pods, ReplicaSets, a StatefulSet's claims) are never pruned.
pub const PRUNABLE_KINDS: &[(&str, &str, &str)] = &[
    ("", "v1", "ConfigMap"),
    ("", "v1", "Secret"),
    ("", "v1", "Service"),
    ("", "v1", "ServiceAccount"),
    ("", "v1", "PersistentVolumeClaim"),
    ("", "v1", "ResourceQuota"),
    ("", "v1", "LimitRange"),
    ("apps", "v1", "Deployment"),
    ("apps", "v1", "StatefulSet"),
    ("batch", "v1", "Job"),
    ("batch", "v1", "CronJob"),
    ("networking.k8s.io", "v1", "Ingress"),
    ("networking.k8s.io", "v1", "NetworkPolicy"),
    ("policy", "v1", "PodDisruptionBudget"),
];

/// The shortest wait a phase is given, even at its store's deadline: the failure it
/// ends in is what tells the store is past its deadline.
pub const MIN_PHASE_WAIT: Duration = Duration::from_secs(1);

/// Kinds pruning never deletes: a claim holds a store's data (its database, its
/// uploads), and a claim that left the render — a blueprint upgrade renamed or dropped
/// it — must not take the data with it at the next resync. Such a claim is reported as
/// kept, for a person to delete once nothing needs it.
pub const KEPT_ON_PRUNE: &[&str] = &["PersistentVolumeClaim"];

/// What went wrong while applying, waiting or tearing down, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot resolve {gvk} from the cluster's API discovery: {source}")]
    Discovery {
        gvk: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying {object} was refused: {}", api_reason(.source))]
    Apply {
        object: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("listing {kind} in namespace {namespace} failed: {}", api_reason(.source))]
    List {
        kind: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {object} failed: {}", api_reason(.source))]
    Delete {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("{object} will not become ready: {reason}")]
    Failed { object: ObjectKey, reason: String },
    #[error("phase {phase} not ready after {}: {}", humantime::format_duration(*.after), .waiting.join("; "))]
    Timeout {
        phase: Phase,
        after: Duration,
        /// One entry per object still not ready: `Kind/name: reason`.
        waiting: Vec<String>,
        /// True when the wait could not even watch (the API server was unreachable).
        unreachable: bool,
    },
    #[error("namespace {namespace} is still terminating after {}: {blockers}", humantime::format_duration(*.after))]
    TeardownStuck {
        namespace: String,
        after: Duration,
        blockers: String,
    },
    #[error("{object} was deleted to be replaced but is still there after {}: {reason}", humantime::format_duration(*.after))]
    ReplaceStuck {
        object: ObjectKey,
        after: Duration,
        /// Why waiting for it to go ended: the wait's deadline, or what broke it.
        reason: String,
    },
    #[error("not writing {object}: the write fence closed {} ago (the worker's lease could not be renewed in time, and another worker may hold the store now)", humantime::format_duration(*.late))]
    Fenced { object: String, late: Duration },
}

impl ApplyError {
    /// Whether trying again later can help. Permanent errors need a change to the store
    /// (its parameters, plan or blueprint) or to the cluster's configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            ApplyError::Discovery { source, .. }
            | ApplyError::Apply { source, .. }
            | ApplyError::List { source, .. }
            | ApplyError::Delete { source, .. } => is_transient_kube(source),
            ApplyError::Failed { .. } => false,
            ApplyError::Timeout { .. }
            | ApplyError::TeardownStuck { .. }
            | ApplyError::ReplaceStuck { .. }
            | ApplyError::Fenced { .. } => true,
        }
    }

    /// An apply refused by a ResourceQuota. It may not last: a create the API server
    /// charged to the quota but never finished (its client died mid-request) stays in
    /// the quota's usage until the quota controller recounts (every 5 minutes by
    /// default), so a crashed replica's successor can be refused for a while.
    pub fn is_quota_refusal(&self) -> bool {
        matches!(self, ApplyError::Apply { source: kube::Error::Api(status), .. }
            if status.code == 403 && status.message.contains("exceeded quota"))
    }
}

/// Until when an [`Applier`] may write to the cluster. A worker holds a store through a
/// database lease that its renewer keeps extending; the renewer stops the work before
/// the lease can run out, but a process that stalls (CPU starvation, a paused VM) may
/// wake with its timers and its writes due together, and a write sent after the lease
/// ran out could land after another worker took the store over — even after that
/// worker deleted the store's namespace, bringing it back with no store behind it.
/// So every write first checks the fence, which the renewer moves on with each
/// renewal. The default fence never closes (the CLI, tests, benchmarks).
#[derive(Clone, Debug, Default)]
pub struct WriteFence(Option<Arc<Mutex<Instant>>>);

impl WriteFence {
    /// A fence open until `at`.
    pub fn until(at: Instant) -> Self {
        WriteFence(Some(Arc::new(Mutex::new(at))))
    }

    /// Keeps the fence open until `at`, if that is later than now set.
    pub fn extend(&self, at: Instant) {
        if let Some(until) = &self.0 {
            let mut until = until.lock().expect("fence lock");
            *until = (*until).max(at);
        }
    }

    /// Until when writes are allowed (`None`: always).
    pub fn open_until(&self) -> Option<Instant> {
        self.0.as_ref().map(|u| *u.lock().expect("fence lock"))
    }

    /// `Ok` while writes are allowed; the error names the write refused.
    pub fn check(&self, object: impl fmt::Display) -> Result<(), ApplyError> {
        match self.open_until() {
            Some(until) if Instant::now() >= until => Err(ApplyError::Fenced {
                object: object.to_string(),
                late: until.elapsed(),
            }),
            _ => Ok(()),
        }
    }
}

/// Where a namespace's deletion stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    /// The namespace does not exist (any more).
    Gone,
    /// Deleted, and terminating for `elapsed`: the namespace controller is still
    /// removing what it holds.
    Terminating { elapsed: Duration },
}

/// The part of a failure's text (an [`ApplyError`]'s, possibly inside a longer chain)
/// that stays the same while the failure does: without the time waited (`after 5m
/// 12ms`), and for a phase that timed out, only which objects it waited for — not their
/// latest state, whose counters (restarts, replicas, back-off times) change with every
/// attempt. Two attempts failing with the same key failed the same way.
pub fn failure_key(message: &str) -> String {
    for (at, _) in message.match_indices(" after ") {
        let head = &message[..at];
        let rest = &message[at + " after ".len()..];
        let Some((duration, tail)) = rest.split_once(": ") else {
            continue;
        };
        if !duration.split(' ').all(is_duration_word) {
            continue;
        }
        if head.starts_with("phase ") && head.ends_with(" not ready") {
            // `Kind/name: state (hint); Kind/name: …`: the objects only.
            let objects: Vec<&str> = tail
                .split("; ")
                .filter_map(|item| item.split_once(": ").map(|(object, _)| object))
                .filter(|object| {
                    *object == "last watch error" || (object.contains('/') && !object.contains(' '))
                })
                .collect();
            return format!("{head}: {}", objects.join("; "));
        }
        return format!("{head}: {tail}");
    }
    message.to_owned()
}

/// A word of a duration as `humantime` writes it (`5m`, `12ms`, `3days`).
fn is_duration_word(word: &str) -> bool {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let unit = &word[digits..];
    digits > 0
        && matches!(
            unit,
            "y" | "year"
                | "years"
                | "M"
                | "month"
                | "months"
                | "d"
                | "day"
                | "days"
                | "h"
                | "m"
                | "s"
                | "ms"
                | "us"
                | "ns"
        )
}

/// Whether a kube error is worth retrying: connection problems, timeouts, 409
/// conflicts, 429 and 5xx.
pub fn is_transient_kube(err: &kube::Error) -> bool {
    match err {
        // A namespace just created that an admission plugin's namespace cache has not
        // seen yet answers `namespaces "…" not found` for the first objects applied in
        // it (kubernetes/kubernetes#135352, fixed in 1.35 and backported to 1.32–1.34
        // patch releases); the next apply finds it.
        kube::Error::Api(status)
            if status.code == 404
                && (status
                    .details
                    .as_ref()
                    .is_some_and(|d| d.kind == "namespaces")
                    || status.message.starts_with("namespaces \"")) =>
        {
            true
        }
        // Content refused in a namespace someone is deleting: once it is gone, the
        // apply creates it anew.
        kube::Error::Api(status)
            if status.code == 403 && status.message.contains("because it is being terminated") =>
        {
            true
        }
        kube::Error::Api(status) => matches!(status.code, 409 | 429) || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => true,
        _ => false,
    }
}

fn api_reason(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => error_chain(other),
    }
}

/// Counts of what one apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyCounts {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

impl ApplyCounts {
    pub fn changed(&self) -> usize {
        self.created + self.updated
    }
    fn add(&mut self, other: &ApplyCounts) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
    }
}

/// Report of one finished phase.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    pub phase: Phase,
    pub objects: Vec<ObjectKey>,
    /// Those of `objects` that did not exist before the apply.
    pub created: Vec<ObjectKey>,
    pub counts: ApplyCounts,
    pub elapsed: Duration,
}

/// Report of a whole store apply.
#[derive(Debug, Clone, Default)]
pub struct StoreReport {
    pub counts: ApplyCounts,
    pub pruned: Vec<ObjectKey>,
    /// Objects the render no longer contains that pruning left in place
    /// ([`KEPT_ON_PRUNE`]).
    pub kept: Vec<ObjectKey>,
    /// No apply was sent: the render and every object's resourceVersion were what they
    /// were when an earlier apply changed nothing and found everything ready.
    pub known_converged: bool,
}

/// What [`Applier::prune`] did.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    pub deleted: Vec<ObjectKey>,
    /// Left in place although no longer rendered ([`KEPT_ON_PRUNE`]).
    pub kept: Vec<ObjectKey>,
}

/// What exists in a store's namespace today: `Kind/name` → what the object was, for
/// objects carrying the store's id label and owned by Storeplane's field manager.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub objects: BTreeMap<ObjectKey, Seen>,
}

/// One object of an [`Inventory`] as it was listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Moves with every write to the object, by anyone (a controller's status update
    /// included).
    pub resource_version: String,
    /// When Storeplane's field manager last changed the object with an apply (its
    /// managed-fields entry's time). The API server moves it only when an apply of
    /// that manager changes the object, never for another manager's write, so an apply
    /// that leaves it where it was changed nothing even when the resourceVersion moved
    /// (a controller wrote the object between the listing and the apply).
    pub applied_at: Option<Time>,
}

impl Seen {
    fn of(meta: &ObjectMeta) -> Seen {
        Seen {
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            applied_at: applied_at(meta),
        }
    }
}

/// Tuning for an [`Applier`].
#[derive(Debug, Clone)]
pub struct ApplySettings {
    /// Objects of one phase applied at once.
    pub concurrency: usize,
    /// Longest wait for one phase's objects to become ready.
    pub phase_timeout: Duration,
    /// Longest wait for a namespace to disappear.
    pub teardown_timeout: Duration,
}

impl Default for ApplySettings {
    fn default() -> Self {
        ApplySettings {
            concurrency: 8,
            phase_timeout: Duration::from_secs(300),
            teardown_timeout: Duration::from_secs(300),
        }
    }
}

type ResourceCache = Arc<RwLock<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>>;

/// Namespace → digest of a render and of the inventory an apply of it found, recorded
/// when that apply changed nothing, pruned nothing and found every object ready.
/// While the render and every object's resourceVersion stay the same, nothing has
/// written to the store's objects since (a deleted object is missing, and any write —
/// an edit, a status change, a re-creation — moves a resourceVersion), so a resync
/// need not send its server-side applies again: each costs the API server as much as
/// a real one.
/// Each entry keeps when it was last confirmed, so that entries of stores this replica
/// no longer works (deleted or resynced by another replica) can be dropped.
type Converged = Arc<Mutex<HashMap<String, ([u8; 32], Instant)>>>;

/// Applies stores to one cluster. Cheap to clone; clones share the discovery cache.
#[derive(Clone)]
pub struct Applier {
    client: Client,
    settings: ApplySettings,
    resources: ResourceCache,
    converged: Converged,
    fence: WriteFence,
}

impl Applier {
    pub fn new(client: Client, settings: ApplySettings) -> Self {
        Applier {
            client,
            settings,
            resources: Arc::default(),
            converged: Arc::default(),
            fence: WriteFence::default(),
        }
    }

    /// This applier, writing only while `fence` is open (it shares the discovery cache
    /// and what is known converged with `self`).
    pub fn fenced(&self, fence: WriteFence) -> Applier {
        Applier {
            fence,
            ..self.clone()
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn settings(&self) -> &ApplySettings {
        &self.settings
    }

    /// Resolves a kind to its API resource once; later calls are served from memory.
    pub async fn resolve(
        &self,
        gvk: &GroupVersionKind,
    ) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
        if let Some(hit) = self.resources.read().expect("cache lock").get(gvk) {
            return Ok(hit.clone());
        }
        let found = kube::discovery::pinned_kind(&self.client, gvk)
            .await
            .map_err(|source| ApplyError::Discovery {
                gvk: gvk_text(gvk),
                source,
            })?;
        self.resources
            .write()
            .expect("cache lock")
            .insert(gvk.clone(), found.clone());
        Ok(found)
    }

    async fn api_for(
        &self,
        gvk: &GroupVersionKind,
        namespace: &str,
    ) -> Result<(Api<DynamicObject>, ApiResource), ApplyError> {
        let (ar, caps) = self.resolve(gvk).await?;
        let api = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), namespace, &ar),
            Scope::Cluster => Api::all_with(self.client.clone(), &ar),
        };
        Ok((api, ar))
    }

    /// Lists what the store has in its namespace today (empty when the namespace does
    /// not exist yet).
    pub async fn inventory(
        &self,
        namespace: &str,
        store_id: &str,
    ) -> Result<Inventory, ApplyError> {
        // The namespace first: when it does not exist (a new store) there is nothing
        // else to list, and the first apply is not held up by a dozen empty lists.
        let mut objects = BTreeMap::new();
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        match namespaces.get_metadata_opt(namespace).await {
            Ok(None) => return Ok(Inventory { objects }),
            // The namespace itself, so that re-applying it counts as unchanged.
            Ok(Some(ns)) if managed_by_us(&ns.metadata) => {
                objects.insert(
                    ObjectKey {
                        kind: "Namespace".into(),
                        name: namespace.to_owned(),
                    },
                    Seen::of(&ns.metadata),
                );
            }
            Ok(Some(_)) => {}
            Err(source) => {
                return Err(ApplyError::List {
                    kind: "Namespace".into(),
                    namespace: namespace.to_owned(),
                    source,
                });
            }
        }
        let selector = format!("{}={store_id}", labels::STORE_ID);
        let lp = ListParams::default().labels(&selector);
        let mut pending = stream::iter(prunable_kinds())
            .map(|gvk| self.list_ours(gvk, namespace, lp.clone()))
            .buffer_unordered(self.settings.concurrency);
        while let Some(found) = pending.next().await {
            objects.extend(found?);
        }
        Ok(Inventory { objects })
    }

    fn list_ours<'a>(
        &'a self,
        gvk: GroupVersionKind,
        namespace: &'a str,
        lp: ListParams,
    ) -> futures::future::BoxFuture<'a, Result<Vec<(ObjectKey, Seen)>, ApplyError>> {
        Box::pin(async move {
            let (api, _) = self.api_for(&gvk, namespace).await?;
            let list = api
                .list_metadata(&lp)
                .await
                .map_err(|source| ApplyError::List {
                    kind: gvk.kind.clone(),
                    namespace: namespace.to_owned(),
                    source,
                })?;
            Ok(list
                .items
                .into_iter()
                .filter(|o| managed_by_us(&o.metadata))
                .map(|o| {
                    (
                        ObjectKey {
                            kind: gvk.kind.clone(),
                            name: o.metadata.name.clone().unwrap_or_default(),
                        },
                        Seen::of(&o.metadata),
                    )
                })
                .collect())
        })
    }

    /// Server-side applies one phase's objects (cluster-scoped ones first), at most
    /// `concurrency` at a time. `before` tells created, updated and unchanged apart.
    /// Also says whether every object is already ready by the object the API server
    /// answered the apply with (the same rules a wait applies to what it watches).
    pub async fn apply_objects(
        &self,
        namespace: &str,
        objects: &[&Desired],
        before: &Inventory,
    ) -> Result<(ApplyCounts, bool), ApplyError> {
        self.apply_objects_within(namespace, objects, before, self.settings.phase_timeout)
            .await
    }

    /// [`Applier::apply_objects`], waiting at most `wait` for a replaced object (a
    /// changed Job) to go.
    async fn apply_objects_within(
        &self,
        namespace: &str,
        objects: &[&Desired],
        before: &Inventory,
        wait: Duration,
    ) -> Result<(ApplyCounts, bool), ApplyError> {
        let mut counts = ApplyCounts::default();
        let mut all_ready = true;
        let (cluster, namespaced): (Vec<&Desired>, Vec<&Desired>) = objects
            .iter()
            .copied()
            .partition(|d| d.object.metadata.namespace.is_none() && d.gvk.kind == "Namespace");
        for batch in [cluster, namespaced] {
            type Applied = Result<(ApplyCounts, bool), ApplyError>;
            let applies: Vec<futures::future::BoxFuture<'_, Applied>> = batch
                .into_iter()
                .map(|d| Box::pin(self.apply_one(namespace, d, before, wait)) as _)
                .collect();
            let results = stream::iter(applies)
                .buffer_unordered(self.settings.concurrency)
                .try_collect::<Vec<_>>()
                .await?;
            for (c, ready) in results {
                counts.add(&c);
                all_ready &= ready;
            }
        }
        Ok((counts, all_ready))
    }

    async fn apply_one(
        &self,
        namespace: &str,
        desired: &Desired,
        before: &Inventory,
        wait: Duration,
    ) -> Result<(ApplyCounts, bool), ApplyError> {
        let key = desired.key();
        let (api, _) = self.api_for(&desired.gvk, namespace).await?;
        let body = apply_body(&normalise(desired));
        let params = PatchParams::apply(FIELD_MANAGER).force();
        // Deletes the object, waits until it is gone, and applies it anew.
        let replace = || async {
            self.delete_and_wait(&api, namespace, &key, wait).await?;
            self.fence.check(&key)?;
            api.patch(&key.name, &params, &Patch::Apply(&body))
                .await
                .map_err(|source| ApplyError::Apply {
                    object: key.clone(),
                    source,
                })
        };
        self.fence.check(&key)?;
        let applied = match api.patch(&key.name, &params, &Patch::Apply(&body)).await {
            Ok(obj) => obj,
            Err(kube::Error::Api(status))
                if desired.gvk.kind == "Job"
                    && status.code == 422
                    && status.message.contains("immutable") =>
            {
                // A Job's pod template cannot change. A changed installer or migration
                // is a new run: replace the Job and let it run again.
                tracing::info!(object = %key, "job spec changed; replacing the job");
                replace().await?
            }
            Err(source) => {
                return Err(ApplyError::Apply {
                    object: key,
                    source,
                });
            }
        };
        // A failed Job never runs again, and re-applying the same spec changes nothing
        // (nor does a changed backoffLimit or deadline): it would stay failed, and a
        // store retried after its installer failed would fail again at once. A new run
        // is a new Job.
        let applied = if desired.gvk.kind == "Job" && job_failed(&applied) {
            tracing::info!(object = %key, "the job failed before; replacing it so that it runs again");
            replace().await?
        } else {
            applied
        };
        let ready =
            !needs_wait(&desired.gvk.kind) || assess(&desired.gvk.kind, Some(&applied)).is_ready();
        let counts = match before.objects.get(&key) {
            None => ApplyCounts {
                created: 1,
                ..Default::default()
            },
            Some(seen) if !changed_by_apply(seen, &Seen::of(&applied.metadata)) => ApplyCounts {
                unchanged: 1,
                ..Default::default()
            },
            Some(_) => ApplyCounts {
                updated: 1,
                ..Default::default()
            },
        };
        Ok((counts, ready))
    }

    /// Deletes an object to replace it and waits until it is gone. Foreground: its
    /// dependents (a Job's pods) go first, so an old run never overlaps the new one.
    async fn delete_and_wait(
        &self,
        api: &Api<DynamicObject>,
        namespace: &str,
        key: &ObjectKey,
        wait: Duration,
    ) -> Result<(), ApplyError> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..Default::default()
        };
        self.fence.check(key)?;
        match api.delete(&key.name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(source) => {
                return Err(ApplyError::Delete {
                    object: key.to_string(),
                    source,
                });
            }
        }
        let gone = kube::runtime::wait::await_condition(
            api.clone(),
            &key.name,
            |o: Option<&DynamicObject>| o.is_none(),
        );
        let started = Instant::now();
        let reason = match tokio::time::timeout(wait, gone).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => format!("watching it failed: {}", error_chain(&e)),
            Err(_) => format!(
                "a finalizer (its own or a dependent's: foreground deletion waits for its pods) holds it in namespace {namespace}"
            ),
        };
        Err(ApplyError::ReplaceStuck {
            object: key.clone(),
            after: started.elapsed(),
            reason,
        })
    }

    /// Applies a whole store phase by phase: each phase applied, then awaited until
    /// ready (unless the apply's answers already show it ready), before the next
    /// starts; then prunes what the render no longer contains (keeping claims: see
    /// [`KEPT_ON_PRUNE`]). Each finished phase is
    /// reported on `progress` as it completes.
    ///
    /// When the render and the inventory are exactly those of an earlier apply that
    /// changed nothing and found everything ready, nothing is sent: the report says
    /// every object is unchanged and `known_converged`.
    pub async fn apply_store(
        &self,
        namespace: &str,
        store_id: &str,
        desired: &[Desired],
        progress: &tokio::sync::mpsc::UnboundedSender<PhaseReport>,
    ) -> Result<StoreReport, ApplyError> {
        self.apply_store_within(
            namespace,
            store_id,
            desired,
            progress,
            self.settings.phase_timeout,
            None,
        )
        .await
    }

    /// [`Applier::apply_store`], waiting at most `phase_timeout` (capped by the
    /// settings' own) for each phase to become ready: a re-apply of a store that was
    /// ready waits only briefly, so a store whose pods crash-loop does not hold a
    /// worker for the whole phase timeout on every attempt. With `until` (a store's
    /// provisioning deadline), no phase waits past it — each gets what is left, at
    /// least [`MIN_PHASE_WAIT`] — so the attempt ends near the deadline, not a phase
    /// timeout per remaining phase after it.
    pub async fn apply_store_within(
        &self,
        namespace: &str,
        store_id: &str,
        desired: &[Desired],
        progress: &tokio::sync::mpsc::UnboundedSender<PhaseReport>,
        phase_timeout: Duration,
        until: Option<Instant>,
    ) -> Result<StoreReport, ApplyError> {
        let phase_timeout = phase_timeout.min(self.settings.phase_timeout);
        let before = self.inventory(namespace, store_id).await?;
        let digest = converged_digest(desired, &before);
        let known = self
            .converged
            .lock()
            .expect("converged lock")
            .remove(namespace)
            .map(|(digest, _)| digest);
        let mut report = StoreReport::default();
        if known == Some(digest) {
            for phase in Phase::ALL {
                let objects: Vec<ObjectKey> = desired
                    .iter()
                    .filter(|d| d.phase == phase)
                    .map(Desired::key)
                    .collect();
                if objects.is_empty() {
                    continue;
                }
                let counts = ApplyCounts {
                    unchanged: objects.len(),
                    ..Default::default()
                };
                report.counts.add(&counts);
                let _ = progress.send(PhaseReport {
                    phase,
                    objects,
                    created: Vec::new(),
                    counts,
                    elapsed: Duration::ZERO,
                });
            }
            report.known_converged = true;
            self.remember_converged(namespace, digest);
            return Ok(report);
        }
        let mut waited = false;
        for phase in Phase::ALL {
            let objects: Vec<&Desired> = desired.iter().filter(|d| d.phase == phase).collect();
            if objects.is_empty() {
                continue;
            }
            let started = Instant::now();
            // What this phase may wait, for a replaced Job to go and then to be ready.
            let budget = || {
                until.map_or(phase_timeout, |until| {
                    phase_timeout.min(
                        until
                            .saturating_duration_since(Instant::now())
                            .max(MIN_PHASE_WAIT),
                    )
                })
            };
            let (counts, all_ready) = self
                .apply_objects_within(namespace, &objects, &before, budget())
                .await?;
            // Already ready by the apply's answers (a resync of a ready store, usually):
            // no watch to open. Otherwise watch until ready, or say why not.
            if !all_ready {
                wait::wait_ready(self, namespace, phase, &objects, budget()).await?;
                waited = true;
            }
            report.counts.add(&counts);
            let keys: Vec<ObjectKey> = objects.iter().map(|d| d.key()).collect();
            let _ = progress.send(PhaseReport {
                phase,
                created: keys
                    .iter()
                    .filter(|k| !before.objects.contains_key(*k))
                    .cloned()
                    .collect(),
                objects: keys,
                counts,
                elapsed: started.elapsed(),
            });
        }
        let pruned = self.prune(namespace, desired, &before).await?;
        report.pruned = pruned.deleted;
        report.kept = pruned.kept;
        // Every object was already as rendered and ready when the inventory was taken:
        // that inventory is the proof a later apply can compare against.
        if report.counts.changed() == 0 && report.pruned.is_empty() && !waited {
            self.remember_converged(namespace, digest);
        }
        Ok(report)
    }

    fn remember_converged(&self, namespace: &str, digest: [u8; 32]) {
        self.converged
            .lock()
            .expect("converged lock")
            .insert(namespace.to_owned(), (digest, Instant::now()));
    }

    /// Forgets what is known converged for stores not confirmed for `age`: those
    /// another replica works now, or deleted by one. Their next apply here is a full
    /// one. Returns how many entries remain.
    pub fn forget_converged_older_than(&self, age: Duration) -> usize {
        let mut converged = self.converged.lock().expect("converged lock");
        converged.retain(|_, (_, confirmed)| confirmed.elapsed() < age);
        converged.len()
    }

    /// Deletes objects in `inventory` that `desired` no longer contains, except the
    /// kinds in [`KEPT_ON_PRUNE`], which it reports as kept.
    pub async fn prune(
        &self,
        namespace: &str,
        desired: &[Desired],
        inventory: &Inventory,
    ) -> Result<Pruned, ApplyError> {
        let wanted: BTreeSet<ObjectKey> = desired.iter().map(Desired::key).collect();
        let (kept, stale): (Vec<ObjectKey>, Vec<ObjectKey>) = inventory
            .objects
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .partition(|k| KEPT_ON_PRUNE.contains(&k.kind.as_str()));
        for key in &kept {
            tracing::warn!(
                object = %key,
                namespace,
                "no longer in the store's render, but kept: it holds data; delete it by hand once nothing needs it"
            );
        }
        for key in &stale {
            let Some((g, v, k)) = PRUNABLE_KINDS.iter().find(|(_, _, k)| *k == key.kind) else {
                continue;
            };
            let (api, _) = self
                .api_for(&GroupVersionKind::gvk(g, v, k), namespace)
                .await?;
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            self.fence.check(key)?;
            match api.delete(&key.name, &dp).await {
                Ok(_) => tracing::info!(object = %key, namespace, "pruned"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(ApplyError::Delete {
                        object: key.to_string(),
                        source,
                    });
                }
            }
        }
        Ok(Pruned {
            deleted: stale,
            kept,
        })
    }

    /// Waits until every object of a phase is ready, by watching them (and the pods
    /// and warning events of the namespace, to say why when they are not).
    pub async fn wait_ready(
        &self,
        namespace: &str,
        phase: Phase,
        objects: &[&Desired],
    ) -> Result<(), ApplyError> {
        wait::wait_ready(self, namespace, phase, objects, self.settings.phase_timeout).await
    }

    /// Deletes a store's namespace (unless it is already terminating) and says where its
    /// deletion stands, without waiting: removing a namespace's content takes the
    /// namespace controller seconds to minutes, and a caller that polls frees its
    /// worker meanwhile. A namespace terminating for longer than `teardown_timeout` is
    /// stuck: the error names what holds it — the namespace's conditions and the
    /// objects left with finalizers.
    pub async fn start_teardown(&self, namespace: &str) -> Result<Teardown, ApplyError> {
        self.converged
            .lock()
            .expect("converged lock")
            .remove(namespace);
        wait::start_teardown(self, namespace).await
    }

    /// Every namespace in the cluster that carries a store's labels
    /// (`app.kubernetes.io/managed-by=storeplane` and a `storeplane.dev/store-id`),
    /// read as metadata only, a page at a time. Reads, never writes: the fence does not
    /// apply.
    pub async fn store_namespaces(&self) -> Result<Vec<StoreNamespace>, kube::Error> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let selector = format!(
            "{}={},{}",
            labels::MANAGED_BY,
            crate::domain::MANAGED_BY,
            labels::STORE_ID
        );
        let mut params = ListParams::default().labels(&selector).limit(500);
        let mut out = Vec::new();
        loop {
            let page = api.list_metadata(&params).await?;
            out.extend(page.items.into_iter().map(|ns| {
                StoreNamespace {
                    store_id: ns
                        .labels()
                        .get(labels::STORE_ID)
                        .cloned()
                        .unwrap_or_default(),
                    terminating: ns.metadata.deletion_timestamp.is_some(),
                    uid: ns.metadata.uid.clone().unwrap_or_default(),
                    name: ns.name_any(),
                }
            }));
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(out),
            }
        }
    }

    /// [`Applier::start_teardown`], then waits until the namespace is gone, at most
    /// until it has been terminating for `teardown_timeout`; if it hangs, the error
    /// names what holds it.
    pub async fn teardown(&self, namespace: &str) -> Result<(), ApplyError> {
        match self.start_teardown(namespace).await? {
            Teardown::Gone => Ok(()),
            Teardown::Terminating { elapsed } => wait::until_gone(self, namespace, elapsed).await,
        }
    }
}

/// A namespace labelled as a store's, as [`Applier::store_namespaces`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreNamespace {
    pub name: String,
    /// The `storeplane.dev/store-id` label as written (not necessarily a UUID).
    pub store_id: String,
    /// Deletion has begun (`deletionTimestamp` set).
    pub terminating: bool,
    /// Tells this namespace from a later one of the same name.
    pub uid: String,
}

/// The body of a server-side apply: JSON, which the API server reads as YAML (the
/// apply content type). YAML treats U+0085, U+2028 and U+2029 as line breaks even
/// inside quoted strings and folds them away with the spaces around them, so they are
/// sent escaped (`\u2028`), which JSON and YAML both read back as the character itself.
fn apply_body(object: &DynamicObject) -> Box<serde_json::value::RawValue> {
    let json = serde_json::to_string(object).expect("a DynamicObject serializes to JSON");
    let json = if json.contains(['\u{85}', '\u{2028}', '\u{2029}']) {
        json.replace('\u{85}', "\\u0085")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    } else {
        json
    };
    serde_json::value::RawValue::from_string(json).expect("escaping keeps the JSON valid")
}

/// Digest of a render (every object, with its phase) and of an inventory (every
/// object's kind, name and resourceVersion).
fn converged_digest(desired: &[Desired], inventory: &Inventory) -> [u8; 32] {
    let mut hash = Sha256::new();
    for d in desired {
        hash.update(d.phase.as_str().as_bytes());
        hash.update([0]);
        serde_json::to_writer(&mut hash, &d.object).expect("a DynamicObject serializes to JSON");
        hash.update([0]);
    }
    hash.update([1]);
    for (key, seen) in &inventory.objects {
        for part in [
            key.kind.as_str(),
            key.name.as_str(),
            seen.resource_version.as_str(),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
    }
    hash.finalize().into()
}

/// The object sent for an apply: the desired object with `stringData` folded into
/// `data` (the API server never stores `stringData`, so applying it would look like a
/// change every time) and no server-owned metadata.
fn normalise(desired: &Desired) -> DynamicObject {
    let mut obj = desired.object.clone();
    obj.metadata.resource_version = None;
    obj.metadata.managed_fields = None;
    obj.metadata.uid = None;
    obj.metadata.creation_timestamp = None;
    if desired.gvk.kind == "Secret"
        && let Some(map) = obj.data.as_object_mut()
        && let Some(Value::Object(string_data)) = map.remove("stringData")
    {
        let data = map
            .entry("data")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(data) = data.as_object_mut() {
            for (k, v) in string_data {
                let text = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                data.insert(
                    k,
                    Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
    obj
}

/// The kinds of [`PRUNABLE_KINDS`] as owned values.
pub fn prunable_kinds() -> Vec<GroupVersionKind> {
    PRUNABLE_KINDS
        .iter()
        .map(|(g, v, k)| GroupVersionKind::gvk(g, v, k))
        .collect()
}

fn managed_by_us(meta: &ObjectMeta) -> bool {
    our_entry(meta).is_some()
}

/// Storeplane's apply entry in an object's managed fields.
fn our_entry(meta: &ObjectMeta) -> Option<&ManagedFieldsEntry> {
    meta.managed_fields.iter().flatten().find(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
    })
}

pub(super) fn applied_at(meta: &ObjectMeta) -> Option<Time> {
    our_entry(meta).and_then(|m| m.time.clone())
}

/// Whether an apply answered with `after` changed the object listed as `before`. A
/// write moves the resourceVersion, but so does any other writer's (a controller's
/// status update between the listing and the apply); the apply itself wrote only if it
/// also moved its own managed-fields time, which the API server sets when, and only
/// when, the manager's apply changes the object. That time has a resolution of one
/// second: an apply that changes an object within the second of an earlier change by
/// the same manager reads as unchanged (and, its resourceVersion having moved, the
/// store is not remembered as converged by it).
fn changed_by_apply(before: &Seen, after: &Seen) -> bool {
    before.resource_version != after.resource_version && before.applied_at != after.applied_at
}

/// The longest wait for an answer to one request: longer than kube's watcher waits on
/// a quiet watch before it reconnects by itself (290 s + 5 s), so a watch is never cut
/// by this.
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

fn gvk_text(gvk: &GroupVersionKind) -> String {
    if gvk.group.is_empty() {
        format!("{}/{}", gvk.version, gvk.kind)
    } else {
        format!("{}/{}/{}", gvk.group, gvk.version, gvk.kind)
    }
}

/// Connects to the cluster named by `KUBECONFIG` (or `~/.kube/config`, or the
/// in-cluster service account).
///
/// Two of kube's defaults are changed. No request waits for an answer longer than
/// [`READ_TIMEOUT`] (kube's default is no limit, and a request the API server or a
/// load balancer accepts but never answers would hold its store and its worker for
/// good). And the client does not retry 429, 503 and 504 answers itself: its retries
/// back off for minutes (up to 15, honouring `Retry-After`), so a write could go out
/// long after the [`WriteFence`] check that let it — after the lease that allowed it
/// ran out. The orchestrator retries those answers itself, with backoff, under a
/// fresh fence check.
pub async fn connect() -> Result<Client, ConnectError> {
    let mut config = kube::Config::infer().await.map_err(ConnectError::Config)?;
    config.read_timeout = Some(READ_TIMEOUT);
    // Counted from when the request is sent, not from when its pooled connection
    // went idle.
    config.reset_reader_on_write = true;
    config.default_retry = false;
    let url = config.cluster_url.to_string();
    Client::try_from(config).map_err(|source| ConnectError::Client { url, source })
}

/// No cluster to talk to.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "no Kubernetes cluster configured ({0}); set KUBECONFIG to a kubeconfig file \
         (for a local cluster run `testenv/cluster up` and `eval $(testenv/cluster env)`)"
    )]
    Config(#[source] kube::config::InferConfigError),
    #[error("cannot build a client for the cluster at {url}: {source}")]
    Client {
        url: String,
        #[source]
        source: kube::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn converged_entries_not_confirmed_lately_are_forgotten() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let applier = Applier::new(Client::try_from(config).unwrap(), ApplySettings::default());
        applier.converged.lock().unwrap().insert(
            "store-old-00000001".into(),
            ([1; 32], Instant::now() - Duration::from_secs(5)),
        );
        applier.remember_converged("store-new-00000002", [2; 32]);
        assert_eq!(
            applier.forget_converged_older_than(Duration::from_secs(60)),
            2
        );
        assert_eq!(
            applier.forget_converged_older_than(Duration::from_secs(2)),
            1
        );
        let left = applier.converged.lock().unwrap();
        assert!(left.contains_key("store-new-00000002"), "{:?}", left.keys());
        assert!(!left.contains_key("store-old-00000001"));
    }

    #[test]
    fn secrets_apply_data_not_string_data() {
        let d = Desired {
            phase: Phase::Secrets,
            gvk: GroupVersionKind::gvk("", "v1", "Secret"),
            object: serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "creds", "namespace": "ns", "resourceVersion": "5"},
                "type": "Opaque",
                "data": {"a": "YQ=="},
                "stringData": {"b": "b-value"}
            }))
            .unwrap(),
        };
        let out = normalise(&d);
        assert!(out.metadata.resource_version.is_none());
        assert!(out.data.get("stringData").is_none());
        assert_eq!(out.data["data"]["a"], "YQ==");
        assert_eq!(
            out.data["data"]["b"],
            base64::engine::general_purpose::STANDARD.encode("b-value")
        );
    }

    #[test]
    fn a_failure_keeps_its_key_while_only_its_timing_and_counters_change() {
        let timeout = |after: Duration, restarts: u32| {
            ApplyError::Timeout {
                phase: Phase::Application,
                after,
                waiting: vec![
                    format!(
                        "Deployment/wordpress: 0/1 replicas available, 0 updated (pod \
                         wordpress-5d8f7-x2 container wordpress keeps failing (exit code 1, \
                         {restarts} restarts, Error))"
                    ),
                    "StatefulSet/mysql: 0/1 replicas ready".into(),
                ],
                unreachable: false,
            }
            .to_string()
        };
        let first = timeout(Duration::from_nanos(30_000_412_345), 3);
        let second = timeout(Duration::from_nanos(30_001_998_001), 4);
        assert_ne!(first, second, "the texts differ");
        assert_eq!(failure_key(&first), failure_key(&second), "{first}");
        assert_eq!(
            failure_key(&first),
            "phase application not ready: Deployment/wordpress; StatefulSet/mysql"
        );
        // Another object waited for is another failure.
        let other = ApplyError::Timeout {
            phase: Phase::Application,
            after: Duration::from_secs(30),
            waiting: vec!["Deployment/web: 0/1 replicas available, 0 updated".into()],
            unreachable: false,
        }
        .to_string();
        assert_ne!(failure_key(&first), failure_key(&other));

        let stuck = |after: Duration| {
            ApplyError::TeardownStuck {
                namespace: "store-x-1".into(),
                after,
                blockers: "finalizers remaining (NamespaceFinalizersRemaining): example.com/hold"
                    .into(),
            }
            .to_string()
        };
        let (a, b) = (
            stuck(Duration::from_nanos(300_000_000_123)),
            stuck(Duration::from_nanos(30_004_000_000)),
        );
        assert_ne!(a, b);
        assert_eq!(failure_key(&a), failure_key(&b));
        assert_eq!(
            failure_key(&a),
            "namespace store-x-1 is still terminating: finalizers remaining \
             (NamespaceFinalizersRemaining): example.com/hold"
        );
        // Texts without a timing are their own key.
        for text in [
            "the store's credentials cannot be read: wrong key",
            "applying Deployment/web was refused: retry after 5s please (500)",
        ] {
            assert_eq!(failure_key(text), text);
        }
    }

    #[test]
    fn only_an_apply_that_moved_its_own_time_changed_the_object() {
        let at = |secs: i64| {
            Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap(),
            ))
        };
        let seen = |rv: &str, applied_at| Seen {
            resource_version: rv.into(),
            applied_at,
        };
        let listed = seen("10", at(0));
        assert!(
            !changed_by_apply(&listed, &seen("10", at(0))),
            "nothing written"
        );
        assert!(
            !changed_by_apply(&listed, &seen("12", at(0))),
            "another writer moved the resourceVersion; the apply wrote nothing"
        );
        assert!(
            changed_by_apply(&listed, &seen("12", at(30))),
            "the apply wrote"
        );
        assert!(
            changed_by_apply(&seen("10", None), &seen("12", at(30))),
            "the apply took the object over"
        );
    }

    #[test]
    fn transient_errors() {
        let api = |code| {
            kube::Error::Api(
                kube::core::Status {
                    status: None,
                    message: "m".into(),
                    reason: "r".into(),
                    details: None,
                    code,
                    metadata: None,
                }
                .boxed(),
            )
        };
        assert!(is_transient_kube(&api(429)));
        assert!(is_transient_kube(&api(503)));
        assert!(is_transient_kube(&api(409)));
        assert!(!is_transient_kube(&api(422)));
        assert!(!is_transient_kube(&api(403)));
        assert!(!is_transient_kube(&api(404)));
        let missing_namespace = kube::Error::Api(
            kube::core::Status {
                status: None,
                message: "namespaces \"store-shop-1a2b3c4d\" not found".into(),
                reason: "NotFound".into(),
                details: None,
                code: 404,
                metadata: None,
            }
            .boxed(),
        );
        assert!(is_transient_kube(&missing_namespace));
        let terminating = kube::Error::Api(
            kube::core::Status {
                status: None,
                message: "resourcequotas \"store-quota\" is forbidden: unable to create new content in namespace store-shop-1a2b3c4d because it is being terminated".into(),
                reason: "Forbidden".into(),
                details: None,
                code: 403,
                metadata: None,
            }
            .boxed(),
        );
        assert!(is_transient_kube(&terminating));
    }
}
