//! Mutes, as scenarios run on one server (`tests/tests/mutes.rs`) and on
//! two nodes sharing PostgreSQL and Redis
//! (`bins/whisper-server/tests/multinode.rs`): staff on node A mute a user
//! whose sockets are on node B; the user's sends are refused there within
//! [`AT_ONCE`], the others see nothing of them, and an unmute on node B
//! frees the user's socket on node A. Both are in the moderation record.

use std::time::Duration;

use serde_json::{Value, json};

use crate::access::AT_ONCE;
use crate::{Nodes, Session, WsClient};

/// The password every scenario user has.
const PASSWORD: &str = "correct horse";

/// A user created and logged in on `site`, with its id.
async fn person(nodes: Nodes<'_>, name: &str, is_staff: bool) -> (Session, i64) {
    nodes.db.create_user(name, PASSWORD, is_staff).await;
    let session = nodes.a.login(name, PASSWORD).await.expect("login");
    let id = nodes.a.me(&session).await["id"]
        .as_i64()
        .expect("/api/me gives the id");
    (session, id)
}

/// `{"command":"send",...}` for a v2 socket.
fn send(id: u64, room: i64, text: &str) -> Value {
    json!({"command": "send", "id": id, "room": room, "text": text})
}

/// The next frame, which must come within [`AT_ONCE`].
async fn at_once(client: &mut WsClient, what: &str) -> Value {
    match tokio::time::timeout(AT_ONCE, client.recv_json()).await {
        Ok(frame) => frame,
        Err(_) => panic!("{what}: nothing within {AT_ONCE:?}"),
    }
}

/// Asserts a v2 refusal is `MUTED` for `room`, and returns its `until`.
fn muted_until(refusal: &Value, room: i64) -> i64 {
    assert_eq!(refusal["error"]["code"], "MUTED", "{refusal}");
    assert_eq!(refusal["error"]["room"], room, "{refusal}");
    refusal["error"]["until"]
        .as_i64()
        .unwrap_or_else(|| panic!("no until in {refusal}"))
}

/// Staff's mute on node A holds at once for the user's sockets on node B
/// (v2 refused with `MUTED` and its end, told by a `muted` event; v1
/// refused with `MUTED`), the others there see nothing of the attempts, a
/// non-staff member cannot mute or unmute (`ROOM_ACCESS_DENIED`), and an
/// unmute asked on node B frees the user's socket on node A at once.
pub async fn a_mute_holds_at_once_on_every_node(nodes: Nodes<'_>) {
    let room = nodes.db.create_room("Lobby", false).await;
    let (ann, _) = person(nodes, "ann", true).await;
    let (bob, bob_id) = person(nodes, "bob", false).await;
    let (cid, cid_id) = person(nodes, "cid", false).await;
    let mut ann_on_a = nodes.a.connect_v2(&ann).await;
    let mut bob_on_b = nodes.b.connect_v2(&bob).await;
    let mut bob_v1_on_b = nodes.b.connect(&bob).await;
    let mut bob_on_a = nodes.a.connect_v2(&bob).await;
    let mut cid_on_b = nodes.b.connect_v2(&cid).await;
    for client in [&mut bob_on_b, &mut bob_on_a, &mut cid_on_b] {
        let joined = client
            .request(json!({"command": "join", "id": 1, "room": room}))
            .await;
        assert_eq!(joined["result"]["room"], room, "{joined}");
    }
    assert_eq!(bob_v1_on_b.join(room).await["join"], room.to_string());

    // Cid, who is not staff, may not mute Bob nor lift a mute.
    let denied = json!({"id": 2, "error": {"code": "ROOM_ACCESS_DENIED", "room": room}});
    let mute = json!({"command": "mute", "id": 2, "room": room, "user": bob_id, "seconds": 600});
    assert_eq!(cid_on_b.request(mute.clone()).await, denied);
    let unmute_cid = json!({"command": "unmute", "id": 2, "room": room, "user": cid_id});
    assert_eq!(cid_on_b.request(unmute_cid).await, denied);
    // A user id that names nobody.
    let nobody =
        json!({"command": "mute", "id": 3, "room": room, "user": bob_id + 1000, "seconds": 60});
    assert_eq!(
        ann_on_a.request(nobody).await,
        json!({"id": 3, "error": {"code": "BAD_REQUEST", "room": room}})
    );

    // Ann, on node A and not in the room, mutes Bob.
    let muted = ann_on_a.request(mute).await;
    let until = muted["result"]["until"].as_i64().expect("until");
    assert_eq!(
        muted,
        json!({"id": 2, "result": {"room": room, "user": bob_id, "until": until}})
    );
    // Bob's v2 sockets hear of it on both nodes (past the ENTER notices).
    for (client, node) in [(&mut bob_on_b, "B"), (&mut bob_on_a, "A")] {
        let event = loop {
            let frame = at_once(client, node).await;
            if frame["event"] != "enter" {
                break frame;
            }
        };
        assert_eq!(
            event,
            json!({"event": "muted", "room": room, "until": until}),
            "{node}"
        );
    }
    bob_on_b.send_json(send(4, room, "let me talk")).await;
    assert_eq!(muted_until(&at_once(&mut bob_on_b, "B").await, room), until);
    bob_v1_on_b
        .send_json(json!({"command": "send", "room": room, "message": "please"}))
        .await;
    // Past the ENTER notices of the v2 sockets that joined after it.
    let refusal = loop {
        let frame = at_once(&mut bob_v1_on_b, "B, v1").await;
        if frame["msg_type"] != 4 {
            break frame;
        }
    };
    assert_eq!(refusal, json!({"error": "MUTED"}));
    bob_on_a.send_json(send(5, room, "from A")).await;
    assert_eq!(muted_until(&at_once(&mut bob_on_a, "A").await, room), until);
    // Cid saw nothing of Bob's attempts.
    loop {
        let frame = tokio::time::timeout(Duration::from_millis(300), cid_on_b.recv_json()).await;
        match frame {
            Ok(frame) => assert_eq!(frame["event"], "enter", "{frame}"),
            Err(_) => break,
        }
    }

    // Ann lifts the mute through node B; Bob's socket on node A is free.
    let mut ann_on_b = nodes.b.connect_v2(&ann).await;
    let unmute = json!({"command": "unmute", "id": 6, "room": room, "user": bob_id});
    assert_eq!(
        ann_on_b.request(unmute).await,
        json!({"id": 6, "result": {"room": room, "user": bob_id}})
    );
    assert_eq!(
        at_once(&mut bob_on_a, "A").await,
        json!({"event": "unmuted", "room": room})
    );
    bob_on_a.send_json(send(7, room, "thanks")).await;
    let sent = loop {
        let frame = at_once(&mut bob_on_a, "A").await;
        if frame.get("event").is_none() {
            break frame;
        }
    };
    assert_eq!(sent["result"]["seq"], 1, "{sent}");
    let message = at_once(&mut cid_on_b, "B").await;
    assert_eq!(message["text"], "thanks", "{message}");
    // Both are moderation actions, recorded; the refused ones are not.
    assert_eq!(
        nodes.db.moderation_record().await,
        [
            format!("ann mute user bob in room {room} for 10 minutes"),
            format!("ann unmute user bob in room {room}"),
        ]
    );
}
