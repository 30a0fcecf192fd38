//! A room as clients are told about it.

use crate::RoomId;

/// A chat room: what the join reply and room lists tell clients, and what
/// decides who may enter.
///
/// Declared here, beside [`RoomId`], so the crates that must not depend on
/// each other (the rules in whisper-chat, the rooms table in
/// whisper-store) share one type instead of converting between copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// The room's id, as clients send it.
    pub id: RoomId,
    /// The title shown in room lists and sent in the join reply.
    pub title: String,
    /// Only staff may join, send to or list the users of this room.
    pub staff_only: bool,
}

impl Room {
    /// A room anyone may join.
    pub fn new(id: RoomId, title: impl Into<String>) -> Self {
        Room {
            id,
            title: title.into(),
            staff_only: false,
        }
    }

    /// The same room, for staff only.
    pub fn staff_only(mut self) -> Self {
        self.staff_only = true;
        self
    }

    /// Whether a user with this staff flag may enter.
    pub fn admits(&self, is_staff: bool) -> bool {
        is_staff || !self.staff_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_only_rooms_admit_staff_alone() {
        let lobby = Room::new(RoomId(1), "Lobby");
        let staff = Room::new(RoomId(2), "Staff").staff_only();
        assert!(lobby.admits(false) && lobby.admits(true));
        assert!(!staff.admits(false) && staff.admits(true));
    }
}
