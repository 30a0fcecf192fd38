//! Several `whisper-server` processes sharing rooms through one Redis and
//! one PostgreSQL, as behind a load balancer; and what happens when Redis
//! goes away and comes back.
//!
//! Each test runs its own [`Cluster`]: a redis-server of its own (so it can
//! stop it, and so no other test's rooms share its channels) and its own
//! PostgreSQL database.

use std::process::Command;
use std::time::Instant;

use serde_json::json;
use whisper_testkit::RedisServer;
use whisper_tests::v2::seqs;
use whisper_tests::{Cluster, WsClient};

const BIN: &str = env!("CARGO_BIN_EXE_whisper-server");

#[tokio::test]
async fn users_on_two_nodes_share_rooms_presence_and_leaves() {
    let cluster = Cluster::start(BIN).await;
    let room = cluster.db.create_room("Lobby", false).await;
    let staff_room = cluster.db.create_room("Staff", true).await;
    let ann = cluster.user(&cluster.a, "ann", false).await;
    // Sessions live in the database: bob logs in on A and connects to B.
    let bob = cluster.user(&cluster.a, "bob", false).await;

    let mut on_a = cluster.a.connect(&ann).await;
    let mut on_b = cluster.b.connect(&bob).await;
    on_a.send_json(json!({"command": "join", "room": room}))
        .await;
    assert_eq!(
        on_a.recv_text().await,
        format!(r#"{{"join":"{room}","title":"Lobby"}}"#)
    );
    on_b.send_json(json!({"command": "join", "room": room}))
        .await;
    assert_eq!(
        on_b.recv_text().await,
        format!(r#"{{"join":"{room}","title":"Lobby"}}"#)
    );
    assert_eq!(
        on_a.recv_text().await,
        format!(r#"{{"msg_type":4,"room":{room},"username":"bob"}}"#)
    );

    on_a.send_json(json!({"command": "send", "room": room, "message": "from A"}))
        .await;
    let from_a = format!(r#"{{"msg_type":0,"room":{room},"username":"ann","message":"from A"}}"#);
    assert_eq!(on_a.recv_text().await, from_a);
    assert_eq!(on_b.recv_text().await, from_a);
    on_b.send_json(json!({"command": "send", "room": room, "message": "from B"}))
        .await;
    let from_b = format!(r#"{{"msg_type":0,"room":{room},"username":"bob","message":"from B"}}"#);
    assert_eq!(on_b.recv_text().await, from_b);
    assert_eq!(on_a.recv_text().await, from_b);

    for client in [&mut on_a, &mut on_b] {
        let users = client.room_users(room).await;
        assert_eq!(users["data"]["users"]["1"]["username"], "ann");
        assert_eq!(users["data"]["users"]["2"]["username"], "bob");
    }

    for client in [&mut on_a, &mut on_b] {
        client
            .send_json(json!({"command": "join", "room": staff_room}))
            .await;
        assert_eq!(
            client.recv_text().await,
            r#"{"error":"ROOM_ACCESS_DENIED"}"#
        );
    }

    on_a.vanish();
    on_b.expect_leave(room, "ann").await;
    assert_eq!(
        on_b.room_users(room).await["data"]["users"]["1"]["left"],
        true
    );
    drop(cluster.redis);
}

#[tokio::test]
async fn when_redis_restarts_the_same_sockets_deliver_again() {
    let mut cluster = Cluster::start(BIN).await;
    let room = cluster.db.create_room("Lobby", false).await;
    let ann = cluster.user(&cluster.a, "ann", false).await;
    let bob = cluster.user(&cluster.b, "bob", false).await;
    let mut on_a = cluster.a.connect(&ann).await;
    let mut on_b = cluster.b.connect(&bob).await;
    on_b.join(room).await;
    on_a.join(room).await;
    on_b.recv_text().await;

    cluster.redis.stop();
    on_a.send_json(json!({"command": "send", "room": room, "message": "lost?"}))
        .await;
    assert_eq!(on_a.recv_text().await, r#"{"error":"UNAVAILABLE"}"#);
    cluster.a.wait_for_health(503).await;
    cluster.b.wait_for_health(503).await;

    cluster.redis.restart();
    cluster.a.wait_for_health(200).await;
    cluster.b.wait_for_health(200).await;
    on_a.send_json(json!({"command": "send", "room": room, "message": "back"}))
        .await;
    let back = format!(r#"{{"msg_type":0,"room":{room},"username":"ann","message":"back"}}"#);
    assert_eq!(on_a.recv_text().await, back);
    assert_eq!(
        on_b.recv_text().await,
        back,
        "the message that failed was never delivered"
    );
}

/// `cmdstat_publish` calls so far, from INFO commandstats.
fn publish_calls(redis: &RedisServer) -> u64 {
    let output = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "INFO", "commandstats"])
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_publish:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_broadcast_to_members_on_two_nodes_costs_one_publish() {
    const MEMBERS_PER_NODE: usize = 4;
    let cluster = Cluster::start(BIN).await;
    let room = cluster.db.create_room("Lobby", false).await;
    let mut clients = Vec::new();
    for i in 0..2 * MEMBERS_PER_NODE {
        let node = if i % 2 == 0 { &cluster.a } else { &cluster.b };
        let session = cluster.user(node, &format!("user{i}"), false).await;
        let mut client = node.connect(&session).await;
        client.join(room).await;
        clients.push(client);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        for _ in i + 1..2 * MEMBERS_PER_NODE {
            assert_eq!(client.recv_json().await["msg_type"], 4);
        }
    }

    let before = publish_calls(&cluster.redis);
    clients[0]
        .send_json(json!({"command": "send", "room": room, "message": "once"}))
        .await;
    for client in &mut clients {
        assert_eq!(client.recv_json().await["message"], "once");
    }
    assert_eq!(
        publish_calls(&cluster.redis) - before,
        1,
        "one PUBLISH for 8 members on 2 nodes"
    );
}

/// Not a speed test (the machines are shared): it checks that a burst
/// crosses nodes complete and in order, and logs the rate it saw.
#[tokio::test]
async fn a_burst_crosses_nodes_complete_and_in_order() {
    const MESSAGES: usize = 2000;
    let cluster = Cluster::start(BIN).await;
    let room = cluster.db.create_room("Lobby", false).await;
    let ann = cluster.user(&cluster.a, "ann", false).await;
    let bob = cluster.user(&cluster.b, "bob", false).await;
    let mut sender = cluster.a.connect(&ann).await;
    let mut receiver = cluster.b.connect(&bob).await;
    receiver.join(room).await;
    sender.join(room).await;
    receiver.recv_text().await;

    let started = Instant::now();
    let sending = tokio::spawn(async move {
        for n in 0..MESSAGES {
            sender
                .send_json(json!({"command": "send", "room": room, "message": n.to_string()}))
                .await;
        }
        sender
    });
    for n in 0..MESSAGES {
        let event = receiver.recv_json().await;
        assert_eq!(event["message"], n.to_string());
    }
    let elapsed = started.elapsed();
    let _sender = sending.await.expect("sender task");
    eprintln!(
        "cross-node: {MESSAGES} messages A -> Redis -> B in {elapsed:?} ({:.0} deliveries/s, debug build)",
        MESSAGES as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn v2_on_two_nodes_gives_each_room_one_numbering_seen_in_order_everywhere() {
    const EACH: usize = 150;
    let cluster = Cluster::start(BIN).await;
    let room = cluster.db.create_room("Lobby", false).await;
    let ann = cluster.user(&cluster.a, "ann", false).await;
    let bob = cluster.user(&cluster.b, "bob", false).await;
    let mut on_a = cluster.a.connect_v2(&ann).await;
    let mut on_b = cluster.b.connect_v2(&bob).await;
    let mut watch_a = cluster.a.connect_v2(&ann).await;
    let mut watch_b = cluster.b.connect_v2(&bob).await;
    for client in [&mut on_a, &mut on_b, &mut watch_a, &mut watch_b] {
        client
            .request(json!({"command": "join", "room": room}))
            .await;
    }
    // Both nodes store and publish at once: their publications interleave,
    // and may overtake each other.
    let send_all = |mut client: WsClient, who: &'static str| {
        tokio::spawn(async move {
            for n in 0..EACH {
                client
                    .send_json(
                        json!({"command": "send", "room": room, "text": format!("{who}{n}")}),
                    )
                    .await;
            }
            client
        })
    };
    let sending_a = send_all(on_a, "a");
    let sending_b = send_all(on_b, "b");
    let total = (2 * EACH) as u64;
    let in_order: Vec<u64> = (1..=total).collect();
    assert_eq!(
        seqs(&watch_a.next_messages(2 * EACH).await),
        in_order,
        "on A"
    );
    assert_eq!(
        seqs(&watch_b.next_messages(2 * EACH).await),
        in_order,
        "on B"
    );
    sending_a.await.expect("A sent");
    sending_b.await.expect("B sent");
}

#[tokio::test]
async fn v2_recovers_across_nodes_and_from_the_database_after_redis_restarts() {
    let mut cluster = Cluster::start(BIN).await;
    let room = cluster.db.create_room("Lobby", false).await;
    let ann = cluster.user(&cluster.a, "ann", false).await;
    let bob = cluster.user(&cluster.b, "bob", false).await;
    let mut on_a = cluster.a.connect_v2(&ann).await;
    let mut on_b = cluster.b.connect_v2(&bob).await;
    on_b.request(json!({"command": "join", "room": room})).await;
    let joined = on_a.request(json!({"command": "join", "room": room})).await;
    let epoch = joined["result"]["epoch"].clone();

    // Redis goes away: sends are still stored and acknowledged, but
    // reach no other node.
    cluster.redis.stop();
    for n in 1..=3 {
        let sent = on_a
            .request(json!({"command": "send", "room": room, "text": format!("while down {n}")}))
            .await;
        assert_eq!(sent["result"]["seq"], n, "{sent}");
    }
    cluster.redis.restart();
    cluster.a.wait_for_health(200).await;
    cluster.b.wait_for_health(200).await;
    on_a.request(json!({"command": "send", "room": room, "text": "back"}))
        .await;
    // Bob's socket sees seq 4 arrive after a gap, and reads 1 to 3 from
    // the database.
    assert_eq!(seqs(&on_b.next_messages(4).await), [1, 2, 3, 4]);

    // A socket that reconnects to the other node recovers from there.
    drop(on_b);
    on_a.request(json!({"command": "send", "room": room, "text": "missed"}))
        .await;
    let mut on_a_again = cluster.a.connect_v2(&bob).await;
    let since = json!({"seq": 4, "epoch": epoch});
    let rejoined = on_a_again
        .request(json!({"command": "join", "room": room, "since": since}))
        .await;
    assert_eq!(rejoined["result"]["recovered"], true, "{rejoined}");
    assert_eq!(rejoined["result"]["messages"][0]["text"], "missed");
}
