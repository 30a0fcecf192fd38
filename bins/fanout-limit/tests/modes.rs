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
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanout-limit"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fanout-limit starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for fanout-limit") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fanout-limit {args:?} still ran after {DEADLINE:?}");
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
    "write_loop_p50_ms",
    "server_us_per_write",
    "server_cpu_ms_per_bcast",
    "server_cpu_ms_per_bcast_rusage",
    "server_runq_wait_ms_per_bcast",
    "server_sys_frac",
    "client_cpu_ms_per_bcast",
    "client_cpu_ms_per_bcast_rusage",
    "client_runq_wait_ms_per_bcast",
    "client_sys_frac",
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

fn assert_sane_broadcast(report: &Value, layout: &str) {
    assert_eq!(report["mode"], "broadcast");
    assert_eq!(report["layout"], layout);
    assert_eq!(report["conns"], 20);
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
    assert!(number(report, "write_loop_p50_ms") > 0.0, "{report}");
    assert!(number(report, "server_cpu_ms_per_bcast") > 0.0, "{report}");
    assert!(number(report, "client_cpu_ms_per_bcast") > 0.0, "{report}");
}

#[test]
fn a_broadcast_to_twenty_sockets_reports_its_latency() {
    let report = report(
        &["broadcast", "--conns", "20", "--samples", "5"],
        BROADCAST_FIELDS,
    );
    assert_sane_broadcast(&report, "1 process x 2 threads");
}

#[test]
fn a_broadcast_from_two_processes_reports_the_same_fields() {
    let report = report(
        &["broadcast", "--conns", "20", "--samples", "5", "--procs"],
        BROADCAST_FIELDS,
    );
    assert_sane_broadcast(&report, "2 processes x 1 thread");
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
