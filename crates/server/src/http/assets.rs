//! The embedded web client: its static files (the templates are read from
//! the same embedded folder by `templates`).

use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use rust_embed::RustEmbed;

use super::{HttpError, Response, respond};

/// Everything under `web/`, compiled into the binary so the server is one
/// file to deploy.
#[derive(RustEmbed)]
#[folder = "../../web/"]
pub(super) struct WebAssets;

/// `GET /static/<path>`: a file of `web/static/`, with an ETag so browsers
/// revalidate cheaply instead of downloading again. The path is taken as
/// sent (not percent-decoded), and no part of it may be empty or start
/// with a dot.
pub(crate) async fn serve_static(uri: Uri, headers: HeaderMap) -> Result<Response, HttpError> {
    let path = uri.path().trim_start_matches("/static/");
    if path
        .split('/')
        .any(|part| part.is_empty() || part.starts_with('.'))
    {
        return Err(HttpError::NotFound);
    }
    let file = WebAssets::get(&format!("static/{path}")).ok_or(HttpError::NotFound)?;
    let etag = format!("\"{}\"", hex_prefix(&file.metadata.sha256_hash()));
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|value| value.as_bytes() == etag.as_bytes());
    let mut response = if unchanged {
        respond(StatusCode::NOT_MODIFIED, content_type(path), Vec::new())
    } else {
        respond(StatusCode::OK, content_type(path), file.data.into_owned())
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}

fn hex_prefix(hash: &[u8]) -> String {
    hash.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
