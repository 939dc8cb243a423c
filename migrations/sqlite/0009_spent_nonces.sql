-- Single-use values that have been spent (hashes only): the authorize page's CSRF
-- values, so a form submitted once is refused the next time, on any instance sharing
-- the store. Rows go once the value has expired (the sweep).
-- (Numbered 0009: 0008 is taken by another branch's migration.)
CREATE TABLE spent_nonces (
    hash       BLOB PRIMARY KEY,      -- SHA-256 of the value
    expires_at INTEGER NOT NULL       -- unix seconds; the value is refused after it anyway
);
CREATE INDEX spent_nonces_expires ON spent_nonces (expires_at);
