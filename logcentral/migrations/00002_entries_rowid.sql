-- +goose Up
-- shipped_entry becomes a rowid table with its key in an index of its own.
-- As a WITHOUT ROWID table, ordered by (node, seq), every insert compared
-- its key with rows on the way down, and SQLite reads a row's whole record
-- for that when the record does not fit on its page: a record body over
-- about 1 kB was read in full several times per insert. The key index holds
-- the key and the rowid only.
CREATE TABLE shipped_entry_rowid (
    node TEXT    NOT NULL,
    seq  INTEGER NOT NULL,
    prev BLOB    NOT NULL,
    hash BLOB    NOT NULL,
    body TEXT    NOT NULL
);
INSERT INTO shipped_entry_rowid (node, seq, prev, hash, body)
    SELECT node, seq, prev, hash, body FROM shipped_entry ORDER BY node, seq;
DROP TABLE shipped_entry;
ALTER TABLE shipped_entry_rowid RENAME TO shipped_entry;
CREATE UNIQUE INDEX shipped_entry_key ON shipped_entry (node, seq);
CREATE TRIGGER shipped_entry_no_update BEFORE UPDATE ON shipped_entry
BEGIN SELECT RAISE(ABORT, 'shipped_entry is append-only'); END;
CREATE TRIGGER shipped_entry_no_delete BEFORE DELETE ON shipped_entry
BEGIN SELECT RAISE(ABORT, 'shipped_entry is append-only'); END;

-- +goose Down
CREATE TABLE shipped_entry_pk (
    node TEXT    NOT NULL,
    seq  INTEGER NOT NULL,
    prev BLOB    NOT NULL,
    hash BLOB    NOT NULL,
    body TEXT    NOT NULL,
    PRIMARY KEY (node, seq)
) WITHOUT ROWID;
INSERT INTO shipped_entry_pk (node, seq, prev, hash, body)
    SELECT node, seq, prev, hash, body FROM shipped_entry;
DROP TABLE shipped_entry;
ALTER TABLE shipped_entry_pk RENAME TO shipped_entry;
CREATE TRIGGER shipped_entry_no_update BEFORE UPDATE ON shipped_entry
BEGIN SELECT RAISE(ABORT, 'shipped_entry is append-only'); END;
CREATE TRIGGER shipped_entry_no_delete BEFORE DELETE ON shipped_entry
BEGIN SELECT RAISE(ABORT, 'shipped_entry is append-only'); END;
