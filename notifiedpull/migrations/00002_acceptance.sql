-- +goose Up
-- Receiver side: a notification whose pull waits for a user to accept it
-- (the agreement with the sender asks for user authentication, plateau 2
-- and up, and allows no system identity), and the user who accepted it.
ALTER TABLE np_received ADD COLUMN awaiting INTEGER NOT NULL DEFAULT 0;
-- JSON of the accepting user (plateau.Caller); it may hold a signed
-- identity, so it is cleared when the exchange ends.
ALTER TABLE np_received ADD COLUMN accepted_by TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE np_received DROP COLUMN accepted_by;
ALTER TABLE np_received DROP COLUMN awaiting;
