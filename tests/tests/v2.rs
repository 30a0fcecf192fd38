//! Protocol v2 through a real server (SQLite, in-memory layer): history on
//! join, paging, acknowledged sends, recovery after a reconnect without gap
//! or duplicate, safe retries, typing, retention, durability across a
//! restart, and v1 sockets in the same room.

use std::time::Duration;

use serde_json::json;
use whisper_tests::TestServer;
use whisper_tests::v2::{seqs, texts};

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
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let mut a = server.connect_v2(&ann).await;
    a.request(json!({"command": "join", "room": room})).await;
    for n in 1..=60 {
        let sent = a.say(room, &format!("m{n}")).await;
        assert_eq!(sent["seq"], n);
    }
    let bob = server.user("bob", false).await;
    let mut b = server.connect_v2(&bob).await;
    let joined = b.request(json!({"command": "join", "room": room})).await;
    assert_eq!(joined["result"]["seq"], 60);
    assert_eq!(joined["result"]["recovered"], false);
    assert_eq!(
        seqs(&joined["result"]["messages"]),
        (11..=60).collect::<Vec<_>>()
    );
    let message = &joined["result"]["messages"][0];
    assert_eq!(message["user"]["username"], "ann");
    assert!(
        message["ts"]
            .as_i64()
            .is_some_and(|ts| ts > 1_700_000_000_000)
    );

    let page = b
        .request(json!({"command": "history", "room": room, "before": 11, "limit": 8}))
        .await;
    assert_eq!(
        seqs(&page["result"]["messages"]),
        (3..=10).collect::<Vec<_>>()
    );
    assert_eq!(page["result"]["has_more"], true);
    assert_eq!(page["result"]["epoch"], joined["result"]["epoch"]);
    let last = b
        .request(json!({"command": "history", "room": room, "before": 3}))
        .await;
    assert_eq!(texts(&last["result"]["messages"]), ["m1", "m2"]);
    assert_eq!(last["result"]["has_more"], false);
}

#[tokio::test]
async fn a_reconnect_recovers_without_gap_or_duplicate_while_others_talk() {
    let server = server().await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let bob = server.user("bob", false).await;
    let mut a = server.connect_v2(&ann).await;
    a.request(json!({"command": "join", "room": room})).await;
    a.say(room, "before").await;

    let mut b = server.connect_v2(&bob).await;
    let joined = b.request(json!({"command": "join", "room": room})).await;
    let epoch = joined["result"]["epoch"].clone();
    let seen = joined["result"]["seq"].as_u64().expect("seq");
    drop(b);
    for n in 0..5 {
        a.say(room, &format!("away {n}")).await;
    }

    // Ann keeps talking while Bob rejoins: the switch from the result to
    // live events must lose and repeat nothing.
    let talking = tokio::spawn(async move {
        for n in 0..40 {
            a.send_json(json!({"command": "send", "room": room, "text": format!("live {n}")}))
                .await;
        }
        a
    });
    let mut b = server.connect_v2(&bob).await;
    let rejoin = json!({"command": "join", "room": room, "since": {"seq": seen, "epoch": epoch}});
    let recovered = b.request(rejoin).await;
    assert_eq!(recovered["result"]["recovered"], true, "{recovered}");
    let mut got = seqs(&recovered["result"]["messages"]);
    assert_eq!(got.first(), Some(&(seen + 1)));
    let last = 1 + 5 + 40;
    while got.last() != Some(&last) {
        let event = b.recv_event().await;
        if event["event"] == "message" {
            got.push(event["seq"].as_u64().expect("seq"));
        }
    }
    assert_eq!(got, ((seen + 1)..=last).collect::<Vec<_>>());
    b.expect_silence(Duration::from_millis(200)).await;
    talking.await.expect("sender");
}

#[tokio::test]
async fn a_retried_nonce_is_acknowledged_again_but_heard_once() {
    let server = server().await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let bob = server.user("bob", false).await;
    let mut b = server.connect(&bob).await;
    b.join(room).await;
    let mut a = server.connect_v2(&ann).await;
    a.request(json!({"command": "join", "room": room})).await;
    assert_eq!(b.recv_json().await["msg_type"], 4, "ENTER");
    let send = json!({"command": "send", "id": 1, "room": room, "text": "once", "nonce": "k-1"});
    let first = a.request(send.clone()).await;
    let retry = a.request(send).await;
    assert_eq!(first["result"], retry["result"]);
    // Bob, on v1, hears the message once, as the v1 frame.
    assert_eq!(
        b.recv_json().await,
        json!({"msg_type": 0, "room": room, "username": "ann", "message": "once"})
    );
    b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn v1_sends_are_numbered_and_stored_for_v2_members() {
    let server = server().await;
    let room = server.create_room("Lobby", false).await;
    let (mut a, _b) = server.ann_and_bob_in(room).await;
    a.send_json(json!({"command": "send", "room": room, "message": "from v1"}))
        .await;
    assert_eq!(a.recv_json().await["message"], "from v1");
    let carol = server.user("carol", false).await;
    let mut c = server.connect_v2(&carol).await;
    let joined = c.request(json!({"command": "join", "room": room})).await;
    assert_eq!(texts(&joined["result"]["messages"]), ["from v1"]);
    assert_eq!(seqs(&joined["result"]["messages"]), [1]);
}

#[tokio::test]
async fn typing_reaches_the_others_and_is_not_stored() {
    let server = server().await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let bob = server.user("bob", false).await;
    let mut b = server.connect_v2(&bob).await;
    b.request(json!({"command": "join", "room": room})).await;
    let mut a = server.connect_v2(&ann).await;
    a.request(json!({"command": "join", "room": room})).await;
    assert_eq!(b.recv_event().await["event"], "enter");
    let typed = a
        .request(json!({"command": "typing", "id": 4, "room": room}))
        .await;
    assert_eq!(typed, json!({"id": 4, "result": {"room": room}}));
    let typing = b.recv_event().await;
    assert_eq!(typing["event"], "typing");
    assert_eq!(typing["user"]["username"], "ann");
    let history = b.request(json!({"command": "history", "room": room})).await;
    assert_eq!(history["result"]["messages"], json!([]));
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
