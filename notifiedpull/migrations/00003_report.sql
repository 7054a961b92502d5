-- +goose Up
-- Receiver side: the pull completed but the sender has not yet taken the
-- report of it (the PUT of its workflow Task, sent in the background). The
-- authorization base and the accepting user are kept until it has, so a
-- restart can still report it.
ALTER TABLE np_received ADD COLUMN report_pending INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE np_received DROP COLUMN report_pending;
