//! Request ids: every request carries one `X-Request-Id`, taken from the client (or the
//! proxy in front) when it sent a sane one, generated otherwise. The id is forwarded
//! upstream, returned on the response, recorded on every log line of the request (the
//! `request` span's `request_id` field) and put in every JSON error body
//! (`"request_id"`), so one id ties together the client's report, authgate's log and the
//! upstream's log.
//!
//! Generated ids are 32 hex digits: a random per-process prefix and a per-thread
//! counter mixed by SplitMix64. They are unique, not secret, and cost no system call.

use std::cell::Cell;
use std::sync::LazyLock;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The header.
pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest accepted incoming id.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    /// The id of the request the current task is answering.
    static CURRENT: HeaderValue;
}

/// The incoming id if it is 1 to 128 characters of `A-Z a-z 0-9 - _ . : / + =`
/// (UUIDs, hex, base64 and the usual tracing formats); otherwise a new one.
pub fn accept_or_generate(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&HEADER)
        .filter(|v| is_acceptable(v.as_bytes()))
        .cloned()
        .unwrap_or_else(generate)
}

fn is_acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
}

static PROCESS: LazyLock<u64> = LazyLock::new(|| {
    let mut b = [0u8; 8];
    // Without OS randomness, ids are still unique within the process.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
});

thread_local! {
    static NEXT: Cell<u64> = Cell::new({
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b)
    });
}

/// A new id.
pub fn generate() -> HeaderValue {
    let n = NEXT.with(|c| {
        let n = c.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        c.set(n);
        n
    });
    let text = format!("{:016x}{:016x}", *PROCESS, splitmix(n));
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs `fut` with `id` as the current request id.
pub async fn scope<F: std::future::Future>(id: HeaderValue, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// The current request id, if the caller runs inside [`scope`].
pub fn current() -> Option<String> {
    CURRENT
        .try_with(|id| id.to_str().ok().map(str::to_owned))
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_others_replaced() {
        let mut h = HeaderMap::new();
        h.insert(
            &HEADER,
            HeaderValue::from_static("3f2c1a9e-7b7e-4c1e-9d2a-0a1b2c3d4e5f"),
        );
        assert_eq!(
            accept_or_generate(&h),
            "3f2c1a9e-7b7e-4c1e-9d2a-0a1b2c3d4e5f"
        );
        for bad in ["a b", "<script>", "x\"y", ""] {
            h.insert(&HEADER, HeaderValue::from_str(bad).unwrap());
            let id = accept_or_generate(&h);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32);
        }
        h.insert(&HEADER, HeaderValue::from_str(&"a".repeat(129)).unwrap());
        assert_eq!(accept_or_generate(&h).len(), 32);
    }

    #[test]
    fn generated_ids_differ() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| generate()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 32 && id.as_bytes().iter().all(u8::is_ascii_hexdigit)));
    }

    #[tokio::test]
    async fn the_current_id_is_scoped_to_the_task() {
        assert_eq!(current(), None);
        let inner = scope(HeaderValue::from_static("abc"), async { current() }).await;
        assert_eq!(inner.as_deref(), Some("abc"));
        assert_eq!(current(), None);
    }
}
