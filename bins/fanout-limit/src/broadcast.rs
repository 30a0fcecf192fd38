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
//! server and client become two single-threaded processes. With
//! `--servers K` the connections are split over K such pairs, which start
//! every broadcast at the same instant ([`servers`]).

mod control;
mod servers;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::AssertUnwindSafe;
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

use control::{ClientReport, ServerRound, Totals};

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
    let (layout, shares) = Layout::choose(args.conns, limit, args.procs, args.servers)?;
    let load = loadavg_1m()?;
    let frame = server_frame(&payload(args.common.size));
    let frame_len = frame.len();
    let measured = match layout {
        Layout::Threads | Layout::Processes => {
            measure_pair(layout, shares.iter().sum(), frame, args)?
        }
        Layout::Servers(_) => servers::measure_servers(&shares, &frame, args)?,
    };
    Ok(measured.report(args, layout, &shares, limit, frame_len, load))
}

/// Where the sides run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// One process, a server thread and a client thread.
    Threads,
    /// Two single-threaded processes.
    Processes,
    /// `--servers K`: K single-threaded server processes and K client
    /// processes, started and coordinated by this one.
    Servers(usize),
}

impl Layout {
    /// The layout for `wanted` connections over `servers` servers under an
    /// open-files `limit`, and how many connections each server can hold.
    fn choose(
        wanted: usize,
        limit: usize,
        procs: bool,
        servers: usize,
    ) -> Result<(Layout, Vec<usize>), LimitError> {
        if servers == 1 && !procs && 2 * wanted + SPARE_FDS <= limit {
            return Ok((Layout::Threads, vec![wanted]));
        }
        // A server or client process of several also holds the
        // coordinator's ends of the earlier servers' control sockets.
        let room = limit.saturating_sub(SPARE_FDS + servers - 1);
        if room == 0 {
            return Err(LimitError::FdLimit(limit));
        }
        let shares = split(wanted, servers)
            .into_iter()
            .map(|share| share.min(room))
            .collect();
        let layout = match servers {
            1 => Layout::Processes,
            servers => Layout::Servers(servers),
        };
        Ok((layout, shares))
    }

    fn describe(self) -> String {
        match self {
            Layout::Threads => "1 process x 2 threads".into(),
            Layout::Processes => "2 processes x 1 thread".into(),
            Layout::Servers(k) => {
                format!("{k} server + {k} client processes x 1 thread, 1 coordinator")
            }
        }
    }
}

/// `conns` split over `servers` as evenly as they go: the first servers
/// take one more.
fn split(conns: usize, servers: usize) -> Vec<usize> {
    (0..servers)
        .map(|i| conns / servers + usize::from(i < conns % servers))
        .collect()
}

/// Runs `work` in a child process (see [`sys::fork`]) and returns the
/// child. A child that fails says why on stderr itself, as `name`: its
/// parent only sees the exit status.
fn spawn(
    name: &str,
    work: impl FnOnce() -> Result<(), LimitError>,
) -> Result<ChildProcess, LimitError> {
    match sys::fork()? {
        Forked::Child => {
            // A panic must not unwind into the parent's code this process
            // copied (which would kill the parent's other children).
            let code = match std::panic::catch_unwind(AssertUnwindSafe(work)) {
                Ok(Ok(())) => 0,
                Ok(Err(error)) => {
                    whisper_cli::report(&format!("{name}: {error}"), FAILED);
                    i32::from(FAILED)
                }
                Err(_) => i32::from(FAILED),
            };
            sys::exit_child(code)
        }
        Forked::Parent(child) => Ok(child),
    }
}

/// One server and its client, as threads of this process or as this
/// process and a child.
fn measure_pair(
    layout: Layout,
    conns: usize,
    frame: Vec<u8>,
    args: &BroadcastArgs,
) -> Result<Measured, LimitError> {
    let listener = net::listen()?;
    let (control, client_control) = control::pair()?;
    control::time_out(&control, CONTROL_TIMEOUT)?;
    let job = ClientJob::new(&listener, conns, frame.len(), args)?;
    let client = match layout {
        Layout::Threads => Client::Thread(std::thread::spawn(move || job.run(client_control))),
        _ => Client::Process(spawn("client process", move || job.run(client_control))?),
    };
    let measured =
        Server::accept(listener, conns, frame, control, args.common.pin).and_then(|server| {
            let mut paced = Paced {
                server,
                gap: Duration::from_millis(args.gap_ms),
            };
            measure(&mut paced, args)
        });
    match measured {
        Ok(measured) => {
            client.finish()?;
            Ok(measured)
        }
        // The client failed first: its error says why.
        Err(error) if error.follows_partner_failure() => {
            Err(client.finish().err().unwrap_or(error))
        }
        // Returning drops the client: a thread ends with the process, a
        // child process is killed.
        Err(error) => Err(error),
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
    /// The client of `conns` connections to `listener`.
    fn new(
        listener: &TcpListener,
        conns: usize,
        frame_len: usize,
        args: &BroadcastArgs,
    ) -> Result<ClientJob, LimitError> {
        Ok(ClientJob {
            addr: net::local_addr(listener)?,
            conns,
            rounds: args.warmup_samples + args.samples,
            frame_len,
            pin: args.common.pin,
        })
    }

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
    control::send(control, &report, "server")
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

/// The server's side: one thread, its accepted sockets and the control
/// socket its client reports on.
struct Server {
    sockets: Vec<TcpStream>,
    frame: Vec<u8>,
    control: UnixStream,
}

impl Server {
    /// Takes the server's CPU (with `--pin`) and accepts its `conns`
    /// connections.
    fn accept(
        listener: TcpListener,
        conns: usize,
        frame: Vec<u8>,
        control: UnixStream,
        pin: bool,
    ) -> Result<Server, LimitError> {
        if pin {
            sys::pin_to_cpu(0)?;
        }
        let sockets = net::accept_n(&listener, conns)?;
        drop(listener);
        Ok(Server {
            sockets,
            frame,
            control,
        })
    }

    /// Waits for the client's first report (it has connected every socket
    /// and watches them all): both sides' CPU so far.
    fn ready(&mut self) -> Result<Totals, LimitError> {
        let client: ClientReport = control::receive(&mut self.control, "client")?;
        Ok(Totals {
            server: ThreadCpu::now(),
            client: client.cpu,
        })
    }

    /// One broadcast, at once: the frame to every socket, then the
    /// client's report.
    fn round(&mut self) -> Result<ServerRound, LimitError> {
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
        let write_cpu = ThreadCpu::now().since(cpu_from);
        let client: ClientReport = control::receive(&mut self.control, "client")?;
        Ok(ServerRound {
            started_ns,
            written_ns,
            last_read_ns: client.last_read_ns,
            write_cpu,
            totals: Totals {
                server: ThreadCpu::now(),
                client: client.cpu,
            },
        })
    }
}

/// The servers of a run as the measuring side drives them: the one server
/// of this process ([`Paced`]), or K server processes
/// ([`servers`]).
trait Broadcasts {
    /// Waits until every client has connected all its sockets: each
    /// server's and client's CPU so far, one [`Totals`] per server.
    fn ready(&mut self) -> Result<Vec<Totals>, LimitError>;

    /// One broadcast, `--gap-ms` after the previous one ended.
    fn broadcast(&mut self) -> Result<Sample, LimitError>;
}

/// The one server of an unsplit run, keeping its own pace.
struct Paced {
    server: Server,
    gap: Duration,
}

impl Broadcasts for Paced {
    fn ready(&mut self) -> Result<Vec<Totals>, LimitError> {
        Ok(vec![self.server.ready()?])
    }

    fn broadcast(&mut self) -> Result<Sample, LimitError> {
        std::thread::sleep(self.gap);
        let round = self.server.round()?;
        Ok(Sample {
            start_ns: round.started_ns,
            servers: vec![round],
        })
    }
}

/// One broadcast to every connection of the run.
struct Sample {
    /// When it started: a single server's first write, or the instant
    /// several servers were told to start at.
    start_ns: u64,
    /// What each server saw of it.
    servers: Vec<ServerRound>,
}

impl Sample {
    /// From the start to the last frame read by any client, ms.
    fn latency_ms(&self) -> f64 {
        let last_read_ns = self.servers.iter().map(|server| server.last_read_ns).max();
        ms(last_read_ns.unwrap_or(0).saturating_sub(self.start_ns))
    }

    /// From the start to the first write of the server that began last,
    /// ms: how far the servers missed the instant they were given.
    fn start_lag_ms(&self) -> f64 {
        let started_ns = self.servers.iter().map(|server| server.started_ns).max();
        ms(started_ns.unwrap_or(0).saturating_sub(self.start_ns))
    }

    /// The longest write loop, ms.
    fn write_loop_ms(&self) -> f64 {
        self.servers
            .iter()
            .map(ServerRound::write_loop_ms)
            .fold(0.0, f64::max)
    }

    /// The write loops added up, per connection, µs.
    fn us_per_write(&self, conns: usize) -> f64 {
        let loops_ms: f64 = self.servers.iter().map(ServerRound::write_loop_ms).sum();
        loops_ms * 1e3 / conns as f64
    }

    fn totals(&self) -> Vec<Totals> {
        self.servers.iter().map(|server| server.totals).collect()
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Everything the report is made of.
struct Measured {
    warmup: Vec<Sample>,
    rounds: Vec<Sample>,
    /// From the first measured round on.
    wall_s: f64,
    machine: MachineTicks,
    /// Each server's and client's CPU over the measured rounds, one per
    /// server.
    spent: Vec<Totals>,
}

/// Runs the warm-up and the measured broadcasts.
fn measure(servers: &mut impl Broadcasts, args: &BroadcastArgs) -> Result<Measured, LimitError> {
    let ready = servers.ready()?;
    let warmup = (0..args.warmup_samples)
        .map(|_| servers.broadcast())
        .collect::<Result<Vec<_>, _>>()?;
    let from = warmup.last().map_or(ready, Sample::totals);
    let (machine_from, started) = (MachineTicks::now()?, Instant::now());
    let rounds = (0..args.samples)
        .map(|_| servers.broadcast())
        .collect::<Result<Vec<_>, _>>()?;
    let wall_s = started.elapsed().as_secs_f64();
    let machine = MachineTicks::now()?.since(machine_from);
    let to = rounds.last().map_or_else(|| from.clone(), Sample::totals);
    Ok(Measured {
        warmup,
        rounds,
        wall_s,
        machine,
        spent: to
            .iter()
            .zip(&from)
            .map(|(to, from)| to.since(*from))
            .collect(),
    })
}

/// The keys of one side's CPU fields, in the order they are printed: each
/// figure for the whole side (added up over its processes), then per
/// process (`_each`, in server order).
struct CpuKeys {
    cpu: [&'static str; 2],
    rusage: [&'static str; 2],
    runq_wait: [&'static str; 2],
    sys_frac: [&'static str; 2],
}

const SERVER_KEYS: CpuKeys = CpuKeys {
    cpu: ["server_cpu_ms_per_bcast", "server_cpu_ms_per_bcast_each"],
    rusage: [
        "server_cpu_ms_per_bcast_rusage",
        "server_cpu_ms_per_bcast_rusage_each",
    ],
    runq_wait: [
        "server_runq_wait_ms_per_bcast",
        "server_runq_wait_ms_per_bcast_each",
    ],
    sys_frac: ["server_sys_frac", "server_sys_frac_each"],
};

const CLIENT_KEYS: CpuKeys = CpuKeys {
    cpu: ["client_cpu_ms_per_bcast", "client_cpu_ms_per_bcast_each"],
    rusage: [
        "client_cpu_ms_per_bcast_rusage",
        "client_cpu_ms_per_bcast_rusage_each",
    ],
    runq_wait: [
        "client_runq_wait_ms_per_bcast",
        "client_runq_wait_ms_per_bcast_each",
    ],
    sys_frac: ["client_sys_frac", "client_sys_frac_each"],
};

/// How a CPU figure, in ms, is read from a thread's CPU time.
type Figure = fn(ThreadCpu) -> f64;

impl CpuKeys {
    /// Adds one side's CPU fields to `line`: `per_bcast` is each
    /// process's CPU over the figures per broadcast, `whole` its CPU over
    /// the measured rounds (for the kernel's share).
    fn add(
        &self,
        line: &mut JsonLine,
        per_bcast: &[ThreadCpu],
        whole: &[ThreadCpu],
        samples: usize,
    ) {
        let sum = |cpus: &[ThreadCpu]| {
            cpus.iter()
                .fold(ThreadCpu::default(), |sum, cpu| sum.plus(*cpu))
        };
        let figures: [(&[&'static str; 2], Figure); 3] = [
            (&self.cpu, |cpu| cpu.on_cpu_ns as f64 / 1e6),
            (&self.rusage, ThreadCpu::rusage_ms),
            (&self.runq_wait, |cpu| cpu.runq_wait_ns as f64 / 1e6),
        ];
        for ([key, each], figure) in figures {
            let per_bcast_of = |cpu: ThreadCpu| figure(cpu) / samples as f64;
            line.number(key, per_bcast_of(sum(per_bcast)))
                .maybe_list(each, per_bcast.iter().map(|cpu| Some(per_bcast_of(*cpu))));
        }
        let [key, each] = self.sys_frac;
        line.number(key, sum(whole).sys_frac())
            .maybe_list(each, whole.iter().map(|cpu| Some(cpu.sys_frac())));
    }
}

impl Measured {
    /// The measured rounds as each server saw them, one list per server.
    fn by_server(&self) -> Vec<Vec<&ServerRound>> {
        let mut lists = vec![Vec::with_capacity(self.rounds.len()); self.spent.len()];
        for sample in &self.rounds {
            for (list, round) in lists.iter_mut().zip(&sample.servers) {
                list.push(round);
            }
        }
        lists
    }

    fn report(
        &self,
        args: &BroadcastArgs,
        layout: Layout,
        shares: &[usize],
        limit: usize,
        frame_len: usize,
        load: f64,
    ) -> String {
        let conns: usize = shares.iter().sum();
        let over_rounds =
            |figure: fn(&Sample) -> f64| Samples::new(self.rounds.iter().map(figure).collect());
        let latency = over_rounds(Sample::latency_ms);
        let write_loop = over_rounds(Sample::write_loop_ms);
        let warmup = Samples::new(self.warmup.iter().map(Sample::latency_ms).collect());
        let by_server = self.by_server();
        let write_loop_each = by_server.iter().map(|rounds| {
            Samples::new(rounds.iter().map(|round| round.write_loop_ms()).collect()).percentile(0.5)
        });
        let us_per_write = Samples::new(
            self.rounds
                .iter()
                .map(|sample| sample.us_per_write(conns))
                .collect(),
        );
        let write_cpu: Vec<ThreadCpu> = by_server
            .iter()
            .map(|rounds| {
                rounds
                    .iter()
                    .fold(ThreadCpu::default(), |sum, round| sum.plus(round.write_cpu))
            })
            .collect();
        let server_whole: Vec<ThreadCpu> = self.spent.iter().map(|spent| spent.server).collect();
        let client_whole: Vec<ThreadCpu> = self.spent.iter().map(|spent| spent.client).collect();
        let machine = self.machine;
        let per_bcast = |ms: f64| ms / args.samples as f64;
        let tick_ms = 1000.0 / TICKS_PER_S;
        let mut line = JsonLine::default();
        line.text("mode", "broadcast")
            .plain("conns", conns)
            .plain("conns_requested", args.conns)
            .text("layout", &layout.describe())
            .plain("servers", shares.len())
            .plain_list("server_conns", shares)
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
            .maybe(
                "start_lag_p50_ms",
                over_rounds(Sample::start_lag_ms).percentile(0.5),
            )
            .maybe("write_loop_p50_ms", write_loop.percentile(0.5))
            .maybe_list("write_loop_p50_ms_each", write_loop_each)
            .maybe("server_us_per_write", us_per_write.percentile(0.5));
        SERVER_KEYS.add(&mut line, &write_cpu, &server_whole, args.samples);
        CLIENT_KEYS.add(&mut line, &client_whole, &client_whole, args.samples);
        line.number(
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

    fn choose(wanted: usize, procs: bool, servers: usize) -> Option<(Layout, Vec<usize>)> {
        Layout::choose(wanted, 20_000, procs, servers).ok()
    }

    #[test]
    fn one_process_while_both_sides_fit() {
        assert_eq!(choose(1000, false, 1), Some((Layout::Threads, vec![1000])));
        assert_eq!(choose(9984, false, 1), Some((Layout::Threads, vec![9984])));
    }

    #[test]
    fn two_processes_when_asked_or_past_the_limit() {
        assert_eq!(choose(1000, true, 1), Some((Layout::Processes, vec![1000])));
        assert_eq!(
            choose(10_000, false, 1),
            Some((Layout::Processes, vec![10_000]))
        );
    }

    #[test]
    fn past_one_process_per_side_the_count_is_cut() {
        assert_eq!(
            choose(25_000, false, 1),
            Some((Layout::Processes, vec![19_968]))
        );
        assert!(Layout::choose(10, 32, false, 1).is_err());
    }

    #[test]
    fn several_servers_share_the_connections() {
        assert_eq!(
            choose(50_000, false, 3),
            Some((Layout::Servers(3), vec![16_667, 16_667, 16_666]))
        );
        assert_eq!(
            choose(600, false, 3),
            Some((Layout::Servers(3), vec![200, 200, 200]))
        );
        // Small runs too: one process per side per server, always.
        assert_eq!(choose(2, false, 2), Some((Layout::Servers(2), vec![1, 1])));
    }

    #[test]
    fn each_server_is_cut_to_what_its_processes_hold() {
        // The coordinator's ends of the other servers' sockets count too.
        assert_eq!(
            choose(70_000, false, 3),
            Some((Layout::Servers(3), vec![19_966, 19_966, 19_966]))
        );
        assert!(Layout::choose(10, 34, false, 3).is_err());
    }

    #[test]
    fn a_split_is_even_to_one_connection() {
        for (conns, servers) in [(1, 1), (7, 7), (50_000, 3), (10, 4), (19_999, 16)] {
            let shares = split(conns, servers);
            assert_eq!(shares.len(), servers);
            assert_eq!(shares.iter().sum::<usize>(), conns);
            let (least, most) = (shares.iter().min(), shares.iter().max());
            assert!(
                least
                    .zip(most)
                    .is_some_and(|(least, most)| most - least <= 1),
                "{shares:?}"
            );
            assert!(shares.is_sorted_by(|a, b| a >= b), "{shares:?}");
        }
    }

    #[test]
    fn the_layout_says_what_ran() {
        assert_eq!(Layout::Threads.describe(), "1 process x 2 threads");
        assert_eq!(Layout::Processes.describe(), "2 processes x 1 thread");
        assert_eq!(
            Layout::Servers(3).describe(),
            "3 server + 3 client processes x 1 thread, 1 coordinator"
        );
    }

    fn round(started_ns: u64, written_ns: u64, last_read_ns: u64) -> ServerRound {
        ServerRound {
            started_ns,
            written_ns,
            last_read_ns,
            write_cpu: ThreadCpu::default(),
            totals: Totals::default(),
        }
    }

    #[test]
    fn a_broadcast_lasts_from_its_start_to_the_last_read_of_any_client() {
        let sample = Sample {
            start_ns: 1_000_000,
            servers: vec![
                round(1_100_000, 3_100_000, 9_000_000),
                round(1_500_000, 2_500_000, 11_000_000),
                round(1_200_000, 5_200_000, 7_000_000),
            ],
        };
        assert_eq!(sample.latency_ms(), 10.0);
        assert_eq!(sample.start_lag_ms(), 0.5);
        assert_eq!(sample.write_loop_ms(), 4.0);
        // 2 + 1 + 4 ms of writing for 1000 connections.
        assert_eq!(sample.us_per_write(1000), 7.0);
    }

    #[test]
    fn one_server_starts_at_its_first_write() {
        let sample = Sample {
            start_ns: 2_000_000,
            servers: vec![round(2_000_000, 4_000_000, 5_000_000)],
        };
        assert_eq!(sample.latency_ms(), 3.0);
        assert_eq!(sample.start_lag_ms(), 0.0);
        assert_eq!(sample.write_loop_ms(), 2.0);
        assert_eq!(sample.us_per_write(100), 20.0);
    }
}
