//! The staff-only admin page and the JSON API behind it: rooms (create,
//! delete, staff-only flag), users (create, staff flag, active or not,
//! password reset, delete) and the moderation record.
//!
//! Every route takes [`Staff`], so no one else reaches a handler; the
//! unsafe ones were CSRF-checked before routing, so a foreign page cannot
//! drive them with a staff member's cookies. Users are a superuser's to
//! create and change ([`staff_change_refusal`], [`active_change_refusal`],
//! [`password_reset_refusal`], [`delete_refusal`],
//! [`ONLY_SUPERUSERS_CREATE`]): any staff member could otherwise take the
//! admin page from every other, superusers included. Every change is
//! written to the moderation record, which superusers read here.

use std::sync::Arc;

use axum::extract::State;
use http::StatusCode;
use minijinja::context;
use serde::{Deserialize, Serialize};
use whisper_auth::{NewUser, User, UserId};
use whisper_chat::AccessChange;
use whisper_protocol::RoomId;
use whisper_rooms::ChannelLayer;
use whisper_store::{ModerationAction, NewEntry, RecordedEntry};

use super::cookies::CsrfToken;
use super::error::SUPERUSER_IS_STAFF;
use super::extract::{JsonBody, PathId, Staff};
use super::pages::form_page;
use super::{HttpError, Response, json, redirect, respond};
use crate::Room;
use crate::state::AppState;

/// `GET /admin/`: the admin page, for staff; anonymous visitors are sent
/// to log in first.
pub(crate) async fn page<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    staff: Option<Staff>,
    csrf: CsrfToken,
) -> Result<Response, HttpError> {
    let Some(Staff(user)) = staff else {
        return Ok(redirect("/accounts/login/?next=/admin/"));
    };
    form_page(
        &state,
        &csrf,
        StatusCode::OK,
        "admin.html",
        context! { username => user.username, is_superuser => user.is_superuser },
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

/// Why `by` may not change `target`'s staff flag, in words fit to show
/// `by`; `None` when it may. The one statement of who changes staff
/// status: `PATCH /api/admin/users/{id}` refuses with it, and the user list
/// carries it so the admin page disables the toggles its viewer may not
/// use. Nobody changes their own (a superuser could otherwise lock
/// themselves out by a slip); only superusers change anyone's; and a
/// superuser is always staff.
fn staff_change_refusal(by: &User, target: &User) -> Option<&'static str> {
    if by.id == target.id {
        Some("Nobody can change their own staff status.")
    } else if !by.is_superuser {
        Some("Only a superuser can change staff status.")
    } else if target.is_superuser {
        Some(SUPERUSER_IS_STAFF)
    } else {
        None
    }
}

/// The refusal of an action on an account that only superusers take, and
/// never on their own: `own` when `by` is `target`, `not_superuser` when
/// `by` is not a superuser, `None` when `by` may.
fn superusers_on_others(
    by: &User,
    target: &User,
    own: &'static str,
    not_superuser: &'static str,
) -> Option<&'static str> {
    if by.id == target.id {
        Some(own)
    } else if !by.is_superuser {
        Some(not_superuser)
    } else {
        None
    }
}

/// Why `by` may not deactivate or reactivate `target`, in words fit to show
/// `by`; `None` when it may. The one statement of who changes whether an
/// account is active, used as [`staff_change_refusal`] is. Only superusers
/// do (a staff member could otherwise lock every superuser out), and
/// never to themselves: a superuser who deactivated their own account by
/// a slip would be logged out with nobody left to undo it.
fn active_change_refusal(by: &User, target: &User) -> Option<&'static str> {
    superusers_on_others(
        by,
        target,
        "Nobody can deactivate themselves.",
        "Only a superuser can deactivate or reactivate users.",
    )
}

/// Why `by` may not set `target`'s password, in words fit to show `by`;
/// `None` when it may. Used as [`staff_change_refusal`] is. Only superusers
/// do (a staff member could otherwise take over a superuser's account),
/// and never their own: a reset ends every session of the user, the one
/// on this page included, and a superuser who wants a new password
/// changes it as any operator does (`whisper-manage changepassword`).
fn password_reset_refusal(by: &User, target: &User) -> Option<&'static str> {
    superusers_on_others(
        by,
        target,
        "Nobody can reset their own password here.",
        "Only a superuser can reset passwords.",
    )
}

/// Why `by` may not delete `target`'s account, in words fit to show `by`;
/// `None` when it may. Used as [`staff_change_refusal`] is. Only
/// superusers delete accounts, and never their own, for the reason they
/// never deactivate it.
fn delete_refusal(by: &User, target: &User) -> Option<&'static str> {
    superusers_on_others(
        by,
        target,
        "Nobody can delete themselves.",
        "Only a superuser can delete users.",
    )
}

/// Why a staff member who is not a superuser does not read the moderation
/// record: it names who acted against whom, superusers included.
const ONLY_SUPERUSERS_READ_THE_RECORD: &str = "Only a superuser can read the moderation record.";

/// Why a staff member who is not a superuser gets no new user: accounts,
/// staff ones included, are a superuser's to make.
const ONLY_SUPERUSERS_CREATE: &str = "Only a superuser can create users.";

/// The user `id`, once `refusal` has said `by` may change them: 404 when
/// there is none, 403 with the reason when `by` may not. Every handler
/// that changes a user starts here, so none can skip the check.
async fn changeable_user<L: ChannelLayer>(
    state: &AppState<L>,
    id: i64,
    by: &User,
    refusal: fn(&User, &User) -> Option<&'static str>,
) -> Result<User, HttpError> {
    let target = state
        .users
        .get(UserId(id))
        .await?
        .ok_or(HttpError::NotFound)?;
    match refusal(by, &target) {
        Some(why) => Err(HttpError::ChangeRefused(why)),
        None => Ok(target),
    }
}

/// A user as the admin API shows it to `viewer`.
#[derive(Serialize)]
struct UserJson<'a> {
    id: i64,
    username: &'a str,
    name: &'a str,
    is_staff: bool,
    is_superuser: bool,
    is_active: bool,
    /// Why the viewer may not change this user's staff flag; `null` when
    /// it may.
    staff_locked: Option<&'static str>,
    /// Why the viewer may not deactivate or reactivate this user; `null`
    /// when it may.
    active_locked: Option<&'static str>,
    /// Why the viewer may not reset this user's password; `null` when it
    /// may.
    password_locked: Option<&'static str>,
    /// Why the viewer may not delete this user; `null` when it may.
    delete_locked: Option<&'static str>,
}

impl<'a> UserJson<'a> {
    fn new(user: &'a User, viewer: &User) -> Self {
        UserJson {
            id: user.id.0,
            username: &user.username,
            name: &user.name,
            is_staff: user.is_staff,
            is_superuser: user.is_superuser,
            is_active: user.is_active,
            staff_locked: staff_change_refusal(viewer, user),
            active_locked: active_change_refusal(viewer, user),
            password_locked: password_reset_refusal(viewer, user),
            delete_locked: delete_refusal(viewer, user),
        }
    }
}

/// `GET /api/admin/users`: every user by username, each with what the
/// viewer may change.
pub(crate) async fn users<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    Staff(viewer): Staff,
) -> Result<Response, HttpError> {
    let users = state.users.list().await?;
    let entries: Vec<UserJson<'_>> = users
        .iter()
        .map(|user| UserJson::new(user, &viewer))
        .collect();
    Ok(json(StatusCode::OK, &entries))
}

/// The body of `POST /api/admin/rooms`, as the admin page sends it.
#[derive(Deserialize)]
pub(crate) struct NewRoom {
    title: String,
    #[serde(default)]
    staff_only: bool,
}

/// `POST /api/admin/rooms` with `{"title":..,"staff_only":..}`: 201 and the room.
pub(crate) async fn create_room<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    Staff(user): Staff,
    JsonBody(new): JsonBody<NewRoom>,
) -> Result<Response, HttpError> {
    let room = state.rooms.create(&new.title, new.staff_only).await?;
    let access = if room.staff_only { "staff-only" } else { "" };
    write_record(
        &state,
        &user,
        ModerationAction::CreateRoom,
        room_subject(&room),
        access,
    )
    .await;
    Ok(room_json(StatusCode::CREATED, &room))
}

/// The body of `PATCH /api/admin/rooms/{id}`: of a room, the admin page
/// changes only the staff-only flag.
#[derive(Deserialize)]
pub(crate) struct RoomChange {
    staff_only: bool,
}

/// `PATCH /api/admin/rooms/{id}` with `{"staff_only":..}`. Members who may
/// no longer use the room leave it at once, on every node.
pub(crate) async fn update_room<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    PathId(id): PathId,
    Staff(by): Staff,
    JsonBody(change): JsonBody<RoomChange>,
) -> Result<Response, HttpError> {
    let room = state
        .rooms
        .set_staff_only(RoomId(id), change.staff_only)
        .await?;
    let (change, action) = if room.staff_only {
        (
            AccessChange::RoomStaffOnly(room.id),
            ModerationAction::RoomStaffOnly,
        )
    } else {
        (
            AccessChange::RoomOpened(room.id),
            ModerationAction::RoomOpened,
        )
    };
    state.announce(change).await;
    write_record(&state, &by, action, room_subject(&room), "").await;
    Ok(room_json(StatusCode::OK, &room))
}

/// `DELETE /api/admin/rooms/{id}`: 204. Every member leaves the room at
/// once, on every node.
pub(crate) async fn delete_room<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    PathId(id): PathId,
    Staff(by): Staff,
) -> Result<Response, HttpError> {
    let room = state
        .rooms
        .get(RoomId(id))
        .await?
        .ok_or(HttpError::NotFound)?;
    state.rooms.delete(room.id).await?;
    state.announce(AccessChange::RoomDeleted(room.id)).await;
    write_record(
        &state,
        &by,
        ModerationAction::DeleteRoom,
        room_subject(&room),
        "",
    )
    .await;
    Ok(no_content())
}

/// An empty 204, the answer to a deletion.
fn no_content() -> Response {
    respond(StatusCode::NO_CONTENT, "application/json", Vec::new())
}

/// Writes an action taken by `by` on `subject` (see [`room_subject`],
/// [`user_subject`]) to the moderation record.
async fn write_record<L: ChannelLayer>(
    state: &AppState<L>,
    by: &User,
    action: ModerationAction,
    subject: String,
    detail: &str,
) {
    state
        .moderation
        .record(NewEntry {
            actor: &by.username,
            action,
            subject: &subject,
            detail,
        })
        .await;
}

/// A room as the record names it, `room 3 "Lobby"`: by title too, so the
/// entry still says which room once it is gone.
fn room_subject(room: &Room) -> String {
    format!("room {} {:?}", room.id, room.title)
}

/// An account as the record names it: `user ann`.
fn user_subject(user: &User) -> String {
    format!("user {}", user.username)
}

/// The body of `PATCH /api/admin/users/{id}`: of a user, the admin page
/// changes only the staff flag. Any other field is refused (400), so that
/// `{"is_superuser":true}` is not mistaken for a success: superusers are
/// made with `whisper-manage createsuperuser` only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserChange {
    is_staff: bool,
}

/// `PATCH /api/admin/users/{id}` with `{"is_staff":..}`: 200 and the user,
/// or 403 with `{"error":..}` when [`staff_change_refusal`] says no.
pub(crate) async fn update_user<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    PathId(id): PathId,
    Staff(by): Staff,
    JsonBody(change): JsonBody<UserChange>,
) -> Result<Response, HttpError> {
    let target = changeable_user(&state, id, &by, staff_change_refusal).await?;
    let user = state
        .users
        .set_staff(&target.username, change.is_staff)
        .await?;
    state.announce(AccessChange::User(user.id.0)).await;
    let action = if user.is_staff {
        ModerationAction::GrantStaff
    } else {
        ModerationAction::RevokeStaff
    };
    write_record(&state, &by, action, user_subject(&user), "").await;
    Ok(json(StatusCode::OK, &UserJson::new(&user, &by)))
}

/// The body of `POST /api/admin/users/{id}/active`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActiveChange {
    is_active: bool,
}

/// `POST /api/admin/users/{id}/active` with `{"is_active":..}`: 200 and the
/// user, or 403 with `{"error":..}` when [`active_change_refusal`] says no.
/// Deactivating ends the user's sessions ([`whisper_auth::UserStore::set_active`])
/// and closes their sockets at once, on every node.
pub(crate) async fn set_active<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    PathId(id): PathId,
    Staff(by): Staff,
    JsonBody(change): JsonBody<ActiveChange>,
) -> Result<Response, HttpError> {
    let target = changeable_user(&state, id, &by, active_change_refusal).await?;
    let user = state
        .users
        .set_active(&target.username, change.is_active)
        .await?;
    state.announce(AccessChange::User(user.id.0)).await;
    let action = if user.is_active {
        ModerationAction::Activate
    } else {
        ModerationAction::Deactivate
    };
    write_record(&state, &by, action, user_subject(&user), "").await;
    Ok(json(StatusCode::OK, &UserJson::new(&user, &by)))
}

/// The body of `POST /api/admin/users`: what the admin page's form asks
/// for. Any other field is refused (400), as for [`UserChange`]: no field
/// makes a superuser.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAccount {
    username: String,
    #[serde(default)]
    name: String,
    password: String,
    #[serde(default)]
    is_staff: bool,
}

/// `POST /api/admin/users` with `{"username":..,"name":..,"password":..,
/// "is_staff":..}`: 201 and the user as the list shows it. Only superusers
/// create users (403 otherwise). The account follows the rules of every
/// account ([`whisper_auth::UserStore::create`], as signup and
/// `whisper-manage createuser`): 400 with the rule broken, 409 when the
/// name or a look-alike is taken. The password is hashed in one of the
/// bounded hashing slots logins and signups share, so this route cannot
/// take more of the machine than they can (503 when they are all busy).
pub(crate) async fn create_user<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    Staff(by): Staff,
    JsonBody(account): JsonBody<NewAccount>,
) -> Result<Response, HttpError> {
    if !by.is_superuser {
        return Err(HttpError::ChangeRefused(ONLY_SUPERUSERS_CREATE));
    }
    let mut new = NewUser::new(account.username, account.password);
    new.name = account.name.trim().to_owned();
    new.is_staff = account.is_staff;
    let user = state.users.create(new).await?;
    let role = if user.is_staff { "staff" } else { "" };
    write_record(
        &state,
        &by,
        ModerationAction::CreateUser,
        user_subject(&user),
        role,
    )
    .await;
    Ok(json(StatusCode::CREATED, &UserJson::new(&user, &by)))
}

/// The body of `POST /api/admin/users/{id}/password`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordReset {
    password: String,
}

/// `POST /api/admin/users/{id}/password` with `{"password":..}`: 200 and the
/// user, or 403 with `{"error":..}` when [`password_reset_refusal`] says no,
/// 400 when the password breaks the rule every password follows. The new
/// password ends the user's sessions
/// ([`whisper_auth::UserStore::set_password`], as `whisper-manage
/// changepassword`), and their sockets close at once, on every node.
pub(crate) async fn reset_password<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    PathId(id): PathId,
    Staff(by): Staff,
    JsonBody(reset): JsonBody<PasswordReset>,
) -> Result<Response, HttpError> {
    let target = changeable_user(&state, id, &by, password_reset_refusal).await?;
    let user = state
        .users
        .set_password(&target.username, &reset.password)
        .await?;
    state.announce(AccessChange::User(user.id.0)).await;
    write_record(
        &state,
        &by,
        ModerationAction::ResetPassword,
        user_subject(&user),
        "",
    )
    .await;
    Ok(json(StatusCode::OK, &UserJson::new(&user, &by)))
}

/// `DELETE /api/admin/users/{id}`: 204, or 403 with `{"error":..}` when
/// [`delete_refusal`] says no. The account and its sessions go
/// ([`whisper_auth::UserStore::delete`]) and its sockets close at once,
/// on every node, each leaving its rooms as any closing socket does. The
/// user's messages stay, as from a deleted user.
pub(crate) async fn delete_user<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    PathId(id): PathId,
    Staff(by): Staff,
) -> Result<Response, HttpError> {
    let target = changeable_user(&state, id, &by, delete_refusal).await?;
    let user = state.users.delete(&target.username).await?;
    state.announce(AccessChange::User(user.id.0)).await;
    write_record(
        &state,
        &by,
        ModerationAction::DeleteUser,
        user_subject(&user),
        "",
    )
    .await;
    Ok(no_content())
}

/// The most entries of the moderation record the admin page shows.
const RECORD_PAGE: u64 = 200;

/// An entry of the moderation record as the admin page reads it.
#[derive(Serialize)]
struct RecordedJson<'a> {
    /// When, in Unix milliseconds.
    at: i64,
    actor: &'a str,
    action: &'a str,
    subject: &'a str,
    detail: &'a str,
}

impl<'a> From<&'a RecordedEntry> for RecordedJson<'a> {
    fn from(entry: &'a RecordedEntry) -> Self {
        RecordedJson {
            at: entry.at,
            actor: &entry.actor,
            action: &entry.action,
            subject: &entry.subject,
            detail: &entry.detail,
        }
    }
}

/// `GET /api/admin/record`: the latest [`RECORD_PAGE`] moderation and
/// administration actions, newest first, for superusers (403 for other
/// staff).
pub(crate) async fn record<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    Staff(viewer): Staff,
) -> Result<Response, HttpError> {
    if !viewer.is_superuser {
        return Err(HttpError::ChangeRefused(ONLY_SUPERUSERS_READ_THE_RECORD));
    }
    let entries = state.moderation.latest(RECORD_PAGE).await?;
    let page: Vec<RecordedJson<'_>> = entries.iter().map(RecordedJson::from).collect();
    Ok(json(StatusCode::OK, &page))
}
