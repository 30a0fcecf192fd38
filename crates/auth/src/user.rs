use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, SqlErr,
};

use crate::password::DUMMY_HASH;
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
    /// The login name, unique and case-sensitive.
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

fn validate_username(username: &str) -> Result<(), AuthError> {
    let allowed = |c: char| c.is_alphanumeric() || "@.+-_".contains(c);
    let length = username.chars().count();
    if (1..=150).contains(&length) && username.chars().all(allowed) {
        Ok(())
    } else {
        Err(AuthError::InvalidUsername)
    }
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
    /// name is taken ([`AuthError::UsernameTaken`]). A superuser is always
    /// staff.
    pub async fn create(&self, new: NewUser) -> Result<User, AuthError> {
        new.validate()?;
        if self.find_by_username(&new.username).await?.is_some() {
            return Err(AuthError::UsernameTaken);
        }
        let password_hash = hash_password(&new.password).await?;
        let row = entity::ActiveModel {
            username: Set(new.username),
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
            // Two signups racing for one name: the unique index decides.
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
    /// and their sessions resolve to nobody (so open sockets close at their
    /// next session check).
    pub async fn set_active(&self, username: &str, is_active: bool) -> Result<User, AuthError> {
        let mut row: entity::ActiveModel = self.row(username).await?.into();
        row.is_active = Set(is_active);
        Ok(row.update(&self.db).await?.into())
    }

    /// Deletes an account; its sessions go with it (the foreign key
    /// cascades).
    pub async fn delete(&self, username: &str) -> Result<(), AuthError> {
        let row = self.row(username).await?;
        entity::Entity::delete_by_id(row.id).exec(&self.db).await?;
        Ok(())
    }

    /// Replaces the password after validating it.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<User, AuthError> {
        validate_password(password)?;
        let row = self.row(username).await?;
        let mut row: entity::ActiveModel = row.into();
        row.password_hash = Set(hash_password(password).await?);
        Ok(row.update(&self.db).await?.into())
    }

    async fn row(&self, username: &str) -> Result<entity::Model, AuthError> {
        entity::Entity::find()
            .filter(entity::Column::Username.eq(username))
            .one(&self.db)
            .await?
            .ok_or(AuthError::NoSuchUser)
    }
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
