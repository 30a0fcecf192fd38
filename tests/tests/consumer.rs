//! The chat consumer over a real WebSocket: the original multichat test
//! replayed frame by frame, access rules, multiplexing and cleanup.

use std::time::Duration;

use serde_json::{Value, json};
use whisper_tests::TestServer;

fn last_update(users: &Value, user_id: &str) -> f64 {
    users["data"]["users"][user_id]["last_update"]
        .as_f64()
        .expect("last_update is a number")
}

/// The original app's consumer test, step by step, with exact JSON.
#[tokio::test]
async fn original_multichat_scenario_replays_byte_for_byte() {
    let server = TestServer::start().await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let bob = server.user("bob", false).await;

    let mut a = server.connect(&ann).await;
    a.send_json(json!({"command": "join", "room": "5451"}))
        .await;
    assert_eq!(a.recv_text().await, r#"{"error":"ROOM_INVALID"}"#);

    a.send_json(json!({"command": "join", "room": room.to_string()}))
        .await;
    assert_eq!(
        a.recv_text().await,
        format!(r#"{{"join":"{room}","title":"Lobby"}}"#)
    );

    a.send_json(json!({"command": "send", "room": room, "message": "hello"}))
        .await;
    assert_eq!(
        a.recv_text().await,
        format!(r#"{{"msg_type":0,"room":{room},"username":"ann","message":"hello"}}"#)
    );

    a.send_json(json!({"command": "room_users", "room": room}))
        .await;
    let raw = a.recv_text().await;
    let first: Value = serde_json::from_str(&raw).expect("JSON");
    assert!(
        raw.starts_with(&format!(
            r#"{{"type":6,"room":{room},"data":{{"users":{{"1":{{"#
        )),
        "{raw}"
    );
    assert_eq!(first["data"]["users"]["1"]["username"], "ann");
    assert_eq!(first["data"]["users"]["1"]["name"], "");
    assert_eq!(first["data"]["users"]["1"]["left"], false);
    assert!(
        raw.contains(r#""last_update":"#) && first["data"]["users"]["1"]["last_update"].is_f64()
    );
    let before = last_update(&first, "1");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.send_json(json!({"command": "send", "room": room, "message": "again"}))
        .await;
    a.recv_text().await;
    let second = a.room_users(room).await;
    assert!(
        last_update(&second, "1") > before,
        "last_update increases after a send"
    );

    let mut b = server.connect(&bob).await;
    b.send_json(json!({"command": "join", "room": room})).await;
    assert_eq!(
        b.recv_text().await,
        format!(r#"{{"join":"{room}","title":"Lobby"}}"#)
    );
    assert_eq!(
        a.recv_text().await,
        format!(r#"{{"msg_type":4,"room":{room},"username":"bob"}}"#)
    );

    let both = b.room_users(room).await;
    assert_eq!(both["data"]["users"]["1"]["username"], "ann");
    assert_eq!(both["data"]["users"]["2"]["username"], "bob");
    assert_eq!(both["data"]["users"]["2"]["left"], false);

    a.send_json(json!({"command": "leave", "room": room})).await;
    a.expect_own_leave(room, "ann").await;
    b.expect_leave(room, "ann").await;

    let after = b.room_users(room).await;
    assert_eq!(after["data"]["users"]["1"]["left"], true);
    assert_eq!(after["data"]["users"]["2"]["left"], false);
    server.stop().await;
}

#[tokio::test]
async fn staff_only_rooms_refuse_non_staff_on_join_and_room_users() {
    let server = TestServer::start().await;
    let staff_room = server.create_room("Staff", true).await;
    let open_room = server.create_room("Open", false).await;
    let guest = server.user("guest", false).await;
    let admin = server.user("admin", true).await;

    let mut g = server.connect(&guest).await;
    for command in ["join", "room_users"] {
        g.send_json(json!({"command": command, "room": staff_room}))
            .await;
        assert_eq!(
            g.recv_text().await,
            r#"{"error":"ROOM_ACCESS_DENIED"}"#,
            "{command}"
        );
    }
    g.send_json(json!({"command": "send", "room": staff_room, "message": "let me in"}))
        .await;
    assert_eq!(g.recv_text().await, r#"{"error":"ROOM_ACCESS_DENIED"}"#);
    g.send_json(json!({"command": "send", "room": open_room, "message": "not joined"}))
        .await;
    assert_eq!(g.recv_text().await, r#"{"error":"ROOM_ACCESS_DENIED"}"#);

    let mut s = server.connect(&admin).await;
    s.send_json(json!({"command": "join", "room": staff_room}))
        .await;
    assert_eq!(
        s.recv_text().await,
        format!(r#"{{"join":"{staff_room}","title":"Staff"}}"#)
    );
    s.send_json(json!({"command": "send", "room": staff_room, "message": "staff only"}))
        .await;
    assert_eq!(
        s.recv_text().await,
        format!(
            r#"{{"msg_type":0,"room":{staff_room},"username":"admin","message":"staff only"}}"#
        )
    );
    g.expect_silence(Duration::from_millis(300)).await;
    server.stop().await;
}

#[tokio::test]
async fn one_connection_multiplexes_three_rooms() {
    let server = TestServer::start().await;
    let rooms = [
        server.create_room("One", false).await,
        server.create_room("Two", false).await,
        server.create_room("Three", false).await,
    ];
    let ann = server.user("ann", false).await;
    let bob = server.user("bob", false).await;
    let mut a = server.connect(&ann).await;
    let mut b = server.connect(&bob).await;
    for room in rooms {
        a.join(room).await;
    }
    // Bob is only in the second room.
    b.join(rooms[1]).await;
    assert_eq!(a.recv_json().await["msg_type"], 4);

    for (i, room) in rooms.iter().enumerate() {
        a.send_json(json!({"command": "send", "room": room, "message": format!("m{i}")}))
            .await;
    }
    for (i, room) in rooms.iter().enumerate() {
        assert_eq!(
            a.recv_text().await,
            format!(r#"{{"msg_type":0,"room":{room},"username":"ann","message":"m{i}"}}"#)
        );
    }
    assert_eq!(
        b.recv_text().await,
        format!(
            r#"{{"msg_type":0,"room":{},"username":"ann","message":"m1"}}"#,
            rooms[1]
        )
    );
    b.expect_silence(Duration::from_millis(300)).await;
    server.stop().await;
}

#[tokio::test]
async fn an_abrupt_disconnect_sends_leave_to_the_others() {
    let server = TestServer::start().await;
    let room = server.create_room("Lobby", false).await;
    let (a, mut b) = server.ann_and_bob_in(room).await;

    a.vanish();
    b.expect_leave(room, "ann").await;
    assert_eq!(b.room_users(room).await["data"]["users"]["1"]["left"], true);
    server.stop().await;
}

#[tokio::test]
async fn twenty_connections_times_ten_messages_arrive_in_per_sender_order() {
    const CONNECTIONS: usize = 20;
    const MESSAGES: usize = 10;
    let server = TestServer::start().await;
    let room = server.create_room("Busy", false).await;
    let mut clients = Vec::new();
    for i in 0..CONNECTIONS {
        let session = server.user(&format!("user{i}"), false).await;
        let mut client = server.connect(&session).await;
        client.join(room).await;
        clients.push(client);
    }
    // Drain ENTER notices of the users who joined after each client.
    for (i, client) in clients.iter_mut().enumerate() {
        for _ in i + 1..CONNECTIONS {
            assert_eq!(client.recv_json().await["msg_type"], 4);
        }
    }
    for n in 0..MESSAGES {
        for client in &mut clients {
            client
                .send_json(json!({"command": "send", "room": room, "message": n.to_string()}))
                .await;
        }
    }
    for client in &mut clients {
        let mut next_expected = [0usize; CONNECTIONS];
        for _ in 0..CONNECTIONS * MESSAGES {
            let event = client.recv_json().await;
            assert_eq!(event["msg_type"], 0);
            let sender: usize = event["username"]
                .as_str()
                .and_then(|u| u.strip_prefix("user"))
                .and_then(|n| n.parse().ok())
                .expect("sender index");
            let n: usize = event["message"]
                .as_str()
                .and_then(|m| m.parse().ok())
                .expect("counter");
            assert_eq!(n, next_expected[sender], "in order from user{sender}");
            next_expected[sender] += 1;
        }
        assert!(next_expected.iter().all(|&n| n == MESSAGES));
    }
    server.stop().await;
}

#[tokio::test]
async fn join_is_idempotent_and_rooms_per_connection_are_limited() {
    let server = TestServer::start_with(|config| config.max_rooms_per_connection = 2).await;
    let rooms = [
        server.create_room("A", false).await,
        server.create_room("B", false).await,
        server.create_room("C", false).await,
    ];
    let ann = server.user("ann", false).await;
    let mut a = server.connect(&ann).await;
    for room in &rooms[..2] {
        a.join(*room).await;
    }
    a.send_json(json!({"command": "join", "room": rooms[0]}))
        .await;
    assert_eq!(
        a.recv_text().await,
        format!(r#"{{"join":"{}","title":"A"}}"#, rooms[0])
    );
    a.send_json(json!({"command": "join", "room": rooms[2]}))
        .await;
    assert_eq!(a.recv_text().await, r#"{"error":"TOO_MANY_ROOMS"}"#);
    a.send_json(json!({"command": "leave", "room": rooms[2]}))
        .await;
    assert_eq!(a.recv_text().await, r#"{"error":"ROOM_ACCESS_DENIED"}"#);
    a.send_json(json!({"command": "leave", "room": 999})).await;
    assert_eq!(a.recv_text().await, r#"{"error":"ROOM_INVALID"}"#);
    server.stop().await;
}

/// Sends refresh the sender's presence at most once a second: a busy
/// sender costs one layer call per message, not two.
#[tokio::test]
async fn sends_refresh_presence_at_most_once_a_second() {
    let server = TestServer::start().await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let mut a = server.connect(&ann).await;
    a.join(room).await;
    let joined = last_update(&a.room_users(room).await, "1");
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.send_json(json!({"command": "send", "room": room, "message": "soon"}))
        .await;
    a.recv_text().await;
    assert_eq!(
        last_update(&a.room_users(room).await, "1"),
        joined,
        "a send right after the join leaves last_update alone"
    );
    tokio::time::sleep(Duration::from_millis(1050)).await;
    a.send_json(json!({"command": "send", "room": room, "message": "later"}))
        .await;
    a.recv_text().await;
    assert!(last_update(&a.room_users(room).await, "1") > joined);
}
