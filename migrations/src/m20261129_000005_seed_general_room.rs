//! A room called "General" in a database that has no rooms.
//!
//! Only staff create rooms, and a fresh install has no staff: without a
//! room, the first person to sign up lands on an empty room list with
//! nothing to do. General, open to everyone, gives them somewhere to talk
//! before anyone administers the server.
//!
//! The room goes in only while the rooms table is empty, in one
//! `INSERT ... SELECT ... WHERE NOT EXISTS`, so an install that already has
//! rooms is left as its operator made it. One whose rooms were all deleted
//! gets General on upgrade: it was as stuck as a fresh one.
//!
//! Down does nothing: by then people may have talked in General, and a room
//! is data, not schema. An operator who does not want it deletes it
//! (`whisper-manage deleteroom`, or the admin page), and it does not come
//! back, since this migration runs once.

use sea_orm_migration::prelude::*;

/// The seeded room's title.
const GENERAL: &str = "General";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let any_room = Query::select()
            .expr(Expr::val(1))
            .from(Rooms::Table)
            .to_owned();
        let general_unless_any_room = Query::select()
            .exprs([Expr::val(GENERAL), Expr::val(false)])
            .and_where(Expr::not_exists(any_room))
            .to_owned();
        let insert = Query::insert()
            .into_table(Rooms::Table)
            .columns([Rooms::Title, Rooms::StaffOnly])
            .select_from(general_unless_any_room)
            // Only a column count that differs from the select's fails.
            .map_err(|error| DbErr::Migration(error.to_string()))?
            .to_owned();
        manager.exec_stmt(insert).await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Rooms {
    Table,
    Title,
    StaffOnly,
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::MigratorTrait;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection};

    use super::*;
    use crate::Migrator;

    /// `(title, staff_only)` of every room, by id.
    async fn rooms(db: &DatabaseConnection) -> Vec<(String, bool)> {
        crate::column_pairs(db, "SELECT title, staff_only FROM rooms ORDER BY id").await
    }

    /// How many migrations come before this one, and how many after.
    fn migrations_around_the_seed() -> (u32, u32) {
        let all = Migrator::migrations();
        let before = all
            .iter()
            .position(|migration| migration.name() == Migration.name())
            .expect("the seed is registered");
        let after = all.len() - before - 1;
        let count = |n: usize| -> u32 { TryFrom::try_from(n).expect("a few migrations") };
        (count(before), count(after))
    }

    /// A database with every migration before this one applied.
    async fn migrated_up_to_the_seed() -> DatabaseConnection {
        let db = Database::connect("sqlite::memory:")
            .await
            .expect("an in-memory database");
        let (before, _) = migrations_around_the_seed();
        Migrator::up(&db, Some(before))
            .await
            .expect("earlier migrations");
        db
    }

    #[tokio::test]
    async fn a_fresh_database_gets_general_open_to_everyone() {
        let db = crate::connect_migrated("sqlite::memory:")
            .await
            .expect("migrated");
        assert_eq!(rooms(&db).await, [(GENERAL.to_owned(), false)]);
    }

    #[tokio::test]
    async fn a_database_that_has_rooms_is_left_alone() {
        let db = migrated_up_to_the_seed().await;
        let lobby = "INSERT INTO rooms (title, staff_only) VALUES ('Lobby', FALSE)";
        db.execute_unprepared(lobby).await.expect(lobby);
        Migrator::up(&db, None).await.expect("the seed");
        assert_eq!(rooms(&db).await, [("Lobby".to_owned(), false)]);
    }

    #[tokio::test]
    async fn down_keeps_general_and_up_again_adds_no_second() {
        let db = crate::connect_migrated("sqlite::memory:")
            .await
            .expect("migrated");
        let (_, after) = migrations_around_the_seed();
        Migrator::down(&db, Some(after + 1)).await.expect("down");
        assert_eq!(rooms(&db).await, [(GENERAL.to_owned(), false)]);
        Migrator::up(&db, None).await.expect("up again");
        assert_eq!(rooms(&db).await, [(GENERAL.to_owned(), false)]);
    }
}
