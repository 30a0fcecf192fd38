//! JSON endpoints for the page's script and for monitoring.

use std::sync::Arc;

use axum::extract::State;
use http::StatusCode;
use serde::Serialize;
use whisper_rooms::{ChannelLayer, GroupName};

use super::extract::CurrentUser;
use super::{HttpError, Response, json, respond};
use crate::state::AppState;

/// The body of `GET /api/me`; fields in the order docs/protocol.md gives.
#[derive(Serialize)]
struct Me<'a> {
    id: i64,
    username: &'a str,
    name: &'a str,
    is_staff: bool,
}

/// One entry of `GET /api/rooms`.
#[derive(Serialize)]
struct RoomEntry<'a> {
    id: i64,
    title: &'a str,
    staff_only: bool,
    group_name: &'a str,
}

/// The body of `GET /healthz`.
#[derive(Serialize)]
struct Health {
    status: &'static str,
    database: &'static str,
    channel_layer: &'static str,
}

/// `GET /api/me`: who is logged in.
pub(crate) async fn me(CurrentUser(user): CurrentUser) -> Response {
    json(
        StatusCode::OK,
        &Me {
            id: user.id.0,
            username: &user.username,
            name: &user.name,
            is_staff: user.is_staff,
        },
    )
}

/// `GET /api/rooms`: every room by title, staff-only ones included (and
/// marked), as the original listed them; joining is where access is checked.
pub(crate) async fn rooms<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    _: CurrentUser,
) -> Result<Response, HttpError> {
    let rooms = state.rooms.list().await?;
    let groups: Vec<_> = rooms
        .iter()
        .map(|room| GroupName::for_room(room.id))
        .collect();
    let entries: Vec<_> = rooms
        .iter()
        .zip(&groups)
        .map(|(room, group)| RoomEntry {
            id: room.id.0,
            title: &room.title,
            staff_only: room.staff_only,
            group_name: group.as_str(),
        })
        .collect();
    Ok(json(StatusCode::OK, &entries))
}

/// `GET /healthz`: 200 when the database and the channel layer answer.
pub(crate) async fn healthz<L: ChannelLayer>(State(state): State<Arc<AppState<L>>>) -> Response {
    // Each check is bounded: a health check that hangs is no answer.
    let bound = std::time::Duration::from_secs(2);
    let database = matches!(
        tokio::time::timeout(bound, state.db.ping()).await,
        Ok(Ok(()))
    );
    let layer = tokio::time::timeout(bound, state.chat.layer().is_available())
        .await
        .unwrap_or(false);
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let healthy = database && layer;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        &Health {
            status: word(healthy),
            database: word(database),
            channel_layer: word(layer),
        },
    )
}

/// `GET /metrics`: this node's counters, as Prometheus text.
pub(crate) async fn metrics<L: ChannelLayer>(State(state): State<Arc<AppState<L>>>) -> Response {
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        state.metrics.render(&state.chat, state.connections.total()),
    )
}
