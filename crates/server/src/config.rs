use std::net::SocketAddr;
use std::time::Duration;

use whisper_chat::Limits;

use crate::TrustedProxy;

/// Everything a server needs to know at start; one struct, filled by the
/// binary from flags and environment (or by tests directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one (see [`crate::Server::local_addr`]).
    pub bind: SocketAddr,
    /// sea-orm database URL, e.g. `sqlite://whisper.db?mode=rwc`.
    pub database_url: String,
    /// Origins allowed to open the WebSocket, as `scheme://host[:port]`.
    /// Empty means only the request's own host, which is right whenever the
    /// page and the socket are served by the same server.
    pub allowed_origins: Vec<String>,
    /// Whether anyone may create an account at `/accounts/signup/`.
    pub open_signup: bool,
    /// Mark cookies `Secure` (set when served over HTTPS).
    pub secure_cookies: bool,
    /// Longest accepted chat message, in bytes of UTF-8
    /// ([`Limits::max_message_bytes`]).
    pub max_message_bytes: usize,
    /// Most rooms one WebSocket may be in at once
    /// ([`Limits::max_rooms_per_connection`]).
    pub max_rooms_per_connection: usize,
    /// Frames per second one WebSocket may send on average (bursts of twice
    /// as many are allowed); past it frames are answered `RATE_LIMITED`
    /// ([`Limits::max_messages_per_second`]).
    pub max_messages_per_second: u32,
    /// Most WebSockets one user may have open on this node.
    pub max_connections_per_user: usize,
    /// How often an open WebSocket's session is looked up again, so a
    /// logout, a deactivated or deleted user, or lost staff status takes
    /// effect on sockets already open.
    pub session_recheck: Duration,
    /// Longest a client may take to send a request's headers (slowloris).
    pub header_read_timeout: Duration,
    /// How often the server pings a WebSocket; one silent for two intervals
    /// is closed as dead.
    pub ping_interval: Duration,
    /// Peers (addresses or networks) whose `X-Forwarded-For` or
    /// `X-Real-IP` names the client, as a reverse proxy's does. Empty
    /// means none: every client is the TCP peer, since anyone can write
    /// those headers. The login and signup limits count per client.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Apply pending migrations at start.
    pub migrate: bool,
    /// Most messages kept per room (0: all); older ones are removed in the
    /// background, every [`history_prune_interval`](Self::history_prune_interval).
    pub history_max_per_room: u64,
    /// Oldest message kept (zero: all), removed likewise.
    pub history_max_age: Duration,
    /// How often retention runs (and once at start).
    pub history_prune_interval: Duration,
}

impl Default for Config {
    /// The embedded defaults: SQLite file, loopback port 8000, and the chat
    /// rules' own default limits.
    fn default() -> Self {
        let chat = Limits::default();
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            database_url: "sqlite://whisper.db?mode=rwc".into(),
            allowed_origins: Vec::new(),
            open_signup: true,
            secure_cookies: false,
            max_message_bytes: chat.max_message_bytes,
            max_rooms_per_connection: chat.max_rooms_per_connection,
            max_messages_per_second: chat.max_messages_per_second,
            max_connections_per_user: 20,
            session_recheck: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            migrate: true,
            history_max_per_room: 10_000,
            history_max_age: Duration::from_secs(30 * 86_400),
            history_prune_interval: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// The limits the chat rules hold every connection to: the ones set
    /// here, the rest as the rules' defaults.
    pub fn chat_limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes,
            max_rooms_per_connection: self.max_rooms_per_connection,
            max_messages_per_second: self.max_messages_per_second,
            ..Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_the_chat_rules_defaults() {
        assert_eq!(Config::default().chat_limits(), Limits::default());
    }
}
