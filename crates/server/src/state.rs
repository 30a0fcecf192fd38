use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use whisper_auth::{LoginThrottle, SessionStore, SignupThrottle, UserStore};
use whisper_chat::{Chat, RoomDirectory};
use whisper_protocol::RoomId;
use whisper_store::MessageStore;

use crate::connections::{ConnectionCounts, OpenConnections};
use crate::{CatalogError, Config, Room, RoomCatalog};

/// What every request and connection shares. Built once by
/// [`crate::Server::bind`]; handlers get it behind an `Arc`.
pub(crate) struct AppState<L> {
    pub config: Config,
    pub db: DatabaseConnection,
    pub users: UserStore,
    pub sessions: SessionStore,
    pub throttle: LoginThrottle,
    pub signups: SignupThrottle,
    /// The rooms table, for the admin API and the room list. Its cache is
    /// shared with the chat's [`CatalogRooms`].
    pub rooms: RoomCatalog,
    /// The chat rules' shared part: the channel layer, the rooms they look
    /// up, the message log, the limits, the counters.
    pub chat: Arc<Chat<L, CatalogRooms, MessageStore>>,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Open WebSockets per user.
    pub connections: Arc<ConnectionCounts>,
    /// Every open TCP connection, under `Config::max_connections`.
    pub open_connections: OpenConnections,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

/// The rooms table as the chat rules look rooms up (through the catalog's
/// cache: every join looks its room up).
#[derive(Debug, Clone)]
pub(crate) struct CatalogRooms(pub RoomCatalog);

impl RoomDirectory for CatalogRooms {
    type Error = CatalogError;

    async fn room(&self, id: RoomId) -> Result<Option<Room>, CatalogError> {
        self.0.get(id).await
    }
}
