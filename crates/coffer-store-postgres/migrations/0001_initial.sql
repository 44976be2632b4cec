-- Coffer PostgreSQL schema, version 1. Same tables, columns, keys, checks and indexes as the
-- SQLite schema of the same version, in PostgreSQL types: BYTEA for bytes, BIGINT for times,
-- revisions and sizes, BOOLEAN for flags.
--
-- Every key and data column holds client-made ciphertext as opaque bytes. Times are
-- milliseconds since the Unix epoch. Every text column uses the "C" collation, so that
-- comparison and ORDER BY are byte-wise whatever the database's default collation is (the same
-- order SQLite and Rust use). Foreign keys are plain (NO ACTION): deleting a parent must deal
-- with its children explicitly (file content, history, shares), so nothing disappears silently.
-- Later changes go in new numbered migrations.

CREATE TABLE settings (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE owners (
    uid                   TEXT COLLATE "C" PRIMARY KEY,
    email                 TEXT COLLATE "C" NOT NULL UNIQUE,   -- lower-cased by the store
    kdf                   TEXT COLLATE "C" NOT NULL,
    auth_hash             TEXT COLLATE "C" NOT NULL,
    encrypted_data_key    BYTEA NOT NULL,
    public_key            BYTEA NOT NULL,
    encrypted_private_key BYTEA NOT NULL,
    created_at            BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    owner_uid  TEXT COLLATE "C" NOT NULL REFERENCES owners (uid),
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_owner ON sessions (owner_uid);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- A shared folder has no parent and is its own root; a sub-folder has a parent and another root.
CREATE TABLE folders (
    uid        TEXT COLLATE "C" PRIMARY KEY,
    owner_uid  TEXT COLLATE "C" NOT NULL REFERENCES owners (uid),
    parent_uid TEXT COLLATE "C" REFERENCES folders (uid),
    root_uid   TEXT COLLATE "C" NOT NULL REFERENCES folders (uid),
    key        BYTEA NOT NULL,
    data       BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    CHECK ((parent_uid IS NULL) = (root_uid = uid))
);
CREATE INDEX folders_by_owner ON folders (owner_uid);
CREATE INDEX folders_by_root ON folders (root_uid);
CREATE INDEX folders_by_parent ON folders (parent_uid);

CREATE TABLE records (
    uid             TEXT COLLATE "C" PRIMARY KEY,
    owner_uid       TEXT COLLATE "C" NOT NULL REFERENCES owners (uid),
    root_folder_uid TEXT COLLATE "C" NOT NULL REFERENCES folders (uid),
    folder_uid      TEXT COLLATE "C" NOT NULL REFERENCES folders (uid),
    key             BYTEA NOT NULL,
    owner_key       BYTEA,
    data            BYTEA NOT NULL,
    revision        BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX records_by_owner ON records (owner_uid, created_at);
CREATE INDEX records_by_root ON records (root_folder_uid, created_at);
CREATE INDEX records_by_folder ON records (folder_uid);

-- One row per record data revision (the create and every later change).
CREATE TABLE record_history (
    record_uid TEXT COLLATE "C" NOT NULL REFERENCES records (uid),
    revision   BIGINT NOT NULL,
    data       BYTEA NOT NULL,
    actor      TEXT COLLATE "C" NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (record_uid, revision)
);

-- Complete files only; pending ones live in `uploads`.
CREATE TABLE files (
    uid        TEXT COLLATE "C" PRIMARY KEY,
    record_uid TEXT COLLATE "C" NOT NULL REFERENCES records (uid),
    key        BYTEA NOT NULL,
    owner_key  BYTEA,
    data       BYTEA NOT NULL,
    size       BIGINT NOT NULL CHECK (size >= 0),
    created_at BIGINT NOT NULL
);
CREATE INDEX files_by_record ON files (record_uid, created_at);

-- Pending uploads: the file row to publish plus the record change that goes with it.
CREATE TABLE uploads (
    token_hash      BYTEA PRIMARY KEY,
    file_uid        TEXT COLLATE "C" NOT NULL UNIQUE,
    record_uid      TEXT COLLATE "C" NOT NULL REFERENCES records (uid),
    file_key        BYTEA NOT NULL,
    file_owner_key  BYTEA,
    file_data       BYTEA NOT NULL,
    file_size       BIGINT NOT NULL CHECK (file_size >= 0),
    file_created_at BIGINT NOT NULL,
    record_data     BYTEA NOT NULL,
    record_revision BIGINT,
    actor           TEXT COLLATE "C" NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX uploads_by_record ON uploads (record_uid);
CREATE INDEX uploads_by_expiry ON uploads (expires_at);

CREATE TABLE apps (
    uid        TEXT COLLATE "C" PRIMARY KEY,
    owner_uid  TEXT COLLATE "C" NOT NULL REFERENCES owners (uid),
    key        BYTEA NOT NULL,
    data       BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX apps_by_owner ON apps (owner_uid, created_at);

-- `target_uid` is a shared folder or a record depending on `kind`, so it has no foreign key.
CREATE TABLE shares (
    app_uid    TEXT COLLATE "C" NOT NULL REFERENCES apps (uid),
    target_uid TEXT COLLATE "C" NOT NULL,
    kind       TEXT COLLATE "C" NOT NULL CHECK (kind IN ('folder', 'record')),
    key        BYTEA NOT NULL,
    editable   BOOLEAN NOT NULL,
    PRIMARY KEY (app_uid, target_uid)
);
CREATE INDEX shares_by_target ON shares (target_uid);

CREATE TABLE devices (
    client_id               TEXT COLLATE "C" PRIMARY KEY,
    app_uid                 TEXT COLLATE "C" NOT NULL REFERENCES apps (uid),
    name                    BYTEA NOT NULL,
    encrypted_app_key       BYTEA NOT NULL,
    public_key              BYTEA,
    first_access_expires_at BIGINT,
    ip_lock                 BOOLEAN NOT NULL,
    bound_at                BIGINT,
    bound_ip                TEXT COLLATE "C",
    created_at              BIGINT NOT NULL,
    last_access_at          BIGINT
);
CREATE INDEX devices_by_app ON devices (app_uid, created_at);

-- Append-only. No foreign keys: the trail outlives what it talks about. The identity never
-- reuses a value, like SQLite's AUTOINCREMENT.
CREATE TABLE audit_events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_uid TEXT COLLATE "C",
    at        BIGINT NOT NULL,
    actor     TEXT COLLATE "C" NOT NULL,
    action    TEXT COLLATE "C" NOT NULL,
    target    TEXT COLLATE "C",
    ip        TEXT COLLATE "C",
    detail    TEXT COLLATE "C"
);
CREATE INDEX audit_by_owner ON audit_events (owner_uid, id);
CREATE INDEX audit_by_actor ON audit_events (actor, id);
CREATE INDEX audit_by_target ON audit_events (target, id);
CREATE INDEX audit_by_time ON audit_events (at);
