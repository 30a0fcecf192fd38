//! One process's share of `conns`' connections, and the script it
//! follows.
//!
//! A `conns` run may spread its connections over several processes
//! ([`crate::workers`]); each of them, the one the user started included,
//! holds a [`Crowd`]: the connections whose indices it was assigned, each
//! placed as a one-process run places it (connection `i` joins room
//! `i mod R` as that room's member `i / R`, on the node that place gives
//! it, from source address `i mod S`). Each connection is opened by its own
//! task that keeps reading until the crowd stops (every join broadcasts
//! ENTER to the room, so a connection that stopped reading would soon be
//! closed as a slow consumer), counting frames, closes and the broadcasts'
//! arrivals.
//!
//! [`follow`] runs a crowd by [`Order`]s, answering each with a
//! [`Report`]. In a worker the orders and reports are JSON lines on its
//! stdin and stdout; in the first process they go through channels; either
//! way every share is run by this same code, and the coordinating process
//! adds up the reports ([`Joins::merge`], [`Arrivals::merge`],
//! [`Ends::merge`]). Times are [`now_ns`] readings, `CLOCK_MONOTONIC`, so
//! the processes' times compare.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use whisper_protocol::RoomId;

use crate::connection::{Connection, Protocol, Received, SourceAddresses, Target};
use crate::error::BenchError;
use crate::incoming::Incoming;
use crate::nodes::Nodes;
use crate::setup::ensure_sockets;
use crate::stamp::now_ns;

/// Socket read buffer of a connection: small, since there may be tens of
/// thousands.
const READ_BUFFER: usize = 4 * 1024;
/// The sender number of broadcast stamps.
pub const ANNOUNCER: u32 = 0;
/// Longest wait for one broadcast to reach every connection of a crowd.
pub const BROADCAST_TIMEOUT: Duration = Duration::from_secs(10);
/// The ENTER storm is over when no frame arrived for this long.
const QUIET: Duration = Duration::from_millis(300);
/// Longest wait for the ENTER storm to end.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait, once told to stop, for the connection tasks to end.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a crowd still connecting says how far it got: what the
/// coordinating process's progress bar shows, and its sign of life.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What a process is given to open its share: everything the one-process
/// run would have known, so a worker repeats none of the setup (the
/// users are signed up once, by the coordinating process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Which process: 0 the one the user started, 1.. its workers.
    pub process: usize,
    /// The indices of the connections it opens.
    pub connections: Range<usize>,
    /// Its share of `--connect-concurrency`.
    pub concurrency: usize,
    /// Broadcasts the run times.
    pub broadcasts: usize,
    /// The run's rooms, in order.
    pub rooms: Vec<i64>,
    /// One `Cookie` header per signed-up user; user 0's first socket is
    /// the announcer's, so connection `i` is user `(i + 1) mod U`.
    pub cookies: Vec<String>,
    /// Loopback source addresses the sockets bind to in turn (0: the
    /// kernel's choice).
    pub source_ips: u32,
}

impl Assignment {
    /// Refuses an assignment the placement rule cannot use.
    fn check(&self) -> Result<(), BenchError> {
        if self.rooms.is_empty() || self.cookies.is_empty() {
            return Err(BenchError::Control(format!(
                "process {} was assigned {} rooms and {} users; it needs at least one of each",
                self.process,
                self.rooms.len(),
                self.cookies.len()
            )));
        }
        Ok(())
    }
}

/// What the coordinating process tells a share to do. Orders come in the
/// order listed (`Round` once per broadcast), each answered by the report
/// its line names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "order", rename_all = "snake_case")]
pub enum Order {
    /// Here is your share; answer [`Report::Ready`] once it can be opened
    /// (the open-files limit is raised).
    Assign(Assignment),
    /// Open your connections; [`Report::Progress`] until every one has
    /// joined or failed, then [`Report::Joined`].
    Connect,
    /// Wait until your connections have received nothing for a while (the
    /// ENTER storm is over); [`Report::Settled`].
    Settle,
    /// Broadcast `round` is about to be sent; wait until it reached every
    /// open connection (or [`BROADCAST_TIMEOUT`]); [`Report::Arrived`].
    Round {
        /// Its number, 0 first.
        round: usize,
    },
    /// Close everything; [`Report::Stopped`], then end.
    Stop,
}

impl Order {
    /// Its name, for errors (the assignment's cookies stay out of them).
    pub fn name(&self) -> &'static str {
        match self {
            Order::Assign(_) => "assign",
            Order::Connect => "connect",
            Order::Settle => "settle",
            Order::Round { .. } => "round",
            Order::Stop => "stop",
        }
    }
}

/// What a share tells the coordinating process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// Assigned, and able to open its share.
    Ready,
    /// Still connecting: how many joined and failed so far.
    Progress {
        /// Connections joined so far.
        joined: usize,
        /// Connections that could not join.
        failed: usize,
    },
    /// Every connection joined or failed.
    Joined(Joins),
    /// Its connections went quiet.
    Settled {
        /// Seconds from the order to the start of the quiet.
        settle_s: f64,
    },
    /// A broadcast's arrivals.
    Arrived(Arrivals),
    /// Closed; the last report.
    Stopped(Ends),
    /// The share could not go on; the last report.
    Failed {
        /// Why.
        error: String,
    },
}

impl Report {
    /// Its name, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Report::Ready => "ready",
            Report::Progress { .. } => "progress",
            Report::Joined(_) => "joined",
            Report::Settled { .. } => "settled",
            Report::Arrived(_) => "arrived",
            Report::Stopped(_) => "stopped",
            Report::Failed { .. } => "failed",
        }
    }
}

/// How a crowd's joins went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joins {
    /// Connections that joined.
    pub joined: usize,
    /// Connections that could not join.
    pub failed: usize,
    /// When it began opening them ([`now_ns`]).
    pub started_ns: u64,
    /// When its last connection joined (0: none did).
    pub last_join_ns: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
}

impl Joins {
    /// The run's joins from every share's: counts added up, and the
    /// connect phase from the first share's start to the last join of any.
    pub fn merge(all: impl IntoIterator<Item = Joins>) -> Joins {
        all.into_iter()
            .reduce(|mut sum, joins| {
                sum.joined += joins.joined;
                sum.failed += joins.failed;
                sum.started_ns = sum.started_ns.min(joins.started_ns);
                sum.last_join_ns = sum.last_join_ns.max(joins.last_join_ns);
                add_counts(&mut sum.failures, joins.failures);
                sum
            })
            .unwrap_or_default()
    }

    /// Seconds from the start to the last join (0 when none joined).
    pub fn connect_s(&self) -> f64 {
        self.last_join_ns.saturating_sub(self.started_ns) as f64 / 1e9
    }
}

/// One broadcast's arrivals at a crowd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrivals {
    /// Connections open when the broadcast was announced.
    pub expected: usize,
    /// Connections it reached.
    pub received: usize,
    /// When the last of them received it ([`now_ns`]; 0: none did).
    pub last_ns: u64,
}

impl Arrivals {
    /// The run's arrivals from every share's: counts added up, the latest
    /// arrival of any.
    pub fn merge(all: impl IntoIterator<Item = Arrivals>) -> Arrivals {
        all.into_iter()
            .fold(Arrivals::default(), |sum, arrivals| Arrivals {
                expected: sum.expected + arrivals.expected,
                received: sum.received + arrivals.received,
                last_ns: sum.last_ns.max(arrivals.last_ns),
            })
    }

    /// Whether it reached every connection that was open.
    pub fn complete(&self) -> bool {
        self.received >= self.expected
    }
}

/// How a crowd's connections ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ends {
    /// Connections the server closed (or that broke) before the stop.
    pub closed: usize,
    /// Those closes by reason.
    pub reasons: BTreeMap<String, u64>,
}

impl Ends {
    /// The run's ends from every share's.
    pub fn merge(all: impl IntoIterator<Item = Ends>) -> Ends {
        all.into_iter().fold(Ends::default(), |mut sum, ends| {
            sum.closed += ends.closed;
            add_counts(&mut sum.reasons, ends.reasons);
            sum
        })
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (reason, count) in from {
        *into.entry(reason).or_default() += count;
    }
}

/// Runs a share: takes its [`Order`]s from `orders` and answers on
/// `reports`, until told to stop. A failure is reported
/// ([`Report::Failed`], when anyone still listens) and returned.
pub async fn follow(
    nodes: Nodes,
    mut orders: mpsc::Receiver<Order>,
    reports: mpsc::Sender<Report>,
) -> Result<(), BenchError> {
    let outcome = script(&nodes, &mut orders, &reports).await;
    if let Err(error) = &outcome {
        // The coordinating process may be gone; then no one is told.
        let _ = reports
            .send(Report::Failed {
                error: error.to_string(),
            })
            .await;
    }
    outcome
}

async fn script(
    nodes: &Nodes,
    orders: &mut mpsc::Receiver<Order>,
    reports: &mpsc::Sender<Report>,
) -> Result<(), BenchError> {
    let assignment = match next(orders).await? {
        Order::Assign(assignment) => assignment,
        other => return Err(out_of_turn(&other, "before its assignment")),
    };
    assignment.check()?;
    ensure_sockets(assignment.connections.len())?;
    tell(reports, Report::Ready).await?;
    match next(orders).await? {
        Order::Connect => {}
        other => return Err(out_of_turn(&other, "before connecting")),
    }
    let crowd = Crowd::open(nodes, &assignment);
    loop {
        let (joined, failed) = crowd.progress();
        if joined + failed >= assignment.connections.len() {
            break;
        }
        tell(reports, Report::Progress { joined, failed }).await?;
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
    tell(reports, Report::Joined(crowd.joins())).await?;
    loop {
        let report = match next(orders).await? {
            Order::Settle => Report::Settled {
                settle_s: crowd.settle().await,
            },
            Order::Round { round } => Report::Arrived(crowd.arrivals(round).await?),
            Order::Stop => return tell(reports, Report::Stopped(crowd.stop().await)).await,
            other => return Err(out_of_turn(&other, "once connected")),
        };
        tell(reports, report).await?;
    }
}

async fn next(orders: &mut mpsc::Receiver<Order>) -> Result<Order, BenchError> {
    orders
        .recv()
        .await
        .ok_or_else(|| BenchError::Control("the coordinating process gave no more orders".into()))
}

async fn tell(reports: &mpsc::Sender<Report>, report: Report) -> Result<(), BenchError> {
    reports
        .send(report)
        .await
        .map_err(|_| BenchError::Control("the coordinating process stopped listening".into()))
}

fn out_of_turn(order: &Order, when: &str) -> BenchError {
    BenchError::Control(format!("order {:?} came {when}", order.name()))
}

/// One broadcast's arrivals, as the connection tasks count them.
struct Round {
    received: AtomicUsize,
    last_ns: AtomicU64,
}

/// What a crowd's connection tasks share with it.
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

/// One process's share of the connections, open and reading. Dropping it
/// tells every connection task to close its connection.
pub struct Crowd {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    started_ns: u64,
}

impl Crowd {
    /// Starts one task per assigned connection, at most the assigned
    /// concurrency of them connecting at once.
    fn open(nodes: &Nodes, assignment: &Assignment) -> Crowd {
        let shared = Arc::new(Shared {
            joined: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            frames: AtomicU64::new(0),
            last_join_ns: AtomicU64::new(0),
            expected: AtomicUsize::new(usize::MAX),
            rounds: (0..assignment.broadcasts)
                .map(|_| Round {
                    received: AtomicUsize::new(0),
                    last_ns: AtomicU64::new(0),
                })
                .collect(),
            round_done: Notify::new(),
            done: CancellationToken::new(),
            failures: Mutex::new(BTreeMap::new()),
            closes: Mutex::new(BTreeMap::new()),
        });
        let slots = Arc::new(Semaphore::new(assignment.concurrency.max(1)));
        let sources = SourceAddresses::new(assignment.source_ips, nodes.addrs());
        let (rooms, cookies) = (&assignment.rooms, &assignment.cookies);
        let started_ns = now_ns();
        let tasks = assignment
            .connections
            .clone()
            .map(|index| {
                let cookie = cookies[(index + 1) % cookies.len()].clone();
                let room = RoomId(rooms[index % rooms.len()]);
                let target = nodes.for_member(index / rooms.len()).clone();
                let source = sources.nth(index);
                let shared = shared.clone();
                let slots = slots.clone();
                tokio::spawn(async move {
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
                })
            })
            .collect();
        Crowd {
            shared,
            tasks,
            started_ns,
        }
    }

    /// Connections joined and failed so far.
    fn progress(&self) -> (usize, usize) {
        (
            self.shared.joined.load(Ordering::Relaxed),
            self.shared.failed.load(Ordering::Relaxed),
        )
    }

    /// How the joins went, once every connection joined or failed.
    fn joins(&self) -> Joins {
        let (joined, failed) = self.progress();
        Joins {
            joined,
            failed,
            started_ns: self.started_ns,
            last_join_ns: self.shared.last_join_ns.load(Ordering::Relaxed),
            failures: take(&self.shared.failures),
        }
    }

    /// Waits until no connection received anything for [`QUIET`] (at most
    /// [`SETTLE_TIMEOUT`]); returns the seconds until the quiet began.
    async fn settle(&self) -> f64 {
        let shared = &self.shared;
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

    /// Waits until broadcast `round` reached every connection open now, or
    /// [`BROADCAST_TIMEOUT`] passed. Copies that arrived before the call
    /// count: the order to wait may come after the broadcast.
    async fn arrivals(&self, round: usize) -> Result<Arrivals, BenchError> {
        let shared = &self.shared;
        let slot = shared.rounds.get(round).ok_or_else(|| {
            BenchError::Control(format!(
                "round {round} ordered, but the run has {} broadcasts",
                shared.rounds.len()
            ))
        })?;
        let expected = shared
            .joined
            .load(Ordering::Relaxed)
            .saturating_sub(shared.closed.load(Ordering::Relaxed));
        shared.expected.store(expected, Ordering::Release);
        let deadline = tokio::time::Instant::now() + BROADCAST_TIMEOUT;
        while slot.received.load(Ordering::Acquire) < expected {
            if tokio::time::timeout_at(deadline, shared.round_done.notified())
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(Arrivals {
            expected,
            received: slot.received.load(Ordering::Acquire),
            last_ns: slot.last_ns.load(Ordering::Acquire),
        })
    }

    /// Closes every connection, waits (at most [`STOP_TIMEOUT`]) for the
    /// tasks, and says how many the server had closed before.
    async fn stop(mut self) -> Ends {
        self.shared.done.cancel();
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        for task in std::mem::take(&mut self.tasks) {
            // A task still running past the deadline ends with the process.
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        Ends {
            closed: self.shared.closed.load(Ordering::Relaxed),
            reasons: take(&self.shared.closes),
        }
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.shared.done.cancel();
    }
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
            if let Some(round) = usize::try_from(stamp.seq)
                .ok()
                .and_then(|seq| shared.rounds.get(seq))
            {
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

fn count(map: &Mutex<BTreeMap<String, u64>>, reason: String) {
    *map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(reason)
        .or_default() += 1;
}

fn take(map: &Mutex<BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    std::mem::take(&mut *map.lock().unwrap_or_else(PoisonError::into_inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs
            .iter()
            .map(|&(reason, count)| (reason.to_owned(), count))
            .collect()
    }

    #[test]
    fn joins_add_up_over_the_whole_connect_phase() {
        let first = Joins {
            joined: 10,
            failed: 1,
            started_ns: 1_000,
            last_join_ns: 5_000,
            failures: counts(&[("tcp: refused", 1)]),
        };
        let second = Joins {
            joined: 9,
            failed: 2,
            started_ns: 900,
            last_join_ns: 7_000,
            failures: counts(&[("tcp: refused", 1), ("timeout: join", 1)]),
        };
        let all = Joins::merge([first, second]);
        assert_eq!((all.joined, all.failed), (19, 3));
        assert_eq!((all.started_ns, all.last_join_ns), (900, 7_000));
        assert_eq!(
            all.failures,
            counts(&[("tcp: refused", 2), ("timeout: join", 1)])
        );
        assert!((all.connect_s() - 6.1e-6).abs() < 1e-12);
        assert_eq!(Joins::merge([]), Joins::default());
    }

    #[test]
    fn a_broadcast_is_complete_only_when_every_share_got_it_all() {
        let share = |expected, received, last_ns| Arrivals {
            expected,
            received,
            last_ns,
        };
        let all = Arrivals::merge([share(100, 100, 50), share(100, 100, 80)]);
        assert_eq!(all, share(200, 200, 80));
        assert!(all.complete());
        assert!(!Arrivals::merge([share(100, 100, 50), share(100, 99, 40)]).complete());
        // A share whose connections all closed expects nothing.
        assert!(Arrivals::merge([share(0, 0, 0)]).complete());
    }

    #[test]
    fn ends_add_up_by_reason() {
        let ends = |closed, reasons: &[(&str, u64)]| Ends {
            closed,
            reasons: counts(reasons),
        };
        assert_eq!(
            Ends::merge([ends(1, &[("eof", 1)]), ends(3, &[("eof", 2), ("1008", 1)])]),
            ends(4, &[("1008", 1), ("eof", 3)])
        );
    }

    #[test]
    fn orders_and_reports_are_one_json_line_each() {
        let assign = Order::Assign(Assignment {
            process: 2,
            connections: 200..300,
            concurrency: 43,
            broadcasts: 3,
            rooms: vec![7, 8],
            cookies: vec!["sessionid=abc".into()],
            source_ips: 1,
        });
        for order in [
            assign,
            Order::Connect,
            Order::Settle,
            Order::Round { round: 2 },
            Order::Stop,
        ] {
            let line = serde_json::to_string(&order).expect("serializes");
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(serde_json::from_str::<Order>(&line).ok(), Some(order));
        }
        assert_eq!(
            serde_json::from_str::<Order>(r#"{"order":"round","round":4}"#).ok(),
            Some(Order::Round { round: 4 })
        );
        let reports = [
            Report::Ready,
            Report::Progress {
                joined: 5,
                failed: 0,
            },
            Report::Joined(Joins {
                joined: 5,
                failed: 1,
                started_ns: 1,
                last_join_ns: 2,
                failures: counts(&[("upgrade: 403 \"Forbidden\"", 1)]),
            }),
            Report::Settled { settle_s: 0.25 },
            Report::Arrived(Arrivals {
                expected: 5,
                received: 5,
                last_ns: 9,
            }),
            Report::Stopped(Ends::default()),
            Report::Failed {
                error: "line one\nline two".into(),
            },
        ];
        for report in reports {
            let line = serde_json::to_string(&report).expect("serializes");
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(serde_json::from_str::<Report>(&line).ok(), Some(report));
        }
    }

    #[test]
    fn unknown_or_incomplete_lines_are_refused() {
        for line in [
            "",
            "{}",
            r#"{"order":"dance"}"#,
            r#"{"order":"round"}"#,
            r#"{"order":"assign","process":1}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<Order>(line).is_err(), "{line}");
        }
        assert!(serde_json::from_str::<Report>(r#"{"report":"arrived","expected":1}"#).is_err());
    }

    #[tokio::test]
    async fn orders_out_of_turn_fail_the_share_and_say_so() {
        let nodes = Nodes::resolve(&["http://127.0.0.1:9".parse().expect("url")])
            .await
            .expect("resolves");
        let (orders, orders_rx) = mpsc::channel(4);
        let (reports_tx, mut reports) = mpsc::channel(4);
        orders.send(Order::Connect).await.expect("sent");
        let outcome = follow(nodes, orders_rx, reports_tx).await;
        assert!(
            matches!(outcome, Err(BenchError::Control(_))),
            "{outcome:?}"
        );
        let Some(Report::Failed { error }) = reports.recv().await else {
            panic!("a failure report expected");
        };
        assert!(
            error.contains("\"connect\" came before its assignment"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_assignment_without_users_is_refused() {
        let nodes = Nodes::resolve(&["http://127.0.0.1:9".parse().expect("url")])
            .await
            .expect("resolves");
        let (orders, orders_rx) = mpsc::channel(4);
        let (reports_tx, mut reports) = mpsc::channel(4);
        orders
            .send(Order::Assign(Assignment {
                process: 1,
                connections: 0..10,
                concurrency: 1,
                broadcasts: 1,
                rooms: vec![1],
                cookies: Vec::new(),
                source_ips: 0,
            }))
            .await
            .expect("sent");
        assert!(follow(nodes, orders_rx, reports_tx).await.is_err());
        assert!(matches!(reports.recv().await, Some(Report::Failed { .. })));
    }
}
