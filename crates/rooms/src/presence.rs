//! Who is in which room, kept in memory.
//!
//! Presence mirrors what the original kept in a Redis hash per room: one
//! entry per user, refreshed on join and send, flagged `left` on leave, and
//! the whole room forgotten once nobody updated it for the TTL (so a node
//! that died without saying goodbye does not leave ghosts forever). The
//! table is plain data with no locking and no clock of its own: callers pass
//! `now`, which keeps expiry testable without sleeping.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use whisper_protocol::{PresenceEntry, RoomId};

/// Presence entries of every room, with a per-room time to live.
#[derive(Debug)]
pub(crate) struct PresenceTable {
    ttl: Duration,
    rooms: HashMap<RoomId, RoomPresence>,
    /// When to next drop every expired room, so rooms nobody asks about
    /// again do not accumulate.
    next_sweep: Instant,
}

#[derive(Debug)]
struct RoomPresence {
    /// Last touch or leave in this room; the room expires `ttl` after it.
    last_update: Instant,
    /// Ordered by user id, the order `room_users` replies list them in.
    users: BTreeMap<i64, PresenceEntry>,
}

impl PresenceTable {
    /// How long a room lives without updates.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// An empty table whose rooms expire `ttl` after their last update.
    pub(crate) fn new(ttl: Duration, now: Instant) -> Self {
        PresenceTable {
            ttl,
            rooms: HashMap::new(),
            next_sweep: now + ttl,
        }
    }

    /// Records or refreshes the user's entry: present, updated now.
    pub(crate) fn touch(
        &mut self,
        room: RoomId,
        user_id: i64,
        username: &str,
        name: &str,
        now: Instant,
    ) {
        self.sweep(now);
        self.drop_if_expired(room, now);
        let room = self.rooms.entry(room).or_insert_with(|| RoomPresence {
            last_update: now,
            users: BTreeMap::new(),
        });
        room.last_update = now;
        room.users.insert(
            user_id,
            PresenceEntry {
                user_id,
                username: username.to_owned(),
                name: name.to_owned(),
                left: false,
                last_update: unix_now(),
            },
        );
    }

    /// Marks the user's entry as left, updated now; no entry, no change.
    pub(crate) fn leave(&mut self, room: RoomId, user_id: i64, now: Instant) {
        self.drop_if_expired(room, now);
        let Some(room) = self.rooms.get_mut(&room) else {
            return;
        };
        let Some(entry) = room.users.get_mut(&user_id) else {
            return;
        };
        entry.left = true;
        entry.last_update = unix_now();
        room.last_update = now;
    }

    /// The room's entries ordered by user id; empty once the room expired.
    pub(crate) fn list(&mut self, room: RoomId, now: Instant) -> Vec<PresenceEntry> {
        self.drop_if_expired(room, now);
        self.rooms
            .get(&room)
            .map(|room| room.users.values().cloned().collect())
            .unwrap_or_default()
    }

    fn is_expired(&self, room: &RoomPresence, now: Instant) -> bool {
        now.saturating_duration_since(room.last_update) >= self.ttl
    }

    fn drop_if_expired(&mut self, room: RoomId, now: Instant) {
        if let Some(presence) = self.rooms.get(&room)
            && self.is_expired(presence, now)
        {
            self.rooms.remove(&room);
        }
    }

    /// At most once per `ttl`, drops every expired room: the cost is spread
    /// over touches, and memory stays bounded by the rooms active in the
    /// last two TTLs.
    fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        let ttl = self.ttl;
        self.rooms
            .retain(|_, room| now.saturating_duration_since(room.last_update) < ttl);
        self.next_sweep = now + ttl;
    }

    #[cfg(test)]
    fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

/// Wall-clock time in Unix seconds with a fraction, as `last_update` is
/// reported to clients.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since_epoch| since_epoch.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn user_ids(entries: &[PresenceEntry]) -> Vec<i64> {
        entries.iter().map(|entry| entry.user_id).collect()
    }

    #[test]
    fn entries_are_listed_by_user_id_with_their_left_flag() {
        let start = Instant::now();
        let mut table = PresenceTable::new(TTL, start);
        table.touch(RoomId(1), 9, "zed", "Zed", start);
        table.touch(RoomId(1), 2, "ann", "Ann", start);
        table.leave(RoomId(1), 9, start);
        let entries = table.list(RoomId(1), start);
        assert_eq!(user_ids(&entries), [2, 9]);
        assert_eq!(
            (entries[0].username.as_str(), entries[0].left),
            ("ann", false)
        );
        assert_eq!((entries[1].name.as_str(), entries[1].left), ("Zed", true));
        assert!(table.list(RoomId(2), start).is_empty());
    }

    #[test]
    fn leaving_without_an_entry_changes_nothing() {
        let start = Instant::now();
        let mut table = PresenceTable::new(TTL, start);
        table.leave(RoomId(1), 3, start);
        assert_eq!(table.room_count(), 0);
        table.touch(RoomId(1), 2, "ann", "", start);
        table.leave(RoomId(1), 3, start);
        assert_eq!(user_ids(&table.list(RoomId(1), start)), [2]);
    }

    #[test]
    fn a_room_expires_ttl_after_its_last_update() {
        let start = Instant::now();
        let mut table = PresenceTable::new(TTL, start);
        table.touch(RoomId(1), 1, "ann", "", start);
        table.touch(RoomId(1), 2, "bob", "", start + TTL / 2);
        // Alive: the last update was half a TTL ago.
        assert_eq!(table.list(RoomId(1), start + TTL).len(), 2);
        assert!(table.list(RoomId(1), start + TTL / 2 + TTL).is_empty());
        assert_eq!(table.room_count(), 0);
    }

    #[test]
    fn touching_an_expired_room_starts_it_afresh() {
        let start = Instant::now();
        let mut table = PresenceTable::new(TTL, start);
        table.touch(RoomId(1), 1, "ann", "", start);
        table.touch(RoomId(1), 2, "bob", "", start + TTL);
        assert_eq!(user_ids(&table.list(RoomId(1), start + TTL)), [2]);
    }

    #[test]
    fn rooms_nobody_asks_about_are_swept() {
        let start = Instant::now();
        let mut table = PresenceTable::new(TTL, start);
        for room in 0..100 {
            table.touch(RoomId(room), 1, "ann", "", start);
        }
        table.touch(RoomId(1000), 1, "ann", "", start + TTL);
        assert_eq!(table.room_count(), 1);
    }
}
