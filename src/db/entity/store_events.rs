//! The `store_events` table: a store's append-only event log. `id` orders the events.
//! `store_id` is deliberately not a foreign key: the log outlives a deleted store.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "store_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub store_id: Uuid,
    pub event_type: String,
    pub message: String,
    pub actor: Option<String>,
    pub created_at: DateTimeUtc,
}

/// For joins only (`store_id` is no foreign key).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::stores::Entity",
        from = "Column::StoreId",
        to = "super::stores::Column::Id"
    )]
    Store,
}

impl ActiveModelBehavior for ActiveModel {}
