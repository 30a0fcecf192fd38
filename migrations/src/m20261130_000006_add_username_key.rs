//! The column `users.username_key`, unique, so look-alike usernames cannot
//! both exist.
//!
//! `аlice` (with a Cyrillic а) and `alice`, or `Alice` and `alice`, are
//! different strings but one name to a reader. Each user gets the key
//! [`whisper_auth::username_key`] computes (its confusable skeleton,
//! case-folded), and a unique index on it makes the database refuse a
//! second account with the same key, even when two signups race.
//!
//! The key is computed in Rust, not SQL (neither SQLite nor PostgreSQL knows
//! Unicode's confusables), by the same function signups use, so old and new
//! rows agree. Existing rows are filled in id order. Accounts made before
//! this migration may already look alike: the oldest keeps its plain key
//! and each later one gets its key followed by `#` and its id (a character
//! no username has), so the upgrade never fails and nobody loses an account.
//! Such a suffixed key only blocks a later signup of that exact suffixed
//! form, and login is by the exact username, untouched.
//!
//! The column is `NOT NULL DEFAULT ''`: SQLite cannot add a `NOT NULL`
//! column without a default. Only `whisper-auth` writes users, and it always
//! sets the key; a row written behind its back gets `''`, and the unique
//! index refuses a second such row rather than letting it slip past.
//!
//! Down drops the index and the column.

use std::collections::HashSet;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

/// The unique index on the key.
const INDEX: &str = "users_username_key_unique";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(
                        ColumnDef::new(Users::UsernameKey)
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        fill_keys(manager).await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Users::Table)
                    .col(Users::UsernameKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Users::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::UsernameKey)
                    .to_owned(),
            )
            .await
    }
}

/// Gives every existing user its key, oldest first; a key already given
/// gets `#` and the row's id appended (see the module documentation).
async fn fill_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let select = Query::select()
        .columns([Users::Id, Users::Username])
        .from(Users::Table)
        .order_by(Users::Id, Order::Asc)
        .to_owned();
    let rows = manager.get_connection().query_all(&select).await?;
    let mut given = HashSet::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get_by_index(0)?;
        let username: String = row.try_get_by_index(1)?;
        let mut key = whisper_auth::username_key(&username);
        while given.contains(&key) {
            key = format!("{key}#{id}");
        }
        let update = Query::update()
            .table(Users::Table)
            .value(Users::UsernameKey, key.clone())
            .and_where(Expr::col(Users::Id).eq(id))
            .to_owned();
        manager.exec_stmt(update).await?;
        given.insert(key);
    }
    Ok(())
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    UsernameKey,
    #[cfg(test)]
    PasswordHash,
    #[cfg(test)]
    DateJoined,
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::MigratorTrait;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection};

    use super::*;
    use crate::Migrator;

    /// How many migrations come before this one.
    fn migrations_before() -> u32 {
        let all = Migrator::migrations();
        let before = all
            .iter()
            .position(|migration| migration.name() == Migration.name())
            .expect("the migration is registered");
        TryFrom::try_from(before).expect("a few migrations")
    }

    /// A database at `url` with every migration before this one applied
    /// and these users in it, in this order.
    async fn before_with_users(url: &str, usernames: &[&str]) -> DatabaseConnection {
        let db = Database::connect(url).await.expect("a database");
        Migrator::up(&db, Some(migrations_before()))
            .await
            .expect("earlier migrations");
        for username in usernames {
            insert(&db, username, None).await.expect("an old user");
        }
        db
    }

    /// Inserts a user as a writer outside whisper-auth would, with or
    /// without a key.
    async fn insert(
        db: &DatabaseConnection,
        username: &str,
        key: Option<&str>,
    ) -> Result<(), DbErr> {
        let mut columns = vec![Users::Username, Users::PasswordHash, Users::DateJoined];
        let mut values: Vec<Expr> = vec![username.into(), "x".into(), 0.into()];
        if let Some(key) = key {
            columns.push(Users::UsernameKey);
            values.push(key.into());
        }
        let insert = Query::insert()
            .into_table(Users::Table)
            .columns(columns)
            .values(values)
            .map_err(|error| DbErr::Custom(error.to_string()))?
            .to_owned();
        db.execute(&insert).await.map(drop)
    }

    /// `(username, username_key)` of every user, by id.
    async fn keys(db: &DatabaseConnection) -> Vec<(String, String)> {
        crate::column_pairs(db, "SELECT username, username_key FROM users ORDER BY id").await
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|&(username, key)| (username.to_owned(), key.to_owned()))
            .collect()
    }

    /// Old users that look alike get keys all the same (later ones
    /// suffixed with their id), and from then on the index refuses a look-alike.
    async fn fills_keys_and_survives_old_look_alikes(url: &str) {
        let db = before_with_users(url, &["alice", "Alice", "bob", "\u{430}lice", "rnary"]).await;
        Migrator::up(&db, None).await.expect("the migration");
        assert_eq!(
            keys(&db).await,
            pairs(&[
                ("alice", "alice"),
                ("Alice", "alice#2"),
                ("bob", "bob"),
                ("\u{430}lice", "alice#4"),
                ("rnary", "rnary"),
            ])
        );
        let again = insert(&db, "ALICE", Some(&whisper_auth::username_key("ALICE"))).await;
        assert!(again.is_err(), "a look-alike's key is refused by the index");
        insert(&db, "carol", Some(&whisper_auth::username_key("carol")))
            .await
            .expect("a new name");
    }

    #[tokio::test]
    async fn sqlite_fills_keys_and_survives_old_look_alikes() {
        fills_keys_and_survives_old_look_alikes("sqlite::memory:").await;
    }

    #[tokio::test]
    async fn postgres_fills_keys_and_survives_old_look_alikes() {
        fills_keys_and_survives_old_look_alikes(&whisper_testkit::postgres_database()).await;
    }

    #[tokio::test]
    async fn down_and_up_again_keep_every_user() {
        let db = crate::connect_migrated("sqlite::memory:")
            .await
            .expect("migrated");
        insert(&db, "ann", Some("ann")).await.expect("a user");
        crate::down_through(&db, super::Migration.name()).await;
        insert(&db, "Ann", None)
            .await
            .expect("a look-alike while no key exists");
        Migrator::up(&db, None).await.expect("up again");
        assert_eq!(keys(&db).await, pairs(&[("ann", "ann"), ("Ann", "ann#2")]));
    }
}
