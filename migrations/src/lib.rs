//! Whisper's database schema, as sea-orm migrations.
//!
//! One file per migration, applied in order and recorded in the database, so
//! every node and every `whisper-manage` run agrees on the schema. Besides
//! the schema, a database with no rooms gets one room, "General", open to
//! everyone, so the first people to sign up have somewhere to talk. The server
//! applies pending migrations at start unless told not to; `whisper-manage
//! migrate` does the same by hand.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{Database, DatabaseConnection};

mod m20261126_000001_create_users;
mod m20261126_000002_create_sessions;
mod m20261126_000003_create_rooms;
mod m20261129_000004_create_messages;
mod m20261129_000005_seed_general_room;
mod m20261130_000006_add_username_key;
mod m20261130_000007_create_access_changes;
mod m20261130_000008_create_mutes;
mod m20261130_000009_create_moderation_record;

/// Every migration of the schema, in the order they apply.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_users::Migration),
            Box::new(m20261126_000002_create_sessions::Migration),
            Box::new(m20261126_000003_create_rooms::Migration),
            Box::new(m20261129_000004_create_messages::Migration),
            Box::new(m20261129_000005_seed_general_room::Migration),
            Box::new(m20261130_000006_add_username_key::Migration),
            Box::new(m20261130_000007_create_access_changes::Migration),
            Box::new(m20261130_000008_create_mutes::Migration),
            Box::new(m20261130_000009_create_moderation_record::Migration),
        ]
    }
}

pub use sea_orm_migration::MigratorTrait;

/// The rows `sql` selects, each as the pair of its two columns: how a
/// migration's test reads back what it wrote.
#[cfg(test)]
async fn column_pairs<A, B>(db: &DatabaseConnection, sql: &str) -> Vec<(A, B)>
where
    A: sea_orm_migration::sea_orm::TryGetable,
    B: sea_orm_migration::sea_orm::TryGetable,
{
    use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};
    let statement = Statement::from_string(db.get_database_backend(), sql);
    db.query_all_raw(statement)
        .await
        .expect(sql)
        .iter()
        .map(|row| {
            (
                A::try_get_by_index(row, 0).expect("the first column"),
                B::try_get_by_index(row, 1).expect("the second column"),
            )
        })
        .collect()
}

/// Reverts the migration named `name` and every later one, so a test of a
/// migration's `down` keeps working as migrations are added.
#[cfg(test)]
async fn down_through(db: &DatabaseConnection, name: impl AsRef<str>) {
    let all = Migrator::migrations();
    let this = all
        .iter()
        .position(|migration| migration.name() == name.as_ref())
        .expect("the migration is registered");
    let steps = <u32 as std::convert::TryFrom<usize>>::try_from(all.len() - this)
        .expect("a few migrations");
    Migrator::down(db, Some(steps)).await.expect("revert");
}

/// Opens the database at `url` and applies every pending migration: how a
/// test, an example or a tool that needs no connection tuning starts.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let db = whisper_migrations::connect_migrated("sqlite::memory:").await.unwrap();
/// # drop(db);
/// # });
/// ```
pub async fn connect_migrated(url: &str) -> Result<DatabaseConnection, DbErr> {
    let db = Database::connect(url).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}
