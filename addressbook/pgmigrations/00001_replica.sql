-- +goose Up
-- The node's local copy of one directory (mCSD ITI-91 consumer), on
-- PostgreSQL: one schema per directory, shared by the node's replicas.
-- updated is meta.lastUpdated in Unix milliseconds.
CREATE TABLE replica_resource (
    type       text   NOT NULL,
    id         text   NOT NULL,
    version    text   NOT NULL,
    updated    bigint NOT NULL,
    body       bytea  NOT NULL,
    PRIMARY KEY (type, id)
);
-- The URAs of the Organizations, as far as this directory holds them
-- (anti-spoofing: others are never entered here).
CREATE TABLE replica_org_ura (
    ura        text NOT NULL,
    org_id     text NOT NULL,
    PRIMARY KEY (ura, org_id)
);
CREATE INDEX replica_org_ura_org ON replica_org_ura (org_id);
-- Per resource type: the newest meta.lastUpdated seen (Unix ms), where the
-- next _history?_since starts (less an overlap). No row: never synced.
CREATE TABLE replica_cursor (
    type       text PRIMARY KEY,
    since      bigint NOT NULL
);
-- One row: when the last sync completed (Unix ms).
CREATE TABLE replica_sync (
    id         integer PRIMARY KEY CHECK (id = 1),
    synced_at  bigint  NOT NULL
);

-- +goose Down
DROP TABLE replica_sync;
DROP TABLE replica_cursor;
DROP TABLE replica_org_ura;
DROP TABLE replica_resource;
