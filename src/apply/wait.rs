//! Waiting, by watching: a phase's objects until they are ready (with the namespace's
//! pods and warning events watched alongside to explain a failure), and a namespace
//! until it is gone. No sleeps: every state change arrives on a watch.

use super::readiness::{
    Readiness, assess, binds_on_first_consumer, event_problem, holds_rollout_back, needs_wait,
    pending_claim_class, pod_of_earlier_revision, pod_owner, pod_predates, pod_problem,
    statefulset_update_revision,
};
use super::{Applier, ApplyError, Desired, ObjectKey, Teardown, applied_at};
use crate::domain::Phase;
use crate::telemetry::error_chain;
use futures::stream::{BoxStream, SelectAll};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Preconditions,
    PropagationPolicy,
};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

enum Update {
    Object(usize, Box<Option<DynamicObject>>),
    Pod(Box<Pod>),
    Event(Box<Event>),
    WatchError(String),
}

/// Per object: its latest readiness and the latest explanation from pods or events.
struct Tracked {
    key: ObjectKey,
    readiness: Readiness,
    hint: Option<String>,
    /// The uid of the object as last seen: events about an earlier object of the same
    /// name (a Job just replaced) are not about this one.
    uid: Option<String>,
    /// Hopeless events about an object of this name with this uid, seen before the
    /// object itself: they fail the wait if the uid turns out to be this object's.
    early: Vec<(String, String)>,
    /// When Storeplane last changed the object (its managed-fields time), once seen:
    /// a Deployment's pods created before are of an earlier template, and warning
    /// events from before are about an earlier spec of the object.
    applied_at: Option<Time>,
    /// Whether the object has been seen (present or absent) by its watch.
    seen: bool,
    /// Hopeless pods of this Deployment seen before the object (of this StatefulSet,
    /// before the revision it rolls out is known): they fail the wait if they turn out
    /// to be of its current template.
    early_pods: Vec<(Box<Pod>, String)>,
    /// A StatefulSet as last seen, and its pods by name: a broken pod of an earlier
    /// revision holds its rollout back and is replaced ([`replace_blockers`]).
    statefulset: Option<Box<DynamicObject>>,
    pods: BTreeMap<String, Box<Pod>>,
    /// Uids of the pods deleted for that, each deleted once.
    replaced: Vec<String>,
}

impl Tracked {
    /// Whether a hopeless pod of this object fails the wait: not when it is of an
    /// earlier template (a Deployment's pod created before the last apply, a
    /// StatefulSet's of an earlier revision), which the rollout replaces.
    fn fails_on(&self, pod: &Pod) -> bool {
        match (self.key.kind.as_str(), self.update_revision()) {
            ("StatefulSet", Some(update)) => !pod_of_earlier_revision(pod, update),
            // Only a Deployment's pods are judged by time: a pod of any other kind never
            // predates it (a changed Job is replaced, its pods with it).
            ("Deployment", _) => !pod_predates(pod, self.applied_at.as_ref()),
            _ => true,
        }
    }

    fn update_revision(&self) -> Option<&str> {
        self.statefulset
            .as_deref()
            .and_then(statefulset_update_revision)
    }

    /// Whether which template a pod is of cannot be told yet.
    fn template_unknown(&self) -> bool {
        match self.key.kind.as_str() {
            "Deployment" => !self.seen,
            "StatefulSet" => self.update_revision().is_none(),
            _ => false,
        }
    }
}

pub(super) async fn wait_ready(
    applier: &Applier,
    namespace: &str,
    phase: Phase,
    objects: &[&Desired],
    timeout: std::time::Duration,
) -> Result<(), ApplyError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let since = chrono::Utc::now().timestamp() - 5;

    let mut tracked = Vec::new();
    let mut streams: SelectAll<BoxStream<'static, Update>> = SelectAll::new();
    for d in objects.iter().filter(|d| needs_wait(&d.gvk.kind)) {
        let index = tracked.len();
        tracked.push(Tracked {
            key: d.key(),
            readiness: Readiness::Pending("not observed yet".into()),
            hint: None,
            uid: None,
            early: Vec::new(),
            applied_at: None,
            seen: false,
            early_pods: Vec::new(),
            statefulset: None,
            pods: BTreeMap::new(),
            replaced: Vec::new(),
        });
        let (api, _) = applier.api_for(&d.gvk, namespace).await?;
        streams.push(
            watch_one(api, &d.key().name)
                .map(move |r| match r {
                    Ok(obj) => Update::Object(index, Box::new(obj)),
                    Err(e) => Update::WatchError(error_chain(&e)),
                })
                .boxed(),
        );
    }
    if tracked.is_empty() {
        return Ok(());
    }
    let workloads = tracked.iter().any(|t| {
        matches!(
            t.key.kind.as_str(),
            "Deployment" | "StatefulSet" | "Job" | "DaemonSet"
        )
    });
    if workloads {
        let pods: Api<Pod> = Api::namespaced(applier.client.clone(), namespace);
        streams.push(
            watcher::watcher(pods, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .map(|r| match r {
                    Ok(p) => Update::Pod(Box::new(p)),
                    Err(e) => Update::WatchError(error_chain(&e)),
                })
                .boxed(),
        );
    }
    let events: Api<Event> = Api::namespaced(applier.client.clone(), namespace);
    streams.push(
        watcher::watcher(events, watcher::Config::default().fields("type=Warning"))
            .default_backoff()
            .applied_objects()
            .map(|r| match r {
                Ok(e) => Update::Event(Box::new(e)),
                Err(e) => Update::WatchError(error_chain(&e)),
            })
            .boxed(),
    );

    let mut last_watch_error: Option<String> = None;
    let mut observed_any = false;
    // Pod name → the tracked kind and name that own it, from the pod watch: warning
    // events about a pod (it cannot be scheduled, a volume cannot be mounted) explain
    // its owner.
    let mut pod_owners: HashMap<String, (String, String)> = HashMap::new();
    // StorageClass name → binds on first consumer; a class's binding mode is immutable.
    let mut late_binding: HashMap<String, bool> = HashMap::new();
    loop {
        if tracked.iter().all(|t| t.readiness.is_ready()) {
            return Ok(());
        }
        let next = tokio::time::timeout_at(deadline, streams.next()).await;
        let update = match next {
            Ok(Some(u)) => u,
            Ok(None) => break,
            Err(_elapsed) => break,
        };
        match update {
            Update::Object(i, obj) => {
                observed_any = true;
                let t = &mut tracked[i];
                t.seen = true;
                t.readiness = assess(&t.key.kind, obj.as_ref().as_ref());
                if t.key.kind == "PersistentVolumeClaim"
                    && !t.readiness.is_ready()
                    && let Some(class) = obj.as_ref().as_ref().and_then(pending_claim_class)
                {
                    // Within the wait's deadline: a read that hangs must not hold the
                    // phase past it.
                    match tokio::time::timeout_at(
                        deadline,
                        class_binds_late(applier, &mut late_binding, class),
                    )
                    .await
                    {
                        Ok(Ok(true)) => t.readiness = Readiness::Ready,
                        Ok(Ok(false)) => {}
                        Ok(Err(e)) => t.hint = Some(e),
                        Err(_) => {
                            t.hint = Some(format!("reading StorageClass {class} timed out"));
                            break;
                        }
                    }
                }
                if let Readiness::Failed(reason) = &t.readiness {
                    return Err(ApplyError::Failed {
                        object: t.key.clone(),
                        reason: reason.clone(),
                    });
                }
                if let Some(o) = obj.as_ref().as_ref() {
                    t.applied_at = applied_at(&o.metadata);
                    if t.key.kind == "StatefulSet" {
                        t.statefulset = Some(Box::new(o.clone()));
                    }
                    if !t.template_unknown() {
                        let early = std::mem::take(&mut t.early_pods);
                        if let Some((_, reason)) =
                            early.into_iter().find(|(pod, _)| t.fails_on(pod))
                        {
                            return Err(ApplyError::Failed {
                                object: t.key.clone(),
                                reason,
                            });
                        }
                    }
                    if t.key.kind == "StatefulSet" {
                        replace_blockers(applier, namespace, t, deadline).await?;
                    }
                }
                if let Some(uid) = obj.as_ref().as_ref().and_then(|o| o.metadata.uid.clone()) {
                    let early = std::mem::take(&mut t.early);
                    if let Some((_, reason)) = early.into_iter().find(|(u, _)| *u == uid) {
                        return Err(ApplyError::Failed {
                            object: t.key.clone(),
                            reason,
                        });
                    }
                    t.uid = Some(uid);
                }
            }
            Update::Pod(pod) => {
                observed_any = true;
                let Some((kind, name)) = pod_owner(&pod) else {
                    continue;
                };
                if let Some(pod_name) = &pod.metadata.name {
                    pod_owners.insert(pod_name.clone(), (kind.clone(), name.clone()));
                }
                let Some(t) = tracked
                    .iter_mut()
                    .find(|t| t.key.kind == kind && t.key.name == name)
                else {
                    continue;
                };
                if let Some((hopeless, reason)) = pod_problem(&pod) {
                    if hopeless && t.template_unknown() {
                        // Which template it is of is known once the object is seen
                        // (a StatefulSet's: once it has observed the spec applied).
                        t.early_pods.push((pod.clone(), reason.clone()));
                    } else if hopeless && t.fails_on(&pod) {
                        return Err(ApplyError::Failed {
                            object: t.key.clone(),
                            reason,
                        });
                    }
                    t.hint = Some(reason);
                }
                if kind == "StatefulSet"
                    && let Some(pod_name) = pod.metadata.name.clone()
                {
                    t.pods.insert(pod_name, pod);
                    replace_blockers(applier, namespace, t, deadline).await?;
                }
            }
            Update::Event(event) => {
                observed_any = true;
                let at = event
                    .last_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .or(event.event_time.as_ref().map(|t| t.0))
                    .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0));
                // With no time at all it cannot be shown to be about this attempt.
                if at.is_none_or(|t| t.as_second() < since) {
                    continue;
                }
                let Some((mut kind, mut name, hopeless, reason)) = event_problem(&event) else {
                    continue;
                };
                if kind == "Pod"
                    && let Some((owner_kind, owner)) = pod_owners.get(&name)
                {
                    (kind, name) = (owner_kind.clone(), owner.clone());
                }
                if let Some(t) = tracked.iter_mut().find(|t| {
                    (t.key.kind == kind && t.key.name == name)
                        // A pod not seen by the pod watch yet: a StatefulSet's or a
                        // Job's by its name.
                        || ((kind == "Pod" || kind == t.key.kind)
                            && matches!(t.key.kind.as_str(), "StatefulSet" | "Job")
                            && pod_of(&name, &t.key.name))
                }) {
                    // From before the object's last change by Storeplane: about an
                    // earlier spec, which that change may have fixed.
                    if let (Some(at), Some(changed)) = (at, &t.applied_at)
                        && at < changed.0
                    {
                        continue;
                    }
                    // About the object itself (not one of its pods or ReplicaSets): only
                    // if it is this object, not an earlier one of the same name.
                    let involved = &event.involved_object;
                    let direct = involved.kind.as_deref() == Some(t.key.kind.as_str())
                        && involved.name.as_deref() == Some(t.key.name.as_str());
                    if direct && let Some(event_uid) = &involved.uid {
                        match &t.uid {
                            Some(uid) if uid != event_uid => continue,
                            None if hopeless => {
                                t.early.push((event_uid.clone(), reason));
                                continue;
                            }
                            _ => {}
                        }
                    }
                    if hopeless {
                        return Err(ApplyError::Failed {
                            object: t.key.clone(),
                            reason,
                        });
                    }
                    t.hint = Some(reason);
                }
            }
            Update::WatchError(e) => {
                // Every watch of the phase fails together when the API server is away,
                // and each retries with backoff: one warning per new error is enough.
                if last_watch_error.as_deref() == Some(e.as_str()) {
                    tracing::debug!(namespace, %phase, error = %e, "watch failed again; retrying");
                } else {
                    tracing::warn!(namespace, %phase, error = %e, "watch failed; retrying with backoff");
                }
                last_watch_error = Some(e);
            }
        }
    }
    let waiting = tracked
        .iter()
        .filter(|t| !t.readiness.is_ready())
        .map(|t| {
            let state = match &t.readiness {
                Readiness::Pending(s) | Readiness::Failed(s) => s.as_str(),
                Readiness::Ready => "ready",
            };
            match &t.hint {
                Some(h) => format!("{}: {state} ({h})", t.key),
                None => format!("{}: {state}", t.key),
            }
        })
        .chain(
            last_watch_error
                .iter()
                .map(|e| format!("last watch error: {e}")),
        )
        .collect();
    Err(ApplyError::Timeout {
        phase,
        after: started.elapsed(),
        waiting,
        unreachable: !observed_any && last_watch_error.is_some(),
    })
}

/// Whether StorageClass `name` binds on first consumer, read once per wait. A class
/// that does not exist (yet) binds nothing: its claims stay pending and say so.
async fn class_binds_late(
    applier: &Applier,
    known: &mut HashMap<String, bool>,
    name: &str,
) -> Result<bool, String> {
    if let Some(late) = known.get(name) {
        return Ok(*late);
    }
    let classes: Api<StorageClass> = Api::all(applier.client.clone());
    match classes.get_opt(name).await {
        Ok(Some(class)) => {
            let late = binds_on_first_consumer(&class);
            known.insert(name.to_owned(), late);
            Ok(late)
        }
        Ok(None) => Err(format!("StorageClass {name} does not exist")),
        Err(e) => Err(format!(
            "cannot read StorageClass {name}: {}",
            error_chain(&e)
        )),
    }
}

/// Deletes, once each, the pods of the StatefulSet `t` that hold its rollout back
/// ([`holds_rollout_back`]: of an earlier revision, not ready, never replaced under
/// `OrderedReady`), so that its controller makes them again from the revision being
/// rolled out — a store whose database image was broken is fixed by the change that
/// fixes the image, with no one deleting pods by hand. A pod that cannot be deleted is
/// reported in the wait's hint, and the wait goes on.
async fn replace_blockers(
    applier: &Applier,
    namespace: &str,
    t: &mut Tracked,
    deadline: tokio::time::Instant,
) -> Result<(), ApplyError> {
    let Some(sts) = t.statefulset.as_deref() else {
        return Ok(());
    };
    let blockers: Vec<(String, String)> = t
        .pods
        .values()
        .filter(|p| holds_rollout_back(sts, p))
        .filter_map(|p| Some((p.metadata.name.clone()?, p.metadata.uid.clone()?)))
        .filter(|(_, uid)| !t.replaced.contains(uid))
        .collect();
    for (name, uid) in blockers {
        applier.fence.check(format!("Pod/{name}"))?;
        t.replaced.push(uid.clone());
        let pods: Api<Pod> = Api::namespaced(applier.client.clone(), namespace);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        // Within the wait's deadline, like every call the wait makes.
        let deleted = tokio::time::timeout_at(deadline, pods.delete(&name, &dp))
            .await
            .unwrap_or_else(|_| {
                Err(kube::Error::Service(
                    "no answer before the phase's deadline".into(),
                ))
            });
        match deleted {
            Ok(_) => {
                tracing::info!(namespace, pod = %name, object = %t.key, "deleted a pod of the previous revision that was not ready and held the rollout back");
                t.hint = Some(format!(
                    "pod {name} of the previous revision was not ready and held the rollout \
                     back; deleted so that it is made again from the current revision"
                ));
            }
            // Gone already, or replaced by another of the same name meanwhile.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                tracing::warn!(namespace, pod = %name, error = %error_chain(&e), "could not delete a pod that holds a StatefulSet's rollout back");
                t.hint = Some(format!(
                    "pod {name} of the previous revision is not ready and holds the rollout \
                     back; deleting it failed ({}): delete it by hand",
                    error_chain(&e)
                ));
            }
        }
    }
    Ok(())
}

/// A StatefulSet's pods are `<name>-<ordinal>`; a Job's pods `<name>-<suffix>`.
fn pod_of(pod_name: &str, owner: &str) -> bool {
    pod_name
        .strip_prefix(owner)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('-'))
}

/// Deletes the namespace unless it is already terminating, and says where its deletion
/// stands, without waiting for it. A namespace terminating for longer than the
/// teardown timeout is stuck: the error names what holds it.
pub(super) async fn start_teardown(
    applier: &Applier,
    namespace: &str,
) -> Result<Teardown, ApplyError> {
    let api: Api<Namespace> = Api::all(applier.client.clone());
    let existing = api
        .get_metadata_opt(namespace)
        .await
        .map_err(|source| ApplyError::List {
            kind: "Namespace".into(),
            namespace: namespace.to_owned(),
            source,
        })?;
    let Some(existing) = existing else {
        return Ok(Teardown::Gone);
    };
    let Some(since) = existing.metadata.deletion_timestamp else {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        applier.fence.check(format_args!("Namespace/{namespace}"))?;
        return match api.delete(namespace, &dp).await {
            Ok(_) => Ok(Teardown::Terminating {
                elapsed: Duration::ZERO,
            }),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Teardown::Gone),
            Err(source) => Err(ApplyError::Delete {
                object: format!("Namespace/{namespace}"),
                source,
            }),
        };
    };
    // By this process's clock against the API server's: replicas and control plane
    // keep time alike, and a skew of seconds matters little against a timeout of
    // minutes.
    let elapsed = since
        .0
        .duration_until(k8s_openapi::jiff::Timestamp::now())
        .try_into()
        .unwrap_or_default();
    if elapsed > applier.settings.teardown_timeout {
        return Err(ApplyError::TeardownStuck {
            namespace: namespace.to_owned(),
            after: elapsed,
            blockers: blockers(applier, namespace).await,
        });
    }
    Ok(Teardown::Terminating { elapsed })
}

/// Waits (watching) until a namespace terminating for `elapsed` is gone, at most until
/// it has been terminating for the teardown timeout.
pub(super) async fn until_gone(
    applier: &Applier,
    namespace: &str,
    elapsed: Duration,
) -> Result<(), ApplyError> {
    let started = Instant::now();
    let api: Api<Namespace> = Api::all(applier.client.clone());
    let gone =
        kube::runtime::wait::await_condition(api.clone(), namespace, |n: Option<&Namespace>| {
            n.is_none()
        });
    let wait = applier.settings.teardown_timeout.saturating_sub(elapsed);
    match tokio::time::timeout(wait, gone).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ApplyError::TeardownStuck {
            namespace: namespace.to_owned(),
            after: elapsed + started.elapsed(),
            blockers: format!("could not watch the namespace: {}", error_chain(&e)),
        }),
        Err(_) => Err(ApplyError::TeardownStuck {
            namespace: namespace.to_owned(),
            after: elapsed + started.elapsed(),
            blockers: blockers(applier, namespace).await,
        }),
    }
}

/// What the namespace itself says holds it, most telling first: what content remains
/// (`NamespaceContentRemaining`, counting objects of every kind, custom resources
/// included), which finalizers remain on it (`NamespaceFinalizersRemaining`), then any
/// other condition that is true (a discovery or deletion failure) and the namespace's
/// own finalizers.
fn namespace_blockers(ns: &Namespace) -> Vec<String> {
    let conditions: Vec<_> = ns
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .filter(|c| c.status == "True")
        .collect();
    let mut out = Vec::new();
    for (type_, label) in [
        ("NamespaceContentRemaining", "content remaining"),
        ("NamespaceFinalizersRemaining", "finalizers remaining"),
    ] {
        for c in conditions.iter().filter(|c| c.type_ == type_) {
            let text = c
                .message
                .as_deref()
                .or(c.reason.as_deref())
                .unwrap_or("no message");
            out.push(format!("{label} ({type_}): {text}"));
        }
    }
    for c in conditions.iter().filter(|c| {
        !matches!(
            c.type_.as_str(),
            "NamespaceContentRemaining" | "NamespaceFinalizersRemaining"
        )
    }) {
        if let Some(m) = &c.message {
            out.push(format!("{}: {m}", c.type_));
        }
    }
    for f in ns.spec.iter().flat_map(|s| s.finalizers.iter().flatten()) {
        out.push(format!("namespace finalizer {f}"));
    }
    out
}

/// What keeps a namespace from going away: its status conditions and the objects
/// still in it that carry finalizers.
async fn blockers(applier: &Applier, namespace: &str) -> String {
    let mut out = Vec::new();
    let api: Api<Namespace> = Api::all(applier.client.clone());
    match api.get_opt(namespace).await {
        Ok(Some(ns)) => out.extend(namespace_blockers(&ns)),
        Ok(None) => return "the namespace is gone now".into(),
        Err(e) => out.push(format!("could not read the namespace: {}", error_chain(&e))),
    }
    let mut remaining: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut kinds = super::prunable_kinds();
    kinds.push(GroupVersionKind::gvk("", "v1", "Pod"));
    let found = stream::iter(kinds)
        .map(
            |gvk| -> futures::future::BoxFuture<'_, Result<(String, Vec<String>), String>> {
                Box::pin(async move {
                    // A list that fails (RBAC, an unreachable server) is said, so the
                    // answer never reads "nothing" where it could not look.
                    let (api, _) = applier
                        .api_for(&gvk, namespace)
                        .await
                        .map_err(|e| format!("could not list {}: {e}", gvk.kind))?;
                    let list = api
                        .list_metadata(&ListParams::default())
                        .await
                        .map_err(|e| format!("could not list {}: {}", gvk.kind, error_chain(&e)))?;
                    let items: Vec<String> = list
                        .items
                        .into_iter()
                        .filter_map(|o| {
                            let finalizers = o.metadata.finalizers.unwrap_or_default();
                            (!finalizers.is_empty()).then(|| {
                                format!(
                                    "{}/{} (finalizers: {})",
                                    gvk.kind,
                                    o.metadata.name.unwrap_or_default(),
                                    finalizers.join(", ")
                                )
                            })
                        })
                        .collect();
                    Ok((gvk.kind.clone(), items))
                })
            },
        )
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let mut unlisted = Vec::new();
    for result in found {
        match result {
            Ok((kind, items)) if !items.is_empty() => {
                remaining.insert(kind, items);
            }
            Ok(_) => {}
            Err(e) => unlisted.push(e),
        }
    }
    for items in remaining.into_values() {
        out.extend(items);
    }
    unlisted.sort();
    out.extend(unlisted);
    if out.is_empty() {
        "nothing reported; is kube-controller-manager (the namespace controller) running?".into()
    } else {
        out.join("; ")
    }
}

/// The object named `name`, as it changes: `Some` when it exists, `None` when it does not
/// (after every (re)list that did not find it, and on deletion). Like kube's
/// `watch_object`, but with the default exponential backoff between failed watches, so
/// an unreachable API server is retried a few times a second at most, not in a loop.
fn watch_one<K>(
    api: kube::Api<K>,
    name: &str,
) -> impl futures::Stream<Item = Result<Option<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher::watcher(api, config)
        .default_backoff()
        .scan(false, |seen, event| {
            let out = match event {
                Ok(watcher::Event::Init) => {
                    *seen = false;
                    Some(None)
                }
                Ok(watcher::Event::InitApply(obj) | watcher::Event::Apply(obj)) => {
                    *seen = true;
                    Some(Some(Ok(Some(obj))))
                }
                Ok(watcher::Event::Delete(_)) => {
                    *seen = false;
                    Some(Some(Ok(None)))
                }
                Ok(watcher::Event::InitDone) if !*seen => Some(Some(Ok(None))),
                Ok(watcher::Event::InitDone) => Some(None),
                Err(e) => Some(Some(Err(e))),
            };
            std::future::ready(out)
        })
        .filter_map(std::future::ready)
}

#[cfg(test)]
mod tests {
    use super::{namespace_blockers, pod_of};
    use k8s_openapi::api::core::v1::Namespace;

    #[test]
    fn a_stuck_namespace_tells_what_content_and_finalizers_remain() {
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "store-x-1", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating", "conditions": [
                {"type": "NamespaceDeletionDiscoveryFailure", "status": "False",
                 "reason": "ResourcesDiscovered", "message": "All resources successfully discovered"},
                {"type": "NamespaceDeletionContentFailure", "status": "False",
                 "reason": "ContentDeleted", "message": "All content successfully deleted, may be waiting on finalization"},
                {"type": "NamespaceFinalizersRemaining", "status": "True",
                 "reason": "SomeFinalizersRemain",
                 "message": "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"},
                {"type": "NamespaceContentRemaining", "status": "True",
                 "reason": "SomeResourcesRemain",
                 "message": "Some resources are remaining: widgets.example.com has 1 resource instances"}
            ]}
        }))
        .unwrap();
        assert_eq!(
            namespace_blockers(&ns),
            [
                "content remaining (NamespaceContentRemaining): Some resources are remaining: \
                 widgets.example.com has 1 resource instances",
                "finalizers remaining (NamespaceFinalizersRemaining): Some content in the \
                 namespace has finalizers remaining: example.com/hold in 1 resource instances",
                "namespace finalizer kubernetes",
            ]
        );
    }

    #[test]
    fn pod_names_map_to_owners() {
        assert!(pod_of("mysql-0", "mysql"));
        assert!(pod_of("install-x7k2p", "install"));
        assert!(!pod_of("mysql-admin-0", "mysql"));
        assert!(!pod_of("mysql", "mysql"));
    }
}
