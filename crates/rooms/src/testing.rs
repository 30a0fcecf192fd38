//! The behaviour every [`ChannelLayer`] backend must have, as scenarios.
//!
//! Each scenario takes a freshly made layer, drives it through the public
//! trait only, and panics on the first deviation. Backends do not call them
//! one by one: [`channel_layer_test_suite!`](crate::channel_layer_test_suite)
//! turns the whole list into tests, each with the configuration its
//! scenario needs, so adding a scenario here runs it against every backend.
//!
//! Scenarios allow for delivery that is asynchronous (a distributed backend
//! goes through a broker): they wait for what must arrive, and give what
//! must not arrive [`SETTLE`] to show up before declaring its absence.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use whisper_protocol::{PresenceEntry, RoomId};

use crate::{ChannelLayer, GroupName, Inbox, InboxClosed, LayerConfig, Payload};

/// How long a scenario waits for a payload that must arrive.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a scenario waits before concluding that a payload did not
/// arrive.
pub const SETTLE: Duration = Duration::from_millis(100);

/// How many payloads like those the scenarios send (a few bytes each)
/// fill an inbox of [`small_inbox_config`].
pub const SMALL_INBOX_CAPACITY: usize = 8;

/// What one payload of a few bytes counts against an inbox's bound: its
/// bytes and its queue slot.
const SMALL_PAYLOAD_COST: usize = 4 + std::mem::size_of::<Payload>();

/// The presence TTL of [`short_ttl_config`]. Long enough that a sleep
/// overshooting by most of a second on a loaded machine (CI shares its
/// cores) cannot expire a room the test means to keep: at 400 ms the
/// expiry test failed under a load average of 10 on 2 cores.
pub const SHORT_PRESENCE_TTL: Duration = Duration::from_secs(2);

/// The configuration for scenarios that need nothing special.
pub fn default_config() -> LayerConfig {
    LayerConfig::default()
}

/// Inboxes of about [`SMALL_INBOX_CAPACITY`] small payloads, to overflow
/// them quickly.
pub fn small_inbox_config() -> LayerConfig {
    LayerConfig {
        max_queued_bytes: SMALL_INBOX_CAPACITY * SMALL_PAYLOAD_COST,
        ..LayerConfig::default()
    }
}

/// Presence that expires after [`SHORT_PRESENCE_TTL`].
pub fn short_ttl_config() -> LayerConfig {
    LayerConfig {
        presence_ttl: SHORT_PRESENCE_TTL,
        ..LayerConfig::default()
    }
}

/// Expands to one `#[tokio::test]` per scenario of [`crate::testing`], each
/// running against a new layer.
///
/// The argument is an expression evaluating to a closure (or function) that
/// takes a [`LayerConfig`] and returns a future of a new, empty layer; it is
/// called once per test, with the configuration that test's scenario
/// expects. Invoke it inside a module of its own, since the
/// tests are named after the scenarios. Each test runs on a two-worker
/// multi-threaded runtime, as the server does, so races between a layer's
/// tasks show up here rather than in production; the calling crate needs
/// `tokio` with the `macros` and `rt-multi-thread` features.
///
/// ```
/// mod channel_layer {
///     use whisper_rooms::{LayerConfig, MemoryLayer};
///
///     whisper_rooms::channel_layer_test_suite!(|config: LayerConfig| async move {
///         MemoryLayer::new(config)
///     });
/// }
/// ```
#[macro_export]
macro_rules! channel_layer_test_suite {
    ($make:expr) => {
        $crate::channel_layer_test_suite!(@scenarios $make;
            is_available: default_config,
            group_send_reaches_every_member_and_only_members: default_config,
            group_send_shares_one_payload_between_receivers: default_config,
            group_add_takes_effect_exactly_when_it_returns: default_config,
            group_discard_stops_delivery: default_config,
            close_channel_leaves_every_group: default_config,
            group_send_keeps_the_senders_order: default_config,
            group_send_order_is_fixed_at_the_first_poll: default_config,
            send_reaches_one_channel: default_config,
            slow_group_member_is_closed_while_others_receive_everything: small_inbox_config,
            slow_channel_is_closed_on_send: small_inbox_config,
            a_slow_member_loses_notices_not_messages: small_inbox_config,
            presence_tracks_touch_and_leave: default_config,
            presence_expires_after_ttl: short_ttl_config,
        );
    };
    (@scenarios $make:expr; $($scenario:ident: $config:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let make = $make;
                let layer = make($crate::testing::$config()).await;
                $crate::testing::$scenario(layer).await;
            }
        )*
    };
}

/// The backend reports itself available.
pub async fn is_available<L: ChannelLayer>(layer: L) {
    assert!(
        layer.is_available().await,
        "a fresh layer should be available"
    );
}

/// A broadcast reaches each member once and nobody else; a group without
/// members swallows it.
pub async fn group_send_reaches_every_member_and_only_members<L: ChannelLayer>(layer: L) {
    let room = GroupName::new("room-1");
    let other = GroupName::new("room-2");
    let mut ann = layer.new_channel();
    let mut bob = layer.new_channel();
    let mut outsider = layer.new_channel();
    add(&layer, &room, &ann).await;
    add(&layer, &room, &bob).await;
    add(&layer, &other, &outsider).await;

    group_send(&layer, &room, "hello").await;
    group_send(&layer, &GroupName::new("nobody-here"), "lost").await;

    assert_eq!(recv(&mut ann).await.as_str(), "hello");
    assert_eq!(recv(&mut bob).await.as_str(), "hello");
    assert_silent(&mut ann).await;
    assert_silent(&mut bob).await;
    assert_silent(&mut outsider).await;
}

/// Receivers of one broadcast share one copy of its bytes.
///
/// A one-process backend can even hand out the sender's own bytes (check that
/// separately); a distributed one decodes each broadcast once per node, so
/// this only asks that receivers share.
pub async fn group_send_shares_one_payload_between_receivers<L: ChannelLayer>(layer: L) {
    let room = GroupName::new("room-1");
    let mut inboxes = [
        layer.new_channel(),
        layer.new_channel(),
        layer.new_channel(),
    ];
    for inbox in &inboxes {
        add(&layer, &room, inbox).await;
    }
    group_send(&layer, &room, "shared").await;

    let mut received = Vec::new();
    for inbox in &mut inboxes {
        received.push(recv(inbox).await);
    }
    let first = received[0].as_bytes().as_ptr();
    for payload in &received {
        assert_eq!(payload.as_str(), "shared");
        assert_eq!(
            payload.as_bytes().as_ptr(),
            first,
            "every receiver should get the same bytes, not a copy"
        );
    }
}

/// A new member gets every broadcast sent after its `group_add` returned,
/// and none sent before it started, even while the group's earlier
/// broadcasts may still be on their way to the existing members.
///
/// This is what the chat protocol relies on: a joiner does not receive the
/// ENTER broadcast announcing it (sent just before its `group_add`), and does
/// not miss the first message sent after its join reply. Several rounds, so
/// a backend that only gets it right by luck of timing fails.
pub async fn group_add_takes_effect_exactly_when_it_returns<L: ChannelLayer>(layer: L) {
    let room = GroupName::new("room-1");
    let mut ann = layer.new_channel();
    add(&layer, &room, &ann).await;
    for round in 0..20 {
        let mut joiner = layer.new_channel();
        group_send(&layer, &room, &format!("before {round}")).await;
        add(&layer, &room, &joiner).await;
        group_send(&layer, &room, &format!("after {round}")).await;

        assert_eq!(
            recv(&mut joiner).await.as_str(),
            format!("after {round}"),
            "the joiner should get exactly what was sent after its join"
        );
        assert_eq!(recv(&mut ann).await.as_str(), format!("before {round}"));
        assert_eq!(recv(&mut ann).await.as_str(), format!("after {round}"));
        layer.close_channel(joiner.name()).await;
    }
}

/// A discarded member gets nothing more; the others still do. Discarding
/// what is not there is not an error.
pub async fn group_discard_stops_delivery<L: ChannelLayer>(layer: L) {
    let room = GroupName::new("room-1");
    let mut ann = layer.new_channel();
    let mut bob = layer.new_channel();
    add(&layer, &room, &ann).await;
    add(&layer, &room, &bob).await;

    for _ in 0..2 {
        layer
            .group_discard(&room, ann.name())
            .await
            .expect("group_discard should succeed, even twice");
    }
    layer
        .group_discard(&GroupName::new("never-joined"), ann.name())
        .await
        .expect("discarding from an unknown group should succeed");
    group_send(&layer, &room, "after").await;

    assert_eq!(recv(&mut bob).await.as_str(), "after");
    assert_silent(&mut ann).await;
}

/// Closing a channel takes it out of every group and closes its inbox;
/// using its name afterwards is harmless.
pub async fn close_channel_leaves_every_group<L: ChannelLayer>(layer: L) {
    let (one, two) = (GroupName::new("room-1"), GroupName::new("room-2"));
    let mut ann = layer.new_channel();
    let mut bob = layer.new_channel();
    add(&layer, &one, &ann).await;
    add(&layer, &two, &ann).await;
    add(&layer, &one, &bob).await;

    layer.close_channel(ann.name()).await;
    layer.close_channel(ann.name()).await;
    // A late join (e.g. racing the disconnect) must not bring it back.
    add(&layer, &two, &ann).await;
    group_send(&layer, &one, "one").await;
    group_send(&layer, &two, "two").await;
    layer
        .send(ann.name(), Payload::from("direct"))
        .await
        .expect("sending to a closed channel should be dropped, not fail");

    assert_eq!(recv(&mut bob).await.as_str(), "one");
    assert_eq!(recv_result(&mut ann).await, Err(InboxClosed::Closed));
}

/// Broadcasts from one sender arrive in the order they were sent, at every
/// member.
pub async fn group_send_keeps_the_senders_order<L: ChannelLayer>(layer: L) {
    const COUNT: usize = 1000;
    let room = GroupName::new("room-1");
    let mut inboxes = [layer.new_channel(), layer.new_channel()];
    for inbox in &inboxes {
        add(&layer, &room, inbox).await;
    }
    for i in 0..COUNT {
        layer
            .group_send(&room, Payload::from(i.to_string()))
            .await
            .expect("group_send should succeed");
    }
    for inbox in &mut inboxes {
        for i in 0..COUNT {
            assert_eq!(recv(inbox).await.as_str(), i.to_string(), "out of order");
        }
    }
}

/// Broadcasts in flight together arrive in the order they were started
/// (first polled), even when the later one is awaited first.
pub async fn group_send_order_is_fixed_at_the_first_poll<L: ChannelLayer>(layer: L) {
    let room = GroupName::new("room-1");
    let mut inbox = layer.new_channel();
    add(&layer, &room, &inbox).await;
    let mut first = pin!(layer.group_send(&room, Payload::from("first")));
    let mut second = pin!(layer.group_send(&room, Payload::from("second")));
    // Start both, in order, without waiting for either; a backend may
    // finish one at its first poll.
    let (first_done, second_done) = poll_fn(|cx| {
        let first_done = first.as_mut().poll(cx);
        let second_done = second.as_mut().poll(cx);
        Poll::Ready((first_done, second_done))
    })
    .await;
    let second_sent = match second_done {
        Poll::Ready(sent) => sent,
        Poll::Pending => second.await,
    };
    let first_sent = match first_done {
        Poll::Ready(sent) => sent,
        Poll::Pending => first.await,
    };
    second_sent.expect("group_send should succeed");
    first_sent.expect("group_send should succeed");
    assert_eq!(recv(&mut inbox).await.as_str(), "first");
    assert_eq!(recv(&mut inbox).await.as_str(), "second");
}

/// A direct send reaches its channel only.
pub async fn send_reaches_one_channel<L: ChannelLayer>(layer: L) {
    let mut ann = layer.new_channel();
    let mut bob = layer.new_channel();
    layer
        .send(ann.name(), Payload::from("for ann"))
        .await
        .expect("send should succeed");
    assert_eq!(recv(&mut ann).await.as_str(), "for ann");
    assert_silent(&mut bob).await;
}

/// A member that stops reading is closed once its inbox is full, counted,
/// and told so before its backlog, while a member that keeps up gets every
/// broadcast and the sender is never blocked or failed.
pub async fn slow_group_member_is_closed_while_others_receive_everything<L: ChannelLayer>(
    layer: L,
) {
    let (room, other) = (GroupName::new("room-1"), GroupName::new("room-2"));
    let mut slow = layer.new_channel();
    let mut fast = layer.new_channel();
    add(&layer, &room, &slow).await;
    add(&layer, &other, &slow).await;
    add(&layer, &room, &fast).await;

    for i in 0..SMALL_INBOX_CAPACITY * 4 {
        group_send(&layer, &room, &i.to_string()).await;
        assert_eq!(recv(&mut fast).await.as_str(), i.to_string());
    }

    assert_eq!(recv_result(&mut slow).await, Err(InboxClosed::SlowConsumer));
    assert_eq!(slow.try_recv(), Some(Err(InboxClosed::SlowConsumer)));
    assert_eq!(layer.slow_consumer_closes(), 1);
    // The closed channel left its other group too; sending there still works.
    group_send(&layer, &other, "anyone?").await;
}

/// Direct sends follow the same overflow rule as broadcasts.
pub async fn slow_channel_is_closed_on_send<L: ChannelLayer>(layer: L) {
    let mut slow = layer.new_channel();
    for _ in 0..=SMALL_INBOX_CAPACITY {
        layer
            .send(slow.name(), Payload::from("x"))
            .await
            .expect("send should never fail for a slow receiver");
    }
    assert_eq!(recv_result(&mut slow).await, Err(InboxClosed::SlowConsumer));
    assert_eq!(layer.slow_consumer_closes(), 1);
}

/// A member that reads nothing while messages and expendable notices
/// arrive (more than its inbox holds, but messages alone fit) keeps every
/// message, in order, and stays open; the notices it missed are counted.
/// A member that keeps up gets the notices too.
pub async fn a_slow_member_loses_notices_not_messages<L: ChannelLayer>(layer: L) {
    const NOTICES_PER_MESSAGE: usize = 5;
    let room = GroupName::new("room-1");
    let mut slow = layer.new_channel();
    let mut fast = layer.new_channel();
    add(&layer, &room, &slow).await;
    add(&layer, &room, &fast).await;

    let messages: Vec<String> = (0..SMALL_INBOX_CAPACITY).map(|i| format!("m{i}")).collect();
    for message in &messages {
        group_send(&layer, &room, message).await;
        assert_eq!(recv(&mut fast).await.as_str(), message);
        for _ in 0..NOTICES_PER_MESSAGE {
            layer
                .group_send(&room, Payload::from("n").expendable())
                .await
                .expect("send should succeed");
            let notice = recv(&mut fast).await;
            assert!(notice.is_expendable(), "the mark travels with the payload");
        }
    }

    // Delivered to both in one pass: give the last one time to land.
    tokio::time::sleep(SETTLE).await;
    let mut received = Vec::new();
    while let Some(next) = slow.try_recv() {
        received.push(next.expect("the slow member stays open"));
    }
    let (notices, kept): (Vec<_>, Vec<_>) = received.iter().partition(|p| p.is_expendable());
    let kept: Vec<&str> = kept.iter().map(|payload| payload.as_str()).collect();
    assert_eq!(kept, messages, "every message, in order");
    assert_eq!(layer.slow_consumer_closes(), 0);
    let sent = SMALL_INBOX_CAPACITY * NOTICES_PER_MESSAGE;
    assert!(notices.len() < sent, "some notices were dropped");
    assert_eq!(
        layer.expendables_dropped(),
        u64::try_from(sent - notices.len()).expect("a small count")
    );
}

/// Touch records users (ordered by id), leave flags them, both refresh
/// `last_update`; rooms are independent and unknown users are ignored.
pub async fn presence_tracks_touch_and_leave<L: ChannelLayer>(layer: L) {
    let (room, other) = (RoomId(1), RoomId(2));
    touch(&layer, room, 9, "zed", "Zed").await;
    touch(&layer, room, 2, "ann", "").await;

    let entries = list(&layer, room).await;
    assert_eq!(user_ids(&entries), [2, 9]);
    assert_eq!(
        (entries[1].username.as_str(), entries[1].name.as_str()),
        ("zed", "Zed")
    );
    assert!(entries.iter().all(|entry| !entry.left));
    assert!(list(&layer, other).await.is_empty());
    let touched_at = entries[1].last_update;

    // Coarser than the clock, so the next update is visibly later.
    tokio::time::sleep(Duration::from_millis(10)).await;
    leave(&layer, room, 9).await;
    leave(&layer, room, 42).await;
    leave(&layer, other, 9).await;
    let entries = list(&layer, room).await;
    assert_eq!(user_ids(&entries), [2, 9]);
    assert!(entries[1].left && !entries[0].left);
    assert!(
        entries[1].last_update > touched_at,
        "leave refreshes last_update"
    );
    let left_at = entries[1].last_update;
    assert!(list(&layer, other).await.is_empty());

    tokio::time::sleep(Duration::from_millis(10)).await;
    touch(&layer, room, 9, "zed", "Zed Renamed").await;
    let entries = list(&layer, room).await;
    assert!(!entries[1].left, "touch clears left");
    assert_eq!(entries[1].name, "Zed Renamed");
    assert!(
        entries[1].last_update > left_at,
        "touch refreshes last_update"
    );
}

/// A room's presence lives [`SHORT_PRESENCE_TTL`] after its last update:
/// activity keeps it, silence forgets it. The layer reports that TTL, for
/// hosts that pace their refreshes by it.
pub async fn presence_expires_after_ttl<L: ChannelLayer>(layer: L) {
    assert_eq!(layer.presence_ttl(), SHORT_PRESENCE_TTL);
    let room = RoomId(1);
    let step = SHORT_PRESENCE_TTL * 5 / 8;
    touch(&layer, room, 1, "ann", "").await;
    tokio::time::sleep(step).await;
    touch(&layer, room, 2, "bob", "").await;
    tokio::time::sleep(step).await;
    // More than the TTL since ann's touch, less since the room's last update.
    assert_eq!(user_ids(&list(&layer, room).await), [1, 2]);

    tokio::time::sleep(SHORT_PRESENCE_TTL + SETTLE).await;
    assert!(
        list(&layer, room).await.is_empty(),
        "the room should expire"
    );
    touch(&layer, room, 3, "cy", "").await;
    assert_eq!(user_ids(&list(&layer, room).await), [3]);
}

async fn add<L: ChannelLayer>(layer: &L, group: &GroupName, inbox: &Inbox) {
    layer
        .group_add(group, inbox.name())
        .await
        .expect("group_add should succeed");
}

async fn group_send<L: ChannelLayer>(layer: &L, group: &GroupName, text: &str) {
    layer
        .group_send(group, Payload::from(text.to_owned()))
        .await
        .expect("group_send should succeed");
}

async fn touch<L: ChannelLayer>(layer: &L, room: RoomId, user_id: i64, username: &str, name: &str) {
    layer
        .presence_touch(room, user_id, username, name)
        .await
        .expect("presence_touch should succeed");
}

async fn leave<L: ChannelLayer>(layer: &L, room: RoomId, user_id: i64) {
    layer
        .presence_leave(room, user_id)
        .await
        .expect("presence_leave should succeed");
}

async fn list<L: ChannelLayer>(layer: &L, room: RoomId) -> Vec<PresenceEntry> {
    layer
        .presence_list(room)
        .await
        .expect("presence_list should succeed")
}

fn user_ids(entries: &[PresenceEntry]) -> Vec<i64> {
    entries.iter().map(|entry| entry.user_id).collect()
}

/// The inbox's next result, failing the test if none comes within `wait`.
pub async fn recv_result_within(inbox: &mut Inbox, wait: Duration) -> Result<Payload, InboxClosed> {
    tokio::time::timeout(wait, inbox.recv())
        .await
        .unwrap_or_else(|_| panic!("{} received nothing in {wait:?}", inbox.name()))
}

/// The inbox's next payload, failing the test if it is closed or none comes
/// within `wait`: for tests of a backend's own behaviour beyond the suite.
pub async fn recv_within(inbox: &mut Inbox, wait: Duration) -> Payload {
    let name = inbox.name();
    recv_result_within(inbox, wait)
        .await
        .unwrap_or_else(|closed| panic!("{name} should be open: {closed}"))
}

/// Fails the test if anything arrives within `wait`.
pub async fn assert_silent_for(inbox: &mut Inbox, wait: Duration) {
    tokio::time::sleep(wait).await;
    if let Some(unexpected) = inbox.try_recv() {
        panic!(
            "{} should have received nothing, got {unexpected:?}",
            inbox.name()
        );
    }
}

async fn recv_result(inbox: &mut Inbox) -> Result<Payload, InboxClosed> {
    recv_result_within(inbox, DELIVERY_TIMEOUT).await
}

async fn recv(inbox: &mut Inbox) -> Payload {
    recv_within(inbox, DELIVERY_TIMEOUT).await
}

async fn assert_silent(inbox: &mut Inbox) {
    assert_silent_for(inbox, SETTLE).await;
}
