//! The HTML pages: the chat page and the account forms.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use minijinja::{Value, context};
use whisper_auth::{AuthError, NewUser, SessionKey, Throttled, User};
use whisper_chat::AccessChange;
use whisper_rooms::ChannelLayer;

use super::cookies::{
    CsrfToken, SESSION_COOKIE, clear_session_cookie, set_csrf_cookie, set_session_cookie,
};
use super::extract::{ClientAddr, CurrentUser, FormFields};
use super::{HttpError, Response, cookie, redirect, respond, templates};
use crate::state::AppState;

const HTML: &str = "text/html; charset=utf-8";

/// A page that holds a form or runs a script that posts: renders the
/// template with the CSRF token added to `context`, setting the cookie
/// when the browser had none yet.
pub(crate) fn form_page<L>(
    state: &AppState<L>,
    csrf: &CsrfToken,
    status: StatusCode,
    template: &str,
    context: Value,
) -> Result<Response, HttpError> {
    let page = templates::render(
        template,
        context! { csrf_token => csrf.value.as_str(), ..context },
    )?;
    let mut response = respond(status, HTML, page);
    // Pages carry a per-user token: never cache them.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if csrf.is_new {
        set_csrf_cookie(&mut response, &csrf.value, state.config.secure_cookies);
    }
    Ok(response)
}

/// `GET /`: the chat page, or a redirect to the login form.
pub(crate) async fn index<L>(
    State(state): State<Arc<AppState<L>>>,
    user: Option<CurrentUser>,
    csrf: CsrfToken,
) -> Result<Response, HttpError> {
    match user {
        Some(CurrentUser(user)) => form_page(
            &state,
            &csrf,
            StatusCode::OK,
            "chat.html",
            context! { username => user.username },
        ),
        None => Ok(redirect("/accounts/login/?next=/")),
    }
}

/// Where to go after login: a path of this site only, never another host
/// (`//evil.example` and `/\evil.example` are hosts to a browser).
fn safe_next(next: &str) -> &str {
    let same_site = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if same_site { next } else { "/" }
}

/// The login form, with what the user typed and why it failed.
fn login_page<L>(
    state: &AppState<L>,
    csrf: &CsrfToken,
    status: StatusCode,
    next: &str,
    username: &str,
    error: &str,
) -> Result<Response, HttpError> {
    form_page(
        state,
        csrf,
        status,
        "login.html",
        context! { next => safe_next(next), username, error },
    )
}

/// A query-string parameter.
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(uri.query()?)
        .ok()?
        .into_iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// `GET /accounts/login/`.
pub(crate) async fn login_form<L>(
    State(state): State<Arc<AppState<L>>>,
    csrf: CsrfToken,
    uri: Uri,
) -> Result<Response, HttpError> {
    let next = query_param(&uri, "next").unwrap_or_else(|| "/".into());
    login_page(&state, &csrf, StatusCode::OK, &next, "", "")
}

/// `POST /accounts/login/`: on success a fresh session and a redirect to
/// `next`; on failure the form again, saying only that the pair was wrong
/// (never whether the username exists).
pub(crate) async fn login<L>(
    State(state): State<Arc<AppState<L>>>,
    Extension(ClientAddr(address)): Extension<ClientAddr>,
    headers: HeaderMap,
    csrf: CsrfToken,
    form: FormFields,
) -> Result<Response, HttpError> {
    let username = form.get("username");
    let next = form.get("next");
    let attempt = match state.throttle.attempt(username, address) {
        Ok(attempt) => attempt,
        Err(throttled) => {
            let message = format!(
                "Too many failed attempts. Try again in {} seconds.",
                throttled.retry_after_s
            );
            let status = StatusCode::TOO_MANY_REQUESTS;
            let page = login_page(&state, &csrf, status, next, username, &message)?;
            return Ok(with_retry_after(page, throttled));
        }
    };
    tokio::time::sleep(attempt.delay).await;
    match state
        .users
        .authenticate(username, form.get("password"))
        .await
    {
        Ok(Some(user)) => {
            state.throttle.succeeded(attempt);
            start_session(&state, &headers, &user, safe_next(next)).await
        }
        Ok(None) => {
            tracing::info!(%address, "failed login");
            let message = "Please enter a correct username and password.";
            login_page(&state, &csrf, StatusCode::OK, next, username, message)
        }
        Err(AuthError::Busy) => {
            state.throttle.not_checked(attempt);
            Err(HttpError::Busy)
        }
        Err(error) => Err(error.into()),
    }
}

/// A refusal page with the `Retry-After` its throttle gives.
fn with_retry_after(mut page: Response, throttled: Throttled) -> Response {
    page.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(throttled.retry_after_s),
    );
    page
}

/// Ends any session the browser had and starts a new one: a fresh key at
/// every login, so a key planted before it (session fixation) is worthless.
async fn start_session<L>(
    state: &AppState<L>,
    headers: &HeaderMap,
    user: &User,
    next: &str,
) -> Result<Response, HttpError> {
    if let Some(old) = cookie(headers, SESSION_COOKIE) {
        state.sessions.delete(&SessionKey::from_client(old)).await?;
    }
    let key = state.sessions.create(user.id).await?;
    let mut response = redirect(next);
    set_session_cookie(&mut response, &key, state.config.secure_cookies);
    tracing::info!(user = %user.username, "logged in");
    Ok(response)
}

/// The signup form, with what the user typed and why it failed; when
/// signup is closed, only a message saying so.
fn signup_page<L>(
    state: &AppState<L>,
    csrf: &CsrfToken,
    form: &FormFields,
    status: StatusCode,
    error: &str,
) -> Result<Response, HttpError> {
    let closed = !state.config.open_signup;
    let error = if closed {
        "Signup is closed on this server."
    } else {
        error
    };
    form_page(
        state,
        csrf,
        status,
        "signup.html",
        context! {
            username => form.get("username"),
            name => form.get("name"),
            email => form.get("email"),
            error,
            closed,
        },
    )
}

/// `GET /accounts/signup/`.
pub(crate) async fn signup_form<L>(
    State(state): State<Arc<AppState<L>>>,
    csrf: CsrfToken,
) -> Result<Response, HttpError> {
    signup_page(&state, &csrf, &FormFields::default(), StatusCode::OK, "")
}

/// `POST /accounts/signup/`: creates the account and logs it in, at most
/// as often per client address as the signup throttle allows.
pub(crate) async fn signup<L>(
    State(state): State<Arc<AppState<L>>>,
    Extension(ClientAddr(address)): Extension<ClientAddr>,
    headers: HeaderMap,
    csrf: CsrfToken,
    form: FormFields,
) -> Result<Response, HttpError> {
    if !state.config.open_signup {
        return signup_page(&state, &csrf, &form, StatusCode::FORBIDDEN, "");
    }
    if form.get("password1") != form.get("password2") {
        let message = "The two passwords do not match.";
        return signup_page(&state, &csrf, &form, StatusCode::OK, message);
    }
    if let Err(throttled) = state.signups.attempt(address) {
        let message = format!(
            "Too many signups from your address. Try again in {} seconds.",
            throttled.retry_after_s
        );
        let status = StatusCode::TOO_MANY_REQUESTS;
        let page = signup_page(&state, &csrf, &form, status, &message)?;
        return Ok(with_retry_after(page, throttled));
    }
    let mut new = NewUser::new(form.get("username"), form.get("password1"));
    new.name = form.get("name").trim().to_owned();
    new.email = form.get("email").trim().to_owned();
    match state.users.create(new).await {
        Ok(user) => start_session(&state, &headers, &user, "/").await,
        Err(
            error @ (AuthError::InvalidUsername
            | AuthError::InvalidPassword
            | AuthError::InvalidField(_)
            | AuthError::UsernameTaken),
        ) => {
            state.signups.give_back(address);
            let message = capitalize(&error.to_string());
            signup_page(&state, &csrf, &form, StatusCode::OK, &message)
        }
        Err(AuthError::Busy) => {
            state.signups.give_back(address);
            Err(HttpError::Busy)
        }
        Err(error) => Err(error.into()),
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect::<String>() + ".")
        .unwrap_or_default()
}

/// `POST /accounts/logout/`: ends the session (CSRF-checked before
/// routing, as every POST).
pub(crate) async fn logout<L: ChannelLayer>(
    State(state): State<Arc<AppState<L>>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    if let Some(key) = cookie(&headers, SESSION_COOKIE) {
        let key = SessionKey::from_client(key);
        let user = state.sessions.user_for(&key).await?;
        state.sessions.delete(&key).await?;
        if let Some(user) = user {
            // The sockets opened with this session close at once.
            state.announce(AccessChange::User(user.id.0)).await;
        }
    }
    let mut response = redirect("/accounts/login/");
    clear_session_cookie(&mut response, state.config.secure_cookies);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next("/rooms?x=1"), "/rooms?x=1");
        for foreign in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "",
            "javascript:alert(1)",
            "/\nx",
        ] {
            assert_eq!(safe_next(foreign), "/", "{foreign:?}");
        }
    }
}
