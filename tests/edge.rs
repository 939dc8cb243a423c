//! The edge tier: several authgate processes sharing one PostgreSQL database. Tokens
//! issued by one work on all; a revocation on one reaches the others (NOTIFY) well
//! within a second; refresh rotation and reuse detection hold across instances; three
//! instances migrate one fresh database at once; an instance rides out a database
//! outage (fail-static cache, 503s, not ready) and recovers by itself.
//!
//! Each test has a database of its own (dropped afterwards). Without a reachable
//! PostgreSQL the tests say so and skip, except under `CI=true`, where they fail.

mod common;

use std::time::{Duration, Instant};

use authgate::store::scratch::ScratchDb;
use common::flow::{self, hidden_fields, param, Target};
use common::process::Instance;
use common::relay::Relay;
use common::{Upstream, LIMIT};

const CB: &str = "https://app.example/cb";

/// The configuration every instance of a test shares (each binds its own port).
fn tier_config(store_url: &str, upstream: &str, store_extra: &str) -> String {
    let alice = authgate::oauth::password::hash("alice-pw").unwrap();
    format!(
        r#"[server]
https = "127.0.0.1:0"
http = "off"
[tls]
self_signed_if_missing = true
[log]
format = "json"
[store]
url = "{store_url}"
# Polling is the backstop; revocations must arrive by NOTIFY long before it.
revocation_poll = "30s"
{store_extra}
[[client]]
id = "svc"
secret = "svc-secret"
grants = ["client_credentials"]
scopes = "orders.read"
[[client]]
id = "web"
secret = "web-secret"
grants = ["authorization_code", "refresh_token"]
scopes = "orders.read profile"
redirect_uris = ["{CB}"]
refresh_tokens = true
pkce = "optional"
[[user]]
name = "alice"
password_hash = "{alice}"
scopes = "orders.read profile"
[[route]]
path = "/api"
upstream = "{upstream}"
scopes = []
"#
    )
}

/// Starts `n` instances at once (so they migrate the fresh database concurrently).
fn start_tier(config: &str, n: usize) -> Vec<Instance> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| s.spawn(|| Instance::start(config)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

async fn token_for_svc(at: &Instance) -> String {
    let resp = at
        .client()
        .post(at.url("/oauth/token"))
        .basic_auth("svc", Some("svc-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = common::json(resp).await;
    body["access_token"].as_str().unwrap().to_owned()
}

async fn api_status(at: &Instance, token: &str) -> u16 {
    at.client()
        .get(at.url("/api/orders"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// How long until every instance in `on` refuses `token` (polled every 5 ms).
async fn until_refused(on: &[&Instance], token: &str) -> Duration {
    let start = Instant::now();
    for at in on {
        while api_status(at, token).await != 401 {
            assert!(start.elapsed() < LIMIT, "the revocation never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    start.elapsed()
}

async fn post_form(
    at: &Instance,
    path: &str,
    who: (&str, &str),
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let resp = at
        .client()
        .post(at.url(path))
        .basic_auth(who.0, Some(who.1))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_tokens_revocations_and_refresh_rotation() {
    let Some(db) = ScratchDb::create().await else {
        return;
    };
    let up = Upstream::start().await;
    let config = tier_config(db.url(), &up.url(), "");
    let tier = tokio::task::spawn_blocking(move || start_tier(&config, 3))
        .await
        .unwrap();
    let (a, b, c) = (&tier[0], &tier[1], &tier[2]);

    // Issued on A, accepted on B and C.
    let token = token_for_svc(a).await;
    for at in [a, b, c] {
        assert_eq!(api_status(at, &token).await, 200);
    }

    // Revoked on B: A and C (which have it cached) refuse it within a second.
    let (status, _) = post_form(
        b,
        "/oauth/revoke",
        ("svc", "svc-secret"),
        &[("token", &token)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(api_status(b, &token).await, 401, "immediate where revoked");
    let took = until_refused(&[a, c], &token).await;
    eprintln!("revocation on B refused on A and C after {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // The consent page from A, submitted to B (a load balancer may do that), the code
    // exchanged on C, the refresh token used on A, and replayed on B.
    let params = [
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", CB),
        ("scope", "orders.read"),
        ("state", "s1"),
    ];
    let page = a
        .client()
        .get(flow::url(a, "/oauth/authorize", &params))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let cookie = flow::csrf_cookie(&page);
    let mut form = hidden_fields(&page.text().await.unwrap());
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "alice-pw".into()));
    form.push(("decision".into(), "approve".into()));
    let submit = |at: &dyn Target| {
        at.client()
            .post(at.url("/oauth/authorize"))
            .header("cookie", &cookie)
            .form(&form)
            .send()
    };
    let resp = submit(b).await.unwrap();
    assert_eq!(
        resp.status(),
        303,
        "a consent form signed by A is good on B"
    );
    // Spent on B, so refused on C and on A: the store holds what was used.
    for other in [c, a] {
        let again = submit(other).await.unwrap();
        assert_eq!(again.status(), 400, "a form used on B is refused elsewhere");
        assert!(again.headers().get("location").is_none());
    }
    let (_, query) = flow::location(&resp);
    let code = param(&query, "code").unwrap().to_owned();
    let (status, grant) = post_form(
        c,
        "/oauth/token",
        ("web", "web-secret"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(status, 200, "{grant}");
    let first_refresh = grant["refresh_token"].as_str().unwrap().to_owned();
    let (status, rotated) = post_form(
        a,
        "/oauth/token",
        ("web", "web-secret"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
        ],
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_access = rotated["access_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated["refresh_token"].as_str().unwrap(), first_refresh);
    for at in [a, b, c] {
        assert_eq!(api_status(at, &new_access).await, 200);
    }
    let (status, replay) = post_form(
        b,
        "/oauth/token",
        ("web", "web-secret"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(replay["error"], "invalid_grant");
    // The replay revoked the whole grant, everywhere.
    let took = until_refused(&[b, a, c], &new_access).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tokens_issued_concurrently_across_instances_all_work_everywhere() {
    let Some(db) = ScratchDb::create().await else {
        return;
    };
    let up = Upstream::start().await;
    let config = tier_config(db.url(), &up.url(), "");
    let tier = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || start_tier(&config, 2))
            .await
            .unwrap(),
    );
    let issued = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..40)
        .map(|w| {
            let tier = tier.clone();
            let issued = issued.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let token = token_for_svc(&tier[(w + i) % 2]).await;
                    issued.lock().await.push(token);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let issued = issued.lock().await.clone();
    assert_eq!(issued.len(), 1000);
    let distinct: std::collections::HashSet<_> = issued.iter().collect();
    assert_eq!(distinct.len(), 1000);
    // Each checked on the instance that did not issue it (and the other one).
    let checks: Vec<_> = issued
        .chunks(25)
        .map(|chunk| {
            let tier = tier.clone();
            let chunk = chunk.to_vec();
            tokio::spawn(async move {
                for (i, token) in chunk.iter().enumerate() {
                    assert_eq!(api_status(&tier[i % 2], token).await, 200);
                }
            })
        })
        .collect();
    for c in checks {
        c.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_rides_out_a_database_outage_and_recovers_by_itself() {
    let Some(db) = ScratchDb::create().await else {
        return;
    };
    let up = Upstream::start().await;
    // Instance A reaches the database through a relay the test can cut; B directly.
    let (server, name) = db.url().rsplit_once('/').unwrap();
    let pg: std::net::SocketAddr = server
        .rsplit_once('@')
        .map_or(server, |(_, hp)| hp)
        .trim_start_matches("postgres://")
        .parse()
        .expect("the test server URL names 127.0.0.1:port");
    let relay = Relay::start(pg).await;
    let user = server
        .trim_start_matches("postgres://")
        .split_once('@')
        .map_or("postgres", |(u, _)| u);
    let via_relay = format!("postgres://{user}@{}/{name}", relay.addr);
    let timeouts = "connect_timeout = \"1s\"\ncache_ttl = \"60s\"";
    let config_a = tier_config(&via_relay, &up.url(), timeouts);
    let config_b = tier_config(db.url(), &up.url(), timeouts);
    let (a, b) = tokio::task::spawn_blocking(move || {
        (Instance::start(&config_a), Instance::start(&config_b))
    })
    .await
    .unwrap();

    let cached = token_for_svc(&a).await;
    assert_eq!(api_status(&a, &cached).await, 200);
    let uncached = token_for_svc(&b).await;
    let ready = |at: &Instance| {
        let (client, url) = (at.client(), at.url("/readyz"));
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(ready(&a).await, 200);

    relay.cut();
    // Cached: still valid (fail-static, bounded by cache_ttl).
    assert_eq!(api_status(&a, &cached).await, 200);
    // A cache miss: 503, an RFC-shaped body, Retry-After.
    let resp = a
        .client()
        .get(a.url("/api/orders"))
        .bearer_auth(&uncached)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body = common::json(resp).await;
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    // Issuance: 503 temporarily_unavailable.
    let (status, body) = post_form(
        &a,
        "/oauth/token",
        ("svc", "svc-secret"),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(ready(&a).await, 503);
    let body = common::json(a.client().get(a.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(body["status"], "store_unavailable");
    // B, on the database directly, is unaffected.
    assert_eq!(api_status(&b, &uncached).await, 200);

    relay.restore();
    let start = Instant::now();
    while ready(&a).await != 200 {
        assert!(start.elapsed() < LIMIT, "A never became ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "ready again {:?} after the database came back",
        start.elapsed()
    );
    assert_eq!(api_status(&a, &uncached).await, 200, "no token was lost");
    let fresh = token_for_svc(&a).await;
    assert_eq!(api_status(&b, &fresh).await, 200);
    // A re-subscribed (or polls): a revocation on B reaches A's cache.
    let (status, _) = post_form(
        &b,
        "/oauth/revoke",
        ("svc", "svc-secret"),
        &[("token", &cached)],
    )
    .await;
    assert_eq!(status, 200);
    let took = until_refused(&[&a], &cached).await;
    eprintln!("revocation reached the recovered instance after {took:?}");
}

/// Connection reuse across the tier: every instance reads the same key file (shared by
/// configuration, never by the database), so a token sealed by one is handed out again
/// by another, and two instances authorizing one new connection at once agree on one
/// token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_the_key_file_reuse_each_others_connections() {
    let Some(db) = ScratchDb::create().await else {
        return;
    };
    let up = Upstream::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("secrets.keys");
    std::fs::write(
        &key_file,
        "# the tier's keys\nedge-1:ZWRnZSB0aWVyIGtleSwgc2FtZSBldmVyeXdoZXJlISE=\n",
    )
    .unwrap();
    let config = format!(
        "{}\n[oauth]\nsecrets_key_file = {key_file:?}\n\
         [[client]]\nid = \"pos\"\nsecret = \"pos-secret\"\ngrants = [\"authorization_code\"]\n\
         scopes = \"orders.read\"\nredirect_uris = [\"{CB}\"]\nreuse_tokens = true\n",
        tier_config(db.url(), &up.url(), "")
    );
    let tier = tokio::task::spawn_blocking(move || start_tier(&config, 2))
        .await
        .unwrap();
    let (a, b) = (&tier[0], &tier[1]);
    let code_at = |at: &'static str, device: &'static str| {
        let target = if at == "a" { a } else { b };
        async move {
            let params = [
                ("response_type", "code"),
                ("client_id", "pos"),
                ("redirect_uri", CB),
                ("scope", "orders.read"),
                ("device_id", device),
            ];
            let resp = flow::consent(
                target,
                "/oauth/authorize",
                &params,
                "alice",
                "alice-pw",
                "approve",
            )
            .await;
            assert_eq!(resp.status(), 303);
            param(&flow::location(&resp).1, "code").unwrap().to_owned()
        }
    };
    let exchange = |at: &'static str, code: String| {
        let target = if at == "a" { a } else { b };
        async move {
            let (status, v) = post_form(
                target,
                "/oauth/token",
                ("pos", "pos-secret"),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", CB),
                ],
            )
            .await;
            assert_eq!(status, 200, "{v}");
            v["access_token"].as_str().unwrap().to_owned()
        }
    };
    let token = exchange("a", code_at("a", "till").await).await;
    assert_eq!(exchange("b", code_at("b", "till").await).await, token);
    assert_eq!(api_status(b, &token).await, 200);

    // A new connection authorized on both at once: one token for both.
    let (on_a, on_b) = (code_at("a", "kiosk").await, code_at("b", "kiosk").await);
    let (from_a, from_b) = tokio::join!(exchange("a", on_a), exchange("b", on_b));
    assert_eq!(from_a, from_b);
    assert_ne!(from_a, token);
}
