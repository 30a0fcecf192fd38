//! Storage behaves the same on SQLite and on a real PostgreSQL: every
//! scenario here runs once against each.

use sea_orm::DatabaseConnection;
use whisper_auth::{AuthError, NewUser, SessionKey, SessionStore, UserStore};
use whisper_migrations::{Migrator, MigratorTrait};
use whisper_protocol::RoomId;
use whisper_store::{CatalogError, RoomCatalog};

/// A migrated database of each kind, as a new install has it (no users,
/// one room: General); the temporary directory keeps the SQLite file alive
/// for the test.
async fn databases() -> (Vec<(&'static str, DatabaseConnection)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let postgres = whisper_testkit::postgres_database();
    let mut connections = Vec::new();
    for (kind, url) in [("sqlite", sqlite), ("postgres", postgres)] {
        let db = whisper_migrations::connect_migrated(&url)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        // Applying again is a no-op, as at every server start.
        Migrator::up(&db, None)
            .await
            .unwrap_or_else(|e| panic!("{kind} migrate again: {e}"));
        connections.push((kind, db));
    }
    (connections, dir)
}

#[tokio::test]
async fn users_behave_alike_on_sqlite_and_postgres() {
    let (databases, _dir) = databases().await;
    for (kind, db) in databases {
        let users = UserStore::new(db);
        let mut new = NewUser::new("ann", "correct horse");
        new.name = "Ann Ó".into();
        new.email = "ann@example.com".into();
        let ann = users
            .create(new)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(ann.name, "Ann Ó", "{kind}");
        for taken in ["ann", "Ann", "ANN"] {
            // The same name, or one that differs only in case.
            assert!(
                matches!(
                    users.create(NewUser::new(taken, "correct horse")).await,
                    Err(AuthError::UsernameTaken)
                ),
                "{kind}: {taken:?}"
            );
        }
        assert_eq!(
            users
                .authenticate("ann", "correct horse")
                .await
                .expect("auth"),
            Some(ann.clone()),
            "{kind}"
        );
        assert_eq!(
            users
                .authenticate("ann", "wrong horse")
                .await
                .expect("auth"),
            None,
            "{kind}"
        );
        assert!(
            users.set_staff("ann", true).await.expect("staff").is_staff,
            "{kind}"
        );
        users
            .set_password("ann", "battery staple")
            .await
            .expect("password");
        assert!(
            users
                .authenticate("ann", "battery staple")
                .await
                .expect("auth")
                .is_some(),
            "{kind}"
        );
        // Login stays by the exact name, though signup refuses another case.
        assert_eq!(
            users
                .authenticate("Ann", "battery staple")
                .await
                .expect("auth"),
            None,
            "{kind}"
        );
        users
            .create(NewUser::new("bob", "correct horse"))
            .await
            .expect("another name");
        let names: Vec<_> = users
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(names.len(), 2, "{kind}");
    }
}

#[tokio::test]
async fn sessions_behave_alike_on_sqlite_and_postgres() {
    let (databases, _dir) = databases().await;
    for (kind, db) in databases {
        let users = UserStore::new(db.clone());
        let sessions = SessionStore::new(db);
        let ann = users
            .create(NewUser::new("ann", "correct horse"))
            .await
            .expect("create");
        let key = sessions.create(ann.id).await.expect("session");
        assert_eq!(
            sessions.user_for(&key).await.expect("lookup").map(|u| u.id),
            Some(ann.id),
            "{kind}"
        );
        let forged = SessionKey::from_client("x".repeat(43));
        assert_eq!(
            sessions.user_for(&forged).await.expect("lookup"),
            None,
            "{kind}"
        );
        sessions.delete_all_for(ann.id).await.expect("delete");
        assert_eq!(
            sessions.user_for(&key).await.expect("lookup"),
            None,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn rooms_behave_alike_on_sqlite_and_postgres() {
    let (databases, _dir) = databases().await;
    for (kind, db) in databases {
        let rooms = RoomCatalog::new(db);
        let fresh = rooms.list().await.expect("list");
        let seeded: Vec<_> = fresh
            .iter()
            .map(|r| (r.title.as_str(), r.staff_only))
            .collect();
        assert_eq!(seeded, [("General", false)], "{kind}");
        let general = fresh[0].id;
        let zoo = rooms.create("Zoo", false).await.expect("create");
        let admins = rooms.create("Admins", true).await.expect("create");
        let listed: Vec<_> = rooms
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|r| (r.id, r.staff_only))
            .collect();
        let expected = [(admins.id, true), (general, false), (zoo.id, false)];
        assert_eq!(listed, expected, "{kind}");
        rooms.delete(zoo.id).await.expect("delete");
        assert!(
            matches!(rooms.delete(zoo.id).await, Err(CatalogError::NoSuchRoom(_))),
            "{kind}"
        );
        assert_eq!(
            rooms.get(RoomId(i64::MAX)).await.expect("get"),
            None,
            "{kind}"
        );
        assert_eq!(rooms.get(RoomId(-1)).await.expect("get"), None, "{kind}");
    }
}
