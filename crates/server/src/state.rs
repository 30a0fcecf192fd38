use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use whisper_auth::{LoginThrottle, SessionStore, SignupThrottle, UserStore};
use whisper_chat::{
    AccessChange, Appended, Chat, Draft, Erase, Erasure, LogState, MessageLog, Mute, MuteOutcome,
    NONCE_WINDOW, RoomDirectory,
};
use whisper_protocol::RoomId;
use whisper_protocol::v2::{Message, Seq};
use whisper_rooms::ChannelLayer;
use whisper_store::{Erased, MessageStore, ModerationAction, NewEntry, NewMessage, StoreError};

use crate::connections::{ConnectionCounts, OpenConnections};
use crate::moderation::Moderation;
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
    /// Who did what to whom: every admin and moderation action.
    pub moderation: Moderation,
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
/// cache: every join looks its room up), and where staff's mutes are
/// stored; each mute and unmute is recorded.
#[derive(Debug, Clone)]
pub(crate) struct CatalogRooms {
    pub catalog: RoomCatalog,
    pub moderation: Moderation,
}

impl RoomDirectory for CatalogRooms {
    type Error = CatalogError;

    async fn room(&self, id: RoomId) -> Result<Option<Room>, CatalogError> {
        self.catalog.get(id).await
    }

    async fn muted_until(&self, room: RoomId, user: i64) -> Result<Option<i64>, CatalogError> {
        self.catalog
            .muted_until(room, user, crate::server::unix_millis())
            .await
    }

    async fn set_mute(&self, mute: &Mute) -> Result<MuteOutcome, CatalogError> {
        let (action, detail) = match mute.until {
            Some(until) => {
                let stored = self
                    .catalog
                    .set_mute(mute.room, mute.user, until, mute.by.id)
                    .await?;
                if !stored {
                    return Ok(MuteOutcome::NoSuchUser);
                }
                let left_ms = until.saturating_sub(crate::server::unix_millis());
                let left = left_ms.saturating_add(500) / 1000;
                (
                    ModerationAction::Mute,
                    format!("for {}", duration_words(left)),
                )
            }
            None => {
                self.catalog.clear_mute(mute.room, mute.user).await?;
                (ModerationAction::Unmute, String::new())
            }
        };
        let subject = format!(
            "{} in room {}",
            self.moderation.user_named(mute.user).await,
            mute.room
        );
        self.moderation
            .record(NewEntry {
                actor: &mute.by.username,
                action,
                subject: &subject,
                detail: &detail,
            })
            .await;
        Ok(MuteOutcome::Applied)
    }
}

/// A duration in seconds as the record says it: in days, hours or minutes,
/// whichever is the largest unit it holds whole, counted to the nearest.
fn duration_words(seconds: i64) -> String {
    let (unit, name) = match seconds {
        86_400.. => (86_400, "day"),
        3_600.. => (3_600, "hour"),
        _ => (60, "minute"),
    };
    let count = ((seconds + unit / 2) / unit).max(1);
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {name}{plural}")
}

/// The `messages` table as the chat rules' log. A message erased by
/// someone other than its author is a moderation action, and recorded.
#[derive(Debug, Clone)]
pub(crate) struct StoreLog {
    pub messages: MessageStore,
    pub moderation: Moderation,
}

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
        let stored = self.messages.append(&rows, window).await?;
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
        let state = self.messages.log_state(room).await?;
        Ok(LogState {
            epoch: state.epoch,
            latest: state.latest,
            oldest: state.oldest,
        })
    }

    async fn latest(&self, room: RoomId, limit: u32) -> Result<Vec<Message>, StoreError> {
        self.messages.latest(room, limit).await
    }

    async fn before(
        &self,
        room: RoomId,
        before: Seq,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.messages.before(room, before, limit).await
    }

    async fn after(
        &self,
        room: RoomId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.messages.after(room, after, limit).await
    }
    async fn erase(&self, erase: &Erase) -> Result<Erasure, StoreError> {
        let erased = self
            .messages
            .erase(erase.room, erase.seq, |author| erase.permits(author))
            .await?;
        Ok(match erased {
            Erased::Erased { author } => {
                if author != erase.by.id {
                    let subject = format!(
                        "message {} in room {} by {}",
                        erase.seq.0,
                        erase.room,
                        self.moderation.user_named(author).await
                    );
                    self.moderation
                        .record(NewEntry {
                            actor: &erase.by.username,
                            action: ModerationAction::DeleteMessage,
                            subject: &subject,
                            detail: "",
                        })
                        .await;
                }
                Erasure::Erased { author }
            }
            Erased::NotFound => Erasure::NotFound,
            Erased::Refused { .. } => Erasure::NotAuthor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::duration_words;

    #[test]
    fn mutes_are_recorded_in_the_largest_whole_unit() {
        for (seconds, words) in [
            (0, "1 minute"),
            (600, "10 minutes"),
            (3_599, "60 minutes"),
            (3_600, "1 hour"),
            (86_400, "1 day"),
            (129_600, "2 days"),
            (31_536_000, "365 days"),
        ] {
            assert_eq!(duration_words(seconds), words, "{seconds}");
        }
    }
}
