//! Encoding of everything the server sends, byte-identical to the original.
//!
//! Field order and spelling are part of the protocol: v1 clients and the
//! original's tests compare whole strings. Each function returns the finished
//! frame text, so a broadcast can be encoded once and shared by every
//! receiver.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Command, ErrorCode, MessageKind, PresenceEntry, RoomId};

#[derive(Serialize)]
struct Event<'a> {
    msg_type: u8,
    room: RoomId,
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

fn event(kind: MessageKind, room: RoomId, username: &str, message: Option<&str>) -> String {
    to_json(&Event {
        msg_type: kind as u8,
        room,
        username,
        message,
    })
}

/// Shared with [`crate::v2`]'s encoders, which write the same kind of plain
/// structs.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing plain structs of strings, integers, floats and booleans
    // into memory cannot fail; a non-finite float is written as `null`.
    serde_json::to_string(value).unwrap_or_default()
}

/// A chat message event: `{"msg_type":0,"room":ID,"username":U,"message":M}`.
pub fn message(room: RoomId, username: &str, message: &str) -> String {
    event(MessageKind::Message, room, username, Some(message))
}

/// A user entered a room: `{"msg_type":4,"room":ID,"username":U}`.
pub fn enter(room: RoomId, username: &str) -> String {
    event(MessageKind::Enter, room, username, None)
}

/// A user left a room: `{"msg_type":5,"room":ID,"username":U}`.
pub fn leave(room: RoomId, username: &str) -> String {
    event(MessageKind::Leave, room, username, None)
}

#[derive(Serialize)]
struct JoinReply<'a> {
    join: String,
    title: &'a str,
}

/// The reply to a successful join: `{"join":"ID","title":T}` (the id as a string).
pub fn join_reply(room: RoomId, title: &str) -> String {
    to_json(&JoinReply {
        join: room.to_string(),
        title,
    })
}

#[derive(Serialize)]
struct LeaveReply {
    leave: String,
}

/// The reply to a successful leave: `{"leave":"ID"}`.
pub fn leave_reply(room: RoomId) -> String {
    to_json(&LeaveReply {
        leave: room.to_string(),
    })
}

#[derive(Serialize)]
struct ErrorReply {
    error: &'static str,
}

/// An error reply: `{"error":"CODE"}`.
pub fn error(code: ErrorCode) -> String {
    to_json(&ErrorReply {
        error: code.as_str(),
    })
}

#[derive(Serialize)]
struct RoomUsersReply<'a> {
    #[serde(rename = "type")]
    kind: u8,
    room: RoomId,
    data: RoomUsersData<'a>,
}

#[derive(Serialize)]
struct RoomUsersData<'a> {
    users: BTreeMap<String, UserEntry<'a>>,
}

#[derive(Serialize)]
struct UserEntry<'a> {
    username: &'a str,
    name: &'a str,
    left: bool,
    last_update: f64,
}

/// The reply to `room_users`:
/// `{"type":6,"room":ID,"data":{"users":{"<id>":{"username":U,"name":N,"left":B,"last_update":F}}}}`.
///
/// Users are keyed by their id as a string; `last_update` is always written
/// with a fraction (`12.0`, never `12`) so clients can rely on a float.
pub fn room_users(room: RoomId, entries: &[PresenceEntry]) -> String {
    let users = entries
        .iter()
        .map(|entry| {
            (
                entry.user_id.to_string(),
                UserEntry {
                    username: &entry.username,
                    name: &entry.name,
                    left: entry.left,
                    last_update: entry.last_update,
                },
            )
        })
        .collect();
    to_json(&RoomUsersReply {
        kind: MessageKind::Internal as u8,
        room,
        data: RoomUsersData { users },
    })
}

#[derive(Serialize)]
struct CommandFrame<'a> {
    command: &'static str,
    room: RoomId,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// A client command as a client sends it: `{"command":"send","room":1,"message":"hi"}`.
///
/// For clients written in Rust (load generators, bots, tests); the server
/// only decodes commands. [`crate::decode_command`] reads back exactly what
/// this writes.
pub fn command(command: &Command) -> String {
    let (name, room, message) = match command {
        Command::Join { room } => ("join", *room, None),
        Command::Leave { room } => ("leave", *room, None),
        Command::Send { room, message } => ("send", *room, Some(message.as_str())),
        Command::RoomUsers { room } => ("room_users", *room, None),
    };
    to_json(&CommandFrame {
        command: name,
        room,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_match_the_original_byte_for_byte() {
        assert_eq!(
            message(RoomId(1), "ann", "hi \"there\" <b>é"),
            r#"{"msg_type":0,"room":1,"username":"ann","message":"hi \"there\" <b>é"}"#
        );
        assert_eq!(
            enter(RoomId(2), "bob"),
            r#"{"msg_type":4,"room":2,"username":"bob"}"#
        );
        assert_eq!(
            leave(RoomId(2), "bob"),
            r#"{"msg_type":5,"room":2,"username":"bob"}"#
        );
    }

    #[test]
    fn replies_match_the_original_byte_for_byte() {
        assert_eq!(
            join_reply(RoomId(9), "Lobby"),
            r#"{"join":"9","title":"Lobby"}"#
        );
        assert_eq!(leave_reply(RoomId(9)), r#"{"leave":"9"}"#);
        assert_eq!(error(ErrorCode::RoomInvalid), r#"{"error":"ROOM_INVALID"}"#);
        assert_eq!(error(ErrorCode::Unavailable), r#"{"error":"UNAVAILABLE"}"#);
    }

    #[test]
    fn commands_encode_as_clients_send_them() {
        let send = Command::Send {
            room: RoomId(3),
            message: "hi".into(),
        };
        assert_eq!(
            command(&send),
            r#"{"command":"send","room":3,"message":"hi"}"#
        );
        assert_eq!(
            command(&Command::Join { room: RoomId(1) }),
            r#"{"command":"join","room":1}"#
        );
        assert_eq!(crate::decode_command(&command(&send)), Ok(send));
    }

    #[test]
    fn room_users_keys_users_by_id_and_keeps_floats() {
        let entries = [
            PresenceEntry {
                user_id: 10,
                username: "bob".into(),
                name: "Bob".into(),
                left: true,
                last_update: 1700000000.0,
            },
            PresenceEntry {
                user_id: 2,
                username: "ann".into(),
                name: String::new(),
                left: false,
                last_update: 1700000001.25,
            },
        ];
        assert_eq!(
            room_users(RoomId(1), &entries),
            concat!(
                r#"{"type":6,"room":1,"data":{"users":{"#,
                r#""10":{"username":"bob","name":"Bob","left":true,"last_update":1700000000.0},"#,
                r#""2":{"username":"ann","name":"","left":false,"last_update":1700000001.25}}}}"#
            )
        );
    }
}
