//! Rendering the platform's manifests: the templates of `deploy/templates/` (embedded at
//! build time, rendered in file-name order) through the blueprint engine's minijinja
//! environment (JSON auto-escaping, strict undefined), every document decoded into its
//! `k8s-openapi` type with unknown fields refused (`blueprint::objects::decode`). Same
//! values, same bytes.
//!
//! Also the two Secrets of a first install, with fresh random values
//! ([`generate_secrets`]): the only place randomness enters, and never into the
//! manifests themselves.
//!
//! Pure apart from the CSPRNG in `generate_secrets`: no files, no network.

use super::DeployError;
use super::rbac::orchestrator_rules;
use super::values::{Env, Values};
use crate::blueprint::engine::environment;
use crate::blueprint::objects;
use crate::blueprint::split_documents;
use crate::domain::labels;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DynamicObject, GroupVersionKind, TypeMeta};
use minijinja::{Value as JValue, context};
use rand::Rng as _;
use serde::Deserialize as _;
use serde_json::Value;
use std::collections::BTreeMap;

/// The platform's templates, embedded from `deploy/templates/`.
#[derive(rust_embed::RustEmbed)]
#[folder = "deploy/templates/"]
struct Templates;

/// Suffix of a template file.
pub const TEMPLATE_SUFFIX: &str = ".yaml.j2";

/// Key of the PostgreSQL password in the `secrets.postgres` Secret.
pub const POSTGRES_PASSWORD_KEY: &str = "password";
/// Key of the credential-encryption key in the `secrets.secret_key` Secret.
pub const SECRET_KEY_KEY: &str = "secret.key";

/// One rendered object.
#[derive(Debug, Clone)]
pub struct PlatformObject {
    /// The template it came from.
    pub template: String,
    pub gvk: GroupVersionKind,
    pub namespaced: bool,
    pub object: DynamicObject,
}

impl PlatformObject {
    /// `Kind/name`, for messages.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.gvk.kind,
            self.object.metadata.name.as_deref().unwrap_or("")
        )
    }
}

/// The platform's manifests, in template order.
#[derive(Debug, Clone)]
pub struct PlatformManifests {
    pub env: Env,
    /// Whether `--values` or `--set` changed the environment's values.
    pub overridden: bool,
    pub objects: Vec<PlatformObject>,
}

impl PlatformManifests {
    /// Multi-document YAML with a header saying where it came from.
    pub fn to_yaml(&self) -> String {
        let env = self.env.as_str();
        let mut out = format!(
            "# Storeplane platform manifests, env `{env}`{}: rendered by\n\
             # `storeplane deploy render --env {env}` from deploy/templates and\n\
             # deploy/values/{env}.yaml. Do not edit; change those and render again.\n",
            if self.overridden {
                " with overrides"
            } else {
                ""
            }
        );
        for o in &self.objects {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(&o.object).expect("a decoded object serializes"));
        }
        out
    }

    /// A `v1/List` of the objects, pretty-printed JSON.
    pub fn to_json(&self) -> String {
        list_json(self.objects.iter().map(|o| &o.object))
    }

    /// The first object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> Option<&PlatformObject> {
        self.objects
            .iter()
            .find(|o| o.gvk.kind == kind && o.object.metadata.name.as_deref() == Some(name))
    }
}

fn list_json<'a>(items: impl Iterator<Item = &'a DynamicObject>) -> String {
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items.collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&list).expect("objects serialize");
    s.push('\n');
    s
}

/// The labels every platform object carries; `component_labels("api")` in a template
/// adds the component, `selector_labels("api")` gives instance + component.
pub fn platform_labels(values: &Values) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_owned(), "storeplane".to_owned()),
        (labels::INSTANCE.to_owned(), values.namespace.clone()),
        (labels::PART_OF.to_owned(), "storeplane".to_owned()),
    ])
}

/// The template files, sorted by name.
pub fn template_names() -> Vec<String> {
    let mut names: Vec<String> = Templates::iter()
        .map(|n| n.into_owned())
        .filter(|n| n.ends_with(TEMPLATE_SUFFIX))
        .collect();
    names.sort();
    names
}

/// Renders the platform for `values`. Every problem in every template is reported.
pub fn render(
    env: Env,
    values: &Values,
    overridden: bool,
) -> Result<PlatformManifests, DeployError> {
    let sources = template_names()
        .into_iter()
        .map(|name| {
            let file = Templates::get(&name).expect("listed by iter");
            let source = String::from_utf8_lossy(&file.data).into_owned();
            (name, source)
        })
        .collect();
    render_sources(env, values, overridden, sources)
}

/// [`render`] over the given `(file name, template source)` pairs, in that order.
fn render_sources(
    env: Env,
    values: &Values,
    overridden: bool,
    sources: Vec<(String, String)>,
) -> Result<PlatformManifests, DeployError> {
    let mut jinja = environment();
    let mut problems = Vec::new();
    let mut names = Vec::with_capacity(sources.len());
    for (name, source) in sources {
        if let Err(e) = jinja.add_template_owned(name.clone(), source) {
            problems.push(jinja_problem(&name, &e));
        }
        names.push(name);
    }
    if !problems.is_empty() {
        return Err(DeployError::Template(problems));
    }
    let ctx = context! {
        values => JValue::from_serialize(values),
        image => values.image_ref(),
        labels => JValue::from_serialize(platform_labels(values)),
        orchestrator_rules => JValue::from_serialize(orchestrator_rules()),
    };
    let mut objects = Vec::new();
    for name in &names {
        let text = match jinja.get_template(name).and_then(|t| t.render(&ctx)) {
            Ok(t) => t,
            Err(e) => {
                problems.push(jinja_problem(name, &e));
                continue;
            }
        };
        for (first_line, doc) in split_documents(&text) {
            let at = |line: Option<usize>| {
                let abs = first_line + line.unwrap_or(1) - 1;
                let src = text.lines().nth(abs - 1).unwrap_or("").trim();
                format!("template `{name}`, rendered line {abs} (`{src}`)")
            };
            let value: Value = match serde_yaml::from_str(doc) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!(
                        "{}: the output is not valid YAML: {e}",
                        at(e.location().map(|l| l.line()))
                    ));
                    continue;
                }
            };
            match objects::decode(value, doc) {
                Ok((normalized, info)) => match to_object(normalized, info, values) {
                    Ok(object) => objects.push(PlatformObject {
                        template: name.clone(),
                        gvk: GroupVersionKind::gvk(info.group, info.version, info.kind),
                        namespaced: info.namespaced,
                        object,
                    }),
                    Err(msg) => problems.push(format!("{}: {msg}", at(None))),
                },
                Err(errs) => problems.extend(
                    errs.into_iter()
                        .map(|p| format!("{}: {}", at(p.line), p.message)),
                ),
            }
        }
    }
    if !problems.is_empty() {
        return Err(DeployError::Template(problems));
    }
    Ok(PlatformManifests {
        env,
        overridden,
        objects,
    })
}

fn jinja_problem(name: &str, e: &minijinja::Error) -> String {
    let line = e.line().map(|l| format!(" line {l}")).unwrap_or_default();
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    format!(
        "template `{}`{line}: {}{detail}",
        e.name().unwrap_or(name),
        e.kind()
    )
}

/// A decoded object as a `DynamicObject`; namespaced objects must name the platform's
/// namespace, so that no object lands wherever the applying tool's default points.
fn to_object(
    mut value: Value,
    info: &objects::KindInfo,
    values: &Values,
) -> Result<DynamicObject, String> {
    let map = value.as_object_mut().expect("decoded objects are mappings");
    map.remove("apiVersion");
    map.remove("kind");
    let metadata = ObjectMeta::deserialize(map.remove("metadata").unwrap_or(Value::Null))
        .map_err(|e| format!("{}: metadata: {e}", info.kind))?;
    if metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(format!("{} has no metadata.name", info.kind));
    }
    match (&metadata.namespace, info.namespaced) {
        (Some(ns), true) if *ns == values.namespace => {}
        (_, true) => {
            return Err(format!(
                "{} must set metadata.namespace to {{{{ values.namespace }}}} (`{}`), not {:?}",
                info.kind, values.namespace, metadata.namespace
            ));
        }
        (Some(_), false) => {
            return Err(format!(
                "{} is cluster-scoped; remove metadata.namespace",
                info.kind
            ));
        }
        (None, false) => {}
    }
    Ok(DynamicObject {
        types: Some(TypeMeta {
            api_version: info.api_version.to_owned(),
            kind: info.kind.to_owned(),
        }),
        metadata,
        data: value,
    })
}

/// 32 random bytes from the operating system's CSPRNG, as 64 hex digits (URL-safe, and
/// the format `STOREPLANE_SECRET_KEY_FILE` expects).
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

/// The two Secrets a first install needs, with fresh random values: the PostgreSQL
/// password and the credential-encryption key. Run once; applying them again would
/// replace the password PostgreSQL was initialised with and the key the stores'
/// credentials are sealed with.
pub fn generate_secrets(values: &Values) -> Vec<DynamicObject> {
    let secret = |name: &str, component: &str, key: &str| -> DynamicObject {
        let mut l = platform_labels(values);
        l.insert(labels::COMPONENT.to_owned(), component.to_owned());
        let s = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(values.namespace.clone()),
                labels: Some(l),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            string_data: Some(BTreeMap::from([(key.to_owned(), random_hex())])),
            ..Default::default()
        };
        serde_json::from_value(serde_json::to_value(s).expect("a Secret serializes"))
            .expect("a Secret is a DynamicObject")
    };
    vec![
        secret(&values.secrets.postgres, "postgres", POSTGRES_PASSWORD_KEY),
        secret(&values.secrets.secret_key, "platform", SECRET_KEY_KEY),
    ]
}

/// [`generate_secrets`] as YAML, with a header that says to create them once.
pub fn generate_secrets_yaml(values: &Values) -> String {
    let mut out = String::from(
        "# The two Secrets of a first install, with fresh random values. Create them ONCE:\n\
         #   storeplane deploy render --env <env> --generate-secrets | kubectl create -f -\n\
         # (`create` refuses to overwrite). A new PostgreSQL password breaks the database's\n\
         # login; a new secret.key cannot open the credentials already sealed. Back them up.\n",
    );
    for s in generate_secrets(values) {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&s).expect("a Secret serializes"));
    }
    out
}

/// [`generate_secrets`] as a JSON `v1/List`.
pub fn generate_secrets_json(values: &Values) -> String {
    list_json(generate_secrets(values).iter())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::values::Overrides;

    fn manifests(env: Env, sets: &[&str]) -> PlatformManifests {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let values = Values::load(
            env,
            &Overrides {
                files: &[],
                sets: &sets,
            },
        )
        .unwrap();
        render(env, &values, !sets.is_empty()).unwrap()
    }

    #[test]
    fn renders_are_deterministic() {
        for env in Env::ALL {
            assert_eq!(manifests(env, &[]).to_yaml(), manifests(env, &[]).to_yaml());
        }
    }

    #[test]
    fn the_cluster_role_is_the_rules_constant() {
        for env in Env::ALL {
            let m = manifests(env, &[]);
            let role = m.get("ClusterRole", "storeplane-orchestrator").unwrap();
            let rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule> =
                serde_json::from_value(role.object.data["rules"].clone()).unwrap();
            assert_eq!(rules, orchestrator_rules());
        }
    }

    #[test]
    fn every_object_is_in_the_namespace_and_labelled() {
        let m = manifests(Env::Prod, &["namespace=platform-x"]);
        for o in &m.objects {
            if o.namespaced {
                assert_eq!(o.object.metadata.namespace.as_deref(), Some("platform-x"));
            }
            let l = o.object.metadata.labels.as_ref().unwrap();
            assert_eq!(l[labels::PART_OF], "storeplane", "{}", o.key());
        }
        let kinds: Vec<String> = m.objects.iter().map(|o| o.key()).collect();
        for k in [
            "Namespace/platform-x",
            "ServiceAccount/storeplane-api",
            "ServiceAccount/storeplane-orchestrator",
            "ClusterRole/storeplane-orchestrator",
            "ClusterRoleBinding/storeplane-orchestrator",
            "Service/storeplane-postgres",
            "StatefulSet/storeplane-postgres",
            "Service/storeplane-api",
            "Deployment/storeplane-api",
            "PodDisruptionBudget/storeplane-api",
            "Deployment/storeplane-orchestrator",
            "PodDisruptionBudget/storeplane-orchestrator",
            "NetworkPolicy/default-deny",
            "Ingress/storeplane",
        ] {
            assert!(kinds.contains(&k.to_owned()), "{k} missing from {kinds:?}");
        }
        assert!(
            !kinds.iter().any(|k| k.starts_with("Secret/")),
            "no Secret is rendered into the manifests"
        );
    }

    #[test]
    fn network_policies_narrow_to_the_listed_controller_pods_and_api_addresses() {
        let policy = |m: &PlatformManifests, name: &str| {
            m.get("NetworkPolicy", name).unwrap().object.data["spec"].clone()
        };
        // Defaults: Traefik's pods in kube-system (and the ACME solver's policy the
        // same), the API server at any address (and the policy says why in an
        // annotation).
        let m = manifests(Env::Prod, &[]);
        let from = &policy(&m, "storeplane-api")["ingress"][0]["from"][0];
        assert_eq!(
            from["podSelector"]["matchLabels"],
            serde_json::json!({"app.kubernetes.io/name": "traefik"}),
            "{from}"
        );
        let solver = &policy(&m, "acme-http01-solver")["ingress"][0]["from"][0];
        assert_eq!(solver, from);
        // `any`: every pod of the namespace.
        let any = manifests(Env::Prod, &["ingress.controller_pod_labels=any"]);
        let from = &policy(&any, "storeplane-api")["ingress"][0]["from"][0];
        assert!(from.get("podSelector").is_none(), "{from}");
        let api_egress = &policy(&m, "storeplane-orchestrator")["egress"][2];
        assert_eq!(api_egress["ports"][0]["port"], 443);
        assert!(api_egress.get("to").is_none(), "{api_egress}");
        let orchestrator = m.get("NetworkPolicy", "storeplane-orchestrator").unwrap();
        assert!(
            orchestrator.object.metadata.annotations.as_ref().unwrap()
                ["storeplane.dev/kubernetes-api-egress"]
                .contains("kubernetes_api_cidrs")
        );

        let m = manifests(
            Env::Prod,
            &[
                "ingress.controller_pod_labels=app.kubernetes.io/name=traefik",
                "orchestrator.kubernetes_api_cidrs=10.43.0.1/32, 192.168.1.10/32",
            ],
        );
        let from = &policy(&m, "storeplane-api")["ingress"][0]["from"][0];
        assert_eq!(
            from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "kube-system"
        );
        assert_eq!(
            from["podSelector"]["matchLabels"],
            serde_json::json!({"app.kubernetes.io/name": "traefik"}),
            "namespace AND pod selector in one peer: {from}"
        );
        let api_egress = &policy(&m, "storeplane-orchestrator")["egress"][2];
        assert_eq!(
            api_egress["to"],
            serde_json::json!([
                {"ipBlock": {"cidr": "10.43.0.1/32"}},
                {"ipBlock": {"cidr": "192.168.1.10/32"}},
            ])
        );
        let orchestrator = m.get("NetworkPolicy", "storeplane-orchestrator").unwrap();
        assert!(orchestrator.object.metadata.annotations.is_none());

        for (set, says) in [
            ("orchestrator.kubernetes_api_cidrs=10.43.0.1", "not a CIDR"),
            (
                "orchestrator.kubernetes_api_cidrs=10.43.0.1/33",
                "not a CIDR",
            ),
            (
                "ingress.controller_pod_labels.app=-bad-",
                "not a Kubernetes label",
            ),
        ] {
            let err = Values::load(
                Env::Prod,
                &Overrides {
                    files: &[],
                    sets: &[set.to_owned()],
                },
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(says), "{set}: {err}");
        }
    }

    #[test]
    fn environments_differ_where_they_should() {
        let local = manifests(Env::Local, &[]);
        let prod = manifests(Env::Prod, &["domain=shop.example.org"]);
        let ingress =
            |m: &PlatformManifests| m.get("Ingress", "storeplane").unwrap().object.clone();
        assert!(ingress(&local).data["spec"].get("tls").is_none());
        assert!(ingress(&local).metadata.annotations.is_none());
        let p = ingress(&prod);
        assert_eq!(p.data["spec"]["tls"][0]["hosts"][0], "shop.example.org");
        assert_eq!(
            p.metadata.annotations.unwrap()["cert-manager.io/cluster-issuer"],
            "letsencrypt-prod"
        );
        let container = |m: &PlatformManifests, name: &str| {
            m.get("Deployment", name).unwrap().object.data["spec"]["template"]["spec"]["containers"]
                [0]
            .clone()
        };
        assert_eq!(
            container(&local, "storeplane-api")["imagePullPolicy"],
            "Never"
        );
        assert_eq!(
            container(&prod, "storeplane-api")["image"],
            format!(
                "ghcr.io/storeplane/storeplane:{}",
                env!("CARGO_PKG_VERSION")
            )
        );
        let sts = prod.get("StatefulSet", "storeplane-postgres").unwrap();
        assert_eq!(
            sts.object.data["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
            "local-path"
        );
        let sts = local.get("StatefulSet", "storeplane-postgres").unwrap();
        assert!(
            sts.object.data["spec"]["volumeClaimTemplates"][0]["spec"]
                .get("storageClassName")
                .is_none(),
            "local uses the cluster's default StorageClass"
        );
    }

    #[test]
    fn workloads_follow_the_platform_rules() {
        let m = manifests(Env::Prod, &[]);
        for name in ["storeplane-api", "storeplane-orchestrator"] {
            let d = &m.get("Deployment", name).unwrap().object.data;
            assert_eq!(d["spec"]["replicas"], 2);
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
            assert_eq!(pod["securityContext"]["runAsUser"], 65532);
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"],
                "RuntimeDefault"
            );
            assert!(pod["topologySpreadConstraints"].is_array());
            let c = &pod["containers"][0];
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
            assert!(c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object());
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                assert!(c[probe].is_object(), "{name} {probe}");
            }
            let env: BTreeMap<String, Value> = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
                .collect();
            let names: Vec<&String> = env.keys().collect();
            // The password is defined before the URL that refers to it.
            let order: Vec<&str> = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap())
                .collect();
            let pw = order.iter().position(|n| *n == "DB_PASSWORD").unwrap();
            let url = order
                .iter()
                .position(|n| *n == "STOREPLANE_DATABASE_URL")
                .unwrap();
            assert!(pw < url, "{order:?}");
            assert_eq!(
                env["STOREPLANE_DATABASE_URL"]["value"],
                "postgres://storeplane:$(DB_PASSWORD)@storeplane-postgres:5432/storeplane"
            );
            assert_eq!(env["STOREPLANE_LOG_FORMAT"]["value"], "json");
            assert_eq!(
                env["STOREPLANE_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"],
                "metadata.name"
            );
            for n in &names {
                assert!(
                    n.starts_with("STOREPLANE_") || *n == "DB_PASSWORD",
                    "{name}: {n} is not a Storeplane setting"
                );
            }
        }
        let api = &m.get("Deployment", "storeplane-api").unwrap().object.data;
        assert_eq!(
            api["spec"]["template"]["spec"]["automountServiceAccountToken"],
            false
        );
        assert_eq!(
            api["spec"]["template"]["spec"]["containers"][0]["args"],
            serde_json::json!(["serve", "--no-orchestrator"])
        );
    }

    #[test]
    fn generated_secrets_are_fresh_hex() {
        let values = Values::load(Env::Local, &Overrides::default()).unwrap();
        let a = generate_secrets(&values);
        let b = generate_secrets(&values);
        assert_eq!(a.len(), 2);
        for (x, y) in a.iter().zip(&b) {
            let vx = x.data["stringData"]
                .as_object()
                .unwrap()
                .values()
                .next()
                .unwrap();
            let vy = y.data["stringData"]
                .as_object()
                .unwrap()
                .values()
                .next()
                .unwrap();
            let vx = vx.as_str().unwrap();
            assert_eq!(vx.len(), 64);
            assert!(vx.bytes().all(|c| c.is_ascii_hexdigit()));
            assert_ne!(vx, vy.as_str().unwrap(), "fresh every time");
            assert_eq!(x.metadata.namespace.as_deref(), Some("store-platform"));
        }
        assert_eq!(a[0].metadata.name.as_deref(), Some("storeplane-postgres"));
        assert!(a[0].data["stringData"].get(POSTGRES_PASSWORD_KEY).is_some());
        assert!(a[1].data["stringData"].get(SECRET_KEY_KEY).is_some());
        crate::vault::Vault::from_key_hex(
            a[1].data["stringData"][SECRET_KEY_KEY].as_str().unwrap(),
        )
        .expect("the generated key is one the vault accepts");
    }

    fn planted(template: &str) -> Vec<String> {
        let values = Values::load(Env::Local, &Overrides::default()).unwrap();
        render_sources(
            Env::Local,
            &values,
            false,
            vec![("99-planted.yaml.j2".into(), template.into())],
        )
        .unwrap_err()
        .problems()
    }

    #[test]
    fn defects_fail_the_render_naming_template_and_line() {
        let typo = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: {{ values.namespace }}\nspec:\n  selectr: {}\n";
        let errs = planted(typo);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("template `99-planted.yaml.j2`, rendered line 7 (`selectr: {}`)"),
            "{}",
            errs[0]
        );
        assert!(
            errs[0].contains("unknown field /spec/selectr"),
            "{}",
            errs[0]
        );

        let errs = planted("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n");
        assert!(errs[0].contains("must set metadata.namespace"), "{errs:?}");

        let errs = planted("a: {{ values.nope }}\n");
        assert!(errs[0].contains("99-planted.yaml.j2` line 1"), "{errs:?}");
        assert!(errs[0].contains("undefined"), "{errs:?}");

        let errs = planted("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n");
        assert!(errs[0].contains("kind `Pod`"), "{errs:?}");
    }

    #[test]
    fn values_cannot_inject_yaml() {
        let hostile = "info\n  - name: EVIL\n---\nkind: Secret";
        let sets = [format!("log={hostile}")];
        let values = Values::load(
            Env::Local,
            &Overrides {
                files: &[],
                sets: &sets,
            },
        )
        .unwrap();
        let m = render(Env::Local, &values, true).unwrap();
        let clean = manifests(Env::Local, &[]);
        assert_eq!(m.objects.len(), clean.objects.len());
        let env = &m.get("Deployment", "storeplane-api").unwrap().object.data["spec"]["template"]["spec"]
            ["containers"][0]["env"];
        let log = env
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "STOREPLANE_LOG")
            .unwrap();
        assert_eq!(log["value"], hostile);
    }

    #[test]
    fn split_documents_on_separator_lines_only() {
        let docs = split_documents("a: 1\n---\n# c\n---\nb: \"---\"\n");
        assert_eq!(docs, vec![(1, "a: 1\n"), (5, "b: \"---\"\n")]);
    }
}
