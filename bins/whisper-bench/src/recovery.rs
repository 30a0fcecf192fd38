//! `recovery`: protocol v2's promise after a reconnect, under a herd.
//!
//! 1. `--sockets N` v2 sockets join `--rooms R` rooms (socket `i` joins
//!    room `i mod R`, as that room's member `i / R`, on the node that place
//!    gives it), each keeping the epoch and seq of its join result and
//!    following the live seqs.
//! 2. They all close their sockets, holding their last seq.
//! 3. A sender opens its own v2 socket, joins every room, sends
//!    `--messages M` to each ([`crate::fill`], at most
//!    [`fill::SEND_WINDOW`] unanswered), waits for every result (each
//!    message is then stored) and closes. The last acknowledged seq of
//!    each room is its *target*.
//! 4. At once, every socket reconnects and rejoins with
//!    `since = {its last seq, epoch}`, then reads live events until it has
//!    every seq up to its room's target: it has *caught up*.
//!
//! Reported: the time from the start of the reconnect until the last socket
//! caught up (and each socket's time), how many joins came back
//! `recovered: false`, and, over all sockets, the seqs up to the target
//! that never came (missing) and those that came twice (duplicates; the
//! sockets keep reading for [`LINGER`] after the last one caught up, so a
//! late second copy is seen). A correct server gives 0 and 0.
//!
//! The TCP connections and upgrades of the reconnect go through
//! `--connect-concurrency` slots; the joins are sent as soon as each
//! upgrade is done.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use whisper_protocol::RoomId;
use whisper_protocol::v2::{self, Seq, Since};

use crate::cli::RecoveryArgs;
use crate::connection::{ConnectError, Connection, Protocol, Received};
use crate::error::BenchError;
use crate::fill;
use crate::incoming::{Incoming, JoinResult};
use crate::latency::{LatencySummary, run_histogram};
use crate::procfs::{CpuSample, round3};
use crate::progress::{Progress, note};
use crate::sequence::{SeqCheck, SeqCounts};
use crate::setup::{ClientSpec, JoinTally, Setup};
use crate::stamp::now_ns;

/// Initial read buffer of a socket; it grows for a larger join result.
const READ_BUFFER: usize = 16 * 1024;
/// Pause after the joins and after the drops, so their ENTER and LEAVE
/// events are through before the next phase.
const SETTLE: Duration = Duration::from_millis(300);
/// How long sockets keep reading after the last one caught up, to see
/// duplicates that come late.
const LINGER: Duration = Duration::from_millis(200);
/// Longest wait for a phase of the setup (joins, drops).
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the controller and the socket tasks share.
struct Shared {
    joins: JoinTally,
    dropped: AtomicUsize,
    caught_up: AtomicUsize,
    /// Sockets that will not catch up (their reconnect failed).
    given_up: AtomicUsize,
    /// Time to close the first sockets.
    drop: CancellationToken,
    /// Time to reconnect; `reconnect_ns` and `targets` are set before.
    reconnect: CancellationToken,
    reconnect_ns: OnceLock<u64>,
    /// Per room, the last seq the sender's results acknowledged.
    targets: OnceLock<Vec<Seq>>,
    /// Stop reading and report.
    done: CancellationToken,
    abort: CancellationToken,
}

/// Who one socket is.
struct SocketSpec {
    room_index: usize,
    room: RoomId,
    client: ClientSpec,
}

/// What one socket hands back.
#[derive(Default)]
struct SocketReport {
    /// Why the reconnect failed, if it did.
    failure: Option<String>,
    recovered: Option<bool>,
    /// From the start of the reconnect to the end of the upgrade.
    connect_ns: Option<u64>,
    /// From the start of the reconnect to the join result.
    join_ns: Option<u64>,
    /// From the start of the reconnect to having every seq to the target.
    caught_up_ns: Option<u64>,
    /// Messages the join result carried, and live ones after it.
    from_result: u64,
    live: u64,
    /// Seq checks of the first socket and of the rejoined one.
    counts: SeqCounts,
    /// Why the rejoined socket ended before the run did.
    closed: Option<String>,
}

/// Runs the scenario and returns the report line.
pub async fn run(args: &RecoveryArgs, setup: &Setup) -> Result<Value, BenchError> {
    let total = args.sockets as usize;
    let resources = setup.resources(total + 1, args.rooms as usize).await?;
    let rooms = resources.rooms.clone();
    let shared = Arc::new(Shared {
        joins: JoinTally::default(),
        dropped: AtomicUsize::new(0),
        caught_up: AtomicUsize::new(0),
        given_up: AtomicUsize::new(0),
        drop: CancellationToken::new(),
        reconnect: CancellationToken::new(),
        reconnect_ns: OnceLock::new(),
        targets: OnceLock::new(),
        done: CancellationToken::new(),
        abort: CancellationToken::new(),
    });
    let slots = Arc::new(Semaphore::new(setup.common.connect_concurrency as usize));

    let connect_started = Instant::now();
    let progress = Progress::bar("connecting", total);
    let mut tasks: Vec<JoinHandle<Option<SocketReport>>> = Vec::with_capacity(total);
    for index in 0..total {
        let room_index = index % rooms.len();
        let spec = SocketSpec {
            room_index,
            room: rooms[room_index],
            client: ClientSpec {
                // The sender has the first user's first socket.
                cookie: resources.cookies[(index + 1) % resources.cookies.len()].clone(),
                source: resources.sources.nth(index + 1),
                target: setup.nodes.for_member(index / rooms.len()).clone(),
            },
        };
        tasks.push(tokio::spawn(socket(spec, shared.clone(), slots.clone())));
    }
    let all_joined = wait_for(
        &shared.joins.joined,
        total,
        &shared.joins.failed,
        Some(&progress),
    )
    .await;
    let failed = shared.joins.failed.load(Ordering::Relaxed);
    if failed > 0 || !all_joined {
        shared.abort.cancel();
        for task in tasks {
            let _ = task.await;
        }
        let reason = shared
            .joins
            .first_failure()
            .unwrap_or_else(|| "timed out".into());
        return Err(BenchError::Connect(format!(
            "{failed} of {total} sockets could not join, first: {reason}"
        )));
    }
    let connect_s = connect_started.elapsed().as_secs_f64();
    progress.finish(&format!(
        "{total} v2 sockets joined {} rooms in {connect_s:.2} s",
        rooms.len()
    ));
    tokio::time::sleep(SETTLE).await;

    shared.drop.cancel();
    let no_failures = AtomicUsize::new(0);
    wait_for(&shared.dropped, total, &no_failures, None).await;
    note(&format!("{total} sockets dropped"));
    tokio::time::sleep(SETTLE).await;

    // The sender is connection 0: the first user's first socket.
    let sender = resources.client(&setup.nodes, 0);
    let sent = fill::fill(
        &[sender],
        &rooms,
        u64::from(args.messages),
        args.message_bytes as usize,
    )
    .await?;
    note("reconnecting");
    let _ = shared.targets.set(sent.last_seqs.clone());

    let cpu_from = CpuSample::take(&setup.common.server_pids);
    let reconnect_ns = now_ns();
    let _ = shared.reconnect_ns.set(reconnect_ns);
    shared.reconnect.cancel();
    let deadline = Instant::now() + args.timeout;
    while shared.caught_up.load(Ordering::Acquire) + shared.given_up.load(Ordering::Acquire) < total
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cpu = CpuSample::take(&setup.common.server_pids).since(&cpu_from);
    let waited_s = (now_ns() - reconnect_ns) as f64 / 1e9;
    tokio::time::sleep(LINGER).await;
    shared.done.cancel();

    let collect_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut reports = Vec::with_capacity(total);
    for task in tasks {
        match tokio::time::timeout_at(collect_deadline, task).await {
            Ok(Ok(Some(report))) => reports.push(report),
            Ok(_) => {}
            Err(_) => shared.abort.cancel(),
        }
    }
    let results = summarize(&reports, total, waited_s);
    if results["missing"] != 0 || results["duplicates"] != 0 {
        note("warning: sockets missed or repeated messages; see results");
    }
    Ok(json!({
        "scenario": "recovery",
        "params": {
            "url": setup.nodes.urls(),
            "protocol": "v2",
            "sockets": args.sockets,
            "rooms": args.rooms,
            "room_ids": rooms.iter().map(|room| room.0).collect::<Vec<_>>(),
            "messages_per_room": args.messages,
            "message_bytes": args.message_bytes,
            "timeout_s": args.timeout.as_secs_f64(),
            "connect_concurrency": setup.common.connect_concurrency,
            "users": resources.cookies.len(),
            "source_ips": resources.sources.count(),
            "bench_threads": setup.threads,
        },
        "results": results,
        "cpu": cpu,
        "setup": {
            "connect_s": round3(connect_s),
            "send_s": round3(sent.elapsed.as_secs_f64()),
            "stored_per_s": round3(sent.stored_per_s()),
            "refused": sent.refused,
            "targets": sent.last_seqs.iter().map(|seq| seq.0).collect::<Vec<_>>(),
        },
    }))
}

/// Waits until `counter` reaches `total` (false after [`PHASE_TIMEOUT`] or
/// once `failed` is not 0).
async fn wait_for(
    counter: &AtomicUsize,
    total: usize,
    failed: &AtomicUsize,
    progress: Option<&Progress>,
) -> bool {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let done = counter.load(Ordering::Acquire);
        if let Some(progress) = progress {
            progress.set(done);
        }
        if done >= total {
            return true;
        }
        if failed.load(Ordering::Relaxed) > 0 || Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Merges the sockets' reports into the `results` object.
fn summarize(reports: &[SocketReport], total: usize, waited_s: f64) -> Value {
    let mut caught_up = run_histogram();
    let mut connects = run_histogram();
    let mut joins = run_histogram();
    let mut counts = SeqCounts::default();
    let mut not_recovered = 0u64;
    let (mut from_result, mut live) = (0u64, 0u64);
    let mut failures: BTreeMap<&str, u64> = BTreeMap::new();
    let mut closed: BTreeMap<&str, u64> = BTreeMap::new();
    for report in reports {
        counts.add(report.counts);
        from_result += report.from_result;
        live += report.live;
        if report.recovered == Some(false) {
            not_recovered += 1;
        }
        if let Some(ns) = report.caught_up_ns {
            caught_up.saturating_record(ns.max(1));
        }
        if let Some(ns) = report.connect_ns {
            connects.saturating_record(ns.max(1));
        }
        if let Some(ns) = report.join_ns {
            joins.saturating_record(ns.max(1));
        }
        if let Some(reason) = &report.failure {
            *failures.entry(reason.as_str()).or_default() += 1;
        }
        if let Some(reason) = &report.closed {
            *closed.entry(reason.as_str()).or_default() += 1;
        }
    }
    let all = caught_up.len() as usize == total;
    let summary =
        |histogram: &Histogram<u64>| (!histogram.is_empty()).then(|| LatencySummary::of(histogram));
    json!({
        "sockets": total,
        "caught_up": caught_up.len(),
        "catch_up_s": all.then(|| round3(caught_up.max() as f64 / 1e9)),
        "waited_s": round3(waited_s),
        "catch_up": summary(&caught_up),
        "connect": summary(&connects),
        "join": summary(&joins),
        "not_recovered": not_recovered,
        "missing": counts.missing,
        "duplicates": counts.duplicates,
        "out_of_order": counts.out_of_order,
        "gaps": counts.gaps,
        "messages_from_results": from_result,
        "messages_live": live,
        "reconnect_failures": failures,
        "disconnect_reasons": closed,
    })
}

/// One socket's life: join, follow, drop, rejoin with `since`, catch up.
async fn socket(
    spec: SocketSpec,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
) -> Option<SocketReport> {
    let joined = tokio::select! {
        () = shared.abort.cancelled() => return None,
        joined = open_and_join(&spec, &slots, None) => joined,
    };
    let (mut conn, first, _) = match joined {
        Ok(joined) => joined,
        Err(error) => {
            shared.joins.fail(&error);
            return None;
        }
    };
    shared.joins.join();
    let mut seqs = SeqCheck::after(first.seq);
    let mut report = SocketReport::default();

    // Follow the room until told to drop (ENTER events of the others' joins
    // must be read, or the server would close this socket as too slow).
    let mut dropped = false;
    while !dropped {
        tokio::select! {
            () = shared.abort.cancelled() => return None,
            () = shared.drop.cancelled() => dropped = true,
            received = conn.recv() => match received {
                Received::Frame(Incoming::Numbered { seq, .. }) => seqs.observe(seq),
                Received::Frame(_) => {}
                Received::Closed(reason) => {
                    report.closed = Some(format!("before the drop: {reason}"));
                    dropped = true;
                }
            },
        }
    }
    let since = Since {
        seq: seqs.last(),
        epoch: first.epoch,
    };
    report.counts.add(seqs.counts());
    conn.close().await;
    shared.dropped.fetch_add(1, Ordering::Release);

    tokio::select! {
        () = shared.abort.cancelled() => return None,
        () = shared.reconnect.cancelled() => {}
    }
    let start_ns = shared.reconnect_ns.get().copied().unwrap_or_else(now_ns);
    let target = shared
        .targets
        .get()
        .and_then(|targets| targets.get(spec.room_index))
        .copied()
        .unwrap_or(Seq(0));
    let since_seq = since.seq;
    let rejoined = tokio::select! {
        () = shared.abort.cancelled() => return None,
        rejoined = open_and_join(&spec, &slots, Some(since)) => rejoined,
    };
    let (mut conn, result, connected_ns) = match rejoined {
        Ok(rejoined) => rejoined,
        Err(error) => {
            shared.given_up.fetch_add(1, Ordering::Release);
            report.failure = Some(error.to_string());
            report
                .counts
                .add(SeqCheck::after(since_seq).missing_until(target));
            return Some(report);
        }
    };
    let mut seqs = SeqCheck::after(since_seq);
    report.connect_ns = Some(connected_ns.saturating_sub(start_ns));
    report.join_ns = Some(now_ns().saturating_sub(start_ns));
    report.recovered = Some(result.recovered);
    report.from_result = result.messages.len() as u64;
    for seq in result.messages {
        seqs.observe(seq);
    }
    let mut caught_up = false;
    let mut check_caught_up = |seqs: &SeqCheck, report: &mut SocketReport| {
        if !caught_up && seqs.has_all_until(target) {
            caught_up = true;
            report.caught_up_ns = Some(now_ns().saturating_sub(start_ns));
            shared.caught_up.fetch_add(1, Ordering::Release);
        }
    };
    check_caught_up(&seqs, &mut report);
    loop {
        tokio::select! {
            biased;
            () = shared.abort.cancelled() => break,
            () = shared.done.cancelled() => break,
            received = conn.recv() => match received {
                Received::Frame(Incoming::Numbered { seq, .. }) => {
                    report.live += 1;
                    seqs.observe(seq);
                    check_caught_up(&seqs, &mut report);
                }
                Received::Frame(_) => {}
                Received::Closed(reason) => {
                    report.closed = Some(reason);
                    break;
                }
            },
        }
    }
    if report.caught_up_ns.is_none() {
        shared.given_up.fetch_add(1, Ordering::Release);
    }
    report.counts.add(seqs.missing_until(target));
    conn.close().await;
    Some(report)
}

/// Opens a v2 socket (holding a connect slot for the TCP connection and
/// the upgrade only) and joins the socket's room, with `since` when
/// rejoining (and then the largest `limit`, as a client would, for the
/// case recovery fails). Also returns when the upgrade was done.
async fn open_and_join(
    spec: &SocketSpec,
    slots: &Semaphore,
    since: Option<Since>,
) -> Result<(Connection, JoinResult, u64), ConnectError> {
    let mut conn = {
        let _slot = slots.acquire().await;
        spec.client.open(READ_BUFFER, Protocol::V2).await?
    };
    let connected_ns = now_ns();
    let limit = if since.is_some() { v2::MAX_LIMIT } else { 0 };
    let result = conn.join_v2(spec.room, since, limit).await?;
    Ok((conn, result, connected_ns))
}
