//! The command line: what an operator may type, and the help they read.
//!
//! Command names follow Django's `manage.py` (`createsuperuser`,
//! `changepassword`), since Whisper's operators may come from the original.

use clap::{Args, Parser, Subcommand};
use whisper_protocol::RoomId;

/// Administer a Whisper chat server's database: schema, users, rooms and
/// their history.
///
/// Every command except `migrate` first applies pending migrations without a
/// word, so a fresh database file just works. `deleteroom`, `setstaff`,
/// `changepassword`, `deactivate`, `activate` and `deleteuser` also record
/// the change for the running servers, whose open sockets follow within a
/// second. Every command that changes something writes it to the
/// moderation record (actor "whisper-manage"), which superusers read on the
/// admin page.
#[derive(Debug, Parser)]
#[command(
    name = "whisper-manage",
    version,
    arg_required_else_help = true,
    after_help = "Exit status: 0 done; 1 the database failed; 2 bad input (nothing was written)."
)]
pub struct Cli {
    /// The database to administer: the same URL the server uses.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL",
        default_value = "sqlite://whisper.db?mode=rwc"
    )]
    pub database_url: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands, named as in Django's `manage.py`.
#[derive(Debug, Subcommand)]
#[command(rename_all = "lower")]
pub enum Command {
    /// Apply pending schema migrations and list the ones applied.
    Migrate,
    /// Create a superuser (staff who administers the server).
    ///
    /// Prompts for whatever the options leave out: username, email and the
    /// password twice (hidden on a terminal). When standard input is not a
    /// terminal, answers are read one per line from it, without prompts.
    CreateSuperuser(CreateSuperuser),
    /// Create a user account.
    CreateUser(CreateUser),
    /// Create a room; prints its id alone on the last line.
    CreateRoom(CreateRoom),
    /// List rooms, one per line: id, title, and "staff-only" when limited to
    /// staff.
    Rooms,
    /// Delete a room by its id.
    DeleteRoom(DeleteRoom),
    /// Grant staff status (entry to staff-only rooms), or remove it with
    /// --off (refused for a superuser, who is always staff).
    SetStaff(SetStaff),
    /// Change a user's password and end all of their sessions.
    ///
    /// Without --password, prompts for the new password twice, as
    /// createsuperuser does.
    ChangePassword(ChangePassword),
    /// Deactivate a user: they can no longer log in, their sessions end and
    /// their open sockets close within a second. The account and its
    /// messages stay; `activate` undoes it. A user already inactive is not
    /// an error (the output says so).
    Deactivate(Account),
    /// Reactivate a deactivated user, who may log in again (their old
    /// sessions stay ended). A user already active is not an error.
    Activate(Account),
    /// Delete a user: their sessions end and their open sockets close
    /// within a second. Their messages stay, shown as from a deleted user;
    /// the id is never given to another account.
    DeleteUser(Account),
    /// Print a room's latest stored messages, oldest first, one per line:
    /// seq, time (RFC 3339, UTC), username and text.
    History(History),
    /// Delete a room's stored messages; prints the log's new epoch alone
    /// on the last line.
    ///
    /// Clients that held the old epoch drop what they had; numbering goes
    /// on from the last seq given, so a seq never names two messages.
    ClearHistory(ClearHistory),
}

/// Options of `createsuperuser`.
#[derive(Debug, Args)]
pub struct CreateSuperuser {
    /// Login name: letters of one alphabet, digits and @.+-_ (prompted for if
    /// omitted).
    #[arg(long)]
    pub username: Option<String>,
    /// Email address (prompted for if omitted, unless --noinput).
    #[arg(long)]
    pub email: Option<String>,
    /// Password, 8 characters or more. Other local users can see it in the
    /// process list; prefer the prompt on shared machines.
    #[arg(long)]
    pub password: Option<String>,
    /// Never prompt: take everything from the options, for scripts.
    #[arg(long, alias = "no-input", requires_all = ["username", "password"])]
    pub noinput: bool,
}

/// Options of `createuser`.
#[derive(Debug, Args)]
pub struct CreateUser {
    /// Login name: letters of one alphabet, digits and @.+-_.
    #[arg(long)]
    pub username: String,
    /// Password, 8 characters or more (visible in the process list).
    #[arg(long)]
    pub password: String,
    /// Display name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Email address.
    #[arg(long, default_value = "")]
    pub email: String,
    /// Make the user staff, so they may enter staff-only rooms.
    #[arg(long)]
    pub staff: bool,
}

/// Options of `createroom`.
#[derive(Debug, Args)]
pub struct CreateRoom {
    /// Title shown in room lists, 1 to 255 characters.
    #[arg(long)]
    pub title: String,
    /// Only staff may join the room.
    #[arg(long)]
    pub staff_only: bool,
}

/// Options of `deleteroom`.
#[derive(Debug, Args)]
pub struct DeleteRoom {
    /// The room's id, as printed by `createroom` and `rooms`.
    #[arg(value_name = "ID", value_parser = parse_room_id)]
    pub id: RoomId,
}

/// Options of `setstaff`.
#[derive(Debug, Args)]
pub struct SetStaff {
    /// The user to change.
    #[arg(long)]
    pub username: String,
    /// Remove staff status instead of granting it.
    #[arg(long)]
    pub off: bool,
}

/// Options of `changepassword`.
#[derive(Debug, Args)]
pub struct ChangePassword {
    /// The user whose password changes.
    #[arg(long)]
    pub username: String,
    /// The new password, 8 characters or more (prompted for twice if
    /// omitted; visible in the process list if given).
    #[arg(long)]
    pub password: Option<String>,
}

/// The argument of `deactivate`, `activate` and `deleteuser`: whom they
/// concern.
#[derive(Debug, Args)]
pub struct Account {
    /// The user's login name.
    #[arg(value_name = "USER")]
    pub username: String,
}

/// Options of `history`.
#[derive(Debug, Args)]
pub struct History {
    /// The room's id, as printed by `createroom` and `rooms`.
    #[arg(value_name = "ROOM", value_parser = parse_room_id)]
    pub room: RoomId,
    /// How many of the latest messages to print.
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
}

/// Options of `clearhistory`.
#[derive(Debug, Args)]
pub struct ClearHistory {
    /// The room's id, as printed by `createroom` and `rooms`.
    #[arg(value_name = "ROOM", value_parser = parse_room_id)]
    pub room: RoomId,
}

/// Room ids are what the database handed out: plain digits, no sign.
fn parse_room_id(text: &str) -> Result<RoomId, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("room ids are whole numbers, as listed by `rooms`".to_owned());
    }
    text.parse()
        .map(RoomId)
        .map_err(|_| "that room id is out of range".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The account `args` name for `deactivate` or `activate`, or clap's
    /// refusal.
    fn account_of(args: &[&str]) -> Result<(String, bool), clap::Error> {
        let cli = Cli::try_parse_from([&["whisper-manage"], args].concat())?;
        match cli.command {
            Command::Deactivate(account) => Ok((account.username, false)),
            Command::Activate(account) => Ok((account.username, true)),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn deactivate_and_activate_take_one_username() {
        assert_eq!(
            account_of(&["deactivate", "bob"]).ok(),
            Some(("bob".to_owned(), false))
        );
        assert_eq!(
            account_of(&["activate", "bob"]).ok(),
            Some(("bob".to_owned(), true))
        );
        // The name is taken as it is: the library says whether it exists.
        assert_eq!(
            account_of(&["deactivate", "--", "-x"]).ok(),
            Some(("-x".to_owned(), false))
        );
        for bad in [
            &["deactivate"][..],
            &["activate"],
            &["deactivate", "bob", "ann"],
            &["deactivate", "--username", "bob"],
        ] {
            assert!(account_of(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn room_ids_are_plain_digits() {
        assert_eq!(parse_room_id("42"), Ok(RoomId(42)));
        for bad in ["", "-1", "+1", " 1", "1.0", "abc", "99999999999999999999"] {
            assert!(parse_room_id(bad).is_err(), "{bad:?}");
        }
    }
}
