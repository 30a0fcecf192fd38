//! The node's pub/sub connection and the one task that owns it.
//!
//! Redis pub/sub needs a connection of its own: once subscribed, it carries
//! nothing but messages and (un)subscription replies. One task owns it and
//! does everything that touches it:
//!
//! - **Fan-out.** Each message is turned into one [`Payload`](crate::Payload) and handed to
//!   every local member of its group by
//!   [`LocalChannels`](crate::memory::LocalChannels), without waiting
//!   on any of them.
//! - **Joins.** `group_add` asks this task to add the member. The task first
//!   makes sure the node is subscribed (SUBSCRIBE, or a PING when it already
//!   is), waits for Redis to answer, delivers every message that came in
//!   before that answer, and only then adds the member and lets `group_add`
//!   return. Redis answers a connection in order, so the reply is a barrier:
//!   whatever was published before it has already been delivered (and the
//!   joiner, not yet a member, does not get it: no ENTER of its own), and
//!   whatever is published after `group_add` returns reaches the joiner.
//!   Acknowledging before the reply would let a message published right
//!   after the join reply miss the new member.
//! - **Leaves.** When a group loses its last local member the layer tells
//!   this task, which UNSUBSCRIBEs unless someone joined meanwhile. Since
//!   only this task adds members and changes subscriptions, that check
//!   cannot race a join.
//! - **Outages.** When the connection drops (or stops answering PINGs), the
//!   task reconnects with exponential backoff, resubscribes every group that
//!   still has local members, and carries on; members never notice, beyond
//!   the messages published while the node was not listening. Backoff,
//!   because a Redis that is restarting should not be hammered by every node
//!   at once; capped, so delivery resumes within seconds of Redis coming
//!   back. While down, joins are refused at once rather than left waiting.
//!
//! Serializing joins through one task costs a round trip to Redis per batch
//! of joins, not per message: requests that queue up while the task is busy
//! are answered by a single barrier.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::Msg;
use redis::aio::{PubSub, PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::{COMMAND_TIMEOUT, Keys, Node, bounded, wire};
use crate::{ChannelName, GroupName, LayerError};

/// The first wait before reconnecting; doubled after each failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait between attempts: how late, at worst, a node notices
/// that Redis is back.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How often an idle connection is PINGed. A Redis that vanished without
/// closing the socket (a dead host, a partition) is noticed within this
/// plus [`COMMAND_TIMEOUT`].
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// What the layer asks of its subscriber.
#[derive(Debug)]
pub(super) enum Request {
    /// Add a member once the node hears its group.
    Join(Join),
    /// These groups lost their last local member: stop hearing them.
    Release(Vec<GroupName>),
}

/// A pending `group_add`.
#[derive(Debug)]
pub(super) struct Join {
    pub(super) group: GroupName,
    pub(super) channel: ChannelName,
    /// Answered once the member is added, or with why it could not be.
    pub(super) done: oneshot::Sender<Result<(), LayerError>>,
}

/// The task's state; see the module docs.
pub(super) struct Subscriber {
    node: Arc<Node>,
    client: redis::Client,
    keys: Keys,
    /// Closed when the layer is dropped, which ends the task.
    requests: mpsc::UnboundedReceiver<Request>,
    /// The groups the current connection is subscribed to, by channel name,
    /// so an incoming message finds its group without allocating.
    subscribed: HashMap<String, GroupName>,
    /// Groups that may have lost their last local member since the last
    /// check.
    released: Vec<GroupName>,
}

/// Why [`Subscriber::serve`] returned.
enum Ended {
    /// The layer was dropped.
    Stopped,
    /// The connection failed; reconnect.
    Lost(LayerError),
}

impl Subscriber {
    /// The task's state, and the sender the layer talks to it through.
    pub(super) fn new(
        node: Arc<Node>,
        client: redis::Client,
        keys: Keys,
    ) -> (mpsc::UnboundedSender<Request>, Subscriber) {
        // Unbounded, because `close_channel` and `send` must not wait; each
        // request is small, and the task drains them quickly.
        let (sender, requests) = mpsc::unbounded_channel();
        let subscriber = Subscriber {
            node,
            client,
            keys,
            requests,
            subscribed: HashMap::new(),
            released: Vec::new(),
        };
        (sender, subscriber)
    }

    /// Opens the first pub/sub connection and spawns the task; fails if
    /// Redis does not accept it, so `connect` fails too.
    pub(super) async fn start(self) -> Result<(), LayerError> {
        let pubsub = self.open().await?;
        // Up before `connect` returns, not whenever the task first runs: a
        // fresh layer is available.
        self.node.pubsub_up.store(true, Ordering::Release);
        tokio::spawn(self.run(pubsub));
        Ok(())
    }

    async fn run(mut self, first: PubSub) {
        let mut connection = Some(first);
        let mut backoff = Backoff::default();
        loop {
            let pubsub = match connection.take() {
                Some(pubsub) => pubsub,
                None => match self.reconnect(&mut backoff).await {
                    Some(pubsub) => pubsub,
                    None => return,
                },
            };
            let ended = self.serve(pubsub).await;
            self.node.pubsub_up.store(false, Ordering::Release);
            // The subscriptions died with the connection; a new one starts
            // from the groups that have members then.
            self.subscribed.clear();
            self.released.clear();
            match ended {
                Ended::Stopped => return,
                Ended::Lost(error) => {
                    tracing::warn!(%error, "Redis pub/sub connection lost; reconnecting");
                }
            }
        }
    }

    /// Hears the subscribed groups and serves the layer's requests until the
    /// connection fails or the layer is dropped.
    async fn serve(&mut self, pubsub: PubSub) -> Ended {
        let (mut sink, mut stream) = pubsub.split();
        let mut health = tokio::time::interval_at(
            Instant::now() + HEALTH_CHECK_INTERVAL,
            HEALTH_CHECK_INTERVAL,
        );
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        self.fan_out(&message);
                        Ok(())
                    }
                    None => Err(LayerError::Disconnected),
                },
                request = self.requests.recv() => match request {
                    Some(request) => self.handle(request, &mut sink, &mut stream).await,
                    None => return Ended::Stopped,
                },
                _ = health.tick() => {
                    bounded("pub/sub PING", COMMAND_TIMEOUT, sink.ping::<()>()).await
                }
            };
            let step = match step {
                Ok(()) => self.unsubscribe_released(&mut sink).await,
                Err(error) => Err(error),
            };
            if let Err(error) = step {
                return Ended::Lost(error);
            }
        }
    }

    /// Delivers one message to the local members of its group.
    fn fan_out(&mut self, message: &Msg) {
        // Unsubscribed meanwhile (the message was already on its way): no
        // local member wants it.
        let Some(group) = self.subscribed.get(message.get_channel_name()) else {
            return;
        };
        // The one copy of the frame on this node: out of the connection's
        // read buffer into a Payload that every local member then shares.
        let Some(payload) = wire::decode(message.get_payload_bytes()) else {
            tracing::warn!(%group, "dropping a broadcast that is not UTF-8");
            return;
        };
        let emptied = self.node.channels.group_send(group, &payload);
        self.released.extend(emptied);
    }

    /// Serves `first` and every request queued behind it.
    async fn handle(
        &mut self,
        first: Request,
        sink: &mut PubSubSink,
        stream: &mut PubSubStream,
    ) -> Result<(), LayerError> {
        let mut joins = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next {
            match request {
                Request::Join(join) => joins.push(join),
                Request::Release(groups) => self.released.extend(groups),
            }
            next = self.requests.try_recv().ok();
        }
        if joins.is_empty() {
            Ok(())
        } else {
            self.join(joins, sink, stream).await
        }
    }

    /// Subscribes to the joins' groups if needed, waits for the barrier,
    /// then adds the members (see the module docs for why in this order).
    async fn join(
        &mut self,
        joins: Vec<Join>,
        sink: &mut PubSubSink,
        stream: &mut PubSubStream,
    ) -> Result<(), LayerError> {
        let mut new_channels: HashMap<String, GroupName> = HashMap::new();
        for join in &joins {
            let channel = self.keys.group(&join.group);
            if !self.subscribed.contains_key(&channel) {
                new_channels.insert(channel, join.group.clone());
            }
        }
        // Either reply is the barrier: Redis sends it after every message
        // it had already queued for this connection.
        let barrier = if new_channels.is_empty() {
            bounded("pub/sub PING", COMMAND_TIMEOUT, sink.ping::<()>()).await
        } else {
            let channels: Vec<&str> = new_channels.keys().map(String::as_str).collect();
            bounded("SUBSCRIBE", COMMAND_TIMEOUT, sink.subscribe(channels)).await
        };
        if let Err(error) = barrier {
            for join in joins {
                let _ = join.done.send(Err(error.clone()));
            }
            return Err(error);
        }
        self.subscribed.extend(new_channels);

        // The redis crate queues messages before it completes the reply, so
        // everything from before the barrier is in the stream now.
        while let Some(Some(message)) = stream.next().now_or_never() {
            self.fan_out(&message);
        }

        for Join {
            group,
            channel,
            done,
        } in joins
        {
            // Does nothing if the channel was closed meanwhile.
            self.node.channels.group_add(&group, channel);
            if done.send(Ok(())).is_err() {
                // `group_add` gave up waiting and reported failure: undo, so
                // the layer does what its caller was told.
                self.node.channels.group_discard(&group, channel);
            }
            // A closed or undone member may leave the group without anyone.
            self.released.push(group);
        }
        Ok(())
    }

    /// Unsubscribes from the released groups that still have no local
    /// member.
    async fn unsubscribe_released(&mut self, sink: &mut PubSubSink) -> Result<(), LayerError> {
        if self.released.is_empty() {
            return Ok(());
        }
        let mut channels = Vec::new();
        for group in std::mem::take(&mut self.released) {
            if self.node.channels.has_members(&group) {
                continue;
            }
            let channel = self.keys.group(&group);
            if self.subscribed.remove(&channel).is_some() {
                channels.push(channel);
            }
        }
        if channels.is_empty() {
            return Ok(());
        }
        bounded("UNSUBSCRIBE", COMMAND_TIMEOUT, sink.unsubscribe(channels)).await
    }

    /// Waits, then tries again, until a connection is up with every local
    /// group subscribed; `None` if the layer was dropped meanwhile.
    async fn reconnect(&mut self, backoff: &mut Backoff) -> Option<PubSub> {
        loop {
            let wait = tokio::time::sleep(backoff.next_delay());
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    request = self.requests.recv() => match request {
                        Some(request) => refuse(request),
                        None => return None,
                    },
                }
            }
            match self.open_and_resubscribe().await {
                Ok(pubsub) => {
                    self.node.pubsub_up.store(true, Ordering::Release);
                    tracing::info!(
                        groups = self.subscribed.len(),
                        "Redis pub/sub connection restored"
                    );
                    backoff.reset();
                    return Some(pubsub);
                }
                Err(error) => tracing::debug!(%error, "Redis pub/sub reconnect failed"),
            }
        }
    }

    async fn open_and_resubscribe(&mut self) -> Result<PubSub, LayerError> {
        let mut pubsub = self.open().await?;
        let groups = self.node.channels.group_names();
        if !groups.is_empty() {
            let channels: Vec<String> = groups.iter().map(|group| self.keys.group(group)).collect();
            bounded("SUBSCRIBE", COMMAND_TIMEOUT, pubsub.subscribe(&channels)).await?;
            self.subscribed = channels.into_iter().zip(groups).collect();
        }
        Ok(pubsub)
    }

    async fn open(&self) -> Result<PubSub, LayerError> {
        bounded(
            "pub/sub connection",
            COMMAND_TIMEOUT,
            self.client.get_async_pubsub(),
        )
        .await
    }
}

/// Answers a request that arrives while the connection is down.
fn refuse(request: Request) {
    match request {
        Request::Join(join) => {
            // Down and reconnecting: as a closed connection, retry later.
            let _ = join.done.send(Err(LayerError::Disconnected));
        }
        // Nothing is subscribed while down, and resubscribing only takes
        // groups that have members.
        Request::Release(_) => {}
    }
}

/// Exponential backoff between reconnection attempts.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt; each call doubles the following
    /// one, up to [`MAX_BACKOFF`].
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(MAX_BACKOFF);
        delay
    }

    /// After a success, the next outage starts with a short wait again.
    fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| backoff.next_delay()).collect();
        let millis: Vec<_> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), FIRST_BACKOFF);
    }
}
