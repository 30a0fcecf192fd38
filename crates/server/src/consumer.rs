//! One WebSocket's life: commands in, room events out.
//!
//! A connection owns an inbox on the channel layer. Its task waits on two
//! things at once: the next frame from the client, and the next payload in
//! its inbox. Commands are answered directly on the socket; room events
//! (messages, ENTER, LEAVE), including the connection's own, arrive through
//! the inbox like everybody else's, so each room's events reach every member
//! in the same order.
//!
//! The fan-out path: `send` encodes the event once into a shared
//! [`Payload`]; the layer hands every member's inbox a reference-counted
//! clone; each member's task writes the same bytes to its socket (see
//! `frames`). Writes are batched: whatever is already waiting in the inbox
//! goes out with the first payload in one vectored write.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use whisper_auth::{SessionKey, User};
use whisper_protocol::{Command, ErrorCode, RoomId, decode_command, encode};
use whisper_rooms::{ChannelLayer, GroupName, Inbox, InboxClosed, LayerError, Payload};

use crate::Room;
use crate::connections::ConnectionSlot;
use crate::frames;
use crate::rate::TokenBucket;
use crate::state::AppState;

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Most payloads written to the socket in one vectored write.
const WRITE_BATCH: usize = 64;

/// Longest wait, after sending a close frame, for the client's close.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Most `send` broadcasts one connection has under way at once. A layer
/// call may be a network round trip (a Redis PUBLISH); a client sending
/// faster than that would otherwise be held to one message per round trip.
/// Past this many, the connection stops reading until one completes.
const MAX_SENDS_IN_FLIGHT: usize = 64;

/// A `send`'s broadcast under way: `Err` is the error to answer.
type SendInFlight = Pin<Box<dyn Future<Output = Result<(), ErrorCode>> + Send>>;

/// What woke the connection's task up.
enum Wakeup {
    Frame(Option<Result<Message, tungstenite::Error>>),
    Payload(Result<Payload, InboxClosed>),
    /// A `send` broadcast completed.
    Sent(Result<(), ErrorCode>),
    Recheck,
    KeepAlive,
    Shutdown,
}

/// How the connection ends, and the close frame it sends, if any.
enum Ending {
    /// The client closed or vanished; nothing more to send.
    ClientGone,
    /// Close with this code and reason.
    Close(CloseCode, &'static str),
}

/// A room this connection has joined, cached so `send` needs no database.
struct JoinedRoom {
    group: GroupName,
    staff_only: bool,
    /// When this connection last refreshed its presence here.
    presence_touched: Instant,
}

/// How often, at most, a sender's messages refresh its presence (its
/// `last_update` in `room_users`): a busy sender then pays one layer round
/// trip per message, not two (a Redis one, across nodes). Shorter when the
/// presence TTL is short, so an active sender never lapses.
const PRESENCE_REFRESH: Duration = Duration::from_secs(1);

/// One connection's state. Dropping it, however the connection ended
/// (panics included), leaves every joined room: see the `Drop` impl.
struct Consumer<L: ChannelLayer> {
    state: Arc<AppState<L>>,
    user: User,
    /// The session the socket was opened with, re-checked periodically so
    /// a logout, deactivation or deletion closes the socket.
    session: SessionKey,
    inbox: Inbox,
    joined: HashMap<RoomId, JoinedRoom>,
    rate: TokenBucket,
    /// When the client last sent anything (a pong included).
    last_heard: Instant,
    /// `send` broadcasts under way, oldest first; made at the first send.
    /// Only ever reached through `get_mut`: the mutex is never locked, it
    /// only makes the queue `Sync` so `&self` methods can await.
    sends: Mutex<Option<FuturesOrdered<SendInFlight>>>,
    /// Held for the connection's life: the per-user connection cap.
    _slot: ConnectionSlot,
}

/// A socket that has passed the handshake's checks.
pub(crate) struct Admitted {
    pub user: User,
    pub session: SessionKey,
    pub slot: ConnectionSlot,
}

/// Runs a connection until the client leaves, the server shuts down, the
/// session ends, or the layer drops it for falling behind.
pub(crate) async fn run<L: ChannelLayer>(
    state: Arc<AppState<L>>,
    admitted: Admitted,
    mut socket: Socket,
) {
    let inbox = state.layer.new_channel();
    let shutdown = state.shutdown.clone();
    let config = &state.config;
    let rate = TokenBucket::new(
        config.max_messages_per_second,
        config.max_messages_per_second.saturating_mul(2),
    );
    let mut recheck = tokio::time::interval_at(
        tokio::time::Instant::now() + jittered(config.session_recheck),
        config.session_recheck,
    );
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keep_alive = tokio::time::interval_at(
        tokio::time::Instant::now() + jittered(config.ping_interval),
        config.ping_interval,
    );
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut consumer = Consumer {
        state,
        user: admitted.user,
        session: admitted.session,
        inbox,
        joined: HashMap::new(),
        rate,
        last_heard: Instant::now(),
        sends: Mutex::new(None),
        _slot: admitted.slot,
    };
    let ending = loop {
        let wakeup = tokio::select! {
            biased;
            () = shutdown.cancelled() => Wakeup::Shutdown,
            payload = consumer.inbox.recv() => Wakeup::Payload(payload),
            // Before the socket: a send is under way (its layer call
            // started) before the next frame is read.
            sent = next_sent(pending(&mut consumer.sends)) => Wakeup::Sent(sent),
            frame = socket.next(), if consumer.sends_in_flight() < MAX_SENDS_IN_FLIGHT => {
                Wakeup::Frame(frame)
            }
            _ = recheck.tick() => Wakeup::Recheck,
            _ = keep_alive.tick() => Wakeup::KeepAlive,
        };
        let step = match wakeup {
            Wakeup::Shutdown => Err(Ending::Close(CloseCode::Away, "server shutting down")),
            Wakeup::Payload(Ok(payload)) => consumer.write_events(&mut socket, payload).await,
            Wakeup::Payload(Err(InboxClosed::SlowConsumer)) => {
                Err(Ending::Close(CloseCode::Again, "too slow to keep up"))
            }
            Wakeup::Payload(Err(InboxClosed::Closed)) => {
                Err(Ending::Close(CloseCode::Error, "channel closed"))
            }
            Wakeup::Frame(frame) => consumer.on_frame(&mut socket, frame).await,
            Wakeup::Sent(Ok(())) => Ok(()),
            Wakeup::Sent(Err(code)) => reply(&mut socket, encode::error(code)).await,
            Wakeup::Recheck => Box::pin(consumer.recheck_session(&mut socket)).await,
            Wakeup::KeepAlive => consumer.keep_alive(&mut socket).await,
        };
        if let Err(ending) = step {
            break ending;
        }
    };
    if let Ending::Close(code, reason) = ending {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        // The peer may already be gone; closing is best effort.
        let _ = socket.close(Some(frame)).await;
        // Read until the client's own close (or for a bounded time): a socket
        // dropped with unread input is reset, not closed, and a reset
        // arriving before the client has read our close frame discards it
        // (a client answering pings as it reads was losing its 1001).
        let drained = async { while let Some(Ok(_)) = socket.next().await {} };
        let _ = tokio::time::timeout(CLOSE_LINGER, drained).await;
    }
}

impl<L: ChannelLayer> Consumer<L> {
    /// Writes a payload and whatever else is already waiting, with one
    /// vectored write: under load one syscall carries many frames.
    async fn write_events(&mut self, socket: &mut Socket, first: Payload) -> Result<(), Ending> {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match self.inbox.try_recv() {
                Some(Ok(payload)) => batch.push(payload),
                Some(Err(InboxClosed::SlowConsumer)) => {
                    return Err(Ending::Close(CloseCode::Again, "too slow to keep up"));
                }
                Some(Err(InboxClosed::Closed)) | None => break,
            }
        }
        // Whatever tungstenite still holds (a reply, a pong) goes first, so
        // frames never interleave.
        socket.flush().await.map_err(|_| Ending::ClientGone)?;
        frames::write_text_frames(socket.get_mut(), &batch)
            .await
            .map_err(|_| Ending::ClientGone)?;
        self.state.metrics.deliveries.inc_by(batch.len() as u64);
        Ok(())
    }

    async fn on_frame(
        &mut self,
        socket: &mut Socket,
        frame: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), Ending> {
        self.last_heard = Instant::now();
        let text = match frame {
            None | Some(Ok(Message::Close(_))) => return Err(Ending::ClientGone),
            Some(Ok(Message::Text(text))) => Some(text),
            Some(Ok(Message::Binary(_))) => None,
            // tungstenite answers pings itself; pongs need nothing.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return Ok(()),
            Some(Err(tungstenite::Error::Capacity(_))) => {
                // Past the hard cap: say why, then close; the frame was never buffered.
                self.finish_sends(socket).await?;
                let _ = reply(socket, encode::error(ErrorCode::MessageTooLarge)).await;
                return Err(Ending::Close(CloseCode::Size, "frame too large"));
            }
            Some(Err(tungstenite::Error::Utf8(_))) => {
                return Err(Ending::Close(CloseCode::Invalid, "invalid UTF-8"));
            }
            Some(Err(_)) => return Err(Ending::ClientGone),
        };
        self.state.metrics.messages_received.inc();
        if !self.rate.try_take(Instant::now()) {
            self.state.metrics.frames_dropped.inc();
            // Refused unread; the reply's write also slows a flooding
            // client down, since it waits on the client reading.
            self.finish_sends(socket).await?;
            return reply(socket, encode::error(ErrorCode::RateLimited)).await;
        }
        let command = text
            .as_deref()
            .map_or(Err(ErrorCode::BadRequest), decode_command);
        // A `send` joins the broadcasts under way; anything else waits for
        // them first, so broadcasts and replies keep the client's order.
        let is_send = matches!(command, Ok(Command::Send { .. }));
        if !is_send {
            self.finish_sends(socket).await?;
        }
        // Boxed, as is every database call here: a future is as large as
        // its largest state, and inline these would make every connection's
        // task ~1.9 KiB bigger for the whole of its life (3.7 KiB to
        // 1.8 KiB, measured with size_of_val).
        let Some(answer) = Box::pin(self.handle(command)).await else {
            return Ok(());
        };
        self.finish_sends(socket).await?;
        reply(socket, answer).await
    }

    /// Answers one command: a reply to send, or `None` (a `send` is
    /// answered by the message's own echo, or later by an error).
    async fn handle(&mut self, command: Result<Command, ErrorCode>) -> Option<String> {
        let result = match command {
            Ok(Command::Join { room }) => self.join(room).await.map(Some),
            Ok(Command::Leave { room }) => self.leave(room).await.map(Some),
            Ok(Command::Send { room, message }) => {
                self.start_send(room, &message).await.map(|()| None)
            }
            Ok(Command::RoomUsers { room }) => self.room_users(room).await.map(Some),
            Err(code) => Err(code),
        };
        result.unwrap_or_else(|code| Some(encode::error(code)))
    }

    fn sends_in_flight(&mut self) -> usize {
        pending(&mut self.sends)
            .as_ref()
            .map_or(0, FuturesOrdered::len)
    }

    /// Waits for every `send` under way, answering the failed ones in order.
    async fn finish_sends(&mut self, socket: &mut Socket) -> Result<(), Ending> {
        let Some(sends) = pending(&mut self.sends) else {
            return Ok(());
        };
        while let Some(sent) = sends.next().await {
            if let Err(code) = sent {
                reply(socket, encode::error(code)).await?;
            }
        }
        Ok(())
    }

    /// The room if it exists and this user may enter it.
    async fn accessible_room(&self, id: RoomId) -> Result<Room, ErrorCode> {
        let room = Box::pin(self.state.rooms.get(id))
            .await
            .map_err(|error| {
                tracing::warn!(%error, "room lookup failed");
                ErrorCode::Unavailable
            })?
            .ok_or(ErrorCode::RoomInvalid)?;
        if !room.admits(self.user.is_staff) {
            return Err(ErrorCode::RoomAccessDenied);
        }
        Ok(room)
    }

    /// Logs and counts a channel-layer failure; the client hears
    /// `UNAVAILABLE`.
    fn layer_failed(&self, call: &'static str, error: &LayerError) -> ErrorCode {
        layer_failed(&self.state, call, error)
    }

    /// Broadcasts an event to a room; a layer failure is `UNAVAILABLE`.
    async fn broadcast(&self, group: &GroupName, event: String) -> Result<(), ErrorCode> {
        self.state
            .layer
            .group_send(group, Payload::from(event))
            .await
            .map_err(|error| self.layer_failed("group_send", &error))
    }

    /// ENTER to the room (before this connection is a member, so it does not
    /// get its own), membership, presence, then the reply.
    async fn join(&mut self, id: RoomId) -> Result<String, ErrorCode> {
        let room = self.accessible_room(id).await?;
        if self.joined.contains_key(&id) {
            return Ok(encode::join_reply(id, &room.title));
        }
        if self.joined.len() >= self.state.config.max_rooms_per_connection {
            return Err(ErrorCode::TooManyRooms);
        }
        let group = room.group_name();
        self.broadcast(&group, encode::enter(id, &self.user.username))
            .await?;
        if let Err(error) = self.state.layer.group_add(&group, self.inbox.name()).await {
            self.layer_failed("group_add", &error);
            // The others saw ENTER; tell them the join did not happen.
            let _ = self
                .broadcast(&group, encode::leave(id, &self.user.username))
                .await;
            return Err(ErrorCode::Unavailable);
        }
        self.touch_presence(id).await;
        self.joined.insert(
            id,
            JoinedRoom {
                group,
                staff_only: room.staff_only,
                presence_touched: Instant::now(),
            },
        );
        Ok(encode::join_reply(id, &room.title))
    }

    /// Presence, LEAVE to the room (this connection included), membership
    /// (see [`leave_room`]), then the reply.
    async fn leave(&mut self, id: RoomId) -> Result<String, ErrorCode> {
        let Some(joined) = self.joined.get(&id) else {
            self.accessible_room(id).await?;
            return Err(ErrorCode::RoomAccessDenied);
        };
        let group = joined.group.clone();
        self.leave_room(id, &group)
            .await
            .map_err(|error| self.layer_failed("group_send", &error))?;
        self.joined.remove(&id);
        Ok(encode::leave_reply(id))
    }

    async fn leave_room(&self, id: RoomId, group: &GroupName) -> Result<(), LayerError> {
        let user = &self.user;
        let channel = self.inbox.name();
        leave_room(
            &self.state.layer,
            id,
            group,
            user.id.0,
            &user.username,
            channel,
        )
        .await
    }

    /// Starts broadcasting a message to a joined room, the sender included
    /// (the broadcast completes in the main loop, see `sends`), and
    /// refreshes the sender's presence now and then.
    async fn start_send(&mut self, id: RoomId, message: &str) -> Result<(), ErrorCode> {
        let joined = self.joined.get(&id).ok_or(ErrorCode::RoomAccessDenied)?;
        if message.len() > self.state.config.max_message_bytes {
            return Err(ErrorCode::MessageTooLarge);
        }
        // Encoded once here; every member gets the same bytes.
        let payload = Payload::from(encode::message(id, &self.user.username, message));
        let group = joined.group.clone();
        let state = self.state.clone();
        let broadcast: SendInFlight = Box::pin(async move {
            state
                .layer
                .group_send(&group, payload)
                .await
                .map_err(|error| layer_failed(&state, "group_send", &error))
        });
        let refresh = PRESENCE_REFRESH.min(self.state.config.presence_ttl / 4);
        let refresh_presence = joined.presence_touched.elapsed() >= refresh;
        pending(&mut self.sends)
            .get_or_insert_with(FuturesOrdered::new)
            .push_back(broadcast);
        if refresh_presence {
            self.touch_presence(id).await;
            if let Some(joined) = self.joined.get_mut(&id) {
                joined.presence_touched = Instant::now();
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
            .state
            .layer
            .presence_touch(id, user.id.0, &user.username, &user.name)
            .await;
        if let Err(error) = touched {
            self.layer_failed("presence_touch", &error);
        }
    }

    async fn room_users(&self, id: RoomId) -> Result<String, ErrorCode> {
        self.accessible_room(id).await?;
        let entries = self
            .state
            .layer
            .presence_list(id)
            .await
            .map_err(|error| self.layer_failed("presence_list", &error))?;
        Ok(encode::room_users(id, &entries))
    }

    /// Pings the client, or closes the connection when it has not been
    /// heard from for two intervals: a peer that vanished without a FIN
    /// (network gone, laptop asleep) would otherwise hold its rooms and
    /// buffers forever.
    async fn keep_alive(&mut self, socket: &mut Socket) -> Result<(), Ending> {
        let silence = self.last_heard.elapsed();
        if silence > self.state.config.ping_interval * 2 {
            return Err(Ending::Close(CloseCode::Away, "no answer to pings"));
        }
        socket
            .send(Message::Ping(bytes::Bytes::new()))
            .await
            .map_err(|_| Ending::ClientGone)
    }

    /// Looks the session up again: closes the socket when it ended (logout,
    /// password change, user deactivated or deleted), and leaves the
    /// staff-only rooms of a user who lost staff, telling the client with
    /// the usual leave reply. A database error keeps things as they are.
    async fn recheck_session(&mut self, socket: &mut Socket) -> Result<(), Ending> {
        let user = match Box::pin(self.state.sessions.user_for(&self.session)).await {
            Ok(Some(user)) => user,
            Ok(None) => return Err(Ending::Close(CloseCode::Policy, "session ended")),
            Err(error) => {
                tracing::warn!(%error, "session recheck failed");
                return Ok(());
            }
        };
        self.user = user;
        if self.user.is_staff {
            return Ok(());
        }
        let refused: Vec<RoomId> = self
            .joined
            .iter()
            .filter(|(_, room)| room.staff_only)
            .map(|(id, _)| *id)
            .collect();
        for id in refused {
            if let Some(joined) = self.joined.remove(&id) {
                if let Err(error) = self.leave_room(id, &joined.group).await {
                    self.layer_failed("group_send", &error);
                }
                socket
                    .send(Message::text(encode::leave_reply(id)))
                    .await
                    .map_err(|_| Ending::ClientGone)?;
            }
        }
        Ok(())
    }
}

impl<L: ChannelLayer> Drop for Consumer<L> {
    /// Leaves every joined room as an explicit leave would, so the others
    /// see LEAVE however the connection ended, and frees the inbox. The
    /// work is async, so it runs in a task of its own (tracked, so a
    /// graceful shutdown waits for it).
    fn drop(&mut self) {
        let state = self.state.clone();
        let username = self.user.username.clone();
        let user_id = self.user.id.0;
        let channel = self.inbox.name();
        let rooms = std::mem::take(&mut self.joined);
        let tasks = state.tasks.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tasks.spawn(async move {
            let layer = &state.layer;
            for (id, joined) in rooms {
                let left = leave_room(layer, id, &joined.group, user_id, &username, channel).await;
                if let Err(error) = left {
                    tracing::warn!(%error, "LEAVE broadcast failed");
                    // Nobody will retry: drop the membership anyway.
                    let _ = layer.group_discard(&joined.group, channel).await;
                }
            }
            layer.close_channel(channel).await;
        });
    }
}

/// Logs and counts a channel-layer failure; the client hears `UNAVAILABLE`.
fn layer_failed<L: ChannelLayer>(
    state: &AppState<L>,
    call: &'static str,
    error: &LayerError,
) -> ErrorCode {
    tracing::warn!(%error, call, "channel layer call failed");
    state.metrics.layer_errors.inc();
    ErrorCode::Unavailable
}

/// Writes a reply (or an error) through tungstenite.
async fn reply(socket: &mut Socket, text: String) -> Result<(), Ending> {
    socket
        .send(Message::text(text))
        .await
        .map_err(|_| Ending::ClientGone)
}

/// The sends under way, without locking (see `Consumer::sends`).
fn pending(
    sends: &mut Mutex<Option<FuturesOrdered<SendInFlight>>>,
) -> &mut Option<FuturesOrdered<SendInFlight>> {
    sends.get_mut().unwrap_or_else(PoisonError::into_inner)
}

/// The next `send` broadcast to complete; never, when none is under way.
async fn next_sent(sends: &mut Option<FuturesOrdered<SendInFlight>>) -> Result<(), ErrorCode> {
    match sends {
        Some(sends) if !sends.is_empty() => match sends.next().await {
            Some(sent) => sent,
            None => std::future::pending().await,
        },
        _ => std::future::pending().await,
    }
}

/// Half to one and a half `period`, at random: sockets opened together (a
/// reconnect storm after a restart) then re-check their sessions and ping at
/// different moments instead of all hitting the database at once, forever.
fn jittered(period: Duration) -> Duration {
    let mut bytes = [0u8; 2];
    // Without randomness the period itself is still correct.
    let _ = getrandom::fill(&mut bytes);
    period.mul_f64(0.5 + f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX))
}

/// Leaves a room the way the others should see it: presence marked left
/// first (whoever sees LEAVE and then asks `room_users` sees it too), then
/// LEAVE to the room (this channel included), then the membership dropped.
/// A failed LEAVE broadcast is returned, the membership kept; the other
/// failures are only logged, the connection leaving either way.
async fn leave_room<L: ChannelLayer>(
    layer: &L,
    id: RoomId,
    group: &GroupName,
    user_id: i64,
    username: &str,
    channel: whisper_rooms::ChannelName,
) -> Result<(), LayerError> {
    if let Err(error) = layer.presence_leave(id, user_id).await {
        tracing::warn!(%error, "presence_leave failed");
    }
    let leave = Payload::from(encode::leave(id, username));
    layer.group_send(group, leave).await?;
    if let Err(error) = layer.group_discard(group, channel).await {
        tracing::warn!(%error, "group_discard failed");
    }
    Ok(())
}
