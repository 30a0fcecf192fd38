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
    /// as many are allowed, and joins count apart, see
    /// [`Limits::join_burst`]); past it frames are answered `RATE_LIMITED`
    /// ([`Limits::max_messages_per_second`]).
    pub max_messages_per_second: u32,
    /// Most WebSockets one user may have open on this node.
    pub max_connections_per_user: usize,
    /// Most TCP connections open at once on this node, WebSockets
    /// included; one more is answered 503. The default is the process's
    /// open-file limit less 128 (kept for the database, Redis, logs), or
    /// half the limit when that is more.
    pub max_connections: usize,
    /// How often the node looks up the sessions of all its open WebSockets
    /// at once (a few hundred per query): the backstop for what no event
    /// announced (a session expiring, a database edited by hand), so it
    /// still reaches sockets already open. Announced changes (logout, the
    /// admin API, `whisper-manage`) act at once.
    pub session_recheck: Duration,
    /// Longest a client may take to send a request's headers (slowloris).
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a request's body, once its
    /// headers are in (slow POST: a `Content-Length` and then nothing).
    pub body_read_timeout: Duration,
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
    /// How often expired sessions are deleted from the database (and once
    /// at start). They log nobody in, so this only bounds the table.
    pub session_purge_interval: Duration,
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
            max_connections: default_max_connections(),
            session_recheck: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            migrate: true,
            history_max_per_room: 10_000,
            history_max_age: Duration::from_secs(30 * 86_400),
            history_prune_interval: Duration::from_secs(60),
            session_purge_interval: Duration::from_secs(3600),
        }
    }
}

/// Open files the process keeps for itself besides client connections:
/// the listener, the database pool and its files, Redis, logs, the
/// runtime's own descriptors.
const RESERVED_FILES: u64 = 128;

/// The default cap on open connections: as many as this process may open
/// files, less [`RESERVED_FILES`] (or half the limit, under a small one),
/// so the cap, not `accept` failing for want of descriptors, is what a
/// flood of connections meets. Without a readable limit (not Unix), the
/// common default of 1024 files is assumed; an unlimited one counts as a
/// million.
fn default_max_connections() -> usize {
    const ASSUMED_LIMIT: u64 = 1024;
    const UNLIMITED: u64 = 1_000_000;
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_or(ASSUMED_LIMIT, |(soft, _)| soft.min(UNLIMITED));
    let cap = limit.saturating_sub(RESERVED_FILES).max(limit / 2).max(1);
    usize::try_from(cap).unwrap_or(usize::MAX)
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
