//! The Helm chart in `bench/chart/woocommerce` — the render benchmark's baseline —
//! against the WooCommerce blueprint: for the same inputs (store name and id, parameters,
//! secrets, platform settings) `helm template` must produce exactly the objects
//! Storeplane's renderer produces, or the benchmark compares different work.
//!
//! helm is built from its pinned wrapper module by `bench/helm/build.sh` on first use (a
//! few minutes on a cold Go cache, then cached outside the repository); a failed build
//! fails these tests. Both renders are parsed into JSON values, keyed by
//! kind/namespace/name, and compared whole; a difference is reported as the object and
//! the JSON path with both values.

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use storeplane::blueprint::{Catalog, RenderInput, StoreRef, StoreSecrets};
use storeplane::config::PlatformSettings;

/// The store id the benchmarks use too (bench/render-compare.sh).
const STORE_ID: &str = "5f0c8c1e-7d3a-4b2e-9f1a-2c6d8e4b7a90";
const STORE_NAME: &str = "bench";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("bench/chart/woocommerce")
}

/// The helm binary, built by bench/helm/build.sh when it is not cached yet.
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let script = repo().join("bench/helm/build.sh");
        // Progress goes to stderr, which the test harness does not capture.
        let status = Command::new(&script)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            status.success(),
            "{} failed ({status}); it needs Go >= 1.26 and the Go module proxy, see its output above",
            script.display()
        );
        let out = Command::new(&script)
            .arg("--print-bin")
            .output()
            .expect("build.sh --print-bin runs");
        assert!(out.status.success(), "build.sh --print-bin failed");
        let bin = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        assert!(
            bin.is_file(),
            "build.sh succeeded but {} is missing",
            bin.display()
        );
        bin
    })
}

/// The fixture credentials both renders get.
fn fixture_secrets() -> BTreeMap<String, String> {
    let path = repo().join("bench/helm/secrets.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One render's inputs.
struct Inputs {
    name: &'static str,
    params: Value,
    platform: PlatformSettings,
}

impl Inputs {
    fn new(params: Value) -> Inputs {
        Inputs {
            name: STORE_NAME,
            params,
            platform: PlatformSettings::default(),
        }
    }

    fn store(&self) -> StoreRef {
        StoreRef::new(self.name, STORE_ID.parse().unwrap())
    }
}

/// An object's identity, the order objects are compared in.
fn key(o: &Value) -> String {
    let s = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or("");
    format!(
        "{} {}/{}",
        s("/kind"),
        s("/metadata/namespace"),
        s("/metadata/name")
    )
}

fn by_key(objects: Vec<Value>) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for o in objects {
        let k = key(&o);
        assert!(map.insert(k.clone(), o).is_none(), "{k} rendered twice");
    }
    map
}

/// The blueprint's objects, as Storeplane applies them.
fn render_blueprint(inputs: &Inputs) -> BTreeMap<String, Value> {
    let catalog = Catalog::builtin().expect("built-in blueprints load");
    let bp = catalog.get("woocommerce").expect("woocommerce is built in");
    let secrets: StoreSecrets = fixture_secrets().into_iter().collect();
    let rendered = bp
        .render(&RenderInput {
            store: &inputs.store(),
            params: &inputs.params,
            secrets: &secrets,
            platform: &inputs.platform,
        })
        .unwrap_or_else(|e| panic!("the blueprint does not render: {e}"));
    by_key(
        rendered
            .objects
            .iter()
            .map(|o| serde_json::to_value(&o.object).unwrap())
            .collect(),
    )
}

/// The chart's values for `inputs`: the parameters at the top level, as the blueprint
/// names them, plus the store id, the platform settings and the secrets.
fn chart_values(inputs: &Inputs) -> Value {
    let p = &inputs.platform;
    // Helm merges a values map into the chart's default one; a key of the default the
    // inputs lack is removed by setting it to null.
    let mut pod_labels = json!(p.ingress_pod_labels.0);
    for key in PlatformSettings::default().ingress_pod_labels.0.keys() {
        if !p.ingress_pod_labels.0.contains_key(key) {
            pod_labels[key] = Value::Null;
        }
    }
    let mut values = json!({
        "store": {"id": STORE_ID},
        "platform": {
            "base_domain": p.base_domain,
            "ingress_class": p.ingress_class,
            "ingress_namespace": p.ingress_namespace,
            "ingress_pod_labels": pod_labels,
            "tls_issuer": p.tls_issuer.clone().unwrap_or_default(),
            "storage_class": p.storage_class.clone().unwrap_or_default(),
        },
        "secrets": fixture_secrets(),
    });
    for (k, v) in inputs.params.as_object().expect("params are a mapping") {
        values[k] = v.clone();
    }
    values
}

/// `helm template` of the chart for `inputs`, with `extra` arguments after the values.
fn helm_template(inputs: &Inputs, namespace: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML: the values file says exactly what the test means, no --set coercion.
    let values = dir.path().join("values.json");
    std::fs::write(&values, chart_values(inputs).to_string()).unwrap();
    Command::new(helm())
        .arg("template")
        .arg(inputs.name)
        .arg(chart_dir())
        .args(["--namespace", namespace])
        .arg("--values")
        .arg(&values)
        .args(extra)
        // No user or repository configuration may change the render.
        .env("HELM_CONFIG_HOME", dir.path().join("config"))
        .env("HELM_CACHE_HOME", dir.path().join("cache"))
        .env("HELM_DATA_HOME", dir.path().join("data"))
        .output()
        .expect("helm runs")
}

/// The chart's objects for `inputs`, rendered into the store's own namespace.
fn render_chart(inputs: &Inputs) -> BTreeMap<String, Value> {
    let out = helm_template(inputs, &inputs.store().namespace, &[]);
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("helm printed bad YAML: {e}")))
        .filter(|d| !d.is_null()) // `# Source:` comment-only documents
        .collect();
    by_key(docs)
}

/// Every difference between two values, as `path: blueprint … | helm …`.
fn diff(path: &str, left: &Value, right: &Value, out: &mut Vec<String>) {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            for (k, lv) in l {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match r.get(k) {
                    Some(rv) => diff(&p, lv, rv, out),
                    None => out.push(format!("{p}: blueprint {lv} | helm (missing)")),
                }
            }
            for (k, rv) in r {
                if !l.contains_key(k) {
                    let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(format!("{p}: blueprint (missing) | helm {rv}"));
                }
            }
        }
        (Value::Array(l), Value::Array(r)) => {
            for (i, (lv, rv)) in l.iter().zip(r).enumerate() {
                diff(&format!("{path}/{i}"), lv, rv, out);
            }
            for (i, lv) in l.iter().enumerate().skip(r.len()) {
                out.push(format!("{path}/{i}: blueprint {lv} | helm (missing)"));
            }
            for (i, rv) in r.iter().enumerate().skip(l.len()) {
                out.push(format!("{path}/{i}: blueprint (missing) | helm {rv}"));
            }
        }
        (l, r) if l != r => out.push(format!("{}: blueprint {l} | helm {r}", path_or_root(path))),
        _ => {}
    }
}

fn path_or_root(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

/// Every difference between two renders, one line each: the object, then the path.
fn compare(blueprint: &BTreeMap<String, Value>, chart: &BTreeMap<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for (k, b) in blueprint {
        match chart.get(k) {
            None => problems.push(format!("{k}: rendered by the blueprint, not by the chart")),
            Some(c) => {
                let mut d = Vec::new();
                diff("", b, c, &mut d);
                problems.extend(d.into_iter().map(|line| format!("{k}: {line}")));
            }
        }
    }
    for k in chart.keys().filter(|k| !blueprint.contains_key(*k)) {
        problems.push(format!("{k}: rendered by the chart, not by the blueprint"));
    }
    problems
}

#[track_caller]
fn assert_same_objects(inputs: &Inputs) {
    let blueprint = render_blueprint(inputs);
    let chart = render_chart(inputs);
    assert!(
        blueprint.len() >= 20,
        "the blueprint rendered only {} objects",
        blueprint.len()
    );
    let problems = compare(&blueprint, &chart);
    assert!(
        problems.is_empty(),
        "the chart and the blueprint differ for params {} ({} differences):\n{}",
        inputs.params,
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn chart_renders_the_blueprints_objects_with_default_parameters() {
    assert_same_objects(&Inputs::new(json!({})));
}

#[test]
fn chart_renders_the_blueprints_objects_for_every_plan() {
    for plan in ["small", "medium", "large"] {
        assert_same_objects(&Inputs::new(json!({ "plan": plan })));
    }
}

#[test]
fn chart_renders_the_blueprints_objects_with_custom_domain_tls_and_platform() {
    let mut inputs = Inputs::new(json!({
        "plan": "medium",
        "domain": "shop.example.com",
        // Quotes, a colon, a hash, a backslash, braces, a newline and non-ASCII: what a
        // chart that forgets to quote gets wrong.
        "title": "Joe's \"Café\": 50% off #1 \\ {{ .Values }}\nline two — ünïcödé",
        "admin_user": "owner.1@shop",
        "admin_email": "owner+shop@example.com",
        "storage": {"database": "20Gi", "content": "30Gi"},
        "images": {
            "wordpress": "registry.example.com:5000/mirror/wordpress:6.8-php8.3-apache",
            "mysql": "mysql@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "wpcli": "wordpress:cli-2.12-php8.3",
        },
    }));
    inputs.name = "joes-shop";
    inputs.platform = PlatformSettings {
        base_domain: "stores.example.net".into(),
        ingress_class: "traefik".into(),
        ingress_namespace: "traefik-system".into(),
        ingress_pod_labels: "app.kubernetes.io/name=traefik".parse().unwrap(),
        tls_issuer: Some("letsencrypt-prod".into()),
        storage_class: Some("fast-ssd".into()),
        reserved_hosts: Vec::new(),
    };
    assert_same_objects(&inputs);
    // And the custom inputs did reach the objects.
    let chart = render_chart(&inputs);
    let from = &chart["NetworkPolicy store-joes-shop-8e4b7a90/allow-ingress-controller"]["spec"]["ingress"]
        [0]["from"];
    assert_eq!(
        from,
        &json!([{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik-system"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}},
        }])
    );
    let ingress = &chart["Ingress store-joes-shop-8e4b7a90/storefront"];
    assert_eq!(ingress["spec"]["tls"][0]["hosts"][0], "shop.example.com");
    assert_eq!(
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt-prod"
    );
}

#[test]
fn the_comparison_finds_a_difference_by_object_and_path() {
    // A chart rendered with another plan must not pass for the blueprint's objects.
    let blueprint = render_blueprint(&Inputs::new(json!({ "plan": "small" })));
    let chart = render_chart(&Inputs::new(json!({ "plan": "large" })));
    let problems = compare(&blueprint, &chart);
    let ns = Inputs::new(json!({})).store().namespace;
    let want = format!(
        "ResourceQuota {ns}/store-quota: /spec/hard/limits.cpu: blueprint \"3\" | helm \"10\""
    );
    assert!(
        problems.contains(&want),
        "`{want}` not among:\n{}",
        problems.join("\n")
    );
    // And a missing object is named as such.
    let mut fewer = chart.clone();
    fewer.retain(|k, _| !k.starts_with("CronJob "));
    let problems = compare(&render_blueprint(&Inputs::new(json!({}))), &fewer);
    assert!(
        problems.contains(&format!(
            "CronJob {ns}/wp-cron: rendered by the blueprint, not by the chart"
        )),
        "{problems:?}"
    );
}

#[test]
fn chart_refuses_the_inputs_the_blueprint_refuses() {
    let inputs = Inputs::new(json!({}));
    let ns = inputs.store().namespace;
    let stderr = |o: Output| {
        assert!(!o.status.success(), "helm accepted it");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // Another namespace than the store's.
    let err = stderr(helm_template(&inputs, "default", &[]));
    assert!(err.contains(&format!("--namespace {ns}")), "{err}");
    // A plan that does not exist, a parameter the schema does not know, a missing
    // secret: values.schema.json (the blueprint's parameter schema) rejects them.
    let err = stderr(helm_template(&inputs, &ns, &["--set", "plan=huge"]));
    assert!(err.contains("plan"), "{err}");
    let err = stderr(helm_template(&inputs, &ns, &["--set", "colour=red"]));
    assert!(err.contains("colour"), "{err}");
    let err = stderr(helm_template(&inputs, &ns, &["--set", "secrets=null"]));
    assert!(err.contains("secrets"), "{err}");
    // Volumes larger than the plan's storage quota.
    let err = stderr(helm_template(
        &inputs,
        &ns,
        &[
            "--set",
            "storage.database=15Gi",
            "--set",
            "storage.content=10Gi",
        ],
    ));
    assert!(err.contains("too small"), "{err}");
}

#[test]
fn chart_values_and_schema_mirror_the_blueprint() {
    let read_yaml = |p: &str| -> Value {
        serde_yaml::from_str(&std::fs::read_to_string(repo().join(p)).unwrap()).unwrap()
    };
    let manifest = read_yaml("templates/woocommerce/blueprint.yaml");
    let values = read_yaml("bench/chart/woocommerce/values.yaml");
    let schema = read_yaml("bench/chart/woocommerce/values.schema.json");
    let chart = read_yaml("bench/chart/woocommerce/Chart.yaml");
    assert_eq!(chart["name"], manifest["name"]);
    assert_eq!(chart["version"], manifest["version"]);
    assert_eq!(values["plans"], manifest["plans"], "values.yaml `plans`");
    let params = manifest["parameters"]["properties"].as_object().unwrap();
    for (name, param) in params {
        assert_eq!(
            &schema["properties"][name], param,
            "values.schema.json `{name}` differs from the blueprint's parameter"
        );
        // values.yaml's defaults are the schema's.
        match param.get("default") {
            Some(default) => assert_eq!(&values[name], default, "default of `{name}`"),
            None => {
                for (sub, p) in param["properties"].as_object().unwrap() {
                    assert_eq!(values[name][sub], p["default"], "default of `{name}.{sub}`");
                }
            }
        }
    }
    let secret_names: Vec<&Value> = manifest["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["name"])
        .collect();
    let required: Vec<&Value> = schema["properties"]["secrets"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(
        required, secret_names,
        "values.schema.json `secrets.required`"
    );
    let fixture: Vec<String> = fixture_secrets().into_keys().collect();
    let mut names: Vec<String> = secret_names
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(fixture, names, "bench/helm/secrets.yaml holds every secret");
}
