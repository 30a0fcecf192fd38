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
//! multi-line driver messages are folded. A password in a service's URL
//! never reaches that line ([`mask_password`]): error lines end up in logs
//! and CI output.

use std::process::ExitCode;
use std::time::Duration;

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

/// Parses a span of time as an operator writes it: a whole number and a
/// unit, `30d`, `12h`, `90m` or `45s`; `0` alone is zero. For flags such
/// as `--history-max-age`, where seconds would be unreadable.
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(whisper_cli::parse_span("30d"), Ok(Duration::from_secs(30 * 86_400)));
/// assert_eq!(whisper_cli::parse_span("0"), Ok(Duration::ZERO));
/// assert!(whisper_cli::parse_span("30").is_err());
/// ```
pub fn parse_span(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .filter(|&at| at > 0)
        .ok_or_else(|| format!("{text:?} is not a span like 30d, 12h, 90m or 45s"))?;
    let (number, unit) = text.split_at(unit_at);
    let seconds_per_unit = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("{text:?}: the unit is one of d, h, m, s")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(seconds_per_unit))
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long a span"))
}

/// `message` with the password of `url` (`scheme://user:password@host/...`)
/// replaced by `***` wherever it appears. Database and Redis drivers quote
/// the URL they failed to open in some errors, and the binaries name it
/// themselves; this is the one place both binaries hide the secret in it.
///
/// ```
/// let url = "postgres://whisper:s3cret@db/whisper";
/// assert_eq!(
///     whisper_cli::mask_password(&format!("cannot open {url}"), url),
///     "cannot open postgres://whisper:***@db/whisper",
/// );
/// ```
pub fn mask_password(message: &str, url: &str) -> String {
    match url_password(url) {
        Some(password) => message.replace(password, "***"),
        None => message.to_owned(),
    }
}

/// The password in `scheme://user:password@host/...`, if there is one.
fn url_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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

    #[test]
    fn only_the_password_of_a_url_is_found() {
        assert_eq!(
            url_password("postgres://u:s3cr@t@db:5432/w"),
            Some("s3cr@t")
        );
        assert_eq!(
            url_password("postgres://u:pw@db/w?sslmode=require"),
            Some("pw")
        );
        assert_eq!(url_password("redis://:pw@redis:6379/"), Some("pw"));
        assert_eq!(url_password("postgres://u@db/w"), None);
        assert_eq!(url_password("postgres://u:@db/w"), None);
        assert_eq!(url_password("sqlite://whisper.db?mode=rwc"), None);
        assert_eq!(url_password("sqlite:///a/b@c:d/x.db"), None);
    }

    #[test]
    fn a_url_without_password_leaves_the_message_alone() {
        let message = "cannot open sqlite://a:b.db";
        assert_eq!(mask_password(message, "sqlite://a:b.db"), message);
    }

    #[test]
    fn spans_take_a_number_and_a_unit() {
        assert_eq!(parse_span("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_span("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_span("12h"), Ok(Duration::from_secs(43_200)));
        for bad in ["", "d", "30", "30w", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }
}
