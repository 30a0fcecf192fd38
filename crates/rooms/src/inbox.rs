//! A connection's inbox: the bounded queue between the layer and the task
//! that writes to the connection's socket.
//!
//! The layer holds the sending end ([`InboxSender`]) and never waits on it.
//! The queue is bounded in bytes ([`LayerConfig::max_queued_bytes`]):
//!
//! - Past half the bound, [expendable](Payload::expendable) payloads
//!   (presence and typing notices) are dropped: new ones are refused, and a
//!   payload that must be queued first drops those already waiting. A
//!   storm of notices (a node restarting, and every member rejoining) then
//!   costs a slow receiver some notices, not its connection.
//! - Past the bound, the receiver is too slow, and the layer closes the
//!   inbox instead of blocking the sender (one slow client must not stall a
//!   room) or buffering without limit (one slow client must not exhaust
//!   memory). The connection learns of it as [`InboxClosed::SlowConsumer`]
//!   and closes its socket with code 1013.
//!
//! Expendable payloads also wait for company: while only they are queued,
//! [`Inbox::recv`] holds them back for up to
//! [`LayerConfig::expendable_delay`], and their arrival does not wake the
//! receiver meanwhile. A burst of notices (members joining a room one
//! after another) then reaches a connection as one batch, one write to
//! its socket instead of one each; anything else arriving ends the wait
//! at once, so messages are never delayed.
//!
//! [`LayerConfig::expendable_delay`]: crate::LayerConfig::expendable_delay
//! [`LayerConfig::max_queued_bytes`]: crate::LayerConfig::max_queued_bytes

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Sleep;

use crate::{ChannelName, Payload};

/// Queue capacity (in payloads) an inbox keeps after a burst has drained;
/// past it the queue is shrunk, so one burst does not cost a connection
/// memory for the rest of its life.
const KEPT_CAPACITY: usize = 16;

/// What a queued payload counts against the bound: its bytes and its slot
/// in the queue, so that many tiny payloads are bounded too.
fn queued_cost(payload: &Payload) -> usize {
    payload.len() + std::mem::size_of::<Payload>()
}

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
///
/// The queue is a `VecDeque` behind a mutex that is held for a push or a
/// pop, never across an `.await`. It allocates nothing until the first
/// payload, about 100 bytes in all for an idle connection (a tokio bounded
/// channel took 1.5 KiB up front, and 12% of the server's CPU under fan-out,
/// measured with perf).
#[derive(Debug)]
pub struct Inbox {
    name: ChannelName,
    shared: Arc<Shared>,
    /// While only expendable payloads are queued: when they are handed
    /// over anyway. Allocated only while holding them.
    hold: Option<Pin<Box<Sleep>>>,
}

/// What an inbox and its senders share.
#[derive(Debug)]
struct Shared {
    /// The bound on `State::queued_bytes`.
    max_bytes: usize,
    /// How long expendable payloads alone wait for company.
    expendable_delay: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Payload>,
    /// The [`queued_cost`] of everything in `queue`.
    queued_bytes: usize,
    /// How many payloads in `queue` are expendable, so a queue without any
    /// is never scanned for them.
    expendables: usize,
    /// The receiver's waker, kept only while it waits.
    waker: Option<Waker>,
    /// Whether the receiver waits for anything, or (while holding
    /// expendable payloads back) only for a payload that is not
    /// expendable.
    wakes_for_expendables: bool,
    /// Live [`InboxSender`] clones; none left means closed.
    senders: usize,
    receiver_alive: bool,
    /// Set by the layer when it closes this inbox for falling behind.
    overflowed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// What the receiver gets next; `None` means wait.
    fn take(&mut self) -> Option<Result<Payload, InboxClosed>> {
        if self.overflowed {
            return Some(Err(InboxClosed::SlowConsumer));
        }
        if let Some(payload) = self.queue.pop_front() {
            self.queued_bytes -= queued_cost(&payload);
            self.expendables -= usize::from(payload.is_expendable());
            if self.queue.is_empty() && self.queue.capacity() > KEPT_CAPACITY {
                self.queue.shrink_to(KEPT_CAPACITY);
            }
            return Some(Ok(payload));
        }
        if self.senders == 0 {
            return Some(Err(InboxClosed::Closed));
        }
        None
    }

    /// Keeps the receiver's waker, to be woken by the next payload (or,
    /// without `wakes_for_expendables`, by the next that is not
    /// expendable).
    fn register(&mut self, waker: &Waker, wakes_for_expendables: bool) {
        self.wakes_for_expendables = wakes_for_expendables;
        if !self
            .waker
            .as_ref()
            .is_some_and(|kept| kept.will_wake(waker))
        {
            self.waker = Some(waker.clone());
        }
    }

    fn push(&mut self, payload: Payload) {
        self.queued_bytes += queued_cost(&payload);
        self.expendables += usize::from(payload.is_expendable());
        self.queue.push_back(payload);
    }

    /// Drops every expendable payload still queued; returns how many.
    fn drop_expendables(&mut self) -> usize {
        let dropped = self.expendables;
        if dropped > 0 {
            self.queue.retain(|payload| !payload.is_expendable());
            self.queued_bytes = self.queue.iter().map(queued_cost).sum();
            self.expendables = 0;
        }
        dropped
    }

    fn clear(&mut self) {
        self.queue = VecDeque::new();
        self.queued_bytes = 0;
        self.expendables = 0;
    }
}

impl Inbox {
    /// This inbox's channel name, to pass to `group_add`, `send`, ...
    pub fn name(&self) -> ChannelName {
        self.name
    }

    /// Waits for the next payload.
    ///
    /// While only expendable payloads are queued, they are held back for
    /// up to the layer's `expendable_delay` (from the first poll that finds
    /// them), so that those arriving meanwhile come out together; a payload
    /// that is not expendable ends the wait at once, and comes after them.
    /// [`try_recv`](Self::try_recv) never waits.
    ///
    /// Once the layer has closed the inbox for falling behind, this returns
    /// [`InboxClosed::SlowConsumer`] at once, without draining the backlog:
    /// the client is already too far behind for those frames to matter, and
    /// the point is to disconnect it quickly. After a normal close it returns
    /// what is still queued, then [`InboxClosed::Closed`].
    ///
    /// Cancel safe: if the future is dropped (e.g. in `tokio::select!`), no
    /// payload is lost, and a hold under way goes on. Needs a tokio
    /// runtime with its timer enabled.
    pub async fn recv(&mut self) -> Result<Payload, InboxClosed> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Payload, InboxClosed>> {
        let mut state = self.shared.lock();
        let only_expendables = !state.queue.is_empty()
            && state.expendables == state.queue.len()
            && state.senders > 0
            && !state.overflowed;
        if only_expendables && !self.shared.expendable_delay.is_zero() {
            let delay = self.shared.expendable_delay;
            let hold = self
                .hold
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if hold.as_mut().poll(cx).is_pending() {
                state.register(cx.waker(), false);
                return Poll::Pending;
            }
        }
        if let Some(next) = state.take() {
            self.hold = None;
            return Poll::Ready(next);
        }
        state.register(cx.waker(), true);
        Poll::Pending
    }

    /// Takes the next payload if one is queued; `None` means the inbox is
    /// open but currently empty.
    pub fn try_recv(&mut self) -> Option<Result<Payload, InboxClosed>> {
        self.shared.lock().take()
    }
}

impl Drop for Inbox {
    /// Frees the backlog now and tells the senders to stop.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        state.waker = None;
        state.clear();
    }
}

/// The layer's end of an inbox. Clones share the queue; the inbox reports
/// closed once every clone is dropped.
#[derive(Debug)]
pub(crate) struct InboxSender {
    shared: Arc<Shared>,
}

impl Clone for InboxSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        InboxSender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for InboxSender {
    /// The last sender gone closes the inbox: wake a waiting receiver.
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders == 0 {
                state.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// What happened to one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Queued.
    Delivered,
    /// The receiver is falling behind, and this many expendable payloads
    /// were dropped for it: the one offered, or those queued to make room
    /// for it (it was then queued).
    Shed(usize),
    /// The queue is full: the receiver fell behind and must be closed.
    Full,
    /// The inbox was dropped; the channel can be forgotten.
    Gone,
}

impl InboxSender {
    /// Queues `payload` without waiting. Never blocks: a full queue is
    /// reported, not waited on. An empty queue takes any payload, however
    /// large, so one big frame cannot close a receiver that is keeping up.
    pub(crate) fn deliver(&self, payload: Payload) -> Delivery {
        let (waker, shed) = {
            let mut state = self.shared.lock();
            if !state.receiver_alive {
                return Delivery::Gone;
            }
            if state.overflowed {
                return Delivery::Full;
            }
            let after = state.queued_bytes + queued_cost(&payload);
            let mut shed = 0;
            if after > self.shared.max_bytes / 2 && !state.queue.is_empty() {
                if payload.is_expendable() {
                    return Delivery::Shed(1);
                }
                if after > self.shared.max_bytes {
                    shed = state.drop_expendables();
                    let after = state.queued_bytes + queued_cost(&payload);
                    if after > self.shared.max_bytes && !state.queue.is_empty() {
                        return Delivery::Full;
                    }
                }
            }
            let wake = !payload.is_expendable() || state.wakes_for_expendables;
            state.push(payload);
            (if wake { state.waker.take() } else { None }, shed)
        };
        // Woken outside the lock, so the receiver does not wake into it.
        if let Some(waker) = waker {
            waker.wake();
        }
        if shed > 0 {
            Delivery::Shed(shed)
        } else {
            Delivery::Delivered
        }
    }

    /// Closes the inbox for falling behind: the backlog is dropped now and
    /// the receiver sees [`InboxClosed::SlowConsumer`] at once. The layer
    /// then forgets every clone of this sender.
    pub(crate) fn mark_overflowed(&self) {
        let waker = {
            let mut state = self.shared.lock();
            state.overflowed = true;
            state.clear();
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Makes an inbox bounded to `max_bytes` of queued payloads (see
/// [`queued_cost`]), where expendable payloads alone wait up to
/// `expendable_delay` for company.
pub(crate) fn inbox(
    name: ChannelName,
    max_bytes: usize,
    expendable_delay: Duration,
) -> (InboxSender, Inbox) {
    let shared = Arc::new(Shared {
        max_bytes,
        expendable_delay,
        state: Mutex::new(State {
            queue: VecDeque::new(),
            queued_bytes: 0,
            expendables: 0,
            waker: None,
            wakes_for_expendables: true,
            senders: 1,
            receiver_alive: true,
            overflowed: false,
        }),
    });
    let sender = InboxSender {
        shared: Arc::clone(&shared),
    };
    let inbox = Inbox {
        name,
        shared,
        hold: None,
    };
    (sender, inbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bound that holds `n` one-byte payloads.
    fn room_for(n: usize) -> usize {
        n * queued_cost(&Payload::from("x"))
    }

    #[tokio::test]
    async fn an_overflowed_inbox_reports_slow_consumer_before_its_backlog() {
        let (sender, mut inbox) = inbox(ChannelName::new(1), room_for(2), Duration::ZERO);
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
        let (sender, mut inbox) = inbox(ChannelName::new(1), room_for(2), Duration::ZERO);
        assert_eq!(inbox.try_recv(), None);
        sender.deliver(Payload::from("a"));
        drop(sender);
        assert_eq!(inbox.recv().await, Ok(Payload::from("a")));
        assert_eq!(inbox.recv().await, Err(InboxClosed::Closed));
        assert_eq!(inbox.try_recv(), Some(Err(InboxClosed::Closed)));
    }

    #[tokio::test]
    async fn a_blocked_receiver_wakes_when_closed_for_overflow() {
        let (sender, mut inbox) = inbox(ChannelName::new(1), room_for(2), Duration::ZERO);
        let waiter = tokio::spawn(async move { inbox.recv().await });
        tokio::task::yield_now().await;
        sender.mark_overflowed();
        drop(sender);
        let result = waiter.await.expect("the receiving task does not panic");
        assert_eq!(result, Err(InboxClosed::SlowConsumer));
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_delivery_in_order() {
        let (sender, mut inbox) = inbox(ChannelName::new(1), room_for(8), Duration::ZERO);
        let waiter = tokio::spawn(async move { (inbox.recv().await, inbox.recv().await) });
        tokio::task::yield_now().await;
        sender.deliver(Payload::from("a"));
        sender.deliver(Payload::from("b"));
        let (first, second) = waiter.await.expect("the receiving task does not panic");
        assert_eq!(
            (first, second),
            (Ok(Payload::from("a")), Ok(Payload::from("b")))
        );
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let (sender, mut inbox) = inbox(ChannelName::new(1), room_for(1024), Duration::ZERO);
        for _ in 0..1000 {
            assert_eq!(sender.deliver(Payload::from("x")), Delivery::Delivered);
        }
        while let Some(Ok(_)) = inbox.try_recv() {}
        assert!(inbox.shared.lock().queue.capacity() <= KEPT_CAPACITY);
    }

    #[test]
    fn clones_keep_the_inbox_open_until_the_last_is_dropped() {
        let (sender, mut inbox) = inbox(ChannelName::new(1), room_for(2), Duration::ZERO);
        let clone = sender.clone();
        drop(sender);
        assert_eq!(inbox.try_recv(), None);
        drop(clone);
        assert_eq!(inbox.try_recv(), Some(Err(InboxClosed::Closed)));
    }

    #[test]
    fn a_dropped_inbox_is_reported_gone() {
        let (sender, inbox) = inbox(ChannelName::new(1), room_for(0), Duration::ZERO);
        drop(inbox);
        assert_eq!(sender.deliver(Payload::from("a")), Delivery::Gone);
    }

    #[test]
    fn past_half_the_bound_expendables_are_refused() {
        let (sender, mut inbox) = inbox(ChannelName::new(1), room_for(4), Duration::ZERO);
        assert_eq!(sender.deliver(Payload::from("a")), Delivery::Delivered);
        assert_eq!(sender.deliver(Payload::from("b")), Delivery::Delivered);
        let notice = Payload::from("n").expendable();
        assert_eq!(sender.deliver(notice), Delivery::Shed(1));
        assert_eq!(sender.deliver(Payload::from("c")), Delivery::Delivered);
        let received: Vec<_> = std::iter::from_fn(|| inbox.try_recv()).collect();
        let texts: Vec<_> = received.iter().flatten().map(Payload::as_str).collect();
        assert_eq!(texts, ["a", "b", "c"]);
    }

    #[test]
    fn a_message_drops_queued_expendables_before_the_receiver() {
        let (sender, mut inbox) = inbox(ChannelName::new(1), room_for(4), Duration::ZERO);
        assert_eq!(
            sender.deliver(Payload::from("e").expendable()),
            Delivery::Delivered
        );
        assert_eq!(
            sender.deliver(Payload::from("f").expendable()),
            Delivery::Delivered
        );
        assert_eq!(sender.deliver(Payload::from("1")), Delivery::Delivered);
        assert_eq!(sender.deliver(Payload::from("2")), Delivery::Delivered);
        assert_eq!(sender.deliver(Payload::from("3")), Delivery::Shed(2));
        assert_eq!(sender.deliver(Payload::from("4")), Delivery::Delivered);
        assert_eq!(sender.deliver(Payload::from("5")), Delivery::Full);
        let received: Vec<_> = std::iter::from_fn(|| inbox.try_recv()).collect();
        let texts: Vec<_> = received.iter().flatten().map(Payload::as_str).collect();
        assert_eq!(texts, ["1", "2", "3", "4"]);
        assert_eq!(inbox.shared.lock().queued_bytes, 0);
    }

    #[test]
    fn an_empty_queue_takes_a_payload_larger_than_the_bound() {
        let (sender, mut inbox) = inbox(ChannelName::new(1), 10, Duration::ZERO);
        let big = Payload::from("x".repeat(1000));
        assert_eq!(sender.deliver(big.clone()), Delivery::Delivered);
        assert_eq!(sender.deliver(Payload::from("y")), Delivery::Full);
        assert_eq!(inbox.try_recv(), Some(Ok(big)));
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn expendables_alone_wait_without_waking_until_a_message_comes() {
        let (sender, mut inbox) =
            inbox(ChannelName::new(1), room_for(100), Duration::from_secs(60));
        let wakes = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let count = || wakes.0.load(std::sync::atomic::Ordering::Relaxed);

        assert!(inbox.poll_recv(&mut cx).is_pending());
        sender.deliver(Payload::from("n1").expendable());
        assert_eq!(count(), 1, "the first payload wakes the receiver");
        assert!(inbox.poll_recv(&mut cx).is_pending(), "held back");
        sender.deliver(Payload::from("n2").expendable());
        assert_eq!(count(), 1, "more notices do not wake it");
        sender.deliver(Payload::from("m"));
        assert_eq!(count(), 2, "a message does");
        let handed: Vec<_> = std::iter::from_fn(|| match inbox.poll_recv(&mut cx) {
            Poll::Ready(next) => Some(next),
            Poll::Pending => None,
        })
        .collect();
        let texts: Vec<_> = handed.iter().flatten().map(Payload::as_str).collect();
        assert_eq!(texts, ["n1", "n2", "m"], "in order, nothing held");
    }

    #[tokio::test]
    async fn a_lone_expendable_is_handed_over_after_the_delay() {
        let delay = Duration::from_millis(30);
        let (sender, mut inbox) = inbox(ChannelName::new(1), room_for(100), delay);
        let started = tokio::time::Instant::now();
        sender.deliver(Payload::from("n").expendable());
        let handed = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await;
        assert_eq!(handed, Ok(Ok(Payload::from("n").expendable())));
        assert!(started.elapsed() >= delay);
        assert!(inbox.hold.is_none(), "the next notice waits afresh");
    }

    #[tokio::test]
    async fn held_expendables_are_handed_over_at_once_when_the_senders_go() {
        let (sender, mut inbox) =
            inbox(ChannelName::new(1), room_for(100), Duration::from_secs(60));
        sender.deliver(Payload::from("n").expendable());
        drop(sender);
        let handed = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await;
        assert_eq!(handed, Ok(Ok(Payload::from("n").expendable())));
        assert_eq!(inbox.recv().await, Err(InboxClosed::Closed));
    }
}
