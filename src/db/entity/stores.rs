//! The `stores` table: one row per store, with the orchestrator's lease and schedule.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "stores")]
pub struct Model {
    /// UUIDv7: ids sort by creation time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub engine: String,
    pub blueprint_version: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub params: Json,
    /// `provisioning`, `ready`, `failed` or `deleting`.
    pub status: String,
    #[sea_orm(unique)]
    pub namespace: String,
    /// JSON array of `{name, url}`.
    #[sea_orm(column_type = "JsonBinary")]
    pub urls: Json,
    pub user_id: Uuid,
    pub error_message: Option<String>,
    pub generation: i64,
    pub observed_generation: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    /// Credentials sealed by `crate::vault`; never plain text.
    pub secrets_sealed: Option<String>,
    pub next_reconcile_at: Option<DateTimeUtc>,
    pub attempts: i32,
    pub provision_deadline_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Where the store is served (`crate::blueprint::store_host`); unique. `None` only
    /// for rows older than the column, until `storeplane serve` fills it in.
    #[sea_orm(unique)]
    pub host: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
