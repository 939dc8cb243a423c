//! Secrets at rest (DESIGN §10): whoever reads the store must not be able to mint or
//! recover tokens. These tests play that reader with the SQLite file of a running
//! HubRise gateway (`config/examples/hubrise.toml`, connection reuse) and sqlx.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::{flow, json, post_form, Gate, Upstream};
use hmac::{Hmac, Mac};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::Row;

const CB: &str = "https://pos.example.com/oauth_callback";
const WHO: (&str, &str) = ("hubrise-pos", "hr-secret");

/// Keyrings (`AUTHGATE_OAUTH__SECRETS_KEYS`): k1 alone, k2 put first, k2 alone.
const K1: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const K2_K1: &str = "k2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=,k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const K2: &str = "k2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

/// The HubRise example on the store at `db` (a file path) with keyring `keys`.
async fn hubrise(up: &Upstream, db: &std::path::Path, keys: &str) -> Gate {
    let store = format!("sqlite://{}", db.display());
    Gate::example(
        "hubrise",
        &[
            ("HUBRISE_CLIENT_SECRET", "hr-secret"),
            ("HUBRISE_DEMO_PASSWORD", "demo-password"),
            ("AUTHGATE_ROUTE__0__UPSTREAM", &up.url()),
            ("AUTHGATE_ROUTE__1__UPSTREAM", &up.url()),
            ("AUTHGATE_STORE__URL", &store),
            ("AUTHGATE_OAUTH__SECRETS_KEYS", keys),
        ],
    )
    .await
}

/// Authorizes the HubRise client for bella's location (with `extra` parameters) and
/// returns the access token of the code.
async fn connect(gate: &Gate, extra: &[(&str, &str)]) -> String {
    let mut params = vec![
        ("redirect_uri", CB),
        ("client_id", "hubrise-pos"),
        ("scope", "location[orders.write]"),
    ];
    params.extend_from_slice(extra);
    let resp = flow::consent(
        gate,
        "/oauth2/v1/authorize",
        &params,
        "bella@example.com",
        "demo-password",
        "approve",
    )
    .await;
    assert_eq!(resp.status(), 303);
    let code = flow::param(&flow::location(&resp).1, "code")
        .unwrap()
        .to_owned();
    let resp = post_form(
        gate,
        "/oauth2/v1/token",
        None,
        &[
            ("code", &code),
            ("client_id", WHO.0),
            ("client_secret", WHO.1),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    json(resp).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The token endpoint's answer to a new authorization of bella's location.
async fn exchange_status(gate: &Gate) -> (u16, serde_json::Value) {
    let params = [
        ("redirect_uri", CB),
        ("client_id", "hubrise-pos"),
        ("scope", "location[orders.write]"),
    ];
    let resp = flow::consent(
        gate,
        "/oauth2/v1/authorize",
        &params,
        "bella@example.com",
        "demo-password",
        "approve",
    )
    .await;
    let code = flow::param(&flow::location(&resp).1, "code")
        .unwrap()
        .to_owned();
    let resp = post_form(
        gate,
        "/oauth2/v1/token",
        None,
        &[
            ("code", &code),
            ("client_id", WHO.0),
            ("client_secret", WHO.1),
        ],
    )
    .await;
    (resp.status().as_u16(), json(resp).await)
}

async fn active(gate: &Gate, token: &str) -> bool {
    let resp = post_form(gate, "/oauth/introspect", Some(WHO), &[("token", token)]).await;
    json(resp).await["active"] == true
}

/// The key of bella's connection to her location: client, user, location and (no)
/// device, separated by NUL.
const BELLA: &str = concat!("hubrise-pos\0", "bella@example.com\0", "3r4s3-1\0");

struct Connection {
    key: String,
    generation: i64,
    token_hash: Option<Vec<u8>>,
    key_id: Option<String>,
    sealed: Option<Vec<u8>>,
}

async fn connection_rows(db: &SqlitePool) -> Vec<Connection> {
    sqlx::query("SELECT key, generation, token_hash, key_id, sealed FROM connections ORDER BY key")
        .fetch_all(db)
        .await
        .unwrap()
        .iter()
        .map(|r| Connection {
            key: r.get("key"),
            generation: r.get("generation"),
            token_hash: r.get("token_hash"),
            key_id: r.get("key_id"),
            sealed: r.get("sealed"),
        })
        .collect()
}

/// Opens a connection row's sealed token with `keys` (`AUTHGATE_OAUTH__SECRETS_KEYS`
/// syntax), binding it to the row `as_row` claims to be.
fn open(
    keys: &str,
    row: &Connection,
    as_row: &Connection,
) -> Result<String, authgate::keyring::OpenError> {
    let ring = authgate::keyring::Keyring::parse(keys).unwrap();
    let hash = authgate::token::TokenHash(as_row.token_hash.clone().unwrap().try_into().unwrap());
    let aad = authgate::oauth::reuse::aad(&as_row.key, as_row.generation, &hash);
    ring.open(
        row.key_id.as_deref().unwrap(),
        row.sealed.as_deref().unwrap(),
        &aad,
    )
    .map(|plain| String::from_utf8(plain.to_vec()).unwrap())
}

/// The store's file, opened read-only: what a stolen copy of it would give.
async fn read_only(gate: &Gate) -> SqlitePool {
    let path = gate.store_url.trim_start_matches("sqlite://");
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(path).read_only(true))
        .await
        .unwrap()
}

/// What authgate before sealed connections did, recomputed from a store's key alone: the
/// reused access token of connection `key` at `generation` was
/// `agat_ + b64(HMAC(key, "derive\0" key "\0" generation)) + check`.
fn derived(store_key: &[u8], key: &str, generation: i64) -> String {
    let mac = |parts: &[&[u8]]| {
        let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(store_key).unwrap();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes()
    };
    let body = mac(&[b"derive\0", format!("{key}\0{generation}").as_bytes()]);
    let mut value = format!("agat_{}", B64.encode(&body[..32]));
    let check = mac(&[value.as_bytes()]);
    value.push_str(&B64.encode(&check[..6]));
    value
}

/// Every value of every column of every table, as bytes.
async fn every_value(db: &SqlitePool) -> Vec<Vec<u8>> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(db)
            .await
            .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info(\"{t}\")"))
            .fetch_all(db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        for c in columns {
            let values: Vec<Option<Vec<u8>>> =
                sqlx::query_scalar(&format!("SELECT CAST(\"{c}\" AS BLOB) FROM \"{t}\""))
                    .fetch_all(db)
                    .await
                    .unwrap();
            out.extend(values.into_iter().flatten());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A reader of the database learns neither the reused token nor anything from which it
/// can be recomputed: not the value, not its random body, and not the old derivation
/// from `settings.token_key` for any generation of any connection. What the row holds
/// opens only with the configured key, and only as that row.
#[tokio::test]
async fn a_copy_of_the_store_does_not_give_the_reused_token() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gate = hubrise(&up, &dir.path().join("store.db"), K1).await;
    let token = connect(&gate, &[]).await;
    assert_eq!(connect(&gate, &[]).await, token, "the connection is reused");
    let till = connect(&gate, &[("device_id", "till-1")]).await;
    assert_ne!(till, token);

    let db = read_only(&gate).await;
    let store_key: Vec<u8> =
        sqlx::query_scalar("SELECT value FROM settings WHERE name = 'token_key'")
            .fetch_one(&db)
            .await
            .unwrap();
    let rows = connection_rows(&db).await;
    assert_eq!(rows.len(), 2, "one connection, one device");
    for row in &rows {
        for g in 0..=row.generation + 3 {
            let guess = derived(&store_key, &row.key, g);
            assert!(
                guess != token && guess != till,
                "recomputed a reused token from settings.token_key (generation {g})"
            );
        }
    }
    let values = every_value(&db).await;
    for t in [&token, &till] {
        let body = B64.decode(&t[5..48]).unwrap();
        assert!(
            !values
                .iter()
                .any(|v| contains(v, t.as_bytes()) || contains(v, &body)),
            "the store holds a reused token"
        );
    }
    // The files on disk, whatever SQLite keeps where, hold it neither.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!contains(&bytes, token.as_bytes()) && !contains(&bytes, till.as_bytes()));
    }

    // With the configured key the rows open, each to its own token and only as itself.
    let (bella, till_row) = (&rows[0], &rows[1]);
    assert_eq!(bella.key, BELLA);
    assert_eq!(bella.key_id.as_deref(), Some("k1"));
    assert_eq!(open(K1, bella, bella).unwrap(), token);
    assert_eq!(open(K1, till_row, till_row).unwrap(), till);
    assert!(open(K1, bella, till_row).is_err(), "rows cannot be swapped");
    let other_key = "k1:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";
    assert!(open(other_key, bella, bella).is_err());
    assert!(open(K2, bella, bella).is_err());
}

/// Key rotation: a token sealed under k1 is still returned once k2 is put first (and is
/// re-sealed under k2, so k1 can then go); with the key it is sealed under removed,
/// reuse is refused clearly rather than a new token issued; without any key the
/// gateway does not start.
#[tokio::test]
async fn rotation_keeps_the_token_and_a_missing_key_is_refused() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("store.db");
    let gate = hubrise(&up, &db_path, K1).await;
    let token = connect(&gate, &[]).await;
    gate.shutdown().await;

    let gate = hubrise(&up, &db_path, K2_K1).await;
    assert_eq!(connect(&gate, &[]).await, token, "k1 still opens its token");
    let rows = connection_rows(&read_only(&gate).await).await;
    assert_eq!(rows[0].key_id.as_deref(), Some("k2"), "re-sealed under k2");
    assert_eq!(open(K2, &rows[0], &rows[0]).unwrap(), token);
    gate.shutdown().await;

    let gate = hubrise(&up, &db_path, K2).await;
    assert_eq!(connect(&gate, &[]).await, token, "k1 has left the keyring");
    gate.shutdown().await;

    // k2 removed: the live token cannot be opened, and no other is handed out.
    let gate = hubrise(&up, &db_path, K1).await;
    let (status, body) = exchange_status(&gate).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body.get("access_token").is_none());
    assert!(
        active(&gate, &token).await,
        "the connection's token is untouched"
    );
    assert_eq!(
        connection_rows(&read_only(&gate).await).await[0].generation,
        0
    );
    gate.shutdown().await;

    // No key at all: the example does not load, and says which key it needs.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config/examples/hubrise.toml")).unwrap();
    let vars = [
        ("HUBRISE_CLIENT_SECRET", "hr-secret"),
        ("HUBRISE_DEMO_PASSWORD", "demo-password"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let e = authgate::config::Config::parse(&text, "hubrise.toml", vars.into_iter())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hubrise.toml: client[0].reuse_tokens:"),
        "{e}"
    );
    assert!(e.contains("AUTHGATE_OAUTH__SECRETS_KEYS"), "{e}");
}

/// A revoked token moves the connection to its next generation, with a new random
/// token; the revoked one never comes back.
#[tokio::test]
async fn revocation_moves_the_connection_to_a_fresh_random_token() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gate = hubrise(&up, &dir.path().join("store.db"), K1).await;
    let first = connect(&gate, &[]).await;
    let resp = post_form(&gate, "/oauth/revoke", Some(WHO), &[("token", &first)]).await;
    assert_eq!(resp.status(), 200);
    let second = connect(&gate, &[]).await;
    assert_ne!(second, first);
    assert!(!active(&gate, &first).await);
    assert!(active(&gate, &second).await);
    assert_eq!(
        connect(&gate, &[]).await,
        second,
        "the new token is reused in turn"
    );
    let rows = connection_rows(&read_only(&gate).await).await;
    assert_eq!(rows[0].generation, 1);
    let hash = authgate::token::hash(&second);
    assert_eq!(rows[0].token_hash.as_deref(), Some(&hash.0[..]));
    assert_eq!(open(K1, &rows[0], &rows[0]).unwrap(), second);
}

/// A connection recorded before tokens were sealed (its token derived from the store's
/// key, computable by any reader of the store): its next authorization revokes that
/// token and hands out a sealed random one.
#[tokio::test]
async fn a_derived_token_from_before_is_revoked_and_replaced() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("store.db");
    let gate = hubrise(&up, &db_path, K1).await;
    let store = gate.store().await;
    let store_key = store.token_key().await.unwrap();
    let old = derived(store_key.expose(), BELLA, 2);
    let family = authgate::token::random_id();
    store
        .insert_tokens(&[authgate::store::TokenRecord {
            hash: authgate::token::hash(&old),
            kind: authgate::store::TokenKind::Access,
            client_id: WHO.0.into(),
            subject: Some("bella@example.com".into()),
            scope: "location[orders.write]".into(),
            family,
            parent: None,
            extra: serde_json::Map::new(),
            issued_at: 0,
            expires_at: None,
            revoked_at: None,
            used_at: None,
        }])
        .await
        .unwrap();
    let writer = SqlitePool::connect(&gate.store_url).await.unwrap();
    sqlx::query("INSERT INTO connections (key, generation) VALUES ($1, 2)")
        .bind(BELLA)
        .execute(&writer)
        .await
        .unwrap();
    assert!(active(&gate, &old).await);

    let new = connect(&gate, &[]).await;
    assert_ne!(new, old);
    assert!(!active(&gate, &old).await, "the derived token was revoked");
    assert!(active(&gate, &new).await);
    let rows = connection_rows(&read_only(&gate).await).await;
    assert_eq!(rows[0].generation, 3);
    assert_eq!(open(K1, &rows[0], &rows[0]).unwrap(), new);
    assert_eq!(connect(&gate, &[]).await, new);
}

/// A `reuse_tokens` client kept in the store (not in the file, which would not load) on
/// a gateway without keys: its token request is refused, naming no secret, and nothing
/// is issued.
#[tokio::test]
async fn a_store_client_that_reuses_tokens_is_refused_without_a_key() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    authgate::certs::generate(&cert, &key, &["127.0.0.1".to_string()], false).unwrap();
    let db = dir.path().join("store.db");
    let bella = authgate::oauth::password::hash("demo-password").unwrap();
    let text = format!(
        "[server]\nhttps = \"127.0.0.1:0\"\nhttp = \"off\"\n[tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [store]\nurl = \"sqlite://{}\"\n[oauth]\nauthorize_path = \"/oauth2/v1/authorize\"\n\
         token_paths = [\"/oauth2/v1/token\"]\n\
         [[user]]\nname = \"bella@example.com\"\npassword_hash = \"{bella}\"\n\
         scopes = \"location[orders.write]\"\n[user.resources]\nlocation_id = \"3r4s3-1\"\n\
         [[route]]\npath = \"/v1\"\nupstream = \"{}\"\nscopes = []\n",
        db.display(),
        up.url()
    );
    let gate = Gate::launch(&text, Vec::new(), dir).await;
    let store = gate.store().await;
    let codec = authgate::token::Codec::new(store.token_key().await.unwrap());
    let secret = authgate::admin::add_client(
        &store,
        &codec,
        authgate::admin::NewClient {
            id: WHO.0.into(),
            name: None,
            settings: authgate::oauth::client::ClientSettings {
                grants: vec!["authorization_code".into()],
                scopes: "location[orders.write]".into(),
                redirect_uris: vec![CB.into()],
                access_token_ttl: None,
                refresh_tokens: false,
                rotate_refresh_tokens: true,
                public: false,
                subject: None,
                pkce: None,
                token_response_extra: false,
                relaxed_parameters: false,
                reuse_tokens: true,
                default_response_type: None,
                callback_scope: false,
            },
        },
        0,
    )
    .await
    .unwrap()
    .unwrap();
    let params = [
        ("response_type", "code"),
        ("redirect_uri", CB),
        ("client_id", WHO.0),
        ("scope", "location[orders.write]"),
    ];
    let resp = flow::consent(
        &gate,
        "/oauth2/v1/authorize",
        &params,
        "bella@example.com",
        "demo-password",
        "approve",
    )
    .await;
    let code = flow::param(&flow::location(&resp).1, "code")
        .unwrap()
        .to_owned();
    let resp = post_form(
        &gate,
        "/oauth2/v1/token",
        Some((WHO.0, secret.as_str())),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body = json(resp).await;
    assert_eq!(body["error"], "unauthorized_client", "{body}");
    let why = body["error_description"].as_str().unwrap();
    assert!(
        why.contains("reuses tokens") && why.contains("no key"),
        "{why}"
    );
    assert!(store.list_tokens(None, 10).await.unwrap().is_empty());
}
