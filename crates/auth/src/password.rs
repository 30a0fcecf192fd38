use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::AuthError;

/// argon2id with OWASP's first recommended setting: 46 MiB, one pass, one
/// lane. Verification reads the parameters from the stored PHC string, so
/// changing these keeps old hashes valid.
///
/// Not the 19 MiB, two-pass setting (equally strong by OWASP's measure)
/// because of where the memory goes afterwards: glibc serves a block this
/// large from a fresh mapping only above its mmap threshold, which rises
/// with each such block freed up to 32 MiB. A 19 MiB block thus ends up in
/// the hashing thread's arena and stays there: after a burst of 500
/// logins and signups the server kept 434 MiB. A 46 MiB block is always
/// above that threshold, so its memory goes back to the system when the
/// hash ends.
fn config() -> argon2::Config<'static> {
    argon2::Config::owasp1()
}

/// Most passwords hashed or checked at once: the number of cores, at most
/// four. Each hash holds 46 MiB while it runs, so this bounds the memory a
/// burst of logins can take (at most 184 MiB) instead of letting it grow
/// with tokio's blocking pool (512 threads).
fn hashing_slots() -> usize {
    std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(4)
}

/// Longest a password waits for a hashing slot before the attempt is
/// refused with [`AuthError::Busy`]: a short queue rides out a burst of
/// ordinary logins, a flood is refused instead of queued without end.
pub const HASHING_QUEUE_WAIT: Duration = Duration::from_secs(2);

static HASHING_SLOTS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(hashing_slots())));

/// Runs `work` on the blocking pool once a hashing slot is free. The slot
/// goes with the work, so a caller that gives up (a client that hangs up)
/// does not free it before the hash ends.
async fn hash_in_slot<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    let slot: OwnedSemaphorePermit =
        match tokio::time::timeout(HASHING_QUEUE_WAIT, HASHING_SLOTS.clone().acquire_owned()).await
        {
            Ok(Ok(slot)) => slot,
            // The semaphore is never closed; a timeout is the only refusal.
            Ok(Err(_)) | Err(_) => return Err(AuthError::Busy),
        };
    tokio::task::spawn_blocking(move || {
        let done = work();
        drop(slot);
        done
    })
    .await
    .map_err(AuthError::HashingTask)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$...`) with a fresh
/// random salt, on the blocking thread pool, once a hashing slot is free
/// ([`AuthError::Busy`] after [`HASHING_QUEUE_WAIT`] without one).
pub async fn hash_password(password: &str) -> Result<String, AuthError> {
    let password = password.to_owned();
    hash_in_slot(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(AuthError::Randomness)?;
        argon2::hash_encoded(password.as_bytes(), &salt, &config()).map_err(AuthError::Hashing)
    })
    .await?
}

/// Checks a password against a stored PHC string, on the blocking thread
/// pool, once a hashing slot is free ([`AuthError::Busy`] after
/// [`HASHING_QUEUE_WAIT`] without one). A malformed stored hash counts as a
/// mismatch, not an error, so a damaged row locks one account rather than
/// failing every login.
pub async fn verify_password(phc: &str, password: &str) -> Result<bool, AuthError> {
    let phc = phc.to_owned();
    let password = password.to_owned();
    hash_in_slot(move || argon2::verify_encoded(&phc, password.as_bytes()).unwrap_or(false)).await
}

/// A hash of a random password nobody knows, with the current parameters,
/// checked when a username is unknown so that costs the same as a wrong
/// password (and tells no one which usernames exist).
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=47104,t=1,p=1$QDu2opigQtCmSJL5b/Me8w$BURFmPnU4o7sg9aDXhMLdi2S9sgxv+zj9kwDbNmRi4k";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("hunter2hunter2").await.expect("hash");
        let b = hash_password("hunter2hunter2").await.expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salts differ");
        assert!(verify_password(&a, "hunter2hunter2").await.expect("verify"));
        assert!(!verify_password(&a, "hunter3hunter3").await.expect("verify"));
        assert!(!verify_password("garbage", "x").await.expect("verify"));
    }

    #[tokio::test]
    async fn the_dummy_hash_costs_what_a_real_one_does() {
        let real = hash_password("hunter2hunter2").await.expect("hash");
        let parameters = |phc: &str| phc.split('$').nth(3).map(str::to_owned);
        assert_eq!(parameters(DUMMY_HASH), parameters(&real));
        // If it were malformed, unknown usernames would return faster.
        assert!(argon2::verify_encoded(DUMMY_HASH, b"x").is_ok());
    }
}
