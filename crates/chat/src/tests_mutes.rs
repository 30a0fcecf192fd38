//! Mutes without a transport: staff mute and unmute, the muted user's
//! sends and typing refused in both protocols (and unseen by the others),
//! mutes read at the join and followed as they change.

use std::time::Duration;

use serde_json::{Value, json};

use crate::log::unix_millis;
use crate::testing::{self, InProcessClient, InProcessHost, LOBBY, ScenarioClient};
use crate::tests_v2::{joined_v2, next, request, v2_client};
use crate::{AccessChange, ChatUser, Limits, Mute, MuteOutcome, Protocol, RoomDirectory};

fn send(id: u64) -> Value {
    json!({"command": "send", "id": id, "room": 1, "text": "hello"})
}

fn mute(id: u64, user: &ChatUser, seconds: u64) -> Value {
    json!({"command": "mute", "id": id, "room": 1, "user": user.id, "seconds": seconds})
}

fn unmute(id: u64, user: &ChatUser) -> Value {
    json!({"command": "unmute", "id": id, "room": 1, "user": user.id})
}

/// Sets a mute in the directory alone, as another node (or an earlier
/// run of the server) stored it.
async fn store_mute(host: &InProcessHost, user: &ChatUser, until: Option<i64>) {
    let stored = host
        .chat()
        .rooms()
        .set_mute(&Mute {
            room: LOBBY,
            user: user.id,
            until,
            by: testing::ann().user_ref(),
        })
        .await;
    assert_eq!(stored, Ok(MuteOutcome::Applied));
}

/// A v1 client of `user` that has joined the lobby.
async fn joined_v1(host: &InProcessHost, user: ChatUser) -> InProcessClient {
    let mut client = host.connect_speaking(Protocol::V1, user).await;
    testing::join(&mut client, LOBBY, "Lobby").await;
    client
}

/// The `until` of a MUTED refusal, checked to be one for the lobby.
fn refused_until(refusal: &Value, id: u64) -> i64 {
    assert_eq!(refusal["id"], id, "{refusal}");
    assert_eq!(refusal["error"]["code"], "MUTED", "{refusal}");
    assert_eq!(refusal["error"]["room"], 1, "{refusal}");
    refusal["error"]["until"]
        .as_i64()
        .unwrap_or_else(|| panic!("no until in {refusal}"))
}

#[tokio::test]
async fn a_muted_user_is_refused_in_both_protocols_and_the_others_see_nothing() {
    let host = InProcessHost::new(Limits::default());
    let mut ann = v2_client(&host, testing::ann()).await;
    let mut carol = joined_v2(&host, testing::carol()).await;
    let mut bob = joined_v2(&host, testing::bob()).await;
    let mut bob_v1 = joined_v1(&host, testing::bob()).await;
    // Carol saw Bob come in twice, Bob's first socket his second.
    for _ in 0..2 {
        assert_eq!(next(&mut carol).await["event"], "enter");
    }
    assert_eq!(next(&mut bob).await["event"], "enter");

    // Ann need not be in the room to mute in it.
    let before = unix_millis();
    let muted = request(&mut ann, mute(1, &testing::bob(), 600)).await;
    let until = muted["result"]["until"].as_i64().unwrap_or_default();
    assert_eq!(
        muted,
        json!({"id": 1, "result": {"room": 1, "user": 2, "until": until}})
    );
    assert!((before + 600_000..=unix_millis() + 600_000).contains(&until));
    assert_eq!(
        next(&mut bob).await,
        json!({"event": "muted", "room": 1, "until": until})
    );

    assert_eq!(refused_until(&request(&mut bob, send(2)).await, 2), until);
    let typing = json!({"command": "typing", "id": 3, "room": 1});
    assert_eq!(refused_until(&request(&mut bob, typing).await, 3), until);
    // The v1 socket takes the change from its inbox as a host would, with
    // nothing to show for it.
    testing::assert_silent(&mut bob_v1).await;
    bob_v1.send(&testing::send_command(LOBBY, "hello")).await;
    testing::expect_frames(&mut bob_v1, &[r#"{"error":"MUTED"}"#]).await;
    for client in [&mut carol, &mut bob, &mut bob_v1, &mut ann] {
        testing::assert_silent(client).await;
    }
    // Nothing was stored either.
    let history = request(&mut carol, json!({"command": "history", "room": 1})).await;
    assert_eq!(history["result"]["messages"], json!([]));

    // Muting again replaces the end.
    let again = request(&mut ann, mute(4, &testing::bob(), 60)).await;
    let shorter = again["result"]["until"].as_i64().unwrap_or_default();
    assert!(shorter < until, "{again}");
    assert_eq!(next(&mut bob).await["until"], shorter);
    assert_eq!(refused_until(&request(&mut bob, send(5)).await, 5), shorter);

    let unmuted = request(&mut ann, unmute(6, &testing::bob())).await;
    assert_eq!(unmuted, json!({"id": 6, "result": {"room": 1, "user": 2}}));
    assert_eq!(next(&mut bob).await, json!({"event": "unmuted", "room": 1}));
    let sent = request(&mut bob, send(7)).await;
    assert_eq!(sent["result"]["seq"], 1, "{sent}");
    assert_eq!(next(&mut carol).await["text"], "hello");
    // Bob's v1 socket took the unmute with his v2 socket's message.
    assert!(testing::recv(&mut bob_v1).await.contains("hello"));
    bob_v1.send(&testing::send_command(LOBBY, "again")).await;
    assert!(testing::recv(&mut bob_v1).await.contains("again"));
}

#[tokio::test]
async fn only_staff_mute_and_only_in_rooms_they_may_enter() {
    let host = InProcessHost::new(Limits::default());
    let mut bob = joined_v2(&host, testing::bob()).await;
    let denied = json!({"id": 1, "error": {"code": "ROOM_ACCESS_DENIED", "room": 1}});
    assert_eq!(
        request(&mut bob, mute(1, &testing::ann(), 60)).await,
        denied
    );
    assert_eq!(request(&mut bob, unmute(1, &testing::ann())).await, denied);
    // Bob may not even mute himself, and nothing was stored.
    assert_eq!(
        request(&mut bob, mute(1, &testing::bob(), 60)).await,
        denied
    );
    assert_eq!(
        host.chat()
            .rooms()
            .muted_until(LOBBY, testing::bob().id)
            .await,
        Ok(None)
    );

    let mut ann = v2_client(&host, testing::ann()).await;
    let missing = json!({"command": "mute", "id": 2, "room": 99, "user": 2, "seconds": 60});
    assert_eq!(
        request(&mut ann, missing).await,
        json!({"id": 2, "error": {"code": "ROOM_INVALID", "room": 99}})
    );
    let too_long = json!({"command": "mute", "id": 3, "room": 1, "user": 2, "seconds": 31_536_001});
    assert_eq!(
        request(&mut ann, too_long).await,
        json!({"id": 3, "error": {"code": "BAD_REQUEST", "room": 1}})
    );
    testing::assert_silent(&mut bob).await;
}

#[tokio::test]
async fn a_mute_stored_before_the_join_holds_from_the_join() {
    let host = InProcessHost::new(Limits::default());
    let until = unix_millis() + 60_000;
    store_mute(&host, &testing::bob(), Some(until)).await;
    let mut bob = joined_v2(&host, testing::bob()).await;
    assert_eq!(refused_until(&request(&mut bob, send(1)).await, 1), until);
    let mut bob_v1 = joined_v1(&host, testing::bob()).await;
    bob_v1.send(&testing::send_command(LOBBY, "hi")).await;
    testing::expect_frames(&mut bob_v1, &[r#"{"error":"MUTED"}"#]).await;
    // Another user, and the same user in a room without a mute, post.
    let mut carol = joined_v2(&host, testing::carol()).await;
    assert_eq!(request(&mut carol, send(2)).await["result"]["seq"], 1);
}

#[tokio::test]
async fn an_expired_mute_is_no_mute() {
    let host = InProcessHost::new(Limits::default());
    store_mute(&host, &testing::bob(), Some(unix_millis() - 1)).await;
    let mut bob = joined_v2(&host, testing::bob()).await;
    assert_eq!(request(&mut bob, send(1)).await["result"]["seq"], 1);
    assert_eq!(next(&mut bob).await["event"], "message");

    // One that ends while the user is in the room ends there too.
    let mut ann = v2_client(&host, testing::ann()).await;
    let muted = request(&mut ann, mute(2, &testing::bob(), 1)).await;
    let until = muted["result"]["until"].as_i64().unwrap_or_default();
    assert_eq!(next(&mut bob).await["event"], "muted");
    assert_eq!(refused_until(&request(&mut bob, send(3)).await, 3), until);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(request(&mut bob, send(4)).await["result"]["seq"], 2);
}

#[tokio::test]
async fn a_change_heard_wins_over_the_directory_read_at_the_join() {
    let host = InProcessHost::new(Limits::default());
    let mut bob = v2_client(&host, testing::bob()).await;
    // A directory that lags (a cache not yet told) says muted; the change
    // on its way says lifted. Heard before the join, it still wins.
    store_mute(&host, &testing::bob(), Some(unix_millis() + 60_000)).await;
    let lifted = AccessChange::Mute {
        room: LOBBY,
        user: testing::bob().id,
        until: None,
    };
    lifted
        .announce(host.chat().layer())
        .await
        .expect("announced");
    // Not joined yet: nothing to tell the client.
    testing::assert_silent(&mut bob).await;
    request(&mut bob, json!({"command": "join", "room": 1})).await;
    assert_eq!(request(&mut bob, send(1)).await["result"]["seq"], 1);

    // And the other way round: a mute heard, a directory that knows none.
    store_mute(&host, &testing::bob(), None).await;
    let until = unix_millis() + 60_000;
    let muted = AccessChange::Mute {
        room: LOBBY,
        user: testing::bob().id,
        until: Some(until),
    };
    muted
        .announce(host.chat().layer())
        .await
        .expect("announced");
    next(&mut bob).await; // Bob's own message.
    assert_eq!(
        next(&mut bob).await,
        json!({"event": "muted", "room": 1, "until": until})
    );
    request(&mut bob, json!({"command": "leave", "room": 1})).await;
    request(&mut bob, json!({"command": "join", "room": 1})).await;
    assert_eq!(refused_until(&request(&mut bob, send(2)).await, 2), until);
}
