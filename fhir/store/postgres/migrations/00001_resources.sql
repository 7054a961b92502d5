-- +goose Up
-- The layout of the SQLite backend (see fhir/store/sqlite/migrations), in
-- PostgreSQL types. Text is COLLATE "C": searches compare strings bytewise
-- (prefix ranges up to U+10FFFF) and ids sort the same on every backend.
-- Bodies are bytea: the resource exactly as written, never re-encoded.

-- resource holds the current version of every resource (searches never scan
-- history); rid is the compact key the index tables use.
CREATE TABLE resource (
    rid          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       TEXT COLLATE "C" NOT NULL,
    type         TEXT COLLATE "C" NOT NULL,
    id           TEXT COLLATE "C" NOT NULL,
    version      INTEGER NOT NULL,
    last_updated BIGINT  NOT NULL, -- Unix ms
    deleted      BOOLEAN NOT NULL DEFAULT FALSE,
    body         BYTEA   NOT NULL,
    UNIQUE (tenant, type, id)
);
CREATE INDEX resource_updated ON resource (tenant, type, last_updated, id);

-- resource_version holds every version, the current one included.
CREATE TABLE resource_version (
    tenant       TEXT COLLATE "C" NOT NULL,
    type         TEXT COLLATE "C" NOT NULL,
    id           TEXT COLLATE "C" NOT NULL,
    version      INTEGER NOT NULL,
    last_updated BIGINT  NOT NULL,
    deleted      BOOLEAN NOT NULL DEFAULT FALSE,
    body         BYTEA   NOT NULL,
    PRIMARY KEY (tenant, type, id, version)
);
-- History of a tenant or a type in its order, newest first.
CREATE INDEX resource_version_updated ON resource_version (tenant, last_updated DESC, type DESC, id DESC, version DESC);
CREATE INDEX resource_version_type_updated ON resource_version (tenant, type, last_updated DESC, id DESC, version DESC);

-- Index tables: one row per value of a search parameter of a current,
-- not deleted resource. tenant and type are repeated so every lookup starts
-- from (tenant, type, param).
CREATE TABLE idx_token (
    rid    BIGINT NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT COLLATE "C" NOT NULL,
    type   TEXT COLLATE "C" NOT NULL,
    param  TEXT COLLATE "C" NOT NULL,
    system TEXT COLLATE "C" NOT NULL,
    code   TEXT COLLATE "C" NOT NULL,
    text   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_token_value ON idx_token (tenant, type, param, code, system);
CREATE INDEX idx_token_rid ON idx_token (rid, param);

CREATE TABLE idx_ref (
    rid         BIGINT NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant      TEXT COLLATE "C" NOT NULL,
    type        TEXT COLLATE "C" NOT NULL,
    param       TEXT COLLATE "C" NOT NULL,
    target_type TEXT COLLATE "C" NOT NULL,
    target_id   TEXT COLLATE "C" NOT NULL,
    url         TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_ref_target ON idx_ref (tenant, type, param, target_id, target_type);
CREATE INDEX idx_ref_rid ON idx_ref (rid, param);

CREATE TABLE idx_date (
    rid    BIGINT NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT COLLATE "C" NOT NULL,
    type   TEXT COLLATE "C" NOT NULL,
    param  TEXT COLLATE "C" NOT NULL,
    low    BIGINT NOT NULL,
    high   BIGINT NOT NULL
);
CREATE INDEX idx_date_low ON idx_date (tenant, type, param, low);
CREATE INDEX idx_date_rid ON idx_date (rid, param);

CREATE TABLE idx_string (
    rid    BIGINT NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT COLLATE "C" NOT NULL,
    type   TEXT COLLATE "C" NOT NULL,
    param  TEXT COLLATE "C" NOT NULL,
    norm   TEXT COLLATE "C" NOT NULL,
    raw    TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_string_norm ON idx_string (tenant, type, param, norm);
CREATE INDEX idx_string_rid ON idx_string (rid, param);

CREATE TABLE idx_quantity (
    rid    BIGINT NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT COLLATE "C" NOT NULL,
    type   TEXT COLLATE "C" NOT NULL,
    param  TEXT COLLATE "C" NOT NULL,
    value  DOUBLE PRECISION NOT NULL,
    system TEXT COLLATE "C" NOT NULL,
    code   TEXT COLLATE "C" NOT NULL,
    unit   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_quantity_value ON idx_quantity (tenant, type, param, value);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid, param);

CREATE TABLE idx_uri (
    rid    BIGINT NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT COLLATE "C" NOT NULL,
    type   TEXT COLLATE "C" NOT NULL,
    param  TEXT COLLATE "C" NOT NULL,
    uri    TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_uri_value ON idx_uri (tenant, type, param, uri);
CREATE INDEX idx_uri_rid ON idx_uri (rid, param);

CREATE TABLE idx_number (
    rid    BIGINT NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
    tenant TEXT COLLATE "C" NOT NULL,
    type   TEXT COLLATE "C" NOT NULL,
    param  TEXT COLLATE "C" NOT NULL,
    value  DOUBLE PRECISION NOT NULL
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
