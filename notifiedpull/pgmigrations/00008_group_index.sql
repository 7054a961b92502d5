-- +goose Up
-- A notification without a group is a group of its own: rows from before
-- groups were kept get their identifier as their group, so a group is
-- found by one equality on an index that also orders it by creation.
UPDATE np_received SET group_identifier = identifier WHERE group_identifier = '';
DROP INDEX np_received_group;
CREATE INDEX np_received_group ON np_received (tenant, sender_ura, group_identifier, created_at, seq);

-- +goose Down
DROP INDEX np_received_group;
CREATE INDEX np_received_group ON np_received (sender_ura, group_identifier);
