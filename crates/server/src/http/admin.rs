//! The staff-only admin page and the JSON API behind it: rooms (create,
//! delete, staff-only flag) and users (staff flag).
//!
//! Every route checks staff status itself; the router has already checked
//! CSRF for the unsafe ones, so a foreign page cannot drive them with a
//! staff member's cookies.

use http::StatusCode;
use serde::{Deserialize, Serialize};
use whisper_auth::{User, UserId};
use whisper_protocol::RoomId;

use super::{HttpError, Request, Response, current_user, json, redirect, respond};
use crate::Room;
use crate::state::AppState;

/// The logged-in staff member, or 401 (anonymous) / 403 (not staff).
async fn staff<L>(state: &AppState<L>, request: &Request) -> Result<User, HttpError> {
    let user = current_user(state, &request.head.headers)
        .await?
        .ok_or(HttpError::Unauthorized)?;
    if !user.is_staff {
        return Err(HttpError::Forbidden("staff only"));
    }
    Ok(user)
}

/// The numeric id at the end of an admin API path.
pub(crate) fn path_id(path: &str, prefix: &str) -> Result<i64, HttpError> {
    path.strip_prefix(prefix)
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse().ok())
        .ok_or(HttpError::NotFound)
}

/// `GET /admin/`: the admin page, for staff.
pub(crate) async fn page<L>(state: &AppState<L>, request: &Request) -> Result<Response, HttpError> {
    if current_user(state, &request.head.headers).await?.is_none() {
        return Ok(redirect("/accounts/login/?next=/admin/"));
    }
    let user = staff(state, request).await?;
    super::pages::render_page(
        state,
        request,
        "admin.html",
        minijinja::context! { username => user.username },
    )
}

#[derive(Serialize)]
struct RoomJson<'a> {
    id: i64,
    title: &'a str,
    staff_only: bool,
}

fn room_json(status: StatusCode, room: &Room) -> Response {
    json(
        status,
        &RoomJson {
            id: room.id.0,
            title: &room.title,
            staff_only: room.staff_only,
        },
    )
}

#[derive(Serialize)]
struct UserJson<'a> {
    id: i64,
    username: &'a str,
    name: &'a str,
    is_staff: bool,
    is_superuser: bool,
    is_active: bool,
}

impl<'a> From<&'a User> for UserJson<'a> {
    fn from(user: &'a User) -> Self {
        UserJson {
            id: user.id.0,
            username: &user.username,
            name: &user.name,
            is_staff: user.is_staff,
            is_superuser: user.is_superuser,
            is_active: user.is_active,
        }
    }
}

/// `GET /api/admin/users`: every user by username.
pub(crate) async fn users<L>(
    state: &AppState<L>,
    request: &Request,
) -> Result<Response, HttpError> {
    staff(state, request).await?;
    let users = state.users.list().await?;
    let entries: Vec<UserJson<'_>> = users.iter().map(UserJson::from).collect();
    Ok(json(StatusCode::OK, &entries))
}

#[derive(Deserialize)]
struct NewRoom {
    title: String,
    #[serde(default)]
    staff_only: bool,
}

/// `POST /api/admin/rooms` with `{"title":..,"staff_only":..}`: 201 and the room.
pub(crate) async fn create_room<L>(
    state: &AppState<L>,
    request: &Request,
) -> Result<Response, HttpError> {
    let user = staff(state, request).await?;
    let new: NewRoom = request.json()?;
    let room = state.rooms.create(&new.title, new.staff_only).await?;
    tracing::info!(by = %user.username, room = %room.id, "room created");
    Ok(room_json(StatusCode::CREATED, &room))
}

#[derive(Deserialize)]
struct RoomChange {
    staff_only: bool,
}

/// `PATCH /api/admin/rooms/{id}` with `{"staff_only":..}`.
pub(crate) async fn update_room<L>(
    state: &AppState<L>,
    request: &Request,
    id: i64,
) -> Result<Response, HttpError> {
    staff(state, request).await?;
    let change: RoomChange = request.json()?;
    let room = state
        .rooms
        .set_staff_only(RoomId(id), change.staff_only)
        .await?;
    Ok(room_json(StatusCode::OK, &room))
}

/// `DELETE /api/admin/rooms/{id}`: 204.
pub(crate) async fn delete_room<L>(
    state: &AppState<L>,
    request: &Request,
    id: i64,
) -> Result<Response, HttpError> {
    let user = staff(state, request).await?;
    state.rooms.delete(RoomId(id)).await?;
    tracing::info!(by = %user.username, room = id, "room deleted");
    Ok(respond(
        StatusCode::NO_CONTENT,
        "application/json",
        Vec::new(),
    ))
}

#[derive(Deserialize)]
struct UserChange {
    is_staff: bool,
}

/// `PATCH /api/admin/users/{id}` with `{"is_staff":..}`.
pub(crate) async fn update_user<L>(
    state: &AppState<L>,
    request: &Request,
    id: i64,
) -> Result<Response, HttpError> {
    let by = staff(state, request).await?;
    let change: UserChange = request.json()?;
    let target = state
        .users
        .get(UserId(id))
        .await?
        .ok_or(HttpError::NotFound)?;
    let user = state
        .users
        .set_staff(&target.username, change.is_staff)
        .await?;
    tracing::info!(by = %by.username, user = %user.username, is_staff = user.is_staff, "staff changed");
    Ok(json(StatusCode::OK, &UserJson::from(&user)))
}
