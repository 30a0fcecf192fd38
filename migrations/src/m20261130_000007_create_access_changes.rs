//! The `access_changes` table: changes of access made by a process that
//! reaches no server's channel layer (`whisper-manage`), recorded for every
//! server node to read and act on within a second.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AccessChanges::Table)
                    .if_not_exists()
                    .col(big_pk_auto(AccessChanges::Id))
                    .col(string_len(AccessChanges::Change, 64))
                    .col(big_integer(AccessChanges::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AccessChanges::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AccessChanges {
    Table,
    Id,
    Change,
    CreatedAt,
}
