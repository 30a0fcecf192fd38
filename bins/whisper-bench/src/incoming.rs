//! Reading server frames: only what the bench needs, as cheaply as possible.
//!
//! Nearly every frame a bench receives is a chat message,
//! `{"msg_type":0,"room":ID,"username":U,"message":M}` in v1, whose layout
//! the protocol crate fixes byte for byte. Those are read by slicing the raw
//! payload: no JSON parser, no UTF-8 pass, no allocation, and only the
//! stamp's leading digits of the text are looked at. Anything else falls
//! back to serde_json with borrowed fields. [`v2`] does the same for
//! protocol v2's frames.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use whisper_protocol::ErrorCode;
use whisper_protocol::v2::{Epoch, Seq};

use crate::stamp::Stamp;

pub mod v2;

/// What one text frame from the server was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A v1 chat message (`msg_type` 0) and its stamp, when a bench wrote it.
    Message(Option<Stamp>),
    /// A v2 `message` event: its room's seq, and its stamp when a bench
    /// wrote it.
    Numbered {
        /// The message's place in its room's log.
        seq: Seq,
        /// The stamp at the start of its text.
        stamp: Option<Stamp>,
    },
    /// The v2 result of a `send`: the message is stored as `seq`.
    Sent {
        /// The request's id (the bench gives every request one).
        id: Option<u64>,
        /// The stored message's seq.
        seq: Seq,
    },
    /// Another event: ENTER, LEAVE, typing, ...
    Event,
    /// The v1 reply to a join.
    Joined,
    /// The v2 result of a join (boxed: rare, and larger than the rest).
    JoinResult(Box<JoinResult>),
    /// The v2 result of a `history` request (boxed, like a join result).
    History(Box<HistoryPage>),
    /// An error reply; `None` for a code this bench does not know.
    Error(Option<ErrorCode>),
    /// Any other reply (`leave`, `room_users`), or a frame that is not JSON.
    Other,
}

/// What a bench needs of a v2 join result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// The request's id.
    pub id: Option<u64>,
    /// The room's epoch.
    pub epoch: Epoch,
    /// The latest seq when the result was taken: live events go on after it.
    pub seq: Seq,
    /// Whether `messages` are exactly those after the join's `since`.
    pub recovered: bool,
    /// The seqs of the messages the result carries, in the order given.
    pub messages: Vec<Seq>,
}

/// What a bench needs of a v2 `history` result to check the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The request's id.
    pub id: Option<u64>,
    /// The room's epoch.
    pub epoch: Epoch,
    /// The seqs of the page's messages, in the order given.
    pub messages: Vec<Seq>,
    /// Whether the room keeps messages older than the page.
    pub has_more: bool,
}

/// Classifies one text frame's payload.
pub fn classify(frame: &[u8]) -> Incoming {
    if let Some(message) = message_text(frame) {
        return Incoming::Message(Stamp::parse(message));
    }
    if let Some(code) = frame
        .strip_prefix(br#"{"error":""#)
        .and_then(|rest| rest.strip_suffix(br#""}"#))
    {
        return Incoming::Error(error_code(code));
    }
    if frame.starts_with(br#"{"join":"#) {
        return Incoming::Joined;
    }
    if frame.starts_with(br#"{"msg_type":"#) && !frame.starts_with(br#"{"msg_type":0,"#) {
        return Incoming::Event;
    }
    match std::str::from_utf8(frame) {
        Ok(text) => classify_slowly(text),
        Err(_) => Incoming::Other,
    }
}

/// The (still escaped) text of a chat message in the server's exact v1
/// layout, by slicing. Usernames cannot hold quotes or backslashes, so the
/// first quote after the username's opening one closes it.
fn message_text(frame: &[u8]) -> Option<&[u8]> {
    let rest = frame.strip_prefix(br#"{"msg_type":0,"room":"#)?;
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(br#","username":""#)?;
    let quote = rest.iter().position(|&byte| byte == b'"')?;
    rest[quote..]
        .strip_prefix(br#"","message":""#)?
        .strip_suffix(br#""}"#)
}

fn error_code(code: &[u8]) -> Option<ErrorCode> {
    ErrorCode::from_name(std::str::from_utf8(code).ok()?)
}

/// The fields a bench looks at, borrowed from the frame when unescaped.
#[derive(Deserialize)]
struct Loose<'a> {
    msg_type: Option<u8>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
    join: Option<IgnoredAny>,
}

/// The general case: any field order, any spacing.
fn classify_slowly(text: &str) -> Incoming {
    let Ok(frame) = serde_json::from_str::<Loose<'_>>(text) else {
        return Incoming::Other;
    };
    match frame {
        Loose {
            msg_type: Some(0),
            message,
            ..
        } => Incoming::Message(message.as_deref().map(str::as_bytes).and_then(Stamp::parse)),
        Loose {
            msg_type: Some(_), ..
        } => Incoming::Event,
        Loose {
            error: Some(code), ..
        } => Incoming::Error(error_code(code.as_bytes())),
        Loose { join: Some(_), .. } => Incoming::Joined,
        _ => Incoming::Other,
    }
}

#[cfg(test)]
mod tests {
    use whisper_protocol::{RoomId, encode};

    use super::*;

    #[test]
    fn server_messages_are_read_by_slicing() {
        let stamp = Stamp {
            sender: 3,
            seq: 9,
            sent_ns: 1234,
        };
        let frame = encode::message(RoomId(12), "bench-a1-0", &stamp.to_text(80));
        assert_eq!(message_text(frame.as_bytes()).map(<[u8]>::len), Some(80));
        assert_eq!(classify(frame.as_bytes()), Incoming::Message(Some(stamp)));
    }

    #[test]
    fn other_frames_are_told_apart() {
        let room = RoomId(2);
        assert_eq!(
            classify(encode::message(room, "ann", "hi \"there\"").as_bytes()),
            Incoming::Message(None)
        );
        assert_eq!(
            classify(encode::enter(room, "ann").as_bytes()),
            Incoming::Event
        );
        assert_eq!(
            classify(encode::leave(room, "ann").as_bytes()),
            Incoming::Event
        );
        assert_eq!(
            classify(encode::join_reply(room, "Lobby").as_bytes()),
            Incoming::Joined
        );
        assert_eq!(
            classify(encode::leave_reply(room).as_bytes()),
            Incoming::Other
        );
        assert_eq!(
            classify(encode::error(ErrorCode::RateLimited).as_bytes()),
            Incoming::Error(Some(ErrorCode::RateLimited))
        );
        assert_eq!(
            classify(br#"{"error":"SOMETHING_NEW"}"#),
            Incoming::Error(None)
        );
        assert_eq!(classify(b"not json"), Incoming::Other);
    }

    #[test]
    fn any_field_order_still_reads() {
        assert_eq!(
            classify(br#"{"message":"1 2 3 x","username":"u","room":1,"msg_type":0}"#),
            Incoming::Message(Some(Stamp {
                sender: 1,
                seq: 2,
                sent_ns: 3
            }))
        );
        assert_eq!(
            classify(br#"{ "error" : "ROOM_INVALID" }"#),
            Incoming::Error(Some(ErrorCode::RoomInvalid))
        );
        assert_eq!(classify(br#"{"title":"T","join":"4"}"#), Incoming::Joined);
    }
}
