//! Probes and metrics: `GET /health` (liveness: always 200), `GET /ready` (the database
//! answers and, when a cluster is configured, its API server answers within 2 s; else a
//! 503 problem naming what is down), and `/metrics` (Prometheus; the stores-by-status
//! gauge is refreshed on each scrape so it is right without a local orchestrator).
//!
//! The readiness probe is the API's only call to the cluster.

use super::dto::{Check, Health, Readiness};
use super::problem::{ApiError, Failure, FieldError, error_set};
use super::state::AppState;
use crate::db::Db;
use crate::domain::StoreStatus;
use crate::metrics::{Metrics, StatusLabel};
use crate::telemetry::error_chain;
use poem::Response;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use std::sync::Arc;
use std::time::Duration;

use super::spec::ApiTags;

/// Longest a readiness check waits for a dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

error_set! {
    /// Readiness failures.
    ReadyErrors = [503];
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The process is up.
    #[oai(status = 200)]
    Ok(Json<Health>),
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Every dependency answered: the server can take traffic.
    #[oai(status = 200)]
    Ok(Json<Readiness>),
}

pub struct SystemApi;

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// Liveness
    ///
    /// Always 200 while the process runs; for liveness probes. Not rate limited.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Health {
            status: "ok".into(),
        }))
    }

    /// Readiness
    ///
    /// 200 when the database answers and, if this server is configured with a cluster,
    /// the Kubernetes API server answers within 2 seconds; otherwise 503 with a problem
    /// whose `errors` name each dependency that is down. For readiness probes. Not rate
    /// limited: an answer is reused for a second, however many ask.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(
        &self,
        state: Data<&Arc<AppState>>,
    ) -> Result<ReadyResponse, Failure<ReadyErrors>> {
        Ok(ReadyResponse::Ok(Json(
            state.ready.get(&state.db, state.kube.as_ref()).await?,
        )))
    }
}

/// The last readiness answer, reused for [`ReadyCache::FRESH`]: `/ready` is public and
/// not rate limited, and each check pings the database and the Kubernetes API server,
/// so a flood of probes becomes at most one check a second. Callers arriving during a
/// check wait for its answer rather than starting their own.
#[derive(Default)]
pub struct ReadyCache(
    tokio::sync::Mutex<Option<(std::time::Instant, Result<Readiness, ApiError>)>>,
);

impl ReadyCache {
    pub const FRESH: Duration = Duration::from_secs(1);

    pub async fn get(&self, db: &Db, kube: Option<&kube::Client>) -> Result<Readiness, ApiError> {
        let mut last = self.0.lock().await;
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < Self::FRESH
        {
            return answer.clone();
        }
        let answer = readiness(db, kube).await;
        *last = Some((std::time::Instant::now(), answer.clone()));
        answer
    }
}

/// Checks the database and the cluster (when given).
pub async fn readiness(db: &Db, kube: Option<&kube::Client>) -> Result<Readiness, ApiError> {
    // Both at once: a check takes one probe timeout at most, not one per dependency.
    let (database, cluster) = tokio::join!(database_check(db), async {
        match kube {
            Some(client) => Some(cluster_check(client).await),
            None => None,
        }
    });
    let checks: Vec<Check> = std::iter::once(database).chain(cluster).collect();
    verdict(checks)
}

async fn database_check(db: &Db) -> Check {
    match tokio::time::timeout(PROBE_TIMEOUT, db.ping()).await {
        Ok(Ok(())) => Check {
            name: "database".into(),
            ok: true,
            detail: format!("{} answers", db.backend()),
        },
        Ok(Err(e)) => {
            tracing::warn!(error = %error_chain(&e), "readiness: the database does not answer");
            Check {
                name: "database".into(),
                ok: false,
                detail: format!("the {} database does not answer", db.backend()),
            }
        }
        Err(_) => Check {
            name: "database".into(),
            ok: false,
            detail: format!(
                "the {} database did not answer within {} s",
                db.backend(),
                PROBE_TIMEOUT.as_secs()
            ),
        },
    }
}

async fn cluster_check(client: &kube::Client) -> Check {
    match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(info)) => Check {
            name: "cluster".into(),
            ok: true,
            detail: format!("Kubernetes {}", info.git_version),
        },
        Ok(Err(e)) => {
            tracing::warn!(error = %error_chain(&e), "readiness: the cluster does not answer");
            Check {
                name: "cluster".into(),
                ok: false,
                detail: "the Kubernetes API server does not answer".into(),
            }
        }
        Err(_) => Check {
            name: "cluster".into(),
            ok: false,
            detail: format!(
                "the Kubernetes API server did not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            ),
        },
    }
}

fn verdict(checks: Vec<Check>) -> Result<Readiness, ApiError> {
    let down: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    if down.is_empty() {
        return Ok(Readiness {
            status: "ready".into(),
            checks,
        });
    }
    let names: Vec<&str> = down.iter().map(|c| c.name.as_str()).collect();
    let mut err = ApiError::unavailable(format!("not ready: {} down", names.join(" and ")), 5);
    err.slug = "not-ready";
    err.title = "Not ready";
    err.errors = down
        .iter()
        .map(|c| FieldError {
            field: c.name.clone(),
            message: c.detail.clone(),
        })
        .collect();
    Err(err)
}

/// When the stores-by-status gauge was last counted for `/metrics`. A scrape within
/// [`CountCache::FRESH`] of that reuses the gauge: `/metrics` is public on the API
/// listener unless `--metrics-listen` moves it, and must not cost a count of every
/// store however often it is asked.
#[derive(Default)]
pub struct CountCache(tokio::sync::Mutex<Option<std::time::Instant>>);

impl CountCache {
    pub const FRESH: Duration = Duration::from_secs(1);
}

/// The Prometheus text, after refreshing the stores-by-status gauge: at most once per
/// [`CountCache::FRESH`], counted after the last count ended, and never by two scrapes
/// at once (a scrape during a count gets the gauge as it stands, so scrapes do not
/// queue behind a slow database).
pub async fn metrics_response(db: &Db, metrics: &Metrics, counted: &CountCache) -> Response {
    let Ok(mut last) = counted.0.try_lock() else {
        return metrics_text(metrics);
    };
    if last.is_some_and(|at| at.elapsed() < CountCache::FRESH) {
        return metrics_text(metrics);
    }
    match tokio::time::timeout(PROBE_TIMEOUT, db.count_stores_by_status()).await {
        Ok(Ok(counts)) => {
            for status in StoreStatus::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                metrics
                    .stores
                    .get_or_create(&StatusLabel {
                        status: status.as_str().into(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %error_chain(&e), "could not count stores for /metrics")
        }
        Err(_) => tracing::debug!("counting stores for /metrics timed out"),
    }
    *last = Some(std::time::Instant::now());
    drop(last);
    metrics_text(metrics)
}

fn metrics_text(metrics: &Metrics) -> Response {
    Response::builder()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics.encode())
}
