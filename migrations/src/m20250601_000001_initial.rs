//! The initial schema: accounts (`users`, `api_tokens`), stores and their event log.
//!
//! History: this file describes the tables as they were first created and must not
//! change once released; later changes are new migrations. It never imports entities.
//!
//! Conventions every later migration keeps:
//! - timestamps are `timestamp with time zone` and always written by the application
//!   (never SQL defaults such as `CURRENT_TIMESTAMP`): SQLite stores them as RFC 3339
//!   text in UTC, which only compares correctly when every value has the same shape;
//! - enumerations (`role`, `status`) are text with a CHECK constraint, their names
//!   those of `crate::domain` at the time of the migration.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    Role,
    StoreLimit,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    UserId,
    TokenHash,
    Name,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Stores {
    Table,
    Id,
    Name,
    Engine,
    BlueprintVersion,
    Params,
    Status,
    Namespace,
    Urls,
    UserId,
    ErrorMessage,
    Generation,
    ObservedGeneration,
    LeaseOwner,
    LeaseUntil,
    SecretsSealed,
    NextReconcileAt,
    Attempts,
    ProvisionDeadlineAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StoreEvents {
    Table,
    Id,
    StoreId,
    EventType,
    Message,
    Actor,
    CreatedAt,
}

const ROLES: [&str; 2] = ["admin", "member"];
const STATUSES: [&str; 4] = ["provisioning", "ready", "failed", "deleting"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(ColumnDef::new(Users::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Users::Email).text().not_null())
                    .col(ColumnDef::new(Users::PasswordHash).text().not_null())
                    .col(
                        ColumnDef::new(Users::Role)
                            .text()
                            .not_null()
                            .check(Expr::col(Users::Role).is_in(ROLES)),
                    )
                    .col(
                        ColumnDef::new(Users::StoreLimit)
                            .integer()
                            .not_null()
                            .default(10)
                            .check(Expr::col(Users::StoreLimit).gte(0)),
                    )
                    .col(
                        ColumnDef::new(Users::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_users_email")
                    .table(Users::Table)
                    .col(Users::Email)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(
                        ColumnDef::new(ApiTokens::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ApiTokens::UserId).uuid().not_null())
                    .col(ColumnDef::new(ApiTokens::TokenHash).text().not_null())
                    .col(ColumnDef::new(ApiTokens::Name).text().not_null())
                    .col(
                        ColumnDef::new(ApiTokens::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ApiTokens::LastUsedAt).timestamp_with_time_zone())
                    .col(ColumnDef::new(ApiTokens::ExpiresAt).timestamp_with_time_zone())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_tokens_user")
                            .from(ApiTokens::Table, ApiTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_api_tokens_token_hash")
                    .table(ApiTokens::Table)
                    .col(ApiTokens::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_api_tokens_user")
                    .table(ApiTokens::Table)
                    .col(ApiTokens::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Stores::Table)
                    .col(ColumnDef::new(Stores::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Stores::Name).text().not_null())
                    .col(ColumnDef::new(Stores::Engine).text().not_null())
                    .col(ColumnDef::new(Stores::BlueprintVersion).text().not_null())
                    .col(ColumnDef::new(Stores::Params).json_binary().not_null())
                    .col(
                        ColumnDef::new(Stores::Status)
                            .text()
                            .not_null()
                            .check(Expr::col(Stores::Status).is_in(STATUSES)),
                    )
                    .col(ColumnDef::new(Stores::Namespace).text().not_null())
                    .col(ColumnDef::new(Stores::Urls).json_binary().not_null())
                    .col(ColumnDef::new(Stores::UserId).uuid().not_null())
                    .col(ColumnDef::new(Stores::ErrorMessage).text())
                    .col(
                        ColumnDef::new(Stores::Generation)
                            .big_integer()
                            .not_null()
                            .default(1),
                    )
                    .col(
                        ColumnDef::new(Stores::ObservedGeneration)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Stores::LeaseOwner).text())
                    .col(ColumnDef::new(Stores::LeaseUntil).timestamp_with_time_zone())
                    .col(ColumnDef::new(Stores::SecretsSealed).text())
                    .col(ColumnDef::new(Stores::NextReconcileAt).timestamp_with_time_zone())
                    .col(
                        ColumnDef::new(Stores::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Stores::ProvisionDeadlineAt).timestamp_with_time_zone())
                    .col(
                        ColumnDef::new(Stores::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Stores::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_stores_user")
                            .from(Stores::Table, Stores::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, unique, cols) in [
            ("ux_stores_namespace", true, vec![Stores::Namespace]),
            (
                "ux_stores_user_name",
                true,
                vec![Stores::UserId, Stores::Name],
            ),
            ("ix_stores_user", false, vec![Stores::UserId]),
            ("ix_stores_status", false, vec![Stores::Status]),
            (
                "ix_stores_next_reconcile_at",
                false,
                vec![Stores::NextReconcileAt],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(Stores::Table);
            for col in cols {
                index.col(col);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(StoreEvents::Table)
                    .col(
                        ColumnDef::new(StoreEvents::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    // Deliberately not a foreign key: the event log outlives a deleted
                    // store, for audit.
                    .col(ColumnDef::new(StoreEvents::StoreId).uuid().not_null())
                    .col(ColumnDef::new(StoreEvents::EventType).text().not_null())
                    .col(ColumnDef::new(StoreEvents::Message).text().not_null())
                    // Who wrote the event: an orchestrator instance, or none for the API.
                    .col(ColumnDef::new(StoreEvents::Actor).text().null())
                    .col(
                        ColumnDef::new(StoreEvents::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_store_events_store")
                    .table(StoreEvents::Table)
                    .col(StoreEvents::StoreId)
                    .col(StoreEvents::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(StoreEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Stores::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ApiTokens::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}
