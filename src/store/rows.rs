//! Reading records out of rows, shared by both backends: the columns have the same
//! names and the same Rust types (TEXT → `String`, INTEGER/BIGINT → `i64`,
//! BLOB/BYTEA → `Vec<u8>`), so one decoder per record serves SQLite and PostgreSQL.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{
    ClientRecord, CodeRecord, ConnectionRecord, ConnectionToken, Revocation, StoreError, TokenKind,
    TokenRecord, UserRecord,
};
use crate::token::TokenHash;

/// Typed column access by name, for the row types of both backends.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError>;

    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        self.opt_bytes(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
    }
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
                Ok(self.try_get(column)?)
            }
        }
    };
}

columns_for!(SqliteRow);
columns_for!(PgRow);

/// The token columns, in the order [`token`] and the INSERT statements use.
pub(super) const TOKEN_COLUMNS: &str = "hash, kind, client_id, subject, scope, family, \
                                        parent, extra, issued_at, expires_at, revoked_at, used_at";

pub(super) fn hash(bytes: Vec<u8>) -> Result<TokenHash, StoreError> {
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(TokenHash)
        .map_err(|_| StoreError::Corrupt("token hash is not 32 bytes".into()))
}

fn json_object(
    text: &str,
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(StoreError::Corrupt(format!("{what} is not a JSON object"))),
    }
}

fn json(text: &str, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn token(row: &impl Columns) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        hash: hash(row.bytes("hash")?)?,
        kind: TokenKind::parse(&row.text("kind")?)?,
        client_id: row.text("client_id")?,
        subject: row.opt_text("subject")?,
        scope: row.text("scope")?,
        family: row.text("family")?,
        parent: row.opt_bytes("parent")?.map(hash).transpose()?,
        extra: json_object(&row.text("extra")?, "token extra")?,
        issued_at: row.int("issued_at")?,
        expires_at: row.opt_int("expires_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        used_at: row.opt_int("used_at")?,
    })
}

pub(super) fn client(row: &impl Columns) -> Result<ClientRecord, StoreError> {
    Ok(ClientRecord {
        id: row.text("id")?,
        secret_hash: row.opt_text("secret_hash")?,
        name: row.text("name")?,
        settings: json(&row.text("settings")?, "client settings")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn user(row: &impl Columns) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        name: row.text("name")?,
        password_hash: row.text("password_hash")?,
        settings: json(&row.text("settings")?, "user settings")?,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn code(row: &impl Columns) -> Result<CodeRecord, StoreError> {
    Ok(CodeRecord {
        hash: hash(row.bytes("hash")?)?,
        client_id: row.text("client_id")?,
        redirect_uri: row.text("redirect_uri")?,
        code_challenge: row.opt_text("code_challenge")?,
        scope: row.text("scope")?,
        subject: row.text("subject")?,
        extra: json_object(&row.text("extra")?, "code extra")?,
        family: row.text("family")?,
        expires_at: row.int("expires_at")?,
        device_id: row.opt_text("device_id")?,
    })
}

pub(super) fn connection(row: &impl Columns) -> Result<ConnectionRecord, StoreError> {
    let token = match (
        row.opt_bytes("token_hash")?,
        row.opt_text("key_id")?,
        row.opt_bytes("sealed")?,
    ) {
        (None, None, None) => None,
        (Some(h), Some(key_id), Some(sealed)) => Some(ConnectionToken {
            hash: hash(h)?,
            key_id,
            sealed,
        }),
        _ => {
            return Err(StoreError::Corrupt(
                "a connection's token is partly missing".into(),
            ))
        }
    };
    Ok(ConnectionRecord {
        generation: row.int("generation")?,
        token,
    })
}

/// The values of a revocation log row's (hash, family, client_id, subject) columns.
pub(super) type RevocationColumns<'a> = (
    Option<Vec<u8>>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

/// The columns of a revocation log row, for an INSERT.
pub(super) fn revocation_columns(what: &Revocation) -> RevocationColumns<'_> {
    match what {
        Revocation::Token(h) => (Some(h.0.to_vec()), None, None, None),
        Revocation::Family(f) => (None, Some(f), None, None),
        Revocation::Client(c) => (None, None, Some(c), None),
        Revocation::Subject(s) => (None, None, None, Some(s)),
    }
}

pub(super) fn revocation(row: &impl Columns) -> Result<Revocation, StoreError> {
    Ok(
        match (
            row.opt_bytes("hash")?,
            row.opt_text("family")?,
            row.opt_text("client_id")?,
            row.opt_text("subject")?,
        ) {
            (Some(h), _, _, _) => Revocation::Token(hash(h)?),
            (None, Some(f), _, _) => Revocation::Family(f),
            (None, None, Some(c), _) => Revocation::Client(c),
            (None, None, None, Some(s)) => Revocation::Subject(s),
            _ => return Err(StoreError::Corrupt("empty revocation entry".into())),
        },
    )
}

/// Statements both backends run as they are (numbered parameters in order of first
/// appearance bind the same way in SQLite and PostgreSQL).
pub(super) mod sql {
    /// Deletes up to `$2` tokens that expired or were revoked before `$1`.
    pub const SWEEP_TOKENS: &str = "DELETE FROM tokens WHERE hash IN (SELECT hash FROM tokens \
         WHERE expires_at < $1 OR revoked_at < $1 LIMIT $2)";
    /// [`Store::subjects_with_tokens`](crate::store::Store::subjects_with_tokens).
    pub const SUBJECTS: &str = "SELECT subject FROM tokens WHERE revoked_at IS NULL AND \
         subject IS NOT NULL UNION SELECT subject FROM codes WHERE used_at IS NULL ORDER BY 1";
    /// Deletes up to `$2` codes that expired before `$1`.
    pub const SWEEP_CODES: &str = "DELETE FROM codes WHERE hash IN (SELECT hash FROM codes \
         WHERE expires_at < $1 LIMIT $2)";
    /// A reused connection: key `$1`.
    pub const CONNECTION: &str =
        "SELECT generation, token_hash, key_id, sealed FROM connections WHERE key = $1";
    /// Records connection `$1` at generation `$2` with token hash `$3`, key id `$4` and
    /// sealed token `$5`, unless it is recorded already.
    pub const INSERT_CONNECTION: &str = "INSERT INTO connections \
         (key, generation, token_hash, key_id, sealed) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (key) DO NOTHING";
    /// Moves connection `$5` from generation `$6` to generation `$1` with token hash `$2`,
    /// key id `$3` and sealed token `$4`.
    pub const RENEW_CONNECTION: &str = "UPDATE connections SET generation = $1, \
         token_hash = $2, key_id = $3, sealed = $4 WHERE key = $5 AND generation = $6";
    /// Re-seals (key id `$1`, sealed token `$2`) the token of connection `$3` if it is still
    /// at generation `$4` with token hash `$5`.
    pub const RESEAL_CONNECTION: &str = "UPDATE connections SET key_id = $1, sealed = $2 \
         WHERE key = $3 AND generation = $4 AND token_hash = $5";
    /// Deletes up to `$2` spent single-use values that expired before `$1`.
    pub const SWEEP_NONCES: &str = "DELETE FROM spent_nonces WHERE hash IN (SELECT hash FROM \
         spent_nonces WHERE expires_at < $1 LIMIT $2)";
    /// Spends a single-use value: one row affected the first time, none after.
    pub const SPEND_NONCE: &str = "INSERT INTO spent_nonces (hash, expires_at) VALUES ($1, $2) \
         ON CONFLICT (hash) DO NOTHING";
    /// Deletes up to `$2` revocation log entries older than `$1`.
    pub const SWEEP_LOG: &str = "DELETE FROM revocations WHERE seq IN (SELECT seq FROM \
         revocations WHERE at < $1 LIMIT $2)";
}
