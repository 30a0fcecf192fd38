//! The hostile-input battery: garbage, malformed and abusive traffic against
//! one real server, after which a normal client still chats.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use whisper_tests::{Session, TestServer};

/// Deterministic pseudo-random bytes (xorshift), so a failure replays.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A WebSocket handshake written by hand, so raw frames can follow.
async fn raw_websocket(server: &TestServer, session: &Session) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let request = format!(
        "GET /chat/stream/ HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Origin: http://{addr}\r\nCookie: {cookie}\r\n\r\n",
        addr = server.addr,
        cookie = session.cookie()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A masked client frame with any opcode and payload.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads until the server closes the connection (bounded).
async fn until_closed(stream: &mut TcpStream, what: &str) {
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the server closes the connection: {what}");
}

#[tokio::test]
async fn the_server_survives_the_battery_and_still_chats() {
    let server = TestServer::start_with(|config| {
        config.max_connections_per_user = 600;
        config.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let room = server.create_room("Lobby", false).await;
    let mallory = server.user("mallory", false).await;

    // Random bytes instead of HTTP.
    for seed in 1..=20 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let _ = stream.write_all(&noise(seed, 4096)).await;
        until_closed(&mut stream, &format!("random bytes, seed {seed}")).await;
    }

    // Random bytes as text and binary frames on an open WebSocket.
    let mut ws = server.connect(&mallory).await;
    for seed in 1..=20 {
        let text = String::from_utf8_lossy(&noise(seed, 200)).into_owned();
        ws.send_text(&text).await;
        assert_eq!(ws.recv_json().await["error"], "BAD_REQUEST");
        ws.send_message(Message::binary(noise(seed, 200)))
            .await
            .expect("binary");
        assert_eq!(ws.recv_json().await["error"], "BAD_REQUEST");
        tokio::time::sleep(Duration::from_millis(120)).await;
    }

    // Invalid UTF-8 in a text frame: closed with 1007, nothing else hurt.
    let mut raw = raw_websocket(&server, &mallory).await;
    raw.write_all(&frame(0x1, &[0xff, 0xfe, 0x80]))
        .await
        .expect("frame");
    let mut reply = [0u8; 4];
    raw.read_exact(&mut reply).await.expect("close frame");
    assert_eq!(reply[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([reply[2], reply[3]]), 1007);

    // Garbage opcodes and a frame claiming an absurd length.
    let mut raw = raw_websocket(&server, &mallory).await;
    let _ = raw.write_all(&frame(0x3, b"reserved opcode")).await;
    until_closed(&mut raw, "reserved opcode").await;
    let mut raw = raw_websocket(&server, &mallory).await;
    let mut absurd = vec![0x81, 0x80 | 127];
    absurd.extend_from_slice(&u64::MAX.to_be_bytes());
    absurd.extend_from_slice(&[1, 2, 3, 4]);
    let _ = raw.write_all(&absurd).await;
    until_closed(&mut raw, "absurd length").await;

    // Deep nesting, huge and negative room ids.
    let mut ws = server.connect(&mallory).await;
    let nested = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    for text in [
        nested.as_str(),
        r#"{"command":"join","room":99999999999999999999999999999}"#,
        r#"{"command":"join","room":"99999999999999999999"}"#,
        r#"{"command":"join","room":-1}"#,
        r#"{"command":"join","room":1e308}"#,
    ] {
        ws.send_text(text).await;
        let error = ws.recv_json().await["error"].clone();
        assert!(
            error == "BAD_REQUEST" || error == "ROOM_INVALID",
            "{text:.40}: {error}"
        );
    }

    // 10,000 joins on one connection, read while they are written.
    let (mut sink, mut stream) = ws_parts(&server, &mallory).await;
    let writer = tokio::spawn(async move {
        for _ in 0..10_000 {
            let join = json!({"command": "join", "room": room}).to_string();
            if sink.send(Message::text(join)).await.is_err() {
                break;
            }
        }
        sink
    });
    let mut replies = 0;
    while replies < 10_000 {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => replies += 1,
            other => panic!("reply {replies}: {other:?}"),
        }
    }
    drop(writer.await.expect("writer"));

    // Half-open handshakes and 500 connections that never send.
    let mut half_open = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(b"GET /chat/stream/ HTTP/1.1\r\nUpgrade: websocket\r\n")
            .await
            .expect("partial handshake");
        half_open.push(stream);
    }
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(server.connect(&mallory).await);
    }

    // A normal pair of users still chats.
    let (mut a, mut b) = server.ann_and_bob_in(room).await;
    a.send_json(json!({"command": "send", "room": room, "message": "still standing"}))
        .await;
    assert_eq!(a.recv_json().await["message"], "still standing");
    assert_eq!(b.recv_json().await["message"], "still standing");
    for mut stream in half_open {
        until_closed(&mut stream, "half-open handshake").await;
    }
    drop(idle);
    server.stop().await;
}

type WsParts = (
    futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
        Message,
    >,
    futures_util::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    >,
);

/// A WebSocket split into its writing and reading halves.
async fn ws_parts(server: &TestServer, session: &Session) -> WsParts {
    let mut request = format!("ws://{}/chat/stream/", server.addr)
        .into_client_request()
        .expect("request");
    let headers = request.headers_mut();
    headers.insert(
        "cookie",
        HeaderValue::from_str(&session.cookie()).expect("cookie"),
    );
    headers.insert(
        "origin",
        HeaderValue::from_str(&server.origin()).expect("origin"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    ws.split()
}
