-- +goose Up
CREATE TABLE localization_entry (
    id                  uuid        PRIMARY KEY,      -- List id
    pseudonym           bytea       NOT NULL,         -- OPRF output, never a BSN
    care_context_system text        NOT NULL,
    care_context_code   text        NOT NULL,
    holder_ura          text        NOT NULL,
    source_type         text        NOT NULL,
    device              text        NOT NULL DEFAULT '', -- registering system
    created_at          timestamptz NOT NULL
);
-- Lookups are index-only scans of this index; it also makes registration
-- idempotent.
CREATE UNIQUE INDEX localization_entry_lookup
    ON localization_entry (pseudonym, care_context_system, care_context_code, holder_ura, source_type);
CREATE INDEX localization_entry_holder ON localization_entry (holder_ura);

-- +goose Down
DROP TABLE localization_entry;
