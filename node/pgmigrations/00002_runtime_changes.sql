-- +goose Up
-- The changes made through the admin API (agreements and participants),
-- shared by a node's replicas: one row per node name, its body the same
-- document as <datadir>/runtime-changes.json of a node on its own. version
-- counts the saves; a replica saves only over the version it read.
CREATE TABLE node_runtime_changes (
    node       text        PRIMARY KEY,
    version    bigint      NOT NULL,
    body       text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE node_runtime_changes;
