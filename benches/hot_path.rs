//! The per-request authentication hot path: token extraction from the headers, keyed
//! checksum, SHA-256, token-table cache hit, and the scope check for route and method.
//! Target: under 1 µs. Also the pieces measured apart: checksum + hash, scope parsing
//! (done once per token, when it enters the cache), and the CPU part of issuing a
//! token (mint, hash, scope narrowing), without the store write.
//!
//! `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};

use authgate::config::{Access, StoreConfig, TokenHeader};
use authgate::gateway::{authenticate, authorize};
use authgate::scope::Scope;
use authgate::store::{TokenKind, TokenRecord};
use authgate::token::{self, Codec, Kind};
use authgate::token_table::TokenTable;

fn hot_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (table, value) = rt.block_on(async {
        let store = authgate::store::open(&url).await.expect("store");
        let codec = Codec::new(store.token_key().await.expect("key"));
        let value = codec.mint(Kind::Access).expose().to_owned();
        let record = TokenRecord {
            hash: token::hash(&value),
            kind: TokenKind::Access,
            client_id: "bench".into(),
            subject: Some("alice".into()),
            scope: "usage.r,account.r,links.wd".into(),
            family: "f".into(),
            parent: None,
            extra: serde_json::Map::new(),
            issued_at: 0,
            expires_at: None,
            revoked_at: None,
            used_at: None,
        };
        store.insert_tokens(&[record]).await.expect("insert");
        let cfg = StoreConfig {
            url: url.clone(),
            cache_capacity: 1000,
            cache_ttl: Duration::from_secs(3600),
            negative_cache_ttl: Duration::from_secs(5),
            revocation_poll: Duration::from_secs(1),
            pool: authgate::store::PoolOptions::default(),
            sweep_interval: None,
            keep_expired: Duration::from_secs(86400),
        };
        let table = TokenTable::new(store, codec, authgate::oauth::system_clock(), &cfg);
        assert!(
            table.lookup(&value).await.expect("lookup").is_some(),
            "warm"
        );
        (Arc::new(table), value)
    });
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("api.example"));
    headers.insert("accept", HeaderValue::from_static("application/json"));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {value}")).expect("header"),
    );
    let accepted = [TokenHeader::Authorization, TokenHeader::XAccessToken];
    let access = Access::Perimeter {
        resource: "links".into(),
        level: None,
    };

    c.bench_function("authenticate + authorize (cache hit)", |b| {
        b.to_async(&rt).iter(|| {
            let table = table.clone();
            let headers = &headers;
            let access = &access;
            async move {
                let auth = authenticate::authenticate(&table, headers, None, &accepted, false)
                    .await
                    .expect("valid");
                black_box(authorize::authorize(access, &Method::DELETE, auth).expect("allowed"))
            }
        })
    });

    let codec_key = rt.block_on(async {
        let store = authgate::store::open(&url).await.expect("store");
        store.token_key().await.expect("key")
    });
    let codec = Codec::new(codec_key);
    c.bench_function("token checksum + SHA-256", |b| {
        b.iter(|| {
            codec
                .verify(black_box(&value), Kind::Access)
                .expect("valid");
            black_box(token::hash(black_box(&value)))
        })
    });

    let hubrise = "profile,location[orders.write,customer_list.read,catalog.read]";
    c.bench_function("scope parse (HubRise level + 3 rights)", |b| {
        b.iter(|| black_box(Scope::parse(black_box(hubrise)).expect("valid")))
    });

    let allowed = Scope::parse("usage.r,account.r,links.wd,files.rw").expect("valid");
    c.bench_function("issue: narrow scope, mint access token, hash it", |b| {
        b.iter(|| {
            let requested = Scope::parse(black_box("usage.r links.w")).expect("valid");
            let granted = requested.intersect(&allowed);
            let minted = codec.mint(Kind::Access);
            black_box((granted.to_string(), token::hash(minted.expose())))
        })
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
