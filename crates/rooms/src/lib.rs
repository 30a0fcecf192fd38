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
//! operations to it, and carry `group_send` between nodes yourself; report
//! the broker's failures as [`LayerError::Backend`], which keeps its error
//! as the source. Then run the shared scenarios against it with
//! `channel_layer_test_suite!` from a test. `examples/counting_layer.rs` in
//! this crate's repository wraps `MemoryLayer` that way, counting messages.
//!
//! # What stays private
//!
//! How inboxes are built and closed (`InboxSender`), the per-node fan-out
//! table shared by both backends, the presence table, and RedisLayer's key
//! layout helpers and subscriber task. The public types are the ones a
//! connection handler touches.

use std::future::Future;
use std::sync::Arc;
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
/// Every variant means the call did not take effect (the server answers
/// `UNAVAILABLE`, and the client may retry); they differ in why, so an
/// operator reads the cause and a caller can tell a broker that did not
/// answer ([`is_timeout`](Self::is_timeout)) from one it lost
/// ([`is_disconnected`](Self::is_disconnected)). The broker's own error is
/// kept as the source.
///
/// Cloneable, because one failure (a pipeline of PUBLISHes, a subscription)
/// answers several callers at once: sources are shared behind an [`Arc`].
/// Non-exhaustive: the `redis` feature adds the Redis backend's variants.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The backend gave no answer within `limit`: the broker is overloaded,
    /// or cut off without having said so.
    #[error("no answer to {during} within {limit:?}")]
    Timeout {
        /// The request left unanswered, e.g. `PUBLISH`.
        during: &'static str,
        /// How long it was given.
        limit: Duration,
    },
    /// The backend's connection to its broker is closed; the backend
    /// reconnects by itself, so a later call may succeed.
    #[error("the connection to the broker is down")]
    Disconnected,
    /// A task the backend needs has stopped, so no call can succeed again
    /// (the layer is being dropped, or the task panicked).
    #[error("the layer's {0} task has stopped")]
    Stopped(&'static str),
    /// Redis answered a request with an error, or the connection carrying
    /// it failed.
    #[cfg(feature = "redis")]
    #[error("{during} failed in Redis: {source}")]
    Redis {
        /// The request that failed, e.g. `PUBLISH`.
        during: &'static str,
        /// What the `redis` crate reported.
        #[source]
        source: Arc<::redis::RedisError>,
    },
    /// No pooled connection to Redis could be had for a request (most
    /// often because a new one could not be opened).
    #[cfg(feature = "redis")]
    #[error("{during}: no connection to Redis: {source}")]
    Pool {
        /// The request that waited for a connection.
        during: &'static str,
        /// What the pool reported.
        #[source]
        source: Arc<deadpool_redis::PoolError>,
    },
    /// The URL given to [`RedisLayer::connect`] is not a Redis URL.
    #[cfg(feature = "redis")]
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] Arc<::redis::RedisError>),
    /// The Redis connection pool could not be set up.
    #[cfg(feature = "redis")]
    #[error("cannot build the Redis connection pool: {0}")]
    PoolSetup(#[source] deadpool_redis::BuildError),
    /// A backend written outside this crate failed; its own error is the
    /// source, so such a backend need not squeeze it into the variants
    /// above.
    #[error("channel layer backend: {0}")]
    Backend(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

impl LayerError {
    /// Whether the backend gave no answer in time, by its own bound or its
    /// broker client's: retrying at once may well time out again.
    pub fn is_timeout(&self) -> bool {
        match self {
            LayerError::Timeout { .. } => true,
            #[cfg(feature = "redis")]
            LayerError::Redis { source, .. } => source.is_timeout(),
            #[cfg(feature = "redis")]
            LayerError::Pool { source, .. } => match &**source {
                deadpool_redis::PoolError::Timeout(_) => true,
                deadpool_redis::PoolError::Backend(error) => error.is_timeout(),
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether the connection to the broker is closed, was refused or is
    /// being re-established: the broker is gone (for now), not slow.
    pub fn is_disconnected(&self) -> bool {
        match self {
            LayerError::Disconnected => true,
            #[cfg(feature = "redis")]
            LayerError::Redis { source, .. } => source.is_connection_dropped(),
            #[cfg(feature = "redis")]
            LayerError::Pool { source, .. } => matches!(
                &**source,
                deadpool_redis::PoolError::Backend(error) if error.is_connection_dropped()
            ),
            _ => false,
        }
    }
}

/// Configuration shared by all backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerConfig {
    /// How many bytes of payloads may wait in one inbox (each counted with
    /// its queue slot, about 40 bytes). Past half of it, expendable
    /// payloads ([`Payload::expendable`]) to that inbox are dropped; past
    /// all of it, its receiver counts as too slow and is closed. Bounds
    /// memory per connection. An empty inbox takes one payload of any
    /// size. Default: 1 MiB, about 90 ms of a busy room's traffic
    /// (11 MB/s to each member) for a receiver to fall behind before its
    /// notices are dropped.
    pub max_queued_bytes: usize,
    /// How long expendable payloads, while nothing else is queued, wait in
    /// an inbox for other payloads to go with them (see
    /// [`Inbox::recv`]). Members joining a room one after another then
    /// cost each member one socket write per delay, not one per notice;
    /// anything else ends the wait at once. Zero hands every payload over
    /// as it comes. Default: 250 ms: a notice that late goes unnoticed,
    /// and at 50 ms a room filling at 10 joins a second saved nothing
    /// (fewer than one notice per wait).
    pub expendable_delay: Duration,
    /// How long a room's presence survives without any touch or leave.
    /// Forgets users of a node that died without saying goodbye. Default:
    /// one hour.
    pub presence_ttl: Duration,
}

impl Default for LayerConfig {
    fn default() -> Self {
        LayerConfig {
            max_queued_bytes: 1024 * 1024,
            expendable_delay: Duration::from_millis(250),
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

    /// Number of expendable payloads dropped since start for receivers
    /// falling behind (see [`LayerConfig::max_queued_bytes`]), for metrics.
    fn expendables_dropped(&self) -> u64;

    /// Number of rooms (groups made by [`GroupName::for_room`]) with at
    /// least one member on this node, for metrics. Other groups (a host's
    /// per-user groups, say) are not counted; empty groups are forgotten,
    /// so this tracks live rooms.
    fn room_count(&self) -> usize;

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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn layer_errors_say_why_and_keep_their_source() {
        let timeout = LayerError::Timeout {
            during: "PUBLISH",
            limit: Duration::from_secs(2),
        };
        assert!(timeout.is_timeout() && !timeout.is_disconnected());
        assert_eq!(timeout.to_string(), "no answer to PUBLISH within 2s");
        let down = LayerError::Disconnected;
        assert!(down.is_disconnected() && !down.is_timeout());

        let refused = LayerError::Backend(Arc::new(std::io::Error::other("refused")));
        assert!(!refused.is_timeout() && !refused.is_disconnected());
        let source = refused.source().expect("the backend's error");
        assert_eq!(source.to_string(), "refused");
        // One failure answers several callers.
        assert_eq!(
            refused.clone().to_string(),
            "channel layer backend: refused"
        );
    }
}
