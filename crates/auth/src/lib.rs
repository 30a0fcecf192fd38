//! Accounts for Whisper: users with a staff flag, argon2id passwords,
//! sessions whose keys are stored only as hashes, and login and signup
//! throttling.
//!
//! The crate owns the `users` and `sessions` tables (created by the
//! `whisper-migrations` crate) and knows nothing of HTTP: a web layer turns a
//! cookie into a [`SessionKey`] and asks [`SessionStore::user_for`] who it
//! belongs to.
//!
//! Password hashing is deliberately slow (argon2id, 46 MiB, one pass), so
//! it runs on tokio's blocking pool and never stalls the async workers, and
//! only a few hashes run at once (about one per core), so a flood of logins
//! is refused ([`AuthError::Busy`]) instead of taking the machine's memory.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use whisper_auth::{NewUser, SessionStore, UserStore};
//!
//! let db = whisper_migrations::connect_migrated("sqlite::memory:").await.unwrap();
//!
//! let users = UserStore::new(db.clone());
//! let ann = users.create(NewUser::new("ann", "correct horse battery")).await.unwrap();
//! assert!(users.authenticate("ann", "wrong password").await.unwrap().is_none());
//!
//! let sessions = SessionStore::new(db);
//! let key = sessions.create(ann.id).await.unwrap();
//! assert_eq!(sessions.user_for(&key).await.unwrap().unwrap().username, "ann");
//! # });
//! ```
//!
//! # Features
//!
//! Storage is sea-orm over SQLite (feature `sqlite`) or PostgreSQL (feature
//! `postgres`); both are on by default. A service that needs one driver
//! turns off the default features and names it, and does not build the
//! other. The crate re-exports the [`sea_orm`] it was built with, so callers
//! open the [`DatabaseConnection`](sea_orm::DatabaseConnection) they hand to
//! [`UserStore::new`] and [`SessionStore::new`] with the same version.
//!
//! # What stays inside
//!
//! The table entities, the password hash column and the session key hash
//! are private: a [`User`] never carries its hash, and a [`SessionKey`]
//! shows `<redacted>` in `Debug` output. Validation rules (username
//! characters, password length) are enforced by [`UserStore::create`] and
//! [`UserStore::set_password`] and reported as [`AuthError`] variants.

mod error;
mod password;
mod session;
mod throttle;
mod user;

pub use error::AuthError;
pub use password::{HASHING_QUEUE_WAIT, hash_password, verify_password};
pub use session::{SESSION_LIFETIME, SESSIONS_PER_QUERY, SessionKey, SessionStore};
pub use throttle::{Attempt, LoginThrottle, SignupThrottle, Throttled};
pub use user::{NewUser, User, UserId, UserStore, username_key};

/// The sea-orm this crate was built with, so callers open their
/// [`DatabaseConnection`](sea_orm::DatabaseConnection) and match
/// [`AuthError::Storage`]'s [`DbErr`](sea_orm::DbErr) without depending on
/// a second, possibly different, copy.
pub use sea_orm;
