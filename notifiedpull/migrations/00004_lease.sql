-- +goose Up
-- Who is pulling a received notification now: a pull worker holds it
-- until lease_until (Unix milliseconds), so that two workers (two
-- replicas of a node sharing this state) never pull it at once, and a
-- worker that died leaves it to another once the lease ends.
ALTER TABLE np_received ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE np_received DROP COLUMN lease_until;
