//! Login and signup under abuse, against the built `whisper-server` as a
//! separate process, so its memory can be read from `/proc`: a burst of
//! password checks must neither take the machine's memory nor keep it.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use whisper_tests::{ServerProcess, http_client_from};

const BIN: &str = env!("CARGO_BIN_EXE_whisper-server");

const MIB: u64 = 1024 * 1024;

/// Any 32 characters or more pass as a CSRF token when the cookie holds
/// the same.
const CSRF: &str = "abusiveabusiveabusiveabusiveabusive";

/// A server on a fresh SQLite file in `dir`.
fn start(dir: &tempfile::TempDir, args: &[&str]) -> ServerProcess {
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
    let mut all = vec!["--database-url", database.as_str()];
    all.extend_from_slice(args);
    ServerProcess::start(BIN, &all)
}

/// The `n`th of many client addresses, 127.0.0.2 to 127.0.0.251.
fn source(n: usize) -> IpAddr {
    let last = u8::try_from(2 + n % 250).expect("a byte");
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_and_signups_keeps_memory_bounded() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = start(&dir, &[]);
    server.wait_for_health(200).await;
    let started = server.memory();

    // Every attempt names its own user, so no per-username limit applies,
    // and half of them come from each address, so no per-address one does.
    let mut attempts = tokio::task::JoinSet::new();
    for n in 0..500 {
        let site = *server;
        attempts.spawn(async move {
            let client = http_client_from(source(n));
            let name = format!("burst{n}");
            let password = format!("burst password {n}");
            let answer = if n % 2 == 0 {
                let fields = [("username", name.as_str()), ("password", &password)];
                site.try_post_form(&client, "/accounts/login/", CSRF, &fields)
                    .await
            } else {
                let fields = [
                    ("username", name.as_str()),
                    ("password1", &password),
                    ("password2", &password),
                ];
                site.try_post_form(&client, "/accounts/signup/", CSRF, &fields)
                    .await
            };
            let answer = answer.expect("an answer within a minute");
            let retry_after = answer.headers().contains_key("retry-after");
            (answer.status().as_u16(), retry_after)
        });
    }
    let answers = attempts.join_all().await;
    let peak = server.memory().peak;

    // Settled: the hashing memory has gone back to the system.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut settled = server.memory().now;
    while settled > started.now + 30 * MIB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        settled = server.memory().now;
    }
    eprintln!(
        "resident memory: {} MiB at start, {} MiB at peak, {} MiB settled",
        started.now / MIB,
        peak / MIB,
        settled / MIB
    );

    let busy = answers.iter().filter(|(status, _)| *status == 503).count();
    let served = answers
        .iter()
        .filter(|(status, _)| matches!(status, 200 | 302))
        .count();
    eprintln!("{served} attempts checked, {busy} answered 503");
    assert!(peak < 200 * MIB, "peak {} MiB", peak / MIB);
    assert!(
        settled <= started.now + 30 * MIB,
        "settled at {} MiB from {} MiB",
        settled / MIB,
        started.now / MIB
    );
    assert!(
        answers
            .iter()
            .all(|(status, retry_after)| matches!(status, 200 | 302)
                || (*status == 503 && *retry_after)),
        "every attempt is checked or answered 503 with Retry-After: {answers:?}"
    );
    assert!(served > 0, "some attempts are checked");
}
