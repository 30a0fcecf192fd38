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
use whisper_rooms::ChannelLayer;

/// Counters bumped by connections and requests.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Frames received on WebSockets.
    pub messages_received: Counter,
    /// Frames written to WebSockets from inboxes (room events).
    pub deliveries: Counter,
    /// Frames refused unread because the connection exceeded its rate.
    pub frames_dropped: Counter,
    /// Channel-layer calls that failed (answered `UNAVAILABLE`).
    pub layer_errors: Counter,
    /// HTTP requests served (WebSocket handshakes included).
    pub http_requests: Counter,
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render<L: ChannelLayer>(&self, layer: &L, connections: usize) -> String {
        let mut registry = Registry::with_prefix("whisper");
        registry.register(
            "connections",
            "Open WebSockets",
            ConstGauge::new(connections as i64),
        );
        registry.register(
            "rooms",
            "Rooms with members on this node",
            ConstGauge::new(layer.group_count() as i64),
        );
        registry.register(
            "messages_received",
            "Frames received on WebSockets",
            self.messages_received.clone(),
        );
        registry.register(
            "deliveries",
            "Room events written to WebSockets",
            self.deliveries.clone(),
        );
        registry.register(
            "frames_dropped",
            "Frames refused unread for exceeding the rate limit",
            self.frames_dropped.clone(),
        );
        registry.register(
            "slow_consumer_closes",
            "Connections closed for falling behind",
            ConstCounter::new(layer.slow_consumer_closes()),
        );
        registry.register(
            "layer_errors",
            "Channel layer calls that failed",
            self.layer_errors.clone(),
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
