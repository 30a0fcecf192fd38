//! The rules of one Whisper chat connection, without a transport.
//!
//! A chat connection takes commands (`join`, `leave`, `send`,
//! `room_users`, and in protocol v2 `history`, `typing` and `delete`) and answers
//! them by the rules of Whisper's protocols: who
//! may enter which room, what the others see and in which order, what is
//! refused and with which error, how much one connection may do. Those
//! rules live here, once, so every host runs the same ones: Whisper's own
//! server (hyper and tungstenite), or a service of yours that mounts the
//! chat on its own HTTP stack (the repository's `examples/axum-chat`).
//!
//! The host keeps the socket. It reads a frame, hands its text to
//! [`Connection::on_frame`] with the time, and writes the frames it gets
//! back; it writes whatever arrives in the connection's
//! [`Inbox`](whisper_rooms::Inbox) (room events, shared bytes encoded once
//! per broadcast) that [`Connection::deliver`] lets through, as it comes;
//! and when the socket ends it runs [`Connection::depart`]. Changes of
//! access made while connections are open (a room deleted or made
//! staff-only, a user logged out or demoted) reach them through the layer
//! as an [`AccessChange`], on every node; the host announces each one it
//! makes. Staff may mute a user in a room (v2 `mute`): the user's sends
//! there are refused with `MUTED` until the mute ends or is lifted, on
//! every node at once (an [`AccessChange::Mute`]). There are no
//! sockets and no timers in this crate: time is passed in, and the only I/O
//! is through the [`ChannelLayer`], the [`RoomDirectory`] and the
//! [`MessageLog`] the host chooses. Its one task stores messages in batches
//! and publishes them (see [`MessageLog`]); it runs on the host's Tokio
//! runtime while there are messages to store.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//!
//! use whisper_chat::{Chat, ChatUser, Connection, Limits, MemoryLog, Protocol, Room, StaticRooms};
//! use whisper_protocol::RoomId;
//! use whisper_rooms::{ChannelLayer, MemoryLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let rooms = StaticRooms::new([Room::new(RoomId(1), "Lobby")]);
//! let chat = Arc::new(Chat::new(
//!     MemoryLayer::default(),
//!     rooms,
//!     MemoryLog::default(),
//!     Limits::default(),
//! ));
//!
//! // What a host does for each new socket:
//! let mut inbox = chat.layer().new_channel();
//! let user = ChatUser::new(7, "ann", "Ann");
//! let mut ann = Connection::open(chat.clone(), user, inbox.name(), Protocol::V1, Instant::now())
//!     .await
//!     .expect("the layer takes the connection");
//!
//! let reply = ann.on_frame(Some(r#"{"command":"join","room":1}"#), Instant::now()).await;
//! assert_eq!(reply, [r#"{"join":"1","title":"Lobby"}"#]);
//!
//! // A v1 send is answered by the message itself, through the inbox,
//! // once the log has stored it.
//! let send = r#"{"command":"send","room":1,"message":"hi"}"#;
//! assert!(ann.on_frame(Some(send), Instant::now()).await.is_empty());
//! assert_eq!(ann.finish_sends().await, Vec::<String>::new());
//! let event = inbox.recv().await.unwrap();
//! // The connection says what of it its client gets.
//! let mut frames = Vec::new();
//! ann.deliver(event, Instant::now(), &mut frames);
//! assert_eq!(frames[0].as_str(), r#"{"msg_type":0,"room":1,"username":"ann","message":"hi"}"#);
//!
//! // When the socket is gone: leave every room, close the inbox.
//! ann.depart().await;
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use whisper_protocol::v2::UserRef;
use whisper_protocol::{ErrorCode, RoomId};

/// The room type the rules and a [`RoomDirectory`] share, re-exported so
/// a host names it without depending on whisper-protocol itself.
pub use whisper_protocol::Room;
use whisper_rooms::{ChannelLayer, LayerError, Payload};

mod access;
mod connection;
mod log;
mod rate;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_mutes;
#[cfg(test)]
mod tests_v2;
mod writer;

pub use access::{AccessChange, NotAChange};
pub use connection::{Connection, GAP_WAIT, RECOVERY_MAX, RECOVERY_MAX_BYTES};
pub use log::{Appended, Draft, Erase, Erasure, LogState, MemoryLog, MessageLog, NONCE_WINDOW};

/// The WebSocket subprotocol a client offers to speak protocol v2.
pub const V2_SUBPROTOCOL: &str = "whisper.v2";

/// How often, at most, one user's typing in one room is announced: a
/// client may send `typing` on every keystroke; the others hear of it once
/// per interval.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(2);

/// Which protocol a connection speaks, as its client chose at the
/// handshake (v2 by offering [`V2_SUBPROTOCOL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// The original's protocol, byte for byte.
    #[default]
    V1,
    /// History, recovery, acknowledged sends and typing.
    V2,
}

impl Protocol {
    /// The protocol a handshake offering these subprotocols gets: v2 when
    /// [`V2_SUBPROTOCOL`] is among them.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Self {
        if offered
            .into_iter()
            .any(|name| name.trim() == V2_SUBPROTOCOL)
        {
            Protocol::V2
        } else {
            Protocol::V1
        }
    }
}

/// Between a room event's v2 frame and its v1 frame in one payload: NUL,
/// which JSON text never holds unescaped.
const FRAME_SEPARATOR: char = '\0';

/// A room event as one payload for members of both protocols: the v2
/// frame, [`FRAME_SEPARATOR`], the v1 frame (empty when v1 members get
/// nothing). One broadcast reaches both kinds of member (one Redis publish
/// across nodes); each takes its part without a copy (see
/// [`Connection::deliver`]).
fn room_event(v2_frame: String, v1_frame: &str) -> Payload {
    let mut both = v2_frame;
    both.reserve(1 + v1_frame.len());
    both.push(FRAME_SEPARATOR);
    both.push_str(v1_frame);
    Payload::from(both)
}

/// A user as the rules need it. The host decides who the user is (a
/// session cookie, a bearer token); the rules only use these fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatUser {
    /// The host's id for the user; presence entries are keyed by it.
    pub id: i64,
    /// The name shown on messages, ENTER and LEAVE.
    pub username: String,
    /// The display name listed by `room_users`.
    pub name: String,
    /// Staff may use staff-only rooms.
    pub is_staff: bool,
}

impl ChatUser {
    /// A user who is not staff.
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

    /// The user as v2 frames name it.
    fn user_ref(&self) -> UserRef {
        UserRef {
            id: self.id,
            username: self.username.clone(),
            name: self.name.clone(),
        }
    }
}

/// A mute as staff set or end it (v2 `mute` and `unmute`): `user` may not
/// post in `room` until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    /// The room the mute holds in.
    pub room: RoomId,
    /// The muted user's id.
    pub user: i64,
    /// When the mute ends, in Unix milliseconds (wall clock, so it
    /// outlasts restarts); `None` ends it now (unmute).
    pub until: Option<i64>,
    /// The staff member who asked, for a host that keeps a record of
    /// moderation.
    pub by: UserRef,
}

/// What a [`RoomDirectory`] made of a [`Mute`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuteOutcome {
    /// Stored: it holds from now on.
    Applied,
    /// No user has the id: nothing was stored, and the asker hears
    /// `BAD_REQUEST`.
    NoSuchUser,
}

/// Where the rules look rooms up: a database table, a configuration file,
/// a fixed list. Looked up on every join and `room_users`, so a host with
/// a slow store caches (Whisper's server does). It also keeps who is muted
/// where, read on every join.
pub trait RoomDirectory: Send + Sync + 'static {
    /// Why a lookup failed; the client hears `UNAVAILABLE` and the error is
    /// logged with its sources.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The room with this id, or `None` when there is none.
    fn room(&self, id: RoomId) -> impl Future<Output = Result<Option<Room>, Self::Error>> + Send;

    /// Until when (Unix milliseconds) `user` is muted in `room`; `None`
    /// when not. An end already past may be returned: the rules compare it
    /// with the time themselves.
    fn muted_until(
        &self,
        room: RoomId,
        user: i64,
    ) -> impl Future<Output = Result<Option<i64>, Self::Error>> + Send;

    /// Stores a mute, or ends one (`until: None`; ending a mute there is
    /// not is no error). The rules check that the asker is staff and that
    /// the room exists first, and tell every connection of the user once
    /// this returns [`MuteOutcome::Applied`].
    fn set_mute(
        &self,
        mute: &Mute,
    ) -> impl Future<Output = Result<MuteOutcome, Self::Error>> + Send;
}

/// A fixed set of rooms, for hosts whose rooms do not change while they run
/// (and for tests). Mutes are kept in memory (lost on restart); any user
/// id may be muted. Clones share the mutes.
#[derive(Debug, Clone, Default)]
pub struct StaticRooms {
    rooms: BTreeMap<RoomId, Room>,
    /// (room, user) -> until, in Unix milliseconds.
    mutes: Arc<Mutex<HashMap<(RoomId, i64), i64>>>,
}

impl StaticRooms {
    /// A directory of exactly these rooms.
    pub fn new(rooms: impl IntoIterator<Item = Room>) -> Self {
        StaticRooms {
            rooms: rooms.into_iter().map(|room| (room.id, room)).collect(),
            mutes: Arc::default(),
        }
    }

    fn mutes(&self) -> std::sync::MutexGuard<'_, HashMap<(RoomId, i64), i64>> {
        self.mutes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RoomDirectory for StaticRooms {
    type Error = Infallible;

    async fn room(&self, id: RoomId) -> Result<Option<Room>, Infallible> {
        Ok(self.rooms.get(&id).cloned())
    }

    async fn muted_until(&self, room: RoomId, user: i64) -> Result<Option<i64>, Infallible> {
        Ok(self.mutes().get(&(room, user)).copied())
    }

    async fn set_mute(&self, mute: &Mute) -> Result<MuteOutcome, Infallible> {
        let key = (mute.room, mute.user);
        match mute.until {
            Some(until) => self.mutes().insert(key, until),
            None => self.mutes().remove(&key),
        };
        Ok(MuteOutcome::Applied)
    }
}

/// How much one connection may do. Every field bounds what a client can
/// make the server spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest chat message, in bytes of UTF-8; longer ones are refused
    /// with `MESSAGE_TOO_LARGE`.
    pub max_message_bytes: usize,
    /// Most rooms one connection may be in at once (`TOO_MANY_ROOMS`).
    /// Also the least burst of joins allowed (see [`Limits::join_burst`]).
    pub max_rooms_per_connection: usize,
    /// Frames per second one connection may send on average, past the
    /// bursts of [`Limits::frame_burst`]; further frames are refused with
    /// `RATE_LIMITED`. Joins are counted apart, at the same rate (see
    /// [`Limits::join_burst`]).
    pub max_messages_per_second: u32,
    /// Most `send` broadcasts one connection has under way at once. A layer
    /// call may be a network round trip (a Redis PUBLISH); a client sending
    /// faster than that would otherwise be held to one message per round
    /// trip. Past this many, [`Connection::accepts_frames`] is false and the
    /// host stops reading until one completes.
    pub max_sends_in_flight: usize,
}

impl Limits {
    /// The largest WebSocket frame a host should read at all. A chat
    /// message may be up to `max_message_bytes`, and JSON escaping can grow
    /// it (up to six bytes for one control character), so the cap leaves
    /// room for that; a host refuses anything larger before buffering it.
    pub fn frame_limit(&self) -> usize {
        self.max_message_bytes.saturating_mul(8).max(64 * 1024)
    }

    /// How many frames other than `join` one connection may send at once
    /// before the rate applies: twice the rate, so a person typing fast is
    /// never limited but a script flooding a room is.
    pub fn frame_burst(&self) -> u32 {
        self.max_messages_per_second.saturating_mul(2)
    }

    /// How many `join`s one connection may send at once before the rate
    /// applies: enough to join every room it may be in (a client joins all
    /// its rooms again after a reconnect, one right after the other), and
    /// never fewer than [`frame_burst`](Self::frame_burst). Joins take from
    /// a bucket of their own, so a join flood is still refused once it is
    /// spent, and a `leave` between joins takes from the frames' bucket.
    pub fn join_burst(&self) -> u32 {
        u32::try_from(self.max_rooms_per_connection)
            .unwrap_or(u32::MAX)
            .max(self.frame_burst())
    }
}

impl Default for Limits {
    /// Whisper's defaults: 16 KiB messages, 100 rooms, 20 frames a second,
    /// 64 sends under way.
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 * 1024,
            max_rooms_per_connection: 100,
            max_messages_per_second: 20,
            max_sends_in_flight: 64,
        }
    }
}

/// What the connections of one [`Chat`] did, for a host's metrics. Plain
/// atomic counters, bumped on the hot path without locks.
#[derive(Debug, Default)]
pub struct Counters {
    frames_received: AtomicU64,
    frames_rate_limited: AtomicU64,
    layer_errors: AtomicU64,
}

impl Counters {
    /// Frames handed to [`Connection::on_frame`].
    pub fn frames_received(&self) -> u64 {
        self.frames_received.load(Ordering::Relaxed)
    }

    /// Frames refused for exceeding
    /// [`Limits::max_messages_per_second`], joins included.
    pub fn frames_rate_limited(&self) -> u64 {
        self.frames_rate_limited.load(Ordering::Relaxed)
    }

    /// Channel-layer calls that failed.
    pub fn layer_errors(&self) -> u64 {
        self.layer_errors.load(Ordering::Relaxed)
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every connection of a host shares: the channel layer that carries
/// room events, the directory of rooms, the log of messages, the limits,
/// and the counters. A host makes one and hands each [`Connection`] an
/// `Arc` of it.
#[derive(Debug)]
pub struct Chat<L, D, M> {
    layer: L,
    rooms: D,
    log: M,
    limits: Limits,
    counters: Counters,
    writer: writer::LogWriter,
    /// When each (user, room) last had its typing announced.
    typing: Mutex<HashMap<(i64, RoomId), Instant>>,
}

/// Typing entries kept before the stale ones are swept.
const TYPING_SWEEP: usize = 4096;

impl<L: ChannelLayer, D: RoomDirectory, M: MessageLog> Chat<L, D, M> {
    /// A chat over `layer`, serving the rooms of `rooms`, storing messages
    /// in `log`.
    pub fn new(layer: L, rooms: D, log: M, limits: Limits) -> Self {
        Chat {
            layer,
            rooms,
            log,
            limits,
            counters: Counters::default(),
            writer: writer::LogWriter::default(),
            typing: Mutex::new(HashMap::new()),
        }
    }

    /// The message log.
    pub fn log(&self) -> &M {
        &self.log
    }

    /// Whether `user`'s typing in `room` may be announced at `now`, and if
    /// so, remembers it. The map is swept of stale entries as it grows, so
    /// it holds about the users typing in the last interval.
    fn typing_allowed(&self, user: i64, room: RoomId, now: Instant) -> bool {
        let mut typing = self.typing.lock().unwrap_or_else(PoisonError::into_inner);
        if typing.len() >= TYPING_SWEEP {
            typing.retain(|_, at| now.saturating_duration_since(*at) < TYPING_INTERVAL);
        }
        match typing.get(&(user, room)) {
            Some(at) if now.saturating_duration_since(*at) < TYPING_INTERVAL => false,
            _ => {
                typing.insert((user, room), now);
                true
            }
        }
    }

    /// The channel layer, for the host's own needs: a new connection's
    /// inbox, health checks, metrics.
    pub fn layer(&self) -> &L {
        &self.layer
    }

    /// The room directory.
    pub fn rooms(&self) -> &D {
        &self.rooms
    }

    /// The limits every connection is held to.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What the connections did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Logs and counts a channel-layer failure; the client hears
    /// `UNAVAILABLE`.
    fn layer_failed(&self, call: &'static str, error: &LayerError) -> ErrorCode {
        tracing::warn!(error = %error, call, "channel layer call failed");
        Counters::bump(&self.counters.layer_errors);
        ErrorCode::Unavailable
    }
}
