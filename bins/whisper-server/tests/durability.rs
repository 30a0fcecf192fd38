//! "Acknowledged" means stored: a server killed with SIGKILL in the middle
//! of a burst of v2 sends has every message it had acknowledged in its
//! history, in order, with no gap in the seqs, and numbering goes on after
//! the latest. One scenario, two setups: one node on SQLite, restarted
//! after the kill; two nodes on PostgreSQL and Redis, one killed while the
//! other stays up.

use serde_json::json;
use whisper_tests::v2::seqs;
use whisper_tests::{Cluster, ServerProcess, Session, Site, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_whisper-server");

/// Messages offered in the burst; the kill comes long before the end.
const BURST: usize = 3000;
/// Acknowledgements read before the kill.
const ACKED_BEFORE_KILL: usize = 300;
/// Sends written ahead of the acknowledgements read.
const PIPELINE: usize = 32;

/// Where the burst is sent, and where the history is read once the node
/// that took it is dead.
trait Setup {
    /// The node that takes the burst and is killed.
    fn sender(&mut self) -> &mut ServerProcess;
    /// A node to read the history through after the kill: the sender
    /// restarted, or another node.
    async fn survivor(&mut self) -> Site;
}

/// One node on a SQLite file, started again after the kill.
struct Sqlite {
    server: ServerProcess,
    args: Vec<String>,
}

impl Setup for Sqlite {
    fn sender(&mut self) -> &mut ServerProcess {
        &mut self.server
    }

    async fn survivor(&mut self) -> Site {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.server = ServerProcess::start(BIN, &args);
        *self.server
    }
}

/// Two nodes on PostgreSQL and Redis: the burst goes to A, B reads.
impl Setup for Cluster {
    fn sender(&mut self) -> &mut ServerProcess {
        &mut self.a
    }

    async fn survivor(&mut self) -> Site {
        *self.b
    }
}

/// Ann pipelines a burst of sends with nonces into `room` through the
/// setup's sender, which is killed once [`ACKED_BEFORE_KILL`] are
/// acknowledged. Through the survivor, the room's history must then be
/// seqs 1..N with every acknowledged message at its seq, and Ann's next
/// message must be N + 1. Returns the acknowledged seqs, in order.
async fn acknowledged_sends_survive_sigkill(
    setup: &mut impl Setup,
    ann: &Session,
    room: i64,
) -> Vec<u64> {
    let mut sending = setup.sender().connect_v2(ann).await;
    sending
        .request(json!({"command": "join", "room": room}))
        .await;
    let mut acked = Vec::new();
    for n in 0..BURST {
        let send = json!({"command": "send", "id": n, "room": room, "text": format!("m{n}"), "nonce": format!("n{n}")});
        sending.send_json(send).await;
        if n < PIPELINE {
            continue;
        }
        // Replies and the own copies of messages, interleaved: keep the
        // acknowledgements.
        let frame = sending.recv_json().await;
        if frame["result"]["seq"].is_u64() {
            acked.push(frame);
        }
        if acked.len() >= ACKED_BEFORE_KILL {
            break;
        }
    }
    setup.sender().kill(); // Mid-burst: dozens of sends are under way.
    drop(sending);

    let mut reading = setup.survivor().await.connect_v2(ann).await;
    let history = reading.whole_history(room).await;
    let stored = seqs(&history);
    let last = stored.len() as u64;
    assert_eq!(stored, (1..=last).collect::<Vec<_>>(), "no gap, in order");
    assert!(stored.len() >= acked.len());
    eprintln!(
        "{} acknowledged before the kill, {last} stored",
        acked.len()
    );
    for ack in &acked {
        let id = ack["id"].as_u64().expect("id");
        let seq = ack["result"]["seq"].as_u64().expect("seq");
        let index = usize::try_from(seq - 1).expect("index");
        assert_eq!(history[index]["text"], format!("m{id}"), "ack {ack}");
    }
    reading
        .request(json!({"command": "join", "room": room}))
        .await;
    assert_eq!(reading.say(room, "after").await["seq"], last + 1);
    acked
        .iter()
        .map(|ack| ack["result"]["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test]
async fn acknowledged_messages_survive_sigkill_on_sqlite() {
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
    let ann = server.login("ann", "correct horse").await.expect("login");
    let mut setup = Sqlite {
        server,
        args: args.map(str::to_owned).to_vec(),
    };
    acknowledged_sends_survive_sigkill(&mut setup, &ann, room).await;
}

/// Node A is killed, B stays up and reads. Also: what A acknowledged had
/// reached Bob, on B, before A died (a send is acknowledged once stored
/// and published).
#[tokio::test]
async fn acknowledged_messages_survive_sigkill_of_a_node_on_postgres() {
    let mut cluster = Cluster::start(BIN).await;
    let room = cluster.db.create_room("Lobby", false).await;
    let ann = cluster.user(&cluster.a, "ann", false).await;
    let bob = cluster.user(&cluster.b, "bob", false).await;
    let mut bob_on_b = cluster.b.connect_v2(&bob).await;
    bob_on_b
        .request(json!({"command": "join", "room": room}))
        .await;

    let acked = acknowledged_sends_survive_sigkill(&mut cluster, &ann, room).await;
    let last_acked = *acked.last().expect("acknowledgements");
    let heard = bob_on_b
        .next_messages(usize::try_from(last_acked).expect("a count"))
        .await;
    assert_eq!(seqs(&heard), (1..=last_acked).collect::<Vec<_>>());
}
