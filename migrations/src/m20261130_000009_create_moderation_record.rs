//! The `moderation_record` table: every administration and moderation
//! action (who did what, to whom, when), kept for superusers to read.
//!
//! Names, not ids: the record must still say who did what once either
//! account is deleted, which is when it matters most.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ModerationRecord::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ModerationRecord::Id))
                    .col(big_integer(ModerationRecord::At))
                    .col(string_len(ModerationRecord::Actor, 150))
                    .col(string_len(ModerationRecord::Action, 32))
                    .col(text(ModerationRecord::Subject))
                    .col(text(ModerationRecord::Detail))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ModerationRecord::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ModerationRecord {
    Table,
    Id,
    At,
    Actor,
    Action,
    Subject,
    Detail,
}
