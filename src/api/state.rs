//! What every request handler shares: the database, the catalog, the orchestrator's
//! waker, metrics, settings, the optional cluster client (readiness only), the token
//! cache and the rate limiters.
//!
//! Holds handles only; no logic beyond construction.

use super::auth::TokenCache;
use super::limits::Limits;
use crate::blueprint::Catalog;
use crate::config::{ApiSettings, PlatformSettings};
use crate::db::Db;
use crate::metrics::Metrics;
use crate::reconcile::Waker;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Shared state of the API server.
pub struct AppState {
    pub db: Db,
    pub catalog: Arc<Catalog>,
    pub waker: Waker,
    pub metrics: Metrics,
    pub settings: ApiSettings,
    /// What stores are rendered with: the API checks a new store's render and host
    /// against the same settings the orchestrator uses.
    pub platform: PlatformSettings,
    /// The cluster, when one is configured: `/ready` checks that it answers. The API
    /// never uses it for anything else.
    pub kube: Option<kube::Client>,
    pub(crate) tokens: TokenCache,
    pub(crate) limits: Limits,
    pub(crate) ready: super::system::ReadyCache,
    pub(crate) counted: super::system::CountCache,
    /// Cancelled when the server shuts down: ends event streams so that the graceful
    /// shutdown does not wait for them.
    pub(crate) shutdown: CancellationToken,
}

impl AppState {
    pub fn new(
        db: Db,
        catalog: Arc<Catalog>,
        waker: Waker,
        metrics: Metrics,
        settings: ApiSettings,
        platform: PlatformSettings,
        kube: Option<kube::Client>,
    ) -> Arc<AppState> {
        let limits = Limits::new(&settings);
        Arc::new(AppState {
            db,
            catalog,
            waker,
            metrics,
            settings,
            platform,
            kube,
            tokens: TokenCache::default(),
            limits,
            ready: Default::default(),
            counted: Default::default(),
            shutdown: CancellationToken::new(),
        })
    }
}

/// The body size limit, handed to body extractors through the request.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);
