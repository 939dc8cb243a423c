-- The expired-row sweep looks rows up by these.
CREATE INDEX tokens_revoked ON tokens (revoked_at);
CREATE INDEX codes_expires ON codes (expires_at);
