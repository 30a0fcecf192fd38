//! The HTTP side: one router, one error type, one place that adds security
//! headers.
//!
//! Every unsafe method (anything but GET, HEAD, OPTIONS) has its body read
//! (up to [`MAX_BODY_BYTES`]) and its CSRF token checked here, before any
//! handler runs, so no handler can forget it.

mod admin;
mod api;
mod assets;
mod cookies;
mod error;
mod pages;
mod templates;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use whisper_auth::{SessionKey, User};
use whisper_rooms::ChannelLayer;

use crate::state::AppState;
use crate::websocket;
pub(crate) use cookies::SESSION_COOKIE;
pub use cookies::cookie;
pub(crate) use error::HttpError;

/// Every response body is a complete buffer: pages and JSON are small.
pub(crate) type Body = Full<Bytes>;
/// A response as handlers build it.
pub(crate) type Response = http::Response<Body>;

/// Largest request body read (forms are a few hundred bytes).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a handler gets: the request head, its body (read for unsafe
/// methods only), the body parsed as a form when it is one, the peer.
pub(crate) struct Request {
    pub head: http::request::Parts,
    pub body: Bytes,
    pub form: HashMap<String, String>,
    pub remote: SocketAddr,
}

impl Request {
    /// A form field, or "" when absent.
    pub fn field(&self, name: &str) -> &str {
        self.form.get(name).map_or("", String::as_str)
    }

    /// The body as JSON of type `T` (the admin API's requests).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|_| HttpError::BadRequest("expected a JSON body"))
    }

    /// A query-string parameter.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.head.uri.query()?;
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find_map(|(key, value)| (key == name).then_some(value))
    }
}

/// Serves one request; never fails (errors become responses).
pub(crate) async fn handle<L: ChannelLayer>(
    state: Arc<AppState<L>>,
    request: http::Request<Incoming>,
    remote: SocketAddr,
) -> Response {
    state.metrics.http_requests.inc();
    let mut response = route(&state, request, remote)
        .await
        .unwrap_or_else(HttpError::into_response);
    add_security_headers(response.headers_mut());
    response
}

async fn route<L: ChannelLayer>(
    state: &Arc<AppState<L>>,
    request: http::Request<Incoming>,
    remote: SocketAddr,
) -> Result<Response, HttpError> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if path == "/chat/stream/" {
        // The upgrade needs the whole hyper request, body untouched.
        return match method {
            Method::GET => websocket::upgrade(state, request).await,
            _ => Err(HttpError::MethodNotAllowed),
        };
    }
    let request = read_request(request, remote).await?;
    // HEAD is GET without a body; hyper leaves the body out.
    let method = if method == Method::HEAD {
        Method::GET
    } else {
        method
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/") => pages::index(state, &request).await,
        (&Method::GET, "/accounts/login/") => pages::login_form(state, &request),
        (&Method::POST, "/accounts/login/") => pages::login(state, &request).await,
        (&Method::GET, "/accounts/signup/") => pages::signup_form(state, &request),
        (&Method::POST, "/accounts/signup/") => pages::signup(state, &request).await,
        (&Method::POST, "/accounts/logout/") => pages::logout(state, &request).await,
        (&Method::GET, "/api/me") => api::me(state, &request).await,
        (&Method::GET, "/api/rooms") => api::rooms(state, &request).await,
        (&Method::GET, "/healthz") => api::healthz(state).await,
        (&Method::GET, "/metrics") => Ok(respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state
                .metrics
                .render(&state.layer, state.connections.total()),
        )),
        (&Method::GET, p) if p.starts_with("/static/") => assets::serve_static(&request),
        (&Method::GET, "/admin/") => admin::page(state, &request).await,
        (&Method::GET, "/api/admin/users") => admin::users(state, &request).await,
        (&Method::POST, "/api/admin/rooms") => admin::create_room(state, &request).await,
        (method, p) if p.starts_with("/api/admin/rooms/") => {
            let id = admin::path_id(p, "/api/admin/rooms/")?;
            match *method {
                Method::PATCH => admin::update_room(state, &request, id).await,
                Method::DELETE => admin::delete_room(state, &request, id).await,
                _ => Err(HttpError::MethodNotAllowed),
            }
        }
        (&Method::PATCH, p) if p.starts_with("/api/admin/users/") => {
            let id = admin::path_id(p, "/api/admin/users/")?;
            admin::update_user(state, &request, id).await
        }
        (
            _,
            "/" | "/accounts/login/" | "/accounts/signup/" | "/accounts/logout/" | "/api/me"
            | "/api/rooms" | "/healthz" | "/metrics" | "/admin/" | "/api/admin/users"
            | "/api/admin/rooms",
        ) => Err(HttpError::MethodNotAllowed),
        _ => Err(HttpError::NotFound),
    }
}

/// Reads the body of unsafe methods, parses it when it is a form, and
/// checks CSRF: the token comes from the form field or the `X-CSRFToken`
/// header (which the page's script sets on JSON requests).
async fn read_request(
    request: http::Request<Incoming>,
    remote: SocketAddr,
) -> Result<Request, HttpError> {
    let (head, body) = request.into_parts();
    let safe = matches!(head.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mut request = Request {
        head,
        body: Bytes::new(),
        form: HashMap::new(),
        remote,
    };
    if safe {
        return Ok(request);
    }
    request.body = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| HttpError::PayloadTooLarge)?
        .to_bytes();
    let is_form = request
        .head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        request.form =
            parse_form(&request.body).ok_or(HttpError::BadRequest("the form could not be read"))?;
    }
    let submitted = request
        .form
        .get("csrfmiddlewaretoken")
        .map(String::as_str)
        .or_else(|| request.head.headers.get("x-csrftoken")?.to_str().ok());
    cookies::check_csrf(&request.head.headers, submitted)?;
    Ok(request)
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

/// The logged-in user of a request, from its `sessionid` cookie.
pub(crate) async fn current_user<L>(
    state: &AppState<L>,
    headers: &http::HeaderMap,
) -> Result<Option<User>, HttpError> {
    let Some(key) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(state
        .sessions
        .user_for(&SessionKey::from_client(key))
        .await?)
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
    let mut response = http::Response::new(Full::new(body.into()));
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
