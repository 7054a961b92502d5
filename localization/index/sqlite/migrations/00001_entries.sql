-- +goose Up
CREATE TABLE localization_entry (
    id                  TEXT    PRIMARY KEY,          -- List id (UUID)
    pseudonym           BLOB    NOT NULL,             -- OPRF output, never a BSN
    care_context_system TEXT    NOT NULL,
    care_context_code   TEXT    NOT NULL,
    holder_ura          TEXT    NOT NULL,
    source_type         TEXT    NOT NULL,
    device              TEXT    NOT NULL DEFAULT '',  -- registering system
    created_at          INTEGER NOT NULL              -- Unix microseconds
);
-- Lookups read this index only; it also makes registration idempotent.
CREATE UNIQUE INDEX localization_entry_lookup
    ON localization_entry (pseudonym, care_context_system, care_context_code, holder_ura, source_type);
CREATE INDEX localization_entry_holder ON localization_entry (holder_ura);

-- +goose Down
DROP TABLE localization_entry;
