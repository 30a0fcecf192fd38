//! The WebSocket handshake at `/chat/stream/`.
//!
//! Everything is checked before upgrading, so a refused client gets a plain
//! HTTP 403 and never an open socket: the session cookie must name an
//! active user, and the `Origin` header must be allowed. Browsers send
//! cookies with cross-site WebSocket handshakes too, so without the Origin
//! check any site could open a chat socket as its visitor (cross-site
//! WebSocket hijacking).

use std::sync::Arc;

use axum::extract::{Request, State};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use whisper_chat::{Protocol, V2_SUBPROTOCOL};
use whisper_rooms::ChannelLayer;

use crate::consumer;
use whisper_auth::SessionKey;

use crate::Config;
use crate::http::{HttpError, Response, SESSION_COOKIE, cookie, respond};
use crate::state::AppState;

/// Bytes read from a client's socket at a time. A chat command is a few
/// hundred bytes; 4 KiB was a third of an idle connection's memory.
const READ_BUFFER: usize = 1024;

/// `GET /chat/stream/`: checks the handshake and, when it passes, answers
/// 101 and hands the upgraded socket to a new consumer task. It takes the
/// whole request, whose extensions carry hyper's upgrade handle: the
/// consumer writes raw frames on hyper's upgraded stream itself.
pub(crate) async fn upgrade<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    mut request: Request,
) -> Result<Response, HttpError> {
    let headers = request.headers();
    let is_websocket = header_has_token(headers, header::UPGRADE, "websocket")
        && header_has_token(headers, header::CONNECTION, "upgrade");
    if !is_websocket {
        return Err(HttpError::BadRequest("expected a WebSocket upgrade"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(HttpError::BadRequest("unsupported WebSocket version"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(HttpError::BadRequest("missing Sec-WebSocket-Key"))?;
    let accept = derive_accept_key(key.as_bytes());
    if !origin_allowed(headers, &state.config) {
        tracing::info!(origin = ?headers.get(header::ORIGIN), "WebSocket refused: origin");
        return Err(HttpError::Forbidden("origin not allowed"));
    }
    let session = cookie(headers, SESSION_COOKIE)
        .map(SessionKey::from_client)
        .ok_or(HttpError::Forbidden("login required"))?;
    let user = state
        .sessions
        .user_for(&session)
        .await?
        .ok_or(HttpError::Forbidden("login required"))?;
    let slot = state
        .connections
        .acquire(user.id, state.config.max_connections_per_user)
        .ok_or(HttpError::TooManyConnections)?;
    let protocol = Protocol::negotiate(
        headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(',')),
    );
    let admitted = consumer::Admitted {
        user,
        session,
        slot,
        protocol,
    };

    let on_upgrade = hyper::upgrade::on(&mut request);
    let frame_limit = state.chat.limits().frame_limit();
    // Clients send little, so a small read buffer: tungstenite allocates it
    // up front and clears its free part on every poll, which at the default
    // 128 KiB dominated both the per-connection memory and the CPU of
    // idle-ish sockets (measured with whisper-bench and perf). A longer
    // frame still arrives whole: the buffer grows to the frame's length.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(frame_limit))
        .max_frame_size(Some(frame_limit));
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config),
                )
                .await;
                consumer::run(state, admitted, socket).await;
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
    });

    let mut response = respond(StatusCode::SWITCHING_PROTOCOLS, "text/plain", Vec::new());
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    if protocol == Protocol::V2 {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(V2_SUBPROTOCOL),
        );
    }
    Ok(response)
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// Whether the handshake's `Origin` may open a socket: one of the configured
/// origins, or, with none configured, this server's own origin: the scheme
/// the browser used ([`own_scheme`]) and the host the request was sent to.
/// A handshake without `Origin` is refused: every browser sends one.
fn origin_allowed(headers: &HeaderMap, config: &Config) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if !config.allowed_origins.is_empty() {
        let origin = origin.trim_end_matches('/');
        return config
            .allowed_origins
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin));
    }
    let Ok(uri) = origin.parse::<Uri>() else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    uri.scheme_str()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(own_scheme(headers, config)))
        && uri
            .authority()
            .zip(host)
            .is_some_and(|(authority, host)| authority.as_str().eq_ignore_ascii_case(host))
}

/// The scheme the browser reached this server with: what a reverse proxy
/// says in `X-Forwarded-Proto` (the documented nginx sets it), otherwise
/// `https` when the server is told it is served over HTTPS
/// (`--secure-cookies`), otherwise `http`. The header needs no trust in the
/// proxy here, like `Host`: a page cannot set either on a WebSocket
/// handshake, and the Origin check only guards against pages (any other
/// client can send whatever `Origin` it likes).
fn own_scheme(headers: &HeaderMap, config: &Config) -> &'static str {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(str::trim);
    match forwarded {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        Some(proto) if proto.eq_ignore_ascii_case("http") => "http",
        _ if config.secure_cookies => "https",
        _ => "http",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).expect("host"));
        if let Some(origin) = origin {
            headers.insert(
                header::ORIGIN,
                HeaderValue::from_str(origin).expect("origin"),
            );
        }
        headers
    }

    #[test]
    fn same_host_and_scheme_is_allowed_by_default() {
        let config = Config::default();
        let host = "127.0.0.1:8000";
        assert!(origin_allowed(
            &headers(Some("http://127.0.0.1:8000"), host),
            &config
        ));
        for refused in [
            Some("http://evil.example"),
            Some("http://127.0.0.1:8001"),
            Some("https://127.0.0.1:8000"),
            Some("ftp://127.0.0.1:8000"),
            Some("null"),
            None,
        ] {
            assert!(
                !origin_allowed(&headers(refused, host), &config),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn the_scheme_is_the_proxys_or_https_with_secure_cookies() {
        let plain = Config::default();
        let secure = Config {
            secure_cookies: true,
            ..Config::default()
        };
        let host = "chat.example.com";
        let https = headers(Some("https://chat.example.com"), host);
        let http = headers(Some("http://chat.example.com"), host);
        assert!(origin_allowed(&https, &secure));
        assert!(!origin_allowed(&http, &secure));
        let mut forwarded_https = https.clone();
        forwarded_https.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(origin_allowed(&forwarded_https, &plain));
        let mut forwarded_http = https;
        forwarded_http.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert!(!origin_allowed(&forwarded_http, &secure));
        assert!(origin_allowed(&http, &plain));
    }

    #[test]
    fn configured_origins_replace_the_default() {
        let config = Config {
            allowed_origins: vec!["https://chat.example.com".to_owned()],
            ..Config::default()
        };
        assert!(origin_allowed(
            &headers(Some("https://chat.example.com"), "10.0.0.1:8000"),
            &config
        ));
        assert!(!origin_allowed(
            &headers(Some("http://10.0.0.1:8000"), "10.0.0.1:8000"),
            &config
        ));
    }
}
