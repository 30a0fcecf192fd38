use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use whisper_auth::{LoginThrottle, SessionStore, SignupThrottle, UserStore};
use whisper_chat::{
    AccessChange, Appended, Chat, Draft, LogState, MessageLog, Mute, MuteOutcome, NONCE_WINDOW,
    RoomDirectory,
};
use whisper_protocol::RoomId;
use whisper_protocol::v2::{Message, Seq};
use whisper_rooms::ChannelLayer;
use whisper_store::{MessageStore, NewMessage, StoreError};

use crate::connections::{ConnectionCounts, OpenConnections};
use crate::open_sockets::OpenSockets;
use crate::ping_wheel::PingWheel;
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
    pub chat: Arc<Chat<L, CatalogRooms, StoreLog>>,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Open WebSockets per user.
    pub connections: Arc<ConnectionCounts>,
    /// Every open TCP connection, under `Config::max_connections`.
    pub open_connections: OpenConnections,
    /// Every open WebSocket's session, for the periodic check.
    pub open_sockets: OpenSockets,
    /// When each WebSocket is pinged.
    pub ping_wheel: PingWheel,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

impl<L: ChannelLayer> AppState<L> {
    /// Tells the open connections of every node of a change just stored
    /// (see [`AccessChange`]). When the layer fails, the change still
    /// holds: each socket's periodic session re-check applies it later.
    pub async fn announce(&self, change: AccessChange) {
        if let Err(error) = change.announce(self.chat.layer()).await {
            tracing::warn!(%error, ?change, "could not announce a change of access");
        }
    }
}

/// The rooms table as the chat rules look rooms up (through the catalog's
/// cache: every join looks its room up, and whether its user is muted
/// there). Mutes are stored in the `mutes` table, so they outlast restarts.
#[derive(Debug, Clone)]
pub(crate) struct CatalogRooms(pub RoomCatalog);

impl RoomDirectory for CatalogRooms {
    type Error = CatalogError;

    async fn room(&self, id: RoomId) -> Result<Option<Room>, CatalogError> {
        self.0.get(id).await
    }

    async fn muted_until(&self, room: RoomId, user: i64) -> Result<Option<i64>, CatalogError> {
        self.0
            .muted_until(room, user, crate::server::unix_millis())
            .await
    }

    async fn set_mute(&self, mute: &Mute) -> Result<MuteOutcome, CatalogError> {
        match mute.until {
            Some(until) => {
                let stored = self
                    .0
                    .set_mute(mute.room, mute.user, until, mute.by.id)
                    .await?;
                tracing::info!(
                    room = mute.room.0,
                    user = mute.user,
                    until,
                    by = mute.by.id,
                    stored,
                    "mute"
                );
                Ok(if stored {
                    MuteOutcome::Applied
                } else {
                    MuteOutcome::NoSuchUser
                })
            }
            None => {
                self.0.clear_mute(mute.room, mute.user).await?;
                tracing::info!(
                    room = mute.room.0,
                    user = mute.user,
                    by = mute.by.id,
                    "unmute"
                );
                Ok(MuteOutcome::Applied)
            }
        }
    }
}

/// The `messages` table as the chat rules' log.
#[derive(Debug, Clone)]
pub(crate) struct StoreLog(pub MessageStore);

impl MessageLog for StoreLog {
    type Error = StoreError;

    async fn append(&self, batch: &[Draft]) -> Result<Vec<Appended>, StoreError> {
        let rows: Vec<NewMessage> = batch
            .iter()
            .map(|draft| NewMessage {
                room: draft.room,
                user_id: draft.user.id,
                text: draft.text.clone(),
                nonce: draft.nonce.clone(),
                ts: draft.ts,
            })
            .collect();
        let window = i64::try_from(NONCE_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let stored = self.0.append(&rows, window).await?;
        Ok(stored
            .into_iter()
            .map(|stored| Appended {
                seq: stored.seq,
                ts: stored.ts,
                repeated: stored.repeated,
            })
            .collect())
    }

    async fn state(&self, room: RoomId) -> Result<LogState, StoreError> {
        let state = self.0.log_state(room).await?;
        Ok(LogState {
            epoch: state.epoch,
            latest: state.latest,
            oldest: state.oldest,
        })
    }

    async fn latest(&self, room: RoomId, limit: u32) -> Result<Vec<Message>, StoreError> {
        self.0.latest(room, limit).await
    }

    async fn before(
        &self,
        room: RoomId,
        before: Seq,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.0.before(room, before, limit).await
    }

    async fn after(
        &self,
        room: RoomId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.0.after(room, after, limit).await
    }
}
