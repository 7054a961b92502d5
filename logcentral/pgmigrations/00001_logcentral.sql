-- +goose Up
-- The central log on PostgreSQL: the entries each node shipped, chained per
-- node, and each node's head. Entries are append-only: a trigger raises on
-- UPDATE and DELETE, and the privileges to change them are revoked from
-- PUBLIC. Logs created before this history existed have these tables
-- already: each object is created only when it is missing.
CREATE TABLE IF NOT EXISTS shipped_entry (
    node text   NOT NULL,
    seq  bigint NOT NULL,
    prev bytea  NOT NULL,
    hash bytea  NOT NULL,
    body text   NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE TABLE IF NOT EXISTS node_head (
    node     text   PRIMARY KEY,
    seq      bigint NOT NULL,
    hash     bytea  NOT NULL,
    received timestamptz NOT NULL
);

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION shipped_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'shipped_entry'::regclass AND tgname = 'shipped_entry_no_change') THEN
        CREATE TRIGGER shipped_entry_no_change BEFORE UPDATE OR DELETE ON shipped_entry
            FOR EACH ROW EXECUTE FUNCTION shipped_append_only();
    END IF;
END $$;
-- +goose StatementEnd

REVOKE UPDATE, DELETE, TRUNCATE ON shipped_entry FROM PUBLIC;

-- +goose Down
-- The central log is not dropped by a migration.
SELECT 1;
