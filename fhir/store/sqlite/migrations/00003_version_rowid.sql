-- +goose Up
-- resource_version becomes a rowid table with its key in an index of its
-- own. As a WITHOUT ROWID table, whose B-tree is ordered by the key, every
-- insert and lookup compared the key with rows on its way down, and SQLite
-- reads a row's whole record for that when the record does not fit on its
-- page: every body larger than about 1 kB was read in full, overflow pages
-- and all, about log2(versions) times per write. The key index holds the
-- key and the rowid only; the bodies are not read to find a version.
CREATE TABLE resource_version_rowid (
    vid          INTEGER PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    body         BLOB    NOT NULL
);
INSERT INTO resource_version_rowid (tenant, type, id, version, last_updated, deleted, body)
    SELECT tenant, type, id, version, last_updated, deleted, body FROM resource_version
    ORDER BY last_updated, tenant, type, id, version;
DROP TABLE resource_version;
ALTER TABLE resource_version_rowid RENAME TO resource_version;
CREATE UNIQUE INDEX resource_version_key ON resource_version (tenant, type, id, version);
-- History of a tenant or a type, newest first: the indexes end in the
-- history's order (type, id, version), so it needs no sort.
CREATE INDEX resource_version_updated ON resource_version (tenant, last_updated, type, id, version);
CREATE INDEX resource_version_type_updated ON resource_version (tenant, type, last_updated, id, version);

-- +goose Down
CREATE TABLE resource_version_pk (
    tenant       TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    body         BLOB    NOT NULL,
    PRIMARY KEY (tenant, type, id, version)
) WITHOUT ROWID;
INSERT INTO resource_version_pk (tenant, type, id, version, last_updated, deleted, body)
    SELECT tenant, type, id, version, last_updated, deleted, body FROM resource_version;
DROP TABLE resource_version;
ALTER TABLE resource_version_pk RENAME TO resource_version;
CREATE INDEX resource_version_updated ON resource_version (tenant, last_updated);
CREATE INDEX resource_version_type_updated ON resource_version (tenant, type, last_updated);
