//! The one error type of the HTTP layer, and the one place it becomes a
//! response.
//!
//! Handlers and extractors return `Result<_, HttpError>` and never build an
//! error page themselves, so a status, its body and whether it is logged
//! are decided here for every route alike.

use std::error::Error;
use std::fmt;

use axum::response::IntoResponse;
use http::{HeaderValue, StatusCode, header};
use sea_orm::{ConnAcquireErr, DbErr};
use thiserror::Error;
use whisper_auth::AuthError;

use super::{Response, json, respond};
use crate::CatalogError;

/// Why a superuser's staff status stays, in the words the admin page shows.
pub(crate) const SUPERUSER_IS_STAFF: &str = "A superuser is always staff.";

/// Everything a handler can fail with. The variants a client caused say
/// what to show it; the others keep the failure that caused them, so the
/// log of a 500 names its cause down to the driver's error.
#[derive(Debug, Error)]
pub(crate) enum HttpError {
    /// No route, or no such room or user.
    #[error("not found")]
    NotFound,
    /// The path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Not logged in, on an API route.
    #[error("not logged in")]
    Unauthorized,
    /// Logged in but not allowed, or the request failed a check (CSRF,
    /// Origin) that says nothing more to the client than why.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// A staff member asked the admin API for a change that is not theirs
    /// to make (another's staff flag without being a superuser, their own,
    /// a superuser's; deactivating someone, resetting a password or
    /// creating a user without being a superuser; deactivating
    /// themselves or resetting their own password): 403 with
    /// `{"error": why}`, which the admin page shows as it is.
    #[error("change refused: {0}")]
    ChangeRefused(&'static str),
    /// The request could not be read as what the route takes.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// An account the admin API was asked to create or change failed the
    /// rules every account follows ([`AuthError::InvalidUsername`],
    /// [`AuthError::InvalidPassword`], [`AuthError::InvalidField`]): 400
    /// with the rule in [`AuthError`]'s words, the same the signup form
    /// shows, so the rules are stated once.
    #[error("invalid account")]
    InvalidAccount(#[source] AuthError),
    /// The username asked for is taken, by an account with it or one that
    /// looks like it ([`AuthError::UsernameTaken`]): 409 with
    /// `{"error": why}`, which the admin page shows as it is.
    #[error("username taken")]
    UsernameTaken,
    /// The body is longer than the server reads.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The body did not arrive within `Config::body_read_timeout`.
    #[error("request body not received in time")]
    BodyTimeout,
    /// The user already has as many WebSockets open as allowed.
    #[error("too many open connections for this user")]
    TooManyConnections,
    /// Too many passwords are being checked at once; nothing was checked
    /// for this request ([`AuthError::Busy`]).
    #[error("password hashing is busy")]
    Busy,
    /// No database connection could be had within the pool's acquire
    /// timeout: the node is overloaded (a reconnect storm's handshakes,
    /// say) or the database is down. Either way the request did nothing
    /// and may succeed later: answered 503 with `Retry-After`, so clients
    /// back off and retry, and logged as a warning with its cause.
    #[error("no database connection in time")]
    DatabaseUnavailable(#[source] AuthError),
    /// Users or sessions could not be read or written.
    #[error("accounts")]
    Auth(#[source] AuthError),
    /// The rooms table could not be read or written.
    #[error("rooms catalog")]
    Catalog(#[source] CatalogError),
    /// The moderation record could not be read.
    #[error("moderation record")]
    Record(#[from] whisper_store::StoreError),
    /// A page template did not render (a bug in `web/templates`).
    #[error("template")]
    Template(#[from] minijinja::Error),
    /// The operating system gave no random bytes for a CSRF token.
    #[error("randomness")]
    Random(#[from] getrandom::Error),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let text = "text/plain; charset=utf-8";
        match self {
            HttpError::NotFound => respond(StatusCode::NOT_FOUND, text, "Not found\n"),
            HttpError::MethodNotAllowed => {
                respond(StatusCode::METHOD_NOT_ALLOWED, text, "Method not allowed\n")
            }
            HttpError::Unauthorized => json(
                StatusCode::UNAUTHORIZED,
                &std::collections::BTreeMap::from([("error", "not logged in")]),
            ),
            HttpError::Forbidden(why) => {
                respond(StatusCode::FORBIDDEN, text, format!("Forbidden: {why}\n"))
            }
            HttpError::ChangeRefused(why) => json(
                StatusCode::FORBIDDEN,
                &std::collections::BTreeMap::from([("error", why)]),
            ),
            HttpError::BadRequest(why) => respond(
                StatusCode::BAD_REQUEST,
                text,
                format!("Bad request: {why}\n"),
            ),
            HttpError::InvalidAccount(rule) => respond(
                StatusCode::BAD_REQUEST,
                text,
                format!("Bad request: {rule}\n"),
            ),
            HttpError::UsernameTaken => json(
                StatusCode::CONFLICT,
                &std::collections::BTreeMap::from([(
                    "error",
                    AuthError::UsernameTaken.to_string(),
                )]),
            ),
            HttpError::PayloadTooLarge => respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                text,
                "Request body too large\n",
            ),
            HttpError::BodyTimeout => {
                let mut response = respond(
                    StatusCode::REQUEST_TIMEOUT,
                    text,
                    "Request body not received in time\n",
                );
                // The rest of the body may still come: the connection
                // cannot carry another request, so it ends here.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
            HttpError::TooManyConnections => respond(
                StatusCode::TOO_MANY_REQUESTS,
                text,
                "Too many open connections for this user\n",
            ),
            HttpError::Busy => try_again(text, "Too many logins at once: try again in a second\n"),
            HttpError::DatabaseUnavailable(_) => {
                tracing::warn!(error = %Chain(&self), "request refused");
                try_again(text, "Server busy: try again in a second\n")
            }
            HttpError::Auth(_)
            | HttpError::Catalog(_)
            | HttpError::Record(_)
            | HttpError::Template(_)
            | HttpError::Random(_) => {
                // The client learns nothing of the cause; the log gets all of it.
                tracing::error!(error = %Chain(&self), "request failed");
                respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    text,
                    "Internal server error\n",
                )
            }
        }
    }
}

/// An error and each of its sources, `outer: inner: innermost`, so a log
/// line shows the whole cause whatever the log format.
struct Chain<'a>(&'a dyn Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

/// A 503 with `Retry-After: 1`: nothing was done, and the same request
/// a second later may well succeed.
fn try_again(text: &'static str, body: &'static str) -> Response {
    let mut response = respond(StatusCode::SERVICE_UNAVAILABLE, text, body);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

impl From<AuthError> for HttpError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::NoSuchUser => HttpError::NotFound,
            AuthError::SuperuserIsStaff => HttpError::ChangeRefused(SUPERUSER_IS_STAFF),
            AuthError::Busy => HttpError::Busy,
            AuthError::UsernameTaken => HttpError::UsernameTaken,
            AuthError::InvalidUsername
            | AuthError::InvalidPassword
            | AuthError::InvalidField(_) => HttpError::InvalidAccount(error),
            AuthError::Storage(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)) => {
                HttpError::DatabaseUnavailable(error)
            }
            other => HttpError::Auth(other),
        }
    }
}

impl From<CatalogError> for HttpError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::InvalidTitle => {
                HttpError::BadRequest("room titles are 1 to 255 characters")
            }
            CatalogError::NoSuchRoom(_) => HttpError::NotFound,
            storage @ CatalogError::Storage(_) => HttpError::Catalog(storage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_names_every_cause() {
        let error = HttpError::Catalog(CatalogError::Storage(sea_orm::DbErr::Custom(
            "disk full".into(),
        )));
        let line = Chain(&error).to_string();
        assert!(line.starts_with("rooms catalog: storage: "), "{line}");
        assert!(line.ends_with("disk full"), "{line}");
    }
}
