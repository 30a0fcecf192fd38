//! One connection's rules: commands in, frames out.
//!
//! Commands are answered with frames for the client alone (replies,
//! errors), returned to the host. Room events (messages, ENTER, LEAVE),
//! the connection's own included, go through the channel layer to every
//! member's inbox, so each room's events reach every member in the same
//! order.
//!
//! The fan-out path: `send` encodes the event once into a shared
//! [`Payload`]; the layer hands every member's inbox a reference-counted
//! clone; each member's host writes the same bytes to its socket.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use whisper_protocol::{Command, ErrorCode, RoomId, decode_command, encode};
use whisper_rooms::{ChannelLayer, ChannelName, GroupName, LayerError, Payload};

use crate::rate::TokenBucket;
use crate::{Chat, ChatUser, Counters, Room, RoomDirectory};

/// A `send`'s broadcast under way: `Err` is the error to answer.
type SendInFlight = Pin<Box<dyn Future<Output = Result<(), ErrorCode>> + Send>>;

/// How often, at most, a sender's messages refresh its presence (its
/// `last_update` in `room_users`): a busy sender then pays one layer round
/// trip per message, not two (a Redis one, across nodes). Shorter when the
/// presence TTL is short, so an active sender never lapses.
const PRESENCE_REFRESH: Duration = Duration::from_secs(1);

/// A room this connection has joined, remembered so `send` needs no lookup.
#[derive(Debug)]
struct JoinedRoom {
    group: GroupName,
    staff_only: bool,
    /// When this connection last refreshed its presence here.
    presence_touched: Instant,
}

/// The state and rules of one chat connection.
///
/// Driven by its host: [`on_frame`](Self::on_frame) for every frame the
/// client sends, [`send_completed`](Self::send_completed) polled alongside
/// the socket while sends are under way, [`set_user`](Self::set_user) when
/// the host learns the user changed, and [`depart`](Self::depart) once the
/// socket is gone. The host writes the returned frames in order, and
/// whatever arrives in the inbox named by the channel it passed to
/// [`new`](Self::new).
pub struct Connection<L, D> {
    chat: Arc<Chat<L, D>>,
    user: ChatUser,
    channel: ChannelName,
    joined: HashMap<RoomId, JoinedRoom>,
    rate: TokenBucket,
    /// `send` broadcasts under way, oldest first; made at the first send.
    /// Only ever reached through `get_mut`: the mutex is never locked, it
    /// only makes the queue `Sync`, so a future borrowing the connection
    /// is `Send` and a host can spawn it.
    sends: Mutex<Option<FuturesOrdered<SendInFlight>>>,
}

impl<L: ChannelLayer, D: RoomDirectory> Connection<L, D> {
    /// A connection of `user` whose room events go to `channel` (the name
    /// of the inbox the host reads from), opened at `now`.
    pub fn new(chat: Arc<Chat<L, D>>, user: ChatUser, channel: ChannelName, now: Instant) -> Self {
        let rate = chat.limits.max_messages_per_second;
        Connection {
            chat,
            user,
            channel,
            joined: HashMap::new(),
            rate: TokenBucket::new(rate, rate.saturating_mul(2), now),
            sends: Mutex::new(None),
        }
    }

    /// The user as the connection knows it now.
    pub fn user(&self) -> &ChatUser {
        &self.user
    }

    /// Whether the connection is in this room.
    pub fn has_joined(&self, room: RoomId) -> bool {
        self.joined.contains_key(&room)
    }

    /// Answers one frame from the client received at `now`: its text, or
    /// `None` for a frame that is not text (v1 has no binary commands). The
    /// frames returned go to the client in order.
    ///
    /// A `send` starts its broadcast and returns at once (see
    /// [`send_completed`](Self::send_completed)); any other command first
    /// waits for the sends under way, so broadcasts and replies keep the
    /// client's order.
    pub async fn on_frame(&mut self, text: Option<&str>, now: Instant) -> Vec<String> {
        Counters::bump(&self.chat.counters.frames_received);
        let mut frames = Vec::new();
        if !self.rate.try_take(now) {
            Counters::bump(&self.chat.counters.frames_rate_limited);
            // Refused unread; the host's write of the reply also slows a
            // flooding client down, since it waits on the client reading.
            self.finish_sends_into(&mut frames).await;
            frames.push(encode::error(ErrorCode::RateLimited));
            return frames;
        }
        let command = text.map_or(Err(ErrorCode::BadRequest), decode_command);
        if !matches!(command, Ok(Command::Send { .. })) {
            self.finish_sends_into(&mut frames).await;
        }
        // Boxed, as every lookup here: a future is as large as its largest
        // state, and inline this would make every connection's task ~1.9 KiB
        // bigger for the whole of its life (3.7 KiB to 1.8 KiB, measured
        // with size_of_val in Whisper's server).
        if let Some(answer) = Box::pin(self.handle(command, now)).await {
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

    /// Completes when the oldest send under way does: with the error frame
    /// to write when its broadcast failed. Never completes while no send is
    /// under way, so a host can keep it in its `select!` beside the socket;
    /// cancelling it loses nothing.
    pub async fn send_completed(&mut self) -> Option<String> {
        let outcome = match pending(&mut self.sends) {
            Some(sends) if !sends.is_empty() => sends.next().await,
            _ => None,
        };
        match outcome {
            Some(sent) => sent.err().map(encode::error),
            None => std::future::pending().await,
        }
    }

    /// Waits for every send under way; returns the error frames of those
    /// that failed, in order. A host calls it before writing a frame of its
    /// own (an error for an oversized frame), so it stays in order too.
    pub async fn finish_sends(&mut self) -> Vec<String> {
        let mut frames = Vec::new();
        self.finish_sends_into(&mut frames).await;
        frames
    }

    async fn finish_sends_into(&mut self, frames: &mut Vec<String>) {
        let Some(sends) = pending(&mut self.sends) else {
            return;
        };
        while let Some(sent) = sends.next().await {
            if let Err(code) = sent {
                frames.push(encode::error(code));
            }
        }
    }

    /// Takes what the host now knows of the user (after re-reading its
    /// session). A user who lost staff leaves the staff-only rooms at once,
    /// as an explicit leave would; the returned frames are the leave
    /// replies that tell the client.
    pub async fn set_user(&mut self, user: ChatUser) -> Vec<String> {
        self.user = user;
        if self.user.is_staff {
            return Vec::new();
        }
        let refused: Vec<RoomId> = self
            .joined
            .iter()
            .filter(|(_, room)| room.staff_only)
            .map(|(id, _)| *id)
            .collect();
        let mut frames = Vec::with_capacity(refused.len());
        for id in refused {
            if let Some(joined) = self.joined.remove(&id) {
                if let Err(error) = self.leave_room(id, &joined.group).await {
                    self.chat.layer_failed("group_send", &error);
                }
                frames.push(encode::leave_reply(id));
            }
        }
        frames
    }

    /// Leaves every joined room as an explicit leave would, so the others
    /// see LEAVE however the connection ended, and closes the channel. The
    /// future owns what it needs, so a host can run it from `Drop` in a
    /// task of its own; after it, the connection is in no room.
    pub fn depart(&mut self) -> impl Future<Output = ()> + Send + 'static {
        let chat = self.chat.clone();
        let rooms = std::mem::take(&mut self.joined);
        let user_id = self.user.id;
        let username = self.user.username.clone();
        let channel = self.channel;
        async move {
            for (id, joined) in rooms {
                let left = chat
                    .leave_room(id, &joined.group, user_id, &username, channel)
                    .await;
                if let Err(error) = left {
                    chat.layer_failed("group_send", &error);
                    // Nobody will retry: drop the membership anyway.
                    let _ = chat.layer.group_discard(&joined.group, channel).await;
                }
            }
            chat.layer.close_channel(channel).await;
        }
    }

    /// Answers one command: a frame to write, or `None` (a `send` is
    /// answered by the message's own echo, or later by an error).
    async fn handle(
        &mut self,
        command: Result<Command, ErrorCode>,
        now: Instant,
    ) -> Option<String> {
        let result = match command {
            Ok(Command::Join { room }) => self.join(room, now).await.map(Some),
            Ok(Command::Leave { room }) => self.leave(room).await.map(Some),
            Ok(Command::Send { room, message }) => {
                self.start_send(room, &message, now).await.map(|()| None)
            }
            Ok(Command::RoomUsers { room }) => self.room_users(room).await.map(Some),
            Err(code) => Err(code),
        };
        result.unwrap_or_else(|code| Some(encode::error(code)))
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

    /// ENTER to the room (before this connection is a member, so it does
    /// not get its own), membership, presence, then the reply.
    async fn join(&mut self, id: RoomId, now: Instant) -> Result<String, ErrorCode> {
        let room = self.accessible_room(id).await?;
        if self.joined.contains_key(&id) {
            return Ok(encode::join_reply(id, &room.title));
        }
        if self.joined.len() >= self.chat.limits.max_rooms_per_connection {
            return Err(ErrorCode::TooManyRooms);
        }
        let layer = &self.chat.layer;
        let group = GroupName::for_room(id);
        let enter = Payload::from(encode::enter(id, &self.user.username));
        layer
            .group_send(&group, enter)
            .await
            .map_err(|error| self.chat.layer_failed("group_send", &error))?;
        if let Err(error) = layer.group_add(&group, self.channel).await {
            self.chat.layer_failed("group_add", &error);
            // The others saw ENTER; tell them the join did not happen.
            let leave = Payload::from(encode::leave(id, &self.user.username));
            if let Err(error) = layer.group_send(&group, leave).await {
                self.chat.layer_failed("group_send", &error);
            }
            return Err(ErrorCode::Unavailable);
        }
        self.touch_presence(id).await;
        self.joined.insert(
            id,
            JoinedRoom {
                group,
                staff_only: room.staff_only,
                presence_touched: now,
            },
        );
        Ok(encode::join_reply(id, &room.title))
    }

    /// Presence, LEAVE to the room (this connection included), membership
    /// (see [`Chat::leave_room`]), then the reply.
    async fn leave(&mut self, id: RoomId) -> Result<String, ErrorCode> {
        let Some(joined) = self.joined.get(&id) else {
            self.accessible_room(id).await?;
            return Err(ErrorCode::RoomAccessDenied);
        };
        let group = joined.group.clone();
        self.leave_room(id, &group)
            .await
            .map_err(|error| self.chat.layer_failed("group_send", &error))?;
        self.joined.remove(&id);
        Ok(encode::leave_reply(id))
    }

    async fn leave_room(&self, id: RoomId, group: &GroupName) -> Result<(), LayerError> {
        let user = &self.user;
        self.chat
            .leave_room(id, group, user.id, &user.username, self.channel)
            .await
    }

    /// Starts broadcasting a message to a joined room, the sender included
    /// (the broadcast completes through [`send_completed`](Self::send_completed)),
    /// and refreshes the sender's presence now and then.
    async fn start_send(
        &mut self,
        id: RoomId,
        message: &str,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        let joined = self.joined.get(&id).ok_or(ErrorCode::RoomAccessDenied)?;
        if message.len() > self.chat.limits.max_message_bytes {
            return Err(ErrorCode::MessageTooLarge);
        }
        // Encoded once here; every member gets the same bytes.
        let payload = Payload::from(encode::message(id, &self.user.username, message));
        let group = joined.group.clone();
        let chat = self.chat.clone();
        let broadcast: SendInFlight = Box::pin(async move {
            chat.layer
                .group_send(&group, payload)
                .await
                .map_err(|error| chat.layer_failed("group_send", &error))
        });
        let refresh = PRESENCE_REFRESH.min(self.chat.layer.presence_ttl() / 4);
        let refresh_presence = now.saturating_duration_since(joined.presence_touched) >= refresh;
        pending(&mut self.sends)
            .get_or_insert_with(FuturesOrdered::new)
            .push_back(broadcast);
        if refresh_presence {
            self.touch_presence(id).await;
            if let Some(joined) = self.joined.get_mut(&id) {
                joined.presence_touched = now;
            }
        }
        Ok(())
    }

    /// Refreshes this user's presence. Best effort: it runs after a
    /// broadcast that already happened, so a failure here must not turn a
    /// delivered message into an `UNAVAILABLE` reply.
    async fn touch_presence(&self, id: RoomId) {
        let user = &self.user;
        let touched = self
            .chat
            .layer
            .presence_touch(id, user.id, &user.username, &user.name)
            .await;
        if let Err(error) = touched {
            self.chat.layer_failed("presence_touch", &error);
        }
    }

    async fn room_users(&self, id: RoomId) -> Result<String, ErrorCode> {
        self.accessible_room(id).await?;
        let entries = self
            .chat
            .layer
            .presence_list(id)
            .await
            .map_err(|error| self.chat.layer_failed("presence_list", &error))?;
        Ok(encode::room_users(id, &entries))
    }
}

impl<L: ChannelLayer, D: RoomDirectory> Chat<L, D> {
    /// Leaves a room the way the others should see it: presence marked
    /// left first (whoever sees LEAVE and then asks `room_users` sees it
    /// too), then LEAVE to the room (this channel included), then the
    /// membership dropped. A failed LEAVE broadcast is returned, the
    /// membership kept; the other failures are only logged, the connection
    /// leaving either way.
    async fn leave_room(
        &self,
        id: RoomId,
        group: &GroupName,
        user_id: i64,
        username: &str,
        channel: ChannelName,
    ) -> Result<(), LayerError> {
        if let Err(error) = self.layer.presence_leave(id, user_id).await {
            self.layer_failed("presence_leave", &error);
        }
        let leave = Payload::from(encode::leave(id, username));
        self.layer.group_send(group, leave).await?;
        if let Err(error) = self.layer.group_discard(group, channel).await {
            self.layer_failed("group_discard", &error);
        }
        Ok(())
    }
}

/// The sends under way, without locking (see `Connection::sends`).
fn pending(
    sends: &mut Mutex<Option<FuturesOrdered<SendInFlight>>>,
) -> &mut Option<FuturesOrdered<SendInFlight>> {
    sends.get_mut().unwrap_or_else(PoisonError::into_inner)
}
