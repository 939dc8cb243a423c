//! The cached token table on the request path: token value → checksum (no I/O) →
//! SHA-256 → moka cache → store on a miss.
//!
//! - A cached entry is at most `store.cache_ttl` old (moka's time to live), which bounds
//!   how stale it can be, e.g. if the token was revoked by another process and the
//!   revocation log has not been read yet.
//! - Unknown, revoked and expired tokens are cached in a second, negative cache for
//!   `store.negative_cache_ttl`, so a flood of the same bad token cannot reach the store;
//!   random tokens fail the keyed checksum and never get past it.
//! - Concurrent misses for one token are coalesced into one store query.
//! - Expiry is checked against the clock on every hit, so a token is refused from the
//!   second it expires, whatever the cache holds.
//! - Revocation through authgate takes effect at once: one token is evicted
//!   ([`TokenTable::evict`]); a family, a client or a user is recorded in a small
//!   revocation set that every hit on an entry loaded before it consults
//!   ([`TokenTable::evict_family`]). Nothing scans the cache.
//!
//! Memory: an entry is moka's bookkeeping, a 16-byte key and a 32-byte [`CachedToken`].
//! What a token allows — client, subject, scope, bound resources — is a [`Grant`]
//! shared by every cached token with the same one (a client's `client_credentials`
//! tokens, a user's tokens of one application), interned on the miss path.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::config::StoreConfig;
use crate::oauth::Clock;
use crate::scope::Scope;
use crate::store::{Revocation, Store, StoreError, TokenKind};
use crate::token::{self, Codec, Kind, TokenHash};

/// What a token allows, and to whom. Every cached token with the same client, subject,
/// scope and bound resources points to one `Grant`.
#[derive(Debug)]
pub struct Grant {
    pub client_id: String,
    pub subject: Option<String>,
    pub scope: Scope,
    /// The scope as stored (for identity headers).
    pub scope_text: String,
    /// Bound resource ids and names.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

// Equal texts parse to equal scopes: `scope` needs no comparing.
impl PartialEq for Grant {
    fn eq(&self, other: &Grant) -> bool {
        self.client_id == other.client_id
            && self.subject == other.subject
            && self.scope_text == other.scope_text
            && self.extra == other.extra
    }
}

impl Eq for Grant {}

impl Hash for Grant {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.client_id.hash(h);
        self.subject.hash(h);
        self.scope_text.hash(h);
        // Grants that differ only in their bound resources (one per HubRise location)
        // must not share a hash bucket.
        for (k, v) in &self.extra {
            k.hash(h);
            match v {
                serde_json::Value::String(s) => s.hash(h),
                other => other.to_string().hash(h),
            }
        }
    }
}

/// What the gateway knows about a valid access token: 32 bytes and a shared grant.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub grant: Arc<Grant>,
    /// Unix seconds; `i64::MAX` if the token does not expire.
    expires_at: i64,
    /// [`family_hash`] of the token's family.
    family: u64,
    /// [`TokenTable`]'s revocation generation when the store was read.
    loaded_gen: u64,
}

impl CachedToken {
    /// A token of `grant` that never expires and is in no revoked family (for tests and
    /// benchmarks of the phases after authentication).
    pub fn new(grant: Grant) -> CachedToken {
        CachedToken {
            grant: Arc::new(grant),
            expires_at: i64::MAX,
            family: 0,
            loaded_gen: u64::MAX,
        }
    }

    /// When the token expires (Unix seconds), if it does.
    pub fn expires_at(&self) -> Option<i64> {
        (self.expires_at != i64::MAX).then_some(self.expires_at)
    }
}

/// The 64-bit hash a cached token keeps of its family. Two families with one hash only
/// cost a store read when one of them is revoked; the store's answer is exact.
fn family_hash(family: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    family.hash(&mut h);
    h.finish()
}

/// The cache key: the first 128 bits of the token's SHA-256. A token whose hash shares
/// them with a cached token's would take a 2^128 search, after passing the keyed
/// checksum.
fn cache_key(hash: &TokenHash) -> u128 {
    let mut k = [0u8; 16];
    k.copy_from_slice(&hash.0[..16]);
    u128::from_le_bytes(k)
}

/// One grant per distinct content, shared by the tokens that carry it.
#[derive(Default)]
struct Grants {
    inner: Mutex<Interned>,
}

#[derive(Default)]
struct Interned {
    set: HashSet<Shared>,
    /// Drop grants no token holds any more once the set reaches this size.
    prune_at: usize,
}

struct Shared(Arc<Grant>);

impl Borrow<Grant> for Shared {
    fn borrow(&self) -> &Grant {
        &self.0
    }
}

impl PartialEq for Shared {
    fn eq(&self, other: &Shared) -> bool {
        *self.0 == *other.0
    }
}

impl Eq for Shared {}

impl Hash for Shared {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h)
    }
}

/// Grants kept at least, whatever holds them.
const MIN_PRUNE_AT: usize = 1024;

impl Grants {
    fn intern(&self, grant: Grant) -> Arc<Grant> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = inner.set.get(&grant) {
            return shared.0.clone();
        }
        if inner.set.len() >= inner.prune_at {
            // Amortised: the set at least doubles between two prunes.
            inner.set.retain(|s| Arc::strong_count(&s.0) > 1);
            inner.prune_at = (inner.set.len() * 2).max(MIN_PRUNE_AT);
        }
        let grant = Arc::new(grant);
        inner.set.insert(Shared(grant.clone()));
        grant
    }

    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set
            .len()
    }
}

/// Tokens, families, clients and users revoked in the last `2 × cache_ttl`, each with
/// the generation of its latest revocation. A cached token loaded at an earlier
/// generation that one of them covers is stale. (Evicting a token is not enough: moka
/// inserts a load's result after it completes, so a load that read the row before the
/// revocation could insert it after the eviction.)
#[derive(Default)]
struct Revoked {
    tokens: HashMap<u128, u64>,
    families: HashMap<u64, u64>,
    clients: HashMap<String, u64>,
    subjects: HashMap<String, u64>,
    /// In revocation order, for pruning.
    order: VecDeque<(Instant, Group, u64)>,
}

enum Group {
    Token(u128),
    Family(u64),
    Client(String),
    Subject(String),
}

impl Revoked {
    fn covers(&self, key: u128, t: &CachedToken) -> bool {
        let after = |g: Option<&u64>| g.is_some_and(|&gen| gen > t.loaded_gen);
        after(self.tokens.get(&key))
            || after(self.families.get(&t.family))
            || after(self.clients.get(t.grant.client_id.as_str()))
            || t.grant
                .subject
                .as_deref()
                .is_some_and(|s| after(self.subjects.get(s)))
    }

    /// Forgets revocations older than `keep`: every entry loaded before them has
    /// expired from the cache.
    fn prune(&mut self, now: Instant, keep: Duration) {
        while let Some((at, _, _)) = self.order.front() {
            if now.saturating_duration_since(*at) <= keep {
                break;
            }
            let Some((_, group, gen)) = self.order.pop_front() else {
                break;
            };
            fn drop_if<K: Eq + Hash>(m: &mut HashMap<K, u64>, k: &K, gen: u64) {
                if m.get(k) == Some(&gen) {
                    m.remove(k);
                }
            }
            match &group {
                Group::Token(k) => drop_if(&mut self.tokens, k, gen),
                Group::Family(f) => drop_if(&mut self.families, f, gen),
                Group::Client(c) => drop_if(&mut self.clients, c, gen),
                Group::Subject(s) => drop_if(&mut self.subjects, s, gen),
            }
        }
    }
}

/// Why a miss produced no valid entry (moka caches only successes).
#[derive(Debug, thiserror::Error)]
enum Miss {
    #[error("unknown token")]
    Unknown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The token table.
pub struct TokenTable {
    valid: Cache<u128, CachedToken>,
    unknown: Cache<u128, ()>,
    grants: Grants,
    revoked: RwLock<Revoked>,
    /// Generation of the latest revocation.
    revoked_gen: AtomicU64,
    store: Arc<dyn Store>,
    codec: Codec,
    clock: Clock,
    cache_ttl: Duration,
    metrics: crate::metrics::CacheMetrics,
}

/// The cache of valid tokens as the table builds it, for any value type (the memory
/// benchmark measures moka's own share with it).
pub fn valid_cache<V: Clone + Send + Sync + 'static>(cfg: &StoreConfig) -> Cache<u128, V> {
    Cache::builder()
        .max_capacity(cfg.cache_capacity)
        .time_to_live(cfg.cache_ttl)
        .build()
}

/// Rows deleted per statement by the expired-row sweep.
const SWEEP_BATCH: u32 = 1000;

impl TokenTable {
    /// A table over `store` with the cache bounds of `cfg`.
    pub fn new(store: Arc<dyn Store>, codec: Codec, clock: Clock, cfg: &StoreConfig) -> TokenTable {
        TokenTable {
            valid: valid_cache(cfg),
            unknown: Cache::builder()
                .max_capacity(cfg.cache_capacity)
                .time_to_live(cfg.negative_cache_ttl)
                .build(),
            grants: Grants::default(),
            revoked: RwLock::new(Revoked::default()),
            revoked_gen: AtomicU64::new(0),
            store,
            codec,
            clock,
            cache_ttl: cfg.cache_ttl,
            metrics: crate::metrics::CacheMetrics::default(),
        }
    }

    /// The cache's metrics (hits, misses, negative hits, size, revocations).
    pub fn metrics(&self) -> &crate::metrics::CacheMetrics {
        &self.metrics
    }

    /// Updates the size gauge (before a scrape), once pending inserts are counted.
    pub async fn refresh_gauges(&self) {
        self.run_pending_tasks().await;
        self.metrics
            .size
            .set(i64::try_from(self.len()).unwrap_or(i64::MAX));
    }

    /// The valid access token `value` names, or `None`. Errors only when the store is
    /// needed and unreachable.
    pub async fn lookup(&self, value: &str) -> Result<Option<CachedToken>, StoreError> {
        if self.codec.verify(value, Kind::Access).is_err() {
            return Ok(None);
        }
        let hash = token::hash(value);
        let key = cache_key(&hash);
        let now = (self.clock)();
        let live = |t: CachedToken| (now < t.expires_at).then_some(t);
        match self.valid.get(&key).await {
            Some(t) if !self.is_revoked(key, &t) => {
                self.metrics.hits.inc();
                return Ok(live(t));
            }
            // A revocation may cover it: read it again.
            Some(_) => self.valid.invalidate(&key).await,
            None if self.unknown.contains_key(&key) => {
                self.metrics.negative_hits.inc();
                return Ok(None);
            }
            None => {}
        }
        self.metrics.misses.inc();
        match self.valid.try_get_with(key, self.load(hash)).await {
            Ok(t) if !self.is_revoked(key, &t) => Ok(live(t)),
            // Loaded by a concurrent miss from before a revocation that may cover it:
            // read the store once more, for this request only.
            Ok(_) => {
                self.valid.invalidate(&key).await;
                match self.load(hash).await {
                    Ok(t) => Ok(live(t)),
                    Err(Miss::Unknown) => Ok(None),
                    Err(Miss::Store(e)) => Err(e),
                }
            }
            Err(e) => match &*e {
                Miss::Unknown => {
                    self.unknown.insert(key, ()).await;
                    Ok(None)
                }
                Miss::Store(e) => Err(StoreError::Unavailable(e.to_string())),
            },
        }
    }

    /// Whether a revocation newer than the entry covers it.
    fn is_revoked(&self, key: u128, t: &CachedToken) -> bool {
        if t.loaded_gen >= self.revoked_gen.load(Ordering::Acquire) {
            return false;
        }
        self.revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .covers(key, t)
    }

    async fn load(&self, hash: TokenHash) -> Result<CachedToken, Miss> {
        // Read before the row: a revocation committed after this is newer than the
        // entry, and its first hit reads the row again (see `is_revoked`).
        let loaded_gen = self.revoked_gen.load(Ordering::Acquire);
        // Bounded, so a revocation kept 2 × cache_ttl outlives every entry loaded
        // before it (see `Revoked::prune`).
        let record = tokio::time::timeout(self.cache_ttl, self.store.get_token(&hash))
            .await
            .map_err(|_| {
                StoreError::Unavailable("token lookup took longer than store.cache_ttl".into())
            })??;
        let now = (self.clock)();
        match record {
            Some(r) if r.kind == TokenKind::Access && r.is_active(now) => {
                let scope = Scope::parse(&r.scope).unwrap_or_else(|_| Scope::empty());
                let grant = self.grants.intern(Grant {
                    client_id: r.client_id,
                    subject: r.subject,
                    scope,
                    scope_text: r.scope,
                    extra: r.extra,
                });
                Ok(CachedToken {
                    grant,
                    expires_at: r.expires_at.unwrap_or(i64::MAX),
                    family: family_hash(&r.family),
                    loaded_gen,
                })
            }
            _ => Err(Miss::Unknown),
        }
    }

    fn count_eviction(&self, kind: &'static str) {
        self.metrics
            .revocations
            .get_or_create(&crate::metrics::KindLabel { kind })
            .inc();
    }

    /// Records a revocation: entries loaded before it that it covers are read again on
    /// their next hit.
    fn revoke_group(&self, group: Group) {
        let mut revoked = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        revoked.prune(now, self.cache_ttl * 2 + Duration::from_secs(1));
        let gen = self.revoked_gen.load(Ordering::Acquire) + 1;
        match &group {
            Group::Token(k) => revoked.tokens.insert(*k, gen),
            Group::Family(f) => revoked.families.insert(*f, gen),
            Group::Client(c) => revoked.clients.insert(c.clone(), gen),
            Group::Subject(s) => revoked.subjects.insert(s.clone(), gen),
        };
        revoked.order.push_back((now, group, gen));
        // Published after the set holds it: a hit that sees the new generation finds it.
        self.revoked_gen.store(gen, Ordering::Release);
    }

    /// Forgets one token (it was revoked).
    pub async fn evict(&self, hash: &TokenHash) {
        self.count_eviction("token");
        let key = cache_key(hash);
        self.revoke_group(Group::Token(key));
        self.valid.invalidate(&key).await;
    }

    /// Forgets every token of a grant (its refresh token was revoked or replayed).
    pub fn evict_family(&self, family: &str) {
        self.count_eviction("family");
        self.revoke_group(Group::Family(family_hash(family)));
    }

    /// Forgets every token of a client (it was removed).
    pub fn evict_client(&self, client_id: &str) {
        self.count_eviction("client");
        self.revoke_group(Group::Client(client_id.to_owned()));
    }

    /// Forgets every token acting for a user (the user was removed).
    pub fn evict_subject(&self, subject: &str) {
        self.count_eviction("subject");
        self.revoke_group(Group::Subject(subject.to_owned()));
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
                                self.valid.invalidate_all();
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

    /// Entries cached now, valid and negative (approximate).
    pub fn len(&self) -> u64 {
        self.valid.entry_count() + self.unknown.entry_count()
    }

    /// Distinct grants the cached tokens share.
    pub fn grants(&self) -> usize {
        self.grants.len()
    }

    /// Applies the caches' pending maintenance (inserts, evictions) now, which moka
    /// otherwise does in the background: then [`TokenTable::len`] is exact.
    pub async fn run_pending_tasks(&self) {
        self.valid.run_pending_tasks().await;
        self.unknown.run_pending_tasks().await;
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
        /// Read the row first, then hold the answer back (a load in flight).
        read_first: std::sync::atomic::AtomicBool,
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
        async fn connection(
            &self,
            k: &str,
        ) -> Result<Option<crate::store::ConnectionRecord>, StoreError> {
            self.inner.connection(k).await
        }
        async fn renew_connection(
            &self,
            k: &str,
            expected: Option<i64>,
            generation: i64,
            sealed: &crate::store::ConnectionToken,
            record: &TokenRecord,
        ) -> Result<bool, StoreError> {
            self.inner
                .renew_connection(k, expected, generation, sealed, record)
                .await
        }
        async fn reseal_connection(
            &self,
            k: &str,
            generation: i64,
            sealed: &crate::store::ConnectionToken,
        ) -> Result<bool, StoreError> {
            self.inner.reseal_connection(k, generation, sealed).await
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
        async fn subjects_with_tokens(&self) -> Result<Vec<String>, StoreError> {
            self.inner.subjects_with_tokens().await
        }
        async fn spend_nonce(&self, h: &TokenHash, e: i64) -> Result<bool, StoreError> {
            self.inner.spend_nonce(h, e).await
        }
        async fn insert_tokens(&self, t: &[TokenRecord]) -> Result<(), StoreError> {
            self.inner.insert_tokens(t).await
        }
        async fn get_token(&self, h: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
            if self.read_first.load(Ordering::SeqCst) {
                let row = self.inner.get_token(h).await;
                self.gets.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                return row;
            }
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
            check: crate::store::CodeCheck<'_>,
        ) -> Result<crate::store::Redeem, StoreError> {
            self.inner.redeem_code(h, now, check).await
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
            read_first: std::sync::atomic::AtomicBool::new(false),
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

    async fn issue_as(f: &Fixture, client: &str, subject: &str, family: &str) -> String {
        let value = f.codec.mint(Kind::Access).expose().to_owned();
        let record = TokenRecord {
            hash: token::hash(&value),
            kind: TokenKind::Access,
            client_id: client.into(),
            subject: Some(subject.into()),
            scope: "links.r".into(),
            family: family.into(),
            parent: None,
            extra: serde_json::Map::new(),
            issued_at: 0,
            expires_at: None,
            revoked_at: None,
            used_at: None,
        };
        f.store.insert_tokens(&[record]).await.unwrap();
        value
    }

    #[tokio::test]
    async fn a_token_revoked_while_its_row_is_being_read_is_not_served_afterwards() {
        let f = fixture().await;
        let now = f.now.load(Ordering::SeqCst);
        let token = issue(&f, None).await;
        let hash = token::hash(&token);
        f.store.read_first.store(true, Ordering::SeqCst);
        let table = f.table.clone();
        let value = token.clone();
        let in_flight = tokio::spawn(async move { table.lookup(&value).await.unwrap() });
        // The row has been read as valid; the load has not finished.
        while f.store.gets.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        f.store.revoke_token(&hash, now).await.unwrap();
        f.table.evict(&hash).await;
        // The request already in flight may still pass (it started before the
        // revocation); every one after the eviction must not.
        let _ = in_flight.await.unwrap();
        f.store.read_first.store(false, Ordering::SeqCst);
        for _ in 0..3 {
            assert!(f.table.lookup(&token).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn group_revocations_cover_exactly_the_tokens_cached_before_them() {
        let f = fixture().await;
        let now = f.now.load(Ordering::SeqCst);
        let a1 = issue_as(&f, "a", "alice", "fa1").await;
        let a2 = issue_as(&f, "a", "bob", "fa2").await;
        let b1 = issue_as(&f, "b", "alice", "fb1").await;
        let b2 = issue_as(&f, "b", "carol", "fb2").await;
        for t in [&a1, &a2, &b1, &b2] {
            assert!(f.table.lookup(t).await.unwrap().is_some());
        }
        let reads = f.store.gets.load(Ordering::SeqCst);

        // A family: only its token goes, and only it is read again.
        f.store.revoke_family("fa2", now).await.unwrap();
        f.table.evict_family("fa2");
        assert!(f.table.lookup(&a2).await.unwrap().is_none());
        for t in [&a1, &b1, &b2] {
            assert!(f.table.lookup(t).await.unwrap().is_some());
        }
        assert_eq!(f.store.gets.load(Ordering::SeqCst), reads + 1);

        // A user: alice's tokens of both clients go, carol's stays.
        f.store.delete_user("alice", now).await.unwrap();
        f.table.evict_subject("alice");
        assert!(f.table.lookup(&a1).await.unwrap().is_none());
        assert!(f.table.lookup(&b1).await.unwrap().is_none());
        assert!(f.table.lookup(&b2).await.unwrap().is_some());

        // A client: its tokens go; a token it is issued afterwards (the client added
        // again under the same id) is valid.
        f.store.delete_client("b", now).await.unwrap();
        f.table.evict_client("b");
        assert!(f.table.lookup(&b2).await.unwrap().is_none());
        let again = issue_as(&f, "b", "carol", "fb3").await;
        assert!(f.table.lookup(&again).await.unwrap().is_some());
        assert!(f.table.lookup(&again).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn tokens_of_one_grant_share_it_and_unused_grants_are_dropped() {
        let f = fixture().await;
        let one = issue_as(&f, "a", "alice", "f1").await;
        let two = issue_as(&f, "a", "alice", "f2").await;
        let other = issue_as(&f, "a", "bob", "f3").await;
        let g1 = f.table.lookup(&one).await.unwrap().unwrap().grant;
        let g2 = f.table.lookup(&two).await.unwrap().unwrap().grant;
        let g3 = f.table.lookup(&other).await.unwrap().unwrap().grant;
        assert!(Arc::ptr_eq(&g1, &g2));
        assert!(!Arc::ptr_eq(&g1, &g3));
        assert_eq!(f.table.grants(), 2);

        // Grants no cached token holds are pruned as the set grows.
        drop((g1, g2, g3));
        f.table.valid.invalidate_all();
        f.table.run_pending_tasks().await;
        for i in 0..MIN_PRUNE_AT + 1 {
            let t = issue_as(&f, "a", &format!("user-{i}"), "f").await;
            f.table.lookup(&t).await.unwrap().unwrap();
            f.table.evict(&token::hash(&t)).await;
            f.table.run_pending_tasks().await;
        }
        assert!(
            f.table.grants() < MIN_PRUNE_AT,
            "{} grants kept",
            f.table.grants()
        );
    }

    #[test]
    fn revocations_are_forgotten_once_older_than_what_the_cache_keeps() {
        let mut r = Revoked::default();
        let t0 = Instant::now();
        let keep = Duration::from_secs(61);
        r.families.insert(7, 1);
        r.order.push_back((t0, Group::Family(7), 1));
        r.clients.insert("c".into(), 2);
        r.order
            .push_back((t0 + Duration::from_secs(30), Group::Client("c".into()), 2));
        // Revoked again later: the earlier record must not drop the later one.
        r.families.insert(7, 3);
        r.order
            .push_back((t0 + Duration::from_secs(40), Group::Family(7), 3));

        r.prune(t0 + Duration::from_secs(61), keep);
        assert_eq!(r.order.len(), 3);
        r.prune(t0 + Duration::from_secs(62), keep);
        assert_eq!(r.families.get(&7), Some(&3));
        assert_eq!(r.order.len(), 2);
        r.prune(t0 + Duration::from_secs(92), keep);
        assert!(r.clients.is_empty());
        r.prune(t0 + Duration::from_secs(102), keep);
        assert!(r.families.is_empty() && r.order.is_empty());
    }
}
