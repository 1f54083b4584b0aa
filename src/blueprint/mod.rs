//! Blueprints: how a store of each engine is built. A blueprint is a folder —
//! `blueprint.yaml` (metadata, parameters as JSON Schema, plans, secrets, URLs) and
//! `*.yaml.j2` minijinja templates — embedded from `templates/` or loaded from
//! `--blueprints-dir`. This module loads them ([`Catalog`]), validates parameters
//! ([`Blueprint::validate_params`]), generates credentials ([`StoreSecrets`]), renders a
//! store into typed Kubernetes objects ([`Blueprint::render`]) and checks policy
//! ([`lint`]).
//!
//! It must not touch the network, the cluster or the database, and never logs a secret.
//! See docs/blueprints.md for the authoring guide.

mod catalog;
pub mod cli;
pub mod engine;
pub mod lint;
pub mod objects;
mod params;
mod render;
pub mod resources;
mod secrets;
mod yaml;

pub use catalog::{
    Blueprint, BlueprintError, BlueprintSource, Catalog, EXCEPTION_RULES, MANIFEST_FILE, Manifest,
    PodSecurity, PodSecurityException, PodSecurityLevel, ReadinessNote, TEMPLATE_SUFFIX,
    TemplateSpec, UrlSpec, is_dns1123_label, is_dns1123_subdomain, is_label_key, is_label_value,
};
pub use lint::{LintFinding, check_rendered, lint, lint_blueprint};
pub use params::{ParamError, ParamErrors, from_assignments as params_from_assignments};
pub(crate) use render::split_documents;
pub use render::{
    Location, Refusal, RenderError, RenderInput, Rendered, RenderedObject, StoreRef, StoreUrl,
    TemplateProblem, own_domain, store_host,
};
pub use secrets::{Alphabet, SecretSpec, StoreSecrets};

/// A store id derived from its name, for reproducible renders without a database
/// (`storeplane render` without `--id`): a UUIDv8 made of the first 16 bytes of
/// SHA-256(`storeplane.dev/store/` + name).
pub fn id_from_name(name: &str) -> uuid::Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("storeplane.dev/store/{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests;
