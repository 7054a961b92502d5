-- +goose Up
-- ../migrations/00003_report.sql: completed, report to the sender pending.
ALTER TABLE np_received ADD COLUMN report_pending INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE np_received DROP COLUMN report_pending;
