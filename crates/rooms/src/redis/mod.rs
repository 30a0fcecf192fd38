//! The distributed backend: several nodes share groups and presence through
//! one Redis.
//!
//! A broadcast travels like this:
//!
//! ```text
//! group_send(room-1, frame)          node A                    Redis                  node B
//!   PUBLISH whisper:group:room-1 ------------------------------> |
//!                                     subscriber task <--------- | ---------> subscriber task
//!                                     LocalChannels fan-out                   LocalChannels fan-out
//!                                     (A's members of room-1)                 (B's members of room-1)
//! ```
//!
//! - **One PUBLISH per broadcast.** Redis carries the frame once per
//!   *subscribed node*, not once per receiver; each node then fans out to its
//!   own inboxes with [`LocalChannels`], where a receiver costs a reference
//!   count. A room of ten thousand connections on four nodes costs one
//!   command and four network copies.
//! - **The sender hears itself through Redis.** The sending node does not
//!   deliver to its own members directly: it gets its copy back through its
//!   subscription like every other node. That keeps one order per group,
//!   the order Redis executed the PUBLISHes in, for every receiver on every
//!   node.
//! - **Subscribe while needed.** A node subscribes to a group's channel while
//!   it has at least one local member, and unsubscribes when the last one
//!   leaves, so Redis only sends a node what some connection there wants.
//!
//! Commands (PUBLISH, presence) go through a deadpool-redis pool, PUBLISHes
//! queued and pipelined in call order by one task (see `publisher.rs`);
//! pub/sub needs a connection of its own, owned by one background task (see
//! `subscriber.rs`). Every call to Redis is bounded by a timeout, so when
//! Redis goes away callers get a [`LayerError`] promptly instead of hanging
//! ([`LayerError::Timeout`] when Redis did not answer, the `redis` crate's
//! error when it failed), and a broadcast is never reported sent unless
//! Redis accepted its PUBLISH.
//!
//! # Keys
//!
//! Everything lives under [`RedisConfig::key_prefix`] (`whisper` unless
//! set), so deployments and tests can share one Redis:
//!
//! | key | kind | contents |
//! |---|---|---|
//! | `{prefix}:group:{group name}` | pub/sub channel | one message per broadcast: the frame's bytes, after a byte `0xFF` for an [expendable](Payload::expendable) one |
//! | `{prefix}:presence:{room id}` | hash, expires `presence_ttl` after its last write | field: user id; value: `{"left":false,"last_update":1700000000.5,"username":"ann","name":"Ann"}` |

mod presence;
mod publisher;
mod subscriber;
mod wire;

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_redis::{Manager, Pool, PoolError, Runtime};
use redis::{AsyncConnectionConfig, FromRedisValue};
use tokio::sync::{mpsc, oneshot};
use whisper_protocol::{PresenceEntry, RoomId};

use self::publisher::Publisher;
use self::subscriber::{Join, Request, Subscriber};
use crate::memory::LocalChannels;
use crate::{ChannelLayer, ChannelName, GroupName, Inbox, LayerConfig, LayerError, Payload};

/// The key prefix used unless [`RedisConfig::key_prefix`] says otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "whisper";

/// How long any one request to Redis may take before the caller gets
/// [`LayerError::Timeout`]: long enough for a loaded server, short enough
/// that a chat client is told to retry rather than left waiting.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The PING behind [`ChannelLayer::is_available`] gets less: a health check
/// that hangs is a failed health check.
const AVAILABILITY_TIMEOUT: Duration = Duration::from_millis(500);

/// How long `group_add` waits for the subscriber task. The task answers
/// within a few [`COMMAND_TIMEOUT`]s (what it is doing now, then the
/// subscription itself); this only guards against the unexpected.
const JOIN_TIMEOUT: Duration = Duration::from_secs(3 * COMMAND_TIMEOUT.as_secs());

/// How to reach Redis and how to name things there.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host[:port][/db]`, as the `redis` crate
    /// reads it.
    pub url: String,
    /// Prefix of every key and pub/sub channel the layer uses (see the
    /// module docs for the layout). Nodes that serve the same rooms must
    /// share it; separate deployments or tests on one Redis must not.
    /// Default: [`DEFAULT_KEY_PREFIX`].
    pub key_prefix: String,
    /// Inbox capacity and presence TTL, as for every backend.
    pub layer: LayerConfig,
}

impl RedisConfig {
    /// The Redis at `url`, with the default prefix and [`LayerConfig`].
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            layer: LayerConfig::default(),
        }
    }
}

impl fmt::Debug for RedisConfig {
    /// Hides the password a URL may carry: configs end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &without_password(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("layer", &self.layer)
            .finish()
    }
}

/// Backend for several nodes: one Redis pub/sub channel per group, local
/// fan-out on each node, presence in a Redis hash per room.
///
/// Made by [`RedisLayer::connect`], inside a tokio runtime (it spawns the
/// subscriber task there). Dropping the layer stops that task and closes
/// every inbox of this node.
///
/// Beyond the [`ChannelLayer`] contract:
///
/// - [`send`](ChannelLayer::send) is node-local. A [`ChannelName`] names an
///   inbox of the node that made it, and only that node's connections ever
///   hold it, so a direct send never needs to leave the process.
/// - [`group_add`](ChannelLayer::group_add) returns once this node's
///   subscription to the group is confirmed by Redis, so any broadcast
///   published after it returns (from any node) reaches the new member,
///   and none published before it was called does (the joiner does not see
///   the ENTER broadcast that announced it).
/// - While Redis is unreachable, `group_add`, `group_send` and the presence
///   calls fail with a [`LayerError`]; `group_discard`, `send` and
///   `close_channel` still work, being local. The subscriber reconnects
///   with backoff and resubscribes every group with local members, so
///   delivery resumes without the connections doing anything. Broadcasts
///   published while a node's subscription was down are lost for that
///   node's members: pub/sub has no replay.
pub struct RedisLayer {
    node: Arc<Node>,
    pool: Pool,
    publisher: Publisher,
    keys: Keys,
    presence_ttl: Duration,
    /// To the subscriber task; dropping it (with the layer) stops the task.
    subscriber: mpsc::UnboundedSender<Request>,
}

/// What the layer and its subscriber task share.
#[derive(Debug)]
struct Node {
    /// This node's inboxes and their groups; the subscriber fans out into
    /// them and is the only one to add members.
    channels: LocalChannels,
    /// Whether the pub/sub connection is up with every local group
    /// subscribed.
    pubsub_up: AtomicBool,
}

impl RedisLayer {
    /// Connects to Redis and starts the node's subscriber task.
    ///
    /// Fails if the URL is invalid ([`LayerError::InvalidUrl`]) or Redis
    /// does not answer a PING and accept a pub/sub connection now: a node
    /// that starts without its broker would only find out at the first
    /// message. Once connected, later outages are ridden out (see the type's
    /// docs).
    pub async fn connect(config: RedisConfig) -> Result<RedisLayer, LayerError> {
        let RedisConfig {
            url,
            key_prefix,
            layer,
        } = config;
        let invalid_url = |error| LayerError::InvalidUrl(Arc::new(error));
        let client = redis::Client::open(url.as_str()).map_err(invalid_url)?;
        // The redis crate's own defaults would fail a response after 500 ms;
        // ours is the same bound as the rest of the layer.
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let manager =
            Manager::new_with_config(url.as_str(), connection_config).map_err(invalid_url)?;
        let pool = Pool::builder(manager)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(LayerError::PoolSetup)?;

        let keys = Keys { prefix: key_prefix };
        let node = Arc::new(Node {
            channels: LocalChannels::new(&layer),
            pubsub_up: AtomicBool::new(false),
        });
        let (requests, subscriber) = Subscriber::new(Arc::clone(&node), client, keys.clone());
        let redis_layer = RedisLayer {
            node,
            publisher: Publisher::start(pool.clone()),
            pool,
            keys,
            presence_ttl: layer.presence_ttl,
            subscriber: requests,
        };
        redis_layer.ping(COMMAND_TIMEOUT).await?;
        subscriber.start().await?;
        Ok(redis_layer)
    }

    /// Tells the subscriber that these groups lost their last local member,
    /// so it unsubscribes from them.
    fn release(&self, emptied: Vec<GroupName>) {
        if !emptied.is_empty() {
            // Fails only once the task is gone, and then there is no
            // subscription left to drop.
            let _ = self.subscriber.send(Request::Release(emptied));
        }
    }

    async fn ping(&self, limit: Duration) -> Result<(), LayerError> {
        self.command("PING", limit, &redis::cmd("PING")).await
    }

    /// Runs one command on a pooled connection, the wait for a connection
    /// included in `limit`.
    async fn command<T: FromRedisValue>(
        &self,
        what: &'static str,
        limit: Duration,
        command: &redis::Cmd,
    ) -> Result<T, LayerError> {
        bounded(what, limit, async {
            let mut connection = self.pool.get().await?;
            Ok::<T, Failure>(command.query_async(&mut connection).await?)
        })
        .await
    }

    /// Runs a pipeline (e.g. a MULTI/EXEC transaction) like
    /// [`command`](Self::command).
    async fn pipeline(
        &self,
        what: &'static str,
        pipeline: &redis::Pipeline,
    ) -> Result<(), LayerError> {
        bounded(what, COMMAND_TIMEOUT, async {
            let mut connection = self.pool.get().await?;
            Ok::<(), Failure>(pipeline.query_async(&mut connection).await?)
        })
        .await
    }
}

impl fmt::Debug for RedisLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLayer")
            .field("key_prefix", &self.keys.prefix)
            .field("rooms", &self.room_count())
            .field("pubsub_up", &self.node.pubsub_up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ChannelLayer for RedisLayer {
    fn new_channel(&self) -> Inbox {
        self.node.channels.new_channel()
    }

    fn presence_ttl(&self) -> Duration {
        self.presence_ttl
    }

    async fn group_add(&self, group: &GroupName, channel: ChannelName) -> Result<(), LayerError> {
        if !self.node.channels.contains(channel) {
            // Closed: adding it does nothing, and needs no subscription.
            return Ok(());
        }
        // The subscriber adds the member itself, after Redis confirmed the
        // subscription: only then is it sure to hear every later PUBLISH.
        let (done, joined) = oneshot::channel();
        let join = Join {
            group: group.clone(),
            channel,
            done,
        };
        self.subscriber
            .send(Request::Join(join))
            .map_err(|_| subscriber_gone())?;
        // On a timeout the task sees the dropped receiver and undoes the
        // join.
        within("SUBSCRIBE", JOIN_TIMEOUT, joined)
            .await?
            .map_err(|_| subscriber_gone())?
    }

    async fn group_discard(
        &self,
        group: &GroupName,
        channel: ChannelName,
    ) -> Result<(), LayerError> {
        // Local and immediate: from now on, fan-out skips this channel, even
        // before the node unsubscribes.
        if self.node.channels.group_discard(group, channel) {
            self.release(vec![group.clone()]);
        }
        Ok(())
    }

    async fn group_send(&self, group: &GroupName, payload: Payload) -> Result<(), LayerError> {
        // One PUBLISH, whatever the number of members and nodes: the cost
        // of a broadcast in Redis does not grow with the room. Ok only once
        // Redis has accepted it, so Ok never covers a message that was not
        // sent. Queued at the first poll, so broadcasts started in an order
        // are published in that order.
        self.publisher
            .publish(self.keys.group(group), payload)
            .await
    }

    async fn send(&self, channel: ChannelName, payload: Payload) -> Result<(), LayerError> {
        // Node-local by design: see the type's docs.
        self.release(self.node.channels.send(channel, payload));
        Ok(())
    }

    async fn close_channel(&self, channel: ChannelName) {
        self.release(self.node.channels.close_channel(channel));
    }

    fn slow_consumer_closes(&self) -> u64 {
        self.node.channels.slow_consumer_closes()
    }

    fn expendables_dropped(&self) -> u64 {
        self.node.channels.expendables_dropped()
    }

    fn room_count(&self) -> usize {
        self.node.channels.room_count()
    }

    async fn is_available(&self) -> bool {
        // Both halves must work: commands carry sends and presence, the
        // subscription carries deliveries to this node.
        self.node.pubsub_up.load(Ordering::Acquire) && self.ping(AVAILABILITY_TIMEOUT).await.is_ok()
    }

    async fn presence_touch(
        &self,
        room: RoomId,
        user_id: i64,
        username: &str,
        name: &str,
    ) -> Result<(), LayerError> {
        let touch = presence::touch(
            &self.keys.presence(room),
            user_id,
            username,
            name,
            self.presence_ttl,
        );
        self.pipeline("presence touch", &touch).await
    }

    async fn presence_leave(&self, room: RoomId, user_id: i64) -> Result<(), LayerError> {
        let leave = presence::leave(&self.keys.presence(room), user_id, self.presence_ttl);
        self.command("presence leave", COMMAND_TIMEOUT, &leave)
            .await
    }

    async fn presence_list(&self, room: RoomId) -> Result<Vec<PresenceEntry>, LayerError> {
        let key = self.keys.presence(room);
        let fields: Vec<(String, String)> = self
            .command(
                "presence list",
                COMMAND_TIMEOUT,
                redis::cmd("HGETALL").arg(&key),
            )
            .await?;
        Ok(presence::decode(&key, fields))
    }
}

/// Names of this deployment's keys and channels in Redis.
#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    /// The pub/sub channel of a group: `{prefix}:group:{group name}`.
    fn group(&self, group: &GroupName) -> String {
        format!("{}:group:{group}", self.prefix)
    }

    /// The presence hash of a room: `{prefix}:presence:{room id}`.
    fn presence(&self, room: RoomId) -> String {
        format!("{}:presence:{}", self.prefix, room.0)
    }
}

/// Why one request to Redis failed, before [`Failure::during`] says what
/// the request was.
enum Failure {
    Pool(PoolError),
    Redis(redis::RedisError),
}

impl From<PoolError> for Failure {
    fn from(error: PoolError) -> Self {
        Failure::Pool(error)
    }
}

impl From<redis::RedisError> for Failure {
    fn from(error: redis::RedisError) -> Self {
        Failure::Redis(error)
    }
}

impl Failure {
    /// The layer's error for a failure of the request `during`.
    fn during(self, during: &'static str) -> LayerError {
        match self {
            Failure::Pool(error) => LayerError::Pool {
                during,
                source: Arc::new(error),
            },
            Failure::Redis(error) => LayerError::Redis {
                during,
                source: Arc::new(error),
            },
        }
    }
}

/// Waits for `request` at most `limit`; past it, [`LayerError::Timeout`]
/// naming what was attempted.
async fn within<T>(
    during: &'static str,
    limit: Duration,
    request: impl Future<Output = T>,
) -> Result<T, LayerError> {
    tokio::time::timeout(limit, request)
        .await
        .map_err(|_| LayerError::Timeout { during, limit })
}

/// Runs a request to Redis for at most `limit`: a timeout, or its failure,
/// becomes the [`LayerError`] naming what was attempted.
async fn bounded<T, E: Into<Failure>>(
    during: &'static str,
    limit: Duration,
    request: impl Future<Output = Result<T, E>>,
) -> Result<T, LayerError> {
    within(during, limit, request)
        .await?
        .map_err(|error| error.into().during(during))
}

fn subscriber_gone() -> LayerError {
    LayerError::Stopped("Redis subscriber")
}

/// The URL with any password replaced by `***`.
fn without_password(url: &str) -> Cow<'_, str> {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            Cow::Owned(format!("{}://***{}", &url[..scheme_end], &url[at..]))
        }
        _ => Cow::Borrowed(url),
    }
}

#[cfg(test)]
mod tests {
    use whisper_testkit::{redis_url, unique_name};

    use super::*;

    /// A layer of its own on the shared Redis: a fresh prefix keeps tests
    /// (and runs) from seeing each other's groups and presence.
    async fn connect(layer: LayerConfig) -> RedisLayer {
        let config = RedisConfig {
            url: redis_url(),
            key_prefix: unique_name("whisper_rooms"),
            layer,
        };
        RedisLayer::connect(config)
            .await
            .expect("the shared Redis of scripts/test accepts connections")
    }

    mod channel_layer {
        use crate::LayerConfig;

        crate::channel_layer_test_suite!(|config: LayerConfig| super::connect(config));
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let keys = Keys {
            prefix: "whisper".to_owned(),
        };
        assert_eq!(
            keys.group(&GroupName::for_room(RoomId(3))),
            "whisper:group:room-3"
        );
        assert_eq!(keys.presence(RoomId(3)), "whisper:presence:3");
    }

    #[test]
    fn configs_do_not_print_passwords() {
        let config = RedisConfig::new("redis://:hunter2@cache:6379/0");
        assert_eq!(config.key_prefix, DEFAULT_KEY_PREFIX);
        let printed = format!("{config:?}");
        assert!(printed.contains("redis://***@cache:6379/0"), "{printed}");
        assert!(!printed.contains("hunter2"));
        assert_eq!(without_password("redis://127.0.0.1/"), "redis://127.0.0.1/");
    }

    #[tokio::test]
    async fn connecting_to_nothing_fails_at_once() {
        let port = whisper_testkit::free_port();
        let config = RedisConfig::new(format!("redis://127.0.0.1:{port}/"));
        let started = std::time::Instant::now();
        let error = RedisLayer::connect(config)
            .await
            .expect_err("nothing listens there");
        assert!(error.is_disconnected() && !error.is_timeout(), "{error:?}");
        assert!(started.elapsed() < COMMAND_TIMEOUT * 2);
    }

    #[tokio::test]
    async fn an_invalid_url_is_refused() {
        let error = RedisLayer::connect(RedisConfig::new("not a url"))
            .await
            .expect_err("not a Redis URL");
        assert!(matches!(error, LayerError::InvalidUrl(_)), "{error:?}");
        assert!(
            error.to_string().starts_with("invalid Redis URL: "),
            "{error}"
        );
    }
}
