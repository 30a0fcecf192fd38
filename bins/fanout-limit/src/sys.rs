//! Every call into libc, each behind a safe function: the tool's only
//! `unsafe` code.
//!
//! The system calls are what the tool measures, so they are made as they
//! are, with nothing in between: std's sockets send with `send()` and read
//! with `recv()`, not `write()` and `read()`, and have no epoll, no thread
//! CPU clock and no `fork()`.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::error::LimitError;

/// `CLOCK_MONOTONIC` in ns: the same clock in every process, so a time
/// taken by the client process and one taken by the server compare.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Sleeps until `CLOCK_MONOTONIC` reads `ns` (returns at once if it
/// already has): how server processes start a broadcast at the same
/// instant, each on its own.
pub fn sleep_until(ns: u64) {
    let at = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `at` is a valid timespec, read during the call only; an
        // absolute sleep writes no remaining time, so null is allowed.
        let error = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &at,
                std::ptr::null_mut(),
            )
        };
        // A signal cuts the sleep short; with a valid clock and time
        // nothing else can fail.
        if error != libc::EINTR {
            return;
        }
    }
}

/// The calling thread's CPU time in ns (`CLOCK_THREAD_CPUTIME_ID`): exact,
/// unlike getrusage's tick-based figure on this kernel.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec the call may write. Both clocks used
    // exist on every Linux, so the only error (EINVAL) cannot happen.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The calling thread's user and system CPU time in µs, as
/// `getrusage(RUSAGE_THREAD)` counts them.
pub fn thread_rusage_us() -> (u64, u64) {
    // SAFETY: `rusage` is plain integers and timevals: all zeroes is a
    // valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage the call may write, and
    // RUSAGE_THREAD is valid on Linux, so the call cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(usage.ru_utime), us(usage.ru_stime))
}

/// Binds the calling thread to CPU `cpu` (for `--pin`).
pub fn pin_to_cpu(cpu: usize) -> Result<(), LimitError> {
    // SAFETY: `cpu_set_t` is a plain bit set: all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid set; CPU_SET only sets a bit in it (and
    // panics, not overflows, past CPU_SETSIZE).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    let done = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if done == 0 {
        Ok(())
    } else {
        Err(LimitError::last_os(format!(
            "sched_setaffinity to CPU {cpu}"
        )))
    }
}

fn check(result: isize) -> io::Result<usize> {
    usize::try_from(result).map_err(|_| io::Error::last_os_error())
}

/// One `write()` of `bytes` to `fd`: the bytes the kernel took.
pub fn write(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is readable for its length during the call; a bad fd
    // only makes the call fail (EBADF).
    check(unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) })
}

/// One `read()` from `fd` into `buf`: the bytes read, 0 at end of stream.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length during the call; a bad fd
    // only makes the call fail (EBADF).
    check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// Room for the chunks of one `writev()`, kept from call to call so that
/// batching allocates nothing.
pub struct IoVecs(Vec<libc::iovec>);

impl IoVecs {
    /// Room for `n` chunks before the first call grows it.
    pub fn with_capacity(n: usize) -> IoVecs {
        IoVecs(Vec::with_capacity(n))
    }

    /// One `writev()` of `chunks` to `fd`, in order: the bytes the kernel
    /// took. At most `IOV_MAX` (1024) chunks, or the call fails (EINVAL).
    pub fn writev<'a>(
        &mut self,
        fd: RawFd,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> io::Result<usize> {
        self.0.clear();
        self.0.extend(chunks.into_iter().map(|chunk| libc::iovec {
            iov_base: chunk.as_ptr().cast_mut().cast(),
            iov_len: chunk.len(),
        }));
        let count = libc::c_int::try_from(self.0.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: each iovec points into a chunk borrowed for `'a`, which
        // outlasts this call, and is readable for its length; writev only
        // reads them. They are never read after the call: the next one
        // clears them first.
        check(unsafe { libc::writev(fd, self.0.as_ptr(), count) })
    }
}

/// An epoll instance; each registered socket carries its index as token.
pub struct Epoll(OwnedFd);

impl Epoll {
    /// A new, empty epoll instance.
    pub fn new() -> Result<Epoll, LimitError> {
        // SAFETY: no pointers are passed; the result is checked below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(LimitError::last_os("epoll_create1"));
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Starts watching `fd` for `events`, reported with `token`.
    pub fn add(&self, fd: RawFd, events: i32, token: usize) -> Result<(), LimitError> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    /// Changes the events watched on `fd`.
    pub fn modify(&self, fd: RawFd, events: i32, token: usize) -> Result<(), LimitError> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    fn ctl(&self, op: i32, fd: RawFd, events: i32, token: usize) -> Result<(), LimitError> {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: token as u64,
        };
        // SAFETY: `event` is a valid epoll_event for the call's duration;
        // bad descriptors only make the call fail.
        let done = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut event) };
        if done == 0 {
            Ok(())
        } else {
            Err(LimitError::last_os("epoll_ctl"))
        }
    }

    /// Waits up to `timeout_ms` for events, filling the start of `events`:
    /// how many it filled (0 on timeout or a signal).
    pub fn wait(
        &self,
        events: &mut [libc::epoll_event],
        timeout_ms: i32,
    ) -> Result<usize, LimitError> {
        let room = i32::try_from(events.len()).unwrap_or(i32::MAX);
        // SAFETY: `events` is writable for `room` entries during the call.
        let ready =
            unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), room, timeout_ms) };
        match check(ready as isize) {
            Ok(ready) => Ok(ready),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(error) => Err(LimitError::sys("epoll_wait", error)),
        }
    }
}

/// Room for `n` events of one [`Epoll::wait`].
pub fn event_buffer(n: usize) -> Vec<libc::epoll_event> {
    vec![libc::epoll_event { events: 0, u64: 0 }; n]
}

/// Gives `listener` a listen backlog of `backlog` and makes its `accept()`
/// fail after `timeout` (`SO_RCVTIMEO`), so a failed peer cannot leave the
/// run blocked for ever.
pub fn prepare_listener(
    listener: &TcpListener,
    backlog: i32,
    timeout: Duration,
) -> Result<(), LimitError> {
    let fd = listener.as_raw_fd();
    // SAFETY: no pointers are passed; a bad fd only makes the call fail.
    if unsafe { libc::listen(fd, backlog) } != 0 {
        return Err(LimitError::last_os("listen"));
    }
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` is a valid timeval of the size passed, read during the
    // call only.
    let done = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(LimitError::last_os("setsockopt SO_RCVTIMEO"))
    }
}

/// Which side of a [`fork`] this is.
pub enum Forked {
    /// The new process.
    Child,
    /// The process that forked, holding the child.
    Parent(ChildProcess),
}

/// Splits the process in two. Only while it runs one thread: the child of
/// a threaded process may call nothing but async-signal-safe functions
/// (no allocation), and checking here keeps that off the caller's mind.
/// The child is killed when the parent ends, however it ends, so a run
/// killed from outside leaves no process behind.
pub fn fork() -> Result<Forked, LimitError> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|source| LimitError::Proc {
            path: "/proc/self/task",
            source,
        })?
        .count();
    if threads != 1 {
        return Err(LimitError::Threaded(threads));
    }
    let parent = std::process::id();
    // SAFETY: the process has one thread (checked above, and only this
    // thread could start another), so the child is a full copy that may
    // run any code.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: no pointers; PR_SET_PDEATHSIG takes a signal number
            // and cannot fail with a valid one.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
            // A parent that ended before that call sent no signal.
            if std::os::unix::process::parent_id() != parent {
                exit_child(1);
            }
            Ok(Forked::Child)
        }
        pid if pid > 0 => Ok(Forked::Parent(ChildProcess { pid, reaped: false })),
        _ => Err(LimitError::last_os("fork")),
    }
}

/// Ends the process at once with `code`, as a forked child must: without
/// running the exit handlers or flushing the stdio buffers it shares with
/// its parent.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// A forked child process; killed and reaped on drop unless waited for,
/// so an error in the parent never leaves it running.
pub struct ChildProcess {
    pid: libc::pid_t,
    reaped: bool,
}

impl ChildProcess {
    /// Waits for the child, the `name`d side of the run, to end; an error
    /// unless it exited with 0.
    pub fn wait(&mut self, name: &str) -> Result<(), LimitError> {
        let status = self.reap()?;
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(LimitError::PartnerGone(format!(
                "{name} failed (wait status {status})"
            )))
        }
    }

    fn reap(&mut self) -> Result<i32, LimitError> {
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid int the call may write; the pid
            // is our child's, not yet reaped.
            let pid = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if pid == self.pid {
                self.reaped = true;
                return Ok(status);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(LimitError::sys("waitpid", error));
            }
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: no pointers; the pid is our child's, not yet reaped,
            // so it names no other process.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.reap();
        }
    }
}
