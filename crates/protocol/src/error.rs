use std::fmt;

/// The error codes a server replies with, as `{"error":"CODE"}`.
///
/// The first three are the original protocol's; the rest are Whisper's
/// additions for input the original never had to judge. After any of them the
/// connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No room with that id exists.
    RoomInvalid,
    /// A staff-only room and a non-staff user, or a `send` to a room this
    /// connection has not joined, or (v2) a `delete` of another user's
    /// message by a user who is not staff.
    RoomAccessDenied,
    /// The connection has no logged-in user.
    UserHasToLogin,
    /// Not JSON, not an object, or a missing or ill-typed field.
    BadRequest,
    /// The `command` field names no known command.
    UnknownCommand,
    /// The message is longer than the server accepts.
    MessageTooLarge,
    /// The connection is already in as many rooms as the server allows.
    TooManyRooms,
    /// The connection sends faster than the server allows.
    RateLimited,
    /// The channel layer could not take the message; nothing was delivered
    /// and the client may retry.
    Unavailable,
    /// v2 only: a `delete` names a seq that holds no stored message in the
    /// room (never given, or removed by retention), so the client can drop
    /// its copy instead of retrying.
    MessageNotFound,
    /// A staff member muted this user in this room: its sends (and typing)
    /// there are refused until the mute ends. v2 says until when.
    Muted,
}

impl ErrorCode {
    /// Every code, for clients that map the wire names back to codes (see
    /// [`ErrorCode::from_name`]) and for tests that cover them all.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::RoomInvalid,
        ErrorCode::RoomAccessDenied,
        ErrorCode::UserHasToLogin,
        ErrorCode::BadRequest,
        ErrorCode::UnknownCommand,
        ErrorCode::MessageTooLarge,
        ErrorCode::TooManyRooms,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::MessageNotFound,
        ErrorCode::Muted,
    ];

    /// The code a client received as `{"error":"NAME"}`, if it is one.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == name)
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::RoomInvalid => "ROOM_INVALID",
            ErrorCode::RoomAccessDenied => "ROOM_ACCESS_DENIED",
            ErrorCode::UserHasToLogin => "USER_HAS_TO_LOGIN",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::UnknownCommand => "UNKNOWN_COMMAND",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::TooManyRooms => "TOO_MANY_ROOMS",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::MessageNotFound => "MESSAGE_NOT_FOUND",
            ErrorCode::Muted => "MUTED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_back_to_codes() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::from_name("room_invalid"), None);
    }
}
