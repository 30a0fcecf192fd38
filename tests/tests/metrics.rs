//! `/metrics` counts what happened, in Prometheus text.

use serde_json::json;
use whisper_tests::TestServer;
use whisper_tests::metric_sample as sample;

#[tokio::test]
async fn metrics_count_connections_rooms_messages_and_deliveries() {
    let server = TestServer::start_with(|config| config.max_messages_per_second = 2).await;
    let room = server.create_room("Lobby", false).await;
    let (mut a, mut b) = server.ann_and_bob_in(room).await;
    a.send_json(json!({"command": "send", "room": room, "message": "one"}))
        .await;
    a.recv_json().await;
    b.recv_json().await;
    // The burst (4) is spent: the send and three room_users pass, the rest
    // drop (the joins took from the joins' own bucket).
    for _ in 0..6 {
        a.room_users(room).await;
    }

    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE whisper_connections gauge"), "{text}");
    assert_eq!(sample(&text, "whisper_connections"), 2.0);
    assert_eq!(sample(&text, "whisper_rooms"), 1.0);
    // Ann: join, send, six room_users; Bob: join.
    assert_eq!(sample(&text, "whisper_messages_received_total"), 9.0);
    // ENTER of Ann to Bob, then "one" to both.
    assert_eq!(sample(&text, "whisper_deliveries_total"), 3.0);
    assert!(sample(&text, "whisper_frames_dropped_total") >= 2.0);
    assert_eq!(sample(&text, "whisper_slow_consumer_closes_total"), 0.0);
    assert_eq!(sample(&text, "whisper_notices_dropped_total"), 0.0);
    assert_eq!(sample(&text, "whisper_layer_errors_total"), 0.0);
    assert!(sample(&text, "whisper_http_requests_total") >= 4.0);
    server.stop().await;
}
