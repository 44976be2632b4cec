-- Coffer PostgreSQL schema, version 2: open record transactions (PROTOCOL.md §5.3).
--
-- A transactional record update applies the new data at once (new revision, history entry) and
-- leaves a row here with what is needed to undo it. Finalising deletes the row and the files
-- listed in `remove_files`; rolling back (explicitly, or when `expires_at` has passed) writes
-- `previous_data` back as a new, higher revision and deletes the row. At most one transaction is
-- open per record, hence the primary key.

CREATE TABLE record_transactions (
    record_uid        TEXT COLLATE "C" PRIMARY KEY REFERENCES records (uid),
    kind              TEXT COLLATE "C" NOT NULL,  -- `general` or `rotation`, as given by the server
    previous_data     BYTEA NOT NULL,
    previous_revision BIGINT NOT NULL,
    -- File UIDs to delete on finalisation, in the order given (SQLite keeps a JSON array).
    remove_files      TEXT[] COLLATE "C" NOT NULL CHECK (array_position(remove_files, NULL) IS NULL),
    actor             TEXT COLLATE "C" NOT NULL,
    expires_at        BIGINT NOT NULL
);
CREATE INDEX record_transactions_by_expiry ON record_transactions (expires_at);
