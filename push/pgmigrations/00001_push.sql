-- +goose Up
-- The PostgreSQL form of ../migrations/00001_push.sql: the same tables,
-- columns and constraints. Bodies are bytea; times stay fixed-width text
-- compared bytewise (COLLATE "C", as SQLite does), and seq orders rows of
-- the same instant as SQLite's rowid does.
CREATE TABLE push_out (
    id              TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    receiver_ura    TEXT NOT NULL,
    application     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    response_to     TEXT NOT NULL DEFAULT '',
    patient_bsn     TEXT NOT NULL DEFAULT '',
    body            BYTEA NOT NULL,
    body_sha256     TEXT NOT NULL,
    status          TEXT NOT NULL,
    status_reason   TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT COLLATE "C" NOT NULL,
    expires_at      TEXT COLLATE "C" NOT NULL,
    receipt         TEXT NOT NULL DEFAULT '',
    delivered_at    TEXT COLLATE "C" NOT NULL DEFAULT '',
    ack             TEXT NOT NULL DEFAULT '',
    ack_note        TEXT NOT NULL DEFAULT '',
    ack_at          TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at      TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX push_out_due ON push_out (status, next_attempt_at);

CREATE TABLE push_in (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    sender_ura      TEXT NOT NULL,
    sender_system   TEXT NOT NULL DEFAULT '',
    application     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    response_to     TEXT NOT NULL DEFAULT '',
    patient_bsn     TEXT NOT NULL DEFAULT '',
    body            BYTEA NOT NULL,
    body_sha256     TEXT NOT NULL,
    receipt         TEXT NOT NULL,
    status          TEXT NOT NULL,
    ack             TEXT NOT NULL DEFAULT '',
    ack_note        TEXT NOT NULL DEFAULT '',
    created_at      TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    UNIQUE (sender_ura, message_id)
);
CREATE INDEX push_in_tenant ON push_in (tenant, created_at, seq);

-- +goose Down
DROP TABLE push_in;
DROP TABLE push_out;
