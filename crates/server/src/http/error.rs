use http::StatusCode;
use whisper_auth::AuthError;

use super::{Response, json, respond};
use crate::CatalogError;

/// Everything a handler can fail with, mapped to a response in
/// [`HttpError::into_response`] and nowhere else.
#[derive(Debug)]
pub(crate) enum HttpError {
    NotFound,
    MethodNotAllowed,
    /// Not logged in, on an API route.
    Unauthorized,
    Forbidden(&'static str),
    BadRequest(&'static str),
    PayloadTooLarge,
    /// The user already has as many WebSockets open as allowed.
    TooManyConnections,
    /// The database or channel layer failed; the detail is logged, not shown.
    Internal(String),
    /// A page template did not render (a bug in `web/templates`).
    Template(minijinja::Error),
}

impl HttpError {
    pub fn into_response(self) -> Response {
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
            HttpError::BadRequest(why) => respond(
                StatusCode::BAD_REQUEST,
                text,
                format!("Bad request: {why}\n"),
            ),
            HttpError::PayloadTooLarge => respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                text,
                "Request body too large\n",
            ),
            HttpError::TooManyConnections => respond(
                StatusCode::TOO_MANY_REQUESTS,
                text,
                "Too many open connections for this user\n",
            ),
            HttpError::Template(error) => {
                tracing::error!(%error, "page template failed");
                respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    text,
                    "Internal server error\n",
                )
            }
            HttpError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    text,
                    "Internal server error\n",
                )
            }
        }
    }
}

impl From<minijinja::Error> for HttpError {
    fn from(error: minijinja::Error) -> Self {
        HttpError::Template(error)
    }
}

impl From<AuthError> for HttpError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::NoSuchUser => HttpError::NotFound,
            other => HttpError::Internal(other.to_string()),
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
            CatalogError::Storage(_) => HttpError::Internal(error.to_string()),
        }
    }
}
