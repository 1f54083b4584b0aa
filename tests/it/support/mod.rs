//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod cluster;
pub mod db;
pub mod server;
