-- Revocation log: every revocation appends a row in the same transaction, so other
-- processes sharing the store (the CLI, other instances) can evict their caches.
CREATE TABLE revocations (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    hash      BLOB,                   -- one token
    family    TEXT,                   -- every token of a grant
    client_id TEXT,                   -- every token of a client
    at        INTEGER NOT NULL
);
CREATE INDEX revocations_at ON revocations (at);
