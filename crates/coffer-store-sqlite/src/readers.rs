//! The hot read path: what `get_secret` answers from, read through rusqlite on blocking threads.
//!
//! sqlx's SQLite driver runs statements on a worker thread and hands every row to the async
//! task through a channel, which costs a few microseconds a row: most of a `get_secret` for an
//! application with a thousand records. [`Readers`] keeps a few plain connections to the same
//! file (the same SQLite library: rusqlite and sqlx share `libsqlite3-sys`) and runs a whole
//! read, several statements in one read transaction, on a blocking thread. In WAL mode such a
//! reader sees one consistent snapshot, never blocks the writer and is never blocked by it.
//!
//! The connections are `query_only`: nothing on this path can change the database.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use coffer_store::{AppContents, FileRow, RecordRow, ShareKind, ShareRow, StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags, Row};
use tokio::sync::Semaphore;

use crate::{BUSY_TIMEOUT, backend};

/// Reads running at once (and connections kept open). Each holds a blocking thread.
const MAX_READERS: usize = 4;

/// A small pool of read-only connections.
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
}

impl Readers {
    /// Readers of the database file at `path` (opened lazily, the file must exist).
    pub(crate) fn new(path: PathBuf) -> Arc<Readers> {
        Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(MAX_READERS)),
            closed: AtomicBool::new(false),
        })
    }

    /// Closes the idle connections; later reads fail and running ones drop theirs when done.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.permits.close();
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Runs `read` in one read transaction on a blocking thread.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, op: &'static str, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let closed = || StoreError::Backend(format!("{op}: the store is closed"));
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let this = Arc::clone(self);
        // The permit lives on the blocking thread: a cancelled caller does not free its slot
        // before the read is over.
        tokio::task::spawn_blocking(move || {
            let result = this.run(op, read);
            drop(permit);
            result
        })
        .await
        .map_err(|e| backend(op, &e))?
    }

    fn run<T>(
        &self,
        op: &'static str,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Backend(format!("{op}: the store is closed")));
        }
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.open().map_err(|e| backend(op, &e))?,
        };
        let result = (|| {
            // A deferred transaction: the first SELECT takes the snapshot every later one sees.
            let tx = conn.transaction()?;
            let value = read(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        match result {
            Ok(value) => {
                if !self.closed.load(Ordering::SeqCst) {
                    self.idle
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(conn);
                }
                Ok(value)
            }
            // The connection is dropped rather than reused after a failure.
            Err(e) => Err(map_read_err(op, e)),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }
}

fn map_read_err(op: &'static str, e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        e => backend(op, &e),
    }
}

/// The shares of the app, as `?1` in the statements below.
macro_rules! app_targets {
    ($kind:literal) => {
        concat!(
            "SELECT target_uid FROM shares WHERE app_uid = ?1 AND kind = '",
            $kind,
            "'"
        )
    };
}

/// [`coffer_store::Store::app_contents`]: four statements in one snapshot.
///
/// Rows are sorted here rather than with `ORDER BY`: SQLite would sort whole rows, ciphertext
/// included, in a temporary B-tree, which takes longer than reading them.
pub(crate) fn app_contents(conn: &Connection, app_uid: &str) -> rusqlite::Result<AppContents> {
    let shares = collect(
        conn,
        concat!(
            "SELECT ",
            share_cols!(),
            " FROM shares WHERE app_uid = ?1 ORDER BY target_uid"
        ),
        app_uid,
        share_row,
    )?;
    let mut folder_records = collect(
        conn,
        concat!(
            "SELECT ",
            record_cols!(),
            " FROM records WHERE root_folder_uid IN (",
            app_targets!("folder"),
            ")"
        ),
        app_uid,
        record_row,
    )?;
    let mut direct_records = collect(
        conn,
        concat!(
            "SELECT ",
            record_cols!(),
            " FROM records WHERE uid IN (",
            app_targets!("record"),
            ")"
        ),
        app_uid,
        record_row,
    )?;
    // The files of the records just read, by UID (one index probe each), rather than by
    // searching the record trees again.
    let mut uids: Vec<&str> = folder_records
        .iter()
        .chain(&direct_records)
        .map(|r| r.uid.as_str())
        .collect();
    uids.sort_unstable();
    uids.dedup();
    let uids = serde_json::to_string(&uids)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let mut files = collect(
        conn,
        concat!(
            "SELECT ",
            file_cols!(),
            " FROM files WHERE record_uid IN (SELECT value FROM json_each(?1))"
        ),
        &uids,
        file_row,
    )?;
    folder_records.sort_unstable_by(|a, b| (a.created_at, &a.uid).cmp(&(b.created_at, &b.uid)));
    direct_records.sort_unstable_by(|a, b| (a.created_at, &a.uid).cmp(&(b.created_at, &b.uid)));
    files.sort_unstable_by(|a, b| (a.created_at, &a.uid).cmp(&(b.created_at, &b.uid)));
    Ok(AppContents {
        shares,
        folder_records,
        direct_records,
        files,
    })
}

fn collect<T>(
    conn: &Connection,
    sql: &str,
    param: &str,
    decode: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map([param], decode)?;
    rows.collect()
}

// Decoders, in the column order of the `*_cols!` lists.

fn record_row(row: &Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok(RecordRow {
        uid: row.get(0)?,
        owner_uid: row.get(1)?,
        root_folder_uid: row.get(2)?,
        folder_uid: row.get(3)?,
        key: row.get(4)?,
        owner_key: row.get(5)?,
        data: row.get(6)?,
        revision: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

fn file_row(row: &Row<'_>) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        uid: row.get(0)?,
        record_uid: row.get(1)?,
        key: row.get(2)?,
        owner_key: row.get(3)?,
        data: row.get(4)?,
        size: row.get(5)?,
        created_at: row.get(6)?,
    })
}

fn share_row(row: &Row<'_>) -> rusqlite::Result<ShareRow> {
    let kind: String = row.get(2)?;
    Ok(ShareRow {
        app_uid: row.get(0)?,
        target_uid: row.get(1)?,
        kind: ShareKind::parse(&kind).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?,
        key: row.get(3)?,
        editable: row.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use coffer_store::{NewAuditEvent, Store};

    use crate::SqliteStore;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("coffer.db"))
            .await
            .expect("open");
        (dir, store)
    }

    fn audit_count(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
        conn.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
    }

    fn event() -> NewAuditEvent {
        NewAuditEvent {
            at: 1,
            owner_uid: None,
            actor: "test".into(),
            action: "test.event".into(),
            target: None,
            ip: None,
            detail: None,
        }
    }

    #[tokio::test]
    async fn readers_cannot_write() {
        let (_dir, store) = store().await;
        let refused = store
            .readers
            .read("test", |conn| {
                conn.execute("INSERT INTO settings (key, value) VALUES ('k', x'00')", [])
            })
            .await;
        let err = refused.expect_err("a reader connection refuses writes");
        assert!(err.to_string().contains("readonly") || err.to_string().contains("query_only"));
        assert_eq!(store.setting("k").await.expect("setting"), None);
    }

    #[tokio::test]
    async fn a_read_sees_one_snapshot_while_others_write() {
        let (_dir, store) = store().await;
        store.append_audit(&event()).await.expect("first event");
        let (first_tx, first_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let reader = {
            let readers = store.readers.clone();
            tokio::spawn(async move {
                readers
                    .read("test", move |conn| {
                        let before = audit_count(conn)?;
                        first_tx.send(before).expect("report");
                        go_rx.recv().expect("wait for the write");
                        Ok((before, audit_count(conn)?))
                    })
                    .await
            })
        };
        let before = tokio::task::spawn_blocking(move || first_rx.recv().expect("first read"))
            .await
            .expect("join");
        assert_eq!(before, 1);
        // Committed while the read transaction is open: invisible to it, visible after.
        store.append_audit(&event()).await.expect("second event");
        go_tx.send(()).expect("go");
        let (first, second) = reader.await.expect("join").expect("read");
        assert_eq!((first, second), (1, 1), "one snapshot for the whole read");
        let now = store
            .readers
            .read("test", audit_count)
            .await
            .expect("next read");
        assert_eq!(now, 2, "the next read sees the write");
    }

    #[tokio::test]
    async fn many_reads_share_a_bounded_set_of_connections() {
        let (_dir, store) = store().await;
        let reads: Vec<_> = (0..32)
            .map(|_| {
                let readers = store.readers.clone();
                tokio::spawn(async move { readers.read("test", audit_count).await })
            })
            .collect();
        for read in reads {
            assert_eq!(read.await.expect("join").expect("read"), 0);
        }
        let idle = store.readers.idle.lock().expect("lock").len();
        assert!(
            (1..=super::MAX_READERS).contains(&idle),
            "{idle} idle connections"
        );
    }

    #[tokio::test]
    async fn reads_fail_after_close() {
        let (_dir, store) = store().await;
        store.readers.read("test", audit_count).await.expect("open");
        store.close().await;
        let err = store
            .app_contents("app")
            .await
            .expect_err("a closed store refuses reads");
        assert!(err.to_string().contains("closed"), "{err}");
        assert!(store.readers.idle.lock().expect("lock").is_empty());
    }
}
