//! The HTTP API over a real server on a free port, on SQLite and PostgreSQL: every
//! route's success and error paths, tenant isolation, limits and 429s, security
//! headers and CORS, the event stream, a database outage, and (with an orchestrator on
//! testenv) a store from request to ready to gone with no secret in any response.

use crate::support::cluster::kube_client;
use crate::support::db::{each_backend, fresh};
use crate::support::server::{PLATFORM_HOST, Resp, TestServer};
use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use storeplane::api::TOKEN_CACHE_TTL;
use storeplane::apply::{Applier, ApplySettings};
use storeplane::blueprint::{Catalog, StoreSecrets};
use storeplane::config::{ApiSettings, OrchestratorSettings, PlatformSettings};
use storeplane::db::{Backend, NewEvent, Role, UserUpdate};
use storeplane::domain::EventType;
use storeplane::metrics::Metrics;
use storeplane::reconcile::{Orchestrator, Waker};
use storeplane::vault::Vault;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn shop(name: &str) -> Value {
    json!({"name": name, "engine": "woocommerce"})
}

async fn create(ts: &TestServer, token: &str, name: &str) -> Value {
    let r = ts.post("/api/stores", Some(token), shop(name)).await;
    assert_eq!(r.status, 201, "create {name}: {}", r.text);
    r.json()
}

const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-dns-prefetch-control", "off"),
];

fn assert_security_headers(r: &Resp) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(r.header(name), Some(*value), "{name} on {r:?}");
    }
    let csp = r.header("content-security-policy").expect("CSP");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(r.header("x-request-id").is_some());
    assert!(r.header("server").is_none() && r.header("x-powered-by").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_spec_docs_metrics_and_security_headers() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        let r = ts.get("/health", None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json(), json!({"status": "ok"}));
        assert_security_headers(&r);
        assert!(r.header("strict-transport-security").is_none());
        // Over plain HTTP the page must not ask the browser to upgrade its requests.
        let csp = r.header("content-security-policy").unwrap();
        assert!(!csp.contains("upgrade-insecure-requests"), "{csp}");

        let r = ts.get("/ready", None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["checks"][0]["name"], "database");

        let r = ts.get("/api/openapi.json", None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text, storeplane::api::spec_json());

        let r = ts.get("/docs", None).await;
        assert_eq!(r.status, 200);
        assert!(r.text.contains("SwaggerUIBundle"));
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
        // Only the Swagger page is relaxed: the dashboard's page answered under
        // `/docs/…` keeps the strict policy.
        for path in ["/health", "/docs/anything", "/docs/x/index.html"] {
            let strict = ts.get(path, None).await;
            let csp = strict.header("content-security-policy").unwrap();
            assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        }

        // A client's plain request id is echoed; a hostile one is replaced.
        let r = ts
            .send(
                ts.request(Method::GET, "/health", None)
                    .header("x-request-id", "abc-123"),
            )
            .await;
        assert_eq!(r.header("x-request-id"), Some("abc-123"));
        let r = ts
            .send(
                ts.request(Method::GET, "/health", None)
                    .header("x-request-id", "a b\tforged"),
            )
            .await;
        assert_ne!(r.header("x-request-id"), Some("a b\tforged"));

        // Unknown API routes are problems; wrong methods too.
        let p = ts.get("/api/nope", None).await;
        let problem = p.problem(404);
        assert_eq!(problem["instance"], "/api/nope");
        assert_security_headers(&p);
        let r = ts.send(ts.request(Method::PUT, "/api/stores", None)).await;
        r.problem(405);

        // The dashboard (not built in tests): a page saying how to build it, for any
        // non-API path.
        let r = ts.get("/", None).await;
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        let r = ts.get("/stores/some/spa/route", None).await;
        assert_eq!(r.status, 200);

        let alice = ts.member("alice", 10).await;
        create(&ts, &alice.token, "metered").await;
        let r = ts.get("/metrics", None).await;
        assert_eq!(r.status, 200);
        assert!(
            r.text
                .contains("storeplane_stores{status=\"provisioning\"} 1"),
            "{}",
            r.text
        );
        assert!(
            r.text.contains("route=\"/api/stores\""),
            "metrics use route templates: {}",
            r.text
        );
        assert!(r.text.contains("storeplane_http_request_duration_seconds"));
        // The count is reused for a second (`/metrics` is public here): a store made
        // just after a scrape shows at the first scrape a second later. (Only checked
        // when the create and the scrape took less than that second: on a machine too
        // busy for it, the count may rightly be fresh already.)
        let since_count = std::time::Instant::now();
        create(&ts, &alice.token, "metered-too").await;
        let r = ts.get("/metrics", None).await;
        if since_count.elapsed() < Duration::from_millis(800) {
            assert!(
                r.text
                    .contains("storeplane_stores{status=\"provisioning\"} 1"),
                "{}",
                r.text
            );
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = ts.get("/metrics", None).await;
        assert!(
            r.text
                .contains("storeplane_stores{status=\"provisioning\"} 2"),
            "{}",
            r.text
        );
        ts.stop().await;

        // With --metrics-listen, /metrics moves off the API listener (which a public
        // Ingress fronts) to a listener of its own, with the probes.
        let ts = TestServer::start(
            &db,
            ApiSettings {
                metrics_listen: Some("127.0.0.1:0".into()),
                ..TestServer::settings()
            },
        )
        .await;
        let p = ts.get("/metrics", None).await.problem(404);
        assert!(
            p["detail"].as_str().unwrap().contains("--metrics-listen"),
            "{p}"
        );
        let metrics = format!(
            "http://{}",
            ts.server.metrics_addr.expect("metrics address")
        );
        let r = ts.send(ts.http.get(format!("{metrics}/metrics"))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.text.contains("storeplane_stores{"), "{}", r.text);
        assert_security_headers(&r);
        for probe in ["/health", "/ready"] {
            let r = ts.send(ts.http.get(format!("{metrics}{probe}"))).await;
            assert_eq!(r.status, 200, "{probe}: {}", r.text);
        }
        let r = ts.send(ts.http.get(format!("{metrics}/api/stores"))).await;
        r.problem(404);
        ts.stop().await;

        // HSTS only when configured.
        let ts = TestServer::start(
            &db,
            ApiSettings {
                hsts: true,
                ..TestServer::settings()
            },
        )
        .await;
        let r = ts.get("/health", None).await;
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains")
        );
        for path in ["/health", "/docs"] {
            let r = ts.get(path, None).await;
            let csp = r.header("content-security-policy").unwrap();
            assert!(
                csp.ends_with("; upgrade-insecure-requests"),
                "{path}: {csp}"
            );
        }
        ts.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blueprints_list_and_describe_their_parameters() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        // Public: no token needed, and no secret in them.
        let r = ts.get("/api/blueprints", None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_security_headers(&r);
        let list = r.json();
        let engines: Vec<&str> = list
            .as_array()
            .expect("an array")
            .iter()
            .map(|b| b["engine"].as_str().expect("engine"))
            .collect();
        assert_eq!(engines, ["medusa", "woocommerce"], "sorted by name");
        for b in list.as_array().unwrap() {
            assert_eq!(b["plans"], json!(["small", "medium", "large"]), "{b}");
            assert!(!b["version"].as_str().unwrap().is_empty());
        }

        let r = ts.get("/api/blueprints/woocommerce", None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let bp = r.json();
        assert_eq!(bp["engine"], "woocommerce");
        let schema = &bp["parameters"];
        assert_eq!(schema["type"], "object");
        assert_eq!(
            schema["additionalProperties"], false,
            "unknown parameters are refused, so the schema says so: {schema}"
        );
        assert_eq!(schema["properties"]["plan"]["default"], "small");
        assert!(
            schema["properties"]["plan"]["description"].is_string(),
            "a client builds its form from the descriptions: {schema}"
        );
        assert!(!r.text.to_ascii_lowercase().contains("password\":\""));

        let p = ts.get("/api/blueprints/magento", None).await.problem(404);
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("magento") && detail.contains("medusa, woocommerce"),
            "names the engine and the known ones: {detail}"
        );
        ts.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_out_and_me() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        let alice = ts.member("alice", 7).await;

        let r = ts.get("/api/me", Some(&alice.token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let me = r.json();
        assert_eq!(me["email"], alice.user.email);
        assert_eq!(me["role"], "member");
        assert_eq!(me["store_limit"], 7);
        assert_eq!(me["store_count"], 0);

        // Wrong password and unknown account: the same answer.
        let wrong = ts
            .post(
                "/api/auth/login",
                None,
                json!({"email": alice.user.email, "password": "not the password"}),
            )
            .await;
        let unknown = ts
            .post(
                "/api/auth/login",
                None,
                json!({"email": "nobody@example.test", "password": "not the password"}),
            )
            .await;
        let (a, b) = (wrong.problem(401), unknown.problem(401));
        assert_eq!(a["detail"], b["detail"]);
        assert_eq!(a["detail"], "wrong email or password");
        assert!(
            wrong
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );

        // Emails are case-insensitive.
        let r = ts
            .post(
                "/api/auth/login",
                None,
                json!({"email": alice.user.email.to_uppercase(), "password": alice.password}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        // A token is nothing for a cache to keep.
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let session = r.json();
        assert!(session["token"].as_str().unwrap().starts_with("sp_"));
        assert!(session["expires_at"].is_string());
        assert_eq!(session["user"]["id"], alice.user.id.to_string());

        // Malformed, unknown fields, missing fields, wrong content type.
        let r = ts
            .send(
                ts.request(Method::POST, "/api/auth/login", None)
                    .header("content-type", "application/json")
                    .body("{not json"),
            )
            .await;
        r.problem(400);
        let r = ts
            .post(
                "/api/auth/login",
                None,
                json!({"email": "a@example.test", "password": "x", "role": "admin"}),
            )
            .await;
        r.problem(422);
        assert_eq!(r.fields(), ["role"]);
        let r = ts
            .post("/api/auth/login", None, json!({"email": "a@example.test"}))
            .await;
        r.problem(422);
        assert_eq!(r.fields(), ["password"]);
        let r = ts
            .send(
                ts.request(Method::POST, "/api/auth/login", None)
                    .header("content-type", "text/plain")
                    .body("hello"),
            )
            .await;
        r.problem(415);

        // Without, with a bad, and after logout with a revoked token: 401.
        let r = ts.get("/api/me", None).await;
        r.problem(401);
        assert!(r.header("www-authenticate").is_some());
        ts.get("/api/me", Some("sp_not-a-real-token"))
            .await
            .problem(401);
        ts.get("/api/me", Some("garbage")).await.problem(401);
        let r = ts
            .send(ts.request(Method::POST, "/api/auth/logout", Some(&alice.token)))
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
        ts.get("/api/me", Some(&alice.token)).await.problem(401);
        // The other session still works.
        let other = session["token"].as_str().unwrap();
        assert_eq!(ts.get("/api/me", Some(other)).await.status, 200);

        // Expired tokens are refused.
        let (token, hash) = storeplane::auth::generate_token();
        db.insert_token(
            alice.user.id,
            &hash,
            "expired",
            Some(chrono::Utc::now() - chrono::TimeDelta::seconds(1)),
        )
        .await
        .unwrap();
        ts.get("/api/me", Some(&token)).await.problem(401);

        // The token is checked before the rest of the request: a revoked or expired one
        // is a 401 whatever else is wrong (a bad body, a bad query, a bad path).
        for bad in [alice.token.as_str(), token.as_str()] {
            let r = ts
                .send(
                    ts.request(Method::POST, "/api/stores", Some(bad))
                        .json(&json!({"name": "Not A Name", "engine": "nope"})),
                )
                .await;
            r.problem(401);
            assert!(r.header("www-authenticate").is_some(), "{r:?}");
            ts.get("/api/stores?limit=0", Some(bad)).await.problem(401);
            ts.get("/api/stores/not-a-uuid", Some(bad))
                .await
                .problem(401);
        }
        ts.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_lifecycle_through_the_api() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        let alice = ts.member("alice", 10).await;
        let t = Some(alice.token.as_str());

        let r = ts
            .post(
                "/api/stores",
                t,
                json!({"name": "shop-1", "engine": "woocommerce", "params": {"plan": "medium"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let store = r.json();
        let id = store["id"].as_str().unwrap().to_owned();
        assert_eq!(
            r.header("location"),
            Some(format!("/api/stores/{id}").as_str())
        );
        assert_eq!(store["status"], "provisioning");
        assert_eq!(store["engine"], "woocommerce");
        assert_eq!(
            store["params"],
            json!({"plan": "medium"}),
            "params as given"
        );
        assert_eq!(store["progress"]["type"], "created");
        assert!(store["error_message"].is_null());
        assert!(
            store["namespace"]
                .as_str()
                .unwrap()
                .starts_with("store-shop-1-")
        );
        for internal in ["secrets_sealed", "lease_owner", "generation", "user_id"] {
            assert!(store.get(internal).is_none(), "{internal} leaked: {store}");
        }

        let r = ts.get(&format!("/api/stores/{id}"), t).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["id"], id);

        // Listing, paging and filtering.
        create(&ts, &alice.token, "shop-2").await;
        create(&ts, &alice.token, "shop-3").await;
        let r = ts.get("/api/stores?limit=2", t).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json();
        let names: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["shop-3", "shop-2"], "newest first");
        let cursor = page["next_cursor"].as_str().expect("a next page");
        let r = ts
            .get(&format!("/api/stores?limit=2&cursor={cursor}"), t)
            .await;
        let page = r.json();
        assert_eq!(page["items"][0]["name"], "shop-1");
        assert!(page["next_cursor"].is_null());
        assert_eq!(page["items"][0]["progress"]["type"], "created");
        let r = ts.get("/api/stores?status=ready", t).await;
        assert_eq!(r.json()["items"], json!([]));
        ts.get("/api/stores?limit=0", t).await.problem(400);
        let r = ts.get("/api/stores?limit=101", t).await;
        r.problem(400);
        assert_eq!(r.fields(), ["limit"]);
        ts.get("/api/stores?status=bogus", t).await.problem(400);
        ts.get("/api/stores?cursor=not-a-uuid", t)
            .await
            .problem(400);

        // Events.
        let r = ts.get(&format!("/api/stores/{id}/events"), t).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let events = r.json();
        assert_eq!(events["items"][0]["type"], "created");
        assert!(events["next_cursor"].is_null());
        let first = events["items"][0]["id"].as_i64().unwrap();
        let r = ts
            .get(&format!("/api/stores/{id}/events?after={first}"), t)
            .await;
        assert_eq!(r.json()["items"], json!([]));

        // Retry of a store that has not failed: 409.
        let r = ts
            .send(ts.request(Method::POST, &format!("/api/stores/{id}/retry"), t))
            .await;
        let p = r.problem(409);
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("only a failed store"),
            "{p}"
        );

        // A failed store can be retried.
        let owner = "test-orchestrator";
        assert!(
            db.claim(
                id.parse().unwrap(),
                owner,
                Duration::from_secs(30),
                chrono::Utc::now()
            )
            .await
            .unwrap()
        );
        db.record(
            id.parse().unwrap(),
            owner,
            storeplane::db::StoreUpdate {
                status: Some(storeplane::domain::StoreStatus::Failed),
                error_message: Some(Some("Deployment/web: image pull failed".into())),
                release_lease: true,
                ..Default::default()
            },
            Some(NewEvent::new(EventType::ProvisioningFailed, "gave up")),
        )
        .await
        .unwrap();
        let r = ts.get(&format!("/api/stores/{id}"), t).await.json();
        assert_eq!(r["status"], "failed");
        assert_eq!(r["error_message"], "Deployment/web: image pull failed");
        assert_eq!(r["progress"]["type"], "provisioning_failed");
        let r = ts
            .send(ts.request(Method::POST, &format!("/api/stores/{id}/retry"), t))
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.json()["status"], "provisioning");
        assert_eq!(r.json()["progress"]["type"], "retry_requested");

        // Delete: 202, deleting; again: the same (idempotent).
        let r = ts.delete(&format!("/api/stores/{id}"), t).await;
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.json()["status"], "deleting");
        let r = ts.delete(&format!("/api/stores/{id}"), t).await;
        assert_eq!(r.status, 202);
        assert_eq!(r.json()["status"], "deleting");
        let r = ts.get(&format!("/api/stores/{id}/events"), t).await.json();
        let deleting = r["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "deleting")
            .count();
        assert_eq!(deleting, 1, "one deleting event: {r}");

        // Unknown ids and bad ids.
        let missing = Uuid::now_v7();
        ts.get(&format!("/api/stores/{missing}"), t)
            .await
            .problem(404);
        ts.delete(&format!("/api/stores/{missing}"), t)
            .await
            .problem(404);
        ts.get(&format!("/api/stores/{missing}/events"), t)
            .await
            .problem(404);
        let r = ts.get("/api/stores/not-a-uuid", t).await;
        r.problem(400);
        assert_eq!(r.fields(), ["id"]);

        // Me counts the stores.
        assert_eq!(ts.get("/api/me", t).await.json()["store_count"], 3);
        ts.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_validated_field_by_field() {
    each_backend(|db| async move {
        let ts = TestServer::start(
            &db,
            ApiSettings {
                max_body_bytes: 4096,
                ..TestServer::settings()
            },
        )
        .await;
        let alice = ts.member("alice", 10).await;
        let t = Some(alice.token.as_str());
        let hostile = [
            "",
            "Shop",
            "shop_1",
            "-shop",
            "shop-",
            "1shop",
            "shop.example",
            "shop/../x",
            "shop;rm -rf /",
            "sh op",
            "ünicode",
            "<script>",
            "a\nb",
        ];
        let long = "a".repeat(41);
        for name in hostile.iter().copied().chain([long.as_str()]) {
            let r = ts.post("/api/stores", t, shop(name)).await;
            r.problem(422);
            assert_eq!(r.fields(), ["name"], "{name:?}: {}", r.text);
        }
        let r = ts
            .post("/api/stores", t, json!({"name": "ok", "engine": "magento"}))
            .await;
        let p = r.problem(422);
        assert_eq!(r.fields(), ["engine"]);
        let msg = p["errors"][0]["message"].as_str().unwrap();
        assert!(
            msg.contains("medusa") && msg.contains("woocommerce"),
            "{msg}"
        );

        let r = ts
            .post(
                "/api/stores",
                t,
                json!({"name": "ok", "engine": "woocommerce",
                       "params": {"plan": "gigantic", "storage": {"database": 12}, "bogus": 1}}),
            )
            .await;
        r.problem(422);
        let fields = r.fields();
        assert!(fields.iter().all(|f| f.starts_with("params")), "{fields:?}");
        assert!(fields.len() >= 2, "every violation is listed: {}", r.text);
        assert!(fields.contains(&"params/plan".to_owned()), "{fields:?}");

        // Valid sizes that together overrun the plan's storage quota: refused at the
        // plan, saying by how much, before the store exists.
        let r = ts
            .post(
                "/api/stores",
                t,
                json!({"name": "too-big", "engine": "woocommerce",
                       "params": {"plan": "small", "storage": {"database": "30Gi"}}}),
            )
            .await;
        let p = r.problem(422);
        assert_eq!(r.fields(), ["params/plan"], "{}", r.text);
        let msg = p["errors"][0]["message"].as_str().unwrap();
        assert!(
            msg.contains("plan `small` is too small")
                && msg.contains("needs 35Gi but the quota allows 20Gi")
                && msg.contains("larger plan"),
            "{msg}"
        );
        let bob = ts.member("bob", 10).await;
        let r = ts
            .post(
                "/api/stores",
                Some(bob.token.as_str()),
                json!({"name": "big-enough", "engine": "woocommerce",
                       "params": {"plan": "medium", "storage": {"database": "30Gi"}}}),
            )
            .await;
        assert_eq!(
            r.status, 201,
            "the same volumes fit the medium plan: {}",
            r.text
        );

        // No mass assignment: unknown fields are refused, naming them.
        for field in ["user_id", "status", "namespace", "id", "generation"] {
            let mut body = shop("ok");
            body[field] = json!("x");
            let r = ts.post("/api/stores", t, body).await;
            r.problem(422);
            assert_eq!(r.fields(), [field]);
        }
        let r = ts
            .post(
                "/api/stores",
                t,
                json!({"name": 5, "engine": ["x"], "params": "p"}),
            )
            .await;
        r.problem(422);
        let mut fields = r.fields();
        fields.sort();
        assert_eq!(fields, ["engine", "name", "params"]);
        let r = ts
            .send(
                ts.request(Method::POST, "/api/stores", t)
                    .header("content-type", "application/json")
                    .body("{\"name\": "),
            )
            .await;
        r.problem(400);
        ts.send(
            ts.request(Method::POST, "/api/stores", t)
                .header("content-type", "application/json")
                .body("[]"),
        )
        .await
        .problem(400);

        // Too large: refused before it is read, and while reading a chunked body.
        let big = json!({"name": "ok", "engine": "woocommerce", "params": {"x": "y".repeat(5000)}});
        ts.post("/api/stores", t, big.clone()).await.problem(413);
        let chunks =
            futures::stream::iter(vec![Ok::<_, std::io::Error>(big.to_string().into_bytes())]);
        let r = ts
            .send(
                ts.request(Method::POST, "/api/stores", t)
                    .header("content-type", "application/json")
                    .body(reqwest::Body::wrap_stream(chunks)),
            )
            .await;
        r.problem(413);

        assert_eq!(ts.get("/api/stores", t).await.json()["items"], json!([]));
        ts.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_see_or_touch_each_others_stores() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        let a = ts.member("tenant-a", 10).await;
        let b = ts.member("tenant-b", 10).await;
        let admin = ts.admin("root").await;
        let store = create(&ts, &a.token, "a-shop").await;
        let id = store["id"].as_str().unwrap();
        let tb = Some(b.token.as_str());

        // Exactly what a missing store answers.
        let missing = Uuid::now_v7();
        for (method, suffix) in [
            (Method::GET, ""),
            (Method::DELETE, ""),
            (Method::GET, "/events"),
            (Method::GET, "/events/stream"),
            (Method::POST, "/retry"),
        ] {
            let theirs = ts
                .send(ts.request(method.clone(), &format!("/api/stores/{id}{suffix}"), tb))
                .await;
            let none = ts
                .send(ts.request(
                    method.clone(),
                    &format!("/api/stores/{missing}{suffix}"),
                    tb,
                ))
                .await;
            let p = theirs.problem(404);
            none.problem(404);
            assert!(!theirs.text.contains("a-shop"), "{}", theirs.text);
            assert_eq!(
                p["detail"].as_str().unwrap().replace(id, "ID"),
                none.json()["detail"]
                    .as_str()
                    .unwrap()
                    .replace(&missing.to_string(), "ID"),
                "{method} {suffix}"
            );
        }
        // B's list never shows A's store; B may use the same name, at its own host.
        let list = ts.get("/api/stores", tb).await.json();
        assert_eq!(list["items"], json!([]));
        let r = ts
            .post(
                "/api/stores",
                tb,
                json!({"name": "a-shop", "engine": "woocommerce",
                       "params": {"domain": "a-shop.example.org"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let list = ts.get("/api/stores", tb).await.json();
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        assert_ne!(list["items"][0]["id"], id);
        // A's store is untouched.
        let mine = ts
            .get(&format!("/api/stores/{id}"), Some(&a.token))
            .await
            .json();
        assert_eq!(mine["status"], "provisioning");

        // Members may not list everyone's; admins may, and may read any store.
        let r = ts.get("/api/stores?all=true", tb).await;
        let p = r.problem(403);
        assert!(p["detail"].as_str().unwrap().contains("admins"), "{p}");
        let all = ts
            .get("/api/stores?all=true", Some(&admin.token))
            .await
            .json();
        assert_eq!(all["items"].as_array().unwrap().len(), 2);
        let own = ts.get("/api/stores", Some(&admin.token)).await.json();
        assert_eq!(own["items"], json!([]), "without all=true: the admin's own");
        let r = ts
            .get(&format!("/api/stores/{id}"), Some(&admin.token))
            .await;
        assert_eq!(r.status, 200);
        ts.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_names_and_the_store_limit() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        let a = ts.member("limited", 2).await;
        create(&ts, &a.token, "one").await;
        let r = ts.post("/api/stores", Some(&a.token), shop("one")).await;
        let p = r.problem(409);
        assert!(p["detail"].as_str().unwrap().contains("`one`"), "{p}");
        create(&ts, &a.token, "two").await;
        let r = ts.post("/api/stores", Some(&a.token), shop("three")).await;
        let p = r.problem(403);
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains("store limit reached"), "{detail}");
        assert!(detail.contains("2 of 2"), "the limit is stated: {detail}");
        assert_eq!(
            ts.get("/api/me", Some(&a.token)).await.json()["store_count"],
            2
        );
        ts.stop().await;
    })
    .await;
}

/// No store can be served at another store's host, whoever owns it, nor at the
/// platform's: the second is refused at the field that chose the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_hosts_are_unique_across_accounts_and_keep_off_the_platform() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        let a = ts.member("host-a", 10).await;
        let b = ts.member("host-b", 10).await;
        let tb = Some(b.token.as_str());
        let post = |name: &str, domain: &str| {
            json!({"name": name, "engine": "woocommerce", "params": {"domain": domain}})
        };
        create(&ts, &a.token, "shop").await;
        let taken = "shop.stores.localtest.me";

        // The same name: the same default host.
        let p = ts.post("/api/stores", tb, shop("shop")).await.problem(409);
        assert!(p["type"].as_str().unwrap().ends_with("/host-taken"), "{p}");
        assert_eq!(p["errors"][0]["field"], "name", "{p}");
        let message = p["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(taken), "{message}");
        assert!(message.contains("set `domain`"), "says how: {message}");
        // A's host claimed as a domain.
        let p = ts
            .post("/api/stores", tb, post("mine", taken))
            .await
            .problem(409);
        assert_eq!(p["errors"][0]["field"], "params/domain", "{p}");
        // A's custom domain, claimed by B's default host or by B's domain.
        let r = ts
            .post("/api/stores", Some(&a.token), post("second", "shop.example.org"))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let p = ts
            .post("/api/stores", tb, post("other", "shop.example.org"))
            .await
            .problem(409);
        assert!(p["detail"].as_str().unwrap().contains("shop.example.org"), "{p}");
        // The platform's own host and the base domain itself are reserved.
        for host in [PLATFORM_HOST, "stores.localtest.me"] {
            let r = ts.post("/api/stores", tb, post("squat", host)).await;
            let p = r.problem(422);
            assert_eq!(p["errors"][0]["field"], "params/domain", "{p}");
            assert!(
                p["errors"][0]["message"].as_str().unwrap().contains("reserved"),
                "{p}"
            );
        }
        // Nothing of B's was created; A still has both.
        assert_eq!(ts.get("/api/stores", tb).await.json()["items"], json!([]));
        let mine = ts.get("/api/stores", Some(&a.token)).await.json();
        assert_eq!(mine["items"].as_array().unwrap().len(), 2);
        // A host is free again once its store is gone.
        let stores = db.list_stores(Default::default()).await.unwrap();
        let id = stores.iter().find(|s| s.name == "shop").unwrap().id;
        let owner = "test-orchestrator";
        assert!(
            db.claim(id, owner, Duration::from_secs(30), chrono::Utc::now())
                .await
                .unwrap()
        );
        db.delete_store(id, owner, NewEvent::new(EventType::NamespaceDeleted, "gone"))
            .await
            .unwrap();
        create(&ts, &b.token, "shop").await;
        ts.stop().await;
    })
    .await;
}

fn header_u64(r: &Resp, name: &str) -> u64 {
    r.header(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing or not a number: {r:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_ip_for_creation_and_for_sign_in() {
    each_backend(|db| async move {
        let ts = TestServer::start(
            &db,
            ApiSettings {
                rate_limit: "4/1m".parse().unwrap(),
                create_rate_limit: "1/1m".parse().unwrap(),
                login_rate_limit: "3/1m".parse().unwrap(),
                login_account_rate_limit: "5/1m".parse().unwrap(),
                trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
                ..TestServer::settings()
            },
        )
        .await;
        let from = |ip: &str, method: Method, path: &str, token: Option<&str>| {
            ts.request(method, path, token)
                // Whatever the client claimed first, then what the proxy saw.
                .header("x-forwarded-for", format!("10.9.9.9, {ip}"))
        };
        // Sign in from its own address (it counts against the global quota too).
        let a = ts
            .send(from("192.0.2.1", Method::GET, "/health", None))
            .await;
        assert_eq!(a.status, 200);
        assert!(a.header("ratelimit").is_none(), "probes are not limited");
        let alice = ts.member("alice", 10).await;
        let bob = ts.member("bob", 10).await;
        let t = Some(alice.token.as_str());

        let ip = "198.51.100.7";
        let r = ts.send(from(ip, Method::GET, "/api/stores", t)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("ratelimit-policy"), Some("\"global\";q=4;w=60"));
        assert_eq!(r.header("ratelimit"), Some("\"global\";r=3;t=15"));
        let r = ts
            .send(from(ip, Method::POST, "/api/stores", t).json(&shop("limited")))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(
            r.header("ratelimit-policy"),
            Some("\"global\";q=4;w=60, \"create\";q=1;w=60")
        );
        let r = ts
            .send(from(ip, Method::POST, "/api/stores", t).json(&shop("again")))
            .await;
        let p = r.problem(429);
        assert!(p["detail"].as_str().unwrap().contains("`create`"), "{p}");
        assert!((1..=60).contains(&header_u64(&r, "retry-after")));
        assert!(r.header("ratelimit").unwrap().contains("\"create\";r=0"));
        ts.send(from(ip, Method::GET, "/api/stores", t)).await;
        let r = ts.send(from(ip, Method::GET, "/api/stores", t)).await;
        r.problem(429);
        assert!(
            r.header("ratelimit")
                .unwrap()
                .starts_with("\"global\";r=0;t=")
        );
        assert!(header_u64(&r, "retry-after") >= 1);
        // Per IP: another client is unaffected; probes and the spec never limited.
        let r = ts
            .send(from("203.0.113.9", Method::GET, "/api/stores", t))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            ts.send(from(ip, Method::GET, "/health", None)).await.status,
            200
        );
        assert_eq!(
            ts.send(from(ip, Method::GET, "/api/openapi.json", None))
                .await
                .status,
            200
        );

        // Sign-in per account: successful sign-ins cost nothing (the fixture signed in
        // once already), from any address.
        let sign_in = |ip: String, password: &str| {
            from(&ip, Method::POST, "/api/auth/login", None)
                .json(&json!({"email": alice.user.email, "password": password}))
        };
        for i in 0..4 {
            let r = ts
                .send(sign_in(format!("192.0.2.{}", 50 + i), &alice.password))
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
        // One address alone cannot lock the account: its own sign-in quota (3) runs
        // out before the account's (5), and the owner still signs in from elsewhere.
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let r = ts
                .send(sign_in("192.0.2.120".into(), "wrong password!"))
                .await;
            statuses.push(r.status);
        }
        assert_eq!(statuses, [401, 401, 401, 429], "one address");
        let r = ts
            .send(sign_in("192.0.2.121".into(), &alice.password))
            .await;
        assert_eq!(r.status, 200, "the owner is not locked out: {}", r.text);
        // Wrong passwords from many addresses still run out (two more make five), and
        // then even the right password is refused until the quota refills.
        let mut statuses = Vec::new();
        for i in 0..3 {
            let r = ts
                .send(sign_in(format!("192.0.2.{}", 100 + i), "wrong password!"))
                .await;
            statuses.push(r.status);
            if r.status == 429 {
                r.problem(429);
                assert!(r.header("retry-after").is_some());
            }
        }
        assert_eq!(statuses, [401, 401, 429], "per account");
        let r = ts.send(sign_in("192.0.2.99".into(), &alice.password)).await;
        r.problem(429);
        assert!(r.header("retry-after").is_some());
        // Guesses sent all at once, each from its own address: they are let in before
        // any failure counts, but a check that ends once the account is locked is
        // refused like the rest, so only the first few (the quota, and the checks
        // running alongside: 4 at a time) learn their outcome.
        let guesses = futures::future::join_all((0..12).map(|i| {
            ts.send(
                from(
                    &format!("192.0.2.{}", 150 + i),
                    Method::POST,
                    "/api/auth/login",
                    None,
                )
                .json(&json!({"email": bob.user.email, "password": format!("guess {i}")})),
            )
        }))
        .await;
        let answered = guesses.iter().filter(|r| r.status == 401).count();
        let refused = guesses.iter().filter(|r| r.status == 429).count();
        assert_eq!(answered + refused, 12);
        assert!(
            (5..=5 + 4).contains(&answered),
            "{answered} guesses of 12 were told they were wrong"
        );
        // Sign-in per IP: one address trying many accounts.
        let mut statuses = Vec::new();
        for i in 0..4 {
            let r = ts
                .send(
                    from("192.0.2.200", Method::POST, "/api/auth/login", None)
                        .json(&json!({"email": format!("u{i}@example.test"), "password": "x"})),
                )
                .await;
            statuses.push(r.status);
        }
        assert_eq!(statuses, [401, 401, 401, 429], "per IP");
        let metrics = ts.get("/metrics", None).await.text;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("storeplane_rate_limited_requests_total")
                    && !l.ends_with(" 0")),
            "{metrics}"
        );
        ts.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_follows_the_allow_list() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        let r = ts
            .send(
                ts.request(Method::GET, "/health", None)
                    .header("origin", "https://app.example"),
            )
            .await;
        assert!(
            r.header("access-control-allow-origin").is_none(),
            "no CORS configured"
        );
        // No origin allowed: another origin is refused, the server's own is not.
        r.problem(403);
        let own = ts
            .send(
                ts.request(Method::GET, "/health", None)
                    .header("origin", ts.url("")),
            )
            .await;
        assert_eq!(own.status, 200, "{own:?}");
        ts.stop().await;

        let ts = TestServer::start(
            &db,
            ApiSettings {
                cors_origins: vec!["https://app.example".into()],
                // Room for this test's requests, then 429s.
                rate_limit: "12/15m".parse().unwrap(),
                ..TestServer::settings()
            },
        )
        .await;
        let preflight = |origin: &str| {
            ts.request(Method::OPTIONS, "/api/stores", None)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                )
        };
        let r = ts.send(preflight("https://app.example")).await;
        assert!(r.status < 300, "{r:?}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_security_headers(&r);
        let r = ts.send(preflight("https://evil.example")).await;
        assert!(r.header("access-control-allow-origin").is_none());
        r.problem(403);
        let r = ts
            .send(
                ts.request(Method::GET, "/health", None)
                    .header("origin", "https://app.example"),
            )
            .await;
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        let exposed = r
            .header("access-control-expose-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            exposed.contains("ratelimit") && exposed.contains("location"),
            "{exposed}"
        );

        // The bundled dashboard's own POSTs carry `Origin` too: the server's own host
        // is never refused, whatever the allow-list says; another origin still is.
        let alice = ts.member("cors", 3).await;
        let create_from = |origin: &str, name: &str| {
            ts.request(Method::POST, "/api/stores", Some(&alice.token))
                .header("origin", origin)
                .json(&shop(name))
        };
        let r = ts.send(create_from(&ts.url(""), "same-origin")).await;
        assert_eq!(r.status, 201, "{r:?}");
        assert!(r.header("access-control-allow-origin").is_none());
        let r = ts
            .send(create_from("http://evil.example", "cross-origin"))
            .await;
        r.problem(403);

        // Refusals and problems answered to an allowed origin are the same problems
        // (type, request id, named parameters, `Allow`) and carry the CORS headers, so
        // that the browser lets the page read them.
        let from_app = |method: Method, path: &str, token: Option<&str>| {
            ts.request(method, path, token)
                .header("origin", "https://app.example")
        };
        let cors = |r: &crate::support::server::Resp| {
            assert_eq!(
                r.header("access-control-allow-origin"),
                Some("https://app.example"),
                "{r:?}"
            );
        };
        let r = ts.send(from_app(Method::GET, "/api/me", None)).await;
        r.problem(401);
        cors(&r);
        let r = ts
            .send(from_app(Method::GET, "/api/stores/xyz", Some(&alice.token)))
            .await;
        r.problem(400);
        assert_eq!(r.fields(), ["id"], "{}", r.text);
        cors(&r);
        let r = ts
            .send(from_app(Method::PUT, "/api/stores", Some(&alice.token)))
            .await;
        r.problem(405);
        assert!(r.header("allow").is_some(), "{r:?}");
        cors(&r);
        let limited = loop {
            let r = ts
                .send(from_app(Method::GET, "/api/me", Some(&alice.token)))
                .await;
            if r.status == 429 {
                break r;
            }
            assert_eq!(r.status, 200, "{r:?}");
        };
        limited.problem(429);
        assert!(limited.header("retry-after").is_some(), "{limited:?}");
        cors(&limited);
        ts.stop().await;
    })
    .await;
}

/// Removes a store as an orchestrator does once its namespace is gone: claimed, then
/// deleted with its last event.
async fn remove_store(db: &storeplane::db::Db, id: Uuid) {
    let owner = "test-orchestrator";
    assert!(
        db.claim(id, owner, Duration::from_secs(30), chrono::Utc::now())
            .await
            .unwrap()
    );
    db.delete_store(
        id,
        owner,
        NewEvent::new(EventType::NamespaceDeleted, "gone"),
    )
    .await
    .unwrap();
}

/// Server-sent events, parsed.
struct Sse {
    stream: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: String,
}

#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: Value,
}

impl Sse {
    async fn open(ts: &TestServer, path: &str, token: &str, last: Option<i64>) -> Sse {
        let mut rb = ts
            .http
            .get(ts.url(path))
            .bearer_auth(token)
            .timeout(Duration::from_secs(120));
        if let Some(id) = last {
            rb = rb.header("last-event-id", id.to_string());
        }
        let resp = rb.send().await.expect("stream");
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        assert_eq!(
            resp.headers()["cache-control"],
            "no-store",
            "the stream carries the store's data: no cache may keep it"
        );
        Sse {
            stream: resp.bytes_stream().map(|c| c.map(|b| b.to_vec())).boxed(),
            buf: String::new(),
        }
    }

    /// The next event, or `None` when the stream ended.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(SseEvent {
                    event,
                    id,
                    data: serde_json::from_str(&data).expect("data is JSON"),
                });
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.stream.next())
                .await
                .expect("an event within 20 s")?;
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
        }
    }

    async fn next_of(&mut self, kind: &str) -> SseEvent {
        loop {
            let e = self.next().await.expect("stream still open");
            if e.event == kind {
                return e;
            }
        }
    }
}

/// Each open stream polls the database for as long as it is open: one account may
/// hold only so many at once, another account is not affected, and a stream that ends
/// gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_event_streams_are_capped_per_account() {
    each_backend(|db| async move {
        let ts = TestServer::start(
            &db,
            ApiSettings {
                max_streams_per_user: 2,
                ..TestServer::settings()
            },
        )
        .await;
        let a = ts.member("many-tabs", 10).await;
        let b = ts.member("other-account", 10).await;
        let store = create(&ts, &a.token, "watched").await;
        let id: Uuid = store["id"].as_str().unwrap().parse().unwrap();
        let path = format!("/api/stores/{id}/events/stream");
        let mut first = Sse::open(&ts, &path, &a.token, None).await;
        let mut second = Sse::open(&ts, &path, &a.token, None).await;
        let r = ts.get(&path, Some(&a.token)).await;
        let p = r.problem(429);
        assert_eq!(
            p["type"].as_str().unwrap().rsplit('/').next(),
            Some("too-many-streams"),
            "{p}"
        );
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("2 event streams open"),
            "{p}"
        );
        assert_eq!(r.header("retry-after"), Some("5"));
        // Another account's stream is its own.
        let other = create(&ts, &b.token, "elsewhere").await;
        let other_path = format!(
            "/api/stores/{}/events/stream",
            other["id"].as_str().unwrap()
        );
        let mut theirs = Sse::open(&ts, &other_path, &b.token, None).await;
        theirs.next_of("store").await;
        // The store goes: both streams end, and their places are free again.
        remove_store(&db, id).await;
        for s in [&mut first, &mut second] {
            s.next_of("deleted").await;
            assert!(s.next().await.is_none());
        }
        let again = create(&ts, &a.token, "watched-again").await;
        let again_path = format!(
            "/api/stores/{}/events/stream",
            again["id"].as_str().unwrap()
        );
        let mut third = Sse::open(&ts, &again_path, &a.token, None).await;
        third.next_of("store").await;
        ts.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_sends_past_and_new_events_then_the_end() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        let a = ts.member("streamer", 10).await;
        let store = create(&ts, &a.token, "live").await;
        let id: Uuid = store["id"].as_str().unwrap().parse().unwrap();
        let path = format!("/api/stores/{id}/events/stream");

        // A cursor below zero is refused, naming the header.
        let r = ts
            .send(
                ts.request(Method::GET, &path, Some(&a.token))
                    .header("last-event-id", "-1"),
            )
            .await;
        r.problem(400);
        assert_eq!(r.fields(), ["Last-Event-ID"], "{}", r.text);

        let mut sse = Sse::open(&ts, &path, &a.token, None).await;
        let first = sse.next().await.unwrap();
        assert_eq!(first.event, "store_event");
        assert_eq!(first.data["type"], "created");
        let created_id = first.data["id"].as_i64().unwrap();
        assert_eq!(first.id, Some(created_id.to_string()));
        let s = sse.next_of("store").await;
        assert_eq!(s.data["status"], "provisioning");

        // A new event arrives on the open stream, followed by the store's new progress.
        db.append_event(id, EventType::NamespaceCreated, "namespace created")
            .await
            .unwrap();
        let e = sse.next_of("store_event").await;
        assert_eq!(e.data["type"], "namespace_created");
        let s = sse.next_of("store").await;
        assert_eq!(s.data["progress"]["type"], "namespace_created");

        // Reconnecting with Last-Event-ID resumes after it.
        let mut again = Sse::open(&ts, &path, &a.token, Some(created_id)).await;
        let e = again.next().await.unwrap();
        assert_eq!(e.data["type"], "namespace_created");

        // A log longer than one read (200 events) arrives whole and in order, a batch
        // at a time, and the store's progress only after its last event.
        let long_path = {
            let long = create(&ts, &a.token, "long-log").await;
            let long_id: Uuid = long["id"].as_str().unwrap().parse().unwrap();
            for i in 0..450 {
                db.append_event(long_id, EventType::PhaseCompleted, &format!("step {i}"))
                    .await
                    .unwrap();
            }
            format!("/api/stores/{long_id}/events/stream")
        };
        let mut long = Sse::open(&ts, &long_path, &a.token, None).await;
        let mut ids = Vec::new();
        let store_msg = loop {
            let m = long.next().await.expect("the stream goes on");
            match m.event.as_str() {
                "store_event" => ids.push(m.data["id"].as_i64().unwrap()),
                "store" => break m,
                other => panic!("unexpected {other}: {m:?}"),
            }
        };
        assert_eq!(ids.len(), 451, "created and 450 steps");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(store_msg.data["progress"]["message"], "step 449");
        drop(long);

        // The store disappears: the last event, `deleted`, and the end.
        remove_store(&db, id).await;
        let e = sse.next_of("store_event").await;
        assert_eq!(e.data["type"], "namespace_deleted");
        let d = sse.next_of("deleted").await;
        assert_eq!(d.data["id"], id.to_string());
        assert!(sse.next().await.is_none(), "the stream ends");
        drop(again);

        // Signing out ends the streams opened with the token (within `REAUTH`), and
        // not with `deleted`: the store is still there.
        let other = create(&ts, &a.token, "live-two").await;
        let path = format!(
            "/api/stores/{}/events/stream",
            other["id"].as_str().unwrap()
        );
        let mut open = Sse::open(&ts, &path, &a.token, None).await;
        open.next_of("store").await;
        let r = ts
            .send(ts.request(Method::POST, "/api/auth/logout", Some(&a.token)))
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
        let ended = tokio::time::timeout(Duration::from_secs(25), async {
            while let Some(e) = open.next().await {
                assert_ne!(e.event, "deleted", "{e:?}");
            }
        })
        .await;
        assert!(ended.is_ok(), "the stream outlived its token by 25 s");

        // An admin watching someone else's store is made a member: the stream ends
        // (not with `deleted`), and opening it again is the 404 of a stranger's store.
        let b = ts.member("streamer-b", 10).await;
        let theirs = create(&ts, &b.token, "watched").await;
        let path = format!(
            "/api/stores/{}/events/stream",
            theirs["id"].as_str().unwrap()
        );
        let boss = ts.admin("boss").await;
        let mut watching = Sse::open(&ts, &path, &boss.token, None).await;
        watching.next_of("store").await;
        db.update_user(
            boss.user.id,
            UserUpdate {
                role: Some(Role::Member),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(25), async {
            while let Some(e) = watching.next().await {
                assert_ne!(e.event, "deleted", "{e:?}");
            }
        })
        .await;
        assert!(ended.is_ok(), "the stream outlived its admin role by 25 s");
        // The API's token cache may hold the old role for `TOKEN_CACHE_TTL`.
        tokio::time::sleep(TOKEN_CACHE_TTL).await;
        let r = ts.get(&path, Some(&boss.token)).await;
        assert_eq!(r.status, 404, "{}", r.text);
        ts.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_database_is_a_503_problem() {
    each_backend(|db| async move {
        let ts = TestServer::start(&db, TestServer::settings()).await;
        let a = ts.member("outage", 10).await;
        // Close the pool under the running server: every query now fails to get a
        // connection.
        db.db.clone().close().await.unwrap();
        let r = ts.get("/api/stores", Some(&a.token)).await;
        let p = r.problem(503);
        assert_eq!(p["detail"], "the database is unavailable; retry shortly");
        assert!(header_u64(&r, "retry-after") >= 1);
        assert!(!r.text.to_lowercase().contains("select"), "{}", r.text);
        let r = ts.get("/ready", None).await;
        let p = r.problem(503);
        assert_eq!(r.fields(), ["database"], "{p}");
        assert_eq!(ts.get("/health", None).await.status, 200);
        ts.stop().await;
    })
    .await;
}

/// The whole flow with a real orchestrator on testenv (PostgreSQL, so wake-ups go
/// through NOTIFY): created through the API, ready, its credentials never in any
/// response, deleted, gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_goes_from_request_to_ready_to_gone_through_the_api() {
    let test_db = fresh(Backend::Postgres).await;
    let db = test_db.db.clone();
    let client = kube_client().await;
    let catalog = Arc::new(Catalog::builtin().unwrap());
    let vault = Arc::new(Vault::from_key_hex(&"3c".repeat(32)).unwrap());
    let waker = Waker::new(db.clone());
    let settings = OrchestratorSettings {
        instance_id: Some("api-e2e".into()),
        lease_duration: Duration::from_secs(10),
        sweep_interval: Duration::from_secs(2),
        phase_timeout: Duration::from_secs(120),
        ..OrchestratorSettings::default()
    };
    let orchestrator = Orchestrator::new(
        db.clone(),
        catalog,
        Applier::new(
            client.clone(),
            ApplySettings {
                teardown_timeout: Duration::from_secs(180),
                ..ApplySettings::default()
            },
        ),
        vault.clone(),
        settings,
        PlatformSettings::default(),
        &waker,
        Metrics::new(),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(orchestrator.run(stop.clone()));
    let ts = TestServer::start_with(&db, TestServer::settings(), waker, Some(client)).await;

    let r = ts.get("/ready", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["checks"][1]["name"], "cluster");

    let owner = ts.member("e2e", 10).await;
    let t = Some(owner.token.as_str());
    let name = format!("e2e-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let store = create(&ts, &owner.token, &name).await;
    let id = store["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let ready = loop {
        let s = ts.get(&format!("/api/stores/{id}"), t).await.json();
        match s["status"].as_str() {
            Some("ready") => break s,
            Some("failed") => panic!("store failed: {s}"),
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready in time: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(!ready["urls"].as_array().unwrap().is_empty(), "{ready}");
    assert_eq!(ready["progress"]["type"], "store_ready");
    let events = ts.get(&format!("/api/stores/{id}/events"), t).await.json();
    let types: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"created"));
    assert!(types.contains(&"namespace_created"), "{types:?}");
    assert_eq!(types.last(), Some(&"store_ready"), "{types:?}");
    ts.get("/api/stores", t).await;
    ts.get(
        "/api/stores?all=true",
        Some(&ts.admin("e2e-admin").await.token),
    )
    .await;

    // The store's generated credentials, from the database through the vault.
    let sealed = db
        .get_store(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .secrets_sealed
        .expect("credentials were generated");
    let plain = vault.open(&sealed).unwrap();
    let secrets: StoreSecrets = serde_json::from_slice(&plain).unwrap();
    let values: Vec<String> = secrets.iter().map(|(_, v)| v.to_owned()).collect();
    assert!(!values.is_empty());
    assert!(!ts.get("/metrics", None).await.text.is_empty());

    let r = ts.delete(&format!("/api/stores/{id}"), t).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let r = ts.get(&format!("/api/stores/{id}"), t).await;
        if r.status == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not gone in time: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let events = ts.get("/api/stores", t).await.json();
    assert_eq!(events["items"], json!([]));
    ts.assert_never_sent(&values);

    ts.stop().await;
    stop.cancel();
    task.await.unwrap();
    test_db.finish().await;
}
