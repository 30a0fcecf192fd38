//! Storing messages in batches, then publishing them in seq order.
//!
//! Every `send`, v1 or v2, becomes a [`Draft`] handed to the host's
//! [`MessageLog`]. While one batch is being stored, the sends that arrive
//! queue up; they go together in the next batch (group commit), so storing
//! costs one transaction per batch rather than one per message; and while a
//! batch is stored, the one before it is published. One task
//! per [`Chat`] writes the batches, started when the first send arrives and
//! ending when the queue is empty: messages of a node are therefore
//! published in the order the log numbered them, and only once stored.
//!
//! The task is spawned on the Tokio runtime, rather than run by whichever
//! sender happens to come first, so a socket that closes mid-batch cannot
//! take the other senders' messages with it.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;

use tokio::sync::oneshot;
use whisper_protocol::v2::{self, Message};
use whisper_protocol::{ErrorCode, encode};
use whisper_rooms::{ChannelLayer, ChannelName, GroupName, Payload};

use crate::log::{Appended, Draft, MessageLog};
use crate::{Chat, RoomDirectory, room_event};

/// Most drafts stored in one batch, so one batch's transaction stays short
/// and the first senders of a burst are answered without waiting for the
/// last.
const MAX_BATCH: usize = 512;

/// What the sender hears: where the message landed and whether it reached
/// the room, or why it was not stored.
pub(crate) type Outcome = Result<Sent, ErrorCode>;

/// A stored message, as its sender hears of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) appended: Appended,
    /// Whether every broadcast of it succeeded (a repeat is not broadcast
    /// and counts as published). A v1 sender, whose only answer is the
    /// room's echo, is told `UNAVAILABLE` when it did not.
    pub(crate) published: bool,
}

/// A draft waiting for the next batch.
struct Submission {
    draft: Draft,
    /// The sending socket's channel, when it gets its own copy (with its
    /// nonce) rather than the room's.
    copy_to: Option<ChannelName>,
    done: oneshot::Sender<Outcome>,
}

/// Where the answer to a submission goes: the sender's own copy (if any)
/// and the sender's outcome.
type Route = (Option<ChannelName>, oneshot::Sender<Outcome>);

/// A batch the log has stored, waiting to be published.
struct StoredBatch {
    drafts: Vec<Draft>,
    routes: Vec<Route>,
    appended: Vec<Appended>,
}

/// The queue of drafts, and whether a task is writing it.
#[derive(Debug, Default)]
pub(crate) struct LogWriter {
    state: Mutex<WriterState>,
}

#[derive(Default)]
struct WriterState {
    queue: Vec<Submission>,
    writing: bool,
}

impl std::fmt::Debug for WriterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterState")
            .field("queued", &self.queue.len())
            .field("writing", &self.writing)
            .finish()
    }
}

impl LogWriter {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<L: ChannelLayer, D: RoomDirectory, M: MessageLog> Chat<L, D, M> {
    /// Queues a draft for storing and publication; the receiver gets the
    /// outcome. `copy_to` names the sending socket's channel when it should
    /// get the copy carrying its nonce.
    pub(crate) fn submit(
        self: &Arc<Self>,
        draft: Draft,
        copy_to: Option<ChannelName>,
    ) -> oneshot::Receiver<Outcome> {
        let (done, outcome) = oneshot::channel();
        let start = {
            let mut state = self.writer.lock();
            state.queue.push(Submission {
                draft,
                copy_to,
                done,
            });
            !std::mem::replace(&mut state.writing, true)
        };
        if start {
            tokio::spawn(self.clone().write_batches());
        }
        outcome
    }

    /// Writes batches until the queue is empty, two at a time: while one
    /// batch is published, the next is stored. Storing waits on the
    /// database and publishing on the sockets' inboxes, so overlapping them
    /// shortens each round by the shorter of the two (on SQLite with 100
    /// members, 2.4 ms and 1.4 ms a batch); publications stay in batch
    /// order, as one batch is published only once the previous one has
    /// been.
    ///
    /// A batch whose log or layer panics is given up (its senders hear
    /// `UNAVAILABLE`, as their answers are dropped) and the task goes on
    /// with the next: one bad batch must not stop every later send.
    async fn write_batches(self: Arc<Self>) {
        let mut stored: Option<StoredBatch> = None;
        loop {
            let next: Option<Vec<Submission>> = {
                let mut state = self.writer.lock();
                if state.queue.is_empty() && stored.is_none() {
                    state.writing = false;
                    return;
                }
                let take = state.queue.len().min(MAX_BATCH);
                (take > 0).then(|| state.queue.drain(..take).collect())
            };
            let publish = async {
                if let Some(batch) = stored.take() {
                    let published = AssertUnwindSafe(self.publish_batch(batch))
                        .catch_unwind()
                        .await;
                    if published.is_err() {
                        tracing::error!("publishing a batch of messages panicked");
                    }
                }
            };
            let store = async {
                let batch = next?;
                let outcome = AssertUnwindSafe(self.store_batch(batch))
                    .catch_unwind()
                    .await;
                outcome.unwrap_or_else(|_| {
                    tracing::error!("storing a batch of messages panicked");
                    None
                })
            };
            let ((), just_stored) = futures_util::future::join(publish, store).await;
            stored = just_stored;
        }
    }

    /// Stores one batch; `None` (its senders answered with `UNAVAILABLE`)
    /// when the log failed.
    async fn store_batch(&self, batch: Vec<Submission>) -> Option<StoredBatch> {
        let (drafts, routes): (Vec<Draft>, Vec<_>) = batch
            .into_iter()
            .map(|submission| (submission.draft, (submission.copy_to, submission.done)))
            .unzip();
        match self.log.append(&drafts).await {
            Ok(appended) if appended.len() == drafts.len() => Some(StoredBatch {
                drafts,
                routes,
                appended,
            }),
            Ok(appended) => {
                tracing::error!(
                    drafts = drafts.len(),
                    appended = appended.len(),
                    "message log answered a batch with the wrong count"
                );
                fail(routes);
                None
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "storing messages failed"
                );
                fail(routes);
                None
            }
        }
    }

    /// Publishes a stored batch in order, then answers the senders: an
    /// acknowledged message has been published too. A repeat is not
    /// broadcast again, and counts as published.
    ///
    /// The batch's broadcasts are all in flight at once, started in seq
    /// order (which [`ChannelLayer::group_send`] keeps): over Redis they go
    /// as one pipeline, where awaiting each in turn cost a round trip per
    /// message.
    async fn publish_batch(&self, batch: StoredBatch) {
        let StoredBatch {
            drafts,
            routes,
            appended,
        } = batch;
        let mut answers = Vec::with_capacity(drafts.len());
        let mut broadcasts = Vec::with_capacity(drafts.len());
        for ((draft, (copy_to, done)), appended) in drafts.into_iter().zip(routes).zip(appended) {
            if appended.repeated {
                answers.push((done, appended, true, None));
                continue;
            }
            let room = draft.room;
            let (own_copy, event) = frames(draft, appended);
            let own_copy_sent = match (copy_to, own_copy) {
                (Some(channel), Some(own_copy)) => self.send_own_copy(channel, own_copy).await,
                _ => true,
            };
            answers.push((done, appended, own_copy_sent, Some(broadcasts.len())));
            broadcasts.push((GroupName::for_room(room), event));
        }
        let broadcast = futures_util::future::join_all(broadcasts.into_iter().map(
            |(group, event)| async move {
                let sent = self.layer.group_send(&group, event).await;
                sent.map_err(|error| self.layer_failed("group_send", &error))
                    .is_ok()
            },
        ))
        .await;
        for (done, appended, own_copy_sent, index) in answers {
            let published = own_copy_sent && index.is_none_or(|index| broadcast[index]);
            // The sender may be gone; its message is stored either way.
            let _ = done.send(Ok(Sent {
                appended,
                published,
            }));
        }
    }

    /// Sends the sender's socket its copy, with the nonce; it goes before
    /// the room's copy, which that socket drops by its seq. A failure loses
    /// no stored message (v2 clients can read it back): it is counted, and
    /// the sender told.
    async fn send_own_copy(&self, channel: ChannelName, own_copy: Payload) -> bool {
        self.layer
            .send(channel, own_copy)
            .await
            .map_err(|error| self.layer_failed("send", &error))
            .is_ok()
    }
}

/// A stored message's frames: the sender's own copy (v2, with its nonce,
/// when it gave one) and the room's event (both frames in one payload).
fn frames(draft: Draft, appended: Appended) -> (Option<Payload>, Payload) {
    let Draft {
        room,
        user,
        text,
        nonce,
        ..
    } = draft;
    let v1_frame = encode::message(room, &user.username, &text);
    let message = Message {
        room,
        seq: appended.seq,
        ts: appended.ts,
        user,
        text: Some(text),
    };
    let own_copy = nonce.map(|nonce| Payload::from(v2::encode::message(&message, Some(&nonce))));
    let event = room_event(v2::encode::message(&message, None), &v1_frame);
    (own_copy, event)
}

/// Answers every sender of a batch that could not be stored.
fn fail(routes: Vec<Route>) {
    for (_, done) in routes {
        let _ = done.send(Err(ErrorCode::Unavailable));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use whisper_protocol::RoomId;
    use whisper_protocol::v2::{EventHead, Seq, peek_event};

    use super::*;
    use crate::log::{Erase, Erasure, LogState, MemoryLog};
    use crate::testing::{ScriptedLayer, ann, default_limits, rooms};

    /// A [`MemoryLog`] that takes a while to store, as a database does, so
    /// that batches queue up behind it and overlap with publication.
    #[derive(Debug, Default)]
    struct SlowLog(MemoryLog);

    impl MessageLog for SlowLog {
        type Error = <MemoryLog as MessageLog>::Error;

        async fn append(&self, batch: &[Draft]) -> Result<Vec<Appended>, Self::Error> {
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.0.append(batch).await
        }

        async fn state(&self, room: RoomId) -> Result<LogState, Self::Error> {
            self.0.state(room).await
        }

        async fn latest(&self, room: RoomId, limit: u32) -> Result<Vec<Message>, Self::Error> {
            self.0.latest(room, limit).await
        }

        async fn before(
            &self,
            room: RoomId,
            before: Seq,
            limit: u32,
        ) -> Result<Vec<Message>, Self::Error> {
            self.0.before(room, before, limit).await
        }

        async fn after(
            &self,
            room: RoomId,
            after: Seq,
            limit: u32,
        ) -> Result<Vec<Message>, Self::Error> {
            self.0.after(room, after, limit).await
        }

        async fn erase(&self, erase: &Erase) -> Result<Erasure, Self::Error> {
            self.0.erase(erase).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_stored_while_others_publish_reach_the_room_in_seq_order() {
        const SENDERS: usize = 4;
        const EACH: usize = 100;
        let layer = ScriptedLayer::default();
        let chat = Arc::new(Chat::new(
            layer.clone(),
            rooms(),
            SlowLog::default(),
            default_limits(),
        ));
        let room = RoomId(1);
        let senders: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let chat = chat.clone();
                tokio::spawn(async move {
                    let mut outcomes = Vec::with_capacity(EACH);
                    for n in 0..EACH {
                        let draft = Draft {
                            room,
                            user: ann().user_ref(),
                            text: format!("{sender}-{n}"),
                            nonce: None,
                            ts: 0,
                        };
                        outcomes.push(chat.submit(draft, None));
                        if n % 10 == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    outcomes
                })
            })
            .collect();
        let mut acknowledged = Vec::new();
        for sender in senders {
            for outcome in sender.await.expect("sender") {
                let sent = outcome.await.expect("answered").expect("stored");
                assert!(sent.published);
                acknowledged.push(sent.appended.seq.0);
            }
        }
        acknowledged.sort_unstable();
        let all: Vec<u64> = (1..=(SENDERS * EACH) as u64).collect();
        assert_eq!(acknowledged, all);

        let published: Vec<u64> = layer
            .calls()
            .iter()
            .filter_map(|call| call.strip_prefix("group_send room-1 "))
            .map(|event| match peek_event(event) {
                EventHead::Message { seq, .. } => seq.0,
                other => panic!("{other:?} in {event}"),
            })
            .collect();
        assert_eq!(published, all, "published once each, in seq order");
    }
}
