//! The example service on a free loopback port, driven over real WebSockets
//! by tokio-tungstenite clients, as a browser or another service would:
//! what the service itself decides (tokens, its demo rooms). The chat's
//! rules are checked through the same socket by `tests/scenarios.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use whisper_example_axum_chat::{demo, router};

const TIMEOUT: Duration = Duration::from_secs(5);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts the service with users ann (staff) and bob, rooms 1 (Lobby) and
/// 2 (staff only); returns its address. The server task ends with the test's
/// runtime.
async fn start_service() -> SocketAddr {
    let (tokens, chat) = demo();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port");
    let address = listener.local_addr().expect("bound address");
    tokio::spawn(async move {
        axum::serve(listener, router(tokens, chat))
            .await
            .expect("the service runs");
    });
    address
}

async fn connect_with_header(address: SocketAddr, token: &str) -> Socket {
    let mut request = format!("ws://{address}/v1/chat")
        .into_client_request()
        .expect("a valid request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a valid header"),
    );
    let (socket, _) = connect_async(request).await.expect("the upgrade succeeds");
    socket
}

async fn send(socket: &mut Socket, text: &str) {
    socket
        .send(Message::text(text))
        .await
        .expect("the frame is sent");
}

async fn next_text(socket: &mut Socket) -> String {
    loop {
        let frame = tokio::time::timeout(TIMEOUT, socket.next())
            .await
            .expect("a frame arrives in time")
            .expect("the socket stays open")
            .expect("a valid frame");
        match frame {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn two_clients_exchange_a_message_in_a_room() {
    let address = start_service().await;
    let mut ann = connect_with_header(address, "ann-token").await;
    // Browsers cannot set headers on a WebSocket: the token may be a query.
    let (mut bob, _) = connect_async(format!("ws://{address}/v1/chat?token=bob-token"))
        .await
        .expect("the upgrade succeeds");

    send(&mut ann, r#"{"command":"join","room":1}"#).await;
    assert_eq!(next_text(&mut ann).await, r#"{"join":"1","title":"Lobby"}"#);

    send(&mut bob, r#"{"command":"join","room":"1"}"#).await;
    assert_eq!(next_text(&mut bob).await, r#"{"join":"1","title":"Lobby"}"#);
    assert_eq!(
        next_text(&mut ann).await,
        r#"{"msg_type":4,"room":1,"username":"bob"}"#
    );

    send(
        &mut ann,
        r#"{"command":"send","room":1,"message":"hello, bob"}"#,
    )
    .await;
    let message = r#"{"msg_type":0,"room":1,"username":"ann","message":"hello, bob"}"#;
    assert_eq!(next_text(&mut bob).await, message);
    assert_eq!(next_text(&mut ann).await, message);

    send(&mut bob, r#"{"command":"room_users","room":1}"#).await;
    let users = next_text(&mut bob).await;
    assert!(
        users.starts_with(r#"{"type":6,"room":1,"data":{"users":{"1":{"username":"ann","name":"Ann","left":false,"#),
        "{users}"
    );
    assert!(
        users.contains(r#""2":{"username":"bob","name":"Bob","left":false,"#),
        "{users}"
    );

    // Closing a socket leaves its rooms: the others see a LEAVE.
    bob.close(None).await.expect("bob closes");
    assert_eq!(
        next_text(&mut ann).await,
        r#"{"msg_type":5,"room":1,"username":"bob"}"#
    );
}

#[tokio::test]
async fn a_request_without_a_known_token_is_refused_before_the_upgrade() {
    let address = start_service().await;
    for url in [
        format!("ws://{address}/v1/chat"),
        format!("ws://{address}/v1/chat?token=nobody"),
    ] {
        match connect_async(url).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401);
            }
            other => panic!("expected a 401, got {other:?}"),
        }
    }
}
