-- Consent registry, Mitz-style subscriptions and their notification queue.
-- Portable SQL: the same migration runs on SQLite and PostgreSQL. Times are
-- Unix microseconds (0 = none) so both compare them the same way.

-- +goose Up
CREATE TABLE consent_registration (
    id             TEXT PRIMARY KEY,
    patient        TEXT    NOT NULL,
    effect         TEXT    NOT NULL,
    holder_ura     TEXT    NOT NULL DEFAULT '',
    holder_type    TEXT    NOT NULL DEFAULT '',
    requester_ura  TEXT    NOT NULL DEFAULT '',
    requester_type TEXT    NOT NULL DEFAULT '',
    requester_role TEXT    NOT NULL DEFAULT '',
    purpose        TEXT    NOT NULL,
    valid_from     BIGINT  NOT NULL DEFAULT 0,
    valid_until    BIGINT  NOT NULL DEFAULT 0,
    source         TEXT    NOT NULL,
    registered_by  TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    revoked_at     BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX consent_registration_patient ON consent_registration (patient);
-- One registration in force per scope: a new one supersedes the old.
CREATE UNIQUE INDEX consent_registration_scope ON consent_registration
    (patient, holder_ura, holder_type, requester_ura, requester_type, requester_role, purpose)
    WHERE revoked_at = 0;

CREATE TABLE consent_subscription (
    id             TEXT PRIMARY KEY,
    patient        TEXT   NOT NULL,
    provider_ura   TEXT   NOT NULL,
    provider_type  TEXT   NOT NULL,
    endpoint       TEXT   NOT NULL,
    payload        TEXT   NOT NULL,
    birth_date     TEXT   NOT NULL DEFAULT '',
    gateway_system TEXT   NOT NULL DEFAULT '',
    source_system  TEXT   NOT NULL DEFAULT '',
    owner          TEXT   NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX consent_subscription_patient ON consent_subscription (patient);
CREATE UNIQUE INDEX consent_subscription_scope ON consent_subscription
    (patient, provider_ura, provider_type, endpoint);

CREATE TABLE consent_notification (
    id              TEXT PRIMARY KEY,
    subscription_id TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    state           TEXT    NOT NULL, -- pending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX consent_notification_due ON consent_notification (state, next_attempt_at);

CREATE TABLE consent_delivery (
    id              TEXT PRIMARY KEY,
    notification_id TEXT    NOT NULL,
    subscription_id TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    at              BIGINT  NOT NULL,
    http_status     INTEGER NOT NULL,
    error           TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX consent_delivery_subscription ON consent_delivery (subscription_id, at);

-- +goose Down
DROP TABLE consent_delivery;
DROP TABLE consent_notification;
DROP TABLE consent_subscription;
DROP TABLE consent_registration;
