//! Mutes on one server (SQLite, in-memory layer): the scenario of
//! `whisper_tests::mutes` with both "nodes" the same server, and a mute
//! that outlasts a restart. The two-node run is in whisper-server's
//! `multinode.rs`.

use serde_json::json;
use whisper_tests::{Nodes, TestServer, mutes};

#[tokio::test]
async fn a_mute_holds_at_once_and_an_unmute_lifts_it() {
    let server = TestServer::start().await;
    mutes::a_mute_holds_at_once_on_every_node(Nodes::one(&server)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_mute_survives_a_restart() {
    let mut server = TestServer::start().await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", true).await;
    let bob = server.user("bob", false).await;
    let bob_id = server.me(&bob).await["id"].as_i64().expect("an id");
    let mut staff = server.connect_v2(&ann).await;
    let muted = staff
        .request(json!({"command": "mute", "id": 1, "room": room, "user": bob_id, "seconds": 3600}))
        .await;
    let until = muted["result"]["until"].as_i64().expect("until");
    drop(staff);

    server.restart().await;
    let mut bob_v2 = server.connect_v2(&bob).await;
    let joined = bob_v2
        .request(json!({"command": "join", "id": 2, "room": room}))
        .await;
    assert_eq!(joined["result"]["room"], room, "{joined}");
    let refused = bob_v2
        .request(json!({"command": "send", "id": 3, "room": room, "text": "hi"}))
        .await;
    assert_eq!(
        refused,
        json!({"id": 3, "error": {"code": "MUTED", "room": room, "until": until}})
    );
    let mut bob_v1 = server.connect(&bob).await;
    bob_v1.join(room).await;
    bob_v1
        .send_json(json!({"command": "send", "room": room, "message": "hi"}))
        .await;
    assert_eq!(bob_v1.recv_json().await, json!({"error": "MUTED"}));
    server.stop().await;
}
