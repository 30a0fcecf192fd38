//! Black-box runs of the built binary: each mode, tiny and on loopback,
//! prints one JSON line with every field and sane values. How fast is not
//! asserted: that is what the tool is for.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A run that takes longer has hung: every run here needs a few seconds.
const DEADLINE: Duration = Duration::from_secs(60);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `fanout-limit ARGS`, killed if it outlives [`DEADLINE`].
fn fanout_limit(args: &[&str]) -> Run {
    run_command(
        Command::new(env!("CARGO_BIN_EXE_fanout-limit")).args(args),
        &format!("fanout-limit {args:?}"),
    )
}

/// Runs `command` (`what` names it), killed if it outlives [`DEADLINE`].
fn run_command(command: &mut Command, what: &str) -> Run {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{what} starts: {error}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still ran after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).expect("stdout");
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).expect("stderr");
    }
    Run {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// The one JSON line of a successful run, checked to hold `fields` in
/// that order (scripts and earlier results rely on the line's layout).
fn report(args: &[&str], fields: &[&str]) -> Value {
    let run = fanout_limit(args);
    assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stdout: {}", run.stdout);
    let report: Value = serde_json::from_str(lines[0]).expect("the line is JSON");
    let object = report.as_object().expect("an object");
    assert_eq!(object.len(), fields.len(), "{report}");
    let at: Vec<usize> = fields
        .iter()
        .map(|field| {
            lines[0]
                .find(&format!("\"{field}\":"))
                .unwrap_or_else(|| panic!("{field} in {report}"))
        })
        .collect();
    assert!(at.is_sorted(), "fields out of order: {report}");
    report
}

fn number(report: &Value, field: &str) -> f64 {
    report[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is a number in {report}"))
}

const BROADCAST_FIELDS: &[&str] = &[
    "mode",
    "conns",
    "conns_requested",
    "layout",
    "servers",
    "server_conns",
    "pinned",
    "nofile_limit",
    "samples",
    "warmup_samples",
    "size",
    "frame_bytes",
    "gap_ms",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "mean_ms",
    "warmup_p50_ms",
    "start_lag_p50_ms",
    "write_loop_p50_ms",
    "write_loop_p50_ms_each",
    "server_us_per_write",
    "server_cpu_ms_per_bcast",
    "server_cpu_ms_per_bcast_each",
    "server_cpu_ms_per_bcast_rusage",
    "server_cpu_ms_per_bcast_rusage_each",
    "server_runq_wait_ms_per_bcast",
    "server_runq_wait_ms_per_bcast_each",
    "server_sys_frac",
    "server_sys_frac_each",
    "client_cpu_ms_per_bcast",
    "client_cpu_ms_per_bcast_each",
    "client_cpu_ms_per_bcast_rusage",
    "client_cpu_ms_per_bcast_rusage_each",
    "client_runq_wait_ms_per_bcast",
    "client_runq_wait_ms_per_bcast_each",
    "client_sys_frac",
    "client_sys_frac_each",
    "machine_cpu_ms_per_bcast",
    "softirq_ms_per_bcast",
    "steal_cores",
    "wall_s",
    "loadavg_1m",
];

const FANOUT_FIELDS: &[&str] = &[
    "mode",
    "variant",
    "pinned",
    "members",
    "window",
    "size",
    "frame_bytes",
    "warmup_s",
    "duration_s",
    "deliveries_per_s",
    "messages_per_s",
    "sent_per_s",
    "msgs_per_batch",
    "server_syscalls_per_msg",
    "server_eagain",
    "server_cpu_util",
    "server_runq_wait_frac",
    "server_sys_frac",
    "server_ns_per_delivery",
    "client_cpu_util",
    "client_runq_wait_frac",
    "client_sys_frac",
    "machine_busy_cores",
    "softirq_cores",
    "steal_cores",
    "loadavg_1m",
];

/// The numbers of list `field` of `report`, one per server.
fn each(report: &Value, field: &str) -> Vec<f64> {
    report[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is a list in {report}"))
        .iter()
        .map(|value| {
            value
                .as_f64()
                .unwrap_or_else(|| panic!("{field} holds numbers in {report}"))
        })
        .collect()
}

fn assert_sane_broadcast(report: &Value, layout: &str, server_conns: &[u64]) {
    assert_eq!(report["mode"], "broadcast");
    assert_eq!(report["layout"], layout);
    assert_eq!(report["conns"], server_conns.iter().sum::<u64>());
    assert_eq!(report["servers"], server_conns.len());
    assert_eq!(report["server_conns"], serde_json::json!(server_conns));
    assert_eq!(report["samples"], 5);
    assert_eq!(report["frame_bytes"], 102);
    let p50 = number(report, "p50_ms");
    assert!(p50 > 0.0, "{report}");
    assert!(number(report, "p99_ms") >= p50, "{report}");
    assert!(
        number(report, "max_ms") >= number(report, "p99_ms"),
        "{report}"
    );
    assert!(number(report, "warmup_p50_ms") > 0.0, "{report}");
    assert!(number(report, "start_lag_p50_ms") >= 0.0, "{report}");
    assert!(number(report, "write_loop_p50_ms") > 0.0, "{report}");
    assert!(number(report, "server_cpu_ms_per_bcast") > 0.0, "{report}");
    assert!(number(report, "client_cpu_ms_per_bcast") > 0.0, "{report}");
    for field in [
        "write_loop_p50_ms_each",
        "server_cpu_ms_per_bcast_each",
        "client_cpu_ms_per_bcast_each",
    ] {
        let each = each(report, field);
        assert_eq!(each.len(), server_conns.len(), "{field} in {report}");
        assert!(each.iter().all(|&value| value > 0.0), "{field} in {report}");
    }
    // The whole side's CPU is its processes' added up (to rounding).
    let servers: f64 = each(report, "server_cpu_ms_per_bcast_each").iter().sum();
    assert!(
        (servers - number(report, "server_cpu_ms_per_bcast")).abs() < 1e-3,
        "{report}"
    );
}

#[test]
fn a_broadcast_to_twenty_sockets_reports_its_latency() {
    let report = report(
        &["broadcast", "--conns", "20", "--samples", "5"],
        BROADCAST_FIELDS,
    );
    assert_sane_broadcast(&report, "1 process x 2 threads", &[20]);
}

#[test]
fn a_broadcast_from_two_processes_reports_the_same_fields() {
    let report = report(
        &["broadcast", "--conns", "20", "--samples", "5", "--procs"],
        BROADCAST_FIELDS,
    );
    assert_sane_broadcast(&report, "2 processes x 1 thread", &[20]);
}

#[test]
fn a_broadcast_over_three_server_processes_counts_every_connection() {
    let report = report(
        &[
            "broadcast",
            "--conns",
            "600",
            "--servers",
            "3",
            "--samples",
            "5",
        ],
        BROADCAST_FIELDS,
    );
    assert_sane_broadcast(
        &report,
        "3 server + 3 client processes x 1 thread, 1 coordinator",
        &[200, 200, 200],
    );
    // Each broadcast's slowest write loop is at least every server's.
    let slowest = each(&report, "write_loop_p50_ms_each")
        .into_iter()
        .fold(0.0, f64::max);
    assert!(
        number(&report, "write_loop_p50_ms") + 1e-4 >= slowest,
        "{report}"
    );
}

#[test]
fn past_the_open_files_limit_each_server_gets_what_fits() {
    // 100 descriptors per process: 32 spare, 2 for the coordinator's
    // other sockets, 66 connections.
    let binary = env!("CARGO_BIN_EXE_fanout-limit");
    let script = format!("ulimit -n 100 && exec {binary} \"$@\"");
    let run = run_command(
        Command::new("sh").args([
            "-c",
            &script,
            "sh",
            "broadcast",
            "--conns",
            "600",
            "--servers",
            "3",
            "--samples",
            "5",
        ]),
        "sh -c 'ulimit -n 100 && fanout-limit broadcast --conns 600 --servers 3'",
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report: Value = serde_json::from_str(run.stdout.trim()).expect("the line is JSON");
    assert_eq!(report["conns_requested"], 600);
    assert_eq!(report["nofile_limit"], 100);
    assert_sane_broadcast(
        &report,
        "3 server + 3 client processes x 1 thread, 1 coordinator",
        &[66, 66, 66],
    );
}

fn assert_sane_fanout(report: &Value, variant: &str) {
    assert_eq!(report["mode"], "fanout");
    assert_eq!(report["variant"], variant);
    assert_eq!(report["members"], 10);
    let deliveries = number(report, "deliveries_per_s");
    assert!(deliveries > 0.0, "{report}");
    let messages = number(report, "messages_per_s");
    assert!((messages * 10.0 - deliveries).abs() < 1.0, "{report}");
    assert!(number(report, "sent_per_s") > 0.0, "{report}");
    assert!(number(report, "msgs_per_batch") >= 1.0, "{report}");
    let duration = number(report, "duration_s");
    assert!((0.9..5.0).contains(&duration), "{report}");
    assert!(number(report, "server_cpu_util") > 0.0, "{report}");
}

#[test]
fn a_room_of_ten_fans_out_with_one_write_per_member() {
    let report = report(
        &["fanout", "--members", "10", "--duration", "1"],
        FANOUT_FIELDS,
    );
    assert_sane_fanout(&report, "write");
    // At least one write() per member per message, EAGAIN included.
    assert!(
        number(&report, "server_syscalls_per_msg") >= 10.0,
        "{report}"
    );
}

#[test]
fn a_room_of_ten_fans_out_with_writev() {
    let report = report(
        &["fanout", "--members", "10", "--duration", "1", "--writev"],
        FANOUT_FIELDS,
    );
    assert_sane_fanout(&report, "writev");
}

#[test]
fn a_bad_command_line_is_one_error_line_and_exit_code_2() {
    for args in [
        &["broadcast", "--samples", "0"][..],
        &["broadcast", "--servers", "0"],
        &["broadcast", "--conns", "2", "--servers", "3"],
        &["fanout", "--procs"],
        &[],
    ] {
        let run = fanout_limit(args);
        assert_eq!(run.code, Some(2), "{args:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
    }
}
