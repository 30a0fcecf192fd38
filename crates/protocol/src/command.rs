use serde::Deserialize;
use serde_json::Value;

use crate::{ErrorCode, RoomId};

/// A command sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Join a room: `{"command":"join","room":ID}`.
    Join {
        /// The room to join.
        room: RoomId,
    },
    /// Leave a room: `{"command":"leave","room":ID}`.
    Leave {
        /// The room to leave.
        room: RoomId,
    },
    /// Send a message to a joined room: `{"command":"send","room":ID,"message":M}`.
    Send {
        /// The room to send to.
        room: RoomId,
        /// The message text, as typed.
        message: String,
    },
    /// Ask who is in a room: `{"command":"room_users","room":ID}`.
    RoomUsers {
        /// The room to list.
        room: RoomId,
    },
}

#[derive(Deserialize)]
struct RoomArgs {
    room: RoomId,
}

#[derive(Deserialize)]
struct SendArgs {
    room: RoomId,
    message: String,
}

/// Parses a client frame up to the point both protocol versions agree on: a
/// JSON object, else [`ErrorCode::BadRequest`].
///
/// The object is returned as a `Value` so each version can deserialize its
/// own argument structs from it without copying the members.
pub(crate) fn frame_object(text: &str) -> Result<Value, ErrorCode> {
    match serde_json::from_str(text) {
        Ok(frame @ Value::Object(_)) => Ok(frame),
        _ => Err(ErrorCode::BadRequest),
    }
}

/// The `command` field of a frame, which both versions require to be a
/// string.
pub(crate) fn command_name(frame: &Value) -> Result<&str, ErrorCode> {
    frame
        .get("command")
        .and_then(Value::as_str)
        .ok_or(ErrorCode::BadRequest)
}

/// The `room` field of a frame, read the same way by both versions: a number
/// or a string of digits (see [`RoomId`]).
pub(crate) fn frame_room(frame: &Value) -> Result<RoomId, ErrorCode> {
    RoomArgs::deserialize(frame)
        .map(|args| args.room)
        .map_err(|_| ErrorCode::BadRequest)
}

/// Decodes one client frame.
///
/// Unknown extra fields are ignored, as the original did. Anything that is
/// not a JSON object with a string `command` is [`ErrorCode::BadRequest`]; a
/// `command` naming nothing known is [`ErrorCode::UnknownCommand`]; a known
/// command with a missing or ill-typed field is [`ErrorCode::BadRequest`].
/// Never panics, whatever the input.
pub fn decode_command(text: &str) -> Result<Command, ErrorCode> {
    let frame = frame_object(text)?;
    Ok(match command_name(&frame)? {
        "join" => Command::Join {
            room: frame_room(&frame)?,
        },
        "leave" => Command::Leave {
            room: frame_room(&frame)?,
        },
        "room_users" => Command::RoomUsers {
            room: frame_room(&frame)?,
        },
        "send" => {
            let SendArgs { room, message } =
                SendArgs::deserialize(&frame).map_err(|_| ErrorCode::BadRequest)?;
            Command::Send { room, message }
        }
        _ => return Err(ErrorCode::UnknownCommand),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_command() {
        assert_eq!(
            decode_command(r#"{"command":"join","room":"1"}"#),
            Ok(Command::Join { room: RoomId(1) })
        );
        assert_eq!(
            decode_command(r#"{"command":"leave","room":2}"#),
            Ok(Command::Leave { room: RoomId(2) })
        );
        assert_eq!(
            decode_command(r#"{"command":"room_users","room":3,"extra":true}"#),
            Ok(Command::RoomUsers { room: RoomId(3) })
        );
        assert_eq!(
            decode_command(r#"{"room":"4","command":"send","message":"héllo \"x\""}"#),
            Ok(Command::Send {
                room: RoomId(4),
                message: "héllo \"x\"".into()
            })
        );
    }

    #[test]
    fn malformed_frames_are_bad_requests() {
        for bad in [
            "",
            "not json",
            "[]",
            "\"join\"",
            "{}",
            r#"{"command":1}"#,
            r#"{"command":"join"}"#,
            r#"{"command":"join","room":"x"}"#,
            r#"{"command":"join","room":-1.5}"#,
            r#"{"command":"send","room":1}"#,
            r#"{"command":"send","room":1,"message":5}"#,
            r#"{"command":"join","room":1"#,
        ] {
            assert_eq!(decode_command(bad), Err(ErrorCode::BadRequest), "{bad}");
        }
    }

    #[test]
    fn unknown_commands_are_named_as_such() {
        assert_eq!(
            decode_command(r#"{"command":"shout","room":1}"#),
            Err(ErrorCode::UnknownCommand)
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = "[".repeat(100_000);
        assert_eq!(decode_command(&deep), Err(ErrorCode::BadRequest));
    }
}
