//! Wire types of Whisper's chat protocol, versions 1 and 2.
//!
//! Version 1 is byte-compatible with the Django Channels "multichat" example:
//! clients send JSON objects with a `command` field, and the server answers
//! with replies (`{"join":"1","title":"Lobby"}`), events broadcast to a room
//! (`{"msg_type":0,"room":1,"username":"ann","message":"hi"}`) and errors
//! (`{"error":"ROOM_INVALID"}`). This crate only turns text into [`Command`]s
//! and events into text; it does no I/O, so any transport can use it.
//!
//! ```
//! use whisper_protocol::{Command, RoomId, decode_command, encode};
//!
//! let command = decode_command(r#"{"command":"send","room":"7","message":"hi"}"#).unwrap();
//! assert_eq!(command, Command::Send { room: RoomId(7), message: "hi".into() });
//!
//! let event = encode::message(RoomId(7), "ann", "hi");
//! assert_eq!(event, r#"{"msg_type":0,"room":7,"username":"ann","message":"hi"}"#);
//! ```
//!
//! # The protocol
//!
//! One WebSocket per client, text frames, one JSON object per frame.
//!
//! | client sends | server replies | server broadcasts to the room |
//! |---|---|---|
//! | `{"command":"join","room":ID}` | [`encode::join_reply`] `{"join":"ID","title":T}` | [`encode::enter`] `{"msg_type":4,"room":ID,"username":U}` |
//! | `{"command":"leave","room":ID}` | [`encode::leave_reply`] `{"leave":"ID"}` | [`encode::leave`] `{"msg_type":5,"room":ID,"username":U}` |
//! | `{"command":"send","room":ID,"message":M}` | nothing | [`encode::message`] `{"msg_type":0,"room":ID,"username":U,"message":M}` |
//! | `{"command":"room_users","room":ID}` | [`encode::room_users`] `{"type":6,"room":ID,"data":{"users":{..}}}` | nothing |
//!
//! Any command may instead be answered with [`encode::error`]
//! (`{"error":"CODE"}`, see [`ErrorCode`]); the connection stays open.
//! What a server checks before answering (does the room exist, may this
//! user enter it, has this connection joined it) is the server's business:
//! this crate only fixes the bytes.
//!
//! # Version 2
//!
//! [`v2`] holds the types of protocol v2: history, recovery after a
//! reconnect, acknowledged sends and typing notices, with replies that echo
//! a client's `id`. A socket speaks v2 only when the client offers the
//! WebSocket subprotocol `whisper.v2` (`Sec-WebSocket-Protocol: whisper.v2`)
//! and the server answers with it; any other socket speaks v1. Choosing the
//! version is the server's business; this crate gives both.
//!
//! # Stability
//!
//! v1 frames have exactly the fields above, nothing more, so clients of the
//! original see identical JSON. Anything richer goes into v2, negotiated by
//! the WebSocket subprotocol, never into v1. The serializing structs are
//! private; the public surface is functions from plain values to `String`,
//! so a serde upgrade never changes this API.

mod command;
pub mod encode;
mod error;
mod room;
mod room_id;
pub mod v2;

pub use command::{Command, decode_command};
pub use error::ErrorCode;
pub use room::Room;
pub use room_id::RoomId;

/// The `msg_type` of an event, as numbered by the original protocol.
///
/// Only [`MessageKind::Message`], [`MessageKind::Enter`] and
/// [`MessageKind::Leave`] are sent by Whisper today; the others are kept so
/// clients written against the original keep their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageKind {
    /// A chat message from a user.
    Message = 0,
    /// A warning shown to users.
    Warning = 1,
    /// An alert shown to users.
    Alert = 2,
    /// A notice that a user was muted.
    Muted = 3,
    /// A user entered the room.
    Enter = 4,
    /// A user left the room.
    Leave = 5,
    /// Server-internal information, such as the `room_users` reply (`type` 6).
    Internal = 6,
}

/// One user's presence in a room, as reported by the `room_users` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceEntry {
    /// The user's database id; the reply keys entries by it.
    pub user_id: i64,
    /// The user's login name.
    pub username: String,
    /// The user's display name (may be empty).
    pub name: String,
    /// Whether the user has left the room since their last join or send.
    pub left: bool,
    /// When the entry was last refreshed, in Unix seconds with a fraction.
    pub last_update: f64,
}
