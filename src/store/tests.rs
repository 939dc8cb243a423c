//! Behaviour tests of the [`Store`] contract. They take a store, so the PostgreSQL
//! backend can run the same suite.

use super::*;
use crate::token;

/// A fresh PostgreSQL store in a database of its own, or `None` (skipped loudly) when
/// no server is reachable outside CI.
pub(crate) async fn postgres() -> Option<(std::sync::Arc<dyn Store>, scratch::ScratchDb)> {
    let db = scratch::ScratchDb::create().await?;
    let store = open(db.url()).await.unwrap();
    Some((store, db))
}

/// A fresh SQLite store in a temporary directory.
pub(crate) async fn sqlite() -> (std::sync::Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sub/dir/test.db").display());
    (open(&url).await.unwrap(), dir)
}

fn record(kind: TokenKind, value: &str, family: &str, expires: Option<i64>) -> TokenRecord {
    TokenRecord {
        hash: token::hash(value),
        kind,
        client_id: "c1".into(),
        subject: Some("alice".into()),
        scope: "usage.r links.wd".into(),
        family: family.into(),
        parent: None,
        extra: serde_json::Map::new(),
        issued_at: 1000,
        expires_at: expires,
        revoked_at: None,
        used_at: None,
    }
}

async fn contract(store: std::sync::Arc<dyn Store>) {
    store.ping().await.unwrap();
    let (start, none) = store.revocations_since(None).await.unwrap();
    assert!(none.is_empty());
    // The key is created once and then stable.
    let k1 = store.token_key().await.unwrap();
    let k2 = store.token_key().await.unwrap();
    assert_eq!(k1.expose(), k2.expose());

    // Clients.
    let c = ClientRecord {
        id: "c1".into(),
        secret_hash: Some("sha256:00".into()),
        name: "Client one".into(),
        settings: serde_json::json!({"grants": ["client_credentials"]}),
        created_at: 5,
    };
    store.insert_client(&c).await.unwrap();
    assert!(matches!(
        store.insert_client(&c).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_client("c1").await.unwrap(), Some(c.clone()));
    assert!(store.set_client_secret("c1", "sha256:11").await.unwrap());
    assert!(!store.set_client_secret("nope", "x").await.unwrap());
    assert_eq!(store.list_clients().await.unwrap().len(), 1);

    // Tokens, with a refresh token parenting an access token.
    let mut access = record(TokenKind::Access, "a1", "f1", Some(2000));
    let refresh = record(TokenKind::Refresh, "r1", "f1", None);
    access.parent = Some(refresh.hash);
    access.extra.insert("location_id".into(), "3r4s3-1".into());
    store
        .insert_tokens(&[refresh.clone(), access.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.get_token(&access.hash).await.unwrap(),
        Some(access.clone())
    );
    assert!(store
        .get_token(&token::hash("unknown"))
        .await
        .unwrap()
        .is_none());
    assert!(access.is_active(1999) && !access.is_active(2000));

    // Rotation: first exchange succeeds, replay revokes the family.
    let new_access = record(TokenKind::Access, "a2", "f1", Some(3000));
    let new_refresh = record(TokenKind::Refresh, "r2", "f1", None);
    let out = store
        .rotate_refresh(
            &refresh.hash,
            &[new_access.clone(), new_refresh.clone()],
            false,
            1500,
        )
        .await
        .unwrap();
    assert_eq!(out, Rotation::Rotated);
    let again = store
        .rotate_refresh(
            &refresh.hash,
            &[record(TokenKind::Access, "a3", "f1", None)],
            false,
            1600,
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        Rotation::Reused {
            family: "f1".into()
        }
    );
    for h in [access.hash, new_access.hash, new_refresh.hash] {
        assert_eq!(
            store.get_token(&h).await.unwrap().unwrap().revoked_at,
            Some(1600)
        );
    }
    assert!(store.get_token(&token::hash("a3")).await.unwrap().is_none());
    assert_eq!(
        store
            .rotate_refresh(&token::hash("nope"), &[], false, 1)
            .await
            .unwrap(),
        Rotation::Invalid
    );

    // Without rotation the old refresh token stays usable.
    let keep = record(TokenKind::Refresh, "r9", "f9", None);
    store
        .insert_tokens(std::slice::from_ref(&keep))
        .await
        .unwrap();
    for (i, v) in ["b1", "b2"].iter().enumerate() {
        let out = store
            .rotate_refresh(
                &keep.hash,
                &[record(TokenKind::Access, v, "f9", None)],
                true,
                10 + i as i64,
            )
            .await
            .unwrap();
        assert_eq!(out, Rotation::Rotated);
    }

    // Revoking a refresh token revokes its whole grant, even access tokens issued with
    // an earlier refresh token of the family; revoking an access token only revokes it.
    let r = record(TokenKind::Refresh, "r5", "f5", None);
    let mut a = record(TokenKind::Access, "a5", "f5", None);
    a.parent = Some(r.hash);
    let earlier = record(TokenKind::Access, "a4", "f5", None);
    let unrelated = record(TokenKind::Access, "a6", "f6", None);
    store
        .insert_tokens(&[r.clone(), a.clone(), earlier.clone(), unrelated.clone()])
        .await
        .unwrap();
    store.revoke_token(&unrelated.hash, 70).await.unwrap();
    assert_eq!(
        store.get_token(&a.hash).await.unwrap().unwrap().revoked_at,
        None
    );
    let was = store.revoke_token(&r.hash, 77).await.unwrap().unwrap();
    assert_eq!(was.revoked_at, None);
    assert_eq!(
        store.get_token(&a.hash).await.unwrap().unwrap().revoked_at,
        Some(77)
    );
    assert_eq!(
        store
            .get_token(&earlier.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(77)
    );
    assert!(store
        .revoke_token(&token::hash("zzz"), 1)
        .await
        .unwrap()
        .is_none());

    assert!(store.list_tokens(Some("c1"), 100).await.unwrap().len() >= 6);
    assert!(store
        .list_tokens(Some("other"), 100)
        .await
        .unwrap()
        .is_empty());

    // Every revocation above was logged, in order, for other processes to evict.
    let (latest, log) = store.revocations_since(Some(start)).await.unwrap();
    assert!(latest > start);
    assert_eq!(
        log,
        vec![
            Revocation::Family("f1".into()),
            Revocation::Token(unrelated.hash),
            Revocation::Family("f5".into()),
        ]
    );
    assert!(store
        .revocations_since(Some(latest))
        .await
        .unwrap()
        .1
        .is_empty());

    // Deleting a client revokes its tokens.
    let live = record(TokenKind::Access, "live", "f7", None);
    store
        .insert_tokens(std::slice::from_ref(&live))
        .await
        .unwrap();
    assert!(store.delete_client("c1", 99).await.unwrap());
    assert!(!store.delete_client("c1", 99).await.unwrap());
    assert_eq!(
        store
            .get_token(&live.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(99)
    );
}

#[tokio::test]
async fn sqlite_store_contract() {
    let (store, _dir) = sqlite().await;
    contract(store).await;
}

#[tokio::test]
async fn postgres_store_contract() {
    let Some((store, _db)) = postgres().await else {
        return;
    };
    contract(store).await;
}

/// A connection token sealed as `sealed` for the token `value`.
fn sealed(value: &str, key_id: &str, sealed: &[u8]) -> ConnectionToken {
    ConnectionToken {
        hash: token::hash(value),
        key_id: key_id.into(),
        sealed: sealed.to_vec(),
    }
}

/// Connections (reuse_tokens): a connection moves to a new token only from the state its
/// caller read, together with storing that token, or not at all. `legacy` runs SQL on
/// the same database (a row recorded before tokens were sealed).
async fn connections(store: std::sync::Arc<dyn Store>, legacy: impl AsyncFnOnce(&str)) {
    // Keys separate their parts with NUL, as `oauth::reuse` makes them.
    const K: &str = "app\0alice\0loc-1\0";
    let first = record(TokenKind::Access, "conn-0", "f0", None);
    let s0 = sealed("conn-0", "k1", b"nonce+ciphertext 0");
    assert_eq!(store.connection(K).await.unwrap(), None);
    assert!(store
        .renew_connection(K, None, 0, &s0, &first)
        .await
        .unwrap());
    let at0 = ConnectionRecord {
        generation: 0,
        token: Some(s0.clone()),
    };
    assert_eq!(store.connection(K).await.unwrap(), Some(at0.clone()));
    assert_eq!(store.get_token(&first.hash).await.unwrap(), Some(first));
    // Another authorization read the same state and lost: nothing of it is written.
    let lost = record(TokenKind::Access, "conn-lost", "f0", None);
    let s_lost = sealed("conn-lost", "k1", b"lost");
    for expected in [None, Some(7)] {
        assert!(!store
            .renew_connection(K, expected, 1, &s_lost, &lost)
            .await
            .unwrap());
    }
    assert_eq!(store.get_token(&lost.hash).await.unwrap(), None);
    assert_eq!(store.connection(K).await.unwrap(), Some(at0));
    // The next generation.
    let next = record(TokenKind::Access, "conn-1", "f1", Some(9000));
    let s1 = sealed("conn-1", "k1", b"nonce+ciphertext 1");
    assert!(store
        .renew_connection(K, Some(0), 1, &s1, &next)
        .await
        .unwrap());
    assert_eq!(
        store.get_token(&next.hash).await.unwrap(),
        Some(next.clone())
    );
    // A token that cannot be stored (its hash exists) leaves the connection as it was.
    let s_dup = sealed("conn-1", "k1", b"duplicate");
    assert!(store
        .renew_connection(K, Some(1), 2, &s_dup, &next)
        .await
        .is_err());
    assert_eq!(
        store.connection(K).await.unwrap().unwrap().token,
        Some(s1.clone())
    );
    // Re-sealing (key rotation) keeps generation and hash, and only from that state.
    let resealed = sealed("conn-1", "k2", b"under k2");
    assert!(!store.reseal_connection(K, 0, &resealed).await.unwrap());
    let other_token = sealed("conn-0", "k2", b"under k2");
    assert!(!store.reseal_connection(K, 1, &other_token).await.unwrap());
    assert!(store.reseal_connection(K, 1, &resealed).await.unwrap());
    assert_eq!(
        store.connection(K).await.unwrap(),
        Some(ConnectionRecord {
            generation: 1,
            token: Some(resealed),
        })
    );
    // Connections are independent.
    assert_eq!(store.connection("app\0bob\0loc-1\0").await.unwrap(), None);

    // Concurrent first authorizations of one connection: exactly one wins.
    let racers: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let value = format!("race-{i}");
                let r = record(TokenKind::Access, &value, "fr", None);
                let s = sealed(&value, "k1", b"race");
                store.renew_connection("race", None, 0, &s, &r).await
            })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        won += usize::from(r.await.unwrap().unwrap());
    }
    assert_eq!(won, 1);

    // A row from before tokens were sealed: a generation and no token.
    legacy("INSERT INTO connections (key, generation) VALUES ('old', 3)").await;
    assert_eq!(
        store.connection("old").await.unwrap(),
        Some(ConnectionRecord {
            generation: 3,
            token: None,
        })
    );
    let renewed = record(TokenKind::Access, "old-4", "fo", None);
    assert!(store
        .renew_connection("old", Some(3), 4, &sealed("old-4", "k1", b"x"), &renewed)
        .await
        .unwrap());
    assert_eq!(
        store.connection("old").await.unwrap().unwrap().generation,
        4
    );
}

#[tokio::test]
async fn sqlite_connections_move_on_only_from_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let store = open(&url).await.unwrap();
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    connections(store, async |q: &str| {
        sqlx::query(q).execute(&raw).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn postgres_connections_move_on_only_from_what_was_read() {
    let Some((store, db)) = postgres().await else {
        return;
    };
    let raw = sqlx::PgPool::connect(db.url()).await.unwrap();
    connections(store, async |q: &str| {
        sqlx::query(q).execute(&raw).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let key = {
        let s = open(&url).await.unwrap();
        s.insert_tokens(&[record(TokenKind::Access, "persist", "f", None)])
            .await
            .unwrap();
        s.token_key().await.unwrap()
    };
    let s = open(&url).await.unwrap();
    assert!(s
        .get_token(&token::hash("persist"))
        .await
        .unwrap()
        .is_some());
    assert_eq!(s.token_key().await.unwrap().expose(), key.expose());
}

#[tokio::test]
async fn concurrent_exchanges_of_one_refresh_token_rotate_once() {
    let (store, _dir) = sqlite().await;
    rotate_once(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_exchanges_of_one_refresh_token_rotate_once() {
    let Some((store, db)) = postgres().await else {
        return;
    };
    rotate_once(store).await;
    // Also across two instances (two pools) of one database.
    let other = open(db.url()).await.unwrap();
    let r = record(TokenKind::Refresh, "race-2", "fr2", None);
    other.insert_tokens(std::slice::from_ref(&r)).await.unwrap();
    let third = open(db.url()).await.unwrap();
    let (x1, x2) = (
        [record(TokenKind::Access, "x1", "fr2", None)],
        [record(TokenKind::Access, "x2", "fr2", None)],
    );
    let (a, b) = tokio::join!(
        other.rotate_refresh(&r.hash, &x1, false, 5),
        third.rotate_refresh(&r.hash, &x2, false, 5),
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, Rotation::Rotated));
    assert_eq!(outcomes[1], Rotation::Rotated);
    assert_eq!(
        outcomes[0],
        Rotation::Reused {
            family: "fr2".into()
        }
    );
}

async fn rotate_once(store: std::sync::Arc<dyn Store>) {
    let r = record(TokenKind::Refresh, "race", "fr", None);
    store.insert_tokens(std::slice::from_ref(&r)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let hash = r.hash;
        tasks.push(tokio::spawn(async move {
            let new = record(TokenKind::Access, &format!("race-{i}"), "fr", None);
            store.rotate_refresh(&hash, &[new], false, 5).await.unwrap()
        }));
    }
    let mut rotated = 0;
    for t in tasks {
        if t.await.unwrap() == Rotation::Rotated {
            rotated += 1;
        }
    }
    assert_eq!(rotated, 1);
}

#[tokio::test]
async fn unwritable_location_is_a_clear_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    // A path under a regular file cannot be created.
    let url = format!("sqlite://{}", file.join("db.sqlite").display());
    let err = open(&url).await.err().expect("must fail").to_string();
    assert!(err.contains("cannot open the store"), "{err}");
    let err = open("postgres://nobody@127.0.0.1:1/db")
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("cannot open the store"), "{err}");
    let err = open("postgres://u:hunter2@127.0.0.1:1/db")
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(!err.contains("hunter2") && err.contains("u:***@"), "{err}");
    let err = open("mysql://x")
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("unsupported scheme"), "{err}");
}

#[tokio::test]
async fn sqlite_subjects_with_tokens() {
    let (store, _dir) = sqlite().await;
    subjects(store).await;
}

#[tokio::test]
async fn postgres_subjects_with_tokens() {
    let Some((store, _db)) = postgres().await else {
        return;
    };
    subjects(store).await;
}

/// Subjects of unrevoked tokens (expired ones too, until swept) and of unspent codes,
/// each once: what a start compares with the users it knows.
async fn subjects(store: std::sync::Arc<dyn Store>) {
    assert!(store.subjects_with_tokens().await.unwrap().is_empty());
    let token = |value: &str, subject: Option<&str>, expires: Option<i64>| TokenRecord {
        subject: subject.map(Into::into),
        ..record(TokenKind::Access, value, value, expires)
    };
    store
        .insert_tokens(&[
            token("t1", Some("bob"), None),
            token("t2", Some("bob"), Some(1)),
            token("t3", Some("alice"), Some(1)),
            token("t4", None, None),
            token("t5", Some("carol"), None),
        ])
        .await
        .unwrap();
    store.revoke_token(&token::hash("t5"), 10).await.unwrap();
    let code = |value: &str, subject: &str| CodeRecord {
        hash: token::hash(value),
        client_id: "c1".into(),
        redirect_uri: String::new(),
        code_challenge: None,
        scope: String::new(),
        subject: subject.into(),
        extra: serde_json::Map::new(),
        family: value.into(),
        expires_at: 5000,
        device_id: None,
    };
    store.insert_code(&code("k1", "dave")).await.unwrap();
    store.insert_code(&code("k2", "erin")).await.unwrap();
    store.insert_code(&code("k3", "bob")).await.unwrap();
    let spent = store
        .redeem_code(&token::hash("k2"), 100, &any_code)
        .await
        .unwrap();
    assert!(matches!(spent, Redeem::Fresh(_)));
    assert_eq!(
        store.subjects_with_tokens().await.unwrap(),
        ["alice", "bob", "dave"],
        "carol's token is revoked, erin's code spent, t4 acts for nobody"
    );
    store.delete_user("bob", 20).await.unwrap();
    assert_eq!(
        store.subjects_with_tokens().await.unwrap(),
        ["alice", "dave"]
    );
}

#[tokio::test]
async fn codes_are_one_use_and_a_replay_revokes_their_tokens() {
    let (store, _dir) = sqlite().await;
    codes(store).await;
}

#[tokio::test]
async fn postgres_codes_are_one_use_and_a_replay_revokes_their_tokens() {
    let Some((store, _db)) = postgres().await else {
        return;
    };
    codes(store).await;
}

/// Accepts every code.
fn any_code(_: &CodeRecord) -> Result<(), CodeRefusal> {
    Ok(())
}

async fn codes(store: std::sync::Arc<dyn Store>) {
    let code = CodeRecord {
        hash: token::hash("code-1"),
        client_id: "c1".into(),
        redirect_uri: "https://app/cb".into(),
        code_challenge: Some("abc".into()),
        scope: "profile".into(),
        subject: "alice".into(),
        extra: serde_json::Map::new(),
        family: "fc".into(),
        expires_at: 600,
        device_id: Some("till-2".into()),
    };
    store.insert_code(&code).await.unwrap();
    // The check sees the code; refused with Keep, the code stays as it was.
    let keep = |c: &CodeRecord| {
        assert_eq!(c, &code);
        Err(CodeRefusal::Keep)
    };
    assert_eq!(
        store.redeem_code(&code.hash, 99, &keep).await.unwrap(),
        Redeem::Refused(CodeRefusal::Keep)
    );
    assert_eq!(
        store.redeem_code(&code.hash, 100, &any_code).await.unwrap(),
        Redeem::Fresh(Box::new(code.clone()))
    );
    store
        .insert_tokens(&[record(TokenKind::Access, "from-code", "fc", None)])
        .await
        .unwrap();
    // A spent code presented by someone the check refuses: no replay, nothing revoked.
    assert_eq!(
        store.redeem_code(&code.hash, 101, &keep).await.unwrap(),
        Redeem::Refused(CodeRefusal::Keep)
    );
    assert!(!store.code_replayed(&code.hash).await.unwrap());
    let t = store
        .get_token(&token::hash("from-code"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.revoked_at, None);
    assert_eq!(
        store.redeem_code(&code.hash, 101, &any_code).await.unwrap(),
        Redeem::Replayed {
            family: "fc".into()
        }
    );
    assert!(store.code_replayed(&code.hash).await.unwrap());
    let t = store
        .get_token(&token::hash("from-code"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.revoked_at, Some(101));
    assert_eq!(
        store
            .redeem_code(&token::hash("nope"), 1, &any_code)
            .await
            .unwrap(),
        Redeem::Invalid
    );
    // Burn spends a fresh code without issuing: the next presentation is a replay.
    let burnt = CodeRecord {
        hash: token::hash("code-3"),
        family: "fb".into(),
        ..code.clone()
    };
    store.insert_code(&burnt).await.unwrap();
    assert_eq!(
        store
            .redeem_code(&burnt.hash, 100, &|_| Err(CodeRefusal::Burn))
            .await
            .unwrap(),
        Redeem::Refused(CodeRefusal::Burn)
    );
    assert_eq!(
        store
            .redeem_code(&burnt.hash, 101, &any_code)
            .await
            .unwrap(),
        Redeem::Replayed {
            family: "fb".into()
        }
    );
    let late = CodeRecord {
        hash: token::hash("code-2"),
        ..code
    };
    store.insert_code(&late).await.unwrap();
    assert_eq!(
        store.redeem_code(&late.hash, 600, &any_code).await.unwrap(),
        Redeem::Invalid,
        "expired"
    );
}

/// The sweep deletes what expired or was revoked before the cut-off, in batches, and
/// nothing else.
async fn sweep(store: std::sync::Arc<dyn Store>) {
    let mut tokens = Vec::new();
    for i in 0..25 {
        tokens.push(record(
            TokenKind::Access,
            &format!("old-{i}"),
            "fs",
            Some(100),
        ));
    }
    let mut revoked = record(TokenKind::Access, "revoked", "fs", None);
    revoked.revoked_at = Some(150);
    tokens.push(revoked);
    let live = [
        record(TokenKind::Access, "later", "fs", Some(500)),
        record(TokenKind::Refresh, "forever", "fs", None),
        record(TokenKind::Access, "expired-recently", "fs", Some(250)),
    ];
    tokens.extend(live.iter().cloned());
    store.insert_tokens(&tokens).await.unwrap();
    store.revoke_family("other", 10).await.unwrap();
    store.revoke_family("newer", 400).await.unwrap();
    let code = CodeRecord {
        hash: token::hash("old-code"),
        client_id: "c1".into(),
        redirect_uri: "https://app/cb".into(),
        code_challenge: None,
        scope: String::new(),
        subject: "alice".into(),
        extra: serde_json::Map::new(),
        family: "fc".into(),
        expires_at: 100,
        device_id: None,
    };
    store.insert_code(&code).await.unwrap();
    assert!(store
        .spend_nonce(&token::hash("old-form"), 100)
        .await
        .unwrap());
    assert!(store
        .spend_nonce(&token::hash("open-form"), 500)
        .await
        .unwrap());

    // Batches of 10: 26 tokens, 1 code, 1 spent nonce, 1 log entry.
    assert_eq!(store.sweep(200, 300, 10).await.unwrap(), Some(29));
    for t in &tokens[..26] {
        assert!(store.get_token(&t.hash).await.unwrap().is_none());
    }
    for t in &live {
        assert!(store.get_token(&t.hash).await.unwrap().is_some());
    }
    assert_eq!(
        store.redeem_code(&code.hash, 1, &any_code).await.unwrap(),
        Redeem::Invalid
    );
    let (_, log) = store.revocations_since(Some(0)).await.unwrap();
    assert_eq!(log, vec![Revocation::Family("newer".into())]);
    assert!(
        !store
            .spend_nonce(&token::hash("open-form"), 500)
            .await
            .unwrap(),
        "a value that has not expired stays spent"
    );
    assert_eq!(store.sweep(200, 300, 10).await.unwrap(), Some(0));
}

#[tokio::test]
async fn sqlite_nonces_are_spent_once() {
    let (store, _dir) = sqlite().await;
    nonces(store).await;
}

#[tokio::test]
async fn postgres_nonces_are_spent_once() {
    let Some((store, _db)) = postgres().await else {
        return;
    };
    nonces(store).await;
}

/// A single-use value is spent once, also by concurrent callers.
async fn nonces(store: std::sync::Arc<dyn Store>) {
    let a = token::hash("form-a");
    assert!(store.spend_nonce(&a, 1000).await.unwrap());
    assert!(!store.spend_nonce(&a, 1000).await.unwrap());
    assert!(
        !store.spend_nonce(&a, 2000).await.unwrap(),
        "whatever the expiry"
    );
    assert!(store
        .spend_nonce(&token::hash("form-b"), 1000)
        .await
        .unwrap());
    let c = token::hash("form-c");
    let racing: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.spend_nonce(&c, 1000).await.unwrap() })
        })
        .collect();
    let mut first = 0;
    for r in racing {
        first += usize::from(r.await.unwrap());
    }
    assert_eq!(first, 1, "exactly one of eight concurrent spends");
}

#[tokio::test]
async fn sqlite_sweep_deletes_expired_rows_in_batches() {
    let (store, _dir) = sqlite().await;
    sweep(store).await;
}

#[tokio::test]
async fn postgres_sweep_deletes_expired_rows_in_batches() {
    let Some((store, _db)) = postgres().await else {
        return;
    };
    sweep(store).await;
}

/// Revocations committed through one pool wake the feed of another, and a follower
/// reading the log while revocations commit concurrently never skips one (log order
/// is commit order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_revocations_notify_other_instances_and_the_log_skips_nothing() {
    let Some((a, db)) = postgres().await else {
        return;
    };
    let b = open(db.url()).await.unwrap();
    let feed = b.revocation_feed().expect("PostgreSQL has a feed");
    // The first wake-up is the subscription itself.
    tokio::time::timeout(std::time::Duration::from_secs(10), feed.notified())
        .await
        .expect("subscribed");
    let (start, _) = b.revocations_since(None).await.unwrap();
    a.revoke_family("fam-0", 1).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), feed.notified())
        .await
        .expect("a revocation on A wakes B");

    let writers: Vec<_> = (1..=100)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.revoke_family(&format!("fam-{i}"), 1).await })
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut seq = Some(start);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen.len() < 101 {
        assert!(std::time::Instant::now() < deadline, "saw {}", seen.len());
        let (latest, entries) = b.revocations_since(seq).await.unwrap();
        for e in entries {
            let Revocation::Family(f) = e else {
                panic!("unexpected {e:?}")
            };
            assert!(seen.insert(f), "an entry was returned twice");
        }
        seq = Some(latest);
        if writers.iter().all(|w| w.is_finished()) {
            // Everything committed: one more read must complete the set.
            let (_, rest) = b.revocations_since(seq).await.unwrap();
            for e in rest {
                if let Revocation::Family(f) = e {
                    seen.insert(f);
                }
            }
            break;
        }
    }
    for w in writers {
        w.await.unwrap().unwrap();
    }
    assert_eq!(seen.len(), 101, "a follower skipped log entries");
}

/// A rotation and a revocation of the same grant racing on two pools: whatever the
/// interleaving, no token of the grant (or of the user) stays active afterwards. Under
/// READ COMMITTED, without the grant locks, the revoking UPDATE can miss the rows the
/// rotation inserts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_revocation_racing_a_rotation_leaves_nothing_active() {
    let Some((a, db)) = postgres().await else {
        return;
    };
    let b = open(db.url()).await.unwrap();
    for i in 0..40 {
        let family = format!("race-{i}");
        let subject = format!("user-{i}");
        let mut old = record(TokenKind::Refresh, &format!("old-{i}"), &family, None);
        old.subject = Some(subject.clone());
        a.insert_tokens(std::slice::from_ref(&old)).await.unwrap();
        let mut new = vec![
            record(TokenKind::Access, &format!("new-a-{i}"), &family, None),
            record(TokenKind::Refresh, &format!("new-r-{i}"), &family, None),
        ];
        for t in &mut new {
            t.subject = Some(subject.clone());
        }
        let rotate = a.rotate_refresh(&old.hash, &new, false, 10);
        let revoke = async {
            if i % 2 == 0 {
                b.revoke_family(&family, 10).await.map(|_| ())
            } else {
                b.delete_user(&subject, 10).await.map(|_| ())
            }
        };
        let (rotated, revoked) = tokio::join!(rotate, revoke);
        rotated.unwrap();
        revoked.unwrap();
        for t in new.iter().chain([&old]) {
            if let Some(t) = a.get_token(&t.hash).await.unwrap() {
                assert!(!t.is_active(10), "round {i}: {:?} survived", t.kind);
            }
        }
    }
}

/// Six issuers write tokens (inserts and refresh rotations) without pause while 60
/// revocations of every kind run at once: every revocation commits (no "database is
/// locked", no deadlock), and every revoked token reads back revoked.
async fn revocations_hold_under_concurrent_writes(store: std::sync::Arc<dyn Store>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut victims = Vec::new();
    for i in 0..60 {
        let kind = if i % 3 == 0 {
            TokenKind::Refresh
        } else {
            TokenKind::Access
        };
        victims.push(record(
            kind,
            &format!("victim-{i}"),
            &format!("fv{i}"),
            None,
        ));
    }
    store.insert_tokens(&victims).await.unwrap();

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let mut issuers = tokio::task::JoinSet::new();
    for w in 0..6 {
        let (store, stop) = (store.clone(), stop.clone());
        issuers.spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let family = format!("issuer-{w}-{n}");
                let refresh = record(TokenKind::Refresh, &format!("{family}-r"), &family, None);
                store.insert_tokens(std::slice::from_ref(&refresh)).await?;
                let next = record(TokenKind::Access, &format!("{family}-a"), &family, None);
                let rotated = store
                    .rotate_refresh(&refresh.hash, &[next], false, 1200)
                    .await?;
                assert_eq!(rotated, Rotation::Rotated);
                n += 1;
            }
            Ok::<u32, StoreError>(n)
        });
    }
    // Let the issuers get going before the revocations start.
    tokio::task::yield_now().await;
    let mut revocations = tokio::task::JoinSet::new();
    for (i, v) in victims.iter().enumerate() {
        let (store, hash, family) = (store.clone(), v.hash, v.family.clone());
        revocations.spawn(async move {
            if i % 5 == 4 {
                store.revoke_family(&family, 1500).await.map(|n| n == 1)
            } else {
                store.revoke_token(&hash, 1500).await.map(|r| r.is_some())
            }
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = revocations.join_next().await {
        match done.unwrap() {
            Ok(found) => assert!(found, "a victim was not found"),
            Err(e) => failures.push(e.to_string()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut issued = 0;
    while let Some(done) = issuers.join_next().await {
        issued += done.unwrap().expect("an issuer failed");
    }
    assert!(
        failures.is_empty(),
        "{} of 60 revocations failed: {failures:?}",
        failures.len()
    );
    assert!(issued > 0, "the issuers never ran");
    for v in &victims {
        let t = store.get_token(&v.hash).await.unwrap().unwrap();
        assert_eq!(t.revoked_at, Some(1500), "{:?} lives on", v.family);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_revocations_hold_under_concurrent_writes() {
    let (store, _dir) = sqlite().await;
    revocations_hold_under_concurrent_writes(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_revocations_hold_under_concurrent_writes() {
    let Some((store, _db)) = postgres().await else {
        return;
    };
    revocations_hold_under_concurrent_writes(store).await;
}

#[tokio::test]
async fn sqlite_files_are_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/data/authgate.db");
    let store = open(&format!("sqlite://{}", db.display())).await.unwrap();
    // A write makes SQLite create its -wal and -shm files.
    store
        .insert_tokens(&[record(TokenKind::Access, "private", "f", None)])
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("sub")), 0o700);
    assert_eq!(mode(&dir.path().join("sub/data")), 0o700);
    assert_eq!(mode(&db), 0o600);
    let wal = dir.path().join("sub/data/authgate.db-wal");
    assert_eq!(mode(&wal), 0o600);
    drop(store);
    // An existing database keeps working (its permissions are only warned about).
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = open(&format!("sqlite://{}", db.display())).await.unwrap();
    assert!(again
        .get_token(&token::hash("private"))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn postgres_transactions_are_read_committed_whatever_the_server_default() {
    let Some((store, db)) = postgres().await else {
        return;
    };
    // The server's default changed to something stricter for this database.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
        .await
        .unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'serializable'"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let pool = super::postgres::PgStore::open(db.url(), &PoolOptions::default())
        .await
        .unwrap();
    assert_eq!(pool.isolation().await.unwrap(), "read committed");
    // A numeric SQLSTATE (22021: a NUL in text) is no SQLite BUSY code: not retried.
    assert!(matches!(
        store.get_client("a\0b").await,
        Err(StoreError::Unavailable(_))
    ));
}
