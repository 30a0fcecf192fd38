use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use whisper_auth::{LoginThrottle, SessionStore, UserStore};

use crate::connections::ConnectionCounts;
use crate::{Config, RoomCatalog};

/// What every request and connection shares. Built once by
/// [`crate::Server::bind`]; handlers get it behind an `Arc`.
pub(crate) struct AppState<L> {
    pub config: Config,
    pub db: DatabaseConnection,
    pub users: UserStore,
    pub sessions: SessionStore,
    pub throttle: LoginThrottle,
    pub rooms: RoomCatalog,
    pub layer: L,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Open WebSockets per user.
    pub connections: std::sync::Arc<ConnectionCounts>,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
}
