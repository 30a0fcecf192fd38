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
//! clone; each member's task writes the same bytes to its socket. Writes are
//! batched: whatever is already waiting in the inbox is queued behind the
//! first payload and the socket is flushed once.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use whisper_auth::User;
use whisper_protocol::{Command, ErrorCode, RoomId, decode_command, encode};
use whisper_rooms::{ChannelLayer, GroupName, Inbox, InboxClosed, Payload};

use crate::Room;
use crate::state::AppState;

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Most payloads written to the socket before one flush.
const WRITE_BATCH: usize = 64;

/// What woke the connection's task up.
enum Wakeup {
    Frame(Option<Result<Message, tungstenite::Error>>),
    Payload(Result<Payload, InboxClosed>),
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
}

struct Consumer<L> {
    state: Arc<AppState<L>>,
    user: User,
    inbox: Inbox,
    joined: HashMap<RoomId, JoinedRoom>,
}

/// Runs a connection until the client leaves, the server shuts down, or the
/// layer drops it for falling behind; then leaves every room.
pub(crate) async fn run<L: ChannelLayer>(state: Arc<AppState<L>>, user: User, mut socket: Socket) {
    let inbox = state.layer.new_channel();
    let shutdown = state.shutdown.clone();
    let mut consumer = Consumer {
        state,
        user,
        inbox,
        joined: HashMap::new(),
    };
    let ending = loop {
        let wakeup = tokio::select! {
            biased;
            () = shutdown.cancelled() => Wakeup::Shutdown,
            payload = consumer.inbox.recv() => Wakeup::Payload(payload),
            frame = socket.next() => Wakeup::Frame(frame),
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
    }
    consumer.leave_all().await;
}

impl<L: ChannelLayer> Consumer<L> {
    /// Writes a payload and whatever else is already waiting, then flushes
    /// once: under load one syscall carries many frames.
    async fn write_events(&mut self, socket: &mut Socket, first: Payload) -> Result<(), Ending> {
        feed(socket, first).await?;
        for _ in 1..WRITE_BATCH {
            match self.inbox.try_recv() {
                Some(Ok(payload)) => feed(socket, payload).await?,
                Some(Err(InboxClosed::SlowConsumer)) => {
                    return Err(Ending::Close(CloseCode::Again, "too slow to keep up"));
                }
                Some(Err(InboxClosed::Closed)) | None => break,
            }
        }
        socket.flush().await.map_err(|_| Ending::ClientGone)
    }

    async fn on_frame(
        &mut self,
        socket: &mut Socket,
        frame: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), Ending> {
        let reply = match frame {
            None | Some(Ok(Message::Close(_))) => return Err(Ending::ClientGone),
            Some(Ok(Message::Text(text))) => self.handle(&text).await,
            Some(Ok(Message::Binary(_))) => Some(encode::error(ErrorCode::BadRequest)),
            // tungstenite answers pings itself; pongs need nothing.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => None,
            Some(Err(tungstenite::Error::Capacity(_))) => {
                // Past the hard cap: say why, then close; the frame was never buffered.
                let _ = socket
                    .send(Message::text(encode::error(ErrorCode::MessageTooLarge)))
                    .await;
                return Err(Ending::Close(CloseCode::Size, "frame too large"));
            }
            Some(Err(tungstenite::Error::Utf8(_))) => {
                return Err(Ending::Close(CloseCode::Invalid, "invalid UTF-8"));
            }
            Some(Err(_)) => return Err(Ending::ClientGone),
        };
        match reply {
            Some(reply) => socket
                .send(Message::text(reply))
                .await
                .map_err(|_| Ending::ClientGone),
            None => Ok(()),
        }
    }

    /// Answers one text frame: a reply to send, or `None` (a `send` that
    /// succeeded is answered by the message's own echo).
    async fn handle(&mut self, text: &str) -> Option<String> {
        let result = match decode_command(text) {
            Ok(Command::Join { room }) => self.join(room).await.map(Some),
            Ok(Command::Leave { room }) => self.leave(room).await.map(Some),
            Ok(Command::Send { room, message }) => self.send(room, &message).await.map(|()| None),
            Ok(Command::RoomUsers { room }) => self.room_users(room).await.map(Some),
            Err(code) => Err(code),
        };
        result.unwrap_or_else(|code| Some(encode::error(code)))
    }

    /// The room if it exists and this user may enter it.
    async fn accessible_room(&self, id: RoomId) -> Result<Room, ErrorCode> {
        let room = self
            .state
            .rooms
            .get(id)
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

    /// Broadcasts an event to a room; a layer failure is `UNAVAILABLE`.
    async fn broadcast(&self, group: &GroupName, event: String) -> Result<(), ErrorCode> {
        self.state
            .layer
            .group_send(group, Payload::from(event))
            .await
            .map_err(|error| {
                tracing::warn!(%error, "group_send failed");
                ErrorCode::Unavailable
            })
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
            tracing::warn!(%error, "group_add failed");
            // The others saw ENTER; tell them the join did not happen.
            let _ = self
                .broadcast(&group, encode::leave(id, &self.user.username))
                .await;
            return Err(ErrorCode::Unavailable);
        }
        self.touch_presence(id).await;
        self.joined.insert(id, JoinedRoom { group });
        Ok(encode::join_reply(id, &room.title))
    }

    /// LEAVE to the room (this connection included), presence, membership,
    /// then the reply.
    async fn leave(&mut self, id: RoomId) -> Result<String, ErrorCode> {
        let Some(joined) = self.joined.get(&id) else {
            self.accessible_room(id).await?;
            return Err(ErrorCode::RoomAccessDenied);
        };
        let group = joined.group.clone();
        self.broadcast(&group, encode::leave(id, &self.user.username))
            .await?;
        self.joined.remove(&id);
        self.forget_room(id, &group).await;
        Ok(encode::leave_reply(id))
    }

    /// Marks presence left and drops the membership; failures are logged,
    /// since the connection is leaving either way.
    async fn forget_room(&self, id: RoomId, group: &GroupName) {
        let layer = &self.state.layer;
        if let Err(error) = layer.presence_leave(id, self.user.id.0).await {
            tracing::warn!(%error, "presence_leave failed");
        }
        if let Err(error) = layer.group_discard(group, self.inbox.name()).await {
            tracing::warn!(%error, "group_discard failed");
        }
    }

    /// Broadcasts a message to a joined room, the sender included.
    async fn send(&mut self, id: RoomId, message: &str) -> Result<(), ErrorCode> {
        let group = &self
            .joined
            .get(&id)
            .ok_or(ErrorCode::RoomAccessDenied)?
            .group;
        if message.len() > self.state.config.max_message_bytes {
            return Err(ErrorCode::MessageTooLarge);
        }
        // Encoded once here; every member gets the same bytes.
        self.broadcast(group, encode::message(id, &self.user.username, message))
            .await?;
        self.touch_presence(id).await;
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
            tracing::warn!(%error, "presence_touch failed");
        }
    }

    async fn room_users(&self, id: RoomId) -> Result<String, ErrorCode> {
        self.accessible_room(id).await?;
        let entries = self
            .state
            .layer
            .presence_list(id)
            .await
            .map_err(|_| ErrorCode::Unavailable)?;
        Ok(encode::room_users(id, &entries))
    }

    /// Leaves every joined room as an explicit leave would, so the others
    /// see LEAVE however the connection ended.
    async fn leave_all(mut self) {
        for (id, joined) in std::mem::take(&mut self.joined) {
            let _ = self
                .broadcast(&joined.group, encode::leave(id, &self.user.username))
                .await;
            self.forget_room(id, &joined.group).await;
        }
        self.state.layer.close_channel(self.inbox.name()).await;
    }
}

/// Queues one payload on the socket without flushing. The payload's bytes
/// are shared, not copied: `Utf8Bytes` wraps the same reference-counted
/// buffer (checked as UTF-8, which `Payload` guarantees, without copying).
async fn feed(socket: &mut Socket, payload: Payload) -> Result<(), Ending> {
    let text = Utf8Bytes::try_from(payload.into_bytes()).map_err(|_| Ending::ClientGone)?;
    socket
        .feed(Message::Text(text))
        .await
        .map_err(|_| Ending::ClientGone)
}
