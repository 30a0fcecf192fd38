//! `conns --processes K`: the run's connections spread over K processes,
//! since one process may hold only so many open files (tens of thousands
//! of sockets need several).
//!
//! The process the user started, the coordinator, signs the users up and
//! provides the rooms once, keeps the first share of the connections
//! itself, and starts K - 1 workers: its own binary
//! ([`std::env::current_exe`]) with its own arguments and the hidden
//! [`WORKER_FLAG`]. The connection indices are split into K contiguous
//! ranges ([`share`]); each connection is placed by its index as in a
//! one-process run, so rooms, nodes and source addresses come out the same.
//!
//! Every share, the coordinator's included, is a [`crowd::Crowd`] run by
//! [`crowd::follow`]: it is sent its [`Assignment`] (indices, session
//! cookies, rooms, source addresses), then [`Order`]s, and answers each with
//! a [`Report`]. A worker reads its orders as JSON lines on stdin and writes
//! its reports as JSON lines on stdout (its stderr is the coordinator's);
//! the coordinator's own share gets them through channels. The coordinator
//! ([`Crew`]) waits for every share's answer, each wait bounded: a share
//! that fails, exits or says nothing for too long ends the run with an
//! error naming it and the phase, and the workers are killed when the
//! [`Crew`] is dropped. A worker whose coordinator went away notices at its
//! next order or report (its stdin ends, its stdout breaks) and exits.

use std::ops::Range;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::crowd::{
    self, Arrivals, Assignment, BROADCAST_TIMEOUT, Ends, Joins, Order, Report, SETTLE_TIMEOUT,
    STOP_TIMEOUT,
};
use crate::error::BenchError;
use crate::progress::{Progress, note};
use crate::setup::Setup;

/// The hidden `conns` flag that makes a process a worker of the one that
/// started it.
pub const WORKER_FLAG: &str = "--worker";

/// Longest wait for a started worker to say it is ready.
const READY_PATIENCE: Duration = Duration::from_secs(30);
/// Longest silence from a share while it connects (each reports its
/// progress ten times a second).
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);
/// Added to a share's own time limit for a phase before it counts as hung:
/// on a busy machine its report may take a while to be read.
const GRACE: Duration = Duration::from_secs(10);
/// Longest wait for a worker to take an order line.
const WRITE_PATIENCE: Duration = Duration::from_secs(30);
/// Longest wait for a stopped worker to exit before it is killed.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Reports queued from all shares (progress lines, a few per second each).
const EVENTS: usize = 256;

/// The connection indices process `part` of `parts` opens: `0..total` cut
/// into `parts` contiguous ranges, in order, whose lengths differ by at
/// most one. Also splits `--connect-concurrency`.
pub fn share(total: usize, parts: usize, part: usize) -> Range<usize> {
    let parts = parts.max(1);
    let bound = |part: usize| (total as u128 * part as u128 / parts as u128) as usize;
    bound(part)..bound(part + 1)
}

/// What the coordinator hears from a share.
enum Event {
    /// A report line.
    Report(Report),
    /// It will say nothing more, and why.
    Gone(String),
}

/// One share, as the coordinator reaches it.
enum Member {
    /// The coordinator's own share, run by a task of its own.
    Local(mpsc::Sender<Order>),
    /// A worker process (killed if dropped before it exited).
    Worker {
        /// The process (boxed: it is large, and there are few).
        child: Box<Child>,
        /// Where its orders go.
        stdin: ChildStdin,
    },
}

/// Every share of a run, as the coordinator drives them: orders go to all,
/// and each phase waits for every share's report.
pub struct Crew {
    members: Vec<Member>,
    events: mpsc::Receiver<(usize, Event)>,
    /// Why each share that went away between phases did.
    gone: Vec<Option<String>>,
}

impl Crew {
    /// Starts the coordinator's own share and a worker for each other
    /// assignment, gives each its assignment, and waits until all are
    /// ready.
    pub async fn start(setup: &Setup, assignments: Vec<Assignment>) -> Result<Crew, BenchError> {
        let processes = assignments.len();
        let (events_tx, events) = mpsc::channel(EVENTS);
        let mut members = Vec::with_capacity(processes);
        for process in 0..processes {
            members.push(if process == 0 {
                start_local(setup, events_tx.clone())
            } else {
                start_worker(process, processes, events_tx.clone())?
            });
        }
        let mut crew = Crew {
            members,
            events,
            gone: vec![None; processes],
        };
        for (process, assignment) in assignments.into_iter().enumerate() {
            crew.send(process, &Order::Assign(assignment)).await?;
        }
        crew.gather("starting", READY_PATIENCE, |_, report| match report {
            Report::Ready => Ok(Some(())),
            other => Err(other),
        })
        .await?;
        Ok(crew)
    }

    /// The workers' process ids, so their CPU time counts as the bench's.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|member| match member {
                Member::Local(_) => None,
                Member::Worker { child, .. } => child.id(),
            })
            .collect()
    }

    /// Gives every share `order`.
    pub async fn order(&mut self, order: &Order) -> Result<(), BenchError> {
        for process in 0..self.members.len() {
            self.send(process, order).await?;
        }
        Ok(())
    }

    /// Waits for every share's connections to join or fail, showing their
    /// progress; the run's joins.
    pub async fn joined(&mut self, progress: &Progress) -> Result<Joins, BenchError> {
        let mut joined_by = vec![0; self.members.len()];
        let all = self
            .gather("connecting", CONNECT_PATIENCE, |process, report| {
                let (joined, answer) = match report {
                    Report::Progress { joined, .. } => (joined, None),
                    Report::Joined(joins) => (joins.joined, Some(joins)),
                    other => return Err(other),
                };
                joined_by[process] = joined;
                progress.set(joined_by.iter().sum());
                Ok(answer)
            })
            .await?;
        Ok(Joins::merge(all))
    }

    /// Waits until every share went quiet; the longest any took.
    pub async fn settled(&mut self) -> Result<f64, BenchError> {
        let all = self
            .gather(
                "settling",
                SETTLE_TIMEOUT + GRACE,
                |_, report| match report {
                    Report::Settled { settle_s } => Ok(Some(settle_s)),
                    other => Err(other),
                },
            )
            .await?;
        Ok(all.into_iter().fold(0.0, f64::max))
    }

    /// Waits for every share's arrivals of the broadcast last ordered.
    pub async fn arrived(&mut self) -> Result<Arrivals, BenchError> {
        let all = self
            .gather(
                "broadcasting",
                BROADCAST_TIMEOUT + GRACE,
                |_, report| match report {
                    Report::Arrived(arrivals) => Ok(Some(arrivals)),
                    other => Err(other),
                },
            )
            .await?;
        Ok(Arrivals::merge(all))
    }

    /// Stops every share, waits for their last reports, and reaps the
    /// workers (killing one that does not exit).
    pub async fn finish(mut self) -> Result<Ends, BenchError> {
        self.order(&Order::Stop).await?;
        let all = self
            .gather("stopping", STOP_TIMEOUT + GRACE, |_, report| match report {
                Report::Stopped(ends) => Ok(Some(ends)),
                other => Err(other),
            })
            .await?;
        for member in self.members {
            if let Member::Worker { mut child, stdin } = member {
                // Its stdin ends, so its order reader ends and it exits.
                drop(stdin);
                if tokio::time::timeout(REAP_TIMEOUT, child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            }
        }
        Ok(Ends::merge(all))
    }

    async fn send(&mut self, process: usize, order: &Order) -> Result<(), BenchError> {
        let sent = match &mut self.members[process] {
            Member::Local(orders) => orders
                .send(order.clone())
                .await
                .map_err(|_| "it has ended".to_owned()),
            Member::Worker { stdin, .. } => {
                match tokio::time::timeout(WRITE_PATIENCE, write_line(stdin, order)).await {
                    Ok(written) => written.map_err(|error| error.to_string()),
                    Err(_) => Err(format!(
                        "it took nothing for {} s",
                        WRITE_PATIENCE.as_secs()
                    )),
                }
            }
        };
        match sent {
            Ok(()) => Ok(()),
            Err(reason) => {
                let exited = self.exit_status(process).await;
                Err(self.error(
                    process,
                    format!(
                        "cannot be given its {:?} order: {reason}{exited}",
                        order.name()
                    ),
                ))
            }
        }
    }

    /// Waits `duration` while the shares hold their connections, ending
    /// early with an error if one fails or exits meanwhile.
    pub async fn hold(&mut self, duration: Duration, phase: &str) -> Result<(), BenchError> {
        self.check_gone(phase).await?;
        match tokio::time::timeout(duration, self.events.recv()).await {
            Err(_) => Ok(()),
            Ok(Some((process, event))) => Err(self.unexpected(process, event, phase).await),
            Ok(None) => Err(self.error(0, format!("every share vanished while {phase}"))),
        }
    }

    /// Waits until every share answered this phase: `pick` turns a report
    /// into the answer (`Ok(Some)`), takes it as progress (`Ok(None)`), or
    /// hands back one that does not belong here (`Err`). Every share must
    /// say something at least every `patience`.
    async fn gather<T>(
        &mut self,
        phase: &str,
        patience: Duration,
        mut pick: impl FnMut(usize, Report) -> Result<Option<T>, Report>,
    ) -> Result<Vec<T>, BenchError> {
        self.check_gone(phase).await?;
        let mut answers: Vec<Option<T>> = self.members.iter().map(|_| None).collect();
        let mut deadlines = vec![Instant::now() + patience; self.members.len()];
        while let Some(first_due) = (0..answers.len())
            .filter(|&process| answers[process].is_none())
            .min_by_key(|&process| deadlines[process])
        {
            let event = tokio::time::timeout_at(deadlines[first_due], self.events.recv()).await;
            let (process, event) = match event {
                Ok(Some(event)) => event,
                // Every share's reader has ended, each after saying why.
                Ok(None) => {
                    return Err(self.error(first_due, format!("vanished while {phase}")));
                }
                Err(_) => {
                    return Err(self.error(
                        first_due,
                        format!("said nothing for {} s while {phase}", patience.as_secs()),
                    ));
                }
            };
            deadlines[process] = Instant::now() + patience;
            match event {
                Event::Gone(reason) if answers[process].is_some() => {
                    self.gone[process] = Some(reason);
                }
                Event::Report(report) if !matches!(report, Report::Failed { .. }) => {
                    match pick(process, report) {
                        Ok(Some(answer)) => answers[process] = Some(answer),
                        Ok(None) => {}
                        Err(report) => {
                            let event = Event::Report(report);
                            return Err(self.unexpected(process, event, phase).await);
                        }
                    }
                }
                event => return Err(self.unexpected(process, event, phase).await),
            }
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// Fails if a share went away after answering the last phase.
    async fn check_gone(&mut self, phase: &str) -> Result<(), BenchError> {
        match self.gone.iter().position(Option::is_some) {
            None => Ok(()),
            Some(process) => {
                let reason = self.gone[process].take().unwrap_or_default();
                let exited = self.exit_status(process).await;
                Err(self.error(process, format!("{reason}{exited} before {phase}")))
            }
        }
    }

    /// The error for `event`, which a share sent when it should not have:
    /// a failure, its end, or a report of another phase.
    async fn unexpected(&mut self, process: usize, event: Event, phase: &str) -> BenchError {
        match event {
            Event::Report(Report::Failed { error }) => self.error(process, error),
            Event::Report(report) => self.error(
                process,
                format!("reported {:?} while {phase}", report.name()),
            ),
            Event::Gone(reason) => {
                let exited = self.exit_status(process).await;
                self.error(process, format!("{reason}{exited} while {phase}"))
            }
        }
    }

    /// How a worker that stopped talking exited, when it has (within a
    /// second), as `" (exit status: N)"`; empty otherwise.
    async fn exit_status(&mut self, process: usize) -> String {
        match &mut self.members[process] {
            Member::Local(_) => String::new(),
            Member::Worker { child, .. } => {
                match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
                    Ok(Ok(status)) => format!(" ({status})"),
                    _ => String::new(),
                }
            }
        }
    }

    fn error(&self, process: usize, reason: String) -> BenchError {
        BenchError::Worker {
            process,
            processes: self.members.len(),
            reason,
        }
    }
}

/// Runs the coordinator's own share on a task, its reports forwarded as
/// process 0's.
fn start_local(setup: &Setup, events: mpsc::Sender<(usize, Event)>) -> Member {
    let (orders, orders_rx) = mpsc::channel(1);
    let (reports, mut reports_rx) = mpsc::channel(1);
    // A failure is reported through `reports` before follow returns it.
    tokio::spawn(crowd::follow(setup.nodes.clone(), orders_rx, reports));
    tokio::spawn(async move {
        while let Some(report) = reports_rx.recv().await {
            if events.send((0, Event::Report(report))).await.is_err() {
                return;
            }
        }
        let _ = events.send((0, Event::Gone("ended".into()))).await;
    });
    Member::Local(orders)
}

/// Starts worker `process`: this binary with this process's arguments and
/// [`WORKER_FLAG`], orders on its stdin, reports on its stdout, forwarded
/// as `process`'s.
fn start_worker(
    process: usize,
    processes: usize,
    events: mpsc::Sender<(usize, Event)>,
) -> Result<Member, BenchError> {
    let failed = |reason: String| BenchError::Worker {
        process,
        processes,
        reason,
    };
    let exe = std::env::current_exe()
        .map_err(|error| failed(format!("cannot find the bench's own binary: {error}")))?;
    let mut child = Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .arg(WORKER_FLAG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| failed(format!("cannot start {}: {error}", exe.display())))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(failed("started without its pipes".into()));
    };
    tokio::spawn(async move {
        let ended = read_lines(stdout, &events, |report| (process, Event::Report(report))).await;
        let why = ended.err().unwrap_or_else(|| "exited".into());
        let _ = events.send((process, Event::Gone(why))).await;
    });
    Ok(Member::Worker {
        child: Box::new(child),
        stdin,
    })
}

/// A worker's life: its orders are JSON lines on stdin, its reports JSON
/// lines on stdout. A failure is reported to the coordinator, which prints
/// it; the worker then exits with [`BenchError::Relayed`].
pub async fn serve(setup: &Setup) -> Result<(), BenchError> {
    let (orders_tx, orders) = mpsc::channel(1);
    let (reports, mut reports_rx) = mpsc::channel::<Report>(1);
    tokio::spawn(async move {
        if let Err(reason) = read_lines(tokio::io::stdin(), &orders_tx, |order| order).await {
            // The orders end here; the share fails for want of them.
            note(&format!("worker: {reason}"));
        }
    });
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(report) = reports_rx.recv().await {
            if write_line(&mut stdout, &report).await.is_err() {
                return;
            }
        }
    });
    let outcome = crowd::follow(setup.nodes.clone(), orders, reports).await;
    // Every report, a failure's included, is written before the worker
    // exits.
    let _ = writer.await;
    outcome.map_err(|_| BenchError::Relayed)
}

/// Reads JSON lines of `T` from `input` and sends each, wrapped, to `out`,
/// until the input ends or no one takes them (`Ok`), or a line cannot be
/// read (`Err`, saying which).
async fn read_lines<T: DeserializeOwned, U>(
    input: impl AsyncRead + Unpin,
    out: &mpsc::Sender<U>,
    wrap: impl Fn(T) -> U,
) -> Result<(), String> {
    let mut lines = BufReader::new(input).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(error) => return Err(format!("its pipe broke ({error})")),
        };
        let value = serde_json::from_str(&line).map_err(|error| {
            let start: String = line.chars().take(80).collect();
            format!("wrote an unreadable line {start:?} ({error})")
        })?;
        if out.send(wrap(value)).await.is_err() {
            return Ok(());
        }
    }
}

/// Writes `value` as one JSON line and flushes it.
async fn write_line(
    output: &mut (impl AsyncWrite + Unpin),
    value: &impl Serialize,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    output.write_all(&line).await?;
    output.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_contiguous_in_order_and_even() {
        let ranges: Vec<Range<usize>> = (0..3).map(|part| share(300, 3, part)).collect();
        assert_eq!(ranges, [0..100, 100..200, 200..300]);
        let ranges: Vec<Range<usize>> = (0..3).map(|part| share(50_000, 3, part)).collect();
        assert_eq!(ranges, [0..16_666, 16_666..33_333, 33_333..50_000]);
        for (total, parts) in [(7, 3), (1, 1), (5, 5), (1_000_000, 7), (128, 3)] {
            let ranges: Vec<Range<usize>> =
                (0..parts).map(|part| share(total, parts, part)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[parts - 1].end, total);
            assert!(ranges.windows(2).all(|pair| pair[0].end == pair[1].start));
            let lengths: Vec<usize> = ranges.iter().map(Range::len).collect();
            let (min, max) = (lengths.iter().min(), lengths.iter().max());
            assert!(
                max.zip(min).is_some_and(|(max, min)| max - min <= 1),
                "{lengths:?}"
            );
        }
        // One process takes everything: today's run.
        assert_eq!(share(1000, 1, 0), 0..1000);
    }

    #[tokio::test]
    async fn lines_are_read_until_the_end_or_a_bad_one() {
        let (out, mut taken) = mpsc::channel(8);
        let input: &[u8] = b"{\"order\":\"connect\"}\n{\"order\":\"round\",\"round\":1}\n";
        assert_eq!(read_lines(input, &out, |order: Order| order).await, Ok(()));
        assert_eq!(taken.recv().await, Some(Order::Connect));
        assert_eq!(taken.recv().await, Some(Order::Round { round: 1 }));

        let input: &[u8] = b"{\"order\":\"settle\"}\nwhisper-bench: hello\n{\"order\":\"stop\"}\n";
        let ended = read_lines(input, &out, |order: Order| order).await;
        assert!(
            ended
                .as_ref()
                .is_err_and(|reason| reason.contains("\"whisper-bench: hello\"")),
            "{ended:?}"
        );
        assert_eq!(taken.recv().await, Some(Order::Settle));
        assert!(taken.try_recv().is_err(), "nothing after the bad line");
    }

    #[tokio::test]
    async fn a_written_line_reads_back() {
        let mut written = Vec::new();
        write_line(&mut written, &Report::Settled { settle_s: 1.5 })
            .await
            .expect("written");
        assert_eq!(written, b"{\"report\":\"settled\",\"settle_s\":1.5}\n");
        let (out, mut taken) = mpsc::channel(1);
        assert_eq!(
            read_lines(&written[..], &out, |report: Report| report).await,
            Ok(())
        );
        assert_eq!(taken.recv().await, Some(Report::Settled { settle_s: 1.5 }));
    }
}
