//! Where the CPU time went: each measuring thread's own, and the whole
//! machine's, so a run shows whether server and client shared a core and
//! whether anything else ran beside them.

use crate::error::LimitError;
use crate::sys;

/// One thread's CPU time, read by that thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCpu {
    /// User time from getrusage(RUSAGE_THREAD), µs.
    pub user_us: u64,
    /// System time from getrusage(RUSAGE_THREAD), µs. With tick-based
    /// accounting (this kernel) getrusage's total is brought up to date
    /// only at ticks and context switches, so over a few ms it can lag by
    /// up to a tick (4 ms): use `on_cpu_ns` for short spans.
    pub sys_us: u64,
    /// On-CPU time from CLOCK_THREAD_CPUTIME_ID, ns: exact.
    pub on_cpu_ns: u64,
    /// Time spent runnable but waiting for a CPU, ns
    /// (`/proc/thread-self/schedstat`; 0 on kernels without schedstat).
    pub runq_wait_ns: u64,
}

impl ThreadCpu {
    /// The calling thread's CPU time so far.
    pub fn now() -> ThreadCpu {
        let (user_us, sys_us) = sys::thread_rusage_us();
        let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let runq_wait_ns = schedstat
            .split_whitespace()
            .nth(1)
            .and_then(|wait| wait.parse().ok())
            .unwrap_or(0);
        ThreadCpu {
            user_us,
            sys_us,
            on_cpu_ns: sys::thread_cpu_ns(),
            runq_wait_ns,
        }
    }

    /// The time spent between `earlier` and `self`, both of one thread.
    pub fn since(self, earlier: ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            user_us: self.user_us.saturating_sub(earlier.user_us),
            sys_us: self.sys_us.saturating_sub(earlier.sys_us),
            on_cpu_ns: self.on_cpu_ns.saturating_sub(earlier.on_cpu_ns),
            runq_wait_ns: self.runq_wait_ns.saturating_sub(earlier.runq_wait_ns),
        }
    }

    /// `self` plus `other`: spans of one thread added up.
    pub fn plus(self, other: ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            user_us: self.user_us + other.user_us,
            sys_us: self.sys_us + other.sys_us,
            on_cpu_ns: self.on_cpu_ns + other.on_cpu_ns,
            runq_wait_ns: self.runq_wait_ns + other.runq_wait_ns,
        }
    }

    /// getrusage's user + system time, ms.
    pub fn rusage_ms(self) -> f64 {
        (self.user_us + self.sys_us) as f64 / 1e3
    }

    /// The kernel's share of getrusage's total (0 when it is empty).
    pub fn sys_frac(self) -> f64 {
        self.sys_us as f64 / (self.user_us + self.sys_us).max(1) as f64
    }
}

/// Whole-machine CPU from `/proc/stat`, in USER_HZ (1/100 s) ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineTicks {
    /// user + nice + system + irq + softirq.
    pub busy: u64,
    /// softirq alone: here mostly loopback TCP receive, run inside our own
    /// system calls and so included in the threads' CPU too.
    pub softirq: u64,
    /// Time the hypervisor gave to someone else.
    pub steal: u64,
}

/// Ticks per second of `/proc/stat` (USER_HZ).
pub const TICKS_PER_S: f64 = 100.0;

impl MachineTicks {
    /// The machine's ticks so far.
    pub fn now() -> Result<MachineTicks, LimitError> {
        let stat = std::fs::read_to_string("/proc/stat").map_err(|source| LimitError::Proc {
            path: "/proc/stat",
            source,
        })?;
        MachineTicks::parse(&stat).ok_or(LimitError::ProcFormat("/proc/stat"))
    }

    /// Reads the first line of `/proc/stat`:
    /// `cpu user nice system idle iowait irq softirq steal ...`.
    fn parse(stat: &str) -> Option<MachineTicks> {
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [user, nice, system, _idle, _iowait, irq, softirq, steal, ..] = ticks[..] else {
            return None;
        };
        Some(MachineTicks {
            busy: user + nice + system + irq + softirq,
            softirq,
            steal,
        })
    }

    /// The ticks between `earlier` and `self`.
    pub fn since(self, earlier: MachineTicks) -> MachineTicks {
        MachineTicks {
            busy: self.busy.saturating_sub(earlier.busy),
            softirq: self.softirq.saturating_sub(earlier.softirq),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }
}

/// The 1-minute load average: how busy the machine was as the run began.
pub fn loadavg_1m() -> Result<f64, LimitError> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").map_err(|source| LimitError::Proc {
        path: "/proc/loadavg",
        source,
    })?;
    loadavg
        .split_whitespace()
        .next()
        .and_then(|load| load.parse().ok())
        .ok_or(LimitError::ProcFormat("/proc/loadavg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_ticks_leave_out_idle_and_iowait() {
        let stat = "cpu  100 2 30 5000 70 4 50 6 0 0\ncpu0 50 1 15 2500 35 2 25 3 0 0\n";
        assert_eq!(
            MachineTicks::parse(stat),
            Some(MachineTicks {
                busy: 100 + 2 + 30 + 4 + 50,
                softirq: 50,
                steal: 6,
            })
        );
    }

    #[test]
    fn a_stat_of_another_shape_is_refused() {
        assert_eq!(MachineTicks::parse("cpu  1 2 3\n"), None);
        assert_eq!(MachineTicks::parse("intr 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(MachineTicks::parse("cpu  1 2 x 4 5 6 7 8\n"), None);
        assert_eq!(MachineTicks::parse(""), None);
    }

    #[test]
    fn this_machine_and_thread_can_be_read() {
        let before = ThreadCpu::now();
        // Reading schedstat alone takes a few µs of CPU.
        let spent = ThreadCpu::now().since(before);
        assert!(spent.on_cpu_ns > 0, "{spent:?}");
        assert!(MachineTicks::now().is_ok());
        assert!(loadavg_1m().is_ok_and(|load| load >= 0.0));
    }
}
