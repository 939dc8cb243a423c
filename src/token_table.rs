//! The cached token table on the request path: token value → checksum (no I/O) →
//! SHA-256 → moka cache → store on a miss.
//!
//! - Entries expire no later than their token, and never later than `store.cache_ttl`
//!   after they were read (which bounds how stale a cached token can be, e.g. if it was
//!   revoked by another process).
//! - Unknown, revoked and expired tokens are cached as `Unknown` for
//!   `store.negative_cache_ttl`, so a flood of the same bad token cannot reach the store;
//!   random tokens fail the keyed checksum and never get past it.
//! - Concurrent misses for one token are coalesced into one store query.
//! - Expiry is checked against the clock on every hit, so a token is refused from the
//!   second it expires, whatever the cache holds.
//! - Revocation through authgate evicts at once ([`TokenTable::evict`],
//!   [`TokenTable::evict_family`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use crate::config::StoreConfig;
use crate::oauth::Clock;
use crate::scope::Scope;
use crate::store::{Revocation, Store, StoreError, TokenKind};
use crate::token::{self, Codec, Kind, TokenHash};

/// What the gateway knows about a valid access token.
#[derive(Debug)]
pub struct CachedToken {
    pub client_id: String,
    pub subject: Option<String>,
    pub scope: Scope,
    /// The scope as stored (for identity headers).
    pub scope_text: String,
    pub expires_at: Option<i64>,
    pub family: String,
    /// Bound resource ids and names.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone)]
enum Entry {
    Valid(Arc<CachedToken>),
    Unknown,
}

struct TokenExpiry {
    clock: Clock,
    ttl: Duration,
    negative: Duration,
}

impl Expiry<TokenHash, Entry> for TokenExpiry {
    fn expire_after_create(&self, _: &TokenHash, value: &Entry, _: Instant) -> Option<Duration> {
        Some(match value {
            Entry::Unknown => self.negative,
            Entry::Valid(t) => match t.expires_at {
                None => self.ttl,
                Some(exp) => {
                    let left = u64::try_from(exp.saturating_sub((self.clock)())).unwrap_or(0);
                    self.ttl.min(Duration::from_secs(left))
                }
            },
        })
    }
}

/// The token table.
pub struct TokenTable {
    cache: Cache<TokenHash, Entry>,
    store: Arc<dyn Store>,
    codec: Codec,
    clock: Clock,
    cache_ttl: Duration,
    /// Revocations applied from the log so far (see `load`).
    evictions: std::sync::atomic::AtomicU64,
    metrics: crate::metrics::CacheMetrics,
}

/// Rows deleted per statement by the expired-row sweep.
const SWEEP_BATCH: u32 = 1000;

impl TokenTable {
    /// A table over `store` with the cache bounds of `cfg`.
    pub fn new(store: Arc<dyn Store>, codec: Codec, clock: Clock, cfg: &StoreConfig) -> TokenTable {
        let cache = Cache::builder()
            .max_capacity(cfg.cache_capacity)
            .expire_after(TokenExpiry {
                clock: clock.clone(),
                ttl: cfg.cache_ttl,
                negative: cfg.negative_cache_ttl,
            })
            .support_invalidation_closures()
            .build();
        TokenTable {
            cache,
            store,
            codec,
            clock,
            cache_ttl: cfg.cache_ttl,
            evictions: std::sync::atomic::AtomicU64::new(0),
            metrics: crate::metrics::CacheMetrics::default(),
        }
    }

    /// The cache's metrics (hits, misses, negative hits, size, revocations).
    pub fn metrics(&self) -> &crate::metrics::CacheMetrics {
        &self.metrics
    }

    /// Updates the size gauge (before a scrape), once pending inserts are counted.
    pub async fn refresh_gauges(&self) {
        self.cache.run_pending_tasks().await;
        self.metrics
            .size
            .set(i64::try_from(self.cache.entry_count()).unwrap_or(i64::MAX));
    }

    /// The valid access token `value` names, or `None`. Errors only when the store is
    /// needed and unreachable.
    pub async fn lookup(&self, value: &str) -> Result<Option<Arc<CachedToken>>, StoreError> {
        if self.codec.verify(value, Kind::Access).is_err() {
            return Ok(None);
        }
        let hash = token::hash(value);
        let loaded = std::sync::atomic::AtomicBool::new(false);
        let load = async {
            loaded.store(true, std::sync::atomic::Ordering::Relaxed);
            self.load(hash).await
        };
        let entry = self
            .cache
            .try_get_with(hash, load)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let counter = match (&entry, loaded.load(std::sync::atomic::Ordering::Relaxed)) {
            (_, true) => &self.metrics.misses,
            (Entry::Valid(_), false) => &self.metrics.hits,
            (Entry::Unknown, false) => &self.metrics.negative_hits,
        };
        counter.inc();
        Ok(match entry {
            Entry::Valid(t) if t.expires_at.is_none_or(|e| (self.clock)() < e) => Some(t),
            _ => None,
        })
    }

    async fn load(&self, hash: TokenHash) -> Result<Entry, StoreError> {
        // A revocation applied while the row was being read may have found nothing to
        // evict yet: read again, so a revoked row is not cached as valid. (The eviction
        // follows the commit, so the second read sees it.)
        let mut record = None;
        for _ in 0..3 {
            let before = self.evictions.load(std::sync::atomic::Ordering::Acquire);
            record = self.store.get_token(&hash).await?;
            if self.evictions.load(std::sync::atomic::Ordering::Acquire) == before {
                break;
            }
        }
        let now = (self.clock)();
        Ok(match record {
            Some(r) if r.kind == TokenKind::Access && r.is_active(now) => {
                let scope = Scope::parse(&r.scope).unwrap_or_else(|_| Scope::empty());
                Entry::Valid(Arc::new(CachedToken {
                    client_id: r.client_id,
                    subject: r.subject,
                    scope,
                    scope_text: r.scope,
                    expires_at: r.expires_at,
                    family: r.family,
                    extra: r.extra,
                }))
            }
            _ => Entry::Unknown,
        })
    }

    fn count_eviction(&self, kind: &'static str) {
        self.evictions
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.metrics
            .revocations
            .get_or_create(&crate::metrics::KindLabel { kind })
            .inc();
    }

    /// Forgets one token (it was revoked).
    pub async fn evict(&self, hash: &TokenHash) {
        self.count_eviction("token");
        self.cache.invalidate(hash).await;
    }

    /// Forgets every token of a grant (its refresh token was revoked or replayed).
    pub fn evict_family(&self, family: &str) {
        self.count_eviction("family");
        let family = family.to_owned();
        if let Err(e) = self
            .cache
            .invalidate_entries_if(move |_, v| matches!(v, Entry::Valid(t) if t.family == family))
        {
            // Only possible if the builder lacked support_invalidation_closures().
            tracing::error!(error = %e, "cannot evict a token family; it expires with cache_ttl");
        }
    }

    /// Forgets every token of a client (it was removed).
    pub fn evict_client(&self, client_id: &str) {
        self.count_eviction("client");
        let client_id = client_id.to_owned();
        if let Err(e) = self.cache.invalidate_entries_if(
            move |_, v| matches!(v, Entry::Valid(t) if t.client_id == client_id),
        ) {
            tracing::error!(error = %e, "cannot evict a client's tokens; they expire with cache_ttl");
        }
    }

    /// Forgets every token acting for a user (the user was removed).
    pub fn evict_subject(&self, subject: &str) {
        self.count_eviction("subject");
        let subject = subject.to_owned();
        if let Err(e) = self.cache.invalidate_entries_if(move |_, v| {
            matches!(v, Entry::Valid(t) if t.subject.as_deref() == Some(subject.as_str()))
        }) {
            tracing::error!(error = %e, "cannot evict a user's tokens; they expire with cache_ttl");
        }
    }

    async fn apply(&self, revocation: &Revocation) {
        match revocation {
            Revocation::Token(h) => self.evict(h).await,
            Revocation::Family(f) => self.evict_family(f),
            Revocation::Client(c) => self.evict_client(c),
            Revocation::Subject(s) => self.evict_subject(s),
        }
    }

    /// Follows the store's revocation log, so revocations made by other processes
    /// sharing the store (`authgate token revoke`, other instances) evict here too. The
    /// log is read every `every`, and at once when the store's revocation feed (NOTIFY
    /// on PostgreSQL) says something was revoked or it reconnected. The log is durable,
    /// so a notification lost during an outage only delays the eviction to the next
    /// read. If the log could not be read for longer than `cache_ttl`, the valid
    /// entries are all dropped once it can be read again (they are re-read from the
    /// store on use).
    /// `start` is where the log stood before anything was cached.
    pub fn watch_revocations(
        self: Arc<Self>,
        every: Duration,
        start: i64,
    ) -> tokio::task::JoinHandle<()> {
        let feed = self.store.revocation_feed();
        tokio::spawn(async move {
            let mut seq = Some(start);
            let mut failing_since: Option<Instant> = None;
            loop {
                match self.store.revocations_since(seq).await {
                    Ok((latest, entries)) => {
                        for r in &entries {
                            self.apply(r).await;
                        }
                        if !entries.is_empty() {
                            tracing::debug!(
                                count = entries.len(),
                                "revocations from the store applied"
                            );
                        }
                        if let Some(since) = failing_since.take() {
                            if since.elapsed() > self.cache_ttl {
                                self.cache.invalidate_all();
                            }
                            tracing::info!(
                                after = ?since.elapsed(),
                                "revocation log readable again; caught up"
                            );
                        }
                        seq = Some(latest);
                    }
                    Err(e) => {
                        if failing_since.is_none() {
                            tracing::warn!(error = %e, "cannot read the revocation log; cached tokens stay valid up to store.cache_ttl");
                            failing_since = Some(Instant::now());
                        }
                    }
                }
                match &feed {
                    Some(feed) => {
                        tokio::select! {
                            _ = feed.notified() => {}
                            _ = tokio::time::sleep(every) => {}
                        }
                    }
                    None => tokio::time::sleep(every).await,
                }
            }
        })
    }

    /// Deletes expired and revoked rows from the store every `every` (on PostgreSQL,
    /// one instance at a time), keeping them `keep` after they stopped being usable,
    /// and revocation log entries `log_retention`.
    pub fn sweep_expired(
        self: Arc<Self>,
        every: Duration,
        keep: Duration,
        log_retention: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let now = (self.clock)();
                let before = now.saturating_sub(keep.as_secs() as i64);
                let log_before = now.saturating_sub(log_retention.as_secs() as i64);
                match self.store.sweep(before, log_before, SWEEP_BATCH).await {
                    Ok(Some(n)) if n > 0 => tracing::info!(rows = n, "expired rows deleted"),
                    Ok(Some(_)) => {}
                    Ok(None) => tracing::debug!("another instance is sweeping"),
                    Err(e) => {
                        tracing::warn!(error = %e, "expired-row sweep failed; retrying next time")
                    }
                }
            }
        })
    }

    /// Entries cached now (approximate).
    pub fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Applies the cache's pending maintenance (inserts, evictions) now, which moka
    /// otherwise does in the background: then [`TokenTable::len`] is exact.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretKey;
    use crate::store::{ClientRecord, Rotation, TokenRecord};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    /// A store that counts token lookups.
    struct Counting {
        inner: Arc<dyn Store>,
        gets: AtomicUsize,
    }

    #[async_trait]
    impl Store for Counting {
        async fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping().await
        }
        async fn token_key(&self) -> Result<SecretKey, StoreError> {
            self.inner.token_key().await
        }
        async fn insert_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
            self.inner.insert_client(c).await
        }
        async fn get_client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
            self.inner.get_client(id).await
        }
        async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
            self.inner.list_clients().await
        }
        async fn set_client_secret(&self, id: &str, h: &str) -> Result<bool, StoreError> {
            self.inner.set_client_secret(id, h).await
        }
        async fn delete_client(&self, id: &str, now: i64) -> Result<bool, StoreError> {
            self.inner.delete_client(id, now).await
        }
        async fn connection_generation(&self, k: &str) -> Result<Option<i64>, StoreError> {
            self.inner.connection_generation(k).await
        }
        async fn record_connection(&self, k: &str) -> Result<(), StoreError> {
            self.inner.record_connection(k).await
        }
        async fn bump_connection(&self, k: &str) -> Result<i64, StoreError> {
            self.inner.bump_connection(k).await
        }
        async fn regrant_token(
            &self,
            h: &TokenHash,
            s: &str,
            e: &serde_json::Map<String, serde_json::Value>,
            f: &str,
            now: i64,
        ) -> Result<(), StoreError> {
            self.inner.regrant_token(h, s, e, f, now).await
        }
        async fn clients_with_tokens(&self) -> Result<Vec<String>, StoreError> {
            self.inner.clients_with_tokens().await
        }
        async fn insert_tokens(&self, t: &[TokenRecord]) -> Result<(), StoreError> {
            self.inner.insert_tokens(t).await
        }
        async fn get_token(&self, h: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            // Slow enough that concurrent misses overlap.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.inner.get_token(h).await
        }
        async fn revoke_token(
            &self,
            h: &TokenHash,
            now: i64,
        ) -> Result<Option<TokenRecord>, StoreError> {
            self.inner.revoke_token(h, now).await
        }
        async fn revoke_family(&self, f: &str, now: i64) -> Result<u64, StoreError> {
            self.inner.revoke_family(f, now).await
        }
        async fn rotate_refresh(
            &self,
            old: &TokenHash,
            new: &[TokenRecord],
            keep: bool,
            now: i64,
        ) -> Result<Rotation, StoreError> {
            self.inner.rotate_refresh(old, new, keep, now).await
        }
        async fn list_tokens(
            &self,
            c: Option<&str>,
            l: u32,
        ) -> Result<Vec<TokenRecord>, StoreError> {
            self.inner.list_tokens(c, l).await
        }
        async fn insert_user(&self, u: &crate::store::UserRecord) -> Result<(), StoreError> {
            self.inner.insert_user(u).await
        }
        async fn get_user(&self, n: &str) -> Result<Option<crate::store::UserRecord>, StoreError> {
            self.inner.get_user(n).await
        }
        async fn list_users(&self) -> Result<Vec<crate::store::UserRecord>, StoreError> {
            self.inner.list_users().await
        }
        async fn set_user_password(&self, n: &str, h: &str) -> Result<bool, StoreError> {
            self.inner.set_user_password(n, h).await
        }
        async fn delete_user(&self, n: &str, now: i64) -> Result<bool, StoreError> {
            self.inner.delete_user(n, now).await
        }
        async fn code_replayed(&self, h: &TokenHash) -> Result<bool, StoreError> {
            self.inner.code_replayed(h).await
        }
        async fn insert_code(&self, c: &crate::store::CodeRecord) -> Result<(), StoreError> {
            self.inner.insert_code(c).await
        }
        async fn redeem_code(
            &self,
            h: &TokenHash,
            now: i64,
        ) -> Result<crate::store::Redeem, StoreError> {
            self.inner.redeem_code(h, now).await
        }
        async fn revocations_since(
            &self,
            seq: Option<i64>,
        ) -> Result<(i64, Vec<crate::store::Revocation>), StoreError> {
            self.inner.revocations_since(seq).await
        }
        async fn sweep(&self, b: i64, l: i64, n: u32) -> Result<Option<u64>, StoreError> {
            self.inner.sweep(b, l, n).await
        }
    }

    struct Fixture {
        table: Arc<TokenTable>,
        store: Arc<Counting>,
        codec: Codec,
        now: Arc<AtomicI64>,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let (inner, dir) = crate::store::tests::sqlite().await;
        let codec = Codec::new(inner.token_key().await.unwrap());
        let store = Arc::new(Counting {
            inner,
            gets: AtomicUsize::new(0),
        });
        let now = Arc::new(AtomicI64::new(1_000_000));
        let clock_now = now.clone();
        let clock: Clock = Arc::new(move || clock_now.load(Ordering::SeqCst));
        let cfg = StoreConfig {
            url: String::new(),
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(3600),
            negative_cache_ttl: Duration::from_secs(3600),
            revocation_poll: Duration::from_secs(1),
            pool: crate::store::PoolOptions::default(),
            sweep_interval: None,
            keep_expired: Duration::from_secs(86400),
        };
        let table = Arc::new(TokenTable::new(store.clone(), codec.clone(), clock, &cfg));
        Fixture {
            table,
            store,
            codec,
            now,
            _dir: dir,
        }
    }

    async fn issue(f: &Fixture, expires_at: Option<i64>) -> String {
        let value = f.codec.mint(Kind::Access).expose().to_owned();
        let record = TokenRecord {
            hash: token::hash(&value),
            kind: TokenKind::Access,
            client_id: "c".into(),
            subject: None,
            scope: "links.r".into(),
            family: "fam".into(),
            parent: None,
            extra: serde_json::Map::new(),
            issued_at: 0,
            expires_at,
            revoked_at: None,
            used_at: None,
        };
        f.store.insert_tokens(&[record]).await.unwrap();
        value
    }

    #[tokio::test]
    async fn a_flood_of_random_tokens_never_reaches_the_store() {
        let f = fixture().await;
        let mut buf = [0u8; 38];
        for i in 0..100_000 {
            crate::token::fill_random(&mut buf);
            let body: String = buf
                .iter()
                .map(|b| (b'a' + b % 26) as char)
                .collect::<String>();
            // Right prefix and length, random body and check: fails the keyed checksum.
            let value = format!("agat_{body}{}", &body[..13]);
            let value = &value[..crate::token::TOKEN_LEN.min(value.len())];
            assert!(f.table.lookup(value).await.unwrap().is_none(), "{i}");
        }
        assert_eq!(f.store.gets.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn unknown_tokens_are_negatively_cached_and_misses_coalesce() {
        let f = fixture().await;
        // Genuine format, never stored: one query, then remembered as unknown.
        let ghost = f.codec.mint(Kind::Access).expose().to_owned();
        for _ in 0..1000 {
            assert!(f.table.lookup(&ghost).await.unwrap().is_none());
        }
        assert_eq!(f.store.gets.load(Ordering::SeqCst), 1);

        let real = issue(&f, None).await;
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let table = f.table.clone();
            let real = real.clone();
            tasks.push(tokio::spawn(async move {
                table.lookup(&real).await.unwrap().is_some()
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(
            f.store.gets.load(Ordering::SeqCst),
            2,
            "50 concurrent misses, one query"
        );
    }

    #[tokio::test]
    async fn expiry_is_exact_to_the_second_and_eviction_is_immediate() {
        let f = fixture().await;
        let start = f.now.load(Ordering::SeqCst);
        let token = issue(&f, Some(start + 60)).await;
        assert!(f.table.lookup(&token).await.unwrap().is_some());
        f.now.store(start + 59, Ordering::SeqCst);
        assert!(f.table.lookup(&token).await.unwrap().is_some());
        f.now.store(start + 60, Ordering::SeqCst);
        assert!(f.table.lookup(&token).await.unwrap().is_none());

        f.now.store(start, Ordering::SeqCst);
        let other = issue(&f, None).await;
        assert!(f.table.lookup(&other).await.unwrap().is_some());
        f.store
            .revoke_token(&token::hash(&other), start)
            .await
            .unwrap();
        // Still cached until evicted…
        assert!(f.table.lookup(&other).await.unwrap().is_some());
        f.table.evict(&token::hash(&other)).await;
        assert!(f.table.lookup(&other).await.unwrap().is_none());

        let fam = issue(&f, None).await;
        assert!(f.table.lookup(&fam).await.unwrap().is_some());
        f.store.revoke_family("fam", start).await.unwrap();
        f.table.evict_family("fam");
        assert!(f.table.lookup(&fam).await.unwrap().is_none());
    }
}
