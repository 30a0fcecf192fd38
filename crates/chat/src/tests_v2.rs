//! Protocol v2's rules without a transport: history on join, recovery,
//! acknowledged sends, nonces, typing, and v1 members in the same room.

use serde_json::{Value, json};
use whisper_protocol::encode;

use crate::testing::{self, InProcessClient, InProcessHost, LOBBY, ScenarioClient};
use crate::{AccessChange, ChatUser, Limits, Protocol};

pub(crate) async fn v2_client(host: &InProcessHost, user: ChatUser) -> InProcessClient {
    host.connect_speaking(Protocol::V2, user).await
}

/// A v2 client of `user` that has joined the lobby (its result read).
pub(crate) async fn joined_v2(host: &InProcessHost, user: ChatUser) -> InProcessClient {
    let mut client = v2_client(host, user).await;
    request(&mut client, json!({"command": "join", "room": 1})).await;
    client
}

pub(crate) async fn next(client: &mut InProcessClient) -> Value {
    let frame = testing::recv(client).await;
    serde_json::from_str(&frame).unwrap_or_else(|error| panic!("{frame}: {error}"))
}

pub(crate) async fn request(client: &mut InProcessClient, request: Value) -> Value {
    client.send(&request.to_string()).await;
    next(client).await
}

/// Sends `text` and returns the `send` result (the own copy, when a nonce
/// asks for one, is left in the inbox).
async fn say(client: &mut InProcessClient, id: u64, text: &str, nonce: Option<&str>) -> Value {
    let mut command = json!({"command": "send", "id": id, "room": 1, "text": text});
    if let Some(nonce) = nonce {
        command["nonce"] = json!(nonce);
    }
    request(client, command).await
}

fn texts(messages: &Value) -> Vec<&str> {
    messages
        .as_array()
        .unwrap_or_else(|| panic!("{messages}"))
        .iter()
        .map(|message| message["text"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn join_returns_the_latest_messages_and_sends_are_acknowledged() {
    let host = InProcessHost::new(Limits::default());
    let mut ann = v2_client(&host, testing::ann()).await;
    let joined = request(&mut ann, json!({"command": "join", "id": 1, "room": 1})).await;
    assert_eq!(joined["id"], 1);
    assert_eq!(joined["result"]["seq"], 0);
    assert_eq!(joined["result"]["recovered"], false);
    assert_eq!(joined["result"]["messages"], json!([]));

    let sent = say(&mut ann, 2, "hello", Some("n-1")).await;
    assert_eq!(sent["id"], 2);
    assert_eq!(sent["result"]["room"], 1);
    assert_eq!(sent["result"]["seq"], 1);
    // The sender's copy carries its nonce, and comes once: the room's copy
    // of the same seq is dropped.
    let own = next(&mut ann).await;
    assert_eq!(own["event"], "message");
    assert_eq!(own["nonce"], "n-1");
    assert_eq!(own["ts"], sent["result"]["ts"]);
    assert_eq!(
        own["user"],
        json!({"id": 1, "username": "ann", "name": "Ann"})
    );
    testing::assert_silent(&mut ann).await;

    let mut bob = v2_client(&host, testing::bob()).await;
    let joined = request(&mut bob, json!({"command": "join", "room": 1, "limit": 5})).await;
    assert_eq!(joined["result"]["seq"], 1);
    assert_eq!(texts(&joined["result"]["messages"]), ["hello"]);
    assert!(joined["result"]["messages"][0].get("nonce").is_none());
    assert_eq!(next(&mut ann).await["event"], "enter");
}

/// Ann, on a v2 socket, joins room 1 and says "m1", "m2", "m3" (seqs 1 to
/// 3); her socket and the log's epoch, for a rejoin to recover from.
async fn ann_said_three(host: &InProcessHost) -> (InProcessClient, Value) {
    let mut ann = v2_client(host, testing::ann()).await;
    let joined = request(&mut ann, json!({"command": "join", "room": 1})).await;
    let epoch = joined["result"]["epoch"].clone();
    for n in 1..=3 {
        say(&mut ann, n, &format!("m{n}"), None).await;
    }
    (ann, epoch)
}

#[tokio::test]
async fn a_rejoin_with_since_recovers_exactly_what_was_missed() {
    let host = InProcessHost::new(Limits::default());
    let (mut ann, epoch) = ann_said_three(&host).await;
    let mut bob = v2_client(&host, testing::bob()).await;
    let since = json!({"command": "join", "room": 1, "since": {"seq": 1, "epoch": epoch}});
    let recovered = request(&mut bob, since).await;
    assert_eq!(recovered["result"]["recovered"], true);
    assert_eq!(recovered["result"]["seq"], 3);
    assert_eq!(texts(&recovered["result"]["messages"]), ["m2", "m3"]);

    // Another epoch: the latest page instead, marked as not recovered.
    let mut carol = v2_client(&host, testing::carol()).await;
    let stale =
        json!({"command": "join", "room": 1, "limit": 2, "since": {"seq": 1, "epoch": "other"}});
    let reloaded = request(&mut carol, stale).await;
    assert_eq!(reloaded["result"]["recovered"], false);
    assert_eq!(texts(&reloaded["result"]["messages"]), ["m2", "m3"]);

    // Live messages follow the result without gap or duplicate.
    assert_eq!(next(&mut bob).await["user"]["username"], "carol");
    say(&mut ann, 9, "m4", None).await;
    let live = next(&mut bob).await;
    assert_eq!(
        (live["seq"].as_u64(), live["text"].as_str()),
        (Some(4), Some("m4"))
    );
    testing::assert_silent(&mut bob).await;
}

#[tokio::test]
async fn a_retried_nonce_gets_the_first_result_and_is_not_broadcast_again() {
    let host = InProcessHost::new(Limits::default());
    let mut ann = v2_client(&host, testing::ann()).await;
    let mut bob = joined_v2(&host, testing::bob()).await;
    request(&mut ann, json!({"command": "join", "room": 1})).await;
    assert_eq!(next(&mut bob).await["event"], "enter");
    let first = say(&mut ann, 1, "once", Some("n")).await;
    let retry = say(&mut ann, 2, "once", Some("n")).await;
    assert_eq!(retry["result"], first["result"]);
    assert_eq!(next(&mut ann).await["nonce"], "n");
    testing::assert_silent(&mut ann).await;
    assert_eq!(next(&mut bob).await["text"], "once");
    testing::assert_silent(&mut bob).await;
}

#[tokio::test]
async fn history_pages_backwards_and_says_when_there_is_more() {
    let host = InProcessHost::new(Limits::default());
    let mut ann = joined_v2(&host, testing::ann()).await;
    for n in 1..=5 {
        say(&mut ann, n, &format!("m{n}"), None).await;
    }
    let mut bob = v2_client(&host, testing::bob()).await;
    let page = request(
        &mut bob,
        json!({"command": "history", "id": 3, "room": 1, "limit": 2}),
    )
    .await;
    assert_eq!(texts(&page["result"]["messages"]), ["m4", "m5"]);
    assert_eq!(page["result"]["has_more"], true);
    let older = json!({"command": "history", "room": 1, "before": 2, "limit": 2});
    let page = request(&mut bob, older).await;
    assert_eq!(texts(&page["result"]["messages"]), ["m1"]);
    assert_eq!(page["result"]["has_more"], false);
    let staff = json!({"command": "history", "id": 4, "room": 2});
    let denied = request(&mut bob, staff).await;
    assert_eq!(
        denied,
        json!({"id": 4, "error": {"code": "ROOM_ACCESS_DENIED", "room": 2}})
    );
}

#[tokio::test]
async fn v1_and_v2_members_share_a_room() {
    let host = InProcessHost::new(Limits::default());
    let mut ann = joined_v2(&host, testing::ann()).await;
    let mut bob = host.connect_speaking(Protocol::V1, testing::bob()).await;
    testing::join(&mut bob, LOBBY, "Lobby").await;
    let enter = next(&mut ann).await;
    assert_eq!(
        (enter["event"].as_str(), enter["user"]["username"].as_str()),
        (Some("enter"), Some("bob"))
    );

    bob.send(&testing::send_command(LOBBY, "from v1")).await;
    testing::expect_frames(&mut bob, &[&encode::message(LOBBY, "bob", "from v1")]).await;
    let message = next(&mut ann).await;
    assert_eq!(
        (message["seq"].as_u64(), message["text"].as_str()),
        (Some(1), Some("from v1"))
    );

    say(&mut ann, 1, "from v2", None).await;
    assert_eq!(next(&mut ann).await["seq"], 2);
    testing::expect_frames(&mut bob, &[&encode::message(LOBBY, "ann", "from v2")]).await;

    // Typing reaches the other v2 members only; a v2 leaver hears no leave
    // of its own.
    let typed = request(&mut ann, json!({"command": "typing", "id": 5, "room": 1})).await;
    assert_eq!(typed, json!({"id": 5, "result": {"room": 1}}));
    let left = request(&mut ann, json!({"command": "leave", "room": 1})).await;
    assert_eq!(left, json!({"result": {"room": 1}}));
    testing::assert_silent(&mut ann).await;
    testing::expect_frames(&mut bob, &[&encode::leave(LOBBY, "ann")]).await;
}

#[tokio::test]
async fn typing_is_announced_to_the_others_at_most_every_interval() {
    let host = InProcessHost::new(Limits::default());
    let mut ann = v2_client(&host, testing::ann()).await;
    let mut bob = joined_v2(&host, testing::bob()).await;
    request(&mut ann, json!({"command": "join", "room": 1})).await;
    assert_eq!(next(&mut bob).await["event"], "enter");
    for _ in 0..3 {
        request(&mut ann, json!({"command": "typing", "room": 1})).await;
    }
    let typing = next(&mut bob).await;
    assert_eq!(
        typing,
        json!({"event": "typing", "room": 1, "user": {"id": 1, "username": "ann", "name": "Ann"}})
    );
    testing::assert_silent(&mut bob).await;
    testing::assert_silent(&mut ann).await;
    let outside = request(&mut ann, json!({"command": "typing", "room": 2})).await;
    assert_eq!(outside["error"]["code"], "ROOM_ACCESS_DENIED");
}

#[tokio::test]
async fn bad_v2_frames_get_errors_with_what_could_be_read() {
    let host = InProcessHost::new(Limits::default());
    let mut ann = v2_client(&host, testing::ann()).await;
    let answer = request(&mut ann, json!({"command": "dance", "id": 9, "room": 1})).await;
    assert_eq!(answer["id"], 9);
    assert_eq!(answer["error"]["code"], "UNKNOWN_COMMAND");
    ann.send("not json").await;
    assert_eq!(
        next(&mut ann).await,
        json!({"error": {"code": "BAD_REQUEST"}})
    );
    let unjoined = say(&mut ann, 3, "hi", None).await;
    assert_eq!(
        unjoined,
        json!({"id": 3, "error": {"code": "ROOM_ACCESS_DENIED", "room": 1}})
    );
    request(&mut ann, json!({"command": "join", "id": 4, "room": 1})).await;
    let nul = say(&mut ann, 5, "a\u{0}b", Some("n-5")).await;
    assert_eq!(
        nul,
        json!({"id": 5, "error": {"code": "BAD_REQUEST", "room": 1}})
    );
}

#[tokio::test]
async fn a_message_the_room_could_not_hear_is_still_acknowledged_to_v2() {
    let host = InProcessHost::new(Limits::default());
    let mut ann = joined_v2(&host, testing::ann()).await;
    let sent = say(&mut ann, 1, testing::FAILING_TEXT, None).await;
    // Stored, so acknowledged; readable from history.
    assert_eq!(sent["result"]["seq"], 1);
    let page = request(&mut ann, json!({"command": "history", "room": 1})).await;
    assert_eq!(texts(&page["result"]["messages"]), [testing::FAILING_TEXT]);
}

#[tokio::test]
async fn messages_that_overtake_others_wait_and_gaps_are_read_from_the_log() {
    use std::time::Instant;

    use whisper_protocol::RoomId;
    use whisper_protocol::v2::{self, Seq, UserRef};
    use whisper_rooms::Payload;

    use crate::{Draft, GAP_WAIT, MessageLog};

    let host = InProcessHost::new(Limits::default());
    let mut ann = joined_v2(&host, testing::ann()).await;
    // Stored by "another node", whose publications arrive here late and
    // out of order.
    let log = host.chat().log();
    let drafts: Vec<Draft> = (1..=3)
        .map(|n| Draft {
            room: RoomId(1),
            user: UserRef {
                id: 2,
                username: "bob".into(),
                name: "Bob".into(),
            },
            text: format!("m{n}"),
            nonce: None,
            ts: 1,
        })
        .collect();
    log.append(&drafts).await.expect("stored");
    let stored = log.after(RoomId(1), Seq(0), 10).await.expect("read");
    let payload = |n: usize| Payload::from(v2::encode::message(&stored[n - 1], None));

    let now = Instant::now();
    let connection = &mut ann.connection;
    let mut out = Vec::new();
    connection.deliver(payload(3), now, &mut out);
    connection.deliver(payload(2), now, &mut out);
    assert!(out.is_empty(), "held while seq 1 is missing");
    assert_eq!(connection.gap_deadline(), Some(now + GAP_WAIT));
    assert!(connection.fill_gaps(now).await.is_empty(), "not yet due");

    let filled = connection.fill_gaps(now + GAP_WAIT).await;
    let filled: Vec<String> = filled
        .iter()
        .map(|frame| serde_json::from_str::<Value>(frame).expect("JSON")["text"].to_string())
        .collect();
    assert_eq!(filled, [r#""m1""#, r#""m2""#, r#""m3""#]);
    assert_eq!(connection.gap_deadline(), None);
    connection.deliver(payload(2), now, &mut out);
    assert!(out.is_empty(), "a late duplicate is dropped");
}

#[tokio::test]
async fn typing_reaches_the_users_other_sockets_but_not_its_own() {
    let host = InProcessHost::new(Limits::default());
    let mut tab = v2_client(&host, testing::ann()).await;
    let mut other_tab = joined_v2(&host, testing::ann()).await;
    request(&mut tab, json!({"command": "join", "room": 1})).await;
    assert_eq!(next(&mut other_tab).await["event"], "enter");
    request(&mut tab, json!({"command": "typing", "room": 1})).await;
    assert_eq!(next(&mut other_tab).await["event"], "typing");
    testing::assert_silent(&mut tab).await;
}

#[tokio::test]
async fn recovery_that_would_cost_more_than_its_byte_bound_reloads_instead() {
    let host = InProcessHost::new(Limits {
        max_messages_per_second: 1000,
        ..Limits::default()
    });
    let mut ann = v2_client(&host, testing::ann()).await;
    let joined = request(&mut ann, json!({"command": "join", "room": 1})).await;
    let epoch = joined["result"]["epoch"].clone();
    let long = "x".repeat(16 * 1024);
    let count = crate::RECOVERY_MAX_BYTES / long.len() + 1;
    for n in 0..count {
        say(&mut ann, n as u64, &long, None).await;
    }
    let mut bob = v2_client(&host, testing::bob()).await;
    let since =
        json!({"command": "join", "room": 1, "limit": 3, "since": {"seq": 0, "epoch": epoch}});
    let result = request(&mut bob, since).await;
    assert_eq!(result["result"]["recovered"], false);
    assert_eq!(
        result["result"]["messages"].as_array().map(Vec::len),
        Some(3)
    );
}

#[tokio::test]
async fn joins_have_their_own_burst_in_v2_too() {
    let host = InProcessHost::new(testing::slow_rate_limits());
    let mut bob = v2_client(&host, testing::bob()).await;
    for id in 0..3 {
        let typing = request(&mut bob, json!({"command": "typing", "id": id, "room": 1})).await;
        let code = &typing["error"]["code"];
        assert_eq!(*code == "RATE_LIMITED", id == 2, "{typing}");
    }
    let burst = testing::slow_rate_limits().join_burst();
    for id in 0..burst {
        let joined = request(&mut bob, json!({"command": "join", "id": id, "room": 1})).await;
        assert_eq!(joined["id"], id, "{joined}");
    }
    let refused = request(&mut bob, json!({"command": "join", "id": burst, "room": 1})).await;
    assert_eq!(refused, json!({"error": {"code": "RATE_LIMITED"}}));
}

#[tokio::test]
async fn a_v2_member_taken_out_of_a_room_hears_why_and_nothing_more() {
    let host = InProcessHost::new(Limits::default());
    let mut ann = joined_v2(&host, testing::ann()).await;
    let mut bob = joined_v2(&host, testing::bob()).await;
    assert_eq!(next(&mut ann).await["event"], "enter");

    AccessChange::RoomStaffOnly(LOBBY)
        .announce(host.chat().layer())
        .await
        .expect("announced");
    let removed = next(&mut bob).await;
    assert_eq!(
        removed,
        json!({"error": {"code": "ROOM_ACCESS_DENIED", "room": 1}})
    );
    let left = next(&mut ann).await;
    assert_eq!(
        (&left["event"], &left["user"]["username"]),
        (&json!("leave"), &json!("bob"))
    );

    AccessChange::RoomDeleted(LOBBY)
        .announce(host.chat().layer())
        .await
        .expect("announced");
    let removed = next(&mut ann).await;
    assert_eq!(
        removed,
        json!({"error": {"code": "ROOM_INVALID", "room": 1}})
    );
    testing::assert_silent(&mut bob).await;
}

#[tokio::test]
async fn a_change_to_the_user_reaches_each_of_its_connections_only() {
    let host = InProcessHost::new(Limits::default());
    let mut first = v2_client(&host, testing::bob()).await;
    let mut second = host.connect_speaking(Protocol::V1, testing::bob()).await;
    let mut ann = v2_client(&host, testing::ann()).await;
    AccessChange::User(testing::bob().id)
        .announce(host.chat().layer())
        .await
        .expect("announced");
    for client in [&mut first, &mut second, &mut ann] {
        // Nothing for the client itself: the change is for the host.
        testing::assert_silent(client).await;
    }
    assert!(first.connection.take_user_changed());
    assert!(!first.connection.take_user_changed(), "taken once");

    // A message cannot pose as a change: its frame starts with `{`.
    request(&mut ann, json!({"command": "join", "room": 1})).await;
    request(&mut first, json!({"command": "join", "room": 1})).await;
    say(&mut ann, 5, "\u{1}user 2", None).await;
    assert_eq!(next(&mut first).await["text"], "\u{1}user 2");
    assert!(!first.connection.take_user_changed());
    assert!(second.connection.take_user_changed());
    assert!(!ann.connection.take_user_changed());
}

/// Dan, who is neither staff nor the author of anything here.
fn dan() -> ChatUser {
    ChatUser::new(4, "dan", "Dan")
}

fn delete(id: u64, seq: u64) -> Value {
    json!({"command": "delete", "id": id, "room": 1, "seq": seq})
}

/// The lobby's messages as history shows them: seq, text, deleted.
async fn history_of(client: &mut InProcessClient) -> Vec<(u64, Value, Value)> {
    let page = request(client, json!({"command": "history", "room": 1})).await;
    page["result"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|message| {
            (
                message["seq"].as_u64().unwrap_or_default(),
                message["text"].clone(),
                message["deleted"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_author_deletes_their_message_and_every_v2_member_sees_it_go() {
    let host = InProcessHost::new(Limits::default());
    let mut bob = joined_v2(&host, testing::bob()).await;
    let mut ann = joined_v2(&host, testing::ann()).await;
    assert_eq!(next(&mut bob).await["event"], "enter");
    let mut carol = host.connect_speaking(Protocol::V1, testing::carol()).await;
    testing::join(&mut carol, LOBBY, "Lobby").await;
    for client in [&mut bob, &mut ann] {
        assert_eq!(next(client).await["event"], "enter");
    }
    say(&mut bob, 1, "oops", None).await;
    say(&mut bob, 2, "kept", None).await;
    for _ in 0..2 {
        assert_eq!(next(&mut bob).await["event"], "message");
        assert_eq!(next(&mut ann).await["event"], "message");
    }
    testing::expect_frames(
        &mut carol,
        &[
            &encode::message(LOBBY, "bob", "oops"),
            &encode::message(LOBBY, "bob", "kept"),
        ],
    )
    .await;

    let deleted = json!({"event": "deleted", "room": 1, "seq": 1});
    // Twice: deleting again succeeds and is announced again.
    for id in [3, 4] {
        let result = request(&mut bob, delete(id, 1)).await;
        assert_eq!(result, json!({"id": id, "result": {"room": 1, "seq": 1}}));
        assert_eq!(next(&mut bob).await, deleted);
        assert_eq!(next(&mut ann).await, deleted);
    }
    testing::assert_silent(&mut carol).await;
    testing::assert_silent(&mut ann).await;
    assert_eq!(
        history_of(&mut ann).await,
        [
            (1, Value::Null, json!(true)),
            (2, json!("kept"), Value::Null)
        ]
    );
}

#[tokio::test]
async fn staff_delete_anyones_message_and_others_may_not() {
    let host = InProcessHost::new(Limits::default());
    let mut bob = joined_v2(&host, testing::bob()).await;
    say(&mut bob, 1, "rude", None).await;
    say(&mut bob, 2, "rude again", None).await;
    let mut dan = joined_v2(&host, dan()).await;
    let refused = request(&mut dan, delete(5, 1)).await;
    assert_eq!(
        refused,
        json!({"id": 5, "error": {"code": "ROOM_ACCESS_DENIED", "room": 1}})
    );
    assert_eq!(history_of(&mut dan).await[0].1, "rude");

    let mut ann = joined_v2(&host, testing::ann()).await;
    let result = request(&mut ann, delete(6, 2)).await;
    assert_eq!(result, json!({"id": 6, "result": {"room": 1, "seq": 2}}));
    assert_eq!(
        next(&mut ann).await,
        json!({"event": "deleted", "room": 1, "seq": 2})
    );
    assert_eq!(
        history_of(&mut ann).await,
        [
            (1, json!("rude"), Value::Null),
            (2, Value::Null, json!(true))
        ]
    );
}

#[tokio::test]
async fn a_delete_outside_the_room_or_of_no_message_is_refused() {
    let host = InProcessHost::new(Limits::default());
    let mut bob = joined_v2(&host, testing::bob()).await;
    say(&mut bob, 1, "mine", None).await;
    let mut ann = v2_client(&host, testing::ann()).await;
    let outside = request(&mut ann, delete(2, 1)).await;
    assert_eq!(
        outside,
        json!({"id": 2, "error": {"code": "ROOM_ACCESS_DENIED", "room": 1}})
    );
    for seq in [0, 2, u64::MAX] {
        let missing = request(&mut bob, delete(3, seq)).await;
        assert_eq!(
            missing,
            json!({"id": 3, "error": {"code": "MESSAGE_NOT_FOUND", "room": 1}})
        );
    }
    assert_eq!(history_of(&mut bob).await[0].1, "mine");
}

#[tokio::test]
async fn a_rejoin_recovering_past_a_deleted_message_shows_it_deleted() {
    let host = InProcessHost::new(Limits::default());
    let (mut ann, epoch) = ann_said_three(&host).await;
    request(&mut ann, delete(4, 2)).await;
    let mut bob = v2_client(&host, testing::bob()).await;
    let since = json!({"command": "join", "room": 1, "since": {"seq": 1, "epoch": epoch}});
    let recovered = request(&mut bob, since).await;
    assert_eq!(recovered["result"]["recovered"], true);
    let messages = &recovered["result"]["messages"];
    assert_eq!(
        messages[0],
        json!({
            "room": 1,
            "seq": 2,
            "ts": messages[0]["ts"],
            "user": {"id": 1, "username": "ann", "name": "Ann"},
            "deleted": true
        })
    );
    assert_eq!(messages[1]["text"], "m3");
}
