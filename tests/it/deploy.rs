//! The platform's own manifests (`storeplane deploy render`) against a real API server:
//! the committed renders are current; every object of both environments passes a
//! server-side dry-run apply (schema, admission) and the local ones apply for real and
//! become ready; pods of every workload pass the `restricted` Pod Security admission;
//! the backup example of docs/deploy.md is valid; and the orchestrator's ClusterRole is enough — a store is provisioned and deleted by
//! an orchestrator impersonating the ServiceAccount — and no broader than
//! `deploy::orchestrator_rules()` (SubjectAccessReviews, and a probe showing that
//! server-side apply needs `create` to create an object); and its admission policy keeps
//! its writes inside store namespaces.

use crate::support::cluster::{TestNamespace, kube_client, kube_config, unique_name};
use crate::support::db::{chain, fresh};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SelfSubjectAccessReview,
    SelfSubjectAccessReviewSpec, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    ValidationDirective,
};
use kube::discovery::Scope;
use kube::{Client, Config};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storeplane::apply::{Applier, ApplySettings, Desired};
use storeplane::blueprint::Catalog;
use storeplane::config::{OrchestratorSettings, PlatformSettings};
use storeplane::db::{Backend, Db, NewStore, NewUser, Role as UserRole, Store};
use storeplane::deploy::{self, Env, Overrides, PlatformManifests};
use storeplane::domain::{FIELD_MANAGER, Phase, StoreStatus};
use storeplane::metrics::Metrics;
use storeplane::reconcile::{Orchestrator, Waker};
use storeplane::vault::Vault;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The orchestrator's ServiceAccount, as the manifests name it.
const ORCHESTRATOR_SA: &str = "storeplane-orchestrator";
/// The API's ServiceAccount.
const API_SA: &str = "storeplane-api";
/// How long a store may take to become ready or disappear.
const CONVERGE: Duration = Duration::from_secs(240);

fn render(env: Env, sets: &[String]) -> PlatformManifests {
    deploy::render_env(env, &Overrides { files: &[], sets })
        .unwrap_or_else(|e| panic!("rendering {env:?}: {e}"))
}

#[test]
fn committed_renders_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for env in Env::ALL {
        let path = root.join(format!("deploy/rendered/{}.yaml", env.as_str()));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let fresh = render(env, &[]).to_yaml();
        assert!(
            committed == fresh,
            "{} is stale: run `cargo run -- deploy render --env {} > deploy/rendered/{}.yaml`",
            path.display(),
            env.as_str(),
            env.as_str()
        );
    }
}

fn storeplane(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_storeplane"))
        .args(args)
        .env("STOREPLANE_LOG", "warn")
        .output()
        .expect("the storeplane binary runs")
}

#[test]
fn the_command_prints_manifests_or_only_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = storeplane(&["deploy", "render", "--env", "prod"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read(root.join("deploy/rendered/prod.yaml")).unwrap();
    assert!(out.stdout == committed, "stdout is the committed render");

    let out = storeplane(&["deploy", "render", "--env", "local", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list["kind"], "List");
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        render(Env::Local, &[]).objects.len()
    );

    // Bad values: exit 2, nothing on stdout, one line per problem naming the key.
    let out = storeplane(&[
        "deploy",
        "render",
        "--env",
        "local",
        "--set",
        "replicas.apii=3",
        "--set",
        "tls.enabled=maybe",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains("`replicas.apii`"));
    assert!(lines[1].contains("`tls.enabled` must be true or false"));

    // First-install Secrets: two, fresh each run, in the values' namespace.
    let secrets = || -> Vec<serde_json::Value> {
        let out = storeplane(&[
            "deploy",
            "render",
            "--env",
            "prod",
            "--generate-secrets",
            "--set",
            "namespace=elsewhere",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.split("\n---\n")
            .skip(1)
            .map(|d| serde_yaml::from_str(d).unwrap())
            .collect()
    };
    let (a, b) = (secrets(), secrets());
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["kind"], "Secret");
        assert_eq!(x["metadata"]["namespace"], "elsewhere");
        assert_ne!(x["stringData"], y["stringData"], "fresh values every run");
    }
}

/// Server-side apply as an operator's `kubectl apply --server-side` does it: field
/// manager `storeplane`, strict field validation, optionally `dryRun=All`.
async fn apply(
    client: &Client,
    obj: &DynamicObject,
    gvk: &GroupVersionKind,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let (ar, caps) = kube::discovery::pinned_kind(client, gvk).await?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            obj.metadata.namespace.as_deref().expect("namespaced"),
            &ar,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &ar),
    };
    let mut params = PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation(ValidationDirective::Strict);
    if dry_run {
        params = params.dry_run();
    }
    let name = obj.metadata.name.clone().expect("named");
    api.patch(&name, &params, &Patch::Apply(obj)).await
}

/// A Pod made from a workload's pod template, to put it through Pod Security
/// admission (which checks workloads only with warnings, and pods for real).
fn pod_of(obj: &DynamicObject, namespace: &str) -> Pod {
    let pointer = if obj.data["spec"].get("jobTemplate").is_some() {
        "/spec/jobTemplate/spec/template"
    } else {
        "/spec/template"
    };
    let template = obj.data.pointer(pointer).expect("a pod template");
    let mut spec = template["spec"].clone();
    // A StatefulSet's claims become volumes of its pods; stand in for them.
    for claim in obj.data["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        spec["volumes"]
            .as_array_mut()
            .expect("volumes")
            .push(json!({"name": claim["metadata"]["name"], "emptyDir": {}}));
    }
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("psa-{}", obj.metadata.name.as_deref().unwrap()),
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
        },
        "spec": spec,
    }))
    .expect("a pod")
}

/// The objects of `deploy/examples/backup.yaml`, typed (unknown fields refused) and
/// moved to `namespace`.
fn backup_example(namespace: &str) -> Vec<(GroupVersionKind, DynamicObject)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/backup.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/examples/backup.yaml");
    text.split("\n---\n")
        .map(|doc| {
            let value: serde_json::Value = serde_yaml::from_str(doc).expect("YAML");
            let (mut value, info) = storeplane::blueprint::objects::decode(value, doc)
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            value["metadata"]["namespace"] = json!(namespace);
            let gvk = GroupVersionKind::gvk(info.group, info.version, info.kind);
            (gvk, serde_json::from_value(value).expect("an object"))
        })
        .collect()
}

async fn dry_run_pod(client: &Client, pod: &Pod) -> Result<Pod, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap());
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&params, pod).await
}

/// What a test makes outside its own TestNamespace: the ClusterRole and
/// ClusterRoleBinding (one name), and a store's namespace. Deleted by `cleanup`, or on
/// drop when the test panics first (namespaces without waiting).
struct Leftovers {
    cluster_rbac: Vec<String>,
    namespaces: Vec<String>,
}

impl Leftovers {
    async fn delete_all(&self, client: &Client) {
        let ok = |r: Result<(), kube::Error>, what: &str| match r {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => eprintln!("[deploy] could not delete {what}: {e}"),
        };
        let dp = DeleteParams::background();
        for name in &self.cluster_rbac {
            let crb = Api::<ClusterRoleBinding>::all(client.clone());
            ok(crb.delete(name, &dp).await.map(|_| ()), name);
            let cr = Api::<ClusterRole>::all(client.clone());
            ok(cr.delete(name, &dp).await.map(|_| ()), name);
            let vapb = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone());
            ok(vapb.delete(name, &dp).await.map(|_| ()), name);
            let vap = Api::<ValidatingAdmissionPolicy>::all(client.clone());
            ok(vap.delete(name, &dp).await.map(|_| ()), name);
        }
        for name in &self.namespaces {
            let ns = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
            ok(ns.delete(name, &dp).await.map(|_| ()), name);
        }
    }

    /// Deletes everything now and disarms the guard.
    async fn cleanup(mut self, client: &Client) {
        self.delete_all(client).await;
        self.cluster_rbac.clear();
        self.namespaces.clear();
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if self.cluster_rbac.is_empty() && self.namespaces.is_empty() {
            return;
        }
        // The test's runtime may be gone: a thread with a runtime of its own.
        let this = Leftovers {
            cluster_rbac: std::mem::take(&mut self.cluster_rbac),
            namespaces: std::mem::take(&mut self.namespaces),
        };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut this = this;
                this.delete_all(&kube_client().await).await;
                this.cluster_rbac.clear();
                this.namespaces.clear();
            });
        })
        .join();
    }
}

/// A client acting as `system:serviceaccount:<namespace>:<name>`, with the groups the
/// API server gives a ServiceAccount token.
async fn impersonating(namespace: &str, name: &str) -> Client {
    let mut config: Config = kube_config().await;
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".into(),
    ]);
    Client::try_from(config).expect("an impersonating client")
}

/// One access check: `(API group, resource, subresource, verb, namespace)`.
type Access<'a> = (&'a str, &'a str, &'a str, &'a str, Option<&'a str>);

/// Whether the ServiceAccount may do `access`, as the API server's authorizer says
/// (SubjectAccessReview, asked as admin).
async fn allowed(admin: &Client, namespace: &str, sa: &str, access: Access<'_>) -> bool {
    let (group, resource, subresource, verb, ns) = access;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{namespace}:{sa}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: (!subresource.is_empty()).then(|| subresource.into()),
                verb: Some(verb.into()),
                namespace: ns.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview")
        .status
        .expect("review status")
        .allowed
}

/// Whether the orchestrator's ServiceAccount may GET a discovery path.
async fn discovery_allowed(admin: &Client, namespace: &str, path: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!(
                "system:serviceaccount:{namespace}:{ORCHESTRATOR_SA}"
            )),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ]),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.into()),
                verb: Some("get".into()),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview")
        .status
        .expect("review status")
        .allowed
}

/// The same question asked by the impersonated client about itself.
async fn self_allowed(client: &Client, access: Access<'_>) -> bool {
    let (group, resource, subresource, verb, ns) = access;
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: (!subresource.is_empty()).then(|| subresource.into()),
                verb: Some(verb.into()),
                namespace: ns.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview")
        .status
        .expect("review status")
        .allowed
}

/// Things the orchestrator must not be able to do, in a store namespace `ns` or
/// cluster-wide.
fn outside_the_role(ns: &str) -> Vec<Access<'_>> {
    const RBAC: &str = "rbac.authorization.k8s.io";
    const CRD: &str = "apiextensions.k8s.io";
    const WEBHOOKS: &str = "admissionregistration.k8s.io";
    vec![
        (RBAC, "clusterroles", "", "create", None),
        (RBAC, "clusterroles", "", "bind", None),
        (RBAC, "clusterroles", "", "escalate", None),
        (RBAC, "clusterrolebindings", "", "create", None),
        (RBAC, "rolebindings", "", "create", Some(ns)),
        (RBAC, "roles", "", "patch", Some(ns)),
        ("", "pods", "exec", "create", Some(ns)),
        ("", "pods", "", "create", Some(ns)),
        ("", "pods", "", "get", Some(ns)),
        ("", "pods", "", "patch", Some(ns)),
        ("", "nodes", "", "list", None),
        ("", "persistentvolumes", "", "delete", None),
        ("", "namespaces", "finalize", "update", None),
        ("", "namespaces", "finalize", "patch", None),
        ("", "namespaces", "", "update", None),
        ("", "secrets", "", "get", Some(ns)),
        ("", "secrets", "", "watch", Some(ns)),
        ("", "secrets", "", "deletecollection", Some(ns)),
        ("", "configmaps", "", "update", Some(ns)),
        ("", "serviceaccounts", "token", "create", Some(ns)),
        ("", "serviceaccounts", "", "impersonate", Some(ns)),
        ("", "users", "", "impersonate", None),
        ("apps", "deployments", "", "get", Some(ns)),
        ("apps", "deployments", "scale", "patch", Some(ns)),
        ("apps", "daemonsets", "", "create", Some(ns)),
        ("coordination.k8s.io", "leases", "", "create", Some(ns)),
        (CRD, "customresourcedefinitions", "", "list", None),
        (
            WEBHOOKS,
            "validatingwebhookconfigurations",
            "",
            "create",
            None,
        ),
        (
            "certificates.k8s.io",
            "certificatesigningrequests",
            "",
            "create",
            None,
        ),
    ]
}

#[tokio::test]
async fn platform_manifests_apply_and_the_orchestrator_role_is_enough_and_no_more() {
    let started = Instant::now();
    let admin = kube_client().await;
    let ns = TestNamespace::create(&admin).await;
    let namespace = ns.name().to_owned();
    let role_name = unique_name("storeplane-orchestrator-it");
    let rbac = Leftovers {
        cluster_rbac: vec![role_name.clone()],
        namespaces: Vec::new(),
    };
    let sets = vec![
        format!("namespace={namespace}"),
        format!("rbac.cluster_role={role_name}"),
    ];
    let local = render(Env::Local, &sets);
    let prod = render(Env::Prod, &sets);

    // The namespace first, for real: its Pod Security labels must be in force before
    // pods are checked against them.
    let namespace_obj = local
        .objects
        .iter()
        .find(|o| o.gvk.kind == "Namespace")
        .expect("a Namespace");
    apply(&admin, &namespace_obj.object, &namespace_obj.gvk, false)
        .await
        .unwrap_or_else(|e| panic!("applying the Namespace: {}", chain(&e)));

    // 1. Every object of both environments passes a server-side dry-run apply.
    for manifests in [&local, &prod] {
        for o in &manifests.objects {
            apply(&admin, &o.object, &o.gvk, true)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{:?}: {} ({}) refused by the API server: {}",
                        manifests.env,
                        o.key(),
                        o.template,
                        chain(&e)
                    )
                });
        }
    }
    // The local manifests for real, with the Secrets of a first install.
    let values = deploy::Values::load(
        Env::Local,
        &Overrides {
            files: &[],
            sets: &sets,
        },
    )
    .unwrap();
    let secret_gvk = GroupVersionKind::gvk("", "v1", "Secret");
    for secret in deploy::generate_secrets(&values) {
        apply(&admin, &secret, &secret_gvk, false)
            .await
            .unwrap_or_else(|e| panic!("applying a generated Secret: {}", chain(&e)));
    }
    for o in &local.objects {
        apply(&admin, &o.object, &o.gvk, false)
            .await
            .unwrap_or_else(|e| panic!("applying {}: {}", o.key(), chain(&e)));
    }
    // Pod Security `restricted` is enforced in the namespace (a bare pod is refused),
    // and every workload's pods pass it, in both environments.
    let bare: Pod = serde_json::from_value(json!({
        "metadata": {"name": "psa-bare", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    match dry_run_pod(&admin, &bare).await {
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("PodSecurity") => {}
        other => panic!("a bare pod must violate PodSecurity restricted: {other:?}"),
    }
    for manifests in [&local, &prod] {
        for o in manifests
            .objects
            .iter()
            .filter(|o| matches!(o.gvk.kind.as_str(), "Deployment" | "StatefulSet"))
        {
            dry_run_pod(&admin, &pod_of(&o.object, &namespace))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{:?}: pods of {} are refused: {}",
                        manifests.env,
                        o.key(),
                        chain(&e)
                    )
                });
        }
    }
    // The backup example of docs/deploy.md is valid, and its pods pass admission too.
    for (gvk, obj) in backup_example(&namespace) {
        apply(&admin, &obj, &gvk, true)
            .await
            .unwrap_or_else(|e| panic!("backup example: {gvk:?} refused: {}", chain(&e)));
        if gvk.kind == "CronJob" {
            dry_run_pod(&admin, &pod_of(&obj, &namespace))
                .await
                .unwrap_or_else(|e| panic!("backup example: pods refused: {}", chain(&e)));
        }
    }
    eprintln!("[deploy] applied and dry-run in {:.1?}", started.elapsed());

    // What the cluster holds is the rules constant, without a wildcard.
    let stored = Api::<ClusterRole>::all(admin.clone())
        .get(&role_name)
        .await
        .expect("the ClusterRole");
    let stored_rules = stored.rules.clone().unwrap_or_default();
    assert_eq!(stored_rules, deploy::orchestrator_rules());
    for r in &stored_rules {
        let words = r
            .api_groups
            .iter()
            .flatten()
            .chain(r.resources.iter().flatten())
            .chain(&r.verbs);
        for w in words {
            assert!(!w.contains('*'), "wildcard in {r:?}");
        }
    }

    // 2 and 3 run side by side: the platform's workloads become ready, the RBAC checks,
    // and a store provisioned and deleted under the orchestrator's identity.
    let platform = async {
        let applier = Applier::new(admin.clone(), ApplySettings::default());
        let workloads: Vec<Desired> = local
            .objects
            .iter()
            .filter(|o| matches!(o.gvk.kind.as_str(), "Deployment" | "StatefulSet"))
            .map(|o| Desired {
                phase: Phase::Application,
                gvk: o.gvk.clone(),
                object: o.object.clone(),
            })
            .collect();
        assert_eq!(workloads.len(), 3, "api, orchestrator, postgres");
        let refs: Vec<&Desired> = workloads.iter().collect();
        applier
            .wait_ready(&namespace, Phase::Application, &refs)
            .await
            .unwrap_or_else(|e| panic!("the platform's workloads never became ready: {e}"));
        // PostgreSQL's data is on a claim of its own, bound through the StorageClass.
        let claim = Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(
            admin.clone(),
            &namespace,
        )
        .get("data-storeplane-postgres-0")
        .await
        .expect("PostgreSQL's claim");
        assert_eq!(
            claim.status.and_then(|s| s.phase).as_deref(),
            Some("Bound"),
            "PostgreSQL's claim is bound"
        );
        eprintln!("[deploy] workloads ready at {:.1?}", started.elapsed());
        check_access(&admin, &namespace).await;
        ssa_create_needs_the_create_verb(&admin, &namespace).await;
        confined_to_store_namespaces(&admin, &namespace).await;
    };
    let store = provision_as_orchestrator(&namespace);
    tokio::join!(platform, store);

    rbac.cleanup(&admin).await;
    ns.cleanup().await;
    eprintln!("[deploy] done in {:.1?}", started.elapsed());
}

/// Every rule granted, nothing outside it, and nothing at all for the API.
async fn check_access(admin: &Client, namespace: &str) {
    let store_ns = "some-store-ns";
    let mut wrong = Vec::new();
    for (group, resource, verb) in deploy::grants(&deploy::orchestrator_rules()) {
        let ns =
            (!matches!(resource.as_str(), "namespaces" | "storageclasses")).then_some(store_ns);
        let access = (group.as_str(), resource.as_str(), "", verb.as_str(), ns);
        if !allowed(admin, namespace, ORCHESTRATOR_SA, access).await {
            wrong.push(format!("denied but listed: {verb} {group}/{resource}"));
        }
    }
    for access in outside_the_role(store_ns) {
        if allowed(admin, namespace, ORCHESTRATOR_SA, access).await {
            wrong.push(format!("allowed but not listed: {access:?}"));
        }
    }
    // The API's ServiceAccount has no RBAC of its own.
    for access in [
        ("", "secrets", "", "get", Some(namespace)),
        ("", "secrets", "", "list", Some(namespace)),
        ("", "configmaps", "", "list", Some(namespace)),
        ("", "pods", "", "list", Some(namespace)),
        ("", "namespaces", "", "get", None),
        ("", "namespaces", "", "create", None),
        ("apps", "deployments", "", "patch", Some(store_ns)),
        ("", "events", "", "list", Some(store_ns)),
    ] {
        if allowed(admin, namespace, API_SA, access).await {
            wrong.push(format!("the API may {access:?}"));
        }
    }
    // API discovery, which `apply` resolves kinds with, comes from the built-in
    // `system:discovery` binding for every authenticated user, not from the role.
    for path in [
        "/api",
        "/api/v1",
        "/apis",
        "/apis/apps/v1",
        "/apis/networking.k8s.io/v1",
    ] {
        if !discovery_allowed(admin, namespace, path).await {
            wrong.push(format!("discovery of {path} denied"));
        }
    }
    // The impersonated identity sees the same from its side.
    let me = impersonating(namespace, ORCHESTRATOR_SA).await;
    if !self_allowed(&me, ("apps", "deployments", "", "patch", Some(store_ns))).await {
        wrong.push("self: may not patch deployments".into());
    }
    if self_allowed(&me, ("", "pods", "exec", "create", Some(store_ns))).await {
        wrong.push("self: may exec into pods".into());
    }
    assert!(wrong.is_empty(), "RBAC is off:\n{}", wrong.join("\n"));
}

/// Why `create` is in the rules although server-side apply only PATCHes: the API server
/// authorizes a PATCH that creates the object as `create` too. A ServiceAccount with the
/// store-object verbs minus `create` can update an existing ConfigMap by apply but not
/// create one.
async fn ssa_create_needs_the_create_verb(admin: &Client, namespace: &str) {
    let probe = "create-probe";
    let verbs: Vec<String> = deploy::STORE_OBJECT_VERBS
        .iter()
        .filter(|v| **v != "create")
        .map(|v| (*v).to_owned())
        .collect();
    let role = Role {
        metadata: kube::api::ObjectMeta {
            name: Some(probe.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs,
            ..Default::default()
        }]),
    };
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": probe, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": probe},
        "subjects": [{"kind": "ServiceAccount", "name": probe, "namespace": namespace}],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .expect("probe Role");
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .expect("probe RoleBinding");
    let as_probe = impersonating(namespace, probe).await;
    let cms: Api<ConfigMap> = Api::namespaced(as_probe, namespace);
    let cm = |name: &str, value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": namespace}, "data": {"k": value}})
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // RBAC takes a moment to see a new binding; retry while it says "forbidden" for the
    // update, which must succeed.
    Api::<ConfigMap>::namespaced(admin.clone(), namespace)
        .create(
            &PostParams::default(),
            &serde_json::from_value(cm("exists", "a")).unwrap(),
        )
        .await
        .expect("a ConfigMap to update");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cms
            .patch("exists", &params, &Patch::Apply(cm("exists", "b")))
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 403 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("apply to an existing ConfigMap with `patch` only: {e}"),
        }
    }
    match cms
        .patch("new", &params, &Patch::Apply(cm("new", "c")))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 403 => assert!(
            s.message.contains("cannot create resource \"configmaps\""),
            "{}",
            s.message
        ),
        other => panic!("server-side apply created an object without `create`: {other:?}"),
    }
}

/// The role may write in any namespace; the admission policy keeps the orchestrator's
/// writes to store namespaces: in a namespace that is no store's it may neither create
/// an object, nor label the namespace as a store's, nor delete it. (Provisioning a
/// store under the same identity, alongside, shows store namespaces stay writable.)
async fn confined_to_store_namespaces(admin: &Client, namespace: &str) {
    let other = unique_name("it-not-a-store");
    let mut leftovers = Leftovers {
        cluster_rbac: Vec::new(),
        namespaces: vec![other.clone()],
    };
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": other}})).unwrap(),
        )
        .await
        .expect("a namespace that is no store's");
    let me = impersonating(namespace, ORCHESTRATOR_SA).await;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let refused = |r: Result<(), kube::Error>, what: &str| match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {
            assert!(
                s.message.contains("writes only in store namespaces"),
                "{what}: {}",
                s.message
            );
            true
        }
        Ok(()) => false,
        Err(e) => panic!("{what}: {e}"),
    };
    // The policy takes effect a moment after it is created: until then RBAC alone
    // decides, and allows this.
    let cms: Api<ConfigMap> = Api::namespaced(me.clone(), &other);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "planted", "namespace": other}});
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = cms
            .patch("planted", &params, &Patch::Apply(&cm))
            .await
            .map(drop);
        if refused(r, "a ConfigMap outside store namespaces") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the admission policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let namespaces: Api<Namespace> = Api::all(me);
    let as_store = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": other,
        "labels": {"app.kubernetes.io/managed-by": "storeplane", "storeplane.dev/store-id": "x"}}});
    let r = namespaces
        .patch(&other, &params, &Patch::Apply(&as_store))
        .await
        .map(drop);
    assert!(refused(r, "labelling a namespace as a store's"), "labelled");
    let r = namespaces
        .delete(&other, &DeleteParams::default())
        .await
        .map(drop);
    assert!(
        refused(r, "deleting a namespace that is no store's"),
        "deleted"
    );
    let unlabelled = json!({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": unique_name("it-unlabelled")}});
    let name = unlabelled["metadata"]["name"].as_str().unwrap().to_owned();
    let r = namespaces
        .patch(&name, &params, &Patch::Apply(&unlabelled))
        .await
        .map(drop);
    assert!(refused(r, "creating an unlabelled namespace"), "created");
    // A store namespace, but one that would let privileged pods run (a stolen token
    // must not buy host access): refused with and without an explicit level.
    for level in [Some("privileged"), None] {
        let name = unique_name("it-privileged");
        leftovers.namespaces.push(name.clone());
        let mut labels = json!({"app.kubernetes.io/managed-by": "storeplane",
                                "storeplane.dev/store-id": "x"});
        if let Some(level) = level {
            labels["pod-security.kubernetes.io/enforce"] = json!(level);
        }
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": name, "labels": labels}});
        match namespaces.patch(&name, &params, &Patch::Apply(&ns)).await {
            Err(kube::Error::Api(s)) if s.code == 403 => assert!(
                s.message.contains("Pod Security") && s.message.contains(&name),
                "{level:?}: {}",
                s.message
            ),
            Ok(_) => panic!("a store namespace with Pod Security {level:?} was created"),
            Err(e) => panic!("{level:?}: {e}"),
        }
    }
    leftovers.cleanup(admin).await;
}

/// Runs an orchestrator in-process whose every cluster call is made as the
/// orchestrator's ServiceAccount, and drives one WooCommerce store to ready and gone.
async fn provision_as_orchestrator(namespace: &str) {
    let t = fresh(Backend::Sqlite).await;
    let client = impersonating(namespace, ORCHESTRATOR_SA).await;
    let catalog = Arc::new(Catalog::builtin().expect("built-in blueprints"));
    let settings = OrchestratorSettings {
        instance_id: Some("impersonated".into()),
        lease_duration: Duration::from_secs(4),
        sweep_interval: Duration::from_secs(2),
        resync_period: Duration::from_secs(3600),
        phase_timeout: Duration::from_secs(120),
        provision_deadline: Duration::from_secs(600),
        ..OrchestratorSettings::default()
    };
    let applier = Applier::new(
        client,
        ApplySettings {
            concurrency: settings.apply_concurrency,
            phase_timeout: settings.phase_timeout,
            teardown_timeout: Duration::from_secs(180),
        },
    );
    let key: String = std::iter::repeat_n("5a", 32).collect();
    let vault = Arc::new(Vault::from_key_hex(&key).unwrap());
    let waker = Waker::new(t.db.clone());
    let auditor = applier.clone();
    let orchestrator = Orchestrator::new(
        t.db.clone(),
        catalog.clone(),
        applier,
        vault,
        settings,
        PlatformSettings::default(),
        &waker,
        Metrics::new(),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(orchestrator.run(stop.clone()));

    let owner =
        t.db.create_user(NewUser {
            email: format!("deploy-{}@example.test", Uuid::new_v4().simple()),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaA".into(),
            role: UserRole::Member,
            store_limit: Some(1),
        })
        .await
        .expect("user")
        .id;
    let blueprint = catalog.get("woocommerce").expect("woocommerce");
    let name = format!("sa-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let store =
        t.db.create_store(NewStore::new(
            owner,
            &name,
            "woocommerce",
            &blueprint.version,
            json!({}),
        ))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {}", chain(&e)));
    // The orchestrator creates the store's namespace; if the test fails, delete it.
    let mut leftovers = Leftovers {
        cluster_rbac: Vec::new(),
        namespaces: vec![store.namespace.clone()],
    };
    let started = Instant::now();
    waker.wake(store.id).await;
    wait_for(&t.db, &store, "ready", |s| {
        s.is_some_and(|s| s.status == StoreStatus::Ready)
    })
    .await;
    eprintln!(
        "[deploy] store ready as {ORCHESTRATOR_SA} in {:.1?}",
        started.elapsed()
    );
    // The orphan audit lists namespaces under the same identity: the role allows it,
    // and a live store's namespace is no orphan.
    let orphans = storeplane::reconcile::find_orphans(&auditor, &t.db)
        .await
        .unwrap_or_else(|e| panic!("the orphan audit as {ORCHESTRATOR_SA}: {e}"));
    assert!(
        orphans.iter().all(|o| o.namespace != store.namespace),
        "{orphans:?}"
    );
    t.db.request_delete(store.id).await.expect("request delete");
    waker.wake(store.id).await;
    wait_for(&t.db, &store, "gone", |s| s.is_none()).await;
    let gone = Api::<k8s_openapi::api::core::v1::Namespace>::all(kube_client().await)
        .get_opt(&store.namespace)
        .await
        .expect("get namespace");
    assert!(gone.is_none(), "the store's namespace is gone");
    leftovers.namespaces.clear();
    eprintln!(
        "[deploy] store deleted as {ORCHESTRATOR_SA} at {:.1?}",
        started.elapsed()
    );
    stop.cancel();
    task.await.expect("orchestrator task");
    t.finish().await;
}

async fn wait_for(db: &Db, store: &Store, what: &str, done: impl Fn(Option<&Store>) -> bool) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let now = db.get_store(store.id).await.expect("get store");
        if done(now.as_ref()) {
            return;
        }
        let failed = now
            .as_ref()
            .is_some_and(|s| s.status == StoreStatus::Failed);
        if failed || Instant::now() > deadline {
            let events = db
                .list_events(store.id, None, 1000)
                .await
                .unwrap_or_default()
                .iter()
                .map(|e| format!("  {} {}", e.event_type, e.message))
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "store {} under {ORCHESTRATOR_SA} not {what}: {:?}\nevents:\n{events}",
                store.name,
                now.map(|s| (s.status, s.error_message))
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
