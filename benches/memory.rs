//! Memory the token table holds per cached token, with 1,000,000 valid access tokens
//! cached (target: at most 256 bytes each).
//!
//! The tokens are stored in SQLite, then each is looked up once through
//! [`TokenTable::lookup`] — checksum, SHA-256, cache miss, store read, cache insert —
//! exactly as the first request carrying it would. A counting allocator gives the
//! live heap bytes before and after; the difference divided by the tokens is the
//! figure (moka's entry, the key, the cached token, its share of a grant). SQLite's own
//! page cache is not in it: SQLite allocates outside Rust's allocator, and it is bounded
//! by its own settings, not by the cache.
//!
//! Two spreads of tokens over grants (client, user, scope): 10 clients × 1,000 users,
//! so a grant is shared by 1,000 tokens as a client's or a user's successive tokens
//! share it; and every token a grant of its own (a distinct user each), the worst case.
//! Then moka alone, with the table's builder settings, the same key and a value of the
//! same size: the part of the figure that is moka's own bookkeeping.
//!
//! `cargo bench --bench memory` (about three minutes; `MEMORY_TOKENS=100000` for less).
//! Under `cargo test` it runs with 2,000 tokens as a smoke test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use authgate::config::StoreConfig;
use authgate::store::{TokenKind, TokenRecord};
use authgate::token::{self, Codec, Kind};
use authgate::token_table::{CachedToken, TokenTable};

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
    rt.block_on(async {
        let shared = measure(n, 1000.min(n)).await;
        let distinct = measure(n, n).await;
        let floor = moka_alone(n).await;
        println!(
            "token table: moka alone (same settings, 16-byte key, {}-byte value): {floor:.0} bytes per entry",
            std::mem::size_of::<CachedToken>()
        );
        if shared > TARGET_BYTES {
            println!(
                "token table: ABOVE TARGET by {:.0} bytes with shared grants ({:.0} with a grant per token); moka's own part is {floor:.0}",
                shared - TARGET_BYTES,
                distinct - TARGET_BYTES,
            );
        }
    });
}

fn store_config(url: String, n: usize) -> StoreConfig {
    StoreConfig {
        url,
        cache_capacity: n as u64 * 2,
        cache_ttl: Duration::from_secs(3600),
        negative_cache_ttl: Duration::from_secs(5),
        revocation_poll: Duration::from_secs(1),
        pool: authgate::store::PoolOptions::default(),
        sweep_interval: None,
        keep_expired: Duration::from_secs(86400),
    }
}

/// Bytes per cached token with `n` tokens spread over `users` users (and 10 clients).
async fn measure(n: usize, users: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("memory.db").display());
    let store = authgate::store::open(&url).await.expect("store");
    let codec = Codec::new(store.token_key().await.expect("key"));

    // Tokens as the token endpoint issues them: a family each.
    let started = Instant::now();
    let mut values = Vec::with_capacity(n);
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let value = codec.mint(Kind::Access).expose().to_owned();
        batch.push(TokenRecord {
            hash: token::hash(&value),
            kind: TokenKind::Access,
            client_id: format!("client-{}", i % 10),
            subject: Some(format!("user-{}", i % users)),
            scope: "items.r items.w account.r".into(),
            family: token::random_id(),
            parent: None,
            extra: serde_json::Map::new(),
            issued_at: 0,
            expires_at: Some(4_000_000_000),
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

    let table = Arc::new(TokenTable::new(
        store,
        codec,
        authgate::oauth::system_clock(),
        &store_config(url, n),
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
        "token table: {n} tokens cached over {} grants, {per_token:.0} bytes each (target ≤ {TARGET_BYTES:.0}); \
         {:.1} MiB in all; stored in {stored:.1?}, looked up in {looked_up:.1?}",
        table.grants(),
        (after - before) as f64 / (1024.0 * 1024.0),
    );
    per_token
}

/// Bytes per entry of a moka cache built as the table builds its cache of valid tokens
/// ([`authgate::token_table::valid_cache`]),
/// with the same key type and a value of the same size: moka's own share.
async fn moka_alone(n: usize) -> f64 {
    type Value = [u64; 4];
    assert_eq!(
        std::mem::size_of::<Value>(),
        std::mem::size_of::<CachedToken>()
    );
    let cfg = store_config(String::new(), n);
    let before = LIVE.load(Ordering::Relaxed);
    let cache = authgate::token_table::valid_cache::<Value>(&cfg);
    for i in 0..n as u64 {
        let key = u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        cache.insert(key, [i; 4]).await;
    }
    cache.run_pending_tasks().await;
    assert_eq!(cache.entry_count(), n as u64);
    (LIVE.load(Ordering::Relaxed) - before) as f64 / n as f64
}
