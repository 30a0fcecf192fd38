//! Mode `broadcast`: how long one broadcast to N sockets takes when all the
//! server does is one `write()` per socket.
//!
//! The server owns the N accepted sockets; the client owns their N peers
//! and waits on them with one epoll. For each round the server writes one
//! pre-built frame (a server's text frame, 102 bytes for the default 100)
//! to every socket, with no other copying; the client drains sockets until
//! all N frames are in, then tells the server over a Unix socket pair when
//! it read the last one and how much CPU it has used. The latency is the
//! server's first write to the client's last read, both on
//! `CLOCK_MONOTONIC`, which processes share.
//!
//! The first `--warmup-samples` rounds are left out of the percentiles:
//! Linux quick-ACKs the first 16 segments of every connection, and over
//! loopback that ACK work runs inside the server's `write()`.
//!
//! N connections need 2N descriptors in one process. When they do not fit
//! (or with `--procs`) the process forks before any thread starts, and
//! server and client become two single-threaded processes.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use whisper_cli::FAILED;

use crate::cli::BroadcastArgs;
use crate::cpu::{MachineTicks, TICKS_PER_S, ThreadCpu, loadavg_1m};
use crate::error::LimitError;
use crate::frame::{payload, server_frame};
use crate::net;
use crate::report::{JsonLine, Samples};
use crate::sys::{self, ChildProcess, Forked};

/// Descriptors besides the sockets: stdio, listener, epoll, the control
/// socket pair, and slack.
const SPARE_FDS: usize = 32;
/// Longest wait for the client's report of a round.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// The client gives up when no data arrives for this long.
const CLIENT_STALL: Duration = Duration::from_secs(10);
/// Events taken from the client's epoll per wait.
const CLIENT_EVENTS: usize = 1024;
/// The client's read buffer.
const READ_BUFFER: usize = 64 * 1024;

/// Runs the mode and returns its report line.
pub fn run(args: &BroadcastArgs) -> Result<String, LimitError> {
    let limit = net::raise_nofile()?;
    let (layout, conns) = Layout::choose(args.conns, limit, args.procs)?;
    let load = loadavg_1m()?;
    let frame = server_frame(&payload(args.common.size));
    let listener = net::listen()?;
    let (control, client_control) =
        UnixStream::pair().map_err(|error| LimitError::sys("socketpair", error))?;
    control
        .set_read_timeout(Some(CONTROL_TIMEOUT))
        .map_err(|error| LimitError::sys("SO_RCVTIMEO on the control socket", error))?;
    let job = ClientJob {
        addr: net::local_addr(&listener)?,
        conns,
        rounds: args.warmup_samples + args.samples,
        frame_len: frame.len(),
        pin: args.common.pin,
    };
    let client = match layout {
        Layout::Processes => match sys::fork()? {
            Forked::Child => {
                let code = match job.run(client_control) {
                    Ok(()) => 0,
                    Err(error) => {
                        whisper_cli::report(&format!("client process: {error}"), FAILED);
                        i32::from(FAILED)
                    }
                };
                sys::exit_child(code)
            }
            Forked::Parent(child) => {
                drop(client_control);
                Client::Process(child)
            }
        },
        Layout::Threads => Client::Thread(std::thread::spawn(move || job.run(client_control))),
    };
    let frame_len = frame.len();
    let measured = match serve(listener, conns, frame, control, args) {
        Ok(measured) => measured,
        // The client failed first: its error says why.
        Err(error) if error.follows_partner_failure() => {
            return Err(client.finish().err().unwrap_or(error));
        }
        // Returning drops the client: a thread ends with the process, a
        // child process is killed.
        Err(error) => return Err(error),
    };
    client.finish()?;
    Ok(measured.report(args, layout, conns, limit, frame_len, load))
}

/// Where the two sides run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// One process, a server thread and a client thread.
    Threads,
    /// Two single-threaded processes.
    Processes,
}

impl Layout {
    /// The layout for `wanted` connections under an open-files `limit`,
    /// and how many connections it can hold.
    fn choose(wanted: usize, limit: usize, procs: bool) -> Result<(Layout, usize), LimitError> {
        if !procs && 2 * wanted + SPARE_FDS <= limit {
            return Ok((Layout::Threads, wanted));
        }
        match wanted.min(limit.saturating_sub(SPARE_FDS)) {
            0 => Err(LimitError::FdLimit(limit)),
            conns => Ok((Layout::Processes, conns)),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Layout::Threads => "1 process x 2 threads",
            Layout::Processes => "2 processes x 1 thread",
        }
    }
}

/// What the client tells the server once connected and after each round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ClientReport {
    /// When it read the round's last frame (0 for the first report).
    last_read_ns: u64,
    /// Its CPU time so far.
    cpu: ThreadCpu,
}

impl ClientReport {
    const BYTES: usize = 40;

    fn encode(&self) -> [u8; ClientReport::BYTES] {
        let words = [
            self.last_read_ns,
            self.cpu.user_us,
            self.cpu.sys_us,
            self.cpu.on_cpu_ns,
            self.cpu.runq_wait_ns,
        ];
        let mut bytes = [0; ClientReport::BYTES];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    fn decode(bytes: &[u8; ClientReport::BYTES]) -> ClientReport {
        let word = |i: usize| u64::from_le_bytes(std::array::from_fn(|j| bytes[8 * i + j]));
        ClientReport {
            last_read_ns: word(0),
            cpu: ThreadCpu {
                user_us: word(1),
                sys_us: word(2),
                on_cpu_ns: word(3),
                runq_wait_ns: word(4),
            },
        }
    }
}

/// The client's side, everything it needs carried across a thread or a
/// fork.
struct ClientJob {
    addr: SocketAddr,
    conns: usize,
    rounds: usize,
    frame_len: usize,
    pin: bool,
}

impl ClientJob {
    /// Connects, then for every round drains the sockets until all frames
    /// are in and reports when.
    fn run(self, mut control: UnixStream) -> Result<(), LimitError> {
        if self.pin {
            sys::pin_to_cpu(1)?;
        }
        let (sockets, epoll) = net::connect_n(self.addr, self.conns)?;
        let mut events = sys::event_buffer(CLIENT_EVENTS);
        let mut buf = vec![0u8; READ_BUFFER];
        let stall_ms = CLIENT_STALL.as_millis() as i32;
        report(&mut control, 0)?;
        for _ in 0..self.rounds {
            let mut received = 0;
            while received < self.conns * self.frame_len {
                let ready = epoll.wait(&mut events, stall_ms)?;
                if ready == 0 {
                    return Err(LimitError::Stalled(CLIENT_STALL.as_secs()));
                }
                for event in &events[..ready] {
                    let socket = &sockets[event.u64 as usize];
                    received +=
                        net::read_ready(socket.as_raw_fd(), &mut buf, "client")?.unwrap_or(0);
                }
            }
            report(&mut control, sys::monotonic_ns())?;
        }
        Ok(())
    }
}

fn report(control: &mut UnixStream, last_read_ns: u64) -> Result<(), LimitError> {
    let report = ClientReport {
        last_read_ns,
        cpu: ThreadCpu::now(),
    };
    control
        .write_all(&report.encode())
        .map_err(|error| LimitError::sys("client report", error))
}

/// The client as it runs: a thread of this process, or a forked one.
enum Client {
    Thread(JoinHandle<Result<(), LimitError>>),
    Process(ChildProcess),
}

impl Client {
    /// Waits for the client to end; its error if it failed.
    fn finish(self) -> Result<(), LimitError> {
        match self {
            Client::Thread(thread) => thread
                .join()
                .map_err(|_| LimitError::PartnerGone("client thread panicked".into()))?,
            Client::Process(mut child) => child.wait("client process"),
        }
    }
}

/// The server's side.
struct Server {
    sockets: Vec<TcpStream>,
    frame: Vec<u8>,
    gap: Duration,
    control: UnixStream,
    /// The client's CPU time as of its last report.
    client_cpu: ThreadCpu,
}

/// One broadcast, as the server saw it.
struct Round {
    latency_ms: f64,
    write_loop_ms: f64,
    /// The server thread's CPU over the write loop.
    server_cpu: ThreadCpu,
}

/// Everything the report is made of.
struct Measured {
    warmup: Vec<Round>,
    rounds: Vec<Round>,
    /// From the first measured round on.
    wall_s: f64,
    machine: MachineTicks,
    server_cpu: ThreadCpu,
    client_cpu: ThreadCpu,
}

/// The server's side: accepts the connections, then runs the warm-up and
/// the measured rounds.
fn serve(
    listener: TcpListener,
    conns: usize,
    frame: Vec<u8>,
    control: UnixStream,
    args: &BroadcastArgs,
) -> Result<Measured, LimitError> {
    if args.common.pin {
        sys::pin_to_cpu(0)?;
    }
    let sockets = net::accept_n(&listener, conns)?;
    drop(listener);
    let mut server = Server {
        sockets,
        frame,
        gap: Duration::from_millis(args.gap_ms),
        control,
        client_cpu: ThreadCpu::default(),
    };
    // The first report: the client has connected every socket and watches
    // them all.
    server.client_cpu = server.receive()?.cpu;
    let warmup = (0..args.warmup_samples)
        .map(|_| server.round())
        .collect::<Result<Vec<_>, _>>()?;
    let (server_from, client_from) = (ThreadCpu::now(), server.client_cpu);
    let (machine_from, started) = (MachineTicks::now()?, Instant::now());
    let rounds = (0..args.samples)
        .map(|_| server.round())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Measured {
        warmup,
        rounds,
        wall_s: started.elapsed().as_secs_f64(),
        machine: MachineTicks::now()?.since(machine_from),
        server_cpu: ThreadCpu::now().since(server_from),
        client_cpu: server.client_cpu.since(client_from),
    })
}

impl Server {
    /// One broadcast: the frame to every socket, then the client's report.
    fn round(&mut self) -> Result<Round, LimitError> {
        std::thread::sleep(self.gap);
        let cpu_from = ThreadCpu::now();
        let started_ns = sys::monotonic_ns();
        // The measured work: one write() per socket.
        for socket in &self.sockets {
            let written = sys::write(socket.as_raw_fd(), &self.frame)
                .map_err(|error| LimitError::sys("server write", error))?;
            if written != self.frame.len() {
                return Err(LimitError::ShortWrite {
                    written,
                    frame: self.frame.len(),
                });
            }
        }
        let written_ns = sys::monotonic_ns();
        let server_cpu = ThreadCpu::now().since(cpu_from);
        let client = self.receive()?;
        self.client_cpu = client.cpu;
        Ok(Round {
            latency_ms: client.last_read_ns.saturating_sub(started_ns) as f64 / 1e6,
            write_loop_ms: (written_ns - started_ns) as f64 / 1e6,
            server_cpu,
        })
    }

    fn receive(&mut self) -> Result<ClientReport, LimitError> {
        let mut bytes = [0; ClientReport::BYTES];
        self.control
            .read_exact(&mut bytes)
            .map_err(|error| match error.kind() {
                ErrorKind::UnexpectedEof => {
                    LimitError::PartnerGone("client ended without reporting".into())
                }
                _ => LimitError::sys("reading the client's report", error),
            })?;
        Ok(ClientReport::decode(&bytes))
    }
}

impl Measured {
    fn report(
        &self,
        args: &BroadcastArgs,
        layout: Layout,
        conns: usize,
        limit: usize,
        frame_len: usize,
        load: f64,
    ) -> String {
        let latency = Samples::new(self.rounds.iter().map(|round| round.latency_ms).collect());
        let write_loop = Samples::new(
            self.rounds
                .iter()
                .map(|round| round.write_loop_ms)
                .collect(),
        );
        let warmup = Samples::new(self.warmup.iter().map(|round| round.latency_ms).collect());
        let server = self.rounds.iter().fold(ThreadCpu::default(), |sum, round| {
            sum.plus(round.server_cpu)
        });
        let (client, machine) = (self.client_cpu, self.machine);
        let per_bcast = |ms: f64| ms / args.samples as f64;
        let tick_ms = 1000.0 / TICKS_PER_S;
        let write_loop_p50 = write_loop.percentile(0.5);
        let mut line = JsonLine::default();
        line.text("mode", "broadcast")
            .plain("conns", conns)
            .plain("conns_requested", args.conns)
            .text("layout", layout.describe())
            .plain("pinned", args.common.pin)
            .plain("nofile_limit", limit)
            .plain("samples", args.samples)
            .plain("warmup_samples", args.warmup_samples)
            .plain("size", args.common.size)
            .plain("frame_bytes", frame_len)
            .plain("gap_ms", args.gap_ms)
            .maybe("p50_ms", latency.percentile(0.5))
            .maybe("p99_ms", latency.percentile(0.99))
            .maybe("max_ms", latency.max())
            .maybe("mean_ms", latency.mean())
            .maybe("warmup_p50_ms", warmup.percentile(0.5))
            .maybe("write_loop_p50_ms", write_loop_p50)
            .maybe(
                "server_us_per_write",
                write_loop_p50.map(|ms| ms * 1e3 / conns as f64),
            )
            .number(
                "server_cpu_ms_per_bcast",
                per_bcast(server.on_cpu_ns as f64 / 1e6),
            )
            .number(
                "server_cpu_ms_per_bcast_rusage",
                per_bcast(server.rusage_ms()),
            )
            .number(
                "server_runq_wait_ms_per_bcast",
                per_bcast(server.runq_wait_ns as f64 / 1e6),
            )
            .number("server_sys_frac", self.server_cpu.sys_frac())
            .number(
                "client_cpu_ms_per_bcast",
                per_bcast(client.on_cpu_ns as f64 / 1e6),
            )
            .number(
                "client_cpu_ms_per_bcast_rusage",
                per_bcast(client.rusage_ms()),
            )
            .number(
                "client_runq_wait_ms_per_bcast",
                per_bcast(client.runq_wait_ns as f64 / 1e6),
            )
            .number("client_sys_frac", client.sys_frac())
            .number(
                "machine_cpu_ms_per_bcast",
                per_bcast(machine.busy as f64 * tick_ms),
            )
            .number(
                "softirq_ms_per_bcast",
                per_bcast(machine.softirq as f64 * tick_ms),
            )
            .number(
                "steal_cores",
                machine.steal as f64 / TICKS_PER_S / self.wall_s,
            )
            .number("wall_s", self.wall_s)
            .number("loadavg_1m", load);
        line.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_while_both_sides_fit() {
        assert_eq!(
            Layout::choose(1000, 20_000, false).ok(),
            Some((Layout::Threads, 1000))
        );
        assert_eq!(
            Layout::choose(9984, 20_000, false).ok(),
            Some((Layout::Threads, 9984))
        );
    }

    #[test]
    fn two_processes_when_asked_or_past_the_limit() {
        assert_eq!(
            Layout::choose(1000, 20_000, true).ok(),
            Some((Layout::Processes, 1000))
        );
        assert_eq!(
            Layout::choose(10_000, 20_000, false).ok(),
            Some((Layout::Processes, 10_000))
        );
    }

    #[test]
    fn past_one_process_per_side_the_count_is_cut() {
        assert_eq!(
            Layout::choose(25_000, 20_000, false).ok(),
            Some((Layout::Processes, 19_968))
        );
        assert!(Layout::choose(10, 32, false).is_err());
    }

    #[test]
    fn a_client_report_reads_back_as_sent() {
        let report = ClientReport {
            last_read_ns: 1_234_567_890_123,
            cpu: ThreadCpu {
                user_us: 1,
                sys_us: u64::MAX,
                on_cpu_ns: 3 << 40,
                runq_wait_ns: 0,
            },
        };
        assert_eq!(ClientReport::decode(&report.encode()), report);
        assert_eq!(report.encode()[..8], 1_234_567_890_123u64.to_le_bytes());
    }
}
