//! Whisper's chat inside a service that already has its own HTTP stack and
//! its own users.
//!
//! The service here is a small axum application that knows its users by
//! bearer token. It mounts Whisper's v1 chat protocol on one of its routes,
//! `GET /v1/chat` (a WebSocket), using only the library crates:
//! `whisper-protocol` decodes commands and encodes frames, and
//! `whisper-rooms` carries room events between connections ([`MemoryLayer`]
//! here; `RedisLayer`, behind whisper-rooms' `redis` feature, for several
//! nodes, through the same [`ChannelLayer`] trait). Whisper's own
//! server, database and web page are not involved.
//!
//! What the service decides, and Whisper does not:
//!
//! - **Who the user is.** [`ChatUser`] comes from the service's own token
//!   table ([`Tokens`]), read from `Authorization: Bearer <token>` or, for
//!   browsers (which cannot set headers on a WebSocket), `?token=<token>`.
//!   A request without a known token gets 401 before any upgrade.
//! - **Which rooms exist** and which are staff-only ([`Room`]).
//!
//! What the library crates keep exactly as Whisper's server does: the frames
//! (`{"join":"1","title":"Lobby"}`, `{"msg_type":0,...}`, `{"error":"..."}`),
//! the bounded per-connection inbox, and presence for `room_users`.
//!
//! ```no_run
//! use whisper_example_axum_chat::{Chat, ChatUser, Room, Tokens, router};
//! use whisper_protocol::RoomId;
//!
//! # async fn serve() -> std::io::Result<()> {
//! let mut tokens = Tokens::default();
//! tokens.insert("secret-ann", ChatUser::new(1, "ann", "Ann"));
//! let chat = Chat::new(
//!     whisper_rooms::MemoryLayer::default(),
//!     [(RoomId(1), Room::new("Lobby"))],
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, router(tokens, chat)).await
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use whisper_protocol::{Command, ErrorCode, RoomId, decode_command, encode};
use whisper_rooms::{ChannelLayer, GroupName, Inbox, InboxClosed, MemoryLayer, Payload};

/// The largest text frame a connection may send; longer ones are refused
/// by the WebSocket library before they are buffered.
const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Close code for a client that fell behind (RFC 6455 "try again later").
const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// A user as this service knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatUser {
    /// The service's id for the user; presence entries are keyed by it.
    pub id: i64,
    /// The name shown on messages.
    pub username: String,
    /// The display name listed by `room_users`.
    pub name: String,
    /// Staff may join staff-only rooms.
    pub is_staff: bool,
}

impl ChatUser {
    /// A non-staff user.
    pub fn new(id: i64, username: impl Into<String>, name: impl Into<String>) -> Self {
        ChatUser {
            id,
            username: username.into(),
            name: name.into(),
            is_staff: false,
        }
    }

    /// The same user, as staff.
    pub fn staff(mut self) -> Self {
        self.is_staff = true;
        self
    }
}

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

/// A room of this service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    /// Sent in the join reply.
    pub title: String,
    /// Only staff may join, send to or list it.
    pub staff_only: bool,
}

impl Room {
    /// A room anyone may join.
    pub fn new(title: impl Into<String>) -> Self {
        Room {
            title: title.into(),
            staff_only: false,
        }
    }

    /// The same room, for staff only.
    pub fn staff_only(mut self) -> Self {
        self.staff_only = true;
        self
    }
}

/// The chat: a channel layer and the rooms it serves.
#[derive(Debug)]
pub struct Chat<L = MemoryLayer> {
    layer: L,
    rooms: BTreeMap<RoomId, Room>,
}

impl<L: ChannelLayer> Chat<L> {
    /// A chat over `layer` serving `rooms`.
    pub fn new(layer: L, rooms: impl IntoIterator<Item = (RoomId, Room)>) -> Self {
        Chat {
            layer,
            rooms: rooms.into_iter().collect(),
        }
    }

    /// The room if it exists and `user` may use it.
    fn room_for(&self, room: RoomId, user: &ChatUser) -> Result<&Room, ErrorCode> {
        let found = self.rooms.get(&room).ok_or(ErrorCode::RoomInvalid)?;
        if found.staff_only && !user.is_staff {
            return Err(ErrorCode::RoomAccessDenied);
        }
        Ok(found)
    }
}

/// The shared state of the router: the service's tokens and the chat.
struct AppState<L> {
    tokens: Arc<Tokens>,
    chat: Arc<Chat<L>>,
}

impl<L> Clone for AppState<L> {
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
pub fn demo() -> (Tokens, Chat) {
    let mut tokens = Tokens::default();
    tokens.insert("ann-token", ChatUser::new(1, "ann", "Ann").staff());
    tokens.insert("bob-token", ChatUser::new(2, "bob", "Bob"));
    let chat = Chat::new(
        MemoryLayer::default(),
        [
            (RoomId(1), Room::new("Lobby")),
            (RoomId(2), Room::new("Staff room").staff_only()),
        ],
    );
    (tokens, chat)
}

/// The service's routes: `GET /` (its own page) and the chat WebSocket at
/// `GET /v1/chat`.
pub fn router<L: ChannelLayer>(tokens: Tokens, chat: Chat<L>) -> Router {
    let state = AppState {
        tokens: Arc::new(tokens),
        chat: Arc::new(chat),
    };
    Router::new()
        .route(
            "/",
            get(|| async { "an existing service, with chat at /v1/chat\n" }),
        )
        .route("/v1/chat", get(chat_socket::<L>))
        .with_state(state)
}

/// The user a request authenticates as, from its bearer token.
struct Authenticated(ChatUser);

impl<L: ChannelLayer> FromRequestParts<AppState<L>> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<L>,
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

/// `GET /v1/chat`: authenticate, then upgrade. The user is known before the
/// upgrade, so a refusal is a plain HTTP 401.
async fn chat_socket<L: ChannelLayer>(
    State(state): State<AppState<L>>,
    Authenticated(user): Authenticated,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| Connection::new(state.chat, user).run(socket))
}

/// One WebSocket connection: its user, its inbox and the rooms it joined.
struct Connection<L: ChannelLayer> {
    chat: Arc<Chat<L>>,
    user: ChatUser,
    joined: BTreeSet<RoomId>,
}

impl<L: ChannelLayer> Connection<L> {
    fn new(chat: Arc<Chat<L>>, user: ChatUser) -> Self {
        Connection {
            chat,
            user,
            joined: BTreeSet::new(),
        }
    }

    /// Answers commands and forwards room events until either side closes;
    /// then leaves every room.
    async fn run(mut self, mut socket: WebSocket) {
        let mut inbox = self.chat.layer.new_channel();
        loop {
            // Both `recv`s are cancel safe: whichever loses the race keeps
            // its frame for the next turn.
            tokio::select! {
                incoming = socket.recv() => {
                    let reply = match incoming {
                        Some(Ok(Message::Text(text))) => self.handle(text.as_str(), &inbox).await,
                        Some(Ok(Message::Binary(_))) => Some(encode::error(ErrorCode::BadRequest)),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    };
                    if let Some(reply) = reply
                        && socket.send(Message::Text(reply.into())).await.is_err()
                    {
                        break;
                    }
                }
                delivered = inbox.recv() => match delivered {
                    Ok(payload) => {
                        if socket.send(Message::Text(text_frame(payload))).await.is_err() {
                            break;
                        }
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
            }
        }
        for room in std::mem::take(&mut self.joined) {
            // Best effort: the connection is gone, nobody to report to.
            let _ = self.leave(room, &inbox).await;
        }
        self.chat.layer.close_channel(inbox.name()).await;
    }

    /// The direct reply to one client frame, if any.
    async fn handle(&mut self, text: &str, inbox: &Inbox) -> Option<String> {
        let result = match decode_command(text) {
            Ok(Command::Join { room }) => self.join(room, inbox).await.map(Some),
            Ok(Command::Leave { room }) => {
                let left = match self.chat.room_for(room, &self.user) {
                    Ok(_) if self.joined.remove(&room) => self.leave(room, inbox).await,
                    Ok(_) => Err(ErrorCode::RoomAccessDenied),
                    Err(code) => Err(code),
                };
                left.map(|()| Some(encode::leave_reply(room)))
            }
            Ok(Command::Send { room, message }) => self.send(room, &message).await.map(|()| None),
            Ok(Command::RoomUsers { room }) => self.room_users(room).await.map(Some),
            Err(code) => Err(code),
        };
        result.unwrap_or_else(|code| Some(encode::error(code)))
    }

    async fn join(&mut self, room: RoomId, inbox: &Inbox) -> Result<String, ErrorCode> {
        let title = self.chat.room_for(room, &self.user)?.title.clone();
        if self.joined.contains(&room) {
            return Ok(encode::join_reply(room, &title));
        }
        let layer = &self.chat.layer;
        let group = GroupName::for_room(room);
        // ENTER goes out before the joiner is a member, so it does not get it.
        let enter = Payload::from(encode::enter(room, &self.user.username));
        layer.group_send(&group, enter).await.map_err(unavailable)?;
        layer
            .presence_touch(room, self.user.id, &self.user.username, &self.user.name)
            .await
            .map_err(unavailable)?;
        layer
            .group_add(&group, inbox.name())
            .await
            .map_err(unavailable)?;
        self.joined.insert(room);
        Ok(encode::join_reply(room, &title))
    }

    /// Announces the leave and drops the membership; the caller has already
    /// taken `room` out of `joined`.
    async fn leave(&self, room: RoomId, inbox: &Inbox) -> Result<(), ErrorCode> {
        let layer = &self.chat.layer;
        let group = GroupName::for_room(room);
        let event = Payload::from(encode::leave(room, &self.user.username));
        let sent = layer.group_send(&group, event).await;
        let marked = layer.presence_leave(room, self.user.id).await;
        layer
            .group_discard(&group, inbox.name())
            .await
            .map_err(unavailable)?;
        sent.and(marked).map_err(unavailable)
    }

    async fn send(&self, room: RoomId, message: &str) -> Result<(), ErrorCode> {
        self.chat.room_for(room, &self.user)?;
        if !self.joined.contains(&room) {
            return Err(ErrorCode::RoomAccessDenied);
        }
        let layer = &self.chat.layer;
        // Encoded once, whatever the number of receivers.
        let event = Payload::from(encode::message(room, &self.user.username, message));
        layer
            .group_send(&GroupName::for_room(room), event)
            .await
            .map_err(unavailable)?;
        // The message went out; a failed presence refresh is not worth an
        // error that would make the client resend it.
        let _ = layer
            .presence_touch(room, self.user.id, &self.user.username, &self.user.name)
            .await;
        Ok(())
    }

    async fn room_users(&self, room: RoomId) -> Result<String, ErrorCode> {
        self.chat.room_for(room, &self.user)?;
        let entries = self
            .chat
            .layer
            .presence_list(room)
            .await
            .map_err(unavailable)?;
        Ok(encode::room_users(room, &entries))
    }
}

/// A layer failure as the client sees it: nothing was delivered, retry.
fn unavailable(_: whisper_rooms::LayerError) -> ErrorCode {
    ErrorCode::Unavailable
}

/// A payload as a WebSocket text frame, sharing its bytes (no copy).
fn text_frame(payload: Payload) -> Utf8Bytes {
    // A Payload is always UTF-8 (it is built from a `String` or `&str`), so
    // the empty fallback is never taken; the check itself is a scan, not a
    // copy.
    Utf8Bytes::try_from(payload.into_bytes()).unwrap_or_default()
}
