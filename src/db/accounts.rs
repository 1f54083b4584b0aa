//! Accounts: users and their bearer tokens. Hashing and token generation are
//! `crate::auth`'s; this file only stores and finds what it is given.

use super::entity::{api_tokens, users};
use super::error::unique_violation;
use super::{ApiToken, DEFAULT_STORE_LIMIT, Db, DbError, NewUser, User, at, now};
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

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
        let model = api_tokens::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            token_hash: Set(token_hash.to_owned()),
            name: Set(name.to_owned()),
            created_at: Set(now()),
            last_used_at: Set(None),
            expires_at: Set(expires_at.map(at)),
        };
        let row = model.insert(&self.conn).await.map_err(self.e())?;
        Ok(row.into())
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
            // Conditional, so that concurrent requests write once.
            let touched = api_tokens::Entity::update_many()
                .col_expr(api_tokens::Column::LastUsedAt, now.into())
                .filter(api_tokens::Column::Id.eq(token.id))
                .filter(
                    Condition::any()
                        .add(api_tokens::Column::LastUsedAt.is_null())
                        .add(api_tokens::Column::LastUsedAt.lt(stale)),
                )
                .exec(&self.conn)
                .await
                .map_err(self.e())?;
            if touched.rows_affected > 0 {
                token.last_used_at = Some(now);
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
}
