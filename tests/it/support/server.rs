//! A real API server for the integration tests: `storeplane::api::start` on
//! `127.0.0.1:0` over a test database, a reqwest client, accounts to sign in with, and
//! a record of every response body so a test can prove that no secret ever appeared.
//!
//! ```ignore
//! let ts = TestServer::start(&db, TestServer::settings()).await;
//! let alice = ts.member("alice", 10).await;        // account + token
//! let r = ts.post("/api/stores", Some(&alice.token), json!({...})).await;
//! assert_eq!(r.status, 201, "{}", r.text);
//! ts.stop().await;
//! ```

use reqwest::Method;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storeplane::api::{AppState, RunningServer};
use storeplane::blueprint::Catalog;
use storeplane::config::{ApiSettings, PlatformSettings};
use storeplane::db::{Db, NewUser, Role, User};
use storeplane::metrics::Metrics;
use storeplane::reconcile::Waker;

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json response with this status; returns the problem.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        let p = self.json();
        assert_eq!(p["status"], status, "{p}");
        assert!(
            p["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("https://storeplane.dev/problems/")),
            "{p}"
        );
        assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
        assert!(p["request_id"].is_string(), "{p}");
        p
    }

    /// The `field`s of a problem's `errors`.
    pub fn fields(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A signed-in account.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: User,
    pub password: String,
    pub token: String,
}

pub struct TestServer {
    pub server: RunningServer,
    pub state: Arc<AppState>,
    pub base: String,
    pub http: reqwest::Client,
    /// Every response body this server answered through the helpers.
    pub bodies: Mutex<Vec<String>>,
}

impl TestServer {
    /// Settings for tests: a free port, limits high enough not to interfere.
    pub fn settings() -> ApiSettings {
        ApiSettings {
            listen: "127.0.0.1:0".into(),
            rate_limit: "100000/1m".parse().expect("rate"),
            create_rate_limit: "100000/1m".parse().expect("rate"),
            login_rate_limit: "100000/1m".parse().expect("rate"),
            ..ApiSettings::default()
        }
    }

    pub async fn start(db: &Db, settings: ApiSettings) -> TestServer {
        let waker = Waker::new(db.clone());
        TestServer::start_with(db, settings, waker, None).await
    }

    /// With the orchestrator's waker and a cluster for readiness.
    pub async fn start_with(
        db: &Db,
        settings: ApiSettings,
        waker: Waker,
        kube: Option<kube::Client>,
    ) -> TestServer {
        let catalog = Arc::new(Catalog::builtin().expect("built-in blueprints"));
        let state = AppState::new(
            db.clone(),
            catalog,
            waker,
            Metrics::new(),
            settings,
            test_platform(),
            kube,
        );
        let server = storeplane::api::start(state.clone(), "127.0.0.1:0")
            .await
            .expect("start the API server");
        let base = server.url();
        TestServer {
            server,
            state,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            bodies: Mutex::new(Vec::new()),
        }
    }

    pub async fn stop(self) {
        self.server.stop().await.expect("server stops cleanly");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request built on this server's client and records the body.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let resp = rb.send().await.expect("request reaches the server");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("response body");
        if let Ok(mut bodies) = self.bodies.lock() {
            bodies.push(text.clone());
        }
        Resp {
            status,
            headers,
            text,
        }
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, self.url(path));
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(self.request(Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.send(self.request(Method::POST, path, token).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(self.request(Method::DELETE, path, token)).await
    }

    /// Creates an account and signs it in.
    pub async fn account(&self, name: &str, role: Role, limit: u32) -> Account {
        let email = format!("{name}-{}@example.test", uuid::Uuid::new_v4().simple());
        let password = format!("{name}-password-{}", uuid::Uuid::new_v4().simple());
        let hash = storeplane::auth::hash_password(password.clone())
            .await
            .expect("hash");
        let user = self
            .state
            .db
            .create_user(NewUser {
                email: email.clone(),
                password_hash: hash,
                role,
                store_limit: Some(limit),
            })
            .await
            .expect("create user");
        let r = self
            .post(
                "/api/auth/login",
                None,
                serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(r.status, 200, "login: {}", r.text);
        let token = r.json()["token"].as_str().expect("token").to_owned();
        Account {
            user,
            password,
            token,
        }
    }

    pub async fn member(&self, name: &str, limit: u32) -> Account {
        self.account(name, Role::Member, limit).await
    }

    pub async fn admin(&self, name: &str) -> Account {
        self.account(name, Role::Admin, 100).await
    }

    /// Fails when any recorded response body contains one of `secrets`.
    pub fn assert_never_sent(&self, secrets: &[String]) {
        let bodies = self.bodies.lock().expect("bodies");
        assert!(!bodies.is_empty());
        for secret in secrets.iter().filter(|s| s.len() >= 8) {
            for body in bodies.iter() {
                assert!(
                    !body.contains(secret.as_str()),
                    "a secret value appeared in a response body: {body}"
                );
            }
        }
    }
}

/// The platform settings test servers check stores against: the default base domain,
/// and [`PLATFORM_HOST`] kept from stores.
pub fn test_platform() -> PlatformSettings {
    PlatformSettings {
        reserved_hosts: vec![PLATFORM_HOST.to_owned()],
        ..PlatformSettings::default()
    }
}

/// The host a test server says the platform itself is served at.
pub const PLATFORM_HOST: &str = "console.localtest.me";
