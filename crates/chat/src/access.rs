//! Changes of access that open connections follow at once, on every node.
//!
//! Who may use a room is checked when a connection joins it, and a session
//! when a socket opens. A change made later (a room deleted or made
//! staff-only, a user logged out or demoted) reaches the connections it
//! concerns as an [`AccessChange`] sent through the channel layer, so every
//! node hears of it as fast as of a message: a room's change goes to the
//! room's group, a user's to a group each of the user's connections joins
//! when it opens ([`Connection::open`](crate::Connection::open)). The
//! connection acts on it when the host hands it over with
//! [`deliver`](crate::Connection::deliver), like any other payload.
//!
//! A change is a payload no frame starts with (JSON text starts with `{`),
//! so a connection tells it from a room event by its first byte.

use std::fmt;
use std::str::FromStr;

use whisper_protocol::RoomId;
use whisper_rooms::{ChannelLayer, GroupName, LayerError, Payload};

/// The first byte of every [`AccessChange`] payload: a control character,
/// which no JSON frame starts with.
const MARK: u8 = 0x01;

/// A change of access that connections must act on at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessChange {
    /// The room was deleted: every member leaves it.
    RoomDeleted(RoomId),
    /// The room was made staff-only: members who are not staff leave it.
    RoomStaffOnly(RoomId),
    /// The room was opened to everyone: nothing for members to do, but a
    /// host that caches rooms reads it again.
    RoomOpened(RoomId),
    /// Something about the user changed: a session ended, the password, the
    /// staff flag, the account itself. Each of the user's connections has
    /// its host read the user again (see
    /// [`Connection::take_user_changed`](crate::Connection::take_user_changed)).
    User(i64),
    /// Staff muted `user` in `room` until `until` (Unix milliseconds), or
    /// lifted the mute (`until: None`). Each of the user's connections
    /// refuses its sends there from now on (or no longer); a host that
    /// caches rooms reads the room's mutes again.
    Mute {
        /// The room the mute holds in.
        room: RoomId,
        /// The muted user's id.
        user: i64,
        /// When the mute ends; `None` once lifted.
        until: Option<i64>,
    },
}

impl AccessChange {
    /// The group every node's room cache listens to: each room change is
    /// sent here as well as to the room, so a node whose cache holds the
    /// room forgets it even when none of its connections is in the room. A
    /// host whose [`RoomDirectory`](crate::RoomDirectory) caches adds an
    /// inbox of its own to this group and forgets each room it hears of.
    pub fn room_changes_group() -> GroupName {
        GroupName::new("room-changes")
    }

    /// The group of a user's connections: `user-{id}`.
    pub fn user_group(user_id: i64) -> GroupName {
        GroupName::new(format!("user-{user_id}"))
    }

    /// The room this change is about, if it is about a room.
    pub fn room(self) -> Option<RoomId> {
        match self {
            AccessChange::RoomDeleted(room)
            | AccessChange::RoomStaffOnly(room)
            | AccessChange::RoomOpened(room)
            | AccessChange::Mute { room, .. } => Some(room),
            AccessChange::User(_) => None,
        }
    }

    /// Tells every connection the change concerns, on every node, and for
    /// a room change every node's room cache. Call it once the change is
    /// stored, so whoever acts on it reads the new state.
    pub async fn announce<L: ChannelLayer>(self, layer: &L) -> Result<(), LayerError> {
        let payload = self.to_payload();
        match self {
            AccessChange::User(id) => layer.group_send(&Self::user_group(id), payload).await,
            AccessChange::RoomDeleted(room)
            | AccessChange::RoomStaffOnly(room)
            | AccessChange::RoomOpened(room) => {
                // Caches first: a join that starts once members are told
                // reads the room anew.
                layer
                    .group_send(&Self::room_changes_group(), payload.clone())
                    .await?;
                layer.group_send(&GroupName::for_room(room), payload).await
            }
            AccessChange::Mute { user, .. } => {
                // Caches first, as above: a join that starts once the
                // user's connections are told reads the mute anew. The
                // room's other members hear nothing of it.
                layer
                    .group_send(&Self::room_changes_group(), payload.clone())
                    .await?;
                layer.group_send(&Self::user_group(user), payload).await
            }
        }
    }

    /// The change as a payload: a control character no frame starts with,
    /// then the change's text (see [`Display`](fmt::Display)).
    pub fn to_payload(self) -> Payload {
        Payload::from(format!("{}{self}", char::from(MARK)))
    }

    /// The change a payload carries; `None` for anything else (a room
    /// event), decided by the first byte.
    pub fn from_payload(payload: &Payload) -> Option<Self> {
        // Every member runs this on every payload it receives: a room
        // event is told apart by its first byte alone, never validated as
        // UTF-8 here (that was 2.4% of a fanning-out server's time).
        let change = payload.as_bytes().strip_prefix(&[MARK])?;
        std::str::from_utf8(change).ok()?.parse().ok()
    }
}

impl fmt::Display for AccessChange {
    /// The change as text: a word, a space, the id (`user 7`,
    /// `room-deleted 3`); a mute, `mute ROOM USER UNTIL` with UNTIL 0 once
    /// lifted (`mute 3 7 1700000000000`). What goes after the mark in a
    /// payload, and what a tool without a channel layer records for the
    /// servers to read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (word, id) = match *self {
            AccessChange::RoomDeleted(room) => ("room-deleted", room.0),
            AccessChange::RoomStaffOnly(room) => ("room-staff-only", room.0),
            AccessChange::RoomOpened(room) => ("room-opened", room.0),
            AccessChange::User(id) => ("user", id),
            AccessChange::Mute { room, user, until } => {
                return write!(f, "mute {} {user} {}", room.0, until.unwrap_or(0));
            }
        };
        write!(f, "{word} {id}")
    }
}

/// Text that is not a change written by [`AccessChange`]'s `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAChange(String);

impl fmt::Display for NotAChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a change of access: {:?}", self.0)
    }
}

impl std::error::Error for NotAChange {}

impl FromStr for AccessChange {
    type Err = NotAChange;

    /// Reads the text [`Display`](fmt::Display) writes.
    fn from_str(text: &str) -> Result<Self, NotAChange> {
        let refuse = || NotAChange(text.to_owned());
        let (word, id) = text.split_once(' ').ok_or_else(refuse)?;
        if word == "mute" {
            let mut numbers = id.split(' ').map(str::parse::<i64>);
            let mut next = || numbers.next().and_then(Result::ok).ok_or_else(refuse);
            let (room, user, until) = (next()?, next()?, next()?);
            if numbers.next().is_some() {
                return Err(refuse());
            }
            return Ok(AccessChange::Mute {
                room: RoomId(room),
                user,
                until: (until != 0).then_some(until),
            });
        }
        let id: i64 = id.parse().map_err(|_| refuse())?;
        match word {
            "room-deleted" => Ok(AccessChange::RoomDeleted(RoomId(id))),
            "room-staff-only" => Ok(AccessChange::RoomStaffOnly(RoomId(id))),
            "room-opened" => Ok(AccessChange::RoomOpened(RoomId(id))),
            "user" => Ok(AccessChange::User(id)),
            _ => Err(refuse()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_comes_back_from_its_text() {
        for change in [
            AccessChange::RoomDeleted(RoomId(3)),
            AccessChange::User(-7),
            AccessChange::Mute {
                room: RoomId(3),
                user: 7,
                until: Some(1_700_000_000_000),
            },
            AccessChange::Mute {
                room: RoomId(3),
                user: 7,
                until: None,
            },
        ] {
            assert_eq!(change.to_string().parse(), Ok(change));
        }
        assert_eq!(AccessChange::User(7).to_string(), "user 7");
        let mute = AccessChange::Mute {
            room: RoomId(3),
            user: 7,
            until: Some(1_700_000_000_000),
        };
        assert_eq!(mute.to_string(), "mute 3 7 1700000000000");
        assert_eq!(mute.room(), Some(RoomId(3)));
        assert_eq!(
            "mute 3 7 0".parse(),
            Ok(AccessChange::Mute {
                room: RoomId(3),
                user: 7,
                until: None
            })
        );
        assert!("user".parse::<AccessChange>().is_err());
    }

    #[test]
    fn every_change_comes_back_from_its_payload() {
        for change in [
            AccessChange::RoomDeleted(RoomId(3)),
            AccessChange::RoomStaffOnly(RoomId(i64::MAX)),
            AccessChange::RoomOpened(RoomId(-1)),
            AccessChange::User(42),
            AccessChange::Mute {
                room: RoomId(i64::MIN),
                user: i64::MAX,
                until: Some(-1),
            },
        ] {
            assert_eq!(
                AccessChange::from_payload(&change.to_payload()),
                Some(change)
            );
        }
    }

    #[test]
    fn frames_and_damaged_payloads_are_not_changes() {
        for text in [
            r#"{"msg_type":0,"room":1,"username":"a","message":"b"}"#,
            "",
            "\u{1}",
            "\u{1}user",
            "\u{1}user x",
            "\u{1}room-gone 1",
            "\u{1}mute 1 2",
            "\u{1}mute 1 2 3 4",
            "\u{1}mute 1 x 3",
            "\u{1}mute 1  2 3",
            "user 1",
        ] {
            assert_eq!(
                AccessChange::from_payload(&Payload::from(text)),
                None,
                "{text:?}"
            );
        }
    }

    #[test]
    fn groups_do_not_meet_room_groups() {
        assert_eq!(AccessChange::user_group(7).as_str(), "user-7");
        assert_ne!(
            AccessChange::room_changes_group(),
            GroupName::for_room(RoomId(0))
        );
    }
}
