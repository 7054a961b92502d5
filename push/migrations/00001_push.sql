-- +goose Up
-- Sender side: the outbox. One row per message a participant hands its
-- node (or an application acknowledgement the node sends back), kept until
-- delivered, refused or past its lifetime.
CREATE TABLE push_out (
    id              TEXT NOT NULL,     -- message id (MessageHeader.id), a UUID
    tenant          TEXT NOT NULL,     -- sender URA
    receiver_ura    TEXT NOT NULL,
    application     TEXT NOT NULL,
    kind            TEXT NOT NULL,     -- message | acknowledgement
    response_to     TEXT NOT NULL DEFAULT '', -- acknowledgement: the message id it answers
    patient_bsn     TEXT NOT NULL DEFAULT '',
    body            BLOB NOT NULL,     -- the message Bundle exactly as it is sent
    body_sha256     TEXT NOT NULL,
    status          TEXT NOT NULL,     -- queued | delivered | refused | failed
    status_reason   TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    receipt         TEXT NOT NULL DEFAULT '', -- the receiver's signed delivery receipt (JWS)
    delivered_at    TEXT NOT NULL DEFAULT '',
    ack             TEXT NOT NULL DEFAULT '', -- accepted | rejected, from the receiver's system
    ack_note        TEXT NOT NULL DEFAULT '',
    ack_at          TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX push_out_due ON push_out (status, next_attempt_at);

-- Receiver side: the inbox. One row per message received, stored before
-- the sender gets its receipt; a sender's message id is stored once.
CREATE TABLE push_in (
    id              TEXT PRIMARY KEY,  -- local id
    tenant          TEXT NOT NULL,     -- receiver URA
    message_id      TEXT NOT NULL,
    sender_ura      TEXT NOT NULL,
    sender_system   TEXT NOT NULL DEFAULT '',
    application     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    response_to     TEXT NOT NULL DEFAULT '',
    patient_bsn     TEXT NOT NULL DEFAULT '',
    body            BLOB NOT NULL,
    body_sha256     TEXT NOT NULL,
    receipt         TEXT NOT NULL,
    status          TEXT NOT NULL,     -- received | processed
    ack             TEXT NOT NULL DEFAULT '',
    ack_note        TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (sender_ura, message_id)
);
CREATE INDEX push_in_tenant ON push_in (tenant, created_at);

-- +goose Down
DROP TABLE push_in;
DROP TABLE push_out;
