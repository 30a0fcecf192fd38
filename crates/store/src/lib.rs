//! Storage for Whisper: rooms and, next, messages.
//!
//! The crate owns the `rooms` table (created by the `whisper-migrations`
//! crate, beside `whisper-auth`'s users and sessions) and knows nothing of
//! HTTP or of the channel layer, so an administration tool can create a room
//! without building a web server, and a host other than Whisper's server
//! can share the same rooms.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use whisper_store::RoomCatalog;
//!
//! let db = whisper_migrations::connect_migrated("sqlite::memory:").await.unwrap();
//! let rooms = RoomCatalog::new(db);
//! let lobby = rooms.create("Lobby", false).await.unwrap();
//! let staff = rooms.create("Staff room", true).await.unwrap();
//! assert!(lobby.admits(false) && !staff.admits(false));
//! assert_eq!(rooms.get(lobby.id).await.unwrap(), Some(lobby));
//! # });
//! ```
//!
//! # Features
//!
//! As in `whisper-auth`: sea-orm over SQLite (feature `sqlite`) or
//! PostgreSQL (feature `postgres`), both on by default; a service that needs
//! one driver turns off the default features and names it.

mod rooms;

pub use rooms::{CatalogError, ROOM_CACHE_TTL, Room, RoomCatalog};

/// The sea-orm this crate was built with, so callers open the
/// [`DatabaseConnection`](sea_orm::DatabaseConnection) they hand to
/// [`RoomCatalog::new`], and match [`CatalogError::Storage`]'s
/// [`DbErr`](sea_orm::DbErr), without depending on a second, possibly
/// different, copy.
pub use sea_orm;
