//! Accounts: users and their bearer tokens. Hashing and token generation are
//! `crate::auth`'s; this file only stores and finds what it is given.

use super::entity::{api_tokens, stores, users};
use super::error::unique_violation;
use super::{ApiToken, DEFAULT_STORE_LIMIT, Db, DbError, NewUser, Role, User, at, now};
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use std::collections::HashMap;
use uuid::Uuid;

/// What `Db::update_user` changes; `None` keeps the current value.
#[derive(Debug, Default, Clone)]
pub struct UserUpdate {
    pub role: Option<Role>,
    pub store_limit: Option<u32>,
    /// A new argon2id PHC string; setting one also revokes every token of the account.
    pub password_hash: Option<String>,
}

/// A token row to insert: only the token's hash is stored.
fn new_token(
    user_id: Uuid,
    token_hash: &str,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
) -> api_tokens::ActiveModel {
    api_tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        token_hash: Set(token_hash.to_owned()),
        name: Set(name.to_owned()),
        created_at: Set(now()),
        last_used_at: Set(None),
        expires_at: Set(expires_at.map(at)),
    }
}

/// An account after `Db::update_user`, with how many of its tokens were revoked.
#[derive(Debug)]
pub struct UpdatedUser {
    pub user: User,
    pub tokens_revoked: u64,
}

/// `last_used_at` is written at most this often per token, so that authenticating a
/// request is not a write every time.
const LAST_USED_RESOLUTION: TimeDelta = TimeDelta::seconds(60);

impl Db {
    /// Creates an account; the email is stored trimmed and lower-cased.
    /// `DbError::EmailTaken` when it exists.
    pub async fn create_user(&self, new: NewUser) -> Result<User, DbError> {
        let model = users::ActiveModel {
            id: Set(Uuid::now_v7()),
            email: Set(new.email.trim().to_lowercase()),
            password_hash: Set(new.password_hash),
            role: Set(new.role.as_str().to_owned()),
            store_limit: Set(
                i32::try_from(new.store_limit.unwrap_or(DEFAULT_STORE_LIMIT)).unwrap_or(i32::MAX),
            ),
            created_at: Set(now()),
        };
        let row = model.insert(&self.conn).await.map_err(|e| {
            if unique_violation(&e).is_some() {
                DbError::EmailTaken
            } else {
                self.e()(e)
            }
        })?;
        User::try_from(row).map_err(DbError::Query)
    }

    /// The account with this email (compared lower-cased).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, DbError> {
        users::Entity::find()
            .filter(users::Column::Email.eq(email.trim().to_lowercase()))
            .one(&self.conn)
            .await
            .map_err(self.e())?
            .map(User::try_from)
            .transpose()
            .map_err(DbError::Query)
    }

    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<User>, DbError> {
        users::Entity::find_by_id(id)
            .one(&self.conn)
            .await
            .map_err(self.e())?
            .map(User::try_from)
            .transpose()
            .map_err(DbError::Query)
    }

    /// Stores a token's hash (`crate::auth::hash_token`), never the token.
    pub async fn insert_token(
        &self,
        user_id: Uuid,
        token_hash: &str,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<ApiToken, DbError> {
        let row = new_token(user_id, token_hash, name, expires_at)
            .insert(&self.conn)
            .await
            .map_err(self.e())?;
        Ok(row.into())
    }

    /// Issues a token to an account whose password was just checked against
    /// `password_hash`, unless that password has changed (or the account gone) since it
    /// was read: a password reset revokes every token, and a sign-in whose check began
    /// before the reset must not mint one after it. `None`: changed or gone.
    ///
    /// One transaction, opened by a no-op write on the account row matching the hash
    /// checked: it waits for a reset under way (a row lock on PostgreSQL, the write lock
    /// on SQLite) and matches nothing after one, and a reset that comes after it waits
    /// for this token and revokes it too.
    pub async fn insert_token_for_password(
        &self,
        user_id: Uuid,
        password_hash: &str,
        token_hash: &str,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Option<ApiToken>, DbError> {
        let txn = self.begin().await?;
        let result = async {
            let unchanged = users::Entity::update_many()
                .col_expr(
                    users::Column::PasswordHash,
                    Expr::col(users::Column::PasswordHash).into(),
                )
                .filter(users::Column::Id.eq(user_id))
                .filter(users::Column::PasswordHash.eq(password_hash))
                .exec(&txn)
                .await
                .map_err(self.e())?
                .rows_affected
                == 1;
            if !unchanged {
                return Ok(None);
            }
            let row = new_token(user_id, token_hash, name, expires_at)
                .insert(&txn)
                .await
                .map_err(self.e())?;
            Ok(Some(row.into()))
        }
        .await;
        self.finish(txn, result).await
    }

    /// The account a token belongs to, unless the token is unknown or expired at `now`.
    /// Records the use in `last_used_at`, at most once a minute.
    pub async fn user_for_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(User, ApiToken)>, DbError> {
        let now = at(now);
        // One query for both: every authenticated request runs it.
        let Some((token, Some(user))) = api_tokens::Entity::find()
            .find_also_related(users::Entity)
            .filter(api_tokens::Column::TokenHash.eq(token_hash))
            .filter(
                Condition::any()
                    .add(api_tokens::Column::ExpiresAt.is_null())
                    .add(api_tokens::Column::ExpiresAt.gt(now)),
            )
            .one(&self.conn)
            .await
            .map_err(self.e())?
        else {
            return Ok(None);
        };
        let user = User::try_from(user).map_err(DbError::Query)?;
        let mut token = ApiToken::from(token);
        let stale = now - LAST_USED_RESOLUTION;
        if token.last_used_at.is_none_or(|t| t < stale) {
            // Conditional, so that concurrent requests write once. Bookkeeping only:
            // the token was found valid above, and a database that refuses this write
            // (a read-only PostgreSQL after a failover, a lock held too long) must not
            // turn every request into an error.
            let touched = api_tokens::Entity::update_many()
                .col_expr(api_tokens::Column::LastUsedAt, now.into())
                .filter(api_tokens::Column::Id.eq(token.id))
                .filter(
                    Condition::any()
                        .add(api_tokens::Column::LastUsedAt.is_null())
                        .add(api_tokens::Column::LastUsedAt.lt(stale)),
                )
                .exec(&self.conn)
                .await;
            match touched {
                Ok(touched) if touched.rows_affected > 0 => token.last_used_at = Some(now),
                Ok(_) => {}
                Err(err) => tracing::warn!(
                    token_id = %token.id,
                    error = %err,
                    "could not record the token's last use; the request goes on"
                ),
            }
        }
        Ok(Some((user, token)))
    }

    /// Revokes a token. `false`: there was none with this hash.
    pub async fn delete_token(&self, token_hash: &str) -> Result<bool, DbError> {
        let deleted = api_tokens::Entity::delete_many()
            .filter(api_tokens::Column::TokenHash.eq(token_hash))
            .exec(&self.conn)
            .await
            .map_err(self.e())?;
        Ok(deleted.rows_affected > 0)
    }

    /// Changes an account's role, store limit or password in one transaction. A new
    /// password revokes every token of the account (signed out everywhere, within the
    /// API's token cache lifetime). `NotFound` when there is no such account.
    pub async fn update_user(&self, id: Uuid, update: UserUpdate) -> Result<UpdatedUser, DbError> {
        let txn = self.begin().await?;
        let result = self.update_user_in(&txn, id, update).await;
        self.finish(txn, result).await
    }

    async fn update_user_in(
        &self,
        txn: &DatabaseTransaction,
        id: Uuid,
        update: UserUpdate,
    ) -> Result<UpdatedUser, DbError> {
        use users::Column as C;
        // The UPDATE first (see the module rules in `db`): on SQLite a transaction that
        // read first and then writes fails at once with SQLITE_BUSY_SNAPSHOT when
        // another writer committed in between (`busy_timeout` does not help); starting
        // with the write takes the write lock up front and waits for it instead. It
        // always sets the role (to itself when unchanged), so it is a write even when
        // nothing changes, and its row count says whether the account exists.
        let role = match update.role {
            Some(role) => Expr::value(role.as_str()),
            None => Expr::col(C::Role).into(),
        };
        let mut stmt = users::Entity::update_many().col_expr(C::Role, role);
        if let Some(limit) = update.store_limit {
            stmt = stmt.col_expr(
                C::StoreLimit,
                Expr::value(i32::try_from(limit).unwrap_or(i32::MAX)),
            );
        }
        let new_password = update.password_hash.is_some();
        if let Some(hash) = update.password_hash {
            stmt = stmt.col_expr(C::PasswordHash, Expr::value(hash));
        }
        let updated = stmt
            .filter(C::Id.eq(id))
            .exec(txn)
            .await
            .map_err(self.e())?;
        if updated.rows_affected == 0 {
            return Err(DbError::NotFound);
        }
        let tokens_revoked = if new_password {
            api_tokens::Entity::delete_many()
                .filter(api_tokens::Column::UserId.eq(id))
                .exec(txn)
                .await
                .map_err(self.e())?
                .rows_affected
        } else {
            0
        };
        let row = users::Entity::find_by_id(id)
            .one(txn)
            .await
            .map_err(self.e())?
            .ok_or(DbError::NotFound)?;
        Ok(UpdatedUser {
            user: User::try_from(row).map_err(DbError::Query)?,
            tokens_revoked,
        })
    }

    /// Every account, oldest first, each with how many stores it has.
    pub async fn list_users(&self) -> Result<Vec<(User, u64)>, DbError> {
        let rows = users::Entity::find()
            .order_by_asc(users::Column::CreatedAt)
            .order_by_asc(users::Column::Id)
            .all(&self.conn)
            .await
            .map_err(self.e())?;
        let counts: Vec<(Uuid, i64)> = stores::Entity::find()
            .select_only()
            .column(stores::Column::UserId)
            .column_as(stores::Column::Id.count(), "n")
            .group_by(stores::Column::UserId)
            .into_tuple()
            .all(&self.conn)
            .await
            .map_err(self.e())?;
        let counts: HashMap<Uuid, u64> = counts
            .into_iter()
            .map(|(id, n)| (id, u64::try_from(n).unwrap_or(0)))
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let user = User::try_from(row).map_err(DbError::Query)?;
            let n = counts.get(&user.id).copied().unwrap_or(0);
            out.push((user, n));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many account updates at once on one SQLite file, each its own transaction: none
    /// may fail with "database is locked" (a transaction that read before writing
    /// cannot wait for the write lock; SQLite refuses it at once).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_account_updates_on_sqlite_wait_for_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("storeplane.db").display()
        );
        let (db, _) = Db::open(&url).await.unwrap();
        let user = db
            .create_user(NewUser {
                email: "busy@example.test".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
                role: Role::Member,
                store_limit: Some(1),
            })
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8u32)
            .map(|task| {
                let db = db.clone();
                tokio::spawn(async move {
                    for round in 0..25u32 {
                        let update = UserUpdate {
                            store_limit: Some(task * 100 + round),
                            role: (round % 2 == 0).then_some(Role::Member),
                            password_hash: None,
                        };
                        db.update_user(user.id, update).await.map_err(|e| {
                            format!(
                                "task {task} round {round}: {}",
                                crate::telemetry::error_chain(&e)
                            )
                        })?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let missing = db.update_user(Uuid::now_v7(), UserUpdate::default()).await;
        assert!(matches!(missing, Err(DbError::NotFound)), "{missing:?}");
        let same = db
            .update_user(user.id, UserUpdate::default())
            .await
            .unwrap();
        assert_eq!(same.user.role, Role::Member);
        assert_eq!(same.tokens_revoked, 0);
    }
}
