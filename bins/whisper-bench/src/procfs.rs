//! What the kernel says about the server and the bench: CPU time and
//! resident memory, from `/proc`, plus the open-files limit.
//!
//! CPU time is read for the whole process (all threads), so the split
//! between server and bench over a measured interval shows which side the
//! two cores went to, and whether the bench was the bottleneck.

use std::time::Instant;

use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`). The
/// kernel fixes it at 100 for user space on every architecture Linux
/// runs on, whatever its internal tick rate.
const USER_HZ: f64 = 100.0;

/// User plus system CPU seconds of a process (`"self"` or a pid).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted after its closing parenthesis. utime and stime are
    // fields 14 and 15, so the 12th and 13th after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// A process's resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// CPU times of the server and the bench at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    server: Option<f64>,
    bench: Option<f64>,
}

impl CpuSample {
    /// Reads both now; the server's only when its pid is known.
    pub fn take(server_pid: Option<u32>) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            server: server_pid.and_then(|pid| cpu_seconds(&pid.to_string())),
            bench: cpu_seconds("self"),
        }
    }

    /// The CPU each side used from `earlier` to this sample.
    pub fn since(&self, earlier: &CpuSample) -> CpuSplit {
        let interval_s = self.at.duration_since(earlier.at).as_secs_f64();
        let used = |now: Option<f64>, then: Option<f64>| Some(now? - then?);
        let server_s = used(self.server, earlier.server);
        let bench_s = used(self.bench, earlier.bench);
        let cores = |seconds: Option<f64>| seconds.map(|s| round3(s / interval_s.max(1e-9)));
        CpuSplit {
            interval_s: round3(interval_s),
            server_s: server_s.map(round3),
            bench_s: bench_s.map(round3),
            server_cores: cores(server_s),
            bench_cores: cores(bench_s),
        }
    }
}

/// CPU used over an interval, in seconds and in cores (seconds per second).
#[derive(Debug, Clone, Serialize)]
pub struct CpuSplit {
    /// Wall-clock length of the interval.
    pub interval_s: f64,
    /// The server's CPU seconds (`null` without `--server-pid`).
    pub server_s: Option<f64>,
    /// The bench's CPU seconds.
    pub bench_s: Option<f64>,
    /// The server's average number of busy cores.
    pub server_cores: Option<f64>,
    /// The bench's average number of busy cores.
    pub bench_cores: Option<f64>,
}

/// Three decimals: enough for a report, and stable JSON.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Raises the open-files limit as far as the hard limit allows, and fails
/// when `needed` descriptors still do not fit.
pub fn ensure_open_files(needed: u64) -> Result<u64, String> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|error| format!("cannot raise RLIMIT_NOFILE: {error}"))?;
    if limit < needed {
        return Err(format!(
            "this run needs about {needed} open files but RLIMIT_NOFILE allows {limit} \
             (its hard limit); lower the connection count or raise the hard limit \
             (the server needs as many)"
        ));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        assert!(cpu_seconds("self").is_some_and(|s| s >= 0.0));
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert_eq!(rss_kib(u32::MAX), None);
    }

    #[test]
    fn a_split_without_a_server_has_no_server_side() {
        let first = CpuSample::take(None);
        let split = CpuSample::take(None).since(&first);
        assert_eq!(split.server_s, None);
        assert!(split.bench_s.is_some());
    }
}
