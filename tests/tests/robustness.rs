//! Bad input and endings: malformed frames get error replies on a
//! connection that stays open, an oversized frame closes only its own
//! connection, shutdown closes sockets with 1001, and the SQLite file takes
//! parallel reads and writes.

use futures_util::future::join_all;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use whisper_tests::TestServer;

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_keeps_working() {
    let server = TestServer::start().await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let mut a = server.connect(&ann).await;
    let cases = [
        ("not json", "BAD_REQUEST"),
        ("[1,2,3]", "BAD_REQUEST"),
        ("\"join\"", "BAD_REQUEST"),
        ("{}", "BAD_REQUEST"),
        (r#"{"command":"join"}"#, "BAD_REQUEST"),
        (r#"{"command":"join","room":"abc"}"#, "BAD_REQUEST"),
        (r#"{"command":"join","room":-3}"#, "ROOM_INVALID"),
        (
            r#"{"command":"join","room":123456789012345678901234567890}"#,
            "BAD_REQUEST",
        ),
        (r#"{"command":"send","room":1}"#, "BAD_REQUEST"),
        (
            r#"{"command":"send","room":1,"message":{"nested":true}}"#,
            "BAD_REQUEST",
        ),
        (r#"{"command":"dance","room":1}"#, "UNKNOWN_COMMAND"),
    ];
    for (frame, code) in cases {
        a.send_text(frame).await;
        assert_eq!(
            a.recv_text().await,
            format!(r#"{{"error":"{code}"}}"#),
            "{frame}"
        );
    }
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    a.send_text(&deep).await;
    assert_eq!(a.recv_text().await, r#"{"error":"BAD_REQUEST"}"#);
    a.send_message(Message::binary(vec![0xff, 0x00, 0x7b]))
        .await
        .expect("binary frame sent");
    assert_eq!(a.recv_text().await, r#"{"error":"BAD_REQUEST"}"#);

    a.send_json(json!({"command": "join", "room": room})).await;
    assert_eq!(
        a.recv_text().await,
        format!(r#"{{"join":"{room}","title":"Lobby"}}"#)
    );
    a.send_json(json!({"command": "send", "room": room, "message": "x".repeat(16 * 1024 + 1)}))
        .await;
    assert_eq!(a.recv_text().await, r#"{"error":"MESSAGE_TOO_LARGE"}"#);
    a.send_json(json!({"command": "send", "room": room, "message": "still here"}))
        .await;
    assert_eq!(a.recv_json().await["message"], "still here");
    server.stop().await;
}

#[tokio::test]
async fn a_one_mebibyte_frame_closes_its_connection_and_nothing_else() {
    let server = TestServer::start().await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let bob = server.user("bob", false).await;
    let mut b = server.connect(&bob).await;
    b.join(room).await;

    let mut a = server.connect(&ann).await;
    let huge =
        json!({"command": "send", "room": room, "message": "y".repeat(1024 * 1024)}).to_string();
    // The server may close before the whole frame is written; either way
    // this connection ends, with MESSAGE_TOO_LARGE and 1009 when the client
    // gets to read them.
    let _ = a.send_message(Message::text(huge)).await;
    match a.recv().await {
        Some(Message::Text(text)) => {
            assert_eq!(text.as_str(), r#"{"error":"MESSAGE_TOO_LARGE"}"#);
            if let Some(frame) = a.close_frame().await {
                assert_eq!(frame.code, CloseCode::Size);
            }
        }
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Size),
        Some(other) => panic!("unexpected frame {other:?}"),
        None => {}
    }

    // The server and other connections carry on.
    let mut again = server.connect(&ann).await;
    again.join(room).await;
    assert_eq!(b.recv_json().await["msg_type"], 4);
    again
        .send_json(json!({"command": "send", "room": room, "message": "after"}))
        .await;
    assert_eq!(b.recv_json().await["message"], "after");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_websockets_with_going_away() {
    let server = TestServer::start().await;
    let ann = server.user("ann", false).await;
    let mut a = server.connect(&ann).await;
    let stopping = tokio::spawn(server.stop());
    let frame = a.close_frame().await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Away);
    stopping.await.expect("server stopped");
}

/// The server's pool of SQLite connections shares the file with an
/// operator's writes from another connection, as whisper-manage makes them:
/// logins (a read and a write each), handshakes and joins run in parallel
/// with room creation, and none is refused with "database is locked".
#[tokio::test]
async fn parallel_logins_handshakes_and_operator_writes_all_succeed() {
    const PEOPLE: usize = 16;
    let server = TestServer::start().await;
    let lobby = server.create_room("Lobby", false).await;
    for i in 0..PEOPLE {
        server
            .create_user(&format!("user{i}"), "correct horse", false)
            .await;
    }
    let server = &server;
    let people = (0..PEOPLE).map(|i| async move {
        let session = server
            .login(&format!("user{i}"), "correct horse")
            .await
            .expect("login succeeds");
        let mut socket = server.connect(&session).await;
        socket.join(lobby).await
    });
    let rooms =
        (0..PEOPLE).map(|i| async move { server.create_room(&format!("Room {i}"), false).await });
    let (joins, mut created) = tokio::join!(join_all(people), join_all(rooms));
    for join in joins {
        assert_eq!(join["join"], json!(lobby.to_string()));
    }
    created.sort_unstable();
    created.dedup();
    assert_eq!(created.len(), PEOPLE, "every room has an id of its own");
}
