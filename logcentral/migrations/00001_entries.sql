-- +goose Up
-- Shipped audit records, per node (its URA) in chain order: seq, links and
-- the canonical body, exactly the bytes the node hashed.
CREATE TABLE shipped_entry (
    node TEXT    NOT NULL,
    seq  INTEGER NOT NULL,
    prev BLOB    NOT NULL,
    hash BLOB    NOT NULL,
    body TEXT    NOT NULL,
    PRIMARY KEY (node, seq)
) WITHOUT ROWID;
CREATE TABLE node_head (
    node     TEXT    PRIMARY KEY,
    seq      INTEGER NOT NULL,
    hash     BLOB    NOT NULL,
    received TEXT    NOT NULL
);
CREATE TRIGGER shipped_entry_no_update BEFORE UPDATE ON shipped_entry
BEGIN SELECT RAISE(ABORT, 'shipped_entry is append-only'); END;
CREATE TRIGGER shipped_entry_no_delete BEFORE DELETE ON shipped_entry
BEGIN SELECT RAISE(ABORT, 'shipped_entry is append-only'); END;

-- +goose Down
DROP TABLE node_head;
DROP TABLE shipped_entry;
