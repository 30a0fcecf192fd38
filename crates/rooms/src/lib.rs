//! Whisper's channel layer: how an event reaches every connection in a room.
//!
//! The design follows Django Channels' layer. Every connection owns an
//! [`Inbox`] with a [`ChannelName`]; rooms are groups of channels
//! ([`GroupName`]); the connection joins a room with
//! [`ChannelLayer::group_add`], and a broadcast is one
//! [`ChannelLayer::group_send`]. The same trait covers one process
//! ([`MemoryLayer`]) and several nodes sharing a broker, so the server never
//! knows which it runs on. With the `redis` feature, `RedisLayer` shares
//! groups and presence between nodes through Redis (one pub/sub channel per
//! group, one PUBLISH per broadcast, fan-out on each node).
//!
//! Two rules shape everything here:
//!
//! - **Encode once.** A [`Payload`] is the already-encoded frame behind a
//!   reference count; fan-out clones the handle, never the bytes.
//! - **Never block a sender.** Every inbox is bounded. A receiver that falls
//!   behind is closed ([`InboxClosed::SlowConsumer`]) and counted, instead of
//!   stalling the room or buffering without limit.
//!
//! The layer also keeps *presence*: who is (or was recently) in each room,
//! for the `room_users` reply.
//!
//! ```
//! use whisper_protocol::RoomId;
//! use whisper_rooms::{ChannelLayer, GroupName, MemoryLayer, Payload};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = MemoryLayer::default();
//! let mut ann = layer.new_channel();
//! let mut bob = layer.new_channel();
//!
//! let room = GroupName::for_room(RoomId(1));
//! layer.group_add(&room, ann.name()).await?;
//! layer.group_add(&room, bob.name()).await?;
//!
//! // Encoded once; both inboxes receive the same bytes.
//! let joined = Payload::from(r#"{"msg_type":4,"room":1,"username":"ann"}"#);
//! layer.group_send(&room, joined.clone()).await?;
//! assert_eq!(ann.recv().await?, joined);
//! assert_eq!(bob.recv().await?.as_str(), joined.as_str());
//!
//! layer.presence_touch(RoomId(1), 7, "ann", "Ann").await?;
//! assert_eq!(layer.presence_list(RoomId(1)).await?[0].username, "ann");
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - default: [`ChannelLayer`], [`MemoryLayer`] and the types they carry;
//!   depends on tokio, `bytes`, `thiserror` and `whisper-protocol`; no
//!   database, HTTP or broker crate.
//! - `redis`: `RedisLayer` and `RedisConfig`, pulling in the `redis` and
//!   `deadpool-redis` crates.
//! - `testing`: the module `whisper_rooms::testing` and the macro
//!   `channel_layer_test_suite!`, the scenarios
//!   every backend must pass, for backends written outside this crate.
//!
//! # Writing a backend
//!
//! [`ChannelLayer`] is public and has no hidden methods, so another broker
//! (NATS, Kafka, a service of your own) is a type implementing it in your
//! crate. Make its inboxes with a [`MemoryLayer`] held inside (the inbox
//! constructor and the local fan-out table stay private, to keep the
//! bounded-queue and slow-consumer rules in one place), forward local
//! operations to it, and carry `group_send` between nodes yourself. Then run
//! the shared scenarios against it with `channel_layer_test_suite!` from a
//! test. `examples/counting_layer.rs` in this crate's repository wraps
//! `MemoryLayer` that way, counting messages.
//!
//! # What stays private
//!
//! How inboxes are built and closed (`InboxSender`), the per-node fan-out
//! table shared by both backends, the presence table, and RedisLayer's key
//! layout helpers and subscriber task. The public types are the ones a
//! connection handler touches.

use std::future::Future;
use std::time::Duration;

use whisper_protocol::{PresenceEntry, RoomId};

mod inbox;
mod memory;
mod names;
mod payload;
mod presence;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(feature = "redis")]
pub use self::redis::{DEFAULT_KEY_PREFIX, RedisConfig, RedisLayer};
pub use inbox::{Inbox, InboxClosed};
pub use memory::MemoryLayer;
pub use names::{ChannelName, GroupName};
pub use payload::Payload;

/// The `bytes` crate [`Payload::into_bytes`] hands out, re-exported so a
/// socket writer names the same [`Bytes`](bytes::Bytes) type without
/// depending on a second copy.
pub use bytes;

/// What can go wrong talking to the layer.
///
/// Only the transport can fail: a slow receiver is not an error for the
/// sender (it is closed instead), and an unknown channel is not either.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The backend cannot carry messages right now (e.g. the broker is
    /// down). Reported rather than dropping messages silently; the server
    /// answers `UNAVAILABLE`.
    #[error("channel layer unavailable: {0}")]
    Unavailable(String),
}

/// Configuration shared by all backends.
#[derive(Clone, Debug)]
pub struct LayerConfig {
    /// How many payloads an inbox holds before its receiver counts as too
    /// slow and is closed. Bounds memory per connection; a value of 0 is
    /// treated as 1. Default: 1024.
    pub inbox_capacity: usize,
    /// How long a room's presence survives without any touch or leave.
    /// Forgets users of a node that died without saying goodbye. Default:
    /// one hour.
    pub presence_ttl: Duration,
}

impl Default for LayerConfig {
    fn default() -> Self {
        LayerConfig {
            inbox_capacity: 1024,
            presence_ttl: Duration::from_secs(3600),
        }
    }
}

/// Carries payloads between connections, on one node or many, and keeps
/// room presence.
///
/// Contract for every backend (checked by `channel_layer_test_suite!`, under
/// the `testing` feature):
///
/// - Once `group_add` has completed, every later `group_send` to the group,
///   from any node, reaches the channel; once `group_discard` or
///   `close_channel` has completed, none does.
/// - Payloads sent by one caller, one after the other, reach each receiver
///   in that order.
/// - No method waits for a receiver. A full inbox is closed with
///   [`InboxClosed::SlowConsumer`], taken out of every group and counted in
///   [`slow_consumer_closes`](ChannelLayer::slow_consumer_closes).
/// - Failures of the transport are reported as [`LayerError`], never
///   swallowed.
pub trait ChannelLayer: Send + Sync + 'static {
    /// Creates an inbox for a new connection; its name is unique on this node
    /// and never reused.
    fn new_channel(&self) -> Inbox;

    /// Adds the channel to the group, e.g. when its connection joins a room.
    /// Adding a closed channel does nothing, so a join racing a disconnect
    /// cannot resurrect it.
    fn group_add(
        &self,
        group: &GroupName,
        channel: ChannelName,
    ) -> impl Future<Output = Result<(), LayerError>> + Send;

    /// Removes the channel from the group; not being a member is fine.
    fn group_discard(
        &self,
        group: &GroupName,
        channel: ChannelName,
    ) -> impl Future<Output = Result<(), LayerError>> + Send;

    /// Delivers to every member of the group (on every node for distributed
    /// backends). Never blocks on a slow receiver: a member whose inbox is
    /// full is closed (SlowConsumer), removed from all groups, and counted.
    ///
    /// Order: broadcasts to a group are delivered in the order their
    /// futures were first polled, however their completions interleave. A
    /// backend fixes a broadcast's place at that first poll (`MemoryLayer`
    /// delivers then, `RedisLayer` queues its PUBLISH then), so a caller
    /// may keep several broadcasts in flight and still have them arrive in
    /// the order it started them.
    fn group_send(
        &self,
        group: &GroupName,
        payload: Payload,
    ) -> impl Future<Output = Result<(), LayerError>> + Send;

    /// Delivers to one channel; same overflow rule. Sending to an unknown or
    /// closed channel is Ok (the payload is dropped), as in Channels.
    fn send(
        &self,
        channel: ChannelName,
        payload: Payload,
    ) -> impl Future<Output = Result<(), LayerError>> + Send;

    /// Removes the channel from every group and forgets it; called when a
    /// connection ends. Its inbox then reports [`InboxClosed::Closed`] after
    /// whatever was queued.
    fn close_channel(&self, channel: ChannelName) -> impl Future<Output = ()> + Send;

    /// Number of inboxes closed for falling behind since start, for metrics.
    fn slow_consumer_closes(&self) -> u64;

    /// Number of groups with at least one member on this node, for metrics.
    /// Empty groups are forgotten, so this tracks live rooms.
    fn group_count(&self) -> usize;

    /// How long a room's presence lives without updates
    /// ([`LayerConfig::presence_ttl`]), so a host paces its presence
    /// refreshes without a second copy of the setting.
    fn presence_ttl(&self) -> Duration;

    /// Whether the backend can currently carry messages (for `/healthz`).
    fn is_available(&self) -> impl Future<Output = bool> + Send;

    /// Records or refreshes the user's presence in the room (left = false,
    /// last_update = now); called on join and on every message.
    fn presence_touch(
        &self,
        room: RoomId,
        user_id: i64,
        username: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), LayerError>> + Send;

    /// Marks the user's entry as left (last_update = now); without an entry
    /// this does nothing.
    fn presence_leave(
        &self,
        room: RoomId,
        user_id: i64,
    ) -> impl Future<Output = Result<(), LayerError>> + Send;

    /// The room's entries ordered by user id; empty when the room had no
    /// update for [`LayerConfig::presence_ttl`].
    fn presence_list(
        &self,
        room: RoomId,
    ) -> impl Future<Output = Result<Vec<PresenceEntry>, LayerError>> + Send;
}
