-- +goose Up
-- A referral's update (TA Notified Pull): a new notification with the same
-- groupIdentifier supersedes the earlier ones. Both sides keep the group;
-- rows from before have none and are their own group (their identifier).
ALTER TABLE np_grant ADD COLUMN group_identifier TEXT NOT NULL DEFAULT '';
ALTER TABLE np_received ADD COLUMN group_identifier TEXT NOT NULL DEFAULT '';
-- Receiver side: the notification's get-workflow-task input. True: read the
-- workflow Task and run its inputs; false: run the care application's
-- own query set without reading it first.
ALTER TABLE np_received ADD COLUMN get_workflow_task INTEGER NOT NULL DEFAULT 1;
-- Receiver side: the care application the pulled data is for (the scope
-- the sender granted), recorded with the result.
ALTER TABLE np_received ADD COLUMN application TEXT NOT NULL DEFAULT '';
CREATE INDEX np_received_group ON np_received (sender_ura, group_identifier);

-- +goose Down
DROP INDEX np_received_group;
ALTER TABLE np_received DROP COLUMN application;
ALTER TABLE np_received DROP COLUMN get_workflow_task;
ALTER TABLE np_received DROP COLUMN group_identifier;
ALTER TABLE np_grant DROP COLUMN group_identifier;
