//! The plain structs the rest of Storeplane reads and writes through `Db`: users, tokens,
//! stores, events, and the inputs of the calls that change them. They use the shared
//! names of `crate::domain` and are separate from the SeaORM entities (`db::entity`).
//!
//! Conversions from entity rows live here; they must not do IO.

use super::entity::{api_tokens, store_events, stores, users};
use crate::domain::{self, EventType, StoreStatus};
use chrono::{DateTime, Utc};
use sea_orm::DbErr;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Store limit of an account created without one.
pub const DEFAULT_STORE_LIMIT: u32 = 10;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees and manages every store and account.
    Admin,
    /// Sees and manages its own stores.
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = domain::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(domain::UnknownName {
                what: "role",
                value: s.to_owned(),
                expected: "admin, member".into(),
            }),
        }
    }
}

/// An account. `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    /// Lower-cased.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub store_limit: u32,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("store_limit", &self.store_limit)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A new account. `email` is lower-cased on insert.
#[derive(Clone)]
pub struct NewUser {
    pub email: String,
    /// argon2id PHC string from `crate::auth::hash_password`.
    pub password_hash: String,
    pub role: Role,
    /// `None`: [`DEFAULT_STORE_LIMIT`].
    pub store_limit: Option<u32>,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .field("role", &self.role)
            .field("store_limit", &self.store_limit)
            .finish_non_exhaustive()
    }
}

/// A bearer token's record. The token itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: Uuid,
    pub user_id: Uuid,
    /// Hex SHA-256 of the token (`crate::auth::hash_token`).
    pub token_hash: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// One URL a store serves at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreUrlRecord {
    /// What it is, e.g. `storefront` or `admin`.
    pub name: String,
    pub url: String,
}

/// A store, as the database knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    /// UUIDv7: sorts by creation time.
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub engine: String,
    pub blueprint_version: String,
    pub params: serde_json::Value,
    pub status: StoreStatus,
    pub namespace: String,
    pub urls: Vec<StoreUrlRecord>,
    pub error_message: Option<String>,
    /// Bumped by every request that changes what the store should be (create: 1,
    /// delete, retry).
    pub generation: i64,
    /// The generation the orchestrator last worked on.
    pub observed_generation: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    /// Generated credentials sealed by `crate::vault::Vault`; never plain text.
    pub secrets_sealed: Option<String>,
    /// When the orchestrator should next look at the store; `None`: nothing to do.
    pub next_reconcile_at: Option<DateTime<Utc>>,
    /// Consecutive failed attempts, for backoff.
    pub attempts: u32,
    /// When provisioning of the current generation gives up. Cleared by every new
    /// generation; set by the orchestrator when it starts on one.
    pub provision_deadline_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A store to create. [`NewStore::new`] picks the id (UUIDv7) and the namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStore {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub engine: String,
    pub blueprint_version: String,
    pub params: serde_json::Value,
    pub namespace: String,
    /// Where it will be served (`crate::blueprint::store_host`), unique across stores.
    pub host: Option<String>,
}

impl NewStore {
    /// A new store with a fresh UUIDv7 and the namespace `domain::store_namespace`
    /// derives from its name and id.
    pub fn new(
        user_id: Uuid,
        name: impl Into<String>,
        engine: impl Into<String>,
        blueprint_version: impl Into<String>,
        params: serde_json::Value,
    ) -> NewStore {
        let id = Uuid::now_v7();
        let name = name.into();
        NewStore {
            id,
            user_id,
            namespace: domain::store_namespace(&name, &id),
            name,
            engine: engine.into(),
            blueprint_version: blueprint_version.into(),
            params,
            host: None,
        }
    }

    /// The same store, served at `host`.
    pub fn with_host(self, host: impl Into<String>) -> NewStore {
        NewStore {
            host: Some(host.into()),
            ..self
        }
    }
}

/// What the orchestrator records about a store it holds the lease on. `None` leaves a
/// field as it is; for nullable columns `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreUpdate {
    pub status: Option<StoreStatus>,
    pub urls: Option<Vec<StoreUrlRecord>>,
    pub error_message: Option<Option<String>>,
    pub observed_generation: Option<i64>,
    pub attempts: Option<u32>,
    pub next_reconcile_at: Option<Option<DateTime<Utc>>>,
    pub secrets_sealed: Option<Option<String>>,
    pub blueprint_version: Option<String>,
    pub provision_deadline_at: Option<Option<DateTime<Utc>>>,
    /// Apply only if the store is still at this generation, else
    /// `DbError::GenerationChanged` and nothing is written: a delete or retry request
    /// that arrived meanwhile is never overwritten.
    pub expected_generation: Option<i64>,
    /// Give the lease up in the same statement (the end of a reconcile pass). With
    /// `expected_generation` this closes the window in which a request arriving
    /// between "record" and "release" would be postponed.
    pub release_lease: bool,
}

/// An event to append to a store's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_type: EventType,
    pub message: String,
    /// Who writes it: an orchestrator's instance id; `None` for requests made through
    /// the API.
    pub actor: Option<String>,
}

impl NewEvent {
    pub fn new(event_type: EventType, message: impl Into<String>) -> NewEvent {
        NewEvent {
            event_type,
            message: message.into(),
            actor: None,
        }
    }

    /// The same event, written by `actor`.
    pub fn by(mut self, actor: &str) -> NewEvent {
        self.actor = Some(actor.to_owned());
        self
    }
}

/// One entry of a store's event log. Ids ascend in the order events were written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreEvent {
    pub id: i64,
    pub store_id: Uuid,
    pub event_type: EventType,
    pub message: String,
    /// The orchestrator instance that wrote it; `None` for API requests.
    pub actor: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Which stores to list: newest first, `limit` at most, after the keyset cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreQuery {
    /// `None`: every user's stores (admins).
    pub user_id: Option<Uuid>,
    pub status: Option<StoreStatus>,
    /// Keyset cursor: only stores with an id below this one (older), i.e. the last id
    /// of the previous page.
    pub after: Option<Uuid>,
    pub limit: u64,
}

impl Default for StoreQuery {
    fn default() -> Self {
        StoreQuery {
            user_id: None,
            status: None,
            after: None,
            limit: 50,
        }
    }
}

fn bad_value(what: &str, err: impl fmt::Display) -> DbErr {
    DbErr::Type(format!("unexpected {what} in the database: {err}"))
}

impl TryFrom<users::Model> for User {
    type Error = DbErr;
    fn try_from(m: users::Model) -> Result<Self, DbErr> {
        Ok(User {
            id: m.id,
            email: m.email,
            password_hash: m.password_hash,
            role: m.role.parse().map_err(|e| bad_value("role", e))?,
            store_limit: u32::try_from(m.store_limit).unwrap_or(0),
            created_at: m.created_at,
        })
    }
}

impl From<api_tokens::Model> for ApiToken {
    fn from(m: api_tokens::Model) -> Self {
        ApiToken {
            id: m.id,
            user_id: m.user_id,
            token_hash: m.token_hash,
            name: m.name,
            created_at: m.created_at,
            last_used_at: m.last_used_at,
            expires_at: m.expires_at,
        }
    }
}

impl TryFrom<stores::Model> for Store {
    type Error = DbErr;
    fn try_from(m: stores::Model) -> Result<Self, DbErr> {
        Ok(Store {
            id: m.id,
            user_id: m.user_id,
            name: m.name,
            engine: m.engine,
            blueprint_version: m.blueprint_version,
            params: m.params,
            status: m.status.parse().map_err(|e| bad_value("store status", e))?,
            namespace: m.namespace,
            urls: serde_json::from_value(m.urls).map_err(|e| bad_value("store urls", e))?,
            error_message: m.error_message,
            generation: m.generation,
            observed_generation: m.observed_generation,
            lease_owner: m.lease_owner,
            lease_until: m.lease_until,
            secrets_sealed: m.secrets_sealed,
            next_reconcile_at: m.next_reconcile_at,
            attempts: u32::try_from(m.attempts).unwrap_or(0),
            provision_deadline_at: m.provision_deadline_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

impl TryFrom<store_events::Model> for StoreEvent {
    type Error = DbErr;
    fn try_from(m: store_events::Model) -> Result<Self, DbErr> {
        Ok(StoreEvent {
            id: m.id,
            store_id: m.store_id,
            event_type: m
                .event_type
                .parse()
                .map_err(|e| bad_value("event type", e))?,
            message: m.message,
            actor: m.actor,
            created_at: m.created_at,
        })
    }
}
