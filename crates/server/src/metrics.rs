//! `/metrics`: Prometheus text for one node.
//!
//! The hot path only bumps atomic counters (prometheus-client's `Counter`
//! is an `AtomicU64` behind an `Arc`); everything else (open connections,
//! live rooms, the layer's own counts) is read when scraped, so nothing is
//! kept twice.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use whisper_chat::{Chat, MessageLog, RoomDirectory};
use whisper_rooms::ChannelLayer;

/// Counters bumped by the transport and by requests; the chat rules keep
/// their own ([`whisper_chat::Counters`]), read here when scraped.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Frames written to WebSockets from inboxes (room events).
    pub deliveries: Counter,
    /// HTTP requests served (WebSocket handshakes included).
    pub http_requests: Counter,
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render<L: ChannelLayer, D: RoomDirectory, M: MessageLog>(
        &self,
        chat: &Chat<L, D, M>,
        connections: usize,
    ) -> String {
        let layer = chat.layer();
        let counters = chat.counters();
        let mut registry = Registry::with_prefix("whisper");
        registry.register(
            "connections",
            "Open WebSockets",
            ConstGauge::new(connections as i64),
        );
        registry.register(
            "rooms",
            "Rooms with members on this node",
            ConstGauge::new(layer.room_count() as i64),
        );
        registry.register(
            "messages_received",
            "Frames received on WebSockets",
            ConstCounter::new(counters.frames_received()),
        );
        registry.register(
            "deliveries",
            "Room events written to WebSockets",
            self.deliveries.clone(),
        );
        registry.register(
            "frames_dropped",
            "Frames refused for exceeding the rate limit",
            ConstCounter::new(counters.frames_rate_limited()),
        );
        registry.register(
            "slow_consumer_closes",
            "Connections closed for falling behind",
            ConstCounter::new(layer.slow_consumer_closes()),
        );
        registry.register(
            "notices_dropped",
            "Presence and typing notices dropped for connections falling behind",
            ConstCounter::new(layer.expendables_dropped()),
        );
        registry.register(
            "layer_errors",
            "Channel layer calls that failed",
            ConstCounter::new(counters.layer_errors()),
        );
        registry.register(
            "http_requests",
            "HTTP requests served",
            self.http_requests.clone(),
        );
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}
