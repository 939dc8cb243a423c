-- Connection reuse (reuse_tokens) keeps each connection's current token: random, and
-- sealed (XChaCha20-Poly1305) under a key from oauth.secrets_key_file or
-- AUTHGATE_OAUTH__SECRETS_KEYS, which the store never holds. token_hash is the token's
-- row in tokens; key_id names the key; sealed is nonce || ciphertext || tag, bound to the
-- connection's key, generation and token_hash. All three are NULL for a connection
-- recorded before: its token was derived from settings.token_key, and is revoked and
-- replaced at the connection's next authorization.
ALTER TABLE connections ADD COLUMN token_hash BLOB;
ALTER TABLE connections ADD COLUMN key_id TEXT;
ALTER TABLE connections ADD COLUMN sealed BLOB;
