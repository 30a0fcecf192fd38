//! `whisper-manage`: administer a Whisper database from a shell.
//!
//! The binary is a thin composition: [`cli`] says what may be typed,
//! [`commands`] does it with the library crates, and [`error`] decides, in
//! one place, what each failure prints and which exit code it gets. Commands
//! return what they have to say on stdout instead of printing it, so a
//! command either finishes its work or fails with one `error:` line.

mod cli;
mod commands;
mod error;
mod prompt;

use std::io::Write;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::error::ManageError;

/// A single-threaded runtime is enough: a command does one thing at a time,
/// and the only other work (password hashing) runs on the blocking pool.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match whisper_cli::parse::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match commands::run(cli).await {
        Ok(stdout) => match std::io::stdout().write_all(stdout.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => ManageError::Output(err).report(),
        },
        Err(err) => err.report(),
    }
}
