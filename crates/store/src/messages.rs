//! The message log: every room's messages, numbered 1, 2, 3, ... with no
//! gap, the same on every node.
//!
//! Two tables (created by `whisper-migrations`): `room_logs` holds, per
//! room, the log's epoch and the last seq ever given; `messages` holds the
//! messages, keyed by `(room_id, seq)`. Every read of a page is a range of
//! that key, so its cost does not grow with the room's log.
//!
//! Seqs are allocated inside the transaction that stores the messages, by
//! one `UPDATE ... RETURNING` on the room's `room_logs` row: a transaction
//! that rolls back gives its seqs back, and a seq is never visible before
//! its message is. The row is locked until commit, so on PostgreSQL two
//! nodes appending to one room take turns; rooms are always locked in
//! ascending id order, so two batches spanning the same rooms cannot
//! deadlock.
//!
//! The SQL is written by hand, the same for both databases but for the
//! placeholders (see [`statement`]): the statements are few, and this is
//! the write path every chat message takes.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, QueryResult,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait, Value,
};
use thiserror::Error;
use whisper_protocol::RoomId;
use whisper_protocol::v2::{Epoch, Message, Seq, UserRef};

/// What can go wrong with the message log.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database failed.
    #[error("storage: {0}")]
    Storage(#[from] DbErr),
    /// The operating system gave no randomness for a new epoch.
    #[error("no randomness for a new epoch: {0}")]
    Randomness(#[source] getrandom::Error),
    /// A stored seq is negative: something other than this crate wrote the
    /// `messages` table.
    #[error("room {room} holds a negative seq {seq}")]
    NegativeSeq {
        /// The room whose log holds it.
        room: RoomId,
        /// The value read.
        seq: i64,
    },
    /// A page of messages, which the database returns as one JSON array,
    /// could not be read: something other than this crate's query wrote
    /// it.
    #[error("a page of messages could not be read: {0}")]
    MalformedPage(#[source] serde_json::Error),
}

/// One message of a page, as the page's JSON array holds it: seq, ts,
/// author id, username and name, and text (`null` once deleted).
type PageRow = (i64, i64, i64, String, String, Option<String>);

/// A message to store, as the chat server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The room it was sent to.
    pub room: RoomId,
    /// Its author's user id.
    pub user_id: i64,
    /// Its text. Without U+0000 on PostgreSQL, whose text cannot hold it
    /// (the whole batch fails); SQLite stores it.
    pub text: String,
    /// The sender's retry key, if it gave one: a second send with the same
    /// user, room and nonce within the window is not stored again.
    pub nonce: Option<String>,
    /// When the server received it, in Unix milliseconds: the server's
    /// clock, so every client shows the same time.
    pub ts: i64,
}

/// Where a [`NewMessage`] ended up in its room's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its seq, or the first copy's when it is a repeat.
    pub seq: Seq,
    /// Its time, or the first copy's when it is a repeat.
    pub ts: i64,
    /// Whether it repeated an earlier send's nonce and so was not stored
    /// again: the caller answers the sender with the first send's result
    /// and broadcasts nothing.
    pub repeated: bool,
}

/// What [`MessageStore::erase`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erased {
    /// The message's text is now `NULL` (or already was); `author` wrote
    /// it, for the caller's moderation record.
    Erased {
        /// The author's user id.
        author: i64,
    },
    /// No stored message has that seq in the room.
    NotFound,
    /// The caller's rule refused the author; nothing was written.
    Refused {
        /// The author's user id.
        author: i64,
    },
}

/// A room's log as a client needs it to decide whether its seqs still hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    /// The log's identity: seqs from another epoch name other messages.
    pub epoch: Epoch,
    /// The last seq ever given, `Seq(0)` before the first message. Clearing
    /// and retention never lower it.
    pub latest: Seq,
    /// The oldest message still stored, if any: recovery from further back
    /// is impossible.
    pub oldest: Option<Seq>,
}

/// Characters of an epoch: 10 characters of this 64-letter, URL-safe
/// alphabet are 60 random bits, plenty for a value compared only with the
/// same room's earlier epochs.
const EPOCH_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const EPOCH_CHARS: usize = 10;

/// Rows per multi-row `INSERT`: 6 parameters each keeps a statement under
/// 999 parameters, the smallest limit an SQLite build may have.
const INSERT_ROWS: usize = 150;

/// Messages per nonce lookup: 4 parameters each keeps a statement under
/// 999 parameters, and under SQLite's 500 terms of a compound SELECT.
const NONCE_LOOKUPS: usize = 240;

/// Seqs removed by one retention `DELETE`, so that on SQLite a large prune
/// (after the limit was lowered, say) holds the write lock for a few
/// milliseconds at a time rather than blocking every send until it ends.
const PRUNE_CHUNK: i64 = 5_000;

/// The stored message logs of every room.
///
/// Clones share the connection pool.
#[derive(Debug, Clone)]
pub struct MessageStore {
    db: DatabaseConnection,
}

/// A page of a log: below a seq, or above one.
#[derive(Debug, Clone, Copy)]
enum Page {
    Before(i64),
    After(i64),
}

/// One room's part of a batch being appended.
#[derive(Debug, Default)]
struct RoomPart {
    /// Batch indices to store, unless storage holds their nonce: the
    /// messages without a nonce and the first of each `(user, nonce)`.
    fresh: Vec<usize>,
    /// Batch indices whose `(user, nonce)` came earlier in the batch, with
    /// that earlier index.
    repeats: Vec<(usize, usize)>,
    /// The room's last seq once `fresh.len()` seqs were added to it.
    last: i64,
}

impl MessageStore {
    /// A store over a connection whose schema has been migrated.
    pub fn new(db: DatabaseConnection) -> Self {
        MessageStore { db }
    }

    /// Stores a batch of messages in one transaction, and says where each
    /// ended up, in batch order.
    ///
    /// One transaction for many messages is what makes storing every
    /// message affordable: the caller gathers the sends that arrive while
    /// the previous batch commits (group commit), and the cost of a commit
    /// (an fsync) is shared by all of them. Within a room, seqs follow the
    /// batch's order.
    ///
    /// A message with a nonce already stored for the same room and user no
    /// more than `nonce_window_ms` before the message's `ts`, or given
    /// earlier in this batch, is a retry: it is not stored again, and its
    /// [`Appended`] is the first copy's, with `repeated` set.
    ///
    /// Statements grow with the rooms in the batch, hardly with its
    /// messages: one `UPDATE` per room, one lookup of nonces per 240
    /// messages, one `INSERT` per 150. On SQLite each statement is also a
    /// round trip to sqlx's worker thread and back.
    pub async fn append(
        &self,
        batch: &[NewMessage],
        nonce_window_ms: i64,
    ) -> Result<Vec<Appended>, StoreError> {
        let mut rooms = split_by_room(batch);
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let txn = begin_write(&self.db).await?;
        // Seqs first, rooms ascending (the lock order). The row locks this
        // takes are what make the nonce lookup see every earlier commit to
        // these rooms: PostgreSQL reads committed data afresh at each
        // statement, and a concurrent append holds the lock until it
        // commits.
        for (&room, part) in &mut rooms {
            part.last = allocate(&txn, room, count(part.fresh.len())).await?;
        }
        let stored = stored_nonces(&txn, batch, &rooms, nonce_window_ms).await?;

        // Every index belongs to exactly one room, so every placeholder is
        // overwritten below.
        let placeholder = Appended {
            seq: Seq(0),
            ts: 0,
            repeated: false,
        };
        let mut results = vec![placeholder; batch.len()];
        let mut rows: Vec<(usize, i64)> = Vec::with_capacity(batch.len());
        for (&room, part) in &rooms {
            let mut next = part.last - count(part.fresh.len()) + 1;
            let mut given_back: i64 = 0;
            for &index in &part.fresh {
                results[index] = match stored.get(&index) {
                    Some(&(seq, ts)) => {
                        given_back += 1;
                        Appended {
                            seq: seq_of(room, seq)?,
                            ts,
                            repeated: true,
                        }
                    }
                    None => {
                        rows.push((index, next));
                        next += 1;
                        Appended {
                            seq: seq_of(room, next - 1)?,
                            ts: batch[index].ts,
                            repeated: false,
                        }
                    }
                };
            }
            if given_back > 0 {
                // Rare (a retry after a lost reply), so allocating first and
                // giving back costs less than a lookup before every
                // allocation.
                execute(
                    &txn,
                    "UPDATE room_logs SET last_seq = last_seq - ? WHERE room_id = ?",
                    [given_back.into(), room.0.into()],
                )
                .await?;
            }
            for &(index, first) in &part.repeats {
                results[index] = Appended {
                    repeated: true,
                    ..results[first]
                };
            }
        }
        for chunk in rows.chunks(INSERT_ROWS) {
            insert_messages(&txn, batch, chunk).await?;
        }
        txn.commit().await?;
        Ok(results)
    }

    /// The room's epoch, last seq and oldest stored seq. A room without a
    /// log gets one (with a fresh epoch), so a room has an epoch from the
    /// first time anyone asks.
    pub async fn log_state(&self, room: RoomId) -> Result<LogState, StoreError> {
        const SELECT: &str = "SELECT epoch, last_seq, \
            (SELECT MIN(seq) FROM messages WHERE room_id = ?) \
            FROM room_logs WHERE room_id = ?";
        let values = || [room.0.into(), room.0.into()];
        let mut row = query_one(&self.db, SELECT, values()).await?;
        if row.is_none() {
            // Read first, write only when missing: this runs at every join,
            // and on SQLite every write waits for the one writer.
            ensure_log(&self.db, room).await?;
            row = query_one(&self.db, SELECT, values()).await?;
        }
        let row = row.ok_or_else(|| missing_log(room))?;
        let oldest: Option<i64> = row.try_get_by_index(2)?;
        Ok(LogState {
            epoch: Epoch(row.try_get_by_index(0)?),
            latest: seq_of(room, row.try_get_by_index(1)?)?,
            oldest: oldest.map(|seq| seq_of(room, seq)).transpose()?,
        })
    }

    /// The room's `limit` latest messages, ascending by seq.
    pub async fn latest(&self, room: RoomId, limit: u32) -> Result<Vec<Message>, StoreError> {
        self.page(room, Page::Before(i64::MAX), limit).await
    }

    /// The `limit` messages just below `before`, ascending by seq: the page
    /// a client scrolling back asks for.
    pub async fn before(
        &self,
        room: RoomId,
        before: Seq,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.page(room, Page::Before(seq_param(before)), limit)
            .await
    }

    /// The `limit` messages just above `after`, ascending by seq: what a
    /// client that reconnects has missed.
    pub async fn after(
        &self,
        room: RoomId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.page(room, Page::After(seq_param(after)), limit).await
    }

    /// One page, read as a range of the `(room_id, seq)` key. Authors come
    /// from `users`; one deleted since reads as an empty username and name.
    async fn page(&self, room: RoomId, page: Page, limit: u32) -> Result<Vec<Message>, StoreError> {
        const ROWS: &str = "SELECT m.seq AS seq, m.ts AS ts, m.user_id AS user_id, \
            COALESCE(u.username, '') AS username, COALESCE(u.name, '') AS name, m.text AS text \
            FROM messages m LEFT JOIN users u ON u.id = m.user_id \
            WHERE m.room_id = ?";
        let (bound, rows) = match page {
            Page::Before(seq) => (seq, "AND m.seq < ? ORDER BY m.seq DESC LIMIT ?"),
            Page::After(seq) => (seq, "AND m.seq > ? ORDER BY m.seq ASC LIMIT ?"),
        };
        // The page comes back as one row holding a JSON array, rather than
        // a row per message: sqlx hands each SQLite row from its worker
        // thread to the caller on its own, and those hand-offs (36 thread
        // switches for a page of 50) were most of a page's cost.
        let sql = match self.db.get_database_backend() {
            DbBackend::Postgres => format!(
                "SELECT COALESCE(json_agg(json_build_array(seq, ts, user_id, username, name, text)), \
                 '[]')::text FROM ({ROWS} {rows}) page"
            ),
            _ => format!(
                "SELECT json_group_array(json_array(seq, ts, user_id, username, name, text)) \
                 FROM ({ROWS} {rows}) page"
            ),
        };
        let values = [room.0.into(), bound.into(), i64::from(limit).into()];
        let row = query_one(&self.db, &sql, values).await?;
        let json: String = match row {
            Some(row) => row.try_get_by_index(0)?,
            None => return Ok(Vec::new()),
        };
        let mut rows: Vec<PageRow> =
            serde_json::from_str(&json).map_err(StoreError::MalformedPage)?;
        // An aggregate's order is the database's choice.
        rows.sort_unstable_by_key(|row| row.0);
        rows.into_iter()
            .map(|(seq, ts, id, username, name, text)| {
                Ok(Message {
                    room,
                    seq: seq_of(room, seq)?,
                    ts,
                    user: UserRef { id, username, name },
                    text,
                })
            })
            .collect()
    }

    /// Erases the text of the room's message `seq` (`text` becomes `NULL`,
    /// the row and its seq stay) if `permitted` accepts its author: one
    /// read of the author, then one `UPDATE`. The caller decides who may
    /// erase what, so the rule lives in one place. No transaction is needed:
    /// a row's author never changes, and a row pruned between the two
    /// statements is reported as not found.
    pub async fn erase(
        &self,
        room: RoomId,
        seq: Seq,
        permitted: impl FnOnce(i64) -> bool + Send,
    ) -> Result<Erased, StoreError> {
        let key = || [room.0.into(), seq_param(seq).into()];
        let row = query_one(
            &self.db,
            "SELECT user_id FROM messages WHERE room_id = ? AND seq = ?",
            key(),
        )
        .await?;
        let Some(row) = row else {
            return Ok(Erased::NotFound);
        };
        let author: i64 = row.try_get_by_index(0)?;
        if !permitted(author) {
            return Ok(Erased::Refused { author });
        }
        let updated = execute(
            &self.db,
            "UPDATE messages SET text = NULL WHERE room_id = ? AND seq = ?",
            key(),
        )
        .await?;
        Ok(if updated == 0 {
            Erased::NotFound
        } else {
            Erased::Erased { author }
        })
    }

    /// Deletes the room's stored messages and gives its log a new epoch, so
    /// clients drop what they hold. Numbering goes on from the last seq
    /// given: a seq never names two messages in one epoch, nor in two.
    pub async fn clear(&self, room: RoomId) -> Result<Epoch, StoreError> {
        let epoch = new_epoch()?;
        let txn = begin_write(&self.db).await?;
        // The log's row first: on PostgreSQL it waits for appends under way,
        // whose messages the DELETE then sees.
        execute(
            &txn,
            "INSERT INTO room_logs (room_id, epoch, last_seq) VALUES (?, ?, 0) \
             ON CONFLICT (room_id) DO UPDATE SET epoch = excluded.epoch",
            [room.0.into(), epoch.0.clone().into()],
        )
        .await?;
        execute(
            &txn,
            "DELETE FROM messages WHERE room_id = ?",
            [room.0.into()],
        )
        .await?;
        txn.commit().await?;
        Ok(epoch)
    }

    /// Retention: deletes, in every room, the messages beyond the latest
    /// `max_per_room` and those older than `max_age_ms` before `now_ms`
    /// (0 means no limit, for either). Returns how many were deleted.
    ///
    /// Only the oldest messages go: by age, a room loses the longest run of
    /// its oldest messages that are all too old, so a message never
    /// outlives an older one (clocks of several nodes may disagree a
    /// little). Each room costs a few key lookups when nothing is due, and
    /// deletes go in chunks of 5,000 seqs, each its own transaction, so
    /// sends are never blocked for long.
    pub async fn prune(
        &self,
        max_per_room: u64,
        max_age_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        if max_per_room == 0 && max_age_ms <= 0 {
            return Ok(0);
        }
        let keep = i64::try_from(max_per_room).unwrap_or(i64::MAX);
        let logs = query_all(
            &self.db,
            "SELECT room_id, last_seq FROM room_logs ORDER BY room_id",
            [],
        )
        .await?;
        let mut deleted = 0;
        for log in logs {
            let room: i64 = log.try_get_by_index(0)?;
            let last_seq: i64 = log.try_get_by_index(1)?;
            if keep > 0 && last_seq > keep {
                deleted += self.delete_through(room, last_seq - keep).await?;
            }
            if max_age_ms > 0 {
                let cutoff = now_ms.saturating_sub(max_age_ms);
                deleted += self.delete_older(room, cutoff).await?;
            }
        }
        Ok(deleted)
    }

    /// Deletes the room's messages up to seq `through`, in chunks.
    async fn delete_through(&self, room: i64, through: i64) -> Result<u64, StoreError> {
        let oldest = query_one(
            &self.db,
            "SELECT MIN(seq) FROM messages WHERE room_id = ?",
            [room.into()],
        )
        .await?;
        let Some(mut from) = oldest
            .map(|row| row.try_get_by_index::<Option<i64>>(0))
            .transpose()?
            .flatten()
        else {
            return Ok(0);
        };
        let mut deleted = 0;
        while from <= through {
            let to = through.min(from.saturating_add(PRUNE_CHUNK - 1));
            deleted += execute(
                &self.db,
                "DELETE FROM messages WHERE room_id = ? AND seq <= ?",
                [room.into(), to.into()],
            )
            .await?;
            from = to + 1;
        }
        Ok(deleted)
    }

    /// Deletes the room's oldest messages while they are older than
    /// `cutoff`: the oldest one decides whether anything is read further.
    async fn delete_older(&self, room: i64, cutoff: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let mut limit: i64 = 1;
        loop {
            let oldest = query_all(
                &self.db,
                "SELECT seq, ts FROM messages WHERE room_id = ? ORDER BY seq LIMIT ?",
                [room.into(), limit.into()],
            )
            .await?;
            let mut through = None;
            for row in &oldest {
                let ts: i64 = row.try_get_by_index(1)?;
                if ts >= cutoff {
                    break;
                }
                through = Some(row.try_get_by_index::<i64>(0)?);
            }
            let Some(through) = through else {
                return Ok(deleted);
            };
            deleted += execute(
                &self.db,
                "DELETE FROM messages WHERE room_id = ? AND seq <= ?",
                [room.into(), through.into()],
            )
            .await?;
            // Something was due: the next look reads a whole chunk.
            limit = PRUNE_CHUNK;
        }
    }
}

/// Deletes a room's log inside `txn`, for [`RoomCatalog::delete`]: the log's
/// row first, so on PostgreSQL appends under way commit before the
/// messages are deleted.
///
/// [`RoomCatalog::delete`]: crate::RoomCatalog::delete
pub(crate) async fn delete_log(txn: &DatabaseTransaction, room: RoomId) -> Result<(), DbErr> {
    execute(
        txn,
        "DELETE FROM room_logs WHERE room_id = ?",
        [room.0.into()],
    )
    .await?;
    execute(
        txn,
        "DELETE FROM messages WHERE room_id = ?",
        [room.0.into()],
    )
    .await?;
    Ok(())
}

/// Begins a transaction that will write. On SQLite it takes the write lock
/// at once (`BEGIN IMMEDIATE`): a transaction that read first and then
/// wrote would fail with `SQLITE_BUSY` whenever another connection wrote in
/// between, instead of waiting its turn.
pub(crate) async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// The batch by room, rooms ascending, with the repeats of a nonce within
/// the batch set apart: the first of each `(user, nonce)` stands.
fn split_by_room(batch: &[NewMessage]) -> BTreeMap<RoomId, RoomPart> {
    let mut rooms: BTreeMap<RoomId, RoomPart> = BTreeMap::new();
    let mut first_of: HashMap<(RoomId, i64, &str), usize> = HashMap::new();
    for (index, message) in batch.iter().enumerate() {
        let part = rooms.entry(message.room).or_default();
        let Some(nonce) = message.nonce.as_deref() else {
            part.fresh.push(index);
            continue;
        };
        match first_of.entry((message.room, message.user_id, nonce)) {
            Entry::Occupied(first) => part.repeats.push((index, *first.get())),
            Entry::Vacant(slot) => {
                slot.insert(index);
                part.fresh.push(index);
            }
        }
    }
    rooms
}

/// Adds `n` seqs to the room's log and returns the last one: the batch's
/// seqs are `last - n + 1 ..= last`. Creates the log when missing.
async fn allocate(txn: &DatabaseTransaction, room: RoomId, n: i64) -> Result<i64, StoreError> {
    const UPDATE: &str =
        "UPDATE room_logs SET last_seq = last_seq + ? WHERE room_id = ? RETURNING last_seq";
    let mut row = query_one(txn, UPDATE, [n.into(), room.0.into()]).await?;
    if row.is_none() {
        ensure_log(txn, room).await?;
        row = query_one(txn, UPDATE, [n.into(), room.0.into()]).await?;
    }
    let row = row.ok_or_else(|| missing_log(room))?;
    Ok(row.try_get_by_index(0)?)
}

/// Creates the room's log, with a fresh epoch, unless it exists.
async fn ensure_log(db: &impl ConnectionTrait, room: RoomId) -> Result<(), StoreError> {
    let epoch = new_epoch()?;
    execute(
        db,
        "INSERT INTO room_logs (room_id, epoch, last_seq) VALUES (?, ?, 0) \
         ON CONFLICT (room_id) DO NOTHING",
        [room.0.into(), epoch.0.into()],
    )
    .await?;
    Ok(())
}

/// The error for a log that was just created and is not there: only a
/// concurrent delete of the room can cause it.
fn missing_log(room: RoomId) -> StoreError {
    StoreError::Storage(DbErr::RecordNotFound(format!(
        "room_logs row of room {room}"
    )))
}

/// The stored copies of the nonces the rooms' fresh messages carry, each
/// within its message's window: by batch index, the first copy's seq and
/// ts.
async fn stored_nonces(
    txn: &DatabaseTransaction,
    batch: &[NewMessage],
    rooms: &BTreeMap<RoomId, RoomPart>,
    nonce_window_ms: i64,
) -> Result<HashMap<usize, (i64, i64)>, StoreError> {
    let with_nonce: Vec<(usize, &str)> = rooms
        .values()
        .flat_map(|part| &part.fresh)
        .filter_map(|&index| Some((index, batch[index].nonce.as_deref()?)))
        .collect();
    let mut first_copies = HashMap::new();
    for chunk in with_nonce.chunks(NONCE_LOOKUPS) {
        // One SELECT per message, joined by UNION ALL, each an exact key of
        // the partial index: written as one OR, the lookups made SQLite
        // read the room's whole log instead.
        let mut sql = String::new();
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 4);
        let mut index_of = HashMap::with_capacity(chunk.len());
        for &(index, nonce) in chunk {
            let message = &batch[index];
            if !sql.is_empty() {
                sql.push_str(" UNION ALL ");
            }
            sql.push_str(
                "SELECT room_id, user_id, nonce, seq, ts FROM messages \
                 WHERE room_id = ? AND user_id = ? AND nonce = ? AND ts >= ? \
                 AND nonce IS NOT NULL",
            );
            values.extend([
                message.room.0.into(),
                message.user_id.into(),
                nonce.into(),
                message.ts.saturating_sub(nonce_window_ms).into(),
            ]);
            index_of.insert((message.room.0, message.user_id, nonce), index);
        }
        for row in query_all(txn, &sql, values).await? {
            let key: (i64, i64, String) = (
                row.try_get_by_index(0)?,
                row.try_get_by_index(1)?,
                row.try_get_by_index(2)?,
            );
            let Some(&index) = index_of.get(&(key.0, key.1, key.2.as_str())) else {
                continue;
            };
            let copy: (i64, i64) = (row.try_get_by_index(3)?, row.try_get_by_index(4)?);
            first_copies
                .entry(index)
                .and_modify(|first: &mut (i64, i64)| {
                    if copy.0 < first.0 {
                        *first = copy;
                    }
                })
                .or_insert(copy);
        }
    }
    Ok(first_copies)
}

/// Inserts `rows` (batch index and seq) with one multi-row `INSERT`.
async fn insert_messages(
    txn: &DatabaseTransaction,
    batch: &[NewMessage],
    rows: &[(usize, i64)],
) -> Result<(), DbErr> {
    let mut sql =
        String::from("INSERT INTO messages (room_id, seq, ts, user_id, text, nonce) VALUES ");
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * 6);
    for (i, &(index, seq)) in rows.iter().enumerate() {
        let message = &batch[index];
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?, ?)"
        });
        values.extend([
            message.room.0.into(),
            seq.into(),
            message.ts.into(),
            message.user_id.into(),
            message.text.clone().into(),
            message.nonce.clone().into(),
        ]);
    }
    execute(txn, &sql, values).await?;
    Ok(())
}

/// A stored seq as the protocol's type.
fn seq_of(room: RoomId, seq: i64) -> Result<Seq, StoreError> {
    u64::try_from(seq)
        .map(Seq)
        .map_err(|_| StoreError::NegativeSeq { room, seq })
}

/// A seq from a client as a column value: one beyond any stored seq is
/// as good as the largest.
fn seq_param(seq: Seq) -> i64 {
    i64::try_from(seq.0).unwrap_or(i64::MAX)
}

/// A batch's length as a count of seqs.
fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A new random epoch.
fn new_epoch() -> Result<Epoch, StoreError> {
    let mut bytes = [0u8; EPOCH_CHARS];
    getrandom::fill(&mut bytes).map_err(StoreError::Randomness)?;
    // 256 is a multiple of 64, so every character is equally likely.
    let epoch = bytes
        .iter()
        .map(|b| char::from(EPOCH_ALPHABET[usize::from(b % 64)]))
        .collect();
    Ok(Epoch(epoch))
}

/// A statement for `db` from `sql` written with `?` placeholders, bound to
/// `values` in order.
///
/// SQLite takes `?` as it is; PostgreSQL gets `$1`, `$2`, ... in their
/// place. Not `$N` for both, which sqlx accepts on SQLite too: it resolves
/// every named SQLite parameter with `sqlite3_bind_parameter_name`, a
/// linear search, so binding the 600 values of a 100-message `INSERT` took
/// 11% of an append's time; a bare `?` has no name to look up. The SQL of
/// this module holds no `?` other than placeholders.
fn statement<I>(db: &impl ConnectionTrait, sql: &str, values: I) -> Statement
where
    I: IntoIterator<Item = Value>,
{
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => numbered(sql),
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// `sql` with its `?` placeholders numbered, PostgreSQL's way.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + sql.len() / 4);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            let _ = write!(out, "${n}");
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) async fn execute<I>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: I,
) -> Result<u64, DbErr>
where
    I: IntoIterator<Item = Value>,
{
    Ok(db
        .execute_raw(statement(db, sql, values))
        .await?
        .rows_affected())
}

async fn query_one<I>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: I,
) -> Result<Option<QueryResult>, DbErr>
where
    I: IntoIterator<Item = Value>,
{
    db.query_one_raw(statement(db, sql, values)).await
}

pub(crate) async fn query_all<I>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: I,
) -> Result<Vec<QueryResult>, DbErr>
where
    I: IntoIterator<Item = Value>,
{
    db.query_all_raw(statement(db, sql, values)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CatalogError, RoomCatalog};

    const WINDOW: i64 = 600_000;
    const LOBBY: RoomId = RoomId(1);
    const KITCHEN: RoomId = RoomId(2);

    on_sqlite_and_postgres!(
        seqs_are_consecutive_per_room_across_batches,
        a_failed_batch_gives_its_seqs_back,
        a_nonce_repeats_within_its_window_only,
        pages_are_ranges_of_seqs_in_ascending_order,
        any_text_comes_back_unchanged,
        a_log_gets_its_epoch_when_first_asked,
        clearing_changes_the_epoch_and_keeps_numbering,
        pruning_by_count_keeps_the_latest,
        pruning_by_age_removes_only_the_oldest_run,
        deleting_a_room_deletes_its_log,
        erasing_keeps_the_seq_and_asks_the_caller_about_the_author,
    );

    fn message(room: RoomId, user_id: i64, text: &str, nonce: Option<&str>, ts: i64) -> NewMessage {
        NewMessage {
            room,
            user_id,
            text: text.to_owned(),
            nonce: nonce.map(str::to_owned),
            ts,
        }
    }

    /// `n` messages without nonce from user 1, texts "0", "1", ...
    fn plain(room: RoomId, n: usize) -> Vec<NewMessage> {
        (0..n)
            .map(|i| message(room, 1, &i.to_string(), None, 1_000))
            .collect()
    }

    fn seqs(appended: &[Appended]) -> Vec<u64> {
        appended.iter().map(|a| a.seq.0).collect()
    }

    fn page_seqs(messages: &[Message]) -> Vec<u64> {
        messages.iter().map(|m| m.seq.0).collect()
    }

    async fn add_user(db: &DatabaseConnection, username: &str, name: &str) -> i64 {
        let row = query_one(
            db,
            "INSERT INTO users (username, name, password_hash, date_joined) \
             VALUES (?, ?, 'x', 0) RETURNING id",
            [username.into(), name.into()],
        )
        .await
        .expect("insert a user")
        .expect("its id");
        row.try_get_by_index(0).expect("an id")
    }

    async fn seqs_are_consecutive_per_room_across_batches(db: DatabaseConnection) {
        let store = MessageStore::new(db);
        let first = [
            message(KITCHEN, 1, "a", None, 10),
            message(LOBBY, 1, "b", None, 11),
            message(KITCHEN, 2, "c", None, 12),
        ];
        let appended = store.append(&first, WINDOW).await.expect("append");
        assert_eq!(seqs(&appended), [1, 1, 2]);
        assert!(appended.iter().all(|a| !a.repeated));
        assert_eq!(appended[2].ts, 12);
        let second = [
            message(LOBBY, 1, "d", None, 13),
            message(KITCHEN, 1, "e", None, 14),
        ];
        assert_eq!(
            seqs(&store.append(&second, WINDOW).await.expect("append")),
            [2, 3]
        );
        assert_eq!(store.append(&[], WINDOW).await.expect("append"), []);
        let texts: Vec<_> = store
            .latest(KITCHEN, 10)
            .await
            .expect("latest")
            .into_iter()
            .map(|m| m.text.unwrap_or_default())
            .collect();
        assert_eq!(texts, ["a", "c", "e"]);
        assert_eq!(store.log_state(LOBBY).await.expect("state").latest, Seq(2));
    }

    async fn a_failed_batch_gives_its_seqs_back(db: DatabaseConnection) {
        let store = MessageStore::new(db.clone());
        store
            .append(&plain(LOBBY, 2), WINDOW)
            .await
            .expect("append");
        // A row in the way of the next batch's third message fails it.
        execute(
            &db,
            "INSERT INTO messages (room_id, seq, ts, user_id, text) VALUES (1, 5, 0, 1, 'x')",
            [],
        )
        .await
        .expect("insert");
        assert!(matches!(
            store.append(&plain(LOBBY, 3), WINDOW).await,
            Err(StoreError::Storage(_))
        ));
        assert_eq!(store.log_state(LOBBY).await.expect("state").latest, Seq(2));
        execute(&db, "DELETE FROM messages WHERE seq = 5", [])
            .await
            .expect("delete");
        let appended = store
            .append(&plain(LOBBY, 3), WINDOW)
            .await
            .expect("append");
        assert_eq!(seqs(&appended), [3, 4, 5]);
    }

    async fn a_nonce_repeats_within_its_window_only(db: DatabaseConnection) {
        let store = MessageStore::new(db);
        let t = 1_000_000;
        let sent = store
            .append(&[message(LOBBY, 1, "hi", Some("n1"), t)], WINDOW)
            .await
            .expect("append");
        assert_eq!(
            sent[0],
            Appended {
                seq: Seq(1),
                ts: t,
                repeated: false
            }
        );

        // Within the window: the first send's result, nothing stored. The
        // same nonce from another user, or in another room, is new; so is
        // a message after the repeat in the same batch, with no gap.
        let batch = [
            message(LOBBY, 1, "hi again", Some("n1"), t + WINDOW),
            message(LOBBY, 2, "hi", Some("n1"), t + 1),
            message(KITCHEN, 1, "hi", Some("n1"), t + 1),
            message(LOBBY, 1, "next", None, t + 2),
        ];
        let sent = store.append(&batch, WINDOW).await.expect("append");
        assert_eq!(
            sent[0],
            Appended {
                seq: Seq(1),
                ts: t,
                repeated: true
            }
        );
        assert_eq!(
            sent[1..]
                .iter()
                .map(|a| (a.seq.0, a.repeated))
                .collect::<Vec<_>>(),
            [(2, false), (1, false), (3, false)]
        );

        // Within one batch: the second copy is the first's.
        let batch = [
            message(LOBBY, 3, "x", Some("n2"), t + 3),
            message(LOBBY, 3, "x", Some("n2"), t + 4),
            message(LOBBY, 3, "y", Some("n3"), t + 5),
        ];
        let sent = store.append(&batch, WINDOW).await.expect("append");
        assert_eq!(
            sent[0],
            Appended {
                seq: Seq(4),
                ts: t + 3,
                repeated: false
            }
        );
        assert_eq!(
            sent[1],
            Appended {
                seq: Seq(4),
                ts: t + 3,
                repeated: true
            }
        );
        assert_eq!(sent[2].seq, Seq(5));

        // Past the window the nonce is free again: stored anew.
        let late = [message(LOBBY, 1, "hi", Some("n1"), t + WINDOW + 1)];
        let sent = store.append(&late, WINDOW).await.expect("append");
        assert_eq!(
            sent[0],
            Appended {
                seq: Seq(6),
                ts: t + WINDOW + 1,
                repeated: false
            }
        );
        // ...and the newest copy is now the one a retry finds.
        let retry = [message(LOBBY, 1, "hi", Some("n1"), t + WINDOW + 2)];
        let sent = store.append(&retry, WINDOW).await.expect("append");
        assert_eq!(sent[0].seq, Seq(6));
        assert!(sent[0].repeated);

        let stored = store.latest(LOBBY, 100).await.expect("latest");
        assert_eq!(page_seqs(&stored), [1, 2, 3, 4, 5, 6]);
        assert_eq!(store.log_state(LOBBY).await.expect("state").latest, Seq(6));
    }

    /// A page is read back through a JSON array: whatever a text holds
    /// must survive it, and so must the largest timestamps.
    async fn any_text_comes_back_unchanged(db: DatabaseConnection) {
        let store = MessageStore::new(db);
        let texts = [
            "\"quoted\" \\ back\\slash",
            "line\nbreak\ttab\r\u{1}\u{1f}",
            "<b>not html</b> & ]}",
            "😄 ÿ 漢字 \u{2028}",
            "",
        ];
        let batch: Vec<_> = texts
            .iter()
            .map(|text| message(LOBBY, 1, text, None, i64::MAX))
            .collect();
        store.append(&batch, WINDOW).await.expect("append");
        let page = store.latest(LOBBY, 10).await.expect("latest");
        let read: Vec<_> = page.iter().map(|m| m.text.as_deref()).collect();
        assert_eq!(read, texts.map(Some));
        assert!(page.iter().all(|m| m.ts == i64::MAX));
    }

    async fn pages_are_ranges_of_seqs_in_ascending_order(db: DatabaseConnection) {
        let ann = add_user(&db, "ann", "Ann Ó").await;
        let store = MessageStore::new(db.clone());
        let mut batch: Vec<_> = (1..=10)
            .map(|i| message(LOBBY, ann, &format!("m{i}"), None, i))
            .collect();
        // An author whose row is gone.
        batch.push(message(LOBBY, ann + 100, "ghost", None, 11));
        store.append(&batch, WINDOW).await.expect("append");
        store
            .append(&plain(KITCHEN, 3), WINDOW)
            .await
            .expect("append");

        let latest = store.latest(LOBBY, 3).await.expect("latest");
        assert_eq!(page_seqs(&latest), [9, 10, 11]);
        assert_eq!(
            latest[0],
            Message {
                room: LOBBY,
                seq: Seq(9),
                ts: 9,
                user: UserRef {
                    id: ann,
                    username: "ann".into(),
                    name: "Ann Ó".into()
                },
                text: Some("m9".into()),
            }
        );
        assert_eq!(
            latest[2].user,
            UserRef {
                id: ann + 100,
                username: String::new(),
                name: String::new()
            }
        );
        let before = store.before(LOBBY, Seq(5), 2).await.expect("before");
        assert_eq!(page_seqs(&before), [3, 4]);
        let after = store.after(LOBBY, Seq(7), 2).await.expect("after");
        assert_eq!(page_seqs(&after), [8, 9]);
        assert_eq!(
            page_seqs(&store.before(LOBBY, Seq(3), 50).await.expect("before")),
            [1, 2]
        );
        assert!(
            store
                .before(LOBBY, Seq(1), 50)
                .await
                .expect("before")
                .is_empty()
        );
        assert!(
            store
                .after(LOBBY, Seq(11), 50)
                .await
                .expect("after")
                .is_empty()
        );
        assert_eq!(
            page_seqs(&store.before(LOBBY, Seq(u64::MAX), 2).await.expect("before")),
            [10, 11]
        );
        assert!(
            store
                .after(LOBBY, Seq(u64::MAX), 2)
                .await
                .expect("after")
                .is_empty()
        );
        assert!(
            store
                .latest(RoomId(99), 50)
                .await
                .expect("latest")
                .is_empty()
        );

        // A deleted message keeps its seq and loses its text.
        execute(
            &db,
            "UPDATE messages SET text = NULL WHERE room_id = 1 AND seq = 2",
            [],
        )
        .await
        .expect("update");
        let page = store.after(LOBBY, Seq(1), 1).await.expect("after");
        assert_eq!((page[0].seq, page[0].text.as_deref()), (Seq(2), None));
    }

    async fn erasing_keeps_the_seq_and_asks_the_caller_about_the_author(db: DatabaseConnection) {
        let store = MessageStore::new(db);
        let batch = [
            message(LOBBY, 1, "a", None, 1),
            message(LOBBY, 2, "b", None, 2),
        ];
        store.append(&batch, WINDOW).await.expect("append");
        store
            .append(&plain(KITCHEN, 1), WINDOW)
            .await
            .expect("append");
        let authors = std::sync::Mutex::new(Vec::new());
        let only = |id: i64| {
            let authors = &authors;
            move |author: i64| {
                authors.lock().expect("not poisoned").push(author);
                author == id
            }
        };
        assert_eq!(
            store.erase(LOBBY, Seq(2), only(1)).await.expect("erase"),
            Erased::Refused { author: 2 }
        );
        for missing in [Seq(0), Seq(3), Seq(u64::MAX)] {
            assert_eq!(
                store.erase(LOBBY, missing, only(1)).await.expect("erase"),
                Erased::NotFound
            );
        }
        assert_eq!(*authors.lock().expect("not poisoned"), [2]);
        for _ in 0..2 {
            assert_eq!(
                store.erase(LOBBY, Seq(1), only(1)).await.expect("erase"),
                Erased::Erased { author: 1 }
            );
        }
        let texts: Vec<_> = store
            .latest(LOBBY, 10)
            .await
            .expect("latest")
            .into_iter()
            .map(|m| (m.seq.0, m.ts, m.text))
            .collect();
        assert_eq!(texts, [(1, 1, None), (2, 2, Some("b".to_owned()))]);
        assert_eq!(
            store.latest(KITCHEN, 10).await.expect("latest")[0].text,
            Some("0".to_owned())
        );
    }

    async fn a_log_gets_its_epoch_when_first_asked(db: DatabaseConnection) {
        let store = MessageStore::new(db);
        let state = store.log_state(LOBBY).await.expect("state");
        assert_eq!((state.latest, state.oldest), (Seq(0), None));
        assert_eq!(state.epoch.0.len(), EPOCH_CHARS);
        assert!(state.epoch.0.bytes().all(|b| EPOCH_ALPHABET.contains(&b)));
        assert_eq!(store.log_state(LOBBY).await.expect("state"), state);
        store
            .append(&plain(LOBBY, 2), WINDOW)
            .await
            .expect("append");
        let state_after = store.log_state(LOBBY).await.expect("state");
        assert_eq!(
            state_after,
            LogState {
                epoch: state.epoch,
                latest: Seq(2),
                oldest: Some(Seq(1))
            }
        );
        // A log created by a send has an epoch too, and another room's.
        store
            .append(&plain(KITCHEN, 1), WINDOW)
            .await
            .expect("append");
        let kitchen = store.log_state(KITCHEN).await.expect("state");
        assert_ne!(kitchen.epoch, state_after.epoch);
    }

    async fn clearing_changes_the_epoch_and_keeps_numbering(db: DatabaseConnection) {
        let store = MessageStore::new(db);
        store
            .append(&plain(LOBBY, 3), WINDOW)
            .await
            .expect("append");
        store
            .append(&plain(KITCHEN, 1), WINDOW)
            .await
            .expect("append");
        let before = store.log_state(LOBBY).await.expect("state");
        let epoch = store.clear(LOBBY).await.expect("clear");
        assert_ne!(epoch, before.epoch);
        assert_eq!(
            store.log_state(LOBBY).await.expect("state"),
            LogState {
                epoch: epoch.clone(),
                latest: Seq(3),
                oldest: None
            }
        );
        assert!(store.latest(LOBBY, 50).await.expect("latest").is_empty());
        let appended = store
            .append(&plain(LOBBY, 1), WINDOW)
            .await
            .expect("append");
        assert_eq!(seqs(&appended), [4]);
        assert_eq!(
            store.log_state(LOBBY).await.expect("state").oldest,
            Some(Seq(4))
        );
        // Other rooms keep theirs; clearing a room without a log makes one.
        assert_eq!(store.latest(KITCHEN, 50).await.expect("latest").len(), 1);
        let fresh = store.clear(RoomId(3)).await.expect("clear");
        assert_eq!(
            store.log_state(RoomId(3)).await.expect("state").epoch,
            fresh
        );
    }

    async fn pruning_by_count_keeps_the_latest(db: DatabaseConnection) {
        let store = MessageStore::new(db);
        // More than two PRUNE_CHUNKs to delete in one room.
        store
            .append(&plain(LOBBY, 11_000), WINDOW)
            .await
            .expect("append");
        store
            .append(&plain(KITCHEN, 5), WINDOW)
            .await
            .expect("append");
        let epoch = store.log_state(LOBBY).await.expect("state").epoch;
        assert_eq!(store.prune(10, 0, 0).await.expect("prune"), 10_990);
        assert_eq!(
            store.log_state(LOBBY).await.expect("state"),
            LogState {
                epoch,
                latest: Seq(11_000),
                oldest: Some(Seq(10_991))
            }
        );
        assert_eq!(store.latest(KITCHEN, 50).await.expect("latest").len(), 5);
        assert_eq!(store.prune(10, 0, 0).await.expect("prune"), 0);
        assert_eq!(store.prune(0, 0, 0).await.expect("prune"), 0);
        assert_eq!(store.prune(1, 0, 0).await.expect("prune"), 9 + 4);
        let appended = store
            .append(&plain(LOBBY, 1), WINDOW)
            .await
            .expect("append");
        assert_eq!(seqs(&appended), [11_001]);
    }

    async fn pruning_by_age_removes_only_the_oldest_run(db: DatabaseConnection) {
        let store = MessageStore::new(db);
        // Two nodes' clocks disagree: seq 4 is older than seq 3.
        let batch: Vec<_> = [100, 200, 900, 150, 950]
            .into_iter()
            .map(|ts| message(LOBBY, 1, "m", None, ts))
            .collect();
        store.append(&batch, WINDOW).await.expect("append");
        store
            .append(&[message(KITCHEN, 1, "k", None, 1_000)], WINDOW)
            .await
            .expect("append");
        // now 1000, max age 500: before 500 is too old.
        assert_eq!(store.prune(0, 500, 1_000).await.expect("prune"), 2);
        let left = store.latest(LOBBY, 50).await.expect("latest");
        assert_eq!(page_seqs(&left), [3, 4, 5]);
        assert_eq!(store.prune(0, 500, 1_000).await.expect("prune"), 0);
        // Later, everything in the lobby is too old; the kitchen is not.
        assert_eq!(store.prune(0, 500, 1_460).await.expect("prune"), 3);
        assert!(store.latest(LOBBY, 50).await.expect("latest").is_empty());
        assert_eq!(store.latest(KITCHEN, 50).await.expect("latest").len(), 1);
        assert_eq!(store.log_state(LOBBY).await.expect("state").latest, Seq(5));
    }

    async fn deleting_a_room_deletes_its_log(db: DatabaseConnection) {
        let rooms = RoomCatalog::new(db.clone());
        let store = MessageStore::new(db.clone());
        let lobby = rooms.create("Lobby", false).await.expect("create");
        let kitchen = rooms.create("Kitchen", false).await.expect("create");
        store
            .append(&plain(lobby.id, 3), WINDOW)
            .await
            .expect("append");
        store
            .append(&plain(kitchen.id, 2), WINDOW)
            .await
            .expect("append");
        let epoch = store.log_state(lobby.id).await.expect("state").epoch;

        rooms.delete(lobby.id).await.expect("delete");
        let logs = query_all(&db, "SELECT room_id FROM room_logs", [])
            .await
            .expect("select");
        let ids: Vec<i64> = logs
            .iter()
            .map(|r| r.try_get_by_index(0).expect("id"))
            .collect();
        assert_eq!(ids, [kitchen.id.0]);
        let left = query_one(
            &db,
            "SELECT COUNT(*) FROM messages WHERE room_id = ?",
            [lobby.id.0.into()],
        )
        .await
        .expect("count")
        .expect("a row");
        assert_eq!(left.try_get_by_index::<i64>(0).expect("count"), 0);
        assert_ne!(store.log_state(lobby.id).await.expect("state").epoch, epoch);

        // A room that does not exist: refused, and nothing else is touched.
        assert!(matches!(
            rooms.delete(lobby.id).await,
            Err(CatalogError::NoSuchRoom(_))
        ));
        assert_eq!(store.latest(kitchen.id, 50).await.expect("latest").len(), 2);
    }

    /// Two nodes append to the same rooms at once, over connections of
    /// their own and in opposite room orders: every seq is given once, with
    /// no gap, no deadlock, and a nonce both send is stored once.
    #[tokio::test]
    async fn concurrent_appends_on_postgres_share_one_numbering() {
        const BATCHES: usize = 40;
        const PER_BATCH: usize = 5;
        let url = whisper_testkit::postgres_database();
        whisper_migrations::connect_migrated(&url)
            .await
            .expect("a migrated PostgreSQL database");
        let mut nodes = Vec::new();
        for node in 0..2_i64 {
            let db = sea_orm::Database::connect(&url).await.expect("connect");
            let store = MessageStore::new(db);
            nodes.push(tokio::spawn(async move {
                let mut given = Vec::new();
                for b in 0..BATCHES {
                    let mut batch = Vec::new();
                    for i in 0..PER_BATCH {
                        // Node 0 lists the kitchen first, node 1 the lobby.
                        let room = if (i + usize::from(node == 1)) % 2 == 0 {
                            KITCHEN
                        } else {
                            LOBBY
                        };
                        batch.push(message(room, node, "m", None, 0));
                    }
                    // Both nodes send the same retry of user 7 in batch 0.
                    let nonce = format!("n{b}");
                    batch.push(message(LOBBY, 7, "once", Some(&nonce), 0));
                    let appended = store.append(&batch, WINDOW).await.expect("append");
                    given.extend(batch.iter().zip(appended).map(|(m, a)| (m.room, a)));
                }
                given
            }));
        }
        let mut by_room: BTreeMap<RoomId, Vec<u64>> = BTreeMap::new();
        let mut retries: HashMap<u64, usize> = HashMap::new();
        for node in nodes {
            for (room, appended) in node.await.expect("the task ends") {
                if appended.repeated {
                    *retries.entry(appended.seq.0).or_default() += 1;
                } else {
                    by_room.entry(room).or_default().push(appended.seq.0);
                }
            }
        }
        for (room, mut seqs) in by_room {
            seqs.sort_unstable();
            let n = u64::try_from(seqs.len()).expect("a count");
            assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "room {room}");
        }
        // Each of the BATCHES nonces: stored by one node, a repeat for the
        // other.
        assert_eq!(retries.len(), BATCHES);
        assert!(retries.values().all(|&n| n == 1));
    }

    #[test]
    fn postgres_placeholders_are_numbered_in_order() {
        assert_eq!(
            numbered("UPDATE t SET a = a + ? WHERE b = ? AND c = ?"),
            "UPDATE t SET a = a + $1 WHERE b = $2 AND c = $3"
        );
        assert_eq!(numbered("SELECT 1"), "SELECT 1");
    }

    /// Storage per message on SQLite, the goal being at most twice the text
    /// plus 100 bytes: 20,000 messages of 100 bytes, each with a 16-byte
    /// nonce (as v2 clients send), in a file, vacuumed. Stored 2,000 to a
    /// batch, since a commit to a file waits for the disk.
    #[tokio::test]
    async fn a_stored_message_costs_at_most_twice_its_text_plus_100_bytes_on_sqlite() {
        const MESSAGES: usize = 20_000;
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = whisper_migrations::connect_migrated(&url)
            .await
            .expect("a migrated file");
        let store = MessageStore::new(db.clone());
        let text = "x".repeat(100);
        let before = file_bytes(&db).await;
        for batch in 0..MESSAGES / 2_000 {
            let batch: Vec<_> = (0..2_000_i64)
                .map(|i| {
                    let nonce = format!("{batch:08}{i:08}");
                    message(RoomId(i % 10), 1, &text, Some(&nonce), 0)
                })
                .collect();
            store.append(&batch, WINDOW).await.expect("append");
        }
        execute(&db, "VACUUM", []).await.expect("vacuum");
        let per_message =
            (file_bytes(&db).await - before) / i64::try_from(MESSAGES).expect("small");
        assert!(
            per_message <= 2 * 100 + 100,
            "{per_message} bytes per message"
        );
    }

    async fn file_bytes(db: &DatabaseConnection) -> i64 {
        let row = query_one(
            db,
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
        )
        .await
        .expect("pragma")
        .expect("a row");
        row.try_get_by_index(0).expect("a size")
    }
}
