use crate::AuthError;

/// argon2id with OWASP's second recommended setting: 19 MiB, two passes, one
/// lane. Verification reads the parameters from the stored PHC string, so
/// raising these later keeps old hashes valid.
fn config() -> argon2::Config<'static> {
    argon2::Config::owasp2()
}

/// Hashes a password into a PHC string (`$argon2id$v=19$...`) with a fresh
/// random salt, on the blocking thread pool.
pub async fn hash_password(password: &str) -> Result<String, AuthError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(AuthError::Randomness)?;
        argon2::hash_encoded(password.as_bytes(), &salt, &config()).map_err(AuthError::Hashing)
    })
    .await
    .map_err(AuthError::HashingTask)?
}

/// Checks a password against a stored PHC string, on the blocking thread
/// pool. A malformed stored hash counts as a mismatch, not an error, so a
/// damaged row locks one account rather than failing every login.
pub async fn verify_password(phc: &str, password: &str) -> Result<bool, AuthError> {
    let phc = phc.to_owned();
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        argon2::verify_encoded(&phc, password.as_bytes()).unwrap_or(false)
    })
    .await
    .map_err(AuthError::HashingTask)
}

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
}
