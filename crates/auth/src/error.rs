use thiserror::Error;

/// What can go wrong with accounts and sessions.
///
/// The validation variants carry messages fit to show the person who typed
/// the input; [`AuthError::Storage`] and [`AuthError::Internal`] are for
/// logs, not for users.
#[derive(Debug, Error)]
pub enum AuthError {
    /// The username is empty, too long, or has characters other than
    /// letters, digits and `@.+-_`.
    #[error("usernames are 1 to 150 letters, digits or @.+-_")]
    InvalidUsername,
    /// The password is shorter than 8 or longer than 1024 characters.
    #[error("passwords are 8 to 1024 characters")]
    InvalidPassword,
    /// The email address does not look like one, or the name is too long.
    #[error("{0}")]
    InvalidField(&'static str),
    /// Another account has this username.
    #[error("that username is taken")]
    UsernameTaken,
    /// No account has this username.
    #[error("no such user")]
    NoSuchUser,
    /// The database failed.
    #[error("storage: {0}")]
    Storage(#[from] sea_orm::DbErr),
    /// Hashing or randomness failed, or a blocking task died.
    #[error("internal: {0}")]
    Internal(String),
}
