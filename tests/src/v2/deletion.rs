//! Deleting messages (docs/protocol.md §19.7) as scenarios, run on one
//! server (`tests/tests/v2.rs`) and on two nodes sharing PostgreSQL and
//! Redis (`bins/whisper-server/tests/v2_cluster.rs`): who may delete, what
//! every member on every node is told, and what history shows after.

use std::time::Duration;

use serde_json::{Value, json};

use super::message_list;
use crate::{Nodes, Session, Site, WsClient};

/// How long a v1 member is watched for a frame it must not get.
const QUIET: Duration = Duration::from_millis(500);

const PASSWORD: &str = "correct horse";

/// Creates a user, staff or not, and logs it in on `site`.
async fn user(nodes: &Nodes<'_>, site: &Site, name: &str, is_staff: bool) -> Session {
    nodes.db.create_user(name, PASSWORD, is_staff).await;
    site.login(name, PASSWORD).await.expect("login")
}

/// A v2 socket on `site` that has joined `room`.
async fn v2_member(site: &Site, session: &Session, room: i64) -> WsClient {
    let mut client = site.connect_v2(session).await;
    let joined = client
        .request(json!({"command": "join", "room": room}))
        .await;
    assert!(joined["result"]["epoch"].is_string(), "{joined}");
    client
}

/// The `delete` command for `seq` in `room`.
fn delete(room: i64, seq: u64) -> Value {
    json!({"command": "delete", "room": room, "seq": seq})
}

/// The next `deleted` event, passing over other events (messages, enters).
async fn next_deleted(client: &mut WsClient) -> Value {
    loop {
        let event = client.recv_event().await;
        if event["event"] == "deleted" {
            return event;
        }
    }
}

/// `room`'s stored messages as (seq, text, deleted), read with `history`.
async fn stored(client: &mut WsClient, room: i64) -> Vec<(u64, Value, Value)> {
    let page = client
        .request(json!({"command": "history", "room": room}))
        .await;
    message_list(&page["result"]["messages"])
        .iter()
        .map(|message| {
            assert!(
                message.get("text").is_none() || message.get("deleted").is_none(),
                "{message}"
            );
            (
                message["seq"].as_u64().expect("seq"),
                message["text"].clone(),
                message["deleted"].clone(),
            )
        })
        .collect()
}

/// Ann, on `a`, says two things. Bob (not staff, on `b`) may not delete
/// hers; a staff member on `b` deletes one, Ann her other: the v2 members
/// on both nodes are told, the v1 member is not, and history on either
/// node shows the seqs kept and the texts gone; the moderation record
/// holds the staff member's deletion. A seq that holds no message is
/// `MESSAGE_NOT_FOUND`.
pub async fn the_author_or_staff_delete_and_every_node_sees_it(nodes: Nodes<'_>) {
    let room = nodes.db.create_room("Lobby", false).await;
    let ann = user(&nodes, &nodes.a, "ann", false).await;
    let bob = user(&nodes, &nodes.b, "bob", false).await;
    let moderator = user(&nodes, &nodes.b, "mo", true).await;
    let carol = user(&nodes, &nodes.b, "carol", false).await;
    let dan = user(&nodes, &nodes.a, "dan", false).await;
    let mut ann_on_a = v2_member(&nodes.a, &ann, room).await;
    let mut bob_on_b = v2_member(&nodes.b, &bob, room).await;
    let mut staff_on_b = v2_member(&nodes.b, &moderator, room).await;
    // Watchers, one per node, that send nothing: `request` passes over
    // the events that come before its reply.
    let mut dan_on_a = v2_member(&nodes.a, &dan, room).await;
    let mut carol_v1 = nodes.b.connect(&carol).await;
    carol_v1.join(room).await;
    let rude = ann_on_a.say(room, "rude").await["seq"]
        .as_u64()
        .expect("seq");
    let regret = ann_on_a.say(room, "regret").await["seq"]
        .as_u64()
        .expect("seq");
    for text in ["rude", "regret"] {
        let frame = carol_v1.recv_json().await;
        assert_eq!(frame["message"], text, "{frame}");
    }

    let refused = bob_on_b.request(delete(room, rude)).await;
    assert_eq!(
        refused["error"],
        json!({"code": "ROOM_ACCESS_DENIED", "room": room})
    );
    let missing = staff_on_b.request(delete(room, regret + 1)).await;
    assert_eq!(
        missing["error"],
        json!({"code": "MESSAGE_NOT_FOUND", "room": room})
    );
    assert_eq!(
        stored(&mut bob_on_b, room).await,
        [
            (rude, json!("rude"), Value::Null),
            (regret, json!("regret"), Value::Null)
        ]
    );

    let by_staff = staff_on_b.request(delete(room, rude)).await;
    assert_eq!(by_staff["result"], json!({"room": room, "seq": rude}));
    let own = ann_on_a.request(delete(room, regret)).await;
    assert_eq!(own["result"], json!({"room": room, "seq": regret}));
    // Two sockets deleted, on two nodes: their events may come in either
    // order.
    for member in [&mut dan_on_a, &mut bob_on_b] {
        let mut told = Vec::new();
        for _ in 0..2 {
            let event = next_deleted(member).await;
            assert_eq!(event["room"], room, "{event}");
            told.push(event["seq"].as_u64().expect("seq"));
        }
        told.sort_unstable();
        assert_eq!(told, [rude, regret]);
    }
    carol_v1.expect_silence(QUIET).await;

    let erased = [
        (rude, Value::Null, json!(true)),
        (regret, Value::Null, json!(true)),
    ];
    assert_eq!(stored(&mut ann_on_a, room).await, erased);
    assert_eq!(stored(&mut bob_on_b, room).await, erased);
    // A join (on the other node) returns them deleted too, with their
    // author and time.
    let mut late_on_b = nodes.b.connect_v2(&bob).await;
    let joined = late_on_b
        .request(json!({"command": "join", "room": room}))
        .await;
    let first = &joined["result"]["messages"][0];
    assert_eq!(
        (&first["seq"], &first["deleted"], &first["user"]["username"]),
        (&json!(rude), &json!(true), &json!("ann")),
        "{first}"
    );
    assert!(
        first["ts"].is_i64() && first.get("text").is_none(),
        "{first}"
    );
    // The staff member's deletion is a moderation action; Ann's of her
    // own message is not.
    assert_eq!(
        nodes.db.moderation_record().await,
        [format!(
            "mo delete-message message {rude} in room {room} by user ann"
        )]
    );
}
