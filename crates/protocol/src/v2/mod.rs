//! Wire types of protocol v2: history, recovery after a reconnect,
//! acknowledged sends and typing notices.
//!
//! A socket speaks v2 only when its client offered the WebSocket subprotocol
//! `whisper.v2` (`Sec-WebSocket-Protocol: whisper.v2`) and the server
//! answered with it; every other socket speaks v1, which v2 never changes.
//! Both versions share [`RoomId`] (a number or a string of digits) and
//! [`ErrorCode`](crate::ErrorCode).
//!
//! A client sends `{"command":C,"id":N,...}`; the optional `id` comes back in
//! the reply, so a client may pipeline commands and match the answers:
//! `{"id":N,"result":{...}}` or `{"id":N,"error":{"code":CODE,"room":R}}`.
//! Server pushes are `{"event":E,...}` and never carry an `id`.
//!
//! ```
//! use whisper_protocol::RoomId;
//! use whisper_protocol::v2::{self, Command, Request, Seq, encode};
//!
//! let request = v2::decode_command(r#"{"command":"history","id":7,"room":"3","before":120}"#);
//! assert_eq!(
//!     request,
//!     Ok(Request {
//!         id: Some(7),
//!         command: Command::History { room: RoomId(3), before: Some(Seq(120)), limit: 50 },
//!     })
//! );
//! assert_eq!(
//!     encode::leave_result(Some(7), RoomId(3)),
//!     r#"{"id":7,"result":{"room":3}}"#
//! );
//! ```
//!
//! As in v1, the serializing structs are private: the encoders in [`encode`]
//! take plain values and return the finished frame text.

mod command;
pub mod encode;
mod peek;

pub use command::{Command, DecodeError, Request, Since, decode_command};
pub use peek::{EventHead, peek_event};

use crate::RoomId;

/// The `limit` a `join` or `history` gets when the client names none: enough
/// to fill a chat window without a second request.
pub const DEFAULT_LIMIT: u32 = 50;

/// The most messages one `join` or `history` result carries, so one request
/// cannot make the server read and send a room's whole log. A larger `limit`
/// is taken as this one rather than refused, so a client asking for "as many
/// as possible" still gets a page.
pub const MAX_LIMIT: u32 = 100;

/// The longest `nonce` a `send` may carry, in bytes of UTF-8: the server
/// stores it with the message, so it must stay small.
pub const MAX_NONCE_BYTES: usize = 64;

/// The longest mute a `mute` may ask for, in seconds: one year. A mute is
/// for keeping a room usable, not for banning; longer ones are refused
/// rather than taken as the maximum, so staff notice.
pub const MAX_MUTE_SECONDS: u32 = 31_536_000;

/// A message's place in its room's log: 1, 2, 3, ... with no gap, the same on
/// every node.
///
/// A newtype so a seq is never passed where a timestamp or a limit goes; it
/// is only meaningful together with the room's [`Epoch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seq(pub u64);

/// The identity of a room's log, a short string that changes only when the
/// stored history is lost or cleared.
///
/// A client compares epochs before trusting seqs: the same seq in another
/// epoch names another message. A newtype so it is not confused with the
/// room's title or a message's text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Epoch(pub String);

/// Who wrote a message or entered a room, as every v2 frame names a user.
///
/// v1 frames carry only the username; v2 carries the id too, so a client can
/// tell apart two users whose display names match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    /// The user's database id.
    pub id: i64,
    /// The user's login name.
    pub username: String,
    /// The user's display name (may be empty).
    pub name: String,
}

/// A stored message, as `join` and `history` results and `message` events
/// carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The room the message belongs to; repeated in each message so a client
    /// can file an event without looking at the frame around it.
    pub room: RoomId,
    /// The message's place in the room's log.
    pub seq: Seq,
    /// When the server stored it, in Unix milliseconds: the server's clock,
    /// so every client shows the same time.
    pub ts: i64,
    /// Its author.
    pub user: UserRef,
    /// Its text, or `None` once its author or a staff member deleted it: the
    /// seq stays in the log (so history shows no gap) but the text is gone,
    /// and the frame says `"deleted":true` instead.
    pub text: Option<String>,
}

/// One user in the `room_users` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomUser {
    /// The user.
    pub user: UserRef,
    /// Whether the user has a socket in the room now.
    pub online: bool,
    /// When the user was last seen in the room (joined, sent, left), in Unix
    /// milliseconds, so a client can show "last seen 5 minutes ago".
    pub last_seen: i64,
}
