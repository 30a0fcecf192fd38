use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use super::{DEFAULT_LIMIT, Epoch, MAX_LIMIT, MAX_MUTE_SECONDS, MAX_NONCE_BYTES, Seq};
use crate::command::{command_name, frame_object, frame_room};
use crate::{ErrorCode, RoomId};

/// A decoded client frame: the command and the `id` its reply must echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The client's tag for this command, echoed in the reply so replies to
    /// pipelined commands can be matched; `None` when the client sent none.
    pub id: Option<u64>,
    /// What the client asks for.
    pub command: Command,
}

/// A v2 command.
///
/// `limit`s are already resolved by the decoder (a missing one is
/// [`DEFAULT_LIMIT`], a larger one [`MAX_LIMIT`]), so a server never sees a
/// value it would have to clamp again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Join a room, recovering what was missed since `since` if possible,
    /// else getting the latest `limit` messages.
    Join {
        /// The room to join.
        room: RoomId,
        /// The last message the client has, when it rejoins after a
        /// reconnect.
        since: Option<Since>,
        /// How many of the latest messages to return when not recovering.
        limit: u32,
    },
    /// Leave a room.
    Leave {
        /// The room to leave.
        room: RoomId,
    },
    /// Send a message to a joined room.
    Send {
        /// The room to send to.
        room: RoomId,
        /// The message text, as typed.
        text: String,
        /// A client-chosen tag of at most [`MAX_NONCE_BYTES`] bytes: a retry
        /// with the same nonce gets the first send's result instead of a
        /// second message.
        nonce: Option<String>,
    },
    /// Page back through a room's stored messages.
    History {
        /// The room to read.
        room: RoomId,
        /// Only messages before this seq; `None` for the latest.
        before: Option<Seq>,
        /// At most this many messages.
        limit: u32,
    },
    /// Ask who is in a room.
    RoomUsers {
        /// The room to list.
        room: RoomId,
    },
    /// Tell the others in a joined room that this user is typing.
    Typing {
        /// The room the user types in.
        room: RoomId,
    },
    /// Erase a stored message's text: the author may delete their own
    /// messages, staff anyone's; the seq stays in the log.
    Delete {
        /// The joined room the message is in.
        room: RoomId,
        /// The message's seq in that room.
        seq: Seq,
    },
    /// Staff only: refuse a user's sends in a room for a while. Muting a
    /// user again replaces the end of the mute.
    Mute {
        /// The room the mute holds in.
        room: RoomId,
        /// The id of the user to mute.
        user: i64,
        /// How long the mute lasts, 1 to [`MAX_MUTE_SECONDS`].
        seconds: u32,
    },
    /// Staff only: end a user's mute in a room early.
    Unmute {
        /// The room the mute holds in.
        room: RoomId,
        /// The id of the muted user.
        user: i64,
    },
}

/// The last message a client holds in a room, sent with `join` so the server
/// can send exactly what came after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// The seq of the last message the client has.
    pub seq: Seq,
    /// The epoch that seq belongs to; recovery happens only in the same epoch.
    pub epoch: Epoch,
}

/// Why a frame could not be decoded, with what the error reply must carry.
///
/// The reply is `{"id":N,"error":{"code":CODE,"room":R}}` with the `id` and
/// the `room` whenever they could be parsed, so a client learns which of its
/// pipelined commands failed, and for which room; pass the fields to
/// [`super::encode::error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// [`ErrorCode::BadRequest`] or [`ErrorCode::UnknownCommand`].
    pub code: ErrorCode,
    /// The frame's `id`, if it was an unsigned integer.
    pub id: Option<u64>,
    /// The frame's `room`, if it was a number or a string of digits.
    pub room: Option<RoomId>,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.code.fmt(f)
    }
}

impl std::error::Error for DecodeError {}

#[derive(Deserialize)]
struct JoinArgs {
    room: RoomId,
    since: Option<SinceArgs>,
    limit: Option<u64>,
}

#[derive(Deserialize)]
struct SinceArgs {
    seq: u64,
    epoch: String,
}

#[derive(Deserialize)]
struct SendArgs {
    room: RoomId,
    text: String,
    nonce: Option<String>,
}

#[derive(Deserialize)]
struct HistoryArgs {
    room: RoomId,
    before: Option<u64>,
    limit: Option<u64>,
}

#[derive(Deserialize)]
struct DeleteArgs {
    room: RoomId,
    seq: u64,
}

#[derive(Deserialize)]
struct MuteArgs {
    room: RoomId,
    user: i64,
    seconds: u64,
}

#[derive(Deserialize)]
struct UnmuteArgs {
    room: RoomId,
    user: i64,
}

#[derive(Deserialize)]
struct IdArgs {
    id: Option<u64>,
}

fn limit(requested: Option<u64>) -> u32 {
    requested.map_or(DEFAULT_LIMIT, |n| {
        u32::try_from(n.min(u64::from(MAX_LIMIT))).unwrap_or(MAX_LIMIT)
    })
}

fn args<'a, T: Deserialize<'a>>(frame: &'a Value) -> Result<T, ErrorCode> {
    T::deserialize(frame).map_err(|_| ErrorCode::BadRequest)
}

/// Decodes one client frame of a v2 socket.
///
/// Not JSON, not an object, a `command` that is not a string, a missing or
/// ill-typed field, or a `nonce` longer than [`MAX_NONCE_BYTES`] is
/// [`ErrorCode::BadRequest`]; a `command` naming nothing known is
/// [`ErrorCode::UnknownCommand`]. An `id` that is not an unsigned integer is
/// [`ErrorCode::BadRequest`] with no id, whatever the rest says, since the
/// reply cannot echo it. Unknown extra fields are ignored, and an optional
/// field set to `null` counts as absent, a `mute` of `seconds` outside 1 to
/// [`MAX_MUTE_SECONDS`] is [`ErrorCode::BadRequest`], as for any JSON client library that
/// writes `null` for "none". `limit` defaults to [`DEFAULT_LIMIT`]; any
/// unsigned integer is accepted and one above [`MAX_LIMIT`] is taken as
/// [`MAX_LIMIT`], here, once, so no server clamps it again. `limit` 0 is
/// kept: a `join` with it learns the room's latest seq and epoch alone.
/// Never panics, whatever the input.
pub fn decode_command(text: &str) -> Result<Request, DecodeError> {
    let frame = frame_object(text)?;
    let room = frame_room(&frame).ok();
    let id = args::<IdArgs>(&frame)
        .map_err(|code| DecodeError {
            code,
            id: None,
            room,
        })?
        .id;
    let command = decode_fields(&frame).map_err(|code| DecodeError { code, id, room })?;
    Ok(Request { id, command })
}

fn decode_fields(frame: &Value) -> Result<Command, ErrorCode> {
    Ok(match command_name(frame)? {
        "join" => {
            let JoinArgs {
                room,
                since,
                limit: n,
            } = args(frame)?;
            Command::Join {
                room,
                since: since.map(|since| Since {
                    seq: Seq(since.seq),
                    epoch: Epoch(since.epoch),
                }),
                limit: limit(n),
            }
        }
        "leave" => Command::Leave {
            room: frame_room(frame)?,
        },
        "send" => {
            let SendArgs { room, text, nonce } = args(frame)?;
            if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE_BYTES) {
                return Err(ErrorCode::BadRequest);
            }
            Command::Send { room, text, nonce }
        }
        "history" => {
            let HistoryArgs {
                room,
                before,
                limit: n,
            } = args(frame)?;
            Command::History {
                room,
                before: before.map(Seq),
                limit: limit(n),
            }
        }
        "room_users" => Command::RoomUsers {
            room: frame_room(frame)?,
        },
        "typing" => Command::Typing {
            room: frame_room(frame)?,
        },
        "delete" => {
            let DeleteArgs { room, seq } = args(frame)?;
            Command::Delete {
                room,
                seq: Seq(seq),
            }
        }
        "mute" => {
            let MuteArgs {
                room,
                user,
                seconds,
            } = args(frame)?;
            let seconds = u32::try_from(seconds)
                .ok()
                .filter(|seconds| (1..=MAX_MUTE_SECONDS).contains(seconds))
                .ok_or(ErrorCode::BadRequest)?;
            Command::Mute {
                room,
                user,
                seconds,
            }
        }
        "unmute" => {
            let UnmuteArgs { room, user } = args(frame)?;
            Command::Unmute { room, user }
        }
        _ => return Err(ErrorCode::UnknownCommand),
    })
}

impl From<ErrorCode> for DecodeError {
    fn from(code: ErrorCode) -> Self {
        DecodeError {
            code,
            id: None,
            room: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: Option<u64>, command: Command) -> Result<Request, DecodeError> {
        Ok(Request { id, command })
    }

    fn err(code: ErrorCode, id: Option<u64>, room: Option<i64>) -> Result<Request, DecodeError> {
        Err(DecodeError {
            code,
            id,
            room: room.map(RoomId),
        })
    }

    #[test]
    fn decodes_every_command() {
        assert_eq!(
            decode_command(
                r#"{"command":"join","id":1,"room":"2","since":{"seq":40,"epoch":"xq"},"limit":10}"#
            ),
            ok(
                Some(1),
                Command::Join {
                    room: RoomId(2),
                    since: Some(Since {
                        seq: Seq(40),
                        epoch: Epoch("xq".into())
                    }),
                    limit: 10
                }
            )
        );
        assert_eq!(
            decode_command(r#"{"command":"join","room":2}"#),
            ok(
                None,
                Command::Join {
                    room: RoomId(2),
                    since: None,
                    limit: DEFAULT_LIMIT
                }
            )
        );
        assert_eq!(
            decode_command(r#"{"command":"leave","room":3,"id":null}"#),
            ok(None, Command::Leave { room: RoomId(3) })
        );
        assert_eq!(
            decode_command(r#"{"command":"send","room":4,"text":"hé \"x\"","nonce":"n-1"}"#),
            ok(
                None,
                Command::Send {
                    room: RoomId(4),
                    text: "hé \"x\"".into(),
                    nonce: Some("n-1".into())
                }
            )
        );
        assert_eq!(
            decode_command(r#"{"command":"history","room":5,"before":9,"limit":0}"#),
            ok(
                None,
                Command::History {
                    room: RoomId(5),
                    before: Some(Seq(9)),
                    limit: 0
                }
            )
        );
        assert_eq!(
            decode_command(r#"{"command":"room_users","room":6,"id":18446744073709551615}"#),
            ok(Some(u64::MAX), Command::RoomUsers { room: RoomId(6) })
        );
        assert_eq!(
            decode_command(r#"{"command":"typing","room":7,"extra":[1]}"#),
            ok(None, Command::Typing { room: RoomId(7) })
        );
        assert_eq!(
            decode_command(r#"{"command":"delete","id":9,"room":"8","seq":12}"#),
            ok(
                Some(9),
                Command::Delete {
                    room: RoomId(8),
                    seq: Seq(12)
                }
            )
        );
    }

    #[test]
    fn limits_above_the_maximum_are_taken_as_the_maximum() {
        for (given, taken) in [("100", 100), ("101", 100), ("18446744073709551615", 100)] {
            let frame = format!(r#"{{"command":"history","room":1,"limit":{given}}}"#);
            assert_eq!(
                decode_command(&frame),
                ok(
                    None,
                    Command::History {
                        room: RoomId(1),
                        before: None,
                        limit: taken
                    }
                ),
                "{frame}"
            );
        }
    }

    #[test]
    fn nonces_are_limited_in_bytes_not_characters() {
        let frame =
            |nonce: &str| format!(r#"{{"command":"send","room":1,"text":"","nonce":"{nonce}"}}"#);
        assert!(decode_command(&frame(&"a".repeat(MAX_NONCE_BYTES))).is_ok());
        assert_eq!(
            decode_command(&frame(&"a".repeat(MAX_NONCE_BYTES + 1))),
            err(ErrorCode::BadRequest, None, Some(1))
        );
        // 22 characters, 66 bytes.
        assert_eq!(
            decode_command(&frame(&"漢".repeat(22))),
            err(ErrorCode::BadRequest, None, Some(1))
        );
    }

    #[test]
    fn errors_carry_the_id_and_room_that_could_be_parsed() {
        for (frame, expected) in [
            ("not json", err(ErrorCode::BadRequest, None, None)),
            ("[1]", err(ErrorCode::BadRequest, None, None)),
            (
                r#"{"id":1,"room":2}"#,
                err(ErrorCode::BadRequest, Some(1), Some(2)),
            ),
            (
                r#"{"command":"shout","id":1,"room":"2"}"#,
                err(ErrorCode::UnknownCommand, Some(1), Some(2)),
            ),
            (
                r#"{"command":"join","id":1,"room":"x"}"#,
                err(ErrorCode::BadRequest, Some(1), None),
            ),
            (
                r#"{"command":"join","id":-1,"room":2}"#,
                err(ErrorCode::BadRequest, None, Some(2)),
            ),
            (
                r#"{"command":"shout","id":"1","room":2}"#,
                err(ErrorCode::BadRequest, None, Some(2)),
            ),
            (
                r#"{"command":"join","id":1.5,"room":2}"#,
                err(ErrorCode::BadRequest, None, Some(2)),
            ),
            (
                r#"{"command":"send","id":3,"room":2}"#,
                err(ErrorCode::BadRequest, Some(3), Some(2)),
            ),
            (
                r#"{"command":"join","room":2,"since":{"seq":1}}"#,
                err(ErrorCode::BadRequest, None, Some(2)),
            ),
            (
                r#"{"command":"join","room":2,"limit":-1}"#,
                err(ErrorCode::BadRequest, None, Some(2)),
            ),
            (
                r#"{"command":"history","room":2,"before":"9"}"#,
                err(ErrorCode::BadRequest, None, Some(2)),
            ),
            (
                r#"{"command":"delete","id":4,"room":2,"seq":"9"}"#,
                err(ErrorCode::BadRequest, Some(4), Some(2)),
            ),
            (
                r#"{"command":"delete","id":4,"room":2,"seq":-1}"#,
                err(ErrorCode::BadRequest, Some(4), Some(2)),
            ),
            (
                r#"{"command":"delete","id":4,"room":2,"seq":1.5}"#,
                err(ErrorCode::BadRequest, Some(4), Some(2)),
            ),
            (
                r#"{"command":"delete","id":4,"room":2}"#,
                err(ErrorCode::BadRequest, Some(4), Some(2)),
            ),
            (
                r#"{"command":"delete","id":4,"seq":9}"#,
                err(ErrorCode::BadRequest, Some(4), None),
            ),
        ] {
            assert_eq!(decode_command(frame), expected, "{frame}");
        }
    }

    #[test]
    fn mutes_decode_with_seconds_in_range_only() {
        assert_eq!(
            decode_command(r#"{"command":"mute","id":4,"room":"2","user":7,"seconds":600}"#),
            ok(
                Some(4),
                Command::Mute {
                    room: RoomId(2),
                    user: 7,
                    seconds: 600
                }
            )
        );
        assert_eq!(
            decode_command(r#"{"command":"mute","room":2,"user":7,"seconds":31536000}"#),
            ok(
                None,
                Command::Mute {
                    room: RoomId(2),
                    user: 7,
                    seconds: MAX_MUTE_SECONDS
                }
            )
        );
        assert_eq!(
            decode_command(r#"{"command":"unmute","id":5,"room":2,"user":7}"#),
            ok(
                Some(5),
                Command::Unmute {
                    room: RoomId(2),
                    user: 7
                }
            )
        );
        for frame in [
            r#"{"command":"mute","id":1,"room":2,"user":7,"seconds":0}"#,
            r#"{"command":"mute","id":1,"room":2,"user":7,"seconds":31536001}"#,
            r#"{"command":"mute","id":1,"room":2,"user":7,"seconds":-1}"#,
            r#"{"command":"mute","id":1,"room":2,"user":7,"seconds":1.5}"#,
            r#"{"command":"mute","id":1,"room":2,"user":7,"seconds":"60"}"#,
            r#"{"command":"mute","id":1,"room":2,"user":7,"seconds":18446744073709551616}"#,
            r#"{"command":"mute","id":1,"room":2,"user":7}"#,
            r#"{"command":"mute","id":1,"room":2,"seconds":60}"#,
            r#"{"command":"mute","id":1,"room":2,"user":"7","seconds":60}"#,
            r#"{"command":"unmute","id":1,"room":2}"#,
            r#"{"command":"unmute","id":1,"room":2,"user":null}"#,
        ] {
            assert_eq!(
                decode_command(frame),
                err(ErrorCode::BadRequest, Some(1), Some(2)),
                "{frame}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = "[".repeat(100_000);
        assert_eq!(
            decode_command(&deep),
            err(ErrorCode::BadRequest, None, None)
        );
    }
}
