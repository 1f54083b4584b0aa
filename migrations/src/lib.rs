//! Storeplane's schema history as SeaORM migrations. Migrations describe tables with
//! `sea-query` directly and never import the application's entities, so that old
//! migrations keep compiling as the entities change.
//!
//! Migrations only add — tables, nullable or defaulted columns, indexes — never drop or
//! rename what a released binary reads: during a rolling update (and after a rollback)
//! older binaries run on the newer schema, and start on it (`Db::open` logs the
//! migrations it does not know and carries on).

pub use sea_orm_migration::prelude::*;

mod m20250601_000001_initial;
mod m20261127_000001_store_host;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250601_000001_initial::Migration),
            Box::new(m20261127_000001_store_host::Migration),
        ]
    }
}
