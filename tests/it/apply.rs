//! `apply` against a real API server: phases applied and awaited, re-apply writes
//! nothing, drift comes back, pruning, failures that name the object, teardown.
//! These use hand-written objects so they test `apply` alone; the blueprint-driven
//! end-to-end flow is in `reconcile`.

use crate::support::cluster::{delete_namespace_and_wait, kube_client, unique_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use std::time::Duration;
use storeplane::apply::{
    Applier, ApplyError, ApplySettings, Desired, Inventory, PhaseReport, Teardown, WriteFence,
};
use storeplane::domain::{Phase, labels};

fn obj(phase: Phase, v: Value) -> Desired {
    let api_version = v["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, v["kind"].as_str().unwrap());
    Desired {
        phase,
        gvk,
        object: serde_json::from_value(v).unwrap(),
    }
}

/// A small store: every phase, every kind with a readiness rule.
fn store(ns: &str, id: &str, cpu_quota: &str) -> Vec<Desired> {
    let l = json!({ labels::STORE_ID: id, labels::MANAGED_BY: "storeplane" });
    let meta = |name: &str| json!({"name": name, "namespace": ns, "labels": l});
    let pod = |app: &str| {
        json!({
            "metadata": {"labels": {"app": app}},
            "spec": {
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": app, "image": "registry.example/app:1",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                  "limits": {"cpu": "500m", "memory": "256Mi"}}
                }]
            }
        })
    };
    let mut job_pod = pod("install");
    job_pod["spec"]["restartPolicy"] = json!("Never");
    vec![
        obj(
            Phase::Foundation,
            json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": l}}),
        ),
        obj(
            Phase::Foundation,
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("quota"),
            "spec": {"hard": {"limits.cpu": cpu_quota, "limits.memory": "4Gi", "persistentvolumeclaims": "4"}}}),
        ),
        obj(
            Phase::Foundation,
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta("default-deny"), "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
        ),
        obj(
            Phase::Secrets,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("creds"),
            "type": "Opaque", "stringData": {"password": "not-a-real-one"}}),
        ),
        obj(
            Phase::Storage,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta("files"),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
        obj(
            Phase::Data,
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("db"),
            "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                     "template": pod("db"),
                     "volumeClaimTemplates": [{"metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        ),
        obj(
            Phase::Data,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("db"),
            "spec": {"selector": {"app": "db"}, "ports": [{"port": 3306}]}}),
        ),
        obj(
            Phase::Application,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web"),
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": pod("web")}}),
        ),
        obj(
            Phase::Jobs,
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("install"),
            "spec": {"backoffLimit": 2, "template": job_pod}}),
        ),
    ]
}

fn applier(client: kube::Client) -> Applier {
    Applier::new(
        client,
        ApplySettings {
            concurrency: 4,
            phase_timeout: Duration::from_secs(90),
            teardown_timeout: Duration::from_secs(120),
        },
    )
}

async fn resource_versions(a: &Applier, ns: &str, id: &str) -> Inventory {
    a.inventory(ns, id).await.expect("inventory")
}

#[tokio::test]
async fn apply_waits_reapplies_nothing_repairs_drift_prunes_and_tears_down() {
    let client = kube_client().await;
    let a = applier(client.clone());
    let ns = unique_name("it-apply");
    let id = unique_name("id");
    let desired = store(&ns, &id, "8");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PhaseReport>();

    let first = a
        .apply_store(&ns, &id, &desired, &tx)
        .await
        .expect("first apply");
    assert_eq!(first.counts.created, desired.len(), "{first:?}");
    let mut phases = Vec::new();
    while let Ok(r) = rx.try_recv() {
        phases.push(r.phase);
    }
    assert_eq!(
        phases,
        vec![
            Phase::Foundation,
            Phase::Secrets,
            Phase::Storage,
            Phase::Data,
            Phase::Application,
            Phase::Jobs
        ],
        "one report per phase, in order"
    );
    // Everything that has a readiness rule is ready now.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let web = deployments.get("web").await.unwrap();
    assert_eq!(web.status.unwrap().available_replicas, Some(1));

    // Applying the unchanged store writes nothing: every resourceVersion stays.
    let before = resource_versions(&a, &ns, &id).await;
    assert_eq!(
        before.objects.len(),
        desired.len(),
        "every object is in the inventory"
    );
    let again = a
        .apply_store(&ns, &id, &desired, &tx)
        .await
        .expect("re-apply");
    assert_eq!(again.counts.changed(), 0, "{again:?}");
    let after = resource_versions(&a, &ns, &id).await;
    assert_eq!(before.objects, after.objects, "no resourceVersion changed");
    assert!(!again.known_converged, "the first re-apply is sent in full");

    // That apply changed nothing and found everything ready: while no object is
    // written, the next one sends nothing, and says so phase by phase.
    let known = a
        .apply_store(&ns, &id, &desired, &tx)
        .await
        .expect("apply of a known-converged store");
    assert!(known.known_converged, "{known:?}");
    assert_eq!(known.counts.unchanged, desired.len(), "{known:?}");
    while rx.try_recv().is_ok() {}
    let told = a
        .apply_store(&ns, &id, &desired, &tx)
        .await
        .expect("apply of a known-converged store");
    assert!(told.known_converged);
    let mut reported = 0;
    while let Ok(r) = rx.try_recv() {
        assert_eq!(r.counts.changed(), 0, "{r:?}");
        reported += r.objects.len();
    }
    assert_eq!(reported, desired.len(), "every object reported unchanged");

    // Another writer adds a field Storeplane does not own (as a controller writes
    // status, or an operator an annotation) after the store's objects were listed and
    // before they are applied: the resourceVersion moved, but the apply changed nothing
    // and says so — no drift to repair.
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(client.clone(), &ns);
    let listed = resource_versions(&a, &ns, &id).await;
    policies
        .patch(
            "default-deny",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"team": "ops"}}})),
        )
        .await
        .unwrap();
    let foundation: Vec<&Desired> = desired
        .iter()
        .filter(|d| d.phase == Phase::Foundation)
        .collect();
    let (counts, ready) = a
        .apply_objects(&ns, &foundation, &listed)
        .await
        .expect("apply after another writer's annotation");
    assert!(ready);
    assert_eq!(counts.changed(), 0, "{counts:?}");
    assert_eq!(counts.unchanged, foundation.len(), "{counts:?}");
    let policy = policies.get("default-deny").await.unwrap();
    assert_ne!(
        Some(&policy.metadata.resource_version.clone().unwrap()),
        listed
            .objects
            .iter()
            .find(|(k, _)| k.to_string() == "NetworkPolicy/default-deny")
            .map(|(_, seen)| &seen.resource_version),
        "the annotation moved the resourceVersion"
    );
    assert_eq!(
        policy.metadata.annotations.unwrap_or_default().get("team"),
        Some(&"ops".to_owned()),
        "a field Storeplane does not own is left alone"
    );

    // Another writer edits a field Storeplane owns: the resourceVersion moves, so the
    // apply is sent and takes the field back. (A NetworkPolicy: an edit that starts no
    // pods, so no other object — the quota's usage, say — moves meanwhile.)
    policies
        .patch(
            "default-deny",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"policyTypes": ["Ingress"]}})),
        )
        .await
        .unwrap();
    let taken_back = a
        .apply_store(&ns, &id, &desired, &tx)
        .await
        .expect("apply after an edit");
    assert!(!taken_back.known_converged);
    assert_eq!(taken_back.counts.updated, 1, "{taken_back:?}");
    let policy = policies.get("default-deny").await.unwrap();
    assert_eq!(
        policy.spec.unwrap().policy_types,
        Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
        "the edit is undone"
    );

    // Drift: a deleted Deployment comes back on the next apply.
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    kube::runtime::wait::await_condition(deployments.clone(), "web", |d: Option<&Deployment>| {
        d.is_none()
    })
    .await
    .unwrap();
    let repaired = a
        .apply_store(&ns, &id, &desired, &tx)
        .await
        .expect("repair");
    assert_eq!(repaired.counts.created, 1, "{repaired:?}");
    assert!(!repaired.known_converged);
    assert!(deployments.get("web").await.is_ok());

    // Pruning: the Job left the render, so it leaves the namespace; the claim left it
    // too, but holds data, so it stays and is reported as kept.
    let without_job: Vec<Desired> = desired
        .iter()
        .filter(|d| d.gvk.kind != "Job" && d.gvk.kind != "PersistentVolumeClaim")
        .cloned()
        .collect();
    let pruned = a
        .apply_store(&ns, &id, &without_job, &tx)
        .await
        .expect("prune");
    assert_eq!(
        pruned
            .pruned
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>(),
        vec!["Job/install"]
    );
    assert_eq!(
        pruned
            .kept
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>(),
        vec!["PersistentVolumeClaim/files"]
    );
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &ns);
    assert!(
        claims
            .get_opt("files")
            .await
            .unwrap()
            .is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
        "the claim was deleted"
    );
    let jobs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::from_gvk(&GroupVersionKind::gvk("batch", "v1", "Job")),
    );
    assert!(
        jobs.get_opt("install")
            .await
            .unwrap()
            .is_none_or(|j| j.metadata.deletion_timestamp.is_some())
    );

    // Teardown: the namespace really goes.
    a.teardown(&ns).await.expect("teardown");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt(&ns).await.unwrap().is_none());
    // Teardown of a namespace that is already gone is a no-op.
    a.teardown(&ns).await.expect("second teardown");
}

/// A claim of a StorageClass that binds on first consumer (k3s's `local-path`, kind's
/// `standard`) stays Pending until a pod that uses it is scheduled, in a later phase:
/// the storage phase must not wait for it, and the store still ends with its claim
/// bound. A claim of a class that does not exist holds the phase and says why.
#[tokio::test]
async fn a_claim_that_binds_on_first_consumer_does_not_hold_the_storage_phase() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use k8s_openapi::api::storage::v1::StorageClass;
    let client = kube_client().await;
    let ns = unique_name("it-late");
    let id = unique_name("id");
    let class = unique_name("it-first-consumer");
    let classes: Api<StorageClass> = Api::all(client.clone());
    classes
        .create(
            &Default::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": class},
                // testenv's in-tree hostPath provisioner, as its default class, but
                // binding only once the scheduler has placed a consumer.
                "provisioner": "kubernetes.io/host-path",
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut desired = store(&ns, &id, "4");
    for d in desired.iter_mut() {
        match d.gvk.kind.as_str() {
            "PersistentVolumeClaim" => d.object.data["spec"]["storageClassName"] = json!(class),
            // The web Deployment (application phase) is the claim's first consumer.
            "Deployment" => {
                let pod = &mut d.object.data["spec"]["template"]["spec"];
                pod["volumes"] =
                    json!([{"name": "files", "persistentVolumeClaim": {"claimName": "files"}}]);
                pod["containers"][0]["volumeMounts"] =
                    json!([{"name": "files", "mountPath": "/files"}]);
            }
            _ => {}
        }
    }
    let a = applier(client.clone());
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    a.apply_store(&ns, &id, &desired, &tx)
        .await
        .expect("every phase ready, the claim bound by its consumer");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let files = claims.get("files").await.unwrap();
    assert_eq!(
        files.status.and_then(|s| s.phase).as_deref(),
        Some("Bound"),
        "the claim is bound once the web pod was scheduled"
    );

    // A claim of a class that does not exist: pending, and the timeout says why.
    let missing = format!("{class}-missing");
    let claim = obj(
        Phase::Storage,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "orphan-class", "namespace": ns,
                     "labels": {labels::STORE_ID: id, labels::MANAGED_BY: "storeplane"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": missing,
                 "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    let short = Applier::new(
        client.clone(),
        ApplySettings {
            concurrency: 4,
            phase_timeout: Duration::from_secs(3),
            teardown_timeout: Duration::from_secs(120),
        },
    );
    let listed = short.inventory(&ns, &id).await.unwrap();
    short
        .apply_objects(&ns, &[&claim], &listed)
        .await
        .expect("the claim is accepted");
    let err = short
        .wait_ready(&ns, Phase::Storage, &[&claim])
        .await
        .expect_err("a claim of a missing class is not ready");
    let text = err.to_string();
    assert!(
        // Ours ("StorageClass … does not exist") or the PV controller's warning event,
        // whichever came last: both name the class.
        text.contains("PersistentVolumeClaim/orphan-class") && text.contains(&missing),
        "{text}"
    );

    // A store's provisioning deadline bounds each phase's wait, whatever the phase
    // timeout: 2 s left of it, not the 5 minutes a phase may take.
    let started = std::time::Instant::now();
    let err = a
        .apply_store_within(
            &ns,
            &id,
            std::slice::from_ref(&claim),
            &tx,
            Duration::from_secs(300),
            Some(started + Duration::from_secs(2)),
        )
        .await
        .expect_err("the claim stays pending");
    assert!(
        matches!(&err, ApplyError::Timeout { after, .. } if *after <= Duration::from_secs(2)),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    delete_namespace_and_wait(&client, &ns, Duration::from_secs(120)).await;
    classes
        .delete(&class, &DeleteParams::default())
        .await
        .unwrap();
}

/// Writes what the kubelet would report for a pod whose container cannot start (kwok
/// runs no containers): its image name cannot be parsed; with `not_ready`, the pod's
/// Ready conditions say so too (without, the pod stays Ready to its controller).
async fn report_invalid_image(
    pods: &Api<k8s_openapi::api::core::v1::Pod>,
    pod: &str,
    container: &str,
    not_ready: bool,
) {
    use kube::api::{Patch, PatchParams};
    let mut status = json!({"containerStatuses": [{
        "name": container, "image": "registry.example/app:1", "imageID": "", "ready": false,
        "restartCount": 0,
        "state": {"waiting": {"reason": "InvalidImageName",
                              "message": "couldn't parse image name"}}}]});
    if not_ready {
        status["conditions"] = json!([
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
            {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"}]);
    }
    pods.patch_status(
        pod,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}

/// A Deployment of one replica keeps its old pod until the new one is available. When
/// that old pod is broken (here its container cannot start: the kubelet's state written
/// by hand, as kwok runs no containers) and the change applied is what fixes it, the
/// old pod's state must not fail the rollout of the fix.
#[tokio::test]
async fn a_broken_pod_of_the_previous_template_does_not_fail_the_fix() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ListParams;
    let client = kube_client().await;
    let ns = unique_name("it-fix");
    let id = unique_name("id");
    let a = applier(client.clone());
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let desired = store(&ns, &id, "4");
    a.apply_store(&ns, &id, &desired, &tx)
        .await
        .expect("the first rollout");

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let web = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(web.len(), 1);
    let broken = web[0].metadata.name.clone().unwrap();
    report_invalid_image(&pods, &broken, "web", false).await;
    // The pod predates the fix by at least the managed-fields time's one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let mut fixed = desired.clone();
    let web_deployment = fixed
        .iter_mut()
        .find(|d| d.gvk.kind == "Deployment")
        .unwrap();
    web_deployment.object.data["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.example/app:2");
    a.apply_store(&ns, &id, &fixed, &tx)
        .await
        .expect("the fix rolls out although the pod it replaces is broken");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("registry.example/app:2")
    );

    delete_namespace_and_wait(&client, &ns, Duration::from_secs(120)).await;
}

/// A StatefulSet of one replica under the default `OrderedReady` pod management never
/// replaces a pod of its previous revision that is not ready: a broken database pod
/// would hold back the very change that fixes it. The wait deletes that pod (once), the
/// controller makes it again from the current revision, and the store becomes ready.
#[tokio::test]
async fn a_broken_statefulset_pod_of_the_previous_revision_is_replaced_by_the_fix() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Pod;
    let client = kube_client().await;
    let ns = unique_name("it-sts-fix");
    let id = unique_name("id");
    let a = applier(client.clone());
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let desired = store(&ns, &id, "4");
    a.apply_store(&ns, &id, &desired, &tx)
        .await
        .expect("the first rollout");

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let broken_uid = pods.get("db-0").await.unwrap().metadata.uid.unwrap();
    report_invalid_image(&pods, "db-0", "db", true).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sets
        .get("db")
        .await
        .unwrap()
        .status
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
        > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the StatefulSet never saw its pod not ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut fixed = desired.clone();
    let db = fixed
        .iter_mut()
        .find(|d| d.gvk.kind == "StatefulSet")
        .unwrap();
    db.object.data["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.example/app:2");
    a.apply_store(&ns, &id, &fixed, &tx)
        .await
        .expect("the fix rolls out: the broken pod of the previous revision is replaced");
    let replaced = pods.get("db-0").await.unwrap();
    assert_ne!(
        replaced.metadata.uid.unwrap(),
        broken_uid,
        "db-0 was made again"
    );
    assert_eq!(
        replaced.spec.unwrap().containers[0].image.as_deref(),
        Some("registry.example/app:2")
    );

    delete_namespace_and_wait(&client, &ns, Duration::from_secs(120)).await;
}

/// A pod the scheduler cannot place says so, with the scheduler's reason, in the
/// phase's timeout: the pod (`web-<hash>-<hash>`) is tied to its Deployment.
#[tokio::test]
async fn a_pod_that_cannot_be_scheduled_is_named_with_the_reason_when_the_phase_times_out() {
    let client = kube_client().await;
    let ns = unique_name("it-unschedulable");
    let id = unique_name("id");
    let a = Applier::new(
        client.clone(),
        ApplySettings {
            concurrency: 4,
            phase_timeout: Duration::from_secs(15),
            teardown_timeout: Duration::from_secs(120),
        },
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut desired = store(&ns, &id, "4");
    let web = desired
        .iter_mut()
        .find(|d| d.gvk.kind == "Deployment")
        .unwrap();
    web.object.data["spec"]["template"]["spec"]["nodeSelector"] =
        json!({"storeplane.test/no-such-node": "true"});
    let err = a
        .apply_store(&ns, &id, &desired, &tx)
        .await
        .expect_err("no node fits");
    let text = err.to_string();
    assert!(
        matches!(
            &err,
            ApplyError::Timeout {
                phase: Phase::Application,
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("Deployment/web"), "{text}");
    assert!(
        // From the pod's status or from the scheduler's event about the pod, whichever
        // came last: both tie the pod to its Deployment.
        (text.contains("cannot be scheduled") || text.contains("FailedScheduling"))
            && text.contains("node affinity/selector"),
        "the scheduler's reason: {text}"
    );
    delete_namespace_and_wait(&client, &ns, Duration::from_secs(120)).await;
}

/// An applier whose write fence has closed (its worker's lease ran out) sends no write:
/// not the store's objects, not a prune, not the namespace's deletion. The same applier
/// with an open fence writes as usual.
#[tokio::test]
async fn a_closed_write_fence_stops_every_write_and_names_it() {
    let client = kube_client().await;
    let open = applier(client.clone());
    let ns = unique_name("it-fence");
    let id = unique_name("id");
    let desired = store(&ns, &id, "8");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel::<PhaseReport>();
    let closed = open.fenced(WriteFence::until(std::time::Instant::now()));

    let refused = closed
        .apply_store(&ns, &id, &desired, &tx)
        .await
        .expect_err("fenced");
    assert!(
        matches!(&refused, ApplyError::Fenced { object, .. } if object == &format!("Namespace/{ns}")),
        "{refused}"
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(
        namespaces.get_opt(&ns).await.unwrap().is_none(),
        "the namespace was created"
    );

    // Open until a minute from now: it writes; then the closed one may neither prune
    // nor tear down what is there.
    let fence = WriteFence::until(std::time::Instant::now() + Duration::from_secs(60));
    open.fenced(fence.clone())
        .apply_store(&ns, &id, &desired, &tx)
        .await
        .expect("apply within the fence");
    let inventory = resource_versions(&open, &ns, &id).await;
    let pruned = closed
        .prune(&ns, &desired[..1], &inventory)
        .await
        .expect_err("fenced prune");
    assert!(matches!(pruned, ApplyError::Fenced { .. }), "{pruned}");
    let torn = closed
        .start_teardown(&ns)
        .await
        .expect_err("fenced teardown");
    assert!(matches!(torn, ApplyError::Fenced { .. }), "{torn}");
    let after = resource_versions(&open, &ns, &id).await;
    assert_eq!(
        after.objects.len(),
        inventory.objects.len(),
        "something was deleted"
    );
    assert!(
        namespaces
            .get(&ns)
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );
    open.teardown(&ns).await.expect("teardown");
}

#[tokio::test]
async fn a_quota_too_small_fails_at_once_naming_the_object() {
    let client = kube_client().await;
    let a = applier(client.clone());
    let ns = unique_name("it-quota");
    let id = unique_name("id");
    // Room for the database's 500m but not for the web pod's as well.
    let desired = store(&ns, &id, "600m");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let started = std::time::Instant::now();
    let err = a
        .apply_store(&ns, &id, &desired, &tx)
        .await
        .expect_err("must fail");
    match &err {
        ApplyError::Failed { object, reason } => {
            assert_eq!(object.to_string(), "Deployment/web", "{err}");
            assert!(reason.contains("exceeded quota"), "{reason}");
        }
        other => panic!("expected a failure naming the object, got {other}"),
    }
    assert!(!err.is_transient(), "a quota refusal is not retried");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "failed fast, not at the deadline"
    );
    delete_namespace_and_wait(&client, &ns, Duration::from_secs(120)).await;
}

/// A store whose installer Job failed (here: its pods were refused by a LimitRange
/// until its deadline passed) is fixed (the LimitRange raised) and applied again with
/// the same Job: the failed Job is replaced by a new one, which runs and completes.
/// Re-applying the same spec over the failed Job would change nothing, and the store
/// would fail again at once.
#[tokio::test]
async fn a_failed_job_is_replaced_when_the_store_is_applied_again() {
    let client = kube_client().await;
    let a = applier(client.clone());
    let ns = unique_name("it-job");
    let id = unique_name("id");
    let l = json!({ labels::STORE_ID: id, labels::MANAGED_BY: "storeplane" });
    let desired = |max_cpu: &str| {
        vec![
            obj(
                Phase::Foundation,
                json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": ns, "labels": l}}),
            ),
            obj(
                Phase::Foundation,
                json!({"apiVersion": "v1", "kind": "LimitRange",
                       "metadata": {"name": "limits", "namespace": ns, "labels": l},
                       "spec": {"limits": [{"type": "Container", "max": {"cpu": max_cpu}}]}}),
            ),
            obj(
                Phase::Jobs,
                json!({"apiVersion": "batch/v1", "kind": "Job",
                       "metadata": {"name": "install", "namespace": ns, "labels": l},
                       "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 8,
                                "template": {"metadata": {"labels": {"app": "install"}},
                                    "spec": {"restartPolicy": "Never",
                                             "automountServiceAccountToken": false,
                                             "containers": [{"name": "install",
                                                 "image": "registry.example/install:1",
                                                 "resources": {
                                                     "requests": {"cpu": "100m", "memory": "64Mi"},
                                                     "limits": {"cpu": "200m", "memory": "64Mi"}}}]}}}}),
            ),
        ]
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();

    // The Job's pods are refused: the apply fails, naming the Job.
    let err = a
        .apply_store(&ns, &id, &desired("100m"), &tx)
        .await
        .expect_err("the job's pods are refused");
    assert!(
        matches!(&err, ApplyError::Failed { object, .. } if object.to_string() == "Job/install"),
        "{err}"
    );
    // Its deadline passes: the Job fails for good.
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
    let failed = tokio::time::timeout(
        Duration::from_secs(90),
        kube::runtime::wait::await_condition(
            jobs.clone(),
            "install",
            |j: Option<&k8s_openapi::api::batch::v1::Job>| {
                j.and_then(|j| j.status.as_ref())
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
            },
        ),
    )
    .await
    .expect("the job fails at its deadline")
    .unwrap()
    .unwrap();
    let old_uid = failed.metadata.uid.clone().unwrap();

    // Fixed (the LimitRange allows the pods now) and applied again, the Job unchanged:
    // a new Job runs and completes.
    let report = a
        .apply_store(&ns, &id, &desired("1"), &tx)
        .await
        .unwrap_or_else(|e| panic!("the fixed store applies: {e}"));
    assert_eq!(report.counts.created, 0, "{report:?}");
    let job = jobs.get("install").await.unwrap();
    assert_ne!(
        job.metadata.uid.as_deref(),
        Some(old_uid.as_str()),
        "the failed job was replaced"
    );
    assert!(
        job.status
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| matches!(
                c.type_.as_str(),
                "Complete" | "SuccessCriteriaMet"
            ) && c.status == "True")),
        "the new job completed (or, since Kubernetes 1.31, met its success criteria while \
         its pod stops: the wait takes either)"
    );
    // Applied once more, the completed Job is kept.
    a.apply_store(&ns, &id, &desired("1"), &tx)
        .await
        .expect("re-apply");
    assert_eq!(
        jobs.get("install").await.unwrap().metadata.uid,
        job.metadata.uid,
        "a completed job is not run again"
    );
    delete_namespace_and_wait(&client, &ns, Duration::from_secs(120)).await;
}

/// A namespace held by a finalizer: the teardown that deletes it waits its timeout and
/// says what holds it, in the namespace's own words; a later look, finding it
/// terminating for longer than the timeout, says so at once (no worker waits on it),
/// and with a longer timeout says for how long it has been terminating; once
/// released, it goes.
#[tokio::test]
async fn a_stuck_teardown_names_what_holds_the_namespace_and_a_later_look_answers_at_once() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let client = kube_client().await;
    let ns = unique_name("it-held");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    maps.create(
        &Default::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "held", "finalizers": ["example.com/hold"]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let with_timeout = |teardown_timeout| {
        Applier::new(
            client.clone(),
            ApplySettings {
                concurrency: 4,
                phase_timeout: Duration::from_secs(90),
                teardown_timeout,
            },
        )
    };

    let first = with_timeout(Duration::from_secs(10))
        .teardown(&ns)
        .await
        .expect_err("held by the finalizer");
    assert!(
        matches!(&first, ApplyError::TeardownStuck { blockers, .. }
            if blockers.contains("ConfigMap/held (finalizers: example.com/hold)")),
        "{first}"
    );
    // The namespace controller reports what remains once it has tried to empty it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reported = namespaces
            .get(&ns)
            .await
            .unwrap()
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")
            });
        if reported {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no condition");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A later look, past the timeout: stuck, at once, naming the finalizer from the
    // conditions.
    let started = std::time::Instant::now();
    let later = with_timeout(Duration::from_secs(10))
        .start_teardown(&ns)
        .await
        .expect_err("still held");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "answered in {took:?}");
    match &later {
        ApplyError::TeardownStuck {
            blockers, after, ..
        } => {
            assert!(
                blockers.contains("finalizers remaining (NamespaceFinalizersRemaining)")
                    && blockers.contains("example.com/hold"),
                "{blockers}"
            );
            assert!(*after >= Duration::from_secs(10), "{later}");
            assert!(later.is_transient());
        }
        other => panic!("{other}"),
    }
    // Within a longer timeout it is merely terminating, for as long as it has been.
    match with_timeout(Duration::from_secs(300))
        .start_teardown(&ns)
        .await
        .expect("terminating within the timeout")
    {
        Teardown::Terminating { elapsed } => {
            assert!(elapsed >= Duration::from_secs(9), "{elapsed:?}")
        }
        Teardown::Gone => panic!("the namespace is held"),
    }

    // Released: the next attempt sees it go.
    maps.patch(
        "held",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    with_timeout(Duration::from_secs(120))
        .teardown(&ns)
        .await
        .expect("gone once released");
    assert!(namespaces.get_opt(&ns).await.unwrap().is_none());
    assert_eq!(
        with_timeout(Duration::from_secs(10))
            .start_teardown(&ns)
            .await
            .expect("gone"),
        Teardown::Gone
    );
}
