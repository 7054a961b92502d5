-- +goose Up
-- resource holds the current version of every resource (searches never scan
-- history); rid is the compact key the index tables use.
CREATE TABLE resource (
    rid          INTEGER PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL, -- Unix ms
    deleted      INTEGER NOT NULL DEFAULT 0,
    body         BLOB    NOT NULL,
    UNIQUE (tenant, type, id)
);
CREATE INDEX resource_updated ON resource (tenant, type, last_updated, id);

-- resource_version holds every version, the current one included.
CREATE TABLE resource_version (
    tenant       TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    body         BLOB    NOT NULL,
    PRIMARY KEY (tenant, type, id, version)
) WITHOUT ROWID;

-- Index tables: one row per value of a search parameter of a current,
-- not deleted resource. tenant and type are repeated so every lookup starts
-- from (tenant, type, param).
CREATE TABLE idx_token (
    rid    INTEGER NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    type   TEXT NOT NULL,
    param  TEXT NOT NULL,
    system TEXT NOT NULL,
    code   TEXT NOT NULL,
    text   TEXT NOT NULL
);
CREATE INDEX idx_token_value ON idx_token (tenant, type, param, code, system);
CREATE INDEX idx_token_rid ON idx_token (rid, param);

CREATE TABLE idx_ref (
    rid         INTEGER NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant      TEXT NOT NULL,
    type        TEXT NOT NULL,
    param       TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    url         TEXT NOT NULL
);
CREATE INDEX idx_ref_target ON idx_ref (tenant, type, param, target_id, target_type);
CREATE INDEX idx_ref_rid ON idx_ref (rid, param);

CREATE TABLE idx_date (
    rid    INTEGER NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    type   TEXT NOT NULL,
    param  TEXT NOT NULL,
    low    INTEGER NOT NULL,
    high   INTEGER NOT NULL
);
CREATE INDEX idx_date_low ON idx_date (tenant, type, param, low);
CREATE INDEX idx_date_rid ON idx_date (rid, param);

CREATE TABLE idx_string (
    rid    INTEGER NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    type   TEXT NOT NULL,
    param  TEXT NOT NULL,
    norm   TEXT NOT NULL,
    raw    TEXT NOT NULL
);
CREATE INDEX idx_string_norm ON idx_string (tenant, type, param, norm);
CREATE INDEX idx_string_rid ON idx_string (rid, param);

CREATE TABLE idx_quantity (
    rid    INTEGER NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    type   TEXT NOT NULL,
    param  TEXT NOT NULL,
    value  REAL NOT NULL,
    system TEXT NOT NULL,
    code   TEXT NOT NULL,
    unit   TEXT NOT NULL
);
CREATE INDEX idx_quantity_value ON idx_quantity (tenant, type, param, value);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid, param);

CREATE TABLE idx_uri (
    rid    INTEGER NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    type   TEXT NOT NULL,
    param  TEXT NOT NULL,
    uri    TEXT NOT NULL
);
CREATE INDEX idx_uri_value ON idx_uri (tenant, type, param, uri);
CREATE INDEX idx_uri_rid ON idx_uri (rid, param);

CREATE TABLE idx_number (
    rid    INTEGER NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    type   TEXT NOT NULL,
    param  TEXT NOT NULL,
    value  REAL NOT NULL
);
CREATE INDEX idx_number_value ON idx_number (tenant, type, param, value);
CREATE INDEX idx_number_rid ON idx_number (rid, param);

-- +goose Down
DROP TABLE idx_number;
DROP TABLE idx_uri;
DROP TABLE idx_quantity;
DROP TABLE idx_string;
DROP TABLE idx_date;
DROP TABLE idx_ref;
DROP TABLE idx_token;
DROP TABLE resource_version;
DROP TABLE resource;
