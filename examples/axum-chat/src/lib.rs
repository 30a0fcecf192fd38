//! Whisper's chat inside a service that already has its own HTTP stack and
//! its own users.
//!
//! The service here is a small axum application that knows its users by
//! bearer token. It mounts Whisper's v1 chat protocol on one of its routes,
//! `GET /v1/chat` (a WebSocket), using only the library crates:
//! `whisper-chat` keeps the rules of each connection (the same ones
//! Whisper's own server runs), and `whisper-rooms` carries room events
//! between connections ([`MemoryLayer`] here; `RedisLayer`, behind
//! whisper-rooms' `redis` feature, for several nodes, through the same
//! [`ChannelLayer`] trait). Whisper's own server, database and web page are
//! not involved; this crate is only the transport and the authentication.
//!
//! What the service decides, and Whisper does not:
//!
//! - **Who the user is.** [`ChatUser`] comes from the service's own token
//!   table ([`Tokens`]), read from `Authorization: Bearer <token>` or, for
//!   browsers (which cannot set headers on a WebSocket), `?token=<token>`.
//!   A request without a known token gets 401 before any upgrade.
//! - **Which rooms exist** and which are staff-only: any
//!   [`RoomDirectory`]; here a fixed [`StaticRooms`] list.
//!
//! What the library crates keep exactly as Whisper's server does: the rules
//! and the frames (`{"join":"1","title":"Lobby"}`, `{"msg_type":0,...}`,
//! `{"error":"..."}`), the limits, the bounded per-connection inbox, and
//! presence for `room_users`. The tests run whisper-chat's host scenarios
//! through this service's WebSocket to show it.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use whisper_chat::{Chat, ChatUser, Limits, MemoryLog, Room, StaticRooms};
//! use whisper_example_axum_chat::{Tokens, router};
//! use whisper_protocol::RoomId;
//!
//! # async fn serve() -> std::io::Result<()> {
//! let mut tokens = Tokens::default();
//! tokens.insert("secret-ann", ChatUser::new(1, "ann", "Ann"));
//! let rooms = StaticRooms::new([Room::new(RoomId(1), "Lobby")]);
//! let layer = whisper_rooms::MemoryLayer::default();
//! let chat = Chat::new(layer, rooms, MemoryLog::default(), Limits::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, router(tokens, Arc::new(chat))).await
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use whisper_chat::{
    Chat, ChatUser, Connection, Limits, MemoryLog, MessageLog, Protocol, Room, RoomDirectory,
    StaticRooms, V2_SUBPROTOCOL,
};
use whisper_protocol::RoomId;
use whisper_rooms::{ChannelLayer, InboxClosed, MemoryLayer, Payload};

/// Close code for a client that fell behind (RFC 6455 "try again later").
const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// The service's own authentication: bearer tokens mapped to users.
///
/// A real service would look tokens up in its session store or verify a
/// signed token here; the chat only needs the resulting [`ChatUser`].
#[derive(Clone, Debug, Default)]
pub struct Tokens(HashMap<String, ChatUser>);

impl Tokens {
    /// Lets `token` authenticate as `user`.
    pub fn insert(&mut self, token: impl Into<String>, user: ChatUser) {
        self.0.insert(token.into(), user);
    }

    fn user(&self, token: &str) -> Option<&ChatUser> {
        self.0.get(token)
    }
}

/// The shared state of the router: the service's tokens and the chat.
struct AppState<L, D, M> {
    tokens: Arc<Tokens>,
    chat: Arc<Chat<L, D, M>>,
}

impl<L, D, M> Clone for AppState<L, D, M> {
    fn clone(&self) -> Self {
        AppState {
            tokens: Arc::clone(&self.tokens),
            chat: Arc::clone(&self.chat),
        }
    }
}

/// The demo's users and rooms: tokens `ann-token` (staff) and `bob-token`,
/// rooms 1 "Lobby" and 2 "Staff room" (staff only), on a MemoryLayer. A real
/// service asks its own session store and room list instead.
pub fn demo() -> (Tokens, Arc<Chat<MemoryLayer, StaticRooms, MemoryLog>>) {
    let mut tokens = Tokens::default();
    tokens.insert("ann-token", ChatUser::new(1, "ann", "Ann").staff());
    tokens.insert("bob-token", ChatUser::new(2, "bob", "Bob"));
    let rooms = StaticRooms::new([
        Room::new(RoomId(1), "Lobby"),
        Room::new(RoomId(2), "Staff room").staff_only(),
    ]);
    let chat = Chat::new(
        MemoryLayer::default(),
        rooms,
        MemoryLog::default(),
        Limits::default(),
    );
    (tokens, Arc::new(chat))
}

/// The service's routes: `GET /` (its own page) and the chat WebSocket at
/// `GET /v1/chat`.
pub fn router<L: ChannelLayer, D: RoomDirectory, M: MessageLog>(
    tokens: Tokens,
    chat: Arc<Chat<L, D, M>>,
) -> Router {
    let state = AppState {
        tokens: Arc::new(tokens),
        chat,
    };
    Router::new()
        .route(
            "/",
            get(|| async { "an existing service, with chat at /v1/chat\n" }),
        )
        .route("/v1/chat", get(chat_socket::<L, D, M>))
        .with_state(state)
}

/// The user a request authenticates as, from its bearer token.
struct Authenticated(ChatUser);

impl<L: ChannelLayer, D: RoomDirectory, M: MessageLog> FromRequestParts<AppState<L, D, M>>
    for Authenticated
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<L, D, M>,
    ) -> Result<Self, Self::Rejection> {
        let from_header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let from_query = parts.uri.query().and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
        });
        from_header
            .or(from_query)
            .and_then(|token| state.tokens.user(token))
            .map(|user| Authenticated(user.clone()))
            .ok_or_else(|| {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "a valid bearer token is required\n",
                )
                    .into_response()
            })
    }
}

/// `GET /v1/chat`: authenticate, then upgrade, speaking v2 when the client
/// offers it. The user is known before the upgrade, so a refusal is a
/// plain HTTP 401. Frames past the limits' frame limit are refused by the
/// WebSocket library before they are buffered.
async fn chat_socket<L: ChannelLayer, D: RoomDirectory, M: MessageLog>(
    State(state): State<AppState<L, D, M>>,
    Authenticated(user): Authenticated,
    upgrade: WebSocketUpgrade,
) -> Response {
    let frame_limit = state.chat.limits().frame_limit();
    upgrade
        .protocols([V2_SUBPROTOCOL])
        .max_message_size(frame_limit)
        .on_upgrade(move |socket| run(state.chat, user, socket))
}

/// The transport of one connection: frames to the rules and their answers
/// back, room events from the inbox as they come, until either side
/// closes; then every room is left.
async fn run<L: ChannelLayer, D: RoomDirectory, M: MessageLog>(
    chat: Arc<Chat<L, D, M>>,
    user: ChatUser,
    mut socket: WebSocket,
) {
    let mut inbox = chat.layer().new_channel();
    let protocol = Protocol::negotiate(socket.protocol().and_then(|name| name.to_str().ok()));
    let Ok(mut connection) =
        Connection::open(chat.clone(), user, inbox.name(), protocol, Instant::now()).await
    else {
        chat.layer().close_channel(inbox.name()).await;
        return;
    };
    loop {
        let gap = connection.gap_deadline();
        // Every branch is cancel safe: whichever loses the race keeps its
        // frame, payload or send for the next turn.
        let frames: Vec<Utf8Bytes> = tokio::select! {
            failed = connection.send_completed() => failed.into_iter().map(Utf8Bytes::from).collect(),
            incoming = socket.recv(), if connection.accepts_frames() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    connection.on_frame(Some(text.as_str()), Instant::now()).await
                }
                Some(Ok(Message::Binary(_))) => connection.on_frame(None, Instant::now()).await,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Vec::new(),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            }
            .into_iter()
            .map(Utf8Bytes::from)
            .collect(),
            delivered = inbox.recv() => match delivered {
                Ok(payload) => {
                    let mut payloads = Vec::new();
                    connection.deliver(payload, Instant::now(), &mut payloads);
                    payloads.into_iter().map(text_frame).collect()
                }
                Err(InboxClosed::SlowConsumer) => {
                    let close = CloseFrame {
                        code: CLOSE_TRY_AGAIN_LATER,
                        reason: Utf8Bytes::from_static("too slow"),
                    };
                    // Best effort: the client is going away either way.
                    let _ = socket.send(Message::Close(Some(close))).await;
                    break;
                }
                Err(InboxClosed::Closed) => break,
            },
            () = sleep_until(gap), if gap.is_some() => connection
                .fill_gaps(Instant::now())
                .await
                .into_iter()
                .map(Utf8Bytes::from)
                .collect(),
        };
        if write_all(&mut socket, frames).await.is_err() {
            break;
        }
    }
    connection.depart().await;
}

/// Sleeps until `deadline`; never completes for `None`.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Writes frames in order.
async fn write_all(socket: &mut WebSocket, frames: Vec<Utf8Bytes>) -> Result<(), axum::Error> {
    for frame in frames {
        socket.send(Message::Text(frame)).await?;
    }
    Ok(())
}

/// A payload as a WebSocket text frame, sharing its bytes (no copy).
fn text_frame(payload: Payload) -> Utf8Bytes {
    // A Payload is always UTF-8 (it is built from a `String` or `&str`), so
    // the empty fallback is never taken; the check itself is a scan, not a
    // copy.
    Utf8Bytes::try_from(payload.into_bytes()).unwrap_or_default()
}
