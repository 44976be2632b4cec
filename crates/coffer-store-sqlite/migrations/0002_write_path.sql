-- Coffer SQLite schema, version 2: open record transactions (PROTOCOL.md §5.3).
--
-- A transactional record update applies the new data at once (new revision, history entry) and
-- leaves a row here with what is needed to undo it. Finalising deletes the row and the files
-- listed in `remove_files`; rolling back (explicitly, or when `expires_at` has passed) writes
-- `previous_data` back as a new, higher revision and deletes the row. At most one transaction is
-- open per record, hence the primary key.

CREATE TABLE record_transactions (
    record_uid        TEXT PRIMARY KEY NOT NULL REFERENCES records (uid),
    kind              TEXT NOT NULL,          -- `general` or `rotation`, as given by the server
    previous_data     BLOB NOT NULL,
    previous_revision INTEGER NOT NULL,
    -- File UIDs to delete on finalisation, as a JSON array of strings.
    remove_files      TEXT NOT NULL CHECK (json_valid(remove_files)
                                           AND json_type(remove_files) = 'array'),
    actor             TEXT NOT NULL,
    expires_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX record_transactions_by_expiry ON record_transactions (expires_at);
