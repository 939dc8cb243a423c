-- authgate schema (PostgreSQL): the same tables, columns and meaning as the SQLite
-- migrations 0001–0007 (see migrations/sqlite/), in one step. Token values are never
-- stored: `hash` is SHA-256.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT,                 -- "sha256:<hex>"; NULL for public clients
    name        TEXT NOT NULL DEFAULT '',
    settings    TEXT NOT NULL,        -- JSON: grants, scope, TTLs, redirect URIs, ...
    created_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    hash       BYTEA PRIMARY KEY,     -- SHA-256 of the token value
    kind       TEXT NOT NULL,         -- 'access' | 'refresh'
    client_id  TEXT NOT NULL,
    subject    TEXT,                  -- user or account the token acts for
    scope      TEXT NOT NULL,
    family     TEXT NOT NULL,         -- grant lineage: refresh rotation + reuse detection
    parent     BYTEA,                 -- the refresh token this one was issued with
    extra      TEXT NOT NULL DEFAULT '{}', -- JSON: bound resource ids and names
    issued_at  BIGINT NOT NULL,       -- unix seconds
    expires_at BIGINT,                -- NULL: never expires
    revoked_at BIGINT,
    used_at    BIGINT                 -- refresh tokens: when rotated out
);
CREATE INDEX tokens_family ON tokens (family);
CREATE INDEX tokens_client ON tokens (client_id);
CREATE INDEX tokens_subject ON tokens (subject);
CREATE INDEX tokens_expires ON tokens (expires_at);
CREATE INDEX tokens_revoked ON tokens (revoked_at);

-- Revocation log: every revocation appends a row in the same transaction (under a
-- transaction-level advisory lock, so sequence order is commit order) and sends a
-- NOTIFY on channel authgate_revocations at commit. Instances follow the log; the
-- notification only wakes them up early.
CREATE TABLE revocations (
    seq       BIGSERIAL PRIMARY KEY,
    hash      BYTEA,                  -- one token
    family    TEXT,                   -- every token of a grant
    client_id TEXT,                   -- every token of a client
    subject   TEXT,                   -- every token acting for a user
    at        BIGINT NOT NULL
);
CREATE INDEX revocations_at ON revocations (at);

-- Authorization codes (hashes only): one use, short-lived.
CREATE TABLE codes (
    hash           BYTEA PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT,              -- S256 challenge; NULL without PKCE
    scope          TEXT NOT NULL,
    subject        TEXT NOT NULL,
    extra          TEXT NOT NULL DEFAULT '{}',
    family         TEXT NOT NULL,     -- tokens issued from this code share it
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    replayed_at    BIGINT,            -- a used code presented again
    device_id      TEXT
);
CREATE INDEX codes_expires ON codes (expires_at);

-- Users managed with `authgate user …` (users in the config file are not stored).
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,      -- argon2id PHC string
    settings      TEXT NOT NULL,      -- JSON: scopes, resources
    created_at    BIGINT NOT NULL
);

-- Connection reuse (reuse_tokens clients): the generation of each connection's token.
CREATE TABLE connections (
    key        TEXT PRIMARY KEY,
    generation BIGINT NOT NULL
);
