//! The vocabulary every part of Storeplane shares: store statuses, event types, apply
//! phases, the labels and annotations Storeplane puts on cluster objects, and the field
//! manager it applies with. Constants live here and nowhere else.
//!
//! This module owns names only; it must not do IO or hold business rules.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Field manager used for every server-side apply Storeplane makes.
pub const FIELD_MANAGER: &str = "storeplane";

/// `app.kubernetes.io/managed-by` value on everything Storeplane creates.
pub const MANAGED_BY: &str = "storeplane";

/// Standard and Storeplane-specific label keys.
pub mod labels {
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const NAME: &str = "app.kubernetes.io/name";
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    pub const VERSION: &str = "app.kubernetes.io/version";
    /// The store's id (a UUID); selects everything that belongs to one store.
    pub const STORE_ID: &str = "storeplane.dev/store-id";
    /// The store's name as its owner chose it.
    pub const STORE_NAME: &str = "storeplane.dev/store-name";
    /// The engine (blueprint name) the store was built from.
    pub const ENGINE: &str = "storeplane.dev/engine";
}

/// Annotation keys Storeplane writes.
pub mod annotations {
    /// Blueprint name and version that produced an object, e.g. `woocommerce@1.0.0`.
    pub const BLUEPRINT: &str = "storeplane.dev/blueprint";
    /// The apply phase an object belongs to.
    pub const PHASE: &str = "storeplane.dev/phase";
}

/// Lifecycle status of a store, as stored in the database and shown by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreStatus {
    /// Being created or updated; the orchestrator is converging it.
    Provisioning,
    /// Every object applied and ready; URLs are recorded.
    Ready,
    /// Provisioning gave up; `error_message` says why. Can be retried.
    Failed,
    /// Delete requested; the orchestrator is tearing the namespace down.
    Deleting,
}

impl StoreStatus {
    pub const ALL: [StoreStatus; 4] = [
        StoreStatus::Provisioning,
        StoreStatus::Ready,
        StoreStatus::Failed,
        StoreStatus::Deleting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreStatus::Provisioning => "provisioning",
            StoreStatus::Ready => "ready",
            StoreStatus::Failed => "failed",
            StoreStatus::Deleting => "deleting",
        }
    }
}

impl fmt::Display for StoreStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the known names of an enum in this module.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

impl FromStr for StoreStatus {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "store status",
                value: s.to_owned(),
                expected: join(StoreStatus::ALL.iter().map(|v| v.as_str())),
            })
    }
}

/// Types of entries in a store's event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// The store was requested.
    Created,
    /// The store's namespace (with quota, limits and network policy) was applied.
    NamespaceCreated,
    /// One apply phase finished and its objects are ready.
    PhaseCompleted,
    /// Every object of the store was applied.
    ResourcesApplied,
    /// An attempt failed and will be retried: a transient error (with backoff), or any
    /// error re-applying a ready store, which stays ready (at the next resync).
    RetryScheduled,
    /// Provisioning gave up; the message says which object and why.
    ProvisioningFailed,
    /// The store serves: every object is ready and its URLs are known.
    StoreReady,
    /// A drift repair re-applied objects that had changed or disappeared.
    DriftRepaired,
    /// A failed store was asked to try again.
    RetryRequested,
    /// Deletion was requested.
    Deleting,
    /// The namespace is gone; the store is removed.
    NamespaceDeleted,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        EventType::Created,
        EventType::NamespaceCreated,
        EventType::PhaseCompleted,
        EventType::ResourcesApplied,
        EventType::RetryScheduled,
        EventType::ProvisioningFailed,
        EventType::StoreReady,
        EventType::DriftRepaired,
        EventType::RetryRequested,
        EventType::Deleting,
        EventType::NamespaceDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "created",
            EventType::NamespaceCreated => "namespace_created",
            EventType::PhaseCompleted => "phase_completed",
            EventType::ResourcesApplied => "resources_applied",
            EventType::RetryScheduled => "retry_scheduled",
            EventType::ProvisioningFailed => "provisioning_failed",
            EventType::StoreReady => "store_ready",
            EventType::DriftRepaired => "drift_repaired",
            EventType::RetryRequested => "retry_requested",
            EventType::Deleting => "deleting",
            EventType::NamespaceDeleted => "namespace_deleted",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "event type",
                value: s.to_owned(),
                expected: join(EventType::ALL.iter().map(|v| v.as_str())),
            })
    }
}

/// The ordered phases a store's objects are applied in. Each phase's objects are applied
/// together and must be ready before the next phase starts. A blueprint assigns each of
/// its templates to one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Namespace, ResourceQuota, LimitRange, NetworkPolicies.
    Foundation,
    /// Secrets and ConfigMaps.
    Secrets,
    /// PersistentVolumeClaims.
    Storage,
    /// Databases and caches (StatefulSets and their Services).
    Data,
    /// Jobs that must finish before the application starts (schema migrations).
    Migrate,
    /// The application's Deployments and Services.
    Application,
    /// Jobs that run once the application is ready (installers, first admin user).
    Jobs,
    /// Ingress for the store's host.
    Ingress,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Foundation,
        Phase::Secrets,
        Phase::Storage,
        Phase::Data,
        Phase::Migrate,
        Phase::Application,
        Phase::Jobs,
        Phase::Ingress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Foundation => "foundation",
            Phase::Secrets => "secrets",
            Phase::Storage => "storage",
            Phase::Data => "data",
            Phase::Migrate => "migrate",
            Phase::Application => "application",
            Phase::Jobs => "jobs",
            Phase::Ingress => "ingress",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "phase",
                value: s.to_owned(),
                expected: join(Phase::ALL.iter().map(|v| v.as_str())),
            })
    }
}

/// Longest store name accepted. The namespace is `store-<name>-<8 hex>`, which must fit
/// the 63 characters of a DNS-1123 label: 63 - len("store-") - len("-") - 8 = 48; a few
/// characters are kept free for the component suffixes blueprints append to names.
pub const MAX_STORE_NAME_LEN: usize = 40;

/// The namespace a store lives in: `store-<name>-<last 8 hex digits of its id>`.
///
/// The last digits, because store ids are UUIDv7: their first 8 hex digits are the
/// creation time in units of about 65 s, so two stores of the same name made within a
/// minute would share a namespace; the last 32 bits are random.
pub fn store_namespace(name: &str, id: &uuid::Uuid) -> String {
    format!("store-{name}-{}", store_short_id(id))
}

/// The short form of a store id used in its namespace: the *last* 8 hex digits. Store
/// ids are UUIDv7, whose leading digits are a timestamp (equal for stores created in
/// the same minute); the trailing ones are random.
pub fn store_short_id(id: &uuid::Uuid) -> String {
    let simple = id.simple().to_string();
    simple[simple.len() - 8..].to_owned()
}

/// Why a string is not a valid store name, in words a person can act on.
pub fn validate_store_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_STORE_NAME_LEN {
        return Err(format!(
            "is {} characters long; the limit is {MAX_STORE_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "contains {c:?}; use only lowercase letters a-z, digits 0-9 and '-'"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".into());
    }
    if name.ends_with('-') {
        return Err("must end with a letter or digit".into());
    }
    Ok(())
}

fn join<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in StoreStatus::ALL {
            assert_eq!(s.as_str().parse::<StoreStatus>().unwrap(), s);
        }
        for e in EventType::ALL {
            assert_eq!(e.as_str().parse::<EventType>().unwrap(), e);
        }
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>().unwrap(), p);
        }
        let err = "nope".parse::<Phase>().unwrap_err().to_string();
        assert!(err.contains("foundation, secrets"), "{err}");
    }

    #[test]
    fn phases_are_ordered() {
        let mut sorted = Phase::ALL;
        sorted.sort();
        assert_eq!(sorted, Phase::ALL);
    }

    #[test]
    fn store_names() {
        assert!(validate_store_name("shop-1").is_ok());
        assert!(validate_store_name("").is_err());
        assert!(validate_store_name("1shop").is_err());
        assert!(validate_store_name("shop-").is_err());
        assert!(validate_store_name("Shop").unwrap_err().contains("'S'"));
        assert!(validate_store_name("a.b").is_err());
        assert!(validate_store_name(&"a".repeat(MAX_STORE_NAME_LEN + 1)).is_err());
        assert!(validate_store_name(&"a".repeat(MAX_STORE_NAME_LEN)).is_ok());
    }

    #[test]
    fn namespace_fits_a_dns_label() {
        let id = uuid::Uuid::new_v4();
        let ns = store_namespace(&"a".repeat(MAX_STORE_NAME_LEN), &id);
        assert!(ns.len() <= 63, "{ns}");
        assert!(ns.starts_with("store-aaaa"));
    }

    #[test]
    fn same_name_stores_made_together_get_different_namespaces() {
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        assert_ne!(store_namespace("shop", &a), store_namespace("shop", &b));
    }
}
