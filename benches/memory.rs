//! Memory the token table holds per cached token, with 1,000,000 valid access tokens
//! cached (target: at most 256 bytes each).
//!
//! The tokens are stored in SQLite, then each is looked up once through
//! [`TokenTable::lookup`] — checksum, SHA-256, cache miss, store read, cache insert —
//! exactly as the first request carrying it would. A counting allocator gives the
//! live heap bytes before and after; the difference divided by the tokens is the
//! figure (moka's entry, the key, the cached grant). SQLite's own page cache is not
//! in it: SQLite allocates outside Rust's allocator, and it is bounded by its own
//! settings, not by the cache.
//!
//! `cargo bench --bench memory` (about a minute; `MEMORY_TOKENS=100000` for less).
//! Under `cargo test` it runs with 2,000 tokens as a smoke test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use authgate::config::StoreConfig;
use authgate::store::{TokenKind, TokenRecord};
use authgate::token::{self, Codec, Kind};
use authgate::token_table::TokenTable;

/// Live heap bytes.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only the sizes
// are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TARGET_BYTES: f64 = 256.0;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = match std::env::var("MEMORY_TOKENS") {
        Ok(v) => v.parse().expect("MEMORY_TOKENS is a number"),
        Err(_) if full => 1_000_000,
        Err(_) => 2_000,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(measure(n));
}

async fn measure(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("memory.db").display());
    let store = authgate::store::open(&url).await.expect("store");
    let codec = Codec::new(store.token_key().await.expect("key"));

    // Tokens as the token endpoint issues them: a few clients and users, a family each.
    let started = Instant::now();
    let mut values = Vec::with_capacity(n);
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let value = codec.mint(Kind::Access).expose().to_owned();
        batch.push(TokenRecord {
            hash: token::hash(&value),
            kind: TokenKind::Access,
            client_id: format!("client-{}", i % 10),
            subject: Some(format!("user-{}", i % 1000)),
            scope: "items.r items.w account.r".into(),
            family: token::random_id(),
            parent: None,
            extra: serde_json::Map::new(),
            issued_at: 0,
            expires_at: None,
            revoked_at: None,
            used_at: None,
        });
        values.push(value);
        if batch.len() == batch.capacity() || i + 1 == n {
            store.insert_tokens(&batch).await.expect("insert");
            batch.clear();
        }
    }
    drop(batch);
    let stored = started.elapsed();

    let cfg = StoreConfig {
        url: url.clone(),
        cache_capacity: n as u64 * 2,
        cache_ttl: Duration::from_secs(3600),
        negative_cache_ttl: Duration::from_secs(5),
        revocation_poll: Duration::from_secs(1),
        pool: authgate::store::PoolOptions::default(),
        sweep_interval: None,
        keep_expired: Duration::from_secs(86400),
    };
    let table = Arc::new(TokenTable::new(
        store,
        codec,
        authgate::oauth::system_clock(),
        &cfg,
    ));
    // Warm whatever is allocated once (statement cache, pool connections).
    table.lookup(&values[0]).await.expect("lookup");
    table.run_pending_tasks().await;
    let before = LIVE.load(Ordering::Relaxed);

    let started = Instant::now();
    futures_util::stream::iter(values.iter())
        .for_each_concurrent(16, |v| {
            let table = table.clone();
            async move {
                let found = table.lookup(v).await.expect("lookup");
                assert!(found.is_some(), "a stored token was not found");
            }
        })
        .await;
    table.run_pending_tasks().await;
    let looked_up = started.elapsed();
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(table.len(), n as u64, "every token is cached");

    let per_token = (after - before) as f64 / (n - 1) as f64;
    println!(
        "token table: {n} tokens cached, {per_token:.0} bytes each (target ≤ {TARGET_BYTES:.0}); \
         {:.1} MiB in all; stored in {stored:.1?}, looked up in {looked_up:.1?}",
        (after - before) as f64 / (1024.0 * 1024.0),
    );
    if per_token > TARGET_BYTES {
        println!(
            "token table: ABOVE TARGET by {:.0} bytes",
            per_token - TARGET_BYTES
        );
    }
}
