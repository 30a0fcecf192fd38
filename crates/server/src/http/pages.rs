//! The HTML pages: the chat page and the account forms.

use http::{HeaderValue, StatusCode, header};
use minijinja::{Value, context};
use whisper_auth::{AuthError, NewUser, SessionKey, User};

use super::cookies::{
    self, SESSION_COOKIE, clear_session_cookie, set_csrf_cookie, set_session_cookie,
};
use super::{HttpError, Request, Response, cookie, current_user, redirect, respond, templates};
use crate::state::AppState;

const HTML: &str = "text/html; charset=utf-8";

/// A page that holds a form: renders the template with the request's CSRF
/// token added to `context`, setting the cookie when the browser had none
/// yet.
fn form_page(
    state_secure: bool,
    request: &Request,
    status: StatusCode,
    template: &str,
    context: Value,
) -> Result<Response, HttpError> {
    let (token, is_new) = cookies::csrf_token(&request.head.headers)?;
    let page = templates::render(
        template,
        context! { csrf_token => token.as_str(), ..context },
    )?;
    let mut response = respond(status, HTML, page);
    // Pages carry a per-user token: never cache them.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if is_new {
        set_csrf_cookie(&mut response, &token, state_secure);
    }
    Ok(response)
}

/// A page for a logged-in user (it carries the CSRF token for its forms
/// and script).
pub(crate) fn render_page<L>(
    state: &AppState<L>,
    request: &Request,
    template: &str,
    context: Value,
) -> Result<Response, HttpError> {
    form_page(
        state.config.secure_cookies,
        request,
        StatusCode::OK,
        template,
        context,
    )
}

/// `GET /`: the chat page, or a redirect to the login form.
pub(crate) async fn index<L>(
    state: &AppState<L>,
    request: &Request,
) -> Result<Response, HttpError> {
    match current_user(state, &request.head.headers).await? {
        Some(user) => render_page(
            state,
            request,
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

fn login_page(
    state_secure: bool,
    request: &Request,
    status: StatusCode,
    next: &str,
    username: &str,
    error: &str,
) -> Result<Response, HttpError> {
    form_page(
        state_secure,
        request,
        status,
        "login.html",
        context! { next => safe_next(next), username, error },
    )
}

/// `GET /accounts/login/`.
pub(crate) fn login_form<L>(state: &AppState<L>, request: &Request) -> Result<Response, HttpError> {
    let next = request.query("next").unwrap_or_else(|| "/".into());
    login_page(
        state.config.secure_cookies,
        request,
        StatusCode::OK,
        &next,
        "",
        "",
    )
}

/// `POST /accounts/login/`: on success a fresh session and a redirect to
/// `next`; on failure the form again, saying only that the pair was wrong
/// (never whether the username exists).
pub(crate) async fn login<L>(
    state: &AppState<L>,
    request: &Request,
) -> Result<Response, HttpError> {
    let username = request.field("username");
    let next = request.field("next");
    let secure = state.config.secure_cookies;
    let address = request.remote.ip();
    if let Err(throttled) = state.throttle.check(username, address) {
        let message = format!(
            "Too many failed attempts. Try again in {} seconds.",
            throttled.retry_after_s
        );
        return login_page(
            secure,
            request,
            StatusCode::TOO_MANY_REQUESTS,
            next,
            username,
            &message,
        );
    }
    let Some(user) = state
        .users
        .authenticate(username, request.field("password"))
        .await?
    else {
        state.throttle.record_failure(username, address);
        tracing::info!(%address, "failed login");
        let message = "Please enter a correct username and password.";
        return login_page(secure, request, StatusCode::OK, next, username, message);
    };
    state.throttle.record_success(username);
    start_session(state, request, &user, safe_next(next)).await
}

/// Ends any session the browser had and starts a new one: a fresh key at
/// every login, so a key planted before it (session fixation) is worthless.
async fn start_session<L>(
    state: &AppState<L>,
    request: &Request,
    user: &User,
    next: &str,
) -> Result<Response, HttpError> {
    if let Some(old) = cookie(&request.head.headers, SESSION_COOKIE) {
        state.sessions.delete(&SessionKey::from_client(old)).await?;
    }
    let key = state.sessions.create(user.id).await?;
    let mut response = redirect(next);
    set_session_cookie(&mut response, &key, state.config.secure_cookies);
    tracing::info!(user = %user.username, "logged in");
    Ok(response)
}

fn signup_page<L>(
    state: &AppState<L>,
    request: &Request,
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
        state.config.secure_cookies,
        request,
        status,
        "signup.html",
        context! {
            username => request.field("username"),
            name => request.field("name"),
            email => request.field("email"),
            error,
            closed,
        },
    )
}

/// `GET /accounts/signup/`.
pub(crate) fn signup_form<L>(
    state: &AppState<L>,
    request: &Request,
) -> Result<Response, HttpError> {
    signup_page(state, request, StatusCode::OK, "")
}

/// `POST /accounts/signup/`: creates the account and logs it in.
pub(crate) async fn signup<L>(
    state: &AppState<L>,
    request: &Request,
) -> Result<Response, HttpError> {
    if !state.config.open_signup {
        return signup_page(state, request, StatusCode::FORBIDDEN, "");
    }
    if request.field("password1") != request.field("password2") {
        return signup_page(
            state,
            request,
            StatusCode::OK,
            "The two passwords do not match.",
        );
    }
    let mut new = NewUser::new(request.field("username"), request.field("password1"));
    new.name = request.field("name").trim().to_owned();
    new.email = request.field("email").trim().to_owned();
    match state.users.create(new).await {
        Ok(user) => start_session(state, request, &user, "/").await,
        Err(
            error @ (AuthError::InvalidUsername
            | AuthError::InvalidPassword
            | AuthError::InvalidField(_)
            | AuthError::UsernameTaken),
        ) => {
            let message = capitalize(&error.to_string());
            signup_page(state, request, StatusCode::OK, &message)
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

/// `POST /accounts/logout/`: ends the session (CSRF-checked by the router).
pub(crate) async fn logout<L>(
    state: &AppState<L>,
    request: &Request,
) -> Result<Response, HttpError> {
    if let Some(key) = cookie(&request.head.headers, SESSION_COOKIE) {
        state.sessions.delete(&SessionKey::from_client(key)).await?;
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
