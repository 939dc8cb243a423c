-- Users managed with `authgate user …` (users in the config file are not stored).
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,        -- argon2id PHC string
    settings      TEXT NOT NULL,        -- JSON: scopes, resources
    created_at    INTEGER NOT NULL
);
CREATE INDEX tokens_subject ON tokens (subject);
ALTER TABLE revocations ADD COLUMN subject TEXT; -- every token acting for a user
