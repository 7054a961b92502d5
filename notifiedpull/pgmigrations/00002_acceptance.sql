-- +goose Up
-- ../migrations/00002_acceptance.sql: a pull waiting for a user to accept
-- it, and the user who did. Integers 0/1 as in SQLite, so the statements
-- are the same on both.
ALTER TABLE np_received ADD COLUMN awaiting INTEGER NOT NULL DEFAULT 0;
ALTER TABLE np_received ADD COLUMN accepted_by TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE np_received DROP COLUMN accepted_by;
ALTER TABLE np_received DROP COLUMN awaiting;
