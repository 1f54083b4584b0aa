//! Abuse cases `api.rs` and the blueprint tests leave open: ids of another tenant's
//! store guessed or re-spelled, list cursors pointing into another tenant's stores, a
//! spoofed `X-Forwarded-For` and bogus tokens against the per-IP limit, oversized bodies
//! on every body-taking route, hostile parameters through the API, and the
//! NetworkPolicies of two stores really applied to testenv: default-deny, and a
//! database that only its own store's application pods can reach.

use crate::support::cluster::{kube_client, unique_name};
use crate::support::db::each_backend;
use crate::support::server::TestServer;
use futures::FutureExt as _;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use storeplane::apply::{Applier, ApplySettings, Desired};
use storeplane::blueprint::{Catalog, RenderInput, StoreRef, StoreSecrets};
use storeplane::config::{ApiSettings, PlatformSettings};
use storeplane::domain::labels;
use uuid::Uuid;

fn shop(name: &str) -> Value {
    json!({"name": name, "engine": "woocommerce"})
}

async fn create(ts: &TestServer, token: &str, body: Value) -> Value {
    let r = ts.post("/api/stores", Some(token), body.clone()).await;
    assert_eq!(r.status, 201, "create {body}: {}", r.text);
    r.json()
}

/// The ways a client could spell (or guess near) a store id.
fn id_variants(id: Uuid) -> Vec<String> {
    let mut out = vec![
        id.to_string(),
        id.to_string().to_uppercase(),
        id.simple().to_string(),
        id.braced().to_string(),
        id.urn().to_string(),
        format!("{id}%00"),
        format!("{id}/"),
        format!("{id}.json"),
        format!("%7B{id}%7D"),
    ];
    // UUIDv7 ids sort by time: the neighbours of a known id are the natural guesses.
    let n = id.as_u128();
    for delta in [1u128, 2, 255, 1 << 64] {
        out.push(Uuid::from_u128(n.wrapping_add(delta)).to_string());
        out.push(Uuid::from_u128(n.wrapping_sub(delta)).to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessed_or_respelled_ids_of_another_tenants_store_reveal_nothing() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        let a = ts.member("victim", 10).await;
        let b = ts.member("prober", 10).await;
        let theirs = create(&ts, &a.token, shop("secret-shop")).await;
        let id: Uuid = theirs["id"].as_str().unwrap().parse().unwrap();
        // B's own store is created right after: its id is A's nearest neighbour.
        let own = create(&ts, &b.token, shop("own-shop")).await;
        let own_id: Uuid = own["id"].as_str().unwrap().parse().unwrap();
        let events_before = ts
            .get(&format!("/api/stores/{id}/events"), Some(&a.token))
            .await
            .json()["items"]
            .as_array()
            .unwrap()
            .len();

        let tb = Some(b.token.as_str());
        let routes = [
            (Method::GET, ""),
            (Method::DELETE, ""),
            (Method::POST, "/retry"),
            (Method::GET, "/events"),
            (Method::GET, "/events?after=0&limit=1000"),
            (Method::GET, "/events/stream"),
        ];
        for variant in id_variants(id) {
            for (method, suffix) in &routes {
                let r = ts
                    .send(
                        ts.request(
                            method.clone(),
                            &format!("/api/stores/{variant}{suffix}"),
                            tb,
                        )
                        .header("last-event-id", "0"),
                    )
                    .await;
                assert!(
                    r.status == 404 || r.status == 400,
                    "{method} /api/stores/{variant}{suffix} by another tenant: {} {}",
                    r.status,
                    r.text
                );
                r.problem(r.status);
                assert!(
                    !r.text.contains("secret-shop")
                        && !r.text.contains(theirs["namespace"].as_str().unwrap()),
                    "{method} {variant}{suffix} leaks: {}",
                    r.text
                );
            }
        }

        // A cursor or a filter never reaches past the caller's own stores.
        for query in [
            format!("cursor={}", Uuid::max()),
            format!("cursor={}", Uuid::from_u128(id.as_u128() + 1)),
            format!("cursor={}&status=provisioning&limit=100", Uuid::max()),
        ] {
            let list = ts.get(&format!("/api/stores?{query}"), tb).await;
            assert_eq!(list.status, 200, "{query}: {}", list.text);
            let ids: Vec<String> = list.json()["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_owned())
                .collect();
            assert!(
                ids.iter().all(|i| *i == own_id.to_string()),
                "{query}: {ids:?}"
            );
            assert!(!list.text.contains("secret-shop"), "{}", list.text);
        }
        for query in [
            "all=true",
            "all=1",
            "all=TRUE",
            "all=true&all=false",
            "all=false&all=true",
        ] {
            let r = ts.get(&format!("/api/stores?{query}"), tb).await;
            assert!(
                !r.text.contains("secret-shop"),
                "{query} by a member: {} {}",
                r.status,
                r.text
            );
        }

        // Nothing B sent changed A's store or its event log.
        let after = ts
            .get(&format!("/api/stores/{id}"), Some(&a.token))
            .await
            .json();
        assert_eq!(after["status"], "provisioning", "{after}");
        assert_eq!(after["updated_at"], theirs["updated_at"], "{after}");
        let events_after = ts
            .get(&format!("/api/stores/{id}/events"), Some(&a.token))
            .await
            .json()["items"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(events_before, events_after);
        ts.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarded_headers_and_bogus_tokens_do_not_escape_the_per_ip_limit() {
    each_backend(|db| async move {
        // Not behind a trusted proxy (the default): the peer address is the key, and
        // whatever a client writes into forwarding headers is ignored.
        let ts = TestServer::start(
            &db,
            ApiSettings {
                rate_limit: "5/1m".parse().unwrap(),
                ..TestServer::settings()
            },
        )
        .await;
        let alice = ts.member("alice", 10).await; // the sign-in is the 1st request
        let mut statuses = Vec::new();
        for i in 0..6 {
            let r = ts
                .send(
                    ts.request(Method::GET, "/api/stores", Some(&alice.token))
                        .header("x-forwarded-for", format!("203.0.113.{i}"))
                        .header("x-real-ip", format!("198.51.100.{i}"))
                        .header("forwarded", format!("for=192.0.2.{i}"))
                        .header("true-client-ip", format!("192.0.2.{}", 100 + i)),
                )
                .await;
            if r.status == 429 {
                r.problem(429);
            }
            statuses.push(r.status);
        }
        assert_eq!(
            statuses,
            [200, 200, 200, 200, 429, 429],
            "one key: the peer"
        );
        ts.stop().await;

        // Behind a trusted proxy: the proxy appends the address it saw; what the
        // client wrote before it is not the key.
        let ts = TestServer::start(
            &db,
            ApiSettings {
                rate_limit: "5/1m".parse().unwrap(),
                trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
                ..TestServer::settings()
            },
        )
        .await;
        let alice = ts.member("alice-proxied", 10).await; // not through the proxy
        let mut statuses = Vec::new();
        for i in 0..6 {
            let r = ts
                .send(
                    ts.request(Method::GET, "/api/stores", Some(&alice.token))
                        .header("x-forwarded-for", format!("203.0.113.{i}, 192.0.2.50")),
                )
                .await;
            statuses.push(r.status);
        }
        assert_eq!(
            statuses,
            [200, 200, 200, 200, 200, 429],
            "one key: the address the proxy saw"
        );
        ts.stop().await;

        // Guessing tokens costs quota like any request: no free 401s.
        let ts = TestServer::start(
            &db,
            ApiSettings {
                rate_limit: "3/1m".parse().unwrap(),
                ..TestServer::settings()
            },
        )
        .await;
        let mut statuses = Vec::new();
        for i in 0..5 {
            let guess = format!("sp_{:043}", i);
            let r = ts
                .get(&format!("/api/stores/{}", Uuid::now_v7()), Some(&guess))
                .await;
            r.problem(r.status);
            statuses.push(r.status);
        }
        assert_eq!(statuses, [401, 401, 401, 429, 429]);
        ts.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_a_413_problem_on_every_route_that_takes_one() {
    each_backend(|db| async move {
        // Bodies a few times the limit: refused, and small enough that the client has
        // finished sending before the server answers (a bigger one can see its
        // connection reset mid-upload, which proves nothing).
        let ts = TestServer::start(
            &db,
            ApiSettings {
                max_body_bytes: 2048,
                ..TestServer::settings()
            },
        )
        .await;
        let alice = ts.member("alice", 10).await;
        let big = "x".repeat(8 * 1024);
        let huge = "x".repeat(12 * 1024);
        let login = json!({"email": alice.user.email, "password": big});
        let r = ts.post("/api/auth/login", None, login.clone()).await;
        let p = r.problem(413);
        assert!(
            p["type"].as_str().unwrap().ends_with("/payload-too-large"),
            "{p}"
        );
        // Chunked, without a Content-Length: refused while reading.
        let chunks =
            futures::stream::iter((0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
        ts.send(
            ts.request(Method::POST, "/api/auth/login", None)
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(chunks)),
        )
        .await
        .problem(413);

        let store = json!({"name": "big", "engine": "woocommerce", "params": {"title": huge}});
        // Signed in or not, a huge body is refused with a problem, never a 5xx.
        for token in [Some(alice.token.as_str()), None, Some("sp_bogus")] {
            let r = ts.post("/api/stores", token, store.clone()).await;
            assert!(
                r.status == 413 || r.status == 401,
                "{token:?}: {} {}",
                r.status,
                r.text
            );
            r.problem(r.status);
        }
        // A body on a route that takes none is still bounded.
        let created = create(&ts, &alice.token, shop("small")).await;
        let r = ts
            .send(
                ts.request(
                    Method::POST,
                    &format!("/api/stores/{}/retry", created["id"].as_str().unwrap()),
                    Some(&alice.token),
                )
                .header("content-type", "application/json")
                .body(huge.clone()),
            )
            .await;
        assert!(
            r.status == 413 || r.status == 409,
            "{} {}",
            r.status,
            r.text
        );
        r.problem(r.status);
        // Nothing was created by the refused requests.
        let list = ts.get("/api/stores", Some(&alice.token)).await.json();
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
        let r = ts
            .send(
                ts.request(Method::POST, "/api/auth/logout", Some(&alice.token))
                    .body(huge.clone()),
            )
            .await;
        assert!(
            r.status == 413 || r.status == 204,
            "{} {}",
            r.status,
            r.text
        );
        if r.status == 413 {
            r.problem(413);
        }
        ts.stop().await;
    })
    .await;
}

/// A value built to break YAML, templates, shells and logs.
const HOSTILE_TITLE: &str = "Shop\"\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n# {{ 7*7 }} {% raw %} ${HOME} $(id) `id` '; DROP TABLE stores; -- <script>alert(1)</script>\u{2028}日本 🚀";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_parameters_through_the_api_are_refused_or_kept_verbatim() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        let alice = ts.member("alice", 10).await;
        let t = Some(alice.token.as_str());

        // Free text is kept byte for byte (the blueprint tests prove it renders inertly).
        let store = create(
            &ts,
            &alice.token,
            json!({"name": "title", "engine": "woocommerce", "params": {"title": HOSTILE_TITLE}}),
        )
        .await;
        let got = ts
            .get(&format!("/api/stores/{}", store["id"].as_str().unwrap()), t)
            .await
            .json();
        assert_eq!(got["params"]["title"], HOSTILE_TITLE);
        // A NUL character is valid JSON and passes the schema, but PostgreSQL's jsonb
        // cannot hold it: the same clear 422 on both backends, never a 500.
        let r = ts
            .post(
                "/api/stores",
                t,
                json!({"name": "nul", "engine": "woocommerce", "params": {"title": "a\u{0}b"}}),
            )
            .await;
        r.problem(422);
        assert_eq!(r.fields(), ["params/title"], "{}", r.text);
        for body in [
            json!({"name": "nul\u{0}", "engine": "woocommerce"}),
            json!({"name": "nul", "engine": "woo\u{0}commerce"}),
        ] {
            ts.post("/api/stores", t, body).await.problem(422);
        }
        let r = ts
            .post(
                "/api/auth/login",
                None,
                json!({"email": "alice\u{0}@example.test", "password": "x\u{0}y"}),
            )
            .await;
        assert!(r.status < 500, "{} {}", r.status, r.text);
        r.problem(r.status);

        // Constrained fields refuse it, naming the parameter.
        for (field, params) in [
            ("params/domain", json!({"domain": HOSTILE_TITLE})),
            (
                "params/domain",
                json!({"domain": "kubernetes.default.svc\n"}),
            ),
            ("params/admin_user", json!({"admin_user": "admin\"; DROP"})),
            (
                "params/admin_email",
                json!({"admin_email": "a@b.c\nBcc: x@y.z"}),
            ),
            (
                "params/images/wordpress",
                json!({"images": {"wordpress": "evil.example/x:1 --privileged"}}),
            ),
            (
                "params/images/mysql",
                json!({"images": {"mysql": "../../etc/passwd"}}),
            ),
            (
                "params/storage/database",
                json!({"storage": {"database": "1Ei"}}),
            ),
            ("params/plan", json!({"plan": {"$ne": "small"}})),
        ] {
            let r = ts
                .post(
                    "/api/stores",
                    t,
                    json!({"name": "hostile", "engine": "woocommerce", "params": params}),
                )
                .await;
            r.problem(422);
            assert!(r.fields().iter().any(|f| f == field), "{field}: {}", r.text);
        }
        // Prototype-pollution style keys are unknown parameters, not merged anywhere.
        for key in ["__proto__", "constructor", "$where"] {
            let mut params = serde_json::Map::new();
            params.insert(key.into(), json!({"admin": true}));
            let r = ts
                .post(
                    "/api/stores",
                    t,
                    json!({"name": "proto", "engine": "woocommerce", "params": params}),
                )
                .await;
            r.problem(422);
        }
        let list = ts.get("/api/stores", t).await.json();
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["title"], "{list}");
        ts.stop().await;
    })
    .await;
}

/// Server-side apply sends JSON as `application/apply-patch+yaml`, and YAML reads
/// U+0085, U+2028 and U+2029 as line breaks even inside quoted strings (folding the
/// spaces around them away). Apply escapes them; this proves values with them arrive in
/// the cluster byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_separators_survive_server_side_apply() {
    let client = kube_client().await;
    let applier = Applier::new(
        client.clone(),
        ApplySettings {
            concurrency: 2,
            phase_timeout: Duration::from_secs(60),
            teardown_timeout: Duration::from_secs(120),
        },
    );
    let ns = unique_name("it-ls");
    let id = unique_name("id");
    let values = ["a \u{2028} b", "a \u{2029} b", "a \u{85} b", "x\u{2028}"];
    let data: BTreeMap<String, String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("v{i}"), (*v).to_owned()))
        .collect();
    let l = json!({ labels::STORE_ID: id, labels::MANAGED_BY: "storeplane" });
    let desired = |v: Value| Desired {
        phase: storeplane::domain::Phase::Foundation,
        gvk: kube::api::GroupVersionKind::gvk("", "v1", v["kind"].as_str().expect("kind")),
        object: serde_json::from_value(v).expect("object"),
    };
    let objects = vec![
        desired(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": l}}),
        ),
        desired(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "values", "namespace": ns, "labels": l}, "data": data})),
    ];
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let applied = applier.apply_store(&ns, &id, &objects, &tx).await;
    let got = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns)
        .get("values")
        .await;
    let _ = applier.teardown(&ns).await;
    applied.expect("apply");
    assert_eq!(got.expect("ConfigMap").data.unwrap_or_default(), data);
}

// ------------------------------------------------------------------ NetworkPolicies

/// Whether `sel` selects an object with `labels` (matchLabels and matchExpressions).
fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("unknown selector operator {other}"),
        }
    });
    by_labels && by_expressions
}

/// A policy's podSelector; absent is the empty selector (every pod).
fn pod_selector(p: &NetworkPolicy) -> LabelSelector {
    p.spec
        .as_ref()
        .and_then(|s| s.pod_selector.clone())
        .unwrap_or_default()
}

fn is_empty_selector(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// A pod as a NetworkPolicy sees it.
#[derive(Debug, Clone)]
struct Endpoint {
    name: String,
    namespace: String,
    namespace_labels: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

fn component(e: &Endpoint) -> &str {
    e.labels
        .get(labels::COMPONENT)
        .map(String::as_str)
        .unwrap_or("")
}

/// Whether `peer` (of a policy in `policy_ns`) matches `other`. An ipBlock matches any
/// pod (conservative: pod IPs are addresses too).
fn peer_matches(peer: &NetworkPolicyPeer, policy_ns: &str, other: &Endpoint) -> bool {
    if peer.ip_block.is_some() {
        return true;
    }
    let namespace_ok = match &peer.namespace_selector {
        None => other.namespace == policy_ns,
        Some(ns) => selects(ns, &other.namespace_labels),
    };
    let pod_ok = peer
        .pod_selector
        .as_ref()
        .is_none_or(|p| selects(p, &other.labels));
    namespace_ok && pod_ok
}

fn port_matches(ports: &Option<Vec<NetworkPolicyPort>>, port: i32) -> bool {
    ports.as_ref().is_none_or(|ps| {
        ps.is_empty()
            || ps.iter().any(|p| {
                p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                    && match &p.port {
                        None => true,
                        Some(IntOrString::Int(n)) => {
                            *n == port || p.end_port.is_some_and(|end| (*n..=end).contains(&port))
                        }
                        Some(IntOrString::String(name)) => {
                            panic!("named port {name}: resolve it in this test")
                        }
                    }
            })
    })
}

fn has_type(p: &NetworkPolicy, t: &str) -> bool {
    let spec = p.spec.as_ref().unwrap();
    match &spec.policy_types {
        Some(types) => types.iter().any(|x| x == t),
        // Kubernetes' default: Ingress, plus Egress when egress rules exist.
        None => t == "Ingress" || (t == "Egress" && spec.egress.is_some()),
    }
}

/// Whether the policies of `target`'s namespace admit TCP `port` from `from`.
fn ingress_allowed(
    policies: &[NetworkPolicy],
    target: &Endpoint,
    from: &Endpoint,
    port: i32,
) -> bool {
    let applying: Vec<&NetworkPolicy> = policies
        .iter()
        .filter(|p| has_type(p, "Ingress") && selects(&pod_selector(p), &target.labels))
        .collect();
    if applying.is_empty() {
        return true; // not isolated
    }
    applying.iter().any(|p| {
        p.spec
            .as_ref()
            .unwrap()
            .ingress
            .iter()
            .flatten()
            .any(|rule| {
                port_matches(&rule.ports, port)
                    && rule.from.as_ref().is_none_or(|peers| {
                        peers.is_empty()
                            || peers
                                .iter()
                                .any(|peer| peer_matches(peer, &target.namespace, from))
                    })
            })
    })
}

/// Whether the policies of `from`'s namespace let it send TCP `port` to `to`.
fn egress_allowed(policies: &[NetworkPolicy], from: &Endpoint, to: &Endpoint, port: i32) -> bool {
    let applying: Vec<&NetworkPolicy> = policies
        .iter()
        .filter(|p| has_type(p, "Egress") && selects(&pod_selector(p), &from.labels))
        .collect();
    if applying.is_empty() {
        return true;
    }
    applying.iter().any(|p| {
        p.spec
            .as_ref()
            .unwrap()
            .egress
            .iter()
            .flatten()
            .any(|rule| {
                port_matches(&rule.ports, port)
                    && rule.to.as_ref().is_none_or(|peers| {
                        peers.is_empty()
                            || peers
                                .iter()
                                .any(|peer| peer_matches(peer, &from.namespace, to))
                    })
            })
    })
}

/// A store rendered from the built-in WooCommerce blueprint and applied to the cluster.
struct AppliedStore {
    id: String,
    namespace: String,
    objects: usize,
}

async fn apply_store(
    applier: &Applier,
    catalog: &Catalog,
    name: &str,
    params: Value,
) -> AppliedStore {
    let bp = catalog.get("woocommerce").expect("woocommerce");
    let store = StoreRef::new(name, Uuid::now_v7());
    let mut secrets = StoreSecrets::new();
    secrets.complete(bp.secret_specs());
    let rendered = bp
        .render(&RenderInput {
            store: &store,
            params: &params,
            secrets: &secrets,
            platform: &PlatformSettings::default(),
        })
        .expect("render");
    let desired: Vec<Desired> = rendered.objects.into_iter().map(Desired::from).collect();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    applier
        .apply_store(&store.namespace, &store.id.to_string(), &desired, &tx)
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
    AppliedStore {
        id: store.id.to_string(),
        namespace: store.namespace,
        objects: desired.len(),
    }
}

async fn endpoints(client: &kube::Client, ns: &str) -> Vec<Endpoint> {
    let namespace_labels = Api::<Namespace>::all(client.clone())
        .get(ns)
        .await
        .expect("namespace")
        .metadata
        .labels
        .unwrap_or_default();
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items
        .into_iter()
        .map(|p| Endpoint {
            name: p.metadata.name.unwrap_or_default(),
            namespace: ns.to_owned(),
            namespace_labels: namespace_labels.clone(),
            labels: p.metadata.labels.unwrap_or_default(),
        })
        .collect()
}

async fn policies(client: &kube::Client, ns: &str) -> Vec<NetworkPolicy> {
    Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("network policies")
        .items
}

const APP_COMPONENTS: [&str; 3] = ["web", "installer", "cron"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_stores_are_closed_by_default_and_their_databases_admit_only_their_own_app() {
    let client = kube_client().await;
    let applier = Applier::new(
        client.clone(),
        ApplySettings {
            concurrency: 8,
            phase_timeout: Duration::from_secs(120),
            teardown_timeout: Duration::from_secs(180),
        },
    );
    let catalog = Catalog::builtin().expect("built-in blueprints");
    let (name_a, name_b) = (unique_name("np-a"), unique_name("np-b"));
    let (a, b) = tokio::join!(
        apply_store(&applier, &catalog, &name_a, json!({"title": HOSTILE_TITLE})),
        apply_store(&applier, &catalog, &name_b, json!({})),
    );
    let checks = AssertUnwindSafe(async {
        for store in [&a, &b] {
            let ns = &store.namespace;
            let pols = policies(&client, ns).await;
            // Default deny: empty podSelector, both types, not one rule.
            let deny: Vec<&NetworkPolicy> = pols
                .iter()
                .filter(|p| {
                    let s = p.spec.as_ref().unwrap();
                    is_empty_selector(&pod_selector(p))
                        && has_type(p, "Ingress")
                        && has_type(p, "Egress")
                        && s.ingress.as_ref().is_none_or(|r| r.is_empty())
                        && s.egress.as_ref().is_none_or(|r| r.is_empty())
                })
                .collect();
            assert_eq!(deny.len(), 1, "{ns}: one default-deny policy in {pols:#?}");
            // No policy opens ingress to every pod, and none admits from every namespace.
            for p in &pols {
                let s = p.spec.as_ref().unwrap();
                for rule in s.ingress.iter().flatten() {
                    let peers = rule
                        .from
                        .as_ref()
                        .expect("ingress rules name their sources");
                    assert!(!peers.is_empty(), "{p:?}");
                    for peer in peers {
                        assert!(peer.ip_block.is_none(), "ingress from an ipBlock: {p:?}");
                        if let Some(nsel) = &peer.namespace_selector {
                            assert!(
                                !is_empty_selector(nsel),
                                "ingress from every namespace: {p:?}"
                            );
                        }
                    }
                }
            }
        }
        // Every object the blueprint rendered is there and nothing more: the hostile
        // title of store a added no object.
        let mut kinds = Vec::new();
        for store in [&a, &b] {
            let inventory = applier
                .inventory(&store.namespace, &store.id)
                .await
                .expect("inventory");
            assert_eq!(inventory.objects.len(), store.objects, "{inventory:?}");
            kinds.push(
                inventory
                    .objects
                    .keys()
                    .map(|k| k.to_string())
                    .filter(|k| !k.starts_with("Namespace/"))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(kinds[0], kinds[1]);

        let (pods_a, pods_b) = (
            endpoints(&client, &a.namespace).await,
            endpoints(&client, &b.namespace).await,
        );
        let (pol_a, pol_b) = (
            policies(&client, &a.namespace).await,
            policies(&client, &b.namespace).await,
        );
        let db_of = |pods: &[Endpoint]| -> Endpoint {
            pods.iter()
                .find(|p| component(p) == "database")
                .unwrap_or_else(|| panic!("no database pod in {pods:#?}"))
                .clone()
        };
        let web_of = |pods: &[Endpoint]| -> Endpoint {
            pods.iter()
                .find(|p| component(p) == "web")
                .unwrap_or_else(|| panic!("no web pod in {pods:#?}"))
                .clone()
        };
        let (db_a, db_b) = (db_of(&pods_a), db_of(&pods_b));
        let (web_a, web_b) = (web_of(&pods_a), web_of(&pods_b));

        // A's database: reachable on 3306 from A's application pods only.
        for from in pods_a.iter().chain(pods_b.iter()) {
            let expected =
                from.namespace == a.namespace && APP_COMPONENTS.contains(&component(from));
            assert_eq!(
                ingress_allowed(&pol_a, &db_a, from, 3306),
                expected,
                "ingress to {}/{} from {}/{} ({})",
                db_a.namespace,
                db_a.name,
                from.namespace,
                from.name,
                component(from)
            );
        }
        // A pod of another namespace wearing A's web labels exactly is still refused.
        let impostor = Endpoint {
            name: "impostor".into(),
            namespace: b.namespace.clone(),
            namespace_labels: web_b.namespace_labels.clone(),
            labels: web_a.labels.clone(),
        };
        assert!(!ingress_allowed(&pol_a, &db_a, &impostor, 3306));
        // The ingress controller's pods reach the web pods' port, and nothing else; any
        // other pod of the controller's namespace reaches nothing.
        let platform = PlatformSettings::default();
        let controller = Endpoint {
            name: "controller".into(),
            namespace: platform.ingress_namespace.clone(),
            namespace_labels: BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                platform.ingress_namespace.clone(),
            )]),
            labels: platform.ingress_pod_labels.0.clone(),
        };
        let mut webhook = controller.clone();
        webhook.name = "admission-webhook".into();
        webhook.labels.insert(
            "app.kubernetes.io/component".into(),
            "admission-webhook".into(),
        );
        assert!(ingress_allowed(&pol_a, &web_a, &controller, 8080));
        assert!(!ingress_allowed(&pol_a, &web_a, &webhook, 8080));
        assert!(!ingress_allowed(&pol_a, &web_a, &controller, 3306));
        assert!(!ingress_allowed(&pol_a, &db_a, &controller, 3306));
        // Nothing reaches the database on any other port, not even its own web pod.
        for port in [22, 80, 443, 8080, 33060] {
            assert!(!ingress_allowed(&pol_a, &db_a, &web_a, port), "port {port}");
        }
        // Egress: B's web pod may talk to its own database, never to A's.
        assert!(egress_allowed(&pol_b, &web_b, &db_b, 3306));
        assert!(!egress_allowed(&pol_b, &web_b, &db_a, 3306));
        assert!(ingress_allowed(&pol_b, &db_b, &web_b, 3306));
        assert!(!ingress_allowed(&pol_b, &db_b, &web_a, 3306));
        // The databases themselves send nothing but DNS.
        for port in [3306, 443, 80] {
            assert!(
                !egress_allowed(&pol_a, &db_a, &web_a, port),
                "database egress {port}"
            );
        }

        // The hostile title arrived as one environment value, byte for byte.
        let jobs: Api<k8s_openapi::api::batch::v1::Job> =
            Api::namespaced(client.clone(), &a.namespace);
        let install = jobs.get("wp-install").await.expect("Job/wp-install");
        let env = install.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap_or_default();
        let title = env
            .iter()
            .find(|e| e.name == "WP_TITLE")
            .and_then(|e| e.value.clone());
        assert_eq!(title.as_deref(), Some(HOSTILE_TITLE));
    })
    .catch_unwind()
    .await;
    let _ = tokio::join!(
        applier.teardown(&a.namespace),
        applier.teardown(&b.namespace)
    );
    if let Err(panic) = checks {
        std::panic::resume_unwind(panic);
    }
}
