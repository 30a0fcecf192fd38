use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, Statement, Value,
};
use sha2::{Digest, Sha256};

use crate::user::{entity as users, unix_now};
use crate::{AuthError, User, UserId};

pub(crate) mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_hash: String,
        pub user_id: i64,
        pub expires_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "crate::user::entity::Entity",
            from = "Column::UserId",
            to = "crate::user::entity::Column::Id"
        )]
        User,
    }

    impl Related<crate::user::entity::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::User.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Most session keys [`SessionStore::staff_flags`] puts in one query: well
/// under the bound parameters every database takes.
pub const SESSIONS_PER_QUERY: usize = 500;

/// How long a session lasts after login: two weeks, as Django's default.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(14 * 24 * 3600);

/// The secret a browser holds in its `sessionid` cookie: 256 random bits.
///
/// Its `Debug` output is redacted so it never reaches a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(String);

impl SessionKey {
    /// Wraps a key received from a client (for example a cookie value), to
    /// look it up with [`SessionStore::user_for`]. Any text is accepted: a
    /// made-up key simply belongs to nobody.
    pub fn from_client(key: impl Into<String>) -> Self {
        SessionKey(key.into())
    }

    /// The key as sent in the cookie.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the database stores: SHA-256 of the key, hex. The key has 256
    /// bits of entropy, so a plain hash (no salt, no stretching) suffices.
    /// Hex digits by table, not `write!`: the node's session sweep hashes
    /// every open socket's key, and the formatter was half of its CPU.
    fn hash(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for byte in Sha256::digest(self.0.as_bytes()) {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
        }
        hex
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// The `sessions` table: log a user in, find who a key belongs to, log out.
///
/// A session is a random key the client keeps (in a cookie, a header, a
/// token) and whose SHA-256 the database keeps, with the user and an expiry
/// [`SESSION_LIFETIME`] after login. A leaked database therefore holds no
/// usable key. Cheap to clone, like [`UserStore`](crate::UserStore).
#[derive(Clone, Debug)]
pub struct SessionStore {
    db: DatabaseConnection,
}

impl SessionStore {
    /// A store over a connection whose schema has been migrated (by
    /// `whisper_migrations::Migrator`).
    pub fn new(db: DatabaseConnection) -> Self {
        SessionStore { db }
    }

    /// Starts a session with a fresh random key (a new key at every login,
    /// so a key planted before login is worthless after it).
    pub async fn create(&self, user: UserId) -> Result<SessionKey, AuthError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(AuthError::Randomness)?;
        let key = SessionKey(URL_SAFE_NO_PAD.encode(bytes));
        entity::Entity::insert(entity::ActiveModel {
            key_hash: Set(key.hash()),
            user_id: Set(user.0),
            expires_at: Set(unix_now() + SESSION_LIFETIME.as_secs() as i64),
        })
        .exec(&self.db)
        .await?;
        Ok(key)
    }

    /// For each of `keys`, in order, whether it logs an active user in,
    /// and if so whether that user is staff: `Some(is_staff)`, or `None`
    /// for a session expired or deleted or a user deactivated. One query
    /// per [`SESSIONS_PER_QUERY`] keys, answered in one row (sqlx hands
    /// each SQLite row over from its worker thread on its own, and 10,000
    /// rows cost the server about a second of CPU), so a server checks the
    /// sessions of all its open sockets now and then without a query per
    /// socket.
    pub async fn staff_flags(&self, keys: &[SessionKey]) -> Result<Vec<Option<bool>>, AuthError> {
        let backend = self.db.get_database_backend();
        let now = unix_now();
        let mut flags = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(SESSIONS_PER_QUERY) {
            let hashes: Vec<String> = chunk.iter().map(SessionKey::hash).collect();
            let (aggregate, placeholder): (&str, fn(usize) -> String) = match backend {
                DbBackend::Postgres => (
                    "string_agg(s.key_hash || ':' || u.is_staff::int, ',')",
                    |n| format!("${n}"),
                ),
                _ => ("group_concat(s.key_hash || ':' || u.is_staff, ',')", |_| {
                    "?".to_owned()
                }),
            };
            let list: Vec<String> = (2..hashes.len() + 2).map(placeholder).collect();
            let sql = format!(
                "SELECT {aggregate} FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.expires_at > {} AND u.is_active AND s.key_hash IN ({})",
                placeholder(1),
                list.join(",")
            );
            let values = std::iter::once(Value::from(now))
                .chain(hashes.iter().cloned().map(Value::from))
                .collect::<Vec<_>>();
            let row = self
                .db
                .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
            let found: Option<String> = match row {
                Some(row) => row.try_get_by_index(0)?,
                None => None,
            };
            let live: HashMap<&str, bool> = found
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .filter_map(|entry| entry.split_once(':'))
                .map(|(hash, staff)| (hash, staff == "1"))
                .collect();
            flags.extend(hashes.iter().map(|hash| live.get(hash.as_str()).copied()));
        }
        Ok(flags)
    }

    /// The active user this unexpired key belongs to, or `None`.
    pub async fn user_for(&self, key: &SessionKey) -> Result<Option<User>, AuthError> {
        // One query (a join), not two: every WebSocket handshake and
        // session re-check runs this.
        let found = entity::Entity::find_by_id(key.hash())
            .filter(entity::Column::ExpiresAt.gt(unix_now()))
            .find_also_related(users::Entity)
            .one(&self.db)
            .await?;
        Ok(found
            .and_then(|(_, user)| user)
            .filter(|u| u.is_active)
            .map(User::from))
    }

    /// Ends one session; ending an unknown one is not an error.
    pub async fn delete(&self, key: &SessionKey) -> Result<(), AuthError> {
        entity::Entity::delete_by_id(key.hash())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes every session past its expiry and returns how many. An
    /// expired session already logs nobody in ([`Self::user_for`] skips
    /// it), but without this its row would stay forever: a server that
    /// has run for years keeps one row per login ever made.
    pub async fn delete_expired(&self) -> Result<u64, AuthError> {
        let deleted = entity::Entity::delete_many()
            .filter(entity::Column::ExpiresAt.lte(unix_now()))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Ends every session of a user, for example after a password change.
    pub async fn delete_all_for(&self, user: UserId) -> Result<(), AuthError> {
        entity::Entity::delete_many()
            .filter(entity::Column::UserId.eq(user.0))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewUser, UserStore};

    /// The stored form is SHA-256 in lowercase hex, as it always was:
    /// sessions already in a database must still be found.
    #[test]
    fn a_key_is_stored_as_its_sha256_in_lowercase_hex() {
        assert_eq!(
            SessionKey::from_client("abc").hash(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    async fn many_keys_are_checked_in_few_queries_and_keep_their_order(url: &str) {
        let db = whisper_migrations::connect_migrated(url)
            .await
            .expect("a migrated database");
        let users = UserStore::new(db.clone());
        let mut ids = Vec::new();
        for (name, staff) in [("ann", false), ("bob", false), ("sue", true)] {
            let user = users
                .create(NewUser::new(name, "long enough"))
                .await
                .expect("create");
            users.set_staff(name, staff).await.expect("staff");
            ids.push(user.id);
        }
        let sessions = SessionStore::new(db.clone());
        let mut keys = Vec::new();
        for n in 0..SESSIONS_PER_QUERY + 3 {
            keys.push(sessions.create(ids[n % 3]).await.expect("session"));
        }
        sessions.delete(&keys[0]).await.expect("logout");
        users.set_active("bob", false).await.expect("deactivate");
        keys.push(SessionKey::from_client("made up"));
        let flags = sessions.staff_flags(&keys).await.expect("lookup");
        assert_eq!(flags.len(), keys.len());
        for (n, flag) in flags.iter().enumerate() {
            let expected = match n % 3 {
                _ if n == 0 || n == SESSIONS_PER_QUERY + 3 => None,
                0 => Some(false),
                1 => None,
                _ => Some(true),
            };
            assert_eq!(*flag, expected, "key {n}");
        }
    }

    #[tokio::test]
    async fn sqlite_checks_many_keys_in_few_queries() {
        many_keys_are_checked_in_few_queries_and_keep_their_order("sqlite::memory:").await;
    }

    #[tokio::test]
    async fn postgres_checks_many_keys_in_few_queries() {
        many_keys_are_checked_in_few_queries_and_keep_their_order(
            &whisper_testkit::postgres_database(),
        )
        .await;
    }

    #[tokio::test]
    async fn keys_resolve_until_deleted_and_only_hashes_are_stored() {
        let db = whisper_migrations::connect_migrated("sqlite::memory:")
            .await
            .expect("a migrated in-memory database");
        let ann = UserStore::new(db.clone())
            .create(NewUser::new("ann", "long enough"))
            .await
            .expect("create");
        let sessions = SessionStore::new(db.clone());
        let first = sessions.create(ann.id).await.expect("session");
        let second = sessions.create(ann.id).await.expect("session");
        assert_ne!(first, second);
        assert!(first.as_str().len() >= 43);
        assert_eq!(
            sessions
                .user_for(&first)
                .await
                .expect("lookup")
                .map(|u| u.id),
            Some(ann.id)
        );
        assert_eq!(
            sessions
                .user_for(&SessionKey::from_client("forged"))
                .await
                .expect("lookup"),
            None
        );

        let stored: Vec<String> = entity::Entity::find()
            .all(&db)
            .await
            .expect("rows")
            .into_iter()
            .map(|row| row.key_hash)
            .collect();
        assert!(!stored.contains(&first.as_str().to_owned()));

        sessions.delete(&first).await.expect("delete");
        assert_eq!(sessions.user_for(&first).await.expect("lookup"), None);
        assert!(sessions.user_for(&second).await.expect("lookup").is_some());
        sessions.delete_all_for(ann.id).await.expect("delete all");
        assert_eq!(sessions.user_for(&second).await.expect("lookup"), None);
        assert_eq!(format!("{second:?}"), "SessionKey(<redacted>)");
    }
}
