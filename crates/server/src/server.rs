//! The accept loop and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use whisper_auth::{LoginThrottle, SessionStore, SignupThrottle, UserStore};
use whisper_chat::{AccessChange, Chat};
use whisper_migrations::{Migrator, MigratorTrait};
use whisper_rooms::ChannelLayer;
use whisper_store::{ChangeFeed, MessageStore, ModerationRecord};

use crate::client_addr::client_address;
use crate::connections::{self, AdmittedStream, OpenConnections};
use crate::moderation::Moderation;
use crate::open_sockets::{self, OpenSockets};
use crate::ping_wheel::PingWheel;
use crate::state::{AppState, CatalogRooms, StoreLog};
use crate::{Config, RoomCatalog, http};

/// How long shutdown waits for open connections to finish after telling them
/// to close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for a database connection.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(3);

/// Connections in the pool of a SQLite database file. sea-orm's default for
/// SQLite is one, and with one every query waits for the previous query's
/// task to be scheduled again and hand the connection back: that queue
/// capped the handshakes at about 4,500 a second on 2 cores (whisper-bench
/// `conns`), with the CPU half idle. Four took it to about 6,200; two and
/// eight did no better.
const SQLITE_FILE_POOL: u32 = 4;

/// The pool settings for `url`. An unreachable database must fail a request
/// in seconds, not hang it for sqlx's default 30 s. A SQLite file gets a
/// pool of [`SQLITE_FILE_POOL`] in WAL journal mode, where readers and the
/// one writer do not block each other, with `synchronous = NORMAL`: a
/// commit is in the WAL file when it returns, so an acknowledged message
/// survives the server being killed, and the fsync waits for the next
/// checkpoint instead of every batch of messages (SQLite's default FULL
/// syncs each commit, which capped one sender at 64 messages per fsync,
/// about 5,000-9,000 a second on this machine's disk). What NORMAL gives
/// up is the last commits before a power cut or a kernel crash; a
/// deployment that needs those durable runs PostgreSQL. An in-memory
/// SQLite database keeps its single connection, since each connection
/// would open a database of its own.
fn database_options(url: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(url);
    options
        .sqlx_logging(false)
        .connect_timeout(DATABASE_TIMEOUT)
        .acquire_timeout(DATABASE_TIMEOUT);
    if is_sqlite_file(url) {
        options
            .max_connections(SQLITE_FILE_POOL)
            .map_sqlx_sqlite_opts(|sqlite| {
                sqlite
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
            });
    }
    options
}

/// Whether `url` names a SQLite database kept in a file (not in memory).
fn is_sqlite_file(url: &str) -> bool {
    url.starts_with("sqlite:") && !url.contains(":memory:") && !url.contains("mode=memory")
}

/// Why a server could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The database could not be reached or migrated.
    #[error("database {url}: {source}")]
    Database {
        /// The URL as configured.
        url: String,
        /// What sea-orm reported.
        #[source]
        source: sea_orm::DbErr,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS reported.
        #[source]
        source: std::io::Error,
    },
}

/// A bound, ready server. [`Server::bind`] does everything that can fail at
/// start (database, migrations, listening socket), so by the time
/// [`Server::local_addr`] is known, the server can take connections.
pub struct Server<L> {
    listener: TcpListener,
    state: Arc<AppState<L>>,
    /// Built once; each connection serves a clone (an `Arc` inside).
    router: Router,
}

impl<L: ChannelLayer> Server<L> {
    /// Connects the database, applies pending migrations (unless
    /// `config.migrate` is off) and opens the listening socket; logs how to
    /// create the first superuser when there is none.
    pub async fn bind(config: Config, layer: L) -> Result<Self, ServerError> {
        let db_error = |source| ServerError::Database {
            url: config.database_url.clone(),
            source,
        };
        let db = Database::connect(database_options(&config.database_url))
            .await
            .map_err(db_error)?;
        if config.migrate {
            Migrator::up(&db, None).await.map_err(db_error)?;
        }
        let listener =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.bind,
                    source,
                })?;
        let rooms = RoomCatalog::new(db.clone());
        let limits = config.chat_limits();
        let users = UserStore::new(db.clone());
        let moderation = Moderation::new(ModerationRecord::new(db.clone()), users.clone());
        let log = StoreLog {
            messages: MessageStore::new(db.clone()),
            moderation: moderation.clone(),
        };
        let directory = CatalogRooms {
            catalog: rooms.clone(),
            moderation: moderation.clone(),
        };
        let chat = Arc::new(Chat::new(layer, directory, log, limits));
        let state = Arc::new(AppState {
            users,
            sessions: SessionStore::new(db.clone()),
            moderation,
            rooms,
            chat,
            throttle: LoginThrottle::default(),
            signups: SignupThrottle::default(),
            connections: Default::default(),
            open_connections: OpenConnections::new(config.max_connections),
            open_sockets: OpenSockets::default(),
            metrics: Default::default(),
            db,
            ping_wheel: PingWheel::new(config.ping_interval),
            config,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        hint_at_the_first_superuser(&state.users).await;
        let router = http::router(state.clone());
        Ok(Server {
            listener,
            state,
            router,
        })
    }

    /// The address actually listened on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener.local_addr().unwrap_or(self.state.config.bind)
    }

    /// Serves until `shutdown` completes, then stops accepting, asks every
    /// WebSocket to close with 1001 and every HTTP connection to finish its
    /// request, and waits for them (at most ten seconds).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server {
            listener,
            state,
            router,
        } = self;
        tokio::pin!(shutdown);
        state.tasks.spawn(apply_retention(state.clone()));
        state.tasks.spawn(purge_expired_rows(state.clone()));
        state.tasks.spawn(follow_room_changes(state.clone()));
        state.tasks.spawn(follow_recorded_changes(state.clone()));
        state.tasks.spawn(check_open_sessions(state.clone()));
        state.tasks.spawn(ping_sockets(state.clone()));
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        // Chat frames are small and latency-bound.
                        let _ = stream.set_nodelay(true);
                        match state.open_connections.admit(stream) {
                            Ok(stream) => {
                                state.tasks.spawn(serve_connection(state.clone(), router.clone(), stream, remote));
                            }
                            Err(stream) => {
                                tracing::debug!(%remote, "connection refused: too many open");
                                state.tasks.spawn(connections::refuse(stream));
                            }
                        }
                    }
                    // Out of file descriptors and the like: back off briefly
                    // instead of spinning, and keep serving.
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        tracing::info!("shutting down: closing connections");
        state.shutdown.cancel();
        state.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close in time");
        }
        Ok(())
    }
}

/// Tells the operator of a server nobody can administer how to change
/// that: only staff make rooms and grant staff, and a fresh install has
/// none. A hint, not a check: when the query fails, start-up goes on.
async fn hint_at_the_first_superuser(users: &UserStore) {
    match users.has_active_superuser().await {
        Ok(true) => {}
        Ok(false) => tracing::info!(
            "no superuser yet: create one with `whisper-manage createsuperuser` \
             (give it this server's --database-url)"
        ),
        Err(error) => tracing::warn!(%error, "could not check for a superuser"),
    }
}

/// Removes the messages past the retention limits, at start and then every
/// [`Config::history_prune_interval`], until shutdown. A failure is logged
/// and retried at the next round.
async fn apply_retention<L: ChannelLayer>(state: Arc<AppState<L>>) {
    let config = &state.config;
    if config.history_max_per_room == 0 && config.history_max_age.is_zero() {
        return;
    }
    let max_age = i64::try_from(config.history_max_age.as_millis()).unwrap_or(i64::MAX);
    let mut rounds = tokio::time::interval(config.history_prune_interval);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = rounds.tick() => {}
        }
        let now = unix_millis();
        match state
            .chat
            .log()
            .messages
            .prune(config.history_max_per_room, max_age, now)
            .await
        {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "retention removed old messages"),
            Err(error) => {
                tracing::warn!(error = &error as &dyn std::error::Error, "retention failed")
            }
        }
    }
}

/// Forgets each room changed on any node as the change is announced
/// (see [`AccessChange::room_changes_group`]), so this node's next join
/// reads the room anew rather than trusting its cache; until shutdown. An
/// inbox the layer cannot add, or that it closes, is made again after a
/// second.
async fn follow_room_changes<L: ChannelLayer>(state: Arc<AppState<L>>) {
    let layer = state.chat.layer();
    let group = AccessChange::room_changes_group();
    loop {
        let mut inbox = layer.new_channel();
        match layer.group_add(&group, inbox.name()).await {
            Ok(()) => loop {
                tokio::select! {
                    () = state.shutdown.cancelled() => break,
                    payload = inbox.recv() => match payload {
                        Ok(payload) => {
                            let change = AccessChange::from_payload(&payload);
                            if let Some(room) = change.and_then(AccessChange::room) {
                                state.rooms.forget(room);
                            }
                        }
                        Err(closed) => {
                            tracing::warn!(?closed, "room changes inbox closed");
                            break;
                        }
                    },
                }
            },
            Err(error) => tracing::warn!(%error, "cannot follow room changes"),
        }
        layer.close_channel(inbox.name()).await;
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Checks the sessions of every open socket of the node, every
/// [`Config::session_recheck`], until shutdown (see [`open_sockets`]).
async fn check_open_sessions<L: ChannelLayer>(state: Arc<AppState<L>>) {
    let period = state.config.session_recheck;
    let mut rounds = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = rounds.tick() => open_sockets::sweep(&state).await,
        }
    }
}

/// Marks the WebSockets due for a ping, a step at a time, until shutdown
/// (see [`PingWheel`]).
async fn ping_sockets<L: ChannelLayer>(state: Arc<AppState<L>>) {
    state.ping_wheel.run(&state.shutdown).await;
}

/// The time now, in Unix milliseconds, as the tables store it.
pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// How often a node reads the changes of access recorded in the database
/// (see [`follow_recorded_changes`]): well within the second in which a
/// change must reach the sockets it concerns.
const RECORDED_CHANGES_POLL: Duration = Duration::from_millis(500);

/// Most recorded changes read at once.
const RECORDED_CHANGES_PAGE: u64 = 100;

/// How long a recorded change is kept: every node reads it within a
/// second, so an hour leaves room for a node that was paused.
const RECORDED_CHANGES_KEPT: Duration = Duration::from_secs(3600);

/// Announces, through the layer, each change of access recorded in the
/// database since this node started ([`ChangeFeed`]: `whisper-manage`
/// records the changes it makes, since it reaches no server's layer), so
/// its sockets follow within a second; until shutdown. With several
/// nodes on Redis every node announces each change, and sockets act on it
/// once per node: acting twice changes nothing. A failure is logged and
/// retried at the next round.
async fn follow_recorded_changes<L: ChannelLayer>(state: Arc<AppState<L>>) {
    let feed = ChangeFeed::new(state.db.clone());
    let mut read_up_to = None;
    let mut rounds = tokio::time::interval(RECORDED_CHANGES_POLL);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = rounds.tick() => {}
        }
        let read = match read_up_to {
            None => feed.latest().await.map(|latest| {
                read_up_to = Some(latest);
                Vec::new()
            }),
            Some(after) => feed.after(after, RECORDED_CHANGES_PAGE).await,
        };
        let recorded = match read {
            Ok(recorded) => recorded,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "reading recorded changes failed"
                );
                continue;
            }
        };
        for row in recorded {
            read_up_to = Some(row.id);
            match row.change.parse::<AccessChange>() {
                Ok(change) => state.announce(change).await,
                Err(error) => tracing::warn!(%error, "a recorded change was not understood"),
            }
        }
    }
}

/// Deletes expired sessions and old recorded changes, at start and then
/// every [`Config::session_purge_interval`], until shutdown. A failure is
/// logged and retried at the next round.
async fn purge_expired_rows<L: ChannelLayer>(state: Arc<AppState<L>>) {
    let feed = ChangeFeed::new(state.db.clone());
    let kept = i64::try_from(RECORDED_CHANGES_KEPT.as_millis()).unwrap_or(i64::MAX);
    let mut rounds = tokio::time::interval(state.config.session_purge_interval);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = rounds.tick() => {}
        }
        match state.sessions.delete_expired().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "expired sessions deleted"),
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                "deleting expired sessions failed"
            ),
        }
        if let Err(error) = feed.prune(unix_millis().saturating_sub(kept)).await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "deleting old recorded changes failed"
            );
        }
    }
}

async fn serve_connection<L: ChannelLayer>(
    state: Arc<AppState<L>>,
    router: Router,
    stream: AdmittedStream,
    remote: SocketAddr,
) {
    let proxies = state.clone();
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let trusted = &proxies.config.trusted_proxies;
        let client = client_address(remote.ip(), request.headers(), trusted);
        request.extensions_mut().insert(http::ClientAddr(client));
        router.clone().oneshot(request)
    });
    let connection = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout)
        // A request head past 16 KiB is refused with 431: ours are ~1 KiB.
        .max_header_size(16 * 1024)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let shutdown = state.shutdown.clone();
    let result = tokio::select! {
        result = &mut connection => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, %remote, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};
    use whisper_rooms::{LayerConfig, MemoryLayer};

    use super::*;

    #[test]
    fn only_a_sqlite_file_is_a_sqlite_file() {
        for (url, file) in [
            ("sqlite://whisper.db?mode=rwc", true),
            ("sqlite:///var/lib/whisper/db.sqlite", true),
            ("sqlite::memory:", false),
            ("sqlite://:memory:", false),
            ("sqlite://?mode=memory&cache=shared", false),
            ("postgres://whisper@localhost/whisper", false),
        ] {
            assert_eq!(is_sqlite_file(url), file, "{url}");
        }
    }

    #[tokio::test]
    async fn a_sqlite_file_is_served_in_wal_mode_by_a_pool() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display()),
            ..Config::default()
        };
        let server = Server::bind(config, MemoryLayer::new(LayerConfig::default()))
            .await
            .expect("server binds");
        let db = &server.state.db;
        let pragma = |name: &'static str| async move {
            db.query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("PRAGMA {name}"),
            ))
            .await
            .expect("pragma")
            .expect("a row")
        };
        let mode = pragma("journal_mode").await;
        assert_eq!(mode.try_get_by_index::<String>(0).expect("text"), "wal");
        // 1 is NORMAL: commits reach the WAL, fsyncs wait for checkpoints.
        let synchronous = pragma("synchronous").await;
        assert_eq!(synchronous.try_get_by_index::<i64>(0).expect("number"), 1);
        let pool = db.get_sqlite_connection_pool();
        assert_eq!(pool.options().get_max_connections(), SQLITE_FILE_POOL);
    }
}
