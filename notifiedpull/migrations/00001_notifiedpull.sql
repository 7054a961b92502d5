-- +goose Up
-- Sender side: one row per referral made available to a receiver.
CREATE TABLE np_grant (
    id              TEXT PRIMARY KEY,  -- notification identifier (urn:uuid:…)
    tenant          TEXT NOT NULL,     -- sender URA
    receiver_ura    TEXT NOT NULL,
    patient_bsn     TEXT NOT NULL,
    workflow_task   TEXT NOT NULL,     -- id of the workflow Task in the tenant's store
    auth_base_hash  TEXT NOT NULL UNIQUE, -- SHA-256 of the authorization base; the secret itself is not kept
    application     TEXT NOT NULL,
    queries         TEXT NOT NULL,     -- JSON list of normalised allowed queries
    expires_at      TEXT NOT NULL,
    status          TEXT NOT NULL,
    status_reason   TEXT NOT NULL DEFAULT '',
    notification_url TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX np_grant_tenant ON np_grant (tenant, created_at);

-- Receiver side: one row per notification accepted.
CREATE TABLE np_received (
    id              TEXT PRIMARY KEY,  -- local id (also the id of the stored notification Task)
    tenant          TEXT NOT NULL,     -- receiver URA
    identifier      TEXT NOT NULL,
    sender_ura      TEXT NOT NULL,
    sender_system   TEXT NOT NULL DEFAULT '',
    patient_bsn     TEXT NOT NULL,
    workflow_task   TEXT NOT NULL,
    auth_base       TEXT NOT NULL,     -- needed to pull; cleared when the exchange ends
    expires_at      TEXT NOT NULL,
    status          TEXT NOT NULL,
    status_reason   TEXT NOT NULL DEFAULT '',
    result_bundle   TEXT NOT NULL DEFAULT '', -- id of the stored Bundle with the pulled data
    summary         TEXT NOT NULL DEFAULT '', -- JSON per query: block, matches, included
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (sender_ura, identifier)
);
CREATE INDEX np_received_tenant ON np_received (tenant, created_at);

-- +goose Down
DROP TABLE np_received;
DROP TABLE np_grant;
