//! The sessions of this node's open WebSockets, checked all at once now
//! and then: the backstop for changes of access nobody announced.
//!
//! Changes made through the server or `whisper-manage` reach the sockets
//! they concern as events (see `whisper_chat::AccessChange`). What no event
//! tells (a session that expires, a database edited by hand, an
//! announcement lost in a Redis outage) is found by [`sweep`]: every
//! `Config::session_recheck` it looks up the sessions of every open socket
//! of the node, a few hundred per query, and tells each socket whose
//! session ended or whose staff status differs from what it was opened
//! with, through its own inbox, as an announced change would. An idle
//! socket thus costs no database query and no timer of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use whisper_auth::SessionKey;
use whisper_chat::AccessChange;
use whisper_rooms::{ChannelLayer, ChannelName};

use crate::state::AppState;

/// What the sweep needs of one open socket.
#[derive(Debug, Clone)]
struct OpenSocket {
    session: SessionKey,
    user: i64,
    /// Staff status as the socket's rules last knew it.
    is_staff: bool,
}

/// Every open WebSocket of this node, by its inbox's channel.
#[derive(Debug, Default)]
pub(crate) struct OpenSockets(Mutex<HashMap<ChannelName, OpenSocket>>);

impl OpenSockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelName, OpenSocket>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a socket opened with `session` by `user`, or its user as
    /// now known (after its session was read again).
    pub fn record(&self, channel: ChannelName, session: &SessionKey, user: i64, is_staff: bool) {
        let socket = OpenSocket {
            session: session.clone(),
            user,
            is_staff,
        };
        self.lock().insert(channel, socket);
    }

    /// Forgets a socket that closed.
    pub fn forget(&self, channel: ChannelName) {
        self.lock().remove(&channel);
    }

    fn snapshot(&self) -> Vec<(ChannelName, OpenSocket)> {
        self.lock()
            .iter()
            .map(|(channel, socket)| (*channel, socket.clone()))
            .collect()
    }
}

/// Looks up the sessions of every open socket of the node, and tells each
/// socket whose session no longer logs its user in, or whose user's staff
/// status changed, to read its session again (which closes it, or hands
/// its rules the user as now). A database error leaves things as they are
/// until the next sweep.
pub(crate) async fn sweep<L: ChannelLayer>(state: &Arc<AppState<L>>) {
    let sockets = state.open_sockets.snapshot();
    if sockets.is_empty() {
        return;
    }
    let keys: Vec<SessionKey> = sockets
        .iter()
        .map(|(_, socket)| socket.session.clone())
        .collect();
    let flags = match state.sessions.staff_flags(&keys).await {
        Ok(flags) => flags,
        Err(error) => {
            tracing::warn!(%error, "checking the open sockets' sessions failed");
            return;
        }
    };
    let layer = state.chat.layer();
    for ((channel, socket), is_staff) in sockets.iter().zip(flags) {
        let unchanged = is_staff == Some(socket.is_staff);
        if !unchanged {
            let change = AccessChange::User(socket.user).to_payload();
            if let Err(error) = layer.send(*channel, change).await {
                tracing::warn!(%error, "telling a socket to read its session failed");
            }
        }
    }
}
