-- Coffer SQLite schema, version 1.
--
-- Every key and data column holds client-made ciphertext as opaque bytes. Times are
-- milliseconds since the Unix epoch. Tables are STRICT so a wrongly typed bind fails loudly.
-- Foreign keys are plain (NO ACTION): deleting a parent must explicitly deal with its children
-- (file content on disk, history, shares), so nothing disappears silently. Later changes go in
-- new numbered migrations; `ALTER TABLE … ADD COLUMN` works on STRICT tables.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE owners (
    uid                   TEXT PRIMARY KEY NOT NULL,
    email                 TEXT NOT NULL UNIQUE,   -- lower-cased by the store
    kdf                   TEXT NOT NULL,
    auth_hash             TEXT NOT NULL,
    encrypted_data_key    BLOB NOT NULL,
    public_key            BLOB NOT NULL,
    encrypted_private_key BLOB NOT NULL,
    created_at            INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY NOT NULL,
    owner_uid  TEXT NOT NULL REFERENCES owners (uid),
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_owner ON sessions (owner_uid);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- A shared folder has no parent and is its own root; a sub-folder has a parent and another root.
CREATE TABLE folders (
    uid        TEXT PRIMARY KEY NOT NULL,
    owner_uid  TEXT NOT NULL REFERENCES owners (uid),
    parent_uid TEXT REFERENCES folders (uid),
    root_uid   TEXT NOT NULL REFERENCES folders (uid),
    key        BLOB NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    CHECK ((parent_uid IS NULL) = (root_uid = uid))
) STRICT;
CREATE INDEX folders_by_owner ON folders (owner_uid);
CREATE INDEX folders_by_root ON folders (root_uid);
CREATE INDEX folders_by_parent ON folders (parent_uid);

CREATE TABLE records (
    uid             TEXT PRIMARY KEY NOT NULL,
    owner_uid       TEXT NOT NULL REFERENCES owners (uid),
    root_folder_uid TEXT NOT NULL REFERENCES folders (uid),
    folder_uid      TEXT NOT NULL REFERENCES folders (uid),
    key             BLOB NOT NULL,
    owner_key       BLOB,
    data            BLOB NOT NULL,
    revision        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX records_by_owner ON records (owner_uid, created_at);
CREATE INDEX records_by_root ON records (root_folder_uid, created_at);
CREATE INDEX records_by_folder ON records (folder_uid);

-- One row per record data revision (the create and every later change).
CREATE TABLE record_history (
    record_uid TEXT NOT NULL REFERENCES records (uid),
    revision   INTEGER NOT NULL,
    data       BLOB NOT NULL,
    actor      TEXT NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (record_uid, revision)
) STRICT;

-- Complete files only; pending ones live in `uploads`.
CREATE TABLE files (
    uid        TEXT PRIMARY KEY NOT NULL,
    record_uid TEXT NOT NULL REFERENCES records (uid),
    key        BLOB NOT NULL,
    owner_key  BLOB,
    data       BLOB NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX files_by_record ON files (record_uid, created_at);

-- Pending uploads: the file row to publish plus the record change that goes with it.
CREATE TABLE uploads (
    token_hash      BLOB PRIMARY KEY NOT NULL,
    file_uid        TEXT NOT NULL UNIQUE,
    record_uid      TEXT NOT NULL REFERENCES records (uid),
    file_key        BLOB NOT NULL,
    file_owner_key  BLOB,
    file_data       BLOB NOT NULL,
    file_size       INTEGER NOT NULL CHECK (file_size >= 0),
    file_created_at INTEGER NOT NULL,
    record_data     BLOB NOT NULL,
    record_revision INTEGER,
    actor           TEXT NOT NULL,
    expires_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX uploads_by_record ON uploads (record_uid);
CREATE INDEX uploads_by_expiry ON uploads (expires_at);

CREATE TABLE apps (
    uid        TEXT PRIMARY KEY NOT NULL,
    owner_uid  TEXT NOT NULL REFERENCES owners (uid),
    key        BLOB NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX apps_by_owner ON apps (owner_uid, created_at);

-- `target_uid` is a shared folder or a record depending on `kind`, so it has no foreign key.
CREATE TABLE shares (
    app_uid    TEXT NOT NULL REFERENCES apps (uid),
    target_uid TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('folder', 'record')),
    key        BLOB NOT NULL,
    editable   INTEGER NOT NULL CHECK (editable IN (0, 1)),
    PRIMARY KEY (app_uid, target_uid)
) STRICT;
CREATE INDEX shares_by_target ON shares (target_uid);

CREATE TABLE devices (
    client_id               TEXT PRIMARY KEY NOT NULL,
    app_uid                 TEXT NOT NULL REFERENCES apps (uid),
    name                    BLOB NOT NULL,
    encrypted_app_key       BLOB NOT NULL,
    public_key              BLOB,
    first_access_expires_at INTEGER,
    ip_lock                 INTEGER NOT NULL CHECK (ip_lock IN (0, 1)),
    bound_at                INTEGER,
    bound_ip                TEXT,
    created_at              INTEGER NOT NULL,
    last_access_at          INTEGER
) STRICT;
CREATE INDEX devices_by_app ON devices (app_uid, created_at);

-- Append-only. No foreign keys: the trail outlives what it talks about.
CREATE TABLE audit_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_uid TEXT,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT,
    ip        TEXT,
    detail    TEXT
) STRICT;
CREATE INDEX audit_by_owner ON audit_events (owner_uid, id);
CREATE INDEX audit_by_actor ON audit_events (actor, id);
CREATE INDEX audit_by_target ON audit_events (target, id);
CREATE INDEX audit_by_time ON audit_events (at);
