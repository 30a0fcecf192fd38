//! The room catalog: which rooms exist, their titles, and who may enter.
//!
//! A room knows nothing of the channel layer: a host names a room's group
//! itself (the server with `whisper_rooms::GroupName::for_room`), so this
//! crate needs no broker and no HTTP.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait, QueryOrder};
use thiserror::Error;
/// The room type whisper-protocol declares, so the chat rules and this
/// table hand each other the same value.
pub use whisper_protocol::Room;
use whisper_protocol::RoomId;

use crate::messages::{begin_write, delete_log};
use crate::mutes::{MutedUsers, delete_mutes, read_mutes};

mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "rooms")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub title: String,
        pub staff_only: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A row as the room it describes.
fn room_of(model: entity::Model) -> Room {
    Room {
        id: RoomId(model.id),
        title: model.title,
        staff_only: model.staff_only,
    }
}

/// What can go wrong with the room catalog.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// Titles are 1 to 255 characters and not only spaces.
    #[error("room titles are 1 to 255 characters")]
    InvalidTitle,
    /// No room has this id.
    #[error("no room with id {0}")]
    NoSuchRoom(RoomId),
    /// The database failed.
    #[error("storage: {0}")]
    Storage(#[from] sea_orm::DbErr),
}

/// How long a room read from the database is trusted without reading it
/// again. Changes made through this catalog take effect at once; a host
/// that hears of changes made elsewhere (another node's admin API) calls
/// [`RoomCatalog::forget`]; others are seen within this time.
pub const ROOM_CACHE_TTL: Duration = Duration::from_secs(5);

/// The `rooms` table, with the rooms in use cached in memory: every join
/// looks its room up, and a database round trip per join was the largest
/// cost of a connection storm (measured with `whisper-bench conns`). A
/// room's mutes (the `mutes` table, see [`RoomCatalog::set_mute`]) are
/// cached with it, read and forgotten together, so a join learns whether
/// its user is muted without a query of its own.
///
/// Only rooms that exist are cached, so ids a client makes up cannot grow
/// the cache. Clones share the cache.
#[derive(Debug, Clone)]
pub struct RoomCatalog {
    pub(crate) db: DatabaseConnection,
    cache: Arc<RwLock<HashMap<RoomId, CachedRoom>>>,
}

#[derive(Debug)]
struct CachedRoom {
    room: Room,
    mutes: MutedUsers,
    fetched: Instant,
}

impl RoomCatalog {
    /// A catalog over a connection whose schema has been migrated.
    pub fn new(db: DatabaseConnection) -> Self {
        RoomCatalog {
            db,
            cache: Arc::default(),
        }
    }

    /// What `read` makes of the cached room, when it was read less than
    /// [`ROOM_CACHE_TTL`] ago; `None` when it must be read again.
    fn cached<T>(&self, id: RoomId, read: impl FnOnce(&CachedRoom) -> T) -> Option<T> {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(&id)
            .filter(|cached| cached.fetched.elapsed() < ROOM_CACHE_TTL)
            .map(read)
    }

    /// What `read` makes of the room and its mutes, from the cache or
    /// else from the database (then cached); `None` when there is no such
    /// room.
    async fn lookup<T>(
        &self,
        id: RoomId,
        read: impl Fn(&CachedRoom) -> T,
    ) -> Result<Option<T>, CatalogError> {
        if let Some(found) = self.cached(id, &read) {
            return Ok(Some(found));
        }
        let Some(row) = entity::Entity::find_by_id(id.0).one(&self.db).await? else {
            self.forget(id);
            return Ok(None);
        };
        let cached = CachedRoom {
            room: room_of(row),
            mutes: read_mutes(&self.db, id).await?,
            fetched: Instant::now(),
        };
        let found = read(&cached);
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, cached);
        Ok(Some(found))
    }

    /// Drops the room from the cache, so the next lookup reads the
    /// database: for a change made through another catalog (another node).
    pub fn forget(&self, id: RoomId) {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        cache.remove(&id);
    }

    /// Creates a room.
    pub async fn create(&self, title: &str, staff_only: bool) -> Result<Room, CatalogError> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > 255 {
            return Err(CatalogError::InvalidTitle);
        }
        let row = entity::ActiveModel {
            title: Set(title.to_owned()),
            staff_only: Set(staff_only),
            ..Default::default()
        };
        Ok(room_of(row.insert(&self.db).await?))
    }

    /// Every room, ordered by title (then id, so equal titles keep an order).
    pub async fn list(&self) -> Result<Vec<Room>, CatalogError> {
        Ok(entity::Entity::find()
            .order_by_asc(entity::Column::Title)
            .order_by_asc(entity::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(room_of)
            .collect())
    }

    /// The room with this id, if any: from the cache when it was read less
    /// than [`ROOM_CACHE_TTL`] ago.
    pub async fn get(&self, id: RoomId) -> Result<Option<Room>, CatalogError> {
        self.lookup(id, |cached| cached.room.clone()).await
    }

    /// Until when (Unix milliseconds) `user` is muted in the room at `now`
    /// (Unix milliseconds), `None` when not (or when there is no such
    /// room): from the cache, as [`get`](Self::get).
    pub async fn muted_until(
        &self,
        room: RoomId,
        user: i64,
        now: i64,
    ) -> Result<Option<i64>, CatalogError> {
        let until = self
            .lookup(room, |cached| cached.mutes.get(&user).copied())
            .await?;
        Ok(until.flatten().filter(|until| *until > now))
    }

    /// Makes a room staff-only or open to everyone.
    pub async fn set_staff_only(&self, id: RoomId, staff_only: bool) -> Result<Room, CatalogError> {
        let row = entity::Entity::find_by_id(id.0)
            .one(&self.db)
            .await?
            .ok_or(CatalogError::NoSuchRoom(id))?;
        let mut row: entity::ActiveModel = row.into();
        row.staff_only = Set(staff_only);
        let room = room_of(row.update(&self.db).await?);
        self.forget(id);
        Ok(room)
    }

    /// Deletes a room, its message log and its mutes, in one transaction:
    /// a room that is gone keeps no history, and a failure keeps all.
    pub async fn delete(&self, id: RoomId) -> Result<(), CatalogError> {
        let txn = begin_write(&self.db).await?;
        let result = entity::Entity::delete_by_id(id.0).exec(&txn).await?;
        self.forget(id);
        if result.rows_affected == 0 {
            return Err(CatalogError::NoSuchRoom(id));
        }
        delete_log(&txn, id).await?;
        delete_mutes(&txn, id).await?;
        txn.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rooms_are_created_listed_by_title_and_deleted() {
        let db = whisper_migrations::connect_migrated("sqlite::memory:")
            .await
            .expect("a migrated in-memory database");
        let catalog = RoomCatalog::new(db);
        let zoo = catalog.create("Zoo", false).await.expect("create");
        let staff = catalog.create("  Admins ", true).await.expect("create");
        assert_eq!(staff.title, "Admins");
        let titles: Vec<_> = catalog
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.title)
            .collect();
        // General is the room every fresh database is given.
        assert_eq!(titles, ["Admins", "General", "Zoo"]);
        assert!(!staff.admits(false) && staff.admits(true) && zoo.admits(false));
        assert!(matches!(
            catalog.create("   ", false).await,
            Err(CatalogError::InvalidTitle)
        ));
        assert!(
            catalog
                .set_staff_only(zoo.id, true)
                .await
                .expect("update")
                .staff_only
        );
        // Changes through any clone reach the shared cache at once.
        let cached = catalog.get(zoo.id).await.expect("get");
        assert!(cached.is_some_and(|room| room.staff_only));
        let admin = catalog.clone();
        admin.set_staff_only(zoo.id, false).await.expect("update");
        let cached = catalog.get(zoo.id).await.expect("get");
        assert!(cached.is_some_and(|room| !room.staff_only));
        admin.delete(zoo.id).await.expect("delete");
        assert_eq!(catalog.get(zoo.id).await.expect("get"), None);
        assert!(matches!(
            catalog.delete(zoo.id).await,
            Err(CatalogError::NoSuchRoom(_))
        ));
    }
}
