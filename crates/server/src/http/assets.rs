//! The embedded web client: static files and the HTML templates.

use http::{HeaderValue, StatusCode, header};
use rust_embed::RustEmbed;

use super::{HttpError, Request, Response, respond};

/// Everything under `web/`, compiled into the binary so the server is one
/// file to deploy.
#[derive(RustEmbed)]
#[folder = "../../web/"]
struct WebAssets;

/// Serves `/static/<path>` from `web/static/`, with an ETag so browsers
/// revalidate cheaply instead of downloading again.
pub(crate) fn serve_static(request: &Request) -> Result<Response, HttpError> {
    let path = request.head.uri.path().trim_start_matches("/static/");
    if path
        .split('/')
        .any(|part| part.is_empty() || part.starts_with('.'))
    {
        return Err(HttpError::NotFound);
    }
    let file = WebAssets::get(&format!("static/{path}")).ok_or(HttpError::NotFound)?;
    let etag = format!("\"{}\"", hex_prefix(&file.metadata.sha256_hash()));
    let unchanged = request
        .head
        .headers
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

/// Fills `web/templates/<name>`: a line `{{> part}}` becomes the file
/// `web/templates/partials/<part>.html` (what every page shares, such as
/// the head), then every `{{key}}` becomes the HTML-escaped value given
/// for it. Partials come from the embedded files only, and values are
/// filled in one pass after them, so a value that itself contains
/// `{{...}}` is never expanded.
pub(crate) fn render(name: &str, values: &[(&str, &str)]) -> Result<String, HttpError> {
    let page = template_text(&format!("templates/{name}"))?;
    let mut template = String::with_capacity(page.len() + 256);
    for line in page.split_inclusive('\n') {
        match line
            .trim()
            .strip_prefix("{{> ")
            .and_then(|l| l.strip_suffix("}}"))
        {
            Some(part) => {
                template.push_str(&template_text(&format!("templates/partials/{part}.html"))?)
            }
            None => template.push_str(line),
        }
    }
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        let key = &after[..end];
        match values.iter().find(|(k, _)| *k == key) {
            Some((_, value)) => escape_html(value, &mut out),
            None => {
                return Err(HttpError::Internal(format!(
                    "template {name}: no value for {key}"
                )));
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// An embedded template file's text.
fn template_text(path: &str) -> Result<String, HttpError> {
    let file = WebAssets::get(path)
        .ok_or_else(|| HttpError::Internal(format!("missing template {path}")))?;
    String::from_utf8(file.data.into_owned())
        .map_err(|_| HttpError::Internal(format!("template {path} is not UTF-8")))
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape_html(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        let mut out = String::new();
        escape_html(r#"<img src=x onerror="a('b')">&"#, &mut out);
        assert_eq!(
            out,
            "&lt;img src=x onerror=&quot;a(&#x27;b&#x27;)&quot;&gt;&amp;"
        );
    }

    #[test]
    fn every_template_renders_with_its_values() {
        let login = render(
            "login.html",
            &[
                ("csrf_token", "T0K"),
                ("next", "/x"),
                ("username", "<b>"),
                ("error", ""),
            ],
        )
        .expect("login renders");
        assert!(login.contains("T0K") && login.contains("&lt;b&gt;") && !login.contains("{{"));
        let signup = render(
            "signup.html",
            &[
                ("csrf_token", "T"),
                ("username", ""),
                ("name", ""),
                ("email", ""),
                ("error", ""),
                ("form_hidden", ""),
            ],
        )
        .expect("signup renders");
        assert!(!signup.contains("{{"));
        let chat =
            render("chat.html", &[("csrf_token", "T"), ("username", "ann")]).expect("chat renders");
        assert!(chat.contains("/static/chat.js"));
        let admin = render("admin.html", &[("csrf_token", "T"), ("username", "sam")])
            .expect("admin renders");
        for page in [&login, &signup, &chat, &admin] {
            assert!(page.contains(r#"<link rel="stylesheet" href="/static/style.css">"#));
            assert!(!page.contains("{{"));
        }
    }
}
