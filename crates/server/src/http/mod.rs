//! The HTTP side: one axum [`Router`] that declares every route once, one
//! error type, one place that adds security headers.
//!
//! Each route's path and methods are written once, in [`router`]; axum
//! derives from that same declaration both the dispatch and, for a known
//! path asked with another method, the 405 and its `Allow` header. What
//! every request needs is applied around the routes, not inside handlers,
//! so no handler can forget it:
//! - [`extract::check_unsafe_request`]: every unsafe method (anything but
//!   GET, HEAD, OPTIONS) has its body read (up to
//!   [`extract::MAX_BODY_BYTES`], within `Config::body_read_timeout`) and
//!   its CSRF token checked before routing;
//! - [`every_request`]: counted for `/metrics`, and its response given the
//!   security headers (and, under `/api/`, `Cache-Control: no-store`);
//! - who is asking is an extractor ([`extract::CurrentUser`],
//!   [`extract::Staff`]): a handler that needs a user or a staff member
//!   says so in its signature, and anyone else is refused before it runs.
//!
//! The router is served by the accept loop in `server.rs` (hyper's own
//! connection, with its header limits, timeouts and upgrades), not by
//! `axum::serve`. `/chat/stream/` is a route like the others; its handler
//! takes the whole request and upgrades it itself.

mod admin;
mod api;
mod assets;
mod cookies;
mod error;
mod extract;
mod pages;
mod templates;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::routing::{get, patch, post};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use whisper_rooms::ChannelLayer;

use crate::state::AppState;
use crate::websocket;
pub(crate) use cookies::SESSION_COOKIE;
pub use cookies::cookie;
pub(crate) use error::HttpError;
pub(crate) use extract::ClientAddr;

/// A response as handlers build it.
pub(crate) type Response = axum::response::Response;

/// Every route of the server, with the layers every request passes.
pub(crate) fn router<L: ChannelLayer>(state: Arc<AppState<L>>) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route(
            "/accounts/login/",
            get(pages::login_form).post(pages::login),
        )
        .route(
            "/accounts/signup/",
            get(pages::signup_form).post(pages::signup),
        )
        .route("/accounts/logout/", post(pages::logout))
        .route("/api/me", get(api::me))
        .route("/api/rooms", get(api::rooms))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/static/{*path}", get(assets::serve_static))
        .route("/chat/stream/", get(websocket::upgrade))
        .route("/admin/", get(admin::page))
        .route(
            "/api/admin/users",
            get(admin::users).post(admin::create_user),
        )
        .route("/api/admin/rooms", post(admin::create_room))
        .route(
            "/api/admin/rooms/{id}",
            patch(admin::update_room).delete(admin::delete_room),
        )
        .route(
            "/api/admin/users/{id}",
            patch(admin::update_user).delete(admin::delete_user),
        )
        .route("/api/admin/record", get(admin::record))
        .route("/api/admin/users/{id}/active", post(admin::set_active))
        .route(
            "/api/admin/users/{id}/password",
            post(admin::reset_password),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            extract::check_unsafe_request::<L>,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            every_request::<L>,
        ))
        .with_state(state)
}

/// Any path no route declares. axum adds nothing to it, so the body is
/// the same as every other 404's.
async fn not_found() -> HttpError {
    HttpError::NotFound
}

/// A declared path asked with a method it was not declared with; axum adds
/// the `Allow` header from the route's declaration.
async fn method_not_allowed() -> HttpError {
    HttpError::MethodNotAllowed
}

/// Counts the request and gives its response, whatever it is (a page, an
/// error, a 101), the security headers. Every answer under `/api/`, errors
/// included, is `Cache-Control: no-store`: it describes one user (who they
/// are, the rooms and users they may see), and neither a shared proxy nor
/// the browser's disk cache should keep it for the next person.
async fn every_request<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    request: Request,
    next: Next,
) -> Response {
    state.metrics.http_requests.inc();
    let is_api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    add_security_headers(headers);
    if is_api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Parses an `application/x-www-form-urlencoded` body; a repeated field
/// keeps its last value. The decoder is lenient, as browsers are: invalid
/// UTF-8 and bad escapes become U+FFFD, so what reaches a handler is
/// always text (and then validated like any other field).
pub fn parse_form(body: &[u8]) -> Option<HashMap<String, String>> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()
        .map(|pairs| pairs.into_iter().collect())
}

/// Headers every response carries: a CSP that allows no inline script, no
/// framing, no MIME sniffing, and no full URLs in Referer to other sites.
fn add_security_headers(headers: &mut http::HeaderMap) {
    const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
        img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
        form-action 'self'; base-uri 'none'";
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// A response with a body and content type.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    let mut response = Response::new(Body::from(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response. Serializing the API's plain structs cannot fail.
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    respond(
        status,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// A 302 to a path of this site.
pub(crate) fn redirect(location: &str) -> Response {
    let mut response = respond(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new());
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
