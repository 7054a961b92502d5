-- +goose Up
-- The audit log on PostgreSQL: the records, chained, and the signed
-- checkpoints. Append-only is enforced by triggers that raise on UPDATE,
-- DELETE and TRUNCATE (also for the owner), and the privileges to change
-- rows are revoked from PUBLIC; docs/audit.md shows how to run the node as
-- a role that can only INSERT and SELECT.
--
-- Logs created before this history existed have these tables already: each
-- object is created only when it is missing, without taking a lock on a
-- table the replicas write (a trigger or index created anyway would wait
-- for, and could deadlock with, their appends).
CREATE TABLE IF NOT EXISTS audit_event (
    seq             bigint  PRIMARY KEY,
    prev            bytea   NOT NULL,
    hash            bytea   NOT NULL,
    body            text    NOT NULL,
    event_id        text    NOT NULL UNIQUE,
    recorded_at     text    NOT NULL,
    action          text    NOT NULL,
    interaction     text    NOT NULL,
    outcome         integer NOT NULL,
    outcome_text    text    NOT NULL,
    node            text    NOT NULL,
    tenant          text    NOT NULL,
    actor_ura       text    NOT NULL,
    actor_system    text    NOT NULL,
    actor_user      text    NOT NULL,
    actor_role      text    NOT NULL,
    network_address text    NOT NULL,
    patient         text    NOT NULL,
    resource_types  text    NOT NULL,
    resources       text    NOT NULL,
    query           text    NOT NULL,
    task            text    NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    seq        bigint PRIMARY KEY,
    head       bytea  NOT NULL,
    created_at text   NOT NULL,
    jws        text   NOT NULL
);

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
BEGIN
    IF to_regclass('audit_event_patient') IS NULL THEN
        CREATE INDEX audit_event_patient ON audit_event (patient, recorded_at);
    END IF;
    IF to_regclass('audit_event_tenant') IS NULL THEN
        CREATE INDEX audit_event_tenant ON audit_event (tenant, recorded_at);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'audit_event'::regclass AND tgname = 'audit_event_no_change') THEN
        CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event
            FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'audit_event'::regclass AND tgname = 'audit_event_no_truncate') THEN
        CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
            FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'audit_checkpoint'::regclass AND tgname = 'audit_checkpoint_no_change') THEN
        CREATE TRIGGER audit_checkpoint_no_change BEFORE UPDATE OR DELETE ON audit_checkpoint
            FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'audit_checkpoint'::regclass AND tgname = 'audit_checkpoint_no_truncate') THEN
        CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
            FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    END IF;
END $$;
-- +goose StatementEnd

REVOKE UPDATE, DELETE, TRUNCATE ON audit_event, audit_checkpoint FROM PUBLIC;

-- +goose Down
-- The audit log is not dropped by a migration.
SELECT 1;
