use thiserror::Error;

/// What can go wrong with accounts and sessions.
///
/// The validation variants carry messages fit to show the person who typed
/// the input; the others ([`AuthError::Storage`], [`AuthError::Randomness`],
/// [`AuthError::Hashing`], [`AuthError::HashingTask`]) are failures of the
/// machine, for logs, not for users, and keep the error they come from as
/// their source.
#[derive(Debug, Error)]
pub enum AuthError {
    /// The username is empty, too long, has characters other than
    /// letters, digits and `@.+-_`, mixes the letters of several scripts
    /// (`аlice` with a Cyrillic `а`: a name made to pass for another), or
    /// is invisible.
    #[error("usernames are 1 to 150 letters of one alphabet, digits or @.+-_")]
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
    /// Staff status cannot be removed from a superuser: a superuser is
    /// always staff, or it could not reach the admin pages it administers.
    #[error("a superuser is always staff")]
    SuperuserIsStaff,
    /// The database failed.
    #[error("storage: {0}")]
    Storage(#[from] sea_orm::DbErr),
    /// The operating system gave no randomness for a salt or a session key:
    /// nothing secret can be made without it.
    #[error("no randomness from the operating system: {0}")]
    Randomness(#[source] getrandom::Error),
    /// argon2 refused to hash a password (parameters or input out of its
    /// bounds).
    #[error("password hashing failed: {0}")]
    Hashing(#[source] argon2::Error),
    /// Every password-hashing slot stayed taken for
    /// [`HASHING_QUEUE_WAIT`](crate::HASHING_QUEUE_WAIT): too many logins
    /// and signups at once. Nothing was checked; the caller may try again
    /// shortly (a web server answers 503 with `Retry-After`).
    #[error("too many passwords are being checked; try again shortly")]
    Busy,
    /// The blocking-pool task hashing or checking a password panicked or
    /// was cancelled (the runtime shutting down).
    #[error("the password hashing task failed: {0}")]
    HashingTask(#[source] tokio::task::JoinError),
}
