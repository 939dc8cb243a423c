//! `authgate client …` and `authgate token …`: administration against the configured
//! store. Secrets are printed once, at creation or rotation; only their hash is kept.

use std::sync::Arc;

use crate::oauth::client::{check_id, client_from_record, ClientSettings, SecretHash};
use crate::store::{ClientRecord, Store, StoreError};
use crate::token::{self, Codec, Kind};

/// What an admin command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("no client {0:?} in the store")]
    NoClient(String),
}

/// Options of `client add`.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub id: String,
    pub name: Option<String>,
    pub settings: ClientSettings,
}

/// Creates a client; returns its secret (to print once), or `None` for a public client.
pub async fn add_client(
    store: &Arc<dyn Store>,
    codec: &Codec,
    new: NewClient,
    now: i64,
) -> Result<Option<String>, AdminError> {
    check_id(&new.id).map_err(AdminError::Invalid)?;
    new.settings
        .validate()
        .map_err(|(k, r)| AdminError::Invalid(format!("{k}: {r}")))?;
    let secret = (!new.settings.public).then(|| codec.mint(Kind::ClientSecret));
    let record = ClientRecord {
        name: new.name.unwrap_or_else(|| new.id.clone()),
        id: new.id,
        secret_hash: secret
            .as_ref()
            .map(|s| SecretHash::of(s.expose()).to_string()),
        settings: serde_json::to_value(&new.settings)
            .map_err(|e| AdminError::Invalid(e.to_string()))?,
        created_at: now,
    };
    store.insert_client(&record).await?;
    Ok(secret.map(|s| s.expose().to_owned()))
}

/// Replaces a client's secret; returns the new one.
pub async fn rotate_secret(
    store: &Arc<dyn Store>,
    codec: &Codec,
    id: &str,
) -> Result<String, AdminError> {
    let record = store
        .get_client(id)
        .await?
        .ok_or_else(|| AdminError::NoClient(id.into()))?;
    let client = client_from_record(record).map_err(AdminError::Invalid)?;
    if client.public {
        return Err(AdminError::Invalid(format!(
            "{id:?} is a public client: it has no secret"
        )));
    }
    let secret = codec.mint(Kind::ClientSecret);
    store
        .set_client_secret(id, &SecretHash::of(secret.expose()).to_string())
        .await?;
    Ok(secret.expose().to_owned())
}

/// One line per stored client.
pub async fn list_clients(store: &Arc<dyn Store>) -> Result<Vec<String>, AdminError> {
    Ok(store
        .list_clients()
        .await?
        .into_iter()
        .map(|c| {
            let kind = if c.secret_hash.is_some() {
                "confidential"
            } else {
                "public"
            };
            let grants = c
                .settings
                .get("grants")
                .map(|g| g.to_string())
                .unwrap_or_default();
            let scopes = c
                .settings
                .get("scopes")
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .to_owned();
            format!(
                "{}\t{}\t{kind}\tgrants={grants}\tscopes={scopes:?}",
                c.id, c.name
            )
        })
        .collect())
}

/// Removes a client (its tokens are revoked).
pub async fn remove_client(store: &Arc<dyn Store>, id: &str, now: i64) -> Result<(), AdminError> {
    if store.delete_client(id, now).await? {
        Ok(())
    } else {
        Err(AdminError::NoClient(id.into()))
    }
}

/// Revokes a token given by value or by hex hash; returns whether it existed.
pub async fn revoke_token(
    store: &Arc<dyn Store>,
    token_or_hash: &str,
    now: i64,
) -> Result<bool, AdminError> {
    let hash = if Kind::of(token_or_hash).is_some() {
        token::hash(token_or_hash)
    } else {
        parse_hex_hash(token_or_hash).ok_or_else(|| {
            AdminError::Invalid("expected a token (agat_…, agrt_…) or a 64-digit hex hash".into())
        })?
    };
    Ok(store.revoke_token(&hash, now).await?.is_some())
}

fn parse_hex_hash(s: &str) -> Option<token::TokenHash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(token::TokenHash(out))
}

/// One line per token (hash, never the value).
pub async fn list_tokens(
    store: &Arc<dyn Store>,
    client: Option<&str>,
    limit: u32,
    now: i64,
) -> Result<Vec<String>, AdminError> {
    Ok(store
        .list_tokens(client, limit)
        .await?
        .into_iter()
        .map(|t| {
            let state = if t.revoked_at.is_some() {
                "revoked"
            } else if t.used_at.is_some() {
                "used"
            } else if t.is_active(now) {
                "active"
            } else {
                "expired"
            };
            format!(
                "{}\t{}\t{}\t{}\t{}\tsub={}\tscope={:?}",
                t.hash.to_hex(),
                t.kind.as_str(),
                state,
                t.client_id,
                t.expires_at.map_or("never".to_string(), |e| e.to_string()),
                t.subject.as_deref().unwrap_or("-"),
                t.scope,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ClientSettings {
        ClientSettings {
            grants: vec!["client_credentials".into()],
            scopes: "roles.admin".into(),
            redirect_uris: vec![],
            access_token_ttl: None,
            refresh_tokens: false,
            rotate_refresh_tokens: true,
            public: false,
            subject: Some("user-7".into()),
            pkce: None,
            token_response_extra: false,
            relaxed_parameters: false,
            reuse_tokens: false,
            default_response_type: None,
            callback_scope: false,
        }
    }

    #[tokio::test]
    async fn clients_are_created_rotated_listed_and_removed() {
        let (store, _dir) = crate::store::tests::sqlite().await;
        let codec = Codec::new(store.token_key().await.unwrap());
        let new = NewClient {
            id: "hub-app".into(),
            name: Some("Hub app".into()),
            settings: settings(),
        };
        let secret = add_client(&store, &codec, new.clone(), 1)
            .await
            .unwrap()
            .unwrap();
        assert!(secret.starts_with("agcs_"));
        let stored = store.get_client("hub-app").await.unwrap().unwrap();
        assert!(!stored.secret_hash.as_deref().unwrap().contains(&secret));
        assert!(SecretHash::parse(stored.secret_hash.as_deref().unwrap())
            .unwrap()
            .verify(&secret));
        assert!(matches!(
            add_client(&store, &codec, new, 1).await,
            Err(AdminError::Store(StoreError::Conflict(_)))
        ));

        let rotated = rotate_secret(&store, &codec, "hub-app").await.unwrap();
        assert_ne!(rotated, secret);
        let stored = store.get_client("hub-app").await.unwrap().unwrap();
        assert!(SecretHash::parse(stored.secret_hash.as_deref().unwrap())
            .unwrap()
            .verify(&rotated));

        let lines = list_clients(&store).await.unwrap();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("hub-app\tHub app\tconfidential"));

        remove_client(&store, "hub-app", 2).await.unwrap();
        assert!(matches!(
            remove_client(&store, "hub-app", 2).await,
            Err(AdminError::NoClient(_))
        ));
        assert!(matches!(
            rotate_secret(&store, &codec, "hub-app").await,
            Err(AdminError::NoClient(_))
        ));
    }

    #[tokio::test]
    async fn bad_settings_and_ids_are_refused() {
        let (store, _dir) = crate::store::tests::sqlite().await;
        let codec = Codec::new(store.token_key().await.unwrap());
        let mut s = settings();
        s.grants = vec!["password".into()];
        let e = add_client(
            &store,
            &codec,
            NewClient {
                id: "x".into(),
                name: None,
                settings: s,
            },
            1,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("grants:"), "{e}");
        let e = add_client(
            &store,
            &codec,
            NewClient {
                id: "a b".into(),
                name: None,
                settings: settings(),
            },
            1,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, AdminError::Invalid(_)));
        assert!(matches!(
            revoke_token(&store, "nonsense", 1).await,
            Err(AdminError::Invalid(_))
        ));
        assert!(!revoke_token(&store, &"ab".repeat(32), 1).await.unwrap());
    }
}

/// Options of `user add`.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    /// What the user may grant; `None`: anything the client may have.
    pub scopes: Option<String>,
    /// `key=value` pairs of bound resources.
    pub resources: Vec<String>,
}

/// Creates a user in the store.
pub async fn add_user(store: &Arc<dyn Store>, new: NewUser, now: i64) -> Result<(), AdminError> {
    if new.name.is_empty() || new.name.len() > 256 || new.name.chars().any(char::is_control) {
        return Err(AdminError::Invalid(
            "the user name must be 1 to 256 printable characters".into(),
        ));
    }
    crate::oauth::password::check_new(&new.password).map_err(AdminError::Invalid)?;
    if let Some(s) = &new.scopes {
        crate::scope::Scope::parse(s).map_err(|e| AdminError::Invalid(format!("scopes: {e}")))?;
    }
    let mut resources = serde_json::Map::new();
    for pair in &new.resources {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| AdminError::Invalid(format!("resource {pair:?}: expected key=value")))?;
        let n = k.replace('-', "_").to_ascii_lowercase();
        if crate::gateway::identity::RESERVED_KEYS.contains(&n.as_str()) {
            return Err(AdminError::Invalid(format!(
                "resource {k:?} would collide with an identity header"
            )));
        }
        resources.insert(k.to_owned(), v.to_owned().into());
    }
    let hash = crate::oauth::password::hash(&new.password).map_err(AdminError::Invalid)?;
    let record = crate::store::UserRecord {
        name: new.name,
        password_hash: hash,
        settings: serde_json::json!({ "scopes": new.scopes, "resources": resources }),
        created_at: now,
    };
    store.insert_user(&record).await?;
    Ok(())
}

/// Replaces a user's password.
pub async fn set_password(
    store: &Arc<dyn Store>,
    name: &str,
    password: &str,
) -> Result<(), AdminError> {
    crate::oauth::password::check_new(password).map_err(AdminError::Invalid)?;
    let hash = crate::oauth::password::hash(password).map_err(AdminError::Invalid)?;
    if store.set_user_password(name, &hash).await? {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "no user {name:?} in the store"
        )))
    }
}

/// Removes a user; their tokens are revoked.
pub async fn remove_user(store: &Arc<dyn Store>, name: &str, now: i64) -> Result<(), AdminError> {
    if store.delete_user(name, now).await? {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "no user {name:?} in the store"
        )))
    }
}

/// One line per stored user (never the hash).
pub async fn list_users(store: &Arc<dyn Store>) -> Result<Vec<String>, AdminError> {
    Ok(store
        .list_users()
        .await?
        .into_iter()
        .map(|u| {
            format!(
                "{}\tscopes={}\tresources={}",
                u.name, u.settings["scopes"], u.settings["resources"]
            )
        })
        .collect())
}
