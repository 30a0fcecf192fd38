//! The bench's users: real accounts, signed up through the signup form as a
//! browser would, each giving a session cookie for its WebSockets.
//!
//! Signing up costs the server one argon2id hash (tens of milliseconds), so
//! the bench creates one user per `--connections-per-user` sockets rather
//! than one per socket, and a few at a time (the server hashes on its
//! blocking pool; more in flight only queue there).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{StreamExt, stream};
use reqwest::{Client, Response, StatusCode};

use crate::connection::Target;
use crate::error::BenchError;
use crate::progress::Progress;

/// Every bench user's password (the server wants at least 8 characters).
const PASSWORD: &str = "whisper-bench-password";
/// Signups in flight at once.
const CONCURRENCY: usize = 4;
/// Signups the server accepts from one client address in an hour.
const SIGNUPS_PER_ADDRESS: usize = 10;

/// `bench-<run>-<n>`: a prefix fresh for each run, so runs against one
/// database never collide.
fn run_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    format!("bench-{:x}", mixed & 0xffff_ffff_ffff)
}

/// Signs up `count` users on `target` and returns, for each, the `Cookie`
/// header its WebSockets send (to any node sharing `target`'s database).
/// A server on loopback is signed up to from 127.0.0.2, 127.0.0.3, ...,
/// [`SIGNUPS_PER_ADDRESS`] users each: it limits signups per client address.
pub async fn sign_up(target: &Target, count: usize) -> Result<Vec<String>, BenchError> {
    let csrf = csrf_token(&http_client(None)?, target).await?;
    let prefix = run_prefix();
    let progress = Progress::bar("signing up users", count);
    let signups = stream::iter(0..count)
        .map(|index| {
            let csrf = &csrf;
            let username = format!("{prefix}-{index}");
            let source = signup_source(target, index);
            async move {
                let client = http_client(source)?;
                sign_up_one(&client, target, csrf, &username).await
            }
        })
        .buffered(CONCURRENCY);
    tokio::pin!(signups);
    let mut cookies = Vec::with_capacity(count);
    while let Some(cookie) = signups.next().await {
        cookies.push(cookie?);
        progress.inc();
    }
    progress.finish(&format!("signed up {count} users ({prefix}-*)"));
    Ok(cookies)
}

/// An HTTP client that follows no redirects, sending from `source` when
/// given.
fn http_client(source: Option<IpAddr>) -> Result<Client, BenchError> {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source)
        .build()
        .map_err(|error| BenchError::Signup(error.to_string()))
}

/// Where the `index`th signup comes from: on a loopback IPv4 server, the
/// `index / SIGNUPS_PER_ADDRESS`th address from 127.0.0.2 on; elsewhere
/// the system's choice.
fn signup_source(target: &Target, index: usize) -> Option<IpAddr> {
    if !target.addr.ip().is_loopback() || !target.addr.is_ipv4() {
        return None;
    }
    let offset = u32::try_from(index / SIGNUPS_PER_ADDRESS).ok()?;
    let address = u32::from(Ipv4Addr::new(127, 0, 0, 2)).checked_add(offset)?;
    Some(IpAddr::V4(Ipv4Addr::from(address)))
}

/// The CSRF token the signup page sets. It is a double-submit token (the
/// cookie must equal the form field), so one serves every signup.
async fn csrf_token(client: &Client, target: &Target) -> Result<String, BenchError> {
    let url = target.url("/accounts/signup/");
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|error| BenchError::Signup(format!("GET {url}: {error}")))?;
    set_cookie(&response, "csrftoken").ok_or_else(|| {
        BenchError::Signup(format!(
            "GET {url} answered {} without a csrftoken cookie",
            response.status()
        ))
    })
}

async fn sign_up_one(
    client: &Client,
    target: &Target,
    csrf: &str,
    username: &str,
) -> Result<String, BenchError> {
    let url = target.url("/accounts/signup/");
    let response = client
        .post(url.clone())
        .header("cookie", format!("csrftoken={csrf}"))
        .form(&[
            ("username", username),
            ("password1", PASSWORD),
            ("password2", PASSWORD),
            ("csrfmiddlewaretoken", csrf),
        ])
        .send()
        .await
        .map_err(|error| BenchError::Signup(format!("POST {url}: {error}")))?;
    let status = response.status();
    match set_cookie(&response, "sessionid") {
        Some(session) if status == StatusCode::FOUND => Ok(format!("sessionid={session}")),
        _ => {
            let hint = if status == StatusCode::FORBIDDEN {
                " (is signup open on the server? --open-signup true)"
            } else {
                ""
            };
            Err(BenchError::Signup(format!(
                "signing up {username} answered {status} without a session{hint}"
            )))
        }
    }
}

/// The value a response's Set-Cookie gives to `name`.
fn set_cookie(response: &Response, name: &str) -> Option<String> {
    response
        .cookies()
        .find(|cookie| cookie.name() == name && !cookie.value().is_empty())
        .map(|cookie| cookie.value().to_owned())
}
