//! The bench binary against a real server started in this process (or two
//! sharing rooms through a redis-server of the test's own): short runs of
//! each scenario, in protocol v1 and v2, must report clean numbers (no
//! loss, no seq gap or duplicate, every recovery complete, every history
//! page right), and mistakes
//! on the command line must get one line and exit code 2.

use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::{Value, json};
use whisper_rooms::{RedisConfig, RedisLayer};
use whisper_testkit::RedisServer;
use whisper_tests::TestServer;

const BENCH: &str = env!("CARGO_BIN_EXE_whisper-bench");

/// A server that lets the bench send as fast as it can and open many
/// sockets per user, as the bench's help asks.
async fn bench_server() -> TestServer {
    TestServer::start_with(|config| {
        config.max_messages_per_second = 1_000_000;
        config.max_connections_per_user = 10_000;
    })
    .await
}

/// A bench server on `database_url` whose rooms go through `redis`, as
/// `whisper-server --redis-url` runs; only the first node of a database
/// migrates it. It is never restarted (its layer is made once).
async fn redis_node(redis: &RedisServer, database_url: &str, migrate: bool) -> TestServer {
    let layer = RedisLayer::connect(RedisConfig::new(redis.url()))
        .await
        .expect("Redis layer");
    let layer = Mutex::new(Some(layer));
    TestServer::start_with_layer(
        |config| {
            config.max_messages_per_second = 1_000_000;
            config.max_connections_per_user = 10_000;
            config.database_url = database_url.to_owned();
            config.migrate = migrate;
        },
        move |_| {
            layer
                .lock()
                .expect("layer lock")
                .take()
                .expect("the node starts once")
        },
    )
    .await
}

/// The value of the sample `name` in a node's `/metrics`.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// Runs the bench off the async runtime (the server lives on it).
async fn bench(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BENCH)
            .args(&args)
            .output()
            .expect("whisper-bench runs")
    })
    .await
    .expect("the bench's thread")
}

/// The one JSON line a successful run prints.
fn report(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stdout: {stdout}");
    serde_json::from_str(lines[0]).expect("the line is JSON")
}

/// Asserts that each of `fields` of a report's `results` is 0 (nothing
/// lost, refused, out of order, ...).
fn assert_zero(results: &Value, fields: &[&str]) {
    for field in fields {
        assert_eq!(results[*field], 0, "{field}: {results}");
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

/// The options in `common`, then a short closed-loop fanout over `rooms`
/// rooms of `members`: two senders per room keep eight messages each in
/// flight for a second.
fn short_fanout(common: &[&str], rooms: u64, members: u64) -> Vec<String> {
    let mut all = args(common);
    all.extend(args(&[
        "fanout",
        "--rooms",
        &rooms.to_string(),
        "--members",
        &members.to_string(),
        "--senders",
        "2",
        "--window",
        "8",
        "--duration",
        "1",
        "--warmup",
        "0.3",
    ]));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_fanout_loses_nothing() {
    let server = bench_server().await;
    let rooms = [
        server.create_room("bench one", false).await,
        server.create_room("bench two", false).await,
    ];
    let output = bench(short_fanout(
        &[
            "--url",
            &server.url(""),
            "--room-ids",
            &format!("{},{}", rooms[0], rooms[1]),
            "--server-pid",
            &std::process::id().to_string(),
        ],
        2,
        5,
    ))
    .await;
    let line = report(&output);
    assert_eq!(line["scenario"], "fanout");
    assert_eq!(line["params"]["connections"], 10);
    let results = &line["results"];
    assert!(
        results["deliveries"].as_u64().expect("deliveries") > 0,
        "{line}"
    );
    assert_zero(
        results,
        &["lost", "out_of_order", "disconnected", "rate_limited"],
    );
    // Every message reaches all five members of its room.
    assert_eq!(
        results["deliveries"].as_u64(),
        results["messages"].as_u64().map(|messages| messages * 5),
        "{line}"
    );
    assert!(results["latency"]["p99_ms"].as_f64().is_some(), "{line}");
    assert!(line["cpu"]["server_s"].as_f64().is_some(), "{line}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_fanout_sees_every_seq_once_in_order_and_times_the_results() {
    let server = bench_server().await;
    let rooms = [
        server.create_room("v2 one", false).await,
        server.create_room("v2 two", false).await,
    ];
    let common = [
        "--url",
        &server.url(""),
        "--room-ids",
        &format!("{},{}", rooms[0], rooms[1]),
    ];
    // Closed loop, then open loop.
    let mut closed = short_fanout(&common, 2, 4);
    closed.extend(args(&["--protocol", "v2"]));
    let mut open = args(&common);
    open.extend(args(&[
        "fanout",
        "--protocol",
        "v2",
        "--rooms",
        "2",
        "--members",
        "4",
        "--senders",
        "2",
        "--rate",
        "100",
        "--duration",
        "0.6",
        "--warmup",
        "0.2",
    ]));
    for run in [closed, open] {
        let line = report(&bench(run).await);
        assert_eq!(line["params"]["protocol"], "v2", "{line}");
        let results = &line["results"];
        let messages = results["messages"].as_u64().expect("messages");
        assert!(messages > 0, "{line}");
        assert_zero(results, &["lost", "out_of_order", "disconnected"]);
        assert_eq!(results["deliveries"].as_u64(), Some(messages * 4), "{line}");
        assert_eq!(
            results["seq"],
            json!({"gaps": 0, "missing": 0, "duplicates": 0, "out_of_order": 0}),
            "{line}"
        );
        // Every send in the window got its result.
        assert_eq!(
            results["ack_latency"]["samples"].as_u64(),
            Some(messages),
            "{line}"
        );
        assert!(
            results["ack_latency"]["p99_ms"].as_f64().is_some(),
            "{line}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_v2_sockets_recover_everything_they_missed() {
    const SOCKETS: u64 = 30;
    const MESSAGES: u64 = 40;
    let server = bench_server().await;
    let rooms = [
        server.create_room("recover one", false).await,
        server.create_room("recover two", false).await,
    ];
    let line = report(
        &bench(args(&[
            "--url",
            &server.url(""),
            "--room-ids",
            &format!("{},{}", rooms[0], rooms[1]),
            "--server-pid",
            &std::process::id().to_string(),
            "recovery",
            "--sockets",
            &SOCKETS.to_string(),
            "--rooms",
            "2",
            "--messages",
            &MESSAGES.to_string(),
            "--timeout",
            "20",
        ]))
        .await,
    );
    assert_eq!(line["scenario"], "recovery");
    let results = &line["results"];
    assert_eq!(results["caught_up"].as_u64(), Some(SOCKETS), "{line}");
    assert!(results["catch_up_s"].as_f64().is_some(), "{line}");
    assert_zero(
        results,
        &[
            "not_recovered",
            "missing",
            "duplicates",
            "out_of_order",
            "gaps",
        ],
    );
    // Every socket got its room's messages in its join result.
    assert_eq!(
        results["messages_from_results"].as_u64(),
        Some(SOCKETS * MESSAGES),
        "{line}"
    );
    assert_eq!(line["setup"]["refused"], 0, "{line}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoin_too_far_behind_is_counted_as_not_recovered() {
    // The server recovers at most 1000 messages behind: 1001 are not
    // recovered, and the latest page (100) leaves 901 missing per socket.
    let server = bench_server().await;
    let room = server.create_room("too far", false).await;
    let line = report(
        &bench(args(&[
            "--url",
            &server.url(""),
            "--room-ids",
            &room.to_string(),
            "recovery",
            "--sockets",
            "2",
            "--messages",
            "1001",
            "--message-bytes",
            "30",
            "--timeout",
            "2",
        ]))
        .await,
    );
    let results = &line["results"];
    assert_eq!(results["not_recovered"], 2, "{line}");
    assert_eq!(results["caught_up"], 0, "{line}");
    assert_eq!(results["catch_up_s"], Value::Null, "{line}");
    assert_eq!(results["missing"], 2 * 901, "{line}");
    assert_eq!(results["duplicates"], 0, "{line}");
    server.stop().await;
}

/// The options in `common`, then `history` with `extra`: two fill sockets,
/// three readers, pages of 20.
fn history_run(common: &[&str], extra: &[&str]) -> Vec<String> {
    let mut all = args(common);
    all.extend(args(&[
        "history",
        "--fill-sockets",
        "2",
        "--readers",
        "3",
        "--limit",
        "20",
        "--warmup",
        "0.2",
    ]));
    all.extend(args(extra));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_fills_the_room_once_and_every_page_is_right() {
    let server = bench_server().await;
    let room = server.create_room("long history", false).await;
    let room_ids = room.to_string();
    let pid = std::process::id().to_string();
    let common = [
        "--url",
        &server.url(""),
        "--room-ids",
        &room_ids,
        "--server-pid",
        &pid,
    ];

    // An empty room is filled with all 300, then read for a second.
    let line = report(
        &bench(history_run(
            &common,
            &["--messages", "300", "--duration", "1"],
        ))
        .await,
    );
    assert_eq!(line["scenario"], "history");
    let setup = &line["setup"];
    assert_eq!(setup["held_before_fill"], 0, "{line}");
    assert_eq!(setup["fill"]["stored"], 300, "{line}");
    assert_eq!(setup["fill"]["refused"], 0, "{line}");
    assert!(setup["fill"]["stored_per_s"].as_f64().expect("rate") > 0.0);
    assert_eq!(
        setup["room"],
        json!({"epoch": setup["room"]["epoch"], "first_seq": 1, "latest_seq": 300, "held": 300}),
        "{line}"
    );
    assert_eq!(setup["room_after"], setup["room"], "{line}");
    let results = &line["results"];
    let pages = results["pages"].as_u64().expect("pages");
    assert!(pages > 0, "{line}");
    assert_eq!(
        results["latency"]["samples"].as_u64(),
        Some(pages),
        "{line}"
    );
    assert!(results["pages_checked"].as_u64().expect("checked") >= pages);
    assert_eq!(results["wrong_pages"], 0, "{line}");
    assert_eq!(results["errors"], json!({}), "{line}");
    assert_eq!(results["disconnected"], 0, "{line}");
    assert!(line["cpu"]["server_s"].as_f64().is_some(), "{line}");

    // Asked for 450: only the 150 missing are sent; then 60 pages exactly.
    let line = report(
        &bench(history_run(
            &common,
            &["--messages", "450", "--pages", "60"],
        ))
        .await,
    );
    assert_eq!(line["setup"]["held_before_fill"], 300, "{line}");
    assert_eq!(line["setup"]["fill"]["stored"], 150, "{line}");
    assert_eq!(line["setup"]["room"]["held"], 450, "{line}");
    assert_eq!(line["results"]["pages"], 60, "{line}");
    assert_eq!(line["results"]["wrong_pages"], 0, "{line}");

    // A room holding enough already is only read.
    let line = report(
        &bench(history_run(
            &common,
            &["--messages", "200", "--pages", "10"],
        ))
        .await,
    );
    assert_eq!(line["setup"]["fill"], Value::Null, "{line}");
    assert_eq!(line["results"]["pages"], 10, "{line}");
    assert_eq!(line["results"]["wrong_pages"], 0, "{line}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_the_server_will_not_keep_full_fails_the_history_run() {
    // Retention keeps 100 and runs every 10 ms: a fill of 2000 cannot stay.
    let server = TestServer::start_with(|config| {
        config.max_messages_per_second = 1_000_000;
        config.max_connections_per_user = 10_000;
        config.history_max_per_room = 100;
        config.history_prune_interval = std::time::Duration::from_millis(10);
    })
    .await;
    let room = server.create_room("short memory", false).await;
    let output = bench(history_run(
        &["--url", &server.url(""), "--room-ids", &room.to_string()],
        &["--messages", "2000", "--pages", "10"],
    ))
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("error: room {room} holds "))
            && last.contains("--history-max-per-room 2000"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanout_over_two_nodes_sharing_redis_loses_nothing() {
    const MEMBERS: u64 = 6;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("shared.db").display()
    );
    let a = redis_node(&redis, &database_url, true).await;
    let b = redis_node(&redis, &database_url, false).await;
    let room = a.create_room("across nodes", false).await;
    let pid = std::process::id().to_string();
    let output = bench(short_fanout(
        &[
            "--url",
            &a.url(""),
            "--url",
            &b.url(""),
            "--room-ids",
            &room.to_string(),
            "--server-pid",
            &format!("{pid},{pid}"),
        ],
        1,
        MEMBERS,
    ))
    .await;
    let line = report(&output);
    assert_eq!(line["params"]["url"], json!([a.url("/"), b.url("/")]));
    let results = &line["results"];
    let messages = results["messages"].as_u64().expect("messages");
    assert!(messages > 0, "{line}");
    assert_zero(results, &["lost", "out_of_order", "disconnected"]);
    assert_eq!(
        results["deliveries"].as_u64(),
        Some(messages * MEMBERS),
        "{line}"
    );
    // Half the members on each node: each node delivered every message
    // (the warm-up's too) to its three.
    for node in [&a, &b] {
        let delivered = metric(node, "whisper_deliveries_total").await;
        assert!(
            delivered >= (messages * MEMBERS / 2) as f64,
            "{delivered} deliveries on {}: {line}",
            node.url("")
        );
    }
    assert_eq!(
        line["cpu"]["server_s_by_node"].as_array().map(Vec::len),
        Some(2),
        "{line}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_fanout_creates_its_room_with_whisper_manage() {
    let server = bench_server().await;
    let room = server.create_room("made by manage", false).await;
    // A stand-in for whisper-manage: prints what createroom prints (the id
    // last) and records how it was called.
    let dir = tempfile::tempdir().expect("temporary directory");
    let script = dir.path().join("fake-manage");
    let calls = dir.path().join("calls");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\necho 'Created the room.'\necho {room}\n",
            calls.display()
        ),
    )
    .expect("script written");
    make_executable(&script);
    let output = bench(args(&[
        "--url",
        &server.url(""),
        "--database-url",
        "sqlite://somewhere.db",
        "--manage-bin",
        script.to_str().expect("utf-8 path"),
        "fanout",
        "--members",
        "3",
        "--rate",
        "100",
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
    ]))
    .await;
    let line = report(&output);
    assert_eq!(line["params"]["room_ids"], serde_json::json!([room]));
    assert_eq!(line["params"]["load"], "open");
    assert_eq!(line["results"]["lost"], 0, "{line}");
    assert!(line["results"]["deliveries"].as_u64().expect("deliveries") > 0);
    let called = std::fs::read_to_string(&calls).expect("manage was called");
    assert!(
        called.starts_with("--database-url sqlite://somewhere.db createroom --title"),
        "{called}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conns_reach_every_connection_measure_memory_and_hold_idle() {
    let server = bench_server().await;
    let room = server.create_room("crowd", false).await;
    let output = bench(args(&[
        "--url",
        &server.url(""),
        "--room-ids",
        &room.to_string(),
        "--server-pid",
        &std::process::id().to_string(),
        "--source-ips",
        "3",
        // 13 users: past the server's 10 signups per address and hour, so
        // the bench must sign them up from several.
        "--connections-per-user",
        "4",
        "conns",
        "--connections",
        "50",
        "--broadcasts",
        "3",
        "--idle-s",
        "1",
    ]))
    .await;
    let line = report(&output);
    assert_eq!(line["scenario"], "conns");
    assert_eq!(line["params"]["users"], 13, "{line}");
    assert!(
        line["cpu"]["idle"]["interval_s"].as_f64().expect("idle") >= 1.0,
        "{line}"
    );
    let results = &line["results"];
    assert_eq!(results["connected"], 50, "{line}");
    assert_zero(
        results,
        &["failed", "incomplete_broadcasts", "disconnected"],
    );
    assert!(results["broadcast_ms"]["p50"].as_f64().is_some(), "{line}");
    assert_eq!(
        results["broadcast_ms"]["all"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(results["connects_per_s"].as_f64().expect("rate") > 0.0);
    assert!(
        results["server_rss_per_connection_kib"].as_f64().is_some(),
        "{line}"
    );
    server.stop().await;
}

/// The options of a `conns` run of 300 connections in one room over three
/// bench processes, against `server`.
fn conns_over_three_processes(server: &TestServer, room: i64, extra: &[&str]) -> Vec<String> {
    let mut all = args(&[
        "--url",
        &server.url(""),
        "--room-ids",
        &room.to_string(),
        "--server-pid",
        &std::process::id().to_string(),
        "--connections-per-user",
        "100",
        "conns",
        "--connections",
        "300",
        "--processes",
        "3",
    ]);
    all.extend(args(extra));
    all
}

/// The pids of bench workers started against `url` (from their command
/// lines in /proc), to kill one or to see that none is left.
fn workers_against(url: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let words: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
            words.contains(&&b"--worker"[..]) && words.contains(&url.as_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conns_over_three_processes_reach_every_connection() {
    let server = bench_server().await;
    let room = server.create_room("three processes", false).await;
    let output = bench(conns_over_three_processes(
        &server,
        room,
        &["--broadcasts", "3"],
    ))
    .await;
    let line = report(&output);
    assert_eq!(line["params"]["processes"], 3, "{line}");
    // 301 sockets (the announcer too), 100 per user.
    assert_eq!(line["params"]["users"], 4, "{line}");
    let results = &line["results"];
    assert_eq!(results["connected"], 300, "{line}");
    assert_zero(
        results,
        &["failed", "incomplete_broadcasts", "disconnected"],
    );
    let times = results["broadcast_ms"]["all"].as_array().expect("times");
    assert_eq!(times.len(), 3, "{line}");
    assert!(
        times
            .iter()
            .all(|time| time.as_f64().is_some_and(|ms| ms > 0.0 && ms < 10_000.0)),
        "{line}"
    );
    assert!(results["connects_per_s"].as_f64().expect("rate") > 0.0);
    assert!(
        results["server_rss_per_connection_kib"].as_f64().is_some(),
        "{line}"
    );
    assert!(
        line["cpu"]["connect"]["bench_s"].as_f64().is_some(),
        "{line}"
    );
    assert_eq!(workers_against(&server.url("")), Vec::<u32>::new());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_ends_the_run_in_one_line_and_none_is_left() {
    let server = bench_server().await;
    let room = server.create_room("a worker dies", false).await;
    let url = server.url("");
    let child = Command::new(BENCH)
        .args(conns_over_three_processes(
            &server,
            room,
            &["--idle-s", "30"],
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("whisper-bench starts");
    let victim = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let workers = workers_against(&url);
            if workers.len() == 2 || std::time::Instant::now() > deadline {
                return workers.first().copied();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    })
    .await
    .expect("the search's thread")
    .expect("two workers started");
    let killed = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("the bench's thread")
        .expect("whisper-bench ends");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with("error: bench process ") && errors[0].contains(" of 3: "),
        "{stderr}"
    );
    assert!(
        errors[0].contains("SIGKILL") || errors[0].contains("signal: 9"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    // The other worker was killed with the run: none is left.
    assert_eq!(workers_against(&server.url("")), Vec::<u32>::new());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_that_does_not_exist_fails_the_run_in_one_line() {
    let server = bench_server().await;
    let output = bench(args(&[
        "--url",
        &server.url(""),
        "--room-ids",
        "999999",
        "fanout",
        "--members",
        "2",
        "--duration",
        "0.5",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cannot connect:") && last.contains("ROOM_INVALID"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    server.stop().await;
}

#[test]
fn bad_arguments_get_one_line_and_exit_2() {
    for bad in [
        &["fanout", "--members", "0", "--room-ids", "1"][..],
        &["fanout", "--bogus"],
        &["conns", "--connections", "many", "--room-ids", "1"],
        &["fanout", "--rate", "10", "--window", "3", "--room-ids", "1"],
        &[
            "fanout",
            "--members",
            "2",
            "--senders",
            "3",
            "--room-ids",
            "1",
        ],
        &["fanout"],
        &["history", "--limit", "101", "--room-ids", "1"],
        &[
            "history",
            "--pages",
            "5",
            "--duration",
            "2",
            "--room-ids",
            "1",
        ],
        &["--url", "ftp://example", "conns", "--room-ids", "1"],
        &["conns", "--processes", "0", "--room-ids", "1"],
        &[
            "conns",
            "--connections",
            "2",
            "--processes",
            "3",
            "--room-ids",
            "1",
        ],
        &[],
    ] {
        let output = Command::new(BENCH).args(bad).output().expect("runs");
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{bad:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{bad:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{bad:?}");
    }
}

#[test]
fn several_urls_come_from_the_environment_with_one_pid_each() {
    let output = Command::new(BENCH)
        .env("WHISPER_BENCH_URL", "http://127.0.0.1:1,http://127.0.0.1:2")
        .args(["--server-pid", "7", "conns", "--room-ids", "1"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 --server-pid for 2 --url nodes"),
        "{stderr}"
    );
}

#[test]
fn help_tells_how_to_start_the_server() {
    let output = Command::new(BENCH).arg("--help").output().expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--max-messages-per-second 1000000"), "{help}");
    assert!(help.contains("--max-connections-per-user"), "{help}");
    assert!(help.contains("recovery"), "{help}");
    for (scenario, flag) in [
        ("fanout", "--protocol <PROTOCOL>"),
        ("conns", "--processes <K>"),
        ("recovery", "--sockets"),
        ("history", "--fill-sockets"),
    ] {
        let output = Command::new(BENCH)
            .args([scenario, "--help"])
            .output()
            .expect("runs");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains(flag), "{scenario}: {help}");
    }
}

fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = std::fs::metadata(path).expect("metadata").permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions).expect("chmod");
}
