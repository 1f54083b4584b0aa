//! The platform's own manifests, without Helm: `deploy/templates/*.yaml.j2` rendered with
//! the values of an environment (`deploy/values/local.yaml`, `prod.yaml`) and the
//! operator's overrides, by the same minijinja engine as the store blueprints, every
//! object decoded into its `k8s-openapi` type (`storeplane deploy render`). Also the
//! orchestrator's RBAC rules, derived from what `apply` does ([`orchestrator_rules`]),
//! and the two Secrets of a first install ([`generate_secrets`]).
//!
//! It renders; it must not talk to a cluster or a database. See docs/deploy.md.

pub mod cli;
mod rbac;
mod render;
mod values;

pub use rbac::{
    NAMESPACE_VERBS, OBSERVED, STORE_OBJECT_VERBS, WAIT_VERBS, grants, orchestrator_rules,
    resource_of,
};
pub use render::{
    POSTGRES_PASSWORD_KEY, PlatformManifests, PlatformObject, SECRET_KEY_KEY, TEMPLATE_SUFFIX,
    generate_secrets, generate_secrets_json, generate_secrets_yaml, platform_labels, render,
    template_names,
};
pub use values::{Env, Overrides, Values};

/// Why the platform could not be rendered; one message per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    /// The values (an environment file, `--values`, `--set`) are wrong. Exit code 2.
    #[error("{}", .0.join("\n"))]
    Values(Vec<String>),
    /// A template in `deploy/templates/` is broken. Exit code 1.
    #[error("{}", .0.join("\n"))]
    Template(Vec<String>),
}

impl DeployError {
    pub fn problems(&self) -> Vec<String> {
        match self {
            DeployError::Values(p) | DeployError::Template(p) => p.clone(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            DeployError::Values(_) => 2,
            DeployError::Template(_) => 1,
        }
    }
}

/// Loads the values of `env` with `overrides` and renders the platform.
pub fn render_env(env: Env, overrides: &Overrides<'_>) -> Result<PlatformManifests, DeployError> {
    let values = Values::load(env, overrides)?;
    let overridden = !overrides.files.is_empty() || !overrides.sets.is_empty();
    render(env, &values, overridden)
}
