//! `fanout`: R rooms x M members, the first S members of each room sending.
//!
//! Every member is one task owning one connection, to the node its place in
//! the room gives it ([`crate::nodes`]). After all have joined,
//! the controller starts the senders; each member checks, per sender, that
//! sequence numbers only grow (order) and how many arrived (loss), and
//! records latency from the stamp in the text into its own histogram. At
//! the end the senders publish how many they sent, members wait for what is
//! still in flight (up to `--drain`), and the controller merges the
//! members' reports. Nothing is shared on the receive path: the measuring
//! window is copied into each member when the load starts.
//!
//! `--protocol v2`: the same, over v2 sockets (joined with `limit` 0, each
//! send with a request id). Each member also checks its room's seqs from
//! its join result's on ([`crate::sequence`]), and each sender records how
//! long every send waited for its result (the message stored): replies come
//! in request order, so a queue of (id, send time) per sender matches them.
//!
//! `messages` counts what senders sent in the measured window (`refused`
//! says how many of all sends the server answered with an error), and
//! `deliveries` the arrivals of those messages at members, senders
//! included; both per second are over `--duration`.
//!
//! Closed loop: a sender keeps at most `--window` messages that have not
//! come back to it yet, refilling as echoes arrive (and taking every echo
//! already received before refilling, so one write carries many sends).
//! It also stays at most [`MAX_LAG`] messages ahead of the slowest member
//! of its room: the echo says the server took the message, not that the
//! bench's other members have read it, and a bench member left further
//! behind than the server's inbox (1,024 frames) is closed as a slow
//! consumer, which measures the bench, not the server.
//! Open loop: a sender sends `--rate` messages a second on a timer. Each
//! message is stamped when it is written, not when the timer was due:
//! tokio's timer fires up to a millisecond late, which is the bench's
//! lateness, not the server's. A stalled server still shows as latency
//! (the sender does not wait for it, so messages queue at the server, not
//! in the bench), and the bench's own lateness is reported beside it as
//! `send_lag`.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use whisper_protocol::v2;
use whisper_protocol::{Command, ErrorCode, RoomId};

use crate::cli::FanoutArgs;
use crate::connection::{ConnectError, Connection, Protocol, Received, Target};
use crate::error::BenchError;
use crate::incoming::Incoming;
use crate::latency::{LatencySummary, member_histogram, merge, run_histogram};
use crate::procfs::{CpuSample, round3};
use crate::progress::{Progress, note};
use crate::sequence::{SeqCheck, SeqCounts};
use crate::setup::{JoinTally, Setup};
use crate::stamp::{Stamp, now_ns, to_ns};
use crate::window::Window;

/// Socket read buffer of a member: a busy receiver reads many frames per
/// syscall.
const READ_BUFFER: usize = 64 * 1024;
/// "Not yet published" in [`Shared::sent`].
const UNSET: u64 = u64::MAX;
/// How far a closed-loop sender may run ahead of its room's slowest member.
const MAX_LAG: u64 = 512;
/// How soon a sender held back by [`MAX_LAG`] looks again.
const LAG_RECHECK: Duration = Duration::from_millis(1);
/// Pause between the last join and the start, so the ENTER events of the
/// joins are delivered before anything is measured.
const SETTLE: Duration = Duration::from_millis(300);

/// How senders pace themselves.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// At most `window` messages not yet echoed back.
    Closed { window: u32 },
    /// `rate` messages per second, whatever comes back.
    Open { rate: f64 },
}

/// What the controller and every member task share.
struct Shared {
    start: CancellationToken,
    stop_sending: CancellationToken,
    drain: CancellationToken,
    abort: CancellationToken,
    window: OnceLock<Window>,
    /// How many messages each sender sent in all ([`UNSET`] while sending).
    sent: Vec<AtomicU64>,
    /// How many of each sender's messages the server refused with an error.
    refused: Vec<AtomicU64>,
    senders_published: AtomicUsize,
    /// Per member, then per sender of its room: the next sequence number
    /// it expects, published after each read (closed loop only reads it).
    progress: Vec<AtomicU64>,
    joins: JoinTally,
}

/// The parts of the plan every member reads.
struct MemberPlan {
    /// Members per room.
    members: usize,
    load: Load,
    message_bytes: usize,
    drain: Duration,
    total_senders: u32,
    protocol: Protocol,
}

/// Who one member is.
struct MemberSpec {
    /// Its index among all members; a room's members are consecutive.
    index: usize,
    /// The first index of its room's members.
    first_member: usize,
    room: RoomId,
    /// Global id of the room's first sender; the room's senders are
    /// `first_sender .. first_sender + senders`.
    first_sender: u32,
    senders: u32,
    /// This member's sender id, when it sends.
    sender: Option<u32>,
    cookie: String,
    source: Option<IpAddr>,
    /// The node it connects to.
    target: Arc<Target>,
}

/// Order and count of one sender's messages, as one member saw them.
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    next_seq: u64,
    received: u64,
    out_of_order: u64,
}

/// A sender's own state.
struct SenderState {
    id: u32,
    next_seq: u64,
    in_flight: u32,
    sent_in_window: u64,
    published: bool,
    /// Open loop: how late each send was against its timer, in the window.
    send_lag: Option<Histogram<u32>>,
    /// Held back by [`MAX_LAG`] with nothing in flight: no echo will come
    /// to wake it, so it looks again shortly.
    waiting_for_members: bool,
    /// v2: the sends not answered yet, oldest first: request id and send
    /// time.
    unanswered: VecDeque<(u64, u64)>,
    /// v2: send -> result latency of the sends in the window.
    ack_latency: Option<Histogram<u32>>,
}

/// One member while it runs.
struct Member {
    conn: Connection,
    index: usize,
    first_member: usize,
    members: usize,
    room: RoomId,
    first_sender: u32,
    tracks: Vec<Track>,
    sender: Option<SenderState>,
    window: Option<Window>,
    latency: Option<Histogram<u32>>,
    deliveries_in_window: u64,
    foreign: u64,
    errors: BTreeMap<&'static str, u64>,
    closed: Option<String>,
    /// v2: the room's seqs as this member received them.
    seqs: Option<SeqCheck>,
}

/// What a member hands back at the end.
struct MemberReport {
    first_sender: u32,
    send_lag: Option<Histogram<u32>>,
    tracks: Vec<Track>,
    sent_in_window: u64,
    latency: Option<Histogram<u32>>,
    deliveries_in_window: u64,
    foreign: u64,
    errors: BTreeMap<&'static str, u64>,
    closed: Option<String>,
    ack_latency: Option<Histogram<u32>>,
    seqs: Option<SeqCounts>,
}

/// Runs the scenario and returns the report line.
pub async fn run(args: &FanoutArgs, setup: &Setup) -> Result<Value, BenchError> {
    let room_count = args.rooms as usize;
    let members = args.members as usize;
    let senders = args.senders;
    let total = room_count * members;
    let resources = setup.resources(total, room_count).await?;
    let load = match args.rate {
        Some(rate) => Load::Open { rate },
        None => Load::Closed {
            window: args.window,
        },
    };
    let total_senders = args.rooms * senders;
    let shared = Arc::new(Shared {
        start: CancellationToken::new(),
        stop_sending: CancellationToken::new(),
        drain: CancellationToken::new(),
        abort: CancellationToken::new(),
        window: OnceLock::new(),
        sent: (0..total_senders).map(|_| AtomicU64::new(UNSET)).collect(),
        refused: (0..total_senders).map(|_| AtomicU64::new(0)).collect(),
        senders_published: AtomicUsize::new(0),
        progress: (0..total * senders as usize)
            .map(|_| AtomicU64::new(0))
            .collect(),
        joins: JoinTally::default(),
    });
    let plan = Arc::new(MemberPlan {
        members,
        load,
        message_bytes: args.message_bytes as usize,
        drain: args.drain,
        total_senders,
        protocol: args.protocol,
    });
    let slots = Arc::new(Semaphore::new(setup.common.connect_concurrency as usize));

    let connect_started = Instant::now();
    let progress = Progress::bar("connecting", total);
    let mut tasks: Vec<JoinHandle<Option<MemberReport>>> = Vec::with_capacity(total);
    for index in 0..total {
        let room_index = index / members;
        let position = (index % members) as u32;
        let first_sender = room_index as u32 * senders;
        let spec = MemberSpec {
            index,
            first_member: room_index * members,
            room: resources.rooms[room_index],
            first_sender,
            senders,
            sender: (position < senders).then_some(first_sender + position),
            cookie: resources.cookies[index % resources.cookies.len()].clone(),
            source: resources.sources.nth(index),
            target: setup.nodes.for_member(position as usize).clone(),
        };
        tasks.push(tokio::spawn(member(
            spec,
            shared.clone(),
            plan.clone(),
            slots.clone(),
        )));
    }
    loop {
        let joined = shared.joins.joined.load(Ordering::Relaxed);
        let failed = shared.joins.failed.load(Ordering::Relaxed);
        progress.set(joined);
        if failed > 0 {
            shared.abort.cancel();
            for task in tasks {
                let _ = task.await;
            }
            let reason = shared.joins.first_failure().unwrap_or_default();
            return Err(BenchError::Connect(format!(
                "{failed} of {total} members could not join, first: {reason}"
            )));
        }
        if joined == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_s = connect_started.elapsed().as_secs_f64();
    progress.finish(&format!(
        "{total} members joined {room_count} rooms on {} nodes in {connect_s:.2} s",
        setup.nodes.len()
    ));
    tokio::time::sleep(SETTLE).await;

    let start = Instant::now();
    let _ = shared
        .window
        .set(Window::new(start, args.warmup, Some(args.duration)));
    shared.start.cancel();
    note(&format!(
        "sending for {:.1} s warm-up + {:.1} s measured",
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64()
    ));
    tokio::time::sleep_until((start + args.warmup).into()).await;
    let cpu_from = CpuSample::take(&setup.common.server_pids);
    tokio::time::sleep_until((start + args.warmup + args.duration).into()).await;
    let cpu = CpuSample::take(&setup.common.server_pids).since(&cpu_from);
    shared.stop_sending.cancel();

    // Senders publish their totals as soon as they see the stop; members
    // may only judge completeness after that.
    let publish_deadline = Instant::now() + Duration::from_secs(5);
    while shared.senders_published.load(Ordering::Acquire) < total_senders as usize
        && Instant::now() < publish_deadline
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    shared.drain.cancel();
    let collect_deadline = tokio::time::Instant::now() + args.drain + Duration::from_secs(10);
    let mut reports = Vec::with_capacity(total);
    for task in tasks {
        match tokio::time::timeout_at(collect_deadline, task).await {
            Ok(Ok(Some(report))) => reports.push(report),
            Ok(_) => {}
            Err(_) => shared.abort.cancel(),
        }
    }

    let summary = summarize(
        &reports,
        &shared,
        args.duration.as_secs_f64(),
        args.protocol,
    );
    let (mode, window, rate) = match load {
        Load::Closed { window } => ("closed", Some(window), None),
        Load::Open { rate } => ("open", None, Some(rate)),
    };
    Ok(json!({
        "scenario": "fanout",
        "params": {
            "url": setup.nodes.urls(),
            "protocol": args.protocol.as_str(),
            "rooms": args.rooms,
            "room_ids": resources.rooms.iter().map(|room| room.0).collect::<Vec<_>>(),
            "members": args.members,
            "senders": args.senders,
            "load": mode,
            "window": window,
            "rate_per_sender": rate,
            "message_bytes": args.message_bytes,
            "duration_s": args.duration.as_secs_f64(),
            "warmup_s": args.warmup.as_secs_f64(),
            "connections": total,
            "users": resources.cookies.len(),
            "source_ips": resources.sources.count(),
            "bench_threads": setup.threads,
        },
        "results": summary,
        "cpu": cpu,
        "setup": { "connect_s": round3(connect_s) },
    }))
}

/// Merges the members' reports into the `results` object.
fn summarize(
    reports: &[MemberReport],
    shared: &Shared,
    duration_s: f64,
    protocol: Protocol,
) -> Value {
    let mut latency = run_histogram();
    let mut send_lag = run_histogram();
    let mut ack_latency = run_histogram();
    let mut seqs = SeqCounts::default();
    let mut deliveries = 0u64;
    let mut messages = 0u64;
    let mut lost = 0u64;
    let mut out_of_order = 0u64;
    let mut foreign = 0u64;
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    let mut closed: BTreeMap<&str, u64> = BTreeMap::new();
    for report in reports {
        deliveries += report.deliveries_in_window;
        messages += report.sent_in_window;
        foreign += report.foreign;
        if let Some(histogram) = &report.latency {
            merge(&mut latency, histogram);
        }
        if let Some(histogram) = &report.send_lag {
            merge(&mut send_lag, histogram);
        }
        if let Some(histogram) = &report.ack_latency {
            merge(&mut ack_latency, histogram);
        }
        if let Some(counts) = report.seqs {
            seqs.add(counts);
        }
        for (offset, track) in report.tracks.iter().enumerate() {
            let id = report.first_sender as usize + offset;
            let sent = shared.sent[id].load(Ordering::Acquire);
            let sent = if sent == UNSET { 0 } else { sent };
            let expected = sent.saturating_sub(shared.refused[id].load(Ordering::Acquire));
            lost += expected.saturating_sub(track.received);
            out_of_order += track.out_of_order;
        }
        for (code, count) in &report.errors {
            *errors.entry(code).or_default() += count;
        }
        if let Some(reason) = &report.closed {
            *closed.entry(reason.as_str()).or_default() += 1;
        }
    }
    let rate_limited = errors
        .get(ErrorCode::RateLimited.as_str())
        .copied()
        .unwrap_or(0);
    if rate_limited > 0 {
        note(&format!(
            "warning: the server refused {rate_limited} frames as RATE_LIMITED; \
             start it with --max-messages-per-second 1000000"
        ));
    } else if !errors.is_empty() {
        note(&format!("warning: the server answered errors: {errors:?}"));
    }
    let refused: u64 = shared
        .refused
        .iter()
        .map(|count| count.load(Ordering::Acquire))
        .sum();
    json!({
        "messages_per_s": round3(messages as f64 / duration_s),
        "deliveries_per_s": round3(deliveries as f64 / duration_s),
        "messages": messages,
        "deliveries": deliveries,
        "lost": lost,
        "out_of_order": out_of_order,
        "rate_limited": rate_limited,
        "refused": refused,
        "errors": errors,
        "foreign_messages": foreign,
        "disconnected": closed.values().sum::<u64>(),
        "disconnect_reasons": closed,
        "latency": LatencySummary::of(&latency),
        "send_lag": (!send_lag.is_empty()).then(|| LatencySummary::of(&send_lag)),
        "ack_latency": (protocol == Protocol::V2).then(|| LatencySummary::of(&ack_latency)),
        "seq": (protocol == Protocol::V2).then_some(seqs),
    })
}

/// One member's whole life: connect and join, then run until drained.
async fn member(
    spec: MemberSpec,
    shared: Arc<Shared>,
    plan: Arc<MemberPlan>,
    slots: Arc<Semaphore>,
) -> Option<MemberReport> {
    let joined: Result<(Connection, Option<SeqCheck>), ConnectError> = tokio::select! {
        () = shared.abort.cancelled() => return None,
        joined = async {
            let _slot = slots.acquire().await;
            let mut conn = Connection::open(
                &spec.target, &spec.cookie, spec.source, READ_BUFFER, plan.protocol,
            ).await?;
            // v2 joins ask for no history: the seq is all a member needs.
            let seqs = match plan.protocol {
                Protocol::V1 => {
                    conn.join(spec.room).await?;
                    None
                }
                Protocol::V2 => Some(SeqCheck::after(conn.join_v2(spec.room, None, 0).await?.seq)),
            };
            Ok((conn, seqs))
        } => joined,
    };
    let (conn, seqs) = match joined {
        Ok(conn) => conn,
        Err(error) => {
            shared.joins.fail(&error);
            return None;
        }
    };
    shared.joins.join();
    let member = Member {
        conn,
        index: spec.index,
        first_member: spec.first_member,
        members: plan.members,
        room: spec.room,
        first_sender: spec.first_sender,
        tracks: vec![Track::default(); spec.senders as usize],
        sender: spec.sender.map(|id| SenderState {
            id,
            next_seq: 0,
            in_flight: 0,
            sent_in_window: 0,
            published: false,
            send_lag: None,
            waiting_for_members: false,
            unanswered: VecDeque::new(),
            ack_latency: None,
        }),
        window: None,
        latency: None,
        deliveries_in_window: 0,
        foreign: 0,
        errors: BTreeMap::new(),
        closed: None,
        seqs,
    };
    Some(member.run(&shared, &plan).await)
}

impl Member {
    /// The member's loop, from the join to the end of the drain.
    ///
    /// The `select!` (phase tokens, timer, socket) runs once per read from
    /// the socket, not once per frame: the frames one read brought are
    /// handled in a plain loop after it, so polling the tokens costs
    /// nothing per message.
    async fn run(mut self, shared: &Shared, plan: &MemberPlan) -> MemberReport {
        let abort = shared.abort.cancelled();
        let started = shared.start.cancelled();
        let stop_sending = shared.stop_sending.cancelled();
        let drain = shared.drain.cancelled();
        let deadline = tokio::time::sleep(Duration::from_secs(365 * 86_400));
        tokio::pin!(abort, started, stop_sending, drain, deadline);
        let mut ticker: Option<Interval> = None;
        let (mut running, mut stopped, mut draining) = (false, false, false);
        let closed_window = match plan.load {
            Load::Closed { window } if self.sender.is_some() => Some(window),
            _ => None,
        };
        loop {
            tokio::select! {
                biased;
                () = &mut abort => {
                    self.closed.get_or_insert_with(|| "aborted".into());
                    break;
                }
                () = &mut deadline, if draining => break,
                () = &mut drain, if !draining => {
                    draining = true;
                    deadline.as_mut().reset((Instant::now() + plan.drain).into());
                    if self.complete(shared) {
                        break;
                    }
                }
                () = &mut stop_sending, if !stopped => {
                    stopped = true;
                    self.publish(shared);
                }
                () = &mut started, if !running => {
                    running = true;
                    self.window = shared.window.get().copied();
                    match plan.load {
                        Load::Closed { window } => self.fill_window(window, plan, shared),
                        Load::Open { rate } => ticker = self.ticker(rate, plan),
                    }
                    if let Err(reason) = self.conn.flush().await {
                        self.closed = Some(reason.into());
                        break;
                    }
                }
                scheduled = next_tick(&mut ticker), if running && !stopped => {
                    let now = now_ns();
                    self.record_send_lag(now, to_ns(scheduled.into_std()));
                    self.send_one(now, plan);
                    if let Err(reason) = self.conn.flush().await {
                        self.closed = Some(reason.into());
                        break;
                    }
                }
                () = tokio::time::sleep(LAG_RECHECK), if self.waiting_for_members() && !stopped => {
                    if let Some(window) = closed_window {
                        self.fill_window(window, plan, shared);
                        if let Err(reason) = self.conn.flush().await {
                            self.closed = Some(reason.into());
                            break;
                        }
                    }
                }
                received = self.conn.recv() => {
                    // Everything this read brought arrived now: one clock
                    // reading serves the whole batch.
                    let now = now_ns();
                    let mut next = Some(received);
                    while let Some(received) = next {
                        if let Err(reason) = self.on_received(received, shared, now) {
                            self.closed = Some(reason);
                            break;
                        }
                        next = self.conn.recv_buffered();
                    }
                    if self.closed.is_some() {
                        break;
                    }
                    self.publish_progress(shared);
                    if let Some(window) = closed_window.filter(|_| running && !stopped) {
                        // Take every echo that already arrived, then refill
                        // the window with one write.
                        while let Some(received) = self.conn.try_recv() {
                            if let Err(reason) = self.on_received(received, shared, now_ns()) {
                                self.closed = Some(reason);
                                break;
                            }
                        }
                        if self.closed.is_some() {
                            break;
                        }
                        self.fill_window(window, plan, shared);
                        if let Err(reason) = self.conn.flush().await {
                            self.closed = Some(reason.into());
                            break;
                        }
                    }
                    if draining && self.complete(shared) {
                        break;
                    }
                }
            }
        }
        self.publish(shared);
        if self.closed.is_none() {
            self.conn.close().await;
        }
        MemberReport {
            first_sender: self.first_sender,
            send_lag: self.sender.as_mut().and_then(|s| s.send_lag.take()),
            ack_latency: self.sender.as_mut().and_then(|s| s.ack_latency.take()),
            seqs: self.seqs.as_ref().map(SeqCheck::counts),
            tracks: self.tracks,
            sent_in_window: self.sender.as_ref().map_or(0, |s| s.sent_in_window),
            latency: self.latency,
            deliveries_in_window: self.deliveries_in_window,
            foreign: self.foreign,
            errors: self.errors,
            closed: self.closed,
        }
    }

    /// The open-loop timer: `rate` ticks a second from the start, senders
    /// staggered over one period so they do not all send at once.
    fn ticker(&self, rate: f64, plan: &MemberPlan) -> Option<Interval> {
        let id = self.sender.as_ref()?.id;
        let window = self.window?;
        let period = Duration::from_secs_f64(1.0 / rate);
        let offset = period.mul_f64(f64::from(id) / f64::from(plan.total_senders.max(1)));
        let mut ticker = tokio::time::interval_at((window.start + offset).into(), period);
        // Catch up after a stall: the offered load stays what was asked.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        Some(ticker)
    }

    /// Handles one frame received at `now`; `Err` when the connection ended.
    fn on_received(&mut self, received: Received, shared: &Shared, now: u64) -> Result<(), String> {
        match received {
            Received::Frame(Incoming::Message(Some(stamp))) => self.on_stamp(stamp, now),
            Received::Frame(Incoming::Message(None)) => self.foreign += 1,
            Received::Frame(Incoming::Numbered { seq, stamp }) => {
                if let Some(seqs) = &mut self.seqs {
                    seqs.observe(seq);
                }
                match stamp {
                    Some(stamp) => self.on_stamp(stamp, now),
                    None => self.foreign += 1,
                }
            }
            Received::Frame(Incoming::Sent { id, seq: _ }) => self.on_sent(id, now),
            Received::Frame(Incoming::Error(code)) => {
                let code = code.map_or("UNKNOWN", ErrorCode::as_str);
                *self.errors.entry(code).or_default() += 1;
                // Only sends are in flight once joined: the error refused
                // one (in v2, the oldest unanswered: replies keep order).
                if let Some(sender) = &mut self.sender {
                    sender.in_flight = sender.in_flight.saturating_sub(1);
                    sender.unanswered.pop_front();
                    shared.refused[sender.id as usize].fetch_add(1, Ordering::AcqRel);
                }
            }
            Received::Frame(
                Incoming::Event
                | Incoming::Joined
                | Incoming::JoinResult(_)
                | Incoming::History(_)
                | Incoming::Other,
            ) => {}
            Received::Closed(reason) => return Err(reason),
        }
        Ok(())
    }

    /// The hot path: one delivered bench message, received at `now`.
    fn on_stamp(&mut self, stamp: Stamp, now: u64) {
        let Some(track) = stamp
            .sender
            .checked_sub(self.first_sender)
            .and_then(|offset| self.tracks.get_mut(offset as usize))
        else {
            self.foreign += 1;
            return;
        };
        track.received += 1;
        if stamp.seq < track.next_seq {
            track.out_of_order += 1;
        } else {
            track.next_seq = stamp.seq + 1;
        }
        if self
            .window
            .is_some_and(|window| window.contains(stamp.sent_ns))
        {
            self.deliveries_in_window += 1;
            self.latency
                .get_or_insert_with(member_histogram)
                .saturating_record(now.saturating_sub(stamp.sent_ns));
        }
        if let Some(sender) = &mut self.sender
            && sender.id == stamp.sender
        {
            sender.in_flight = sender.in_flight.saturating_sub(1);
        }
    }

    /// v2: the result of send `id` arrived at `now`: the message is stored.
    /// Replies come in request order, so it answers the oldest unanswered
    /// send; older ones without a reply (none, from a correct server) are
    /// dropped unmeasured.
    fn on_sent(&mut self, id: Option<u64>, now: u64) {
        let window = self.window;
        let Some(sender) = &mut self.sender else {
            return;
        };
        while let Some(&(oldest, sent_ns)) = sender.unanswered.front() {
            if id.is_some_and(|id| oldest < id) {
                sender.unanswered.pop_front();
                continue;
            }
            if id.is_none_or(|id| id == oldest) {
                sender.unanswered.pop_front();
                if window.is_some_and(|window| window.contains(sent_ns)) {
                    sender
                        .ack_latency
                        .get_or_insert_with(member_histogram)
                        .saturating_record(now.saturating_sub(sent_ns));
                }
            }
            break;
        }
    }

    /// Queues sends until `window` are in flight (written by the next
    /// flush, all at once), staying within [`MAX_LAG`] of the room's
    /// slowest member.
    fn fill_window(&mut self, window: u32, plan: &MemberPlan, shared: &Shared) {
        let Some(sender) = &self.sender else {
            return;
        };
        let offset = (sender.id - self.first_sender) as usize;
        let senders = self.tracks.len();
        let slowest = (self.first_member..self.first_member + self.members)
            .map(|member| shared.progress[member * senders + offset].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        let limit = slowest + MAX_LAG;
        while self
            .sender
            .as_ref()
            .is_some_and(|sender| sender.in_flight < window && sender.next_seq < limit)
        {
            self.send_one(now_ns(), plan);
        }
        if let Some(sender) = &mut self.sender {
            sender.waiting_for_members = sender.in_flight == 0 && sender.next_seq >= limit;
        }
    }

    /// Records how late a timed send is, if it is in the measured window.
    fn record_send_lag(&mut self, now: u64, scheduled: u64) {
        let in_window = self.window.is_some_and(|window| window.contains(now));
        if let Some(sender) = self.sender.as_mut().filter(|_| in_window) {
            sender
                .send_lag
                .get_or_insert_with(member_histogram)
                .saturating_record(now.saturating_sub(scheduled));
        }
    }

    fn waiting_for_members(&self) -> bool {
        self.sender
            .as_ref()
            .is_some_and(|sender| sender.waiting_for_members)
    }

    /// Tells the room's senders how far this member has read.
    fn publish_progress(&self, shared: &Shared) {
        let senders = self.tracks.len();
        for (offset, track) in self.tracks.iter().enumerate() {
            shared.progress[self.index * senders + offset].store(track.next_seq, Ordering::Relaxed);
        }
    }

    /// Queues the next message, stamped `sent_ns`.
    fn send_one(&mut self, sent_ns: u64, plan: &MemberPlan) {
        let Some(sender) = &mut self.sender else {
            return;
        };
        let stamp = Stamp {
            sender: sender.id,
            seq: sender.next_seq,
            sent_ns,
        };
        sender.next_seq += 1;
        sender.in_flight += 1;
        if self.window.is_some_and(|window| window.contains(sent_ns)) {
            sender.sent_in_window += 1;
        }
        let text = stamp.to_text(plan.message_bytes);
        match plan.protocol {
            Protocol::V1 => self.conn.queue(&Command::Send {
                room: self.room,
                message: text,
            }),
            Protocol::V2 => {
                let id = self.conn.queue_v2(v2::Command::Send {
                    room: self.room,
                    text,
                    nonce: None,
                });
                sender.unanswered.push_back((id, sent_ns));
            }
        }
    }

    /// A sender tells how many messages it sent in all (once).
    fn publish(&mut self, shared: &Shared) {
        if let Some(sender) = &mut self.sender
            && !sender.published
        {
            sender.published = true;
            shared.sent[sender.id as usize].store(sender.next_seq, Ordering::Release);
            shared.senders_published.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether every message of every sender of the room has arrived (or
    /// was refused by the server), and, in v2, this member's own sends have
    /// all been answered (a result may come after its echo).
    fn complete(&self, shared: &Shared) -> bool {
        let answered = self
            .sender
            .as_ref()
            .is_none_or(|sender| sender.unanswered.is_empty());
        answered
            && self.tracks.iter().enumerate().all(|(offset, track)| {
                let id = self.first_sender as usize + offset;
                let sent = shared.sent[id].load(Ordering::Acquire);
                sent != UNSET && track.received + shared.refused[id].load(Ordering::Acquire) >= sent
            })
    }
}

/// The next tick of an open-loop timer; never, without one.
async fn next_tick(ticker: &mut Option<Interval>) -> tokio::time::Instant {
    match ticker {
        Some(ticker) => ticker.tick().await,
        None => std::future::pending().await,
    }
}
