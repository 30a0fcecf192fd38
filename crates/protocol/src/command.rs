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

/// Decodes one client frame.
///
/// Unknown extra fields are ignored, as the original did. Anything that is
/// not a JSON object with a string `command` is [`ErrorCode::BadRequest`]; a
/// `command` naming nothing known is [`ErrorCode::UnknownCommand`]; a known
/// command with a missing or ill-typed field is [`ErrorCode::BadRequest`].
/// Never panics, whatever the input.
pub fn decode_command(text: &str) -> Result<Command, ErrorCode> {
    let value: Value = serde_json::from_str(text).map_err(|_| ErrorCode::BadRequest)?;
    let Value::Object(object) = value else {
        return Err(ErrorCode::BadRequest);
    };
    let Some(Value::String(name)) = object.get("command") else {
        return Err(ErrorCode::BadRequest);
    };
    let kind = match name.as_str() {
        "join" | "leave" | "room_users" | "send" => name.clone(),
        _ => return Err(ErrorCode::UnknownCommand),
    };
    let args = Value::Object(object);
    let room_args = || RoomArgs::deserialize(&args).map_err(|_| ErrorCode::BadRequest);
    Ok(match kind.as_str() {
        "join" => Command::Join {
            room: room_args()?.room,
        },
        "leave" => Command::Leave {
            room: room_args()?.room,
        },
        "room_users" => Command::RoomUsers {
            room: room_args()?.room,
        },
        _ => {
            let SendArgs { room, message } =
                SendArgs::deserialize(args).map_err(|_| ErrorCode::BadRequest)?;
            Command::Send { room, message }
        }
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
