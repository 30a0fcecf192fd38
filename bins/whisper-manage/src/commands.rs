//! The commands themselves, one function each, over the library crates.
//!
//! Each returns the text for stdout rather than printing it, so output
//! happens once the work is done, and a failure prints only its error line.
//! Validation lives in the libraries (`whisper-auth`, `whisper-store`):
//! they check every field before writing, which is what makes "bad input
//! writes nothing" hold here.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat};
use sea_orm::{Database, DatabaseConnection};
use whisper_auth::{AuthError, NewUser, UserStore};
use whisper_chat::AccessChange;
use whisper_migrations::{Migrator, MigratorTrait};
use whisper_protocol::RoomId;
use whisper_protocol::v2::Message;
use whisper_store::{
    CatalogError, ChangeFeed, MessageStore, ModerationAction, ModerationRecord, NewEntry, Room,
    RoomCatalog,
};

use crate::cli::{
    Account, ChangePassword, ClearHistory, Cli, Command, CreateRoom, CreateSuperuser, CreateUser,
    DeleteRoom, History, SetStaff,
};
use crate::error::ManageError;
use crate::prompt::Prompter;

/// Opens the database and runs one command; the `Ok` text goes to stdout.
pub async fn run(cli: Cli) -> Result<String, ManageError> {
    let db = connect(&cli.database_url).await?;
    if !matches!(cli.command, Command::Migrate) {
        // So a fresh database file, or one left behind by an upgrade, just
        // works; `migrate` is for doing this explicitly and seeing it.
        Migrator::up(&db, None)
            .await
            .map_err(ManageError::Migrate)?;
    }
    let changed = match cli.command {
        Command::Migrate => return migrate(&db).await,
        Command::Rooms => return rooms(db).await,
        Command::History(args) => return history(db, args).await,
        Command::CreateSuperuser(args) => create_superuser(db.clone(), args).await?,
        Command::CreateUser(args) => create_user(db.clone(), args).await?,
        Command::CreateRoom(args) => create_room(db.clone(), args).await?,
        Command::DeleteRoom(args) => delete_room(db.clone(), args).await?,
        Command::SetStaff(args) => set_staff(db.clone(), args).await?,
        Command::ChangePassword(args) => change_password(db.clone(), args).await?,
        Command::Deactivate(args) => set_active(db.clone(), args, false).await?,
        Command::Activate(args) => set_active(db.clone(), args, true).await?,
        Command::DeleteUser(args) => delete_user(db.clone(), args).await?,
        Command::ClearHistory(args) => clear_history(db.clone(), args).await?,
    };
    record(&db, changed).await
}

/// Opens the database. Drivers quote the URL in some errors; a password
/// in it is masked, because error lines end up in logs and CI output.
async fn connect(url: &str) -> Result<DatabaseConnection, ManageError> {
    Database::connect(url)
        .await
        .map_err(|err| ManageError::Connect(whisper_cli::mask_password(&err.to_string(), url)))
}

/// The name the moderation record gives this tool as the actor: an
/// operator at the command line acts as no account.
const ACTOR: &str = "whisper-manage";

/// What a command that changed something has to say, the change of access
/// for the running servers (if any socket is concerned), and the entry of
/// the moderation record.
struct Changed {
    out: String,
    change: Option<AccessChange>,
    action: ModerationAction,
    subject: String,
    detail: String,
}

impl Changed {
    /// A change to `subject` that no open socket has to follow.
    fn unseen(out: String, action: ModerationAction, subject: String) -> Self {
        Changed {
            out,
            change: None,
            action,
            subject,
            detail: String::new(),
        }
    }

    /// A change to a user's account: the user's sockets follow it.
    fn of_user(out: String, action: ModerationAction, user: &whisper_auth::User) -> Self {
        Changed {
            out,
            change: Some(AccessChange::User(user.id.0)),
            action,
            subject: format!("user {}", user.username),
            detail: String::new(),
        }
    }
}

/// Records a change for the running servers ([`ChangeFeed`]: every node
/// reads it within a second and its sockets follow) and in the moderation
/// record, and returns the command's output. The change itself is already
/// stored: when recording fails, the error says so, and the servers'
/// periodic session re-check applies the change later.
async fn record(db: &DatabaseConnection, changed: Changed) -> Result<String, ManageError> {
    if let Some(change) = changed.change {
        ChangeFeed::new(db.clone())
            .record(&change.to_string())
            .await
            .map_err(ManageError::Record)?;
    }
    ModerationRecord::new(db.clone())
        .record(NewEntry {
            actor: ACTOR,
            action: changed.action,
            subject: &changed.subject,
            detail: &changed.detail,
        })
        .await
        .map_err(ManageError::Record)?;
    Ok(changed.out)
}

/// Applies pending migrations and names each one, so an operator sees
/// whether the run changed the schema.
async fn migrate(db: &DatabaseConnection) -> Result<String, ManageError> {
    let pending = Migrator::get_pending_migrations(db)
        .await
        .map_err(ManageError::Migrate)?;
    Migrator::up(db, None).await.map_err(ManageError::Migrate)?;
    if pending.is_empty() {
        return Ok("no pending migrations; the database is up to date\n".to_owned());
    }
    let mut out = String::new();
    for migration in &pending {
        let _ = writeln!(out, "applied {}", migration.name());
    }
    let _ = writeln!(out, "migrations applied: {}", pending.len());
    Ok(out)
}

/// Creates a staff superuser, asking for what the options left out. The
/// username is checked for being taken before the password is asked, so
/// nobody types a password twice for nothing.
async fn create_superuser(
    db: DatabaseConnection,
    args: CreateSuperuser,
) -> Result<Changed, ManageError> {
    let users = UserStore::new(db);
    let prompter = Prompter::for_stdin();
    let username = match args.username {
        Some(username) => username,
        None if args.noinput => return Err(missing_with_noinput()),
        None => prompter.line("Username: ", "username")?,
    };
    if users.find_by_username(&username).await?.is_some() {
        return Err(AuthError::UsernameTaken.into());
    }
    let email = match args.email {
        Some(email) => email,
        None if args.noinput => String::new(),
        None => prompter.line("Email address (optional): ", "email address")?,
    };
    let password = match args.password {
        Some(password) => password,
        None if args.noinput => return Err(missing_with_noinput()),
        None => prompter.new_password(&username)?,
    };
    let mut new = NewUser::new(username, password);
    new.email = email;
    new.is_staff = true;
    new.is_superuser = true;
    let user = users.create(new).await?;
    let mut changed = Changed::unseen(
        format!("created superuser \"{}\"\n", user.username),
        ModerationAction::CreateUser,
        format!("user {}", user.username),
    );
    changed.detail = "superuser".to_owned();
    Ok(changed)
}

/// clap already refuses `--noinput` without both options; this keeps the
/// command honest should that declaration ever change.
fn missing_with_noinput() -> ManageError {
    ManageError::Usage("--noinput needs --username and --password".to_owned())
}

/// Creates an account from options only: it is the scripting counterpart
/// of `createsuperuser`.
async fn create_user(db: DatabaseConnection, args: CreateUser) -> Result<Changed, ManageError> {
    let mut new = NewUser::new(args.username, args.password);
    new.name = args.name;
    new.email = args.email;
    new.is_staff = args.staff;
    let user = UserStore::new(db).create(new).await?;
    let role = if user.is_staff { "staff user" } else { "user" };
    let mut changed = Changed::unseen(
        format!("created {role} \"{}\"\n", user.username),
        ModerationAction::CreateUser,
        format!("user {}", user.username),
    );
    if user.is_staff {
        changed.detail = "staff".to_owned();
    }
    Ok(changed)
}

/// Creates a room. The bare id comes last so scripts can take it with
/// `tail -n 1`.
async fn create_room(db: DatabaseConnection, args: CreateRoom) -> Result<Changed, ManageError> {
    let room = RoomCatalog::new(db)
        .create(&args.title, args.staff_only)
        .await?;
    Ok(Changed::unseen(
        format!("created {}\n{}\n", describe(&room), room.id),
        ModerationAction::CreateRoom,
        describe(&room),
    ))
}

/// Lists rooms by title, in aligned columns, without a header so each line
/// is one room.
async fn rooms(db: DatabaseConnection) -> Result<String, ManageError> {
    let rooms = RoomCatalog::new(db).list().await?;
    let titles: Vec<String> = rooms.iter().map(|room| printable(&room.title)).collect();
    let id_width = rooms
        .iter()
        .map(|room| room.id.to_string().len())
        .max()
        .unwrap_or(0);
    let title_width = titles.iter().map(|t| t.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (room, title) in rooms.iter().zip(&titles) {
        let access = if room.staff_only { "staff-only" } else { "" };
        let line = format!("{:>id_width$}  {title:<title_width$}  {access}", room.id);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Ok(out)
}

/// Deletes a room, naming it in the confirmation so a wrong id is noticed.
async fn delete_room(db: DatabaseConnection, args: DeleteRoom) -> Result<Changed, ManageError> {
    let catalog = RoomCatalog::new(db);
    let room = catalog
        .get(args.id)
        .await?
        .ok_or(CatalogError::NoSuchRoom(args.id))?;
    catalog.delete(room.id).await?;
    Ok(Changed {
        out: format!("deleted {}\n", describe(&room)),
        change: Some(AccessChange::RoomDeleted(room.id)),
        action: ModerationAction::DeleteRoom,
        subject: describe(&room),
        detail: String::new(),
    })
}

/// Grants or removes staff status, which decides entry to staff-only rooms.
async fn set_staff(db: DatabaseConnection, args: SetStaff) -> Result<Changed, ManageError> {
    let user = UserStore::new(db)
        .set_staff(&args.username, !args.off)
        .await?;
    let (now, action) = if user.is_staff {
        ("is now staff", ModerationAction::GrantStaff)
    } else {
        ("is no longer staff", ModerationAction::RevokeStaff)
    };
    Ok(Changed::of_user(
        format!("\"{}\" {now}\n", user.username),
        action,
        &user,
    ))
}

/// Changes a password and ends the user's sessions, both at once
/// ([`UserStore::set_password`]): whoever knew the old password (the
/// reason to change it, often) must not stay logged in.
async fn change_password(
    db: DatabaseConnection,
    args: ChangePassword,
) -> Result<Changed, ManageError> {
    let users = UserStore::new(db);
    let user = users
        .find_by_username(&args.username)
        .await?
        .ok_or(AuthError::NoSuchUser)?;
    let password = match args.password {
        Some(password) => password,
        None => Prompter::for_stdin().new_password(&user.username)?,
    };
    users.set_password(&user.username, &password).await?;
    Ok(Changed::of_user(
        format!(
            "changed the password of \"{}\" and ended their sessions\n",
            user.username
        ),
        ModerationAction::ResetPassword,
        &user,
    ))
}

/// Deactivates or reactivates an account. Deactivating ends the user's
/// sessions with it ([`UserStore::set_active`]), and the recorded change
/// closes their sockets on every node.
///
/// An account already in that state is not an error: the output says so,
/// and the change is made and recorded again all the same, which is
/// harmless and ends any session an inactive user still had.
async fn set_active(
    db: DatabaseConnection,
    args: Account,
    is_active: bool,
) -> Result<Changed, ManageError> {
    let users = UserStore::new(db);
    let before = users
        .find_by_username(&args.username)
        .await?
        .ok_or(AuthError::NoSuchUser)?;
    let user = users.set_active(&before.username, is_active).await?;
    let name = &user.username;
    let out = match (before.is_active, is_active) {
        (true, false) => {
            format!("deactivated \"{name}\": they cannot log in, and their sessions ended\n")
        }
        (false, false) => format!("\"{name}\" was already inactive; they cannot log in\n"),
        (false, true) => format!("reactivated \"{name}\": they may log in again\n"),
        (true, true) => format!("\"{name}\" was already active; nothing changed\n"),
    };
    let action = if is_active {
        ModerationAction::Activate
    } else {
        ModerationAction::Deactivate
    };
    Ok(Changed::of_user(out, action, &user))
}

/// Deletes an account and its sessions ([`UserStore::delete`]); the
/// recorded change closes their sockets on every node. Their messages
/// stay, shown as from a deleted user.
async fn delete_user(db: DatabaseConnection, args: Account) -> Result<Changed, ManageError> {
    let user = UserStore::new(db).delete(&args.username).await?;
    Ok(Changed::of_user(
        format!(
            "deleted \"{}\": their sessions ended; their messages stay, as from a deleted user\n",
            user.username
        ),
        ModerationAction::DeleteUser,
        &user,
    ))
}

/// Prints a room's latest messages, oldest first, in aligned columns:
/// seq, time, username, text. Reads only: a room nobody wrote in yet
/// prints nothing and gets no log.
async fn history(db: DatabaseConnection, args: History) -> Result<String, ManageError> {
    existing_room(&db, args.room).await?;
    let messages = MessageStore::new(db).latest(args.room, args.limit).await?;
    let seq_width = messages
        .last()
        .map_or(0, |message| message.seq.0.to_string().len());
    let names: Vec<String> = messages.iter().map(author).collect();
    let name_width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (message, name) in messages.iter().zip(&names) {
        let text = match &message.text {
            Some(text) => printable(text),
            None => "(deleted)".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:>seq_width$}  {}  {name:<name_width$}  {text}",
            message.seq.0,
            rfc3339(message.ts),
        );
    }
    Ok(out)
}

/// Deletes a room's stored messages. The new epoch comes last, alone, so
/// scripts can take it with `tail -n 1`.
async fn clear_history(db: DatabaseConnection, args: ClearHistory) -> Result<Changed, ManageError> {
    let room = existing_room(&db, args.room).await?;
    let epoch = MessageStore::new(db).clear(room.id).await?;
    Ok(Changed::unseen(
        format!(
            "cleared the history of {}; new epoch:\n{}\n",
            describe(&room),
            epoch.0
        ),
        ModerationAction::ClearHistory,
        describe(&room),
    ))
}

/// The room with this id, or the error that says there is none: the log
/// of a room that does not exist is neither read nor created.
async fn existing_room(db: &DatabaseConnection, id: RoomId) -> Result<Room, ManageError> {
    Ok(RoomCatalog::new(db.clone())
        .get(id)
        .await?
        .ok_or(CatalogError::NoSuchRoom(id))?)
}

/// A message's author for a line of `history`: the username, or a
/// placeholder when the account has been deleted since.
fn author(message: &Message) -> String {
    if message.user.username.is_empty() {
        format!("(user-{})", message.user.id)
    } else {
        printable(&message.user.username)
    }
}

/// Unix milliseconds as RFC 3339 in UTC, to the millisecond.
fn rfc3339(ts: i64) -> String {
    DateTime::from_timestamp_millis(ts).map_or_else(
        || format!("(ts {ts})"),
        |time| time.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

/// `room 3 "Lobby"`, with " (staff-only)" when it is.
fn describe(room: &Room) -> String {
    let access = if room.staff_only { " (staff-only)" } else { "" };
    format!("room {} \"{}\"{access}", room.id, printable(&room.title))
}

/// Text as one line: control characters (a newline typed into a title or
/// a message, say) are escaped so they cannot break the line-per-item
/// output of `rooms` and `history`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_print_on_one_line() {
        assert_eq!(printable("Lobby \"A\""), "Lobby \"A\"");
        assert_eq!(printable("two\nlines\t"), "two\\nlines\\t");
    }

    #[test]
    fn times_are_rfc3339_in_utc_to_the_millisecond() {
        assert_eq!(rfc3339(1_764_000_000_123), "2025-11-24T16:00:00.123Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(i64::MAX), format!("(ts {})", i64::MAX));
    }
}
