//! SQLite implementation of Coffer's [`Store`] trait.
//!
//! One database file holds everything. It is opened in WAL mode with `synchronous = FULL`, so a
//! write is on disk (WAL fsynced) before the method that made it returns, and readers never block
//! the writer. Foreign keys are enforced, and a busy timeout of ten seconds lets several
//! connections (or several processes) queue for the single write lock instead of failing.
//!
//! Conditional writes are decided inside the database: either as one statement whose `WHERE`
//! clause carries the condition (SQLite runs every write statement under the write lock), or, when
//! a method has to read before it writes, inside a `BEGIN IMMEDIATE` transaction that takes the
//! write lock up front so that two such transactions never both read and then fail to upgrade.
//!
//! The schema lives in `migrations/` and is embedded in the binary; [`SqliteStore::open`] applies
//! any migrations the file has not seen yet.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coffer_store::{
    AppContents, AppRow, AuditFilter, AuditRow, BindOutcome, DeviceRow, FileRow, FolderRow,
    HistoryRow, Millis, NewAuditEvent, OwnerRow, RecordChange, RecordRow, RecordUpdate, Removed,
    SessionRow, ShareKind, ShareRow, Snapshot, Store, StoreError, StoreResult, TransactionRow,
    UploadRow,
};
use sqlx::error::ErrorKind;
use sqlx::migrate::Migrator;
use sqlx::query_builder::Separated;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, Transaction};

/// The embedded schema migrations.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connections in the pool. SQLite has one writer at a time; the rest serve concurrent reads.
const POOL_SIZE: u32 = 5;
/// How long a statement waits for a lock held by another connection before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often opening retries connecting when the database is busy.
const CONNECT_ATTEMPTS: u32 = 5;
/// How often opening retries the migrations (another process may be applying them right now).
const MIGRATION_ATTEMPTS: u32 = 5;
/// `list_audit` limit when the filter says 0.
const AUDIT_DEFAULT_LIMIT: u32 = 100;
/// Largest `list_audit` page.
const AUDIT_MAX_LIMIT: u32 = 1000;
/// Rows per multi-row `INSERT` of [`Store::import`]: with at most 12 columns a statement stays
/// far below SQLite's limit of bound parameters.
const IMPORT_BATCH: usize = 200;
/// Request counters whose window started this long before the window being counted are
/// forgotten by the sweep; windows up to this long are counted exactly.
const RATE_RETENTION_MS: Millis = 60 * 60 * 1000;
/// The counter map is swept once it holds this many keys (and then at twice what the last sweep
/// left, so that sweeping costs O(1) per call on average).
const RATE_SWEEP_AT: usize = 1024;
/// Past this many keys after the regular sweep (thousands of new keys within an hour, e.g.
/// logins for random emails), a sweep keeps only the window being counted now.
const RATE_MAX_KEYS: usize = 100_000;

// Column lists, as macros so that `concat!` can build `&'static str` statements from them.
macro_rules! owner_cols {
    () => {
        "uid, email, kdf, auth_hash, encrypted_data_key, public_key, encrypted_private_key, \
         created_at"
    };
}
macro_rules! folder_cols {
    () => {
        "uid, owner_uid, parent_uid, root_uid, key, data, created_at"
    };
}
macro_rules! record_cols {
    () => {
        "uid, owner_uid, root_folder_uid, folder_uid, key, owner_key, data, revision, created_at, \
         updated_at"
    };
}
macro_rules! file_cols {
    () => {
        "uid, record_uid, key, owner_key, data, size, created_at"
    };
}
macro_rules! upload_cols {
    () => {
        "token_hash, file_uid, record_uid, file_key, file_owner_key, file_data, file_size, \
         file_created_at, record_data, record_revision, actor, expires_at"
    };
}
macro_rules! transaction_cols {
    () => {
        "record_uid, kind, previous_data, previous_revision, remove_files, actor, expires_at"
    };
}
macro_rules! app_cols {
    () => {
        "uid, owner_uid, key, data, created_at"
    };
}
macro_rules! share_cols {
    () => {
        "app_uid, target_uid, kind, key, editable"
    };
}
macro_rules! device_cols {
    () => {
        "client_id, app_uid, name, encrypted_app_key, public_key, first_access_expires_at, \
         ip_lock, bound_at, bound_ip, created_at, last_access_at"
    };
}
macro_rules! audit_cols {
    () => {
        "id, owner_uid, at, actor, action, target, ip, detail"
    };
}

mod readers;

/// The SQLite store. Cheap to clone (it is a connection pool handle); clones share the pool and
/// the request counters.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Connections of the hot read path (see the `readers` module).
    readers: Arc<readers::Readers>,
    counters: Arc<Mutex<RateCounters>>,
}

/// The request counters of [`Store::count_request`], kept in the process (a SQLite file is used
/// by one server process at a time, so there is nobody to share them with).
///
/// Only the newest window of each key is kept: a key's callers always use the same window
/// length, so a newer window means the older one has ended. Keys that stop being counted are
/// dropped by an occasional sweep once their window started more than [`RATE_RETENTION_MS`]
/// before the window being counted; the sweep does not drop every window older than the current
/// call's, because keys with a longer window (logins per minute) would then lose their count
/// whenever a key with a shorter one (requests per ten seconds) starts a new window.
#[derive(Debug)]
struct RateCounters {
    /// Key → (start of its newest window, requests counted in it).
    windows: HashMap<String, (Millis, u64)>,
    /// The map is swept when it reaches this many keys.
    sweep_at: usize,
}

impl RateCounters {
    fn new() -> Self {
        RateCounters {
            windows: HashMap::new(),
            sweep_at: RATE_SWEEP_AT,
        }
    }

    /// Counts one request; returns the count of the window, this request included.
    fn count(&mut self, key: &str, window_start: Millis) -> u64 {
        let count = match self.windows.get_mut(key) {
            Some((start, count)) if *start == window_start => {
                *count += 1;
                *count
            }
            Some((start, count)) if *start > window_start => {
                // A request for a window older than the key's newest (the clock went back): it
                // is counted in the newer window rather than forgotten, so it never lowers a
                // count.
                *count += 1;
                *count
            }
            Some(entry) => {
                *entry = (window_start, 1);
                1
            }
            None => {
                self.windows.insert(key.to_owned(), (window_start, 1));
                1
            }
        };
        if self.windows.len() >= self.sweep_at {
            self.sweep(window_start);
        }
        count
    }

    /// Drops keys whose newest window started long before `window_start`; if that leaves too
    /// many, every key not counted in `window_start` itself.
    fn sweep(&mut self, window_start: Millis) {
        let horizon = window_start.saturating_sub(RATE_RETENTION_MS);
        self.windows.retain(|_, (start, _)| *start >= horizon);
        if self.windows.len() > RATE_MAX_KEYS {
            self.windows.retain(|_, (start, _)| *start >= window_start);
        }
        self.sweep_at = RATE_SWEEP_AT.max(self.windows.len().saturating_mul(2));
    }
}

impl SqliteStore {
    /// Opens (creating it if missing, with mode 0600 on unix) the database file at `path` and
    /// brings its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        create_private_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = connect(options).await?;
        migrate(&pool).await?;
        tracing::debug!(path = %path.display(), "sqlite store open");
        Ok(SqliteStore {
            pool,
            readers: readers::Readers::new(path.to_path_buf()),
            counters: Arc::new(Mutex::new(RateCounters::new())),
        })
    }

    /// Closes every connection (waiting for running statements). Later calls fail.
    pub async fn close(&self) {
        self.readers.close();
        self.pool.close().await;
    }

    /// Starts a transaction that takes the write lock up front (`BEGIN IMMEDIATE`), for
    /// methods that read and then write depending on what they read.
    async fn begin_immediate(&self, op: &'static str) -> StoreResult<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err(op))
    }
}

/// Ends `tx` according to `result`: commits on `Ok` (a failed commit is the method's error),
/// rolls back on `Err` and returns that error.
async fn finish<T>(
    op: &'static str,
    tx: Transaction<'static, Sqlite>,
    result: StoreResult<T>,
) -> StoreResult<T> {
    match result {
        Ok(value) => {
            tx.commit().await.map_err(map_err(op))?;
            Ok(value)
        }
        Err(e) => {
            // Dropping the transaction would roll it back too; doing it here reports failures.
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(op, error = %rollback, "sqlite rollback failed");
            }
            Err(e)
        }
    }
}

/// Creates `path` as an empty file readable only by its owner, unless it already exists.
fn create_private_file(path: &Path) -> StoreResult<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(file) => {
            // The mode above is filtered by the umask; set it explicitly as well.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| {
                        StoreError::Backend(format!(
                            "open: cannot restrict permissions of {}: {e}",
                            path.display()
                        ))
                    })?;
            }
            drop(file);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Backend(format!(
            "open: cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Opens the pool. The first connection's pragmas switch a new file to WAL, and two
/// connections doing that at once can get `SQLITE_BUSY` straight away (SQLite skips the busy
/// handler where waiting could deadlock); a retry finds the switch made.
async fn connect(options: SqliteConnectOptions) -> StoreResult<SqlitePool> {
    let mut attempt = 1;
    loop {
        match SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => return Ok(pool),
            Err(e) if attempt < CONNECT_ATTEMPTS && is_busy(&e) => {
                tracing::debug!(attempt, error = %e, "sqlite database busy while opening, retrying");
                attempt += 1;
            }
            Err(e) => return Err(backend("open", &e)),
        }
    }
}

/// True for `SQLITE_BUSY` and its extended codes.
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == 5),
        _ => false,
    }
}

/// Applies pending migrations. Two processes opening a new file at once can race on a
/// migration (one of them then fails with "table exists"); a retry sees it applied.
async fn migrate(pool: &SqlitePool) -> StoreResult<()> {
    let mut attempt = 1;
    loop {
        match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < MIGRATION_ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "sqlite migration failed, retrying");
                attempt += 1;
            }
            Err(e) => return Err(StoreError::Backend(format!("migrate: {e}"))),
        }
    }
}

// ---- error mapping -----------------------------------------------------------------------

/// A `Backend` error naming the operation. sqlx messages carry SQLite's text (constraint and
/// table names), never bound values, so no secret ends up in it.
pub(crate) fn backend(op: &str, e: &dyn std::fmt::Display) -> StoreError {
    tracing::warn!(op, error = %e, "sqlite store error");
    StoreError::Backend(format!("{op}: {e}"))
}

/// Maps a sqlx error: unique violations are `Conflict`, a missing referenced row is
/// `Precondition`, `RowNotFound` is `NotFound`, anything else is `Backend`.
fn map_err(op: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => StoreError::Conflict,
            ErrorKind::ForeignKeyViolation => {
                StoreError::Precondition("referenced object does not exist")
            }
            _ => backend(op, &e),
        },
        _ => backend(op, &e),
    }
}

/// Encodes a UID list as a JSON array, for `IN (SELECT value FROM json_each(?))`: one bind
/// however long the list is.
fn json_list(op: &'static str, uids: &[String]) -> StoreResult<String> {
    serde_json::to_string(uids).map_err(|e| backend(op, &e))
}

// ---- row decoding ------------------------------------------------------------------------

fn owner_from(row: &SqliteRow) -> Result<OwnerRow, sqlx::Error> {
    Ok(OwnerRow {
        uid: row.try_get("uid")?,
        email: row.try_get("email")?,
        kdf: row.try_get("kdf")?,
        auth_hash: row.try_get("auth_hash")?,
        encrypted_data_key: row.try_get("encrypted_data_key")?,
        public_key: row.try_get("public_key")?,
        encrypted_private_key: row.try_get("encrypted_private_key")?,
        created_at: row.try_get("created_at")?,
    })
}

fn folder_from(row: &SqliteRow) -> Result<FolderRow, sqlx::Error> {
    Ok(FolderRow {
        uid: row.try_get("uid")?,
        owner_uid: row.try_get("owner_uid")?,
        parent_uid: row.try_get("parent_uid")?,
        root_uid: row.try_get("root_uid")?,
        key: row.try_get("key")?,
        data: row.try_get("data")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Decodes a row selected with `record_cols!()`, by position (the hot path of `get_secret`:
/// looking columns up by name costs more than the decoding itself).
fn record_from(row: &SqliteRow) -> Result<RecordRow, sqlx::Error> {
    Ok(RecordRow {
        uid: row.try_get(0)?,
        owner_uid: row.try_get(1)?,
        root_folder_uid: row.try_get(2)?,
        folder_uid: row.try_get(3)?,
        key: row.try_get(4)?,
        owner_key: row.try_get(5)?,
        data: row.try_get(6)?,
        revision: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
    })
}

fn file_from(row: &SqliteRow) -> Result<FileRow, sqlx::Error> {
    Ok(FileRow {
        uid: row.try_get("uid")?,
        record_uid: row.try_get("record_uid")?,
        key: row.try_get("key")?,
        owner_key: row.try_get("owner_key")?,
        data: row.try_get("data")?,
        size: row.try_get("size")?,
        created_at: row.try_get("created_at")?,
    })
}

fn upload_from(row: &SqliteRow) -> Result<UploadRow, sqlx::Error> {
    Ok(UploadRow {
        token_hash: row.try_get("token_hash")?,
        file: FileRow {
            uid: row.try_get("file_uid")?,
            record_uid: row.try_get("record_uid")?,
            key: row.try_get("file_key")?,
            owner_key: row.try_get("file_owner_key")?,
            data: row.try_get("file_data")?,
            size: row.try_get("file_size")?,
            created_at: row.try_get("file_created_at")?,
        },
        record_data: row.try_get("record_data")?,
        record_revision: row.try_get("record_revision")?,
        actor: row.try_get("actor")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn app_from(row: &SqliteRow) -> Result<AppRow, sqlx::Error> {
    Ok(AppRow {
        uid: row.try_get("uid")?,
        owner_uid: row.try_get("owner_uid")?,
        key: row.try_get("key")?,
        data: row.try_get("data")?,
        created_at: row.try_get("created_at")?,
    })
}

fn share_from(row: &SqliteRow) -> StoreResult<ShareRow> {
    let op = "share";
    let kind: String = row.try_get("kind").map_err(map_err(op))?;
    Ok(ShareRow {
        app_uid: row.try_get("app_uid").map_err(map_err(op))?,
        target_uid: row.try_get("target_uid").map_err(map_err(op))?,
        kind: ShareKind::parse(&kind)?,
        key: row.try_get("key").map_err(map_err(op))?,
        editable: row.try_get("editable").map_err(map_err(op))?,
    })
}

fn device_from(row: &SqliteRow) -> Result<DeviceRow, sqlx::Error> {
    Ok(DeviceRow {
        client_id: row.try_get("client_id")?,
        app_uid: row.try_get("app_uid")?,
        name: row.try_get("name")?,
        encrypted_app_key: row.try_get("encrypted_app_key")?,
        public_key: row.try_get("public_key")?,
        first_access_expires_at: row.try_get("first_access_expires_at")?,
        ip_lock: row.try_get("ip_lock")?,
        bound_at: row.try_get("bound_at")?,
        bound_ip: row.try_get("bound_ip")?,
        created_at: row.try_get("created_at")?,
        last_access_at: row.try_get("last_access_at")?,
    })
}

fn audit_from(row: &SqliteRow) -> Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        id: row.try_get("id")?,
        event: NewAuditEvent {
            at: row.try_get("at")?,
            owner_uid: row.try_get("owner_uid")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            target: row.try_get("target")?,
            ip: row.try_get("ip")?,
            detail: row.try_get("detail")?,
        },
    })
}

/// Decodes every row with `decode`, mapping failures for `op`.
fn decode_all<T>(
    op: &'static str,
    rows: &[SqliteRow],
    decode: fn(&SqliteRow) -> Result<T, sqlx::Error>,
) -> StoreResult<Vec<T>> {
    rows.iter()
        .map(|row| decode(row).map_err(map_err(op)))
        .collect()
}

/// Orders folders depth-first pre-order: every folder right before its subtree, siblings (and
/// the tops of the trees) by creation time, then UID. A folder whose parent is not among `rows`
/// is treated as a top. Folders caught in a parent cycle (impossible through this API) are
/// appended at the end rather than lost.
fn preorder(mut rows: Vec<FolderRow>) -> Vec<FolderRow> {
    rows.sort_by(|a, b| (a.created_at, &a.uid).cmp(&(b.created_at, &b.uid)));
    let order = {
        let position: HashMap<&str, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, f)| (f.uid.as_str(), i))
            .collect();
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut tops = Vec::new();
        for (i, folder) in rows.iter().enumerate() {
            match folder.parent_uid.as_deref().and_then(|p| position.get(p)) {
                Some(&parent) if parent != i => children.entry(parent).or_default().push(i),
                _ => tops.push(i),
            }
        }
        // `rows` is sorted, so `tops` and each child list already are.
        let mut seen = vec![false; rows.len()];
        let mut order = Vec::with_capacity(rows.len());
        let mut stack: Vec<usize> = tops.into_iter().rev().collect();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            order.push(i);
            if let Some(kids) = children.get(&i) {
                stack.extend(kids.iter().rev().copied().filter(|&k| !seen[k]));
            }
        }
        order.extend((0..rows.len()).filter(|&i| !seen[i]));
        order
    };
    let mut slots: Vec<Option<FolderRow>> = rows.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

/// The effective `list_audit` page size.
fn audit_limit(requested: u32) -> u32 {
    match requested {
        0 => AUDIT_DEFAULT_LIMIT,
        n => n.min(AUDIT_MAX_LIMIT),
    }
}

fn transaction_from(row: &SqliteRow) -> StoreResult<TransactionRow> {
    let op = "transaction";
    let remove_files: String = row.try_get("remove_files").map_err(map_err(op))?;
    Ok(TransactionRow {
        record_uid: row.try_get("record_uid").map_err(map_err(op))?,
        kind: row.try_get("kind").map_err(map_err(op))?,
        previous_data: row.try_get("previous_data").map_err(map_err(op))?,
        previous_revision: row.try_get("previous_revision").map_err(map_err(op))?,
        remove_files: parse_list(op, &remove_files)?,
        actor: row.try_get("actor").map_err(map_err(op))?,
        expires_at: row.try_get("expires_at").map_err(map_err(op))?,
    })
}

fn history_from(row: &SqliteRow) -> Result<HistoryRow, sqlx::Error> {
    Ok(HistoryRow {
        revision: row.try_get("revision")?,
        data: row.try_get("data")?,
        actor: row.try_get("actor")?,
        at: row.try_get("at")?,
    })
}

/// Decodes a UID list stored by [`json_list`].
fn parse_list(op: &'static str, json: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(json).map_err(|e| backend(op, &e))
}

// ---- write-path steps --------------------------------------------------------------------
//
// Each runs on a connection inside a `BEGIN IMMEDIATE` transaction opened by the calling trait
// method, which commits only if every step succeeded.

/// Actor of the history entries written by [`Store::expire_transactions`].
const EXPIRY_ACTOR: &str = "system:expiry";

/// Sets a record's data and revision and appends the matching history entry.
async fn write_record_data(
    conn: &mut SqliteConnection,
    op: &'static str,
    record_uid: &str,
    data: &[u8],
    revision: i64,
    actor: &str,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query("UPDATE records SET data = ?, revision = ?, updated_at = ? WHERE uid = ?")
        .bind(data)
        .bind(revision)
        .bind(now)
        .bind(record_uid)
        .execute(&mut *conn)
        .await
        .map_err(map_err(op))?;
    sqlx::query(
        "INSERT INTO record_history (record_uid, revision, data, actor, at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(record_uid)
    .bind(revision)
    .bind(data)
    .bind(actor)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map_err(op))?;
    Ok(())
}

/// Deletes those of `file_uids` that are complete files of `record_uid`; returns their UIDs,
/// sorted. UIDs of other records' files, pending uploads or nothing at all are ignored.
async fn delete_files_of_record(
    conn: &mut SqliteConnection,
    op: &'static str,
    record_uid: &str,
    file_uids: &[String],
) -> StoreResult<Vec<String>> {
    if file_uids.is_empty() {
        return Ok(Vec::new());
    }
    let mut removed: Vec<String> = sqlx::query_scalar(
        "DELETE FROM files WHERE record_uid = ? AND uid IN (SELECT value FROM json_each(?)) \
         RETURNING uid",
    )
    .bind(record_uid)
    .bind(json_list(op, file_uids)?)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    removed.sort();
    Ok(removed)
}

/// The body of [`Store::update_record`].
async fn update_record_in(
    conn: &mut SqliteConnection,
    update: &RecordUpdate,
) -> StoreResult<RecordChange> {
    let op = "update_record";
    let current: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT revision, data FROM records WHERE uid = ?")
            .bind(&update.uid)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err(op))?;
    let Some((current, previous_data)) = current else {
        return Err(StoreError::NotFound);
    };
    let open: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM record_transactions WHERE record_uid = ?)",
    )
    .bind(&update.uid)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err(op))?;
    if open {
        return Err(StoreError::Precondition("transaction open"));
    }
    if current != update.expected_revision {
        return Err(StoreError::Precondition("stale"));
    }
    let revision = current + 1;
    write_record_data(
        conn,
        op,
        &update.uid,
        &update.data,
        revision,
        &update.actor,
        update.now,
    )
    .await?;
    let removed_files = match &update.transaction {
        None => delete_files_of_record(conn, op, &update.uid, &update.remove_files).await?,
        Some(start) => {
            sqlx::query(concat!(
                "INSERT INTO record_transactions (",
                transaction_cols!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(&update.uid)
            .bind(&start.kind)
            .bind(&previous_data)
            .bind(current)
            .bind(json_list(op, &update.remove_files)?)
            .bind(&update.actor)
            .bind(start.expires_at)
            .execute(&mut *conn)
            .await
            .map_err(map_err(op))?;
            Vec::new()
        }
    };
    Ok(RecordChange {
        revision,
        removed_files,
    })
}

/// The current revision of a record; `NotFound` if it does not exist.
async fn revision_of(
    conn: &mut SqliteConnection,
    op: &'static str,
    record_uid: &str,
) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT revision FROM records WHERE uid = ?")
        .bind(record_uid)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err(op))?
        .ok_or(StoreError::NotFound)
}

/// The body of [`Store::finalize_transaction`].
async fn finalize_in(conn: &mut SqliteConnection, record_uid: &str) -> StoreResult<RecordChange> {
    let op = "finalize_transaction";
    let remove_files: Option<String> = sqlx::query_scalar(
        "DELETE FROM record_transactions WHERE record_uid = ? RETURNING remove_files",
    )
    .bind(record_uid)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let Some(remove_files) = remove_files else {
        return Err(StoreError::NotFound);
    };
    let remove_files = parse_list(op, &remove_files)?;
    let removed_files = delete_files_of_record(conn, op, record_uid, &remove_files).await?;
    Ok(RecordChange {
        revision: revision_of(conn, op, record_uid).await?,
        removed_files,
    })
}

/// The body of [`Store::rollback_transaction`], also used by [`Store::expire_transactions`].
async fn rollback_in(
    conn: &mut SqliteConnection,
    op: &'static str,
    record_uid: &str,
    actor: &str,
    now: Millis,
) -> StoreResult<RecordChange> {
    let previous_data: Option<Vec<u8>> = sqlx::query_scalar(
        "DELETE FROM record_transactions WHERE record_uid = ? RETURNING previous_data",
    )
    .bind(record_uid)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let Some(previous_data) = previous_data else {
        return Err(StoreError::NotFound);
    };
    let revision = revision_of(conn, op, record_uid).await? + 1;
    write_record_data(conn, op, record_uid, &previous_data, revision, actor, now).await?;
    Ok(RecordChange {
        revision,
        removed_files: Vec::new(),
    })
}

/// The body of [`Store::expire_transactions`].
async fn expire_in(conn: &mut SqliteConnection, now: Millis) -> StoreResult<Vec<(String, String)>> {
    let op = "expire_transactions";
    let expired: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.record_uid, r.owner_uid FROM record_transactions t \
         JOIN records r ON r.uid = t.record_uid \
         WHERE t.expires_at <= ? ORDER BY t.expires_at, t.record_uid",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    for (record_uid, _) in &expired {
        rollback_in(conn, op, record_uid, EXPIRY_ACTOR, now).await?;
    }
    Ok(expired)
}

/// Deletes the given records with everything hanging off them: complete files, pending uploads,
/// history, open transactions and shares that target them. Returns the UIDs of the deleted
/// files and of the pending uploads' files (both may have content to remove), sorted.
async fn delete_records_in(
    conn: &mut SqliteConnection,
    op: &'static str,
    record_uids: &[String],
) -> StoreResult<Vec<String>> {
    if record_uids.is_empty() {
        return Ok(Vec::new());
    }
    let uids = json_list(op, record_uids)?;
    let mut files: Vec<String> = sqlx::query_scalar(
        "DELETE FROM files WHERE record_uid IN (SELECT value FROM json_each(?)) RETURNING uid",
    )
    .bind(&uids)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let pending: Vec<String> = sqlx::query_scalar(
        "DELETE FROM uploads WHERE record_uid IN (SELECT value FROM json_each(?)) \
         RETURNING file_uid",
    )
    .bind(&uids)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    files.extend(pending);
    for sql in [
        "DELETE FROM record_history WHERE record_uid IN (SELECT value FROM json_each(?))",
        "DELETE FROM record_transactions WHERE record_uid IN (SELECT value FROM json_each(?))",
        "DELETE FROM shares WHERE kind = 'record' \
         AND target_uid IN (SELECT value FROM json_each(?))",
        "DELETE FROM records WHERE uid IN (SELECT value FROM json_each(?))",
    ] {
        sqlx::query(sql)
            .bind(&uids)
            .execute(&mut *conn)
            .await
            .map_err(map_err(op))?;
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// The body of [`Store::delete_record`].
async fn delete_record_in(conn: &mut SqliteConnection, uid: &str) -> StoreResult<Removed> {
    let op = "delete_record";
    revision_of(conn, op, uid).await?;
    let records = vec![uid.to_owned()];
    let files = delete_records_in(conn, op, &records).await?;
    Ok(Removed {
        records,
        folders: Vec::new(),
        files,
    })
}

/// True when `uid` names a record or a folder. Records and folders share one UID space: a
/// share names its target by UID alone, so a record and a folder with one UID would let the
/// deletion of one take the other's shares along.
async fn uid_taken(conn: &mut SqliteConnection, op: &'static str, uid: &str) -> StoreResult<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM records WHERE uid = ?) \
             OR EXISTS (SELECT 1 FROM folders WHERE uid = ?)",
    )
    .bind(uid)
    .bind(uid)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err(op))
}

/// True when a folder directly contains no record and no sub-folder; `None` if it does not
/// exist.
async fn folder_is_empty_in(
    conn: &mut SqliteConnection,
    op: &'static str,
    uid: &str,
) -> StoreResult<Option<bool>> {
    // One statement, so the three answers come from the same snapshot.
    let (exists, has_record, has_child): (bool, bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM folders WHERE uid = ?), \
                EXISTS (SELECT 1 FROM records WHERE folder_uid = ?), \
                EXISTS (SELECT 1 FROM folders WHERE parent_uid = ?)",
    )
    .bind(uid)
    .bind(uid)
    .bind(uid)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err(op))?;
    Ok(exists.then_some(!has_record && !has_child))
}

/// The body of [`Store::delete_folder_tree`].
async fn delete_folder_tree_in(
    conn: &mut SqliteConnection,
    uid: &str,
    force: bool,
) -> StoreResult<Removed> {
    let op = "delete_folder_tree";
    if !force && folder_is_empty_in(conn, op, uid).await? == Some(false) {
        return Err(StoreError::Precondition("folder not empty"));
    }
    // The folder and everything below it by parent links. For a shared folder that is exactly
    // its tree (`root_uid = uid`): a sub-folder is created under an existing parent of the same
    // tree and never moves. UNION (not UNION ALL) ends the walk even on a corrupt cycle.
    let tree: Vec<(String, Option<String>)> = sqlx::query_as(
        "WITH RECURSIVE tree (uid, parent_uid) AS ( \
             SELECT uid, parent_uid FROM folders WHERE uid = ? \
             UNION \
             SELECT f.uid, f.parent_uid FROM folders f JOIN tree t ON f.parent_uid = t.uid \
         ) SELECT uid, parent_uid FROM tree",
    )
    .bind(uid)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    if tree.is_empty() {
        return Err(StoreError::NotFound);
    }
    let levels = deletion_levels(tree);
    let folders: Vec<String> = levels.iter().flatten().cloned().collect();
    let folder_list = json_list(op, &folders)?;

    let records: Vec<String> = sqlx::query_scalar(
        "SELECT uid FROM records WHERE folder_uid IN (SELECT value FROM json_each(?)) \
         ORDER BY uid",
    )
    .bind(&folder_list)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let files = delete_records_in(conn, op, &records).await?;
    sqlx::query(
        "DELETE FROM shares WHERE kind = 'folder' \
         AND target_uid IN (SELECT value FROM json_each(?))",
    )
    .bind(&folder_list)
    .execute(&mut *conn)
    .await
    .map_err(map_err(op))?;
    // Foreign keys (parent_uid, root_uid) point upwards: delete the leaves first.
    for level in &levels {
        sqlx::query("DELETE FROM folders WHERE uid IN (SELECT value FROM json_each(?))")
            .bind(json_list(op, level)?)
            .execute(&mut *conn)
            .await
            .map_err(map_err(op))?;
    }
    Ok(Removed {
        records,
        folders,
        files,
    })
}

/// Splits a folder tree, given as (uid, parent uid) pairs, into deletion levels: every folder
/// comes in a level before its parent's. The first level holds the folders no other folder of
/// the set has as parent, and so on; each level is sorted by UID. Folders caught in a parent
/// cycle (impossible through this API) end up together in one last level.
fn deletion_levels(tree: Vec<(String, Option<String>)>) -> Vec<Vec<String>> {
    let mut remaining = tree;
    let mut levels = Vec::new();
    while !remaining.is_empty() {
        let parents: HashSet<String> = remaining.iter().filter_map(|(_, p)| p.clone()).collect();
        let (leaves, inner): (Vec<_>, Vec<_>) = remaining
            .into_iter()
            .partition(|(uid, _)| !parents.contains(uid));
        let (level, rest) = if leaves.is_empty() {
            (inner, Vec::new())
        } else {
            (leaves, inner)
        };
        let mut level: Vec<String> = level.into_iter().map(|(uid, _)| uid).collect();
        level.sort();
        levels.push(level);
        remaining = rest;
    }
    levels
}

// ---- whole-vault copy ----------------------------------------------------------------------

/// The body of [`Store::export`], inside one read transaction: every statement reads the same
/// snapshot of the file. Orders: settings by key, folders parents first ([`preorder`]), history
/// by (record, revision), open transactions by record, shares by (app, target), audit by id,
/// everything else by creation time and key.
async fn export_in(conn: &mut SqliteConnection) -> StoreResult<Snapshot> {
    let op = "export";
    let settings: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT key, value FROM settings ORDER BY key")
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err(op))?;
    let owners = sqlx::query(concat!(
        "SELECT ",
        owner_cols!(),
        " FROM owners ORDER BY created_at, uid"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let folders = sqlx::query(concat!("SELECT ", folder_cols!(), " FROM folders"))
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err(op))?;
    let records = sqlx::query(concat!(
        "SELECT ",
        record_cols!(),
        " FROM records ORDER BY created_at, uid"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let history = sqlx::query(
        "SELECT record_uid, revision, data, actor, at FROM record_history \
         ORDER BY record_uid, revision",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let transactions = sqlx::query(concat!(
        "SELECT ",
        transaction_cols!(),
        " FROM record_transactions ORDER BY record_uid"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let files = sqlx::query(concat!(
        "SELECT ",
        file_cols!(),
        " FROM files ORDER BY created_at, uid"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let apps = sqlx::query(concat!(
        "SELECT ",
        app_cols!(),
        " FROM apps ORDER BY created_at, uid"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let shares = sqlx::query(concat!(
        "SELECT ",
        share_cols!(),
        " FROM shares ORDER BY app_uid, target_uid"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let devices = sqlx::query(concat!(
        "SELECT ",
        device_cols!(),
        " FROM devices ORDER BY created_at, client_id"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let audit = sqlx::query(concat!(
        "SELECT ",
        audit_cols!(),
        " FROM audit_events ORDER BY id"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    Ok(Snapshot {
        settings,
        owners: decode_all(op, &owners, owner_from)?,
        folders: preorder(decode_all(op, &folders, folder_from)?),
        records: decode_all(op, &records, record_from)?,
        history: history
            .iter()
            .map(|row| Ok((row.try_get("record_uid")?, history_from(row)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err(op))?,
        transactions: transactions
            .iter()
            .map(transaction_from)
            .collect::<StoreResult<_>>()?,
        files: decode_all(op, &files, file_from)?,
        apps: decode_all(op, &apps, app_from)?,
        shares: shares.iter().map(share_from).collect::<StoreResult<_>>()?,
        devices: decode_all(op, &devices, device_from)?,
        audit: decode_all(op, &audit, audit_from)?,
    })
}

/// Inserts `rows` with multi-row `INSERT`s of [`IMPORT_BATCH`] rows: `head` is the statement up
/// to the column list, `bind` pushes one row's values in that order.
async fn insert_batches<'a, T>(
    conn: &mut SqliteConnection,
    head: &'static str,
    rows: &'a [T],
    bind: impl Fn(&mut Separated<'_, 'a, Sqlite, &'static str>, &'a T),
) -> StoreResult<()> {
    for chunk in rows.chunks(IMPORT_BATCH) {
        let mut query = QueryBuilder::<Sqlite>::new(head);
        query.push(" ");
        query.push_values(chunk, |mut values, row| bind(&mut values, row));
        query
            .build()
            .execute(&mut *conn)
            .await
            .map_err(map_err("import"))?;
    }
    Ok(())
}

/// The body of [`Store::import`], inside a `BEGIN IMMEDIATE` transaction: nobody can create an
/// owner between the emptiness check and the inserts. Parents are inserted before the rows that
/// refer to them (foreign keys are checked row by row).
async fn import_in(conn: &mut SqliteConnection, snapshot: &Snapshot) -> StoreResult<()> {
    let op = "import";
    let has_owner: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM owners)")
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err(op))?;
    if has_owner {
        return Err(StoreError::Precondition("not empty"));
    }
    insert_batches(
        conn,
        "INSERT INTO settings (key, value)",
        &snapshot.settings,
        |v, (key, value)| {
            v.push_bind(key).push_bind(value);
        },
    )
    .await?;
    // Stored as they come: the emails are lower-case already in a store's export.
    insert_batches(
        conn,
        concat!("INSERT INTO owners (", owner_cols!(), ")"),
        &snapshot.owners,
        |v, o| {
            v.push_bind(&o.uid)
                .push_bind(&o.email)
                .push_bind(&o.kdf)
                .push_bind(&o.auth_hash)
                .push_bind(&o.encrypted_data_key)
                .push_bind(&o.public_key)
                .push_bind(&o.encrypted_private_key)
                .push_bind(o.created_at);
        },
    )
    .await?;
    // Whatever order the snapshot has, parents go first.
    let folders = preorder(snapshot.folders.clone());
    insert_batches(
        conn,
        concat!("INSERT INTO folders (", folder_cols!(), ")"),
        &folders,
        |v, f| {
            v.push_bind(&f.uid)
                .push_bind(&f.owner_uid)
                .push_bind(&f.parent_uid)
                .push_bind(&f.root_uid)
                .push_bind(&f.key)
                .push_bind(&f.data)
                .push_bind(f.created_at);
        },
    )
    .await?;
    insert_batches(
        conn,
        concat!("INSERT INTO records (", record_cols!(), ")"),
        &snapshot.records,
        |v, r| {
            v.push_bind(&r.uid)
                .push_bind(&r.owner_uid)
                .push_bind(&r.root_folder_uid)
                .push_bind(&r.folder_uid)
                .push_bind(&r.key)
                .push_bind(&r.owner_key)
                .push_bind(&r.data)
                .push_bind(r.revision)
                .push_bind(r.created_at)
                .push_bind(r.updated_at);
        },
    )
    .await?;
    insert_batches(
        conn,
        "INSERT INTO record_history (record_uid, revision, data, actor, at)",
        &snapshot.history,
        |v, (record_uid, h)| {
            v.push_bind(record_uid)
                .push_bind(h.revision)
                .push_bind(&h.data)
                .push_bind(&h.actor)
                .push_bind(h.at);
        },
    )
    .await?;
    let transactions = snapshot
        .transactions
        .iter()
        .map(|t| Ok((t, json_list(op, &t.remove_files)?)))
        .collect::<StoreResult<Vec<_>>>()?;
    insert_batches(
        conn,
        concat!(
            "INSERT INTO record_transactions (",
            transaction_cols!(),
            ")"
        ),
        &transactions,
        |v, (t, remove_files)| {
            v.push_bind(&t.record_uid)
                .push_bind(&t.kind)
                .push_bind(&t.previous_data)
                .push_bind(t.previous_revision)
                .push_bind(remove_files)
                .push_bind(&t.actor)
                .push_bind(t.expires_at);
        },
    )
    .await?;
    insert_batches(
        conn,
        concat!("INSERT INTO files (", file_cols!(), ")"),
        &snapshot.files,
        |v, f| {
            v.push_bind(&f.uid)
                .push_bind(&f.record_uid)
                .push_bind(&f.key)
                .push_bind(&f.owner_key)
                .push_bind(&f.data)
                .push_bind(f.size)
                .push_bind(f.created_at);
        },
    )
    .await?;
    insert_batches(
        conn,
        concat!("INSERT INTO apps (", app_cols!(), ")"),
        &snapshot.apps,
        |v, a| {
            v.push_bind(&a.uid)
                .push_bind(&a.owner_uid)
                .push_bind(&a.key)
                .push_bind(&a.data)
                .push_bind(a.created_at);
        },
    )
    .await?;
    insert_batches(
        conn,
        concat!("INSERT INTO shares (", share_cols!(), ")"),
        &snapshot.shares,
        |v, sh| {
            v.push_bind(&sh.app_uid)
                .push_bind(&sh.target_uid)
                .push_bind(sh.kind.as_str())
                .push_bind(&sh.key)
                .push_bind(sh.editable);
        },
    )
    .await?;
    insert_batches(
        conn,
        concat!("INSERT INTO devices (", device_cols!(), ")"),
        &snapshot.devices,
        |v, d| {
            v.push_bind(&d.client_id)
                .push_bind(&d.app_uid)
                .push_bind(&d.name)
                .push_bind(&d.encrypted_app_key)
                .push_bind(&d.public_key)
                .push_bind(d.first_access_expires_at)
                .push_bind(d.ip_lock)
                .push_bind(d.bound_at)
                .push_bind(&d.bound_ip)
                .push_bind(d.created_at)
                .push_bind(d.last_access_at);
        },
    )
    .await?;
    // Explicit ids: AUTOINCREMENT remembers the largest one inserted, so later events get
    // higher ids.
    insert_batches(
        conn,
        concat!("INSERT INTO audit_events (", audit_cols!(), ")"),
        &snapshot.audit,
        |v, a| {
            v.push_bind(a.id)
                .push_bind(&a.event.owner_uid)
                .push_bind(a.event.at)
                .push_bind(&a.event.actor)
                .push_bind(&a.event.action)
                .push_bind(&a.event.target)
                .push_bind(&a.event.ip)
                .push_bind(&a.event.detail);
        },
    )
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    // ---- server settings -------------------------------------------------------------

    async fn setting(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err("setting"))
    }

    async fn setting_init(&self, key: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
        // One statement: inserts, or (on conflict) "updates" the row to itself, and in both
        // cases returns what is stored now.
        sqlx::query_scalar(
            "INSERT INTO settings (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = settings.value \
             RETURNING value",
        )
        .bind(key)
        .bind(value)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err("setting_init"))
    }

    async fn setting_delete(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM settings WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(map_err("setting_delete"))?;
        Ok(())
    }

    // ---- owners and sessions ---------------------------------------------------------

    async fn owner_count(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM owners")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err("owner_count"))?;
        u64::try_from(n).map_err(|e| backend("owner_count", &e))
    }

    async fn create_owner(&self, owner: &OwnerRow, first: bool) -> StoreResult<()> {
        // With `first`, the "no owner yet" condition is part of the insert itself.
        let sql = if first {
            concat!(
                "INSERT INTO owners (",
                owner_cols!(),
                ") SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM owners)"
            )
        } else {
            concat!(
                "INSERT INTO owners (",
                owner_cols!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            )
        };
        let done = sqlx::query(sql)
            .bind(&owner.uid)
            .bind(owner.email.to_lowercase())
            .bind(&owner.kdf)
            .bind(&owner.auth_hash)
            .bind(&owner.encrypted_data_key)
            .bind(&owner.public_key)
            .bind(&owner.encrypted_private_key)
            .bind(owner.created_at)
            .execute(&self.pool)
            .await
            .map_err(map_err("create_owner"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Precondition("an owner already exists"));
        }
        Ok(())
    }

    async fn owner_by_email(&self, email: &str) -> StoreResult<OwnerRow> {
        let row = sqlx::query(concat!(
            "SELECT ",
            owner_cols!(),
            " FROM owners WHERE email = ?"
        ))
        .bind(email.to_lowercase())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err("owner_by_email"))?
        .ok_or(StoreError::NotFound)?;
        owner_from(&row).map_err(map_err("owner_by_email"))
    }

    async fn owner(&self, uid: &str) -> StoreResult<OwnerRow> {
        let row = sqlx::query(concat!(
            "SELECT ",
            owner_cols!(),
            " FROM owners WHERE uid = ?"
        ))
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err("owner"))?
        .ok_or(StoreError::NotFound)?;
        owner_from(&row).map_err(map_err("owner"))
    }

    async fn create_session(&self, session: &SessionRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO sessions (token_hash, owner_uid, expires_at) VALUES (?, ?, ?)")
            .bind(&session.token_hash)
            .bind(&session.owner_uid)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await
            .map_err(map_err("create_session"))?;
        Ok(())
    }

    async fn session_owner(&self, token_hash: &[u8], now: Millis) -> StoreResult<String> {
        sqlx::query_scalar("SELECT owner_uid FROM sessions WHERE token_hash = ? AND expires_at > ?")
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err("session_owner"))?
            .ok_or(StoreError::NotFound)
    }

    async fn delete_session(&self, token_hash: &[u8], now: Millis) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ? OR expires_at <= ?")
            .bind(token_hash)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(map_err("delete_session"))?;
        Ok(())
    }

    // ---- folders -----------------------------------------------------------------------

    async fn create_folder(&self, folder: &FolderRow) -> StoreResult<()> {
        let op = "create_folder";
        let mut tx = self.begin_immediate(op).await?;
        if uid_taken(&mut tx, op, &folder.uid).await? {
            tx.rollback().await.map_err(map_err(op))?;
            return Err(StoreError::Conflict);
        }
        sqlx::query(concat!(
            "INSERT INTO folders (",
            folder_cols!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&folder.uid)
        .bind(&folder.owner_uid)
        .bind(&folder.parent_uid)
        .bind(&folder.root_uid)
        .bind(&folder.key)
        .bind(&folder.data)
        .bind(folder.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err(op))?;
        tx.commit().await.map_err(map_err(op))
    }

    async fn folder(&self, uid: &str) -> StoreResult<FolderRow> {
        let row = sqlx::query(concat!(
            "SELECT ",
            folder_cols!(),
            " FROM folders WHERE uid = ?"
        ))
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err("folder"))?
        .ok_or(StoreError::NotFound)?;
        folder_from(&row).map_err(map_err("folder"))
    }

    async fn folders_of_owner(&self, owner_uid: &str) -> StoreResult<Vec<FolderRow>> {
        let op = "folders_of_owner";
        let rows = sqlx::query(concat!(
            "SELECT ",
            folder_cols!(),
            " FROM folders WHERE owner_uid = ?"
        ))
        .bind(owner_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        Ok(preorder(decode_all(op, &rows, folder_from)?))
    }

    async fn folders_in_roots(&self, root_uids: &[String]) -> StoreResult<Vec<FolderRow>> {
        let op = "folders_in_roots";
        if root_uids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            folder_cols!(),
            " FROM folders WHERE root_uid IN (SELECT value FROM json_each(?))"
        ))
        .bind(json_list(op, root_uids)?)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        Ok(preorder(decode_all(op, &rows, folder_from)?))
    }

    // ---- records and files ---------------------------------------------------------------

    async fn create_record(&self, record: &RecordRow, actor: &str) -> StoreResult<()> {
        let op = "create_record";
        let mut tx = self.begin_immediate(op).await?;
        if uid_taken(&mut tx, op, &record.uid).await? {
            tx.rollback().await.map_err(map_err(op))?;
            return Err(StoreError::Conflict);
        }
        sqlx::query(concat!(
            "INSERT INTO records (",
            record_cols!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&record.uid)
        .bind(&record.owner_uid)
        .bind(&record.root_folder_uid)
        .bind(&record.folder_uid)
        .bind(&record.key)
        .bind(&record.owner_key)
        .bind(&record.data)
        .bind(record.revision)
        .bind(record.created_at)
        .bind(record.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err(op))?;
        sqlx::query(
            "INSERT INTO record_history (record_uid, revision, data, actor, at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&record.uid)
        .bind(record.revision)
        .bind(&record.data)
        .bind(actor)
        .bind(record.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err(op))?;
        tx.commit().await.map_err(map_err(op))
    }

    async fn record(&self, uid: &str) -> StoreResult<RecordRow> {
        let row = sqlx::query(concat!(
            "SELECT ",
            record_cols!(),
            " FROM records WHERE uid = ?"
        ))
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err("record"))?
        .ok_or(StoreError::NotFound)?;
        record_from(&row).map_err(map_err("record"))
    }

    async fn records_of_owner(&self, owner_uid: &str) -> StoreResult<Vec<RecordRow>> {
        let op = "records_of_owner";
        let rows = sqlx::query(concat!(
            "SELECT ",
            record_cols!(),
            " FROM records WHERE owner_uid = ? ORDER BY created_at, uid"
        ))
        .bind(owner_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        decode_all(op, &rows, record_from)
    }

    async fn records_in_roots(&self, root_uids: &[String]) -> StoreResult<Vec<RecordRow>> {
        let op = "records_in_roots";
        if root_uids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            record_cols!(),
            " FROM records WHERE root_folder_uid IN (SELECT value FROM json_each(?)) \
              ORDER BY created_at, uid"
        ))
        .bind(json_list(op, root_uids)?)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        decode_all(op, &rows, record_from)
    }

    async fn records_by_uids(&self, uids: &[String]) -> StoreResult<Vec<RecordRow>> {
        let op = "records_by_uids";
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            record_cols!(),
            " FROM records WHERE uid IN (SELECT value FROM json_each(?)) \
              ORDER BY created_at, uid"
        ))
        .bind(json_list(op, uids)?)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        decode_all(op, &rows, record_from)
    }

    async fn files_of_records(&self, record_uids: &[String]) -> StoreResult<Vec<FileRow>> {
        let op = "files_of_records";
        if record_uids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            file_cols!(),
            " FROM files WHERE record_uid IN (SELECT value FROM json_each(?)) \
              ORDER BY created_at, uid"
        ))
        .bind(json_list(op, record_uids)?)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        decode_all(op, &rows, file_from)
    }

    async fn file(&self, uid: &str) -> StoreResult<FileRow> {
        let row = sqlx::query(concat!(
            "SELECT ",
            file_cols!(),
            " FROM files WHERE uid = ?"
        ))
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err("file"))?
        .ok_or(StoreError::NotFound)?;
        file_from(&row).map_err(map_err("file"))
    }

    // ---- uploads ---------------------------------------------------------------------------

    async fn create_upload(&self, upload: &UploadRow) -> StoreResult<()> {
        // The UNIQUE file_uid column rules out a second pending upload of the same file; the
        // NOT EXISTS rules out reusing the UID of a complete file. One statement, so both are
        // checked under the write lock.
        let done = sqlx::query(concat!(
            "INSERT INTO uploads (",
            upload_cols!(),
            ") SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
              WHERE NOT EXISTS (SELECT 1 FROM files WHERE uid = ?)"
        ))
        .bind(&upload.token_hash)
        .bind(&upload.file.uid)
        .bind(&upload.file.record_uid)
        .bind(&upload.file.key)
        .bind(&upload.file.owner_key)
        .bind(&upload.file.data)
        .bind(upload.file.size)
        .bind(upload.file.created_at)
        .bind(&upload.record_data)
        .bind(upload.record_revision)
        .bind(&upload.actor)
        .bind(upload.expires_at)
        .bind(&upload.file.uid)
        .execute(&self.pool)
        .await
        .map_err(map_err("create_upload"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn upload(&self, token_hash: &[u8], now: Millis) -> StoreResult<UploadRow> {
        let row = sqlx::query(concat!(
            "SELECT ",
            upload_cols!(),
            " FROM uploads WHERE token_hash = ? AND expires_at > ?"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err("upload"))?
        .ok_or(StoreError::NotFound)?;
        upload_from(&row).map_err(map_err("upload"))
    }

    async fn complete_upload(&self, token_hash: &[u8], now: Millis) -> StoreResult<i64> {
        let op = "complete_upload";
        // Reads, then writes depending on what it read: take the write lock first.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err(op))?;
        // Expiry is not checked here: the content has arrived, and `expire_uploads` deleting the
        // row first is what makes a late completion fail.
        let row = sqlx::query(concat!(
            "SELECT ",
            upload_cols!(),
            " FROM uploads WHERE token_hash = ?"
        ))
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err(op))?;
        let Some(row) = row else {
            tx.rollback().await.map_err(map_err(op))?;
            return Err(StoreError::NotFound);
        };
        let upload = upload_from(&row).map_err(map_err(op))?;
        let current: Option<i64> = sqlx::query_scalar("SELECT revision FROM records WHERE uid = ?")
            .bind(&upload.file.record_uid)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err(op))?;
        let Some(current) = current else {
            tx.rollback().await.map_err(map_err(op))?;
            return Err(StoreError::NotFound);
        };
        if upload
            .record_revision
            .is_some_and(|expected| expected != current)
        {
            tx.rollback().await.map_err(map_err(op))?;
            return Err(StoreError::Precondition("record is out of date"));
        }
        // A rollback would restore data that does not mention this file: refuse while a
        // transaction is open on the record.
        let open: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM record_transactions WHERE record_uid = ?")
                .bind(&upload.file.record_uid)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err(op))?;
        if open.is_some() {
            tx.rollback().await.map_err(map_err(op))?;
            return Err(StoreError::Precondition("transaction open"));
        }
        let revision = current + 1;
        sqlx::query("UPDATE records SET data = ?, revision = ?, updated_at = ? WHERE uid = ?")
            .bind(&upload.record_data)
            .bind(revision)
            .bind(now)
            .bind(&upload.file.record_uid)
            .execute(&mut *tx)
            .await
            .map_err(map_err(op))?;
        sqlx::query(
            "INSERT INTO record_history (record_uid, revision, data, actor, at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&upload.file.record_uid)
        .bind(revision)
        .bind(&upload.record_data)
        .bind(&upload.actor)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err(op))?;
        sqlx::query(concat!(
            "INSERT INTO files (",
            file_cols!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&upload.file.uid)
        .bind(&upload.file.record_uid)
        .bind(&upload.file.key)
        .bind(&upload.file.owner_key)
        .bind(&upload.file.data)
        .bind(upload.file.size)
        .bind(upload.file.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err(op))?;
        sqlx::query("DELETE FROM uploads WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&mut *tx)
            .await
            .map_err(map_err(op))?;
        tx.commit().await.map_err(map_err(op))?;
        Ok(revision)
    }

    async fn expire_uploads(&self, now: Millis) -> StoreResult<Vec<String>> {
        let mut uids: Vec<String> =
            sqlx::query_scalar("DELETE FROM uploads WHERE expires_at <= ? RETURNING file_uid")
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err("expire_uploads"))?;
        uids.sort();
        Ok(uids)
    }

    // ---- applications and shares ------------------------------------------------------------

    async fn create_app(&self, app: &AppRow) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO apps (",
            app_cols!(),
            ") VALUES (?, ?, ?, ?, ?)"
        ))
        .bind(&app.uid)
        .bind(&app.owner_uid)
        .bind(&app.key)
        .bind(&app.data)
        .bind(app.created_at)
        .execute(&self.pool)
        .await
        .map_err(map_err("create_app"))?;
        Ok(())
    }

    async fn app(&self, uid: &str) -> StoreResult<AppRow> {
        let row = sqlx::query(concat!("SELECT ", app_cols!(), " FROM apps WHERE uid = ?"))
            .bind(uid)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err("app"))?
            .ok_or(StoreError::NotFound)?;
        app_from(&row).map_err(map_err("app"))
    }

    async fn apps_of_owner(&self, owner_uid: &str) -> StoreResult<Vec<AppRow>> {
        let op = "apps_of_owner";
        let rows = sqlx::query(concat!(
            "SELECT ",
            app_cols!(),
            " FROM apps WHERE owner_uid = ? ORDER BY created_at, uid"
        ))
        .bind(owner_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        decode_all(op, &rows, app_from)
    }

    async fn put_share(&self, share: &ShareRow) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO shares (",
            share_cols!(),
            ") VALUES (?, ?, ?, ?, ?) \
              ON CONFLICT (app_uid, target_uid) DO UPDATE SET \
              kind = excluded.kind, key = excluded.key, editable = excluded.editable"
        ))
        .bind(&share.app_uid)
        .bind(&share.target_uid)
        .bind(share.kind.as_str())
        .bind(&share.key)
        .bind(share.editable)
        .execute(&self.pool)
        .await
        .map_err(map_err("put_share"))?;
        Ok(())
    }

    async fn delete_share(&self, app_uid: &str, target_uid: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM shares WHERE app_uid = ? AND target_uid = ?")
            .bind(app_uid)
            .bind(target_uid)
            .execute(&self.pool)
            .await
            .map_err(map_err("delete_share"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn app_contents(&self, app_uid: &str) -> StoreResult<AppContents> {
        let app_uid = app_uid.to_owned();
        self.readers
            .read("app_contents", move |conn| {
                readers::app_contents(conn, &app_uid)
            })
            .await
    }

    async fn shares_of_app(&self, app_uid: &str) -> StoreResult<Vec<ShareRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            share_cols!(),
            " FROM shares WHERE app_uid = ? ORDER BY target_uid"
        ))
        .bind(app_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err("shares_of_app"))?;
        rows.iter().map(share_from).collect()
    }

    // ---- devices ---------------------------------------------------------------------------

    async fn create_device(&self, device: &DeviceRow) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO devices (",
            device_cols!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&device.client_id)
        .bind(&device.app_uid)
        .bind(&device.name)
        .bind(&device.encrypted_app_key)
        .bind(&device.public_key)
        .bind(device.first_access_expires_at)
        .bind(device.ip_lock)
        .bind(device.bound_at)
        .bind(&device.bound_ip)
        .bind(device.created_at)
        .bind(device.last_access_at)
        .execute(&self.pool)
        .await
        .map_err(map_err("create_device"))?;
        Ok(())
    }

    async fn device(&self, client_id: &str) -> StoreResult<DeviceRow> {
        let row = sqlx::query(concat!(
            "SELECT ",
            device_cols!(),
            " FROM devices WHERE client_id = ?"
        ))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err("device"))?
        .ok_or(StoreError::NotFound)?;
        device_from(&row).map_err(map_err("device"))
    }

    async fn bind_device(
        &self,
        client_id: &str,
        public_key: &[u8],
        ip: &str,
        now: Millis,
    ) -> StoreResult<BindOutcome> {
        let op = "bind_device";
        // A bound key never changes back to NULL, so once the conditional update has lost, the
        // key read afterwards is the one that won. The loop only repeats if the device vanished
        // and reappeared unbound between the two statements.
        for _ in 0..3 {
            let done = sqlx::query(
                "UPDATE devices SET public_key = ?, bound_at = ?, bound_ip = ? \
                 WHERE client_id = ? AND public_key IS NULL",
            )
            .bind(public_key)
            .bind(now)
            .bind(ip)
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(map_err(op))?;
            if done.rows_affected() == 1 {
                return Ok(BindOutcome::Bound);
            }
            let bound: Option<Option<Vec<u8>>> =
                sqlx::query_scalar("SELECT public_key FROM devices WHERE client_id = ?")
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err(op))?;
            match bound {
                None => return Err(StoreError::NotFound),
                Some(Some(key)) if key == public_key => {
                    return Ok(BindOutcome::AlreadyBoundSameKey);
                }
                Some(Some(_)) => return Ok(BindOutcome::AlreadyBoundOtherKey),
                Some(None) => continue,
            }
        }
        Err(StoreError::Backend(format!(
            "{op}: device keeps changing, giving up"
        )))
    }

    async fn touch_device(&self, client_id: &str, now: Millis) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET last_access_at = ? WHERE client_id = ?")
            .bind(now)
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(map_err("touch_device"))?;
        Ok(())
    }

    async fn devices_of_app(&self, app_uid: &str) -> StoreResult<Vec<DeviceRow>> {
        let op = "devices_of_app";
        let rows = sqlx::query(concat!(
            "SELECT ",
            device_cols!(),
            " FROM devices WHERE app_uid = ? ORDER BY created_at, client_id"
        ))
        .bind(app_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        decode_all(op, &rows, device_from)
    }

    async fn delete_device(&self, app_uid: &str, client_id: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM devices WHERE app_uid = ? AND client_id = ?")
            .bind(app_uid)
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(map_err("delete_device"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    // ---- record changes (write path) -----------------------------------------------------

    async fn update_record(&self, update: &RecordUpdate) -> StoreResult<RecordChange> {
        let op = "update_record";
        let mut tx = self.begin_immediate(op).await?;
        let result = update_record_in(&mut tx, update).await;
        finish(op, tx, result).await
    }

    async fn transaction(&self, record_uid: &str) -> StoreResult<TransactionRow> {
        let row = sqlx::query(concat!(
            "SELECT ",
            transaction_cols!(),
            " FROM record_transactions WHERE record_uid = ?"
        ))
        .bind(record_uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err("transaction"))?
        .ok_or(StoreError::NotFound)?;
        transaction_from(&row)
    }

    async fn finalize_transaction(
        &self,
        record_uid: &str,
        _now: Millis,
    ) -> StoreResult<RecordChange> {
        // An expired transaction that the sweep has not rolled back yet can still be finalised:
        // whichever of the two takes the write lock first decides, and the other finds nothing.
        let op = "finalize_transaction";
        let mut tx = self.begin_immediate(op).await?;
        let result = finalize_in(&mut tx, record_uid).await;
        finish(op, tx, result).await
    }

    async fn rollback_transaction(
        &self,
        record_uid: &str,
        actor: &str,
        now: Millis,
    ) -> StoreResult<RecordChange> {
        let op = "rollback_transaction";
        let mut tx = self.begin_immediate(op).await?;
        let result = rollback_in(&mut tx, op, record_uid, actor, now).await;
        finish(op, tx, result).await
    }

    async fn expire_transactions(&self, now: Millis) -> StoreResult<Vec<(String, String)>> {
        let op = "expire_transactions";
        // A cheap read first, so that the periodic sweep only takes the write lock when there
        // is something to do; what to roll back is decided again under the lock.
        let due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM record_transactions WHERE expires_at <= ?)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err(op))?;
        if !due {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_immediate(op).await?;
        let result = expire_in(&mut tx, now).await;
        finish(op, tx, result).await
    }

    async fn record_history(&self, record_uid: &str) -> StoreResult<Vec<HistoryRow>> {
        let op = "record_history";
        let rows = sqlx::query(
            "SELECT revision, data, actor, at FROM record_history WHERE record_uid = ? \
             ORDER BY revision DESC",
        )
        .bind(record_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        decode_all(op, &rows, history_from)
    }

    async fn delete_record(&self, uid: &str) -> StoreResult<Removed> {
        let op = "delete_record";
        let mut tx = self.begin_immediate(op).await?;
        let result = delete_record_in(&mut tx, uid).await;
        finish(op, tx, result).await
    }

    async fn update_folder(&self, uid: &str, data: &[u8]) -> StoreResult<()> {
        let done = sqlx::query("UPDATE folders SET data = ? WHERE uid = ?")
            .bind(data)
            .bind(uid)
            .execute(&self.pool)
            .await
            .map_err(map_err("update_folder"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_folder_tree(&self, uid: &str, force: bool) -> StoreResult<Removed> {
        let op = "delete_folder_tree";
        let mut tx = self.begin_immediate(op).await?;
        let result = delete_folder_tree_in(&mut tx, uid, force).await;
        finish(op, tx, result).await
    }

    // ---- audit -----------------------------------------------------------------------------

    async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_events (owner_uid, at, actor, action, target, ip, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&event.owner_uid)
        .bind(event.at)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.target)
        .bind(&event.ip)
        .bind(&event.detail)
        .execute(&self.pool)
        .await
        .map_err(map_err("append_audit"))?;
        Ok(())
    }

    async fn list_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRow>> {
        let op = "list_audit";
        let mut query = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            audit_cols!(),
            " FROM audit_events WHERE 1 = 1"
        ));
        if let Some(owner_uid) = &filter.owner_uid {
            query.push(" AND owner_uid = ").push_bind(owner_uid);
        }
        if let Some(actor) = &filter.actor {
            query.push(" AND actor = ").push_bind(actor);
        }
        if let Some(prefix) = &filter.action_prefix {
            // substr/length count characters, and unlike LIKE this is case-sensitive and has
            // no wildcards to escape.
            let chars = i64::try_from(prefix.chars().count()).map_err(|e| backend(op, &e))?;
            query
                .push(" AND substr(action, 1, ")
                .push_bind(chars)
                .push(") = ")
                .push_bind(prefix);
        }
        if let Some(target) = &filter.target {
            query.push(" AND target = ").push_bind(target);
        }
        if let Some(since) = filter.since {
            query.push(" AND at >= ").push_bind(since);
        }
        if let Some(before_id) = filter.before_id {
            query.push(" AND id < ").push_bind(before_id);
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(audit_limit(filter.limit)));
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(map_err(op))?;
        decode_all(op, &rows, audit_from)
    }

    // ---- rate limiting -----------------------------------------------------------------------

    async fn count_request(&self, key: &str, window_start: Millis) -> StoreResult<u64> {
        // A panic while the lock was held cannot leave the map half-updated in a way that
        // matters (a count off by one at worst): keep using it.
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(counters.count(key, window_start))
    }

    // ---- whole-vault copy --------------------------------------------------------------------

    async fn export(&self) -> StoreResult<Snapshot> {
        let op = "export";
        // A deferred transaction: its first SELECT fixes the snapshot every later one reads
        // (WAL mode), and writers are not held up meanwhile.
        let mut tx = self.pool.begin().await.map_err(map_err(op))?;
        let result = export_in(&mut tx).await;
        finish(op, tx, result).await
    }

    async fn import(&self, snapshot: &Snapshot) -> StoreResult<()> {
        let op = "import";
        let mut tx = self.begin_immediate(op).await?;
        let result = import_in(&mut tx, snapshot).await;
        finish(op, tx, result).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(uid: &str, parent: Option<&str>, created_at: Millis) -> FolderRow {
        FolderRow {
            uid: uid.to_owned(),
            owner_uid: "o".to_owned(),
            parent_uid: parent.map(str::to_owned),
            root_uid: String::new(),
            key: Vec::new(),
            data: Vec::new(),
            created_at,
        }
    }

    fn uids(rows: &[FolderRow]) -> Vec<&str> {
        rows.iter().map(|f| f.uid.as_str()).collect()
    }

    #[test]
    fn preorder_orders_parents_first_and_siblings_by_time_then_uid() {
        let rows = vec![
            folder("c2", Some("c"), 1),
            folder("r2", None, 10),
            folder("c", Some("r2"), 5),
            folder("b", Some("r1"), 7),
            folder("a", Some("r1"), 7),
            folder("r1", None, 20),
            folder("c1", Some("c"), 3),
            folder("a1", Some("a"), 0),
        ];
        assert_eq!(
            uids(&preorder(rows)),
            ["r2", "c", "c2", "c1", "r1", "a", "a1", "b"]
        );
    }

    #[test]
    fn preorder_keeps_orphans_and_cycles() {
        let rows = vec![
            folder("x", Some("y"), 2),
            folder("y", Some("x"), 1),
            folder("orphan", Some("missing"), 5),
            folder("root", None, 3),
        ];
        assert_eq!(uids(&preorder(rows)), ["root", "orphan", "y", "x"]);
    }

    fn pair(uid: &str, parent: Option<&str>) -> (String, Option<String>) {
        (uid.to_owned(), parent.map(str::to_owned))
    }

    #[test]
    fn deletion_levels_put_children_before_parents() {
        let tree = vec![
            pair("root", None),
            pair("b", Some("root")),
            pair("a", Some("root")),
            pair("a2", Some("a")),
            pair("a1", Some("a")),
            pair("a1x", Some("a1")),
        ];
        assert_eq!(
            deletion_levels(tree),
            vec![vec!["a1x", "a2", "b"], vec!["a1"], vec!["a"], vec!["root"]]
        );
        // A sub-tree: the top's own parent is outside the set and does not matter.
        assert_eq!(
            deletion_levels(vec![pair("s", Some("outside")), pair("t", Some("s"))]),
            vec![vec!["t"], vec!["s"]]
        );
        assert_eq!(
            deletion_levels(vec![pair("only", None)]),
            vec![vec!["only"]]
        );
        assert!(deletion_levels(Vec::new()).is_empty());
    }

    #[test]
    fn deletion_levels_survive_cycles() {
        let tree = vec![
            pair("x", Some("y")),
            pair("y", Some("x")),
            pair("leaf", Some("x")),
        ];
        assert_eq!(deletion_levels(tree), vec![vec!["leaf"], vec!["x", "y"]]);
    }

    #[test]
    fn rate_counters_keep_the_newest_window_per_key() {
        let mut c = RateCounters::new();
        assert_eq!(c.count("k", 1_000), 1);
        assert_eq!(c.count("k", 1_000), 2);
        assert_eq!(c.count("other", 0), 1);
        assert_eq!(c.count("k", 2_000), 1);
        // A request for an older window counts in the newer one instead of being lost.
        assert_eq!(c.count("k", 1_000), 2);
        assert_eq!(c.count("k", 2_000), 3);
        // The other key's window is untouched by `k` moving on.
        assert_eq!(c.count("other", 0), 2);
        assert_eq!(c.windows.len(), 2);
    }

    #[test]
    fn rate_counter_sweeps_forget_idle_keys_and_stay_bounded() {
        let mut c = RateCounters::new();
        let now = RATE_RETENTION_MS + 10_000;
        c.count("idle", 9_999);
        c.count("recent", 10_000);
        c.sweep(now);
        let mut left: Vec<&str> = c.windows.keys().map(String::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["recent"]);
        assert_eq!(c.sweep_at, RATE_SWEEP_AT);

        // Sweeps run by themselves as the map grows, and the threshold follows what is left.
        let mut c = RateCounters::new();
        for i in 0..RATE_SWEEP_AT - 1 {
            c.count(&format!("old{i}"), 0);
        }
        assert_eq!(c.windows.len(), RATE_SWEEP_AT - 1);
        c.count("new", now);
        assert_eq!(c.windows.len(), 1, "the idle keys were swept");
        for i in 0..RATE_SWEEP_AT * 3 {
            c.count(&format!("live{i}"), now);
        }
        assert_eq!(
            c.windows.len(),
            RATE_SWEEP_AT * 3 + 1,
            "nothing live is lost"
        );
        assert!(c.sweep_at > c.windows.len());

        // Too many keys even within the retention: only the window being counted now stays.
        let mut c = RateCounters::new();
        for i in 0..=RATE_MAX_KEYS {
            c.windows.insert(format!("k{i}"), (now - 1, 1));
        }
        c.windows.insert("current".to_owned(), (now, 3));
        c.sweep(now);
        assert_eq!(c.windows.len(), 1);
        assert_eq!(c.count("current", now), 4);
    }

    #[test]
    fn audit_limit_defaults_and_caps() {
        assert_eq!(audit_limit(0), 100);
        assert_eq!(audit_limit(7), 7);
        assert_eq!(audit_limit(1000), 1000);
        assert_eq!(audit_limit(5000), 1000);
    }

    #[tokio::test]
    async fn connections_use_wal_full_sync_foreign_keys_and_busy_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("coffer.db"))
            .await
            .expect("open");
        // Check every pooled connection, not just the first one handed out.
        let mut conns = Vec::new();
        for _ in 0..POOL_SIZE {
            conns.push(store.pool.acquire().await.expect("acquire"));
        }
        for conn in &mut conns {
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut **conn)
                .await
                .expect("journal_mode");
            assert_eq!(journal, "wal");
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .expect("synchronous");
            assert_eq!(sync, 2, "synchronous must be FULL");
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&mut **conn)
                .await
                .expect("foreign_keys");
            assert_eq!(fk, 1);
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut **conn)
                .await
                .expect("busy_timeout");
            assert_eq!(busy, 10_000);
        }
    }
}
