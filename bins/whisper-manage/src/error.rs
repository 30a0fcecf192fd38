//! Every way a command can fail, and the one place that turns a failure
//! into an `error:` line and an exit code.
//!
//! Exit codes: 0 success; 1 the database or the machine failed (retrying
//! later, or fixing the server, may help); 2 the input was wrong (fix the
//! command line or the answers; nothing was written).

use std::io;
use std::process::ExitCode;

use sea_orm::DbErr;
use thiserror::Error;
use whisper_auth::AuthError;
use whisper_store::{CatalogError, StoreError};

use whisper_cli::{BAD_INPUT, FAILED};

/// What went wrong in a `whisper-manage` run.
#[derive(Debug, Error)]
pub enum ManageError {
    /// The command line is inconsistent in a way clap cannot express.
    #[error("{0}")]
    Usage(String),
    /// A user-account operation failed: invalid or taken username, short
    /// password, unknown user, or storage.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A room operation failed: invalid title, unknown room, or storage.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Reading or clearing a room's message log failed.
    #[error(transparent)]
    History(#[from] StoreError),
    /// The password and its confirmation differ.
    #[error("the passwords do not match")]
    PasswordMismatch,
    /// Standard input ended before an answer was read, for example when a
    /// script pipes fewer lines than the prompts need.
    #[error("input ended before the {0} was given")]
    EndOfInput(&'static str),
    /// Reading an answer from the terminal or standard input failed.
    #[error("cannot read the {what}: {source}")]
    Input {
        /// What was being asked for.
        what: &'static str,
        /// Why reading failed.
        source: io::Error,
    },
    /// The database URL could not be opened; the driver's message, with
    /// any password from the URL masked.
    #[error("cannot open the database: {0}")]
    Connect(String),
    /// Applying or listing migrations failed.
    #[error("cannot migrate the database: {0}")]
    Migrate(DbErr),
    /// The change was made, but could not be recorded for the running
    /// servers; their sockets follow at the next session re-check.
    #[error(
        "done, but the change could not be recorded for the running servers ({0}); \
         open sockets follow within 45 s"
    )]
    Record(#[source] StoreError),
    /// Writing the result to stdout failed (for example a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(io::Error),
}

impl ManageError {
    /// The exit code: [`BAD_INPUT`] when the operator can fix the command,
    /// [`FAILED`] otherwise.
    fn exit_code(&self) -> u8 {
        match self {
            ManageError::Usage(_)
            | ManageError::PasswordMismatch
            | ManageError::EndOfInput(_)
            | ManageError::Auth(
                AuthError::InvalidUsername
                | AuthError::InvalidPassword
                | AuthError::InvalidField(_)
                | AuthError::UsernameTaken
                | AuthError::NoSuchUser
                | AuthError::SuperuserIsStaff,
            )
            | ManageError::Catalog(CatalogError::InvalidTitle | CatalogError::NoSuchRoom(_)) => {
                BAD_INPUT
            }
            ManageError::Auth(
                AuthError::Storage(_)
                | AuthError::Randomness(_)
                | AuthError::Hashing(_)
                | AuthError::Busy
                | AuthError::HashingTask(_),
            )
            | ManageError::Catalog(CatalogError::Storage(_))
            | ManageError::History(
                StoreError::Storage(_)
                | StoreError::Randomness(_)
                | StoreError::NegativeSeq { .. }
                | StoreError::MalformedPage(_),
            )
            | ManageError::Input { .. }
            | ManageError::Connect(_)
            | ManageError::Record(_)
            | ManageError::Migrate(_)
            | ManageError::Output(_) => FAILED,
        }
    }

    /// Prints the error as exactly one `error: ` line on stderr and returns
    /// the exit code.
    pub fn report(&self) -> ExitCode {
        whisper_cli::report(&self.to_string(), self.exit_code())
    }
}
