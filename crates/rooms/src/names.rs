//! Names the layer routes by: groups (broadcast sets) and channels (inboxes).

use std::fmt;
use std::sync::Arc;

use whisper_protocol::RoomId;

/// Name of a group: a broadcast set of channels, e.g. `"room-1"`.
///
/// Each room has one group ([`GroupName::for_room`]); a broadcast to the room
/// is one [`group_send`](crate::ChannelLayer::group_send) to it. The name is
/// an `Arc<str>` so the layer can keep it in several maps (and callers can
/// keep it per connection) without copying the text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(Arc<str>);

impl GroupName {
    /// A group with an arbitrary name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        GroupName(name.into())
    }

    /// The group of a room's members: `room-{id}`, as the original server
    /// named it.
    pub fn for_room(room: RoomId) -> Self {
        GroupName::new(format!("room-{}", room.0))
    }

    /// Whether this is a room's group, as [`for_room`](Self::for_room)
    /// names it.
    pub fn is_room(&self) -> bool {
        self.0
            .strip_prefix("room-")
            .is_some_and(|id| id.parse::<i64>().is_ok())
    }

    /// The name as text, e.g. for a Redis pub/sub channel.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identity of one connection's inbox on this node.
///
/// Handed out by [`ChannelLayer::new_channel`](crate::ChannelLayer::new_channel)
/// (read it back with [`Inbox::name`](crate::Inbox::name)); it cannot be made
/// up, so a name always refers to an inbox this node created. Names are
/// unique per layer and never reused, so a stale name held after its inbox
/// closed reaches nothing rather than a newer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(u64);

impl ChannelName {
    /// Wraps a number the layer allocated.
    pub(crate) fn new(id: u64) -> Self {
        ChannelName(id)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "channel.{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_groups_are_named_like_the_original() {
        let group = GroupName::for_room(RoomId(12));
        assert_eq!(group.as_str(), "room-12");
        assert_eq!(group.to_string(), "room-12");
        assert_eq!(group, GroupName::new("room-12"));
        assert!(group.is_room() && GroupName::for_room(RoomId(-3)).is_room());
        for other in ["room-", "room-x", "rooms-1", "user-12", "room-changes"] {
            assert!(!GroupName::new(other).is_room(), "{other}");
        }
    }

    #[test]
    fn channel_names_display_their_number() {
        assert_eq!(ChannelName::new(7).to_string(), "channel.7");
    }
}
