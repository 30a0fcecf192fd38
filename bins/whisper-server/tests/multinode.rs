//! Several `whisper-server` processes sharing rooms through one Redis and
//! one PostgreSQL, as behind a load balancer; and what happens when Redis
//! goes away and comes back. Protocol v2's guarantees on two nodes are in
//! `v2_cluster.rs`.
//!
//! Each test runs its own [`Cluster`]: a redis-server of its own (so it can
//! stop it, and so no other test's rooms share its channels) and its own
//! PostgreSQL database.

use std::process::Command;
use std::time::Instant;

use serde_json::json;
use whisper_testkit::RedisServer;
use whisper_tests::{Cluster, Nodes, access, mutes};

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
async fn a_room_made_staff_only_on_one_node_loses_its_members_on_the_other() {
    let cluster = Cluster::start(BIN).await;
    access::a_room_made_staff_only_loses_its_other_members_at_once(Nodes::two(&cluster)).await;
}

#[tokio::test]
async fn a_room_deleted_on_one_node_is_left_on_the_other() {
    let cluster = Cluster::start(BIN).await;
    access::a_deleted_room_is_left_by_every_member_at_once(Nodes::two(&cluster)).await;
}

#[tokio::test]
async fn a_logout_on_one_node_closes_the_sessions_sockets_on_both() {
    let cluster = Cluster::start(BIN).await;
    access::logging_out_closes_that_sessions_sockets_at_once(Nodes::two(&cluster)).await;
}

#[tokio::test]
async fn staff_lost_on_one_node_leaves_the_staff_rooms_on_the_other() {
    let cluster = Cluster::start(BIN).await;
    access::losing_staff_leaves_the_staff_rooms_at_once(Nodes::two(&cluster)).await;
}

#[tokio::test]
async fn a_password_changed_by_the_operator_closes_the_sockets_on_both_nodes() {
    let cluster = Cluster::start(BIN).await;
    access::a_password_changed_by_the_operator_closes_the_users_sockets_at_once(Nodes::two(
        &cluster,
    ))
    .await;
}

#[tokio::test]
async fn a_user_deactivated_by_the_operator_is_logged_out_on_both_nodes() {
    let cluster = Cluster::start(BIN).await;
    access::a_user_deactivated_by_the_operator_is_logged_out_everywhere_at_once(Nodes::two(
        &cluster,
    ))
    .await;
}

#[tokio::test]
async fn a_user_deactivated_on_one_nodes_admin_page_is_logged_out_on_the_other() {
    let cluster = Cluster::start(BIN).await;
    access::a_user_deactivated_on_the_admin_page_is_logged_out_everywhere_at_once(Nodes::two(
        &cluster,
    ))
    .await;
}

#[tokio::test]
async fn a_user_deleted_on_one_nodes_admin_page_is_logged_out_on_both() {
    let cluster = Cluster::start(BIN).await;
    access::a_user_deleted_on_the_admin_page_is_logged_out_everywhere_at_once(Nodes::two(&cluster))
        .await;
}

#[tokio::test]
async fn a_password_reset_on_one_nodes_admin_page_logs_the_user_out_on_both() {
    let cluster = Cluster::start(BIN).await;
    access::a_password_reset_on_the_admin_page_closes_the_users_sockets_at_once(Nodes::two(
        &cluster,
    ))
    .await;
}

#[tokio::test]
async fn a_mute_on_one_node_holds_on_the_other_and_an_unmute_there_lifts_it() {
    let cluster = Cluster::start(BIN).await;
    mutes::a_mute_holds_at_once_on_every_node(Nodes::two(&cluster)).await;
}
