//! Access that follows changes at once, as scenarios run on one server
//! (`tests/tests/access.rs`) and on two nodes sharing PostgreSQL and Redis
//! (`bins/whisper-server/tests/multinode.rs`): a room deleted or made
//! staff-only, a session logged out, staff status taken away, a user
//! deactivated or deleted, a password reset. The change
//! is made through the HTTP API on node A; the sockets it concerns are on
//! node B as well, and each must hear of it within [`AT_ONCE`] of the
//! API's answer. The servers keep the default periodic re-check (30 s),
//! so only the announced change can meet that.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::{Nodes, Session, WsClient, csrf_token, http_client, set_cookie_value};

/// How soon after the API answered a socket on any node acts on the change.
pub const AT_ONCE: Duration = Duration::from_secs(1);

/// The password every scenario user has.
const PASSWORD: &str = "correct horse";

impl Nodes<'_> {
    /// Creates a user (staff or not) and logs it in on node A.
    async fn person(&self, name: &str, is_staff: bool) -> Session {
        self.db.create_user(name, PASSWORD, is_staff).await;
        self.a.login(name, PASSWORD).await.expect("login")
    }
}

/// The next text frame, which must come within [`AT_ONCE`].
async fn at_once(client: &mut WsClient, what: &str) -> String {
    match tokio::time::timeout(AT_ONCE, client.recv()).await {
        Ok(Some(Message::Text(text))) => text.to_string(),
        Ok(other) => panic!("{what}: expected a text frame, got {other:?}"),
        Err(_) => panic!("{what}: nothing within {AT_ONCE:?}"),
    }
}

/// `PATCH path` with `body` through node A's admin API, as `session`;
/// panics unless it is 200.
async fn patch(nodes: Nodes<'_>, session: &Session, path: &str, body: Value) {
    let (status, answer) = nodes.a.api(session, Method::PATCH, path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "PATCH {path}: {answer}");
}

/// The next two text frames, sorted: two notices whose order is not fixed.
async fn two_at_once(client: &mut WsClient, what: &str) -> Vec<String> {
    let mut frames = vec![at_once(client, what).await, at_once(client, what).await];
    frames.sort();
    frames
}

fn leave_notice(room: i64, username: &str) -> String {
    format!(r#"{{"msg_type":5,"room":{room},"username":"{username}"}}"#)
}

fn v2_removal(room: i64, code: &str) -> Value {
    json!({"error": {"code": code, "room": room}})
}

/// A socket that must close with 1008 `session ended` within [`AT_ONCE`];
/// `node` names where it is in the failure.
pub async fn closed_at_once(client: &mut WsClient, node: &str) {
    let closed = tokio::time::timeout(AT_ONCE, client.close_frame())
        .await
        .unwrap_or_else(|_| panic!("the socket on {node} still open after {AT_ONCE:?}"));
    let code = closed.map(|frame| frame.code);
    assert_eq!(code, Some(CloseCode::Policy), "node {node}");
}

/// The members a room change is tried on: Ann (staff, v1) on node A, Bob
/// (v1) and Cid (v2) on node B, all in a new room open to everyone, every
/// ENTER read.
struct Members {
    room: i64,
    /// Ann's session, which may use the admin API.
    ann: Session,
    ann_on_a: WsClient,
    bob_on_b: WsClient,
    cid_on_b: WsClient,
}

impl Members {
    async fn of_a_new_room(nodes: Nodes<'_>) -> Members {
        let room = nodes.db.create_room("Lobby", false).await;
        let ann = nodes.person("ann", true).await;
        let bob = nodes.person("bob", false).await;
        let cid = nodes.person("cid", false).await;
        let mut ann_on_a = nodes.a.connect(&ann).await;
        let mut bob_on_b = nodes.b.connect(&bob).await;
        let mut cid_on_b = nodes.b.connect_v2(&cid).await;
        join(&mut ann_on_a, room).await;
        join(&mut bob_on_b, room).await;
        join_v2(&mut cid_on_b, room).await;
        for _ in 0..2 {
            assert_eq!(ann_on_a.recv_json().await["msg_type"], 4);
        }
        assert_eq!(bob_on_b.recv_json().await["msg_type"], 4);
        Members {
            room,
            ann,
            ann_on_a,
            bob_on_b,
            cid_on_b,
        }
    }
}

/// v1 `join`, expecting the reply.
async fn join(client: &mut WsClient, room: i64) {
    let reply = client.join(room).await;
    assert_eq!(reply["join"], room.to_string(), "{reply}");
}

/// v2 `join`, expecting its result.
async fn join_v2(client: &mut WsClient, room: i64) {
    let reply = client
        .request(json!({"command": "join", "id": 1, "room": room}))
        .await;
    assert_eq!(reply["result"]["room"], room, "{reply}");
}

/// A room made staff-only loses its members who are not staff, on both
/// nodes, at once: a v1 member gets the leave reply, a v2 member a
/// `ROOM_ACCESS_DENIED` error naming the room; both are then refused
/// (sending, joining again: node B's room cache does not keep the old
/// room), hear nothing more of it, and are marked left; staff carry on.
pub async fn a_room_made_staff_only_loses_its_other_members_at_once(nodes: Nodes<'_>) {
    let Members {
        room,
        ann,
        mut ann_on_a,
        mut bob_on_b,
        mut cid_on_b,
    } = Members::of_a_new_room(nodes).await;

    let path = format!("/api/admin/rooms/{room}");
    patch(nodes, &ann, &path, json!({"staff_only": true})).await;
    assert_eq!(
        at_once(&mut bob_on_b, "bob, v1").await,
        format!(r#"{{"leave":"{room}"}}"#)
    );
    let removed: Value =
        serde_json::from_str(&at_once(&mut cid_on_b, "cid, v2").await).expect("a JSON frame");
    assert_eq!(removed, v2_removal(room, "ROOM_ACCESS_DENIED"));
    let mut expected = vec![leave_notice(room, "bob"), leave_notice(room, "cid")];
    expected.sort();
    assert_eq!(
        two_at_once(&mut ann_on_a, "ann sees both leave").await,
        expected
    );

    let denied = r#"{"error":"ROOM_ACCESS_DENIED"}"#;
    bob_on_b
        .send_json(json!({"command": "send", "room": room, "message": "still?"}))
        .await;
    assert_eq!(bob_on_b.recv_text().await, denied);
    bob_on_b
        .send_json(json!({"command": "join", "room": room}))
        .await;
    assert_eq!(bob_on_b.recv_text().await, denied);
    let users = ann_on_a.room_users(room).await;
    let bob_entry = &users["data"]["users"]["2"];
    assert_eq!(
        (&bob_entry["username"], &bob_entry["left"]),
        (&json!("bob"), &json!(true))
    );

    ann_on_a
        .send_json(json!({"command": "send", "room": room, "message": "staff only"}))
        .await;
    assert_eq!(ann_on_a.recv_json().await["message"], "staff only");
    for client in [&mut bob_on_b, &mut cid_on_b] {
        client.expect_silence(Duration::from_millis(300)).await;
    }
}

/// A deleted room is left by every member on both nodes at once, each
/// told (v2: `ROOM_INVALID` naming the room) and refused after.
pub async fn a_deleted_room_is_left_by_every_member_at_once(nodes: Nodes<'_>) {
    let Members {
        room,
        ann,
        mut ann_on_a,
        mut bob_on_b,
        mut cid_on_b,
    } = Members::of_a_new_room(nodes).await;

    let path = format!("/api/admin/rooms/{room}");
    let (status, _) = nodes.a.api(&ann, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let left = format!(r#"{{"leave":"{room}"}}"#);
    assert_eq!(at_once(&mut ann_on_a, "ann, v1").await, left);
    assert_eq!(at_once(&mut bob_on_b, "bob, v1").await, left);
    let removed: Value =
        serde_json::from_str(&at_once(&mut cid_on_b, "cid, v2").await).expect("a JSON frame");
    assert_eq!(removed, v2_removal(room, "ROOM_INVALID"));

    for client in [&mut ann_on_a, &mut bob_on_b] {
        client
            .send_json(json!({"command": "send", "room": room, "message": "anyone?"}))
            .await;
        assert_eq!(
            client.recv_text().await,
            r#"{"error":"ROOM_ACCESS_DENIED"}"#
        );
        client
            .send_json(json!({"command": "join", "room": room}))
            .await;
        assert_eq!(client.recv_text().await, r#"{"error":"ROOM_INVALID"}"#);
        client.expect_silence(Duration::from_millis(300)).await;
    }
}

/// Logging out closes the sockets opened with that session, on both
/// nodes, at once (1008); the same user's other session keeps its socket.
pub async fn logging_out_closes_that_sessions_sockets_at_once(nodes: Nodes<'_>) {
    let room = nodes.db.create_room("Lobby", false).await;
    let bob = nodes.person("bob", false).await;
    let other_session = nodes.b.login("bob", PASSWORD).await.expect("login");
    let mut on_a = nodes.a.connect(&bob).await;
    let mut on_b = nodes.b.connect(&bob).await;
    let mut still = nodes.b.connect(&other_session).await;
    join(&mut still, room).await;

    let (status, _) = nodes
        .a
        .api(&bob, Method::POST, "/accounts/logout/", None)
        .await;
    assert_eq!(status, StatusCode::FOUND);
    for (node, client) in [("A", &mut on_a), ("B", &mut on_b)] {
        closed_at_once(client, node).await;
    }
    still
        .send_json(json!({"command": "send", "room": room, "message": "here"}))
        .await;
    assert_eq!(still.recv_json().await["message"], "here");
}

/// A password changed by an operator (`whisper-manage`, which records the
/// change in the database, since it reaches no server's layer) closes the
/// user's sockets on both nodes within a second.
pub async fn a_password_changed_by_the_operator_closes_the_users_sockets_at_once(nodes: Nodes<'_>) {
    let bob = nodes.person("bob", false).await;
    let mut on_a = nodes.a.connect(&bob).await;
    let mut on_b = nodes.b.connect(&bob).await;
    nodes.db.change_password("bob", "new horse battery").await;
    for (node, client) in [("A", &mut on_a), ("B", &mut on_b)] {
        closed_at_once(client, node).await;
    }
}

/// A user deactivated by the operator (`whisper-manage deactivate`) is
/// logged out on both nodes within a second: every socket closes (1008)
/// and every session is gone. Logging in is refused as a wrong password
/// is. Reactivated (`whisper-manage activate`), they log in again, but
/// the old session stays ended.
pub async fn a_user_deactivated_by_the_operator_is_logged_out_everywhere_at_once(nodes: Nodes<'_>) {
    let bob = nodes.person("bob", false).await;
    let mut on_a = nodes.a.connect(&bob).await;
    let mut on_b = nodes.b.connect(&bob).await;
    nodes.db.set_active("bob", false).await;
    for (node, client) in [("A", &mut on_a), ("B", &mut on_b)] {
        closed_at_once(client, node).await;
    }
    assert_eq!(nodes.db.session_rows_of("bob").await, 0);
    assert_login_refused(nodes, "bob").await;

    nodes.db.set_active("bob", true).await;
    let again = nodes.b.login("bob", PASSWORD).await.expect("login");
    assert_eq!(nodes.a.me(&again).await["username"], "bob");
    assert_eq!(nodes.a.me(&bob).await["username"], Value::Null);
}

/// A user deactivated by a superuser on the admin page of node A is
/// logged out on node B at once, as when the operator does it.
pub async fn a_user_deactivated_on_the_admin_page_is_logged_out_everywhere_at_once(
    nodes: Nodes<'_>,
) {
    nodes.db.create_superuser("root", PASSWORD).await;
    let root = nodes.a.login("root", PASSWORD).await.expect("login");
    let bob = nodes.person("bob", false).await;
    let mut bob_on_b = nodes.b.connect(&bob).await;

    let path = format!("/api/admin/users/{}/active", nodes.a.me(&bob).await["id"]);
    let body = json!({"is_active": false});
    let (status, answer) = nodes.a.api(&root, Method::POST, &path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "POST {path}: {answer}");
    assert_eq!(answer["is_active"], false);
    closed_at_once(&mut bob_on_b, "B").await;
    assert_login_refused(nodes, "bob").await;
}

/// A password reset by a superuser on the admin page of node A logs the
/// user out on both nodes at once, as when the operator changes it.
pub async fn a_password_reset_on_the_admin_page_closes_the_users_sockets_at_once(nodes: Nodes<'_>) {
    nodes.db.create_superuser("root", PASSWORD).await;
    let root = nodes.a.login("root", PASSWORD).await.expect("login");
    let bob = nodes.person("bob", false).await;
    let mut on_a = nodes.a.connect(&bob).await;
    let mut on_b = nodes.b.connect(&bob).await;

    let path = format!("/api/admin/users/{}/password", nodes.a.me(&bob).await["id"]);
    let body = json!({"password": "new horse battery"});
    let (status, answer) = nodes.a.api(&root, Method::POST, &path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "POST {path}: {answer}");
    for (node, client) in [("A", &mut on_a), ("B", &mut on_b)] {
        closed_at_once(client, node).await;
    }
    assert_eq!(nodes.db.session_rows_of("bob").await, 0);
    assert_login_refused(nodes, "bob").await;
}

/// A user deleted by a superuser on the admin page of node A is logged
/// out on both nodes at once: sessions gone, sockets closed (leaving their
/// rooms, so the others see them go), no login. What they wrote stays, as
/// from a deleted user: same seq and text, no name.
pub async fn a_user_deleted_on_the_admin_page_is_logged_out_everywhere_at_once(nodes: Nodes<'_>) {
    nodes.db.create_superuser("root", PASSWORD).await;
    let root = nodes.a.login("root", PASSWORD).await.expect("login");
    let room = nodes.db.create_room("Lobby", false).await;
    let ann = nodes.person("ann", false).await;
    let bob = nodes.person("bob", false).await;
    let bob_id = nodes.a.me(&bob).await["id"].clone();
    let mut ann_on_b = nodes.b.connect_v2(&ann).await;
    join_v2(&mut ann_on_b, room).await;
    let mut on_a = nodes.a.connect_v2(&bob).await;
    let mut on_b = nodes.b.connect(&bob).await;
    join_v2(&mut on_a, room).await;
    let said = on_a.say(room, "remember me").await;

    let path = format!("/api/admin/users/{bob_id}");
    let (status, answer) = nodes.a.api(&root, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "DELETE {path}: {answer}");
    for (node, client) in [("A", &mut on_a), ("B", &mut on_b)] {
        closed_at_once(client, node).await;
    }
    assert_eq!(nodes.b.me(&bob).await["username"], Value::Null);
    assert_login_refused(nodes, "bob").await;

    // Ann saw Bob come, speak and go.
    let mut events = Vec::new();
    while events.last() != Some(&"leave".to_owned()) {
        let frame: Value =
            serde_json::from_str(&at_once(&mut ann_on_b, "Ann").await).expect("a frame");
        assert_eq!(frame["user"]["id"], bob_id, "{frame}");
        eprintln!("FRAME {frame}");
        events.push(frame["event"].as_str().expect("an event").to_owned());
    }
    assert_eq!(events, ["enter", "message", "leave"]);
    let history = ann_on_b.whole_history(room).await;
    let kept = &history[0];
    assert_eq!(
        (&kept["seq"], &kept["text"], &kept["user"]),
        (
            &said["seq"],
            &json!("remember me"),
            &json!({"id": bob_id, "username": "", "name": ""})
        ),
        "{history}"
    );
}

/// Logging in as `username` with the right password is refused on node B
/// with the wrong-password message: no session, the form again.
async fn assert_login_refused(nodes: Nodes<'_>, username: &str) {
    let csrf = csrf_token(&http_client(), &nodes.b.url("/accounts/login/")).await;
    let fields = [("username", username), ("password", PASSWORD)];
    let response = nodes.b.post_form("/accounts/login/", &csrf, &fields).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(set_cookie_value(&response, "sessionid").is_none());
    let page = response.text().await.expect("the login page");
    assert!(page.contains("correct username and password"), "{page}");
}

/// A staff member demoted by a superuser on node A leaves the staff-only
/// rooms on node B at once, and stays in the others.
pub async fn losing_staff_leaves_the_staff_rooms_at_once(nodes: Nodes<'_>) {
    let staff_room = nodes.db.create_room("Staff", true).await;
    let lobby = nodes.db.create_room("Lobby", false).await;
    nodes.db.create_superuser("root", PASSWORD).await;
    let root = nodes.a.login("root", PASSWORD).await.expect("login");
    let sue = nodes.person("sue", true).await;
    let mut sue_on_b = nodes.b.connect(&sue).await;
    join(&mut sue_on_b, staff_room).await;
    join(&mut sue_on_b, lobby).await;

    let me = nodes.a.me(&sue).await;
    let path = format!("/api/admin/users/{}", me["id"]);
    patch(nodes, &root, &path, json!({"is_staff": false})).await;
    assert_eq!(
        at_once(&mut sue_on_b, "sue").await,
        format!(r#"{{"leave":"{staff_room}"}}"#)
    );
    sue_on_b
        .send_json(json!({"command": "send", "room": lobby, "message": "still here"}))
        .await;
    assert_eq!(sue_on_b.recv_json().await["message"], "still here");
}
