//! `conns`: many connections, each joined to one room, then a few timed
//! broadcasts.
//!
//! Connection `i` joins room `i mod R` as that room's member `i / R`, and
//! connects to the node that place gives it ([`crate::nodes`]), so every
//! room spans every node; the announcer is on the first node.
//!
//! The connections are opened by [`crate::crowd`]: in this process, or,
//! with `--processes K`, split over this process and K - 1 workers
//! ([`crate::workers`]), since one process may hold only so many open
//! files. Here is the coordinator: it signs users up and provides the rooms
//! once, hands every share its part, and runs the phases: connect (at most
//! `--connect-concurrency` in flight over all processes, from several
//! loopback source addresses), wait until the ENTER storm has settled
//! everywhere, optionally hold the connections idle, then the broadcasts.
//! For each, an extra connection (the announcer, in every room) sends one
//! message per room; every share reports how many of its connections got it
//! and when the last did, on the clock all processes share
//! (`CLOCK_MONOTONIC`, [`now_ns`]), and the broadcast's time is the latest
//! arrival anywhere minus the send time. The server's RSS (all nodes
//! together) is read before the first connection and after every
//! connection has received a broadcast.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use whisper_protocol::{Command, RoomId};

use crate::cli::ConnsArgs;
use crate::connection::{Connection, Protocol, Received, Target};
use crate::crowd::{ANNOUNCER, Assignment, BROADCAST_TIMEOUT, Order};
use crate::error::BenchError;
use crate::procfs::{CpuSample, round3, servers_rss_kib};
use crate::progress::{Progress, note};
use crate::setup::Setup;
use crate::stamp::{Stamp, now_ns};
use crate::workers::{Crew, share};

/// Socket read buffer of the announcer, which receives every ENTER.
const ANNOUNCER_READ_BUFFER: usize = 64 * 1024;
/// Pause between broadcasts.
const BETWEEN_BROADCASTS: Duration = Duration::from_millis(100);

/// Runs the scenario and returns the report line.
pub async fn run(args: &ConnsArgs, setup: &Setup) -> Result<Value, BenchError> {
    let total = args.connections as usize;
    let processes = args.processes as usize;
    // This process opens its share, the announcer, and two pipes a worker.
    let here = share(total, processes, 0).len() + 1 + 2 * (processes - 1);
    let resources = setup
        .resources_opening(total + 1, args.rooms as usize, here)
        .await?;
    let server_pids = &setup.common.server_pids[..];
    let concurrency = setup.common.connect_concurrency as usize;
    let assignments = (0..processes)
        .map(|process| Assignment {
            process,
            connections: share(total, processes, process),
            concurrency: share(concurrency, processes, process).len().max(1),
            broadcasts: args.broadcasts as usize,
            rooms: resources.rooms.iter().map(|room| room.0).collect(),
            cookies: resources.cookies.clone(),
            source_ips: resources.sources.count(),
        })
        .collect();
    let mut crew = Crew::start(setup, assignments).await?;
    let bench_pids = crew.worker_pids();
    let cpu = || CpuSample::take_with_workers(server_pids, &bench_pids);

    let rss_before = servers_rss_kib(server_pids);
    let announcer = Announcer::open(
        setup.nodes.first(),
        &resources.cookies[0],
        &resources.rooms,
        args.message_bytes as usize,
    )
    .await?;

    let cpu_from = cpu();
    let progress = Progress::bar("connecting", total);
    let started = Instant::now();
    crew.order(&Order::Connect).await?;
    let joins = crew.joined(&progress).await?;
    let (joined, failed) = (joins.joined, joins.failed);
    let connect_s = joins.connect_s();
    let connect_cpu = cpu().since(&cpu_from);
    progress.finish(&format!(
        "{joined} connections joined in {connect_s:.2} s ({failed} failed)"
    ));
    crew.order(&Order::Settle).await?;
    let settle_s = crew.settled().await?;
    note(&format!("joins settled after {settle_s:.2} s more"));
    let idle_cpu = if args.idle_s > 0 {
        note(&format!(
            "holding the connections idle for {} s",
            args.idle_s
        ));
        let from = cpu();
        crew.hold(
            Duration::from_secs(u64::from(args.idle_s)),
            "holding the connections idle",
        )
        .await?;
        Some(cpu().since(&from))
    } else {
        None
    };

    let broadcast_cpu_from = cpu();
    let mut times_ms = Vec::with_capacity(args.broadcasts as usize);
    let mut incomplete = 0;
    for round in 0..args.broadcasts as usize {
        crew.order(&Order::Round { round }).await?;
        let sent_ns = announcer.announce(round).await?;
        let arrivals = crew.arrived().await?;
        if arrivals.complete() {
            let spent_ns = arrivals.last_ns.saturating_sub(sent_ns);
            times_ms.push(spent_ns as f64 / 1e6);
        } else {
            incomplete += 1;
            note(&format!(
                "broadcast {round} reached {} of {} within {} s",
                arrivals.received,
                arrivals.expected,
                BROADCAST_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(BETWEEN_BROADCASTS).await;
    }
    let broadcast_cpu = cpu().since(&broadcast_cpu_from);
    let rss_after = servers_rss_kib(server_pids);
    let elapsed_s = started.elapsed().as_secs_f64();
    let ends = crew.finish().await?;
    drop(announcer);

    let rss_per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if joined > 0 => {
            Some(round3(after.saturating_sub(before) as f64 / joined as f64))
        }
        _ => None,
    };
    let mut sorted = times_ms.clone();
    sorted.sort_by(f64::total_cmp);
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
            "processes": processes,
        },
        "results": {
            "connected": joined,
            "failed": failed,
            "failure_reasons": joins.failures,
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
            "disconnected": ends.closed,
            "disconnect_reasons": ends.reasons,
            "elapsed_s": round3(elapsed_s),
        },
        "cpu": { "connect": connect_cpu, "idle": idle_cpu, "broadcasts": broadcast_cpu },
    }))
}

/// The extra connection that sends the broadcasts, joined to every room.
struct Announcer {
    /// Rounds to send, each with where to say when it was sent.
    rounds: mpsc::Sender<(usize, oneshot::Sender<u64>)>,
}

impl Announcer {
    /// Opens the announcer, joins it to every room, and runs it on a task
    /// that keeps reading (and dropping) what it receives, so the server
    /// never finds it slow.
    async fn open(
        target: &Target,
        cookie: &str,
        rooms: &[RoomId],
        message_bytes: usize,
    ) -> Result<Announcer, BenchError> {
        let mut conn = Connection::open(target, cookie, None, ANNOUNCER_READ_BUFFER, Protocol::V1)
            .await
            .map_err(|error| BenchError::Connect(format!("announcer: {error}")))?;
        for &room in rooms {
            conn.join(room)
                .await
                .map_err(|error| BenchError::Connect(format!("announcer: {error}")))?;
        }
        let rooms = rooms.to_vec();
        let (rounds, mut next_round) = mpsc::channel::<(usize, oneshot::Sender<u64>)>(1);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    round = next_round.recv() => {
                        let Some((round, sent)) = round else { return };
                        let sent_ns = now_ns();
                        let message = Stamp { sender: ANNOUNCER, seq: round as u64, sent_ns }
                            .to_text(message_bytes);
                        for &room in &rooms {
                            conn.queue(&Command::Send { room, message: message.clone() });
                        }
                        if conn.flush().await.is_err() {
                            return;
                        }
                        let _ = sent.send(sent_ns);
                    }
                    received = conn.recv() => {
                        if let Received::Closed(_) = received {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Announcer { rounds })
    }

    /// Sends broadcast `round`: one stamped message per room, written at
    /// once; returns when it was sent ([`now_ns`]).
    async fn announce(&self, round: usize) -> Result<u64, BenchError> {
        let closed = || BenchError::Connect("the announcer's connection closed".into());
        let (sent, sent_ns) = oneshot::channel();
        self.rounds
            .send((round, sent))
            .await
            .map_err(|_| closed())?;
        sent_ns.await.map_err(|_| closed())
    }
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
