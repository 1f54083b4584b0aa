//! Storeplane provisions isolated e-commerce stores onto Kubernetes: blueprints rendered
//! in-process (`blueprint`), applied with server-side apply (`apply`), driven to ready,
//! failed or deleted by the orchestrator (`reconcile`), persisted through SeaORM (`db`)
//! and served through a REST API and dashboard (`api`).
//!
//! The binary in `main.rs` is a thin CLI over these modules.

pub mod allocator;
pub mod api;
pub mod apply;
pub mod auth;
pub mod blueprint;
pub mod config;
pub mod db;
pub mod deploy;
pub mod domain;
pub mod metrics;
pub mod reconcile;
pub mod telemetry;
pub mod vault;
