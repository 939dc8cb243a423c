//! Behaviour tests of the [`Store`] contract. They take a store, so the PostgreSQL
//! backend can run the same suite.

use super::*;
use crate::token;

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
    let err = open("mysql://x")
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("unsupported scheme"), "{err}");
}

#[tokio::test]
async fn codes_are_one_use_and_a_replay_revokes_their_tokens() {
    let (store, _dir) = sqlite().await;
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
    assert_eq!(
        store.redeem_code(&code.hash, 100).await.unwrap(),
        Redeem::Fresh(Box::new(code.clone()))
    );
    store
        .insert_tokens(&[record(TokenKind::Access, "from-code", "fc", None)])
        .await
        .unwrap();
    assert!(!store.code_replayed(&code.hash).await.unwrap());
    assert_eq!(
        store.redeem_code(&code.hash, 101).await.unwrap(),
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
        store.redeem_code(&token::hash("nope"), 1).await.unwrap(),
        Redeem::Invalid
    );
    let late = CodeRecord {
        hash: token::hash("code-2"),
        ..code
    };
    store.insert_code(&late).await.unwrap();
    assert_eq!(
        store.redeem_code(&late.hash, 600).await.unwrap(),
        Redeem::Invalid,
        "expired"
    );
}
