//! The store endpoints: list, read, create, delete, retry, the event log and its live
//! stream. Every request acts as the token's account: members see only their own
//! stores, and another account's store is a 404 exactly like a missing one (no
//! existence leak); admins see every store.
//!
//! Validation order on create: name, engine, parameters (every violation listed), then
//! the database (duplicate name 409 first, then the store limit 403 stating the limit). Changes are
//! made through `crate::db` and the orchestrator is woken through the `Waker`; nothing
//! here talks to the cluster.

use super::auth::{BearerAuth, Caller};
use super::body::{CheckBody, JsonBody};
use super::dto::{
    CreateStoreRequest, Event, EventList, Store, StoreList, StoreStatus, StreamMessage,
};
use super::problem::{ApiError, Failure, FieldError, error_set};
use super::spec::ApiTags;
use super::sse;
use super::state::AppState;
use crate::blueprint::{RenderError, own_domain, store_host};
use crate::db::{self, DbError, NewStore, StoreQuery};
use futures::stream::BoxStream;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

error_set! {
    /// Listing stores.
    ListErrors = [400, 401, 403, 429, 500, 503];
    /// Reading or deleting one store, or its events.
    ReadErrors = [400, 401, 404, 429, 500, 503];
    /// Creating a store.
    CreateErrors = [400, 401, 403, 408, 409, 413, 415, 422, 429, 500, 503];
    /// Retrying a store.
    RetryErrors = [400, 401, 404, 409, 429, 500, 503];
}

/// Default and largest page sizes.
const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;
const DEFAULT_EVENTS_PAGE: u32 = 100;
const MAX_EVENTS_PAGE: u32 = crate::db::MAX_PAGE as u32;

fn default_page() -> u32 {
    DEFAULT_PAGE
}

fn default_events_page() -> u32 {
    DEFAULT_EVENTS_PAGE
}

fn default_false() -> bool {
    false
}

impl CheckBody for CreateStoreRequest {
    fn check(value: &serde_json::Map<String, Value>) -> Vec<FieldError> {
        match value.get("name").and_then(Value::as_str) {
            Some(name) => match crate::domain::validate_store_name(name) {
                Ok(()) => Vec::new(),
                Err(reason) => vec![FieldError {
                    field: "name".into(),
                    message: reason,
                }],
            },
            None => Vec::new(),
        }
    }
}

#[derive(ApiResponse)]
pub enum ListStoresResponse {
    /// A page of stores, newest first.
    #[oai(status = 200)]
    Ok(Json<StoreList>),
}

#[derive(ApiResponse)]
pub enum GetStoreResponse {
    /// The store.
    #[oai(status = 200)]
    Ok(Json<Store>),
}

#[derive(ApiResponse)]
pub enum CreateStoreResponse {
    /// The store is accepted (`status` = `provisioning`); it becomes `ready` (or
    /// `failed`) as the orchestrator works. Follow it with `GET /api/stores/{id}`, the
    /// events, or the event stream.
    #[oai(status = 201)]
    Created(
        Json<Store>,
        /// The new store's URL, `/api/stores/{id}`.
        #[oai(header = "Location")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum AcceptedStoreResponse {
    /// Accepted: the orchestrator carries it out; the store as it is now.
    #[oai(status = 202)]
    Accepted(Json<Store>),
}

#[derive(ApiResponse)]
pub enum ListEventsResponse {
    /// A page of the store's events, oldest first.
    #[oai(status = 200)]
    Ok(Json<EventList>),
}

#[derive(ApiResponse)]
pub enum StreamEventsResponse {
    /// A `text/event-stream` that stays open: past events after the cursor, then new
    /// ones as they are written, each as `event: store_event` with `id: <event id>` and
    /// the Event as `data`; `event: store` with the Store whenever its status or
    /// progress changes; `event: deleted` (then the stream ends) when the store is
    /// gone; a comment every 15 s to keep the connection open.
    #[oai(status = 200)]
    Ok(EventStream<BoxStream<'static, StreamMessage>>),
}

/// The store if the caller may see it (their own, or any for admins); else 404.
pub(crate) async fn visible_store(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<db::Store, ApiError> {
    let store = if caller.is_admin() {
        state.db.get_store(id).await?
    } else {
        state.db.get_user_store(caller.user.id, id).await?
    };
    store.ok_or_else(|| not_found(id))
}

/// The JSON pointer of the first string or key in `value` holding a NUL character.
fn nul_at(value: &Value, at: String) -> Option<String> {
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match value {
        Value::String(s) if s.contains('\0') => Some(at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, format!("{at}/{i}"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = format!("{at}/{}", escape(k));
            if k.contains('\0') {
                Some(here)
            } else {
                nul_at(v, here)
            }
        }),
        _ => None,
    }
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("store {id} not found"))
}

/// DTOs for a page of stores, with their latest events fetched in one query.
pub(crate) async fn with_progress(
    state: &AppState,
    stores: Vec<db::Store>,
) -> Result<Vec<Store>, ApiError> {
    let ids: Vec<Uuid> = stores.iter().map(|s| s.id).collect();
    let latest: HashMap<Uuid, db::StoreEvent> = state
        .db
        .latest_events(&ids)
        .await?
        .into_iter()
        .map(|e| (e.store_id, e))
        .collect();
    Ok(stores
        .into_iter()
        .map(|s| {
            let event = latest.get(&s.id);
            Store::from_db(s, event)
        })
        .collect())
}

async fn one(state: &AppState, store: db::Store) -> Result<Store, ApiError> {
    with_progress(state, vec![store])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("a store vanished while it was converted"))
}

pub struct StoresApi;

#[OpenApi(tag = "ApiTags::Stores")]
impl StoresApi {
    /// List stores
    ///
    /// The caller's stores, newest first, one page at a time: pass `next_cursor` as
    /// `cursor` for the next page. Each store carries its latest event as `progress`.
    /// Admins may pass `all=true` to list every account's stores (members get 403).
    #[oai(path = "/api/stores", method = "get", operation_id = "listStores")]
    async fn list(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// Stores per page, 1 to 100.
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<u32>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<Uuid>>,
        /// Only stores in this status.
        status: Query<Option<StoreStatus>>,
        /// Admins only: every account's stores instead of the caller's own.
        #[oai(default = "default_false")]
        all: Query<bool>,
    ) -> Result<ListStoresResponse, Failure<ListErrors>> {
        let caller = auth.0;
        if all.0 && !caller.is_admin() {
            return Err(ApiError::forbidden(
                "admin-only",
                "only admins may list every account's stores (`all=true`); leave it out to \
                 list your own",
            )
            .into());
        }
        let limit = limit.0.clamp(1, MAX_PAGE);
        let mut stores = state
            .db
            .list_stores(StoreQuery {
                user_id: if all.0 { None } else { Some(caller.user.id) },
                status: status.0.map(Into::into),
                after: cursor.0,
                limit: u64::from(limit) + 1,
            })
            .await?;
        let more = stores.len() > limit as usize;
        stores.truncate(limit as usize);
        let next_cursor = if more {
            stores.last().map(|s| s.id)
        } else {
            None
        };
        Ok(ListStoresResponse::Ok(Json(StoreList {
            items: with_progress(&state, stores).await?,
            next_cursor,
        })))
    }

    /// Get a store
    ///
    /// One store with its status, URLs and latest event. Another account's store is a
    /// 404, like a missing one.
    #[oai(path = "/api/stores/:id", method = "get", operation_id = "getStore")]
    async fn get(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The store's id.
        id: Path<Uuid>,
    ) -> Result<GetStoreResponse, Failure<ReadErrors>> {
        let caller = auth.0;
        let owner = (!caller.is_admin()).then_some(caller.user.id);
        let (store, event) = state
            .db
            .get_store_with_latest_event(id.0, owner)
            .await?
            .ok_or_else(|| not_found(id.0))?;
        Ok(GetStoreResponse::Ok(Json(Store::from_db(
            store,
            event.as_ref(),
        ))))
    }

    /// Create a store
    ///
    /// Requests a new store of an engine. The name is checked first, then the engine,
    /// then `params` against the engine's JSON Schema (every violation is listed, the
    /// field as `params/<json pointer>`), then that the volumes fit the plan's storage
    /// quota (refused at `params/plan`). A name the caller already uses is a 409; so is
    /// a host another store is served at, whoever owns it (`host-taken`, at `name` or
    /// `params/domain`: the store's `domain`, else `<name>.<base domain>`); the
    /// platform's own hosts are refused with a 422. An account at its store limit gets
    /// a 403 stating the limit. The answer comes at once
    /// (201, `status` = `provisioning`); provisioning continues in the background.
    /// Limited per client IP (10 per 15 minutes by default).
    #[oai(path = "/api/stores", method = "post", operation_id = "createStore")]
    async fn create(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        body: JsonBody<CreateStoreRequest>,
    ) -> Result<CreateStoreResponse, Failure<CreateErrors>> {
        let caller = auth.0;
        let CreateStoreRequest {
            name,
            engine,
            params,
        } = body.0;
        let blueprint = state.catalog.get(&engine).map_err(|_| {
            ApiError::field(
                "engine",
                format!(
                    "unknown engine `{engine}`; known engines: {}",
                    state.catalog.names().join(", ")
                ),
            )
        })?;
        let params = Value::Object(params.map(|p| p.0).unwrap_or_default());
        if let Err(errors) = blueprint.validate_params(&params) {
            return Err(ApiError::validation(
                errors
                    .iter()
                    .map(|e| FieldError {
                        field: format!("params{}", e.path),
                        message: e.message.clone(),
                    })
                    .collect(),
            )
            .into());
        }
        // Valid JSON and often schema-valid, but PostgreSQL's jsonb cannot hold U+0000:
        // refused here so both backends give the same clear answer instead of a 500.
        if let Some(pointer) = nul_at(&params, String::new()) {
            return Err(ApiError::field(
                format!("params{pointer}"),
                "contains a NUL character (U+0000), which cannot be stored; remove it",
            )
            .into());
        }
        // The host: the store's own `domain`, else derived from its name. The field
        // to blame for a host that cannot be used is the one that chose it.
        let host = store_host(&name, &params, &state.platform);
        let (host_field, host_choice, other_host) = if own_domain(&params).is_some() {
            ("params/domain", "domain", "choose another domain")
        } else {
            ("name", "name", "choose another name, or set `domain`")
        };
        if state.platform.is_reserved_host(&host) {
            return Err(ApiError::field(
                host_field,
                format!(
                    "`{host}` is reserved for the platform and cannot serve a store; \
                     choose another {host_choice}"
                ),
            )
            .into());
        }
        // The plan's storage quota is only known to a render: refused here, at the
        // plan, rather than accepted and failed by the orchestrator a moment later.
        let check = {
            let catalog = state.catalog.clone();
            let platform = state.platform.clone();
            let (engine, name, params) = (engine.clone(), name.clone(), params.clone());
            tokio::task::spawn_blocking(move || {
                catalog
                    .get(&engine)
                    .map(|blueprint| blueprint.check_renders(&name, &params, &platform))
            })
            .await
            .map_err(|e| ApiError::internal(format!("render check panicked: {e}")))?
            .map_err(|e| ApiError::internal(e.to_string()))?
        };
        match check {
            Ok(()) => {}
            Err(RenderError::ExceedsPlan { plan, problems, .. }) => {
                return Err(ApiError::validation(
                    problems
                        .into_iter()
                        .map(|p| FieldError {
                            field: "params/plan".into(),
                            message: format!(
                                "plan `{plan}` is too small for these volumes: {p}; \
                                 choose smaller sizes or a larger plan"
                            ),
                        })
                        .collect(),
                )
                .into());
            }
            Err(e) if e.is_bad_input() => {
                return Err(ApiError::field("params", e.to_string()).into());
            }
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "blueprint `{engine}` cannot render these parameters: {e}"
                ))
                .into());
            }
        }
        let new = NewStore::new(caller.user.id, &name, &engine, &blueprint.version, params)
            .with_host(&host);
        let (store, created) = match state.db.create_store_with_event(new).await {
            Ok(created) => created,
            Err(DbError::DuplicateName { name }) => {
                return Err(ApiError::conflict(
                    "duplicate-name",
                    format!(
                        "you already have a store named `{name}`; choose another name or \
                         delete that store"
                    ),
                )
                .into());
            }
            Err(DbError::LimitReached { limit }) => {
                let count = state
                    .db
                    .count_user_stores(caller.user.id)
                    .await
                    .unwrap_or(u64::from(limit));
                return Err(ApiError::forbidden(
                    "store-limit-reached",
                    format!(
                        "store limit reached: you have {count} of {limit} stores; delete one \
                         or ask an admin to raise your limit"
                    ),
                )
                .into());
            }
            Err(DbError::DuplicateHost { host }) => {
                let message = format!("another store is already served at `{host}`; {other_host}");
                return Err(ApiError {
                    errors: vec![FieldError {
                        field: host_field.into(),
                        message: message.clone(),
                    }],
                    ..ApiError::conflict("host-taken", message)
                }
                .into());
            }
            Err(DbError::DuplicateNamespace { .. }) => {
                return Err(ApiError::conflict(
                    "namespace-taken",
                    "the generated namespace is taken by another store; send the request \
                     again",
                )
                .into());
            }
            Err(e) => return Err(ApiError::from(e).into()),
        };
        tracing::info!(store_id = %store.id, engine = %store.engine, "store requested");
        state.waker.wake(store.id).await;
        let location = format!("/api/stores/{}", store.id);
        // Answered from what the transaction wrote: the store exists now, and a failed
        // read-back must not turn its creation into an error (whose retry would be a
        // 409 for the store just made).
        Ok(CreateStoreResponse::Created(
            Json(Store::from_db(store, Some(&created))),
            location,
        ))
    }

    /// Delete a store
    ///
    /// Asks for the store to be deleted: it turns `deleting` at once and disappears
    /// (404) when its namespace is gone. Idempotent: deleting a store that is already
    /// `deleting` answers the same.
    #[oai(
        path = "/api/stores/:id",
        method = "delete",
        operation_id = "deleteStore"
    )]
    async fn delete(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The store's id.
        id: Path<Uuid>,
    ) -> Result<AcceptedStoreResponse, Failure<ReadErrors>> {
        let caller = auth.0;
        let store = visible_store(&state, &caller, id.0).await?;
        let store = match state.db.request_delete(store.id).await {
            Ok(store) => store,
            Err(DbError::NotFound) => return Err(not_found(id.0).into()),
            Err(e) => return Err(ApiError::from(e).into()),
        };
        tracing::info!(store_id = %store.id, "store deletion requested");
        state.waker.wake(store.id).await;
        Ok(AcceptedStoreResponse::Accepted(Json(
            one(&state, store).await?,
        )))
    }

    /// Retry a failed store
    ///
    /// Provisions a `failed` store again from the start (it turns `provisioning`). A
    /// store in any other status is a 409.
    #[oai(
        path = "/api/stores/:id/retry",
        method = "post",
        operation_id = "retryStore"
    )]
    async fn retry(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The store's id.
        id: Path<Uuid>,
    ) -> Result<AcceptedStoreResponse, Failure<RetryErrors>> {
        let caller = auth.0;
        let store = visible_store(&state, &caller, id.0).await?;
        let store = match state.db.request_retry(store.id).await {
            Ok(store) => store,
            Err(DbError::StatusConflict { status, .. }) => {
                return Err(ApiError::conflict(
                    "not-failed",
                    format!(
                        "store {} is {status}; only a failed store can be retried",
                        id.0
                    ),
                )
                .into());
            }
            Err(DbError::NotFound) => return Err(not_found(id.0).into()),
            Err(e) => return Err(ApiError::from(e).into()),
        };
        tracing::info!(store_id = %store.id, "store retry requested");
        state.waker.wake(store.id).await;
        // The retry is committed: a failed read-back of its progress must not turn it
        // into an error (whose retry would be a 409 `not-failed`).
        let answer = match one(&state, store.clone()).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(store_id = %store.id, error = %e, "retry accepted; its progress could not be read back");
                Store::from_db(store, None)
            }
        };
        Ok(AcceptedStoreResponse::Accepted(Json(answer)))
    }

    /// List a store's events
    ///
    /// The store's event log, oldest first, from after the event id `after`: what was
    /// requested, each phase applied, retries, failures (naming the object and the
    /// reason), ready, deletion.
    #[oai(
        path = "/api/stores/:id/events",
        method = "get",
        operation_id = "listStoreEvents"
    )]
    async fn events(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The store's id.
        id: Path<Uuid>,
        /// Only events with a larger id (the `next_cursor` of the previous page).
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
        /// Events per page, 1 to 1000.
        #[oai(
            default = "default_events_page",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
    ) -> Result<ListEventsResponse, Failure<ReadErrors>> {
        let caller = auth.0;
        let store = visible_store(&state, &caller, id.0).await?;
        let limit = limit.0.clamp(1, MAX_EVENTS_PAGE);
        let mut events = state
            .db
            .list_events(store.id, after.0, u64::from(limit) + 1)
            .await?;
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let next_cursor = if more {
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(ListEventsResponse::Ok(Json(EventList {
            items: events.into_iter().map(Event::from).collect(),
            next_cursor,
        })))
    }

    /// Stream a store's events
    ///
    /// Server-sent events with the store's live status: first the events after the
    /// cursor (`Last-Event-ID`, else `after`, else from the beginning), then new ones as
    /// they are written. Authenticate with the `Authorization` header (use fetch
    /// streaming; the browser's EventSource cannot send it). See the 200 response for
    /// the message types.
    #[oai(
        path = "/api/stores/:id/events/stream",
        method = "get",
        operation_id = "streamStoreEvents"
    )]
    async fn stream(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        /// The store's id.
        id: Path<Uuid>,
        /// Only events with a larger id.
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
        /// Set by a reconnecting client: the id of the last event it received (wins
        /// over `after`).
        #[oai(name = "Last-Event-ID", validator(minimum(value = "0")))]
        last_event_id: Header<Option<i64>>,
    ) -> Result<StreamEventsResponse, Failure<ReadErrors>> {
        let caller = auth.0;
        let store = visible_store(&state, &caller, id.0).await?;
        let after = last_event_id.0.or(after.0);
        let slot = state.limits.streams.acquire(caller.user.id)?;
        let stream = sse::store_stream(Arc::clone(&state), caller, store.id, after, slot);
        Ok(StreamEventsResponse::Ok(
            EventStream::new(stream)
                .keep_alive(sse::KEEP_ALIVE)
                .to_event(sse::to_sse),
        ))
    }
}
