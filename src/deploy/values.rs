//! Values of a platform render: the environment's file (`deploy/values/<env>.yaml`,
//! embedded at build time) with the operator's overrides laid over it — `--values`
//! files, then `--set key=value` assignments — checked key by key against the
//! environment's file (an unknown key or a value of the wrong type is an error that
//! names it), then decoded into [`Values`] and validated.
//!
//! The environment's file is the schema: it holds every key. `--set` values take the
//! type of the key they replace (a tag `1.10` stays the string "1.10").
//!
//! Reads the `--values` files it is given; nothing else.

use super::DeployError;
use crate::blueprint::{is_dns1123_label, is_dns1123_subdomain, is_label_key, is_label_value};
use crate::config::{PodLabels, RateSpec, parse_duration};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The environment files, embedded from `deploy/values/`.
#[derive(rust_embed::RustEmbed)]
#[folder = "deploy/values/"]
struct ValueFiles;

/// A deployment environment: which values file the render starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Env {
    /// kind or k3d on a workstation (`deploy/values/local.yaml`).
    Local,
    /// A production cluster, e.g. k3s on a VPS (`deploy/values/prod.yaml`).
    Prod,
}

impl Env {
    pub const ALL: [Env; 2] = [Env::Local, Env::Prod];

    pub fn as_str(self) -> &'static str {
        match self {
            Env::Local => "local",
            Env::Prod => "prod",
        }
    }

    /// The values file's name, e.g. `local.yaml`.
    pub fn file(self) -> String {
        format!("{}.yaml", self.as_str())
    }

    /// The environment's values as written in its file.
    pub fn base(self) -> Result<Value, DeployError> {
        let file = self.file();
        let bytes = ValueFiles::get(&file)
            .unwrap_or_else(|| panic!("deploy/values/{file} is embedded at build time"))
            .data;
        let text = String::from_utf8_lossy(&bytes);
        parse_yaml(&text, &format!("deploy/values/{file}"))
    }
}

/// Every setting of the platform's manifests. See `deploy/values/local.yaml` for what
/// each means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Values {
    pub namespace: String,
    pub domain: String,
    pub tls: Tls,
    pub ingress: Ingress,
    pub monitoring: Monitoring,
    pub storage_class: Option<String>,
    pub image: Image,
    pub replicas: Replicas,
    pub resources: Resources,
    pub postgres: Postgres,
    pub stores: Stores,
    pub api: Api,
    pub orchestrator: Orchestrator,
    pub log: String,
    pub rbac: Rbac,
    pub secrets: SecretNames,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub enabled: bool,
    pub cluster_issuer: Option<String>,
    pub secret_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ingress {
    pub class: String,
    pub controller_namespace: String,
    /// Labels the controller's pods carry; empty: any pod of `controller_namespace`.
    pub controller_pod_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub repository: String,
    /// `None`: the version of the binary that renders.
    pub tag: Option<String>,
    pub pull_policy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replicas {
    pub api: u32,
    pub orchestrator: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub api: ResourceSpec,
    pub orchestrator: ResourceSpec,
    pub postgres: ResourceSpec,
}

/// Requests and limits of one container: resource name → quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    pub image: String,
    pub storage_size: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stores {
    pub base_domain: String,
    pub ingress_class: String,
    pub ingress_namespace: String,
    /// The ingress controller pods' labels, as `STOREPLANE_INGRESS_POD_LABELS` takes
    /// them: `key=value,…` or `any`.
    pub ingress_pod_labels: String,
    pub tls_issuer: Option<String>,
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub rate_limit: String,
    pub create_rate_limit: String,
    pub login_rate_limit: String,
    pub login_account_rate_limit: String,
    pub trusted_proxies: Vec<String>,
    pub cors_origins: Vec<String>,
    pub token_ttl: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Orchestrator {
    pub workers: u32,
    pub apply_concurrency: u32,
    pub resync_period: String,
    pub phase_timeout: String,
    pub provision_deadline: String,
    /// The Kubernetes API server's addresses (CIDRs) the orchestrator may reach on TCP
    /// 443/6443; empty: any address.
    pub kubernetes_api_cidrs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rbac {
    pub cluster_role: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretNames {
    pub postgres: String,
    pub secret_key: String,
}

/// Keys that may be `null`.
const OPTIONAL: &[&str] = &[
    "tls.cluster_issuer",
    "monitoring.namespace",
    "storage_class",
    "image.tag",
    "stores.tls_issuer",
    "stores.storage_class",
];

/// Maps whose keys are free: `resources.<component>.requests|limits` (resource names)
/// and `ingress.controller_pod_labels` (label keys); their values are strings.
/// The label selector among the open maps: one thing, so an override replaces it whole
/// (merging Traefik's labels into ingress-nginx's would select no pod).
const POD_LABELS: &str = "ingress.controller_pod_labels";

fn is_open_map(path: &str) -> bool {
    path == POD_LABELS
        || path.starts_with("resources.")
            && (path.ends_with(".requests") || path.ends_with(".limits"))
}

/// An IPv4 or IPv6 CIDR, e.g. `10.43.0.1/32` or `fd00::/64`.
fn is_cidr(v: &str) -> bool {
    let Some((addr, bits)) = v.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a group of keys",
    }
}

fn parse_yaml(text: &str, origin: &str) -> Result<Value, DeployError> {
    let value: Value = serde_yaml::from_str(text)
        .map_err(|e| DeployError::Values(vec![format!("{origin} is not valid YAML: {e}")]))?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        other => Err(DeployError::Values(vec![format!(
            "{origin} must be a mapping of values, like deploy/values/local.yaml; it is {}",
            kind_of(&other)
        )])),
    }
}

/// Lays `over` onto `base`, key by key; every key must exist in `base` (except in open
/// maps) and keep its type. Problems name the key and `origin`.
fn overlay(base: &mut Value, over: Value, path: &str, origin: &str, problems: &mut Vec<String>) {
    let (Value::Object(base_map), Value::Object(over_map)) = (&mut *base, over) else {
        unreachable!("overlay is only called on mappings");
    };
    for (key, value) in over_map {
        let here = join(path, &key);
        match base_map.get_mut(&key) {
            Some(slot @ Value::Object(_)) if here == POD_LABELS => match value {
                Value::Object(labels) if labels.values().all(Value::is_string) => {
                    *slot = Value::Object(labels)
                }
                other => problems.push(format!(
                    "{origin}: `{here}` must be a map of label keys to strings, e.g. \
                     {{app.kubernetes.io/name: traefik}} ({{}}: any pod), not {}",
                    kind_of(&other)
                )),
            },
            Some(slot @ Value::Object(_)) => match value {
                Value::Object(_) => overlay(slot, value, &here, origin, problems),
                other => problems.push(format!(
                    "{origin}: `{here}` is a group of keys ({}), not {}",
                    keys_of(slot),
                    kind_of(&other)
                )),
            },
            Some(slot) => match check_type(slot, &value, &here) {
                Ok(()) => *slot = value,
                Err(why) => problems.push(format!("{origin}: {why}")),
            },
            None if is_open_map(path) => match value {
                Value::String(_) => {
                    base_map.insert(key, value);
                }
                other => problems.push(format!(
                    "{origin}: `{here}` must be a string ({}), not {}",
                    if path.starts_with("resources.") {
                        "a quantity such as \"500m\" or \"1Gi\""
                    } else {
                        "a label value"
                    },
                    kind_of(&other)
                )),
            },
            None => problems.push(unknown_key(origin, &here, path, base_map)),
        }
    }
}

fn keys_of(v: &Value) -> String {
    match v {
        Value::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
        _ => String::new(),
    }
}

fn unknown_key(origin: &str, key: &str, parent: &str, siblings: &Map<String, Value>) -> String {
    let known = siblings
        .keys()
        .map(|k| join(parent, k))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{origin}: there is no value `{key}`; known here: {known}")
}

/// Whether `new` may replace `old` at `path`: same JSON type, or `null` in an optional
/// key (whose type is string).
fn check_type(old: &Value, new: &Value, path: &str) -> Result<(), String> {
    let optional = OPTIONAL.contains(&path);
    let ok = match (old, new) {
        (_, Value::Null) => optional,
        (Value::Null, Value::String(_)) => optional,
        (Value::String(_), Value::String(_)) => true,
        (Value::Bool(_), Value::Bool(_)) => true,
        (Value::Number(_), Value::Number(n)) => n.is_u64(),
        (Value::Array(_), Value::Array(items)) => items.iter().all(Value::is_string),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let expected = match old {
        Value::Null => "a string",
        Value::Number(_) => "a whole number",
        Value::Array(_) => "a list of strings",
        other => kind_of(other),
    };
    let null_note = if optional { " or null" } else { "" };
    Err(format!(
        "`{path}` must be {expected}{null_note}, not {}{}",
        kind_of(new),
        if matches!(new, Value::Number(_)) && matches!(old, Value::String(_) | Value::Null) {
            " (quote it)"
        } else {
            ""
        }
    ))
}

/// Turns `--set key=value` into a value of the type the key already has.
fn apply_set(root: &mut Value, assignment: &str, problems: &mut Vec<String>) {
    let origin = format!("`--set {assignment}`");
    let Some((key, raw)) = assignment.split_once('=') else {
        problems.push(format!(
            "{origin} has no `=`; write it as key=value, e.g. replicas.api=3"
        ));
        return;
    };
    let mut parent = String::new();
    let mut slot = &mut *root;
    let segments: Vec<&str> = key.split('.').collect();
    for (i, seg) in segments.iter().enumerate() {
        let Value::Object(map) = slot else {
            problems.push(format!(
                "{origin}: `{parent}` is not a group of keys; set `{parent}` itself"
            ));
            return;
        };
        if is_open_map(&parent) {
            // The rest is one key, dots and all (label keys have them).
            map.insert(segments[i..].join("."), Value::String(raw.to_owned()));
            return;
        }
        if !map.contains_key(*seg) {
            problems.push(unknown_key(&origin, &join(&parent, seg), &parent, map));
            return;
        }
        parent = join(&parent, seg);
        slot = map.get_mut(*seg).expect("checked above");
    }
    let path = parent;
    if path == POD_LABELS {
        // The whole selector at once: `key=value,…`, or `any` for every pod.
        match raw.parse::<PodLabels>() {
            Ok(labels) => *slot = serde_json::json!(labels.0),
            Err(e) => problems.push(format!("{origin}: `{path}`: {e}")),
        }
        return;
    }
    let optional = OPTIONAL.contains(&path.as_str());
    let value = match slot {
        _ if optional && (raw == "null" || raw == "~") => Value::Null,
        Value::Object(_) => {
            problems.push(format!(
                "{origin}: `{path}` is a group of keys; set one of them: {}",
                keys_of(slot)
                    .split(", ")
                    .map(|k| format!("{path}.{k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            return;
        }
        Value::Bool(_) => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                problems.push(format!("{origin}: `{path}` must be true or false"));
                return;
            }
        },
        Value::Number(_) => match raw.parse::<u64>() {
            Ok(n) => Value::from(n),
            Err(_) => {
                problems.push(format!("{origin}: `{path}` must be a whole number"));
                return;
            }
        },
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        Value::Null | Value::String(_) => Value::String(raw.to_owned()),
    };
    *slot = value;
}

/// The overrides of one render, in the order they apply.
#[derive(Debug, Clone, Default)]
pub struct Overrides<'a> {
    /// YAML files of values (any subset of the keys), laid over the environment's file.
    pub files: &'a [std::path::PathBuf],
    /// `key=value` assignments, applied last.
    pub sets: &'a [String],
}

impl Values {
    /// The values of `env` with `overrides` applied, checked and validated. Every
    /// unknown or mistyped key is reported at once; when there are none, every invalid
    /// value is.
    pub fn load(env: Env, overrides: &Overrides<'_>) -> Result<Values, DeployError> {
        let mut root = env.base()?;
        let mut problems = Vec::new();
        for path in overrides.files {
            match read_file(path) {
                Ok(v) => overlay(&mut root, v, "", &path.display().to_string(), &mut problems),
                Err(e) => problems.extend(e.problems()),
            }
        }
        for s in overrides.sets {
            apply_set(&mut root, s, &mut problems);
        }
        if !problems.is_empty() {
            return Err(DeployError::Values(problems));
        }
        let values = Values::deserialize(&root).map_err(|e| {
            DeployError::Values(vec![format!(
                "deploy/values/{} does not fit the values this version knows ({e}); \
                 compare it with the file in the source of this version",
                env.file()
            )])
        })?;
        values.validate()?;
        Ok(values)
    }

    /// The image reference, `repository:tag`; the tag defaults to this binary's version.
    pub fn image_ref(&self) -> String {
        let tag = self
            .image
            .tag
            .clone()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
        format!("{}:{tag}", self.image.repository)
    }

    /// Checks what types cannot: names, hosts, rates, durations, counts.
    pub fn validate(&self) -> Result<(), DeployError> {
        let mut p = Vec::new();
        let mut label = |key: &str, v: &str| {
            if !is_dns1123_label(v) {
                p.push(format!(
                    "`{key}` = `{v}` must be a DNS label: lowercase letters, digits and '-', at most 63"
                ));
            }
        };
        label("namespace", &self.namespace);
        label(
            "ingress.controller_namespace",
            &self.ingress.controller_namespace,
        );
        label("stores.ingress_namespace", &self.stores.ingress_namespace);
        if let Some(ns) = &self.monitoring.namespace {
            label("monitoring.namespace", ns);
        }
        let mut subdomain = |key: &str, v: &str| {
            if !is_dns1123_subdomain(v) {
                p.push(format!(
                    "`{key}` = `{v}` must be a DNS name: lowercase letters, digits, '-' and '.'"
                ));
            }
        };
        subdomain("domain", &self.domain);
        subdomain("stores.base_domain", &self.stores.base_domain);
        subdomain("tls.secret_name", &self.tls.secret_name);
        subdomain("ingress.class", &self.ingress.class);
        subdomain("stores.ingress_class", &self.stores.ingress_class);
        subdomain("rbac.cluster_role", &self.rbac.cluster_role);
        subdomain("secrets.postgres", &self.secrets.postgres);
        subdomain("secrets.secret_key", &self.secrets.secret_key);
        for (key, v) in [
            ("storage_class", &self.storage_class),
            ("stores.storage_class", &self.stores.storage_class),
            ("stores.tls_issuer", &self.stores.tls_issuer),
            ("tls.cluster_issuer", &self.tls.cluster_issuer),
        ] {
            if let Some(v) = v {
                subdomain(key, v);
            }
        }
        for (k, v) in &self.ingress.controller_pod_labels {
            if !is_label_key(k) || !is_label_value(v) {
                p.push(format!(
                    "`ingress.controller_pod_labels` has `{k}: {v}`, not a Kubernetes label: \
                     keys `[dns.prefix/]name` and values of at most 63 letters, digits, '-', \
                     '_' and '.', starting and ending with a letter or digit"
                ));
            }
        }
        for cidr in &self.orchestrator.kubernetes_api_cidrs {
            if !is_cidr(cidr) {
                p.push(format!(
                    "`orchestrator.kubernetes_api_cidrs` has `{cidr}`, not a CIDR: write \
                     <address>/<prefix length>, e.g. 10.43.0.1/32 (the API server's addresses: \
                     kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes)"
                ));
            }
        }
        if self.tls.enabled && self.tls.cluster_issuer.is_none() {
            p.push(
                "`tls.enabled` is true but `tls.cluster_issuer` is null; name the cert-manager \
                 ClusterIssuer (e.g. --set tls.cluster_issuer=letsencrypt-prod) or set \
                 tls.enabled=false"
                    .into(),
            );
        }
        if !["Always", "IfNotPresent", "Never"].contains(&self.image.pull_policy.as_str()) {
            p.push(format!(
                "`image.pull_policy` = `{}` must be Always, IfNotPresent or Never",
                self.image.pull_policy
            ));
        }
        if self.image.tag.as_deref().is_some_and(str::is_empty) || self.image.repository.is_empty()
        {
            p.push("`image.repository` and `image.tag` must not be empty (a null tag means this binary's version)".into());
        }
        for (key, n) in [
            ("replicas.api", self.replicas.api),
            ("replicas.orchestrator", self.replicas.orchestrator),
            ("orchestrator.workers", self.orchestrator.workers),
            (
                "orchestrator.apply_concurrency",
                self.orchestrator.apply_concurrency,
            ),
        ] {
            if n == 0 {
                p.push(format!("`{key}` must be at least 1"));
            }
        }
        for (key, v) in [
            ("api.rate_limit", &self.api.rate_limit),
            ("api.create_rate_limit", &self.api.create_rate_limit),
            ("api.login_rate_limit", &self.api.login_rate_limit),
            (
                "api.login_account_rate_limit",
                &self.api.login_account_rate_limit,
            ),
        ] {
            if let Err(e) = v.parse::<RateSpec>() {
                p.push(format!("`{key}`: {e}"));
            }
        }
        if let Err(e) = self.stores.ingress_pod_labels.parse::<PodLabels>() {
            p.push(format!("`stores.ingress_pod_labels`: {e}"));
        }
        for v in &self.api.trusted_proxies {
            if let Err(e) = crate::config::parse_network(v) {
                p.push(format!("`api.trusted_proxies`: {e}"));
            }
        }
        if let Err(e) = crate::config::parse_token_ttl(&self.api.token_ttl) {
            p.push(format!("`api.token_ttl`: {e}"));
        }
        for (key, v) in [
            (
                "orchestrator.resync_period",
                &self.orchestrator.resync_period,
            ),
            (
                "orchestrator.phase_timeout",
                &self.orchestrator.phase_timeout,
            ),
            (
                "orchestrator.provision_deadline",
                &self.orchestrator.provision_deadline,
            ),
        ] {
            if let Err(e) = parse_duration(v) {
                p.push(format!("`{key}`: {e}"));
            }
        }
        if self.log.trim().is_empty() {
            p.push("`log` must not be empty; use e.g. info".into());
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(DeployError::Values(p))
        }
    }
}

fn read_file(path: &Path) -> Result<Value, DeployError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        DeployError::Values(vec![format!(
            "cannot read the values file {}: {e}",
            path.display()
        )])
    })?;
    parse_yaml(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: Env, sets: &[&str]) -> Result<Values, Vec<String>> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Values::load(
            env,
            &Overrides {
                files: &[],
                sets: &sets,
            },
        )
        .map_err(|e| e.problems())
    }

    #[test]
    fn both_environment_files_are_valid_and_complete() {
        for env in Env::ALL {
            let v = load(env, &[]).unwrap();
            // Every key of the file is a field of `Values` and the reverse: a round trip
            // through the struct gives the file back.
            let back = serde_json::to_value(&v).unwrap();
            assert_eq!(back, env.base().unwrap(), "{env:?}");
        }
        assert!(load(Env::Prod, &[]).unwrap().tls.enabled);
        assert!(!load(Env::Local, &[]).unwrap().tls.enabled);
    }

    #[test]
    fn sets_take_the_type_of_their_key() {
        let v = load(
            Env::Prod,
            &[
                "image.tag=1.10",
                "replicas.api=3",
                "tls.enabled=false",
                "api.cors_origins=https://a.example, https://b.example",
                "storage_class=null",
                "resources.api.limits.ephemeral-storage=1Gi",
            ],
        )
        .unwrap();
        assert_eq!(v.image.tag.as_deref(), Some("1.10"));
        assert_eq!(v.image_ref(), "ghcr.io/storeplane/storeplane:1.10");
        assert_eq!(v.replicas.api, 3);
        assert!(!v.tls.enabled);
        assert_eq!(
            v.api.cors_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(v.storage_class, None);
        assert_eq!(v.resources.api.limits["ephemeral-storage"], "1Gi");
    }

    #[test]
    fn the_default_tag_is_this_version() {
        let v = load(Env::Prod, &[]).unwrap();
        assert_eq!(
            v.image_ref(),
            format!(
                "ghcr.io/storeplane/storeplane:{}",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn bad_sets_name_the_key_and_the_fix() {
        let errs = load(
            Env::Local,
            &[
                "replicas.apii=3",
                "replicas.api=many",
                "tls=on",
                "nokey",
                "tls.enabled=yes",
            ],
        )
        .unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs[0].contains("no value `replicas.apii`"), "{}", errs[0]);
        assert!(errs[0].contains("replicas.api, replicas.orchestrator"));
        assert!(errs[1].contains("`replicas.api` must be a whole number"));
        assert!(errs[2].contains("`tls` is a group of keys; set one of them: tls.enabled"));
        assert!(errs[3].contains("has no `=`"), "{}", errs[3]);
        assert!(errs[4].contains("true or false"), "{}", errs[4]);
    }

    #[test]
    fn validation_reports_every_problem() {
        let errs = load(
            Env::Local,
            &[
                "namespace=Store_Platform",
                "tls.enabled=true",
                "image.pull_policy=Sometimes",
                "replicas.orchestrator=0",
                "api.rate_limit=lots",
                "stores.ingress_pod_labels=traefik",
                "api.trusted_proxies=10.0.0.0/8, the proxy",
                "orchestrator.phase_timeout=forever",
            ],
        )
        .unwrap_err();
        let all = errs.join("\n");
        for needle in [
            "`namespace` = `Store_Platform` must be a DNS label",
            "`tls.cluster_issuer` is null",
            "must be Always, IfNotPresent or Never",
            "`replicas.orchestrator` must be at least 1",
            "`api.rate_limit`",
            "`stores.ingress_pod_labels`: `traefik` has no `=`",
            "`api.trusted_proxies`: `the proxy` is not an address or a network",
            "`orchestrator.phase_timeout`",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn values_files_overlay_with_type_checks() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        std::fs::write(
            &good,
            "domain: shop.example.org\nreplicas:\n  api: 4\nresources:\n  api:\n    limits:\n      memory: 1Gi\n",
        )
        .unwrap();
        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            "domian: x\nreplicas: 2\nimage:\n  tag: 1.5\ntls:\n  enabled: \"yes\"\n",
        )
        .unwrap();
        let files = [good.clone()];
        let v = Values::load(
            Env::Prod,
            &Overrides {
                files: &files,
                sets: &["replicas.api=5".into()],
            },
        )
        .unwrap();
        assert_eq!(v.domain, "shop.example.org");
        assert_eq!(v.replicas.api, 5, "--set wins over --values");
        assert_eq!(v.resources.api.limits["memory"], "1Gi");
        assert_eq!(v.resources.api.limits["cpu"], "1", "untouched keys stay");

        let files = [bad];
        let errs = Values::load(
            Env::Prod,
            &Overrides {
                files: &files,
                sets: &[],
            },
        )
        .unwrap_err()
        .problems();
        let all = errs.join("\n");
        assert_eq!(errs.len(), 4, "{all}");
        assert!(all.contains("there is no value `domian`"), "{all}");
        assert!(
            all.contains("`replicas` is a group of keys (api, orchestrator)"),
            "{all}"
        );
        assert!(
            all.contains("`image.tag` must be a string or null, not a number (quote it)"),
            "{all}"
        );
        assert!(
            all.contains("`tls.enabled` must be true or false, not a string"),
            "{all}"
        );
    }

    /// The ingress controller's pod labels are one selector: a values file or a `--set`
    /// of the whole key replaces it; a `--set` of one label adds or changes that label.
    #[test]
    fn the_controller_pod_selector_is_replaced_whole() {
        let labels = |v: &Values| {
            v.ingress
                .controller_pod_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let prod = load(Env::Prod, &[]).unwrap();
        assert_eq!(labels(&prod), "app.kubernetes.io/name=traefik");
        let v = load(
            Env::Prod,
            &["ingress.controller_pod_labels=app=nginx-ingress,tier=edge"],
        )
        .unwrap();
        assert_eq!(labels(&v), "app=nginx-ingress,tier=edge");
        let v = load(Env::Prod, &["ingress.controller_pod_labels=any"]).unwrap();
        assert!(v.ingress.controller_pod_labels.is_empty());
        let v = load(
            Env::Prod,
            &["ingress.controller_pod_labels.app.kubernetes.io/name=ingress-nginx"],
        )
        .unwrap();
        assert_eq!(labels(&v), "app.kubernetes.io/name=ingress-nginx");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.yaml");
        std::fs::write(
            &file,
            "ingress:\n  controller_pod_labels: {app: nginx-ingress}\n",
        )
        .unwrap();
        let files = [file];
        let v = Values::load(
            Env::Prod,
            &Overrides {
                files: &files,
                sets: &[],
            },
        )
        .unwrap();
        assert_eq!(labels(&v), "app=nginx-ingress");
        let err = load(Env::Prod, &["ingress.controller_pod_labels=traefik"]).unwrap_err();
        assert!(err.join("\n").contains("has no `=`"), "{err:?}");
    }
}
