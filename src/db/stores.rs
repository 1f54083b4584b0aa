//! Stores and their event log, as the API uses them: create (limit check, insert and
//! `created` event in one transaction), read, list, delete and retry requests.

use super::entity::{store_events, stores, users};
use super::error::unique_violation;
use super::{Backend, Db, DbError, NewEvent, NewStore, Store, StoreEvent, StoreQuery, now};
use crate::domain::{EventType, StoreStatus};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, IntoCondition};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, JoinType,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, RelationTrait, Set,
};
use uuid::Uuid;

/// Largest page the API serves. `list_stores` and `list_events` return up to one row
/// more, so that a caller asking for a full page plus one can tell whether another
/// page follows.
pub const MAX_PAGE: u64 = 1000;

impl Db {
    /// Creates a store in one transaction: checks the owner's store limit (counting
    /// every store of theirs, whatever its status), inserts the store (`provisioning`,
    /// generation 1, due now) and its `created` event.
    ///
    /// Errors: `NotFound` (no such user), `LimitReached`, `DuplicateName` (same owner,
    /// same name), `DuplicateHost` (any owner), `DuplicateNamespace`. Concurrent creates by one user are serialised
    /// on the user's row, so they never exceed the limit.
    pub async fn create_store(&self, new: NewStore) -> Result<Store, DbError> {
        Ok(self.create_store_with_event(new).await?.0)
    }

    /// [`Db::create_store`], also returning the `created` event it wrote, so that a
    /// caller can answer with both without reading them back.
    pub async fn create_store_with_event(
        &self,
        new: NewStore,
    ) -> Result<(Store, StoreEvent), DbError> {
        let txn = self.begin().await?;
        let result = self.create_store_in(&txn, new).await;
        self.finish(txn, result).await
    }

    async fn create_store_in(
        &self,
        txn: &DatabaseTransaction,
        new: NewStore,
    ) -> Result<(Store, StoreEvent), DbError> {
        // Serialise with the user's other creates before counting.
        let user = match self.backend {
            Backend::Postgres => users::Entity::find_by_id(new.user_id)
                .lock_exclusive()
                .one(txn)
                .await
                .map_err(self.e())?,
            Backend::Sqlite => {
                // A write first: SQLite takes the database's write lock now (waiting
                // on busy_timeout) rather than failing to upgrade a read later.
                users::Entity::update_many()
                    .col_expr(
                        users::Column::StoreLimit,
                        Expr::col(users::Column::StoreLimit).into(),
                    )
                    .filter(users::Column::Id.eq(new.user_id))
                    .exec(txn)
                    .await
                    .map_err(self.e())?;
                users::Entity::find_by_id(new.user_id)
                    .one(txn)
                    .await
                    .map_err(self.e())?
            }
        };
        let Some(user) = user else {
            return Err(DbError::NotFound);
        };
        // A name of the owner's own is the clearer answer than the host it implies
        // (which the insert would report first on SQLite), and than the limit: a
        // client that sends its create again after losing the first answer learns
        // that the store exists, not that it has no room for another.
        let same_name = stores::Entity::find()
            .filter(stores::Column::UserId.eq(new.user_id))
            .filter(stores::Column::Name.eq(new.name.as_str()))
            .count(txn)
            .await
            .map_err(self.e())?;
        if same_name > 0 {
            return Err(DbError::DuplicateName { name: new.name });
        }
        let limit = u32::try_from(user.store_limit).unwrap_or(0);
        let count = stores::Entity::find()
            .filter(stores::Column::UserId.eq(new.user_id))
            .count(txn)
            .await
            .map_err(self.e())?;
        if count >= u64::from(limit) {
            return Err(DbError::LimitReached { limit });
        }

        let now = now();
        let model = stores::ActiveModel {
            id: Set(new.id),
            name: Set(new.name.clone()),
            engine: Set(new.engine.clone()),
            blueprint_version: Set(new.blueprint_version.clone()),
            params: Set(new.params),
            status: Set(StoreStatus::Provisioning.as_str().to_owned()),
            namespace: Set(new.namespace.clone()),
            urls: Set(serde_json::Value::Array(Vec::new())),
            user_id: Set(new.user_id),
            error_message: Set(None),
            generation: Set(1),
            observed_generation: Set(0),
            lease_owner: Set(None),
            lease_until: Set(None),
            secrets_sealed: Set(None),
            next_reconcile_at: Set(Some(now)),
            attempts: Set(0),
            provision_deadline_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            host: Set(new.host.clone()),
        };
        let row = model
            .insert(txn)
            .await
            .map_err(|e| match unique_violation(&e) {
                Some(msg) if msg.contains("host") => DbError::DuplicateHost {
                    host: new.host.clone().unwrap_or_default(),
                },
                // Check "namespace" first: it contains "name".
                Some(msg) if msg.contains("namespace") => DbError::DuplicateNamespace {
                    namespace: new.namespace.clone(),
                },
                Some(msg) if msg.contains("name") => DbError::DuplicateName {
                    name: new.name.clone(),
                },
                _ => self.e()(e),
            })?;
        let created = insert_event(
            self,
            txn,
            new.id,
            &NewEvent::new(
                EventType::Created,
                format!(
                    "store requested: engine {} (blueprint {})",
                    new.engine, new.blueprint_version
                ),
            ),
            now,
        )
        .await?;
        Ok((Store::try_from(row).map_err(DbError::Query)?, created))
    }

    /// Records the host of every store created before hosts were recorded, as
    /// `host_of(name, params)` gives it. A host another store already holds is left
    /// unrecorded (and reported): those two stores share an address until one is
    /// deleted. Returns how many hosts were recorded, and the stores left without one.
    pub async fn fill_missing_hosts(
        &self,
        host_of: impl Fn(&str, &serde_json::Value) -> String,
    ) -> Result<(usize, Vec<(Uuid, String)>), DbError> {
        let rows = stores::Entity::find()
            .filter(stores::Column::Host.is_null())
            .all(&self.conn)
            .await
            .map_err(self.e())?;
        let (mut filled, mut clashes) = (0, Vec::new());
        for row in rows {
            let host = host_of(&row.name, &row.params);
            let result = stores::Entity::update_many()
                .col_expr(stores::Column::Host, Expr::value(host.clone()))
                .filter(stores::Column::Id.eq(row.id))
                .filter(stores::Column::Host.is_null())
                .exec(&self.conn)
                .await;
            match result {
                Ok(_) => filled += 1,
                Err(e) if unique_violation(&e).is_some() => clashes.push((row.id, host)),
                Err(e) => return Err(self.e()(e)),
            }
        }
        Ok((filled, clashes))
    }

    pub async fn get_store(&self, id: Uuid) -> Result<Option<Store>, DbError> {
        self.find_store(&self.conn, id).await
    }

    /// The store with its latest event, in one query (what `GET /api/stores/{id}`
    /// answers); with `owner`, `None` for another user's store.
    pub async fn get_store_with_latest_event(
        &self,
        id: Uuid,
        owner: Option<Uuid>,
    ) -> Result<Option<(Store, Option<StoreEvent>)>, DbError> {
        let latest = store_events::Entity::find()
            .select_only()
            .column_as(store_events::Column::Id.max(), "id")
            .filter(store_events::Column::StoreId.eq(id))
            .into_query();
        let mut select = stores::Entity::find_by_id(id)
            .select_also(store_events::Entity)
            .join(
                JoinType::LeftJoin,
                store_events::Relation::Store
                    .def()
                    .rev()
                    .on_condition(move |_, events| {
                        Expr::col((events, store_events::Column::Id))
                            .in_subquery(latest.clone())
                            .into_condition()
                    }),
            );
        if let Some(owner) = owner {
            select = select.filter(stores::Column::UserId.eq(owner));
        }
        let Some((store, event)) = select.one(&self.conn).await.map_err(self.e())? else {
            return Ok(None);
        };
        let store = Store::try_from(store).map_err(DbError::Query)?;
        let event = event
            .map(StoreEvent::try_from)
            .transpose()
            .map_err(DbError::Query)?;
        Ok(Some((store, event)))
    }

    /// The store if it belongs to `user_id`; `None` for another user's store.
    pub async fn get_user_store(&self, user_id: Uuid, id: Uuid) -> Result<Option<Store>, DbError> {
        stores::Entity::find_by_id(id)
            .filter(stores::Column::UserId.eq(user_id))
            .one(&self.conn)
            .await
            .map_err(self.e())?
            .map(Store::try_from)
            .transpose()
            .map_err(DbError::Query)
    }

    /// Stores newest first (ids are UUIDv7), filtered, from the keyset cursor `after`.
    /// `limit` is capped at [`MAX_PAGE`] + 1.
    pub async fn list_stores(&self, q: StoreQuery) -> Result<Vec<Store>, DbError> {
        let mut select = stores::Entity::find();
        if let Some(user_id) = q.user_id {
            select = select.filter(stores::Column::UserId.eq(user_id));
        }
        if let Some(status) = q.status {
            select = select.filter(stores::Column::Status.eq(status.as_str()));
        }
        if let Some(after) = q.after {
            select = select.filter(stores::Column::Id.lt(after));
        }
        select
            .order_by_desc(stores::Column::Id)
            .limit(q.limit.min(MAX_PAGE + 1))
            .all(&self.conn)
            .await
            .map_err(self.e())?
            .into_iter()
            .map(Store::try_from)
            .collect::<Result<_, _>>()
            .map_err(DbError::Query)
    }

    /// The latest event of each of these stores, in one query (for a page of stores:
    /// their current phase). Stores without events are absent from the result.
    pub async fn latest_events(&self, store_ids: &[Uuid]) -> Result<Vec<StoreEvent>, DbError> {
        if store_ids.is_empty() {
            return Ok(Vec::new());
        }
        let latest = store_events::Entity::find()
            .select_only()
            .column_as(store_events::Column::Id.max(), "id")
            .filter(store_events::Column::StoreId.is_in(store_ids.iter().copied()))
            .group_by(store_events::Column::StoreId)
            .into_query();
        let select =
            store_events::Entity::find().filter(store_events::Column::Id.in_subquery(latest));
        self.fetch_events(select).await
    }

    /// How many stores a user has, whatever their status (what the store limit counts).
    pub async fn count_user_stores(&self, user_id: Uuid) -> Result<u64, DbError> {
        stores::Entity::find()
            .filter(stores::Column::UserId.eq(user_id))
            .count(&self.conn)
            .await
            .map_err(self.e())
    }

    /// How many stores there are in each status; every status is listed, zeros too.
    pub async fn count_stores_by_status(&self) -> Result<Vec<(StoreStatus, u64)>, DbError> {
        let rows: Vec<(String, i64)> = stores::Entity::find()
            .select_only()
            .column(stores::Column::Status)
            .column_as(stores::Column::Id.count(), "n")
            .group_by(stores::Column::Status)
            .into_tuple()
            .all(&self.conn)
            .await
            .map_err(self.e())?;
        Ok(StoreStatus::ALL
            .into_iter()
            .map(|status| {
                let n = rows
                    .iter()
                    .find(|(s, _)| s == status.as_str())
                    .map(|(_, n)| u64::try_from(*n).unwrap_or(0))
                    .unwrap_or(0);
                (status, n)
            })
            .collect())
    }

    /// Asks for the store to be deleted: status `deleting`, a new generation, due now,
    /// event `deleting`. Idempotent: a store already deleting is returned unchanged.
    pub async fn request_delete(&self, id: Uuid) -> Result<Store, DbError> {
        let txn = self.begin().await?;
        let result = async {
            let now = now();
            let changed = self
                .start_over(
                    &txn,
                    id,
                    StoreStatus::Deleting,
                    stores::Column::Status.ne(StoreStatus::Deleting.as_str()),
                    now,
                )
                .await?;
            if changed == 1 {
                insert_event(
                    self,
                    &txn,
                    id,
                    &NewEvent::new(EventType::Deleting, "deletion requested"),
                    now,
                )
                .await?;
            }
            self.find_store(&txn, id).await?.ok_or(DbError::NotFound)
        }
        .await;
        self.finish(txn, result).await
    }

    /// Asks for a failed store to be provisioned again: status `provisioning`, a new
    /// generation, attempts 0, error cleared, due now, event `retry_requested`.
    /// `StatusConflict` when the store is not failed.
    pub async fn request_retry(&self, id: Uuid) -> Result<Store, DbError> {
        let txn = self.begin().await?;
        let result = async {
            let now = now();
            let changed = self
                .start_over(
                    &txn,
                    id,
                    StoreStatus::Provisioning,
                    stores::Column::Status.eq(StoreStatus::Failed.as_str()),
                    now,
                )
                .await?;
            let store = self.find_store(&txn, id).await?.ok_or(DbError::NotFound)?;
            if changed == 0 {
                return Err(DbError::StatusConflict {
                    store_id: id,
                    status: store.status,
                    hint: "only a failed store can be retried",
                });
            }
            insert_event(
                self,
                &txn,
                id,
                &NewEvent::new(EventType::RetryRequested, "retry requested"),
                now,
            )
            .await?;
            Ok(store)
        }
        .await;
        self.finish(txn, result).await
    }

    /// Starts a store over in `status`: a new generation (which stops work in flight),
    /// due now, attempts 0, no error and no provisioning deadline — if the row matches
    /// `only_if`. Returns how many rows changed (0 or 1).
    async fn start_over(
        &self,
        txn: &DatabaseTransaction,
        id: Uuid,
        status: StoreStatus,
        only_if: impl IntoCondition,
        now: DateTime<Utc>,
    ) -> Result<u64, DbError> {
        let changed = stores::Entity::update_many()
            .col_expr(stores::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                stores::Column::Generation,
                Expr::col(stores::Column::Generation).add(1),
            )
            .col_expr(stores::Column::NextReconcileAt, Expr::value(Some(now)))
            .col_expr(stores::Column::Attempts, Expr::value(0))
            .col_expr(
                stores::Column::ErrorMessage,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                stores::Column::ProvisionDeadlineAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(stores::Column::UpdatedAt, Expr::value(now))
            .filter(stores::Column::Id.eq(id))
            .filter(only_if)
            .exec(txn)
            .await
            .map_err(self.e())?;
        Ok(changed.rows_affected)
    }

    /// Appends an event to a store's log (the store need not exist any more).
    pub async fn append_event(
        &self,
        store_id: Uuid,
        event_type: EventType,
        message: &str,
    ) -> Result<StoreEvent, DbError> {
        insert_event(
            self,
            &self.conn,
            store_id,
            &NewEvent::new(event_type, message),
            now(),
        )
        .await
    }

    /// A store's events in the order they were written, after `after_id`, at most
    /// `limit` (capped at [`MAX_PAGE`] + 1).
    pub async fn list_events(
        &self,
        store_id: Uuid,
        after_id: Option<i64>,
        limit: u64,
    ) -> Result<Vec<StoreEvent>, DbError> {
        let mut select =
            store_events::Entity::find().filter(store_events::Column::StoreId.eq(store_id));
        if let Some(after) = after_id {
            select = select.filter(store_events::Column::Id.gt(after));
        }
        let select = select
            .order_by_asc(store_events::Column::Id)
            .limit(limit.min(MAX_PAGE + 1));
        self.fetch_events(select).await
    }

    /// A store's events of the given types, in the order they were written (unpaged:
    /// meant for the few types an orchestrator reads back, not for a whole log).
    pub async fn events_of_types(
        &self,
        store_id: Uuid,
        types: &[EventType],
    ) -> Result<Vec<StoreEvent>, DbError> {
        let select = store_events::Entity::find()
            .filter(store_events::Column::StoreId.eq(store_id))
            .filter(store_events::Column::EventType.is_in(types.iter().map(|t| t.as_str())))
            .order_by_asc(store_events::Column::Id);
        self.fetch_events(select).await
    }

    /// Runs an event query and decodes its rows.
    async fn fetch_events(
        &self,
        select: sea_orm::Select<store_events::Entity>,
    ) -> Result<Vec<StoreEvent>, DbError> {
        select
            .all(&self.conn)
            .await
            .map_err(self.e())?
            .into_iter()
            .map(StoreEvent::try_from)
            .collect::<Result<_, _>>()
            .map_err(DbError::Query)
    }

    pub(super) async fn find_store(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
    ) -> Result<Option<Store>, DbError> {
        stores::Entity::find_by_id(id)
            .one(conn)
            .await
            .map_err(self.e())?
            .map(Store::try_from)
            .transpose()
            .map_err(DbError::Query)
    }
}

pub(super) async fn insert_event(
    db: &Db,
    conn: &impl ConnectionTrait,
    store_id: Uuid,
    event: &NewEvent,
    at: DateTime<Utc>,
) -> Result<StoreEvent, DbError> {
    let row = store_events::ActiveModel {
        store_id: Set(store_id),
        event_type: Set(event.event_type.as_str().to_owned()),
        message: Set(event.message.clone()),
        actor: Set(event.actor.clone()),
        created_at: Set(at),
        ..Default::default()
    }
    .insert(conn)
    .await
    .map_err(db.e())?;
    StoreEvent::try_from(row).map_err(DbError::Query)
}
