-- +goose Up
-- ../migrations/00004_lease.sql: the pull worker's lease (Unix ms).
ALTER TABLE np_received ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE np_received DROP COLUMN lease_until;
