//! A [`Store`] wrapper that times every operation and counts failures
//! (`authgate_store_query_duration_seconds{op}`, `authgate_store_errors_total{op}`).
//! `Conflict` (a record exists already) is an answer, not a failure, and is not counted.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::*;
use crate::metrics::{OpLabel, StoreMetrics};

/// The wrapper.
pub struct Instrumented {
    inner: Arc<dyn Store>,
    metrics: StoreMetrics,
}

impl Instrumented {
    /// Wraps `inner`, recording into `metrics`.
    pub fn wrap(inner: Arc<dyn Store>, metrics: StoreMetrics) -> Arc<dyn Store> {
        Arc::new(Instrumented { inner, metrics })
    }

    fn record<T>(&self, op: &'static str, started: Instant, result: &Result<T, StoreError>) {
        let label = OpLabel { op };
        self.metrics
            .latency
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        if matches!(result, Err(e) if !matches!(e, StoreError::Conflict(_))) {
            self.metrics.errors.get_or_create(&label).inc();
        }
    }
}

/// Implements each async method by timing the inner store's.
macro_rules! timed {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        impl Store for Instrumented {
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                    let started = Instant::now();
                    let result = self.inner.$name($($arg),*).await;
                    self.record(stringify!($name), started, &result);
                    result
                }
            )*

            fn revocation_feed(&self) -> Option<Arc<tokio::sync::Notify>> {
                self.inner.revocation_feed()
            }
        }
    };
}

timed! {
    ping() -> ();
    token_key() -> SecretKey;
    insert_client(client: &ClientRecord) -> ();
    get_client(id: &str) -> Option<ClientRecord>;
    list_clients() -> Vec<ClientRecord>;
    set_client_secret(id: &str, secret_hash: &str) -> bool;
    delete_client(id: &str, now: i64) -> bool;
    connection(key: &str) -> Option<ConnectionRecord>;
    renew_connection(
        key: &str,
        expected: Option<i64>,
        generation: i64,
        sealed: &ConnectionToken,
        record: &TokenRecord
    ) -> bool;
    reseal_connection(key: &str, generation: i64, sealed: &ConnectionToken) -> bool;
    regrant_token(
        hash: &TokenHash,
        scope: &str,
        extra: &serde_json::Map<String, serde_json::Value>,
        family: &str,
        now: i64
    ) -> ();
    clients_with_tokens() -> Vec<String>;
    subjects_with_tokens() -> Vec<String>;
    spend_nonce(hash: &TokenHash, expires_at: i64) -> bool;
    insert_tokens(tokens: &[TokenRecord]) -> ();
    get_token(hash: &TokenHash) -> Option<TokenRecord>;
    revoke_token(hash: &TokenHash, now: i64) -> Option<TokenRecord>;
    revoke_family(family: &str, now: i64) -> u64;
    rotate_refresh(old: &TokenHash, new: &[TokenRecord], keep_old: bool, now: i64) -> Rotation;
    insert_user(user: &UserRecord) -> ();
    get_user(name: &str) -> Option<UserRecord>;
    list_users() -> Vec<UserRecord>;
    set_user_password(name: &str, password_hash: &str) -> bool;
    delete_user(name: &str, now: i64) -> bool;
    insert_code(code: &CodeRecord) -> ();
    redeem_code(hash: &TokenHash, now: i64, check: CodeCheck<'_>) -> Redeem;
    code_replayed(hash: &TokenHash) -> bool;
    revocations_since(seq: Option<i64>) -> (i64, Vec<Revocation>);
    sweep(before: i64, log_before: i64, batch: u32) -> Option<u64>;
    list_tokens(client_id: Option<&str>, limit: u32) -> Vec<TokenRecord>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn operations_are_timed_and_failures_counted() {
        let metrics = StoreMetrics::default();
        let (inner, _dir) = super::super::tests::sqlite().await;
        let store = Instrumented::wrap(inner, metrics.clone());
        store.ping().await.unwrap();
        assert!(store.get_client("nobody").await.unwrap().is_none());
        let metrics = crate::metrics::Metrics {
            store: metrics,
            ..Default::default()
        };
        let text = crate::metrics::Metrics::render(&metrics.registry());
        assert!(text.contains(r#"authgate_store_query_duration_seconds_count{op="ping"} 1"#));
        assert!(text.contains(r#"authgate_store_query_duration_seconds_count{op="get_client"} 1"#));
        assert!(!text.contains(r#"authgate_store_errors_total{op="ping"}"#));
    }
}
