//! Readiness rules per kind, and the diagnosis of why something is not ready, as pure
//! functions over objects read from the cluster. No IO here: `wait.rs` feeds these
//! functions from watches.

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DynamicObject;
use serde_json::Value;

/// What the rules say about one object right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready: the next phase may start.
    Ready,
    /// Not ready yet; the text says what is awaited.
    Pending(String),
    /// Will not become ready without a change (a failed Job, a quota refusal, an image
    /// that can never start); the text says why.
    Failed(String),
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready)
    }
}

/// Whether objects of this kind have a readiness rule at all; the others are ready as
/// soon as the API server accepted them.
pub fn needs_wait(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace"
            | "ResourceQuota"
            | "PersistentVolumeClaim"
            | "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
    )
}

/// The readiness rule for `kind`, applied to the object as last seen (`None`: absent).
pub fn assess(kind: &str, obj: Option<&DynamicObject>) -> Readiness {
    let Some(obj) = obj else {
        return Readiness::Pending("the object does not exist (yet)".into());
    };
    let status = obj.data.get("status").unwrap_or(&Value::Null);
    let spec = obj.data.get("spec").unwrap_or(&Value::Null);
    let generation = obj.metadata.generation.unwrap_or(0);
    let observed = status
        .get("observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    match kind {
        "Namespace" => match str_at(status, "phase") {
            Some("Active") => Readiness::Ready,
            // Deleted by someone else while the store stays: not a failure of the
            // store. Retries wait until it is gone, then the apply creates it anew.
            Some("Terminating") => Readiness::Pending(
                "the namespace is being deleted; it is created again once it is gone".into(),
            ),
            other => {
                Readiness::Pending(format!("namespace phase is {}", other.unwrap_or("unknown")))
            }
        },
        "ResourceQuota" => {
            // Admission checks pods against `status.hard`: until the controller has
            // copied a changed `spec.hard` there, the old limits still apply, and pods
            // the new ones allow would be refused.
            let computed = status
                .get("hard")
                .and_then(Value::as_object)
                .is_some_and(|h| !h.is_empty())
                && status.get("used").is_some();
            if !computed {
                Readiness::Pending(
                    "quota usage not computed yet (is kube-controller-manager running?)".into(),
                )
            } else if spec
                .get("hard")
                .is_some_and(|h| status.get("hard") != Some(h))
            {
                Readiness::Pending("the quota controller has not taken the new limits yet".into())
            } else {
                Readiness::Ready
            }
        }
        "PersistentVolumeClaim" => match str_at(status, "phase") {
            Some("Bound") => Readiness::Ready,
            Some("Lost") => Readiness::Failed("the claim lost its volume (phase Lost)".into()),
            other => Readiness::Pending(format!(
                "claim is {} (no matching PersistentVolume or provisioner yet)",
                other.unwrap_or("Pending")
            )),
        },
        "Deployment" => {
            // The generation first: until the controller has seen the spec just applied,
            // its conditions are about the previous one, and a change that fixes a
            // failure must not be failed by that failure.
            if observed < generation {
                return Readiness::Pending(format!(
                    "controller has not observed generation {generation} yet"
                ));
            }
            if let Some(c) = condition(status, "ReplicaFailure").filter(|c| is_true(c)) {
                let text = condition_text(c);
                // The same refusals `event_problem` calls hopeless; the others (a quota
                // not computed yet, a webhook that timed out) clear by themselves.
                return if create_refusal_is_hopeless(&text) {
                    Readiness::Failed(format!("cannot create pods: {text}"))
                } else {
                    Readiness::Pending(format!("cannot create pods yet: {text}"))
                };
            }
            // A stalled rollout (`ProgressDeadlineExceeded`, 600 s by default, shorter
            // than a store's provisioning deadline) is only a report: the controller
            // keeps trying, and a slow image pull still ends ready. Hopeless pod states
            // fail a phase at once; the phase deadline and retries decide the rest.
            let stalled = condition(status, "Progressing")
                .filter(|c| str_at(c, "reason") == Some("ProgressDeadlineExceeded"))
                .map(|c| format!(" (rollout stalled: {})", condition_text(c)))
                .unwrap_or_default();
            let want = int_at(spec, "replicas").unwrap_or(1);
            let updated = int_at(status, "updatedReplicas").unwrap_or(0);
            let available = int_at(status, "availableReplicas").unwrap_or(0);
            let total = int_at(status, "replicas").unwrap_or(0);
            let available_cond = condition(status, "Available").is_some_and(is_true);
            if updated >= want && available >= want && total <= want && available_cond {
                Readiness::Ready
            } else {
                Readiness::Pending(format!(
                    "{available}/{want} replicas available, {updated} updated{stalled}"
                ))
            }
        }
        "StatefulSet" => {
            if observed < generation {
                return Readiness::Pending(format!(
                    "controller has not observed generation {generation} yet"
                ));
            }
            let want = int_at(spec, "replicas").unwrap_or(1);
            let ready = int_at(status, "readyReplicas").unwrap_or(0);
            let updated = int_at(status, "updatedReplicas").unwrap_or(0);
            let revisions_match = match (
                str_at(status, "currentRevision"),
                str_at(status, "updateRevision"),
            ) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if ready >= want && (updated >= want || revisions_match) {
                Readiness::Ready
            } else {
                Readiness::Pending(format!("{ready}/{want} replicas ready"))
            }
        }
        "DaemonSet" => {
            let want = int_at(status, "desiredNumberScheduled").unwrap_or(0);
            let ready = int_at(status, "numberReady").unwrap_or(0);
            // Rolled out too: every scheduled pod of the current template.
            let updated = int_at(status, "updatedNumberScheduled").unwrap_or(0);
            if observed >= generation && ready >= want && updated >= want {
                Readiness::Ready
            } else {
                Readiness::Pending(format!("{ready}/{want} pods ready, {updated} updated"))
            }
        }
        "Job" => {
            // Since Kubernetes 1.31 the outcome comes first as `SuccessCriteriaMet` or
            // `FailureTarget`, and `Complete` or `Failed` only once the Job's pods are
            // gone: either tells the outcome, which never changes after.
            if ["Complete", "SuccessCriteriaMet"]
                .iter()
                .any(|t| condition(status, t).is_some_and(is_true))
            {
                return Readiness::Ready;
            }
            if let Some(c) = ["Failed", "FailureTarget"]
                .iter()
                .find_map(|t| condition(status, t).filter(|c| is_true(c)))
            {
                return Readiness::Failed(format!("job failed: {}", condition_text(c)));
            }
            let active = int_at(status, "active").unwrap_or(0);
            let failed = int_at(status, "failed").unwrap_or(0);
            Readiness::Pending(format!(
                "job running ({active} active, {failed} failed attempts)"
            ))
        }
        _ => Readiness::Ready,
    }
}

/// The StorageClass a claim that is still `Pending` names, if any: whether such a claim
/// may be left for its consumer depends on the class's binding mode
/// ([`binds_on_first_consumer`]).
pub fn pending_claim_class(obj: &DynamicObject) -> Option<&str> {
    let status = obj.data.get("status").unwrap_or(&Value::Null);
    if str_at(status, "phase").is_some_and(|p| p != "Pending") {
        return None;
    }
    obj.data
        .get("spec")
        .and_then(|s| str_at(s, "storageClassName"))
        .filter(|c| !c.is_empty())
}

/// Whether a StorageClass binds its claims only once a pod that uses them is scheduled
/// (`volumeBindingMode: WaitForFirstConsumer`: k3s's `local-path`, kind's `standard`,
/// most cloud CSI classes). Such a claim stays `Pending` until the workload of a later
/// phase is scheduled, so it counts as ready; the workload's readiness covers binding.
pub fn binds_on_first_consumer(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
}

/// Container states that will not resolve by waiting.
const HOPELESS_WAITING: &[&str] = &["InvalidImageName", "ErrImageNeverPull"];

/// Container states that usually mean the image or its configuration is wrong, but
/// could be transient (a registry outage; a kubelet whose secret cache has not synced
/// yet, `failed to sync secret cache`; a container runtime under load, `context
/// deadline exceeded`); reported, not failed on at once. The phase's deadline and the
/// store's retries decide.
const SUSPICIOUS_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// `CreateContainerConfigError` messages no wait can clear: a key missing from a
/// Secret or ConfigMap (a store's are applied whole, before its workloads), an image
/// that runs as root or as a named user under `runAsNonRoot`.
const HOPELESS_CONFIG_ERRORS: &[&str] = &["couldn't find key", "runAsNonRoot"];

/// Whether a container waiting for `reason` with `message` is a problem worth
/// reporting, and if so whether it is hopeless.
fn waiting_problem(reason: &str, message: &str) -> Option<bool> {
    if HOPELESS_WAITING.contains(&reason)
        || (reason == "CreateContainerConfigError"
            && HOPELESS_CONFIG_ERRORS.iter().any(|m| message.contains(m)))
    {
        Some(true)
    } else if SUSPICIOUS_WAITING.contains(&reason) {
        Some(false)
    } else {
        None
    }
}

/// What is wrong with a pod, if anything: `(hopeless, reason)`.
pub fn pod_problem(pod: &Pod) -> Option<(bool, String)> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in statuses {
        if let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.as_deref().unwrap_or("");
            let message = waiting.message.as_deref().unwrap_or("");
            if let Some(hopeless) = waiting_problem(reason, message) {
                return Some((
                    hopeless,
                    format!(
                        "pod {name} container {}: {reason}{}{message}",
                        cs.name,
                        if message.is_empty() { "" } else { ": " }
                    ),
                ));
            }
        }
        if let Some(term) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref())
            && cs.restart_count >= 3
        {
            return Some((
                false,
                format!(
                    "pod {name} container {} keeps failing (exit code {}, {} restarts{})",
                    cs.name,
                    term.exit_code,
                    cs.restart_count,
                    term.reason
                        .as_deref()
                        .map(|r| format!(", {r}"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    for c in status.conditions.iter().flatten() {
        if c.type_ == "PodScheduled" && c.status == "False" {
            return Some((
                false,
                format!(
                    "pod {name} cannot be scheduled: {}",
                    c.message.as_deref().unwrap_or("no reason given")
                ),
            ));
        }
    }
    None
}

/// The workload a pod belongs to, as `(kind, name)`: ReplicaSets are mapped back to
/// their Deployment by the `<deployment>-<hash>` naming rule.
pub fn pod_owner(pod: &Pod) -> Option<(String, String)> {
    let owner = pod.metadata.owner_references.as_ref()?.first()?;
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let (deployment, _hash) = owner.name.rsplit_once('-')?;
            Some(("Deployment".into(), deployment.to_owned()))
        }
        kind => Some((kind.to_owned(), owner.name.clone())),
    }
}

/// Whether a pod of a Deployment predates the Deployment's last change by Storeplane
/// (`applied_at`, its managed-fields time): a pod of an earlier template, which the
/// rollout of the current one replaces. Its state explains, but cannot fail, the wait:
/// a Deployment of one replica keeps its broken old pod until the new one is
/// available, and the change may be what fixes it. Both times are the API server's,
/// to the second; a pod created in the second of the change counts as current.
pub fn pod_predates(pod: &Pod, applied_at: Option<&Time>) -> bool {
    match (pod.metadata.creation_timestamp.as_ref(), applied_at) {
        (Some(created), Some(changed)) => created.0 < changed.0,
        _ => false,
    }
}

/// The revision a StatefulSet rolls out (`status.updateRevision`), once its controller
/// has observed the spec last written; `None` while that is not known. With it, the
/// revision its pods are of (`controller-revision-hash`) tells current pods from
/// those of an earlier spec.
pub fn statefulset_update_revision(sts: &DynamicObject) -> Option<&str> {
    let generation = sts.metadata.generation.unwrap_or(0);
    let status = sts.data.get("status")?;
    (int_at(status, "observedGeneration").unwrap_or(0) >= generation)
        .then(|| str_at(status, "updateRevision"))
        .flatten()
}

/// Whether a pod of a StatefulSet is of a revision other than the one `update_revision`
/// rolls out: its state explains, but cannot fail, the wait (the change may be what
/// fixes it), as [`pod_predates`] for a Deployment's.
pub fn pod_of_earlier_revision(pod: &Pod, update_revision: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("controller-revision-hash"))
        .is_some_and(|r| r != update_revision)
}

/// Whether a StatefulSet pod holds the StatefulSet's rollout back for good: of an
/// earlier revision than the one being rolled out, not ready, not already going, and
/// broken — its state says so ([`pod_problem`]: an image that cannot be pulled, a crash
/// loop, a container that cannot be created), not merely starting (a database
/// initialising must not be cut off). Under the default `OrderedReady` pod management
/// the controller replaces a pod of an earlier revision only once it is ready, so a
/// broken one is never replaced — Kubernetes calls the remedy "forced rollback": delete
/// the pod, and the controller makes it again from the current revision. A pod whose
/// ordinal is below the rollout's `partition` keeps its revision by design.
pub fn holds_rollout_back(sts: &DynamicObject, pod: &Pod) -> bool {
    let Some(update) = statefulset_update_revision(sts) else {
        return false;
    };
    let rolling = sts
        .data
        .get("status")
        .and_then(|s| str_at(s, "currentRevision"))
        .is_some_and(|current| current != update);
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let partition = sts
        .data
        .pointer("/spec/updateStrategy/rollingUpdate/partition")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let ordinal = pod
        .metadata
        .name
        .as_deref()
        .and_then(|n| n.rsplit_once('-'))
        .and_then(|(_, o)| o.parse::<i64>().ok());
    rolling
        && pod_of_earlier_revision(pod, update)
        && pod.metadata.deletion_timestamp.is_none()
        && !ready
        && ordinal.is_some_and(|o| o >= partition)
        && pod_problem(pod).is_some()
}

/// A warning Event about one of our objects that explains a failure:
/// `(kind, name, hopeless, reason)`.
pub fn event_problem(event: &Event) -> Option<(String, String, bool, String)> {
    if event.type_.as_deref() != Some("Warning") {
        return None;
    }
    let reason = event.reason.as_deref().unwrap_or("");
    if !matches!(
        reason,
        "FailedCreate"
            | "FailedScheduling"
            | "ProvisioningFailed"
            | "FailedMount"
            | "FailedAttachVolume"
    ) {
        return None;
    }
    let message = event.message.as_deref().unwrap_or("").trim().to_owned();
    let involved = &event.involved_object;
    let mut kind = involved.kind.clone().unwrap_or_default();
    let mut name = involved.name.clone().unwrap_or_default();
    if kind == "ReplicaSet"
        && let Some((deployment, _)) = name.rsplit_once('-')
    {
        kind = "Deployment".into();
        name = deployment.to_owned();
    }
    let hopeless = reason == "FailedCreate" && create_refusal_is_hopeless(&message);
    Some((kind, name, hopeless, format!("{reason}: {message}")))
}

/// Whether a refused pod creation (a `FailedCreate` event's or a `ReplicaFailure`
/// condition's message) needs a change to the store: quota exceeded, Pod Security,
/// forbidden, an invalid spec. A quota that has not been computed yet, a namespace whose
/// `default` ServiceAccount the controller has not made yet (it lags after an API
/// server or etcd outage; found by chaos b), a webhook that timed out or any other
/// refusal clears by itself.
pub fn create_refusal_is_hopeless(message: &str) -> bool {
    !message.contains("status unknown for quota")
        && !message.contains("error looking up service account")
        // The namespace is being deleted under the store: it is made again once gone
        // (a refusal at apply time says the same and is retried).
        && !message.contains("because it is being terminated")
        && (message.contains("exceeded quota")
            || message.contains("violates PodSecurity")
            || message.contains("forbidden")
            || message.contains("is invalid"))
}

/// Whether a Job has failed for good (condition `Failed=True`, or `FailureTarget=True`
/// while its pods are still stopping): it never runs again, so a later apply of the
/// same spec must replace it for the work to be tried again.
pub fn job_failed(obj: &DynamicObject) -> bool {
    obj.data.get("status").is_some_and(|s| {
        ["Failed", "FailureTarget"]
            .iter()
            .any(|t| condition(s, t).is_some_and(is_true))
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| str_at(c, "type") == Some(type_))
}

fn is_true(c: &Value) -> bool {
    str_at(c, "status") == Some("True")
}

fn condition_text(c: &Value) -> String {
    match (str_at(c, "reason"), str_at(c, "message")) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (Some(r), None) => r.to_owned(),
        (None, Some(m)) => m.to_owned(),
        (None, None) => "no reason given".into(),
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.as_str()
}

fn int_at(v: &Value, key: &str) -> Option<i64> {
    v.get(key)?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn deployment_rules() {
        let pending = obj(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "replicas": 2, "availableReplicas": 2, "updatedReplicas": 2,
                       "conditions": [{"type": "Available", "status": "True"}]}
        }));
        assert!(
            matches!(assess("Deployment", Some(&pending)), Readiness::Pending(m) if m.contains("generation 2"))
        );

        let ready = obj(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "availableReplicas": 2, "updatedReplicas": 2,
                       "conditions": [{"type": "Available", "status": "True"}]}
        }));
        assert_eq!(assess("Deployment", Some(&ready)), Readiness::Ready);

        let quota = obj(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 1},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "conditions": [
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                 "message": "pods \"web-1\" is forbidden: exceeded quota: store, requested: limits.memory=4Gi"}]}
        }));
        match assess("Deployment", Some(&quota)) {
            Readiness::Failed(m) => assert!(m.contains("exceeded quota"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_deployment_is_judged_by_the_generation_it_was_given() {
        // A change that fixes a failed rollout (more quota, a better image): until the
        // controller has observed it, the previous generation's conditions are stale.
        for (type_, reason, message) in [
            (
                "ReplicaFailure",
                "FailedCreate",
                "pods \"web-1\" is forbidden: exceeded quota: store",
            ),
            (
                "Progressing",
                "ProgressDeadlineExceeded",
                "ReplicaSet \"web-1\" has timed out progressing.",
            ),
        ] {
            let stale = obj(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "generation": 3},
                "spec": {"replicas": 1},
                "status": {"observedGeneration": 2, "conditions": [
                    {"type": type_, "status": "True", "reason": reason, "message": message}]}
            }));
            assert!(
                matches!(assess("Deployment", Some(&stale)), Readiness::Pending(ref m) if m.contains("generation 3")),
                "{type_}: {:?}",
                assess("Deployment", Some(&stale))
            );
        }
    }

    #[test]
    fn a_replica_failure_that_clears_by_itself_is_awaited() {
        let failing = |message: &str| {
            obj(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "generation": 1},
                "spec": {"replicas": 1},
                "status": {"observedGeneration": 1, "conditions": [
                    {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                     "message": message}]}
            }))
        };
        for transient in [
            "pods \"web-1\" is forbidden: status unknown for quota: store, resource: limits.memory",
            "pods \"web-1\" is forbidden: error looking up service account \
             store-shop-1a2b3c4d/default: serviceaccount \"default\" not found",
            "Internal error occurred: failed calling webhook \"policy.example.com\": \
             context deadline exceeded",
            "pods \"web-1\" is forbidden: unable to create new content in namespace \
             store-shop-1a2b3c4d because it is being terminated",
        ] {
            match assess("Deployment", Some(&failing(transient))) {
                Readiness::Pending(m) => assert!(m.contains(transient), "{m}"),
                other => panic!("{transient}: {other:?}"),
            }
        }
        for hopeless in [
            "pods \"web-1\" is forbidden: exceeded quota: store, requested: limits.memory=4Gi",
            "pods \"web-1\" is forbidden: violates PodSecurity \"restricted:latest\"",
        ] {
            assert!(
                matches!(
                    assess("Deployment", Some(&failing(hopeless))),
                    Readiness::Failed(_)
                ),
                "{hopeless}"
            );
        }
    }

    #[test]
    fn a_failed_job_is_told_apart() {
        let job = |conditions: Value| {
            obj(json!({
                "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "install"},
                "status": {"conditions": conditions}
            }))
        };
        assert!(job_failed(&job(json!([
            {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"},
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
        ]))));
        // Failing: the outcome is known while its pods still stop.
        assert!(job_failed(&job(json!([
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"}
        ]))));
        assert!(matches!(assess("Job", Some(&job(json!([
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"}
            ])))), Readiness::Failed(m) if m.contains("BackoffLimitExceeded")));
        assert!(
            assess(
                "Job",
                Some(&job(
                    json!([{"type": "SuccessCriteriaMet", "status": "True"}])
                ))
            )
            .is_ready()
        );
        assert!(!job_failed(&job(
            json!([{"type": "Failed", "status": "False"}])
        )));
        assert!(!job_failed(&job(
            json!([{"type": "Complete", "status": "True"}])
        )));
        assert!(!job_failed(&obj(
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "install"}})
        )));
    }

    #[test]
    fn job_and_claim_rules() {
        let failed = obj(json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "install"},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                        "message": "Job has reached the specified backoff limit"}]}
        }));
        assert!(
            matches!(assess("Job", Some(&failed)), Readiness::Failed(m) if m.contains("BackoffLimitExceeded"))
        );
        let done = obj(json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "install"},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}
        }));
        assert!(assess("Job", Some(&done)).is_ready());
        let claim = obj(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "status": {"phase": "Pending"}
        }));
        assert!(matches!(
            assess("PersistentVolumeClaim", Some(&claim)),
            Readiness::Pending(_)
        ));
        assert!(matches!(assess("Job", None), Readiness::Pending(_)));
        let cm = obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}));
        assert!(assess("ConfigMap", Some(&cm)).is_ready());
    }

    #[test]
    fn quota_needs_computed_status() {
        let fresh = obj(
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
                               "spec": {"hard": {"pods": "10"}}}),
        );
        assert!(!assess("ResourceQuota", Some(&fresh)).is_ready());
        let computed = obj(
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
                               "spec": {"hard": {"pods": "10"}},
                               "status": {"hard": {"pods": "10"}, "used": {"pods": "0"}}}),
        );
        assert!(assess("ResourceQuota", Some(&computed)).is_ready());
        // Limits just changed: admission still enforces the old ones.
        let stale = obj(
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
                               "spec": {"hard": {"pods": "12"}},
                               "status": {"hard": {"pods": "10"}, "used": {"pods": "0"}}}),
        );
        assert!(
            matches!(assess("ResourceQuota", Some(&stale)), Readiness::Pending(r) if r.contains("new limits")),
        );
    }

    #[test]
    fn pods_explain_themselves() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-abc-123", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7", "uid": "u"}]},
            "status": {"containerStatuses": [{
                "name": "wordpress", "image": "wordpress:nope", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": "InvalidImageName", "message": "couldn't parse image name"}}}]}
        }))
        .unwrap();
        let (hopeless, reason) = pod_problem(&pod).unwrap();
        assert!(hopeless);
        assert!(reason.contains("InvalidImageName"), "{reason}");
        assert_eq!(pod_owner(&pod), Some(("Deployment".into(), "web".into())));
    }

    #[test]
    fn only_container_errors_no_wait_can_clear_are_hopeless() {
        let waiting = |reason: &str, message: &str| -> Option<bool> {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": "mysql-0"},
                "status": {"containerStatuses": [{
                    "name": "mysql", "image": "mysql:8.4", "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": message}}}]}
            }))
            .unwrap();
            pod_problem(&pod).map(|(hopeless, _)| hopeless)
        };
        let config = "CreateContainerConfigError";
        for (reason, message, want) in [
            (
                config,
                "couldn't find key root in Secret store-x/db",
                Some(true),
            ),
            (
                config,
                "container has runAsNonRoot and image will run as root",
                Some(true),
            ),
            // The kubelet's cache or the runtime catching up: awaited, reported.
            (
                config,
                "failed to sync secret cache: timed out waiting for the condition",
                Some(false),
            ),
            (config, "secret \"db\" not found", Some(false)),
            (
                "CreateContainerError",
                "context deadline exceeded",
                Some(false),
            ),
            ("ErrImagePull", "rpc error: connection refused", Some(false)),
            ("InvalidImageName", "couldn't parse image name", Some(true)),
            ("ContainerCreating", "", None),
        ] {
            assert_eq!(waiting(reason, message), want, "{reason}: {message}");
        }
    }

    #[test]
    fn a_pod_of_an_earlier_template_cannot_fail_the_rollout_that_replaces_it() {
        let pod = |created: Option<&str>| -> Pod {
            serde_json::from_value(json!({"metadata": {
                "name": "web-5d8f7-abcde", "creationTimestamp": created}}))
            .unwrap()
        };
        let at = |t: &str| -> Time { serde_json::from_value(json!(t)).unwrap() };
        let changed = at("2026-11-28T05:00:10Z");
        // Created before the change Storeplane applied: the old template's.
        assert!(pod_predates(
            &pod(Some("2026-11-28T04:59:00Z")),
            Some(&changed)
        ));
        // In the same second or after: the current template's, decisive.
        assert!(!pod_predates(
            &pod(Some("2026-11-28T05:00:10Z")),
            Some(&changed)
        ));
        assert!(!pod_predates(
            &pod(Some("2026-11-28T05:01:00Z")),
            Some(&changed)
        ));
        // Unknown either way: decisive, as before.
        assert!(!pod_predates(&pod(None), Some(&changed)));
        assert!(!pod_predates(&pod(Some("2026-11-28T04:59:00Z")), None));
    }

    #[test]
    fn a_stalled_rollout_is_reported_and_awaited() {
        let stalled = obj(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 1},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                       "conditions": [{"type": "Progressing", "status": "False",
                                       "reason": "ProgressDeadlineExceeded",
                                       "message": "ReplicaSet \"web-1\" has timed out progressing."}]}
        }));
        match assess("Deployment", Some(&stalled)) {
            Readiness::Pending(m) => assert!(
                m.contains("0/1 replicas available") && m.contains("rollout stalled"),
                "{m}"
            ),
            other => panic!("a stalled rollout can still end ready: {other:?}"),
        }
    }

    #[test]
    fn a_broken_pod_of_an_earlier_revision_holds_a_statefulset_back() {
        let sts = |observed: i64, current: &str, update: &str| {
            obj(json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "db", "generation": 2},
                "spec": {"replicas": 1},
                "status": {"observedGeneration": observed, "currentRevision": current,
                           "updateRevision": update, "replicas": 1}
            }))
        };
        let pod = |revision: &str, ready: &str, deleting: bool| -> Pod {
            let mut p = json!({
                "metadata": {"name": "db-0", "labels": {"controller-revision-hash": revision}},
                "status": {"conditions": [{"type": "Ready", "status": ready}],
                           "containerStatuses": [{"name": "db", "image": "db:1", "imageID": "",
                               "ready": false, "restartCount": 0,
                               "state": {"waiting": {"reason": "ImagePullBackOff",
                                                     "message": "Back-off pulling image"}}}]}
            });
            if deleting {
                p["metadata"]["deletionTimestamp"] = json!("2026-11-28T12:00:00Z");
            }
            serde_json::from_value(p).unwrap()
        };
        let rolling = sts(2, "db-a", "db-b");
        assert!(holds_rollout_back(&rolling, &pod("db-a", "False", false)));
        // Ready: the controller replaces it itself. Current, or already going: not ours.
        assert!(!holds_rollout_back(&rolling, &pod("db-a", "True", false)));
        assert!(!holds_rollout_back(&rolling, &pod("db-b", "False", false)));
        assert!(!holds_rollout_back(&rolling, &pod("db-a", "False", true)));
        // Not ready but nothing wrong: starting (a database initialising).
        let mut starting = pod("db-a", "False", false);
        starting.status.as_mut().unwrap().container_statuses = None;
        assert!(!holds_rollout_back(&rolling, &starting));
        // Below the rollout's partition: kept at its revision on purpose.
        let mut partitioned = rolling.clone();
        partitioned.data["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}});
        assert!(!holds_rollout_back(
            &partitioned,
            &pod("db-a", "False", false)
        ));
        // No rollout, or the spec just written not observed yet (its revision unknown).
        assert!(!holds_rollout_back(
            &sts(2, "db-a", "db-a"),
            &pod("db-a", "False", false)
        ));
        assert!(!holds_rollout_back(
            &sts(1, "db-a", "db-b"),
            &pod("db-a", "False", false)
        ));
        assert_eq!(statefulset_update_revision(&sts(1, "db-a", "db-b")), None);
        assert_eq!(statefulset_update_revision(&rolling), Some("db-b"));
        assert!(pod_of_earlier_revision(
            &pod("db-a", "False", false),
            "db-b"
        ));
        assert!(!pod_of_earlier_revision(
            &pod("db-b", "False", false),
            "db-b"
        ));
    }

    #[test]
    fn a_daemonset_is_ready_once_rolled_out_everywhere() {
        let ds = |ready: i64, updated: i64| {
            obj(json!({
                "apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": "agent", "generation": 2},
                "status": {"observedGeneration": 2, "desiredNumberScheduled": 3,
                           "numberReady": ready, "updatedNumberScheduled": updated}
            }))
        };
        assert!(assess("DaemonSet", Some(&ds(3, 3))).is_ready());
        // Ready, but one node still runs the previous template.
        assert!(!assess("DaemonSet", Some(&ds(3, 2))).is_ready());
        assert!(!assess("DaemonSet", Some(&ds(2, 3))).is_ready());
    }

    #[test]
    fn a_volume_that_cannot_be_mounted_explains_but_does_not_fail() {
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": "e"}, "type": "Warning", "reason": "FailedMount",
            "message": "MountVolume.SetUp failed for volume \"creds\": secret \"creds\" not found",
            "involvedObject": {"kind": "Pod", "name": "wp-install-x7k2p"}
        }))
        .unwrap();
        let (kind, name, hopeless, reason) = event_problem(&ev).unwrap();
        assert_eq!(
            (kind.as_str(), name.as_str(), hopeless),
            ("Pod", "wp-install-x7k2p", false)
        );
        assert!(
            reason.starts_with("FailedMount: MountVolume.SetUp failed"),
            "{reason}"
        );
    }

    #[test]
    fn quota_events_are_hopeless_but_unknown_status_is_not() {
        let ev = |message: &str| -> Event {
            serde_json::from_value(json!({
                "metadata": {"name": "e"}, "type": "Warning", "reason": "FailedCreate", "message": message,
                "involvedObject": {"kind": "StatefulSet", "name": "mysql"}
            }))
            .unwrap()
        };
        let (kind, name, hopeless, _) =
            event_problem(&ev("create Pod mysql-0 failed: exceeded quota: store")).unwrap();
        assert_eq!(
            (kind.as_str(), name.as_str(), hopeless),
            ("StatefulSet", "mysql", true)
        );
        let (_, _, hopeless, _) =
            event_problem(&ev("pods is forbidden: status unknown for quota: store")).unwrap();
        assert!(!hopeless);
        let (_, _, hopeless, _) = event_problem(&ev(
            "create Pod mysql-0 in StatefulSet mysql failed error: pods \"mysql-0\" is \
             forbidden: error looking up service account store-shop-1a2b3c4d/default: \
             serviceaccount \"default\" not found",
        ))
        .unwrap();
        assert!(
            !hopeless,
            "the ServiceAccount comes once the controller catches up"
        );
    }
}
