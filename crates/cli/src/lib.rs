//! How Whisper's binaries talk to the shell, in one place.
//!
//! - A mistake the operator can fix (a bad flag, an invalid value, input
//!   that does not validate) prints exactly one `error: ...` line on stderr
//!   and exits with [`BAD_INPUT`] (2, as clap does for usage errors).
//! - A failure of the machine or a service (database unreachable, port in
//!   use) prints one line and exits with [`FAILED`] (1).
//! - `--help` and `--version` print as clap prints them and exit 0; a
//!   call without its command is a mistake like any other.
//!
//! One line, so scripts and logs can rely on it: clap's usage block and
//! multi-line driver messages are folded.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

/// Exit code for input the operator can fix.
pub const BAD_INPUT: u8 = 2;
/// Exit code for failures that are not the operator's input.
pub const FAILED: u8 = 1;

/// Parses the command line. On a mistake, prints it as one line and gives
/// back the exit code to end with; help and version are printed whole.
pub fn parse<T: Parser>() -> Result<T, ExitCode> {
    T::try_parse().map_err(|error| {
        match error.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = error.print();
                ExitCode::SUCCESS
            }
            // A bare call is a mistake like any other: one line, not the
            // whole help on stderr.
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                report("a command is required (see --help)", BAD_INPUT)
            }
            _ => report(&usage_message(&error), BAD_INPUT),
        }
    })
}

/// clap's first paragraph (the message and, for missing arguments, their
/// names), without the usage and tips that follow or the `error: ` prefix.
fn usage_message(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let first_paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    let message = first_paragraph.join(" ");
    message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_owned()
}

/// Prints `message` as exactly one `error: ` line on stderr (its lines
/// joined) and returns `code` as the exit code.
pub fn report(message: &str, code: u8) -> ExitCode {
    eprintln!("error: {}", one_line(message));
    ExitCode::from(code)
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Args {
        #[arg(long)]
        count: u32,
    }

    #[test]
    fn usage_errors_fold_to_one_line_without_prefix() {
        let missing = Args::try_parse_from(["x"]).expect_err("missing --count");
        let message = usage_message(&missing);
        assert!(
            !message.contains('\n') && message.contains("--count"),
            "{message}"
        );
        assert!(!message.starts_with("error:"));
        let bad = Args::try_parse_from(["x", "--count", "many"]).expect_err("not a number");
        assert!(usage_message(&bad).contains("many"));
    }

    #[test]
    fn messages_are_joined_into_one_line() {
        assert_eq!(one_line("first\n\n  second \n"), "first second");
    }
}
