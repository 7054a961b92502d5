-- +goose Up
CREATE TABLE audit_event (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL UNIQUE,
    recorded_at TEXT    NOT NULL,
    action      TEXT    NOT NULL, -- C R U D E (FHIR AuditEvent.action)
    interaction TEXT    NOT NULL, -- read, search-type, notify, token, ...
    outcome     INTEGER NOT NULL, -- HTTP status the requester got
    outcome_text TEXT   NOT NULL DEFAULT '',
    node        TEXT    NOT NULL,
    tenant      TEXT    NOT NULL, -- URA of the participant whose data was touched
    actor_ura   TEXT    NOT NULL DEFAULT '',
    actor_system TEXT   NOT NULL DEFAULT '',
    actor_user  TEXT    NOT NULL DEFAULT '',
    actor_role  TEXT    NOT NULL DEFAULT '',
    network_address TEXT NOT NULL DEFAULT '',
    patient     TEXT    NOT NULL DEFAULT '', -- BSN
    resource_types TEXT NOT NULL DEFAULT '',
    resources   TEXT    NOT NULL DEFAULT '', -- Type/id, space separated
    query       TEXT    NOT NULL DEFAULT '',
    task        TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_event_patient ON audit_event (patient, recorded_at);
-- Append-only: the log refuses changes and removals.
CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END;
CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END;

-- +goose Down
DROP TABLE audit_event;
