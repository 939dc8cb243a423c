-- Connection reuse (reuse_tokens clients): the generation of each connection's derived
-- token; bumped when that token was revoked, so the next authorization gets a new one.
CREATE TABLE connections (
    key        TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);
ALTER TABLE codes ADD COLUMN device_id TEXT;
