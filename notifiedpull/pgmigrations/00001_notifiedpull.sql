-- +goose Up
-- The PostgreSQL form of ../migrations/00001_notifiedpull.sql: the same
-- tables, columns and constraints. Times stay RFC 3339 text, compared
-- bytewise (COLLATE "C", as SQLite does), and seq orders rows created in
-- the same instant as SQLite's rowid does.
CREATE TABLE np_grant (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    receiver_ura    TEXT NOT NULL,
    patient_bsn     TEXT NOT NULL,
    workflow_task   TEXT NOT NULL,
    auth_base_hash  TEXT NOT NULL UNIQUE,
    application     TEXT NOT NULL,
    queries         TEXT NOT NULL,
    expires_at      TEXT COLLATE "C" NOT NULL,
    status          TEXT NOT NULL,
    status_reason   TEXT NOT NULL DEFAULT '',
    notification_url TEXT NOT NULL DEFAULT '',
    created_at      TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX np_grant_tenant ON np_grant (tenant, created_at, seq);

CREATE TABLE np_received (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    identifier      TEXT NOT NULL,
    sender_ura      TEXT NOT NULL,
    sender_system   TEXT NOT NULL DEFAULT '',
    patient_bsn     TEXT NOT NULL,
    workflow_task   TEXT NOT NULL,
    auth_base       TEXT NOT NULL,
    expires_at      TEXT COLLATE "C" NOT NULL,
    status          TEXT NOT NULL,
    status_reason   TEXT NOT NULL DEFAULT '',
    result_bundle   TEXT NOT NULL DEFAULT '',
    summary         TEXT NOT NULL DEFAULT '',
    created_at      TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    UNIQUE (sender_ura, identifier)
);
CREATE INDEX np_received_tenant ON np_received (tenant, created_at, seq);

-- +goose Down
DROP TABLE np_received;
DROP TABLE np_grant;
