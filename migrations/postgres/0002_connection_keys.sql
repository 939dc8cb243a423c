-- A connection's key (reuse_tokens) separates client, user, resource and device with NUL,
-- which TEXT cannot hold in PostgreSQL: the key is stored as its UTF-8 bytes. (Before
-- this, no connection could be recorded here at all.)
ALTER TABLE connections ALTER COLUMN key TYPE BYTEA USING convert_to(key, 'UTF8');
