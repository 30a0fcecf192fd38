//! Black-box tests of the built `whisper-manage` binary against real SQLite
//! files: what an operator types, what they see, and what the database
//! holds afterwards.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;
use whisper_auth::{User, UserStore};
use whisper_chat::AccessChange;
use whisper_protocol::RoomId;
use whisper_store::{ChangeFeed, LogState, MessageStore, ModerationRecord, NewMessage};

/// A fresh database file in its own folder, removed when dropped.
struct Database {
    dir: TempDir,
    url: String,
}

/// How a run of the binary ended.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Database {
    fn new() -> Self {
        let dir = TempDir::new().expect("a temporary folder");
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        Database { dir, url }
    }

    /// A fresh database on the PostgreSQL that scripts/test runs.
    fn postgres() -> Self {
        let dir = TempDir::new().expect("a temporary folder");
        let url = whisper_testkit::postgres_database();
        Database { dir, url }
    }

    /// Runs `whisper-manage --database-url <this> <args>` with no stdin.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None)
    }

    /// Runs the binary with `input` piped to stdin (not a terminal, so the
    /// interactive commands read one answer per line).
    fn run_with_stdin(&self, args: &[&str], input: Option<&str>) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_whisper-manage"));
        command.arg("--database-url").arg(&self.url).args(args);
        manage(command, input)
    }

    /// Whether any run has opened (and so created) the database file.
    fn file_exists(&self) -> bool {
        self.dir.path().join("t.db").exists()
    }

    fn user(&self, username: &str) -> Option<User> {
        self.with_users(async |users| users.find_by_username(username).await.expect("find a user"))
    }

    fn user_count(&self) -> usize {
        self.with_users(async |users| users.list().await.expect("list users").len())
    }

    fn authenticates(&self, username: &str, password: &str) -> bool {
        self.with_users(async |users| {
            users
                .authenticate(username, password)
                .await
                .expect("authenticate")
                .is_some()
        })
    }

    /// Reads the database through the library, as the server would.
    fn with_users<T>(&self, read: impl AsyncFnOnce(UserStore) -> T) -> T {
        self.with_db(async |db| read(UserStore::new(db)).await)
    }

    /// Reads or writes message logs through the library, as the server
    /// would.
    fn with_messages<T>(&self, work: impl AsyncFnOnce(MessageStore) -> T) -> T {
        self.with_db(async |db| work(MessageStore::new(db)).await)
    }

    fn with_db<T>(&self, work: impl AsyncFnOnce(sea_orm::DatabaseConnection) -> T) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async {
            let db = sea_orm::Database::connect(&self.url)
                .await
                .expect("open the test database");
            work(db).await
        })
    }

    /// Stores `texts` in room `room` as messages of user `user_id`, one
    /// second apart from 2025-11-24T16:00:00Z, as the server would.
    fn send(&self, room: &str, user_id: i64, texts: &[&str]) {
        let room = RoomId(room.parse().expect("a room id"));
        let batch: Vec<NewMessage> = (0_i64..)
            .zip(texts)
            .map(|(i, text)| NewMessage {
                room,
                user_id,
                text: (*text).to_owned(),
                nonce: None,
                ts: 1_764_000_000_000 + i * 1_000,
            })
            .collect();
        self.with_messages(async |store| store.append(&batch, 600_000).await)
            .expect("store the messages");
    }

    fn log_state(&self, room: &str) -> LogState {
        let room = RoomId(room.parse().expect("a room id"));
        self.with_messages(async |store| store.log_state(room).await)
            .expect("the log's state")
    }

    /// The lines of `history` with `args`, each split into seq, time,
    /// username and text.
    fn history(&self, args: &[&str]) -> Vec<[String; 4]> {
        let mut command = vec!["history"];
        command.extend_from_slice(args);
        let run = self.run(&command);
        run.assert_success();
        run.stdout
            .lines()
            .map(|line| {
                let mut fields = line.split_whitespace();
                let mut next = || fields.next().expect("a field").to_owned();
                let (seq, time, username) = (next(), next(), next());
                let text = fields.collect::<Vec<_>>().join(" ");
                [seq, time, username, text]
            })
            .collect()
    }

    /// Runs `args` and checks the failure contract (exit 2, one line) and
    /// that the line mentions `mention`.
    fn assert_refused(&self, args: &[&str], mention: &str) {
        let run = self.run(args);
        let line = run.assert_error(2);
        assert!(line.contains(mention), "{line}");
    }

    /// Checks that `username` is a staff superuser with this email who
    /// logs in with `password`.
    fn assert_superuser(&self, username: &str, email: &str, password: &str) {
        let user = self.user(username).expect("the superuser exists");
        assert!(user.is_staff && user.is_superuser, "{user:?}");
        assert_eq!(user.email, email);
        assert!(self.authenticates(username, password));
    }

    /// Runs `createuser` for `username` with `password` and nothing else.
    fn create_user(&self, username: &str, password: &str) -> Run {
        self.run(&["createuser", "--username", username, "--password", password])
    }

    /// Runs `createroom` with `args`; the new room's id, its last line.
    fn create_room(&self, args: &[&str]) -> String {
        let mut command = vec!["createroom"];
        command.extend_from_slice(args);
        let created = self.run(&command);
        created.assert_success();
        let id = created
            .stdout
            .lines()
            .last()
            .expect("an id line")
            .to_owned();
        assert!(id.parse::<i64>().is_ok(), "{created:#?}");
        id
    }

    /// The lines of `rooms`.
    fn rooms(&self) -> Vec<String> {
        let run = self.run(&["rooms"]);
        run.assert_success();
        run.stdout.lines().map(str::to_owned).collect()
    }
}

/// Runs a prepared command, feeding `input` to stdin if given.
fn manage(mut command: Command, input: Option<&str>) -> Run {
    command
        .env_remove("DATABASE_URL")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start whisper-manage");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(input.as_bytes())
            .expect("write the answers");
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait for whisper-manage");
    Run {
        code: status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
    }
}

impl Run {
    fn assert_success(&self) {
        assert_eq!(self.code, 0, "{self:#?}");
    }

    /// The contract for failures: exit `code`, exactly one `error:` line on
    /// stderr, nothing on stdout. Returns the line.
    fn assert_error(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "{self:#?}");
        assert!(self.stdout.is_empty(), "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        lines[0]
    }
}

#[test]
fn migrate_applies_the_schema_once_to_a_fresh_file() {
    let db = Database::new();
    let first = db.run(&["migrate"]);
    first.assert_success();
    assert!(first.stdout.contains("create_users"), "{first:#?}");
    assert!(first.stdout.contains("migrations applied"), "{first:#?}");
    assert!(db.file_exists());

    let again = db.run(&["migrate"]);
    again.assert_success();
    assert!(again.stdout.contains("up to date"), "{again:#?}");
}

#[test]
fn createuser_refuses_a_taken_username() {
    let db = Database::new();
    let created = db.run(&[
        "createuser",
        "--username",
        "ann",
        "--password",
        "correct horse",
        "--name",
        "Ann",
        "--email",
        "ann@example.com",
    ]);
    created.assert_success();
    assert!(created.stderr.is_empty(), "{created:#?}");
    let ann = db.user("ann").expect("ann exists");
    assert_eq!((ann.name.as_str(), ann.is_staff), ("Ann", false));

    db.assert_refused(
        &["createuser", "--username", "ann", "--password", "other one"],
        "taken",
    );
    assert!(db.authenticates("ann", "correct horse"));
    assert_eq!(db.user_count(), 1);
}

#[test]
fn invalid_users_are_refused_and_nothing_is_written() {
    let db = Database::new();
    let fresh_rooms = db.rooms();
    for args in [
        &["--username", "a b", "--password", "long enough"][..],
        &["--username", "<x>", "--password", "long enough"],
        &["--username", "ann", "--password", "short"],
        &[
            "--username",
            "ann",
            "--password",
            "long enough",
            "--email",
            "no address",
        ],
    ] {
        let command: Vec<&str> = ["createuser"].iter().chain(args).copied().collect();
        db.run(&command).assert_error(2);
    }
    let superuser = db.run(&[
        "createsuperuser",
        "--noinput",
        "--username",
        "root",
        "--password",
        "short",
    ]);
    assert!(superuser.assert_error(2).contains("password"));
    assert_eq!(db.user_count(), 0);
    assert_eq!(db.rooms(), fresh_rooms);
}

#[test]
fn createsuperuser_noinput_creates_staff_superuser() {
    let db = Database::new();
    let run = db.run(&[
        "createsuperuser",
        "--username",
        "root",
        "--password",
        "correct horse",
        "--email",
        "root@example.com",
        "--noinput",
    ]);
    run.assert_success();
    assert!(!run.stdout.contains("correct horse"), "{run:#?}");
    db.assert_superuser("root", "root@example.com", "correct horse");
}

#[test]
fn createsuperuser_noinput_needs_username_and_password() {
    let db = Database::new();
    db.assert_refused(
        &["createsuperuser", "--noinput", "--username", "root"],
        "--password",
    );
    db.assert_refused(
        &["createsuperuser", "--noinput", "--password", "long enough"],
        "--username",
    );
    // Refused while parsing, before the database is even opened.
    assert!(!db.file_exists());
}

#[test]
fn createsuperuser_reads_answers_from_piped_stdin() {
    let db = Database::new();
    let run = db.run_with_stdin(
        &["createsuperuser"],
        Some("root\nroot@example.com\ncorrect horse\ncorrect horse\n"),
    );
    run.assert_success();
    // No terminal, so no prompts: stderr stays empty for scripts.
    assert!(run.stderr.is_empty(), "{run:#?}");
    db.assert_superuser("root", "root@example.com", "correct horse");
}

#[test]
fn createsuperuser_refuses_mismatched_or_missing_answers() {
    let db = Database::new();
    let mismatch = db.run_with_stdin(
        &["createsuperuser"],
        Some("root\n\ncorrect horse\ncorrect horsE\n"),
    );
    assert!(mismatch.assert_error(2).contains("match"));
    let short = db.run_with_stdin(&["createsuperuser", "--username", "root"], Some("\n"));
    assert!(short.assert_error(2).contains("password"));
    // Stdin at its end at once (no terminal, no answers).
    db.run(&["createsuperuser"]).assert_error(2);
    assert_eq!(db.user_count(), 0);
}

#[test]
fn rooms_are_created_listed_and_deleted() {
    let db = Database::new();
    // A fresh database holds General, open to everyone.
    let fresh = db.rooms();
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    let general_line: Vec<&str> = fresh[0].split_whitespace().collect();
    assert_eq!(general_line[1..], ["General"], "{fresh:?}");

    let id = db.create_room(&["--title", "Staff room", "--staff-only"]);
    let lobby_id = db.create_room(&["--title", "Lobby"]);
    assert_ne!(id, lobby_id);

    let rooms = db.rooms();
    assert_eq!(rooms.len(), 3, "{rooms:?}");
    let lines: Vec<Vec<&str>> = rooms
        .iter()
        .map(|r| r.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], general_line);
    assert_eq!(lines[1], [lobby_id.as_str(), "Lobby"]);
    assert_eq!(lines[2], [id.as_str(), "Staff", "room", "staff-only"]);

    db.run(&["deleteroom", &id]).assert_success();
    assert_eq!(db.rooms().len(), 2);
    db.assert_refused(&["deleteroom", &id], &id);
    assert_eq!(db.rooms().len(), 2);
}

/// The server keeps a SQLite file open in WAL mode while an operator runs
/// commands: they work beside its open connection, and it sees what they
/// wrote.
#[test]
fn commands_work_on_a_file_a_server_holds_open_in_wal_mode() {
    let db = Database::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let server_side = whisper_migrations::connect_migrated(&db.url)
            .await
            .expect("a migrated database");
        let mode: String = select_one(&server_side, "PRAGMA journal_mode = WAL").await;
        assert_eq!(mode, "wal");

        db.create_room(&["--title", "Lobby"]);
        db.create_user("ann", "correct horse").assert_success();

        let rooms: i64 = select_one(&server_side, "SELECT COUNT(*) FROM rooms").await;
        let users: i64 = select_one(&server_side, "SELECT COUNT(*) FROM users").await;
        // General, which the migrations seed, and Lobby.
        assert_eq!((rooms, users), (2, 1));
        let mode: String = select_one(&server_side, "PRAGMA journal_mode").await;
        assert_eq!(mode, "wal", "the file stays in WAL mode");
    });
}

/// The one value `sql` selects.
async fn select_one<T: sea_orm::TryGetable>(db: &sea_orm::DatabaseConnection, sql: &str) -> T {
    use sea_orm::{ConnectionTrait, Statement};
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect(sql)
        .expect("a row")
        .try_get_by_index(0)
        .expect("a value of the asked type")
}

#[test]
fn bad_room_input_gets_one_line_and_writes_nothing() {
    let db = Database::new();
    let fresh = db.rooms();
    db.run(&["createroom", "--title", "   "]).assert_error(2);
    db.assert_refused(&["deleteroom", "lobby"], "lobby");
    db.run(&["deleteroom", "-1"]).assert_error(2);
    db.run(&["deleteroom"]).assert_error(2);
    assert_eq!(db.rooms(), fresh);
}

#[test]
fn history_prints_the_latest_messages_oldest_first() {
    let db = Database::new();
    db.create_user("ann", "correct horse").assert_success();
    let ann = db.user("ann").expect("ann exists").id.0;
    let room = db.create_room(&["--title", "Lobby"]);
    let mut texts: Vec<String> = (1..=24).map(|i| format!("message {i}")).collect();
    texts.push("two\nlines".to_owned());
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    db.send(&room, ann, &texts);
    // An author whose account is gone.
    db.send(&room, ann + 100, &["from nobody"]);

    let lines = db.history(&[&room]);
    assert_eq!(lines.len(), 20, "the default limit");
    assert_eq!(
        lines[0],
        ["7", "2025-11-24T16:00:06.000Z", "ann", "message 7"].map(String::from)
    );
    assert_eq!(lines[18][3], "two\\nlines", "one line per message");
    assert_eq!(lines[19][0], "26");
    assert_eq!(lines[19][2], format!("(user-{})", ann + 100));

    let last_two: Vec<String> = db
        .history(&["--limit", "2", &room])
        .into_iter()
        .map(|[seq, ..]| seq)
        .collect();
    assert_eq!(last_two, ["25", "26"]);

    // A room without messages prints nothing.
    let empty = db.create_room(&["--title", "Empty"]);
    assert!(db.history(&[&empty]).is_empty());
}

#[test]
fn clearhistory_prints_the_new_epoch_and_numbering_goes_on() {
    let db = Database::new();
    let room = db.create_room(&["--title", "Lobby"]);
    db.send(&room, 1, &["one", "two"]);
    let before = db.log_state(&room);

    let run = db.run(&["clearhistory", &room]);
    run.assert_success();
    let epoch = run.stdout.lines().last().expect("an epoch line");
    let after = db.log_state(&room);
    assert_eq!(after.epoch.0, epoch);
    assert_ne!(after.epoch, before.epoch);
    assert_eq!((after.latest.0, after.oldest), (2, None));
    assert!(db.history(&[&room]).is_empty());

    db.send(&room, 1, &["three"]);
    assert_eq!(db.history(&[&room])[0][..1], ["3".to_owned()]);
}

#[test]
fn bad_history_input_gets_one_line_and_exit_2() {
    let db = Database::new();
    let room = db.create_room(&["--title", "Lobby"]);
    db.send(&room, 1, &["kept"]);
    db.assert_refused(&["history", "lobby"], "lobby");
    db.assert_refused(&["history", "99"], "99");
    db.assert_refused(&["history", &room, "--limit", "0"], "0");
    db.assert_refused(&["history", &room, "--limit", "many"], "many");
    db.run(&["history"]).assert_error(2);
    db.assert_refused(&["clearhistory", "99"], "99");
    db.run(&["clearhistory", "-1"]).assert_error(2);
    db.run(&["clearhistory"]).assert_error(2);
    assert_eq!(db.history(&[&room]).len(), 1, "nothing was cleared");
}

#[test]
fn setstaff_grants_and_removes_staff() {
    let db = Database::new();
    db.create_user("bob", "long enough").assert_success();
    db.run(&["setstaff", "--username", "bob"]).assert_success();
    assert!(db.user("bob").expect("bob").is_staff);
    db.run(&["setstaff", "--username", "bob", "--off"])
        .assert_success();
    assert!(!db.user("bob").expect("bob").is_staff);
    db.run(&["setstaff", "--username", "nobody"])
        .assert_error(2);
}

#[test]
fn changepassword_replaces_the_password() {
    let db = Database::new();
    db.create_user("ann", "old password").assert_success();
    db.run(&[
        "changepassword",
        "--username",
        "ann",
        "--password",
        "new password",
    ])
    .assert_success();
    assert!(db.authenticates("ann", "new password"));
    assert!(!db.authenticates("ann", "old password"));

    let piped = db.run_with_stdin(
        &["changepassword", "--username", "ann"],
        Some("third password\nthird password\n"),
    );
    piped.assert_success();
    assert!(db.authenticates("ann", "third password"));

    db.run(&["changepassword", "--username", "ann", "--password", "short"])
        .assert_error(2);
    db.run(&[
        "changepassword",
        "--username",
        "nobody",
        "--password",
        "long enough",
    ])
    .assert_error(2);
    assert!(db.authenticates("ann", "third password"));
}

#[test]
fn deactivate_and_activate_say_what_changed() {
    let db = Database::new();
    db.create_user("bob", "correct horse").assert_success();
    for (args, said, active) in [
        (["deactivate", "bob"], "deactivated \"bob\"", false),
        (["deactivate", "bob"], "\"bob\" was already inactive", false),
        (["activate", "bob"], "reactivated \"bob\"", true),
        (["activate", "bob"], "\"bob\" was already active", true),
    ] {
        let run = db.run(&args);
        run.assert_success();
        assert!(run.stdout.starts_with(said), "{run:#?}");
        assert_eq!(db.user("bob").expect("bob").is_active, active, "{args:?}");
        assert_eq!(db.authenticates("bob", "correct horse"), active, "{args:?}");
    }
    db.assert_refused(&["deactivate", "nobody"], "no such user");
    db.assert_refused(&["activate", "nobody"], "no such user");
    assert_eq!(db.user_count(), 1);
}

#[test]
fn deleteuser_keeps_the_messages_as_from_a_deleted_user() {
    let db = Database::new();
    db.create_user("bob", "correct horse").assert_success();
    db.create_user("ann", "correct horse").assert_success();
    let bob = db.user("bob").expect("bob").id.0;
    let room = db.create_room(&["--title", "Lobby"]);
    db.send(&room, bob, &["hello from bob"]);
    let run = db.run(&["deleteuser", "bob"]);
    run.assert_success();
    assert!(run.stdout.starts_with("deleted \"bob\""), "{run:#?}");
    assert!(db.user("bob").is_none());
    assert!(!db.authenticates("bob", "correct horse"));
    let [line] = &db.history(&[&room])[..] else {
        panic!("one message");
    };
    assert_eq!(line[2], format!("(user-{bob})"));
    assert_eq!(line[3], "hello from bob");
    db.assert_refused(&["deleteuser", "bob"], "no such user");
    db.assert_refused(&["deleteuser"], "USER");
    assert_eq!(db.user_count(), 1, "ann stays");
}

#[test]
fn command_line_mistakes_get_one_line_and_exit_2() {
    let db = Database::new();
    db.run(&["frobnicate"]).assert_error(2);
    db.run(&["rooms", "--bogus"]).assert_error(2);
    db.assert_refused(&["createuser", "--username", "ann"], "--password");
    assert!(!db.file_exists());
}

#[test]
fn help_and_version_succeed() {
    let mut help = Command::new(env!("CARGO_BIN_EXE_whisper-manage"));
    help.arg("--help");
    let help = manage(help, None);
    help.assert_success();
    for command in [
        "migrate",
        "createsuperuser",
        "createroom",
        "deleteroom",
        "setstaff",
        "deactivate",
        "activate",
        "deleteuser",
        "history",
        "clearhistory",
    ] {
        assert!(help.stdout.contains(command), "{help:#?}");
    }
    let mut version = Command::new(env!("CARGO_BIN_EXE_whisper-manage"));
    version.arg("--version");
    manage(version, None).assert_success();
}

#[test]
fn an_unopenable_database_is_an_operational_error() {
    let db = Database::new();
    let url = format!(
        "sqlite://{}/missing-folder/x.db?mode=rwc",
        db.dir.path().display()
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_whisper-manage"));
    command.args(["--database-url", &url, "rooms"]);
    manage(command, None).assert_error(1);
}

#[test]
fn every_command_works_on_postgres_too() {
    let db = Database::postgres();
    db.run(&["migrate"]).assert_success();
    db.create_user("ann", "correct horse").assert_success();
    db.create_user("ann", "correct horse").assert_error(2);
    db.run(&[
        "createsuperuser",
        "--username",
        "root",
        "--password",
        "correct horse",
        "--noinput",
    ])
    .assert_success();
    assert_eq!(db.user_count(), 2);

    db.run(&["setstaff", "--username", "ann"]).assert_success();
    assert!(db.user("ann").expect("ann exists").is_staff);
    db.run(&[
        "changepassword",
        "--username",
        "ann",
        "--password",
        "battery staple",
    ])
    .assert_success();
    assert!(db.authenticates("ann", "battery staple"));
    db.run(&["deactivate", "ann"]).assert_success();
    assert!(!db.authenticates("ann", "battery staple"));
    db.run(&["activate", "ann"]).assert_success();
    assert!(db.authenticates("ann", "battery staple"));
    db.create_user("bob", "correct horse").assert_success();
    db.run(&["deleteuser", "bob"]).assert_success();
    assert!(db.user("bob").is_none());

    let id = db.create_room(&["--title", "Lobby", "--staff-only"]);
    assert!(
        db.rooms()
            .iter()
            .any(|line| line.contains("Lobby") && line.contains("staff-only"))
    );
    db.send(&id, 1, &["hello"]);
    assert_eq!(db.history(&[&id]).len(), 1);
    db.run(&["clearhistory", &id]).assert_success();
    assert!(db.history(&[&id]).is_empty());

    db.run(&["deleteroom", &id]).assert_success();
    db.run(&["deleteroom", &id]).assert_error(2);
    assert!(!db.rooms().iter().any(|line| line.contains("Lobby")));
}

/// The commands that change who may use what record the change for the
/// running servers (which read it within a second), after making it; and
/// every command that changes anything writes the moderation record.
#[test]
fn changes_are_recorded_for_the_servers_and_the_moderation_record() {
    let db = Database::new();
    db.create_user("bob", "correct horse").assert_success();
    let bob = db.user("bob").expect("bob").id.0;
    let room = db.create_room(&["--title", "Doomed"]);
    let room_id = RoomId(room.parse().expect("an id"));
    for args in [
        vec![
            "changepassword",
            "--username",
            "bob",
            "--password",
            "new horse battery",
        ],
        vec!["setstaff", "--username", "bob"],
        vec!["deactivate", "bob"],
        vec!["activate", "bob"],
        vec!["deleteroom", room.as_str()],
        vec!["deleteuser", "bob"],
    ] {
        db.run(&args).assert_success();
    }
    let other = db.create_room(&["--title", "Not a change"]);
    db.run(&["history", &other]).assert_success();
    let recorded = db.with_db(async |db| ChangeFeed::new(db).after(0, 10).await.expect("feed"));
    let changes: Vec<AccessChange> = recorded
        .iter()
        .map(|row| row.change.parse().expect("a change"))
        .collect();
    assert_eq!(
        changes,
        [
            AccessChange::User(bob),
            AccessChange::User(bob),
            AccessChange::User(bob),
            AccessChange::User(bob),
            AccessChange::RoomDeleted(room_id),
            AccessChange::User(bob),
        ]
    );
    let record = db.with_db(async |db| ModerationRecord::new(db).latest(20).await.expect("record"));
    let entries: Vec<String> = record
        .iter()
        .rev()
        .map(|entry| {
            assert_eq!(entry.actor, "whisper-manage");
            format!("{} {} {}", entry.action, entry.subject, entry.detail)
        })
        .collect();
    let doomed = format!("room {room} \"Doomed\"");
    assert_eq!(
        entries,
        [
            "create-user user bob ".to_owned(),
            format!("create-room {doomed} "),
            "reset-password user bob ".to_owned(),
            "grant-staff user bob ".to_owned(),
            "deactivate user bob ".to_owned(),
            "activate user bob ".to_owned(),
            format!("delete-room {doomed} "),
            "delete-user user bob ".to_owned(),
            format!("create-room room {other} \"Not a change\" "),
        ],
        "reads leave no entry"
    );
}
