//! One WebSocket's life: the transport around a [`whisper_chat::Connection`].
//!
//! The rules (what each command does, who may enter which room, limits,
//! the order of effects) live in `whisper-chat`; this module only moves
//! frames. Its task waits on several things at once: the next frame from
//! the client (handed to the rules, their answer written back), the next
//! payload in the connection's inbox (room events, written as they come,
//! and changes of access, acted on), a `send` broadcast completing, and
//! the keep-alive ping.
//!
//! A session ends (logout), or a user changes (staff status), on any node:
//! the change is announced to the user's group, the rules say so, and the
//! session is read again at once. The node's periodic check of every open
//! socket's session (`open_sockets`) is the backstop, and tells the socket
//! the same way; the socket itself has no timer for it.
//!
//! Writes are batched: whatever is already waiting in the inbox goes out
//! with the first payload in one vectored write (see `frames`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use whisper_auth::{SessionKey, User};
use whisper_chat::{ChatUser, Connection, Protocol};
use whisper_protocol::ErrorCode;
use whisper_rooms::{ChannelLayer, ChannelName, Inbox, InboxClosed, Payload};

use crate::connections::ConnectionSlot;
use crate::frames;
use crate::state::{AppState, CatalogRooms, StoreLog};

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Most payloads written to the socket in one vectored write.
const WRITE_BATCH: usize = 64;

/// Longest wait, after sending a close frame, for the client's close.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// What woke the connection's task up.
enum Wakeup {
    Frame(Option<Result<Message, tungstenite::Error>>),
    Payload(Result<Payload, InboxClosed>),
    /// A `send` broadcast completed, with the error frame when it failed.
    Sent(Option<String>),
    KeepAlive,
    /// A v2 room's held messages waited long enough for their gap.
    Gap,
    Shutdown,
}

/// How the connection ends, and the close frame it sends, if any.
enum Ending {
    /// The client closed or vanished; nothing more to send.
    ClientGone,
    /// Close with this code and reason.
    Close(CloseCode, &'static str),
}

/// One connection's transport state. Dropping it, however the connection
/// ended (panics included), leaves every joined room: see the `Drop` impl.
struct Consumer<L: ChannelLayer> {
    state: Arc<AppState<L>>,
    /// The rules of this connection.
    connection: Connection<L, CatalogRooms, StoreLog>,
    /// The session the socket was opened with, read again when a change to
    /// the user arrives, so a logout, deactivation or deletion closes the
    /// socket.
    session: SessionKey,
    /// The name of the socket's inbox, under which the node's
    /// [`OpenSockets`](crate::open_sockets::OpenSockets) knows it.
    channel: ChannelName,
    /// When the client last sent anything (a pong included).
    last_heard: Instant,
    /// Held for the connection's life: the per-user connection cap.
    _slot: ConnectionSlot,
}

/// A socket that has passed the handshake's checks.
pub(crate) struct Admitted {
    pub user: User,
    pub session: SessionKey,
    pub slot: ConnectionSlot,
    /// The protocol negotiated at the handshake.
    pub protocol: Protocol,
}

/// The user as the chat rules see it.
fn chat_user(user: &User) -> ChatUser {
    ChatUser {
        id: user.id.0,
        username: user.username.clone(),
        name: user.name.clone(),
        is_staff: user.is_staff,
    }
}

/// Runs a connection until the client leaves, the server shuts down, the
/// session ends, or the layer drops it for falling behind.
pub(crate) async fn run<L: ChannelLayer>(
    state: Arc<AppState<L>>,
    admitted: Admitted,
    mut socket: Socket,
) {
    let mut inbox = state.chat.layer().new_channel();
    let shutdown = state.shutdown.clone();
    let ping_turn = state.ping_wheel.join();
    let now = Instant::now();
    let opened = Connection::open(
        state.chat.clone(),
        chat_user(&admitted.user),
        inbox.name(),
        admitted.protocol,
        now,
    )
    .await;
    let Ok(connection) = opened else {
        state.chat.layer().close_channel(inbox.name()).await;
        close(socket, CloseCode::Again, "chat unavailable, try again").await;
        return;
    };
    let channel = inbox.name();
    state.open_sockets.record(
        channel,
        &admitted.session,
        admitted.user.id.0,
        admitted.user.is_staff,
    );
    let mut consumer = Consumer {
        state,
        connection,
        session: admitted.session,
        channel,
        last_heard: now,
        _slot: admitted.slot,
    };
    // Made once, not on every turn of the loop: each new one is linked
    // into, and unlinked from, the waiters of a token every socket shares.
    let shutting_down = shutdown.cancelled();
    tokio::pin!(shutting_down);
    let mut gap = consumer.connection.gap_deadline();
    let ending = loop {
        let wakeup = tokio::select! {
            biased;
            () = &mut shutting_down => Wakeup::Shutdown,
            // Ready once an interval: polled early, it spares the socket
            // (whose every poll clears tungstenite's read buffer) a poll.
            () = ping_turn.due() => Wakeup::KeepAlive,
            payload = inbox.recv() => Wakeup::Payload(payload),
            // Before the socket: a send is under way (its layer call
            // started) before the next frame is read.
            sent = consumer.connection.send_completed() => Wakeup::Sent(sent),
            frame = socket.next(), if consumer.connection.accepts_frames() => {
                Wakeup::Frame(frame)
            }
            () = sleep_until(gap), if gap.is_some() => Wakeup::Gap,
        };
        // Held messages change only when the rules are called, which a
        // ping, or a client's ping or pong, does not do.
        let rules_called = !matches!(
            wakeup,
            Wakeup::KeepAlive | Wakeup::Frame(Some(Ok(Message::Ping(_) | Message::Pong(_))))
        );
        let step = match wakeup {
            Wakeup::Shutdown => Err(Ending::Close(CloseCode::Away, "server shutting down")),
            Wakeup::Payload(Ok(payload)) => {
                consumer
                    .write_events(&mut socket, &mut inbox, payload)
                    .await
            }
            Wakeup::Payload(Err(InboxClosed::SlowConsumer)) => {
                Err(Ending::Close(CloseCode::Again, "too slow to keep up"))
            }
            Wakeup::Payload(Err(InboxClosed::Closed)) => {
                Err(Ending::Close(CloseCode::Error, "channel closed"))
            }
            Wakeup::Frame(frame) => consumer.on_frame(&mut socket, frame).await,
            Wakeup::Sent(None) => Ok(()),
            Wakeup::Sent(Some(error)) => reply(&mut socket, error).await,
            Wakeup::KeepAlive => consumer.keep_alive(&mut socket).await,
            Wakeup::Gap => {
                let frames = consumer.connection.fill_gaps(Instant::now()).await;
                write_all(&mut socket, frames).await
            }
        };
        if let Err(ending) = step {
            break ending;
        }
        if rules_called {
            gap = consumer.connection.gap_deadline();
        }
    };
    // The connection leaves its rooms now (see `Drop`), not once the
    // client has answered the close: the others see it go at once, even
    // when the client never answers and the close lingers.
    drop(consumer);
    if let Ending::Close(code, reason) = ending {
        close(socket, code, reason).await;
    }
}

/// Sends a close frame and waits, for a bounded time, for the client's.
async fn close(mut socket: Socket, code: CloseCode, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    // The peer may already be gone; closing is best effort.
    let _ = socket.close(Some(frame)).await;
    // Read until the client's own close (or for a bounded time): a socket
    // dropped with unread input is reset, not closed, and a reset arriving
    // before the client has read our close frame discards it (a client
    // answering pings as it reads was losing its 1001).
    let drained = async { while let Some(Ok(_)) = socket.next().await {} };
    let _ = tokio::time::timeout(CLOSE_LINGER, drained).await;
}

impl<L: ChannelLayer> Consumer<L> {
    /// Writes a payload and whatever else is already waiting, with one
    /// vectored write: under load one syscall carries many frames. The
    /// rules drop what the client must not get twice (v2), and act on
    /// changes of access; a change to the user has the session read again
    /// once the batch is written.
    async fn write_events(
        &mut self,
        socket: &mut Socket,
        inbox: &mut Inbox,
        first: Payload,
    ) -> Result<(), Ending> {
        let now = Instant::now();
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        self.connection.deliver(first, now, &mut batch);
        while batch.len() < WRITE_BATCH {
            match inbox.try_recv() {
                Some(Ok(payload)) => self.connection.deliver(payload, now, &mut batch),
                Some(Err(InboxClosed::SlowConsumer)) => {
                    return Err(Ending::Close(CloseCode::Again, "too slow to keep up"));
                }
                Some(Err(InboxClosed::Closed)) | None => break,
            }
        }
        if !batch.is_empty() {
            // Whatever tungstenite still holds (a reply, a pong) goes
            // first, so frames never interleave.
            socket.flush().await.map_err(|_| Ending::ClientGone)?;
            frames::write_text_frames(socket.get_mut(), &batch)
                .await
                .map_err(|_| Ending::ClientGone)?;
            self.state.metrics.deliveries.inc_by(batch.len() as u64);
        }
        if self.connection.take_user_changed() {
            Box::pin(self.recheck_session(socket)).await?;
        }
        Ok(())
    }

    /// Hands a client frame to the rules and writes their answer.
    async fn on_frame(
        &mut self,
        socket: &mut Socket,
        frame: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), Ending> {
        let now = Instant::now();
        self.last_heard = now;
        let text = match frame {
            None | Some(Ok(Message::Close(_))) => return Err(Ending::ClientGone),
            Some(Ok(Message::Text(text))) => Some(text),
            Some(Ok(Message::Binary(_))) => None,
            // tungstenite answers pings itself; pongs need nothing.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return Ok(()),
            Some(Err(tungstenite::Error::Capacity(_))) => {
                // Past the hard cap: say why, then close; the frame was never buffered.
                let mut answer = self.connection.finish_sends().await;
                answer.push(self.connection.error_frame(ErrorCode::MessageTooLarge));
                let _ = write_all(socket, answer).await;
                return Err(Ending::Close(CloseCode::Size, "frame too large"));
            }
            Some(Err(tungstenite::Error::Utf8(_))) => {
                return Err(Ending::Close(CloseCode::Invalid, "invalid UTF-8"));
            }
            Some(Err(_)) => return Err(Ending::ClientGone),
        };
        let answer = self.connection.on_frame(text.as_deref(), now).await;
        write_all(socket, answer).await
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
        // Whatever tungstenite still holds goes first (see `write_events`).
        socket.flush().await.map_err(|_| Ending::ClientGone)?;
        frames::write_ping(socket.get_mut())
            .await
            .map_err(|_| Ending::ClientGone)
    }

    /// Looks the session up again: closes the socket when it ended (logout,
    /// password change, user deactivated or deleted), and hands the rules
    /// the user as it is now (a user who lost staff leaves the staff-only
    /// rooms, told with the usual leave reply; a room gone is left too). A
    /// database error keeps things as they are.
    async fn recheck_session(&mut self, socket: &mut Socket) -> Result<(), Ending> {
        let user = match Box::pin(self.state.sessions.user_for(&self.session)).await {
            Ok(Some(user)) => user,
            Ok(None) => return Err(Ending::Close(CloseCode::Policy, "session ended")),
            Err(error) => {
                tracing::warn!(%error, "session recheck failed");
                return Ok(());
            }
        };
        self.state
            .open_sockets
            .record(self.channel, &self.session, user.id.0, user.is_staff);
        let answer = self.connection.set_user(chat_user(&user)).await;
        write_all(socket, answer).await
    }
}

impl<L: ChannelLayer> Drop for Consumer<L> {
    /// Leaves every joined room as an explicit leave would, so the others
    /// see LEAVE however the connection ended, and frees the inbox. The
    /// work is async, so it runs in a task of its own (tracked, so a
    /// graceful shutdown waits for it).
    fn drop(&mut self) {
        self.state.open_sockets.forget(self.channel);
        if tokio::runtime::Handle::try_current().is_ok() {
            self.state.tasks.spawn(self.connection.depart());
        }
    }
}

/// Writes a reply (or an error) through tungstenite.
async fn reply(socket: &mut Socket, text: String) -> Result<(), Ending> {
    socket
        .send(Message::text(text))
        .await
        .map_err(|_| Ending::ClientGone)
}

/// Writes the rules' answer, frame by frame, in order.
async fn write_all(socket: &mut Socket, answer: Vec<String>) -> Result<(), Ending> {
    for text in answer {
        reply(socket, text).await?;
    }
    Ok(())
}

/// Sleeps until `deadline`; never completes for `None`.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
