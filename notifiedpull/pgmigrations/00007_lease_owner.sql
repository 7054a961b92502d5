-- +goose Up
-- ../migrations/00007_lease_owner.sql: the pull that holds the lease.
ALTER TABLE np_received ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE np_received DROP COLUMN lease_owner;
