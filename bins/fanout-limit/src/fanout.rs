//! Mode `fanout`: the throughput of a chat room in a closed loop, when
//! all the server does is re-frame each message once and hand it to every
//! member's socket.
//!
//! `--members` sockets; the last one is also the sender. The sender writes
//! `--size`-byte messages as masked client frames, one `write()` each,
//! keeping at most `--window` of them outstanding: a message is done when
//! its own echo arrives. The server thread (one epoll over all members)
//! reads whatever arrived, unmasks and re-frames each message once, and
//! sends the frame to every member: with one `write()` per member per
//! message, or with `--writev` all the messages of one wake-up to each
//! member in one `writev()`. Frames are shared by reference count, never
//! copied per member. Partial writes and `EAGAIN` leave the rest in the
//! member's queue, written on `EPOLLOUT`. The client thread reads every
//! member socket and counts the frames; after `--warmup` it counts for
//! `--duration`.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use crate::cli::FanoutArgs;
use crate::cpu::{MachineTicks, TICKS_PER_S, ThreadCpu, loadavg_1m};
use crate::error::{LimitError, first_cause};
use crate::frame::{
    CLIENT_MASK, client_frame, parse_frame, payload, server_frame, server_frame_len,
};
use crate::net;
use crate::report::JsonLine;
use crate::sys::{self, Epoll, IoVecs};

/// Longest `epoll_wait`, so both threads see the end of a phase in time.
const POLL_MS: i32 = 20;
/// Events taken per wait.
const EVENTS: usize = 256;
/// Read buffer of each thread.
const READ_BUFFER: usize = 64 * 1024;
/// Frames in one `writev()`: Linux's `IOV_MAX`.
const MAX_IOVECS: usize = 1024;

/// Runs the mode and returns its report line.
pub fn run(args: &FanoutArgs) -> Result<String, LimitError> {
    net::raise_nofile()?;
    let load = loadavg_1m()?;
    let listener = net::listen()?;
    let addr = net::local_addr(&listener)?;
    let (server_meeting, client_meeting) = meeting();
    let load_generator = LoadGenerator {
        addr,
        members: args.members,
        window: args.window,
        size: args.common.size,
        warmup: args.warmup,
        duration: args.duration,
        pin: args.common.pin,
    };
    let client = std::thread::spawn(move || load_generator.run(&client_meeting));
    let served = serve(listener, args, &server_meeting);
    drop(server_meeting);
    // The server's sockets are closed by now, so a client still running
    // ends at its next read.
    let (server, client) = match (served, client.join()) {
        (Ok(server), Ok(Ok(client))) => (server, client),
        (Err(server), Ok(Err(client))) => return Err(first_cause(server, client)),
        (Err(error), Ok(Ok(_))) | (Ok(_), Ok(Err(error))) => return Err(error),
        (_, Err(_)) => return Err(LimitError::PartnerGone("client thread panicked".into())),
    };
    Ok(report(args, &server, &client, load))
}

/// Where the server and client threads wait for each other, at the start
/// and at the end, like a `Barrier` of two, except that a side whose
/// partner has ended gets an error instead of waiting for ever.
struct Meeting {
    arrived: Sender<()>,
    partner: Receiver<()>,
    partner_name: &'static str,
}

/// The server's end and the client's end of a meeting.
fn meeting() -> (Meeting, Meeting) {
    let (server_arrived, client_sees) = mpsc::channel();
    let (client_arrived, server_sees) = mpsc::channel();
    (
        Meeting {
            arrived: server_arrived,
            partner: server_sees,
            partner_name: "client",
        },
        Meeting {
            arrived: client_arrived,
            partner: client_sees,
            partner_name: "server",
        },
    )
}

impl Meeting {
    /// Returns once the partner has arrived too.
    fn meet(&self) -> Result<(), LimitError> {
        // A partner that has ended cannot receive; its recv fails below.
        let _ = self.arrived.send(());
        self.partner
            .recv()
            .map_err(|_| LimitError::PartnerGone(format!("{} ended early", self.partner_name)))
    }
}

/// What the server thread counts.
#[derive(Clone, Copy, Debug, Default)]
struct Count {
    /// Messages read (each fanned out to every member).
    msgs: u64,
    /// Wake-ups that found messages.
    batches: u64,
    /// write() or writev() calls, `EAGAIN` included.
    writes: u64,
    /// Of those, the ones that found a full socket buffer.
    eagain: u64,
}

impl Count {
    fn since(self, earlier: Count) -> Count {
        Count {
            msgs: self.msgs - earlier.msgs,
            batches: self.batches - earlier.batches,
            writes: self.writes - earlier.writes,
            eagain: self.eagain - earlier.eagain,
        }
    }
}

/// One member's socket as the server keeps it.
struct Member {
    socket: TcpStream,
    outbox: Outbox,
    /// Bytes read that do not make a whole frame yet.
    inbuf: Vec<u8>,
    /// Whether epoll watches for `EPOLLOUT`: only while a write is left.
    out_armed: bool,
}

impl Member {
    /// Writes what is queued: one `write()` per frame, or one `writev()`
    /// for all of them (up to `IOV_MAX`), until the outbox is empty or the
    /// socket is full.
    fn flush(
        &mut self,
        token: usize,
        epoll: &Epoll,
        writev: bool,
        iov: &mut IoVecs,
        count: &mut Count,
    ) -> Result<(), LimitError> {
        let fd = self.socket.as_raw_fd();
        while let Some(first) = self.outbox.first() {
            let result = if writev {
                iov.writev(fd, self.outbox.chunks().take(MAX_IOVECS))
            } else {
                sys::write(fd, first)
            };
            count.writes += 1;
            match result {
                Ok(n) => self.outbox.consume(n),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    count.eagain += 1;
                    break;
                }
                Err(error) => return Err(LimitError::sys("server write", error)),
            }
        }
        if self.outbox.is_empty() == self.out_armed {
            self.out_armed = !self.out_armed;
            let out = if self.out_armed { libc::EPOLLOUT } else { 0 };
            epoll.modify(fd, libc::EPOLLIN | out, token)?;
        }
        Ok(())
    }
}

/// The frames not yet (fully) written to one member. They are shared
/// with every other member: queueing one costs a reference count.
#[derive(Debug, Default)]
struct Outbox {
    frames: VecDeque<Rc<[u8]>>,
    /// Bytes of the first frame already written.
    written: usize,
}

impl Outbox {
    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// What is left of the first frame.
    fn first(&self) -> Option<&[u8]> {
        self.frames.front().map(|frame| &frame[self.written..])
    }

    /// Everything left, in order.
    fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let rest = self.frames.iter().skip(1).map(|frame| &frame[..]);
        self.first().into_iter().chain(rest)
    }

    /// Drops the first `n` bytes, as a write that took them.
    fn consume(&mut self, mut n: usize) {
        while let Some(first) = self.frames.front() {
            let left = first.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.frames.pop_front();
            self.written = 0;
        }
    }
}

/// The chat room on the server thread.
struct Room {
    members: Vec<Member>,
    epoll: Epoll,
    writev: bool,
    events: Vec<libc::epoll_event>,
    buf: Vec<u8>,
    iov: IoVecs,
    /// Frames made in this wake-up, to go to every member.
    fresh: Vec<Rc<[u8]>>,
    count: Count,
}

/// What the server measured.
struct Served {
    count: Count,
    cpu: ThreadCpu,
    wall_s: f64,
}

/// The server thread: accepts the members, then fans out every message
/// until the end of the run.
fn serve(
    listener: TcpListener,
    args: &FanoutArgs,
    meeting: &Meeting,
) -> Result<Served, LimitError> {
    if args.common.pin {
        sys::pin_to_cpu(0)?;
    }
    let sockets = net::accept_n(&listener, args.members)?;
    drop(listener);
    let epoll = Epoll::new()?;
    for (i, socket) in sockets.iter().enumerate() {
        epoll.add(socket.as_raw_fd(), libc::EPOLLIN, i)?;
    }
    let mut room = Room {
        members: sockets
            .into_iter()
            .map(|socket| Member {
                socket,
                outbox: Outbox::default(),
                inbuf: Vec::new(),
                out_armed: false,
            })
            .collect(),
        epoll,
        writev: args.writev,
        events: sys::event_buffer(EVENTS),
        buf: vec![0; READ_BUFFER],
        iov: IoVecs::with_capacity(MAX_IOVECS),
        fresh: Vec::new(),
        count: Count::default(),
    };
    meeting.meet()?;
    let started = Instant::now();
    room.serve_until(started + args.warmup)?;
    let (count_from, cpu_from, measured_from) = (room.count, ThreadCpu::now(), Instant::now());
    room.serve_until(started + args.warmup + args.duration)?;
    let served = Served {
        count: room.count.since(count_from),
        cpu: ThreadCpu::now().since(cpu_from),
        wall_s: measured_from.elapsed().as_secs_f64(),
    };
    // The client closes its sockets only once the server has stopped.
    meeting.meet()?;
    Ok(served)
}

impl Room {
    fn serve_until(&mut self, end: Instant) -> Result<(), LimitError> {
        while Instant::now() < end {
            self.turn()?;
        }
        Ok(())
    }

    /// One wake-up: read what arrived, then fan it out.
    fn turn(&mut self) -> Result<(), LimitError> {
        let Room {
            members,
            epoll,
            writev,
            events,
            buf,
            iov,
            fresh,
            count,
        } = self;
        let ready = epoll.wait(events, POLL_MS)?;
        for event in &events[..ready] {
            let (i, flags) = (event.u64 as usize, event.events as i32);
            let member = &mut members[i];
            if flags & libc::EPOLLOUT != 0 {
                member.flush(i, epoll, *writev, iov, count)?;
            }
            if flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) == 0 {
                continue;
            }
            let Some(n) = net::read_ready(member.socket.as_raw_fd(), buf, "server")? else {
                continue;
            };
            member.inbuf.extend_from_slice(&buf[..n]);
            let mut at = 0;
            while let Some(parsed) = parse_frame(&member.inbuf[at..])? {
                at += parsed.consumed;
                // Unmasked and re-framed once, then shared by every member.
                fresh.push(Rc::from(server_frame(&parsed.payload)));
            }
            member.inbuf.drain(..at);
        }
        if fresh.is_empty() {
            return Ok(());
        }
        count.batches += 1;
        count.msgs += fresh.len() as u64;
        if *writev {
            // Each member gets all the fresh frames in one writev().
            for (i, member) in members.iter_mut().enumerate() {
                member.outbox.frames.extend(fresh.iter().cloned());
                member.flush(i, epoll, true, iov, count)?;
            }
        } else {
            // Per message, one write() to each member.
            for frame in fresh.iter() {
                for (i, member) in members.iter_mut().enumerate() {
                    member.outbox.frames.push_back(frame.clone());
                    member.flush(i, epoll, false, iov, count)?;
                }
            }
        }
        fresh.clear();
        Ok(())
    }
}

/// The client thread's task: the members' sockets, one of them sending.
struct LoadGenerator {
    addr: SocketAddr,
    members: usize,
    window: u64,
    size: usize,
    warmup: Duration,
    duration: Duration,
    pin: bool,
}

/// What the client measured.
struct Loaded {
    /// Frames delivered to members.
    deliveries: u64,
    /// Messages the sender wrote.
    sent: u64,
    cpu: ThreadCpu,
    machine: MachineTicks,
    wall_s: f64,
}

/// The sockets and counts of the client thread.
struct Members {
    sockets: Vec<TcpStream>,
    epoll: Epoll,
    events: Vec<libc::epoll_event>,
    buf: Vec<u8>,
    /// Bytes received per member.
    received: Vec<u64>,
    /// The server's frame length: whole frames received are bytes / this.
    frame_len: u64,
    sender: usize,
    sender_fd: RawFd,
    /// The sender's message, masked as a client's.
    message: Vec<u8>,
    /// The rest of a message the socket took only in part.
    pending: Vec<u8>,
    sent: u64,
    window: u64,
}

impl LoadGenerator {
    fn run(self, meeting: &Meeting) -> Result<Loaded, LimitError> {
        if self.pin {
            sys::pin_to_cpu(1)?;
        }
        let (sockets, epoll) = net::connect_n(self.addr, self.members)?;
        let sender = self.members - 1;
        let mut members = Members {
            sender_fd: sockets[sender].as_raw_fd(),
            sockets,
            epoll,
            events: sys::event_buffer(EVENTS),
            buf: vec![0; READ_BUFFER],
            received: vec![0; self.members],
            frame_len: server_frame_len(self.size) as u64,
            sender,
            message: client_frame(&payload(self.size), CLIENT_MASK),
            pending: Vec::new(),
            sent: 0,
            window: self.window,
        };
        meeting.meet()?;
        let started = Instant::now();
        members.run_until(started + self.warmup)?;
        let (delivered_from, sent_from) = (members.delivered(), members.sent);
        let (cpu_from, machine_from) = (ThreadCpu::now(), MachineTicks::now()?);
        let measured_from = Instant::now();
        members.run_until(started + self.warmup + self.duration)?;
        let loaded = Loaded {
            deliveries: members.delivered() - delivered_from,
            sent: members.sent - sent_from,
            cpu: ThreadCpu::now().since(cpu_from),
            machine: MachineTicks::now()?.since(machine_from),
            wall_s: measured_from.elapsed().as_secs_f64(),
        };
        meeting.meet()?;
        Ok(loaded)
    }
}

impl Members {
    fn run_until(&mut self, end: Instant) -> Result<(), LimitError> {
        while Instant::now() < end {
            self.turn()?;
        }
        Ok(())
    }

    /// Frames delivered so far, to all members together.
    fn delivered(&self) -> u64 {
        self.received
            .iter()
            .map(|bytes| bytes / self.frame_len)
            .sum()
    }

    /// Messages sent and not yet echoed back to the sender.
    fn outstanding(&self) -> u64 {
        self.sent
            .saturating_sub(self.received[self.sender] / self.frame_len)
    }

    /// Tops the window up, then reads what arrived.
    fn turn(&mut self) -> Result<(), LimitError> {
        if !self.pending.is_empty() {
            match sys::write(self.sender_fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                // Still full: try again after the next wait.
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Err(error) => return Err(LimitError::sys("sender write", error)),
            }
        }
        while self.pending.is_empty() && self.outstanding() < self.window {
            // One write() per message, as a real client does.
            match sys::write(self.sender_fd, &self.message) {
                Ok(n) => {
                    self.sent += 1;
                    self.pending.extend_from_slice(&self.message[n..]);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => return Err(LimitError::sys("sender write", error)),
            }
        }
        let ready = self.epoll.wait(&mut self.events, POLL_MS)?;
        for event in &self.events[..ready] {
            let i = event.u64 as usize;
            let fd = self.sockets[i].as_raw_fd();
            self.received[i] += net::read_ready(fd, &mut self.buf, "client")?.unwrap_or(0) as u64;
        }
        Ok(())
    }
}

fn report(args: &FanoutArgs, server: &Served, client: &Loaded, load: f64) -> String {
    let members = args.members as f64;
    let deliveries_per_s = client.deliveries as f64 / client.wall_s;
    let fanned_out = (server.count.msgs * args.members as u64).max(1) as f64;
    let per_server_s = |ns: u64| ns as f64 / 1e9 / server.wall_s;
    let per_client_s = |ns: u64| ns as f64 / 1e9 / client.wall_s;
    let cores = |ticks: u64| ticks as f64 / TICKS_PER_S / client.wall_s;
    let per_msg = |n: u64| n as f64 / server.count.msgs.max(1) as f64;
    let mut line = JsonLine::default();
    line.text("mode", "fanout")
        .text("variant", if args.writev { "writev" } else { "write" })
        .plain("pinned", args.common.pin)
        .plain("members", args.members)
        .plain("window", args.window)
        .plain("size", args.common.size)
        .plain("frame_bytes", server_frame_len(args.common.size))
        .number("warmup_s", args.warmup.as_secs_f64())
        .number("duration_s", client.wall_s)
        .number("deliveries_per_s", deliveries_per_s)
        .number("messages_per_s", deliveries_per_s / members)
        .number("sent_per_s", client.sent as f64 / client.wall_s)
        .number(
            "msgs_per_batch",
            server.count.msgs as f64 / server.count.batches.max(1) as f64,
        )
        .number("server_syscalls_per_msg", per_msg(server.count.writes))
        .plain("server_eagain", server.count.eagain)
        .number("server_cpu_util", per_server_s(server.cpu.on_cpu_ns))
        .number(
            "server_runq_wait_frac",
            per_server_s(server.cpu.runq_wait_ns),
        )
        .number("server_sys_frac", server.cpu.sys_frac())
        .number(
            "server_ns_per_delivery",
            server.cpu.on_cpu_ns as f64 / fanned_out,
        )
        .number("client_cpu_util", per_client_s(client.cpu.on_cpu_ns))
        .number(
            "client_runq_wait_frac",
            per_client_s(client.cpu.runq_wait_ns),
        )
        .number("client_sys_frac", client.cpu.sys_frac())
        .number("machine_busy_cores", cores(client.machine.busy))
        .number("softirq_cores", cores(client.machine.softirq))
        .number("steal_cores", cores(client.machine.steal))
        .number("loadavg_1m", load);
    line.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(frames: &[&[u8]]) -> Outbox {
        Outbox {
            frames: frames.iter().map(|frame| Rc::from(*frame)).collect(),
            written: 0,
        }
    }

    fn left(outbox: &Outbox) -> Vec<u8> {
        outbox.chunks().flatten().copied().collect()
    }

    #[test]
    fn a_partial_write_leaves_the_rest_of_the_frame() {
        let mut outbox = outbox(&[b"abcd", b"efgh"]);
        outbox.consume(3);
        assert_eq!(outbox.first(), Some(&b"d"[..]));
        assert_eq!(left(&outbox), b"defgh");
        outbox.consume(1);
        assert_eq!(outbox.first(), Some(&b"efgh"[..]));
    }

    #[test]
    fn one_write_can_take_several_frames_and_part_of_the_next() {
        let mut outbox = outbox(&[b"ab", b"cde", b"fgh"]);
        outbox.consume(1);
        outbox.consume(1 + 3 + 2);
        assert_eq!(left(&outbox), b"h");
        outbox.consume(1);
        assert!(outbox.is_empty());
        assert_eq!(outbox.first(), None);
        outbox.consume(0);
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_meeting_fails_once_the_partner_is_gone() {
        let (server, client) = meeting();
        let partner = std::thread::spawn(move || client.meet().is_ok());
        assert!(server.meet().is_ok());
        assert!(partner.join().expect("no panic"));
        let (server, client) = meeting();
        drop(client);
        assert!(matches!(server.meet(), Err(LimitError::PartnerGone(_))));
    }
}
