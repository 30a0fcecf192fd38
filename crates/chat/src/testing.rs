//! The rules every host must keep, as scenarios a host's tests run.
//!
//! A host (Whisper's server, the axum example, a service of yours) wraps
//! [`Connection`] in a transport. Whether the transport keeps the rules
//! (replies in order, a failed send answered, every room left when the
//! socket goes) is checked by running these scenarios through it:
//! [`chat_host_test_suite!`](crate::chat_host_test_suite) turns the list
//! into tests, each on a fresh host built over a [`ScriptedLayer`] (a
//! [`MemoryLayer`] that records calls and fails on request) with the
//! scenario rooms ("Lobby" and the staff-only "Staff room") and the
//! [`Limits`] the scenario needs. A host with a fixed room list uses
//! [`rooms`]; one whose database numbers rooms itself (Whisper's server,
//! where a fresh database already holds "General") tells the scenarios the
//! ids it got through [`ScenarioHost::rooms`].
//! [`InProcessHost`] is the host without any transport; this crate's own
//! tests run the suite on it.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use whisper_protocol::{PresenceEntry, RoomId, encode};
use whisper_rooms::{
    ChannelLayer, ChannelName, GroupName, Inbox, LayerError, MemoryLayer, Payload,
};

use crate::{
    AccessChange, Chat, ChatUser, Connection, Limits, MemoryLog, Protocol, Room, StaticRooms,
};

/// How long a scenario waits for a frame that must arrive.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a scenario waits before concluding that a frame did not arrive.
pub const SETTLE: Duration = Duration::from_millis(100);

/// The id of "Lobby", a room anyone may join, in [`rooms`].
pub const LOBBY: RoomId = RoomId(1);
/// The id of "Staff room", a staff-only room, in [`rooms`].
pub const STAFF_ROOM: RoomId = RoomId(2);
/// A room that does not exist on any host.
pub const MISSING_ROOM: RoomId = RoomId(99);

/// A broadcast containing this text fails (see [`ScriptedLayer`]).
pub const FAILING_TEXT: &str = "FAIL-THIS-SEND";

/// The ids of the two rooms every host is built with. The scenarios take
/// them from [`ScenarioHost::rooms`] rather than assuming [`LOBBY`] and
/// [`STAFF_ROOM`], so a host whose rooms table numbers rooms itself runs
/// them too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioRooms {
    /// "Lobby", which anyone may join.
    pub lobby: RoomId,
    /// "Staff room", for staff only.
    pub staff_room: RoomId,
}

impl Default for ScenarioRooms {
    /// The ids of [`rooms`]: [`LOBBY`] and [`STAFF_ROOM`].
    fn default() -> Self {
        ScenarioRooms {
            lobby: LOBBY,
            staff_room: STAFF_ROOM,
        }
    }
}

/// The rooms of a host with a fixed room list: "Lobby" as [`LOBBY`] and
/// "Staff room" as [`STAFF_ROOM`].
pub fn rooms() -> StaticRooms {
    StaticRooms::new([
        Room::new(LOBBY, "Lobby"),
        Room::new(STAFF_ROOM, "Staff room").staff_only(),
    ])
}

/// Ann, who is staff.
pub fn ann() -> ChatUser {
    ChatUser::new(1, "ann", "Ann").staff()
}

/// Bob, who is not.
pub fn bob() -> ChatUser {
    ChatUser::new(2, "bob", "Bob")
}

/// Carol, who is staff too.
pub fn carol() -> ChatUser {
    ChatUser::new(3, "carol", "Carol").staff()
}

/// The limits of scenarios that need nothing special.
pub fn default_limits() -> Limits {
    Limits::default()
}

/// Tight limits: 8-byte messages, one room per connection.
pub fn small_limits() -> Limits {
    Limits {
        max_message_bytes: 8,
        max_rooms_per_connection: 1,
        ..Limits::default()
    }
}

/// One frame a second (bursts of two), four rooms per connection (so
/// bursts of four joins).
pub fn slow_rate_limits() -> Limits {
    Limits {
        max_messages_per_second: 1,
        max_rooms_per_connection: 4,
        ..Limits::default()
    }
}

/// A [`MemoryLayer`] that records the calls the rules make and fails the
/// ones a scenario asks it to: every broadcast containing
/// [`FAILING_TEXT`], and the next `group_add` to the group named in
/// [`fail_next_group_add`](Self::fail_next_group_add).
///
/// Clones share one layer, so a test keeps a handle on the layer it gave
/// a host.
#[derive(Debug, Default, Clone)]
pub struct ScriptedLayer(Arc<ScriptedState>);

#[derive(Debug, Default)]
struct ScriptedState {
    inner: MemoryLayer,
    fail_group_add: Mutex<Option<GroupName>>,
    calls: Mutex<Vec<String>>,
}

impl ScriptedLayer {
    /// Makes the next `group_add` to `group` fail as a broker that went
    /// away would. Naming the group keeps a connection that is still
    /// opening (and adding itself to its user's group) from taking the
    /// failure meant for a join.
    pub fn fail_next_group_add(&self, group: GroupName) {
        *self.lock(&self.0.fail_group_add) = Some(group);
    }

    /// The calls so far, oldest first, as `"group_send room-1 {..}"`,
    /// `"presence_leave 1 2"` (room, user), `"group_discard room-1"`.
    pub fn calls(&self) -> Vec<String> {
        self.log().clone()
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.lock(&self.0.calls)
    }

    /// Locks one of the layer's records; a test that panicked while
    /// holding it leaves it as it was, which is still worth reading.
    fn lock<'a, T>(&self, record: &'a Mutex<T>) -> std::sync::MutexGuard<'a, T> {
        record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this `group_add` to `group` is the one to fail; clears the
    /// request if so.
    fn take_failure_for(&self, group: &GroupName) -> bool {
        let mut failing = self.lock(&self.0.fail_group_add);
        let matches = failing.as_ref() == Some(group);
        if matches {
            *failing = None;
        }
        matches
    }

    fn record(&self, call: String) {
        self.log().push(call);
    }
}

/// The failure the layer fakes: a broker that went away.
fn injected() -> LayerError {
    LayerError::Disconnected
}

impl ChannelLayer for ScriptedLayer {
    fn new_channel(&self) -> Inbox {
        self.0.inner.new_channel()
    }

    fn presence_ttl(&self) -> Duration {
        self.0.inner.presence_ttl()
    }

    async fn group_add(&self, group: &GroupName, channel: ChannelName) -> Result<(), LayerError> {
        self.record(format!("group_add {group}"));
        if self.take_failure_for(group) {
            return Err(injected());
        }
        self.0.inner.group_add(group, channel).await
    }

    async fn group_discard(
        &self,
        group: &GroupName,
        channel: ChannelName,
    ) -> Result<(), LayerError> {
        self.record(format!("group_discard {group}"));
        self.0.inner.group_discard(group, channel).await
    }

    async fn group_send(&self, group: &GroupName, payload: Payload) -> Result<(), LayerError> {
        self.record(format!("group_send {group} {}", payload.as_str()));
        if payload.as_str().contains(FAILING_TEXT) {
            return Err(injected());
        }
        self.0.inner.group_send(group, payload).await
    }

    async fn send(&self, channel: ChannelName, payload: Payload) -> Result<(), LayerError> {
        self.0.inner.send(channel, payload).await
    }

    async fn close_channel(&self, channel: ChannelName) {
        self.0.inner.close_channel(channel).await;
    }

    fn slow_consumer_closes(&self) -> u64 {
        self.0.inner.slow_consumer_closes()
    }

    fn expendables_dropped(&self) -> u64 {
        self.0.inner.expendables_dropped()
    }

    fn room_count(&self) -> usize {
        self.0.inner.room_count()
    }

    async fn is_available(&self) -> bool {
        self.0.inner.is_available().await
    }

    async fn presence_touch(
        &self,
        room: RoomId,
        user_id: i64,
        username: &str,
        name: &str,
    ) -> Result<(), LayerError> {
        self.0
            .inner
            .presence_touch(room, user_id, username, name)
            .await
    }

    async fn presence_leave(&self, room: RoomId, user_id: i64) -> Result<(), LayerError> {
        self.record(format!("presence_leave {} {user_id}", room.0));
        self.0.inner.presence_leave(room, user_id).await
    }

    async fn presence_list(&self, room: RoomId) -> Result<Vec<PresenceEntry>, LayerError> {
        self.0.inner.presence_list(room).await
    }
}

/// A host under test: it connects clients as a given user, over its
/// transport, to a chat built on its [`ScriptedLayer`].
pub trait ScenarioHost {
    /// One connection as the scenario drives it.
    type Client: ScenarioClient;

    /// Opens a connection as `user`.
    fn connect(&self, user: ChatUser) -> impl Future<Output = Self::Client>;

    /// The layer under the host's chat.
    fn layer(&self) -> &ScriptedLayer;

    /// The ids of the host's scenario rooms: by default those of
    /// [`rooms`]; a host that created them in its own rooms table returns
    /// the ids it got.
    fn rooms(&self) -> ScenarioRooms {
        ScenarioRooms::default()
    }
}

/// One client connection of a [`ScenarioHost`].
pub trait ScenarioClient {
    /// Sends one text frame.
    fn send(&mut self, text: &str) -> impl Future<Output = ()>;

    /// The next frame from the server, if one arrives within `wait`.
    fn recv_within(&mut self, wait: Duration) -> impl Future<Output = Option<String>>;

    /// Ends the connection as a client closing its socket does.
    fn close(self) -> impl Future<Output = ()>;
}

/// The next frame, which must arrive within [`DELIVERY_TIMEOUT`].
pub async fn recv(client: &mut impl ScenarioClient) -> String {
    client
        .recv_within(DELIVERY_TIMEOUT)
        .await
        .expect("a frame within the delivery timeout")
}

/// Asserts the next frames are exactly `expected`, in order.
pub async fn expect_frames(client: &mut impl ScenarioClient, expected: &[&str]) {
    for frame in expected {
        assert_eq!(recv(client).await, *frame);
    }
}

/// Asserts nothing arrives within [`SETTLE`].
pub async fn assert_silent(client: &mut impl ScenarioClient) {
    if let Some(frame) = client.recv_within(SETTLE).await {
        panic!("expected silence, got {frame}");
    }
}

/// `{"command":C,"room":R}`.
pub fn command(name: &str, room: RoomId) -> String {
    format!(r#"{{"command":"{name}","room":{}}}"#, room.0)
}

/// `{"command":"send","room":R,"message":M}` (M without quotes or escapes).
pub fn send_command(room: RoomId, message: &str) -> String {
    format!(
        r#"{{"command":"send","room":{},"message":"{message}"}}"#,
        room.0
    )
}

/// Joins `room`, expecting the join reply.
pub async fn join(client: &mut impl ScenarioClient, room: RoomId, title: &str) {
    client.send(&command("join", room)).await;
    expect_frames(client, &[&encode::join_reply(room, title)]).await;
}

async fn presence(host: &impl ScenarioHost, room: RoomId) -> Vec<(String, bool)> {
    host.layer()
        .presence_list(room)
        .await
        .expect("presence")
        .into_iter()
        .map(|entry| (entry.username, entry.left))
        .collect()
}

fn error(code: &str) -> String {
    format!(r#"{{"error":"{code}"}}"#)
}

/// The original multichat scenario: two users join a room, each sees the
/// other arrive, both get every message (the sender included), presence
/// lists both, and a leave reaches both and marks presence.
pub async fn two_users_talk_in_a_room(host: impl ScenarioHost) {
    let lobby = host.rooms().lobby;
    let mut ann = host.connect(ann()).await;
    let mut bob = host.connect(bob()).await;
    join(&mut ann, lobby, "Lobby").await;
    join(&mut bob, lobby, "Lobby").await;
    expect_frames(&mut ann, &[&encode::enter(lobby, "bob")]).await;
    // The joiner is not a member yet when ENTER goes out.
    assert_silent(&mut bob).await;

    ann.send(&send_command(lobby, "hello")).await;
    let hello = encode::message(lobby, "ann", "hello");
    expect_frames(&mut ann, &[&hello]).await;
    expect_frames(&mut bob, &[&hello]).await;
    let expected = [("ann".to_owned(), false), ("bob".to_owned(), false)];
    assert_eq!(presence(&host, lobby).await, expected);

    bob.send(&command("leave", lobby)).await;
    let leave = encode::leave(lobby, "bob");
    expect_frames(&mut bob, &[&encode::leave_reply(lobby), &leave]).await;
    expect_frames(&mut ann, &[&leave]).await;
    let expected = [("ann".to_owned(), false), ("bob".to_owned(), true)];
    assert_eq!(presence(&host, lobby).await, expected);

    // Gone from the room: nothing more reaches bob.
    ann.send(&send_command(lobby, "again")).await;
    expect_frames(&mut ann, &[&encode::message(lobby, "ann", "again")]).await;
    assert_silent(&mut bob).await;
}

/// Staff-only rooms refuse non-staff for every command; unknown rooms are
/// `ROOM_INVALID`; sending to or leaving a room not joined is refused.
pub async fn access_is_checked(host: impl ScenarioHost) {
    let ScenarioRooms { lobby, staff_room } = host.rooms();
    let mut ann = host.connect(ann()).await;
    let mut bob = host.connect(bob()).await;
    let denied = error("ROOM_ACCESS_DENIED");
    for refused in [
        command("join", staff_room),
        command("room_users", staff_room),
        command("leave", staff_room),
        send_command(staff_room, "hi"),
        send_command(lobby, "not joined"),
        command("leave", lobby),
    ] {
        bob.send(&refused).await;
        assert_eq!(recv(&mut bob).await, denied, "{refused}");
    }
    bob.send(&command("join", MISSING_ROOM)).await;
    expect_frames(&mut bob, &[&error("ROOM_INVALID")]).await;
    join(&mut ann, staff_room, "Staff room").await;
    // Joining twice answers again, without a second ENTER.
    join(&mut ann, staff_room, "Staff room").await;
    assert_silent(&mut ann).await;
}

/// Frames that are not commands get an error, and the connection goes on.
pub async fn bad_frames_are_answered_and_the_connection_stays(host: impl ScenarioHost) {
    let lobby = host.rooms().lobby;
    let mut bob = host.connect(bob()).await;
    for (frame, code) in [
        ("not json", "BAD_REQUEST"),
        ("[1,2]", "BAD_REQUEST"),
        (r#"{"command":"join"}"#, "BAD_REQUEST"),
        (r#"{"command":"join","room":"one"}"#, "BAD_REQUEST"),
        (r#"{"command":"dance","room":1}"#, "UNKNOWN_COMMAND"),
    ] {
        bob.send(frame).await;
        assert_eq!(recv(&mut bob).await, error(code), "{frame}");
    }
    // A room id may come as a string of digits.
    bob.send(&format!(r#"{{"command":"join","room":"{}"}}"#, lobby.0))
        .await;
    expect_frames(&mut bob, &[&encode::join_reply(lobby, "Lobby")]).await;
    // A text holding U+0000 cannot be stored everywhere: refused alone,
    // the next send goes through.
    bob.send(&format!(
        r#"{{"command":"send","room":{},"message":"a\u0000b"}}"#,
        lobby.0
    ))
    .await;
    assert_eq!(recv(&mut bob).await, error("BAD_REQUEST"));
    bob.send(&send_command(lobby, "after")).await;
    expect_frames(&mut bob, &[&encode::message(lobby, "bob", "after")]).await;
}

/// With [`small_limits`]: a message past the size limit and a room past
/// the per-connection limit are refused, the rest goes on.
pub async fn limits_are_enforced(host: impl ScenarioHost) {
    let ScenarioRooms { lobby, staff_room } = host.rooms();
    let mut bob = host.connect(bob()).await;
    join(&mut bob, lobby, "Lobby").await;
    bob.send(&send_command(lobby, "123456789")).await;
    expect_frames(&mut bob, &[&error("MESSAGE_TOO_LARGE")]).await;
    bob.send(&send_command(lobby, "12345678")).await;
    expect_frames(&mut bob, &[&encode::message(lobby, "bob", "12345678")]).await;
    let mut ann = host.connect(ann()).await;
    join(&mut ann, lobby, "Lobby").await;
    ann.send(&command("join", staff_room)).await;
    expect_frames(&mut ann, &[&error("TOO_MANY_ROOMS")]).await;
}

/// With [`slow_rate_limits`]: past the burst of two, frames are refused
/// with `RATE_LIMITED`; joins still pass, up to a burst of as many as the
/// connection may have rooms, and are refused past it.
pub async fn flooding_is_rate_limited(host: impl ScenarioHost) {
    let lobby = host.rooms().lobby;
    let mut bob = host.connect(bob()).await;
    for _ in 0..3 {
        bob.send(&command("leave", lobby)).await;
    }
    let denied = error("ROOM_ACCESS_DENIED");
    let limited = error("RATE_LIMITED");
    expect_frames(&mut bob, &[&denied, &denied, &limited]).await;
    for _ in 0..5 {
        bob.send(&command("join", lobby)).await;
    }
    let joined = encode::join_reply(lobby, "Lobby");
    expect_frames(&mut bob, &[&joined, &joined, &joined, &joined, &limited]).await;
}

/// When the membership cannot be added after ENTER went out, the others
/// are told with a LEAVE, the joiner hears `UNAVAILABLE` and is not in the
/// room.
pub async fn a_failed_join_is_compensated(host: impl ScenarioHost) {
    let lobby = host.rooms().lobby;
    let mut ann = host.connect(ann()).await;
    let mut bob = host.connect(bob()).await;
    join(&mut ann, lobby, "Lobby").await;
    host.layer().fail_next_group_add(GroupName::for_room(lobby));
    bob.send(&command("join", lobby)).await;
    expect_frames(&mut bob, &[&error("UNAVAILABLE")]).await;
    expect_frames(
        &mut ann,
        &[&encode::enter(lobby, "bob"), &encode::leave(lobby, "bob")],
    )
    .await;
    bob.send(&send_command(lobby, "in?")).await;
    expect_frames(&mut bob, &[&error("ROOM_ACCESS_DENIED")]).await;
}

/// A leave marks presence left before LEAVE goes out (whoever sees LEAVE
/// and asks `room_users` sees it too), and drops the membership after.
pub async fn a_leave_marks_presence_before_announcing(host: impl ScenarioHost) {
    let lobby = host.rooms().lobby;
    let user = bob();
    let presence_leave = format!("presence_leave {} {}", lobby.0, user.id);
    let mut bob = host.connect(user).await;
    join(&mut bob, lobby, "Lobby").await;
    bob.send(&command("leave", lobby)).await;
    expect_frames(&mut bob, &[&encode::leave_reply(lobby)]).await;
    let calls = host.layer().calls();
    let group = GroupName::for_room(lobby);
    // The notice carries both protocols' frames; the v1 one comes last.
    let leave_call = format!("group_send {group} ");
    let leave = encode::leave(lobby, "bob");
    let discard = format!("group_discard {group}");
    let position = |what: &str, matches: &dyn Fn(&str) -> bool| {
        calls
            .iter()
            .position(|made| matches(made))
            .unwrap_or_else(|| panic!("{what} in {calls:?}"))
    };
    let order = [
        position("presence_leave", &|made| made == presence_leave),
        position("the leave notice", &|made| {
            made.starts_with(&leave_call) && made.ends_with(&leave)
        }),
        position("group_discard", &|made| made == discard),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{calls:?}");
}

/// A broadcast the layer refuses is answered `UNAVAILABLE`, before the
/// answer to any later command.
pub async fn a_failed_send_is_answered_in_order(host: impl ScenarioHost) {
    let lobby = host.rooms().lobby;
    let mut bob = host.connect(bob()).await;
    join(&mut bob, lobby, "Lobby").await;
    bob.send(&send_command(lobby, FAILING_TEXT)).await;
    bob.send(&command("leave", lobby)).await;
    expect_frames(
        &mut bob,
        &[
            &error("UNAVAILABLE"),
            &encode::leave_reply(lobby),
            &encode::leave(lobby, "bob"),
        ],
    )
    .await;
}

/// A connection that ends leaves every room it was in: the others see
/// LEAVE, presence is marked left.
pub async fn closing_leaves_every_room(host: impl ScenarioHost) {
    let ScenarioRooms { lobby, staff_room } = host.rooms();
    let mut carol = host.connect(carol()).await;
    let mut ann = host.connect(ann()).await;
    join(&mut carol, lobby, "Lobby").await;
    join(&mut carol, staff_room, "Staff room").await;
    join(&mut ann, lobby, "Lobby").await;
    join(&mut ann, staff_room, "Staff room").await;
    expect_frames(
        &mut carol,
        &[
            &encode::enter(lobby, "ann"),
            &encode::enter(staff_room, "ann"),
        ],
    )
    .await;
    ann.close().await;
    let mut left = vec![recv(&mut carol).await, recv(&mut carol).await];
    left.sort();
    let mut expected = vec![
        encode::leave(lobby, "ann"),
        encode::leave(staff_room, "ann"),
    ];
    expected.sort();
    assert_eq!(left, expected);
    let expected = [("ann".to_owned(), true), ("carol".to_owned(), false)];
    assert_eq!(presence(&host, lobby).await, expected);
}

/// A room made staff-only loses its members who are not staff at once:
/// each is told (the leave reply), refused when it sends, and sent
/// nothing more of the room; the others see it leave and presence marks it
/// left. Staff stay and carry on. The change is announced through the
/// host's layer, as the host's admin does once it stored it.
pub async fn a_room_made_staff_only_loses_its_other_members(host: impl ScenarioHost) {
    let lobby = host.rooms().lobby;
    let mut ann = host.connect(ann()).await;
    let mut bob = host.connect(bob()).await;
    join(&mut ann, lobby, "Lobby").await;
    join(&mut bob, lobby, "Lobby").await;
    expect_frames(&mut ann, &[&encode::enter(lobby, "bob")]).await;

    AccessChange::RoomStaffOnly(lobby)
        .announce(host.layer())
        .await
        .expect("announced");
    expect_frames(&mut bob, &[&encode::leave_reply(lobby)]).await;
    expect_frames(&mut ann, &[&encode::leave(lobby, "bob")]).await;
    assert_eq!(
        presence(&host, lobby).await,
        [("ann".to_owned(), false), ("bob".to_owned(), true)]
    );
    bob.send(&send_command(lobby, "still?")).await;
    expect_frames(&mut bob, &[&error("ROOM_ACCESS_DENIED")]).await;
    ann.send(&send_command(lobby, "staff")).await;
    expect_frames(&mut ann, &[&encode::message(lobby, "ann", "staff")]).await;
    assert_silent(&mut bob).await;
}

/// A deleted room is left by every member at once, each told with the
/// leave reply and sent nothing more of it.
pub async fn a_deleted_room_is_left_by_everyone(host: impl ScenarioHost) {
    let ScenarioRooms { lobby, staff_room } = host.rooms();
    let mut ann = host.connect(ann()).await;
    let mut bob = host.connect(bob()).await;
    join(&mut ann, lobby, "Lobby").await;
    join(&mut ann, staff_room, "Staff room").await;
    join(&mut bob, lobby, "Lobby").await;
    expect_frames(&mut ann, &[&encode::enter(lobby, "bob")]).await;

    AccessChange::RoomDeleted(lobby)
        .announce(host.layer())
        .await
        .expect("announced");
    for client in [&mut ann, &mut bob] {
        expect_frames(client, &[&encode::leave_reply(lobby)]).await;
        client.send(&send_command(lobby, "anyone?")).await;
        expect_frames(client, &[&error("ROOM_ACCESS_DENIED")]).await;
        assert_silent(client).await;
    }
    ann.send(&send_command(staff_room, "here")).await;
    expect_frames(&mut ann, &[&encode::message(staff_room, "ann", "here")]).await;
}

/// Runs every scenario of this module as a test, each on a fresh host:
/// `$make` is a function from [`Limits`] to a future of the host (built
/// over a new [`ScriptedLayer`] with [`rooms`] and those limits).
#[macro_export]
macro_rules! chat_host_test_suite {
    ($make:expr) => {
        $crate::chat_host_test_suite!(@scenarios $make;
            two_users_talk_in_a_room: default_limits,
            access_is_checked: default_limits,
            bad_frames_are_answered_and_the_connection_stays: default_limits,
            limits_are_enforced: small_limits,
            flooding_is_rate_limited: slow_rate_limits,
            a_failed_join_is_compensated: default_limits,
            a_leave_marks_presence_before_announcing: default_limits,
            a_failed_send_is_answered_in_order: default_limits,
            closing_leaves_every_room: default_limits,
            a_room_made_staff_only_loses_its_other_members: default_limits,
            a_deleted_room_is_left_by_everyone: default_limits,
        );
    };
    (@scenarios $make:expr; $($scenario:ident: $limits:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let make = $make;
                let host = make($crate::testing::$limits()).await;
                $crate::testing::$scenario(host).await;
            }
        )*
    };
}

/// The host without a transport: each client is a [`Connection`] and its
/// inbox, driven directly.
pub struct InProcessHost {
    chat: Arc<Chat<ScriptedLayer, StaticRooms, MemoryLog>>,
}

impl InProcessHost {
    /// A host over a new [`ScriptedLayer`] with [`rooms`] and `limits`.
    pub fn new(limits: Limits) -> Self {
        InProcessHost {
            chat: Arc::new(Chat::new(
                ScriptedLayer::default(),
                rooms(),
                MemoryLog::default(),
                limits,
            )),
        }
    }

    /// The chat, for checks beyond the scenarios.
    pub fn chat(&self) -> &Arc<Chat<ScriptedLayer, StaticRooms, MemoryLog>> {
        &self.chat
    }
}

/// A client of [`InProcessHost`]: the frames the rules answered, then
/// whatever reaches the inbox, as a socket would deliver them.
pub struct InProcessClient {
    /// The rules of this connection.
    pub connection: Connection<ScriptedLayer, StaticRooms, MemoryLog>,
    inbox: Inbox,
    answered: VecDeque<String>,
}

impl InProcessHost {
    /// A client of `user` speaking `protocol`, whatever the host's.
    pub async fn connect_speaking(&self, protocol: Protocol, user: ChatUser) -> InProcessClient {
        let inbox = self.chat.layer().new_channel();
        let connection = Connection::open(
            self.chat.clone(),
            user,
            inbox.name(),
            protocol,
            Instant::now(),
        )
        .await
        .expect("the layer takes the connection");
        InProcessClient {
            connection,
            inbox,
            answered: VecDeque::new(),
        }
    }
}

impl ScenarioHost for InProcessHost {
    type Client = InProcessClient;

    async fn connect(&self, user: ChatUser) -> InProcessClient {
        self.connect_speaking(Protocol::V1, user).await
    }

    fn layer(&self) -> &ScriptedLayer {
        self.chat.layer()
    }
}

impl ScenarioClient for InProcessClient {
    async fn send(&mut self, text: &str) {
        let answer = self.connection.on_frame(Some(text), Instant::now()).await;
        self.answered.extend(answer);
        // A transport completes sends as it goes; here, at once.
        let failed = self.connection.finish_sends().await;
        self.answered.extend(failed);
    }

    async fn recv_within(&mut self, wait: Duration) -> Option<String> {
        if let Some(frame) = self.answered.pop_front() {
            return Some(frame);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Ok(payload)) => {
                    let mut out = Vec::new();
                    self.connection.deliver(payload, Instant::now(), &mut out);
                    self.answered
                        .extend(out.iter().map(|payload| payload.as_str().to_owned()));
                    // A room left on a change of access: its leave is
                    // under way with the sends, which a transport completes
                    // as it goes.
                    let left = self.connection.finish_sends().await;
                    self.answered.extend(left);
                    if let Some(frame) = self.answered.pop_front() {
                        return Some(frame);
                    }
                }
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    async fn close(mut self) {
        self.connection.depart().await;
    }
}
