//! The API's request and response objects, separate from the database models: what a
//! client sees and sends, documented for the spec (doc comments become schema text),
//! with examples. Conversions from `crate::db` models live here.
//!
//! A store's DTO never carries its sealed credentials, lease or generation internals.

use crate::db;
use crate::domain;
use chrono::{DateTime, TimeZone, Utc};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{Example, ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{Enum, Object, Union};
use serde_json::{Map, Value};
use std::borrow::Cow;
use uuid::Uuid;

/// A JSON object with any members.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JsonObject(pub Map<String, Value>);

impl Type for JsonObject {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "object".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            additional_properties: Some(Box::new(MetaSchemaRef::Inline(Box::new(MetaSchema::ANY)))),
            ..MetaSchema::new("object")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for JsonObject {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::Object(map)) => Ok(JsonObject(map)),
            Some(other) => Err(ParseError::expected_type(other)),
            None => Err(ParseError::expected_input()),
        }
    }
}

impl ToJSON for JsonObject {
    fn to_json(&self) -> Option<Value> {
        Some(Value::Object(self.0.clone()))
    }
}

/// Lifecycle status of a store.
///
/// - `provisioning`: being created (or retried); the orchestrator is converging it.
/// - `ready`: every object is applied and ready; `urls` are known.
/// - `failed`: provisioning gave up; `error_message` says why. `POST .../retry` tries
///   again.
/// - `deleting`: deletion was requested; the store disappears when its namespace is
///   gone.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum StoreStatus {
    Provisioning,
    Ready,
    Failed,
    Deleting,
}

impl From<domain::StoreStatus> for StoreStatus {
    fn from(s: domain::StoreStatus) -> Self {
        match s {
            domain::StoreStatus::Provisioning => StoreStatus::Provisioning,
            domain::StoreStatus::Ready => StoreStatus::Ready,
            domain::StoreStatus::Failed => StoreStatus::Failed,
            domain::StoreStatus::Deleting => StoreStatus::Deleting,
        }
    }
}

impl From<StoreStatus> for domain::StoreStatus {
    fn from(s: StoreStatus) -> Self {
        match s {
            StoreStatus::Provisioning => domain::StoreStatus::Provisioning,
            StoreStatus::Ready => domain::StoreStatus::Ready,
            StoreStatus::Failed => domain::StoreStatus::Failed,
            StoreStatus::Deleting => domain::StoreStatus::Deleting,
        }
    }
}

/// Kind of an entry in a store's event log.
///
/// `created` (requested), `namespace_created`, `phase_completed` (one apply phase is
/// ready), `resources_applied`, `retry_scheduled` (an attempt failed and will be
/// retried: a transient failure, or a re-apply of a ready store, which stays ready),
/// `provisioning_failed` (gave up; the message names the object and the reason),
/// `store_ready`, `drift_repaired`, `retry_requested`, `deleting`, `namespace_deleted`
/// (the store is gone).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum EventType {
    Created,
    NamespaceCreated,
    PhaseCompleted,
    ResourcesApplied,
    RetryScheduled,
    ProvisioningFailed,
    StoreReady,
    DriftRepaired,
    RetryRequested,
    Deleting,
    NamespaceDeleted,
}

impl From<domain::EventType> for EventType {
    fn from(e: domain::EventType) -> Self {
        use domain::EventType as D;
        match e {
            D::Created => EventType::Created,
            D::NamespaceCreated => EventType::NamespaceCreated,
            D::PhaseCompleted => EventType::PhaseCompleted,
            D::ResourcesApplied => EventType::ResourcesApplied,
            D::RetryScheduled => EventType::RetryScheduled,
            D::ProvisioningFailed => EventType::ProvisioningFailed,
            D::StoreReady => EventType::StoreReady,
            D::DriftRepaired => EventType::DriftRepaired,
            D::RetryRequested => EventType::RetryRequested,
            D::Deleting => EventType::Deleting,
            D::NamespaceDeleted => EventType::NamespaceDeleted,
        }
    }
}

fn example_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn example_store_id() -> Uuid {
    Uuid::from_u128(0x0197_2a3b_4c5d_7e6f_8a9b_0c1d_2e3f_4a5b)
}

/// One URL a store serves at.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(example)]
pub struct StoreUrl {
    /// What it is, e.g. `storefront` or `admin`.
    pub name: String,
    /// The absolute URL.
    pub url: String,
}

impl Example for StoreUrl {
    fn example() -> Self {
        StoreUrl {
            name: "storefront".into(),
            url: "http://demo-shop.stores.localtest.me".into(),
        }
    }
}

/// A store's latest event: its current phase, so lists can show progress without
/// another request.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(example)]
pub struct Progress {
    /// Kind of the latest event.
    #[oai(rename = "type")]
    pub kind: EventType,
    /// What happened, in words.
    pub message: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl Example for Progress {
    fn example() -> Self {
        Progress {
            kind: EventType::StoreReady,
            message: "store is ready".into(),
            at: example_time(),
        }
    }
}

/// A store: one isolated e-commerce site in a namespace of its own.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(example)]
pub struct Store {
    /// The store's id (a UUIDv7: ids sort by creation time).
    pub id: Uuid,
    /// The name its owner chose (unique per owner; a DNS label).
    pub name: String,
    /// The engine (blueprint) it is built from, e.g. `woocommerce`.
    pub engine: String,
    /// The version of the blueprint it was last provisioned with.
    pub blueprint_version: String,
    /// Lifecycle status.
    pub status: StoreStatus,
    /// The Kubernetes namespace the store lives in.
    pub namespace: String,
    /// Where the store serves (empty until it is ready).
    pub urls: Vec<StoreUrl>,
    /// Why provisioning failed (`status` = `failed`); `null` otherwise.
    pub error_message: Option<String>,
    /// The parameters as the owner gave them (blueprint defaults apply to the rest).
    pub params: JsonObject,
    /// The latest event: the store's current phase.
    pub progress: Progress,
    /// When the store was requested.
    pub created_at: DateTime<Utc>,
    /// When the store last changed.
    pub updated_at: DateTime<Utc>,
}

impl Example for Store {
    fn example() -> Self {
        let mut params = Map::new();
        params.insert("plan".into(), Value::String("small".into()));
        Store {
            id: example_store_id(),
            name: "demo-shop".into(),
            engine: "woocommerce".into(),
            blueprint_version: "1.0.0".into(),
            status: StoreStatus::Ready,
            namespace: "store-demo-shop-2e3f4a5b".into(),
            urls: vec![StoreUrl::example()],
            error_message: None,
            params: JsonObject(params),
            progress: Progress::example(),
            created_at: example_time(),
            updated_at: example_time(),
        }
    }
}

impl Store {
    /// The DTO of a store, with its latest event (`latest`) as progress.
    pub fn from_db(store: db::Store, latest: Option<&db::StoreEvent>) -> Store {
        let progress = match latest {
            Some(e) => Progress {
                kind: e.event_type.into(),
                message: e.message.clone(),
                at: e.created_at,
            },
            None => Progress {
                kind: EventType::Created,
                message: "store requested".into(),
                at: store.created_at,
            },
        };
        let params = match store.params {
            Value::Object(map) => JsonObject(map),
            _ => JsonObject::default(),
        };
        Store {
            id: store.id,
            name: store.name,
            engine: store.engine,
            blueprint_version: store.blueprint_version,
            status: store.status.into(),
            namespace: store.namespace,
            urls: store
                .urls
                .into_iter()
                .map(|u| StoreUrl {
                    name: u.name,
                    url: u.url,
                })
                .collect(),
            error_message: store.error_message,
            params,
            progress,
            created_at: store.created_at,
            updated_at: store.updated_at,
        }
    }
}

/// A request for a new store.
#[derive(Object, Debug, Clone)]
#[oai(example, deny_unknown_fields)]
pub struct CreateStoreRequest {
    /// The store's name: 1 to 40 characters, lowercase letters a-z, digits and `-`,
    /// starting with a letter and ending with a letter or digit (a DNS label). Unique
    /// among the caller's stores.
    #[oai(validator(
        min_length = 1,
        max_length = 40,
        pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
    ))]
    pub name: String,
    /// The engine: one of the names `GET /api/blueprints` lists (e.g. `woocommerce`,
    /// `medusa`).
    #[oai(validator(min_length = 1, max_length = 63))]
    pub engine: String,
    /// Parameters for the engine's blueprint, validated against the JSON Schema that
    /// `GET /api/blueprints/{engine}` returns. Omitted: the blueprint's defaults.
    pub params: Option<JsonObject>,
}

impl Example for CreateStoreRequest {
    fn example() -> Self {
        let mut params = Map::new();
        params.insert("plan".into(), Value::String("small".into()));
        CreateStoreRequest {
            name: "demo-shop".into(),
            engine: "woocommerce".into(),
            params: Some(JsonObject(params)),
        }
    }
}

/// A page of stores, newest first.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct StoreList {
    /// The stores of this page.
    pub items: Vec<Store>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<Uuid>,
}

impl Example for StoreList {
    fn example() -> Self {
        StoreList {
            items: vec![Store::example()],
            next_cursor: None,
        }
    }
}

/// One entry of a store's event log.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(example)]
pub struct Event {
    /// The event's id; ids ascend in the order events were written. Use it as `after`
    /// (or `Last-Event-ID` on the stream) to continue from here.
    pub id: i64,
    /// What kind of event it is.
    #[oai(rename = "type")]
    pub kind: EventType,
    /// What happened, in words (for failures: which object and why).
    pub message: String,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

impl Example for Event {
    fn example() -> Self {
        Event {
            id: 42,
            kind: EventType::PhaseCompleted,
            message: "phase data ready: StatefulSet/mariadb".into(),
            created_at: example_time(),
        }
    }
}

impl From<db::StoreEvent> for Event {
    fn from(e: db::StoreEvent) -> Self {
        Event {
            id: e.id,
            kind: e.event_type.into(),
            message: e.message,
            created_at: e.created_at,
        }
    }
}

/// A page of a store's events, oldest first.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct EventList {
    /// The events of this page.
    pub items: Vec<Event>,
    /// Pass as `after` to get the next page; `null` when there is nothing more yet.
    pub next_cursor: Option<i64>,
}

impl Example for EventList {
    fn example() -> Self {
        EventList {
            items: vec![Event::example()],
            next_cursor: Some(42),
        }
    }
}

/// Sent on the event stream when the store's row is gone (deleted); the stream ends
/// after it.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct StoreDeleted {
    /// The store's id.
    pub id: Uuid,
}

impl Example for StoreDeleted {
    fn example() -> Self {
        StoreDeleted {
            id: example_store_id(),
        }
    }
}

/// One message of the event stream: a new event (`event: store_event`), the store after
/// a change of status or progress (`event: store`), or the end (`event: deleted`).
#[derive(Union, Debug, Clone)]
pub enum StreamMessage {
    Event(Event),
    Store(Box<Store>),
    Deleted(StoreDeleted),
}

/// An engine a store can be built from.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct BlueprintSummary {
    /// The engine's name, used as `engine` when creating a store.
    pub engine: String,
    /// The blueprint's version.
    pub version: String,
    /// What it provisions.
    pub description: String,
    /// The sizing plans it offers (the `plan` parameter), smallest first.
    pub plans: Vec<String>,
}

impl Example for BlueprintSummary {
    fn example() -> Self {
        BlueprintSummary {
            engine: "woocommerce".into(),
            version: "1.0.0".into(),
            description: "WordPress with WooCommerce and MariaDB".into(),
            plans: vec!["small".into(), "medium".into(), "large".into()],
        }
    }
}

/// An engine with the JSON Schema of its parameters, to build a form from.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct Blueprint {
    /// The engine's name.
    pub engine: String,
    /// The blueprint's version.
    pub version: String,
    /// What it provisions.
    pub description: String,
    /// The sizing plans it offers.
    pub plans: Vec<String>,
    /// The parameters' JSON Schema (draft 2020-12) with titles, descriptions and
    /// defaults. `params` of a new store must validate against it.
    pub parameters: JsonObject,
}

impl Example for Blueprint {
    fn example() -> Self {
        let summary = BlueprintSummary::example();
        let parameters = serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "plan": {
                    "title": "Plan",
                    "description": "Size of the store.",
                    "type": "string",
                    "enum": ["small", "medium", "large"],
                    "default": "small",
                },
            },
        });
        Blueprint {
            engine: summary.engine,
            version: summary.version,
            description: summary.description,
            plans: summary.plans,
            parameters: match parameters {
                Value::Object(map) => JsonObject(map),
                _ => JsonObject::default(),
            },
        }
    }
}

/// An account's role.
///
/// - `admin`: sees and manages every store.
/// - `member`: sees and manages only their own stores.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
}

impl From<db::Role> for Role {
    fn from(r: db::Role) -> Self {
        match r {
            db::Role::Admin => Role::Admin,
            db::Role::Member => Role::Member,
        }
    }
}

/// The signed-in account.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct Me {
    /// The account's id.
    pub id: Uuid,
    /// The email address it signs in with (lower-case).
    pub email: String,
    /// Its role.
    pub role: Role,
    /// How many stores it may have at once.
    pub store_limit: u32,
    /// How many stores it has now (every status counts towards the limit).
    pub store_count: u64,
}

impl Example for Me {
    fn example() -> Self {
        Me {
            id: Uuid::from_u128(0x0197_2a3b_0000_7000_8000_0000_0000_0001),
            email: "owner@example.com".into(),
            role: Role::Member,
            store_limit: 10,
            store_count: 1,
        }
    }
}

/// Credentials to sign in with.
#[derive(Object, Clone)]
#[oai(example, deny_unknown_fields)]
pub struct LoginRequest {
    /// The account's email address (case does not matter).
    #[oai(validator(min_length = 3, max_length = 254))]
    pub email: String,
    /// The account's password.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub password: String,
}

/// Never prints the password, whoever debug-prints a request.
impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Example for LoginRequest {
    fn example() -> Self {
        LoginRequest {
            email: "owner@example.com".into(),
            password: "correct horse battery staple".into(),
        }
    }
}

/// A new session: a bearer token and the account it belongs to.
#[derive(Object, Clone)]
#[oai(example)]
pub struct Session {
    /// The bearer token: send it as `Authorization: Bearer <token>`. Shown once; only its
    /// hash is stored.
    pub token: String,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
    /// The account signed in.
    pub user: Me,
}

/// Never prints the token.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("user", &self.user)
            .finish()
    }
}

impl Example for Session {
    fn example() -> Self {
        Session {
            token: "sp_3q2-7wEXAMPLEtokenEXAMPLEtokenEXAMPLEtoken0".into(),
            expires_at: example_time(),
            user: Me::example(),
        }
    }
}

/// Liveness: the process is up.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

impl Example for Health {
    fn example() -> Self {
        Health {
            status: "ok".into(),
        }
    }
}

/// One dependency checked by readiness.
#[derive(Object, Debug, Clone)]
pub struct Check {
    /// `database` or `cluster`.
    pub name: String,
    /// Whether it answered.
    pub ok: bool,
    /// How it answered, or why not.
    pub detail: String,
}

/// Readiness: every dependency answered.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct Readiness {
    /// `ready`.
    pub status: String,
    /// What was checked.
    pub checks: Vec<Check>,
}

impl Example for Readiness {
    fn example() -> Self {
        Readiness {
            status: "ready".into(),
            checks: vec![
                Check {
                    name: "database".into(),
                    ok: true,
                    detail: "sqlite answers".into(),
                },
                Check {
                    name: "cluster".into(),
                    ok: true,
                    detail: "Kubernetes v1.36.3".into(),
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_tokens_never_debug_print() {
        let login = LoginRequest::example();
        let printed = format!("{login:?}");
        assert!(!printed.contains(&login.password), "{printed}");
        assert!(printed.contains(&login.email));
        let session = Session::example();
        let printed = format!("{session:?}");
        assert!(!printed.contains(&session.token), "{printed}");
    }
}
