//! A channel layer written outside `whisper-rooms`: it wraps [`MemoryLayer`]
//! and counts what goes through it, and passes the same scenario suite as
//! the built-in backends.
//!
//! The shape is the one a real backend (NATS, Kafka, ...) would take: keep a
//! `MemoryLayer` for this node's inboxes and groups, forward the local
//! operations to it, and put your own work (here a counter, there a broker
//! round trip) around `group_send`.
//!
//! Run it with `cargo run -p whisper-rooms --example counting_layer`; run the
//! shared suite against it with `cargo test -p whisper-rooms --features
//! testing --example counting_layer`.

use std::sync::atomic::{AtomicU64, Ordering};

use whisper_protocol::{PresenceEntry, RoomId, encode};
use whisper_rooms::{
    ChannelLayer, ChannelName, GroupName, Inbox, LayerConfig, LayerError, MemoryLayer, Payload,
};

/// A [`MemoryLayer`] that counts broadcasts, direct sends and bytes sent.
#[derive(Debug, Default)]
pub struct CountingLayer {
    inner: MemoryLayer,
    group_sends: AtomicU64,
    sends: AtomicU64,
    bytes: AtomicU64,
}

impl CountingLayer {
    /// A counting layer over a new `MemoryLayer` with `config`.
    pub fn new(config: LayerConfig) -> Self {
        CountingLayer {
            inner: MemoryLayer::new(config),
            group_sends: AtomicU64::new(0),
            sends: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Broadcasts so far (one per `group_send`, whatever the receivers).
    pub fn group_sends(&self) -> u64 {
        self.group_sends.load(Ordering::Relaxed)
    }

    /// Direct sends so far.
    pub fn sends(&self) -> u64 {
        self.sends.load(Ordering::Relaxed)
    }

    /// Bytes of every payload sent so far, counted once per send.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn count(&self, counter: &AtomicU64, payload: &Payload) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
    }
}

impl ChannelLayer for CountingLayer {
    fn new_channel(&self) -> Inbox {
        self.inner.new_channel()
    }

    fn presence_ttl(&self) -> std::time::Duration {
        self.inner.presence_ttl()
    }

    async fn group_add(&self, group: &GroupName, channel: ChannelName) -> Result<(), LayerError> {
        self.inner.group_add(group, channel).await
    }

    async fn group_discard(
        &self,
        group: &GroupName,
        channel: ChannelName,
    ) -> Result<(), LayerError> {
        self.inner.group_discard(group, channel).await
    }

    async fn group_send(&self, group: &GroupName, payload: Payload) -> Result<(), LayerError> {
        self.count(&self.group_sends, &payload);
        self.inner.group_send(group, payload).await
    }

    async fn send(&self, channel: ChannelName, payload: Payload) -> Result<(), LayerError> {
        self.count(&self.sends, &payload);
        self.inner.send(channel, payload).await
    }

    async fn close_channel(&self, channel: ChannelName) {
        self.inner.close_channel(channel).await;
    }

    fn slow_consumer_closes(&self) -> u64 {
        self.inner.slow_consumer_closes()
    }

    fn expendables_dropped(&self) -> u64 {
        self.inner.expendables_dropped()
    }

    fn room_count(&self) -> usize {
        self.inner.room_count()
    }

    async fn is_available(&self) -> bool {
        self.inner.is_available().await
    }

    async fn presence_touch(
        &self,
        room: RoomId,
        user_id: i64,
        username: &str,
        name: &str,
    ) -> Result<(), LayerError> {
        self.inner
            .presence_touch(room, user_id, username, name)
            .await
    }

    async fn presence_leave(&self, room: RoomId, user_id: i64) -> Result<(), LayerError> {
        self.inner.presence_leave(room, user_id).await
    }

    async fn presence_list(&self, room: RoomId) -> Result<Vec<PresenceEntry>, LayerError> {
        self.inner.presence_list(room).await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let layer = CountingLayer::default();
    let mut ann = layer.new_channel();
    let mut bob = layer.new_channel();
    let room = GroupName::for_room(RoomId(1));
    layer.group_add(&room, ann.name()).await?;
    layer.group_add(&room, bob.name()).await?;

    let frame = Payload::from(encode::message(RoomId(1), "ann", "hello"));
    layer.group_send(&room, frame).await?;
    println!("bob received {}", bob.recv().await?.as_str());
    println!("ann received {}", ann.recv().await?.as_str());
    println!(
        "{} broadcast(s), {} direct send(s), {} bytes",
        layer.group_sends(),
        layer.sends(),
        layer.bytes()
    );
    Ok(())
}

/// The scenarios every backend passes, run against the wrapper from outside
/// the crate, exactly as another broker's backend would run them.
#[cfg(all(test, feature = "testing"))]
mod channel_layer {
    use super::CountingLayer;
    use whisper_rooms::LayerConfig;

    whisper_rooms::channel_layer_test_suite!(|config: LayerConfig| async move {
        CountingLayer::new(config)
    });
}

#[cfg(test)]
mod tests {
    use super::CountingLayer;
    use whisper_rooms::{ChannelLayer, GroupName, Payload};

    #[tokio::test]
    async fn counts_one_broadcast_whatever_the_receivers() {
        let layer = CountingLayer::default();
        let room = GroupName::new("room-1");
        let inboxes: Vec<_> = (0..3).map(|_| layer.new_channel()).collect();
        for inbox in &inboxes {
            layer
                .group_add(&room, inbox.name())
                .await
                .expect("memory never fails");
        }
        layer
            .group_send(&room, Payload::from("12345"))
            .await
            .expect("memory never fails");
        assert_eq!(
            (layer.group_sends(), layer.sends(), layer.bytes()),
            (1, 0, 5)
        );
    }
}
