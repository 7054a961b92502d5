-- +goose Up
-- History of a tenant or a type, newest first. resource_version is WITHOUT
-- ROWID, so these indexes end in its key (type, id, version): the history
-- order needs no sort.
CREATE INDEX resource_version_updated ON resource_version (tenant, last_updated);
CREATE INDEX resource_version_type_updated ON resource_version (tenant, type, last_updated);

-- +goose Down
DROP INDEX resource_version_type_updated;
DROP INDEX resource_version_updated;
