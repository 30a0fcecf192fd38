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
    /// One process of a `conns --processes` run failed, died or stopped
    /// answering; the run cannot add up its connections.
    #[error("bench process {process} of {processes}: {reason}")]
    Worker {
        /// Which: 0 is the process the user started, 1.. its workers.
        process: usize,
        /// How many processes the run has.
        processes: usize,
        /// What went wrong, and in which phase.
        reason: String,
    },
    /// A worker's orders broke off or came out of turn: the process that
    /// started it went away, or the two disagree about the phase.
    #[error("worker control: {0}")]
    Control(String),
    /// A worker's failure, already sent to the process that started it
    /// (which reports it); the worker exits without a line of its own, so
    /// the run still ends with one `error:` line.
    #[error("reported to the coordinating process")]
    Relayed,
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
            | BenchError::Runtime(_)
            | BenchError::Worker { .. }
            | BenchError::Control(_)
            | BenchError::Relayed => FAILED,
        }
    }

    /// Prints exactly one `error: ` line on stderr (none for
    /// [`BenchError::Relayed`], whose line the coordinator prints) and
    /// returns the exit code.
    pub fn report(&self) -> ExitCode {
        if let BenchError::Relayed = self {
            return ExitCode::from(self.exit_code());
        }
        whisper_cli::report(&self.to_string(), self.exit_code())
    }
}
