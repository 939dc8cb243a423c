//! PostgreSQL backend (`postgres://…`): the store an edge tier of several instances
//! shares. Also what speaks its protocol (managed PostgreSQL; see the README for
//! distributed databases).
//!
//! - Migrations run at start on their own connection under sqlx's advisory lock, so
//!   instances starting at once migrate one after the other.
//! - Every revocation appends to the revocation log under a transaction-level advisory
//!   lock (so log order is commit order and followers never skip an entry) and sends
//!   `NOTIFY authgate_revocations`, delivered at commit. [`Store::revocation_feed`]
//!   turns those notifications, and every (re)subscription, into a wake-up for the
//!   token table, which then reads the log: a notification lost while disconnected
//!   costs nothing, the log has the entry.
//! - The expired-row sweep runs on one instance at a time (a session advisory lock,
//!   held on a connection of its own and released by closing it).
//! - Writers of a grant take advisory locks keyed by its client, subject and family
//!   (shared to add tokens, exclusive to revoke them), always in key order. Under READ
//!   COMMITTED an UPDATE only sees rows committed before it started, so without them a
//!   family, client or user revocation could miss the tokens a rotation running at the
//!   same moment inserts; with them, the revocation waits for the insert and sees it.
//! - Deadlocks (`40P01`) and serialization failures (`40001`) roll the transaction back
//!   and it runs again whole ([`retry`]); the caller sees an error only if they persist.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::Notify;

use super::retry;
use super::rows::{self, sql, TOKEN_COLUMNS};
use super::{
    redact_url, ClientRecord, CodeRecord, ConnectionRecord, ConnectionToken, PoolOptions, Redeem,
    Revocation, Rotation, Store, StoreError, TokenKind, TokenRecord, UserRecord,
};
use crate::secret::SecretKey;
use crate::token::TokenHash;

/// The NOTIFY channel revocations are announced on.
pub const CHANNEL: &str = "authgate_revocations";
/// Advisory lock keys (any constants unlikely to collide with an application's own).
const REVOCATION_LOCK: i64 = 0x6175_7468_6761_7401; // "authgat" 01
const SWEEP_LOCK: i64 = 0x6175_7468_6761_7402;

/// The PostgreSQL store.
pub struct PgStore {
    pool: PgPool,
    options: PgConnectOptions,
    /// The LISTEN task, started by the first [`Store::revocation_feed`] call.
    feed: Mutex<Option<(Arc<Notify>, tokio::task::JoinHandle<()>)>>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Ok(mut feed) = self.feed.lock() {
            if let Some((_, task)) = feed.take() {
                task.abort();
            }
        }
    }
}

impl PgStore {
    /// Connects to `url`, migrates the schema (one instance at a time) and checks that
    /// the database accepts writes.
    pub async fn open(url: &str, pool: &PoolOptions) -> Result<PgStore, StoreError> {
        let fail = |reason: String| StoreError::Open {
            url: redact_url(url),
            reason,
        };
        let statement_timeout = pool.query_timeout.as_millis().to_string();
        let base = PgConnectOptions::from_str(url)
            .map_err(|e| fail(e.to_string()))?
            .application_name("authgate");
        // READ COMMITTED whatever the server's default: the grant locks below rely on an
        // UPDATE seeing rows committed while it waited for a lock, which REPEATABLE READ
        // and SERIALIZABLE snapshots (taken at the first statement) would not.
        let options = base.clone().options([
            ("statement_timeout", statement_timeout.as_str()),
            // The startup `options` split on spaces; a backslash escapes one.
            ("default_transaction_isolation", "read\\ committed"),
        ]);
        // Migrations on a connection of their own: closing it releases sqlx's advisory
        // lock even if a migration fails half-way. No statement timeout there: waiting
        // for another instance's migration, or building an index, may take longer.
        let mut conn = tokio::time::timeout(pool.connect_timeout, base.connect())
            .await
            .map_err(|_| fail(format!("no answer within {:?}", pool.connect_timeout)))?
            .map_err(|e| fail(e.to_string()))?;
        let migrated = sqlx::migrate!("./migrations/postgres").run(&mut conn).await;
        let _ = conn.close().await;
        migrated.map_err(|e| fail(format!("migration failed: {e}")))?;
        let pg = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.connect_timeout)
            .test_before_acquire(true)
            .idle_timeout(Duration::from_secs(300))
            .connect_with(options.clone())
            .await
            .map_err(|e| fail(e.to_string()))?;
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('created', '\\x00') \
             ON CONFLICT (name) DO NOTHING",
        )
        .execute(&pg)
        .await
        .map_err(|e| fail(e.to_string()))?;
        Ok(PgStore {
            pool: pg,
            options,
            feed: Mutex::new(None),
        })
    }

    /// The isolation level a transaction of this store runs at.
    pub async fn isolation(&self) -> Result<String, StoreError> {
        let mut tx = self.pool.begin().await?;
        let level: String = sqlx::query_scalar("SHOW transaction_isolation")
            .fetch_one(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(level)
    }

    async fn sweep_locked(
        conn: &mut PgConnection,
        before: i64,
        log_before: i64,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for statement in [sql::SWEEP_TOKENS, sql::SWEEP_CODES, sql::SWEEP_NONCES] {
            deleted += sweep_batches(conn, statement, before, batch).await?;
        }
        deleted += sweep_batches(conn, sql::SWEEP_LOG, log_before, batch).await?;
        Ok(deleted)
    }
}

/// Runs a bounded DELETE until it deletes less than a batch; each batch commits alone.
async fn sweep_batches(
    conn: &mut PgConnection,
    statement: &str,
    before: i64,
    batch: u32,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let done = sqlx::query(statement)
            .bind(before)
            .bind(i64::from(batch))
            .execute(&mut *conn)
            .await?
            .rows_affected();
        total += done;
        if done < u64::from(batch) {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Follows `NOTIFY authgate_revocations` and wakes `feed` for each notification and
/// after each (re)subscription, reconnecting with backoff after a lost connection.
async fn listen(options: PgConnectOptions, feed: Arc<Notify>) {
    // A pool of one of its own, so LISTEN never takes a connection from requests.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options);
    let mut backoff = Duration::from_millis(100);
    let mut lost = false;
    loop {
        let subscribed = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            // Reconnection is done here, so every reconnection is followed by a log read.
            listener.eager_reconnect(false);
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match subscribed {
            Ok(l) => l,
            Err(e) => {
                if !lost {
                    tracing::warn!(error = %e, "cannot subscribe to revocation notifications; following the revocation log by polling");
                    lost = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        if lost {
            tracing::info!("revocation notifications resumed");
        }
        // Anything revoked while we were not subscribed is in the log: read it now.
        feed.notify_one();
        loop {
            // A half-open connection (a NAT or load balancer forgot it) never errors by
            // itself: check it every 30 s.
            let next = tokio::time::timeout(Duration::from_secs(30), listener.try_recv()).await;
            match next {
                Ok(Ok(Some(_))) => feed.notify_one(),
                Ok(Ok(None)) => {
                    tracing::warn!("lost the revocation notification connection; reconnecting");
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "revocation notification connection failed; reconnecting");
                    break;
                }
                Err(_) => {
                    let ping = sqlx::query("SELECT 1").execute(&mut listener);
                    if !matches!(
                        tokio::time::timeout(Duration::from_secs(5), ping).await,
                        Ok(Ok(_))
                    ) {
                        tracing::warn!(
                            "revocation notification connection stopped answering; reconnecting"
                        );
                        break;
                    }
                    // Up for a while: the next loss starts the backoff from the bottom.
                    backoff = Duration::from_millis(100);
                }
            }
        }
        lost = true;
        // Read the log now too: a notification may have been lost with the connection.
        feed.notify_one();
        tokio::time::sleep(backoff).await;
    }
}

/// What a transaction is about to write, for [`lock`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Hold {
    /// Adds tokens: any number of these at once.
    Shared,
    /// Revokes: alone.
    Exclusive,
}

/// The advisory lock key for one client (`c`), subject (`s`) or family (`f`).
fn lock_key(kind: &str, value: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"authgate\0")
        .chain_update(kind.as_bytes())
        .chain_update(b"\0")
        .chain_update(value.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The keys of every grant `tokens` belong to.
fn token_keys(tokens: &[TokenRecord], hold: Hold, family_hold: Hold) -> Vec<(i64, Hold)> {
    let mut keys = Vec::with_capacity(tokens.len() * 3);
    for t in tokens {
        keys.push((lock_key("c", &t.client_id), hold));
        if let Some(s) = &t.subject {
            keys.push((lock_key("s", s), hold));
        }
        keys.push((lock_key("f", &t.family), family_hold));
    }
    keys
}

/// Takes transaction-level advisory locks in key order (so two transactions never wait
/// for each other in opposite orders); a key wanted both ways is taken exclusively.
async fn lock(tx: &mut PgConnection, mut keys: Vec<(i64, Hold)>) -> Result<(), StoreError> {
    keys.sort();
    keys.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 = earlier.1.max(later.1);
            true
        } else {
            false
        }
    });
    for (key, hold) in keys {
        let statement = match hold {
            Hold::Shared => "SELECT pg_advisory_xact_lock_shared($1)",
            Hold::Exclusive => "SELECT pg_advisory_xact_lock($1)",
        };
        sqlx::query(statement).bind(key).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Appends to the revocation log inside the caller's transaction and announces it at
/// commit. The advisory lock is held until commit, so log entries commit in `seq`
/// order and a follower that has read up to `seq` never sees an older one appear.
async fn log_revocation(
    tx: &mut PgConnection,
    what: &Revocation,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(REVOCATION_LOCK)
        .execute(&mut *tx)
        .await?;
    let (hash, family, client, subject) = rows::revocation_columns(what);
    sqlx::query(
        "WITH r AS (INSERT INTO revocations (hash, family, client_id, subject, at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING seq) \
         SELECT pg_notify($6, seq::text) FROM r",
    )
    .bind(hash)
    .bind(family)
    .bind(client)
    .bind(subject)
    .bind(now)
    .bind(CHANNEL)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn insert_tokens_in(tx: &mut PgConnection, tokens: &[TokenRecord]) -> Result<(), StoreError> {
    lock(tx, token_keys(tokens, Hold::Shared, Hold::Shared)).await?;
    for t in tokens {
        sqlx::query(&format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&t.hash.0[..])
        .bind(t.kind.as_str())
        .bind(&t.client_id)
        .bind(&t.subject)
        .bind(&t.scope)
        .bind(&t.family)
        .bind(t.parent.as_ref().map(|p| p.0.to_vec()))
        .bind(serde_json::Value::Object(t.extra.clone()).to_string())
        .bind(t.issued_at)
        .bind(t.expires_at)
        .bind(t.revoked_at)
        .bind(t.used_at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn revoke_family_in(
    tx: &mut PgConnection,
    family: &str,
    now: i64,
) -> Result<u64, StoreError> {
    lock(tx, vec![(lock_key("f", family), Hold::Exclusive)]).await?;
    let done =
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(family)
            .execute(&mut *tx)
            .await?;
    log_revocation(tx, &Revocation::Family(family.to_owned()), now).await?;
    Ok(done.rows_affected())
}

fn conflict(e: sqlx::Error, what: String) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(what),
        other => other,
    }
}

/// Single attempts of the writes that [`retry::retry`] repeats on a conflict.
impl PgStore {
    async fn delete_client_once(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, vec![(lock_key("c", id), Hold::Exclusive)]).await?;
        sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM clients WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        log_revocation(&mut tx, &Revocation::Client(id.to_owned()), now).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn regrant_token_once(
        &self,
        hash: &TokenHash,
        scope: &str,
        extra: &serde_json::Map<String, serde_json::Value>,
        family: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        // Logged like a revocation, so other instances drop the old grant from their
        // caches at once. The token moves from its old family to `family`: the grant
        // locks of both (exclusive on the old one, which loses a token, like a
        // revocation) and of its client and subject, in key order, so a family, client
        // or user revocation running now either sees the new grant or waits for it.
        let mut tx = self.pool.begin().await?;
        let current = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"
        ))
        .bind(&hash.0[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current.as_ref().map(rows::token).transpose()? else {
            return Ok(());
        };
        let mut moved = current.clone();
        moved.family = family.to_owned();
        let mut keys = token_keys(
            std::slice::from_ref(&current),
            Hold::Shared,
            Hold::Exclusive,
        );
        keys.extend(token_keys(
            std::slice::from_ref(&moved),
            Hold::Shared,
            Hold::Shared,
        ));
        lock(&mut tx, keys).await?;
        // The family was read before the locks: if a concurrent regrant moved the token
        // meanwhile, these are the wrong locks; roll back and start again.
        let family_now: Option<String> =
            sqlx::query_scalar("SELECT family FROM tokens WHERE hash = $1 FOR UPDATE")
                .bind(&hash.0[..])
                .fetch_optional(&mut *tx)
                .await?;
        if family_now.as_deref() != Some(current.family.as_str()) {
            return Err(StoreError::Contended(
                "the token's grant changed while its locks were taken".into(),
            ));
        }
        sqlx::query("UPDATE tokens SET scope = $1, extra = $2, family = $3 WHERE hash = $4")
            .bind(scope)
            .bind(serde_json::Value::Object(extra.clone()).to_string())
            .bind(family)
            .bind(&hash.0[..])
            .execute(&mut *tx)
            .await?;
        log_revocation(&mut tx, &Revocation::Token(*hash), now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_tokens_once(&self, tokens: &[TokenRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_tokens_in(&mut tx, tokens).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_token_once(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"
        ))
        .bind(&hash.0[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(record) = row.as_ref().map(rows::token).transpose()? else {
            return Ok(None);
        };
        // A refresh token stands for its whole grant (RFC 7009 §2.1). No row lock is
        // taken before the family lock, which rotations take first too.
        match record.kind {
            TokenKind::Refresh => {
                revoke_family_in(&mut tx, &record.family, now).await?;
            }
            TokenKind::Access => {
                sqlx::query(
                    "UPDATE tokens SET revoked_at = $1 WHERE hash = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(&hash.0[..])
                .execute(&mut *tx)
                .await?;
                log_revocation(&mut tx, &Revocation::Token(*hash), now).await?;
            }
        }
        tx.commit().await?;
        Ok(Some(record))
    }

    async fn revoke_family_once(&self, family: &str, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = revoke_family_in(&mut tx, family, now).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn rotate_refresh_once(
        &self,
        old: &TokenHash,
        new: &[TokenRecord],
        keep_old: bool,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        // The grant's locks first (the family exclusively: its rotations and revocations
        // take turns), then the row FOR UPDATE: concurrent exchanges of one refresh token,
        // on any instance, queue; the second reads it after the first committed and sees
        // it used.
        let mut tx = self.pool.begin().await?;
        let grant = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1 AND kind = 'refresh'"
        ))
        .bind(&old.0[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(grant) = grant.as_ref().map(rows::token).transpose()? else {
            return Ok(Rotation::Invalid);
        };
        let mut keys = token_keys(std::slice::from_ref(&grant), Hold::Shared, Hold::Exclusive);
        keys.extend(token_keys(new, Hold::Shared, Hold::Shared));
        lock(&mut tx, keys).await?;
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1 AND kind = 'refresh' FOR UPDATE"
        ))
        .bind(&old.0[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(record) = row.as_ref().map(rows::token).transpose()? else {
            return Ok(Rotation::Invalid);
        };
        if record.used_at.is_some() {
            revoke_family_in(&mut tx, &record.family, now).await?;
            tx.commit().await?;
            return Ok(Rotation::Reused {
                family: record.family,
            });
        }
        if !record.is_active(now) {
            return Ok(Rotation::Invalid);
        }
        if !keep_old {
            sqlx::query("UPDATE tokens SET used_at = $1 WHERE hash = $2")
                .bind(now)
                .bind(&old.0[..])
                .execute(&mut *tx)
                .await?;
        }
        insert_tokens_in(&mut tx, new).await?;
        tx.commit().await?;
        Ok(Rotation::Rotated)
    }

    async fn delete_user_once(&self, name: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, vec![(lock_key("s", name), Hold::Exclusive)]).await?;
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE subject = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        // Codes not yet exchanged would otherwise still mint tokens for the removed user.
        sqlx::query("DELETE FROM codes WHERE subject = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        log_revocation(&mut tx, &Revocation::Subject(name.to_owned()), now).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Single attempts of the writes that [`retry::retry`] repeats on a conflict.
impl PgStore {
    async fn token_key_once(&self) -> Result<SecretKey, StoreError> {
        let fresh = crate::token::new_key();
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('token_key', $1) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&fresh.expose()[..])
        .execute(&self.pool)
        .await?;
        let bytes: Vec<u8> = sqlx::query("SELECT value FROM settings WHERE name = 'token_key'")
            .fetch_one(&self.pool)
            .await?
            .try_get("value")?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(SecretKey::new)
            .map_err(|_| StoreError::Corrupt("token key is not 32 bytes".into()))
    }

    async fn insert_client_once(&self, c: &ClientRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO clients (id, secret_hash, name, settings, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&c.id)
        .bind(&c.secret_hash)
        .bind(&c.name)
        .bind(c.settings.to_string())
        .bind(c.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, format!("client {:?}", c.id)))?;
        Ok(())
    }

    async fn set_client_secret_once(
        &self,
        id: &str,
        secret_hash: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE clients SET secret_hash = $1 WHERE id = $2")
            .bind(secret_hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn renew_connection_once(
        &self,
        key: &str,
        expected: Option<i64>,
        generation: i64,
        sealed: &ConnectionToken,
        record: &TokenRecord,
    ) -> Result<bool, StoreError> {
        // The connection's row first (a concurrent renewal waits here, then finds the
        // generation moved on), then the token under its grant's locks, as every insert.
        let mut tx = self.pool.begin().await?;
        let claim = match expected {
            None => sqlx::query(sql::INSERT_CONNECTION)
                .bind(key.as_bytes())
                .bind(generation)
                .bind(&sealed.hash.0[..])
                .bind(&sealed.key_id)
                .bind(&sealed.sealed),
            Some(from) => sqlx::query(sql::RENEW_CONNECTION)
                .bind(generation)
                .bind(&sealed.hash.0[..])
                .bind(&sealed.key_id)
                .bind(&sealed.sealed)
                .bind(key.as_bytes())
                .bind(from),
        };
        if claim.execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(false);
        }
        insert_tokens_in(&mut tx, std::slice::from_ref(record)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn reseal_connection_once(
        &self,
        key: &str,
        generation: i64,
        sealed: &ConnectionToken,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::RESEAL_CONNECTION)
            .bind(&sealed.key_id)
            .bind(&sealed.sealed)
            .bind(key.as_bytes())
            .bind(generation)
            .bind(&sealed.hash.0[..])
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_user_once(&self, u: &UserRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (name, password_hash, settings, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(u.settings.to_string())
        .bind(u.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, format!("user {:?}", u.name)))?;
        Ok(())
    }

    async fn set_user_password_once(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn spend_nonce_once(
        &self,
        hash: &TokenHash,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::SPEND_NONCE)
            .bind(&hash.0[..])
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_code_once(&self, c: &CodeRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO codes (hash, client_id, redirect_uri, code_challenge, scope, subject, \
             extra, family, expires_at, device_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&c.hash.0[..])
        .bind(&c.client_id)
        .bind(&c.redirect_uri)
        .bind(&c.code_challenge)
        .bind(&c.scope)
        .bind(&c.subject)
        .bind(serde_json::Value::Object(c.extra.clone()).to_string())
        .bind(&c.family)
        .bind(c.expires_at)
        .bind(&c.device_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Single attempts of the writes that [`retry::retry`] repeats on a conflict.
impl PgStore {
    async fn redeem_code_once(
        &self,
        hash: &TokenHash,
        now: i64,
        check: super::CodeCheck<'_>,
    ) -> Result<Redeem, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT * FROM codes WHERE hash = $1 FOR UPDATE")
            .bind(&hash.0[..])
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Redeem::Invalid);
        };
        let code = rows::code(&row)?;
        let used_at: Option<i64> = row.try_get("used_at")?;
        // Before anything else: a code the check refuses is no replay and not spent.
        if let Err(refusal) = check(&code) {
            if refusal == super::CodeRefusal::Burn && used_at.is_none() {
                sqlx::query("UPDATE codes SET used_at = $1 WHERE hash = $2")
                    .bind(now)
                    .bind(&hash.0[..])
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            return Ok(Redeem::Refused(refusal));
        }
        if used_at.is_some() {
            sqlx::query("UPDATE codes SET replayed_at = $1 WHERE hash = $2")
                .bind(now)
                .bind(&hash.0[..])
                .execute(&mut *tx)
                .await?;
            revoke_family_in(&mut tx, &code.family, now).await?;
            tx.commit().await?;
            return Ok(Redeem::Replayed {
                family: code.family,
            });
        }
        if now >= code.expires_at {
            return Ok(Redeem::Invalid);
        }
        sqlx::query("UPDATE codes SET used_at = $1 WHERE hash = $2")
            .bind(now)
            .bind(&hash.0[..])
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Redeem::Fresh(Box::new(code)))
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn revocation_feed(&self) -> Option<Arc<Notify>> {
        let mut feed = self.feed.lock().ok()?;
        let (notify, _) = feed.get_or_insert_with(|| {
            let notify = Arc::new(Notify::new());
            let task = tokio::spawn(listen(self.options.clone(), notify.clone()));
            (notify, task)
        });
        Some(notify.clone())
    }

    async fn token_key(&self) -> Result<SecretKey, StoreError> {
        retry::retry("token_key", move || self.token_key_once()).await
    }

    async fn insert_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
        retry::retry("insert_client", move || self.insert_client_once(c)).await
    }

    async fn get_client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        sqlx::query("SELECT * FROM clients WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::client)
            .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        sqlx::query("SELECT * FROM clients ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rows::client)
            .collect()
    }

    async fn set_client_secret(&self, id: &str, secret_hash: &str) -> Result<bool, StoreError> {
        retry::retry("set_client_secret", move || {
            self.set_client_secret_once(id, secret_hash)
        })
        .await
    }

    async fn delete_client(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        retry::retry("delete_client", move || self.delete_client_once(id, now)).await
    }

    async fn connection(&self, key: &str) -> Result<Option<ConnectionRecord>, StoreError> {
        // Keys are stored as bytes: their parts are separated by NUL, which TEXT refuses.
        sqlx::query(sql::CONNECTION)
            .bind(key.as_bytes())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::connection)
            .transpose()
    }

    async fn renew_connection(
        &self,
        key: &str,
        expected: Option<i64>,
        generation: i64,
        sealed: &ConnectionToken,
        record: &TokenRecord,
    ) -> Result<bool, StoreError> {
        retry::retry("renew_connection", move || {
            self.renew_connection_once(key, expected, generation, sealed, record)
        })
        .await
    }

    async fn reseal_connection(
        &self,
        key: &str,
        generation: i64,
        sealed: &ConnectionToken,
    ) -> Result<bool, StoreError> {
        retry::retry("reseal_connection", move || {
            self.reseal_connection_once(key, generation, sealed)
        })
        .await
    }

    async fn regrant_token(
        &self,
        hash: &TokenHash,
        scope: &str,
        extra: &serde_json::Map<String, serde_json::Value>,
        family: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        retry::retry("regrant_token", move || {
            self.regrant_token_once(hash, scope, extra, family, now)
        })
        .await
    }

    async fn clients_with_tokens(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT client_id FROM tokens WHERE revoked_at IS NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("client_id").map_err(StoreError::from))
            .collect()
    }

    async fn subjects_with_tokens(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(sql::SUBJECTS).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .collect()
    }

    async fn insert_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError> {
        retry::retry("insert_tokens", move || self.insert_tokens_once(tokens)).await
    }

    async fn get_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"
        ))
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(rows::token)
        .transpose()
    }

    async fn revoke_token(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        retry::retry("revoke_token", move || self.revoke_token_once(hash, now)).await
    }

    async fn revoke_family(&self, family: &str, now: i64) -> Result<u64, StoreError> {
        retry::retry("revoke_family", move || {
            self.revoke_family_once(family, now)
        })
        .await
    }

    async fn rotate_refresh(
        &self,
        old: &TokenHash,
        new: &[TokenRecord],
        keep_old: bool,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        retry::retry("rotate_refresh", move || {
            self.rotate_refresh_once(old, new, keep_old, now)
        })
        .await
    }

    async fn insert_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        retry::retry("insert_user", move || self.insert_user_once(u)).await
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query("SELECT * FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::user)
            .transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        sqlx::query("SELECT * FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rows::user)
            .collect()
    }

    async fn set_user_password(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        retry::retry("set_user_password", move || {
            self.set_user_password_once(name, hash)
        })
        .await
    }

    async fn delete_user(&self, name: &str, now: i64) -> Result<bool, StoreError> {
        retry::retry("delete_user", move || self.delete_user_once(name, now)).await
    }

    async fn insert_code(&self, c: &CodeRecord) -> Result<(), StoreError> {
        retry::retry("insert_code", move || self.insert_code_once(c)).await
    }

    async fn redeem_code(
        &self,
        hash: &TokenHash,
        now: i64,
        check: super::CodeCheck<'_>,
    ) -> Result<Redeem, StoreError> {
        retry::retry("redeem_code", move || {
            self.redeem_code_once(hash, now, check)
        })
        .await
    }

    async fn code_replayed(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT replayed_at FROM codes WHERE hash = $1")
            .bind(&hash.0[..])
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<i64>, _>("replayed_at")?.is_some(),
            None => false,
        })
    }

    async fn spend_nonce(&self, hash: &TokenHash, expires_at: i64) -> Result<bool, StoreError> {
        retry::retry("spend_nonce", move || {
            self.spend_nonce_once(hash, expires_at)
        })
        .await
    }

    async fn revocations_since(
        &self,
        seq: Option<i64>,
    ) -> Result<(i64, Vec<Revocation>), StoreError> {
        let latest: Option<i64> = sqlx::query("SELECT MAX(seq) AS m FROM revocations")
            .fetch_one(&self.pool)
            .await?
            .try_get("m")?;
        let latest = latest.unwrap_or(0);
        let Some(after) = seq.filter(|after| *after < latest) else {
            return Ok((latest, Vec::new()));
        };
        let rows = sqlx::query(
            "SELECT hash, family, client_id, subject FROM revocations \
             WHERE seq > $1 AND seq <= $2 ORDER BY seq",
        )
        .bind(after)
        .bind(latest)
        .fetch_all(&self.pool)
        .await?;
        let entries = rows
            .iter()
            .map(rows::revocation)
            .collect::<Result<_, _>>()?;
        Ok((latest, entries))
    }

    async fn sweep(
        &self,
        before: i64,
        log_before: i64,
        batch: u32,
    ) -> Result<Option<u64>, StoreError> {
        // A connection of its own: the session lock goes away with it, whatever happens.
        let mut conn = self.pool.acquire().await?.detach();
        let locked: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind(SWEEP_LOCK)
            .fetch_one(&mut conn)
            .await?
            .try_get("locked")?;
        let result = if locked {
            Self::sweep_locked(&mut conn, before, log_before, batch)
                .await
                .map(Some)
        } else {
            Ok(None)
        };
        let _ = conn.close().await;
        result
    }

    async fn list_tokens(
        &self,
        client_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE ($1::text IS NULL OR client_id = $1) \
             ORDER BY issued_at DESC LIMIT $2"
        ))
        .bind(client_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::token)
        .collect()
    }
}
