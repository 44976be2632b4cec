-- Coffer PostgreSQL schema, version 3: request counters for rate limiting (`count_request`).
--
-- One row per key and fixed window, shared by every instance using the database, so a limit
-- holds across all of them. SQLite has no such table: a SQLite file serves one process, which
-- counts in memory. The counters are not part of a vault (`export` leaves them out) and need not
-- survive a crash: the store commits their changes without waiting for the WAL flush.
-- The store deletes a key's older windows when the key starts a new one, and now and then the
-- windows of keys nobody has counted for a long time (hence the index on window_start).

CREATE TABLE rate_counters (
    key          TEXT COLLATE "C" NOT NULL,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL CHECK (count > 0),
    PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_counters_by_window ON rate_counters (window_start);
