//! SeaORM entities: one per table, mirroring the schema the `migrations` crate creates.
//! They are the database's shape only; the rest of Storeplane sees the plain structs of
//! `db::model`, never these.
//!
//! Must not hold logic, and must not be imported by migrations (history stays frozen).

pub mod api_tokens;
pub mod store_events;
pub mod stores;
pub mod users;
