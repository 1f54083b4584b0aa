//! Proof that the test cluster (`testenv/`) behaves like a real one where Storeplane
//! depends on it: server-side apply, scheduling onto kwok's fake nodes, readiness,
//! volume binding, quota, namespace teardown and Jobs. Each test works in a namespace
//! of its own and waits on watches with deadlines, never on sleeps.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ResourceQuota,
    Service,
};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::support::cluster::{TestNamespace, kube_client};

/// Deadline for a workload to reach its state on the fake nodes.
const DEADLINE: Duration = Duration::from_secs(60);
/// Field manager of these tests' server-side applies.
const FIELD_MANAGER: &str = "storeplane-it";

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a well-formed test object")
}

/// Server-side applies `obj` (which carries its own name) and returns the result.
async fn apply<K>(api: &Api<K>, obj: &K) -> K
where
    K: Resource + Clone + Debug + serde::Serialize + DeserializeOwned,
{
    let name = obj.meta().name.clone().expect("object has a name");
    api.patch(&name, &apply_params(), &Patch::Apply(obj))
        .await
        .unwrap_or_else(|e| panic!("server-side apply of {name}: {e}"))
}

/// Watches `name` until `cond` holds, or panics after [`DEADLINE`] with the object's
/// last state and the namespace's events.
async fn wait_until<K>(
    ns: &TestNamespace,
    api: &Api<K>,
    name: &str,
    what: &str,
    cond: impl Condition<K>,
) -> K
where
    K: Resource + Clone + Debug + Send + DeserializeOwned + 'static,
{
    match tokio::time::timeout(DEADLINE, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(obj))) => obj,
        Ok(Ok(None)) => panic!("{what}: {name} does not exist"),
        Ok(Err(e)) => panic!("{what}: watching {name} failed: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            panic!(
                "{what}: not reached within {DEADLINE:?}\nlast state of {name}: {last:#?}\nevents:\n{}",
                namespace_events(ns).await
            );
        }
    }
}

async fn namespace_events(ns: &TestNamespace) -> String {
    let events: Api<Event> = ns.api();
    match events.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|e| {
                format!(
                    "  {} {}/{}: {} {}",
                    e.type_.as_deref().unwrap_or(""),
                    e.involved_object.kind.as_deref().unwrap_or(""),
                    e.involved_object.name.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("  (could not list events: {e})"),
    }
}

fn condition_true(conds: Option<&Vec<impl HasCondition>>, type_: &str) -> bool {
    conds
        .into_iter()
        .flatten()
        .any(|c| c.type_() == type_ && c.status() == "True")
}

/// The `type`/`status` pair shared by every Kubernetes condition type.
trait HasCondition {
    fn type_(&self) -> &str;
    fn status(&self) -> &str;
}
macro_rules! has_condition {
    ($($t:ty),*) => {$(
        impl HasCondition for $t {
            fn type_(&self) -> &str { &self.type_ }
            fn status(&self) -> &str { &self.status }
        }
    )*};
}
has_condition!(
    k8s_openapi::api::core::v1::PodCondition,
    k8s_openapi::api::core::v1::NodeCondition,
    k8s_openapi::api::apps::v1::DeploymentCondition,
    k8s_openapi::api::batch::v1::JobCondition
);

fn pod_ready(pod: &Pod) -> bool {
    condition_true(
        pod.status.as_ref().and_then(|s| s.conditions.as_ref()),
        "Ready",
    )
}

fn pod_is_ready() -> impl Condition<Pod> {
    |pod: Option<&Pod>| pod.is_some_and(pod_ready)
}

/// A container spec with requests, so the pod also passes quota admission.
fn container(name: &str, image: &str) -> serde_json::Value {
    json!({
        "name": name,
        "image": image,
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}
    })
}

/// Asserts the pod is bound to a Ready kwok node.
async fn assert_on_kwok_node(client: &Client, pod: &Pod) {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_else(|| panic!("pod {pod_name} was not scheduled"));
    let node = Api::<Node>::all(client.clone())
        .get(node_name)
        .await
        .unwrap_or_else(|e| panic!("reading node {node_name}: {e}"));
    let annotations = node.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("kwok.x-k8s.io/node").map(String::as_str),
        Some("fake"),
        "pod {pod_name} runs on {node_name}, which is not a kwok node"
    );
    assert!(
        condition_true(
            node.status.as_ref().and_then(|s| s.conditions.as_ref()),
            "Ready"
        ),
        "node {node_name} is not Ready"
    );
}

#[tokio::test]
async fn deployment_applied_server_side_is_scheduled_on_kwok_nodes_and_becomes_available() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client).await;
    let deployments: Api<Deployment> = ns.api();

    let deployment: Deployment = from_json(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [container("web", "nginx:1.27")]}
            }
        }
    }));
    let applied = apply(&deployments, &deployment).await;
    let managers: Vec<_> = applied
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert!(
        managers.contains(&FIELD_MANAGER),
        "field manager {FIELD_MANAGER} missing from {managers:?}"
    );

    let available = wait_until(
        &ns,
        &deployments,
        "web",
        "Deployment web Available with 3 ready replicas",
        |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
                s.ready_replicas == Some(3)
                    && s.available_replicas == Some(3)
                    && condition_true(s.conditions.as_ref(), "Available")
            })
        },
    )
    .await;
    assert_eq!(available.status.and_then(|s| s.updated_replicas), Some(3));

    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("listing pods");
    assert_eq!(
        pods.items.len(),
        3,
        "expected 3 pods, got {:#?}",
        pods.items
    );
    for pod in &pods.items {
        assert!(pod_ready(pod), "pod {:?} is not Ready", pod.metadata.name);
        assert_eq!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running")
        );
        assert_on_kwok_node(&client, pod).await;
    }

    // Re-applying the same object is accepted and changes nothing.
    let again = apply(&deployments, &deployment).await;
    assert_eq!(again.metadata.generation, applied.metadata.generation);

    ns.cleanup().await;
}

#[tokio::test]
async fn statefulset_volume_claim_is_bound_and_its_pod_becomes_ready() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client).await;

    let service: Service = from_json(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}
    }));
    apply(&ns.api::<Service>(), &service).await;

    let mut db = container("db", "postgres:17");
    db["volumeMounts"] = json!([{"name": "data", "mountPath": "/var/lib/postgresql/data"}]);
    let statefulset: StatefulSet = from_json(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [db]}},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }));
    let statefulsets: Api<StatefulSet> = ns.api();
    apply(&statefulsets, &statefulset).await;

    let claims: Api<PersistentVolumeClaim> = ns.api();
    let claim = wait_until(
        &ns,
        &claims,
        "data-db-0",
        "PVC data-db-0 Bound",
        |c: Option<&PersistentVolumeClaim>| {
            c.and_then(|c| c.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Bound")
        },
    )
    .await;
    let spec = claim.spec.expect("claim spec");
    assert_eq!(
        spec.storage_class_name.as_deref(),
        Some("standard"),
        "the default StorageClass was not applied"
    );
    let volume_name = spec.volume_name.expect("a bound claim names its volume");
    let volume = Api::<PersistentVolume>::all(client.clone())
        .get(&volume_name)
        .await
        .expect("reading the bound PersistentVolume");
    assert_eq!(
        volume.status.and_then(|s| s.phase).as_deref(),
        Some("Bound")
    );
    let claim_ref = volume
        .spec
        .and_then(|s| s.claim_ref)
        .expect("the volume names its claim");
    assert_eq!(claim_ref.namespace.as_deref(), Some(ns.name()));
    assert_eq!(claim_ref.name.as_deref(), Some("data-db-0"));

    let pod = wait_until(
        &ns,
        &ns.api::<Pod>(),
        "db-0",
        "pod db-0 Ready",
        pod_is_ready(),
    )
    .await;
    assert_on_kwok_node(&client, &pod).await;
    wait_until(
        &ns,
        &statefulsets,
        "db",
        "StatefulSet db with 1 ready replica",
        |s: Option<&StatefulSet>| {
            s.and_then(|s| s.status.as_ref())
                .is_some_and(|s| s.ready_replicas == Some(1))
        },
    )
    .await;

    ns.cleanup().await;
}

#[tokio::test]
async fn resource_quota_status_is_computed_and_a_pod_exceeding_it_is_refused() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client).await;
    let quotas: Api<ResourceQuota> = ns.api();

    let quota: ResourceQuota = from_json(json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "compute"},
        "spec": {"hard": {"pods": "2", "requests.cpu": "1", "requests.memory": "1Gi"}}
    }));
    apply(&quotas, &quota).await;
    wait_until(
        &ns,
        &quotas,
        "compute",
        "ResourceQuota compute with computed status",
        |q: Option<&ResourceQuota>| {
            q.and_then(|q| q.status.as_ref()).is_some_and(|s| {
                s.hard.as_ref().is_some_and(|h| h.contains_key("pods"))
                    && s.used
                        .as_ref()
                        .and_then(|u| u.get("pods"))
                        .is_some_and(|p| p.0 == "0")
            })
        },
    )
    .await;

    let pods: Api<Pod> = ns.api();
    let small: Pod = from_json(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "small"},
        "spec": {"containers": [container("app", "nginx:1.27")]}
    }));
    pods.create(&PostParams::default(), &small)
        .await
        .expect("a pod within the quota is admitted");
    wait_until(
        &ns,
        &quotas,
        "compute",
        "ResourceQuota compute counting the admitted pod",
        |q: Option<&ResourceQuota>| {
            q.and_then(|q| q.status.as_ref())
                .and_then(|s| s.used.as_ref())
                .is_some_and(|u| {
                    u.get("pods").is_some_and(|p| p.0 == "1")
                        && u.get("requests.cpu").is_some_and(|c| c.0 == "100m")
                })
        },
    )
    .await;

    let mut big_container = container("app", "nginx:1.27");
    big_container["resources"]["requests"]["cpu"] = json!("2");
    big_container["resources"]["limits"]["cpu"] = json!("2");
    let big: Pod = from_json(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "big"},
        "spec": {"containers": [big_container]}
    }));
    match pods.create(&PostParams::default(), &big).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "unexpected refusal: {status:?}");
            assert!(
                status.message.contains("exceeded quota"),
                "refused for another reason: {}",
                status.message
            );
        }
        Ok(pod) => panic!("a pod requesting 2 CPUs was admitted past a 1-CPU quota: {pod:?}"),
        Err(e) => panic!("unexpected error creating the pod: {e}"),
    }
    assert!(
        pods.get_opt("big").await.expect("reading pod").is_none(),
        "the refused pod exists"
    );

    ns.cleanup().await;
}

#[tokio::test]
async fn namespace_with_objects_is_deleted_and_really_disappears() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client).await;
    let name = ns.name().to_string();

    let config: ConfigMap = from_json(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "b"}
    }));
    apply(&ns.api::<ConfigMap>(), &config).await;
    let claim: PersistentVolumeClaim = from_json(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "files"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }));
    let claims: Api<PersistentVolumeClaim> = ns.api();
    apply(&claims, &claim).await;
    let mut app = container("app", "nginx:1.27");
    app["volumeMounts"] = json!([{"name": "files", "mountPath": "/files"}]);
    let deployment: Deployment = from_json(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {
                    "containers": [app],
                    "volumes": [{"name": "files", "persistentVolumeClaim": {"claimName": "files"}}]
                }
            }
        }
    }));
    let deployments: Api<Deployment> = ns.api();
    apply(&deployments, &deployment).await;
    let bound = wait_until(
        &ns,
        &claims,
        "files",
        "PVC files Bound",
        |c: Option<&PersistentVolumeClaim>| {
            c.and_then(|c| c.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Bound")
        },
    )
    .await;
    let volume_name = bound
        .spec
        .and_then(|s| s.volume_name)
        .expect("bound claim names its volume");
    wait_until(
        &ns,
        &deployments,
        "app",
        "Deployment app with 2 ready replicas",
        |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.ready_replicas == Some(2))
        },
    )
    .await;

    // Delete the namespace with everything in it and wait until it is gone.
    ns.cleanup().await;
    let namespaces = Api::<Namespace>::all(client.clone());
    assert!(
        namespaces
            .get_opt(&name)
            .await
            .expect("reading namespace")
            .is_none(),
        "namespace {name} still exists"
    );
    let leftover = Api::<Pod>::namespaced(client.clone(), &name)
        .list(&ListParams::default())
        .await
        .expect("listing pods");
    assert!(leftover.items.is_empty(), "pods left behind: {leftover:?}");

    // The claim's volume had reclaim policy Delete: it goes too.
    let volumes = Api::<PersistentVolume>::all(client.clone());
    let uid = volumes
        .get_opt(&volume_name)
        .await
        .expect("reading volume")
        .and_then(|v| v.metadata.uid);
    if let Some(uid) = uid {
        let gone = await_condition(volumes.clone(), &volume_name, conditions::is_deleted(&uid));
        tokio::time::timeout(DEADLINE, gone)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "PersistentVolume {volume_name} not deleted after its claim's namespace went"
                )
            })
            .expect("watching the volume");
    }
}

#[tokio::test]
async fn job_pod_completes_and_the_job_reports_complete() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client).await;
    let jobs: Api<Job> = ns.api();

    let mut task = container("task", "busybox:1.37");
    task["command"] = json!(["true"]);
    let job: Job = from_json(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "completions": 1,
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [task]}}
        }
    }));
    apply(&jobs, &job).await;

    let done = wait_until(
        &ns,
        &jobs,
        "once",
        "Job once Complete",
        conditions::is_job_completed(),
    )
    .await;
    let status = done.status.expect("job status");
    assert_eq!(status.succeeded, Some(1));
    assert!(
        status.failed.unwrap_or(0) == 0,
        "job pods failed: {status:?}"
    );

    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("job-name=once"))
        .await
        .expect("listing job pods");
    assert_eq!(
        pods.items.len(),
        1,
        "expected one job pod: {:#?}",
        pods.items
    );
    let pod = &pods.items[0];
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded")
    );
    assert_on_kwok_node(&client, pod).await;

    ns.cleanup().await;
}
