//! The built `whisper-server` binary: argument errors, start-up on a fresh
//! SQLite file, a clean exit on SIGTERM, and what its log looks like (the
//! first-superuser hint included).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_whisper-server");

#[test]
fn bad_arguments_get_one_line_and_exit_code_2() {
    for args in [
        vec!["--no-such-flag"],
        vec!["--bind", "not-an-address"],
        vec!["--max-message-bytes", "0"],
        vec!["--notice-delay-ms", "5001"],
        vec!["--notice-delay-ms", "-1"],
        vec!["--open-signup", "maybe"],
        vec!["--log-format", "xml"],
        vec!["--max-connections", "0"],
        vec!["--max-connections", "many"],
        vec!["--trusted-proxies", "10.0.0.0/33"],
        vec!["--trusted-proxies", "127.0.0.1,nginx"],
    ] {
        let output = Command::new(BIN).args(&args).output().expect("runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let secret = "Sw0rdf1sh-db-secret";
    let database = format!("postgres://whisper:{secret}@127.0.0.1:{closed_port}/whisper");
    let output = Command::new(BIN)
        .args(["--bind", "127.0.0.1:0", "--database-url", &database])
        .env("RUST_LOG", "warn")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains(secret), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "postgres://whisper:***@127.0.0.1:{closed_port}/whisper"
        )),
        "the URL is still named: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

#[test]
fn starts_on_a_fresh_sqlite_file_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("fresh.db").display()
    );
    let mut child = Command::new(BIN)
        .args(["--bind", "127.0.0.1:0", "--database-url", &database])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .trim()
        .strip_prefix("Whisper is listening on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    let health = http_get(&addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.ends_with(r#"{"status":"ok","database":"ok","channel_layer":"ok"}"#),
        "{health}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn sigterm_closes_open_websockets_with_going_away() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let server = whisper_tests::ServerProcess::start(BIN, &["--database-url", &database]);
    let db = whisper_tests::TestDatabase::connect(&database).await;
    db.create_user("ann", "correct horse", false).await;
    let session = server.login("ann", "correct horse").await.expect("login");
    let mut socket = server.connect(&session).await;
    let stopping = std::thread::spawn(move || server.terminate());
    let frame = socket.close_frame().await.expect("a close frame");
    assert_eq!(
        frame.code,
        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Away
    );
    let status = stopping.join().expect("terminate");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn no_secret_reaches_the_log_even_at_trace_level() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let server =
        whisper_tests::ServerProcess::start_logging_to(BIN, &["--database-url", &database], log);

    let password = "Tr0ub4dor&3-secret";
    let client = whisper_tests::http_client();
    let csrf = whisper_tests::csrf_token(&client, &server.url("/accounts/signup/")).await;
    let signup = server
        .post_form(
            "/accounts/signup/",
            &csrf,
            &[
                ("username", "ann"),
                ("password1", password),
                ("password2", password),
            ],
        )
        .await;
    assert_eq!(signup.status(), 302);
    assert!(server.login("ann", "wrong password").await.is_none());
    let session = server.login("ann", password).await.expect("login");
    let mut socket = server.connect(&session).await;
    socket.send_text(r#"{"command":"join","room":1}"#).await;
    socket.recv_text().await;
    let status = server.terminate();
    assert!(status.success());

    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        log.contains("logged in"),
        "the log is really at trace level:\n{log:.2000}"
    );
    for secret in [
        password,
        session.sessionid.as_str(),
        csrf.as_str(),
        "$argon2",
    ] {
        assert!(!log.contains(secret), "{secret:?} appears in the log");
    }
}

/// Runs the server with `args` on a fresh database, logging at trace level
/// to a file (not a terminal), through one request and SIGTERM, and
/// returns the log.
async fn log_of_a_run(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    log_of_a_run_on(&database, args).await
}

/// [`log_of_a_run`] on the database at `database`.
async fn log_of_a_run_on(database: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut all_args = vec!["--database-url", database];
    all_args.extend_from_slice(args);
    let server = whisper_tests::ServerProcess::start_logging_to(BIN, &all_args, log);
    // Answered, so the server is past start-up and handles SIGTERM.
    assert_eq!(server.get("/healthz").await.0, 200);
    assert!(server.terminate().success());
    std::fs::read_to_string(&log_path).expect("log")
}

#[tokio::test]
async fn log_lines_are_json_objects_with_log_format_json() {
    let log = log_of_a_run(&["--log-format", "json"]).await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line:?}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["message"] == "shutting down: closing connections"),
        "{log:.2000}"
    );
}

#[tokio::test]
async fn text_logs_carry_no_colour_codes_outside_a_terminal() {
    let log = log_of_a_run(&[]).await;
    assert!(log.contains("shutting down"), "{log:.2000}");
    assert!(!log.contains("\x1b["), "colour codes in {log:.2000}");
}

#[tokio::test]
async fn the_log_says_how_to_make_a_superuser_until_there_is_one() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let hint = "no superuser yet: create one with `whisper-manage createsuperuser`";
    let log = log_of_a_run_on(&database, &[]).await;
    assert!(log.contains(hint), "{log:.2000}");

    // The first run migrated the database.
    let db = whisper_tests::TestDatabase::connect(&database).await;
    db.create_superuser("root", "correct horse").await;
    let log = log_of_a_run_on(&database, &[]).await;
    assert!(log.contains("shutting down"), "a whole run: {log:.2000}");
    assert!(!log.contains("no superuser"), "{log:.2000}");
}
