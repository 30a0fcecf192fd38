//! Protocol v2 through a real server (SQLite, in-memory layer): history on
//! join, paging, acknowledged sends, recovery after a reconnect without gap
//! or duplicate, safe retries, typing, retention, durability across a
//! restart, and v1 sockets in the same room. The scenarios of
//! `whisper_tests::v2::guarantees` run here on one server, and on two
//! nodes in whisper-server's `tests/v2_cluster.rs`.

use std::time::Duration;

use serde_json::json;
use whisper_tests::Nodes;
use whisper_tests::TestServer;
use whisper_tests::v2::texts;
use whisper_tests::v2::{deletion, guarantees};

/// A server whose rate limit does not get in the way of bursts.
async fn server() -> TestServer {
    TestServer::start_with(|config| config.max_messages_per_second = 100_000).await
}

/// The head of the server's answer to a WebSocket handshake offering
/// `subprotocol`.
async fn raw_handshake(server: &TestServer, cookie: &str, subprotocol: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /chat/stream/ HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: {subprotocol}\r\nOrigin: {}\r\nCookie: {cookie}\r\n\r\n",
        server.addr,
        server.origin()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut head = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut head))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&head[..read]).into_owned()
}

#[tokio::test]
async fn v2_is_negotiated_and_v1_stays_the_default() {
    let server = server().await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let mut v1 = server.connect(&ann).await;
    assert_eq!(
        v1.join(room).await,
        json!({"join": room.to_string(), "title": "Lobby"})
    );
    let mut v2 = server.connect_v2(&ann).await;
    let joined = v2
        .request(json!({"command": "join", "id": 1, "room": room}))
        .await;
    assert_eq!(joined["id"], 1);
    assert_eq!(joined["result"]["title"], "Lobby");
    assert!(
        joined["result"]["epoch"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    // An unknown subprotocol alone is not refused, nor answered with one
    // (a raw handshake: tungstenite's client rejects such an answer).
    let response = raw_handshake(&server, &ann.cookie(), "chat.v9").await;
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(
        !response
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol"),
        "{response}"
    );
}

#[tokio::test]
async fn a_late_joiner_gets_the_latest_page_and_pages_back() {
    let server = server().await;
    guarantees::a_late_joiner_gets_the_latest_page_and_pages_back(Nodes::one(&server)).await;
}

#[tokio::test]
async fn a_reconnect_recovers_without_gap_or_duplicate_while_others_talk() {
    let server = server().await;
    guarantees::a_reconnect_recovers_without_gap_or_duplicate_while_others_talk(Nodes::one(
        &server,
    ))
    .await;
}

#[tokio::test]
async fn a_retried_nonce_is_acknowledged_again_but_heard_once() {
    let server = server().await;
    guarantees::a_retried_nonce_is_acknowledged_again_but_heard_once(Nodes::one(&server)).await;
}

#[tokio::test]
async fn v1_and_v2_members_hear_each_other_and_v1_sends_are_stored() {
    let server = server().await;
    guarantees::v1_and_v2_members_hear_each_other_and_v1_sends_are_stored(Nodes::one(&server))
        .await;
}

#[tokio::test]
async fn typing_reaches_the_others_and_is_not_stored() {
    let server = server().await;
    guarantees::typing_reaches_the_others_and_is_not_stored(Nodes::one(&server)).await;
}

#[tokio::test]
async fn the_author_or_staff_delete_and_every_member_sees_it() {
    let server = server().await;
    deletion::the_author_or_staff_delete_and_every_node_sees_it(Nodes::one(&server)).await;
}

#[tokio::test]
async fn retention_keeps_the_latest_messages_and_numbering_goes_on() {
    let server = TestServer::start_with(|config| {
        config.max_messages_per_second = 100_000;
        config.history_max_per_room = 3;
        config.history_prune_interval = Duration::from_millis(100);
    })
    .await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let mut a = server.connect_v2(&ann).await;
    a.request(json!({"command": "join", "room": room})).await;
    for n in 1..=5 {
        a.say(room, &format!("m{n}")).await;
    }
    a.history_until(room, &[3, 4, 5]).await;
    assert_eq!(a.say(room, "m6").await["seq"], 6);
}

#[tokio::test]
async fn acknowledged_messages_survive_a_restart() {
    let mut server = server().await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let mut a = server.connect_v2(&ann).await;
    let joined = a.request(json!({"command": "join", "room": room})).await;
    for n in 1..=3 {
        a.say(room, &format!("m{n}")).await;
    }
    drop(a);
    server.restart().await;
    let ann = server.login("ann", "correct horse").await.expect("login");
    let mut a = server.connect_v2(&ann).await;
    let since = json!({"seq": 1, "epoch": joined["result"]["epoch"]});
    let rejoined = a
        .request(json!({"command": "join", "room": room, "since": since}))
        .await;
    assert_eq!(rejoined["result"]["recovered"], true);
    assert_eq!(texts(&rejoined["result"]["messages"]), ["m2", "m3"]);
    assert_eq!(a.say(room, "m4").await["seq"], 4);
}
