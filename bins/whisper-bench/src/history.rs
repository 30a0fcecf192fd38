//! `history`: how fast a page of a large room's stored messages comes back
//! (the goal: a page of 50 from a room of 1,000,000 within 2 ms at p99).
//!
//! 1. A probe socket (v2, not joined: `history` needs no join) finds which
//!    seqs the room keeps: the latest from a page of one, the oldest by
//!    bisecting with pages of one (retention removes only the oldest, so
//!    the kept seqs have no hole). See [`probe`].
//! 2. If the room keeps fewer than `--messages`, `--fill-sockets` sockets
//!    store the missing ones ([`crate::fill`]), and the probe looks again:
//!    a room still short means the server's retention is smaller than the
//!    run ([`BenchError::RoomShort`]).
//! 3. `--readers` sockets each keep one `history` request in flight
//!    (closed loop) for `--warmup` + `--duration` seconds, or until
//!    `--pages` pages were measured. Each page ends at a message drawn
//!    uniformly from the room's `--messages` newest (`before` = its seq +
//!    1), so the server's caches help no more than they would a crowd
//!    scrolling back through a long room.
//! 4. Every page is checked against what the room keeps ([`check_page`]):
//!    exactly `--limit` consecutive seqs ending just below `before` (fewer
//!    only near the oldest kept message), `has_more` and the epoch right.
//!    A wrong page is counted, not fatal. At the end the probe looks once
//!    more, so retention removing messages during the run is reported.
//!
//! A page's latency runs from writing the request to reading its result,
//! parsed (serde_json, tens of microseconds for 50 messages).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use whisper_protocol::v2::{self, Epoch, Seq};
use whisper_protocol::{ErrorCode, RoomId};

use crate::cli::HistoryArgs;
use crate::connection::{Connection, Protocol, Received};
use crate::error::BenchError;
use crate::fill;
use crate::incoming::{HistoryPage, Incoming};
use crate::latency::{LatencySummary, member_histogram, merge, run_histogram};
use crate::procfs::{CpuSample, round3};
use crate::progress::note;
use crate::setup::{ClientSpec, Setup};
use crate::stamp::now_ns;
use crate::window::Window;
use crate::xorshift::Xorshift;

/// A socket's read buffer: a page of 100 messages of 100 bytes is about
/// 25 KiB, read in one go.
const READ_BUFFER: usize = 64 * 1024;
/// Longest wait for a `history` result.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait, after the time is up, for readers to finish the page in
/// flight.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(35);

/// The seqs a room keeps, all of them from `first` to `latest` (retention
/// removes only the oldest), in the log of `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The log the seqs belong to.
    pub epoch: Epoch,
    /// The oldest kept message's seq.
    pub first: u64,
    /// The latest message's seq.
    pub latest: u64,
}

impl Kept {
    /// How many messages the room keeps.
    pub fn count(&self) -> u64 {
        self.latest + 1 - self.first
    }

    /// The seqs a correct page for `before` holds: the `limit` just below
    /// it, or fewer near the oldest kept one.
    pub fn page(&self, before: u64, limit: u32) -> Range<u64> {
        let end = before.min(self.latest + 1).max(self.first);
        end.saturating_sub(u64::from(limit)).max(self.first)..end
    }

    fn report(&self) -> Value {
        json!({
            "epoch": self.epoch.0,
            "first_seq": self.first,
            "latest_seq": self.latest,
            "held": self.count(),
        })
    }
}

/// Checks a page asked for with `before` and `limit` against what the room
/// keeps; the error says how it is wrong.
pub fn check_page(kept: &Kept, before: u64, limit: u32, page: &HistoryPage) -> Result<(), String> {
    let expected = kept.page(before, limit);
    let got = |page: &HistoryPage| match (page.messages.first(), page.messages.last()) {
        (Some(first), Some(last)) => {
            format!("{} seqs {}..={}", page.messages.len(), first.0, last.0)
        }
        _ => "no message".to_owned(),
    };
    if page.epoch != kept.epoch {
        return Err(format!(
            "before {before}: epoch {:?}, the room's is {:?}",
            page.epoch.0, kept.epoch.0
        ));
    }
    let exact = page.messages.len() as u64 == expected.end - expected.start
        && page.messages.iter().map(|seq| seq.0).eq(expected.clone());
    if !exact {
        return Err(format!(
            "before {before}: {}, expected {} seqs {}..{}",
            got(page),
            expected.end - expected.start,
            expected.start,
            expected.end
        ));
    }
    let has_more = expected.start > kept.first;
    if page.has_more != has_more {
        return Err(format!(
            "before {before}: has_more {}, expected {has_more} ({})",
            page.has_more,
            got(page)
        ));
    }
    Ok(())
}

/// Why a `history` request got no page.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RequestError {
    /// The server answered with an error (`None`: a code the bench does
    /// not know).
    Refused(Option<ErrorCode>),
    /// The connection ended.
    Closed(String),
    /// No result within [`REPLY_TIMEOUT`].
    Timeout,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Refused(code) => {
                write!(f, "refused: {}", code.map_or("UNKNOWN", ErrorCode::as_str))
            }
            RequestError::Closed(reason) => write!(f, "closed: {reason}"),
            RequestError::Timeout => write!(f, "no history result within {REPLY_TIMEOUT:?}"),
        }
    }
}

/// Sends one `history` request and waits for its result. Nothing else is in
/// flight on the connection, so an error reply is this request's.
async fn request_page(
    conn: &mut Connection,
    room: RoomId,
    before: Option<Seq>,
    limit: u32,
) -> Result<HistoryPage, RequestError> {
    let id = conn.queue_v2(v2::Command::History {
        room,
        before,
        limit,
    });
    conn.flush()
        .await
        .map_err(|reason| RequestError::Closed(reason.into()))?;
    tokio::time::timeout(REPLY_TIMEOUT, async {
        loop {
            match conn.recv().await {
                Received::Frame(Incoming::History(page)) if page.id == Some(id) => {
                    return Ok(*page);
                }
                Received::Frame(Incoming::Error(code)) => return Err(RequestError::Refused(code)),
                Received::Frame(_) => {}
                Received::Closed(reason) => return Err(RequestError::Closed(reason)),
            }
        }
    })
    .await
    .map_err(|_| RequestError::Timeout)?
}

/// Which seqs `room` keeps (`None` when it keeps none), read through `conn`
/// with about 2 + log2(latest) pages of one message.
async fn probe(conn: &mut Connection, room: RoomId) -> Result<Option<Kept>, RequestError> {
    let newest = request_page(conn, room, None, 1).await?;
    let Some(latest) = newest.messages.last().map(|seq| seq.0) else {
        return Ok(None);
    };
    // The page of one before `b` is the message `b - 1` exactly when that
    // one is kept. Always true at latest + 1, never at 1: bisect between.
    let (mut never, mut always) = (1, latest + 1);
    while always - never > 1 {
        let middle = never + (always - never) / 2;
        let page = request_page(conn, room, Some(Seq(middle)), 1).await?;
        if page.messages.last() == Some(&Seq(middle - 1)) {
            always = middle;
        } else {
            never = middle;
        }
    }
    Ok(Some(Kept {
        epoch: newest.epoch,
        first: always - 1,
        latest,
    }))
}

/// Opens a v2 socket for `client`.
async fn open(client: &ClientSpec) -> Result<Connection, BenchError> {
    client
        .open(READ_BUFFER, Protocol::V2)
        .await
        .map_err(|error| BenchError::Connect(error.to_string()))
}

/// Probes `room` from a socket of its own, opened and closed around it (a
/// socket left idle through a long fill would be closed by the server's
/// keep-alive).
async fn probe_from(client: &ClientSpec, room: RoomId) -> Result<Option<Kept>, BenchError> {
    let mut conn = open(client).await?;
    let kept = probe(&mut conn, room)
        .await
        .map_err(|error| BenchError::Connect(format!("probing room {}: {error}", room.0)))?;
    conn.close().await;
    Ok(kept)
}

/// What the controller and the readers share.
struct Shared {
    /// The measured window, set before `start`.
    window: OnceLock<Window>,
    start: CancellationToken,
    /// Time is up (duration runs).
    stop: CancellationToken,
    abort: CancellationToken,
    /// Measured pages still to request (page-count runs).
    pages_left: Option<AtomicU64>,
}

/// What every reader reads.
struct ReadPlan {
    room: RoomId,
    kept: Kept,
    /// The lowest `before` drawn: pages end at one of the room's
    /// `--messages` newest.
    lowest_before: u64,
    limit: u32,
}

/// What one reader hands back.
struct ReaderReport {
    latency: Histogram<u32>,
    /// Pages requested in the measured window and answered.
    measured: u64,
    /// Pages checked, the warm-up's included.
    checked: u64,
    wrong: u64,
    first_wrong: Option<String>,
    errors: BTreeMap<&'static str, u64>,
    /// When the last measured page came back.
    last_reply_ns: u64,
    closed: Option<String>,
}

/// One reader: requests pages one at a time, from the start until the
/// stop, the page budget runs out, or the connection ends.
async fn reader(mut conn: Connection, shared: Arc<Shared>, plan: Arc<ReadPlan>) -> ReaderReport {
    let mut report = ReaderReport {
        latency: member_histogram(),
        measured: 0,
        checked: 0,
        wrong: 0,
        first_wrong: None,
        errors: BTreeMap::new(),
        last_reply_ns: 0,
        closed: None,
    };
    tokio::select! {
        () = shared.abort.cancelled() => return report,
        () = shared.start.cancelled() => {}
    }
    let Some(window) = shared.window.get().copied() else {
        return report;
    };
    let mut random = Xorshift::new();
    let span = plan.kept.latest + 2 - plan.lowest_before;
    while !shared.stop.is_cancelled() {
        let sent_ns = now_ns();
        let measured = window.contains(sent_ns);
        let claimed = shared.pages_left.as_ref().is_none_or(|left| {
            !measured
                || left
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                        left.checked_sub(1)
                    })
                    .is_ok()
        });
        if !claimed {
            break;
        }
        let before = plan.lowest_before + random.below(span);
        let result = tokio::select! {
            () = shared.abort.cancelled() => break,
            result = request_page(&mut conn, plan.room, Some(Seq(before)), plan.limit) => result,
        };
        let now = now_ns();
        match result {
            Ok(page) => {
                report.checked += 1;
                if let Err(wrong) = check_page(&plan.kept, before, plan.limit, &page) {
                    report.wrong += 1;
                    report.first_wrong.get_or_insert(wrong);
                }
                if measured {
                    report.measured += 1;
                    report.last_reply_ns = now;
                    report.latency.saturating_record(now - sent_ns);
                }
            }
            Err(RequestError::Refused(code)) => {
                *report
                    .errors
                    .entry(code.map_or("UNKNOWN", ErrorCode::as_str))
                    .or_default() += 1;
            }
            Err(error) => {
                report.closed = Some(error.to_string());
                return report;
            }
        }
    }
    conn.close().await;
    report
}

/// Runs the scenario and returns the report line.
pub async fn run(args: &HistoryArgs, setup: &Setup) -> Result<Value, BenchError> {
    let fill_sockets = args.fill_sockets as usize;
    let readers = args.readers as usize;
    // Connection 0 probes, the next ones fill, the rest read.
    let resources = setup.resources(1 + fill_sockets + readers, 1).await?;
    let room = resources.rooms[0];
    let prober = resources.client(&setup.nodes, 0);

    let found = probe_from(&prober, room).await?;
    let held = found.as_ref().map_or(0, Kept::count);
    let missing = args.messages.saturating_sub(held);
    let filled = if missing > 0 {
        note(&format!(
            "room {} holds {held} messages; storing {missing} more",
            room.0
        ));
        let senders: Vec<ClientSpec> = (1..=fill_sockets)
            .map(|index| resources.client(&setup.nodes, index))
            .collect();
        let filled = fill::fill(&senders, &[room], missing, args.message_bytes as usize)
            .await
            .map_err(|error| match error {
                // What was stored stays: a second run only sends the rest.
                BenchError::Connect(reason) => BenchError::Connect(format!(
                    "{reason} (the room keeps what was stored: run again to store the rest, \
                     with fewer --fill-sockets if a sender was too slow)"
                )),
                other => other,
            })?;
        Some(filled)
    } else {
        note(&format!("room {} holds {held} messages already", room.0));
        None
    };
    let kept = match probe_from(&prober, room).await? {
        Some(kept) if kept.count() >= args.messages => kept,
        short => {
            return Err(BenchError::RoomShort {
                room: room.0,
                held: short.as_ref().map_or(0, Kept::count),
                wanted: args.messages,
            });
        }
    };

    let connect_started = Instant::now();
    let conns: Vec<Connection> = stream::iter(0..readers)
        .map(|index| {
            let client = resources.client(&setup.nodes, 1 + fill_sockets + index);
            async move { open(&client).await }
        })
        .buffer_unordered(setup.common.connect_concurrency as usize)
        .try_collect()
        .await?;
    let connect_s = connect_started.elapsed().as_secs_f64();
    let plan = Arc::new(ReadPlan {
        room,
        lowest_before: kept.latest + 2 - args.messages,
        kept: kept.clone(),
        limit: args.limit,
    });
    let shared = Arc::new(Shared {
        window: OnceLock::new(),
        start: CancellationToken::new(),
        stop: CancellationToken::new(),
        abort: CancellationToken::new(),
        pages_left: args.pages.map(AtomicU64::new),
    });
    let tasks: Vec<JoinHandle<ReaderReport>> = conns
        .into_iter()
        .map(|conn| tokio::spawn(reader(conn, shared.clone(), plan.clone())))
        .collect();

    let duration = args.pages.is_none().then_some(args.duration);
    let start = Instant::now();
    let window = Window::new(start, args.warmup, duration);
    let _ = shared.window.set(window);
    shared.start.cancel();
    note(&format!(
        "{readers} readers paging {} at a time for {:.1} s warm-up + {}",
        args.limit,
        args.warmup.as_secs_f64(),
        args.pages.map_or_else(
            || format!("{:.1} s measured", args.duration.as_secs_f64()),
            |pages| format!("{pages} measured pages")
        )
    ));
    tokio::time::sleep_until((start + args.warmup).into()).await;
    let cpu_from = CpuSample::take(&setup.common.server_pids);
    let mut reports = Vec::with_capacity(readers);
    let cpu = if let Some(duration) = duration {
        tokio::time::sleep_until((start + args.warmup + duration).into()).await;
        let cpu = CpuSample::take(&setup.common.server_pids).since(&cpu_from);
        shared.stop.cancel();
        let deadline = tokio::time::Instant::now() + COLLECT_TIMEOUT;
        collect(tasks, &shared, Some(deadline), &mut reports).await;
        cpu
    } else {
        // Readers end once the measured pages are spent (each request
        // times out on its own).
        collect(tasks, &shared, None, &mut reports).await;
        CpuSample::take(&setup.common.server_pids).since(&cpu_from)
    };
    let measured_s = match duration {
        Some(duration) => duration.as_secs_f64(),
        None => {
            let last = reports.iter().map(|report| report.last_reply_ns).max();
            last.unwrap_or(window.from_ns)
                .saturating_sub(window.from_ns) as f64
                / 1e9
        }
    };

    let after = probe_from(&prober, room).await?;
    if after.as_ref() != Some(&kept) {
        note(&format!(
            "warning: room {} changed during the run (retention? another sender?): \
             it kept seqs {}..={}, now {}; wrong pages may follow from it",
            room.0,
            kept.first,
            kept.latest,
            after.as_ref().map_or_else(
                || "none".to_owned(),
                |after| format!("{}..={}", after.first, after.latest)
            )
        ));
    }
    let results = summarize(&reports, measured_s);
    Ok(json!({
        "scenario": "history",
        "params": {
            "url": setup.nodes.urls(),
            "protocol": "v2",
            "room_ids": [room.0],
            "messages": args.messages,
            "limit": args.limit,
            "readers": args.readers,
            "duration_s": duration.map(|duration| duration.as_secs_f64()),
            "pages": args.pages,
            "warmup_s": args.warmup.as_secs_f64(),
            "fill_sockets": args.fill_sockets,
            "message_bytes": args.message_bytes,
            "users": resources.cookies.len(),
            "source_ips": resources.sources.count(),
            "bench_threads": setup.threads,
        },
        "results": results,
        "cpu": cpu,
        "setup": {
            "room": kept.report(),
            "room_after": after.as_ref().map(Kept::report),
            "held_before_fill": held,
            "fill": filled.map(|filled| json!({
                "messages": missing,
                "sockets": args.fill_sockets,
                "stored": filled.stored,
                "refused": filled.refused,
                "fill_s": round3(filled.elapsed.as_secs_f64()),
                "stored_per_s": round3(filled.stored_per_s()),
            })),
            "connect_s": round3(connect_s),
        },
    }))
}

/// Waits for the readers' reports, aborting those still running at
/// `deadline`.
async fn collect(
    tasks: Vec<JoinHandle<ReaderReport>>,
    shared: &Shared,
    deadline: Option<tokio::time::Instant>,
    reports: &mut Vec<ReaderReport>,
) {
    for mut task in tasks {
        let finished = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(finished) => finished,
                Err(_) => {
                    shared.abort.cancel();
                    task.await
                }
            },
            None => task.await,
        };
        if let Ok(report) = finished {
            reports.push(report);
        }
    }
}

/// Merges the readers' reports into the `results` object.
fn summarize(reports: &[ReaderReport], measured_s: f64) -> Value {
    let mut latency = run_histogram();
    let (mut pages, mut checked, mut wrong) = (0u64, 0u64, 0u64);
    let mut first_wrong = None;
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    let mut closed: BTreeMap<&str, u64> = BTreeMap::new();
    for report in reports {
        merge(&mut latency, &report.latency);
        pages += report.measured;
        checked += report.checked;
        wrong += report.wrong;
        if first_wrong.is_none() {
            first_wrong = report.first_wrong.as_deref();
        }
        for (code, count) in &report.errors {
            *errors.entry(code).or_default() += count;
        }
        if let Some(reason) = &report.closed {
            *closed.entry(reason.as_str()).or_default() += 1;
        }
    }
    if errors.contains_key(ErrorCode::RateLimited.as_str()) {
        note(
            "warning: the server refused requests as RATE_LIMITED; \
             start it with --max-messages-per-second 1000000",
        );
    } else if !errors.is_empty() {
        note(&format!("warning: the server answered errors: {errors:?}"));
    }
    if wrong > 0 {
        note(&format!(
            "warning: {wrong} wrong pages; first: {}",
            first_wrong.unwrap_or_default()
        ));
    }
    json!({
        "pages": pages,
        "pages_per_s": round3(pages as f64 / measured_s.max(1e-9)),
        "measured_s": round3(measured_s),
        "latency": LatencySummary::of(&latency),
        "pages_checked": checked,
        "wrong_pages": wrong,
        "first_wrong_page": first_wrong,
        "errors": errors,
        "disconnected": closed.values().sum::<u64>(),
        "disconnect_reasons": closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(first: u64, latest: u64) -> Kept {
        Kept {
            epoch: Epoch("e1".into()),
            first,
            latest,
        }
    }

    fn page(seqs: Range<u64>, has_more: bool) -> HistoryPage {
        HistoryPage {
            id: Some(1),
            epoch: Epoch("e1".into()),
            messages: seqs.map(Seq).collect(),
            has_more,
        }
    }

    #[test]
    fn a_page_is_the_limit_just_below_before_or_what_is_left() {
        let room = kept(11, 1000);
        assert_eq!(room.count(), 990);
        assert_eq!(room.page(501, 50), 451..501);
        assert_eq!(room.page(1001, 50), 951..1001);
        assert_eq!(room.page(5000, 50), 951..1001, "before past the latest");
        assert_eq!(room.page(40, 50), 11..40, "near the oldest kept");
        assert_eq!(room.page(11, 50), 11..11, "nothing older");
    }

    #[test]
    fn right_pages_pass() {
        let room = kept(1, 1000);
        assert_eq!(check_page(&room, 501, 50, &page(451..501, true)), Ok(()));
        assert_eq!(check_page(&room, 51, 50, &page(1..51, false)), Ok(()));
        assert_eq!(check_page(&room, 21, 50, &page(1..21, false)), Ok(()));
    }

    #[test]
    fn every_way_a_page_can_be_wrong_is_caught() {
        let room = kept(1, 1000);
        let short = page(452..501, true);
        let shifted = page(450..500, true);
        let mut holed = page(451..501, true);
        holed.messages[10] = Seq(999);
        let mut reordered = page(451..501, true);
        reordered.messages.swap(3, 4);
        let no_more = page(451..501, false);
        let mut other_log = page(451..501, true);
        other_log.epoch = Epoch("e2".into());
        for wrong in [short, shifted, holed, reordered, no_more, other_log] {
            assert!(check_page(&room, 501, 50, &wrong).is_err(), "{wrong:?}");
        }
        assert!(check_page(&room, 51, 50, &page(1..51, true)).is_err());
        let error = check_page(&room, 501, 50, &page(452..501, true)).expect_err("short");
        assert_eq!(
            error,
            "before 501: 49 seqs 452..=500, expected 50 seqs 451..501"
        );
    }
}
