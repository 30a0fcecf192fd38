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
fn rss_kib(pid: u32) -> Option<u64> {
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

/// The resident memory of all server nodes together, in KiB; `None`
/// without pids or when one of them cannot be read (a partial sum would
/// pass for the whole).
pub fn servers_rss_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| rss_kib(pid)).sum()
}

/// CPU times of the server nodes and the bench at one moment.
#[derive(Debug, Clone)]
pub struct CpuSample {
    at: Instant,
    /// One entry per server pid, in `--server-pid` order.
    servers: Vec<Option<f64>>,
    bench: Option<f64>,
}

impl CpuSample {
    /// Reads the bench's CPU time and every server node's now.
    pub fn take(server_pids: &[u32]) -> CpuSample {
        CpuSample::take_with_workers(server_pids, &[])
    }

    /// [`CpuSample::take`] for a bench spread over processes
    /// (`conns --processes`): the workers' CPU time counts as the bench's.
    pub fn take_with_workers(server_pids: &[u32], worker_pids: &[u32]) -> CpuSample {
        let seconds = |pid: &u32| cpu_seconds(&pid.to_string());
        CpuSample {
            at: Instant::now(),
            servers: server_pids.iter().map(seconds).collect(),
            bench: std::iter::once(cpu_seconds("self"))
                .chain(worker_pids.iter().map(seconds))
                .sum(),
        }
    }

    /// The CPU each side used from `earlier` to this sample; the server
    /// side sums the nodes.
    pub fn since(&self, earlier: &CpuSample) -> CpuSplit {
        let interval_s = self.at.duration_since(earlier.at).as_secs_f64();
        let used = |now: Option<f64>, then: Option<f64>| Some(now? - then?);
        let by_node: Vec<Option<f64>> = self
            .servers
            .iter()
            .zip(&earlier.servers)
            .map(|(&now, &then)| used(now, then))
            .collect();
        let server_s = if by_node.is_empty() {
            None
        } else {
            by_node.iter().copied().sum::<Option<f64>>()
        };
        let bench_s = used(self.bench, earlier.bench);
        let cores = |seconds: Option<f64>| seconds.map(|s| round3(s / interval_s.max(1e-9)));
        CpuSplit {
            interval_s: round3(interval_s),
            server_s: server_s.map(round3),
            bench_s: bench_s.map(round3),
            server_cores: cores(server_s),
            bench_cores: cores(bench_s),
            server_s_by_node: (by_node.len() > 1)
                .then(|| by_node.into_iter().map(|s| s.map(round3)).collect()),
        }
    }
}

/// CPU used over an interval, in seconds and in cores (seconds per second).
#[derive(Debug, Clone, Serialize)]
pub struct CpuSplit {
    /// Wall-clock length of the interval.
    pub interval_s: f64,
    /// The server's CPU seconds, summed over its nodes (`null` without
    /// `--server-pid`, or when a node's could not be read).
    pub server_s: Option<f64>,
    /// The bench's CPU seconds.
    pub bench_s: Option<f64>,
    /// The server's average number of busy cores, all nodes together.
    pub server_cores: Option<f64>,
    /// The bench's average number of busy cores.
    pub bench_cores: Option<f64>,
    /// Each node's CPU seconds in `--server-pid` order; only with several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_s_by_node: Option<Vec<Option<f64>>>,
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
             (its hard limit); lower the connection count, spread `conns` over more \
             --processes, or raise the hard limit (the server needs as many)"
        ));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        assert!(cpu_seconds("self").is_some_and(|s| s >= 0.0));
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
        assert_eq!(rss_kib(u32::MAX), None);
        assert_eq!(servers_rss_kib(&[]), None);
        assert_eq!(servers_rss_kib(&[me, u32::MAX]), None);
        let one = servers_rss_kib(&[me]).expect("own memory");
        // The same process twice counts twice (nodes are distinct processes).
        let twice = servers_rss_kib(&[me, me]).expect("own memory");
        assert!(twice > one, "{twice} <= {one}");
    }

    #[test]
    fn a_split_without_a_server_has_no_server_side() {
        let first = CpuSample::take(&[]);
        let split = CpuSample::take(&[]).since(&first);
        assert_eq!(split.server_s, None);
        assert_eq!(split.server_s_by_node, None);
        assert!(split.bench_s.is_some());
    }

    #[test]
    fn several_nodes_sum_and_are_listed() {
        let me = std::process::id();
        let first = CpuSample::take(&[me, me]);
        let split = CpuSample::take(&[me, me]).since(&first);
        let by_node = split.server_s_by_node.clone().expect("two nodes");
        assert_eq!(by_node.len(), 2);
        let sum: f64 = by_node.iter().map(|s| s.expect("readable")).sum();
        let total = split.server_s.expect("readable");
        assert!((total - sum).abs() < 0.002, "{total} vs {sum}");
        let one = CpuSample::take(&[me]).since(&CpuSample::take(&[me]));
        assert!(one.server_s.is_some());
        assert_eq!(one.server_s_by_node, None);
        let gone = CpuSample::take(&[me, u32::MAX]);
        assert_eq!(gone.since(&gone).server_s, None);
    }
}
