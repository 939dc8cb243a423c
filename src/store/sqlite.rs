//! SQLite backend: one file (`sqlite://data/authgate.db`), created with its folder on
//! first start, WAL journal, `synchronous = FULL` (a commit is on disk when it returns).
//!
//! New tokens are written with group commit: [`Store::insert_tokens`] hands its rows
//! to one writer task, which takes every request waiting at that moment, inserts them
//! all in one transaction and answers each caller once that transaction is on disk.
//! A commit costs one fsync (about 1 ms here) whether it holds one token or hundreds,
//! so issuance is not capped at one token per fsync, and no token is answered before
//! it is durable.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`: it takes the write lock
//! first (waiting up to the busy timeout), so it never reads under a snapshot that a
//! concurrent writer then invalidates. A deferred transaction that reads first and
//! writes second fails at once with "database is locked" when another connection wrote
//! in between (the busy handler cannot help there), which is how revocations failed
//! under concurrent issuance. What still conflicts is retried ([`retry`]).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::retry;
use super::rows::{self, sql, TOKEN_COLUMNS};
use super::{
    redact_url, ClientRecord, CodeRecord, ConnectionRecord, ConnectionToken, PoolOptions, Redeem,
    Revocation, Rotation, Store, StoreError, TokenKind, TokenRecord, UserRecord,
};
use crate::secret::SecretKey;
use crate::token::TokenHash;

/// The SQLite store.
pub struct SqliteStore {
    pool: SqlitePool,
    /// The group-commit writer's queue.
    inserts: mpsc::UnboundedSender<PendingInsert>,
}

/// Rows waiting for the group-commit writer, and who to tell when they are on disk.
struct PendingInsert {
    tokens: Vec<TokenRecord>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// Requests joined into one transaction at most.
const GROUP_COMMIT_MAX: usize = 512;

/// The group-commit writer: runs until the store is dropped.
async fn write_tokens(pool: SqlitePool, mut queue: mpsc::UnboundedReceiver<PendingInsert>) {
    let mut batch = Vec::with_capacity(GROUP_COMMIT_MAX);
    while queue.recv_many(&mut batch, GROUP_COMMIT_MAX).await > 0 {
        let all = batch.iter().flat_map(|p| p.tokens.iter());
        match insert_committed(&pool, all).await {
            Ok(()) => {
                for p in batch.drain(..) {
                    let _ = p.done.send(Ok(()));
                }
            }
            Err(e) if batch.len() == 1 || matches!(e, StoreError::Contended(_)) => {
                // Alone, or the lock stayed held through every retry (another process
                // holds it): the whole batch fails, rather than each request waiting
                // out the retries again one by one.
                let reason = e.to_string();
                for p in batch.drain(..) {
                    let _ = p.done.send(Err(StoreError::Contended(reason.clone())));
                }
            }
            Err(_) => {
                // One request's rows failed the whole transaction: commit each request
                // on its own, so that only the faulty one fails. Requests whose caller
                // has gone (cancelled) are skipped: nobody would receive their tokens.
                for p in batch.drain(..) {
                    if p.done.is_closed() {
                        continue;
                    }
                    let _ = p.done.send(insert_committed(&pool, p.tokens.iter()).await);
                }
            }
        }
    }
}

async fn insert_committed<'a>(
    pool: &SqlitePool,
    tokens: impl Iterator<Item = &'a TokenRecord>,
) -> Result<(), StoreError> {
    let tokens: Vec<&TokenRecord> = tokens.collect();
    retry::retry("insert_tokens", || async {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        insert_rows(&mut tx, &tokens).await?;
        tx.commit().await?;
        Ok(())
    })
    .await
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and migrates it.
    pub async fn open(url: &str, pool: &PoolOptions) -> Result<SqliteStore, StoreError> {
        let fail = |reason: String| StoreError::Open {
            url: redact_url(url),
            reason,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| fail(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let file = options.get_filename();
        if file != Path::new(":memory:") {
            private_files(file).map_err(fail)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(pool.connect_timeout)
            .connect_with(options)
            .await
            .map_err(|e| fail(e.to_string()))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| fail(format!("migration failed: {e}")))?;
        // Prove the file is writable now rather than at the first token.
        sqlx::query("INSERT OR IGNORE INTO settings (name, value) VALUES ('created', x'00')")
            .execute(&pool)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (inserts, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_tokens(pool.clone(), queue));
        Ok(SqliteStore { pool, inserts })
    }
}

/// Creates the database's folder (0700) and file (0600) if they are missing, and warns
/// when existing ones are open to other users: the file holds the key that signs tokens
/// and CSRF values, and every token hash. SQLite gives its `-wal` and `-shm` files the
/// database file's permissions, so they follow.
fn private_files(file: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        warn_if_open_to_others(dir, "folder", 0o700);
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        // An empty file is an empty SQLite database.
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_open_to_others(file, "file", 0o600);
        }
        Err(e) => return Err(format!("cannot create {}: {e}", file.display())),
    }
    // Warns when `path` grants anything to group or others.
    fn warn_if_open_to_others(path: &Path, what: &str, wanted: u32) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the store's {what} is open to other users (it holds the token signing key and every token hash); chmod {wanted:o} it",
            );
        }
    }
    Ok(())
}

/// Appends to the revocation log inside the caller's transaction.
async fn log_revocation(
    tx: &mut sqlx::SqliteConnection,
    what: &Revocation,
    now: i64,
) -> Result<(), StoreError> {
    let (hash, family, client, subject) = rows::revocation_columns(what);
    sqlx::query(
        "INSERT INTO revocations (hash, family, client_id, subject, at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(hash)
    .bind(family)
    .bind(client)
    .bind(subject)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn insert_tokens_in(
    tx: &mut sqlx::SqliteConnection,
    tokens: &[TokenRecord],
) -> Result<(), StoreError> {
    let tokens: Vec<&TokenRecord> = tokens.iter().collect();
    insert_rows(tx, &tokens).await
}

/// Rows per multi-row `INSERT`. Every statement is a round trip to the connection's
/// thread (two thread wake-ups), so a group commit of 40 tokens takes four statements
/// (16, 16, 4, 4) rather than 40; and each size is one statement in the connection's
/// statement cache, whatever the batch. 12 columns × 64 rows stays well under SQLite's
/// 999-parameter floor.
const INSERT_CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// `INSERT INTO tokens … VALUES (…), (…)` for each of [`INSERT_CHUNKS`].
static INSERT_SQL: std::sync::LazyLock<[String; 4]> = std::sync::LazyLock::new(|| {
    INSERT_CHUNKS.map(|rows| {
        let one = format!("({})", ["?"; 12].join(", "));
        format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES {}",
            vec![one; rows].join(", ")
        )
    })
});

async fn insert_rows(
    tx: &mut sqlx::SqliteConnection,
    tokens: &[&TokenRecord],
) -> Result<(), StoreError> {
    let mut rest = tokens;
    while !rest.is_empty() {
        let (shape, rows) = INSERT_CHUNKS
            .iter()
            .enumerate()
            .find(|(_, &rows)| rows <= rest.len())
            .map(|(i, &rows)| (i, rows))
            .unwrap_or((INSERT_CHUNKS.len() - 1, 1));
        let (now, later) = rest.split_at(rows);
        let mut query = sqlx::query(INSERT_SQL[shape].as_str());
        for t in now {
            query = query
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
                .bind(t.used_at);
        }
        query.execute(&mut *tx).await?;
        rest = later;
    }
    Ok(())
}

/// Single attempts of the writes that [`retry::retry`] repeats on a conflict.
impl SqliteStore {
    async fn token_key_once(&self) -> Result<SecretKey, StoreError> {
        let fresh = crate::token::new_key();
        sqlx::query("INSERT OR IGNORE INTO settings (name, value) VALUES ('token_key', ?)")
            .bind(&fresh.expose()[..])
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE name = 'token_key'")
            .fetch_one(&self.pool)
            .await?;
        let bytes: Vec<u8> = row.try_get("value")?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(SecretKey::new)
            .map_err(|_| StoreError::Corrupt("token key is not 32 bytes".into()))
    }

    async fn insert_client_once(&self, c: &ClientRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO clients (id, secret_hash, name, settings, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(&c.secret_hash)
        .bind(&c.name)
        .bind(c.settings.to_string())
        .bind(c.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("client {:?}", c.id)),
            other => other,
        })?;
        Ok(())
    }

    async fn set_client_secret_once(
        &self,
        id: &str,
        secret_hash: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE clients SET secret_hash = ? WHERE id = ?")
            .bind(secret_hash)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_client_once(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE tokens SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM clients WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        log_revocation(&mut tx, &Revocation::Client(id.to_owned()), now).await?;
        tx.commit().await?;
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
        // Beside the group-commit writer: the token must commit with the connection's
        // move to it, or not at all.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let claim = match expected {
            None => sqlx::query(sql::INSERT_CONNECTION)
                .bind(key)
                .bind(generation)
                .bind(&sealed.hash.0[..])
                .bind(&sealed.key_id)
                .bind(&sealed.sealed),
            Some(from) => sqlx::query(sql::RENEW_CONNECTION)
                .bind(generation)
                .bind(&sealed.hash.0[..])
                .bind(&sealed.key_id)
                .bind(&sealed.sealed)
                .bind(key)
                .bind(from),
        };
        if claim.execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(false);
        }
        insert_rows(&mut tx, &[record]).await?;
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
            .bind(key)
            .bind(generation)
            .bind(&sealed.hash.0[..])
            .execute(&self.pool)
            .await?;
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
        // Logged like a revocation, so other processes drop the old grant at once.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE tokens SET scope = ?, extra = ?, family = ? WHERE hash = ?")
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

    async fn revoke_token_once(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?"
        ))
        .bind(&hash.0[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(record) = row.as_ref().map(rows::token).transpose()? else {
            return Ok(None);
        };
        // A refresh token stands for its whole grant (RFC 7009 §2.1): revoke the family,
        // including access tokens issued with earlier refresh tokens of the same grant.
        let query = match record.kind {
            TokenKind::Refresh => sqlx::query(
                "UPDATE tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(&record.family),
            TokenKind::Access => sqlx::query(
                "UPDATE tokens SET revoked_at = ? WHERE hash = ? AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(&hash.0[..]),
        };
        query.execute(&mut *tx).await?;
        let logged = match record.kind {
            TokenKind::Refresh => Revocation::Family(record.family.clone()),
            TokenKind::Access => Revocation::Token(*hash),
        };
        log_revocation(&mut tx, &logged, now).await?;
        tx.commit().await?;
        Ok(Some(record))
    }

    async fn revoke_family_once(&self, family: &str, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(family)
                .execute(&mut *tx)
                .await?;
        log_revocation(&mut tx, &Revocation::Family(family.to_owned()), now).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn rotate_refresh_once(
        &self,
        old: &TokenHash,
        new: &[TokenRecord],
        keep_old: bool,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        // BEGIN IMMEDIATE takes the write lock first, so two concurrent exchanges of the
        // same refresh token serialize: exactly one sees it unused. The transaction is
        // tracked by sqlx, so a cancelled request rolls back instead of leaving the
        // connection holding the lock.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ? AND kind = 'refresh'"
        ))
        .bind(&old.0[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(record) = row.as_ref().map(rows::token).transpose()? else {
            return Ok(Rotation::Invalid);
        };
        if record.used_at.is_some() {
            sqlx::query("UPDATE tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(&record.family)
                .execute(&mut *tx)
                .await?;
            log_revocation(&mut tx, &Revocation::Family(record.family.clone()), now).await?;
            tx.commit().await?;
            return Ok(Rotation::Reused {
                family: record.family,
            });
        }
        if !record.is_active(now) {
            return Ok(Rotation::Invalid);
        }
        if !keep_old {
            sqlx::query("UPDATE tokens SET used_at = ? WHERE hash = ?")
                .bind(now)
                .bind(&old.0[..])
                .execute(&mut *tx)
                .await?;
        }
        insert_tokens_in(&mut tx, new).await?;
        tx.commit().await?;
        Ok(Rotation::Rotated)
    }

    async fn insert_user_once(&self, u: &UserRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (name, password_hash, settings, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(u.settings.to_string())
        .bind(u.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("user {:?}", u.name)),
            other => other,
        })?;
        Ok(())
    }

    async fn set_user_password_once(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE name = ?")
            .bind(hash)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user_once(&self, name: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE tokens SET revoked_at = ? WHERE subject = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        // Codes not yet exchanged would otherwise still mint tokens for the removed user.
        sqlx::query("DELETE FROM codes WHERE subject = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM users WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        log_revocation(&mut tx, &Revocation::Subject(name.to_owned()), now).await?;
        tx.commit().await?;
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
             extra, family, expires_at, device_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    async fn sweep_once(
        &self,
        before: i64,
        log_before: i64,
        batch: u32,
    ) -> Result<Option<u64>, StoreError> {
        // One process writes this file; each batch commits on its own so requests can
        // write between batches.
        let mut deleted = 0;
        for (statement, limit) in [
            (sql::SWEEP_TOKENS, before),
            (sql::SWEEP_CODES, before),
            (sql::SWEEP_NONCES, before),
            (sql::SWEEP_LOG, log_before),
        ] {
            loop {
                let done = sqlx::query(statement)
                    .bind(limit)
                    .bind(i64::from(batch))
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                deleted += done;
                if done < u64::from(batch) {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(Some(deleted))
    }
}

/// Single attempts of the writes that [`retry::retry`] repeats on a conflict.
impl SqliteStore {
    async fn redeem_code_once(
        &self,
        hash: &TokenHash,
        now: i64,
        check: super::CodeCheck<'_>,
    ) -> Result<Redeem, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = sqlx::query("SELECT * FROM codes WHERE hash = ?")
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
                sqlx::query("UPDATE codes SET used_at = ? WHERE hash = ?")
                    .bind(now)
                    .bind(&hash.0[..])
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            return Ok(Redeem::Refused(refusal));
        }
        if used_at.is_some() {
            sqlx::query("UPDATE tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(&code.family)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE codes SET replayed_at = ? WHERE hash = ?")
                .bind(now)
                .bind(&hash.0[..])
                .execute(&mut *tx)
                .await?;
            log_revocation(&mut tx, &Revocation::Family(code.family.clone()), now).await?;
            tx.commit().await?;
            return Ok(Redeem::Replayed {
                family: code.family,
            });
        }
        if now >= code.expires_at {
            return Ok(Redeem::Invalid);
        }
        sqlx::query("UPDATE codes SET used_at = ? WHERE hash = ?")
            .bind(now)
            .bind(&hash.0[..])
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Redeem::Fresh(Box::new(code)))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn token_key(&self) -> Result<SecretKey, StoreError> {
        retry::retry("token_key", move || self.token_key_once()).await
    }

    async fn insert_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
        retry::retry("insert_client", move || self.insert_client_once(c)).await
    }

    async fn get_client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        sqlx::query("SELECT * FROM clients WHERE id = ?")
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
        sqlx::query(sql::CONNECTION)
            .bind(key)
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
        let (done, committed) = oneshot::channel();
        let pending = PendingInsert {
            tokens: tokens.to_vec(),
            done,
        };
        let stopped = || StoreError::Unavailable("the token writer has stopped".into());
        self.inserts.send(pending).map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }

    async fn get_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?"
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
        sqlx::query("SELECT * FROM users WHERE name = ?")
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
        let row = sqlx::query("SELECT replayed_at FROM codes WHERE hash = ?")
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
        let Some(after) = seq else {
            return Ok((latest, Vec::new()));
        };
        if after >= latest {
            return Ok((latest, Vec::new()));
        }
        let rows = sqlx::query(
            "SELECT seq, hash, family, client_id, subject FROM revocations WHERE seq > ? AND seq <= ? ORDER BY seq",
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
        // Not retried: each batch commits on its own, the sweep runs again later, and a
        // failure is only logged.
        self.sweep_once(before, log_before, batch).await
    }

    async fn list_tokens(
        &self,
        client_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = match client_id {
            Some(c) => sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE client_id = ? ORDER BY issued_at DESC LIMIT ?"
            ))
            .bind(c)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
            None => sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY issued_at DESC LIMIT ?"
            ))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        };
        rows.iter().map(rows::token).collect()
    }
}
