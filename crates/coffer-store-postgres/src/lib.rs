//! PostgreSQL implementation of Coffer's [`Store`] trait, for running several server processes
//! against one database.
//!
//! # Schema and migrations
//!
//! The schema lives in `migrations/` (the same tables, keys, checks and indexes as the SQLite
//! backend, in PostgreSQL types) and is embedded in the binary. [`PostgresStore::connect`]
//! applies what the database has not seen yet while a dedicated connection holds the session
//! advisory lock [`MIGRATION_LOCK_ID`], so that any number of instances starting at once
//! migrate one after the other (sqlx's migrator takes its own lock as well; ours is explicit
//! and does not depend on sqlx's choice of key). A schema other than `public` is selected in
//! the URL (`?options=-c%20search_path%3D<schema>`). Every text column uses the `"C"`
//! collation, so equality and ordering are byte-wise, exactly as in SQLite.
//!
//! TLS to the server needs one of sqlx's TLS features, which the workspace does not enable yet.
//!
//! # Concurrency
//!
//! Transactions run at PostgreSQL's default READ COMMITTED level, and every conditional write is
//! decided inside the database:
//!
//! * single-statement conditions (`bind_device`'s `WHERE public_key IS NULL`, unique keys,
//!   foreign keys, `INSERT … ON CONFLICT`), which PostgreSQL re-checks against the newest row
//!   version after waiting for a concurrent writer;
//! * for read-then-write methods, row locks taken in one fixed order. A record's row
//!   (`SELECT … FOR UPDATE`) guards the record and everything hanging off it: its revision, its
//!   history, its open transaction, its files and its uploads. A folder tree's root row guards
//!   the tree: creators take `FOR KEY SHARE` on the root before inserting into the tree, and
//!   [`Store::delete_folder_tree`] takes `FOR UPDATE` on it before looking at the tree;
//! * the first-owner rule with a transaction-scoped advisory lock ([`OWNER_LOCK_ID`]) taken by
//!   every owner creation;
//! * the transaction expiry sweep with `FOR UPDATE … SKIP LOCKED`, so concurrent sweeps (from
//!   several instances) each roll back a disjoint set, and every expired transaction once.
//!
//! A transaction that nevertheless loses a deadlock or serialization check (SQLSTATE `40P01`,
//! `40001`) is retried from the start a few times.
//!
//! # Durability
//!
//! A method returns only after its `COMMIT` has returned. With PostgreSQL's default
//! `synchronous_commit = on`, the commit is flushed to the WAL on disk by then. The one exception
//! is [`Store::count_request`]: request counters need not survive a crash, so its transaction
//! sets `synchronous_commit = off` for itself (`SET LOCAL`) and does not wait for the flush.
//!
//! # Rate counters
//!
//! `rate_counters` holds one row per key and window (`INSERT … ON CONFLICT DO UPDATE`, exact
//! under concurrency and across instances). When a key starts a new window its older windows are
//! deleted; every [`RATE_SWEEP_EVERY`]th call of an instance also deletes (without waiting for
//! locked rows) windows that started more than [`RATE_RETENTION_MS`] before the one being
//! counted, i.e. the rows of keys nobody counts any more. Windows of other keys that are merely
//! older than the current one are kept: they may be the running window of a longer limit.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
use sqlx::postgres::{PgConnectOptions, PgConnection, PgExecutor, PgPool, PgPoolOptions, PgRow};
use sqlx::query_builder::Separated;
use sqlx::{Connection, Postgres, QueryBuilder, Row, Transaction};

/// The embedded schema migrations.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Key of the session advisory lock held while migrations run (`pg_advisory_lock`). The bytes
/// spell `coffer` followed by 0x0001.
pub const MIGRATION_LOCK_ID: i64 = 0x636f_6666_6572_0001;
/// Key of the transaction advisory lock every owner creation takes (`pg_advisory_xact_lock`),
/// so that "create only while there is no owner" cannot let two first owners in.
pub const OWNER_LOCK_ID: i64 = 0x636f_6666_6572_0002;

/// First key of the transaction advisory locks (two-key form, a key space of its own) that
/// record and folder creations take on their UID's hash, so that a record and a folder created
/// at once cannot both claim one UID. The bytes spell `coff`.
pub const UID_LOCK_CLASS: i32 = 0x636f_6666;

/// How often a transaction that lost a deadlock or serialization check is run.
const TX_ATTEMPTS: u32 = 5;
/// How often `setting_init` and `bind_device` repeat when the row they saw vanishes under them.
const CHANGING_ROW_ATTEMPTS: u32 = 3;
/// `list_audit` limit when the filter says 0.
const AUDIT_DEFAULT_LIMIT: u32 = 100;
/// Largest `list_audit` page.
const AUDIT_MAX_LIMIT: u32 = 1000;
/// Actor of the history entries written by [`Store::expire_transactions`].
const EXPIRY_ACTOR: &str = "system:expiry";
/// Rows per multi-row `INSERT` of [`Store::import`] (at most 12 columns: far below PostgreSQL's
/// limit of 65535 bound parameters).
const IMPORT_BATCH: usize = 200;
/// Rate counter windows that started this long before the window being counted are deleted by
/// the sweep; limits with windows up to this long are counted exactly.
pub const RATE_RETENTION_MS: Millis = 60 * 60 * 1000;
/// Every this many [`Store::count_request`] calls an instance sweeps old counter windows.
pub const RATE_SWEEP_EVERY: u64 = 100;
/// Most rows one sweep deletes (a call inserts at most one, so sweeps keep up easily).
const RATE_SWEEP_ROWS: i64 = 1000;

/// Column lists per table, as literals so that `concat!` can build `&'static str` statements.
macro_rules! cols {
    (owners) => {
        "uid, email, kdf, auth_hash, encrypted_data_key, public_key, encrypted_private_key, \
         created_at"
    };
    (folders) => {
        "uid, owner_uid, parent_uid, root_uid, key, data, created_at"
    };
    (records) => {
        "uid, owner_uid, root_folder_uid, folder_uid, key, owner_key, data, revision, \
         created_at, updated_at"
    };
    (files) => {
        "uid, record_uid, key, owner_key, data, size, created_at"
    };
    (uploads) => {
        "token_hash, file_uid, record_uid, file_key, file_owner_key, file_data, file_size, \
         file_created_at, record_data, record_revision, actor, expires_at"
    };
    (record_transactions) => {
        "record_uid, kind, previous_data, previous_revision, remove_files, actor, expires_at"
    };
    (apps) => {
        "uid, owner_uid, key, data, created_at"
    };
    (shares) => {
        "app_uid, target_uid, kind, key, editable"
    };
    (devices) => {
        "client_id, app_uid, name, encrypted_app_key, public_key, first_access_expires_at, \
         ip_lock, bound_at, bound_ip, created_at, last_access_at"
    };
    (audit_events) => {
        "id, owner_uid, at, actor, action, target, ip, detail"
    };
}

/// Connection pool settings for [`PostgresStore::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Most connections the pool opens (default 10). Every instance sharing the database
    /// counts against the server's `max_connections`.
    pub max_connections: u32,
    /// Connections kept open even when idle (default 0).
    pub min_connections: u32,
    /// How long a method waits for a free connection before failing with `Backend`
    /// (default 30 s).
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

impl PoolOptions {
    /// Refuses settings the pool cannot work with.
    fn check(&self) -> StoreResult<()> {
        let problem = if self.max_connections == 0 {
            "max_connections must be at least 1"
        } else if self.min_connections > self.max_connections {
            "min_connections must not exceed max_connections"
        } else if self.acquire_timeout.is_zero() {
            "acquire_timeout must be longer than zero"
        } else {
            return Ok(());
        };
        Err(StoreError::Backend(format!("connect: {problem}")))
    }
}

/// The PostgreSQL store. Cheap to clone (it is a connection pool handle).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// `count_request` calls so far, to sweep old counter windows every so often.
    counted: Arc<AtomicU64>,
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL; `?options=-c%20search_path%3D…`
    /// selects a schema), brings its schema up to date and opens the pool.
    pub async fn connect(url: &str, options: PoolOptions) -> StoreResult<PostgresStore> {
        // The parse error names the problem, never the URL (which may carry a password).
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("connect: invalid database URL: {e}")))?;
        PostgresStore::connect_with(connect, options).await
    }

    /// [`PostgresStore::connect`] with already parsed connection options.
    pub async fn connect_with(
        connect: PgConnectOptions,
        options: PoolOptions,
    ) -> StoreResult<PostgresStore> {
        options.check()?;
        migrate(&connect).await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| backend("connect", &e))?;
        tracing::debug!(
            max_connections = options.max_connections,
            "postgres store connected"
        );
        Ok(PostgresStore {
            pool,
            counted: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Closes every connection (waiting for running statements). Later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Applies pending migrations while a connection of its own holds the session advisory lock
/// [`MIGRATION_LOCK_ID`]. The migrator runs on a separate one-connection pool (sqlx's migrator
/// cannot be spawned on a task when handed a bare connection). Both are closed afterwards
/// whatever happened; closing the lock connection also releases the lock should the explicit
/// unlock not have run.
async fn migrate(connect: &PgConnectOptions) -> StoreResult<()> {
    let mut lock = PgConnection::connect_with(connect)
        .await
        .map_err(|e| backend("connect", &e))?;
    let result = migrate_locked(&mut lock, connect).await;
    if let Err(e) = lock.close().await {
        tracing::debug!(error = %e, "closing the postgres migration lock connection failed");
    }
    result
}

async fn migrate_locked(lock: &mut PgConnection, connect: &PgConnectOptions) -> StoreResult<()> {
    // Waits for as long as another instance is migrating.
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_ID)
        .execute(&mut *lock)
        .await
        .map_err(|e| backend("migrate", &e))?;
    let applied = run_migrations(connect).await;
    let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_ID)
        .fetch_one(&mut *lock)
        .await;
    applied?;
    match unlocked {
        Ok(true) => Ok(()),
        Ok(false) => Err(StoreError::Backend(
            "migrate: the migration lock was not held".to_owned(),
        )),
        Err(e) => Err(backend("migrate", &e)),
    }
}

/// Runs the embedded migrations over a pool of one connection, closed afterwards.
async fn run_migrations(connect: &PgConnectOptions) -> StoreResult<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect.clone())
        .await
        .map_err(|e| backend("connect", &e))?;
    let applied = MIGRATOR.run(&pool).await;
    pool.close().await;
    applied.map_err(|e| backend("migrate", &e))
}

// ---- errors ------------------------------------------------------------------------------

/// A `Backend` error naming the operation. sqlx shows a PostgreSQL error as its primary message
/// only (constraint, table and type names), never the DETAIL line that would quote row values,
/// and never bound values, so no secret ends up in it.
fn backend(op: &str, e: &dyn std::fmt::Display) -> StoreError {
    tracing::warn!(op, error = %e, "postgres store error");
    StoreError::Backend(format!("{op}: {e}"))
}

/// Maps a sqlx error: unique violations (23505) are `Conflict`, a missing referenced row
/// (23503) is `Precondition`, `RowNotFound` is `NotFound`, anything else is `Backend`.
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

/// Failure of a step inside a transaction: a store outcome, or a database error that is mapped
/// only once it is clear that the transaction will not be retried.
enum TxError {
    Store(StoreError),
    Sql(&'static str, sqlx::Error),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl TxError {
    /// A deadlock or serialization failure: the transaction was rolled back and running it
    /// again may succeed.
    fn is_transient(&self) -> bool {
        match self {
            TxError::Sql(_, sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }

    fn into_store(self) -> StoreError {
        match self {
            TxError::Store(e) => e,
            TxError::Sql(op, e) => map_err(op)(e),
        }
    }
}

/// Wraps sqlx errors of a transaction step of `op`.
fn sql(op: &'static str) -> impl Fn(sqlx::Error) -> TxError {
    move |e| TxError::Sql(op, e)
}

/// Commits on `Ok` (a failed commit is the method's error), rolls back on `Err`.
async fn settle<T>(
    op: &'static str,
    tx: Transaction<'static, Postgres>,
    result: Result<T, TxError>,
) -> Result<T, TxError> {
    match result {
        Ok(value) => {
            tx.commit().await.map_err(sql(op))?;
            Ok(value)
        }
        Err(e) => {
            // Dropping the transaction would roll back too; doing it here reports failures.
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(op, error = %rollback, "postgres rollback failed");
            }
            Err(e)
        }
    }
}

/// Runs `$body` (an expression using the connection `$conn`, evaluating to a future of
/// `Result<T, TxError>`) in a transaction of `$store`'s pool, retrying it when it loses a
/// deadlock; evaluates to `StoreResult<T>`.
macro_rules! in_transaction {
    ($store:expr, $op:expr, |$conn:ident| $body:expr) => {{
        let op: &'static str = $op;
        let mut attempt: u32 = 1;
        loop {
            let mut tx = match $store.pool.begin().await {
                Ok(tx) => tx,
                Err(e) => break Err(map_err(op)(e)),
            };
            let result = {
                let $conn: &mut PgConnection = &mut *tx;
                $body.await
            };
            match settle(op, tx, result).await {
                Ok(value) => break Ok(value),
                Err(e) if attempt < TX_ATTEMPTS && e.is_transient() => {
                    tracing::debug!(
                        op,
                        attempt,
                        "postgres transaction lost a deadlock, retrying"
                    );
                    attempt += 1;
                }
                Err(e) => break Err(e.into_store()),
            }
        }
    }};
}

// ---- row decoding ------------------------------------------------------------------------

fn owner_from(row: &PgRow) -> Result<OwnerRow, sqlx::Error> {
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

fn folder_from(row: &PgRow) -> Result<FolderRow, sqlx::Error> {
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

fn record_from(row: &PgRow) -> Result<RecordRow, sqlx::Error> {
    Ok(RecordRow {
        uid: row.try_get("uid")?,
        owner_uid: row.try_get("owner_uid")?,
        root_folder_uid: row.try_get("root_folder_uid")?,
        folder_uid: row.try_get("folder_uid")?,
        key: row.try_get("key")?,
        owner_key: row.try_get("owner_key")?,
        data: row.try_get("data")?,
        revision: row.try_get("revision")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn file_from(row: &PgRow) -> Result<FileRow, sqlx::Error> {
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

fn upload_from(row: &PgRow) -> Result<UploadRow, sqlx::Error> {
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

fn app_from(row: &PgRow) -> Result<AppRow, sqlx::Error> {
    Ok(AppRow {
        uid: row.try_get("uid")?,
        owner_uid: row.try_get("owner_uid")?,
        key: row.try_get("key")?,
        data: row.try_get("data")?,
        created_at: row.try_get("created_at")?,
    })
}

fn share_from(row: &PgRow) -> StoreResult<ShareRow> {
    let field = map_err("share");
    let kind: String = row.try_get("kind").map_err(&field)?;
    Ok(ShareRow {
        app_uid: row.try_get("app_uid").map_err(&field)?,
        target_uid: row.try_get("target_uid").map_err(&field)?,
        kind: ShareKind::parse(&kind)?,
        key: row.try_get("key").map_err(&field)?,
        editable: row.try_get("editable").map_err(&field)?,
    })
}

fn device_from(row: &PgRow) -> Result<DeviceRow, sqlx::Error> {
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

fn audit_from(row: &PgRow) -> Result<AuditRow, sqlx::Error> {
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

fn transaction_from(row: &PgRow) -> Result<TransactionRow, sqlx::Error> {
    Ok(TransactionRow {
        record_uid: row.try_get("record_uid")?,
        kind: row.try_get("kind")?,
        previous_data: row.try_get("previous_data")?,
        previous_revision: row.try_get("previous_revision")?,
        remove_files: row.try_get("remove_files")?,
        actor: row.try_get("actor")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn history_from(row: &PgRow) -> Result<HistoryRow, sqlx::Error> {
    Ok(HistoryRow {
        revision: row.try_get("revision")?,
        data: row.try_get("data")?,
        actor: row.try_get("actor")?,
        at: row.try_get("at")?,
    })
}

/// Decodes every row with `decode`, mapping a failure for `op`.
fn decode_all<T>(
    op: &'static str,
    rows: &[PgRow],
    decode: fn(&PgRow) -> Result<T, sqlx::Error>,
) -> StoreResult<Vec<T>> {
    rows.iter()
        .map(|row| decode(row).map_err(map_err(op)))
        .collect()
}

// ---- what an application sees --------------------------------------------------------------

/// Ends a read-only transaction. Nothing was written: ending it either way is the same, so a
/// failure is only logged.
async fn end_read(op: &'static str, tx: Transaction<'_, Postgres>) {
    if let Err(e) = tx.rollback().await {
        tracing::debug!(op, error = %e, "postgres rollback of a read transaction failed");
    }
}

/// All shares of an app, by target UID.
async fn shares_of_app_on<'e>(
    ex: impl PgExecutor<'e>,
    app_uid: &str,
) -> StoreResult<Vec<ShareRow>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        cols!(shares),
        " FROM shares WHERE app_uid = $1 ORDER BY target_uid"
    ))
    .bind(app_uid)
    .fetch_all(ex)
    .await
    .map_err(map_err("shares_of_app"))?;
    rows.iter().map(share_from).collect()
}

/// Records whose root folder is one of `root_uids`, by creation time, then UID.
async fn records_in_roots_on<'e>(
    ex: impl PgExecutor<'e>,
    root_uids: &[String],
) -> StoreResult<Vec<RecordRow>> {
    let op = "records_in_roots";
    if root_uids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        cols!(records),
        " FROM records WHERE root_folder_uid = ANY($1) ORDER BY created_at, uid"
    ))
    .bind(root_uids)
    .fetch_all(ex)
    .await
    .map_err(map_err(op))?;
    decode_all(op, &rows, record_from)
}

/// The records among `uids` that exist, by creation time, then UID.
async fn records_by_uids_on<'e>(
    ex: impl PgExecutor<'e>,
    uids: &[String],
) -> StoreResult<Vec<RecordRow>> {
    let op = "records_by_uids";
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        cols!(records),
        " FROM records WHERE uid = ANY($1) ORDER BY created_at, uid"
    ))
    .bind(uids)
    .fetch_all(ex)
    .await
    .map_err(map_err(op))?;
    decode_all(op, &rows, record_from)
}

/// Files of the records `record_uids`, by creation time, then UID.
async fn files_of_records_on<'e>(
    ex: impl PgExecutor<'e>,
    record_uids: &[String],
) -> StoreResult<Vec<FileRow>> {
    let op = "files_of_records";
    if record_uids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        cols!(files),
        " FROM files WHERE record_uid = ANY($1) ORDER BY created_at, uid"
    ))
    .bind(record_uids)
    .fetch_all(ex)
    .await
    .map_err(map_err(op))?;
    decode_all(op, &rows, file_from)
}

/// The body of [`Store::app_contents`], inside one `REPEATABLE READ` read-only transaction.
async fn app_contents_in(conn: &mut PgConnection, app_uid: &str) -> StoreResult<AppContents> {
    let shares = shares_of_app_on(&mut *conn, app_uid).await?;
    let targets = |kind: ShareKind| -> Vec<String> {
        shares
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.target_uid.clone())
            .collect()
    };
    let folder_records = records_in_roots_on(&mut *conn, &targets(ShareKind::Folder)).await?;
    let direct_records = records_by_uids_on(&mut *conn, &targets(ShareKind::Record)).await?;
    let mut uids: Vec<&str> = folder_records
        .iter()
        .chain(&direct_records)
        .map(|r| r.uid.as_str())
        .collect();
    uids.sort_unstable();
    uids.dedup();
    let uids: Vec<String> = uids.into_iter().map(str::to_owned).collect();
    let files = files_of_records_on(&mut *conn, &uids).await?;
    Ok(AppContents {
        shares,
        folder_records,
        direct_records,
        files,
    })
}

// ---- ordering helpers ----------------------------------------------------------------------

/// Puts folders in depth-first pre-order: each folder directly before its sub-tree, siblings
/// (and the tops of the trees) by creation time, then UID. A folder whose parent is not among
/// `rows` counts as a top. Folders on a parent cycle (which the API cannot make) are not lost:
/// they come last, by creation time and UID.
fn preorder(mut rows: Vec<FolderRow>) -> Vec<FolderRow> {
    rows.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.uid.cmp(&b.uid))
    });
    let count = rows.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut tops = Vec::new();
    {
        let index: HashMap<&str, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, folder)| (folder.uid.as_str(), i))
            .collect();
        for (i, folder) in rows.iter().enumerate() {
            let parent = folder
                .parent_uid
                .as_deref()
                .and_then(|uid| index.get(uid).copied())
                .filter(|&parent| parent != i);
            match parent.and_then(|p| children.get_mut(p)) {
                Some(siblings) => siblings.push(i),
                None => tops.push(i),
            }
        }
    }
    // `rows` is sorted, so every children list and `tops` are in sibling order already.
    let mut visited = vec![false; count];
    let mut order = Vec::with_capacity(count);
    let mut pending: Vec<usize> = tops.into_iter().rev().collect();
    while let Some(i) = pending.pop() {
        match visited.get_mut(i) {
            Some(seen) if !*seen => *seen = true,
            _ => continue,
        }
        order.push(i);
        if let Some(kids) = children.get(i) {
            pending.extend(kids.iter().rev());
        }
    }
    order.extend((0..count).filter(|&i| !visited.get(i).copied().unwrap_or(true)));
    let mut slots: Vec<Option<FolderRow>> = rows.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

/// Orders a folder tree, given as (UID, parent UID) pairs, for reporting a deletion: leaves
/// first, then the folders all of whose children came before, and so on up to the top; UIDs
/// sorted within each such level. Folders on a parent cycle end up together in a last level.
fn deletion_levels(tree: Vec<(String, Option<String>)>) -> Vec<Vec<String>> {
    let mut levels = Vec::new();
    let mut left = tree;
    while !left.is_empty() {
        let parents: HashSet<&str> = left.iter().filter_map(|(_, p)| p.as_deref()).collect();
        let (mut level, rest): (Vec<String>, Vec<(String, Option<String>)>) = {
            let (leaves, inner): (Vec<_>, Vec<_>) = left
                .iter()
                .cloned()
                .partition(|(uid, _)| !parents.contains(uid.as_str()));
            if leaves.is_empty() {
                // Only a cycle is left: take it whole.
                (inner.into_iter().map(|(uid, _)| uid).collect(), Vec::new())
            } else {
                (leaves.into_iter().map(|(uid, _)| uid).collect(), inner)
            }
        };
        level.sort();
        levels.push(level);
        left = rest;
    }
    levels
}

/// The effective `list_audit` page size.
fn audit_limit(requested: u32) -> u32 {
    if requested == 0 {
        AUDIT_DEFAULT_LIMIT
    } else {
        requested.min(AUDIT_MAX_LIMIT)
    }
}

// ---- transaction steps -------------------------------------------------------------------
//
// Each runs inside a transaction opened by the calling trait method (`in_transaction!`), which
// commits only if every step succeeded.

/// Locks a record's row for the rest of the transaction and returns its revision; `None` if
/// it does not exist. Every change to a record, its history, transaction, files and uploads
/// holds this lock.
async fn lock_record(
    conn: &mut PgConnection,
    op: &'static str,
    uid: &str,
) -> Result<Option<i64>, TxError> {
    sqlx::query_scalar("SELECT revision FROM records WHERE uid = $1 FOR UPDATE")
        .bind(uid)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql(op))
}

/// Takes a share lock on the root folder of a tree before inserting into it, so that a
/// concurrent [`Store::delete_folder_tree`] (which locks the root exclusively first) either
/// waits for the insert or makes it fail on its foreign key.
async fn lock_tree_for_insert(
    conn: &mut PgConnection,
    op: &'static str,
    root_uid: &str,
) -> Result<(), TxError> {
    sqlx::query("SELECT 1 FROM folders WHERE uid = $1 FOR KEY SHARE")
        .bind(root_uid)
        .execute(&mut *conn)
        .await
        .map_err(sql(op))?;
    Ok(())
}

/// Sets a record's data and revision and appends the matching history entry.
async fn write_record_data(
    conn: &mut PgConnection,
    op: &'static str,
    record_uid: &str,
    data: &[u8],
    revision: i64,
    actor: &str,
    now: Millis,
) -> Result<(), TxError> {
    sqlx::query("UPDATE records SET data = $1, revision = $2, updated_at = $3 WHERE uid = $4")
        .bind(data)
        .bind(revision)
        .bind(now)
        .bind(record_uid)
        .execute(&mut *conn)
        .await
        .map_err(sql(op))?;
    sqlx::query(
        "INSERT INTO record_history (record_uid, revision, data, actor, at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(record_uid)
    .bind(revision)
    .bind(data)
    .bind(actor)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(sql(op))?;
    Ok(())
}

/// Deletes those of `file_uids` that are complete files of `record_uid` and returns their UIDs,
/// sorted. Other records' files, pending uploads and unknown UIDs are ignored.
async fn delete_files_of_record(
    conn: &mut PgConnection,
    op: &'static str,
    record_uid: &str,
    file_uids: &[String],
) -> Result<Vec<String>, TxError> {
    if file_uids.is_empty() {
        return Ok(Vec::new());
    }
    let mut removed: Vec<String> = sqlx::query_scalar(
        "DELETE FROM files WHERE record_uid = $1 AND uid = ANY($2) RETURNING uid",
    )
    .bind(record_uid)
    .bind(file_uids)
    .fetch_all(&mut *conn)
    .await
    .map_err(sql(op))?;
    removed.sort();
    Ok(removed)
}

async fn create_owner_in(
    conn: &mut PgConnection,
    owner: &OwnerRow,
    first: bool,
) -> Result<(), TxError> {
    let op = "create_owner";
    // Held until commit: owner creations run one at a time, and each sees the ones before.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(OWNER_LOCK_ID)
        .execute(&mut *conn)
        .await
        .map_err(sql(op))?;
    if first {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM owners)")
            .fetch_one(&mut *conn)
            .await
            .map_err(sql(op))?;
        if exists {
            return Err(StoreError::Precondition("an owner already exists").into());
        }
    }
    sqlx::query(concat!(
        "INSERT INTO owners (",
        cols!(owners),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&owner.uid)
    .bind(owner.email.to_lowercase())
    .bind(&owner.kdf)
    .bind(&owner.auth_hash)
    .bind(&owner.encrypted_data_key)
    .bind(&owner.public_key)
    .bind(&owner.encrypted_private_key)
    .bind(owner.created_at)
    .execute(&mut *conn)
    .await
    .map_err(sql(op))?;
    Ok(())
}

/// Claims `uid` for a new record or folder until commit: `Conflict` if a record or a folder
/// already has it. Records and folders share one UID space because a share names its target
/// by UID alone; without this, deleting one would take the other's shares along.
async fn claim_uid(conn: &mut PgConnection, op: &'static str, uid: &str) -> Result<(), TxError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(UID_LOCK_CLASS)
        .bind(uid)
        .execute(&mut *conn)
        .await
        .map_err(sql(op))?;
    // A statement of its own after the lock: its snapshot shows a creation that held the lock.
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM records WHERE uid = $1) \
             OR EXISTS (SELECT 1 FROM folders WHERE uid = $1)",
    )
    .bind(uid)
    .fetch_one(&mut *conn)
    .await
    .map_err(sql(op))?;
    if taken {
        return Err(StoreError::Conflict.into());
    }
    Ok(())
}

async fn create_folder_in(conn: &mut PgConnection, folder: &FolderRow) -> Result<(), TxError> {
    let op = "create_folder";
    // For a new shared folder the root is the folder itself and locks nothing.
    lock_tree_for_insert(conn, op, &folder.root_uid).await?;
    claim_uid(conn, op, &folder.uid).await?;
    sqlx::query(concat!(
        "INSERT INTO folders (",
        cols!(folders),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&folder.uid)
    .bind(&folder.owner_uid)
    .bind(&folder.parent_uid)
    .bind(&folder.root_uid)
    .bind(&folder.key)
    .bind(&folder.data)
    .bind(folder.created_at)
    .execute(&mut *conn)
    .await
    .map_err(sql(op))?;
    Ok(())
}

async fn create_record_in(
    conn: &mut PgConnection,
    record: &RecordRow,
    actor: &str,
) -> Result<(), TxError> {
    let op = "create_record";
    lock_tree_for_insert(conn, op, &record.root_folder_uid).await?;
    claim_uid(conn, op, &record.uid).await?;
    sqlx::query(concat!(
        "INSERT INTO records (",
        cols!(records),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
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
    .execute(&mut *conn)
    .await
    .map_err(sql(op))?;
    sqlx::query(
        "INSERT INTO record_history (record_uid, revision, data, actor, at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&record.uid)
    .bind(record.revision)
    .bind(&record.data)
    .bind(actor)
    .bind(record.updated_at)
    .execute(&mut *conn)
    .await
    .map_err(sql(op))?;
    Ok(())
}

async fn create_upload_in(conn: &mut PgConnection, upload: &UploadRow) -> Result<(), TxError> {
    let op = "create_upload";
    // The unique token and file_uid columns rule out a clash with another pending upload.
    sqlx::query(concat!(
        "INSERT INTO uploads (",
        cols!(uploads),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
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
    .execute(&mut *conn)
    .await
    .map_err(sql(op))?;
    // A complete file with this UID is checked only now, in a statement of its own: should the
    // insert have waited for a completion of another upload of the same UID (which turns that
    // upload into a file in one transaction), this statement's snapshot shows the new file.
    let taken: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM files WHERE uid = $1)")
        .bind(&upload.file.uid)
        .fetch_one(&mut *conn)
        .await
        .map_err(sql(op))?;
    if taken {
        return Err(StoreError::Conflict.into());
    }
    Ok(())
}

async fn complete_upload_in(
    conn: &mut PgConnection,
    token_hash: &[u8],
    now: Millis,
) -> Result<i64, TxError> {
    let op = "complete_upload";
    // Find the record first and lock it, so that the lock order is the same as everywhere else
    // (record, then what hangs off it). An upload never changes its record.
    let record_uid: Option<String> =
        sqlx::query_scalar("SELECT record_uid FROM uploads WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql(op))?;
    let Some(record_uid) = record_uid else {
        return Err(StoreError::NotFound.into());
    };
    let Some(current) = lock_record(conn, op, &record_uid).await? else {
        return Err(StoreError::NotFound.into());
    };
    // Expiry is not checked: the content has arrived, and only `expire_uploads` having deleted
    // the row makes a late completion fail. Of several callers completing one token, the first
    // deletes the row and the others find nothing.
    let row = sqlx::query(concat!(
        "DELETE FROM uploads WHERE token_hash = $1 RETURNING ",
        cols!(uploads)
    ))
    .bind(token_hash)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql(op))?;
    let Some(row) = row else {
        return Err(StoreError::NotFound.into());
    };
    let upload = upload_from(&row).map_err(sql(op))?;
    if upload.file.record_uid != record_uid {
        return Err(StoreError::Backend(format!("{op}: upload changed while completing")).into());
    }
    if upload
        .record_revision
        .is_some_and(|expected| expected != current)
    {
        // The rollback puts the upload back.
        return Err(StoreError::Precondition("record is out of date").into());
    }
    // A rollback would restore data that does not mention this file: refuse while a
    // transaction is open on the record (its row cannot appear meanwhile: the record is locked).
    let open: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM record_transactions WHERE record_uid = $1)",
    )
    .bind(&record_uid)
    .fetch_one(&mut *conn)
    .await
    .map_err(sql(op))?;
    if open {
        return Err(StoreError::Precondition("transaction open").into());
    }
    let revision = current + 1;
    write_record_data(
        conn,
        op,
        &record_uid,
        &upload.record_data,
        revision,
        &upload.actor,
        now,
    )
    .await?;
    sqlx::query(concat!(
        "INSERT INTO files (",
        cols!(files),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&upload.file.uid)
    .bind(&upload.file.record_uid)
    .bind(&upload.file.key)
    .bind(&upload.file.owner_key)
    .bind(&upload.file.data)
    .bind(upload.file.size)
    .bind(upload.file.created_at)
    .execute(&mut *conn)
    .await
    .map_err(sql(op))?;
    Ok(revision)
}

async fn update_record_in(
    conn: &mut PgConnection,
    update: &RecordUpdate,
) -> Result<RecordChange, TxError> {
    let op = "update_record";
    let current: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT revision, data FROM records WHERE uid = $1 FOR UPDATE")
            .bind(&update.uid)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql(op))?;
    let Some((current, previous_data)) = current else {
        return Err(StoreError::NotFound.into());
    };
    // Transactions are opened and ended only under the record lock held now, so this sees the
    // outcome of every earlier one.
    let open: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM record_transactions WHERE record_uid = $1)",
    )
    .bind(&update.uid)
    .fetch_one(&mut *conn)
    .await
    .map_err(sql(op))?;
    if open {
        return Err(StoreError::Precondition("transaction open").into());
    }
    if current != update.expected_revision {
        return Err(StoreError::Precondition("stale").into());
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
                cols!(record_transactions),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .bind(&update.uid)
            .bind(&start.kind)
            .bind(&previous_data)
            .bind(current)
            .bind(&update.remove_files)
            .bind(&update.actor)
            .bind(start.expires_at)
            .execute(&mut *conn)
            .await
            .map_err(sql(op))?;
            Vec::new()
        }
    };
    Ok(RecordChange {
        revision,
        removed_files,
    })
}

async fn finalize_in(conn: &mut PgConnection, record_uid: &str) -> Result<RecordChange, TxError> {
    let op = "finalize_transaction";
    let Some(revision) = lock_record(conn, op, record_uid).await? else {
        return Err(StoreError::NotFound.into());
    };
    let remove_files: Option<Vec<String>> = sqlx::query_scalar(
        "DELETE FROM record_transactions WHERE record_uid = $1 RETURNING remove_files",
    )
    .bind(record_uid)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql(op))?;
    let Some(remove_files) = remove_files else {
        return Err(StoreError::NotFound.into());
    };
    let removed_files = delete_files_of_record(conn, op, record_uid, &remove_files).await?;
    Ok(RecordChange {
        revision,
        removed_files,
    })
}

/// Rolls back the open transaction of a record, if there is one and (with `due_by`) it expired
/// by then; `None` when there is nothing to roll back.
async fn rollback_in(
    conn: &mut PgConnection,
    op: &'static str,
    record_uid: &str,
    actor: &str,
    now: Millis,
    due_by: Option<Millis>,
) -> Result<Option<RecordChange>, TxError> {
    let Some(current) = lock_record(conn, op, record_uid).await? else {
        return Ok(None);
    };
    let previous_data: Option<Vec<u8>> = sqlx::query_scalar(
        "DELETE FROM record_transactions \
         WHERE record_uid = $1 AND ($2::BIGINT IS NULL OR expires_at <= $2) \
         RETURNING previous_data",
    )
    .bind(record_uid)
    .bind(due_by)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql(op))?;
    let Some(previous_data) = previous_data else {
        return Ok(None);
    };
    let revision = current + 1;
    write_record_data(conn, op, record_uid, &previous_data, revision, actor, now).await?;
    Ok(Some(RecordChange {
        revision,
        removed_files: Vec::new(),
    }))
}

async fn expire_in(conn: &mut PgConnection, now: Millis) -> Result<Vec<(String, String)>, TxError> {
    let op = "expire_transactions";
    // Records another sweep (or a finalisation, rollback or update) has locked are skipped
    // rather than waited for: whoever holds them deals with them, and a transaction that is
    // still open afterwards is found by the next sweep.
    let due: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.record_uid, r.owner_uid FROM record_transactions t \
         JOIN records r ON r.uid = t.record_uid \
         WHERE t.expires_at <= $1 \
         ORDER BY t.expires_at, t.record_uid \
         FOR UPDATE OF r SKIP LOCKED",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(sql(op))?;
    let mut expired = Vec::with_capacity(due.len());
    for (record_uid, owner_uid) in due {
        // Checked again under the lock: the transaction seen may have ended (and another may
        // have been opened) between the snapshot and the lock.
        if rollback_in(conn, op, &record_uid, EXPIRY_ACTOR, now, Some(now))
            .await?
            .is_some()
        {
            expired.push((record_uid, owner_uid));
        }
    }
    Ok(expired)
}

/// Deletes the given (locked) records with their complete files, pending uploads, history,
/// open transactions and the shares that target them. Returns the UIDs of the deleted files and
/// of the pending uploads' files (both may have content to remove), sorted.
async fn delete_records_in(
    conn: &mut PgConnection,
    op: &'static str,
    record_uids: &[String],
) -> Result<Vec<String>, TxError> {
    if record_uids.is_empty() {
        return Ok(Vec::new());
    }
    let mut files: Vec<String> =
        sqlx::query_scalar("DELETE FROM files WHERE record_uid = ANY($1) RETURNING uid")
            .bind(record_uids)
            .fetch_all(&mut *conn)
            .await
            .map_err(sql(op))?;
    let pending: Vec<String> =
        sqlx::query_scalar("DELETE FROM uploads WHERE record_uid = ANY($1) RETURNING file_uid")
            .bind(record_uids)
            .fetch_all(&mut *conn)
            .await
            .map_err(sql(op))?;
    files.extend(pending);
    for statement in [
        "DELETE FROM record_history WHERE record_uid = ANY($1)",
        "DELETE FROM record_transactions WHERE record_uid = ANY($1)",
        "DELETE FROM shares WHERE kind = 'record' AND target_uid = ANY($1)",
        "DELETE FROM records WHERE uid = ANY($1)",
    ] {
        sqlx::query(statement)
            .bind(record_uids)
            .execute(&mut *conn)
            .await
            .map_err(sql(op))?;
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// True when a folder directly contains no record and no sub-folder, in one statement (one
/// snapshot); `None` if it does not exist.
async fn folder_is_empty_in(
    conn: &mut PgConnection,
    op: &'static str,
    uid: &str,
) -> Result<Option<bool>, TxError> {
    let (exists, has_record, has_child): (bool, bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM folders WHERE uid = $1), \
                EXISTS (SELECT 1 FROM records WHERE folder_uid = $1), \
                EXISTS (SELECT 1 FROM folders WHERE parent_uid = $1)",
    )
    .bind(uid)
    .fetch_one(&mut *conn)
    .await
    .map_err(sql(op))?;
    Ok(exists.then_some(!has_record && !has_child))
}

async fn delete_record_in(conn: &mut PgConnection, uid: &str) -> Result<Removed, TxError> {
    let op = "delete_record";
    if lock_record(conn, op, uid).await?.is_none() {
        return Err(StoreError::NotFound.into());
    }
    let records = vec![uid.to_owned()];
    let files = delete_records_in(conn, op, &records).await?;
    Ok(Removed {
        records,
        folders: Vec::new(),
        files,
    })
}

async fn delete_folder_tree_in(
    conn: &mut PgConnection,
    uid: &str,
    force: bool,
) -> Result<Removed, TxError> {
    let op = "delete_folder_tree";
    let root: Option<String> = sqlx::query_scalar("SELECT root_uid FROM folders WHERE uid = $1")
        .bind(uid)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql(op))?;
    let Some(root) = root else {
        return Err(StoreError::NotFound.into());
    };
    // With the root locked exclusively nobody can add a folder or record to this tree any more
    // (creators share-lock the root first), and everything added before is committed and seen
    // by the statements below. A folder never outlives its root, so a vanished root means the
    // folder is gone too.
    let locked: Option<String> =
        sqlx::query_scalar("SELECT uid FROM folders WHERE uid = $1 FOR UPDATE")
            .bind(&root)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql(op))?;
    if locked.is_none() {
        return Err(StoreError::NotFound.into());
    }
    if !force && folder_is_empty_in(conn, op, uid).await? == Some(false) {
        return Err(StoreError::Precondition("folder not empty").into());
    }
    // The folder and everything below it by parent links. UNION (not UNION ALL) ends the walk
    // even on a corrupt cycle.
    let tree: Vec<(String, Option<String>)> = sqlx::query_as(
        "WITH RECURSIVE tree (uid, parent_uid) AS ( \
             SELECT uid, parent_uid FROM folders WHERE uid = $1 \
             UNION \
             SELECT f.uid, f.parent_uid FROM folders f JOIN tree t ON f.parent_uid = t.uid \
         ) SELECT uid, parent_uid FROM tree",
    )
    .bind(uid)
    .fetch_all(&mut *conn)
    .await
    .map_err(sql(op))?;
    if tree.is_empty() {
        return Err(StoreError::NotFound.into());
    }
    let folders: Vec<String> = deletion_levels(tree).into_iter().flatten().collect();
    let records: Vec<String> = sqlx::query_scalar(
        "SELECT uid FROM records WHERE folder_uid = ANY($1) ORDER BY uid FOR UPDATE",
    )
    .bind(&folders)
    .fetch_all(&mut *conn)
    .await
    .map_err(sql(op))?;
    let files = delete_records_in(conn, op, &records).await?;
    sqlx::query("DELETE FROM shares WHERE kind = 'folder' AND target_uid = ANY($1)")
        .bind(&folders)
        .execute(&mut *conn)
        .await
        .map_err(sql(op))?;
    // One statement: the foreign keys between the folders are checked at its end, when parents
    // and children are gone alike.
    sqlx::query("DELETE FROM folders WHERE uid = ANY($1)")
        .bind(&folders)
        .execute(&mut *conn)
        .await
        .map_err(sql(op))?;
    Ok(Removed {
        records,
        folders,
        files,
    })
}

// ---- rate counters -------------------------------------------------------------------------

async fn count_request_in(
    conn: &mut PgConnection,
    key: &str,
    window_start: Millis,
    sweep: bool,
) -> Result<u64, TxError> {
    let op = "count_request";
    // Only for this transaction: the counter may be lost in a crash, and the request does not
    // wait for a WAL flush.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *conn)
        .await
        .map_err(sql(op))?;
    // A concurrent first insert of the same window makes this wait and then update the row it
    // committed, so every caller gets its own count.
    let count: i64 = sqlx::query_scalar(
        "INSERT INTO rate_counters (key, window_start, count) VALUES ($1, $2, 1) \
         ON CONFLICT (key, window_start) DO UPDATE SET count = rate_counters.count + 1 \
         RETURNING count",
    )
    .bind(key)
    .bind(window_start)
    .fetch_one(&mut *conn)
    .await
    .map_err(sql(op))?;
    if count == 1 {
        // This key starts a new window: its earlier ones are over.
        sqlx::query("DELETE FROM rate_counters WHERE key = $1 AND window_start < $2")
            .bind(key)
            .bind(window_start)
            .execute(&mut *conn)
            .await
            .map_err(sql(op))?;
    }
    if sweep {
        // Keys nobody has counted for a long time. Rows another transaction holds are skipped
        // (the next sweep gets them), so the sweep never waits and never deadlocks.
        sqlx::query(
            "DELETE FROM rate_counters r USING ( \
                 SELECT key, window_start FROM rate_counters WHERE window_start < $1 \
                 LIMIT $2 FOR UPDATE SKIP LOCKED \
             ) old \
             WHERE r.key = old.key AND r.window_start = old.window_start",
        )
        .bind(window_start.saturating_sub(RATE_RETENTION_MS))
        .bind(RATE_SWEEP_ROWS)
        .execute(&mut *conn)
        .await
        .map_err(sql(op))?;
    }
    u64::try_from(count).map_err(|e| TxError::Store(backend(op, &e)))
}

// ---- whole-vault copy ----------------------------------------------------------------------

/// The body of [`Store::export`], inside one `REPEATABLE READ` read-only transaction: every
/// statement reads the same snapshot. Orders: settings by key, folders parents first
/// ([`preorder`]), history by (record, revision), open transactions by record, shares by (app,
/// target), audit by id, everything else by creation time and key (text byte-wise, as in
/// SQLite, so both backends export a vault identically).
async fn export_in(conn: &mut PgConnection) -> StoreResult<Snapshot> {
    let op = "export";
    let settings: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT key, value FROM settings ORDER BY key")
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err(op))?;
    let owners = sqlx::query(concat!(
        "SELECT ",
        cols!(owners),
        " FROM owners ORDER BY created_at, uid"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let folders = sqlx::query(concat!("SELECT ", cols!(folders), " FROM folders"))
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err(op))?;
    let records = sqlx::query(concat!(
        "SELECT ",
        cols!(records),
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
        cols!(record_transactions),
        " FROM record_transactions ORDER BY record_uid"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let files = sqlx::query(concat!(
        "SELECT ",
        cols!(files),
        " FROM files ORDER BY created_at, uid"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let apps = sqlx::query(concat!(
        "SELECT ",
        cols!(apps),
        " FROM apps ORDER BY created_at, uid"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let shares = sqlx::query(concat!(
        "SELECT ",
        cols!(shares),
        " FROM shares ORDER BY app_uid, target_uid"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let devices = sqlx::query(concat!(
        "SELECT ",
        cols!(devices),
        " FROM devices ORDER BY created_at, client_id"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err(op))?;
    let audit = sqlx::query(concat!(
        "SELECT ",
        cols!(audit_events),
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
        transactions: decode_all(op, &transactions, transaction_from)?,
        files: decode_all(op, &files, file_from)?,
        apps: decode_all(op, &apps, app_from)?,
        shares: shares.iter().map(share_from).collect::<StoreResult<_>>()?,
        devices: decode_all(op, &devices, device_from)?,
        audit: decode_all(op, &audit, audit_from)?,
    })
}

/// Inserts `rows` with multi-row `INSERT`s of [`IMPORT_BATCH`] rows: `head` is the statement up
/// to the `VALUES`, `bind` pushes one row's values in column order.
async fn insert_batches<'a, T>(
    conn: &mut PgConnection,
    head: &'static str,
    rows: &'a [T],
    bind: impl Fn(&mut Separated<'_, 'a, Postgres, &'static str>, &'a T),
) -> Result<(), TxError> {
    for chunk in rows.chunks(IMPORT_BATCH) {
        let mut query = QueryBuilder::<Postgres>::new(head);
        query.push(" ");
        query.push_values(chunk, |mut values, row| bind(&mut values, row));
        query
            .build()
            .execute(&mut *conn)
            .await
            .map_err(sql("import"))?;
    }
    Ok(())
}

/// The body of [`Store::import`], in one transaction. It holds the owner lock
/// ([`OWNER_LOCK_ID`]) from the emptiness check to the commit, so no owner can be created in
/// between; parents are inserted before the rows that refer to them.
async fn import_in(conn: &mut PgConnection, snapshot: &Snapshot) -> Result<(), TxError> {
    let op = "import";
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(OWNER_LOCK_ID)
        .execute(&mut *conn)
        .await
        .map_err(sql(op))?;
    let has_owner: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM owners)")
        .fetch_one(&mut *conn)
        .await
        .map_err(sql(op))?;
    if has_owner {
        return Err(StoreError::Precondition("not empty").into());
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
        concat!("INSERT INTO owners (", cols!(owners), ")"),
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
    // Whatever order the snapshot has, parents go first (a batch boundary may fall between a
    // parent and its child).
    let folders = preorder(snapshot.folders.clone());
    insert_batches(
        conn,
        concat!("INSERT INTO folders (", cols!(folders), ")"),
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
        concat!("INSERT INTO records (", cols!(records), ")"),
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
    insert_batches(
        conn,
        concat!(
            "INSERT INTO record_transactions (",
            cols!(record_transactions),
            ")"
        ),
        &snapshot.transactions,
        |v, t| {
            v.push_bind(&t.record_uid)
                .push_bind(&t.kind)
                .push_bind(&t.previous_data)
                .push_bind(t.previous_revision)
                .push_bind(&t.remove_files)
                .push_bind(&t.actor)
                .push_bind(t.expires_at);
        },
    )
    .await?;
    insert_batches(
        conn,
        concat!("INSERT INTO files (", cols!(files), ")"),
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
        concat!("INSERT INTO apps (", cols!(apps), ")"),
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
        concat!("INSERT INTO shares (", cols!(shares), ")"),
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
        concat!("INSERT INTO devices (", cols!(devices), ")"),
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
    // The ids are kept (the identity column would otherwise refuse them), and the identity then
    // continues after the largest, so events appended later sort after the imported ones.
    insert_batches(
        conn,
        concat!(
            "INSERT INTO audit_events (",
            cols!(audit_events),
            ") OVERRIDING SYSTEM VALUE"
        ),
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
    // setval is strict: with no event at all (max NULL) it changes nothing.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('audit_events', 'id'), max(id)) \
         FROM audit_events",
    )
    .execute(&mut *conn)
    .await
    .map_err(sql(op))?;
    Ok(())
}

// ---- the trait -----------------------------------------------------------------------------

#[async_trait]
impl Store for PostgresStore {
    // ---- server settings -------------------------------------------------------------

    async fn setting(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err("setting"))
    }

    async fn setting_init(&self, key: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
        let op = "setting_init";
        for _ in 0..CHANGING_ROW_ATTEMPTS {
            // An insert racing another waits for it; if that one commits, this one does
            // nothing, and the following SELECT (a new snapshot) sees the winner's value.
            let inserted: Option<Vec<u8>> = sqlx::query_scalar(
                "INSERT INTO settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO NOTHING RETURNING value",
            )
            .bind(key)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err(op))?;
            if let Some(stored) = inserted {
                return Ok(stored);
            }
            let stored: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err(op))?;
            if let Some(stored) = stored {
                return Ok(stored);
            }
            // Deleted between the two statements: try again.
        }
        Err(StoreError::Backend(format!(
            "{op}: setting keeps changing, giving up"
        )))
    }

    async fn setting_delete(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(map_err("setting_delete"))?;
        Ok(())
    }

    // ---- owners and sessions ---------------------------------------------------------

    async fn owner_count(&self) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM owners")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err("owner_count"))?;
        u64::try_from(count).map_err(|e| backend("owner_count", &e))
    }

    async fn create_owner(&self, owner: &OwnerRow, first: bool) -> StoreResult<()> {
        in_transaction!(self, "create_owner", |conn| create_owner_in(
            conn, owner, first
        ))
    }

    async fn owner_by_email(&self, email: &str) -> StoreResult<OwnerRow> {
        let op = "owner_by_email";
        let row = sqlx::query(concat!(
            "SELECT ",
            cols!(owners),
            " FROM owners WHERE email = $1"
        ))
        .bind(email.to_lowercase())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err(op))?
        .ok_or(StoreError::NotFound)?;
        owner_from(&row).map_err(map_err(op))
    }

    async fn owner(&self, uid: &str) -> StoreResult<OwnerRow> {
        let op = "owner";
        let row = sqlx::query(concat!(
            "SELECT ",
            cols!(owners),
            " FROM owners WHERE uid = $1"
        ))
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err(op))?
        .ok_or(StoreError::NotFound)?;
        owner_from(&row).map_err(map_err(op))
    }

    async fn create_session(&self, session: &SessionRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO sessions (token_hash, owner_uid, expires_at) VALUES ($1, $2, $3)")
            .bind(&session.token_hash)
            .bind(&session.owner_uid)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await
            .map_err(map_err("create_session"))?;
        Ok(())
    }

    async fn session_owner(&self, token_hash: &[u8], now: Millis) -> StoreResult<String> {
        sqlx::query_scalar(
            "SELECT owner_uid FROM sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err("session_owner"))?
        .ok_or(StoreError::NotFound)
    }

    async fn delete_session(&self, token_hash: &[u8], now: Millis) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1 OR expires_at <= $2")
            .bind(token_hash)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(map_err("delete_session"))?;
        Ok(())
    }

    // ---- folders -----------------------------------------------------------------------

    async fn create_folder(&self, folder: &FolderRow) -> StoreResult<()> {
        in_transaction!(self, "create_folder", |conn| create_folder_in(conn, folder))
    }

    async fn folder(&self, uid: &str) -> StoreResult<FolderRow> {
        let op = "folder";
        let row = sqlx::query(concat!(
            "SELECT ",
            cols!(folders),
            " FROM folders WHERE uid = $1"
        ))
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err(op))?
        .ok_or(StoreError::NotFound)?;
        folder_from(&row).map_err(map_err(op))
    }

    async fn folders_of_owner(&self, owner_uid: &str) -> StoreResult<Vec<FolderRow>> {
        let op = "folders_of_owner";
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols!(folders),
            " FROM folders WHERE owner_uid = $1"
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
            cols!(folders),
            " FROM folders WHERE root_uid = ANY($1)"
        ))
        .bind(root_uids)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        Ok(preorder(decode_all(op, &rows, folder_from)?))
    }

    // ---- records and files ---------------------------------------------------------------

    async fn create_record(&self, record: &RecordRow, actor: &str) -> StoreResult<()> {
        in_transaction!(self, "create_record", |conn| create_record_in(
            conn, record, actor
        ))
    }

    async fn record(&self, uid: &str) -> StoreResult<RecordRow> {
        let op = "record";
        let row = sqlx::query(concat!(
            "SELECT ",
            cols!(records),
            " FROM records WHERE uid = $1"
        ))
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err(op))?
        .ok_or(StoreError::NotFound)?;
        record_from(&row).map_err(map_err(op))
    }

    async fn records_of_owner(&self, owner_uid: &str) -> StoreResult<Vec<RecordRow>> {
        let op = "records_of_owner";
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols!(records),
            " FROM records WHERE owner_uid = $1 ORDER BY created_at, uid"
        ))
        .bind(owner_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        decode_all(op, &rows, record_from)
    }

    async fn records_in_roots(&self, root_uids: &[String]) -> StoreResult<Vec<RecordRow>> {
        records_in_roots_on(&self.pool, root_uids).await
    }

    async fn records_by_uids(&self, uids: &[String]) -> StoreResult<Vec<RecordRow>> {
        records_by_uids_on(&self.pool, uids).await
    }

    async fn files_of_records(&self, record_uids: &[String]) -> StoreResult<Vec<FileRow>> {
        files_of_records_on(&self.pool, record_uids).await
    }

    async fn file(&self, uid: &str) -> StoreResult<FileRow> {
        let op = "file";
        let row = sqlx::query(concat!(
            "SELECT ",
            cols!(files),
            " FROM files WHERE uid = $1"
        ))
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err(op))?
        .ok_or(StoreError::NotFound)?;
        file_from(&row).map_err(map_err(op))
    }

    // ---- uploads ---------------------------------------------------------------------------

    async fn create_upload(&self, upload: &UploadRow) -> StoreResult<()> {
        in_transaction!(self, "create_upload", |conn| create_upload_in(conn, upload))
    }

    async fn upload(&self, token_hash: &[u8], now: Millis) -> StoreResult<UploadRow> {
        let op = "upload";
        let row = sqlx::query(concat!(
            "SELECT ",
            cols!(uploads),
            " FROM uploads WHERE token_hash = $1 AND expires_at > $2"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err(op))?
        .ok_or(StoreError::NotFound)?;
        upload_from(&row).map_err(map_err(op))
    }

    async fn complete_upload(&self, token_hash: &[u8], now: Millis) -> StoreResult<i64> {
        in_transaction!(self, "complete_upload", |conn| complete_upload_in(
            conn, token_hash, now
        ))
    }

    async fn expire_uploads(&self, now: Millis) -> StoreResult<Vec<String>> {
        // Concurrent sweeps each delete (and report) a row once: the second waits for the
        // first's row lock and then finds the row gone.
        let mut uids: Vec<String> =
            sqlx::query_scalar("DELETE FROM uploads WHERE expires_at <= $1 RETURNING file_uid")
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
            cols!(apps),
            ") VALUES ($1, $2, $3, $4, $5)"
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
        let op = "app";
        let row = sqlx::query(concat!("SELECT ", cols!(apps), " FROM apps WHERE uid = $1"))
            .bind(uid)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err(op))?
            .ok_or(StoreError::NotFound)?;
        app_from(&row).map_err(map_err(op))
    }

    async fn apps_of_owner(&self, owner_uid: &str) -> StoreResult<Vec<AppRow>> {
        let op = "apps_of_owner";
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols!(apps),
            " FROM apps WHERE owner_uid = $1 ORDER BY created_at, uid"
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
            cols!(shares),
            ") VALUES ($1, $2, $3, $4, $5) \
              ON CONFLICT (app_uid, target_uid) DO UPDATE SET \
              kind = EXCLUDED.kind, key = EXCLUDED.key, editable = EXCLUDED.editable"
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
        let done = sqlx::query("DELETE FROM shares WHERE app_uid = $1 AND target_uid = $2")
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

    async fn shares_of_app(&self, app_uid: &str) -> StoreResult<Vec<ShareRow>> {
        shares_of_app_on(&self.pool, app_uid).await
    }

    async fn app_contents(&self, app_uid: &str) -> StoreResult<AppContents> {
        let op = "app_contents";
        // One snapshot: a record moved, deleted or shared while this runs is seen either
        // wholly before or wholly after the change, never half (a record without its files).
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(map_err(op))?;
        let result = app_contents_in(&mut tx, app_uid).await;
        end_read(op, tx).await;
        result
    }

    // ---- devices ---------------------------------------------------------------------------

    async fn create_device(&self, device: &DeviceRow) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO devices (",
            cols!(devices),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
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
        let op = "device";
        let row = sqlx::query(concat!(
            "SELECT ",
            cols!(devices),
            " FROM devices WHERE client_id = $1"
        ))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err(op))?
        .ok_or(StoreError::NotFound)?;
        device_from(&row).map_err(map_err(op))
    }

    async fn bind_device(
        &self,
        client_id: &str,
        public_key: &[u8],
        ip: &str,
        now: Millis,
    ) -> StoreResult<BindOutcome> {
        let op = "bind_device";
        for _ in 0..CHANGING_ROW_ATTEMPTS {
            // A racing binder makes this UPDATE wait; PostgreSQL then re-checks the condition
            // on the row it committed and updates nothing.
            let done = sqlx::query(
                "UPDATE devices SET public_key = $1, bound_at = $2, bound_ip = $3 \
                 WHERE client_id = $4 AND public_key IS NULL",
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
            // A bound key is never unset, so the key read now is the one that won.
            let bound: Option<Option<Vec<u8>>> =
                sqlx::query_scalar("SELECT public_key FROM devices WHERE client_id = $1")
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
                // Deleted and created again unbound between the two statements.
                Some(None) => {}
            }
        }
        Err(StoreError::Backend(format!(
            "{op}: device keeps changing, giving up"
        )))
    }

    async fn touch_device(&self, client_id: &str, now: Millis) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET last_access_at = $1 WHERE client_id = $2")
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
            cols!(devices),
            " FROM devices WHERE app_uid = $1 ORDER BY created_at, client_id"
        ))
        .bind(app_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        decode_all(op, &rows, device_from)
    }

    async fn delete_device(&self, app_uid: &str, client_id: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM devices WHERE app_uid = $1 AND client_id = $2")
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
        in_transaction!(self, "update_record", |conn| update_record_in(conn, update))
    }

    async fn transaction(&self, record_uid: &str) -> StoreResult<TransactionRow> {
        let op = "transaction";
        let row = sqlx::query(concat!(
            "SELECT ",
            cols!(record_transactions),
            " FROM record_transactions WHERE record_uid = $1"
        ))
        .bind(record_uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err(op))?
        .ok_or(StoreError::NotFound)?;
        transaction_from(&row).map_err(map_err(op))
    }

    async fn finalize_transaction(
        &self,
        record_uid: &str,
        _now: Millis,
    ) -> StoreResult<RecordChange> {
        // An expired transaction the sweep has not rolled back yet can still be finalised:
        // whichever locks the record first decides, and the other finds nothing.
        in_transaction!(self, "finalize_transaction", |conn| finalize_in(
            conn, record_uid
        ))
    }

    async fn rollback_transaction(
        &self,
        record_uid: &str,
        actor: &str,
        now: Millis,
    ) -> StoreResult<RecordChange> {
        let op = "rollback_transaction";
        in_transaction!(self, op, |conn| rollback_in(
            conn, op, record_uid, actor, now, None
        ))?
        .ok_or(StoreError::NotFound)
    }

    async fn expire_transactions(&self, now: Millis) -> StoreResult<Vec<(String, String)>> {
        in_transaction!(self, "expire_transactions", |conn| expire_in(conn, now))
    }

    async fn record_history(&self, record_uid: &str) -> StoreResult<Vec<HistoryRow>> {
        let op = "record_history";
        let rows = sqlx::query(
            "SELECT revision, data, actor, at FROM record_history WHERE record_uid = $1 \
             ORDER BY revision DESC",
        )
        .bind(record_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err(op))?;
        decode_all(op, &rows, history_from)
    }

    async fn delete_record(&self, uid: &str) -> StoreResult<Removed> {
        in_transaction!(self, "delete_record", |conn| delete_record_in(conn, uid))
    }

    async fn update_folder(&self, uid: &str, data: &[u8]) -> StoreResult<()> {
        let done = sqlx::query("UPDATE folders SET data = $1 WHERE uid = $2")
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
        in_transaction!(self, "delete_folder_tree", |conn| delete_folder_tree_in(
            conn, uid, force
        ))
    }

    // ---- audit -----------------------------------------------------------------------------

    async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_events (owner_uid, at, actor, action, target, ip, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        let mut query = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            cols!(audit_events),
            " FROM audit_events WHERE TRUE"
        ));
        if let Some(owner_uid) = &filter.owner_uid {
            query.push(" AND owner_uid = ").push_bind(owner_uid);
        }
        if let Some(actor) = &filter.actor {
            query.push(" AND actor = ").push_bind(actor);
        }
        if let Some(prefix) = &filter.action_prefix {
            // Literal and case-sensitive, unlike LIKE there is no wildcard to escape.
            query
                .push(" AND starts_with(action, ")
                .push_bind(prefix)
                .push(")");
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
        let calls = self.counted.fetch_add(1, Ordering::Relaxed);
        let sweep = calls % RATE_SWEEP_EVERY == RATE_SWEEP_EVERY - 1;
        in_transaction!(self, "count_request", |conn| count_request_in(
            conn,
            key,
            window_start,
            sweep
        ))
    }

    // ---- whole-vault copy --------------------------------------------------------------------

    async fn export(&self) -> StoreResult<Snapshot> {
        let op = "export";
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(map_err(op))?;
        let result = export_in(&mut tx).await;
        end_read(op, tx).await;
        result
    }

    async fn import(&self, snapshot: &Snapshot) -> StoreResult<()> {
        in_transaction!(self, "import", |conn| import_in(conn, snapshot))
    }

    // ---- lifecycle -------------------------------------------------------------------------

    async fn close(&self) {
        // PostgreSQL has nothing to checkpoint on the client's behalf: closing the pool is all.
        self.pool.close().await;
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
    fn preorder_puts_parents_first_and_orders_siblings_by_time_then_uid() {
        let rows = vec![
            folder("y2", Some("y"), 1),
            folder("top2", None, 10),
            folder("y", Some("top2"), 5),
            folder("n", Some("top1"), 7),
            folder("m", Some("top1"), 7),
            folder("top1", None, 20),
            folder("y1", Some("y"), 3),
            folder("m1", Some("m"), 0),
        ];
        assert_eq!(
            uids(&preorder(rows)),
            ["top2", "y", "y2", "y1", "top1", "m", "m1", "n"]
        );
        assert!(preorder(Vec::new()).is_empty());
    }

    #[test]
    fn preorder_keeps_orphans_self_parents_and_cycles() {
        let rows = vec![
            folder("p", Some("q"), 2),
            folder("q", Some("p"), 1),
            folder("lost", Some("gone"), 5),
            folder("own", Some("own"), 4),
            folder("top", None, 3),
        ];
        assert_eq!(uids(&preorder(rows)), ["top", "own", "lost", "q", "p"]);
    }

    fn node(uid: &str, parent: Option<&str>) -> (String, Option<String>) {
        (uid.to_owned(), parent.map(str::to_owned))
    }

    #[test]
    fn deletion_levels_list_children_before_parents() {
        let tree = vec![
            node("top", None),
            node("right", Some("top")),
            node("left", Some("top")),
            node("left-2", Some("left")),
            node("left-1", Some("left")),
            node("left-1-x", Some("left-1")),
        ];
        assert_eq!(
            deletion_levels(tree),
            vec![
                vec!["left-1-x", "left-2", "right"],
                vec!["left-1"],
                vec!["left"],
                vec!["top"]
            ]
        );
        // The top of a sub-tree has a parent outside the set; that does not matter.
        assert_eq!(
            deletion_levels(vec![
                node("sub", Some("elsewhere")),
                node("leaf", Some("sub"))
            ]),
            vec![vec!["leaf"], vec!["sub"]]
        );
        assert!(deletion_levels(Vec::new()).is_empty());
    }

    #[test]
    fn deletion_levels_end_on_cycles() {
        let tree = vec![
            node("p", Some("q")),
            node("q", Some("p")),
            node("leaf", Some("p")),
        ];
        assert_eq!(deletion_levels(tree), vec![vec!["leaf"], vec!["p", "q"]]);
    }

    #[test]
    fn audit_limit_defaults_and_caps() {
        assert_eq!(audit_limit(0), 100);
        assert_eq!(audit_limit(1), 1);
        assert_eq!(audit_limit(1000), 1000);
        assert_eq!(audit_limit(1001), 1000);
        assert_eq!(audit_limit(u32::MAX), 1000);
    }

    #[test]
    fn pool_options_default_and_checks() {
        let default = PoolOptions::default();
        assert_eq!(default.max_connections, 10);
        assert_eq!(default.min_connections, 0);
        assert_eq!(default.acquire_timeout, Duration::from_secs(30));
        assert!(default.check().is_ok());
        for (bad, needle) in [
            (
                PoolOptions {
                    max_connections: 0,
                    ..default
                },
                "max_connections",
            ),
            (
                PoolOptions {
                    min_connections: 11,
                    ..default
                },
                "min_connections",
            ),
            (
                PoolOptions {
                    acquire_timeout: Duration::ZERO,
                    ..default
                },
                "acquire_timeout",
            ),
        ] {
            match bad.check() {
                Err(StoreError::Backend(msg)) => {
                    assert!(
                        msg.starts_with("connect: ") && msg.contains(needle),
                        "{msg}"
                    );
                }
                other => panic!("expected Backend for {bad:?}, got {other:?}"),
            }
        }
        assert!(
            PoolOptions {
                min_connections: 10,
                ..default
            }
            .check()
            .is_ok()
        );
    }

    #[test]
    fn lock_ids_are_distinct_and_spell_coffer() {
        assert_ne!(MIGRATION_LOCK_ID, OWNER_LOCK_ID);
        assert_eq!(&MIGRATION_LOCK_ID.to_be_bytes()[..6], b"coffer");
        assert_eq!(&OWNER_LOCK_ID.to_be_bytes()[..6], b"coffer");
    }

    #[test]
    fn row_not_found_maps_to_not_found_and_others_to_backend() {
        assert!(matches!(
            map_err("x")(sqlx::Error::RowNotFound),
            StoreError::NotFound
        ));
        match map_err("some_op")(sqlx::Error::PoolTimedOut) {
            StoreError::Backend(msg) => assert!(msg.starts_with("some_op: "), "{msg}"),
            other => panic!("expected Backend, got {other:?}"),
        }
        assert!(!TxError::Sql("x", sqlx::Error::PoolTimedOut).is_transient());
        assert!(!TxError::Store(StoreError::Conflict).is_transient());
    }
}
