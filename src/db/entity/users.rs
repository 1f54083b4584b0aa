//! The `users` table: accounts with an argon2id PHC hash, a role and a store limit.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Lower-cased; unique.
    #[sea_orm(unique)]
    pub email: String,
    pub password_hash: String,
    /// `admin` or `member`.
    pub role: String,
    pub store_limit: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
