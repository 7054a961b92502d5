-- +goose Up
-- Receiver side: a Transfer whose requests the receiving organisation
-- decides on (careapp.Decision). decision is '' (none asked), 'pending'
-- (the documents read before acceptance are in request_bundle, and the
-- participant's system has not decided), 'accepted' or 'rejected' (with
-- decision_reason, the Task.statusReason sent to the sender).
ALTER TABLE np_received ADD COLUMN decision TEXT NOT NULL DEFAULT '';
ALTER TABLE np_received ADD COLUMN decision_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE np_received ADD COLUMN request_bundle TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE np_received DROP COLUMN request_bundle;
ALTER TABLE np_received DROP COLUMN decision_reason;
ALTER TABLE np_received DROP COLUMN decision;
