//! Where rooms' messages are kept (protocol v2): the [`MessageLog`] a host
//! provides, and [`MemoryLog`], one kept in memory.
//!
//! Every message is numbered in its room (1, 2, 3, ... with no gap) by the
//! log when it stores it; the rules publish a message only once the log has
//! it, so a seq a client sees always names a stored message.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use whisper_protocol::RoomId;
use whisper_protocol::v2::{Epoch, Message, Seq, UserRef};

/// How long a `send`'s nonce is remembered: a retry with the same nonce
/// within this window gets the first send's result and is not broadcast
/// again.
pub const NONCE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// A message to store: what the sender said, in which room, and when the
/// server took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The room.
    pub room: RoomId,
    /// The author.
    pub user: UserRef,
    /// The text.
    pub text: String,
    /// The sender's nonce, for a safe retry.
    pub nonce: Option<String>,
    /// When the server took the message, in Unix milliseconds.
    pub ts: i64,
}

/// Where a stored [`Draft`] landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The message's seq in its room.
    pub seq: Seq,
    /// Its time, as stored.
    pub ts: i64,
    /// Whether the draft repeated a nonce seen within [`NONCE_WINDOW`]:
    /// then `seq` and `ts` are the first message's and nothing was stored.
    pub repeated: bool,
}

/// A request to erase a stored message's text, naming who asks so a log
/// can record it (a moderation record) as well as check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erase {
    /// The room the message is in.
    pub room: RoomId,
    /// The message's seq.
    pub seq: Seq,
    /// Who asks.
    pub by: UserRef,
    /// Whether the asker may erase anyone's message (staff), not only
    /// their own.
    pub any_author: bool,
}

impl Erase {
    /// Whether the asker may erase a message written by `author`: their
    /// own, or anyone's with [`any_author`](Self::any_author). The one
    /// place the rule lives; every [`MessageLog`] asks it.
    pub fn permits(&self, author: i64) -> bool {
        self.any_author || author == self.by.id
    }
}

/// What came of an [`Erase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    /// The text is erased (or already was: erasing is idempotent); the
    /// message was written by `author`.
    Erased {
        /// The message's author's id.
        author: i64,
    },
    /// No stored message has that seq in the room: never given, or
    /// removed by retention.
    NotFound,
    /// The message is someone else's and the asker may not erase it;
    /// nothing changed.
    NotAuthor,
}

/// A room's log at a glance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    /// The log's identity; a client compares it before trusting seqs.
    pub epoch: Epoch,
    /// The last seq ever given in the room (0 before the first message).
    pub latest: Seq,
    /// The oldest seq still kept, if any message is.
    pub oldest: Option<Seq>,
}

/// Where the rules store messages and read them back: a database table (the
/// server's), memory ([`MemoryLog`]), anything durable enough for the host.
///
/// Appends come in batches: the rules gather the sends that arrive while the
/// previous batch is being stored and hand them over together, so one
/// database transaction carries many messages.
pub trait MessageLog: Send + Sync + 'static {
    /// Why the log failed; the client hears `UNAVAILABLE` and the error is
    /// logged with its sources.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Stores the drafts in order, giving each room's messages consecutive
    /// seqs after the room's latest, all or none. A draft whose nonce the
    /// same user used in the same room within [`NONCE_WINDOW`] (before, or
    /// earlier in the batch) is not stored: its [`Appended`] is the first
    /// one's, marked `repeated`. Returns one [`Appended`] per draft.
    fn append(
        &self,
        batch: &[Draft],
    ) -> impl Future<Output = Result<Vec<Appended>, Self::Error>> + Send;

    /// The room's epoch and range of seqs; gives the room an epoch if it had
    /// no log yet.
    fn state(&self, room: RoomId) -> impl Future<Output = Result<LogState, Self::Error>> + Send;

    /// Up to `limit` of the room's latest messages, in ascending seq.
    fn latest(
        &self,
        room: RoomId,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Message>, Self::Error>> + Send;

    /// Up to `limit` messages just before `before`, in ascending seq.
    fn before(
        &self,
        room: RoomId,
        before: Seq,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Message>, Self::Error>> + Send;

    /// Up to `limit` messages just after `after`, in ascending seq.
    fn after(
        &self,
        room: RoomId,
        after: Seq,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Message>, Self::Error>> + Send;
    /// Erases the text of the message `erase` names, keeping its seq (pages
    /// then return it with `text: None`), when
    /// [`Erase::permits`] its author; stored before it returns.
    fn erase(&self, erase: &Erase) -> impl Future<Output = Result<Erasure, Self::Error>> + Send;
}

/// A log kept in memory: for hosts without a database, and for tests.
///
/// Each room keeps its latest `max_per_room` messages; a restart loses them
/// all, so every `MemoryLog` starts new epochs, and a client that recovers
/// after a restart is told its seqs no longer hold.
#[derive(Debug)]
pub struct MemoryLog {
    max_per_room: usize,
    rooms: Mutex<HashMap<RoomId, RoomLog>>,
}

#[derive(Debug)]
struct RoomLog {
    epoch: Epoch,
    latest: u64,
    /// Ascending seqs, the oldest dropped first.
    messages: VecDeque<StoredMessage>,
    /// (user, nonce) of kept messages sent with a nonce.
    nonces: HashMap<(i64, String), Appended>,
}

#[derive(Debug)]
struct StoredMessage {
    message: Message,
    nonce: Option<String>,
}

impl MemoryLog {
    /// A log keeping each room's latest `max_per_room` messages.
    pub fn new(max_per_room: usize) -> Self {
        MemoryLog {
            max_per_room: max_per_room.max(1),
            rooms: Mutex::new(HashMap::new()),
        }
    }

    fn with_room<T>(&self, room: RoomId, work: impl FnOnce(&mut RoomLog) -> T) -> T {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        work(rooms.entry(room).or_insert_with(RoomLog::new))
    }

    fn page(
        &self,
        room: RoomId,
        limit: u32,
        pick: impl Fn(&Message) -> bool,
        from_end: bool,
    ) -> Vec<Message> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.with_room(room, |log| {
            let picked = log
                .messages
                .iter()
                .map(|stored| &stored.message)
                .filter(|message| pick(message));
            let mut page: Vec<Message> = if from_end {
                picked.rev().take(limit).cloned().collect()
            } else {
                picked.take(limit).cloned().collect()
            };
            if from_end {
                page.reverse();
            }
            page
        })
    }
}

impl Default for MemoryLog {
    /// Keeps 10,000 messages per room, the server's default retention.
    fn default() -> Self {
        MemoryLog::new(10_000)
    }
}

impl RoomLog {
    fn new() -> Self {
        RoomLog {
            epoch: new_epoch(),
            latest: 0,
            messages: VecDeque::new(),
            nonces: HashMap::new(),
        }
    }

    fn append(&mut self, draft: &Draft, max_per_room: usize) -> Appended {
        let window = i64::try_from(NONCE_WINDOW.as_millis()).unwrap_or(i64::MAX);
        if let Some(nonce) = &draft.nonce {
            let key = (draft.user.id, nonce.clone());
            if let Some(first) = self.nonces.get(&key)
                && draft.ts.saturating_sub(first.ts) <= window
            {
                return Appended {
                    repeated: true,
                    ..*first
                };
            }
        }
        self.latest += 1;
        let appended = Appended {
            seq: Seq(self.latest),
            ts: draft.ts,
            repeated: false,
        };
        if let Some(nonce) = &draft.nonce {
            self.nonces.insert((draft.user.id, nonce.clone()), appended);
        }
        self.messages.push_back(StoredMessage {
            message: Message {
                room: draft.room,
                seq: appended.seq,
                ts: draft.ts,
                user: draft.user.clone(),
                text: Some(draft.text.clone()),
            },
            nonce: draft.nonce.clone(),
        });
        while self.messages.len() > max_per_room {
            if let Some(dropped) = self.messages.pop_front()
                && let Some(nonce) = dropped.nonce
            {
                self.nonces.remove(&(dropped.message.user.id, nonce));
            }
        }
        appended
    }
}

impl MessageLog for MemoryLog {
    type Error = Infallible;

    async fn append(&self, batch: &[Draft]) -> Result<Vec<Appended>, Infallible> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let appended = batch
            .iter()
            .map(|draft| {
                rooms
                    .entry(draft.room)
                    .or_insert_with(RoomLog::new)
                    .append(draft, self.max_per_room)
            })
            .collect();
        Ok(appended)
    }

    async fn state(&self, room: RoomId) -> Result<LogState, Infallible> {
        Ok(self.with_room(room, |log| LogState {
            epoch: log.epoch.clone(),
            latest: Seq(log.latest),
            oldest: log.messages.front().map(|stored| stored.message.seq),
        }))
    }

    async fn latest(&self, room: RoomId, limit: u32) -> Result<Vec<Message>, Infallible> {
        Ok(self.page(room, limit, |_| true, true))
    }

    async fn before(
        &self,
        room: RoomId,
        before: Seq,
        limit: u32,
    ) -> Result<Vec<Message>, Infallible> {
        Ok(self.page(room, limit, |message| message.seq < before, true))
    }

    async fn after(
        &self,
        room: RoomId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<Message>, Infallible> {
        Ok(self.page(room, limit, |message| message.seq > after, false))
    }
    async fn erase(&self, erase: &Erase) -> Result<Erasure, Infallible> {
        Ok(self.with_room(erase.room, |log| {
            let Ok(index) = log
                .messages
                .binary_search_by_key(&erase.seq, |stored| stored.message.seq)
            else {
                return Erasure::NotFound;
            };
            let message = &mut log.messages[index].message;
            if !erase.permits(message.user.id) {
                return Erasure::NotAuthor;
            }
            message.text = None;
            Erasure::Erased {
                author: message.user.id,
            }
        }))
    }
}

/// A fresh epoch: the time and a per-process counter, so two logs made in
/// the same process, or by two runs, never share one.
fn new_epoch() -> Epoch {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let made = MADE.fetch_add(1, Ordering::Relaxed);
    Epoch(format!("m{:x}", (nanos as u64) ^ made.rotate_right(16)))
}

/// The time now in Unix milliseconds, as messages and events carry it.
pub(crate) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(room: i64, text: &str, nonce: Option<&str>, ts: i64) -> Draft {
        Draft {
            room: RoomId(room),
            user: UserRef {
                id: 1,
                username: "ann".into(),
                name: "Ann".into(),
            },
            text: text.into(),
            nonce: nonce.map(Into::into),
            ts,
        }
    }

    fn seqs(messages: &[Message]) -> Vec<u64> {
        messages.iter().map(|message| message.seq.0).collect()
    }

    #[tokio::test]
    async fn rooms_are_numbered_apart_and_paged_in_ascending_order() {
        let log = MemoryLog::new(100);
        let batch: Vec<Draft> = (0..5)
            .map(|n| draft(1 + n % 2, &format!("m{n}"), None, 10))
            .collect();
        let appended = log.append(&batch).await.unwrap();
        let numbers: Vec<u64> = appended.iter().map(|a| a.seq.0).collect();
        assert_eq!(numbers, [1, 1, 2, 2, 3]);
        assert_eq!(seqs(&log.latest(RoomId(1), 2).await.unwrap()), [2, 3]);
        assert_eq!(
            seqs(&log.before(RoomId(1), Seq(3), 5).await.unwrap()),
            [1, 2]
        );
        assert_eq!(seqs(&log.after(RoomId(1), Seq(1), 1).await.unwrap()), [2]);
        let state = log.state(RoomId(1)).await.unwrap();
        assert_eq!((state.latest, state.oldest), (Seq(3), Some(Seq(1))));
        assert_ne!(state.epoch, log.state(RoomId(2)).await.unwrap().epoch);
    }

    #[tokio::test]
    async fn a_nonce_repeated_within_the_window_is_not_stored_again() {
        let log = MemoryLog::new(100);
        let first = log
            .append(&[draft(1, "a", Some("n"), 1_000)])
            .await
            .unwrap();
        let window = i64::try_from(NONCE_WINDOW.as_millis()).unwrap();
        let again = log
            .append(&[
                draft(1, "a", Some("n"), 2_000),
                draft(1, "a", Some("n"), 1_000 + window + 1),
            ])
            .await
            .unwrap();
        assert_eq!(
            again[0],
            Appended {
                repeated: true,
                ..first[0]
            }
        );
        assert_eq!((again[1].seq, again[1].repeated), (Seq(2), false));
    }

    #[tokio::test]
    async fn erasing_keeps_the_seq_and_follows_the_rule() {
        let log = MemoryLog::new(100);
        log.append(&[draft(1, "a", None, 1), draft(1, "b", None, 1)])
            .await
            .unwrap();
        let by = |id: i64, any_author: bool, seq: u64| Erase {
            room: RoomId(1),
            seq: Seq(seq),
            by: UserRef {
                id,
                username: "x".into(),
                name: String::new(),
            },
            any_author,
        };
        assert_eq!(log.erase(&by(2, false, 1)).await, Ok(Erasure::NotAuthor));
        assert_eq!(log.erase(&by(1, false, 3)).await, Ok(Erasure::NotFound));
        assert_eq!(log.erase(&by(1, false, 0)).await, Ok(Erasure::NotFound));
        let erased = Ok(Erasure::Erased { author: 1 });
        assert_eq!(log.erase(&by(1, false, 1)).await, erased);
        assert_eq!(log.erase(&by(2, true, 2)).await, erased);
        assert_eq!(log.erase(&by(1, false, 2)).await, erased);
        let texts: Vec<_> = log
            .latest(RoomId(1), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|message| (message.seq.0, message.text))
            .collect();
        assert_eq!(texts, [(1, None), (2, None)]);
    }

    #[tokio::test]
    async fn old_messages_go_but_numbering_goes_on() {
        let log = MemoryLog::new(2);
        for n in 0..5 {
            log.append(&[draft(1, &format!("m{n}"), None, 1)])
                .await
                .unwrap();
        }
        let state = log.state(RoomId(1)).await.unwrap();
        assert_eq!((state.latest, state.oldest), (Seq(5), Some(Seq(4))));
        assert_eq!(seqs(&log.latest(RoomId(1), 10).await.unwrap()), [4, 5]);
    }
}
