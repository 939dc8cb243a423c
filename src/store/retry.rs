//! Transient write conflicts are retried, so a revocation (or any write) either commits
//! or its caller is told it failed, never half of each.
//!
//! What counts as transient ([`StoreError::Contended`]): SQLite `BUSY`/`LOCKED` (another
//! connection held the write lock past the busy timeout, or a read snapshot went stale
//! before its write), PostgreSQL deadlocks (`40P01`) and serialization failures
//! (`40001`). Each failed attempt rolled its transaction back, so running the whole
//! transaction again is safe. After [`ATTEMPTS`] the error goes to the caller, which
//! answers 503.

use std::future::Future;
use std::time::Duration;

use super::StoreError;

/// Tries at most (the first included).
pub const ATTEMPTS: u32 = 8;
/// The first pause; it doubles after each attempt (2, 4, … 256 ms: about 0.5 s of
/// pauses in all, plus what each attempt itself waits: on SQLite up to the 5 s busy
/// timeout for the write lock).
const FIRST_PAUSE: Duration = Duration::from_millis(2);

/// Whether `e` is a conflict that a new attempt may not meet.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        // deadlock_detected, serialization_failure
        return matches!(pg.code(), "40P01" | "40001");
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLite's extended result code; the primary code is its low byte: BUSY (5)
        // and LOCKED (6), with their variants (BUSY_SNAPSHOT, LOCKED_SHAREDCACHE, …).
        return db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6));
    }
    false
}

/// Runs `attempt` until it succeeds, fails for good, or has met a conflict
/// [`ATTEMPTS`] times; pauses with jittered exponential backoff in between.
pub(crate) async fn retry<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pause = FIRST_PAUSE;
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(StoreError::Contended(reason)) if tries < ATTEMPTS => {
                tracing::debug!(operation = what, attempt = tries, %reason, "store write conflict; retrying");
                tokio::time::sleep(jitter(pause)).await;
                pause *= 2;
                tries += 1;
            }
            Err(StoreError::Contended(reason)) => {
                tracing::warn!(operation = what, attempts = tries, %reason, "store write conflict persisted; giving up");
                return Err(StoreError::Contended(reason));
            }
            other => return other,
        }
    }
}

/// `pause` scaled by a random factor in [0.5, 1.5), so that writers that collided once
/// do not collide again in step.
fn jitter(pause: Duration) -> Duration {
    let mut byte = [0u8; 1];
    crate::token::fill_random(&mut byte);
    pause.mul_f64(0.5 + f64::from(byte[0]) / 256.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn conflicts_are_retried_and_other_errors_are_not() {
        let calls = AtomicU32::new(0);
        let ok = retry("test", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(StoreError::Contended("busy".into())),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(ok.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let err = retry("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(StoreError::Unavailable("down".into()))
        })
        .await;
        assert!(matches!(err, Err(StoreError::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let err = retry("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(StoreError::Contended("deadlock".into()))
        })
        .await;
        assert!(matches!(err, Err(StoreError::Contended(_))));
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
    }
}
