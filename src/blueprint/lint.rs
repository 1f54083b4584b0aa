//! Policy checks on blueprints (`storeplane blueprint lint`, and `Catalog::load` for every
//! `--blueprints-dir` blueprint): renders each blueprint with its defaults, once per plan
//! and once with every optional platform setting on, then checks what a store must always
//! be — inside its own namespace, labelled, bounded by quota, locked down. Each finding
//! names a stable rule id, so tests and CI can match on it.
//!
//! Read-only over rendered objects; must not change them or render anything itself beyond
//! calling `Blueprint::render`.

use super::catalog::{Blueprint, Catalog, is_dns1123_label, is_dns1123_subdomain};
use super::render::{RenderError, RenderInput, Rendered, RenderedObject, StoreRef};
use super::resources::{self, containers};
use super::secrets::StoreSecrets;
use crate::config::PlatformSettings;
use crate::domain::{Phase, labels as domain_labels};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Every rule id lint can report, with what it checks.
pub const RULES: &[(&str, &str)] = &[
    (
        "render",
        "the blueprint renders with its defaults, with each plan, and with a TLS issuer, a storage class and a domain",
    ),
    (
        "schema",
        "parameters: additionalProperties false at every object level; every property has a title and a description; every leaf has a default",
    ),
    (
        "escaping",
        "templates never turn auto-escaping off or to another mode",
    ),
    (
        "namespace",
        "one Namespace, the store's; every other object in it",
    ),
    (
        "cluster-scoped",
        "no cluster-scoped kinds besides the Namespace",
    ),
    (
        "dns-name",
        "object and container names are DNS-1123 (Services: DNS-1035 labels)",
    ),
    (
        "labels",
        "standard labels with the store's values on every object and pod template",
    ),
    ("unique-names", "names are unique per kind"),
    ("phase", "each kind sits in a phase that fits it"),
    (
        "resources",
        "every container has cpu and memory requests and limits",
    ),
    (
        "security-context",
        "runAsNonRoot, no privilege escalation, capabilities drop ALL, seccomp RuntimeDefault, read-only root filesystem (unless excused), no service-account token (automount off, none projected, no token Secret)",
    ),
    (
        "host-access",
        "no hostPath, hostNetwork, hostPID, hostIPC, hostPort or privileged containers; only restricted volume types",
    ),
    (
        "probes",
        "every Deployment and StatefulSet container has readiness, liveness and startup probes",
    ),
    (
        "pod-security",
        "the Namespace enforces (and audits and warns at) the blueprint's Pod Security level, which is `restricted` or `baseline`",
    ),
    (
        "exposure",
        "Services are ClusterIP without externalIPs; every Ingress rule names a host the store's URLs use, and no Ingress has a default backend",
    ),
    (
        "rbac",
        "no Role or RoleBinding: a store's pods need no API access",
    ),
    (
        "network-policy",
        "a default-deny NetworkPolicy (empty podSelector, Ingress and Egress) exists, and no rule opens the store to every peer: each ingress and egress rule names its peers, no peer is empty, every namespaceSelector is pinned (by `kubernetes.io/metadata.name` or the store's own id), no ipBlock reaches link-local addresses (cloud metadata) but for DNS (port 53 only: a node-local DNS cache), and one that spans a private or carrier-grade-NAT range (pod and service networks) excepts it (a narrow block inside one, /20 or narrower, passes)",
    ),
    ("quota", "a ResourceQuota and a LimitRange exist"),
    (
        "quota-fit",
        "each plan's quota holds the store's worst case (replicas + surge + jobs); no container exceeds the LimitRange maximum",
    ),
    (
        "secret-leak",
        "no secret value, as written or base64-encoded, appears anywhere but a Secret's data",
    ),
    (
        "references",
        "readiness notes and pod_security exceptions name rendered objects and containers",
    ),
];

/// Whether a finding of `rule` keeps `serve` and `orchestrate` from loading a folder
/// blueprint. Every rule does but `quota-fit`: a quota too small for the store's pods
/// makes no store unsafe — the cluster refuses the pods and the store fails with that
/// reason — so it is a warning at load (and still a finding of `blueprint lint`).
pub fn blocks_provisioning(rule: &str) -> bool {
    rule != "quota-fit"
}

/// One policy violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LintFinding {
    pub blueprint: String,
    /// Stable rule id, one of [`RULES`].
    pub rule: &'static str,
    /// `Kind/name` of the object, or `blueprint.yaml` / a template file.
    pub object: String,
    pub message: String,
}

impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {}: {}",
            self.blueprint, self.rule, self.object, self.message
        )
    }
}

/// Lints every blueprint in the catalog.
pub fn lint(catalog: &Catalog) -> Vec<LintFinding> {
    catalog.iter().flat_map(lint_blueprint).collect()
}

/// The store lint renders: fixed, so findings are reproducible.
pub fn lint_store() -> StoreRef {
    StoreRef::new(
        "lint",
        uuid::Uuid::from_u128(0x11a7_5e1f_0000_4000_8000_0000_0000_0001),
    )
}

/// The platform settings of lint's last render: every optional setting on, so that the
/// template branches they switch (TLS, storage class) are checked too.
pub fn lint_platform() -> PlatformSettings {
    PlatformSettings {
        tls_issuer: Some("lint-issuer".into()),
        storage_class: Some("lint-storage".into()),
        ..PlatformSettings::default()
    }
}

/// The `domain` parameter lint's last render sets, when the blueprint has one.
pub const LINT_DOMAIN: &str = "shop.lint.example.com";

/// Lints one blueprint: static checks, then every per-store rule on a render with
/// defaults, on one per plan and on one with [`lint_platform`] and [`LINT_DOMAIN`]. A
/// finding is reported once, by the first render that shows it; one that only a later
/// render shows says which (`plan large: …`).
pub fn lint_blueprint(bp: &Blueprint) -> Vec<LintFinding> {
    let mut out = Findings::new(bp);
    check_schema(bp, &mut out);
    check_escaping(bp, &mut out);
    let store = lint_store();
    let secrets = bp.generate_secrets();
    let mut renders: Vec<(String, Value, PlatformSettings)> =
        vec![("defaults".into(), json!({}), PlatformSettings::default())];
    for plan in bp.plans() {
        renders.push((
            format!("plan {plan}"),
            json!({ "plan": plan }),
            PlatformSettings::default(),
        ));
    }
    // A domain only where the schema takes it (and this one passes its pattern).
    let with_domain = json!({ "domain": LINT_DOMAIN });
    let full_params = if bp
        .parameters_schema()
        .pointer("/properties/domain")
        .is_some()
        && bp.validate_params(&with_domain).is_ok()
    {
        with_domain
    } else {
        json!({})
    };
    renders.push((
        "with tls_issuer, storage_class and domain set".into(),
        full_params,
        lint_platform(),
    ));

    // (rule, object, message) of every finding so far; render failures by message alone.
    let mut seen: BTreeSet<(&'static str, String, String)> = BTreeSet::new();
    for (i, (label, params, platform)) in renders.iter().enumerate() {
        let found = match bp.render(&RenderInput {
            store: &store,
            params,
            secrets: &secrets,
            platform,
        }) {
            Ok(rendered) => check_rendered(bp, &store, &secrets, &rendered),
            Err(e) => render_findings(bp, label, &e),
        };
        for mut f in found {
            let object = if f.rule == "render" {
                String::new()
            } else {
                f.object.clone()
            };
            if !seen.insert((f.rule, object, f.message.clone())) {
                continue;
            }
            if i > 0 && f.rule != "render" {
                f.message = format!("{label}: {}", f.message);
            }
            out.0.push(f);
        }
    }
    out.0
}

/// Findings for a render that failed: objects the renderer refused by policy under their
/// own rule, everything else under `render`, with `label` (which render) as the object.
fn render_findings(bp: &Blueprint, label: &str, e: &RenderError) -> Vec<LintFinding> {
    let mut out = Findings::new(bp);
    match e {
        RenderError::Template {
            blueprint,
            problems,
        } => {
            for p in problems {
                match &p.refused {
                    Some(r) => out.add(r.rule, r.object.clone(), p.to_string()),
                    None => out.add("render", label, format!("blueprint `{blueprint}`, {p}")),
                }
            }
        }
        other => {
            for p in other.problems() {
                out.add("render", label, p);
            }
        }
    }
    out.0
}

/// Every rule that applies to one rendered store. Callers that render from blueprints
/// they do not trust (a `--blueprints-dir`) can run this before applying.
pub fn check_rendered(
    bp: &Blueprint,
    store: &StoreRef,
    secrets: &StoreSecrets,
    rendered: &Rendered,
) -> Vec<LintFinding> {
    let mut out = Findings::new(bp);
    check_namespace(store, rendered, &mut out);
    check_names(rendered, &mut out);
    check_labels(bp, store, rendered, &mut out);
    check_phases(rendered, &mut out);
    check_pods(bp, rendered, &mut out);
    check_pod_security(bp, rendered, &mut out);
    check_exposure(rendered, &mut out);
    check_network_policy(store, rendered, &mut out);
    check_quota(rendered, &mut out);
    check_secret_leaks(secrets, rendered, &mut out);
    check_references(bp, rendered, &mut out);
    out.0
}

struct Findings(Vec<LintFinding>, String);

impl Findings {
    fn new(bp: &Blueprint) -> Self {
        Findings(Vec::new(), bp.name.clone())
    }
    fn add(&mut self, rule: &'static str, object: impl Into<String>, message: impl Into<String>) {
        self.0.push(LintFinding {
            blueprint: self.1.clone(),
            rule,
            object: object.into(),
            message: message.into(),
        });
    }
}

fn check_schema(bp: &Blueprint, out: &mut Findings) {
    fn walk(schema: &Value, path: &str, out: &mut Findings) {
        let is_object = schema.get("type").and_then(Value::as_str) == Some("object")
            || schema.get("properties").is_some();
        if !is_object {
            return;
        }
        let where_ = if path.is_empty() { "/" } else { path };
        if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
            out.add(
                "schema",
                "blueprint.yaml",
                format!("parameters {where_}: set `additionalProperties: false` so a misspelt parameter is an error"),
            );
        }
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (name, sub) in props {
            let p = format!("{path}/{name}");
            for key in ["title", "description"] {
                if sub
                    .get(key)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    out.add(
                        "schema",
                        "blueprint.yaml",
                        format!("parameter {p} has no `{key}`; forms show it"),
                    );
                }
            }
            let nested = sub.get("type").and_then(Value::as_str) == Some("object")
                || sub.get("properties").is_some();
            if nested {
                walk(sub, &p, out);
            } else if sub.get("default").is_none() {
                out.add("schema", "blueprint.yaml", format!("parameter {p} has no `default`; every store must render with defaults alone"));
            }
        }
    }
    walk(bp.parameters_schema(), "", out);
}

fn check_escaping(bp: &Blueprint, out: &mut Findings) {
    for (file, src) in &bp.sources {
        let mut rest = src.as_str();
        while let Some(start) = rest.find("{%") {
            let after = &rest[start + 2..];
            let end = after.find("%}").unwrap_or(after.len());
            let tag =
                after[..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
            // `autoescape <expr>` or `autoescape(<expr>)`; only JSON escaping may stand.
            let escapes_otherwise = tag
                .strip_prefix("autoescape")
                .filter(|arg| arg.starts_with(|c: char| c.is_whitespace() || c == '('))
                .map(|arg| {
                    let arg = arg.trim();
                    let arg = arg
                        .strip_prefix('(')
                        .and_then(|a| a.strip_suffix(')'))
                        .map_or(arg, str::trim);
                    !matches!(arg, "true" | "\"json\"" | "'json'")
                });
            if escapes_otherwise == Some(true) {
                let line = src[..src.len() - rest.len() + start].lines().count().max(1);
                out.add(
                    "escaping",
                    file.clone(),
                    format!("line {line}: `{{% {tag} %}}` turns escaping off, which lets parameter values inject YAML"),
                );
            }
            rest = &after[end.min(after.len())..];
        }
    }
}

fn check_namespace(store: &StoreRef, r: &Rendered, out: &mut Findings) {
    let namespaces: Vec<&RenderedObject> = r
        .objects
        .iter()
        .filter(|o| o.gvk.kind == "Namespace")
        .collect();
    if namespaces.len() != 1 {
        out.add(
            "namespace",
            "Namespace",
            format!("expected exactly one Namespace, found {}", namespaces.len()),
        );
    }
    for o in &r.objects {
        if o.gvk.kind == "Namespace" {
            if o.name() != store.namespace {
                out.add(
                    "namespace",
                    o.key(),
                    format!("the Namespace must be the store's, `{}`", store.namespace),
                );
            }
            continue;
        }
        if !o.namespaced {
            out.add(
                "cluster-scoped",
                o.key(),
                format!("{} is cluster-scoped; a store may only create namespaced objects (and its Namespace)", o.gvk.kind),
            );
            continue;
        }
        let ns = o.object.metadata.namespace.as_deref().unwrap_or("");
        if ns != store.namespace {
            out.add(
                "namespace",
                o.key(),
                format!(
                    "is in namespace `{ns}`, not the store's `{}`; remove metadata.namespace",
                    store.namespace
                ),
            );
        }
    }
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn check_names(r: &Rendered, out: &mut Findings) {
    let mut seen = BTreeSet::new();
    for o in &r.objects {
        let name = o.name();
        let (ok, what) = match o.gvk.kind.as_str() {
            "Namespace" => (is_dns1123_label(name), "a DNS-1123 label"),
            "Service" => (
                is_dns1035_label(name),
                "a DNS-1035 label (a-z first, then a-z 0-9 -, at most 63)",
            ),
            "CronJob" => (
                is_dns1123_subdomain(name) && name.len() <= 52,
                "a DNS-1123 subdomain of at most 52 characters",
            ),
            _ => (is_dns1123_subdomain(name), "a DNS-1123 subdomain"),
        };
        if !ok {
            out.add("dns-name", o.key(), format!("name `{name}` is not {what}"));
        }
        if !seen.insert((o.gvk.kind.clone(), name.to_owned())) {
            out.add(
                "unique-names",
                o.key(),
                "another object of this kind has the same name; the later one would overwrite it",
            );
        }
        if let Some((spec, _)) = pod_template(o) {
            for field in ["containers", "initContainers"] {
                for c in containers(spec, field) {
                    let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
                    if !is_dns1123_label(cname) {
                        out.add(
                            "dns-name",
                            o.key(),
                            format!("container name `{cname}` is not a DNS-1123 label"),
                        );
                    }
                }
            }
        }
    }
}

fn check_labels(bp: &Blueprint, store: &StoreRef, r: &Rendered, out: &mut Findings) {
    let wanted = store.standard_labels(&bp.name);
    let check = |labels: Option<&BTreeMap<String, String>>,
                 what: &str,
                 key: String,
                 out: &mut Findings| {
        for (k, v) in &wanted {
            match labels.and_then(|l| l.get(k)) {
                Some(have) if have == v => {}
                Some(have) => out.add("labels", key.clone(), format!("{what} label `{k}` is `{have}`, expected `{v}`")),
                None => out.add("labels", key.clone(), format!("{what} lacks label `{k}`; without it the store's objects cannot all be found and pruned")),
            }
        }
    };
    for o in &r.objects {
        check(
            o.object.metadata.labels.as_ref(),
            "the object",
            o.key(),
            out,
        );
        if let Some((_, meta)) = pod_template(o) {
            let labels: Option<BTreeMap<String, String>> = meta
                .and_then(|m| m.get("labels"))
                .and_then(|l| serde_json::from_value(l.clone()).ok());
            check(labels.as_ref(), "the pod template", o.key(), out);
        }
    }
}

fn allowed_phases(kind: &str) -> &'static [Phase] {
    match kind {
        "Namespace" | "ResourceQuota" | "LimitRange" | "NetworkPolicy" => &[Phase::Foundation],
        "Secret" | "ConfigMap" => &[Phase::Secrets],
        "ServiceAccount" | "Role" | "RoleBinding" => &[Phase::Foundation, Phase::Secrets],
        "PersistentVolumeClaim" => &[Phase::Storage],
        "StatefulSet" | "Deployment" | "Service" | "PodDisruptionBudget" => {
            &[Phase::Data, Phase::Application]
        }
        "Job" => &[Phase::Migrate, Phase::Jobs],
        "CronJob" => &[Phase::Jobs],
        "Ingress" => &[Phase::Ingress],
        _ => &[],
    }
}

fn check_phases(r: &Rendered, out: &mut Findings) {
    for o in &r.objects {
        let allowed = allowed_phases(&o.gvk.kind);
        if !allowed.is_empty() && !allowed.contains(&o.phase) {
            let names: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
            out.add(
                "phase",
                o.key(),
                format!(
                    "is in phase `{}` (template {}); a {} belongs in {}",
                    o.phase,
                    o.template,
                    o.gvk.kind,
                    names.join(" or ")
                ),
            );
        }
    }
}

/// The pod spec and pod template metadata of a workload.
fn pod_template(o: &RenderedObject) -> Option<(&Value, Option<&Value>)> {
    let base = match o.gvk.kind.as_str() {
        "Deployment" | "StatefulSet" | "Job" => "/spec/template",
        "CronJob" => "/spec/jobTemplate/spec/template",
        _ => return None,
    };
    let tmpl = o.object.data.pointer(base)?;
    Some((tmpl.get("spec")?, tmpl.get("metadata")))
}

const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn check_pods(bp: &Blueprint, r: &Rendered, out: &mut Findings) {
    let excused = |container: &str, rule: &str| {
        bp.pod_security()
            .exceptions
            .iter()
            .any(|e| e.container == container && e.rule == rule)
    };
    for o in &r.objects {
        if o.gvk.kind == "Secret"
            && o.object.data.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token")
        {
            out.add(
                "security-context",
                o.key(),
                "a Secret of type kubernetes.io/service-account-token holds an API token; store pods never call the Kubernetes API",
            );
        }
        let Some((spec, _)) = pod_template(o) else {
            continue;
        };
        let key = o.key();
        let psc = spec.get("securityContext");
        let pod_bool = |f: &str| psc.and_then(|p| p.get(f)).and_then(Value::as_bool);
        if spec.get("automountServiceAccountToken") != Some(&Value::Bool(false)) {
            out.add("security-context", key.clone(), "set `automountServiceAccountToken: false`; store pods never call the Kubernetes API");
        }
        for f in ["hostNetwork", "hostPID", "hostIPC"] {
            if spec.get(f) == Some(&Value::Bool(true)) {
                out.add(
                    "host-access",
                    key.clone(),
                    format!("`{f}: true` shares the node's namespaces"),
                );
            }
        }
        for v in spec
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let vname = v.get("name").and_then(Value::as_str).unwrap_or("?");
            for source in v
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .filter(|k| *k != "name")
            {
                let projects_token = source == "projected"
                    && v.pointer("/projected/sources")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|s| s.get("serviceAccountToken").is_some());
                if projects_token {
                    out.add(
                        "security-context",
                        key.clone(),
                        format!("volume `{vname}` projects a service account token; store pods never call the Kubernetes API"),
                    );
                }
                if source == "hostPath" {
                    out.add(
                        "host-access",
                        key.clone(),
                        format!("volume `{vname}` is a hostPath"),
                    );
                } else if !RESTRICTED_VOLUMES.contains(&source.as_str()) {
                    out.add("host-access", key.clone(), format!("volume `{vname}` uses `{source}`, which the restricted Pod Security profile forbids"));
                }
            }
        }
        let long_running = matches!(o.gvk.kind.as_str(), "Deployment" | "StatefulSet");
        for field in ["initContainers", "containers"] {
            for c in containers(spec, field) {
                let cname = c.get("name").and_then(Value::as_str).unwrap_or("?");
                let at = format!("{key} container {cname}");
                let sc = c.get("securityContext");
                let get = |f: &str| sc.and_then(|s| s.get(f));
                // resources
                for p in [
                    "requests/cpu",
                    "requests/memory",
                    "limits/cpu",
                    "limits/memory",
                ] {
                    if c.pointer(&format!("/resources/{p}")).is_none() {
                        out.add(
                            "resources",
                            at.clone(),
                            format!("no resources.{}", p.replace('/', ".")),
                        );
                    }
                }
                // security context
                let non_root = get("runAsNonRoot")
                    .and_then(Value::as_bool)
                    .or(pod_bool("runAsNonRoot"));
                if non_root != Some(true) {
                    out.add(
                        "security-context",
                        at.clone(),
                        "runAsNonRoot is not true (set it on the pod or the container)",
                    );
                }
                let uid = get("runAsUser")
                    .or_else(|| psc.and_then(|p| p.get("runAsUser")))
                    .and_then(Value::as_i64);
                if uid == Some(0) {
                    out.add("security-context", at.clone(), "runs as uid 0");
                }
                if get("allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false) {
                    out.add(
                        "security-context",
                        at.clone(),
                        "allowPrivilegeEscalation is not false",
                    );
                }
                let drop: Vec<&str> = sc
                    .and_then(|s| s.pointer("/capabilities/drop"))
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !drop.contains(&"ALL") {
                    out.add(
                        "security-context",
                        at.clone(),
                        "capabilities.drop does not contain ALL",
                    );
                }
                for add in sc
                    .and_then(|s| s.pointer("/capabilities/add"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if add != "NET_BIND_SERVICE" {
                        out.add(
                            "security-context",
                            at.clone(),
                            format!("adds capability {add}; only NET_BIND_SERVICE is allowed"),
                        );
                    }
                }
                let seccomp = get("seccompProfile")
                    .or_else(|| psc.and_then(|p| p.get("seccompProfile")))
                    .and_then(|s| s.get("type"))
                    .and_then(Value::as_str);
                if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
                    out.add("security-context", at.clone(), "seccompProfile.type is not RuntimeDefault (set it on the pod or the container)");
                }
                let ro = get("readOnlyRootFilesystem").and_then(Value::as_bool) == Some(true);
                if !ro && !excused(cname, "readOnlyRootFilesystem") {
                    out.add("security-context", at.clone(), "readOnlyRootFilesystem is not true; mount emptyDirs where the image writes, or declare a pod_security exception with the reason");
                }
                if get("privileged").and_then(Value::as_bool) == Some(true) {
                    out.add("host-access", at.clone(), "is privileged");
                }
                if get("procMount").and_then(Value::as_str) == Some("Unmasked") {
                    out.add("host-access", at.clone(), "uses procMount Unmasked");
                }
                for port in c
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if port
                        .get("hostPort")
                        .and_then(Value::as_i64)
                        .is_some_and(|p| p != 0)
                    {
                        out.add("host-access", at.clone(), "binds a hostPort");
                    }
                }
                if long_running && field == "containers" {
                    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                        if c.get(probe).is_none() {
                            out.add("probes", at.clone(), format!("has no {probe}"));
                        }
                    }
                }
            }
        }
    }
}

fn check_pod_security(bp: &Blueprint, r: &Rendered, out: &mut Findings) {
    let level = bp.pod_security().level.as_str();
    if bp.pod_security().level == super::catalog::PodSecurityLevel::Privileged {
        out.add(
            "pod-security",
            "blueprint.yaml",
            "level `privileged` would let a store's pods use the node (host paths, host \
             network, privileged containers); declare `restricted`, or `baseline` naming \
             the rules an image cannot meet",
        );
    }
    for o in r.objects.iter().filter(|o| o.gvk.kind == "Namespace") {
        let labels = o.object.metadata.labels.as_ref();
        for mode in ["enforce", "audit", "warn"] {
            let key = format!("pod-security.kubernetes.io/{mode}");
            match labels.and_then(|l| l.get(&key)) {
                Some(v) if v == level => {}
                Some(v) => out.add(
                    "pod-security",
                    o.key(),
                    format!("label `{key}` is `{v}` but the blueprint declares `{level}`"),
                ),
                None => out.add(
                    "pod-security",
                    o.key(),
                    format!("lacks label `{key}: {level}`"),
                ),
            }
        }
    }
}

/// How a store is reached: only through its Ingress, at its own hosts.
fn check_exposure(r: &Rendered, out: &mut Findings) {
    let hosts: BTreeSet<&str> = r.urls.iter().filter_map(|u| url_host(&u.url)).collect();
    for o in &r.objects {
        let spec = o.object.data.get("spec");
        let field = |name: &str| spec.and_then(|s| s.get(name));
        match o.gvk.kind.as_str() {
            "Service" => {
                let ty = field("type").and_then(Value::as_str).unwrap_or("ClusterIP");
                if ty != "ClusterIP" {
                    out.add(
                        "exposure",
                        o.key(),
                        format!("`type: {ty}` reaches past the store's Ingress; use ClusterIP"),
                    );
                }
                if field("externalIPs")
                    .and_then(Value::as_array)
                    .is_some_and(|ips| !ips.is_empty())
                {
                    out.add(
                        "exposure",
                        o.key(),
                        "`externalIPs` would capture traffic for those addresses cluster-wide",
                    );
                }
            }
            "Ingress" => {
                if field("defaultBackend").is_some() {
                    out.add(
                        "exposure",
                        o.key(),
                        "`defaultBackend` can answer for hosts that are not the store's; \
                         route by host in `rules`",
                    );
                }
                let tls_hosts = field("tls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.get("hosts").and_then(Value::as_array))
                    .flatten()
                    .filter_map(Value::as_str);
                for host in tls_hosts.filter(|h| !hosts.contains(h)) {
                    out.add(
                        "exposure",
                        o.key(),
                        format!("TLS host `{host}` is none of the store's; a certificate would be requested for it"),
                    );
                }
                for rule in field("rules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match rule.get("host").and_then(Value::as_str) {
                        Some(host) if hosts.contains(host) => {}
                        Some(host) => out.add(
                            "exposure",
                            o.key(),
                            format!(
                                "host `{host}` is none of the store's ({}); a store answers \
                                 only at its own hosts",
                                hosts.iter().copied().collect::<Vec<_>>().join(", ")
                            ),
                        ),
                        None => out.add(
                            "exposure",
                            o.key(),
                            "a rule without `host` answers for every host",
                        ),
                    }
                }
            }
            "Role" | "RoleBinding" => out.add(
                "rbac",
                o.key(),
                format!(
                    "a store carries no {}: its pods run without API access (the \
                     orchestrator may not grant any)",
                    o.gvk.kind
                ),
            ),
            _ => {}
        }
    }
}

/// The host of an `http(s)://host[:port]/…` URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

fn check_network_policy(store: &StoreRef, r: &Rendered, out: &mut Findings) {
    let default_deny = r.objects.iter().any(|o| {
        if o.gvk.kind != "NetworkPolicy" {
            return false;
        }
        let spec = o.object.data.get("spec");
        let selects_all = spec.and_then(|s| s.get("podSelector")).is_some_and(|s| {
            s.as_object().is_none_or(|m| {
                m.values().all(|v| {
                    v.as_object().is_some_and(|x| x.is_empty())
                        || v.as_array().is_some_and(|x| x.is_empty())
                })
            })
        });
        let types: Vec<&str> = spec
            .and_then(|s| s.get("policyTypes"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let no_rules = ["ingress", "egress"].iter().all(|k| {
            spec.and_then(|s| s.get(*k))
                .and_then(Value::as_array)
                .is_none_or(|a| a.is_empty())
        });
        selects_all && types.contains(&"Ingress") && types.contains(&"Egress") && no_rules
    });
    if !default_deny {
        out.add(
            "network-policy",
            "NetworkPolicy",
            "no default-deny NetworkPolicy (podSelector: {}, policyTypes: [Ingress, Egress], no rules); every store starts closed",
        );
    }
    for o in r.objects.iter().filter(|o| o.gvk.kind == "NetworkPolicy") {
        let spec = o.object.data.get("spec");
        for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
            let rules = spec
                .and_then(|s| s.get(direction))
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            for (i, rule) in rules.enumerate() {
                let at = format!("{direction}[{i}]");
                let list = rule.get(peers).and_then(Value::as_array);
                match list {
                    Some(list) if !list.is_empty() => {
                        let dns_only = dns_only(rule);
                        for (j, peer) in list.iter().enumerate() {
                            let at = format!("{at}.{peers}[{j}]");
                            check_peer(store, o, &at, peer, dns_only, out);
                        }
                    }
                    _ => out.add(
                        "network-policy",
                        o.key(),
                        format!(
                            "{at} has {} `{peers}`, so it allows every peer in and out of \
                             the cluster, other stores included; name the pods, namespaces \
                             or ipBlocks it is for",
                            if list.is_some() { "an empty" } else { "no" }
                        ),
                    ),
                }
            }
        }
    }
}

/// Private ranges (where pod and service addresses live): an `ipBlock` that spans one
/// must except it, and one inside it must be at least this narrow (prefix length) — a
/// managed database's subnet, say, not a slice the size of a pod network.
const PRIVATE_RANGES: &[(&str, u8)] = &[
    ("10.0.0.0/8", 20),
    ("172.16.0.0/12", 20),
    ("192.168.0.0/16", 20),
    ("100.64.0.0/10", 20),
    ("fc00::/7", 64),
];

/// Link-local ranges (cloud metadata endpoints): no `ipBlock` may reach into them.
const LINK_LOCAL_RANGES: &[&str] = &["169.254.0.0/16", "fe80::/10"];

/// Whether a rule allows port 53 and nothing else (a node-local DNS cache listens on a
/// link-local address).
fn dns_only(rule: &Value) -> bool {
    rule.get("ports")
        .and_then(Value::as_array)
        .is_some_and(|ports| {
            !ports.is_empty()
                && ports.iter().all(|p| {
                    p.get("port").and_then(Value::as_i64) == Some(53) && p.get("endPort").is_none()
                })
        })
}

fn check_peer(
    store: &StoreRef,
    o: &RenderedObject,
    at: &str,
    peer: &Value,
    dns_only: bool,
    out: &mut Findings,
) {
    if peer.as_object().is_none_or(|m| m.is_empty()) {
        out.add(
            "network-policy",
            o.key(),
            format!("{at} is empty and selects every peer; name the pods, namespaces or ipBlock"),
        );
        return;
    }
    if let Some(selector) = peer.get("namespaceSelector").filter(|v| !v.is_null())
        && !pinned_namespace(store, selector)
    {
        out.add(
            "network-policy",
            o.key(),
            format!(
                "{at} has a namespaceSelector that can select other stores' namespaces \
                 (they all carry the same standard and Pod Security labels); pin it with \
                 `kubernetes.io/metadata.name`"
            ),
        );
    }
    let Some(block) = peer.get("ipBlock").filter(|v| !v.is_null()) else {
        return;
    };
    let parse = |v: &Value| v.as_str().and_then(|s| s.parse::<ipnet::IpNet>().ok());
    let Some(cidr) = block.get("cidr").and_then(parse) else {
        out.add(
            "network-policy",
            o.key(),
            format!("{at}.ipBlock.cidr is not a CIDR such as `203.0.113.0/24`"),
        );
        return;
    };
    let except: Vec<ipnet::IpNet> = block
        .get("except")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(parse)
        .collect();
    let excepted = |range: &ipnet::IpNet| except.iter().any(|e| e.contains(range));
    for range in LINK_LOCAL_RANGES {
        let range: ipnet::IpNet = range.parse().expect("a valid CIDR");
        if range.contains(&cidr) {
            if dns_only {
                continue;
            }
            out.add(
                "network-policy",
                o.key(),
                format!(
                    "{at}.ipBlock {cidr} is link-local, where cloud metadata endpoints \
                     answer; a store reaches none of it but DNS (a rule for port 53 only)"
                ),
            );
        } else if cidr.contains(&range) && !excepted(&range) {
            out.add(
                "network-policy",
                o.key(),
                format!(
                    "{at}.ipBlock {cidr} spans {range} (link-local: cloud metadata) \
                     without excepting it; add `{range}` to `except`"
                ),
            );
        }
    }
    for (range, narrowest) in PRIVATE_RANGES {
        let range: ipnet::IpNet = range.parse().expect("a valid CIDR");
        if cidr.contains(&range) && !excepted(&range) {
            out.add(
                "network-policy",
                o.key(),
                format!(
                    "{at}.ipBlock {cidr} spans {range} (pod and service networks) without \
                     excepting it; add `{range}` to `except`"
                ),
            );
        } else if range.contains(&cidr) && cidr != range && cidr.prefix_len() < *narrowest {
            out.add(
                "network-policy",
                o.key(),
                format!(
                    "{at}.ipBlock {cidr} is a wide slice of {range}, where pod and service \
                     networks live; name the subnet it is for (/{narrowest} or narrower)"
                ),
            );
        }
    }
}

/// Whether a namespaceSelector names its namespaces: by `kubernetes.io/metadata.name`
/// (a label or an `In` expression), or by this store's own id.
fn pinned_namespace(store: &StoreRef, selector: &Value) -> bool {
    const NAME: &str = "kubernetes.io/metadata.name";
    let labels = selector.get("matchLabels");
    let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
    if label(NAME).is_some() || label(domain_labels::STORE_ID) == Some(&store.id.to_string()) {
        return true;
    }
    selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|e| {
            e.get("key").and_then(Value::as_str) == Some(NAME)
                && e.get("operator").and_then(Value::as_str) == Some("In")
        })
}

fn check_quota(r: &Rendered, out: &mut Findings) {
    let quotas: Vec<&RenderedObject> = r
        .objects
        .iter()
        .filter(|o| o.gvk.kind == "ResourceQuota")
        .collect();
    let limit_ranges: Vec<&RenderedObject> = r
        .objects
        .iter()
        .filter(|o| o.gvk.kind == "LimitRange")
        .collect();
    if quotas.len() != 1 {
        out.add(
            "quota",
            "ResourceQuota",
            format!("expected exactly one ResourceQuota, found {}", quotas.len()),
        );
    }
    if limit_ranges.is_empty() {
        out.add(
            "quota",
            "LimitRange",
            "no LimitRange; containers without limits would be unbounded",
        );
    }
    if let Some(q) = quotas.first() {
        let hard = q
            .object
            .data
            .pointer("/spec/hard")
            .cloned()
            .unwrap_or(Value::Null);
        let f = resources::footprint(
            r.objects
                .iter()
                .map(|o| (o.gvk.kind.as_str(), &o.object.data)),
        );
        for problem in resources::exceeded(&f, &hard, false) {
            out.add("quota-fit", q.key(), format!("{problem} (worst case: every replica plus rolling-update surge, every Job and CronJob at once)"));
        }
    }
    // Container limits above the LimitRange maximum are rejected at admission.
    for lr in &limit_ranges {
        let limits = lr
            .object
            .data
            .pointer("/spec/limits")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(max) = limits
            .iter()
            .find(|l| l.get("type").and_then(Value::as_str) == Some("Container"))
            .and_then(|l| l.get("max"))
        else {
            continue;
        };
        for o in &r.objects {
            let Some((spec, _)) = pod_template(o) else {
                continue;
            };
            for field in ["containers", "initContainers"] {
                for c in containers(spec, field) {
                    for res in ["cpu", "memory"] {
                        let have = c
                            .pointer(&format!("/resources/limits/{res}"))
                            .and_then(Value::as_str)
                            .and_then(resources::parse_quantity);
                        let cap = max
                            .get(res)
                            .and_then(Value::as_str)
                            .and_then(resources::parse_quantity);
                        if let (Some(have), Some(cap)) = (have, cap)
                            && have > cap * (1.0 + 1e-9)
                        {
                            let cname = c.get("name").and_then(Value::as_str).unwrap_or("?");
                            out.add("quota-fit", o.key(), format!("container {cname} limits {res} above the LimitRange maximum; admission would reject it"));
                        }
                    }
                }
            }
        }
    }
}

/// Every object but the Secrets searched for every secret value (8 characters or more):
/// metadata and body, keys and values. Runs on every render that is applied, so the
/// objects' text is gathered once into one buffer (a NUL after each string: no secret
/// alphabet has it, so no match spans two strings or objects) and each value is looked
/// for in it with one SIMD substring search.
fn check_secret_leaks(secrets: &StoreSecrets, r: &Rendered, out: &mut Findings) {
    use base64::Engine as _;
    // Each value as written and base64-encoded (`| b64encode` into a ConfigMap's
    // binaryData or an annotation is the same leak).
    let watched: Vec<(&str, Vec<u8>)> = secrets
        .iter()
        .filter(|(_, value)| value.len() >= 8)
        .flat_map(|(name, value)| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(value);
            [
                (name, value.as_bytes().to_vec()),
                (name, encoded.into_bytes()),
            ]
        })
        .collect();
    if watched.is_empty() {
        return;
    }
    let objects: Vec<&RenderedObject> = r.objects.iter().collect();
    let mut text = Vec::with_capacity(64 * 1024);
    // Where each object's text ends, in order. A Secret's data is where secrets belong;
    // its metadata (labels, annotations: printed, listed, logged) is not.
    let mut ends = Vec::with_capacity(objects.len());
    for o in &objects {
        let _ = serde_json::to_writer(&mut text, &o.object.metadata);
        text.push(0);
        if o.gvk.kind != "Secret" {
            append_text(&o.object.data, &mut text);
        }
        ends.push(text.len());
    }
    // (object, secret), in the objects' order, then the secrets'.
    let mut found = BTreeSet::new();
    for (secret, (_, value)) in watched.iter().enumerate() {
        for at in memchr::memmem::find_iter(&text, value) {
            found.insert((ends.partition_point(|&end| end <= at), secret));
        }
    }
    // A value found both as written and encoded in one object is one finding.
    let found: BTreeSet<(usize, &str)> = found
        .into_iter()
        .map(|(object, secret)| (object, watched[secret].0))
        .collect();
    for (object, secret) in found {
        out.add(
            "secret-leak",
            objects[object].key(),
            format!("contains the value of secret `{secret}`; reference it from a Secret instead"),
        );
    }
}

/// Appends every key, string and number in `value` to `buf`, each followed by a NUL.
fn append_text(value: &Value, buf: &mut Vec<u8>) {
    match value {
        Value::String(s) => {
            buf.extend_from_slice(s.as_bytes());
            buf.push(0);
        }
        Value::Number(n) => {
            buf.extend_from_slice(n.to_string().as_bytes());
            buf.push(0);
        }
        Value::Array(items) => items.iter().for_each(|v| append_text(v, buf)),
        Value::Object(map) => {
            for (k, v) in map {
                buf.extend_from_slice(k.as_bytes());
                buf.push(0);
                append_text(v, buf);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

fn check_references(bp: &Blueprint, r: &Rendered, out: &mut Findings) {
    let keys: BTreeSet<String> = r.objects.iter().map(RenderedObject::key).collect();
    for note in bp.readiness_notes() {
        if !keys.contains(&note.object) {
            out.add(
                "references",
                "blueprint.yaml",
                format!(
                    "readiness note names `{}`, which the blueprint does not render",
                    note.object
                ),
            );
        }
    }
    let mut names = BTreeSet::new();
    for o in &r.objects {
        if let Some((spec, _)) = pod_template(o) {
            for field in ["containers", "initContainers"] {
                for c in containers(spec, field) {
                    if let Some(n) = c.get("name").and_then(Value::as_str) {
                        names.insert(n.to_owned());
                    }
                }
            }
        }
    }
    for e in &bp.pod_security().exceptions {
        if !names.contains(&e.container) {
            out.add("references", "blueprint.yaml", format!("pod_security exception names container `{}`, which the blueprint does not render", e.container));
        }
    }
}
