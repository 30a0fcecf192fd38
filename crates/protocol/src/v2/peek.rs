//! Reading what a relay needs from an event frame's first bytes.
//!
//! A node relays every room event to its v2 sockets, and each socket must
//! drop the copies it already has (a message that arrived with the `join`
//! result, the sender's second copy) and its own typing notices. Parsing
//! every frame as JSON for that would cost more than writing it; the
//! encoders in [`super::encode`] put the fields that matter first, in a fixed
//! order, so the first few bytes are enough.

use super::Seq;
use crate::RoomId;

/// The head of an event frame, as far as a relay cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventHead {
    /// A `message` event: its room and seq.
    Message {
        /// The room.
        room: RoomId,
        /// The message's seq in that room.
        seq: Seq,
    },
    /// A `typing` event: its room and who is typing.
    Typing {
        /// The room.
        room: RoomId,
        /// The typing user's id.
        user_id: i64,
    },
    /// A `deleted` event: its room and the seq of the message deleted.
    Deleted {
        /// The room.
        room: RoomId,
        /// The deleted message's seq in that room.
        seq: Seq,
    },
    /// An `enter` or `leave` event: its room.
    Presence {
        /// The room.
        room: RoomId,
    },
    /// Any other frame: relayed as it is.
    Other,
}

/// Reads the head of a frame written by [`super::encode::message`],
/// [`super::encode::typing`], [`super::encode::enter`],
/// [`super::encode::leave`] or [`super::encode::deleted`]; anything else (or
/// a frame written by other means) is [`EventHead::Other`].
///
/// ```
/// use whisper_protocol::RoomId;
/// use whisper_protocol::v2::{EventHead, Seq, peek_event};
///
/// let frame = r#"{"event":"message","room":3,"seq":41,"ts":1,"user":{"id":1,"username":"a","name":""},"text":"hi"}"#;
/// assert_eq!(peek_event(frame), EventHead::Message { room: RoomId(3), seq: Seq(41) });
/// assert_eq!(peek_event(r#"{"event":"enter","room":3}"#), EventHead::Presence { room: RoomId(3) });
/// assert_eq!(peek_event(r#"{"id":1,"result":{"room":3}}"#), EventHead::Other);
/// ```
pub fn peek_event(frame: impl AsRef<[u8]>) -> EventHead {
    // Bytes, not `&str`: a relay holds the frame as bytes, and checking
    // that the whole frame is UTF-8 for every member would cost more than
    // this look at its head.
    let frame = frame.as_ref();
    if let Some(rest) = frame.strip_prefix(br#"{"event":"message","room":"#) {
        return room_and_seq(rest).map_or(EventHead::Other, |(room, seq)| EventHead::Message {
            room,
            seq,
        });
    }
    if let Some(rest) = frame.strip_prefix(br#"{"event":"deleted","room":"#) {
        return room_and_seq(rest).map_or(EventHead::Other, |(room, seq)| EventHead::Deleted {
            room,
            seq,
        });
    }
    if let Some(rest) = frame.strip_prefix(br#"{"event":"typing","room":"#) {
        let head = number(rest).and_then(|(room, rest)| {
            let rest = rest.strip_prefix(br#","user":{"id":"#)?;
            let (user_id, _) = number(rest)?;
            Some(EventHead::Typing {
                room: RoomId(room),
                user_id,
            })
        });
        return head.unwrap_or(EventHead::Other);
    }
    for prefix in [
        &br#"{"event":"enter","room":"#[..],
        br#"{"event":"leave","room":"#,
    ] {
        if let Some(rest) = frame.strip_prefix(prefix) {
            return number(rest).map_or(EventHead::Other, |(room, _)| EventHead::Presence {
                room: RoomId(room),
            });
        }
    }
    EventHead::Other
}

/// The room, then `,"seq":` and the seq, at the start of `text`, as
/// `message` and `deleted` events begin.
fn room_and_seq(text: &[u8]) -> Option<(RoomId, Seq)> {
    let (room, rest) = number(text)?;
    let rest = rest.strip_prefix(br#","seq":"#)?;
    let (seq, _) = number(rest)?;
    Some((RoomId(room), Seq(u64::try_from(seq).ok()?)))
}

/// A decimal integer at the start of `text`, and what follows it; `None`
/// when there are no digits or the value does not fit.
fn number(text: &[u8]) -> Option<(i64, &[u8])> {
    let (negative, text) = match text.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let digits = text
        .iter()
        .position(|byte| !byte.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return None;
    }
    let mut value: i64 = 0;
    for digit in &text[..digits] {
        let digit = i64::from(digit - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some((value, &text[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::{Message, UserRef, encode};

    fn ann() -> UserRef {
        UserRef {
            id: 42,
            username: "ann".into(),
            name: "Ann".into(),
        }
    }

    #[test]
    fn message_events_show_room_and_seq() {
        let message = Message {
            room: RoomId(7),
            seq: Seq(123_456_789_012),
            ts: 1_700_000_000_000,
            user: ann(),
            text: Some(r#"{"event":"typing","room":1}"#.into()),
        };
        let expected = EventHead::Message {
            room: RoomId(7),
            seq: Seq(123_456_789_012),
        };
        assert_eq!(peek_event(encode::message(&message, None)), expected);
        assert_eq!(peek_event(encode::message(&message, Some("n"))), expected);
    }

    #[test]
    fn typing_events_show_room_and_user() {
        assert_eq!(
            peek_event(encode::typing(RoomId(9), &ann())),
            EventHead::Typing {
                room: RoomId(9),
                user_id: 42
            }
        );
    }

    #[test]
    fn deleted_events_show_room_and_seq() {
        assert_eq!(
            peek_event(encode::deleted(RoomId(-5), Seq(123_456_789_012))),
            EventHead::Deleted {
                room: RoomId(-5),
                seq: Seq(123_456_789_012)
            }
        );
    }

    #[test]
    fn enter_and_leave_events_show_their_room() {
        for frame in [
            encode::enter(RoomId(4), &ann(), 5),
            encode::leave(RoomId(4), &ann(), 5),
        ] {
            assert_eq!(peek_event(&frame), EventHead::Presence { room: RoomId(4) });
        }
    }

    #[test]
    fn other_frames_are_relayed_as_they_are() {
        for frame in [
            r#"{"event":"enter","room":"1"}"#.into(),
            encode::leave_result(Some(1), RoomId(1)),
            r#"{"event":"message","room":x}"#.into(),
            r#"{"event":"message","room":1,"seq":-1}"#.into(),
            r#"{"event":"message","room":1}"#.into(),
            r#"{"event":"deleted","room":1}"#.into(),
            r#"{"event":"deleted","room":1,"seq":-2}"#.into(),
            r#"{"event":"message","room":-,"seq":1}"#.into(),
            r#"{"event":"message","room":99999999999999999999,"seq":1}"#.into(),
            r#"{"event":"typing","room":1,"user":{"id":}}"#.into(),
            String::new(),
        ] {
            assert_eq!(peek_event(&frame), EventHead::Other, "{frame}");
        }
    }
}
