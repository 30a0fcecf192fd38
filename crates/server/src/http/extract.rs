//! What handlers take from a request, as typed extractors, and the check
//! every unsafe request passes before it reaches one.
//!
//! A handler states what it needs in its signature: [`CurrentUser`] (401
//! for an anonymous caller), [`Staff`] (401, or 403 for a user who is not
//! staff), [`FormFields`], [`JsonBody`], [`PathId`]. A refusal is an
//! [`HttpError`], so it becomes a response in the same one place as every
//! other error.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{
    FromRequest, FromRequestParts, OptionalFromRequestParts, Path, Request, State,
};
use axum::middleware::Next;
use bytes::Bytes;
use http::request::Parts;
use http::{Method, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use whisper_auth::{SessionKey, User};
use whisper_rooms::ChannelLayer;

use super::cookies::{self, SESSION_COOKIE};
use super::{HttpError, Response, cookie, parse_form};
use crate::state::AppState;

/// Largest request body read (forms are a few hundred bytes).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The client's address, put on every request by the accept loop (the
/// peer's, or the one a trusted proxy names: see `client_addr`): the login
/// and signup throttles count per client address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub IpAddr);

/// Reads the body of every unsafe method (anything but GET, HEAD, OPTIONS),
/// parses it when it is a form, and checks CSRF before the request is
/// routed: the token comes from the form field `csrfmiddlewaretoken` or the
/// `X-CSRFToken` header (which the pages' scripts set on JSON requests).
/// The body read is handed on, so [`JsonBody`] reads the same bytes, and
/// the parsed form rides along for [`FormFields`].
pub(crate) async fn check_unsafe_request<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    request: Request,
    next: Next,
) -> Result<Response, HttpError> {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return Ok(next.run(request).await);
    }
    let (mut head, body) = request.into_parts();
    let body = read_body(body, state.config.body_read_timeout).await?;
    let is_form = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        parse_form(&body).ok_or(HttpError::BadRequest("the form could not be read"))?
    } else {
        HashMap::new()
    };
    let submitted = form
        .get("csrfmiddlewaretoken")
        .map(String::as_str)
        .or_else(|| head.headers.get("x-csrftoken")?.to_str().ok());
    cookies::check_csrf(&head.headers, submitted)?;
    head.extensions.insert(FormFields(form));
    Ok(next.run(Request::from_parts(head, Body::from(body))).await)
}

/// The whole body, at most [`MAX_BODY_BYTES`] of it, arrived within
/// `deadline`. Without the deadline a client that announces a body and
/// never sends it holds its connection (and a task) open for as long as
/// it likes: hyper's header timeout ends with the headers.
async fn read_body(body: Body, deadline: Duration) -> Result<Bytes, HttpError> {
    let read = tokio::time::timeout(deadline, Limited::new(body, MAX_BODY_BYTES).collect());
    match read.await.map_err(|_| HttpError::BodyTimeout)? {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(HttpError::PayloadTooLarge),
        // The client stopped sending mid-body: nobody is left to answer.
        Err(_) => Err(HttpError::BadRequest("the body could not be read")),
    }
}

/// The fields of a form body, as [`check_unsafe_request`] parsed them;
/// empty for a safe method or a body that is not a form.
#[derive(Debug, Clone, Default)]
pub(crate) struct FormFields(HashMap<String, String>);

impl FormFields {
    /// A field's value, or "" when absent (as an empty input would send it).
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

impl<S: Sync> FromRequestParts<S> for FormFields {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.remove().unwrap_or_default())
    }
}

/// The body as JSON of type `T` (the admin API's requests); anything else
/// is 400, whatever serde found wrong with it.
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(request, state)
            .await
            .ok()
            .and_then(|body| serde_json::from_slice(&body).ok())
            .map(JsonBody)
            .ok_or(HttpError::BadRequest("expected a JSON body"))
    }
}

/// The numeric id in a route's `{id}`: digits only, so `abc`, `-1` and
/// `+1` are no id, and no such path (404).
pub(crate) struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = <Path<String> as FromRequestParts<_>>::from_request_parts(parts, state)
            .await
            .map_err(|_| HttpError::NotFound)?;
        Some(id.as_str())
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|id| id.parse().ok())
            .map(PathId)
            .ok_or(HttpError::NotFound)
    }
}

/// The logged-in user, from the request's `sessionid` cookie. Required, it
/// refuses an anonymous caller with 401 (the API's answer); as
/// `Option<CurrentUser>` it lets a page send them to the login form.
pub(crate) struct CurrentUser(pub User);

impl<L: ChannelLayer> OptionalFromRequestParts<Arc<AppState<L>>> for CurrentUser {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState<L>>,
    ) -> Result<Option<Self>, Self::Rejection> {
        let Some(key) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let user = state
            .sessions
            .user_for(&SessionKey::from_client(key))
            .await?;
        Ok(user.map(CurrentUser))
    }
}

impl<L: ChannelLayer> FromRequestParts<Arc<AppState<L>>> for CurrentUser {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState<L>>,
    ) -> Result<Self, Self::Rejection> {
        <Self as OptionalFromRequestParts<_>>::from_request_parts(parts, state)
            .await?
            .ok_or(HttpError::Unauthorized)
    }
}

/// A logged-in staff member: what every admin route takes. Required, it
/// refuses an anonymous caller with 401 and anyone else with 403; as
/// `Option<Staff>` an anonymous caller is `None` (the admin page sends them
/// to log in) but a user who is not staff is still refused.
pub(crate) struct Staff(pub User);

impl TryFrom<CurrentUser> for Staff {
    type Error = HttpError;

    fn try_from(CurrentUser(user): CurrentUser) -> Result<Self, Self::Error> {
        if user.is_staff {
            Ok(Staff(user))
        } else {
            Err(HttpError::Forbidden("staff only"))
        }
    }
}

impl<L: ChannelLayer> OptionalFromRequestParts<Arc<AppState<L>>> for Staff {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState<L>>,
    ) -> Result<Option<Self>, Self::Rejection> {
        <CurrentUser as OptionalFromRequestParts<_>>::from_request_parts(parts, state)
            .await?
            .map(Staff::try_from)
            .transpose()
    }
}

impl<L: ChannelLayer> FromRequestParts<Arc<AppState<L>>> for Staff {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState<L>>,
    ) -> Result<Self, Self::Rejection> {
        <CurrentUser as FromRequestParts<_>>::from_request_parts(parts, state)
            .await
            .and_then(Staff::try_from)
    }
}
