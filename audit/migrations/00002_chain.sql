-- +goose Up
-- The hash chain (docs/audit.md): each record's canonical body, the hash of
-- its predecessor and its own hash. Rows written before this migration have
-- none; they are reported as legacy by Verify, not as tampering.
ALTER TABLE audit_event ADD COLUMN prev BLOB;
ALTER TABLE audit_event ADD COLUMN hash BLOB;
ALTER TABLE audit_event ADD COLUMN body TEXT;
CREATE INDEX audit_event_tenant ON audit_event (tenant, recorded_at);

CREATE TABLE audit_checkpoint (
    seq        INTEGER PRIMARY KEY, -- last record covered
    head       BLOB    NOT NULL,    -- its chain hash
    created_at TEXT    NOT NULL,
    jws        TEXT    NOT NULL     -- signed {typ, node, seq, head, iat}
);
CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only'); END;
CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only'); END;

-- +goose Down
DROP TABLE audit_checkpoint;
DROP INDEX audit_event_tenant;
ALTER TABLE audit_event DROP COLUMN body;
ALTER TABLE audit_event DROP COLUMN hash;
ALTER TABLE audit_event DROP COLUMN prev;
