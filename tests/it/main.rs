//! Storeplane's integration tests: one binary, one module per area. Tests that need a
//! cluster or a database get real ones through `support`.

mod abuse;
mod api;
mod api_spec;
mod apply;
mod blueprint_cli;
mod db;
mod deploy;
mod helm_chart;
mod reconcile;
mod support;
mod testenv;
