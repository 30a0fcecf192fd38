//! Mutes: staff keep a user from posting in a room until a time (the
//! `mutes` table). Part of the [`RoomCatalog`], which caches each room's
//! mutes with the room: a join asks whether its user is muted, and must
//! not cost a query for it.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectionTrait, DbErr};
use whisper_protocol::RoomId;

use crate::messages::{execute, query_all};
use crate::rooms::{CatalogError, RoomCatalog};

/// A room's mutes in force, as the catalog caches them: user id -> until
/// (Unix milliseconds).
pub(crate) type MutedUsers = HashMap<i64, i64>;

/// One user muted in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMute {
    /// The muted user's id.
    pub user_id: i64,
    /// When the mute ends, in Unix milliseconds (wall clock, so it holds
    /// across restarts).
    pub until: i64,
    /// The staff member who set it, for the moderation record.
    pub by_user_id: i64,
}

/// The time now, in Unix milliseconds, as the table stores it.
fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

const ACTIVE_MUTES: &str = "SELECT user_id, until_ms, by_user_id FROM mutes \
    WHERE room_id = ? AND until_ms > ? ORDER BY user_id";

/// A room's mutes in force at `now`, ordered by user.
async fn active_mutes(
    db: &impl ConnectionTrait,
    room: RoomId,
    now: i64,
) -> Result<Vec<RoomMute>, DbErr> {
    query_all(db, ACTIVE_MUTES, [room.0.into(), now.into()])
        .await?
        .iter()
        .map(|row| {
            Ok(RoomMute {
                user_id: row.try_get_by_index(0)?,
                until: row.try_get_by_index(1)?,
                by_user_id: row.try_get_by_index(2)?,
            })
        })
        .collect()
}

/// A room's mutes in force now, for the catalog's cache.
pub(crate) async fn read_mutes(
    db: &impl ConnectionTrait,
    room: RoomId,
) -> Result<MutedUsers, DbErr> {
    Ok(active_mutes(db, room, unix_millis())
        .await?
        .into_iter()
        .map(|mute| (mute.user_id, mute.until))
        .collect())
}

/// Deletes a room's mutes, for [`RoomCatalog::delete`] inside its
/// transaction.
pub(crate) async fn delete_mutes(db: &impl ConnectionTrait, room: RoomId) -> Result<(), DbErr> {
    execute(db, "DELETE FROM mutes WHERE room_id = ?", [room.0.into()]).await?;
    Ok(())
}

impl RoomCatalog {
    /// Mutes `user` in `room` until `until` (Unix milliseconds), as set by
    /// staff member `by`; a mute already there gets the new end. Returns
    /// false, storing nothing, when the room or the user does not exist.
    /// This node's cache forgets the room's mutes at once; a host with
    /// several nodes tells the others to [`forget`](Self::forget) it.
    pub async fn set_mute(
        &self,
        room: RoomId,
        user: i64,
        until: i64,
        by: i64,
    ) -> Result<bool, CatalogError> {
        // One statement: a user or room deleted meanwhile cannot leave a
        // mute behind. The WHERE also tells SQLite's parser that ON
        // CONFLICT belongs to the INSERT, not to a join.
        let stored = execute(
            &self.db,
            "INSERT INTO mutes (room_id, user_id, until_ms, by_user_id) \
             SELECT r.id, u.id, ?, ? FROM rooms r, users u WHERE r.id = ? AND u.id = ? \
             ON CONFLICT (room_id, user_id) \
             DO UPDATE SET until_ms = excluded.until_ms, by_user_id = excluded.by_user_id",
            [until.into(), by.into(), room.0.into(), user.into()],
        )
        .await?;
        self.forget(room);
        Ok(stored > 0)
    }

    /// Ends `user`'s mute in `room`; returns whether there was one (ended
    /// or not). The cache forgets the room's mutes, as for
    /// [`set_mute`](Self::set_mute).
    pub async fn clear_mute(&self, room: RoomId, user: i64) -> Result<bool, CatalogError> {
        let cleared = execute(
            &self.db,
            "DELETE FROM mutes WHERE room_id = ? AND user_id = ?",
            [room.0.into(), user.into()],
        )
        .await?;
        self.forget(room);
        Ok(cleared > 0)
    }

    /// The mutes in force in `room` at `now` (Unix milliseconds), ordered
    /// by user, read from the database: for listing them to staff.
    pub async fn mutes(&self, room: RoomId, now: i64) -> Result<Vec<RoomMute>, CatalogError> {
        Ok(active_mutes(&self.db, room, now).await?)
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseConnection;

    use super::*;

    on_sqlite_and_postgres!(
        mutes_are_set_replaced_listed_and_cleared,
        expired_mutes_are_no_mutes,
        only_existing_users_and_rooms_are_muted,
        deleting_a_room_deletes_its_mutes,
    );

    async fn add_user(db: &DatabaseConnection, username: &str) -> i64 {
        let rows = query_all(
            db,
            "INSERT INTO users (username, username_key, name, password_hash, date_joined) \
             VALUES (?, ?, '', 'x', 0) RETURNING id",
            [username.into(), username.into()],
        )
        .await
        .expect("insert a user");
        rows[0].try_get_by_index(0).expect("an id")
    }

    /// A catalog with a room and two users: (catalog, room, staff, user).
    async fn scene(db: DatabaseConnection) -> (RoomCatalog, RoomId, i64, i64) {
        let staff = add_user(&db, "staff").await;
        let user = add_user(&db, "bob").await;
        let catalog = RoomCatalog::new(db);
        let room = catalog.create("Lobby", false).await.expect("create").id;
        (catalog, room, staff, user)
    }

    fn mute(user_id: i64, until: i64, by_user_id: i64) -> RoomMute {
        RoomMute {
            user_id,
            until,
            by_user_id,
        }
    }

    async fn mutes_are_set_replaced_listed_and_cleared(db: DatabaseConnection) {
        let (catalog, room, staff, user) = scene(db).await;
        let now = unix_millis();
        let later = now + 60_000;
        // Cached before the mute: setting it must not leave a stale cache.
        assert_eq!(
            catalog.muted_until(room, user, now).await.expect("read"),
            None
        );
        assert!(
            catalog
                .set_mute(room, user, later, staff)
                .await
                .expect("set")
        );
        assert_eq!(
            catalog.mutes(room, now).await.expect("list"),
            [mute(user, later, staff)]
        );
        assert_eq!(
            catalog.muted_until(room, user, now).await.expect("read"),
            Some(later)
        );
        assert_eq!(
            catalog.muted_until(room, staff, now).await.expect("read"),
            None
        );
        // Muting again replaces the end (and who set it).
        assert!(
            catalog
                .set_mute(room, user, later + 1, user)
                .await
                .expect("set")
        );
        assert_eq!(
            catalog.mutes(room, now).await.expect("list"),
            [mute(user, later + 1, user)]
        );
        assert_eq!(
            catalog.muted_until(room, user, now).await.expect("read"),
            Some(later + 1)
        );
        assert!(catalog.clear_mute(room, user).await.expect("clear"));
        assert!(!catalog.clear_mute(room, user).await.expect("clear"));
        assert_eq!(catalog.mutes(room, now).await.expect("list"), []);
        assert_eq!(
            catalog.muted_until(room, user, now).await.expect("read"),
            None
        );
    }

    async fn expired_mutes_are_no_mutes(db: DatabaseConnection) {
        let (catalog, room, staff, user) = scene(db).await;
        let now = unix_millis();
        assert!(
            catalog
                .set_mute(room, user, now + 1_000, staff)
                .await
                .expect("set")
        );
        assert!(
            catalog
                .set_mute(room, staff, now - 1, staff)
                .await
                .expect("set")
        );
        assert_eq!(
            catalog.mutes(room, now).await.expect("list"),
            [mute(user, now + 1_000, staff)]
        );
        assert_eq!(
            catalog.muted_until(room, staff, now).await.expect("read"),
            None
        );
        // The cached mute ends when its time comes, without a new read.
        assert_eq!(
            catalog
                .muted_until(room, user, now + 1_000)
                .await
                .expect("read"),
            None
        );
        assert_eq!(catalog.mutes(room, now + 1_000).await.expect("list"), []);
    }

    async fn only_existing_users_and_rooms_are_muted(db: DatabaseConnection) {
        let (catalog, room, staff, user) = scene(db).await;
        let until = unix_millis() + 60_000;
        assert!(
            !catalog
                .set_mute(room, user + 100, until, staff)
                .await
                .expect("set")
        );
        assert!(
            !catalog
                .set_mute(RoomId(room.0 + 100), user, until, staff)
                .await
                .expect("set")
        );
        assert_eq!(catalog.mutes(room, 0).await.expect("list"), []);
        assert_eq!(
            catalog.mutes(RoomId(room.0 + 100), 0).await.expect("list"),
            []
        );
    }

    async fn deleting_a_room_deletes_its_mutes(db: DatabaseConnection) {
        let (catalog, room, staff, user) = scene(db).await;
        let other = catalog.create("Kitchen", false).await.expect("create").id;
        let until = unix_millis() + 60_000;
        assert!(
            catalog
                .set_mute(room, user, until, staff)
                .await
                .expect("set")
        );
        assert!(
            catalog
                .set_mute(other, user, until, staff)
                .await
                .expect("set")
        );
        catalog.delete(room).await.expect("delete");
        assert_eq!(catalog.mutes(room, 0).await.expect("list"), []);
        assert_eq!(
            catalog.muted_until(room, user, 0).await.expect("read"),
            None
        );
        assert_eq!(
            catalog.mutes(other, 0).await.expect("list"),
            [mute(user, until, staff)]
        );
    }
}
