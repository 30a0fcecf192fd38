//! Faults: the database going away and coming back, a client that stops
//! reading, a panic inside one connection's task, a refused broadcast among
//! sends in flight, and SIGTERM.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use whisper_protocol::{PresenceEntry, RoomId};
use whisper_rooms::{
    ChannelLayer, ChannelName, GroupName, Inbox, LayerError, MemoryLayer, Payload,
};
use whisper_testkit::PostgresServer;
use whisper_tests::TestServer;

#[tokio::test]
async fn a_database_outage_gives_errors_not_panics_and_recovers() {
    let mut postgres = PostgresServer::start();
    let url = postgres.url();
    let server = TestServer::start_with(|config| config.database_url = url).await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let mut a = server.connect(&ann).await;

    postgres.stop();
    server.wait_for_health(503).await;
    let (status, _) = server.get("/api/rooms").await;
    assert_eq!(status, 401, "no session can be read: anonymous");
    let page = server.get_as(&ann, "/api/me").await;
    assert_eq!(page.status(), 503, "no connection to the database in time");
    assert_eq!(page.headers()["retry-after"], "1");
    a.send_json(json!({"command": "join", "room": room})).await;
    assert_eq!(a.recv_text().await, r#"{"error":"UNAVAILABLE"}"#);

    postgres.restart();
    server.wait_for_health(200).await;
    a.send_json(json!({"command": "join", "room": room})).await;
    assert_eq!(
        a.recv_text().await,
        format!(r#"{{"join":"{room}","title":"Lobby"}}"#)
    );
    assert!(server.login("ann", "correct horse").await.is_some());
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_the_others_keep_up() {
    const MESSAGES: usize = 3000;
    let server = TestServer::start_with(|config| config.max_messages_per_second = 1_000_000).await;
    let room = server.create_room("Lobby", false).await;
    let [ann, bob, sleepy] = [
        server.user("ann", false).await,
        server.user("bob", false).await,
        server.user("sleepy", false).await,
    ];
    let mut sleeper = server.connect(&sleepy).await;
    sleeper.join(room).await;
    let mut reader = server.connect(&bob).await;
    reader.join(room).await;
    let mut sender = server.connect(&ann).await;
    sender.join(room).await;
    assert_eq!(reader.recv_json().await["msg_type"], 4);

    // 3000 x 16 KiB is far more than the sleeper's inbox and socket buffers.
    let text = "z".repeat(16 * 1024 - 8);
    let sending = tokio::spawn(async move {
        for n in 0..MESSAGES {
            sender
                .send_json(
                    json!({"command": "send", "room": room, "message": format!("{n:06}{text}")}),
                )
                .await;
            // The sender reads its own echo, so it is never the slow one.
            assert_eq!(sender.recv_json().await["msg_type"], 0);
        }
    });
    for n in 0..MESSAGES {
        let event = reader.recv_json().await;
        let message = event["message"].as_str().expect("a message");
        assert_eq!(&message[..6], format!("{n:06}"), "in order, none lost");
    }
    sending.await.expect("sender finished");
    // Now the sleeper wakes up: after its backlog, the close for being slow.
    let frame = sleeper.close_frame().await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Again);
    server.stop().await;
}

/// A layer with faults on purpose: it panics on a broadcast containing
/// `PANIC!` (a bug met while publishing a stored message) and on a presence
/// refresh of a user named `PANIC` (a bug inside one connection's task),
/// and fails a broadcast containing `FAIL` (a broker refusing one message).
struct FaultyLayer(MemoryLayer);

impl ChannelLayer for FaultyLayer {
    fn new_channel(&self) -> Inbox {
        self.0.new_channel()
    }
    fn presence_ttl(&self) -> std::time::Duration {
        self.0.presence_ttl()
    }
    fn group_add(
        &self,
        group: &GroupName,
        channel: ChannelName,
    ) -> impl Future<Output = Result<(), LayerError>> + Send {
        self.0.group_add(group, channel)
    }
    fn group_discard(
        &self,
        group: &GroupName,
        channel: ChannelName,
    ) -> impl Future<Output = Result<(), LayerError>> + Send {
        self.0.group_discard(group, channel)
    }
    fn group_send(
        &self,
        group: &GroupName,
        payload: Payload,
    ) -> impl Future<Output = Result<(), LayerError>> + Send {
        assert!(!payload.as_str().contains("PANIC!"), "injected fault");
        let refused = payload.as_str().contains("FAIL");
        let sent = self.0.group_send(group, payload);
        async move {
            if refused {
                let fault = std::io::Error::other("injected fault");
                return Err(LayerError::Backend(Arc::new(fault)));
            }
            sent.await
        }
    }
    fn send(
        &self,
        channel: ChannelName,
        payload: Payload,
    ) -> impl Future<Output = Result<(), LayerError>> + Send {
        self.0.send(channel, payload)
    }
    fn close_channel(&self, channel: ChannelName) -> impl Future<Output = ()> + Send {
        self.0.close_channel(channel)
    }
    fn slow_consumer_closes(&self) -> u64 {
        self.0.slow_consumer_closes()
    }
    fn expendables_dropped(&self) -> u64 {
        self.0.expendables_dropped()
    }
    fn room_count(&self) -> usize {
        self.0.room_count()
    }
    fn is_available(&self) -> impl Future<Output = bool> + Send {
        self.0.is_available()
    }
    fn presence_touch(
        &self,
        room: RoomId,
        user_id: i64,
        username: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), LayerError>> + Send {
        assert!(!username.contains("PANIC"), "injected fault");
        self.0.presence_touch(room, user_id, username, name)
    }
    fn presence_leave(
        &self,
        room: RoomId,
        user_id: i64,
    ) -> impl Future<Output = Result<(), LayerError>> + Send {
        self.0.presence_leave(room, user_id)
    }
    fn presence_list(
        &self,
        room: RoomId,
    ) -> impl Future<Output = Result<Vec<PresenceEntry>, LayerError>> + Send {
        self.0.presence_list(room)
    }
}

#[tokio::test]
async fn a_panic_in_one_connection_leaves_the_server_and_others_running() {
    let server =
        TestServer::start_with_layer(|_| {}, |_| FaultyLayer(MemoryLayer::default())).await;
    let room = server.create_room("Lobby", false).await;
    let (mut a, mut b) = server.ann_and_bob_in(room).await;

    // The layer panics in this user's connection task, on its join.
    let panicky = server.user("PANIC", false).await;
    let mut p = server.connect(&panicky).await;
    p.send_json(json!({"command": "join", "room": room})).await;
    assert!(
        p.close_frame().await.is_none(),
        "the panicking connection is dropped"
    );
    // Its cleanup still ran: the others see it enter, then leave.
    for client in [&mut a, &mut b] {
        assert_eq!(client.recv_json().await["msg_type"], 4);
        client.expect_leave(room, "PANIC").await;
    }

    // The layer panics while publishing a stored message, in the task
    // that stores and publishes every connection's messages: the sender
    // hears UNAVAILABLE, and later messages still go out.
    a.send_json(json!({"command": "send", "room": room, "message": "PANIC!"}))
        .await;
    assert_eq!(a.recv_json().await, json!({"error": "UNAVAILABLE"}));
    b.send_json(json!({"command": "send", "room": room, "message": "fine"}))
        .await;
    assert_eq!(a.recv_json().await["message"], "fine");
    assert_eq!(b.recv_json().await["message"], "fine");
    let ann = server.login("ann", "correct horse").await.expect("login");
    let mut again = server.connect(&ann).await;
    again.join(room).await;
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_closes_silent_peers_and_keeps_live_ones() {
    let server =
        TestServer::start_with(|config| config.ping_interval = Duration::from_millis(200)).await;
    let ann = server.user("ann", false).await;
    let bob = server.user("bob", false).await;
    let mut live = server.connect(&ann).await;
    let mut silent = server.connect(&bob).await;
    // Ann's client reads, so it answers the pings; Bob's does not read at
    // all. He is closed at the first ping after two intervals of silence
    // (0.4 to 0.6 s), then the server waits a second for his close: his
    // close frame is read in the middle of that window.
    assert!(
        live.stay_idle(Duration::from_millis(1000)).await,
        "a peer answering pings stays"
    );
    let frame = silent.close_frame().await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Away);
    assert_eq!(frame.reason.as_str(), "no answer to pings");
    server.stop().await;
}

/// Two intervals of silence, not one: the server closes a silent peer at
/// the first ping after two intervals without a frame from it, and its
/// room sees it leave then, without waiting for the silent peer's close
/// (which never comes: the server waits a second for it, see the README).
#[tokio::test]
async fn a_silent_peer_is_closed_after_two_intervals_of_silence() {
    let interval = Duration::from_millis(200);
    let server = TestServer::start_with(|config| config.ping_interval = interval).await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let bob = server.user("bob", false).await;
    let mut live = server.connect(&ann).await;
    live.join(room).await;
    let mut silent = server.connect(&bob).await;
    silent.join(room).await;
    // Bob is last heard with his join (or a pong before its reply), then
    // reads nothing, so answers no ping; Ann reads, so answers them.
    let heard = Instant::now();
    assert_eq!(live.recv_json().await["msg_type"], 4, "Bob's ENTER");
    live.expect_leave(room, "bob").await;
    let left_after = heard.elapsed();
    assert!(
        left_after >= 2 * interval - Duration::from_millis(50),
        "{left_after:?}"
    );
    // Three intervals at most, and room for a busy machine; well before
    // the server stopped waiting for the peer's close.
    assert!(
        left_after < 3 * interval + Duration::from_millis(500),
        "{left_after:?}"
    );
    server.stop().await;
}

/// Sends do not wait for each other, but a failed one is still answered,
/// and before the reply to any later command.
#[tokio::test]
async fn a_failed_send_among_many_is_answered_before_later_replies() {
    let server =
        TestServer::start_with_layer(|_| {}, |_| FaultyLayer(MemoryLayer::default())).await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let mut a = server.connect(&ann).await;
    a.join(room).await;
    for message in ["one", "FAIL two", "three"] {
        a.send_json(json!({"command": "send", "room": room, "message": message}))
            .await;
    }
    a.send_json(json!({"command": "room_users", "room": room}))
        .await;
    // Echoes come through the room and may follow the room_users reply;
    // the refused send's error may not.
    let mut seen = Vec::new();
    while !(seen.contains(&"room_users".to_owned()) && seen.contains(&"three".to_owned())) {
        let frame = a.recv_json().await;
        seen.push(if frame.get("type").is_some() {
            "room_users".to_owned()
        } else {
            frame.get("message").map_or_else(
                || frame["error"].as_str().unwrap_or_default().to_owned(),
                |message| message.as_str().unwrap_or_default().to_owned(),
            )
        });
    }
    let echoes: Vec<&String> = seen
        .iter()
        .filter(|text| ["one", "three"].contains(&text.as_str()))
        .collect();
    assert_eq!(echoes, ["one", "three"], "{seen:?}");
    let error = seen.iter().position(|text| text == "UNAVAILABLE");
    let reply = seen.iter().position(|text| text == "room_users");
    assert!(
        error.is_some() && error < reply,
        "the refused send is answered before room_users: {seen:?}"
    );
    server.stop().await;
}
