//! The message log of protocol v2: `room_logs` (one row per room with a log)
//! and `messages` (every stored message).
//!
//! Written as SQL per backend because sea-query cannot say `WITHOUT ROWID`
//! or a partial index, and both matter here: `messages` is the largest
//! table by far, and on SQLite `WITHOUT ROWID` keeps each message in the
//! primary key's b-tree once, instead of a rowid table plus a second copy of
//! `(room_id, seq)` in an index.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `room_logs`: the log's epoch (changes only when its history is cleared)
/// and the last seq ever given, which only grows, so numbering survives
/// retention, clearing and restarts.
///
/// `messages`: one row per message, keyed by `(room_id, seq)` so a page of
/// history is one range read of the key. `text` is NULL once a message is
/// deleted; `nonce` is the sender's retry key, NULL when it sent none.
///
/// The partial index finds a retried send's first copy by `(room, user,
/// nonce)`, and holds only messages that carry a nonce. It holds `ts` too,
/// so the lookup never reads the message itself: without it SQLite, which
/// keeps no statistics unless told to, preferred scanning the room's log by
/// its primary key. There is no index on `ts` alone: age retention walks
/// each room's oldest messages by seq instead.
const SQLITE_UP: &[&str] = &[
    // INTEGER PRIMARY KEY: the room id is the rowid, no separate index.
    "CREATE TABLE IF NOT EXISTS room_logs (
        room_id INTEGER PRIMARY KEY NOT NULL,
        epoch TEXT NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0
    )",
    "CREATE TABLE IF NOT EXISTS messages (
        room_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        text TEXT,
        nonce TEXT,
        PRIMARY KEY (room_id, seq)
    ) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS idx_messages_nonce
        ON messages (room_id, user_id, nonce, ts) WHERE nonce IS NOT NULL",
];

/// The same schema on PostgreSQL.
const POSTGRES_UP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS room_logs (
        room_id BIGINT PRIMARY KEY,
        epoch TEXT NOT NULL,
        last_seq BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE TABLE IF NOT EXISTS messages (
        room_id BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        ts BIGINT NOT NULL,
        user_id BIGINT NOT NULL,
        text TEXT,
        nonce TEXT,
        PRIMARY KEY (room_id, seq)
    )",
    "CREATE INDEX IF NOT EXISTS idx_messages_nonce
        ON messages (room_id, user_id, nonce, ts) WHERE nonce IS NOT NULL",
];

const DOWN: &[&str] = &[
    "DROP TABLE IF EXISTS messages",
    "DROP TABLE IF EXISTS room_logs",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            DbBackend::Sqlite => SQLITE_UP,
            DbBackend::Postgres => POSTGRES_UP,
            other => {
                return Err(DbErr::Migration(format!(
                    "the message log has no schema for {other:?}"
                )));
            }
        };
        run(manager, statements).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, DOWN).await
    }
}

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};
    use sea_orm_migration::{MigrationName, MigratorTrait};

    use crate::Migrator;

    /// The SQL SQLite keeps for `name`, as created.
    async fn schema_of(db: &impl ConnectionTrait, name: &str) -> Option<String> {
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT sql FROM sqlite_master WHERE name = ?",
                [name.into()],
            ))
            .await
            .expect("read sqlite_master")?;
        Some(row.try_get_by_index(0).expect("sql text"))
    }

    #[tokio::test]
    async fn messages_are_stored_without_rowid_and_the_migration_reverts() {
        let db = crate::connect_migrated("sqlite::memory:")
            .await
            .expect("a migrated in-memory database");
        let messages = schema_of(&db, "messages").await.expect("the table");
        assert!(messages.ends_with("WITHOUT ROWID"), "{messages}");
        let index = schema_of(&db, "idx_messages_nonce")
            .await
            .expect("the index");
        assert!(index.contains("WHERE nonce IS NOT NULL"), "{index}");

        // Revert this migration and every later one (the seed of General,
        // whose down does nothing, and the ones after it).
        crate::down_through(&db, super::Migration.name()).await;
        assert_eq!(schema_of(&db, "messages").await, None);
        assert_eq!(schema_of(&db, "room_logs").await, None);
        Migrator::up(&db, None).await.expect("apply again");
        assert!(schema_of(&db, "room_logs").await.is_some());
    }
}
