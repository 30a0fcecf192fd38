//! Cookies: reading them, the session cookie, and the CSRF token.
//!
//! CSRF follows Django's double-submit scheme, which the original client
//! used: a random token in the `csrftoken` cookie (readable by the page's
//! script) must be sent back in the form field `csrfmiddlewaretoken` or the
//! `X-CSRFToken` header. A foreign site can make the browser send the
//! cookie, but cannot read it to put it in the form.

use axum::extract::FromRequestParts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, header};
use subtle::ConstantTimeEq;
use whisper_auth::{SESSION_LIFETIME, SessionKey};

use super::{HttpError, Response};

/// The session cookie's name, as Django's.
pub(crate) const SESSION_COOKIE: &str = "sessionid";
/// The CSRF cookie's name, as Django's.
pub(crate) const CSRF_COOKIE: &str = "csrftoken";

/// The value of a request cookie, from every `Cookie` header of the
/// request; malformed pairs are skipped.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        // Not `to_str`, which refuses anything but visible ASCII: a script
        // may set a UTF-8 cookie, and it must not hide the others.
        .filter_map(|value| std::str::from_utf8(value.as_bytes()).ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Refuses the request unless the submitted token equals the cookie's.
pub(crate) fn check_csrf(headers: &HeaderMap, submitted: Option<&str>) -> Result<(), HttpError> {
    let expected = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    let submitted = submitted.unwrap_or_default();
    let equal: bool = expected.as_bytes().ct_eq(submitted.as_bytes()).into();
    if expected.is_empty() || !equal {
        return Err(HttpError::Forbidden("CSRF verification failed"));
    }
    Ok(())
}

/// The CSRF token a page puts in its forms: the browser's own, or a new
/// one the response must set with [`set_csrf_cookie`] (then `is_new`).
pub(crate) struct CsrfToken {
    pub value: String,
    pub is_new: bool,
}

impl<S: Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match cookie(&parts.headers, CSRF_COOKIE) {
            Some(value) if value.len() >= 32 => Ok(CsrfToken {
                value,
                is_new: false,
            }),
            _ => Ok(CsrfToken {
                value: random_token()?,
                is_new: true,
            }),
        }
    }
}

fn random_token() -> Result<String, HttpError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Sets the CSRF cookie. Not HttpOnly: the page's script reads it to send
/// the `X-CSRFToken` header.
pub(crate) fn set_csrf_cookie(response: &mut Response, token: &str, secure: bool) {
    let cookie = Cookie::build((CSRF_COOKIE, token))
        .path("/")
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(cookie::time::Duration::days(365));
    append(response, &cookie.build());
}

/// Sets the session cookie: HttpOnly, so no script can read it.
pub(crate) fn set_session_cookie(response: &mut Response, key: &SessionKey, secure: bool) {
    let cookie = Cookie::build((SESSION_COOKIE, key.as_str()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(
            SESSION_LIFETIME.as_secs() as i64
        ));
    append(response, &cookie.build());
}

/// Tells the browser to forget its session cookie.
pub(crate) fn clear_session_cookie(response: &mut Response, secure: bool) {
    let cookie = Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(cookie::time::Duration::ZERO);
    append(response, &cookie.build());
}

fn append(response: &mut Response, cookie: &Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}
