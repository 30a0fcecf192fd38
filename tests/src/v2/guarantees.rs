//! Protocol v2's guarantees (docs/protocol.md §18 to §24) as scenarios,
//! each run on one server with SQLite and the in-memory layer
//! (`tests/tests/v2.rs`) and on two nodes sharing PostgreSQL and Redis
//! (`bins/whisper-server/tests/v2_cluster.rs`).
//!
//! A scenario puts its clients on [`Nodes::a`] and [`Nodes::b`]: on a
//! cluster they are different processes, so whatever one client does
//! reaches the others through Redis and the shared database; on one server
//! they are the same address, and the scenario is the single-node one.

use std::time::Duration;

use serde_json::{Value, json};

use super::{message_list, seqs, texts};
use crate::{Nodes, Session, Site, WsClient};

/// What the v2 scenarios set up on either node.
impl Nodes<'_> {
    /// Creates a user and logs it in (sessions live in the database, so
    /// the session works on either node).
    async fn user(&self, name: &str) -> Session {
        self.db.create_user(name, "correct horse", false).await;
        self.a.login(name, "correct horse").await.expect("login")
    }

    /// A fresh room anyone may join.
    async fn room(&self) -> i64 {
        self.db.create_room("Lobby", false).await
    }
}

/// Opens a v2 socket on `site` and joins `room`; returns the socket and
/// the join result.
async fn v2_member(site: &Site, session: &Session, room: i64) -> (WsClient, Value) {
    let mut client = site.connect_v2(session).await;
    let joined = client
        .request(json!({"command": "join", "room": room}))
        .await;
    assert!(joined["result"]["epoch"].is_string(), "{joined}");
    (client, joined["result"].clone())
}

/// Opens a v1 socket on `site` and joins `room`.
async fn v1_member(site: &Site, session: &Session, room: i64) -> WsClient {
    let mut client = site.connect(session).await;
    client.join(room).await;
    client
}

/// `command` with another request id.
fn with_id(command: &Value, id: u64) -> Value {
    let mut command = command.clone();
    command["id"] = json!(id);
    command
}

/// The v1 MESSAGE frame `username` saying `text` in `room`.
fn v1_message(room: i64, username: &str, text: &str) -> Value {
    json!({"msg_type": 0, "room": room, "username": username, "message": text})
}

/// The texts of the next `count` v1 MESSAGE frames, passing over ENTER
/// notices; panics on any other frame.
async fn next_v1_messages(client: &mut WsClient, count: usize) -> Vec<String> {
    let mut said = Vec::with_capacity(count);
    while said.len() < count {
        let frame = client.recv_json().await;
        if frame["msg_type"] == 4 {
            continue;
        }
        assert_eq!(frame["msg_type"], 0, "expected a MESSAGE, got {frame}");
        said.push(frame["message"].as_str().expect("message").to_owned());
    }
    said
}

/// A late joiner on `b` gets the latest page of what was said on `a`,
/// with its seqs, author and the times the sends were acknowledged with,
/// and pages back with `history` until `has_more` is false.
pub async fn a_late_joiner_gets_the_latest_page_and_pages_back(nodes: Nodes<'_>) {
    let room = nodes.room().await;
    let ann = nodes.user("ann").await;
    let (mut on_a, _) = v2_member(&nodes.a, &ann, room).await;
    let mut acknowledged = Vec::new();
    for n in 1..=60 {
        let sent = on_a.say(room, &format!("m{n}")).await;
        assert_eq!(sent["seq"], n);
        acknowledged.push(sent);
    }

    let bob = nodes.user("bob").await;
    let (mut on_b, joined) = v2_member(&nodes.b, &bob, room).await;
    assert_eq!(joined["seq"], 60);
    assert_eq!(joined["recovered"], false);
    let latest = &joined["messages"];
    assert_eq!(seqs(latest), (11..=60).collect::<Vec<_>>());
    let expected: Vec<String> = (11..=60).map(|n| format!("m{n}")).collect();
    assert_eq!(texts(latest), expected);
    for (message, sent) in message_list(latest).iter().zip(&acknowledged[10..]) {
        assert_eq!(message["user"]["username"], "ann", "{message}");
        assert_eq!(message["ts"], sent["ts"], "the stored time, everywhere");
    }

    let page = on_b
        .request(json!({"command": "history", "room": room, "before": 11, "limit": 8}))
        .await;
    assert_eq!(
        seqs(&page["result"]["messages"]),
        (3..=10).collect::<Vec<_>>()
    );
    assert_eq!(page["result"]["has_more"], true);
    assert_eq!(page["result"]["epoch"], joined["epoch"]);
    let last = on_b
        .request(json!({"command": "history", "room": room, "before": 3}))
        .await;
    assert_eq!(texts(&last["result"]["messages"]), ["m1", "m2"]);
    assert_eq!(last["result"]["has_more"], false);
}

/// Bob's socket on `b` drops; Ann, on `a`, talks while he is away and
/// keeps talking while he rejoins on `b` with `since`: the recovered
/// messages and the live events that follow are every seq after his, once
/// each, in order, across the switch from one to the other.
pub async fn a_reconnect_recovers_without_gap_or_duplicate_while_others_talk(nodes: Nodes<'_>) {
    const AWAY: u64 = 5;
    const LIVE: u64 = 40;
    let room = nodes.room().await;
    let ann = nodes.user("ann").await;
    let bob = nodes.user("bob").await;
    let (mut on_a, _) = v2_member(&nodes.a, &ann, room).await;
    on_a.say(room, "before").await;

    let (on_b, joined) = v2_member(&nodes.b, &bob, room).await;
    let seen = joined["seq"].as_u64().expect("seq");
    drop(on_b);
    for n in 0..AWAY {
        on_a.say(room, &format!("away {n}")).await;
    }

    // Ann keeps talking while Bob rejoins: the switch from the result to
    // live events must lose and repeat nothing.
    let talking = tokio::spawn(async move {
        for n in 0..LIVE {
            on_a.send_json(json!({"command": "send", "room": room, "text": format!("live {n}")}))
                .await;
        }
        on_a
    });
    let mut on_b = nodes.b.connect_v2(&bob).await;
    let since = json!({"seq": seen, "epoch": joined["epoch"]});
    let recovered = on_b
        .request(json!({"command": "join", "room": room, "since": since}))
        .await;
    assert_eq!(recovered["result"]["recovered"], true, "{recovered}");
    let mut got = seqs(&recovered["result"]["messages"]);
    assert_eq!(got.first(), Some(&(seen + 1)));
    let last = seen + AWAY + LIVE;
    while got.last() != Some(&last) {
        let event = on_b.recv_event().await;
        if event["event"] == "message" {
            got.push(event["seq"].as_u64().expect("seq"));
        }
    }
    assert_eq!(got, ((seen + 1)..=last).collect::<Vec<_>>());
    on_b.expect_silence(Duration::from_millis(200)).await;
    talking.await.expect("sender");
}

/// Ann sends with a nonce on `a` and retries it there, then from a second
/// socket on `b`: every retry is answered with the first send's result,
/// and Bob (v1) and Carol (v2), on `b`, hear the message once. Ann's next
/// message is the next seq, and the next thing they hear.
pub async fn a_retried_nonce_is_acknowledged_again_but_heard_once(nodes: Nodes<'_>) {
    let room = nodes.room().await;
    let ann = nodes.user("ann").await;
    let bob = nodes.user("bob").await;
    let carol = nodes.user("carol").await;
    let mut bob_v1 = v1_member(&nodes.b, &bob, room).await;
    let (mut carol_v2, _) = v2_member(&nodes.b, &carol, room).await;
    let (mut ann_on_a, _) = v2_member(&nodes.a, &ann, room).await;

    let send = json!({"command": "send", "id": 1, "room": room, "text": "once", "nonce": "k-1"});
    let first = ann_on_a.request(send.clone()).await;
    assert_eq!(first["result"]["seq"], 1, "{first}");
    let again = ann_on_a.request(with_id(&send, 2)).await;
    assert_eq!(again, json!({"id": 2, "result": first["result"]}));

    // A retry from another socket of Ann's, as after a reconnect to
    // another node: the nonce belongs to the user and the room.
    let (mut ann_on_b, joined) = v2_member(&nodes.b, &ann, room).await;
    assert_eq!(texts(&joined["messages"]), ["once"]);
    ann_on_b.send_json(with_id(&send, 3)).await;
    assert_eq!(
        ann_on_b.recv_json().await,
        json!({"id": 3, "result": first["result"]}),
        "the retry's answer, and no event before it"
    );

    let after = ann_on_a.say(room, "after").await;
    assert_eq!(after["seq"], 2, "the retries stored nothing");
    assert_eq!(next_v1_messages(&mut bob_v1, 2).await, ["once", "after"]);
    let heard = carol_v2.next_messages(2).await;
    assert_eq!(seqs(&heard), [1, 2]);
    assert_eq!(texts(&heard), ["once", "after"]);
    assert_eq!(seqs(&ann_on_b.next_messages(1).await), [2]);
}

/// Bob speaks v1 on `a`, Carol v2 on `b`, in one room: Bob's message is
/// numbered, stored and reaches Carol as a v2 message event; Carol's
/// reaches Bob as the v1 frame; both are in the room's history.
pub async fn v1_and_v2_members_hear_each_other_and_v1_sends_are_stored(nodes: Nodes<'_>) {
    let room = nodes.room().await;
    let bob = nodes.user("bob").await;
    let carol = nodes.user("carol").await;
    let (mut carol_v2, _) = v2_member(&nodes.b, &carol, room).await;
    let mut bob_v1 = v1_member(&nodes.a, &bob, room).await;
    let enter = carol_v2.recv_event().await;
    assert_eq!(enter["event"], "enter", "{enter}");
    assert_eq!(enter["user"]["username"], "bob");

    bob_v1
        .send_json(json!({"command": "send", "room": room, "message": "from v1"}))
        .await;
    assert_eq!(
        bob_v1.recv_json().await,
        v1_message(room, "bob", "from v1"),
        "the v1 echo, unchanged"
    );
    let heard = carol_v2.recv_event().await;
    assert_eq!(heard["event"], "message", "{heard}");
    assert_eq!(heard["seq"], 1);
    assert_eq!(heard["user"], enter["user"]);
    assert_eq!(heard["text"], "from v1");
    assert!(heard.get("nonce").is_none(), "{heard}");

    let sent = carol_v2
        .request(json!({"command": "send", "room": room, "text": "from v2", "nonce": "c-1"}))
        .await;
    assert_eq!(sent["result"]["seq"], 2, "{sent}");
    assert_eq!(
        bob_v1.recv_json().await,
        v1_message(room, "carol", "from v2")
    );

    let history = carol_v2.whole_history(room).await;
    assert_eq!(seqs(&history), [1, 2]);
    assert_eq!(texts(&history), ["from v1", "from v2"]);
    assert_eq!(history[0]["user"]["username"], "bob");
    assert_eq!(history[1]["user"]["username"], "carol");
}

/// Ann, on `a`, types: Bob's v2 socket on `b` gets the notice, Dave's v1
/// socket there gets nothing, and the notice is not stored. Ann's next
/// message is the next thing both hear, and all the history holds.
pub async fn typing_reaches_the_others_and_is_not_stored(nodes: Nodes<'_>) {
    let room = nodes.room().await;
    let ann = nodes.user("ann").await;
    let bob = nodes.user("bob").await;
    let dave = nodes.user("dave").await;
    let mut dave_v1 = v1_member(&nodes.b, &dave, room).await;
    let (mut bob_v2, _) = v2_member(&nodes.b, &bob, room).await;
    let (mut ann_v2, _) = v2_member(&nodes.a, &ann, room).await;
    let enter = bob_v2.recv_event().await;
    assert_eq!(enter["event"], "enter", "{enter}");

    let typed = ann_v2
        .request(json!({"command": "typing", "id": 4, "room": room}))
        .await;
    assert_eq!(typed, json!({"id": 4, "result": {"room": room}}));
    assert_eq!(
        bob_v2.recv_event().await,
        json!({"event": "typing", "room": room, "user": enter["user"]})
    );

    ann_v2.say(room, "fence").await;
    let heard = bob_v2.recv_event().await;
    assert_eq!(
        (heard["event"].as_str(), heard["text"].as_str()),
        (Some("message"), Some("fence")),
        "{heard}"
    );
    assert_eq!(next_v1_messages(&mut dave_v1, 1).await, ["fence"]);
    let history = bob_v2.whole_history(room).await;
    assert_eq!(texts(&history), ["fence"]);
}
