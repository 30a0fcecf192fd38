//! One chat WebSocket, opened the way a browser opens it: a TCP connection
//! (bound to a chosen loopback source address), the HTTP upgrade with the
//! session cookie and the page's Origin, then a `join`.
//!
//! What comes in is classified on the spot ([`crate::incoming`]) and handed
//! out as small `Copy` values, so a task can read and send on the same
//! connection from one `select!` loop without holding a borrow of it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use reqwest::Url;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use whisper_protocol::{Command, RoomId, encode};

use crate::error::BenchError;
use crate::incoming::{Incoming, classify};

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
    /// `count` addresses from 127.0.0.2 on, or none when `count` is 0 or the
    /// server is not on a loopback address (the kernel chooses then).
    pub fn new(count: u32, target: &Target) -> SourceAddresses {
        let count = if target.addr.ip().is_loopback() && target.addr.is_ipv4() {
            count
        } else {
            0
        };
        SourceAddresses { count }
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
    ws: WebSocketStream<TcpStream>,
}

impl Connection {
    /// Connects from `source` (or the kernel's choice), upgrades with the
    /// `cookie` header and the server's own Origin. `read_buffer` sizes
    /// the socket's receive buffer: small for many idle connections, larger
    /// for busy ones.
    pub async fn open(
        target: &Target,
        cookie: &str,
        source: Option<IpAddr>,
        read_buffer: usize,
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
        let config = WebSocketConfig::default().read_buffer_size(read_buffer);
        let (ws, _response) = tokio::time::timeout(
            STEP_TIMEOUT,
            tokio_tungstenite::client_async_with_config(request, tcp, Some(config)),
        )
        .await
        .map_err(|_| ConnectError::Timeout("upgrade"))?
        .map_err(|error| ConnectError::Handshake(handshake_reason(&error)))?;
        Ok(Connection { ws })
    }

    /// Joins `room` and waits for the reply; events that arrive meanwhile
    /// (other members entering) are skipped.
    pub async fn join(&mut self, room: RoomId) -> Result<(), ConnectError> {
        self.send(&Command::Join { room })
            .await
            .map_err(|reason| ConnectError::Closed(reason.to_string()))?;
        self.flush()
            .await
            .map_err(|reason| ConnectError::Closed(reason.to_string()))?;
        tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                match self.recv().await {
                    Received::Frame(Incoming::Joined) => return Ok(()),
                    Received::Frame(Incoming::Error(code)) => {
                        let code = code.map_or("unknown error", |code| code.as_str());
                        return Err(ConnectError::Join(code.to_owned()));
                    }
                    Received::Frame(_) => {}
                    Received::Closed(reason) => return Err(ConnectError::Closed(reason)),
                }
            }
        })
        .await
        .map_err(|_| ConnectError::Timeout("join reply"))?
    }

    /// Queues a command; [`Connection::flush`] writes what is queued in one
    /// go. Fails only when the connection is gone.
    pub async fn send(&mut self, command: &Command) -> Result<(), &'static str> {
        self.ws
            .feed(Message::text(encode::command(command)))
            .await
            .map_err(|_| "connection lost while sending")
    }

    /// Writes every queued frame.
    pub async fn flush(&mut self) -> Result<(), &'static str> {
        self.ws
            .flush()
            .await
            .map_err(|_| "connection lost while sending")
    }

    /// The next frame. Cancel-safe: dropping the future loses nothing.
    pub async fn recv(&mut self) -> Received {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Received::Frame(classify(&text)),
                Some(Ok(Message::Binary(_))) => return Received::Frame(Incoming::Other),
                // tungstenite answers pings by itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame.map_or_else(
                        || "closed without a code".to_owned(),
                        |frame| format!("closed {} {}", u16::from(frame.code), frame.reason),
                    );
                    return Received::Closed(reason);
                }
                Some(Err(error)) => return Received::Closed(error.to_string()),
                None => return Received::Closed("connection ended".into()),
            }
        }
    }

    /// A frame that has already arrived, without waiting for one.
    pub fn try_recv(&mut self) -> Option<Received> {
        self.recv().now_or_never()
    }

    /// Closes politely (best effort).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
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
                429 => " (too many connections for one user: lower --connections-per-user or raise the server's --max-connections-per-user)",
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

    #[tokio::test]
    async fn source_addresses_cycle_over_loopback() {
        let url = Url::parse("http://127.0.0.1:8000").expect("url");
        let target = Target::resolve(&url).await.expect("resolves");
        let sources = SourceAddresses::new(300, &target);
        assert_eq!(sources.nth(0), Some("127.0.0.2".parse().expect("ip")));
        assert_eq!(sources.nth(253), Some("127.0.0.255".parse().expect("ip")));
        assert_eq!(sources.nth(254), Some("127.0.1.0".parse().expect("ip")));
        assert_eq!(sources.nth(300), sources.nth(0));
        assert_eq!(SourceAddresses::new(0, &target).nth(5), None);
    }
}
