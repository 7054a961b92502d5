-- +goose Up
-- Which pull holds the lease (a token of its own per pull): the holder
-- renews its lease while it works, and its writes of the pull's outcome
-- apply only while it still holds it, so a pull whose lease ran out and
-- was taken over by another worker (another replica) ends without effect.
ALTER TABLE np_received ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE np_received DROP COLUMN lease_owner;
