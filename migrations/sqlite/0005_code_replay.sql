-- Set when a used code is presented again, so an exchange racing the replay can see it.
ALTER TABLE codes ADD COLUMN replayed_at INTEGER;
