-- authgate schema v1 (SQLite). Token values are never stored: `hash` is SHA-256.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT,                 -- "sha256:<hex>"; NULL for public clients
    name        TEXT NOT NULL DEFAULT '',
    settings    TEXT NOT NULL,        -- JSON: grants, scope, TTLs, redirect URIs, ...
    created_at  INTEGER NOT NULL
);

CREATE TABLE tokens (
    hash       BLOB PRIMARY KEY,      -- SHA-256 of the token value
    kind       TEXT NOT NULL,         -- 'access' | 'refresh'
    client_id  TEXT NOT NULL,
    subject    TEXT,                  -- user or account the token acts for
    scope      TEXT NOT NULL,
    family     TEXT NOT NULL,         -- grant lineage: refresh rotation + reuse detection
    parent     BLOB,                  -- the refresh token this one was issued with
    extra      TEXT NOT NULL DEFAULT '{}', -- JSON: bound resource ids and names
    issued_at  INTEGER NOT NULL,      -- unix seconds
    expires_at INTEGER,               -- NULL: never expires
    revoked_at INTEGER,
    used_at    INTEGER                -- refresh tokens: when rotated out
);
CREATE INDEX tokens_family ON tokens (family);
CREATE INDEX tokens_client ON tokens (client_id);
CREATE INDEX tokens_expires ON tokens (expires_at);
