//! A connection's inbox: the bounded queue between the layer and the task
//! that writes to the connection's socket.
//!
//! The layer holds the sending end ([`InboxSender`]) and never waits on it:
//! when the queue is full the receiver is too slow, and the layer closes the
//! inbox instead of blocking the sender (one slow client must not stall a
//! room) or buffering without limit (one slow client must not exhaust
//! memory). The connection learns of it as [`InboxClosed::SlowConsumer`] and
//! closes its socket with code 1013.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc::{self, error::TryRecvError, error::TrySendError};

use crate::{ChannelName, Payload};

/// Why an inbox stopped delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InboxClosed {
    /// The inbox filled up and the layer closed it; whatever was still queued
    /// is discarded. The connection should close with code 1013 (try again
    /// later).
    #[error("inbox closed: the receiver fell behind")]
    SlowConsumer,
    /// The channel was closed ([`close_channel`](crate::ChannelLayer::close_channel))
    /// or the layer went away, and everything queued has been received.
    #[error("inbox closed")]
    Closed,
}

/// The receiving end of a channel; owned by the connection's task.
///
/// Made by [`ChannelLayer::new_channel`](crate::ChannelLayer::new_channel).
/// Dropping it is enough for the layer to stop delivering to it, but the
/// connection should still call
/// [`close_channel`](crate::ChannelLayer::close_channel) so the layer forgets
/// its group memberships right away.
#[derive(Debug)]
pub struct Inbox {
    name: ChannelName,
    receiver: mpsc::Receiver<Payload>,
    /// Set by the layer, before it drops its senders, when it closes this
    /// inbox for falling behind.
    overflowed: Arc<AtomicBool>,
}

impl Inbox {
    /// This inbox's channel name, to pass to `group_add`, `send`, ...
    pub fn name(&self) -> ChannelName {
        self.name
    }

    /// Waits for the next payload.
    ///
    /// Once the layer has closed the inbox for falling behind, this returns
    /// [`InboxClosed::SlowConsumer`] at once, without draining the backlog:
    /// the client is already too far behind for those frames to matter, and
    /// the point is to disconnect it quickly. After a normal close it returns
    /// what is still queued, then [`InboxClosed::Closed`].
    ///
    /// Cancel safe: if the future is dropped (e.g. in `tokio::select!`), no
    /// payload is lost.
    pub async fn recv(&mut self) -> Result<Payload, InboxClosed> {
        self.check_overflow()?;
        let received = self.receiver.recv().await;
        // The layer may have closed us while we waited; a payload received
        // now is part of the discarded backlog.
        self.check_overflow()?;
        received.ok_or(InboxClosed::Closed)
    }

    /// Takes the next payload if one is queued; `None` means the inbox is
    /// open but currently empty.
    pub fn try_recv(&mut self) -> Option<Result<Payload, InboxClosed>> {
        if let Err(closed) = self.check_overflow() {
            return Some(Err(closed));
        }
        match self.receiver.try_recv() {
            Ok(payload) => Some(self.check_overflow().map(|()| payload)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                Some(self.check_overflow().and(Err(InboxClosed::Closed)))
            }
        }
    }

    fn check_overflow(&self) -> Result<(), InboxClosed> {
        if self.overflowed.load(Ordering::Acquire) {
            Err(InboxClosed::SlowConsumer)
        } else {
            Ok(())
        }
    }
}

/// The layer's end of an inbox. Clones share the queue; the inbox reports
/// closed once every clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct InboxSender {
    sender: mpsc::Sender<Payload>,
    overflowed: Arc<AtomicBool>,
}

/// What happened to one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Queued.
    Delivered,
    /// The queue is full: the receiver fell behind and must be closed.
    Full,
    /// The inbox was dropped; the channel can be forgotten.
    Gone,
}

impl InboxSender {
    /// Queues `payload` without waiting. Never blocks: a full queue is
    /// reported, not waited on.
    pub(crate) fn deliver(&self, payload: Payload) -> Delivery {
        match self.sender.try_send(payload) {
            Ok(()) => Delivery::Delivered,
            Err(TrySendError::Full(_)) => Delivery::Full,
            Err(TrySendError::Closed(_)) => Delivery::Gone,
        }
    }

    /// Marks the inbox as closed for falling behind. The caller must then
    /// drop every clone of this sender, which wakes a receiver blocked in
    /// [`Inbox::recv`]; the flag is set first so it sees `SlowConsumer`, not
    /// `Closed`.
    pub(crate) fn mark_overflowed(&self) {
        self.overflowed.store(true, Ordering::Release);
    }
}

/// Makes a bounded inbox holding at most `capacity` payloads (at least one).
pub(crate) fn inbox(name: ChannelName, capacity: usize) -> (InboxSender, Inbox) {
    // tokio's mpsc panics on a zero capacity.
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let overflowed = Arc::new(AtomicBool::new(false));
    let sender = InboxSender {
        sender,
        overflowed: Arc::clone(&overflowed),
    };
    let inbox = Inbox {
        name,
        receiver,
        overflowed,
    };
    (sender, inbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_overflowed_inbox_reports_slow_consumer_before_its_backlog() {
        let (sender, mut inbox) = inbox(ChannelName::new(1), 2);
        assert_eq!(sender.deliver(Payload::from("a")), Delivery::Delivered);
        assert_eq!(sender.deliver(Payload::from("b")), Delivery::Delivered);
        assert_eq!(sender.deliver(Payload::from("c")), Delivery::Full);
        sender.mark_overflowed();
        drop(sender);
        assert_eq!(inbox.recv().await, Err(InboxClosed::SlowConsumer));
        assert_eq!(inbox.try_recv(), Some(Err(InboxClosed::SlowConsumer)));
    }

    #[tokio::test]
    async fn a_normal_close_drains_the_backlog_first() {
        let (sender, mut inbox) = inbox(ChannelName::new(1), 2);
        assert_eq!(inbox.try_recv(), None);
        sender.deliver(Payload::from("a"));
        drop(sender);
        assert_eq!(inbox.recv().await, Ok(Payload::from("a")));
        assert_eq!(inbox.recv().await, Err(InboxClosed::Closed));
        assert_eq!(inbox.try_recv(), Some(Err(InboxClosed::Closed)));
    }

    #[tokio::test]
    async fn a_blocked_receiver_wakes_when_closed_for_overflow() {
        let (sender, mut inbox) = inbox(ChannelName::new(1), 2);
        let waiter = tokio::spawn(async move { inbox.recv().await });
        tokio::task::yield_now().await;
        sender.mark_overflowed();
        drop(sender);
        let result = waiter.await.expect("the receiving task does not panic");
        assert_eq!(result, Err(InboxClosed::SlowConsumer));
    }

    #[test]
    fn a_dropped_inbox_is_reported_gone() {
        let (sender, inbox) = inbox(ChannelName::new(1), 0);
        drop(inbox);
        assert_eq!(sender.deliver(Payload::from("a")), Delivery::Gone);
    }
}
