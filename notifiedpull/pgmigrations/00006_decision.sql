-- +goose Up
-- ../migrations/00006_decision.sql: the receiving organisation's decision
-- on a Transfer request.
ALTER TABLE np_received ADD COLUMN decision TEXT NOT NULL DEFAULT '';
ALTER TABLE np_received ADD COLUMN decision_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE np_received ADD COLUMN request_bundle TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE np_received DROP COLUMN request_bundle;
ALTER TABLE np_received DROP COLUMN decision_reason;
ALTER TABLE np_received DROP COLUMN decision;
