-- Authorization codes (hashes only): one use, short-lived, bound to client, redirect
-- URI, PKCE challenge, scope and user.
CREATE TABLE codes (
    hash           BLOB PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT,                  -- S256 challenge; NULL without PKCE
    scope          TEXT NOT NULL,
    subject        TEXT NOT NULL,
    extra          TEXT NOT NULL DEFAULT '{}',
    family         TEXT NOT NULL,         -- tokens issued from this code share it
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER
);
