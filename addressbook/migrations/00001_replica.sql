-- +goose Up
-- The node's local copy of one directory (mCSD ITI-91 consumer).
-- updated is meta.lastUpdated in Unix milliseconds.
CREATE TABLE replica_resource (
    type       TEXT NOT NULL,
    id         TEXT NOT NULL,
    version    TEXT NOT NULL,
    updated    INTEGER NOT NULL,
    body       BLOB NOT NULL,
    PRIMARY KEY (type, id)
) WITHOUT ROWID;
-- The URAs of the Organizations, as far as this directory holds them
-- (anti-spoofing: others are never entered here).
CREATE TABLE replica_org_ura (
    ura        TEXT NOT NULL,
    org_id     TEXT NOT NULL,
    PRIMARY KEY (ura, org_id)
) WITHOUT ROWID;
CREATE INDEX replica_org_ura_org ON replica_org_ura (org_id);
-- Per resource type: the newest meta.lastUpdated seen (Unix ms), where the
-- next _history?_since starts (less an overlap). No row: never synced.
CREATE TABLE replica_cursor (
    type       TEXT PRIMARY KEY,
    since      INTEGER NOT NULL
);
-- One row: when the last sync completed (Unix ms).
CREATE TABLE replica_sync (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    synced_at  INTEGER NOT NULL
);

-- +goose Down
DROP TABLE replica_sync;
DROP TABLE replica_cursor;
DROP TABLE replica_org_ura;
DROP TABLE replica_resource;
