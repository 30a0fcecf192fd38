//! Accounts for Whisper: users with a staff flag, argon2id passwords,
//! sessions whose keys are stored only as hashes, and login throttling.
//!
//! The crate owns the `users` and `sessions` tables (created by the
//! `whisper-migrations` crate) and knows nothing of HTTP: a web layer turns a
//! cookie into a [`SessionKey`] and asks [`SessionStore::user_for`] who it
//! belongs to.
//!
//! Password hashing is deliberately slow (argon2id, 19 MiB, two passes), so
//! it runs on tokio's blocking pool and never stalls the async workers.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use whisper_auth::{NewUser, SessionStore, UserStore};
//! # let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
//! # use whisper_migrations::MigratorTrait;
//! # whisper_migrations::Migrator::up(&db, None).await.unwrap();
//! let users = UserStore::new(db.clone());
//! let ann = users.create(NewUser::new("ann", "correct horse battery")).await.unwrap();
//! assert!(users.authenticate("ann", "wrong").await.unwrap().is_none());
//!
//! let sessions = SessionStore::new(db);
//! let key = sessions.create(ann.id).await.unwrap();
//! assert_eq!(sessions.user_for(&key).await.unwrap().unwrap().username, "ann");
//! # });
//! ```

mod error;
mod password;
mod session;
mod throttle;
mod user;

pub use error::AuthError;
pub use password::{hash_password, verify_password};
pub use session::{SESSION_LIFETIME, SessionKey, SessionStore};
pub use throttle::{LoginThrottle, Throttled};
pub use user::{NewUser, User, UserId, UserStore};
