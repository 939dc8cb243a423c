//! User passwords: argon2id PHC strings (`$argon2id$v=19$…`). Hashing and checking are
//! deliberately slow, so callers run them on a blocking thread.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// What a login for an unknown user is checked against, so that it costs as much as a
/// known user's: an argon2id hash made by [`hash`], with the same parameters. It is a
/// constant rather than computed at start because one argon2 run touches 19 MiB,
/// which the allocator keeps: computing it took idle RSS from 15 to 50 MiB.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$j0hxHWUrwFIZv1gkrCvXKQ$IKjEOFmQvshHBD/F6tHpkvZXJI+kiK4jZ/CtiALVNIU";

/// The shortest password a user may be given: by `authgate user add`, `user passwd`,
/// `user hash-password` and `[[user]] password_env` alike.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Checks a new password against [`MIN_PASSWORD_LEN`] (in bytes).
pub fn check_new(password: &str) -> Result<(), String> {
    if password.len() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    Ok(())
}

/// Hashes `password` with a random salt.
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    crate::token::fill_random(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks that `phc` is a PHC string argon2 can verify against.
pub fn check_phc(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string: {e}"))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "{} is not argon2 (use `authgate user hash-password`)",
            parsed.algorithm
        ));
    }
    Ok(())
}

/// Whether `password` matches `phc` (constant-time inside argon2).
pub fn verify(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify(&a, "correct horse"));
        assert!(!verify(&a, "wrong"));
        check_phc(&a).unwrap();
        assert!(check_phc("plaintext").is_err());
        assert!(!verify("plaintext", "plaintext"));
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        // Same algorithm, version and cost parameters as `hash` produces today.
        let real = hash("x").unwrap();
        let params = |phc: &str| phc.rsplitn(3, '$').nth(2).unwrap().to_owned();
        assert_eq!(params(&real), params(DUMMY_HASH));
        assert!(verify(DUMMY_HASH, "authgate-dummy-password"));
    }
}
