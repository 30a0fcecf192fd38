//! One connection's rules: commands in, frames out.
//!
//! Commands are answered with frames for the client alone (replies,
//! errors), returned to the host. Room events (messages, enter and leave
//! notices, typing) go through the channel layer to every member's inbox,
//! so each room's events reach every member in the same order.
//!
//! The fan-out path: a stored message is encoded once per protocol into a
//! shared [`Payload`] (see `writer`); the layer hands every member's inbox a
//! reference-counted clone; each member's host writes the same bytes to its
//! socket. A room has a group per protocol, so v1 and v2 members share a
//! room while each reads its own frames.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use whisper_protocol::v2::{self, EventHead, RoomUser, Seq, UserRef};
use whisper_protocol::{Command, ErrorCode, RoomId, decode_command, encode};
use whisper_rooms::{ChannelLayer, ChannelName, GroupName, LayerError, Payload};

use crate::access::AccessChange;
use crate::log::{Draft, Erase, Erasure, MessageLog, unix_millis};
use crate::rate::TokenBucket;
use crate::writer::Outcome;
use crate::{
    Chat, ChatUser, Counters, FRAME_SEPARATOR, Mute, MuteOutcome, Protocol, Room, RoomDirectory,
    room_event,
};

/// A `send` under way: completes with the frame to answer, if any.
type SendInFlight = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// How often, at most, a sender's messages refresh its presence (its
/// `last_update` in `room_users`): a busy sender then pays one layer round
/// trip per message, not two (a Redis one, across nodes). Shorter when the
/// presence TTL is short, so an active sender never lapses.
const PRESENCE_REFRESH: Duration = Duration::from_secs(1);

/// The most messages a v2 `join` recovers: a client further behind gets the
/// latest page and `recovered: false`.
pub const RECOVERY_MAX: u32 = 1000;

/// How long a v2 connection holds a message that came before one it
/// follows before reading the missing ones from the log. Nodes publish
/// what they stored independently, so across nodes seq 7 can overtake seq
/// 6 by a few milliseconds; a node that died between storing and publishing
/// never sends its message at all.
pub const GAP_WAIT: Duration = Duration::from_millis(500);

/// Most messages a v2 connection holds per room while waiting for a gap to
/// fill; past it the log is read at once.
const MAX_EARLY: usize = 1024;

/// The most text a v2 `join` recovers, in bytes: past it the client gets
/// the latest page and `recovered: false`, as when too many messages were
/// missed.
pub const RECOVERY_MAX_BYTES: usize = 1 << 20;

/// A room this connection has joined, remembered so `send` needs no lookup.
#[derive(Debug)]
struct JoinedRoom {
    /// When this connection last refreshed its presence here.
    presence_touched: Instant,
    /// v2: the highest seq the client has, with every seq before it (from
    /// a `join` result or events); a copy at or below it is a duplicate.
    seen: Seq,
    /// v2: messages that arrived ahead of a seq still missing, held until
    /// it comes or [`GAP_WAIT`] passes.
    early: BTreeMap<Seq, Payload>,
    /// Since when `early` has been waiting for its gap.
    gap_since: Option<Instant>,
    /// v2: this socket's own typing notices still to come back through the
    /// room; they are dropped (the user's other sockets get theirs).
    typing_echoes: u8,
    /// Until when (Unix milliseconds) the directory said the user is muted
    /// here, read at the join; a change heard since wins (see
    /// `Connection::heard_mutes`).
    muted_until: Option<i64>,
}

impl JoinedRoom {
    fn new(now: Instant, muted_until: Option<i64>) -> Self {
        JoinedRoom {
            presence_touched: now,
            seen: Seq(0),
            early: BTreeMap::new(),
            gap_since: None,
            typing_echoes: 0,
            muted_until,
        }
    }

    /// Takes a v2 message: passes it on (with whatever it lets through
    /// from `early`), holds it when a seq before it is missing, drops it
    /// when the client has it.
    fn take(&mut self, seq: Seq, payload: Payload, now: Instant, out: &mut Vec<Payload>) {
        if seq <= self.seen {
            return;
        }
        if seq.0 == self.seen.0 + 1 {
            self.seen = seq;
            out.push(payload);
            self.release(out);
            return;
        }
        self.early.insert(seq, payload);
        let since = self.gap_since.get_or_insert(now);
        if self.early.len() > MAX_EARLY {
            // Too much held: read the gap from the log at the next chance.
            *since = now.checked_sub(GAP_WAIT).unwrap_or(now);
        }
    }

    /// Passes on the held messages that now follow without a gap; drops
    /// those the client already has.
    fn release(&mut self, out: &mut Vec<Payload>) {
        while let Some(entry) = self.early.first_entry() {
            let seq = *entry.key();
            if seq <= self.seen {
                entry.remove();
            } else if seq.0 == self.seen.0 + 1 {
                self.seen = seq;
                out.push(entry.remove());
            } else {
                break;
            }
        }
        if self.early.is_empty() {
            self.gap_since = None;
        }
    }

    /// When the gap, if any, is to be read from the log.
    fn gap_deadline(&self) -> Option<Instant> {
        self.gap_since.map(|since| since + GAP_WAIT)
    }
}

/// How a reply is written: the protocol, and for v2 the command's `id`.
#[derive(Debug, Clone, Copy)]
enum Answer {
    V1,
    V2(Option<u64>),
}

impl Answer {
    fn error(self, code: ErrorCode, room: Option<RoomId>) -> String {
        match self {
            Answer::V1 => encode::error(code),
            Answer::V2(id) => v2::encode::error(id, code, room),
        }
    }
}

/// The state and rules of one chat connection.
///
/// Driven by its host: [`on_frame`](Self::on_frame) for every frame the
/// client sends, [`send_completed`](Self::send_completed) polled alongside
/// the socket (sends, and leaving rooms the connection lost access to, are
/// under way there), [`deliver`](Self::deliver) for each payload from the
/// inbox, [`set_user`](Self::set_user) when the host learns the user
/// changed (see [`take_user_changed`](Self::take_user_changed)), and
/// [`depart`](Self::depart) once the socket is gone. The host writes the
/// returned frames in order, and whatever arrives in the inbox named by
/// the channel it passed to [`open`](Self::open) and
/// [`deliver`](Self::deliver) lets through.
pub struct Connection<L, D, M> {
    chat: Arc<Chat<L, D, M>>,
    user: ChatUser,
    channel: ChannelName,
    protocol: Protocol,
    joined: HashMap<RoomId, JoinedRoom>,
    /// Every frame but a well-formed `join` takes a token here.
    frames: TokenBucket,
    /// A well-formed `join` takes a token here instead, so a client can
    /// join all its rooms at once (after a reconnect) whatever else it
    /// sent, while joins beyond that come no faster than frames do.
    joins: TokenBucket,
    /// `send`s under way, oldest first; made at the first send. Only ever
    /// reached through `get_mut`: the mutex is never locked, it only makes
    /// the queue `Sync`, so a future borrowing the connection is `Send` and
    /// a host can spawn it.
    sends: Mutex<Option<FuturesOrdered<SendInFlight>>>,
    /// An [`AccessChange::User`] for this user arrived: the host should
    /// read the user again.
    user_changed: bool,
    /// Rooms this connection was taken out of while its membership may
    /// still be in the layer (it is dropped by a leave under way in
    /// `sends`): their events are not passed on. Cleared by joining again.
    revoked: Vec<RoomId>,
    /// The user's mutes as heard through [`AccessChange::Mute`] since the
    /// connection opened, by room (`None`: lifted). Heard changes are
    /// newer than anything a join reads (a directory's cache may lag
    /// behind a change still on its way), so they win over
    /// `JoinedRoom::muted_until`.
    heard_mutes: HashMap<RoomId, Option<i64>>,
}

impl<L: ChannelLayer, D: RoomDirectory, M: MessageLog> Connection<L, D, M> {
    /// A connection of `user` speaking `protocol`, whose room events go to
    /// `channel` (the name of the inbox the host reads from), opened at
    /// `now`. The channel joins the user's group
    /// ([`AccessChange::user_group`]) so a change to the user reaches it;
    /// when the layer cannot add it the connection is not opened, since it
    /// could not follow a logout.
    pub async fn open(
        chat: Arc<Chat<L, D, M>>,
        user: ChatUser,
        channel: ChannelName,
        protocol: Protocol,
        now: Instant,
    ) -> Result<Self, LayerError> {
        chat.layer
            .group_add(&AccessChange::user_group(user.id), channel)
            .await
            .inspect_err(|error| {
                chat.layer_failed("group_add", error);
            })?;
        let limits = &chat.limits;
        let rate = limits.max_messages_per_second;
        let frames = TokenBucket::new(rate, limits.frame_burst(), now);
        let joins = TokenBucket::new(rate, limits.join_burst(), now);
        Ok(Connection {
            chat,
            user,
            channel,
            protocol,
            joined: HashMap::new(),
            frames,
            joins,
            sends: Mutex::new(None),
            user_changed: false,
            revoked: Vec::new(),
            heard_mutes: HashMap::new(),
        })
    }

    /// The user as the connection knows it now.
    pub fn user(&self) -> &ChatUser {
        &self.user
    }

    /// The protocol the connection speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The frame that tells this connection's client of an error outside
    /// any command (a frame too large to read), in its protocol.
    pub fn error_frame(&self, code: ErrorCode) -> String {
        match self.protocol {
            Protocol::V1 => encode::error(code),
            Protocol::V2 => v2::encode::error(None, code, None),
        }
    }

    /// Whether the connection is in this room.
    pub fn has_joined(&self, room: RoomId) -> bool {
        self.joined.contains_key(&room)
    }

    /// Answers one frame from the client received at `now`: its text, or
    /// `None` for a frame that is not text (neither protocol has binary
    /// commands). The frames returned go to the client in order.
    ///
    /// A `send` starts and returns at once (see
    /// [`send_completed`](Self::send_completed)); any other command first
    /// waits for the sends under way, so answers keep the client's order.
    pub async fn on_frame(&mut self, text: Option<&str>, now: Instant) -> Vec<String> {
        Counters::bump(&self.chat.counters.frames_received);
        let mut frames = Vec::new();
        let decoded = match self.protocol {
            Protocol::V1 => Decoded::V1(text.map_or(Err(ErrorCode::BadRequest), decode_command)),
            Protocol::V2 => Decoded::V2(text.map_or(
                Err(v2::DecodeError {
                    code: ErrorCode::BadRequest,
                    id: None,
                    room: None,
                }),
                v2::decode_command,
            )),
        };
        let bucket = if decoded.is_join() {
            &mut self.joins
        } else {
            &mut self.frames
        };
        if !bucket.try_take(now) {
            Counters::bump(&self.chat.counters.frames_rate_limited);
            // Refused without being acted on; the host's write of the reply
            // also slows a flooding client down, since it waits on the
            // client reading.
            self.finish_sends_into(&mut frames).await;
            frames.push(self.error_frame(ErrorCode::RateLimited));
            return frames;
        }
        if !decoded.is_send() {
            self.finish_sends_into(&mut frames).await;
        }
        // Boxed, as every lookup here: a future is as large as its largest
        // state, and inline this would make every connection's task ~1.9 KiB
        // bigger for the whole of its life (3.7 KiB to 1.8 KiB, measured
        // with size_of_val in Whisper's server).
        let answer = match decoded {
            Decoded::V1(command) => Box::pin(self.handle_v1(command, now)).await,
            Decoded::V2(request) => Box::pin(self.handle_v2(request, now)).await,
        };
        if let Some(answer) = answer {
            self.finish_sends_into(&mut frames).await;
            frames.push(answer);
        }
        frames
    }

    /// Whether the host may read the next frame: false while
    /// [`Limits::max_sends_in_flight`](crate::Limits::max_sends_in_flight)
    /// sends are under way. A host that stops reading lets TCP slow the
    /// client down.
    pub fn accepts_frames(&mut self) -> bool {
        let in_flight = pending(&mut self.sends)
            .as_ref()
            .map_or(0, FuturesOrdered::len);
        in_flight < self.chat.limits.max_sends_in_flight
    }

    /// Completes when the oldest send under way does: with the frame to
    /// write (v2's result, or an error). Never completes while no send is
    /// under way, so a host can keep it in its `select!` beside the socket;
    /// cancelling it loses nothing.
    pub async fn send_completed(&mut self) -> Option<String> {
        let outcome = match pending(&mut self.sends) {
            Some(sends) if !sends.is_empty() => sends.next().await,
            _ => None,
        };
        match outcome {
            Some(answer) => answer,
            None => std::future::pending().await,
        }
    }

    /// Waits for every send under way; returns their frames, in order. A
    /// host calls it before writing a frame of its own (an error for an
    /// oversized frame), so it stays in order too.
    pub async fn finish_sends(&mut self) -> Vec<String> {
        let mut frames = Vec::new();
        self.finish_sends_into(&mut frames).await;
        frames
    }

    async fn finish_sends_into(&mut self, frames: &mut Vec<String>) {
        let Some(sends) = pending(&mut self.sends) else {
            return;
        };
        while let Some(answer) = sends.next().await {
            frames.extend(answer);
        }
    }

    /// Takes a payload from the inbox, received at `now`, and adds what the
    /// host should write to `out`. A v1 connection writes everything. A v2
    /// connection writes each message once and in seq order: it drops the
    /// copies its client already has (in a `join` result, or as the
    /// sender's own copy) and its own typing notices, and holds a message
    /// that overtook an earlier one (see [`GAP_WAIT`] and
    /// [`fill_gaps`](Self::fill_gaps)).
    ///
    /// An [`AccessChange`] is acted on here: a room this user may no longer
    /// use is left at once (the client told as by
    /// [`set_user`](Self::set_user)), and a change to the user is kept for
    /// the host (see [`take_user_changed`](Self::take_user_changed)).
    pub fn deliver(&mut self, payload: Payload, now: Instant, out: &mut Vec<Payload>) {
        if let Some(change) = AccessChange::from_payload(&payload) {
            self.follow(change, out);
            return;
        }
        let parts = payload.split_once(FRAME_SEPARATOR);
        if self.protocol == Protocol::V1 {
            match parts {
                Some((_, v1_frame)) if v1_frame.is_empty() => {}
                Some((v2_frame, _)) if self.is_revoked(&v2_frame) => {}
                Some((_, v1_frame)) => out.push(v1_frame),
                None => out.push(payload),
            }
            return;
        }
        let payload = parts.map_or(payload, |(v2_frame, _)| v2_frame);
        match v2::peek_event(payload.as_bytes()) {
            EventHead::Message { room, seq } => {
                if let Some(joined) = self.joined.get_mut(&room) {
                    joined.take(seq, payload, now, out);
                }
            }
            // Leftovers of a room left are dropped, as are this socket's
            // own notices.
            EventHead::Typing { room, user_id } => match self.joined.get_mut(&room) {
                Some(joined) if user_id == self.user.id && joined.typing_echoes > 0 => {
                    joined.typing_echoes -= 1;
                }
                Some(_) => out.push(payload),
                None => {}
            },
            EventHead::Presence { room } | EventHead::Deleted { room, .. } => {
                if self.joined.contains_key(&room) {
                    out.push(payload);
                }
            }
            EventHead::Other => out.push(payload),
        }
    }

    /// When the host should call [`fill_gaps`](Self::fill_gaps): the
    /// earliest moment a held message has waited [`GAP_WAIT`]; `None` while
    /// nothing is held.
    pub fn gap_deadline(&self) -> Option<Instant> {
        self.joined
            .values()
            .filter_map(JoinedRoom::gap_deadline)
            .min()
    }

    /// Reads from the log the messages missing before those held past
    /// [`GAP_WAIT`], and returns them with the held ones, in order. A seq
    /// the log does not have (removed by retention meanwhile) is skipped;
    /// a log that fails is asked again after another wait.
    pub async fn fill_gaps(&mut self, now: Instant) -> Vec<String> {
        let due: Vec<RoomId> = self
            .joined
            .iter()
            .filter(|(_, joined)| joined.gap_deadline().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        let mut frames = Vec::new();
        for room in due {
            let Some(joined) = self.joined.get(&room) else {
                continue;
            };
            let Some(first_held) = joined.early.keys().next().copied() else {
                continue;
            };
            let seen = joined.seen;
            let missing = u32::try_from(first_held.0 - seen.0 - 1).unwrap_or(u32::MAX);
            let read = self
                .chat
                .log
                .after(room, seen, missing.min(RECOVERY_MAX))
                .await;
            let Some(joined) = self.joined.get_mut(&room) else {
                continue;
            };
            match read {
                Ok(messages) => {
                    for message in messages {
                        if message.seq > joined.seen && message.seq < first_held {
                            joined.seen = message.seq;
                            frames.push(v2::encode::message(&message, None));
                        }
                    }
                    joined.seen = joined.seen.max(Seq(first_held.0 - 1));
                    let mut released = Vec::new();
                    joined.release(&mut released);
                    frames.extend(released.iter().map(|payload| payload.as_str().to_owned()));
                    if !joined.early.is_empty() {
                        joined.gap_since = Some(now);
                    }
                }
                Err(error) => {
                    log_failed(&error);
                    joined.gap_since = Some(now);
                }
            }
        }
        frames
    }

    /// Whether an [`AccessChange::User`] for this user arrived since the
    /// last call. The host then reads the user again (its session may have
    /// ended: the host closes the socket) and hands it to
    /// [`set_user`](Self::set_user).
    pub fn take_user_changed(&mut self) -> bool {
        std::mem::take(&mut self.user_changed)
    }

    /// Takes what the host now knows of the user (after re-reading its
    /// session), and checks every joined room again: a room that is gone,
    /// or that the user may no longer enter (lost staff), is left at once.
    /// The returned frames tell the client (v1: the leave reply; v2: a
    /// `ROOM_INVALID` or `ROOM_ACCESS_DENIED` error naming the room). A
    /// room the directory cannot look up now is kept.
    pub async fn set_user(&mut self, user: ChatUser) -> Vec<String> {
        self.user = user;
        let joined: Vec<RoomId> = self.joined.keys().copied().collect();
        let mut frames = Vec::new();
        for id in joined {
            let refusal = match self.accessible_room(id).await {
                Err(code @ (ErrorCode::RoomInvalid | ErrorCode::RoomAccessDenied)) => code,
                Ok(_) | Err(_) => continue,
            };
            frames.extend(self.evict(id, refusal));
        }
        frames
    }

    /// Acts on a change of access delivered through the inbox.
    fn follow(&mut self, change: AccessChange, out: &mut Vec<Payload>) {
        let evicted = match change {
            AccessChange::Mute { room, user, until } => {
                if user == self.user.id {
                    self.heard_mutes.insert(room, until);
                    // Told to a v2 client in the room, so it can say so
                    // before the user tries to post.
                    if self.protocol == Protocol::V2 && self.joined.contains_key(&room) {
                        out.push(Payload::from(match until {
                            Some(until) => v2::encode::muted(room, until),
                            None => v2::encode::unmuted(room),
                        }));
                    }
                }
                None
            }
            AccessChange::RoomDeleted(id) => self.evict(id, ErrorCode::RoomInvalid),
            AccessChange::RoomStaffOnly(id) if !self.user.is_staff => {
                self.evict(id, ErrorCode::RoomAccessDenied)
            }
            AccessChange::RoomStaffOnly(_) | AccessChange::RoomOpened(_) => None,
            AccessChange::User(id) => {
                self.user_changed |= id == self.user.id;
                None
            }
        };
        out.extend(evicted.map(Payload::from));
    }

    /// Takes the connection out of a room it may no longer use: at once
    /// for its own commands and the room's events, and in the layer by a
    /// leave queued with the sends (membership dropped before the leave
    /// notice, so nothing more of the room reaches it). Returns the frame
    /// telling the client, `None` when it was not in the room.
    fn evict(&mut self, id: RoomId, code: ErrorCode) -> Option<String> {
        self.joined.remove(&id)?;
        if !self.revoked.contains(&id) {
            self.revoked.push(id);
        }
        let chat = self.chat.clone();
        let user = self.user.clone();
        let channel = self.channel;
        pending(&mut self.sends)
            .get_or_insert_with(FuturesOrdered::new)
            .push_back(Box::pin(async move {
                if let Err(error) = chat.leave_room(id, &user, channel, false).await {
                    chat.layer_failed("group_send", &error);
                }
                None
            }));
        Some(match self.protocol {
            Protocol::V1 => encode::leave_reply(id),
            Protocol::V2 => v2::encode::error(None, code, Some(id)),
        })
    }

    /// Whether a room event (its v2 frame) is of a room this connection
    /// was taken out of; looked at only while there is such a room.
    fn is_revoked(&self, v2_frame: &Payload) -> bool {
        if self.revoked.is_empty() {
            return false;
        }
        match v2::peek_event(v2_frame.as_bytes()) {
            EventHead::Message { room, .. }
            | EventHead::Typing { room, .. }
            | EventHead::Presence { room }
            | EventHead::Deleted { room, .. } => self.revoked.contains(&room),
            EventHead::Other => false,
        }
    }

    /// Leaves every joined room as an explicit leave would, so the others
    /// see the leave notice however the connection ended, and closes the
    /// channel. The future owns what it needs, so a host can run it from
    /// `Drop` in a task of its own; after it, the connection is in no room.
    pub fn depart(&mut self) -> impl Future<Output = ()> + Send + 'static {
        let chat = self.chat.clone();
        let rooms = std::mem::take(&mut self.joined);
        let user = self.user.clone();
        let channel = self.channel;
        let protocol = self.protocol;
        async move {
            for id in rooms.into_keys() {
                let left = chat
                    .leave_room(id, &user, channel, protocol == Protocol::V1)
                    .await;
                if let Err(error) = left {
                    chat.layer_failed("group_send", &error);
                    // Nobody will retry: drop the membership anyway.
                    let group = GroupName::for_room(id);
                    let _ = chat.layer.group_discard(&group, channel).await;
                }
            }
            chat.layer.close_channel(channel).await;
        }
    }

    /// Answers one v1 command: a frame to write, or `None` (a `send` is
    /// answered by the message's own echo, or later by an error).
    async fn handle_v1(
        &mut self,
        command: Result<Command, ErrorCode>,
        now: Instant,
    ) -> Option<String> {
        let result = match command {
            Ok(Command::Join { room }) => self
                .join(room, now)
                .await
                .map(|room| Some(encode::join_reply(room.id, &room.title))),
            Ok(Command::Leave { room }) => self
                .leave(room)
                .await
                .map(|()| Some(encode::leave_reply(room))),
            Ok(Command::Send { room, message }) => match self.mute_in_force(room) {
                Some(_) => Err(ErrorCode::Muted),
                None => self
                    .start_send(room, message, None, Answer::V1, now)
                    .map(|()| None),
            },
            Ok(Command::RoomUsers { room }) => self.room_users_v1(room).await.map(Some),
            Err(code) => Err(code),
        };
        result.unwrap_or_else(|code| Some(encode::error(code)))
    }

    /// Answers one v2 command: a frame to write, or `None` for a `send`
    /// (answered once stored, through [`send_completed`](Self::send_completed)).
    async fn handle_v2(
        &mut self,
        request: Result<v2::Request, v2::DecodeError>,
        now: Instant,
    ) -> Option<String> {
        let v2::Request { id, command } = match request {
            Ok(request) => request,
            Err(error) => return Some(v2::encode::error(error.id, error.code, error.room)),
        };
        let room = command_room(&command);
        let result = match command {
            v2::Command::Join { room, since, limit } => {
                self.join_v2(id, room, since, limit, now).await.map(Some)
            }
            v2::Command::Leave { room } => self
                .leave(room)
                .await
                .map(|()| Some(v2::encode::leave_result(id, room))),
            v2::Command::Send { room, text, nonce } => match self.mute_in_force(room) {
                Some(until) => Ok(Some(v2::encode::muted_error(id, room, until))),
                None => self
                    .start_send(room, text, nonce, Answer::V2(id), now)
                    .map(|()| None),
            },
            v2::Command::History {
                room,
                before,
                limit,
            } => self.history(id, room, before, limit).await.map(Some),
            v2::Command::RoomUsers { room } => self.room_users_v2(id, room).await.map(Some),
            v2::Command::Typing { room } => match self.mute_in_force(room) {
                Some(until) => Ok(Some(v2::encode::muted_error(id, room, until))),
                None => self.typing(id, room, now).await.map(Some),
            },
            v2::Command::Mute {
                room,
                user,
                seconds,
            } => self.mute(id, room, user, Some(seconds)).await.map(Some),
            v2::Command::Unmute { room, user } => self.mute(id, room, user, None).await.map(Some),
            v2::Command::Delete { room, seq } => self.delete(id, room, seq).await.map(Some),
        };
        result.unwrap_or_else(|code| Some(v2::encode::error(id, code, Some(room))))
    }

    /// The room if it exists and this user may enter it.
    async fn accessible_room(&self, id: RoomId) -> Result<Room, ErrorCode> {
        let room = Box::pin(self.chat.rooms.room(id))
            .await
            .map_err(|error| {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "room lookup failed"
                );
                ErrorCode::Unavailable
            })?
            .ok_or(ErrorCode::RoomInvalid)?;
        if !room.admits(self.user.is_staff) {
            return Err(ErrorCode::RoomAccessDenied);
        }
        Ok(room)
    }

    /// Enters a room: the enter notice to the room (before this connection
    /// is a member, so it does not get its own), membership, presence. A
    /// room already joined is only looked up again.
    async fn join(&mut self, id: RoomId, now: Instant) -> Result<Room, ErrorCode> {
        let room = self.accessible_room(id).await?;
        if self.joined.contains_key(&id) {
            return Ok(room);
        }
        if self.joined.len() >= self.chat.limits.max_rooms_per_connection {
            return Err(ErrorCode::TooManyRooms);
        }
        // Read with the room (a caching directory keeps them together); a
        // join that cannot tell whether its user is muted does not happen.
        let muted_until = Box::pin(self.chat.rooms.muted_until(id, self.user.id))
            .await
            .map_err(|error| {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "mute lookup failed"
                );
                ErrorCode::Unavailable
            })?;
        let chat = &self.chat;
        chat.announce(id, &self.user, Notice::Enter)
            .await
            .map_err(|error| chat.layer_failed("group_send", &error))?;
        if let Err(error) = chat
            .layer
            .group_add(&GroupName::for_room(id), self.channel)
            .await
        {
            chat.layer_failed("group_add", &error);
            // The others saw the enter notice; tell them the join did not
            // happen.
            if let Err(error) = chat.announce(id, &self.user, Notice::Leave).await {
                chat.layer_failed("group_send", &error);
            }
            return Err(ErrorCode::Unavailable);
        }
        // Remembered as soon as the membership exists, so however the
        // connection ends from here on, its departure leaves the room.
        self.joined.insert(id, JoinedRoom::new(now, muted_until));
        self.revoked.retain(|revoked| *revoked != id);
        self.touch_presence(id).await;
        Ok(room)
    }

    /// v2's join: membership first, then the log, so every message stored
    /// after the read is published to this connection too; those the read
    /// already returned are dropped by [`deliver`](Self::deliver).
    async fn join_v2(
        &mut self,
        id: Option<u64>,
        room: RoomId,
        since: Option<v2::Since>,
        limit: u32,
        now: Instant,
    ) -> Result<String, ErrorCode> {
        let joined_room = self.join(room, now).await?;
        let log = &self.chat.log;
        let state = log.state(room).await.map_err(|error| log_failed(&error))?;
        let recoverable = since.as_ref().is_some_and(|since| {
            since.epoch == state.epoch
                && since.seq <= state.latest
                && state.latest.0 - since.seq.0 <= u64::from(RECOVERY_MAX)
                && (since.seq == state.latest
                    || state
                        .oldest
                        .is_some_and(|oldest| since.seq.0 + 1 >= oldest.0))
        });
        let mut recovered = None;
        if let Some(since) = since.filter(|_| recoverable) {
            let missed = log
                .after(room, since.seq, RECOVERY_MAX)
                .await
                .map_err(|error| log_failed(&error))?;
            let bytes: usize = missed
                .iter()
                .map(|message| message.text.as_ref().map_or(0, String::len))
                .sum();
            // A client far behind in a room of long messages gets the
            // latest page instead: one join must not cost megabytes.
            if bytes <= RECOVERY_MAX_BYTES {
                recovered = Some(missed);
            }
        }
        let recoverable = recovered.is_some();
        let messages = match recovered {
            Some(missed) => missed,
            None => log
                .latest(room, limit)
                .await
                .map_err(|error| log_failed(&error))?,
        };
        let latest = messages
            .last()
            .map_or(state.latest, |last| last.seq.max(state.latest));
        if let Some(joined) = self.joined.get_mut(&room) {
            joined.seen = joined.seen.max(latest);
            // Held copies the result now covers go; the rest wait for
            // their gap as before.
            joined.early.retain(|seq, _| *seq > latest);
            if joined.early.is_empty() {
                joined.gap_since = None;
            }
        }
        Ok(v2::encode::join_result(
            id,
            room,
            &joined_room.title,
            &state.epoch,
            latest,
            recoverable,
            &messages,
        ))
    }

    /// Leaves a joined room (see [`Chat::leave_room`]).
    async fn leave(&mut self, id: RoomId) -> Result<(), ErrorCode> {
        if !self.joined.contains_key(&id) {
            self.accessible_room(id).await?;
            return Err(ErrorCode::RoomAccessDenied);
        }
        self.leave_room(id)
            .await
            .map_err(|error| self.chat.layer_failed("group_send", &error))?;
        self.joined.remove(&id);
        Ok(())
    }

    async fn leave_room(&self, id: RoomId) -> Result<(), LayerError> {
        self.chat
            .leave_room(id, &self.user, self.channel, self.protocol == Protocol::V1)
            .await
    }

    /// Until when (Unix milliseconds) this user is muted in a joined room,
    /// if a mute is in force now; `None` when not, or not joined (`send`
    /// and `typing` refuse that with `ROOM_ACCESS_DENIED` first). No
    /// lookup: the state was read at the join and follows every change.
    fn mute_in_force(&self, room: RoomId) -> Option<i64> {
        let joined = self.joined.get(&room)?;
        let until = self
            .heard_mutes
            .get(&room)
            .copied()
            .unwrap_or(joined.muted_until)?;
        (until > unix_millis()).then_some(until)
    }

    /// Mutes `user` in `room` for `seconds`, or lifts the mute (`None`):
    /// staff only, in a room the asker may enter (joined or not). Once the
    /// directory stored it, every connection of the user hears of it on
    /// every node (see [`AccessChange::Mute`]). Returns the result frame.
    async fn mute(
        &self,
        id: Option<u64>,
        room: RoomId,
        user: i64,
        seconds: Option<u32>,
    ) -> Result<String, ErrorCode> {
        self.accessible_room(room).await?;
        if !self.user.is_staff {
            return Err(ErrorCode::RoomAccessDenied);
        }
        let until = seconds.map(|seconds| unix_millis().saturating_add(i64::from(seconds) * 1000));
        let mute = Mute {
            room,
            user,
            until,
            by: self.user.user_ref(),
        };
        let outcome = Box::pin(self.chat.rooms.set_mute(&mute))
            .await
            .map_err(|error| {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "storing a mute failed"
                );
                ErrorCode::Unavailable
            })?;
        if outcome == MuteOutcome::NoSuchUser {
            return Err(ErrorCode::BadRequest);
        }
        // Stored: a failure to tell the connections is the asker's to
        // retry (muting again changes nothing more).
        AccessChange::Mute { room, user, until }
            .announce(&self.chat.layer)
            .await
            .map_err(|error| self.chat.layer_failed("group_send", &error))?;
        Ok(match until {
            Some(until) => v2::encode::mute_result(id, room, user, until),
            None => v2::encode::unmute_result(id, room, user),
        })
    }

    /// Hands a message to the log writer (see `writer`): it is stored, then
    /// published, then answered through
    /// [`send_completed`](Self::send_completed). Refreshes the sender's
    /// presence now and then.
    fn start_send(
        &mut self,
        id: RoomId,
        text: String,
        nonce: Option<String>,
        answer: Answer,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        let joined = self.joined.get(&id).ok_or(ErrorCode::RoomAccessDenied)?;
        if text.len() > self.chat.limits.max_message_bytes {
            return Err(ErrorCode::MessageTooLarge);
        }
        // PostgreSQL's text cannot hold U+0000, and the log stores a batch
        // all or nothing: one such message failed every send stored with
        // it. Refused on every log, so clients see one behaviour.
        if text.contains('\0') {
            return Err(ErrorCode::BadRequest);
        }
        let refresh = PRESENCE_REFRESH.min(self.chat.layer.presence_ttl() / 4);
        let refresh_presence = now.saturating_duration_since(joined.presence_touched) >= refresh;
        let copy_to = (self.protocol == Protocol::V2 && nonce.is_some()).then_some(self.channel);
        let draft = Draft {
            room: id,
            user: self.user.user_ref(),
            text,
            nonce,
            ts: unix_millis(),
        };
        let outcome = self.chat.submit(draft, copy_to);
        let send: SendInFlight = Box::pin(async move {
            let outcome: Outcome = outcome.await.unwrap_or(Err(ErrorCode::Unavailable));
            match (answer, outcome) {
                (Answer::V1, Ok(sent)) if sent.published => None,
                (Answer::V1, Ok(_)) => Some(encode::error(ErrorCode::Unavailable)),
                (Answer::V2(request), Ok(sent)) => Some(v2::encode::send_result(
                    request,
                    id,
                    sent.appended.seq,
                    sent.appended.ts,
                )),
                (answer, Err(code)) => Some(answer.error(code, Some(id))),
            }
        });
        pending(&mut self.sends)
            .get_or_insert_with(FuturesOrdered::new)
            .push_back(send);
        if refresh_presence {
            if let Some(joined) = self.joined.get_mut(&id) {
                joined.presence_touched = now;
            }
            let chat = self.chat.clone();
            let user = self.user.clone();
            pending(&mut self.sends)
                .get_or_insert_with(FuturesOrdered::new)
                .push_back(Box::pin(async move {
                    chat.touch_presence(id, &user).await;
                    None
                }));
        }
        Ok(())
    }

    /// A page of stored messages before `before` (or the latest), for
    /// anyone who may enter the room.
    async fn history(
        &self,
        id: Option<u64>,
        room: RoomId,
        before: Option<Seq>,
        limit: u32,
    ) -> Result<String, ErrorCode> {
        self.accessible_room(room).await?;
        let log = &self.chat.log;
        // One more than asked: whether it came tells `has_more`.
        let asked = limit.saturating_add(1);
        let mut page = match before {
            Some(before) => log.before(room, before, asked).await,
            None => log.latest(room, asked).await,
        }
        .map_err(|error| log_failed(&error))?;
        let has_more = page.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        if has_more {
            page.remove(0);
        }
        let state = log.state(room).await.map_err(|error| log_failed(&error))?;
        Ok(v2::encode::history_result(
            id,
            room,
            &state.epoch,
            &page,
            has_more,
        ))
    }

    /// Tells the room's other v2 sockets that this user is typing, at most
    /// once per [`TYPING_INTERVAL`](crate::TYPING_INTERVAL) per user and
    /// room. Best effort: a notice the layer refuses is only counted.
    async fn typing(
        &mut self,
        id: Option<u64>,
        room: RoomId,
        now: Instant,
    ) -> Result<String, ErrorCode> {
        if !self.joined.contains_key(&room) {
            return Err(ErrorCode::RoomAccessDenied);
        }
        if self.chat.typing_allowed(self.user.id, room, now) {
            let notice =
                room_event(v2::encode::typing(room, &self.user.user_ref()), "").expendable();
            let group = GroupName::for_room(room);
            match self.chat.layer.group_send(&group, notice).await {
                Ok(()) => {
                    if let Some(joined) = self.joined.get_mut(&room) {
                        joined.typing_echoes = joined.typing_echoes.saturating_add(1);
                    }
                }
                Err(error) => {
                    self.chat.layer_failed("group_send", &error);
                }
            }
        }
        Ok(v2::encode::typing_result(id, room))
    }

    /// Erases a message of a joined room (its author's, or anyone's for
    /// staff; see [`Erase::permits`]) and, once that is stored, tells the
    /// room's v2 members on every node. Not expendable: a member that
    /// missed it would go on showing the text. Erasing again succeeds and
    /// announces again, so a client retrying after `UNAVAILABLE` (stored
    /// but not announced) reaches everyone.
    async fn delete(&self, id: Option<u64>, room: RoomId, seq: Seq) -> Result<String, ErrorCode> {
        if !self.joined.contains_key(&room) {
            return Err(ErrorCode::RoomAccessDenied);
        }
        let erase = Erase {
            room,
            seq,
            by: self.user.user_ref(),
            any_author: self.user.is_staff,
        };
        let erasure = Box::pin(self.chat.log.erase(&erase))
            .await
            .map_err(|error| log_failed(&error))?;
        match erasure {
            Erasure::Erased { .. } => {}
            Erasure::NotFound => return Err(ErrorCode::MessageNotFound),
            Erasure::NotAuthor => return Err(ErrorCode::RoomAccessDenied),
        }
        let event = room_event(v2::encode::deleted(room, seq), "");
        self.chat
            .layer
            .group_send(&GroupName::for_room(room), event)
            .await
            .map_err(|error| self.chat.layer_failed("group_send", &error))?;
        Ok(v2::encode::delete_result(id, room, seq))
    }

    /// Refreshes this user's presence. Best effort: a failure here must not
    /// turn a delivered message into an `UNAVAILABLE` reply.
    async fn touch_presence(&self, id: RoomId) {
        self.chat.touch_presence(id, &self.user).await;
    }

    async fn room_users_v1(&self, id: RoomId) -> Result<String, ErrorCode> {
        self.accessible_room(id).await?;
        let entries = self
            .chat
            .layer
            .presence_list(id)
            .await
            .map_err(|error| self.chat.layer_failed("presence_list", &error))?;
        Ok(encode::room_users(id, &entries))
    }

    async fn room_users_v2(&self, id: Option<u64>, room: RoomId) -> Result<String, ErrorCode> {
        self.accessible_room(room).await?;
        let entries = self
            .chat
            .layer
            .presence_list(room)
            .await
            .map_err(|error| self.chat.layer_failed("presence_list", &error))?;
        let users: Vec<RoomUser> = entries
            .into_iter()
            .map(|entry| RoomUser {
                user: UserRef {
                    id: entry.user_id,
                    username: entry.username,
                    name: entry.name,
                },
                online: !entry.left,
                // Seconds with a fraction, as v1 lists them; whole
                // milliseconds here.
                last_seen: (entry.last_update * 1000.0) as i64,
            })
            .collect();
        Ok(v2::encode::room_users_result(id, room, &users))
    }
}

/// A decoded frame of either protocol.
enum Decoded {
    V1(Result<Command, ErrorCode>),
    V2(Result<v2::Request, v2::DecodeError>),
}

impl Decoded {
    fn is_join(&self) -> bool {
        matches!(
            self,
            Decoded::V1(Ok(Command::Join { .. }))
                | Decoded::V2(Ok(v2::Request {
                    command: v2::Command::Join { .. },
                    ..
                }))
        )
    }

    fn is_send(&self) -> bool {
        matches!(
            self,
            Decoded::V1(Ok(Command::Send { .. }))
                | Decoded::V2(Ok(v2::Request {
                    command: v2::Command::Send { .. },
                    ..
                }))
        )
    }
}

/// The room a v2 command names.
fn command_room(command: &v2::Command) -> RoomId {
    match command {
        v2::Command::Join { room, .. }
        | v2::Command::Leave { room }
        | v2::Command::Send { room, .. }
        | v2::Command::History { room, .. }
        | v2::Command::RoomUsers { room }
        | v2::Command::Typing { room }
        | v2::Command::Delete { room, .. }
        | v2::Command::Mute { room, .. }
        | v2::Command::Unmute { room, .. } => *room,
    }
}

/// Logs a failure of the message log; the client hears `UNAVAILABLE`.
fn log_failed(error: &(dyn std::error::Error + 'static)) -> ErrorCode {
    tracing::warn!(error, "message log failed");
    ErrorCode::Unavailable
}

/// The enter or leave notice, in both protocols.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Notice {
    Enter,
    Leave,
}

impl<L: ChannelLayer, D: RoomDirectory, M: MessageLog> Chat<L, D, M> {
    /// Tells a room's members of both protocols that `user` entered or
    /// left it.
    async fn announce(
        &self,
        id: RoomId,
        user: &ChatUser,
        notice: Notice,
    ) -> Result<(), LayerError> {
        let who = user.user_ref();
        let ts = unix_millis();
        let (v1_frame, v2_frame) = match notice {
            Notice::Enter => (
                encode::enter(id, &user.username),
                v2::encode::enter(id, &who, ts),
            ),
            Notice::Leave => (
                encode::leave(id, &user.username),
                v2::encode::leave(id, &who, ts),
            ),
        };
        // Expendable: a member falling behind misses notices, not
        // messages, and is not closed for a storm of them.
        let notice = room_event(v2_frame, &v1_frame).expendable();
        self.layer
            .group_send(&GroupName::for_room(id), notice)
            .await
    }

    /// Leaves a room the way the others should see it: presence marked
    /// left first (whoever sees the notice and then asks `room_users` sees
    /// it too), then the leave notice and the membership dropped. With
    /// `hears_own_leave` (a v1 leave, as the original did it) the
    /// connection is still a member when the notice goes out; otherwise (v2,
    /// or a connection taken out of a room) it leaves first. A failed
    /// notice is returned, a membership kept until then is kept; the other
    /// failures are only logged, the connection leaving either way.
    async fn leave_room(
        &self,
        id: RoomId,
        user: &ChatUser,
        channel: ChannelName,
        hears_own_leave: bool,
    ) -> Result<(), LayerError> {
        if let Err(error) = self.layer.presence_leave(id, user.id).await {
            self.layer_failed("presence_leave", &error);
        }
        let group = GroupName::for_room(id);
        if !hears_own_leave {
            self.discard(&group, channel).await;
        }
        self.announce(id, user, Notice::Leave).await?;
        if hears_own_leave {
            self.discard(&group, channel).await;
        }
        Ok(())
    }

    async fn discard(&self, group: &GroupName, channel: ChannelName) {
        if let Err(error) = self.layer.group_discard(group, channel).await {
            self.layer_failed("group_discard", &error);
        }
    }

    /// Refreshes a user's presence; failures are only counted (see
    /// [`Connection`]'s sends).
    async fn touch_presence(&self, id: RoomId, user: &ChatUser) {
        let touched = self
            .layer
            .presence_touch(id, user.id, &user.username, &user.name)
            .await;
        if let Err(error) = touched {
            self.layer_failed("presence_touch", &error);
        }
    }
}

/// The sends under way, without locking (see `Connection::sends`).
fn pending(
    sends: &mut Mutex<Option<FuturesOrdered<SendInFlight>>>,
) -> &mut Option<FuturesOrdered<SendInFlight>> {
    sends.get_mut().unwrap_or_else(PoisonError::into_inner)
}
