use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, SqlErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use unicode_security::{MixedScript, skeleton};

use crate::password::DUMMY_HASH;
use crate::session::entity as sessions;
use crate::{AuthError, hash_password, verify_password};

pub(crate) mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub username: String,
        /// [`super::username_key`] of `username`: unique, so look-alike
        /// names cannot both exist.
        #[sea_orm(unique)]
        pub username_key: String,
        pub name: String,
        pub email: String,
        pub password_hash: String,
        pub is_staff: bool,
        pub is_superuser: bool,
        pub is_active: bool,
        pub date_joined: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A user's database id. A newtype so it is never confused with a room id.
///
/// The inner number is public because other layers need it as a plain
/// integer (the chat protocol's presence entries key users by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An account, without its password hash (which never leaves this crate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The database id.
    pub id: UserId,
    /// The login name, case-sensitive at login; no other account has one
    /// that looks like it (see [`username_key`]).
    pub username: String,
    /// The display name; may be empty.
    pub name: String,
    /// The email address; may be empty.
    pub email: String,
    /// Staff may enter staff-only rooms.
    pub is_staff: bool,
    /// Superusers are staff who administer the server.
    pub is_superuser: bool,
    /// Inactive accounts cannot log in and their sessions resolve to nobody.
    pub is_active: bool,
}

impl From<entity::Model> for User {
    fn from(model: entity::Model) -> Self {
        User {
            id: UserId(model.id),
            username: model.username,
            name: model.name,
            email: model.email,
            is_staff: model.is_staff,
            is_superuser: model.is_superuser,
            is_active: model.is_active,
        }
    }
}

/// What it takes to create an account; build it with [`NewUser::new`] and
/// set the optional fields directly.
#[derive(Clone)]
pub struct NewUser {
    /// The login name.
    pub username: String,
    /// The password in clear; hashed before it is stored.
    pub password: String,
    /// The display name.
    pub name: String,
    /// The email address.
    pub email: String,
    /// Whether the user is staff.
    pub is_staff: bool,
    /// Whether the user is a superuser (superusers are always staff).
    pub is_superuser: bool,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("is_staff", &self.is_staff)
            .field("is_superuser", &self.is_superuser)
            .finish_non_exhaustive()
    }
}

impl NewUser {
    /// An active, non-staff user with no name or email.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        NewUser {
            username: username.into(),
            password: password.into(),
            name: String::new(),
            email: String::new(),
            is_staff: false,
            is_superuser: false,
        }
    }

    /// Checks every field, so nothing is written when any is wrong.
    fn validate(&self) -> Result<(), AuthError> {
        validate_username(&self.username)?;
        validate_password(&self.password)?;
        if self.name.chars().count() > 150 {
            return Err(AuthError::InvalidField("names are at most 150 characters"));
        }
        let email = &self.email;
        if !email.is_empty()
            && (email.len() > 254 || !email.contains('@') || email.chars().any(char::is_whitespace))
        {
            return Err(AuthError::InvalidField("that email address is not valid"));
        }
        Ok(())
    }
}

/// Whether a new username is acceptable: 1 to 150 letters, digits and
/// `@.+-_` (Django's rule, so Unicode names like `Zoë`, `алиса` or `李雷`
/// pass), all its letters of one script, and something visible.
///
/// One script, in the sense of Unicode TR39's mixed-script detection: a
/// name mixing Latin and Cyrillic letters, like `аlice` with a Cyrillic
/// `а`, exists to pass for another. Digits and `@.+-_` (scripts Common and
/// Inherited) go with any script, and Han mixes with kana or Hangul as
/// Japanese and Korean write. A name whose [`username_key`] is empty is
/// made only of invisible letters (Hangul fillers).
fn validate_username(username: &str) -> Result<(), AuthError> {
    let allowed = |c: char| c.is_alphanumeric() || "@.+-_".contains(c);
    let length = username.chars().count();
    if (1..=150).contains(&length)
        && username.chars().all(allowed)
        && username.is_single_script()
        && !username_key(username).is_empty()
    {
        Ok(())
    } else {
        Err(AuthError::InvalidUsername)
    }
}

/// At most how many rounds of case folding and confusable mapping
/// [`username_key`] runs: a folded prototype is sometimes itself a
/// confusable (`ᗰ` → `M` → `m` → `rn`), and two rounds settle every
/// character; four leave room for Unicode updates.
const KEY_ROUNDS: usize = 4;

/// The key that makes usernames unique: two names with the same key look
/// alike, and only one of them may have an account.
///
/// Usernames are case-sensitive strings, but people read them, and `аlice`
/// (Cyrillic `а`), `Alice`, `ALICE` and `alice` are one name to a reader,
/// as are `mary` and `rnary` or `b0b` and `bob`. The key is the name
/// lowercased, mapped to its Unicode TR39 confusable skeleton (which also
/// drops invisible characters) and lowercased again, repeated until it stops
/// changing (at most four times).
///
/// This is the only place the key is computed: [`UserStore::create`] stores
/// it in the `users.username_key` column, whose unique index refuses a
/// look-alike even when two signups race, and the migration that added the
/// column fills existing rows with it. Changing it (or upgrading the
/// Unicode data of `unicode-security`) changes keys, so such a change needs
/// a migration that recomputes the column.
///
/// ```
/// use whisper_auth::username_key;
///
/// assert_eq!(username_key("Alice"), username_key("alice"));
/// assert_eq!(username_key("\u{430}lice"), username_key("alice")); // Cyrillic а
/// assert_eq!(username_key("mary"), username_key("rnary"));
/// assert_ne!(username_key("ann"), username_key("anna"));
/// ```
pub fn username_key(username: &str) -> String {
    let fold = |name: &str| -> String {
        skeleton(&name.to_lowercase())
            .collect::<String>()
            .to_lowercase()
    };
    let mut key = fold(username);
    for _ in 1..KEY_ROUNDS {
        let next = fold(&key);
        if next == key {
            break;
        }
        key = next;
    }
    key
}

fn validate_password(password: &str) -> Result<(), AuthError> {
    if (8..=1024).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(AuthError::InvalidPassword)
    }
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The `users` table: create accounts, check passwords, change flags.
///
/// Cheap to clone (it holds a pooled [`DatabaseConnection`]), so a service
/// keeps one in its shared state and clones it into handlers. Every method
/// is one or two queries; password hashing runs on the blocking pool.
#[derive(Clone, Debug)]
pub struct UserStore {
    db: DatabaseConnection,
}

impl UserStore {
    /// A store over a connection whose schema has been migrated (by
    /// `whisper_migrations::Migrator`); SQLite or PostgreSQL, as the crate's
    /// features allow.
    pub fn new(db: DatabaseConnection) -> Self {
        UserStore { db }
    }

    /// Creates an account after validating every field; nothing is written
    /// when one is invalid ([`AuthError::InvalidUsername`],
    /// [`AuthError::InvalidPassword`], [`AuthError::InvalidField`]) or the
    /// name is taken ([`AuthError::UsernameTaken`]). A name is taken when
    /// an account has it or one that looks like it (the same
    /// [`username_key`]: `Alice` or `аlice` once `alice` exists). A
    /// superuser is always staff.
    pub async fn create(&self, new: NewUser) -> Result<User, AuthError> {
        new.validate()?;
        let key = username_key(&new.username);
        let look_alike = entity::Entity::find()
            .filter(entity::Column::UsernameKey.eq(key.as_str()))
            .one(&self.db)
            .await?;
        if look_alike.is_some() {
            return Err(AuthError::UsernameTaken);
        }
        let password_hash = hash_password(&new.password).await?;
        let row = entity::ActiveModel {
            username: Set(new.username),
            username_key: Set(key),
            name: Set(new.name),
            email: Set(new.email),
            password_hash: Set(password_hash),
            is_staff: Set(new.is_staff || new.is_superuser),
            is_superuser: Set(new.is_superuser),
            is_active: Set(true),
            date_joined: Set(unix_now()),
            ..Default::default()
        };
        match row.insert(&self.db).await {
            Ok(model) => Ok(model.into()),
            // Two signups racing for one name, or for two look-alikes: the
            // unique indexes decide.
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Err(AuthError::UsernameTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The active user with this username and password, or `None`.
    ///
    /// An unknown username costs the same hashing work as a wrong password,
    /// so response times do not tell which usernames exist.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<User>, AuthError> {
        let row = entity::Entity::find()
            .filter(entity::Column::Username.eq(username))
            .one(&self.db)
            .await?;
        let Some(row) = row else {
            verify_password(DUMMY_HASH, password).await?;
            return Ok(None);
        };
        let matches = verify_password(&row.password_hash, password).await?;
        Ok((matches && row.is_active).then(|| row.into()))
    }

    /// The user with this id, active or not.
    pub async fn get(&self, id: UserId) -> Result<Option<User>, AuthError> {
        Ok(entity::Entity::find_by_id(id.0)
            .one(&self.db)
            .await?
            .map(User::from))
    }

    /// The user with this username, active or not.
    pub async fn find_by_username(&self, username: &str) -> Result<Option<User>, AuthError> {
        Ok(entity::Entity::find()
            .filter(entity::Column::Username.eq(username))
            .one(&self.db)
            .await?
            .map(User::from))
    }

    /// Every user, ordered by username.
    pub async fn list(&self) -> Result<Vec<User>, AuthError> {
        Ok(entity::Entity::find()
            .order_by_asc(entity::Column::Username)
            .all(&self.db)
            .await?
            .into_iter()
            .map(User::from)
            .collect())
    }

    /// Whether an active superuser exists. Until one does, nobody can
    /// administer the server through it (make rooms, grant staff), which
    /// is what a fresh install looks like: a host can say so at start.
    pub async fn has_active_superuser(&self) -> Result<bool, AuthError> {
        let superuser = entity::Entity::find()
            .filter(entity::Column::IsSuperuser.eq(true))
            .filter(entity::Column::IsActive.eq(true))
            .one(&self.db)
            .await?;
        Ok(superuser.is_some())
    }

    /// Grants or removes staff status. A superuser is always staff (see
    /// [`NewUser::is_superuser`]), so removing it from one is refused with
    /// [`AuthError::SuperuserIsStaff`] and changes nothing.
    pub async fn set_staff(&self, username: &str, is_staff: bool) -> Result<User, AuthError> {
        let row = self.row(username).await?;
        if row.is_superuser && !is_staff {
            return Err(AuthError::SuperuserIsStaff);
        }
        let mut row: entity::ActiveModel = row.into();
        row.is_staff = Set(is_staff);
        Ok(row.update(&self.db).await?.into())
    }

    /// Activates or deactivates an account. An inactive user cannot log in,
    /// and open sockets close at their next session check.
    ///
    /// Deactivating also deletes the user's sessions, in the same
    /// transaction: an inactive user's sessions already resolve to nobody,
    /// but kept, they would log the user in again the moment the account
    /// is reactivated, whoever holds the cookie. Either both happen or
    /// neither does; doing it twice is harmless.
    pub async fn set_active(&self, username: &str, is_active: bool) -> Result<User, AuthError> {
        let txn = self.begin_write().await?;
        let row = find_row(&txn, username).await?;
        if !is_active {
            end_sessions(&txn, row.id).await?;
        }
        let mut row: entity::ActiveModel = row.into();
        row.is_active = Set(is_active);
        let user = row.update(&txn).await?.into();
        txn.commit().await?;
        Ok(user)
    }

    /// Deletes an account and its sessions, in one transaction, and
    /// returns the account as it was. Messages the user wrote are not this
    /// crate's: they keep the user's id, which is never given to another
    /// account (ids only grow), so they read as from a deleted user.
    ///
    /// The sessions are deleted here rather than left to the foreign
    /// key's cascade, which SQLite applies only when a connection turned
    /// foreign keys on.
    pub async fn delete(&self, username: &str) -> Result<User, AuthError> {
        let txn = self.begin_write().await?;
        let row = find_row(&txn, username).await?;
        end_sessions(&txn, row.id).await?;
        entity::Entity::delete_by_id(row.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(row.into())
    }

    /// Replaces the password after validating it, and ends the user's
    /// sessions: whoever knew the old password (the reason to change it,
    /// often) must not stay logged in.
    ///
    /// Both happen in one transaction, as in [`UserStore::set_active`], so
    /// a failure leaves neither a new password with old sessions nor the
    /// other way round. The password is hashed before the transaction
    /// begins, so no lock is held while a hashing slot is awaited.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<User, AuthError> {
        validate_password(password)?;
        let password_hash = hash_password(password).await?;
        let txn = self.begin_write().await?;
        let row = find_row(&txn, username).await?;
        end_sessions(&txn, row.id).await?;
        let mut row: entity::ActiveModel = row.into();
        row.password_hash = Set(password_hash);
        let user = row.update(&txn).await?.into();
        txn.commit().await?;
        Ok(user)
    }

    async fn row(&self, username: &str) -> Result<entity::Model, AuthError> {
        find_row(&self.db, username).await
    }

    /// A transaction that takes SQLite's write lock at once: each of ours
    /// reads the user's row before it writes, and must not fail with
    /// `SQLITE_BUSY` when another connection wrote in between.
    async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
    }
}

/// Deletes every session of the user with this id, inside `txn`.
async fn end_sessions(txn: &DatabaseTransaction, user_id: i64) -> Result<(), DbErr> {
    sessions::Entity::delete_many()
        .filter(sessions::Column::UserId.eq(user_id))
        .exec(txn)
        .await?;
    Ok(())
}

/// The row of the user with this username, read on `db` (the connection,
/// or a transaction that will change the row), or [`AuthError::NoSuchUser`].
async fn find_row(db: &impl ConnectionTrait, username: &str) -> Result<entity::Model, AuthError> {
    entity::Entity::find()
        .filter(entity::Column::Username.eq(username))
        .one(db)
        .await?
        .ok_or(AuthError::NoSuchUser)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> UserStore {
        let db = whisper_migrations::connect_migrated("sqlite::memory:")
            .await
            .expect("a migrated in-memory database");
        UserStore::new(db)
    }

    #[tokio::test]
    async fn create_authenticate_and_change_flags() {
        let users = store().await;
        let mut new = NewUser::new("ann", "long enough");
        new.name = "Ann".into();
        let ann = users.create(new).await.expect("create");
        assert!(!ann.is_staff);
        assert_eq!(
            users
                .authenticate("ann", "long enough")
                .await
                .expect("auth"),
            Some(ann.clone())
        );
        assert_eq!(
            users
                .authenticate("ann", "long enougH")
                .await
                .expect("auth"),
            None
        );
        assert_eq!(
            users
                .authenticate("nobody", "long enough")
                .await
                .expect("auth"),
            None
        );
        assert!(users.set_staff("ann", true).await.expect("staff").is_staff);
        users
            .set_password("ann", "another one")
            .await
            .expect("password");
        assert!(
            users
                .authenticate("ann", "another one")
                .await
                .expect("auth")
                .is_some()
        );
        assert!(matches!(
            users.set_staff("bob", true).await,
            Err(AuthError::NoSuchUser)
        ));
        assert!(
            !users
                .set_active("ann", false)
                .await
                .expect("deactivate")
                .is_active
        );
        assert_eq!(
            users
                .authenticate("ann", "another one")
                .await
                .expect("auth"),
            None
        );
        users.delete("ann").await.expect("delete");
        assert_eq!(users.find_by_username("ann").await.expect("find"), None);
    }

    #[tokio::test]
    async fn bad_input_writes_nothing() {
        let users = store().await;
        for (username, password) in [
            ("", "long enough"),
            ("a b", "long enough"),
            ("<x>", "long enough"),
            ("ok", "short"),
        ] {
            assert!(
                users
                    .create(NewUser::new(username, password))
                    .await
                    .is_err(),
                "{username:?}"
            );
        }
        let mut bad_email = NewUser::new("ok", "long enough");
        bad_email.email = "not-an-address".into();
        assert!(matches!(
            users.create(bad_email).await,
            Err(AuthError::InvalidField(_))
        ));
        assert!(users.list().await.expect("list").is_empty());
        users
            .create(NewUser::new("ok", "long enough"))
            .await
            .expect("create");
        assert!(matches!(
            users.create(NewUser::new("ok", "long enough")).await,
            Err(AuthError::UsernameTaken)
        ));
    }

    #[test]
    fn usernames_may_be_unicode_but_of_one_script() {
        for good in [
            "alice",
            "ann.b+c@x-y_z",
            "Zoë",
            "\u{430}\u{43b}\u{438}\u{441}\u{430}", // алиса, all Cyrillic
            "李雷",
            "田中さん", // Han and kana: Japanese
            "2001",
            "bob_42",
        ] {
            assert!(validate_username(good).is_ok(), "{good:?}");
        }
        for bad in [
            "\u{430}lice",        // Cyrillic а, Latin lice
            "p\u{430}yp\u{430}l", // paypal with two Cyrillic а
            "\u{3b1}lpha",        // Greek α, Latin lpha
            "\u{3164}",           // a Hangul filler alone: invisible
            "\u{115f}\u{3164}",
            "",
            "a b",
        ] {
            assert!(
                matches!(validate_username(bad), Err(AuthError::InvalidUsername)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn look_alike_names_share_a_key() {
        for (a, b) in [
            ("alice", "Alice"),
            ("alice", "ALICE"),
            ("alice", "\u{430}lice"),         // Cyrillic а
            ("ace", "\u{430}\u{441}\u{435}"), // асе, all Cyrillic
            ("mary", "rnary"),
            ("bob", "b0b"),
            ("bob", "B0B"),
            ("alice", "ａｌｉｃｅ"),    // fullwidth
            ("alice", "alice\u{3164}"), // a trailing Hangul filler
            ("Zoë", "Zoe\u{308}"),
            ("zoë", "ZOË"),
        ] {
            assert_eq!(username_key(a), username_key(b), "{a:?} and {b:?}");
        }
        for (a, b) in [
            ("ann", "anna"),
            ("alice", "alicia"),
            ("zoe", "zoë"),
            ("李雷", "李"),
        ] {
            assert_ne!(username_key(a), username_key(b), "{a:?} and {b:?}");
        }
        // A key is its own key, so keys stored once stay comparable.
        for name in ["ᗰary", "Zoë", "B0B", "\u{430}\u{43b}\u{438}\u{441}\u{430}"] {
            let key = username_key(name);
            assert_eq!(username_key(&key), key, "{name:?}");
        }
    }

    #[tokio::test]
    async fn a_look_alike_of_an_existing_name_is_refused_and_writes_nothing() {
        let users = store().await;
        users
            .create(NewUser::new("alice", "long enough"))
            .await
            .expect("create");
        assert!(matches!(
            users
                .create(NewUser::new("\u{430}lice", "long enough"))
                .await,
            Err(AuthError::InvalidUsername)
        ));
        for look_alike in ["Alice", "ALICE", "al\u{131}ce", "ａlice"] {
            let refused = users.create(NewUser::new(look_alike, "long enough")).await;
            assert!(
                matches!(refused, Err(AuthError::UsernameTaken)),
                "{look_alike:?}: {refused:?}"
            );
        }
        let mut root = NewUser::new("aLiCe", "long enough");
        root.is_superuser = true;
        assert!(matches!(
            users.create(root).await,
            Err(AuthError::UsernameTaken)
        ));
        let names: Vec<String> = users
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|user| user.username)
            .collect();
        assert_eq!(names, ["alice"]);
        assert!(
            users
                .authenticate("alice", "long enough")
                .await
                .expect("auth")
                .is_some()
        );
    }

    #[tokio::test]
    async fn of_two_look_alikes_signing_up_at_once_one_wins() {
        let users = store().await;
        let (bob, b0b) = tokio::join!(
            users.create(NewUser::new("bob", "long enough")),
            users.create(NewUser::new("B0B", "long enough")),
        );
        let won = [&bob, &b0b].iter().filter(|result| result.is_ok()).count();
        assert_eq!(won, 1, "{bob:?} {b0b:?}");
        assert!(
            [bob, b0b]
                .into_iter()
                .any(|result| matches!(result, Err(AuthError::UsernameTaken)))
        );
        assert_eq!(users.list().await.expect("list").len(), 1);
    }

    /// A store holding Ann, logged in: the users, the sessions, Ann and
    /// her session's key.
    async fn ann_logged_in() -> (UserStore, crate::SessionStore, User, crate::SessionKey) {
        let users = store().await;
        let sessions = crate::SessionStore::new(users.db.clone());
        let ann = users
            .create(NewUser::new("ann", "long enough"))
            .await
            .expect("create");
        let key = sessions.create(ann.id).await.expect("session");
        (users, sessions, ann, key)
    }

    #[tokio::test]
    async fn deactivating_ends_the_sessions_for_good() {
        let (users, sessions, _, key) = ann_logged_in().await;
        assert!(!users.set_active("ann", false).await.expect("off").is_active);
        assert!(
            !users
                .set_active("ann", false)
                .await
                .expect("again")
                .is_active
        );
        assert!(users.set_active("ann", true).await.expect("on").is_active);
        assert_eq!(sessions.user_for(&key).await.expect("lookup"), None);
        assert!(matches!(
            users.set_active("bob", false).await,
            Err(AuthError::NoSuchUser)
        ));
    }

    #[tokio::test]
    async fn a_new_password_ends_the_sessions() {
        let (users, sessions, ann, key) = ann_logged_in().await;
        assert!(matches!(
            users.set_password("ann", "short").await,
            Err(AuthError::InvalidPassword)
        ));
        assert_eq!(
            sessions.user_for(&key).await.expect("lookup"),
            Some(ann.clone()),
            "a refused password ends nothing"
        );
        users
            .set_password("ann", "another one")
            .await
            .expect("password");
        assert_eq!(sessions.user_for(&key).await.expect("lookup"), None);
        assert!(matches!(
            users.set_password("bob", "another one").await,
            Err(AuthError::NoSuchUser)
        ));
    }

    #[tokio::test]
    async fn deleting_ends_the_sessions_and_frees_no_id() {
        let (users, sessions, ann, key) = ann_logged_in().await;
        assert_eq!(users.delete("ann").await.expect("delete"), ann);
        assert_eq!(sessions.user_for(&key).await.expect("lookup"), None);
        assert_eq!(users.get(ann.id).await.expect("get"), None);
        assert!(matches!(
            users.delete("ann").await,
            Err(AuthError::NoSuchUser)
        ));
        // A new account never takes the deleted one's id, which its
        // messages still carry.
        let again = users
            .create(NewUser::new("ann", "long enough"))
            .await
            .expect("the name is free again");
        assert!(again.id.0 > ann.id.0, "{:?} after {:?}", again.id, ann.id);
    }

    #[tokio::test]
    async fn only_an_active_superuser_counts_as_one() {
        let users = store().await;
        assert!(!users.has_active_superuser().await.expect("query"));
        let mut staff = NewUser::new("sam", "long enough");
        staff.is_staff = true;
        users.create(staff).await.expect("create");
        assert!(!users.has_active_superuser().await.expect("query"));
        let mut root = NewUser::new("root", "long enough");
        root.is_superuser = true;
        users.create(root).await.expect("create");
        assert!(users.has_active_superuser().await.expect("query"));
        users.set_active("root", false).await.expect("deactivate");
        assert!(!users.has_active_superuser().await.expect("query"));
    }

    #[tokio::test]
    async fn a_superuser_keeps_staff_status() {
        let users = store().await;
        let mut root = NewUser::new("root", "long enough");
        root.is_superuser = true;
        assert!(users.create(root).await.expect("create").is_staff);
        assert!(matches!(
            users.set_staff("root", false).await,
            Err(AuthError::SuperuserIsStaff)
        ));
        let root = users.find_by_username("root").await.expect("read");
        assert!(root.is_some_and(|root| root.is_staff));
        assert!(users.set_staff("root", true).await.expect("staff").is_staff);
    }
}
