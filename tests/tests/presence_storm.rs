//! A rejoin storm in a big room. When a node restarts, every member comes
//! back: each departure sends LEAVE and each rejoin ENTER to the whole
//! room. A member on a slow link must lose some of those notices, not its
//! connection, and never a message.
//!
//! 2,000 members in one room; 1,500 of them leave and join again within
//! about a second (over their open sockets: the notices are the storm, not
//! the handshakes) while a member sends messages. 50 members read at
//! 256 KiB/s through a small receive window, and also follow a second
//! room whose messages take about 92% of that link, so the storm's
//! notices are more than their link carries. None of the 50 is closed and
//! each gets every message of both rooms, in order; the server says it
//! dropped notices, so the storm did press on them. Without the dropping
//! (checked by sending notices as ordinary payloads) they are closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use whisper_rooms::{LayerConfig, MemoryLayer};
use whisper_tests::{Session, TestServer, metric_sample};

/// Members of the square: the crowd, the slow readers and the sender.
const MEMBERS: usize = 2_000;
/// Members that read at [`SLOW_READ_BYTES_PER_S`]; they stay.
const SLOW: usize = 50;
/// Members that read as fast as they can, and may rejoin.
const CROWD: usize = MEMBERS - SLOW - 1;
/// Of the crowd, how many leave and come back within [`STORM`].
const REJOINING: usize = 1_500;
/// How long the rejoins are spread over.
const STORM: Duration = Duration::from_secs(1);
/// The slow readers' link.
const SLOW_READ_BYTES_PER_S: f64 = 256.0 * 1024.0;
/// Most bytes a slow reader takes at once after a pause.
const SLOW_READ_BURST: f64 = 16.0 * 1024.0;
/// The slow readers' socket receive buffer (the kernel doubles it): a
/// small window, as on a slow link, so the backlog waits on the server.
const SLOW_RECEIVE_BUFFER: u32 = 16 * 1024;
/// The server's bound on what may wait for one connection: a quarter of
/// the default, so the storm reaches it within seconds on any machine.
const MAX_QUEUED_BYTES: usize = 256 * 1024;
/// Messages sent, from the start of the storm, at [`MESSAGES_PER_SECOND`]:
/// every tenth to the square, short; the others to the feed, long.
const MESSAGES: usize = 320;
const MESSAGES_PER_SECOND: f64 = 64.0;
/// Length of a feed message's text: 57.6 a second of them (with their
/// framing) take about 92% of a slow reader's link.
const FEED_MESSAGE_BYTES: usize = 4096;
/// How many crowd members open their sockets at once while the square
/// fills.
const CONNECTING_AT_ONCE: usize = 20;
/// Longest wait for any step.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a slow reader waits for its next frame.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoin_storm_costs_slow_members_notices_not_messages() {
    let files = rlimit::increase_nofile_limit(u64::MAX).expect("RLIMIT_NOFILE can be raised");
    assert!(
        files >= 8192,
        "this test holds about 4,000 sockets; RLIMIT_NOFILE allows {files}"
    );
    let layer = LayerConfig {
        max_queued_bytes: MAX_QUEUED_BYTES,
        ..LayerConfig::default()
    };
    let server = TestServer::start_with_layer(
        |config| {
            config.max_connections = 8_000;
            config.max_connections_per_user = MEMBERS;
            config.max_messages_per_second = 1_000;
            // The crowd never answers pings; the test is over long before.
            config.ping_interval = Duration::from_secs(3600);
        },
        move |_| MemoryLayer::new(layer.clone()),
    )
    .await;
    let rooms = Rooms {
        square: server.create_room("Town square", false).await,
        feed: server.create_room("Feed", false).await,
    };
    // As long as usernames go: the heaviest notices there are.
    let crowd = server.user(&"c".repeat(150), false).await;
    let slow = server.user("slow", false).await;
    let ann = server.user("ann", false).await;

    let sender = Sender::join(&server, &ann, rooms).await;
    let mut members = Vec::with_capacity(CROWD);
    for batch in (0..CROWD).collect::<Vec<_>>().chunks(CONNECTING_AT_ONCE) {
        let joining = batch
            .iter()
            .map(|_| Drained::join(&server, &crowd, rooms.square));
        members.extend(join_all(joining).await);
    }

    // Notices are expendable now, so readiness is each join's answer.
    let (ready, mut readied) = mpsc::unbounded_channel();
    let readers: Vec<JoinHandle<Result<Received, String>>> = (0..SLOW)
        .map(|i| {
            let v2 = !i.is_multiple_of(2);
            let headers = chat_headers(&server, &slow, v2);
            let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let request = server.chat_request(&pairs);
            let addr = server.addr;
            let ready = ready.clone();
            tokio::spawn(async move { read_slowly(addr, request, rooms, v2, ready).await })
        })
        .collect();
    for _ in 0..SLOW {
        tokio::time::timeout(STEP_TIMEOUT, readied.recv())
            .await
            .expect("every slow reader joins both rooms")
            .expect("a slow reader says so");
    }

    let started = Instant::now();
    let rejoins = members
        .iter_mut()
        .take(REJOINING)
        .enumerate()
        .map(|(i, member)| {
            let at = started + STORM.mul_f64(i as f64 / REJOINING as f64);
            async move {
                tokio::time::sleep_until(at).await;
                member.rejoin(rooms.square).await;
            }
        });
    let (_, sent) = tokio::join!(join_all(rejoins), sender.send_all(rooms));
    let storm = started.elapsed();

    let mut received = Vec::new();
    for reader in readers {
        let outcome = tokio::time::timeout(STEP_TIMEOUT, reader)
            .await
            .expect("every slow reader finishes")
            .expect("a slow reader does not panic");
        received.push(outcome);
    }
    let (_, metrics) = server.get("/metrics").await;
    let dropped = metric_sample(&metrics, "whisper_notices_dropped_total");
    let closed = metric_sample(&metrics, "whisper_slow_consumer_closes_total");
    eprintln!(
        "{REJOINING} rejoins and {MESSAGES} messages took {storm:?}; notices dropped: {dropped}"
    );

    for (i, outcome) in received.into_iter().enumerate() {
        match outcome {
            Ok(got) => {
                for room in [rooms.square, rooms.feed] {
                    assert!(
                        in_room(&got.messages, room) == in_room(&sent, room),
                        "slow reader {i} missed messages of room {room}"
                    );
                }
                assert!(
                    got.notices < 2 * REJOINING,
                    "slow reader {i} got all {} notices: the storm did not press on it",
                    got.notices
                );
            }
            Err(reason) => panic!("slow reader {i} was closed: {reason}"),
        }
    }
    assert_eq!(closed, 0.0, "no member was closed");
    server.stop().await;
}

/// The square, where the storm is, and the feed, which only the sender
/// and the slow readers are in.
#[derive(Debug, Clone, Copy)]
struct Rooms {
    square: i64,
    feed: i64,
}

/// A message: its room and text.
type Sent = (i64, String);

/// What a slow reader got: every message, and how many presence notices.
struct Received {
    messages: Vec<Sent>,
    notices: usize,
}

/// The texts of the messages of `room`, in order.
fn in_room(messages: &[Sent], room: i64) -> Vec<&str> {
    messages
        .iter()
        .filter(|(of, _)| *of == room)
        .map(|(_, text)| text.as_str())
        .collect()
}

/// The `i`th message: every tenth a short one to the square, the others
/// feed messages of [`FEED_MESSAGE_BYTES`].
fn message(i: usize, rooms: Rooms) -> Sent {
    let mut text = format!("storm-{i:04}");
    if i.is_multiple_of(10) {
        return (rooms.square, text);
    }
    text.extend(std::iter::repeat_n('m', FEED_MESSAGE_BYTES - text.len()));
    (rooms.feed, text)
}

/// The Cookie and Origin of a chat socket, and the v2 subprotocol if asked.
fn chat_headers<'a>(server: &'a TestServer, session: &Session, v2: bool) -> Vec<(&'a str, String)> {
    let mut headers = vec![("cookie", session.cookie()), ("origin", server.origin())];
    if v2 {
        headers.push((
            "sec-websocket-protocol",
            whisper_chat::V2_SUBPROTOCOL.to_owned(),
        ));
    }
    headers
}

/// The member who talks, on a v2 socket in both rooms: its sending half,
/// while a task reads the other half, counts the `enter` events it sees
/// and passes the replies on.
struct Sender {
    sink: futures_util::stream::SplitSink<
        WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
        Message,
    >,
    replies: mpsc::UnboundedReceiver<Value>,
}

impl Sender {
    async fn join(server: &TestServer, session: &Session, rooms: Rooms) -> Sender {
        let mut client = server.connect_v2(session).await;
        for room in [rooms.square, rooms.feed] {
            let joined = client
                .request(json!({"command": "join", "room": room}))
                .await;
            assert_eq!(joined["result"]["room"], room, "{joined}");
        }
        let (sink, mut stream) = client.into_websocket().split();
        let (reply, replies) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                if !text.starts_with(r#"{"event":"#) {
                    let _ = reply.send(serde_json::from_str(&text).expect("JSON frames"));
                }
            }
        });
        Sender { sink, replies }
    }

    /// Sends [`MESSAGES`] messages at [`MESSAGES_PER_SECOND`], each once
    /// the one before was acknowledged; a send refused (the server busy)
    /// is sent again with the same nonce, as a client does. Returns them.
    async fn send_all(mut self, rooms: Rooms) -> Vec<Sent> {
        let started = Instant::now();
        let mut sent = Vec::with_capacity(MESSAGES);
        for i in 0..MESSAGES {
            let due = started + Duration::from_secs_f64(i as f64 / MESSAGES_PER_SECOND);
            tokio::time::sleep_until(due).await;
            let (room, text) = message(i, rooms);
            let command = json!({"command": "send", "id": i, "room": room, "text": text, "nonce": i.to_string()});
            loop {
                self.sink
                    .send(Message::text(command.to_string()))
                    .await
                    .expect("the sender's frame is sent");
                let reply = tokio::time::timeout(STEP_TIMEOUT, self.replies.recv())
                    .await
                    .expect("every send is answered")
                    .expect("the sender's socket stays open");
                assert_eq!(reply["id"], i, "{reply}");
                if reply["result"]["seq"].is_u64() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sent.push((room, text));
        }
        sent
    }
}

/// A crowd member: its socket's bytes read as fast as the server writes
/// them and thrown away undecoded (cheap enough for thousands in one
/// test), and its commands written as raw frames.
struct Drained {
    commands: OwnedWriteHalf,
}

impl Drained {
    async fn join(server: &TestServer, session: &Session, room: i64) -> Drained {
        let mut client = server.connect(session).await;
        client.join(room).await;
        let (mut incoming, commands) = client.into_tcp().into_split();
        tokio::spawn(async move {
            let mut buffer = vec![0; 16 * 1024];
            while let Ok(1..) = incoming.read(&mut buffer).await {}
        });
        Drained { commands }
    }

    /// Leaves the room and joins it again, as its client does after a
    /// reconnect.
    async fn rejoin(&mut self, room: i64) {
        self.command("leave", room).await;
        self.command("join", room).await;
    }

    /// Writes `{"command": name, "room": room}` as one masked text frame
    /// (a zero mask: the bytes go as they are).
    async fn command(&mut self, name: &str, room: i64) {
        let text = json!({"command": name, "room": room}).to_string();
        let length = u8::try_from(text.len()).expect("a short command");
        assert!(length < 126, "a one-byte length");
        let mut frame = vec![0x81, 0x80 | length, 0, 0, 0, 0];
        frame.extend_from_slice(text.as_bytes());
        self.commands
            .write_all(&frame)
            .await
            .expect("the command is written");
    }
}

/// Opens a chat socket over a [`SlowLink`], joins both rooms and reads
/// until every message has come: the messages in the order they came and
/// the number of presence notices, or why the socket closed or went
/// silent.
async fn read_slowly(
    addr: std::net::SocketAddr,
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    rooms: Rooms,
    v2: bool,
    ready: mpsc::UnboundedSender<()>,
) -> Result<Received, String> {
    let socket = TcpSocket::new_v4().expect("a TCP socket");
    socket
        .set_recv_buffer_size(SLOW_RECEIVE_BUFFER)
        .expect("a receive buffer size");
    let tcp = socket.connect(addr).await.expect("connects");
    let (mut ws, _) = tokio_tungstenite::client_async(request, SlowLink::new(tcp))
        .await
        .expect("handshake");
    for room in [rooms.square, rooms.feed] {
        let join = json!({"command": "join", "room": room}).to_string();
        ws.send(Message::text(join)).await.expect("join sent");
    }
    let mut got = Vec::with_capacity(MESSAGES);
    let mut notices = 0;
    let mut joined = 0;
    while got.len() < MESSAGES {
        let Ok(next) = tokio::time::timeout(SILENCE_TIMEOUT, ws.next()).await else {
            return Err(format!("silent after {} messages", got.len()));
        };
        let frame = match next {
            Some(Ok(Message::Text(frame))) => frame,
            Some(Ok(Message::Close(close))) => return Err(format!("{close:?}")),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.to_string()),
            None => return Err("the connection ended".to_owned()),
        };
        let frame: Value = serde_json::from_str(&frame).expect("JSON frames");
        let (text, notice) = if v2 {
            (
                (frame["event"] == "message").then(|| &frame["text"]),
                frame["event"] == "enter" || frame["event"] == "leave",
            )
        } else {
            (
                (frame["msg_type"] == 0).then(|| &frame["message"]),
                frame["msg_type"] == 4 || frame["msg_type"] == 5,
            )
        };
        notices += usize::from(notice);
        if frame["join"].is_string() || frame["result"]["room"].is_i64() {
            joined += 1;
            if joined == 2 {
                let _ = ready.send(());
            }
        }
        if let (Some(Value::String(text)), Some(room)) = (text, frame["room"].as_i64()) {
            got.push((room, text.clone()));
        }
    }
    Ok(Received {
        messages: got,
        notices,
    })
}

/// A TCP stream read no faster than a link of [`SLOW_READ_BYTES_PER_S`]:
/// a token bucket holding at most [`SLOW_READ_BURST`] bytes.
struct SlowLink {
    tcp: TcpStream,
    tokens: f64,
    refilled: Instant,
    pause: Option<Pin<Box<Sleep>>>,
}

impl SlowLink {
    fn new(tcp: TcpStream) -> SlowLink {
        SlowLink {
            tcp,
            tokens: SLOW_READ_BURST,
            refilled: Instant::now(),
            pause: None,
        }
    }
}

impl AsyncRead for SlowLink {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let link = self.get_mut();
        loop {
            if let Some(pause) = &mut link.pause {
                ready!(pause.as_mut().poll(cx));
                link.pause = None;
            }
            let now = Instant::now();
            let refill = now.duration_since(link.refilled).as_secs_f64() * SLOW_READ_BYTES_PER_S;
            link.tokens = (link.tokens + refill).min(SLOW_READ_BURST);
            link.refilled = now;
            if link.tokens >= 1024.0 {
                break;
            }
            let wait = (1024.0 - link.tokens) / SLOW_READ_BYTES_PER_S;
            link.pause = Some(Box::pin(tokio::time::sleep(Duration::from_secs_f64(wait))));
        }
        let mut chunk = [0u8; 16 * 1024];
        let allowed = (link.tokens as usize).min(buf.remaining()).min(chunk.len());
        let mut part = ReadBuf::new(&mut chunk[..allowed]);
        ready!(Pin::new(&mut link.tcp).poll_read(cx, &mut part))?;
        link.tokens -= part.filled().len() as f64;
        buf.put_slice(part.filled());
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SlowLink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
