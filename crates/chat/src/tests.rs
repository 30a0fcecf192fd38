//! The host scenarios on the host without a transport, and the rules no
//! transport can show: staff loss, the bound on sends under way, counters.

use std::time::Instant;

use whisper_protocol::encode;
use whisper_rooms::ChannelLayer;

use crate::testing::{
    self, InProcessHost, LOBBY, STAFF_ROOM, ScenarioClient, ScenarioHost, assert_silent, command,
    expect_frames, join, send_command,
};
use crate::{ChatUser, Limits};

crate::chat_host_test_suite!(|limits| async move { InProcessHost::new(limits) });

#[tokio::test]
async fn losing_staff_leaves_the_staff_only_rooms_at_once() {
    let host = InProcessHost::new(Limits::default());
    let mut carol = host.connect(testing::carol()).await;
    let mut ann = host.connect(testing::ann()).await;
    join(&mut carol, STAFF_ROOM, "Staff room").await;
    join(&mut ann, STAFF_ROOM, "Staff room").await;
    join(&mut ann, LOBBY, "Lobby").await;
    expect_frames(&mut carol, &[&encode::enter(STAFF_ROOM, "ann")]).await;

    let demoted = ChatUser {
        is_staff: false,
        ..testing::ann()
    };
    let answer = ann.connection.set_user(demoted).await;
    assert_eq!(answer, [encode::leave_reply(STAFF_ROOM)]);
    // The leave itself is under way with the sends.
    assert!(ann.connection.finish_sends().await.is_empty());
    expect_frames(&mut carol, &[&encode::leave(STAFF_ROOM, "ann")]).await;
    assert!(!ann.connection.has_joined(STAFF_ROOM));
    assert!(ann.connection.has_joined(LOBBY));
    ann.send(&command("join", STAFF_ROOM)).await;
    // Taken out before the leave notice went out, so not told of it.
    expect_frames(&mut ann, &[r#"{"error":"ROOM_ACCESS_DENIED"}"#]).await;
    assert_silent(&mut ann).await;
    // Staff again: nothing to leave.
    assert!(ann.connection.set_user(testing::ann()).await.is_empty());
}

#[tokio::test]
async fn sends_under_way_are_bounded() {
    let limits = Limits {
        max_sends_in_flight: 2,
        ..Limits::default()
    };
    let host = InProcessHost::new(limits);
    let mut bob = host.connect(testing::bob()).await;
    join(&mut bob, LOBBY, "Lobby").await;
    let connection = &mut bob.connection;
    for n in 0..2 {
        assert!(connection.accepts_frames());
        let send = send_command(LOBBY, &n.to_string());
        assert!(
            connection
                .on_frame(Some(&send), Instant::now())
                .await
                .is_empty()
        );
    }
    assert!(!connection.accepts_frames(), "two sends under way");
    assert_eq!(connection.send_completed().await, None);
    assert!(connection.accepts_frames());
    assert_eq!(connection.finish_sends().await, Vec::<String>::new());
    let echo = |n: &str| encode::message(LOBBY, "bob", n);
    expect_frames(&mut bob, &[&echo("0"), &echo("1")]).await;
}

#[tokio::test]
async fn counters_count_frames_refusals_and_layer_failures() {
    let host = InProcessHost::new(testing::slow_rate_limits());
    let mut bob = host.connect(testing::bob()).await;
    join(&mut bob, LOBBY, "Lobby").await;
    bob.send(&send_command(LOBBY, testing::FAILING_TEXT)).await;
    bob.send(&command("room_users", LOBBY)).await;
    bob.send(&command("room_users", LOBBY)).await;
    let counters = host.chat().counters();
    assert_eq!(counters.frames_received(), 4);
    assert_eq!(counters.frames_rate_limited(), 1);
    assert_eq!(counters.layer_errors(), 1);
    assert!(host.layer().is_available().await);
}
