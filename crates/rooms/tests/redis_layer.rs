//! RedisLayer as a cluster: several nodes (layers) on one real Redis, and
//! that Redis going away and coming back.
//!
//! The behaviour every backend shares is checked by the shared suite (in
//! `src/redis/mod.rs`); these scenarios are about what only a distributed
//! backend has: other nodes, subscriptions, the cost in Redis, outages.
//! Tests on the shared Redis (`whisper_testkit::redis_url`, started by
//! `scripts/test`) use a key prefix of their own; tests that count commands
//! or restart Redis get a private server.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use whisper_protocol::RoomId;
use whisper_rooms::testing::{assert_silent_for, recv_within};
use whisper_rooms::{
    ChannelLayer, GroupName, Inbox, LayerConfig, LayerError, Payload, RedisConfig, RedisLayer,
};
use whisper_testkit::{RedisServer, redis_url, unique_name};

/// How long anything that must happen may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long to wait before concluding that nothing arrives.
const SETTLE: Duration = Duration::from_millis(200);

/// Checks that a call failed because the connection to Redis is lost.
fn assert_disconnected<T: std::fmt::Debug>(result: Result<T, LayerError>) {
    let error = result.expect_err("Redis is down");
    assert!(error.is_disconnected() && !error.is_timeout(), "{error:?}");
}

/// A node of a deployment named `prefix`.
async fn node(url: &str, prefix: &str, layer: LayerConfig) -> RedisLayer {
    RedisLayer::connect(RedisConfig {
        url: url.to_owned(),
        key_prefix: prefix.to_owned(),
        layer,
    })
    .await
    .expect("Redis accepts connections (run through scripts/test)")
}

/// Two nodes of one fresh deployment on the shared Redis.
async fn two_nodes() -> (RedisLayer, RedisLayer, String) {
    let url = redis_url();
    let prefix = unique_name("whisper_cluster");
    let a = node(&url, &prefix, LayerConfig::default()).await;
    let b = node(&url, &prefix, LayerConfig::default()).await;
    (a, b, prefix)
}

/// A plain connection, to look at Redis from outside the layer.
async fn inspect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("a valid URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis accepts connections")
}

/// How many connections subscribe to the channel (`PUBSUB NUMSUB`).
async fn subscribers(connection: &mut MultiplexedConnection, channel: &str) -> i64 {
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(connection)
        .await
        .expect("PUBSUB NUMSUB");
    count
}

/// Polls `PUBSUB NUMSUB` until the channel has `expected` subscribers.
async fn subscribers_become(
    connection: &mut MultiplexedConnection,
    channel: &str,
    expected: i64,
    what: &str,
) {
    let deadline = Instant::now() + DEADLINE;
    while subscribers(connection, channel).await != expected {
        assert!(Instant::now() < deadline, "{what} within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn add(layer: &RedisLayer, group: &GroupName, inbox: &Inbox) {
    layer
        .group_add(group, inbox.name())
        .await
        .expect("group_add should succeed");
}

async fn send(layer: &RedisLayer, group: &GroupName, text: &str) {
    layer
        .group_send(group, Payload::from(text.to_owned()))
        .await
        .expect("group_send should succeed");
}

/// Slower than the shared suite's waits: these go through a real broker,
/// sometimes one that was just restarted.
async fn recv(inbox: &mut Inbox) -> String {
    recv_within(inbox, DEADLINE).await.as_str().to_owned()
}

async fn assert_silent(inbox: &mut Inbox) {
    assert_silent_for(inbox, SETTLE).await;
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_hear_broadcasts_from_either() {
    let (a, b, _) = two_nodes().await;
    let room = GroupName::for_room(RoomId(1));
    let mut ann = a.new_channel();
    let mut bob = b.new_channel();
    let mut outsider = b.new_channel();
    add(&a, &room, &ann).await;
    add(&b, &room, &bob).await;
    add(&b, &GroupName::for_room(RoomId(2)), &outsider).await;

    send(&a, &room, "from a").await;
    send(&b, &room, "from b").await;

    for inbox in [&mut ann, &mut bob] {
        assert_eq!(recv(inbox).await, "from a");
        assert_eq!(recv(inbox).await, "from b");
    }
    assert_silent(&mut ann).await;
    assert_silent(&mut outsider).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_on_another_node_hears_what_is_sent_right_after_its_join() {
    let (a, b, _) = two_nodes().await;
    let room = GroupName::for_room(RoomId(1));
    for round in 0..20 {
        let mut joiner = b.new_channel();
        add(&b, &room, &joiner).await;
        send(&a, &room, &format!("welcome {round}")).await;
        assert_eq!(recv(&mut joiner).await, format!("welcome {round}"));
        b.close_channel(joiner.name()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_subscribes_only_while_it_has_local_members() {
    let (a, b, prefix) = two_nodes().await;
    let mut redis = inspect(&redis_url()).await;
    let room = GroupName::for_room(RoomId(1));
    let channel = format!("{prefix}:group:room-1");
    let (ann, carl) = (a.new_channel(), a.new_channel());
    let bob = b.new_channel();

    assert_eq!(subscribers(&mut redis, &channel).await, 0);
    // group_add returns once the subscription is confirmed: no polling.
    add(&a, &room, &ann).await;
    assert_eq!(subscribers(&mut redis, &channel).await, 1);
    add(&a, &room, &carl).await;
    add(&b, &room, &bob).await;
    assert_eq!(subscribers(&mut redis, &channel).await, 2);
    assert_eq!((a.room_count(), b.room_count()), (1, 1));

    // Node A keeps listening while carl is still there.
    a.group_discard(&room, ann.name())
        .await
        .expect("group_discard");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(subscribers(&mut redis, &channel).await, 2);

    // The last local member leaving, by discard or by close, unsubscribes.
    a.close_channel(carl.name()).await;
    subscribers_become(&mut redis, &channel, 1, "node A unsubscribes").await;
    b.group_discard(&room, bob.name())
        .await
        .expect("group_discard");
    subscribers_become(&mut redis, &channel, 0, "node B unsubscribes").await;
    assert_eq!((a.room_count(), b.room_count()), (0, 0));

    // And a new member subscribes again.
    add(&b, &room, &bob).await;
    assert_eq!(subscribers(&mut redis, &channel).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_costs_one_publish_whatever_the_number_of_receivers() {
    // A private server, so nothing else's commands are counted.
    let server = RedisServer::start();
    let prefix = unique_name("whisper_cost");
    let a = node(&server.url(), &prefix, LayerConfig::default()).await;
    let b = node(&server.url(), &prefix, LayerConfig::default()).await;
    let room = GroupName::for_room(RoomId(1));
    let mut inboxes = Vec::new();
    for layer in [&a, &a, &a, &b, &b] {
        let inbox = layer.new_channel();
        add(layer, &room, &inbox).await;
        inboxes.push(inbox);
    }
    let mut redis = inspect(&server.url()).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut redis)
        .await
        .expect("CONFIG RESETSTAT");

    const BROADCASTS: usize = 3;
    for i in 0..BROADCASTS {
        send(if i % 2 == 0 { &a } else { &b }, &room, &i.to_string()).await;
    }
    for inbox in &mut inboxes {
        for i in 0..BROADCASTS {
            assert_eq!(recv(inbox).await, i.to_string());
        }
    }

    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis)
        .await
        .expect("INFO commandstats");
    let publishes = stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_publish:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse::<usize>().ok());
    assert_eq!(
        publishes,
        Some(BROADCASTS),
        "one PUBLISH per broadcast to 5 receivers on 2 nodes:\n{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_between_nodes_and_expires() {
    let url = redis_url();
    let prefix = unique_name("whisper_presence");
    let ttl = Duration::from_millis(500);
    let config = LayerConfig {
        presence_ttl: ttl,
        ..LayerConfig::default()
    };
    let a = node(&url, &prefix, config.clone()).await;
    let b = node(&url, &prefix, config).await;
    let room = RoomId(7);

    a.presence_touch(room, 2, "bob", "Bob")
        .await
        .expect("touch");
    b.presence_touch(room, 1, "ann", "Ann")
        .await
        .expect("touch");
    b.presence_leave(room, 2).await.expect("leave");
    let entries = a.presence_list(room).await.expect("list");
    let seen: Vec<_> = entries
        .iter()
        .map(|entry| (entry.user_id, entry.username.as_str(), entry.left))
        .collect();
    assert_eq!(seen, [(1, "ann", false), (2, "bob", true)]);

    // Stored where the docs say, with the TTL on the whole room.
    let mut redis = inspect(&url).await;
    let key = format!("{prefix}:presence:7");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("PTTL");
    assert!(pttl > 0 && pttl <= 500, "PTTL {pttl}");

    tokio::time::sleep(ttl + SETTLE).await;
    assert!(b.presence_list(room).await.expect("list").is_empty());
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("EXISTS");
    assert!(!exists, "Redis forgot the room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_layer_ends_its_subscriptions() {
    let (a, b, prefix) = two_nodes().await;
    let mut redis = inspect(&redis_url()).await;
    let room = GroupName::for_room(RoomId(1));
    let channel = format!("{prefix}:group:room-1");
    let (ann, bob) = (a.new_channel(), b.new_channel());
    add(&a, &room, &ann).await;
    add(&b, &room, &bob).await;
    assert_eq!(subscribers(&mut redis, &channel).await, 2);

    drop(a);
    subscribers_become(
        &mut redis,
        &channel,
        1,
        "the dropped node's subscription ends",
    )
    .await;
    assert!(b.is_available().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_by_itself_after_redis_restarts() {
    let mut server = RedisServer::start();
    let prefix = unique_name("whisper_restart");
    let a = node(&server.url(), &prefix, LayerConfig::default()).await;
    let b = node(&server.url(), &prefix, LayerConfig::default()).await;
    let room = GroupName::for_room(RoomId(1));
    let mut ann = a.new_channel();
    let mut bob = b.new_channel();
    add(&a, &room, &ann).await;
    add(&b, &room, &bob).await;
    send(&a, &room, "before").await;
    assert_eq!(recv(&mut bob).await, "before");
    assert_eq!(recv(&mut ann).await, "before");

    server.stop();

    // Failures are reported, promptly, never swallowed, and as what they
    // are: Redis is gone, not slow.
    let started = Instant::now();
    assert_disconnected(a.group_send(&room, Payload::from("lost")).await);
    assert_disconnected(b.presence_touch(RoomId(1), 1, "bob", "").await);
    assert_disconnected(b.presence_list(RoomId(1)).await);
    let late = b.new_channel();
    assert_disconnected(
        b.group_add(&GroupName::for_room(RoomId(2)), late.name())
            .await,
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failures took {:?}",
        started.elapsed()
    );
    assert!(!a.is_available().await);
    assert!(!b.is_available().await);
    // Local operations still work.
    b.send(bob.name(), Payload::from("local"))
        .await
        .expect("send is node-local");
    assert_eq!(recv(&mut bob).await, "local");

    server.restart();
    eventually("both nodes are available again", || async {
        a.is_available().await && b.is_available().await
    })
    .await;

    // The existing memberships were resubscribed: nobody re-joins.
    send(&a, &room, "after").await;
    assert_eq!(recv(&mut bob).await, "after");
    assert_eq!(recv(&mut ann).await, "after");
    send(&b, &room, "and back").await;
    assert_eq!(recv(&mut ann).await, "and back");
    assert_eq!(recv(&mut bob).await, "and back");
    assert_silent(&mut bob).await;
}
