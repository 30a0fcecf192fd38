//! "Acknowledged" means stored: a server killed with SIGKILL in the middle
//! of a burst of v2 sends has, once restarted, every message it had
//! acknowledged in its history, in order, with no gap in the seqs.

use serde_json::json;
use whisper_tests::v2::seqs;
use whisper_tests::{ServerProcess, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_whisper-server");

/// Messages offered in the burst; the kill comes long before the end.
const BURST: usize = 3000;
/// Acknowledgements read before the kill.
const ACKED_BEFORE_KILL: usize = 300;
/// Sends written ahead of the acknowledgements read.
const PIPELINE: usize = 32;

#[tokio::test]
async fn acknowledged_messages_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
    let args = [
        "--database-url",
        &url,
        "--max-messages-per-second",
        "100000",
    ];
    let server = ServerProcess::start(BIN, &args);
    let db = TestDatabase::connect(&url).await;
    db.create_user("ann", "correct horse", false).await;
    let room = db.create_room("Lobby", false).await;
    let session = server.login("ann", "correct horse").await.expect("login");
    let mut ann = server.connect_v2(&session).await;
    ann.request(json!({"command": "join", "room": room})).await;

    let mut acked = Vec::new();
    for n in 0..BURST {
        let send = json!({"command": "send", "id": n, "room": room, "text": format!("m{n}"), "nonce": format!("n{n}")});
        ann.send_json(send).await;
        if n < PIPELINE {
            continue;
        }
        // Replies and the own copies of messages, interleaved: keep the
        // acknowledgements.
        let frame = ann.recv_json().await;
        if frame["result"]["seq"].is_u64() {
            acked.push(frame);
        }
        if acked.len() >= ACKED_BEFORE_KILL {
            break;
        }
    }
    drop(server); // SIGKILL, mid-burst.
    drop(ann);

    let server = ServerProcess::start(BIN, &args);
    let session = server.login("ann", "correct horse").await.expect("login");
    let mut ann = server.connect_v2(&session).await;
    let history = ann.whole_history(room).await;
    let stored = seqs(&history);
    let expected: Vec<u64> = (1..=stored.len() as u64).collect();
    assert_eq!(stored, expected, "no gap, in order");
    assert!(stored.len() >= acked.len());
    for ack in &acked {
        let id = ack["id"].as_u64().expect("id");
        let seq = ack["result"]["seq"].as_u64().expect("seq");
        let stored = &history[usize::try_from(seq - 1).expect("index")];
        assert_eq!(stored["text"], format!("m{id}"), "ack {ack}");
    }
}
