//! Wiring: the application endpoint (routes under the edge middleware and CORS), the
//! HTTP server on a listener (port 0 picks a free one; [`start`] says which), graceful
//! shutdown, and the two commands built on it: `storeplane serve` ([`run_serve`]: API,
//! dashboard and, unless told otherwise, the orchestrator in one process) and
//! `storeplane orchestrate` ([`run_orchestrate`]: the orchestrator with a small probe
//! listener).
//!
//! Starts and stops things; request handling lives in the other modules.

use super::edge::{Edge, EdgeConfig, Guarded, edge};
use super::problem::ApiError;
use super::spec;
use super::state::AppState;
use super::static_files::Dashboard;
use super::system;
use crate::apply::{self, Applier, ApplySettings};
use crate::blueprint::{BlueprintError, Catalog};
use crate::config::{
    ApiSettings, BlueprintSettings, DatabaseSettings, OrchestratorSettings, PlatformSettings,
    SecretSettings, SettingsError,
};
use crate::db::{Db, DbError};
use crate::metrics::Metrics;
use crate::reconcile::{Orchestrator, Waker};
use crate::telemetry::error_chain;
use crate::vault::{Vault, VaultError};
use poem::endpoint::BoxEndpoint;
use poem::http::{Method, header};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests may finish after shutdown starts.
const GRACE: Duration = Duration::from_secs(10);

/// A connection that neither sends nor receives for this long is closed, so idle
/// keep-alive connections cannot pile up. Longer than an event stream's 15 s
/// keep-alive, which keeps a quiet stream's connection open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often idle rate-limiter keys are dropped.
const LIMITER_CLEANUP: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("cannot open the database")]
    Database(#[from] DbError),
    #[error("cannot load the blueprints")]
    Blueprints(#[from] BlueprintError),
    #[error("cannot load the credential encryption key")]
    Vault(#[from] VaultError),
    #[error(
        "cannot connect to the cluster (the orchestrator needs one; `serve --no-orchestrator` runs without)"
    )]
    Cluster(#[from] apply::ConnectError),
    #[error("cannot listen on {addr}; is another process using it? choose another with {flag}")]
    Bind {
        addr: String,
        /// The setting that chose the address.
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the credential key file {} does not exist, but {sealed} stores' credentials are sealed with a key: point --secret-key-file (STOREPLANE_SECRET_KEY_FILE) at that key, restored from its backup if need be; a new key could not open them",
        path.display()
    )]
    KeyMissing {
        path: std::path::PathBuf,
        sealed: u64,
    },
    #[error("the orchestrator stopped unexpectedly; see the log above")]
    OrchestratorEnded,
    #[error("the HTTP server failed")]
    Server(#[source] std::io::Error),
}

/// Everything `storeplane serve` and `storeplane orchestrate` are configured with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub database: DatabaseSettings,
    pub secrets: SecretSettings,
    pub blueprints: BlueprintSettings,
    pub platform: PlatformSettings,
    pub orchestrator: OrchestratorSettings,
    pub api: ApiSettings,
    /// Run the orchestrator in this process (`serve` without `--no-orchestrator`).
    pub run_orchestrator: bool,
}

/// Dispatches by path: the spec, Swagger UI, metrics, the API operations, else the
/// dashboard.
struct Router {
    api: BoxEndpoint<'static, Response>,
    spec: Arc<String>,
    docs: Arc<String>,
    dashboard: Dashboard,
    state: Arc<AppState>,
}

fn get_only(req: &Request) -> Result<(), ApiError> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        Ok(())
    } else {
        Err(ApiError::new(
            poem::http::StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this endpoint is read with GET",
        )
        .with_header(header::ALLOW, "GET, HEAD"))
    }
}

impl Endpoint for Router {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path();
        match path {
            "/api/openapi.json" => {
                get_only(&req)?;
                Ok(Response::builder()
                    .content_type("application/json")
                    .header(header::CACHE_CONTROL, "no-cache")
                    .body(self.spec.as_str().to_owned()))
            }
            "/docs" | "/docs/" => {
                get_only(&req)?;
                Ok(Response::builder()
                    .content_type("text/html; charset=utf-8")
                    .body(self.docs.as_str().to_owned()))
            }
            "/metrics" if self.state.settings.metrics_listen.is_some() => Err(ApiError::not_found(
                "metrics are served on the metrics listener (--metrics-listen)",
            )
            .into()),
            "/metrics" => {
                get_only(&req)?;
                Ok(system::metrics_response(
                    &self.state.db,
                    &self.state.metrics,
                    &self.state.counted,
                )
                .await)
            }
            p if p == "/api" || p.starts_with("/api/") || p == "/health" || p == "/ready" => {
                self.api.call(req).await
            }
            _ => Ok(self.dashboard.serve(&req).await?),
        }
    }
}

/// The whole application as one endpoint, ready to serve.
pub fn app(state: Arc<AppState>) -> impl Endpoint<Output = Response> + 'static {
    let service = spec::service();
    let raw = service.spec();
    let spec = spec::spec_json();
    let docs = service.swagger_ui_html().replacen(&raw, &spec, 1);
    let routes = spec::route_templates(&spec);
    let methods = spec::route_methods(&spec);
    let api = service.data(state.clone()).boxed();
    let router = Router {
        api,
        spec: Arc::new(spec),
        docs: Arc::new(docs),
        dashboard: Dashboard::new(state.settings.dashboard_dir.clone()),
        state: state.clone(),
    };
    let edge_config = |inner_state: Option<Arc<AppState>>| EdgeConfig {
        metrics: state.metrics.clone(),
        state: inner_state,
        hsts: state.settings.hsts,
        trusted_proxies: state.settings.trusted_proxies.clone(),
        max_body_bytes: state.settings.max_body_bytes,
        routes: routes.clone(),
        methods: methods.clone(),
    };
    let origins: Vec<String> = state
        .settings
        .cors_origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    // CORS sits between the edge's halves: inside the request id, log and metrics,
    // outside the limits and the problem answers, so that its headers reach those.
    let cors = move |routes: Guarded<_>| -> BoxEndpoint<'static, Response> {
        if origins.is_empty() {
            // No origin is allowed: a browser request from another origin is refused as
            // the CORS layer refuses one not on its list (which, empty, would allow all).
            routes
                .before(|mut req: Request| async move {
                    forget_same_origin(&mut req);
                    if req.headers().contains_key(header::ORIGIN) {
                        return Err(poem::error::CorsError::OriginNotAllowed.into());
                    }
                    Ok(req)
                })
                .map_to_response()
                .boxed()
        } else {
            routes
                .with(
                    Cors::new()
                        .allow_origins(origins)
                        .allow_methods([Method::GET, Method::POST, Method::DELETE])
                        .allow_headers([
                            "authorization",
                            "content-type",
                            "last-event-id",
                            "x-request-id",
                        ])
                        .expose_headers([
                            "location",
                            "x-request-id",
                            "retry-after",
                            "ratelimit",
                            "ratelimit-policy",
                        ])
                        .max_age(600),
                )
                .before(|mut req: Request| async move {
                    forget_same_origin(&mut req);
                    Ok(req)
                })
                .map_to_response()
                .boxed()
        }
    };
    edge(router, edge_config(Some(state.clone())), cors)
}

/// Browsers send `Origin` on their own same-origin POSTs and DELETEs too; the CORS
/// layer would refuse those unless the platform's own host were listed. A request whose
/// `Origin` names the host it was sent to is not a cross-origin one: drop the header so
/// the bundled dashboard works whatever `--cors-origins` lists. (Only the host is
/// compared: behind a TLS-terminating proxy the server sees plain HTTP.)
fn forget_same_origin(req: &mut Request) {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let origin_host = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority);
    if let (Some(host), Some(origin_host)) = (host, origin_host)
        && host.eq_ignore_ascii_case(origin_host)
    {
        req.headers_mut().remove(header::ORIGIN);
    }
}

/// A server running in this process.
pub struct RunningServer {
    /// The address it listens on (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// The metrics listener's address, with `--metrics-listen`.
    pub metrics_addr: Option<SocketAddr>,
    metrics_task: Option<JoinHandle<std::io::Result<()>>>,
    stop: CancellationToken,
    state: Arc<AppState>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, ends event streams, lets in-flight requests finish
    /// (at most 10 s) and returns.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.state.shutdown.cancel();
        self.stop.cancel();
        let metrics = match self.metrics_task {
            Some(task) => joined(task.await),
            None => Ok(()),
        };
        joined(self.task.await).and(metrics)
    }
}

fn joined(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), ServeError> {
    match result {
        Ok(result) => result.map_err(ServeError::Server),
        Err(e) => Err(ServeError::Server(std::io::Error::other(e))),
    }
}

async fn bind(
    listen: &str,
    flag: &'static str,
) -> Result<(poem::listener::TcpAcceptor, SocketAddr), ServeError> {
    let acceptor = TcpListener::bind(listen.to_owned())
        .into_acceptor()
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen.to_owned(),
            flag,
            source,
        })?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or_else(|| ServeError::Bind {
            addr: listen.to_owned(),
            flag,
            source: std::io::Error::other("the listener has no address"),
        })?;
    Ok((acceptor, addr))
}

/// Serves the API on `listen` (e.g. `127.0.0.1:0`) until [`RunningServer::stop`].
pub async fn start(state: Arc<AppState>, listen: &str) -> Result<RunningServer, ServeError> {
    let (acceptor, addr) = bind(listen, "--listen").await?;
    let stop = CancellationToken::new();
    let cleanup_state = state.clone();
    let cleanup_stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LIMITER_CLEANUP);
        loop {
            tokio::select! {
                _ = tick.tick() => cleanup_state.limits.retain_recent(),
                _ = cleanup_stop.cancelled() => break,
            }
        }
    });
    let (metrics_addr, metrics_task) = match &state.settings.metrics_listen {
        Some(listen) => {
            let (acceptor, addr) = bind(listen, "--metrics-listen").await?;
            let probes = probe_endpoint(
                Probes {
                    db: state.db.clone(),
                    kube: state.kube.clone(),
                    metrics: state.metrics.clone(),
                    counted: Default::default(),
                },
                &state.settings,
            );
            let signal = stop.clone().cancelled_owned();
            let task = tokio::spawn(async move {
                poem::Server::new_with_acceptor(acceptor)
                    .run_with_graceful_shutdown(probes, signal, Some(GRACE))
                    .await
            });
            (Some(addr), Some(task))
        }
        None => (None, None),
    };
    let endpoint = app(state.clone());
    let signal = stop.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .idle_timeout(IDLE_TIMEOUT)
            .run_with_graceful_shutdown(endpoint, signal, Some(GRACE))
            .await
    });
    Ok(RunningServer {
        addr,
        metrics_addr,
        metrics_task,
        stop,
        state,
        task,
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The cluster client: required with the orchestrator; otherwise tried when
/// `KUBECONFIG` is set, for readiness only.
async fn cluster(required: bool) -> Result<Option<kube::Client>, ServeError> {
    if required {
        return Ok(Some(apply::connect().await?));
    }
    if std::env::var_os("KUBECONFIG").is_none() {
        return Ok(None);
    }
    match apply::connect().await {
        Ok(client) => Ok(Some(client)),
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "KUBECONFIG is set but no cluster client could be made; /ready will not check the cluster");
            Ok(None)
        }
    }
}

/// The credential key file's path, once it is known that loading (or creating) the key
/// there is right: a new key is made only for a database that has nothing sealed yet.
/// A key file that is missing (a mistyped path, another working directory, a volume
/// not mounted) must not be replaced by one that opens none of the stores. Checked
/// before anything else needs the cluster.
async fn key_path_checked(opts: &ServeOptions, db: &Db) -> Result<std::path::PathBuf, ServeError> {
    let path = opts.secrets.key_path(&opts.database.data_dir);
    if !path.exists() {
        let sealed = db.count_sealed_stores().await?;
        if sealed > 0 {
            return Err(ServeError::KeyMissing { path, sealed });
        }
    }
    Ok(path)
}

/// A started orchestrator task.
struct OrchestratorTask {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl OrchestratorTask {
    #[allow(clippy::too_many_arguments)]
    async fn start(
        opts: &ServeOptions,
        db: &Db,
        catalog: Arc<Catalog>,
        client: kube::Client,
        waker: &Waker,
        metrics: Metrics,
    ) -> Result<OrchestratorTask, ServeError> {
        let path = key_path_checked(opts, db).await?;
        let vault = Arc::new(Vault::load_or_create(&path)?);
        let applier = Applier::new(
            client,
            ApplySettings {
                concurrency: opts.orchestrator.apply_concurrency,
                phase_timeout: opts.orchestrator.phase_timeout,
                ..ApplySettings::default()
            },
        );
        let orchestrator = Orchestrator::new(
            db.clone(),
            catalog,
            applier,
            vault,
            opts.orchestrator.clone(),
            opts.platform.clone(),
            waker,
            metrics,
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(orchestrator.run(stop.clone()));
        Ok(OrchestratorTask { stop, task })
    }

    async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the orchestrator task ended abnormally");
        }
    }

    /// Until shutdown is asked for (`Ok(self)`, still running: stop it), or the
    /// orchestrator ends by itself — it never should; a process whose probes stay green
    /// while nothing is provisioned must exit instead, so that it is restarted (`Err`).
    async fn until_shutdown(mut self) -> Result<OrchestratorTask, ServeError> {
        tokio::select! {
            () = shutdown_signal() => Ok(self),
            ended = &mut self.task => {
                match ended {
                    Ok(()) => tracing::error!("the orchestrator stopped by itself"),
                    Err(e) => tracing::error!(error = %e, "the orchestrator task ended abnormally"),
                }
                Err(ServeError::OrchestratorEnded)
            }
        }
    }
}

/// `storeplane serve`: the API and dashboard, and the orchestrator unless
/// `run_orchestrator` is false; until SIGINT/SIGTERM. Prints one line with the URL.
/// Records the hosts of stores created before hosts were recorded (what makes a host
/// unique across stores), with this server's base domain.
async fn record_hosts(db: &Db, platform: &PlatformSettings) -> Result<(), ServeError> {
    let (filled, clashes) = db
        .fill_missing_hosts(|name, params| crate::blueprint::store_host(name, params, platform))
        .await?;
    if filled > 0 {
        tracing::info!(stores = filled, "recorded the hosts of existing stores");
    }
    for (store_id, host) in clashes {
        tracing::warn!(
            %store_id,
            host,
            "this store is served at the same host as another store; delete one of them"
        );
    }
    Ok(())
}

pub async fn run_serve(opts: ServeOptions) -> Result<(), ServeError> {
    if opts.run_orchestrator {
        opts.orchestrator.validate()?;
    }
    crate::auth::warm_up().await;
    let (db, _) = Db::open(&opts.database.url()).await?;
    record_hosts(&db, &opts.platform).await?;
    let catalog = Arc::new(Catalog::load(&opts.blueprints)?);
    let metrics = Metrics::new();
    let waker = Waker::new(db.clone());
    if opts.run_orchestrator {
        key_path_checked(&opts, &db).await?;
    }
    let client = cluster(opts.run_orchestrator).await?;
    let state = AppState::new(
        db.clone(),
        catalog.clone(),
        waker.clone(),
        metrics.clone(),
        opts.api.clone(),
        opts.platform.clone(),
        client.clone(),
    );
    // Listening first: an address in use (a common first-run mistake) fails before
    // the orchestrator has claimed any store.
    let server = start(state, &opts.api.listen).await?;
    let orchestrator = match (&client, opts.run_orchestrator) {
        (Some(client), true) => {
            match OrchestratorTask::start(&opts, &db, catalog, client.clone(), &waker, metrics)
                .await
            {
                Ok(o) => Some(o),
                Err(e) => {
                    let _ = server.stop().await;
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    announce(&server.url(), opts.run_orchestrator);
    if let Some(addr) = server.metrics_addr {
        tracing::info!("metrics on http://{addr}/metrics (with /health and /ready)");
    }
    let running = match orchestrator {
        Some(o) => o.until_shutdown().await.map(Some),
        None => {
            shutdown_signal().await;
            Ok(None)
        }
    };
    tracing::info!("shutting down: finishing in-flight requests");
    // Both drain at once, within one grace period, not one after the other.
    let (served, orchestrated) = match running {
        Ok(Some(o)) => {
            let (served, ()) = tokio::join!(server.stop(), o.stop());
            (served, Ok(()))
        }
        Ok(None) => (server.stop().await, Ok(())),
        Err(e) => (server.stop().await, Err(e)),
    };
    let _ = db.close().await;
    tracing::info!("stopped");
    orchestrated.and(served)
}

fn announce(url: &str, orchestrator: bool) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "storeplane listening on {url} (API {url}/api, docs {url}/docs{})",
        if orchestrator {
            ", orchestrator running"
        } else {
            ""
        }
    );
    let _ = out.flush();
}

/// The probe listener of `storeplane orchestrate`: `/health`, `/ready`, `/metrics`.
struct Probes {
    db: Db,
    kube: Option<kube::Client>,
    metrics: Metrics,
    counted: system::CountCache,
}

impl Endpoint for Probes {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        get_only(&req)?;
        match req.uri().path() {
            "/health" => Ok(poem::web::Json(serde_json::json!({"status": "ok"})).into_response()),
            "/ready" => {
                let ready = system::readiness(&self.db, self.kube.as_ref()).await?;
                Ok(poem::web::Json(serde_json::json!({
                    "status": ready.status,
                    "checks": ready.checks.iter().map(|c| serde_json::json!({
                        "name": c.name, "ok": c.ok, "detail": c.detail,
                    })).collect::<Vec<_>>(),
                }))
                .into_response())
            }
            "/metrics" => {
                Ok(system::metrics_response(&self.db, &self.metrics, &self.counted).await)
            }
            _ => Err(
                ApiError::not_found("the probe listener serves /health, /ready and /metrics")
                    .into(),
            ),
        }
    }
}

/// The probes behind the edge (security headers, request ids, access log; no limits).
fn probe_endpoint(
    probes: Probes,
    api: &ApiSettings,
) -> Edge<Guarded<BoxEndpoint<'static, Response>>> {
    let metrics = probes.metrics.clone();
    Edge::new(
        probes.boxed(),
        EdgeConfig {
            metrics,
            state: None,
            hsts: false,
            trusted_proxies: Vec::new(),
            max_body_bytes: api.max_body_bytes,
            routes: Default::default(),
            methods: Vec::new(),
        },
    )
}

/// `storeplane orchestrate`: the orchestrator alone, with probes on `listen`.
pub async fn run_orchestrate(opts: ServeOptions) -> Result<(), ServeError> {
    opts.orchestrator.validate()?;
    let (db, _) = Db::open(&opts.database.url()).await?;
    let catalog = Arc::new(Catalog::load(&opts.blueprints)?);
    let metrics = Metrics::new();
    let waker = Waker::new(db.clone());
    // The key before the cluster: a missing key is a mistake to fix wherever it runs.
    key_path_checked(&opts, &db).await?;
    let client = apply::connect().await?;
    // Listening first: an address in use fails before any store is claimed.
    let (acceptor, addr) = bind(&opts.api.listen, "--listen").await?;
    let orchestrator =
        OrchestratorTask::start(&opts, &db, catalog, client.clone(), &waker, metrics.clone())
            .await?;
    let probes = probe_endpoint(
        Probes {
            db: db.clone(),
            kube: Some(client),
            metrics,
            counted: Default::default(),
        },
        &opts.api,
    );
    let stop = CancellationToken::new();
    let signal = stop.clone().cancelled_owned();
    let server = tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(probes, signal, Some(GRACE))
            .await
    });
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "storeplane orchestrator running; probes on http://{addr} (/health, /ready, /metrics)"
        );
        let _ = out.flush();
    }
    let orchestrated = match orchestrator.until_shutdown().await {
        Ok(o) => {
            tracing::info!("shutting down the orchestrator");
            o.stop().await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    stop.cancel();
    let served = match server.await {
        Ok(r) => r.map_err(ServeError::Server),
        Err(e) => Err(ServeError::Server(std::io::Error::other(e))),
    };
    let _ = db.close().await;
    orchestrated.and(served)
}
