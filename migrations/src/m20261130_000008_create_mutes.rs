//! The `mutes` table: which user staff muted in which room, until when
//! (Unix milliseconds, wall clock, so a mute outlasts restarts), and who
//! muted them. One row per room and user: muting again replaces the end.
//! A row whose end has passed is no mute; deleting a room deletes its rows
//! (`whisper-store`'s `RoomCatalog::delete`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Mutes::Table)
                    .if_not_exists()
                    .col(big_integer(Mutes::RoomId))
                    .col(big_integer(Mutes::UserId))
                    .col(big_integer(Mutes::UntilMs))
                    .col(big_integer(Mutes::ByUserId))
                    // The key leads with the room: a room's mutes are read
                    // together, as one range of it.
                    .primary_key(Index::create().col(Mutes::RoomId).col(Mutes::UserId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Mutes::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Mutes {
    Table,
    RoomId,
    UserId,
    UntilMs,
    ByUserId,
}
