//! One chat WebSocket, opened the way a browser opens it: a TCP connection
//! (bound to a chosen loopback source address), the HTTP upgrade with the
//! session cookie and the page's Origin (done by tungstenite), offering the
//! subprotocol `whisper.v2` for protocol v2, then a `join`.
//!
//! After the upgrade the connection reads and writes frames itself
//! ([`crate::frame`]): reads fill one buffer, many frames per syscall, and
//! each frame is classified in place ([`crate::incoming`]) and handed out
//! as a small `Copy` value, so a task can read and send on the same
//! connection from one `select!` loop without holding a borrow of it.
//! Writes are queued and sent with one syscall per [`Connection::flush`].
//! Pings are answered with pongs; close frames end the connection.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use whisper_protocol::v2::{self, Since};
use whisper_protocol::{Command, RoomId, encode};

use crate::error::BenchError;
use crate::frame::{self, Parsed, opcode};
use crate::incoming::{self, Incoming, JoinResult};
use crate::xorshift::Xorshift;

/// The WebSocket subprotocol that asks for protocol v2.
const V2_SUBPROTOCOL: &str = "whisper.v2";

/// The protocol a connection speaks, fixed at the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// The original protocol: unnumbered messages, echoes as the only
    /// acknowledgement.
    V1,
    /// Protocol v2 (`whisper.v2`): stored, numbered, acknowledged messages.
    V2,
}

impl Protocol {
    /// `"v1"` or `"v2"`, as reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        }
    }

    /// Reads a text frame's payload the way this protocol writes it.
    fn classify(self, frame: &[u8]) -> Incoming {
        match self {
            Protocol::V1 => incoming::classify(frame),
            Protocol::V2 => incoming::v2::classify(frame),
        }
    }
}

/// Longest wait for the TCP connection, the upgrade, or the join reply.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the server is, and what a browser on its pages would send.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's socket address.
    pub addr: SocketAddr,
    /// The base URL, for HTTP requests (`http://host:port/`).
    pub base: Url,
    /// `ws://host:port/chat/stream/`.
    ws_url: String,
    /// `http://host:port`, the Origin of the server's own pages.
    origin: String,
}

impl Target {
    /// Resolves the server's base URL.
    pub async fn resolve(base: &Url) -> Result<Target, BenchError> {
        let host = base.host_str().unwrap_or_default();
        let port = base.port_or_known_default().unwrap_or(80);
        let authority = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let addr = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| BenchError::Resolve(authority.clone()))?;
        Ok(Target {
            addr,
            base: base.clone(),
            ws_url: format!("ws://{authority}/chat/stream/"),
            origin: format!("http://{authority}"),
        })
    }

    /// `path` on the server, for HTTP requests.
    pub fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url.set_query(None);
        url
    }
}

/// The loopback addresses client sockets are bound to, in turn: each one
/// has its own ~28,000 ephemeral ports, so tens of thousands of
/// connections to one server port do not run out of them.
#[derive(Debug, Clone, Copy)]
pub struct SourceAddresses {
    count: u32,
}

impl SourceAddresses {
    /// `count` addresses from 127.0.0.2 on, or none when `count` is 0 or a
    /// server node is not on an IPv4 loopback address (the kernel chooses
    /// then).
    pub fn new(count: u32, servers: impl IntoIterator<Item = SocketAddr>) -> SourceAddresses {
        let all_loopback = servers
            .into_iter()
            .all(|addr| addr.ip().is_loopback() && addr.is_ipv4());
        SourceAddresses {
            count: if all_loopback { count } else { 0 },
        }
    }

    /// How many addresses are used (0: the kernel's choice).
    pub fn count(self) -> u32 {
        self.count
    }

    /// The address for the `index`th connection.
    pub fn nth(self, index: usize) -> Option<IpAddr> {
        if self.count == 0 {
            return None;
        }
        let offset = u32::try_from(index % self.count as usize).unwrap_or(0);
        let base = u32::from(Ipv4Addr::new(127, 0, 0, 2));
        Some(IpAddr::V4(Ipv4Addr::from(base + offset)))
    }
}

/// Why a connection could not be opened or joined, short enough to count
/// failures by reason.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConnectError {
    /// The TCP connection failed.
    Tcp(String),
    /// The server refused the upgrade or it broke.
    Handshake(String),
    /// The join was answered with an error code.
    Join(String),
    /// The connection closed before the join reply.
    Closed(String),
    /// A step took longer than [`STEP_TIMEOUT`].
    Timeout(&'static str),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Tcp(reason) => write!(f, "tcp: {reason}"),
            ConnectError::Handshake(reason) => write!(f, "upgrade: {reason}"),
            ConnectError::Join(code) => write!(f, "join: {code}"),
            ConnectError::Closed(reason) => write!(f, "closed before joining: {reason}"),
            ConnectError::Timeout(step) => write!(f, "timeout: {step}"),
        }
    }
}

/// What [`Connection::recv`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text frame, classified.
    Frame(Incoming),
    /// The connection ended: a close frame, an error, or end of stream.
    Closed(String),
}

/// One open chat WebSocket.
pub struct Connection {
    stream: TcpStream,
    protocol: Protocol,
    /// The id of the next v2 request.
    next_id: u64,
    /// Bytes read: `buf[start..end]` is not consumed yet.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes the frame at `start` needs in all, when known and not there yet.
    needed: usize,
    /// A fragmented message being put together (servers rarely fragment).
    fragments: Option<(u8, Vec<u8>)>,
    /// Frames queued for writing.
    out: Vec<u8>,
    /// Where masking keys come from.
    masks: Xorshift,
    /// Why the connection ended, once it has.
    ended: Option<String>,
}

impl Connection {
    /// Connects from `source` (or the kernel's choice), upgrades with the
    /// `cookie` header and the server's own Origin, offering `whisper.v2`
    /// for [`Protocol::V2`] (a server that does not answer with it fails
    /// the upgrade). `read_buffer` is the initial size of the receive
    /// buffer: small for many idle connections, larger for busy ones (it
    /// grows for a larger frame).
    pub async fn open(
        target: &Target,
        cookie: &str,
        source: Option<IpAddr>,
        read_buffer: usize,
        protocol: Protocol,
    ) -> Result<Connection, ConnectError> {
        let tcp = tokio::time::timeout(STEP_TIMEOUT, connect_tcp(target.addr, source))
            .await
            .map_err(|_| ConnectError::Timeout("tcp"))?
            .map_err(|error| ConnectError::Tcp(error.to_string()))?;
        let mut request = target
            .ws_url
            .as_str()
            .into_client_request()
            .map_err(|error| ConnectError::Handshake(error.to_string()))?;
        let headers = request.headers_mut();
        let header = |value: &str| {
            HeaderValue::from_str(value).map_err(|error| ConnectError::Handshake(error.to_string()))
        };
        headers.insert("cookie", header(cookie)?);
        headers.insert("origin", header(&target.origin)?);
        if protocol == Protocol::V2 {
            headers.insert("sec-websocket-protocol", header(V2_SUBPROTOCOL)?);
        }
        // tungstenite's own buffers are dropped right after the handshake.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let (ws, response) = tokio::time::timeout(
            STEP_TIMEOUT,
            tokio_tungstenite::client_async_with_config(request, tcp, Some(config)),
        )
        .await
        .map_err(|_| ConnectError::Timeout("upgrade"))?
        .map_err(|error| ConnectError::Handshake(handshake_reason(&error)))?;
        let answered = response
            .headers()
            .get("sec-websocket-protocol")
            .is_some_and(|value| value.as_bytes() == V2_SUBPROTOCOL.as_bytes());
        if protocol == Protocol::V2 && !answered {
            return Err(ConnectError::Handshake(format!(
                "the server did not accept {V2_SUBPROTOCOL} (no protocol v2)"
            )));
        }
        // The server says nothing before the first command, so tungstenite
        // holds no bytes read past the 101 response that would be lost here.
        let stream = ws.into_inner();
        Ok(Connection {
            stream,
            protocol,
            next_id: 1,
            buf: vec![0; read_buffer.max(256)],
            start: 0,
            end: 0,
            needed: 0,
            fragments: None,
            out: Vec::new(),
            masks: Xorshift::new(),
            ended: None,
        })
    }

    /// Joins `room` and waits for the reply; events that arrive meanwhile
    /// (other members entering) are skipped.
    pub async fn join(&mut self, room: RoomId) -> Result<(), ConnectError> {
        self.queue(&Command::Join { room });
        self.await_join("join reply", |frame| {
            matches!(frame, Incoming::Joined).then_some(())
        })
        .await
    }

    /// v2: joins `room` with `limit` and, after a reconnect, `since`, and
    /// waits for the result; events that arrive meanwhile (others entering)
    /// are skipped, and none of the room's messages can come before it.
    pub async fn join_v2(
        &mut self,
        room: RoomId,
        since: Option<Since>,
        limit: u32,
    ) -> Result<JoinResult, ConnectError> {
        let id = self.queue_v2(v2::Command::Join { room, since, limit });
        self.await_join("join result", |frame| match frame {
            Incoming::JoinResult(result) if result.id == Some(id) => Some(*result),
            _ => None,
        })
        .await
    }

    /// Sends the queued join and reads until `answer` recognises its reply
    /// (other frames are skipped), an error comes, or the socket closes.
    async fn await_join<T>(
        &mut self,
        what: &'static str,
        mut answer: impl FnMut(Incoming) -> Option<T>,
    ) -> Result<T, ConnectError> {
        self.flush()
            .await
            .map_err(|reason| ConnectError::Closed(reason.to_string()))?;
        tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                match self.recv().await {
                    Received::Frame(Incoming::Error(code)) => {
                        let code = code.map_or("unknown error", |code| code.as_str());
                        return Err(ConnectError::Join(code.to_owned()));
                    }
                    Received::Frame(frame) => {
                        if let Some(reply) = answer(frame) {
                            return Ok(reply);
                        }
                    }
                    Received::Closed(reason) => return Err(ConnectError::Closed(reason)),
                }
            }
        })
        .await
        .map_err(|_| ConnectError::Timeout(what))?
    }

    /// Queues a v1 command as a masked text frame; [`Connection::flush`]
    /// writes everything queued at once.
    pub fn queue(&mut self, command: &Command) {
        let mask = self.next_mask();
        frame::write(
            &mut self.out,
            opcode::TEXT,
            encode::command(command).as_bytes(),
            mask,
        );
    }

    /// Queues a v2 command with the connection's next request id, and
    /// returns that id (1, 2, 3, ...): its reply carries it.
    pub fn queue_v2(&mut self, command: v2::Command) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let request = v2::Request {
            id: Some(id),
            command,
        };
        let mask = self.next_mask();
        frame::write(
            &mut self.out,
            opcode::TEXT,
            v2::encode::command(&request).as_bytes(),
            mask,
        );
        id
    }

    /// Writes every queued frame. Fails only when the connection is gone.
    pub async fn flush(&mut self) -> Result<(), &'static str> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out).await {
                Ok(0) | Err(_) => return Err("connection lost while sending"),
                Ok(written) => {
                    self.out.drain(..written);
                }
            }
        }
        Ok(())
    }

    /// The next frame, reading from the socket when none is buffered.
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn recv(&mut self) -> Received {
        loop {
            if let Some(received) = self.recv_buffered() {
                return received;
            }
            // Pongs (and anything else queued) go out before waiting.
            self.write_without_waiting();
            self.make_room();
            let read = self.stream.read(&mut self.buf[self.end..]).await;
            if let Some(ended) = self.after_read(read) {
                return ended;
            }
        }
    }

    /// The next frame if one is already buffered; no syscall.
    pub fn recv_buffered(&mut self) -> Option<Received> {
        if let Some(reason) = &self.ended {
            return Some(Received::Closed(reason.clone()));
        }
        loop {
            let span = match frame::parse(&self.buf[self.start..self.end]) {
                Parsed::Frame(span) => span,
                Parsed::Incomplete(needed) => {
                    self.needed = needed.unwrap_or(0);
                    if self.start == self.end {
                        (self.start, self.end) = (0, 0);
                    }
                    return None;
                }
                Parsed::Invalid(why) => return Some(self.end_with(why.to_owned())),
            };
            let base = self.start;
            self.start += span.end();
            let payload = base + span.payload.start..base + span.payload.end;
            if let Some(mask) = span.mask {
                frame::apply_mask(&mut self.buf[payload.clone()], mask);
            }
            match (span.opcode, span.fin) {
                (opcode::TEXT, true) => {
                    return Some(Received::Frame(self.protocol.classify(&self.buf[payload])));
                }
                (opcode::BINARY, true) => return Some(Received::Frame(Incoming::Other)),
                (opcode::TEXT | opcode::BINARY, false) => {
                    self.fragments = Some((span.opcode, self.buf[payload].to_vec()));
                }
                (opcode::CONTINUATION, fin) => {
                    let Some((_, assembled)) = &mut self.fragments else {
                        return Some(self.end_with("continuation without a first frame".into()));
                    };
                    assembled.extend_from_slice(&self.buf[payload]);
                    if fin && let Some((kind, assembled)) = self.fragments.take() {
                        let incoming = if kind == opcode::TEXT {
                            self.protocol.classify(&assembled)
                        } else {
                            Incoming::Other
                        };
                        return Some(Received::Frame(incoming));
                    }
                }
                (opcode::PING, _) => {
                    let mask = self.next_mask();
                    frame::write(&mut self.out, opcode::PONG, &self.buf[payload], mask);
                }
                (opcode::PONG, _) => {}
                (opcode::CLOSE, _) => {
                    let reason = frame::close_reason(&self.buf[payload]);
                    // Echo the close, as RFC 6455 asks; best effort.
                    let mask = self.next_mask();
                    frame::write(&mut self.out, opcode::CLOSE, &1000u16.to_be_bytes(), mask);
                    self.write_without_waiting();
                    return Some(self.end_with(reason));
                }
                _ => return Some(self.end_with("unknown opcode".into())),
            }
        }
    }

    /// A frame that has already arrived: buffered, or readable without
    /// waiting (one non-blocking read).
    pub fn try_recv(&mut self) -> Option<Received> {
        if let Some(received) = self.recv_buffered() {
            return Some(received);
        }
        self.make_room();
        match self.stream.try_read(&mut self.buf[self.end..]) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => None,
            read => match self.after_read(read) {
                Some(ended) => Some(ended),
                None => self.recv_buffered(),
            },
        }
    }

    /// Closes politely (best effort): a close frame, then the socket.
    pub async fn close(mut self) {
        if self.ended.is_some() {
            return;
        }
        let mask = self.next_mask();
        frame::write(&mut self.out, opcode::CLOSE, &1000u16.to_be_bytes(), mask);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.flush().await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }

    /// Accounts for a read; `Some` when the connection ended.
    fn after_read(&mut self, read: std::io::Result<usize>) -> Option<Received> {
        match read {
            Ok(0) => Some(self.end_with("connection ended".into())),
            Ok(count) => {
                self.end += count;
                None
            }
            Err(error) => Some(self.end_with(error.to_string())),
        }
    }

    /// Makes room after `end` for the next read: moves a partial frame to
    /// the front when less than a quarter is free behind it, and grows the
    /// buffer for a frame larger than it.
    fn make_room(&mut self) {
        let len = self.buf.len();
        if self.start > 0 && (len - self.end < len / 4 || self.start + self.needed > len) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == len || self.needed > len {
            let grown = self.needed.max(len * 2).min(frame::MAX_PAYLOAD + 16);
            self.buf.resize(grown, 0);
        }
    }

    /// Writes what is queued as far as the socket takes it now.
    fn write_without_waiting(&mut self) {
        while !self.out.is_empty() {
            match self.stream.try_write(&self.out) {
                Ok(written) if written > 0 => {
                    self.out.drain(..written);
                }
                _ => break,
            }
        }
    }

    fn end_with(&mut self, reason: String) -> Received {
        self.ended = Some(reason.clone());
        Received::Closed(reason)
    }

    /// A fresh masking key. RFC 6455 wants keys a script in a page cannot
    /// predict; a load generator only needs them to vary.
    fn next_mask(&mut self) -> [u8; 4] {
        (self.masks.next_u64() as u32).to_le_bytes()
    }
}

async fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(addr).await?;
    // Frames are written whole; waiting for more only adds latency.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A refused upgrade in a few words: the HTTP status when there is one.
fn handshake_reason(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let hint = match status.as_u16() {
                403 => " (session or Origin refused)",
                429 => {
                    " (too many connections for one user: lower --connections-per-user or raise the server's --max-connections-per-user)"
                }
                _ => "",
            };
            format!("HTTP {status}{hint}")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn targets_keep_the_authority_browsers_send() {
        let url = Url::parse("http://127.0.0.1:8123/ignored?x=1").expect("url");
        let target = Target::resolve(&url).await.expect("resolves");
        assert_eq!(target.addr, "127.0.0.1:8123".parse().expect("addr"));
        assert_eq!(target.ws_url, "ws://127.0.0.1:8123/chat/stream/");
        assert_eq!(target.origin, "http://127.0.0.1:8123");
        assert_eq!(
            target.url("/accounts/signup/").as_str(),
            "http://127.0.0.1:8123/accounts/signup/"
        );
    }

    #[test]
    fn source_addresses_cycle_over_loopback() {
        let node: SocketAddr = "127.0.0.1:8000".parse().expect("addr");
        let other: SocketAddr = "127.0.0.1:8001".parse().expect("addr");
        let sources = SourceAddresses::new(300, [node, other]);
        assert_eq!(sources.nth(0), Some("127.0.0.2".parse().expect("ip")));
        assert_eq!(sources.nth(253), Some("127.0.0.255".parse().expect("ip")));
        assert_eq!(sources.nth(254), Some("127.0.1.0".parse().expect("ip")));
        assert_eq!(sources.nth(300), sources.nth(0));
        assert_eq!(SourceAddresses::new(0, [node]).nth(5), None);
        let remote: SocketAddr = "192.0.2.1:8000".parse().expect("addr");
        assert_eq!(SourceAddresses::new(300, [node, remote]).count(), 0);
    }
}
