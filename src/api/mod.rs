//! The HTTP API: poem-openapi endpoints for stores, blueprints, sessions and probes;
//! bearer-token authentication; per-IP and per-account rate limits; security headers,
//! CORS, body limits and request ids; RFC 9457 problem+json errors; and the spec,
//! Swagger UI, Prometheus metrics and the dashboard's static files.
//!
//! Everything it knows about stores it reads and writes through `crate::db`, and it
//! wakes the orchestrator through `crate::reconcile::Waker`. It must not talk to the
//! cluster, except for the readiness probe (`apiserver_version`), and must never put a
//! secret (tokens, password hashes, sealed credentials) in a response or a log line.

mod auth;
mod blueprints;
mod body;
mod dto;
mod edge;
mod limits;
mod problem;
pub mod server;
mod session;
mod spec;
mod sse;
mod state;
mod static_files;
mod stores;
mod system;

pub use auth::TOKEN_CACHE_TTL;
pub use problem::{FieldError, PROBLEM_JSON, Problem};
pub use server::{RunningServer, ServeError, ServeOptions, run_orchestrate, run_serve, start};
pub use spec::spec_json;
pub use state::AppState;
