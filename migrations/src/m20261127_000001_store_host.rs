//! Every store's host (its `domain` parameter, or `<name>.<base domain>`), unique across
//! stores, so that no store can be served at another store's address. Names are only
//! unique per owner, so two owners' stores named alike would otherwise share a host.
//!
//! Rows created before this migration have no host; `storeplane serve` fills them in
//! at start-up, when it knows the base domain.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Stores {
    Table,
    Host,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Stores::Table)
                    .add_column(ColumnDef::new(Stores::Host).text())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_stores_host")
                    .table(Stores::Table)
                    .col(Stores::Host)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ux_stores_host")
                    .table(Stores::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Stores::Table)
                    .drop_column(Stores::Host)
                    .to_owned(),
            )
            .await
    }
}
