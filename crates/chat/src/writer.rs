//! Storing messages in batches, then publishing them in seq order.
//!
//! Every `send`, v1 or v2, becomes a [`Draft`] handed to the host's
//! [`MessageLog`]. While one batch is being stored, the sends that arrive
//! queue up; they go together in the next batch (group commit), so storing
//! costs one transaction per batch rather than one per message. One task
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

    /// Writes batches until the queue is empty. A batch whose log or layer
    /// panics is given up (its senders hear `UNAVAILABLE`, as their answers
    /// are dropped) and the task goes on with the next: one bad batch must
    /// not stop every later send.
    async fn write_batches(self: Arc<Self>) {
        loop {
            let batch: Vec<Submission> = {
                let mut state = self.writer.lock();
                if state.queue.is_empty() {
                    state.writing = false;
                    return;
                }
                let take = state.queue.len().min(MAX_BATCH);
                state.queue.drain(..take).collect()
            };
            let written = AssertUnwindSafe(self.write_batch(batch))
                .catch_unwind()
                .await;
            if written.is_err() {
                tracing::error!("storing or publishing a batch of messages panicked");
            }
        }
    }

    /// Stores one batch, publishes what was stored (in order), then answers
    /// the senders: an acknowledged message has been published too.
    async fn write_batch(&self, batch: Vec<Submission>) {
        let (drafts, routes): (Vec<Draft>, Vec<_>) = batch
            .into_iter()
            .map(|submission| (submission.draft, (submission.copy_to, submission.done)))
            .unzip();
        let appended = match self.log.append(&drafts).await {
            Ok(appended) if appended.len() == drafts.len() => appended,
            Ok(appended) => {
                tracing::error!(
                    drafts = drafts.len(),
                    appended = appended.len(),
                    "message log answered a batch with the wrong count"
                );
                return fail(routes);
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "storing messages failed"
                );
                return fail(routes);
            }
        };
        for ((draft, (copy_to, done)), appended) in drafts.into_iter().zip(routes).zip(appended) {
            let published = appended.repeated || self.publish(draft, appended, copy_to).await;
            // The sender may be gone; its message is stored either way.
            let _ = done.send(Ok(Sent {
                appended,
                published,
            }));
        }
    }

    /// Sends a stored message to the room's members (both frames in one
    /// payload), and the copy with the nonce to the sending socket first (it
    /// drops the room's copy by its seq).
    /// A failure here loses no stored message (v2 clients can read it
    /// back); it is counted, and the result says whether all went out.
    async fn publish(
        &self,
        draft: Draft,
        appended: Appended,
        copy_to: Option<ChannelName>,
    ) -> bool {
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
        let layer = &self.layer;
        let mut published = true;
        if let (Some(channel), Some(nonce)) = (copy_to, nonce.as_deref()) {
            let own = Payload::from(v2::encode::message(&message, Some(nonce)));
            if let Err(error) = layer.send(channel, own).await {
                self.layer_failed("send", &error);
                published = false;
            }
        }
        let event = room_event(v2::encode::message(&message, None), &v1_frame);
        if let Err(error) = layer.group_send(&GroupName::for_room(room), event).await {
            self.layer_failed("group_send", &error);
            published = false;
        }
        published
    }
}

/// Answers every sender of a batch that could not be stored.
fn fail(routes: Vec<(Option<ChannelName>, oneshot::Sender<Outcome>)>) {
    for (_, done) in routes {
        let _ = done.send(Err(ErrorCode::Unavailable));
    }
}
