//! Why a run could not be carried out, and the one place that turns that
//! into an `error:` line and an exit code.
//!
//! Exit codes: 0 the run completed (its numbers, lost messages included,
//! are in the report); 1 the run could not be carried out (server
//! unreachable, signup refused, a fan-out member could not join, too few
//! file descriptors); 2 the command line was wrong.

use std::process::ExitCode;

use thiserror::Error;
use whisper_cli::{BAD_INPUT, FAILED};

/// What stopped a run.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The command line's flags contradict each other in a way clap cannot
    /// express.
    #[error("{0}")]
    Usage(String),
    /// The server's address could not be resolved.
    #[error("cannot resolve the server address {0}")]
    Resolve(String),
    /// Creating the rooms with whisper-manage failed.
    #[error("cannot create rooms: {0}")]
    Rooms(String),
    /// Signing up the bench's users failed.
    #[error("cannot sign up users: {0}")]
    Signup(String),
    /// A connection the scenario cannot do without failed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// After filling, the room still holds fewer messages than asked for:
    /// the server's retention removed the oldest.
    #[error(
        "room {room} holds {held} stored messages after filling, not {wanted}: the server keeps \
         at most its --history-max-per-room per room; start it with \
         --history-max-per-room {wanted} or more"
    )]
    RoomShort {
        /// The room.
        room: i64,
        /// Messages it holds.
        held: u64,
        /// Messages the run asked for.
        wanted: u64,
    },
    /// The process may not open enough files for the connections.
    #[error("{0}")]
    Limits(String),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl BenchError {
    fn exit_code(&self) -> u8 {
        match self {
            BenchError::Usage(_) => BAD_INPUT,
            BenchError::Resolve(_)
            | BenchError::Rooms(_)
            | BenchError::Signup(_)
            | BenchError::Connect(_)
            | BenchError::RoomShort { .. }
            | BenchError::Limits(_)
            | BenchError::Runtime(_) => FAILED,
        }
    }

    /// Prints exactly one `error: ` line on stderr and returns the exit code.
    pub fn report(&self) -> ExitCode {
        whisper_cli::report(&self.to_string(), self.exit_code())
    }
}
