//! Persistent state behind a [`Store`] trait: clients, tokens (hashes only) and settings.
//!
//! Backends: SQLite ([`sqlite`], the embedded default, a file created on first start)
//! and PostgreSQL ([`postgres`], for several instances sharing one store). Both pass
//! the same contract tests (`store/tests.rs`).
//! Every method is async and takes time as an argument (`now`, unix seconds), so the
//! OAuth logic and tests control the clock.
//!
//! Durability: a method returns only after its transaction committed (SQLite with
//! `synchronous = FULL`), so a token is on disk before the response carrying it is sent.
//! A write that meets a conflicting one is retried whole ([`retry`]); a revocation is
//! committed or reported failed, never answered as done while the token lives on.

pub mod instrumented;
pub mod postgres;
mod retry;
mod rows;
pub mod scratch;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::secret::SecretKey;
use crate::token::TokenHash;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created (bad path, permissions).
    #[error("cannot open the store {url}: {reason}")]
    Open { url: String, reason: String },
    /// The store is unreachable or failed a query: callers answer 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A write met a conflicting one (lock held, deadlock, serialization failure) and
    /// was retried ([`retry`]) to no avail; nothing was written. Callers answer 503.
    #[error("store busy: {0}")]
    Contended(String),
    /// A record with this key exists already.
    #[error("{0} already exists")]
    Conflict(String),
    /// A stored value could not be read back.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("record".into())
            }
            _ if retry::is_transient(&e) => StoreError::Contended(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// Token kinds that are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<TokenKind, StoreError> {
        match s {
            "access" => Ok(TokenKind::Access),
            "refresh" => Ok(TokenKind::Refresh),
            other => Err(StoreError::Corrupt(format!("token kind {other:?}"))),
        }
    }
}

/// A stored token (by hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub hash: TokenHash,
    pub kind: TokenKind,
    pub client_id: String,
    pub subject: Option<String>,
    pub scope: String,
    /// Shared by every token descending from one grant (refresh rotation lineage).
    pub family: String,
    /// The refresh token this token was issued with.
    pub parent: Option<TokenHash>,
    /// Bound resource ids and names (JSON object).
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub issued_at: i64,
    /// `None`: never expires.
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Refresh tokens: when it was exchanged (rotated out).
    pub used_at: Option<i64>,
}

impl TokenRecord {
    /// Usable at `now`: not revoked, not expired.
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A client as stored (managed with `authgate client …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: String,
    /// `sha256:<hex>` of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub name: String,
    /// Grants, scope, TTLs… (JSON, see `oauth::client`).
    pub settings: serde_json::Value,
    pub created_at: i64,
}

/// Result of exchanging a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The old token was active and unused; it is now marked used and the new tokens
    /// are stored.
    Rotated,
    /// The old token had been used already: a replay. Its whole family was revoked.
    Reused { family: String },
    /// The old token is unknown, revoked or expired; nothing changed.
    Invalid,
}

/// A reused connection (`reuse_tokens`): one per client, user, bound resource and device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// Moves on each time the connection gets a new token (its last one was revoked,
    /// expired or swept).
    pub generation: i64,
    /// The connection's token; `None` for a connection recorded before tokens were
    /// sealed, whose token was derived from the store's key.
    pub token: Option<ConnectionToken>,
}

/// A reused connection's token as the store keeps it: random, and sealed under a key
/// the store never holds (`oauth.secrets_key_file` / `AUTHGATE_OAUTH__SECRETS_KEYS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionToken {
    /// Its hash, as in the tokens table.
    pub hash: TokenHash,
    /// The id of the key it is sealed under.
    pub key_id: String,
    /// Nonce, ciphertext and tag, bound to the connection, generation and hash (see
    /// `oauth::reuse`).
    pub sealed: Vec<u8>,
}

/// A stored authorization code (by hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub hash: TokenHash,
    pub client_id: String,
    pub redirect_uri: String,
    /// The PKCE S256 challenge, if the request had one.
    pub code_challenge: Option<String>,
    pub scope: String,
    pub subject: String,
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Tokens issued from this code carry this family.
    pub family: String,
    pub expires_at: i64,
    /// The `device_id` of the authorization request (connection reuse).
    pub device_id: Option<String>,
}

impl CodeRecord {
    /// The `redirect_uri` the authorization request carried; `None` when it had none
    /// (stored as an empty string), so the token request need not repeat it (RFC 6749
    /// §4.1.3).
    pub fn requested_redirect_uri(&self) -> Option<&str> {
        Some(self.redirect_uri.as_str()).filter(|u| !u.is_empty())
    }
}

/// Result of redeeming a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeem {
    /// First use: the code is now spent.
    Fresh(Box<CodeRecord>),
    /// Already used: a replay. Every token issued from it was revoked (RFC 6749 §4.1.2).
    Replayed { family: String },
    /// The caller's check refused the code; it was spent only if the refusal said
    /// [`CodeRefusal::Burn`]. Nothing was revoked.
    Refused(CodeRefusal),
    /// Unknown or expired.
    Invalid,
}

/// What the check passed to [`Store::redeem_code`] decided about a code it refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefusal {
    /// Leave the code as it was: whoever presented it may not spend it.
    Keep,
    /// Spend the code without issuing anything: its owner got the exchange wrong.
    Burn,
}

/// The check [`Store::redeem_code`] runs on a code inside its transaction, before it
/// is spent or a replay revokes anything.
pub type CodeCheck<'a> = &'a (dyn Fn(&CodeRecord) -> Result<(), CodeRefusal> + Sync);

/// One entry of the revocation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One token.
    Token(TokenHash),
    /// Every token of a grant.
    Family(String),
    /// Every token of a client.
    Client(String),
    /// Every token acting for a user (the user was removed).
    Subject(String),
}

/// A user managed in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// `{"scopes": "...", "resources": {...}}`.
    pub settings: serde_json::Value,
    pub created_at: i64,
}

/// The storage interface.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// The token MAC key; created on first use, shared by all instances of this store.
    async fn token_key(&self) -> Result<SecretKey, StoreError>;

    /// Stores a new client; [`StoreError::Conflict`] if the id exists.
    async fn insert_client(&self, client: &ClientRecord) -> Result<(), StoreError>;
    async fn get_client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError>;
    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// Replaces the secret hash; false if there is no such client.
    async fn set_client_secret(&self, id: &str, secret_hash: &str) -> Result<bool, StoreError>;
    /// Deletes a client and revokes its tokens; false if there is no such client.
    async fn delete_client(&self, id: &str, now: i64) -> Result<bool, StoreError>;

    /// A reused connection (`reuse_tokens`) as recorded; `None` if no token was ever
    /// issued for it.
    async fn connection(&self, key: &str) -> Result<Option<ConnectionRecord>, StoreError>;
    /// Gives connection `key` the token `record`, sealed as `sealed`, at `generation`,
    /// and stores `record`, in one transaction, provided the connection is still as the
    /// caller read it: at generation `expected`, or not recorded (`None`). Otherwise
    /// nothing is written and the answer is false (another authorization came first).
    async fn renew_connection(
        &self,
        key: &str,
        expected: Option<i64>,
        generation: i64,
        sealed: &ConnectionToken,
        record: &TokenRecord,
    ) -> Result<bool, StoreError>;
    /// Replaces the sealed form of a connection's current token (re-sealed under another
    /// key), provided the connection still holds that token (`sealed.hash`) at
    /// `generation`; false if it moved on.
    async fn reseal_connection(
        &self,
        key: &str,
        generation: i64,
        sealed: &ConnectionToken,
    ) -> Result<bool, StoreError>;
    /// Gives an existing token a new grant (scope, bound resources, family): a reused
    /// connection re-authorized with other choices.
    async fn regrant_token(
        &self,
        hash: &TokenHash,
        scope: &str,
        extra: &serde_json::Map<String, serde_json::Value>,
        family: &str,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Client ids that hold unrevoked tokens.
    async fn clients_with_tokens(&self) -> Result<Vec<String>, StoreError>;
    /// Subjects (users, accounts, what clients act for) of unrevoked tokens and of
    /// unspent codes, each once, in order.
    async fn subjects_with_tokens(&self) -> Result<Vec<String>, StoreError>;

    /// Stores tokens in one transaction.
    async fn insert_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError>;
    async fn get_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError>;
    /// Revokes a token; for a refresh token, every token of its grant (family). Returns
    /// the token as it was, or `None` if unknown.
    async fn revoke_token(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError>;
    /// Revokes every active token of a family; returns how many.
    async fn revoke_family(&self, family: &str, now: i64) -> Result<u64, StoreError>;
    /// Atomically exchanges refresh token `old` for `new` (see [`Rotation`]). With
    /// `keep_old`, the old refresh token stays usable (no rotation) and only `new` is
    /// stored.
    async fn rotate_refresh(
        &self,
        old: &TokenHash,
        new: &[TokenRecord],
        keep_old: bool,
        now: i64,
    ) -> Result<Rotation, StoreError>;
    /// Stores a new user; [`StoreError::Conflict`] if the name exists.
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Replaces a user's password hash; false if there is no such user.
    async fn set_user_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError>;
    /// Deletes a user and revokes every token acting for them; false if unknown.
    async fn delete_user(&self, name: &str, now: i64) -> Result<bool, StoreError>;

    /// Stores a new authorization code.
    async fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError>;
    /// Spends a code atomically (see [`Redeem`]); on a replay, revokes its family and
    /// marks the code replayed. `check` (who presents the code, and how) runs first, in
    /// the same transaction: a code it refuses is neither spent (unless it says
    /// [`CodeRefusal::Burn`]) nor counted as replayed. It must depend on the record
    /// alone: a backend that retries the transaction runs it again.
    async fn redeem_code(
        &self,
        hash: &TokenHash,
        now: i64,
        check: CodeCheck<'_>,
    ) -> Result<Redeem, StoreError>;
    /// Whether a spent code has been presented again since.
    async fn code_replayed(&self, hash: &TokenHash) -> Result<bool, StoreError>;

    /// Spends a single-use value (by hash; the authorize page's CSRF values) that
    /// expires at `expires_at`: true the first time, false ever after (until the sweep
    /// deletes it past its expiry, when the value is refused anyway). Atomic: of two
    /// concurrent calls, on any instance sharing the store, exactly one gets true.
    async fn spend_nonce(&self, hash: &TokenHash, expires_at: i64) -> Result<bool, StoreError>;

    /// Revocations logged after `seq`, with the newest sequence number (pass it next
    /// time). `seq = None` returns no entries, only the current newest number.
    async fn revocations_since(
        &self,
        seq: Option<i64>,
    ) -> Result<(i64, Vec<Revocation>), StoreError>;
    /// A wake-up for whoever follows the revocation log: notified when a revocation
    /// was committed elsewhere and after the notification channel (re)subscribed, so
    /// the log is read at once instead of at the next poll. `None`: poll only (SQLite).
    fn revocation_feed(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
    /// Deletes, in batches of `batch` rows, tokens and codes that expired or were
    /// revoked before `before`, and revocation log entries logged before `log_before`
    /// (unix seconds). Returns how many rows went, or `None` if another instance is
    /// sweeping right now.
    async fn sweep(
        &self,
        before: i64,
        log_before: i64,
        batch: u32,
    ) -> Result<Option<u64>, StoreError>;
    /// Tokens, newest first, optionally for one client.
    async fn list_tokens(
        &self,
        client_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>, StoreError>;
}

/// Connection pool settings (`store.pool_size`, `store.connect_timeout`,
/// `store.query_timeout`).
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections at most (PostgreSQL; SQLite uses 4, its writes serialize anyway).
    pub max_connections: u32,
    /// How long to wait for a connection before the store counts as unavailable.
    pub connect_timeout: Duration,
    /// How long one statement may run (PostgreSQL `statement_timeout`).
    pub query_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> PoolOptions {
        PoolOptions {
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(5),
        }
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    // The userinfo ends at the last '@' (a password may hold '/', '?' or '@').
    if let Some(start) = out.find("://").map(|i| i + 3) {
        if let Some(at) = out[start..].rfind('@').map(|i| start + i) {
            let user_end = out[start..at].find(':').map_or(at, |i| start + i);
            if user_end < at {
                out.replace_range(user_end + 1..at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let query: Vec<String> = out[q + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.replace_range(q + 1.., &query.join("&"));
    }
    out
}

/// Opens the store named by `url` with default pool settings and runs its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, &PoolOptions::default()).await
}

/// Opens the store named by `url` and runs its migrations.
pub async fn open_with(url: &str, pool: &PoolOptions) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(sqlite::SqliteStore::open(url, pool).await?));
    }
    if is_postgres(url) {
        return Ok(Arc::new(postgres::PgStore::open(url, pool).await?));
    }
    Err(StoreError::Open {
        url: redact_url(url),
        reason: "unsupported scheme: use sqlite://PATH or postgres://…".into(),
    })
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod redact_tests {
    #[test]
    fn passwords_never_survive_redaction() {
        for (url, shown) in [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:ab/cd?e@f@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            (
                "postgres://u@h/db?password=x&sslmode=require",
                "postgres://u@h/db?password=***&sslmode=require",
            ),
            ("postgres://h/db", "postgres://h/db"),
            ("sqlite://data/a.db", "sqlite://data/a.db"),
        ] {
            assert_eq!(super::redact_url(url), shown);
        }
    }
}
