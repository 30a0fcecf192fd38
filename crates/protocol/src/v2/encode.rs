//! Encoding of v2 frames: replies, errors, events, and commands for Rust
//! clients.
//!
//! Compact JSON with a fixed field order, like v1's [`crate::encode`], so a
//! test (or a client) can compare whole strings and a broadcast is encoded
//! once for every receiver. A reply leaves `id` out when its command had
//! none; an event never has one.

use serde::Serialize;

use super::{Command, Epoch, Message, Request, RoomUser, Seq, UserRef};
use crate::encode::to_json;
use crate::{ErrorCode, RoomId};

#[derive(Serialize)]
struct Reply<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    result: T,
}

fn reply<T: Serialize>(id: Option<u64>, result: T) -> String {
    to_json(&Reply { id, result })
}

#[derive(Serialize)]
struct UserFrame<'a> {
    id: i64,
    username: &'a str,
    name: &'a str,
}

impl<'a> From<&'a UserRef> for UserFrame<'a> {
    fn from(user: &'a UserRef) -> Self {
        UserFrame {
            id: user.id,
            username: &user.username,
            name: &user.name,
        }
    }
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A message as every frame writes it; `event` and `nonce` only in a
/// `message` event, `deleted` only when there is no text.
#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
    room: RoomId,
    seq: u64,
    ts: i64,
    user: UserFrame<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "is_false")]
    deleted: bool,
}

impl<'a> MessageFrame<'a> {
    fn new(message: &'a Message, event: Option<&'static str>, nonce: Option<&'a str>) -> Self {
        MessageFrame {
            event,
            room: message.room,
            seq: message.seq.0,
            ts: message.ts,
            user: (&message.user).into(),
            text: message.text.as_deref(),
            nonce,
            deleted: message.text.is_none(),
        }
    }
}

fn message_frames(messages: &[Message]) -> Vec<MessageFrame<'_>> {
    messages
        .iter()
        .map(|message| MessageFrame::new(message, None, None))
        .collect()
}

#[derive(Serialize)]
struct JoinResult<'a> {
    room: RoomId,
    title: &'a str,
    epoch: &'a str,
    seq: u64,
    recovered: bool,
    messages: Vec<MessageFrame<'a>>,
}

/// The reply to `join`:
/// `{"id":N,"result":{"room":R,"title":T,"epoch":E,"seq":S,"recovered":B,"messages":[..]}}`.
///
/// `latest` is the room's latest seq when the result was taken, so the client
/// knows where live `message` events pick up; `recovered` says whether
/// `messages` are exactly those after the client's `since`, or the latest
/// page with a possible gap before it.
pub fn join_result(
    id: Option<u64>,
    room: RoomId,
    title: &str,
    epoch: &Epoch,
    latest: Seq,
    recovered: bool,
    messages: &[Message],
) -> String {
    reply(
        id,
        JoinResult {
            room,
            title,
            epoch: &epoch.0,
            seq: latest.0,
            recovered,
            messages: message_frames(messages),
        },
    )
}

#[derive(Serialize)]
struct RoomResult {
    room: RoomId,
}

/// The reply to `leave`: `{"id":N,"result":{"room":R}}`.
pub fn leave_result(id: Option<u64>, room: RoomId) -> String {
    reply(id, RoomResult { room })
}

/// The reply to `typing`: `{"id":N,"result":{"room":R}}`, sent whether or not
/// the notice was passed on (the server drops repeats within 2 s), so a
/// client needs no timer of its own.
pub fn typing_result(id: Option<u64>, room: RoomId) -> String {
    reply(id, RoomResult { room })
}

#[derive(Serialize)]
struct SendResult {
    room: RoomId,
    seq: u64,
    ts: i64,
}

/// The reply to `send`, once the message is stored:
/// `{"id":N,"result":{"room":R,"seq":S,"ts":T}}`.
///
/// `ts` is the stored time in Unix milliseconds, so the sender can show the
/// server's time for its own message without waiting for the event.
pub fn send_result(id: Option<u64>, room: RoomId, seq: Seq, ts: i64) -> String {
    reply(
        id,
        SendResult {
            room,
            seq: seq.0,
            ts,
        },
    )
}

#[derive(Serialize)]
struct DeleteResult {
    room: RoomId,
    seq: u64,
}

/// The reply to `delete`, once the erasure is stored:
/// `{"id":N,"result":{"room":R,"seq":S}}`. Sent again for a message already
/// deleted, so a client retrying after a lost reply is answered the same.
pub fn delete_result(id: Option<u64>, room: RoomId, seq: Seq) -> String {
    reply(id, DeleteResult { room, seq: seq.0 })
}

#[derive(Serialize)]
struct HistoryResult<'a> {
    room: RoomId,
    epoch: &'a str,
    messages: Vec<MessageFrame<'a>>,
    has_more: bool,
}

/// The reply to `history`:
/// `{"id":N,"result":{"room":R,"epoch":E,"messages":[..],"has_more":B}}`.
///
/// `messages` must be in ascending seq; `has_more` tells the client whether
/// paging further back (with `before` = the first seq) can return anything.
pub fn history_result(
    id: Option<u64>,
    room: RoomId,
    epoch: &Epoch,
    messages: &[Message],
    has_more: bool,
) -> String {
    reply(
        id,
        HistoryResult {
            room,
            epoch: &epoch.0,
            messages: message_frames(messages),
            has_more,
        },
    )
}

#[derive(Serialize)]
struct RoomUsersResult<'a> {
    room: RoomId,
    users: Vec<RoomUserFrame<'a>>,
}

#[derive(Serialize)]
struct RoomUserFrame<'a> {
    id: i64,
    username: &'a str,
    name: &'a str,
    online: bool,
    last_seen: i64,
}

/// The reply to `room_users`:
/// `{"id":N,"result":{"room":R,"users":[{"id","username","name","online","last_seen"}]}}`.
///
/// Users are written in the order given, so the server decides how a list
/// is sorted.
pub fn room_users_result(id: Option<u64>, room: RoomId, users: &[RoomUser]) -> String {
    let users = users
        .iter()
        .map(|entry| RoomUserFrame {
            id: entry.user.id,
            username: &entry.user.username,
            name: &entry.user.name,
            online: entry.online,
            last_seen: entry.last_seen,
        })
        .collect();
    reply(id, RoomUsersResult { room, users })
}

#[derive(Serialize)]
struct ErrorReply {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    error: ErrorBody,
}

#[derive(Serialize)]
struct ErrorBody {
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<RoomId>,
    /// Only in `MUTED`: when the mute ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
}

/// An error reply: `{"id":N,"error":{"code":CODE,"room":R}}`, with `id` and
/// `room` left out when unknown.
///
/// For a frame that did not decode, pass the fields of its
/// [`super::DecodeError`]; the connection stays open either way.
pub fn error(id: Option<u64>, code: ErrorCode, room: Option<RoomId>) -> String {
    to_json(&ErrorReply {
        id,
        error: ErrorBody {
            code: code.as_str(),
            room,
            until: None,
        },
    })
}

/// The refusal of a muted user's `send` or `typing`:
/// `{"id":N,"error":{"code":"MUTED","room":R,"until":T}}`, `until` in Unix
/// milliseconds, so the client can say how long the mute lasts.
pub fn muted_error(id: Option<u64>, room: RoomId, until: i64) -> String {
    to_json(&ErrorReply {
        id,
        error: ErrorBody {
            code: ErrorCode::Muted.as_str(),
            room: Some(room),
            until: Some(until),
        },
    })
}

#[derive(Serialize)]
struct MuteResult {
    room: RoomId,
    user: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
}

/// The reply to `mute`: `{"id":N,"result":{"room":R,"user":U,"until":T}}`,
/// `until` in Unix milliseconds as the server computed it, so staff see the
/// end the server holds.
pub fn mute_result(id: Option<u64>, room: RoomId, user: i64, until: i64) -> String {
    reply(
        id,
        MuteResult {
            room,
            user,
            until: Some(until),
        },
    )
}

/// The reply to `unmute`: `{"id":N,"result":{"room":R,"user":U}}`, whether
/// or not the user was muted (the outcome is the same: not muted).
pub fn unmute_result(id: Option<u64>, room: RoomId, user: i64) -> String {
    reply(
        id,
        MuteResult {
            room,
            user,
            until: None,
        },
    )
}

#[derive(Serialize)]
struct MuteEvent {
    event: &'static str,
    room: RoomId,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
}

/// Told to a muted user's own sockets in the room:
/// `{"event":"muted","room":R,"until":T}`, so its client can say so before
/// the user tries to send. Never stored, never seen by the others.
pub fn muted(room: RoomId, until: i64) -> String {
    to_json(&MuteEvent {
        event: "muted",
        room,
        until: Some(until),
    })
}

/// Told to a user's own sockets in the room when its mute ends early:
/// `{"event":"unmuted","room":R}`.
pub fn unmuted(room: RoomId) -> String {
    to_json(&MuteEvent {
        event: "unmuted",
        room,
        until: None,
    })
}

/// A message pushed to a room's v2 members:
/// `{"event":"message","room":R,"seq":S,"ts":T,"user":{..},"text":X}`.
///
/// `nonce` is the sender's, given only for the copy that goes to the sending
/// socket (`,"nonce":N` after the text), so the sender matches the event to
/// its pending send whichever of the two arrives first.
pub fn message(message: &Message, nonce: Option<&str>) -> String {
    to_json(&MessageFrame::new(message, Some("message"), nonce))
}

#[derive(Serialize)]
struct PresenceEvent<'a> {
    event: &'static str,
    room: RoomId,
    user: UserFrame<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<i64>,
}

fn presence(event: &'static str, room: RoomId, user: &UserRef, ts: Option<i64>) -> String {
    to_json(&PresenceEvent {
        event,
        room,
        user: user.into(),
        ts,
    })
}

/// A user entered a room: `{"event":"enter","room":R,"user":{..},"ts":T}`,
/// `ts` in Unix milliseconds.
pub fn enter(room: RoomId, user: &UserRef, ts: i64) -> String {
    presence("enter", room, user, Some(ts))
}

/// A user left a room: `{"event":"leave","room":R,"user":{..},"ts":T}`,
/// `ts` in Unix milliseconds.
pub fn leave(room: RoomId, user: &UserRef, ts: i64) -> String {
    presence("leave", room, user, Some(ts))
}

/// A user is typing: `{"event":"typing","room":R,"user":{..}}`. No time: the
/// notice is never stored and stale as soon as it arrives late.
pub fn typing(room: RoomId, user: &UserRef) -> String {
    presence("typing", room, user, None)
}

#[derive(Serialize)]
struct DeletedEvent {
    event: &'static str,
    room: RoomId,
    seq: u64,
}

/// A message was deleted: `{"event":"deleted","room":R,"seq":S}`. Members
/// show it as deleted, without its text, as history now does.
pub fn deleted(room: RoomId, seq: Seq) -> String {
    to_json(&DeletedEvent {
        event: "deleted",
        room,
        seq: seq.0,
    })
}

#[derive(Serialize)]
struct CommandFrame<'a> {
    command: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    room: RoomId,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<SinceFrame<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<u32>,
}

#[derive(Serialize)]
struct SinceFrame<'a> {
    seq: u64,
    epoch: &'a str,
}

/// A client command as a client sends it:
/// `{"command":"send","id":1,"room":3,"text":"hi","nonce":"n1"}`.
///
/// For clients written in Rust (load generators, bots, tests); the server
/// only decodes commands. [`super::decode_command`] reads back exactly what
/// this writes. `limit` is always written, so the frame does not depend on
/// the server's default.
pub fn command(request: &Request) -> String {
    let frame = |command, room| CommandFrame {
        command,
        id: request.id,
        room,
        since: None,
        before: None,
        limit: None,
        text: None,
        nonce: None,
        seq: None,
        user: None,
        seconds: None,
    };
    to_json(&match &request.command {
        Command::Join { room, since, limit } => CommandFrame {
            since: since.as_ref().map(|since| SinceFrame {
                seq: since.seq.0,
                epoch: &since.epoch.0,
            }),
            limit: Some(*limit),
            ..frame("join", *room)
        },
        Command::Leave { room } => frame("leave", *room),
        Command::Send { room, text, nonce } => CommandFrame {
            text: Some(text),
            nonce: nonce.as_deref(),
            ..frame("send", *room)
        },
        Command::History {
            room,
            before,
            limit,
        } => CommandFrame {
            before: before.map(|seq| seq.0),
            limit: Some(*limit),
            ..frame("history", *room)
        },
        Command::RoomUsers { room } => frame("room_users", *room),
        Command::Typing { room } => frame("typing", *room),
        Command::Delete { room, seq } => CommandFrame {
            seq: Some(seq.0),
            ..frame("delete", *room)
        },
        Command::Mute {
            room,
            user,
            seconds,
        } => CommandFrame {
            user: Some(*user),
            seconds: Some(*seconds),
            ..frame("mute", *room)
        },
        Command::Unmute { room, user } => CommandFrame {
            user: Some(*user),
            ..frame("unmute", *room)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::{Since, decode_command};

    fn ann() -> UserRef {
        UserRef {
            id: 7,
            username: "ann".into(),
            name: "Ann \"A\"".into(),
        }
    }

    const ANN: &str = r#"{"id":7,"username":"ann","name":"Ann \"A\""}"#;

    fn message_at(seq: u64, text: Option<&str>) -> Message {
        Message {
            room: RoomId(3),
            seq: Seq(seq),
            ts: 1_700_000_000_123,
            user: ann(),
            text: text.map(String::from),
        }
    }

    #[test]
    fn join_result_is_byte_exact() {
        let epoch = Epoch("k3x9".into());
        assert_eq!(
            join_result(
                Some(1),
                RoomId(3),
                "Lobby",
                &epoch,
                Seq(42),
                true,
                &[message_at(41, Some("hi")), message_at(42, None)]
            ),
            format!(
                concat!(
                    r#"{{"id":1,"result":{{"room":3,"title":"Lobby","epoch":"k3x9","seq":42,"#,
                    r#""recovered":true,"messages":["#,
                    r#"{{"room":3,"seq":41,"ts":1700000000123,"user":{ann},"text":"hi"}},"#,
                    r#"{{"room":3,"seq":42,"ts":1700000000123,"user":{ann},"deleted":true}}]}}}}"#
                ),
                ann = ANN
            )
        );
        assert_eq!(
            join_result(None, RoomId(3), "", &epoch, Seq(0), false, &[]),
            r#"{"result":{"room":3,"title":"","epoch":"k3x9","seq":0,"recovered":false,"messages":[]}}"#
        );
    }

    #[test]
    fn room_only_results_are_byte_exact() {
        assert_eq!(
            leave_result(Some(2), RoomId(3)),
            r#"{"id":2,"result":{"room":3}}"#
        );
        assert_eq!(leave_result(None, RoomId(3)), r#"{"result":{"room":3}}"#);
        assert_eq!(
            typing_result(Some(u64::MAX), RoomId(-1)),
            r#"{"id":18446744073709551615,"result":{"room":-1}}"#
        );
    }

    #[test]
    fn send_result_is_byte_exact() {
        assert_eq!(
            send_result(Some(4), RoomId(3), Seq(43), 1_700_000_000_456),
            r#"{"id":4,"result":{"room":3,"seq":43,"ts":1700000000456}}"#
        );
    }

    #[test]
    fn delete_result_and_event_are_byte_exact() {
        assert_eq!(
            delete_result(Some(6), RoomId(3), Seq(43)),
            r#"{"id":6,"result":{"room":3,"seq":43}}"#
        );
        assert_eq!(
            delete_result(None, RoomId(-2), Seq(u64::MAX)),
            r#"{"result":{"room":-2,"seq":18446744073709551615}}"#
        );
        assert_eq!(
            deleted(RoomId(3), Seq(43)),
            r#"{"event":"deleted","room":3,"seq":43}"#
        );
    }

    #[test]
    fn history_result_is_byte_exact() {
        assert_eq!(
            history_result(
                Some(5),
                RoomId(3),
                &Epoch("k3x9".into()),
                &[message_at(1, Some("first"))],
                false
            ),
            format!(
                concat!(
                    r#"{{"id":5,"result":{{"room":3,"epoch":"k3x9","messages":["#,
                    r#"{{"room":3,"seq":1,"ts":1700000000123,"user":{ann},"text":"first"}}],"#,
                    r#""has_more":false}}}}"#
                ),
                ann = ANN
            )
        );
    }

    #[test]
    fn room_users_result_is_byte_exact() {
        let users = [
            RoomUser {
                user: ann(),
                online: true,
                last_seen: 1_700_000_000_000,
            },
            RoomUser {
                user: UserRef {
                    id: 2,
                    username: "bob".into(),
                    name: String::new(),
                },
                online: false,
                last_seen: 0,
            },
        ];
        assert_eq!(
            room_users_result(Some(6), RoomId(3), &users),
            concat!(
                r#"{"id":6,"result":{"room":3,"users":["#,
                r#"{"id":7,"username":"ann","name":"Ann \"A\"","online":true,"last_seen":1700000000000},"#,
                r#"{"id":2,"username":"bob","name":"","online":false,"last_seen":0}]}}"#
            )
        );
    }

    #[test]
    fn errors_are_byte_exact_with_id_and_room_only_when_known() {
        assert_eq!(
            error(Some(8), ErrorCode::RoomAccessDenied, Some(RoomId(3))),
            r#"{"id":8,"error":{"code":"ROOM_ACCESS_DENIED","room":3}}"#
        );
        assert_eq!(
            error(None, ErrorCode::BadRequest, None),
            r#"{"error":{"code":"BAD_REQUEST"}}"#
        );
        assert_eq!(
            error(Some(8), ErrorCode::UnknownCommand, None),
            r#"{"id":8,"error":{"code":"UNKNOWN_COMMAND"}}"#
        );
        assert_eq!(
            error(None, ErrorCode::RateLimited, Some(RoomId(3))),
            r#"{"error":{"code":"RATE_LIMITED","room":3}}"#
        );
    }

    #[test]
    fn mutes_are_byte_exact() {
        assert_eq!(
            muted_error(Some(8), RoomId(3), 1_700_000_000_000),
            r#"{"id":8,"error":{"code":"MUTED","room":3,"until":1700000000000}}"#
        );
        assert_eq!(
            muted_error(None, RoomId(3), 1),
            r#"{"error":{"code":"MUTED","room":3,"until":1}}"#
        );
        assert_eq!(
            mute_result(Some(2), RoomId(3), 7, 1_700_000_000_000),
            r#"{"id":2,"result":{"room":3,"user":7,"until":1700000000000}}"#
        );
        assert_eq!(
            unmute_result(None, RoomId(3), 7),
            r#"{"result":{"room":3,"user":7}}"#
        );
        assert_eq!(
            muted(RoomId(3), 1_700_000_000_000),
            r#"{"event":"muted","room":3,"until":1700000000000}"#
        );
        assert_eq!(unmuted(RoomId(3)), r#"{"event":"unmuted","room":3}"#);
    }

    #[test]
    fn message_events_are_byte_exact() {
        assert_eq!(
            message(&message_at(9, Some("hé <b>")), None),
            format!(
                r#"{{"event":"message","room":3,"seq":9,"ts":1700000000123,"user":{ANN},"text":"hé <b>"}}"#
            )
        );
        assert_eq!(
            message(&message_at(9, Some("hi")), Some("n-1")),
            format!(
                r#"{{"event":"message","room":3,"seq":9,"ts":1700000000123,"user":{ANN},"text":"hi","nonce":"n-1"}}"#
            )
        );
    }

    #[test]
    fn presence_events_are_byte_exact() {
        assert_eq!(
            enter(RoomId(3), &ann(), 1_700_000_000_001),
            format!(r#"{{"event":"enter","room":3,"user":{ANN},"ts":1700000000001}}"#)
        );
        assert_eq!(
            leave(RoomId(3), &ann(), 1_700_000_000_002),
            format!(r#"{{"event":"leave","room":3,"user":{ANN},"ts":1700000000002}}"#)
        );
        assert_eq!(
            typing(RoomId(3), &ann()),
            format!(r#"{{"event":"typing","room":3,"user":{ANN}}}"#)
        );
    }

    #[test]
    fn commands_encode_as_clients_send_them() {
        let cases = [
            (
                Request {
                    id: Some(1),
                    command: Command::Join {
                        room: RoomId(3),
                        since: Some(Since {
                            seq: Seq(40),
                            epoch: Epoch("k3x9".into()),
                        }),
                        limit: 50,
                    },
                },
                r#"{"command":"join","id":1,"room":3,"since":{"seq":40,"epoch":"k3x9"},"limit":50}"#,
            ),
            (
                Request {
                    id: None,
                    command: Command::Send {
                        room: RoomId(3),
                        text: "hi".into(),
                        nonce: Some("n-1".into()),
                    },
                },
                r#"{"command":"send","room":3,"text":"hi","nonce":"n-1"}"#,
            ),
            (
                Request {
                    id: Some(2),
                    command: Command::History {
                        room: RoomId(3),
                        before: Some(Seq(9)),
                        limit: 100,
                    },
                },
                r#"{"command":"history","id":2,"room":3,"before":9,"limit":100}"#,
            ),
            (
                Request {
                    id: None,
                    command: Command::Typing { room: RoomId(3) },
                },
                r#"{"command":"typing","room":3}"#,
            ),
            (
                Request {
                    id: Some(5),
                    command: Command::Delete {
                        room: RoomId(3),
                        seq: Seq(41),
                    },
                },
                r#"{"command":"delete","id":5,"room":3,"seq":41}"#,
            ),
            (
                Request {
                    id: Some(4),
                    command: Command::Mute {
                        room: RoomId(3),
                        user: 7,
                        seconds: 600,
                    },
                },
                r#"{"command":"mute","id":4,"room":3,"user":7,"seconds":600}"#,
            ),
            (
                Request {
                    id: None,
                    command: Command::Unmute {
                        room: RoomId(3),
                        user: 7,
                    },
                },
                r#"{"command":"unmute","room":3,"user":7}"#,
            ),
        ];
        for (request, text) in cases {
            assert_eq!(command(&request), text);
            assert_eq!(decode_command(text), Ok(request));
        }
    }
}
