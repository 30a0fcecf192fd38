//! Storage for Whisper: rooms and their message logs.
//!
//! The crate owns the `rooms` table, the message log of protocol v2
//! (tables `room_logs` and `messages`), the `access_changes` feed and the
//! `moderation_record`, all created by the `whisper-migrations` crate
//! beside `whisper-auth`'s users and sessions. It knows nothing of HTTP or
//! of the channel layer, so an administration tool can create a room or
//! read its history without building a web server, and a host other than
//! Whisper's server can share the same rooms.
//!
//! - [`RoomCatalog`]: which rooms exist, their titles, who may enter.
//!   Deleting a room deletes its log and its mutes. Staff's mutes of a
//!   user in a room ([`RoomCatalog::set_mute`]) are kept with the rooms.
//! - [`ChangeFeed`]: changes of access recorded by a tool that reaches no
//!   server's channel layer, for every node to read and act on.
//! - [`ModerationRecord`]: who did what to whom and when, for every
//!   administration and moderation action, read by superusers.
//! - [`MessageStore`]: each room's messages, numbered 1, 2, 3, ... with no
//!   gap on every node, under an [`Epoch`](whisper_protocol::v2::Epoch)
//!   that changes only when the history is cleared. Sends are stored in
//!   batches, one transaction each (group commit); pages of history are
//!   read by key, never by scanning a room's log; retention removes the
//!   oldest messages by count and age.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use whisper_store::RoomCatalog;
//!
//! let db = whisper_migrations::connect_migrated("sqlite::memory:").await.unwrap();
//! let rooms = RoomCatalog::new(db.clone());
//! let lobby = rooms.create("Lobby", false).await.unwrap();
//! let staff = rooms.create("Staff room", true).await.unwrap();
//! assert!(lobby.admits(false) && !staff.admits(false));
//! assert_eq!(rooms.get(lobby.id).await.unwrap(), Some(lobby.clone()));
//!
//! use whisper_protocol::v2::Seq;
//! use whisper_store::{MessageStore, NewMessage};
//! let messages = MessageStore::new(db);
//! let hello = NewMessage {
//!     room: lobby.id,
//!     user_id: 1,
//!     text: "hello".into(),
//!     nonce: Some("n1".into()),
//!     ts: 1_764_000_000_000,
//! };
//! // The second is a retry (same user and nonce): not stored again.
//! let sent = messages.append(&[hello.clone(), hello], 600_000).await.unwrap();
//! assert_eq!(sent[0].seq, Seq(1));
//! assert!(sent[1].repeated && sent[1].seq == Seq(1));
//! let page = messages.latest(lobby.id, 50).await.unwrap();
//! assert_eq!(page.len(), 1);
//! assert_eq!(page[0].text.as_deref(), Some("hello"));
//! # });
//! ```
//!
//! # Features
//!
//! As in `whisper-auth`: sea-orm over SQLite (feature `sqlite`) or
//! PostgreSQL (feature `postgres`), both on by default; a service that needs
//! one driver turns off the default features and names it.

/// Runs each scenario (an async function of a fresh, migrated database)
/// twice: on in-memory SQLite and on the PostgreSQL that scripts/test
/// starts. A module of tests invokes it with its scenarios' names.
#[cfg(test)]
macro_rules! on_sqlite_and_postgres {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(crate::test_databases::sqlite().await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(crate::test_databases::postgres().await).await;
            })*
        }
    };
}

#[cfg(test)]
mod test_databases {
    use sea_orm::DatabaseConnection;

    /// A fresh, migrated in-memory SQLite database.
    pub async fn sqlite() -> DatabaseConnection {
        whisper_migrations::connect_migrated("sqlite::memory:")
            .await
            .expect("a migrated in-memory database")
    }

    /// A fresh, migrated database on the test PostgreSQL server.
    pub async fn postgres() -> DatabaseConnection {
        whisper_migrations::connect_migrated(&whisper_testkit::postgres_database())
            .await
            .expect("a migrated PostgreSQL database")
    }
}

mod changes;
mod messages;
mod moderation;
mod mutes;
mod rooms;

pub use changes::{ChangeFeed, RecordedChange};
pub use messages::{Appended, Erased, LogState, MessageStore, NewMessage, StoreError};
pub use moderation::{ModerationAction, ModerationRecord, NewEntry, RecordedEntry};
pub use mutes::RoomMute;
pub use rooms::{CatalogError, ROOM_CACHE_TTL, Room, RoomCatalog};

/// The sea-orm this crate was built with, so callers open the
/// [`DatabaseConnection`](sea_orm::DatabaseConnection) they hand to
/// [`RoomCatalog::new`] and [`MessageStore::new`], and match
/// [`CatalogError::Storage`]'s and [`StoreError::Storage`]'s
/// [`DbErr`](sea_orm::DbErr), without depending on a second, possibly
/// different, copy.
pub use sea_orm;
