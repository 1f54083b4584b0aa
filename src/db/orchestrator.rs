//! The orchestrator's queries: leases on stores (claim, renew, release), recording
//! progress under a lease, and removing a store once its namespace is gone.
//!
//! A lease is `lease_owner` + `lease_until`. Every change to it is ONE conditional
//! `UPDATE … WHERE id = ? AND <lease condition>` whose affected-row count says who won:
//! atomic on PostgreSQL under READ COMMITTED (the second writer re-evaluates the WHERE
//! clause on the row the first one committed) and on SQLite (one writer at a time).
//! Never read-then-write a lease.

use super::entity::stores;
use super::stores::insert_event;
use super::{Db, DbError, NewEvent, Store, StoreUpdate, at, now, plus};
use crate::domain::StoreStatus;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use std::time::Duration;
use uuid::Uuid;

/// Most rounds of candidates one claim reads (see [`Db::claim_due_except`]). Each round
/// claims every candidate it read (for this replica or another), so replicas racing for
/// the same stores run out of them in a few rounds.
const CLAIM_ROUNDS: usize = 10;

/// 1 for a ready store with nothing new to apply (a resync), 0 for a request: the
/// order in which due stores are claimed.
fn resync_last() -> SimpleExpr {
    Expr::case(
        Condition::all()
            .add(stores::Column::Status.eq(StoreStatus::Ready.as_str()))
            .add(
                Expr::col(stores::Column::ObservedGeneration)
                    .gte(Expr::col(stores::Column::Generation)),
            ),
        1,
    )
    .finally(0)
    .into()
}

/// No live lease at `now`: never leased, released, or expired.
fn lease_free(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(stores::Column::LeaseOwner.is_null())
        .add(stores::Column::LeaseUntil.is_null())
        .add(stores::Column::LeaseUntil.lt(now))
}

impl Db {
    /// How many stores have credentials sealed with the credential key: a key file
    /// that is missing must not be replaced by a new key while any has.
    pub async fn count_sealed_stores(&self) -> Result<u64, DbError> {
        stores::Entity::find()
            .filter(stores::Column::SecretsSealed.is_not_null())
            .count(&self.conn)
            .await
            .map_err(self.e())
    }

    /// The namespace of each of these stores that has a row (store id → namespace),
    /// read in chunks, so any number of ids is one call. For the orphan audit.
    pub async fn store_namespaces(
        &self,
        ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, String>, DbError> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let rows: Vec<(Uuid, String)> = stores::Entity::find()
                .select_only()
                .column(stores::Column::Id)
                .column(stores::Column::Namespace)
                .filter(stores::Column::Id.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(&self.conn)
                .await
                .map_err(self.e())?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// Claims up to `limit` stores that are due (`next_reconcile_at <= now`) and not
    /// leased by anyone else: requests first (stores provisioning, deleting, or ready
    /// with a newer generation to apply), then resyncs of ready stores, oldest due
    /// first within each, so a backlog of resyncs never holds up a new store or a
    /// delete. Each is claimed by its own
    /// compare-and-set, so several replicas calling this at once split the stores
    /// between them; only the stores this owner won are returned.
    pub async fn claim_due(
        &self,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Store>, DbError> {
        self.claim_due_except(owner, lease, now, limit, &[]).await
    }

    /// [`Db::claim_due`], never claiming one of `except`: the stores the caller's own
    /// workers are on. A store whose lease ran out under a worker of the caller that is
    /// still running would otherwise get a second worker alongside the first.
    ///
    /// Replicas woken together read the same oldest candidates; one that lost some of
    /// them to another replica reads the next ones, for up to ten rounds,
    /// so it does not idle with free workers while due stores wait for its next sweep.
    pub async fn claim_due_except(
        &self,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
        limit: u64,
        except: &[Uuid],
    ) -> Result<Vec<Store>, DbError> {
        let now = at(now);
        let mut won = Vec::new();
        // Every store tried in an earlier round: won (leased now), lost (leased by
        // another replica) or given back. None is a candidate again in this call.
        let mut skip: Vec<Uuid> = except.to_vec();
        for _ in 0..CLAIM_ROUNDS {
            let want = limit.saturating_sub(won.len() as u64);
            if want == 0 {
                break;
            }
            let mut query = stores::Entity::find()
                .select_only()
                .column(stores::Column::Id)
                .filter(stores::Column::NextReconcileAt.lte(now))
                .filter(lease_free(now));
            if !skip.is_empty() {
                query = query.filter(stores::Column::Id.is_not_in(skip.iter().copied()));
            }
            let candidates: Vec<Uuid> = match query
                .order_by_asc(resync_last())
                .order_by_asc(stores::Column::NextReconcileAt)
                .limit(want)
                .into_tuple()
                .all(&self.conn)
                .await
            {
                Ok(candidates) => candidates,
                Err(e) if won.is_empty() => return Err(self.e()(e)),
                Err(e) => {
                    tracing::warn!(error = %e, "claiming stopped part-way; working on the stores won");
                    break;
                }
            };
            let exhausted = (candidates.len() as u64) < want;
            let mut lost = 0usize;
            for id in candidates {
                skip.push(id);
                let due = stores::Column::NextReconcileAt.lte(now);
                // Once a store is won, an error must not drop it: its lease would sit
                // with no worker until it expired. The call ends with what it has.
                let claimed = match self.try_claim(id, owner, lease, now, Some(due)).await {
                    Ok(claimed) => claimed,
                    Err(e) if won.is_empty() => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming stopped part-way; working on the stores won");
                        return Ok(won);
                    }
                };
                if !claimed {
                    lost += 1;
                    continue;
                }
                match self.get_store(id).await {
                    Ok(Some(store)) => won.push(store),
                    Ok(None) => {} // deleted in between: there is no lease left to give back
                    Err(e) => {
                        // Claimed but unreadable (the connection failed, or a row this
                        // version cannot decode, e.g. `urls` in a newer version's shape):
                        // given back, due again one lease later, so that it neither waits
                        // out a lease with no worker nor blocks the stores behind it.
                        tracing::warn!(
                            store_id = %id, error = %e,
                            "a claimed store could not be read; released, due again in {}",
                            humantime::format_duration(lease)
                        );
                        if let Err(e) = self.release(id, owner, Some(plus(now, lease))).await {
                            tracing::warn!(store_id = %id, error = %e, "releasing it failed too; its lease expires by itself");
                        }
                    }
                }
            }
            // Another round only helps when candidates went to another replica and
            // more may be due behind them.
            if lost == 0 || exhausted {
                break;
            }
        }
        Ok(won)
    }

    /// How many stores are due for work and not leased: the orchestrators' queue.
    pub async fn count_due(&self, now: DateTime<Utc>) -> Result<u64, DbError> {
        let now = at(now);
        let n = stores::Entity::find()
            .filter(stores::Column::NextReconcileAt.lte(now))
            .filter(lease_free(now))
            .count(&self.conn)
            .await
            .map_err(self.e())?;
        Ok(n)
    }

    /// Claims one store, due or not, unless someone (this owner included) holds a live
    /// lease on it. `true`: this owner now holds it until `now + lease`.
    pub async fn claim(
        &self,
        id: Uuid,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        self.try_claim(id, owner, lease, at(now), None).await
    }

    async fn try_claim(
        &self,
        id: Uuid,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
        extra: Option<SimpleExpr>,
    ) -> Result<bool, DbError> {
        let mut update = stores::Entity::update_many()
            .col_expr(stores::Column::LeaseOwner, Expr::value(owner))
            .col_expr(stores::Column::LeaseUntil, Expr::value(plus(now, lease)))
            .filter(stores::Column::Id.eq(id))
            .filter(lease_free(now));
        if let Some(extra) = extra {
            update = update.filter(extra);
        }
        let result = update.exec(&self.conn).await.map_err(self.e())?;
        Ok(result.rows_affected == 1)
    }

    /// Extends this owner's lease to `now + lease`. `false`: the lease was lost (taken
    /// over after it expired, or the store is gone): stop working on the store.
    pub async fn renew_lease(
        &self,
        id: Uuid,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let result = stores::Entity::update_many()
            .col_expr(
                stores::Column::LeaseUntil,
                Expr::value(plus(at(now), lease)),
            )
            .filter(stores::Column::Id.eq(id))
            .filter(stores::Column::LeaseOwner.eq(owner))
            .exec(&self.conn)
            .await
            .map_err(self.e())?;
        Ok(result.rows_affected == 1)
    }

    /// Gives the lease up and schedules the next look (`None`: nothing to do until a
    /// request). `LeaseLost` when this owner did not hold it (nothing is written).
    ///
    /// A delete or retry request that arrived while the lease was held set
    /// `next_reconcile_at` to its time and bumped the generation; releasing with a later
    /// time postpones it. Prefer `record` with `expected_generation` and
    /// `release_lease`, which refuses instead.
    pub async fn release(
        &self,
        id: Uuid,
        owner: &str,
        next_reconcile_at: Option<DateTime<Utc>>,
    ) -> Result<(), DbError> {
        let result = stores::Entity::update_many()
            .col_expr(
                stores::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                stores::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                stores::Column::NextReconcileAt,
                Expr::value(next_reconcile_at.map(at)),
            )
            .filter(stores::Column::Id.eq(id))
            .filter(stores::Column::LeaseOwner.eq(owner))
            .exec(&self.conn)
            .await
            .map_err(self.e())?;
        if result.rows_affected == 1 {
            Ok(())
        } else {
            Err(DbError::LeaseLost { store_id: id })
        }
    }

    /// Records progress on a store this owner holds the lease on, in ONE transaction:
    /// the fields set in `update`, `updated_at`, and the event if any. Nothing is
    /// written when the lease is not held (`LeaseLost`) or, with
    /// `update.expected_generation`, when the generation moved on
    /// (`GenerationChanged`). Returns the store as written.
    pub async fn record(
        &self,
        id: Uuid,
        owner: &str,
        update: StoreUpdate,
        event: Option<NewEvent>,
    ) -> Result<Store, DbError> {
        self.record_events(id, owner, update, event.as_slice())
            .await
    }

    /// [`Db::record`] with several events, appended in order in the same transaction:
    /// all of them and the update, or nothing.
    pub async fn record_events(
        &self,
        id: Uuid,
        owner: &str,
        update: StoreUpdate,
        events: &[NewEvent],
    ) -> Result<Store, DbError> {
        let txn = self.begin().await?;
        let result = self.record_in(&txn, id, owner, update, events).await;
        self.finish(txn, result).await
    }

    async fn record_in(
        &self,
        txn: &DatabaseTransaction,
        id: Uuid,
        owner: &str,
        update: StoreUpdate,
        events: &[NewEvent],
    ) -> Result<Store, DbError> {
        use stores::Column as C;
        let now = now();
        // The guarded UPDATE comes first: it is the lease check, and on SQLite it takes
        // the write lock before anything is read.
        let mut stmt = stores::Entity::update_many().col_expr(C::UpdatedAt, Expr::value(now));
        if let Some(status) = update.status {
            stmt = stmt.col_expr(C::Status, Expr::value(status.as_str()));
        }
        if let Some(urls) = &update.urls {
            let json = serde_json::to_value(urls)
                .map_err(|e| DbError::Query(sea_orm::DbErr::Json(format!("store urls: {e}"))))?;
            stmt = stmt.col_expr(C::Urls, Expr::value(json));
        }
        if let Some(message) = update.error_message {
            stmt = stmt.col_expr(C::ErrorMessage, Expr::value(message));
        }
        if let Some(observed) = update.observed_generation {
            stmt = stmt.col_expr(C::ObservedGeneration, Expr::value(observed));
        }
        if let Some(attempts) = update.attempts {
            let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
            stmt = stmt.col_expr(C::Attempts, Expr::value(attempts));
        }
        if let Some(next) = update.next_reconcile_at {
            stmt = stmt.col_expr(C::NextReconcileAt, Expr::value(next.map(at)));
        }
        if let Some(sealed) = update.secrets_sealed {
            stmt = stmt.col_expr(C::SecretsSealed, Expr::value(sealed));
        }
        if let Some(version) = update.blueprint_version {
            stmt = stmt.col_expr(C::BlueprintVersion, Expr::value(version));
        }
        if let Some(deadline) = update.provision_deadline_at {
            stmt = stmt.col_expr(C::ProvisionDeadlineAt, Expr::value(deadline.map(at)));
        }
        if update.release_lease {
            stmt = stmt
                .col_expr(C::LeaseOwner, Expr::value(Option::<String>::None))
                .col_expr(C::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None));
        }
        stmt = stmt.filter(C::Id.eq(id)).filter(C::LeaseOwner.eq(owner));
        if let Some(generation) = update.expected_generation {
            stmt = stmt.filter(C::Generation.eq(generation));
        }
        let result = stmt.exec(txn).await.map_err(self.e())?;
        if result.rows_affected == 0 {
            return Err(match self.find_store(txn, id).await? {
                Some(store) if store.lease_owner.as_deref() == Some(owner) => {
                    DbError::GenerationChanged {
                        store_id: id,
                        expected: update.expected_generation.unwrap_or(store.generation),
                        actual: store.generation,
                    }
                }
                _ => DbError::LeaseLost { store_id: id },
            });
        }
        for event in events {
            insert_event(self, txn, id, event, now).await?;
        }
        self.find_store(txn, id).await?.ok_or(DbError::NotFound)
    }

    /// Removes a store whose namespace is gone, in one transaction with its final event
    /// (normally `namespace_deleted`); only with the lease (`LeaseLost` otherwise). The
    /// event log stays.
    pub async fn delete_store(
        &self,
        id: Uuid,
        owner: &str,
        event: NewEvent,
    ) -> Result<(), DbError> {
        let txn = self.begin().await?;
        let result = async {
            let deleted = stores::Entity::delete_many()
                .filter(stores::Column::Id.eq(id))
                .filter(stores::Column::LeaseOwner.eq(owner))
                .exec(&txn)
                .await
                .map_err(self.e())?;
            if deleted.rows_affected == 0 {
                return Err(DbError::LeaseLost { store_id: id });
            }
            insert_event(self, &txn, id, &event, now()).await?;
            Ok(())
        }
        .await;
        self.finish(txn, result).await
    }
}
