//! Why a run could not be carried out, and the one place that turns that
//! into an `error:` line and exit code 1. A bad command line is clap's
//! (exit code 2, through `whisper_cli::parse`).
//!
//! Every wait in the tool is bounded, so each failure ends up here rather
//! than as a hang: a peer that stopped reading or writing shows as
//! [`LimitError::Stalled`], a timed-out `accept()` or control read as a
//! [`LimitError::Sys`] with `EAGAIN`.

use std::io;
use std::process::ExitCode;

use thiserror::Error;
use whisper_cli::FAILED;

/// What stopped a run.
#[derive(Debug, Error)]
pub enum LimitError {
    /// A system call failed; `call` names it and what it was for.
    #[error("{call}: {source}")]
    Sys {
        /// The call, and for what (`"accept #17"`, `"server write"`).
        call: String,
        /// The error it returned.
        #[source]
        source: io::Error,
    },
    /// A socket was closed by its peer while the run still needed it.
    #[error("{0}: the peer closed the connection early")]
    PeerClosed(&'static str),
    /// In `broadcast`, a socket still held part of the previous sample: the
    /// client did not drain it, so the broadcasts are not comparable.
    #[error(
        "short write ({written} of {frame} bytes): the client did not drain the previous sample"
    )]
    ShortWrite {
        /// Bytes the kernel took.
        written: usize,
        /// Bytes of the frame.
        frame: usize,
    },
    /// The client waited for a broadcast and nothing arrived.
    #[error("client: no data for {0} s")]
    Stalled(u64),
    /// A peer sent a frame this tool never sends (a 64-bit length).
    #[error("unexpected frame: {0}")]
    Frame(&'static str),
    /// The open-files limit leaves no room for a single connection.
    #[error("RLIMIT_NOFILE allows {0} open files: too few for one connection")]
    FdLimit(usize),
    /// A `/proc` file could not be read.
    #[error("cannot read {path}: {source}")]
    Proc {
        /// The file.
        path: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A `/proc` file did not read as this kernel's format.
    #[error("unexpected format of {0}")]
    ProcFormat(&'static str),
    /// `fork()` was asked for while other threads ran: the child of a
    /// threaded process may only call async-signal-safe functions.
    #[error("cannot fork: the process runs {0} threads")]
    Threaded(usize),
    /// The other side of the run (client thread or process, or the server
    /// thread the client meets) ended without its result.
    #[error("the {0}")]
    PartnerGone(String),
}

impl LimitError {
    /// The error of the system call `call` that just failed (`errno`).
    pub fn last_os(call: impl Into<String>) -> LimitError {
        LimitError::Sys {
            call: call.into(),
            source: io::Error::last_os_error(),
        }
    }

    /// `source`, returned by the system call `call`.
    pub fn sys(call: impl Into<String>, source: io::Error) -> LimitError {
        LimitError::Sys {
            call: call.into(),
            source,
        }
    }

    /// Whether this error is only what one side sees when the other has
    /// already failed (its sockets or its end of the meeting closed): then
    /// the other side's own error says more.
    pub fn follows_partner_failure(&self) -> bool {
        matches!(self, LimitError::PeerClosed(_) | LimitError::PartnerGone(_))
    }

    /// Prints exactly one `error: ` line on stderr and returns the exit code.
    pub fn report(&self) -> ExitCode {
        whisper_cli::report(&self.to_string(), FAILED)
    }
}

/// The error to report when both sides of a run failed: the server's own,
/// unless it only saw the client go away.
pub fn first_cause(server: LimitError, client: LimitError) -> LimitError {
    if server.follows_partner_failure() {
        client
    } else {
        server
    }
}
