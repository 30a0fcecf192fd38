//! `conns`: many connections, each joined to one room, then a few timed
//! broadcasts.
//!
//! Connection `i` joins room `i mod R` as that room's member `i / R`, and
//! connects to the node that place gives it ([`crate::nodes`]), so every
//! room spans every node; the announcer is on the first node.
//!
//! Connections are opened `--connect-concurrency` at a time, from several
//! loopback source addresses, each by its own task that keeps reading for
//! the rest of the run (every join broadcasts ENTER to the room, so a
//! connection that stopped reading would soon be closed as a slow
//! consumer). Once all are in and the ENTER storm has settled, an extra
//! connection (the announcer, in every room) sends one message per room
//! per broadcast; each receiver counts the broadcast and raises its
//! "last arrival" time, and the broadcast's time is that last arrival minus
//! the send time. The server's RSS (all nodes together) is read before the
//! first connection and after every connection has received a broadcast.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use whisper_protocol::{Command, RoomId};

use crate::cli::ConnsArgs;
use crate::connection::{Connection, Protocol, Received, Target};
use crate::error::BenchError;
use crate::incoming::Incoming;
use crate::procfs::{CpuSample, round3, servers_rss_kib};
use crate::progress::{Progress, note};
use crate::setup::Setup;
use crate::stamp::{Stamp, now_ns};

/// Socket read buffer of an idle connection: small, since there may be
/// tens of thousands.
const READ_BUFFER: usize = 4 * 1024;
/// Socket read buffer of the announcer, which receives every ENTER.
const ANNOUNCER_READ_BUFFER: usize = 64 * 1024;
/// The sender number of broadcast stamps.
const ANNOUNCER: u32 = 0;
/// Longest wait for one broadcast to reach everyone.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(10);
/// The ENTER storm is over when no frame arrived for this long.
const QUIET: Duration = Duration::from_millis(300);
/// Longest wait for the ENTER storm to end.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between broadcasts.
const BETWEEN_BROADCASTS: Duration = Duration::from_millis(100);

/// One broadcast's arrivals.
struct Round {
    sent_ns: AtomicU64,
    received: AtomicUsize,
    last_ns: AtomicU64,
}

/// What the controller and the connection tasks share.
struct Shared {
    joined: AtomicUsize,
    failed: AtomicUsize,
    closed: AtomicUsize,
    /// Every frame any connection received, to see when traffic settles.
    frames: AtomicU64,
    last_join_ns: AtomicU64,
    /// Receivers a round waits for; a round notifies when it reaches it.
    expected: AtomicUsize,
    rounds: Vec<Round>,
    round_done: Notify,
    done: CancellationToken,
    failures: Mutex<BTreeMap<String, u64>>,
    closes: Mutex<BTreeMap<String, u64>>,
}

/// Runs the scenario and returns the report line.
pub async fn run(args: &ConnsArgs, setup: &Setup) -> Result<Value, BenchError> {
    let total = args.connections as usize;
    let resources = setup.resources(total + 1, args.rooms as usize).await?;
    let server_pids = &setup.common.server_pids[..];
    let shared = Arc::new(Shared {
        joined: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        closed: AtomicUsize::new(0),
        frames: AtomicU64::new(0),
        last_join_ns: AtomicU64::new(0),
        expected: AtomicUsize::new(usize::MAX),
        rounds: (0..args.broadcasts)
            .map(|_| Round {
                sent_ns: AtomicU64::new(0),
                received: AtomicUsize::new(0),
                last_ns: AtomicU64::new(0),
            })
            .collect(),
        round_done: Notify::new(),
        done: CancellationToken::new(),
        failures: Mutex::new(BTreeMap::new()),
        closes: Mutex::new(BTreeMap::new()),
    });

    let rss_before = servers_rss_kib(server_pids);
    let announce = announcer(
        setup.nodes.first(),
        &resources.cookies[0],
        &resources.rooms,
        args.message_bytes as usize,
        shared.clone(),
    )
    .await?;

    let cpu_from = CpuSample::take(server_pids);
    let slots = Arc::new(Semaphore::new(setup.common.connect_concurrency as usize));
    let progress = Progress::bar("connecting", total);
    let started_ns = now_ns();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    let rooms = resources.rooms.len();
    for index in 0..total {
        // Connection i is the (i + 1)th socket: the announcer took user 0's first.
        let cookie = resources.cookies[(index + 1) % resources.cookies.len()].clone();
        let room = resources.rooms[index % rooms];
        let target = setup.nodes.for_member(index / rooms).clone();
        let source = resources.sources.nth(index);
        let shared = shared.clone();
        let slots = slots.clone();
        tasks.push(tokio::spawn(async move {
            let opened = {
                let _slot = slots.acquire().await;
                open_and_join(&target, &cookie, source, room).await
            };
            match opened {
                Ok(conn) => {
                    shared.last_join_ns.fetch_max(now_ns(), Ordering::Relaxed);
                    shared.joined.fetch_add(1, Ordering::Relaxed);
                    listen(conn, &shared).await;
                }
                Err(reason) => {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    count(&shared.failures, reason);
                }
            }
        }));
    }
    while shared.joined.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < total {
        progress.set(shared.joined.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let joined = shared.joined.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    let connect_s = shared
        .last_join_ns
        .load(Ordering::Relaxed)
        .saturating_sub(started_ns) as f64
        / 1e9;
    let connect_cpu = CpuSample::take(server_pids).since(&cpu_from);
    progress.finish(&format!(
        "{joined} connections joined in {connect_s:.2} s ({failed} failed)"
    ));
    let settle_s = settle(&shared).await;
    note(&format!("joins settled after {settle_s:.2} s more"));
    let idle_cpu = if args.idle_s > 0 {
        note(&format!(
            "holding the connections idle for {} s",
            args.idle_s
        ));
        let from = CpuSample::take(server_pids);
        tokio::time::sleep(Duration::from_secs(u64::from(args.idle_s))).await;
        Some(CpuSample::take(server_pids).since(&from))
    } else {
        None
    };

    let broadcast_cpu_from = CpuSample::take(server_pids);
    let mut times_ms = Vec::with_capacity(args.broadcasts as usize);
    let mut incomplete = 0;
    for (index, round) in shared.rounds.iter().enumerate() {
        let alive = joined - shared.closed.load(Ordering::Relaxed);
        shared.expected.store(alive, Ordering::Release);
        if announce.send(index as u64).await.is_err() {
            return Err(BenchError::Connect(
                "the announcer's connection closed".into(),
            ));
        }
        let deadline = tokio::time::Instant::now() + BROADCAST_TIMEOUT;
        while round.received.load(Ordering::Acquire) < alive {
            if tokio::time::timeout_at(deadline, shared.round_done.notified())
                .await
                .is_err()
            {
                break;
            }
        }
        let received = round.received.load(Ordering::Acquire);
        if received < alive {
            incomplete += 1;
            note(&format!(
                "broadcast {index} reached {received} of {alive} within {} s",
                BROADCAST_TIMEOUT.as_secs()
            ));
        } else {
            let spent_ns = round
                .last_ns
                .load(Ordering::Acquire)
                .saturating_sub(round.sent_ns.load(Ordering::Acquire));
            times_ms.push(spent_ns as f64 / 1e6);
        }
        tokio::time::sleep(BETWEEN_BROADCASTS).await;
    }
    let broadcast_cpu = CpuSample::take(server_pids).since(&broadcast_cpu_from);
    let rss_after = servers_rss_kib(server_pids);
    let elapsed_s = started.elapsed().as_secs_f64();
    shared.done.cancel();
    drop(announce);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }

    let rss_per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if joined > 0 => {
            Some(round3(after.saturating_sub(before) as f64 / joined as f64))
        }
        _ => None,
    };
    let mut sorted = times_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let failures = take(&shared.failures);
    let closes = take(&shared.closes);
    Ok(json!({
        "scenario": "conns",
        "params": {
            "url": setup.nodes.urls(),
            "connections": total,
            "rooms": args.rooms,
            "room_ids": resources.rooms.iter().map(|room| room.0).collect::<Vec<_>>(),
            "broadcasts": args.broadcasts,
            "message_bytes": args.message_bytes,
            "idle_s": args.idle_s,
            "users": resources.cookies.len(),
            "connections_per_user": setup.common.connections_per_user,
            "connect_concurrency": setup.common.connect_concurrency,
            "source_ips": resources.sources.count(),
            "bench_threads": setup.threads,
        },
        "results": {
            "connected": joined,
            "failed": failed,
            "failure_reasons": failures,
            "connect_s": round3(connect_s),
            "connects_per_s": round3(joined as f64 / connect_s.max(1e-9)),
            "settle_s": round3(settle_s),
            "server_rss_before_kib": rss_before,
            "server_rss_after_kib": rss_after,
            "server_rss_per_connection_kib": rss_per_connection,
            "broadcast_ms": {
                "p50": median(&sorted).map(round3),
                "min": sorted.first().copied().map(round3),
                "max": sorted.last().copied().map(round3),
                "all": times_ms.iter().copied().map(round3).collect::<Vec<_>>(),
            },
            "incomplete_broadcasts": incomplete,
            "disconnected": shared.closed.load(Ordering::Relaxed),
            "disconnect_reasons": closes,
            "elapsed_s": round3(elapsed_s),
        },
        "cpu": { "connect": connect_cpu, "idle": idle_cpu, "broadcasts": broadcast_cpu },
    }))
}

async fn open_and_join(
    target: &Target,
    cookie: &str,
    source: Option<std::net::IpAddr>,
    room: RoomId,
) -> Result<Connection, String> {
    let mut conn = Connection::open(target, cookie, source, READ_BUFFER, Protocol::V1)
        .await
        .map_err(|error| error.to_string())?;
    conn.join(room).await.map_err(|error| error.to_string())?;
    Ok(conn)
}

/// A connection's life after its join: count frames, and record the
/// broadcasts' arrivals. The frames one read brought are handled without
/// going back through the `select!`.
async fn listen(mut conn: Connection, shared: &Shared) {
    loop {
        let received = tokio::select! {
            biased;
            () = shared.done.cancelled() => return,
            received = conn.recv() => received,
        };
        let mut frames = 0;
        let mut next = Some(received);
        while let Some(received) = next {
            frames += 1;
            if !on_received(received, shared) {
                return;
            }
            next = conn.recv_buffered();
        }
        shared.frames.fetch_add(frames, Ordering::Relaxed);
    }
}

/// Handles one frame; `false` when the connection ended.
fn on_received(received: Received, shared: &Shared) -> bool {
    match received {
        Received::Frame(Incoming::Message(Some(stamp))) if stamp.sender == ANNOUNCER => {
            let now = now_ns();
            if let Some(round) = shared.rounds.get(stamp.seq as usize) {
                round.last_ns.fetch_max(now, Ordering::AcqRel);
                let received = round.received.fetch_add(1, Ordering::AcqRel) + 1;
                if received >= shared.expected.load(Ordering::Acquire) {
                    shared.round_done.notify_one();
                }
            }
            true
        }
        Received::Frame(_) => true,
        Received::Closed(reason) => {
            shared.closed.fetch_add(1, Ordering::Relaxed);
            count(&shared.closes, reason);
            // A round may now be complete with one receiver fewer.
            shared.round_done.notify_one();
            false
        }
    }
}

/// Waits until no connection received anything for [`QUIET`]; returns the
/// seconds that took.
async fn settle(shared: &Shared) -> f64 {
    let started = Instant::now();
    let mut last = shared.frames.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while started.elapsed() < SETTLE_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = shared.frames.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= QUIET {
            break;
        }
    }
    started.elapsed().saturating_sub(QUIET).as_secs_f64()
}

/// Opens the announcer, joins it to every room, and runs it: each round
/// number it is given becomes one stamped message per room, written at
/// once. It keeps reading (and dropping) what it receives.
async fn announcer(
    target: &Target,
    cookie: &str,
    rooms: &[RoomId],
    message_bytes: usize,
    shared: Arc<Shared>,
) -> Result<mpsc::Sender<u64>, BenchError> {
    let mut conn = Connection::open(target, cookie, None, ANNOUNCER_READ_BUFFER, Protocol::V1)
        .await
        .map_err(|error| BenchError::Connect(format!("announcer: {error}")))?;
    for &room in rooms {
        conn.join(room)
            .await
            .map_err(|error| BenchError::Connect(format!("announcer: {error}")))?;
    }
    let rooms = rooms.to_vec();
    let (rounds, mut next_round) = mpsc::channel::<u64>(1);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                round = next_round.recv() => {
                    let Some(round) = round else { return };
                    let sent_ns = now_ns();
                    if let Some(slot) = shared.rounds.get(round as usize) {
                        slot.sent_ns.store(sent_ns, Ordering::Release);
                    }
                    let message = Stamp { sender: ANNOUNCER, seq: round, sent_ns }.to_text(message_bytes);
                    for &room in &rooms {
                        conn.queue(&Command::Send { room, message: message.clone() });
                    }
                    if conn.flush().await.is_err() {
                        return;
                    }
                }
                received = conn.recv() => {
                    if let Received::Closed(_) = received {
                        return;
                    }
                }
            }
        }
    });
    Ok(rounds)
}

fn count(map: &Mutex<BTreeMap<String, u64>>, reason: String) {
    *map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(reason)
        .or_default() += 1;
}

fn take(map: &Mutex<BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    std::mem::take(&mut *map.lock().unwrap_or_else(PoisonError::into_inner))
}

fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[1.0, 2.0, 10.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), Some(2.5));
    }
}
