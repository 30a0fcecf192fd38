//! Filling rooms with stored messages, as fast as the server stores them:
//! what `recovery` sends while its sockets are away, and what `history`
//! needs before it can page through a large room.
//!
//! Each sending socket speaks v2, joins every room (a `send` needs it, so
//! the socket also reads every message of its rooms as events, and must,
//! or the server would close it as a slow consumer), and keeps at most
//! [`SEND_WINDOW`] sends unanswered: the server works on that many sends
//! per socket at once. The server stores sends in group-commit batches, so
//! several sockets make larger batches and a higher rate, until every
//! socket's copy of every event costs more than the batching saves.
//! A `send` result means the message is stored; the fill ends when every
//! send has one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use whisper_protocol::RoomId;
use whisper_protocol::v2::{self, Seq};

use crate::connection::{ConnectError, Protocol, Received};
use crate::error::BenchError;
use crate::incoming::Incoming;
use crate::progress::Progress;
use crate::setup::ClientSpec;
use crate::stamp::{Stamp, now_ns};

/// A sending socket's read buffer: it reads every message of its rooms.
const READ_BUFFER: usize = 64 * 1024;
/// Most sends one socket has unanswered: the server works on 64 sends per
/// socket at once, and the results of a larger burst could fill the
/// socket's receive buffer while it is still writing.
pub const SEND_WINDOW: usize = 64;
/// Longest wait for the next reply before the fill is given up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a fill did.
#[derive(Debug, Clone)]
pub struct Filled {
    /// Per room, in the order given, its latest seq as the senders saw it:
    /// the highest that a join or a send result gave.
    pub last_seqs: Vec<Seq>,
    /// Sends acknowledged as stored.
    pub stored: u64,
    /// Sends the server refused with an error.
    pub refused: u64,
    /// From the first connection to the last result.
    pub elapsed: Duration,
}

impl Filled {
    /// Messages stored per second over the whole fill.
    pub fn stored_per_s(&self) -> f64 {
        self.stored as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `per_room` messages of `message_bytes` to every room in `rooms`,
/// spread over the `senders` (message `i` of the run goes to room
/// `i mod rooms` from sender `i mod senders`), and waits for every result.
/// Each text is a [`Stamp`] whose sender is the socket's index.
pub async fn fill(
    senders: &[ClientSpec],
    rooms: &[RoomId],
    per_room: u64,
    message_bytes: usize,
) -> Result<Filled, BenchError> {
    let started = Instant::now();
    let total = per_room * rooms.len() as u64;
    let socket_count = senders.len() as u64;
    let progress = Arc::new(Progress::bar("storing messages", total as usize));
    let rooms: Arc<[RoomId]> = rooms.into();
    let mut sockets = JoinSet::new();
    for (index, spec) in (0u64..).zip(senders) {
        let plan = SocketPlan {
            index,
            step: socket_count,
            total,
            message_bytes,
        };
        sockets.spawn(send_from(
            spec.clone(),
            rooms.clone(),
            plan,
            progress.clone(),
        ));
    }
    let mut filled = Filled {
        last_seqs: vec![Seq(0); rooms.len()],
        stored: 0,
        refused: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = sockets.join_next().await {
        let socket = match joined {
            Ok(Ok(socket)) => socket,
            Ok(Err(error)) => {
                sockets.abort_all();
                return Err(error);
            }
            Err(error) => {
                sockets.abort_all();
                return Err(BenchError::Connect(format!("sender task: {error}")));
            }
        };
        for (last, seq) in filled.last_seqs.iter_mut().zip(socket.last_seqs) {
            *last = (*last).max(seq);
        }
        filled.stored += socket.stored;
        filled.refused += socket.refused;
    }
    filled.elapsed = started.elapsed();
    progress.finish(&format!(
        "{} messages stored in {} rooms from {} sockets in {:.2} s ({:.0}/s), {} refused",
        filled.stored,
        rooms.len(),
        senders.len(),
        filled.elapsed.as_secs_f64(),
        filled.stored_per_s(),
        filled.refused
    ));
    Ok(filled)
}

/// Which of the run's messages one socket sends: `index`, `index + step`,
/// ... below `total`.
#[derive(Debug, Clone, Copy)]
struct SocketPlan {
    index: u64,
    step: u64,
    total: u64,
    message_bytes: usize,
}

/// What one socket stored.
struct SocketFilled {
    last_seqs: Vec<Seq>,
    stored: u64,
    refused: u64,
}

/// One sending socket: joins every room, sends its share with at most
/// [`SEND_WINDOW`] unanswered, and closes once every send is answered.
async fn send_from(
    spec: ClientSpec,
    rooms: Arc<[RoomId]>,
    plan: SocketPlan,
    progress: Arc<Progress>,
) -> Result<SocketFilled, BenchError> {
    let failed = |reason: &dyn std::fmt::Display| {
        BenchError::Connect(format!("sender {}: {reason}", plan.index))
    };
    let mut conn = spec
        .open(READ_BUFFER, Protocol::V2)
        .await
        .map_err(|error: ConnectError| failed(&error))?;
    let mut done = SocketFilled {
        last_seqs: Vec::with_capacity(rooms.len()),
        stored: 0,
        refused: 0,
    };
    for &room in rooms.iter() {
        let joined = conn
            .join_v2(room, None, 0)
            .await
            .map_err(|error| failed(&error))?;
        done.last_seqs.push(joined.seq);
    }
    let mut next = plan.index;
    // Room index of each unanswered send, oldest first: replies keep order.
    let mut unanswered = VecDeque::with_capacity(SEND_WINDOW);
    while next < plan.total || !unanswered.is_empty() {
        while next < plan.total && unanswered.len() < SEND_WINDOW {
            let room_index = (next % rooms.len() as u64) as usize;
            let stamp = Stamp {
                sender: u32::try_from(plan.index).unwrap_or(u32::MAX),
                seq: next,
                sent_ns: now_ns(),
            };
            conn.queue_v2(v2::Command::Send {
                room: rooms[room_index],
                text: stamp.to_text(plan.message_bytes),
                nonce: None,
            });
            unanswered.push_back(room_index);
            next += plan.step;
        }
        conn.flush().await.map_err(|reason| failed(&reason))?;
        let received = tokio::time::timeout(REPLY_TIMEOUT, conn.recv())
            .await
            .map_err(|_| failed(&"timed out waiting for results"))?;
        // Every frame this read brought, before refilling the window: the
        // others' messages come by the thousand, one timer per read is
        // enough, and a window refilled at once is one write.
        let mut next = Some(received);
        while let Some(received) = next {
            match received {
                Received::Frame(Incoming::Sent { seq, .. }) => {
                    if let Some(room_index) = unanswered.pop_front() {
                        let last = &mut done.last_seqs[room_index];
                        *last = (*last).max(seq);
                    }
                    done.stored += 1;
                    progress.inc();
                }
                Received::Frame(Incoming::Error(_)) => {
                    unanswered.pop_front();
                    done.refused += 1;
                }
                Received::Frame(_) => {}
                Received::Closed(reason) => return Err(failed(&reason)),
            }
            next = conn.recv_buffered();
        }
    }
    conn.close().await;
    Ok(done)
}
