//! The SQLite store against the backend-independent suite (`tests/suite`), plus tests of what is
//! specific to SQLite: file permissions, history rows, foreign keys, concurrent opening, and
//! acknowledged writes surviving a killed process.

#[macro_use]
mod suite;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use coffer_store::{Removed, SessionRow, ShareKind, ShareRow, Store, StoreError};
use coffer_store_sqlite::SqliteStore;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use suite::Harness;

/// A fresh database file in its own temporary directory.
struct SqliteHarness {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SqliteHarness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("coffer.db");
        SqliteHarness { _dir: dir, path }
    }

    /// A separate read-only connection, to look at tables the trait does not expose.
    async fn raw(&self) -> SqliteConnection {
        SqliteConnectOptions::new()
            .filename(&self.path)
            .read_only(true)
            .connect()
            .await
            .expect("raw connection")
    }
}

impl Harness for SqliteHarness {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.path).await.expect("open store"))
    }

    async fn another(&self) -> Self {
        SqliteHarness::new()
    }
}

/// Runs each named suite test against a fresh SQLite file, on a multi-threaded runtime so that
/// the race tests really race.
macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                suite::$name(&SqliteHarness::new()).await;
            }
        )*
    };
}

all_suite_tests!(suite_tests);

// ---- SQLite specifics ----------------------------------------------------------------------

#[cfg(unix)]
#[tokio::test]
async fn new_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let h = SqliteHarness::new();
    let s = h.open().await;
    s.setting_init("k", b"v").await.expect("write");
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&h.path), 0o600);
    // SQLite gives its side files the database file's mode.
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", h.path.display()));
        if side.exists() {
            assert_eq!(mode(&side), 0o600, "{suffix}");
        }
    }
}

#[tokio::test]
async fn open_reports_unusable_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    match SqliteStore::open(&dir.path().join("missing-dir").join("coffer.db")).await {
        Err(StoreError::Backend(msg)) => assert!(msg.starts_with("open:"), "{msg}"),
        other => panic!("expected Backend, got {other:?}"),
    }
    match SqliteStore::open(dir.path()).await {
        Err(StoreError::Backend(msg)) => assert!(msg.starts_with("open:"), "{msg}"),
        other => panic!("expected Backend, got {other:?}"),
    }
}

#[tokio::test]
async fn every_record_data_change_appends_history() {
    let h = SqliteHarness::new();
    let s = h.open().await;
    s.create_owner(&suite::owner("o1", "o1@example.com"), false)
        .await
        .expect("owner");
    s.create_folder(&suite::shared("sf1", "o1", 1))
        .await
        .expect("folder");
    let r1 = suite::record("r1", "o1", "sf1", "sf1", 10);
    s.create_record(&r1, "owner:o1").await.expect("record");
    let up = suite::upload("t1", "f1", "r1", Some(1));
    s.create_upload(&up).await.expect("upload");
    let stale = suite::upload("t2", "f2", "r1", Some(1));
    s.create_upload(&stale).await.expect("upload");
    assert_eq!(
        s.complete_upload(&up.token_hash, 20)
            .await
            .expect("complete"),
        2
    );
    assert!(s.complete_upload(&stale.token_hash, 30).await.is_err());

    let rows: Vec<(String, i64, Vec<u8>, String, i64)> = sqlx::query_as(
        "SELECT record_uid, revision, data, actor, at FROM record_history \
         ORDER BY record_uid, revision",
    )
    .fetch_all(&mut h.raw().await)
    .await
    .expect("history");
    assert_eq!(
        rows,
        vec![
            (
                "r1".to_owned(),
                1,
                r1.data.clone(),
                "owner:o1".to_owned(),
                10
            ),
            (
                "r1".to_owned(),
                2,
                up.record_data.clone(),
                up.actor.clone(),
                20
            ),
        ]
    );
}

#[tokio::test]
async fn missing_referenced_rows_are_preconditions() {
    let h = SqliteHarness::new();
    let s = h.open().await;
    let precondition = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Precondition(_)));
    assert!(precondition(
        s.create_folder(&suite::shared("sf1", "nobody", 1)).await
    ));
    s.create_owner(&suite::owner("o1", "o1@example.com"), false)
        .await
        .expect("owner");
    assert!(precondition(
        s.create_session(&SessionRow {
            token_hash: b"t".to_vec(),
            owner_uid: "nobody".to_owned(),
            expires_at: 1,
        })
        .await
    ));
    assert!(precondition(
        s.create_folder(&suite::folder("sub", "o1", Some("nope"), "nope", 1))
            .await
    ));
    assert!(precondition(
        s.create_record(&suite::record("r1", "o1", "nope", "nope", 1), "owner:o1")
            .await
    ));
    assert!(precondition(
        s.create_upload(&suite::upload("t", "f", "nope", None))
            .await
    ));
    assert!(precondition(
        s.create_app(&suite::app("a1", "nobody", 1)).await
    ));
    assert!(precondition(
        s.create_device(&suite::device("c1", "nope", 1)).await
    ));
    // Nothing half-made: the failed create_record left no history row behind.
    s.create_folder(&suite::shared("sf1", "o1", 1))
        .await
        .expect("folder");
    s.create_record(&suite::record("r1", "o1", "sf1", "sf1", 1), "owner:o1")
        .await
        .expect("record");
    let history: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM record_history")
        .fetch_one(&mut h.raw().await)
        .await
        .expect("count");
    assert_eq!(history, 1);
    // A malformed folder (shared but with another root) is refused by the schema.
    assert!(matches!(
        s.create_folder(&suite::folder("bad", "o1", None, "sf1", 1))
            .await,
        Err(StoreError::Backend(_))
    ));
}

/// Row counts of every table that hangs off records and folders.
async fn counts(conn: &mut SqliteConnection) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for table in [
        "folders",
        "records",
        "record_history",
        "record_transactions",
        "files",
        "uploads",
        "shares",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *conn)
            .await
            .expect("count");
        out.push((table, n));
    }
    out
}

#[tokio::test]
async fn both_migrations_are_applied() {
    let h = SqliteHarness::new();
    let _s = h.open().await;
    let versions: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut h.raw().await)
            .await
            .expect("migrations");
    assert_eq!(versions, [(1, true), (2, true)]);
    let index: String = sqlx::query_scalar(
        "SELECT tbl_name FROM sqlite_master \
         WHERE type = 'index' AND name = 'record_transactions_by_expiry'",
    )
    .fetch_one(&mut h.raw().await)
    .await
    .expect("expiry index");
    assert_eq!(index, "record_transactions");
}

#[tokio::test]
async fn a_version_1_database_is_upgraded_on_open() {
    let h = SqliteHarness::new();
    // Build a database at schema version 1 only, with a record in it.
    let v1 = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/0001_initial.sql"),
        v1.path().join("0001_initial.sql"),
    )
    .expect("copy migration 1");
    {
        let mut conn = SqliteConnectOptions::new()
            .filename(&h.path)
            .create_if_missing(true)
            .foreign_keys(true)
            .connect()
            .await
            .expect("v1 connection");
        sqlx::migrate::Migrator::new(v1.path())
            .await
            .expect("v1 migrator")
            .run(&mut conn)
            .await
            .expect("v1 schema");
        for sql in [
            "INSERT INTO owners VALUES ('o1', 'o1@example.com', '{}', 'h', x'01', x'02', x'03', 1)",
            "INSERT INTO folders VALUES ('sf1', 'o1', NULL, 'sf1', x'04', x'05', 2)",
            "INSERT INTO records VALUES ('r1', 'o1', 'sf1', 'sf1', x'06', NULL, x'07', 1, 3, 3)",
            "INSERT INTO record_history VALUES ('r1', 1, x'07', 'owner:o1', 3)",
        ] {
            sqlx::query(sql).execute(&mut conn).await.expect("v1 row");
        }
    }
    let s = h.open().await;
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY 1")
        .fetch_all(&mut h.raw().await)
        .await
        .expect("migrations");
    assert_eq!(versions, [1, 2]);
    assert_eq!(s.record("r1").await.expect("old record").data, [7]);
    let change = s
        .update_record(&coffer_store::RecordUpdate {
            transaction: Some(coffer_store::TransactionStart {
                kind: "general".to_owned(),
                expires_at: 100,
            }),
            ..suite::update("r1", 1, "new", 50)
        })
        .await
        .expect("transactional update");
    assert_eq!(change.revision, 2);
    assert_eq!(
        s.expire_transactions(100).await.expect("expire"),
        [("r1".to_owned(), "o1".to_owned())]
    );
    assert_eq!(s.record("r1").await.expect("rolled back").data, [7]);
}

#[tokio::test]
async fn transaction_file_lists_are_json_arrays() {
    let h = SqliteHarness::new();
    let s = h.open().await;
    s.create_owner(&suite::owner("o1", "o1@example.com"), false)
        .await
        .expect("owner");
    s.create_folder(&suite::shared("sf1", "o1", 1))
        .await
        .expect("folder");
    s.create_record(&suite::record("r1", "o1", "sf1", "sf1", 10), "owner:o1")
        .await
        .expect("record");
    s.update_record(&coffer_store::RecordUpdate {
        remove_files: vec!["f\"1".to_owned(), "g1".to_owned()],
        transaction: Some(coffer_store::TransactionStart {
            kind: "rotation".to_owned(),
            expires_at: 100,
        }),
        ..suite::update("r1", 1, "new", 50)
    })
    .await
    .expect("transactional update");
    let stored: (String, String, i64) = sqlx::query_as(
        "SELECT kind, remove_files, previous_revision FROM record_transactions \
         WHERE record_uid = 'r1'",
    )
    .fetch_one(&mut h.raw().await)
    .await
    .expect("row");
    assert_eq!(
        stored,
        ("rotation".to_owned(), r#"["f\"1","g1"]"#.to_owned(), 1)
    );
    assert_eq!(
        s.transaction("r1").await.expect("open").remove_files,
        ["f\"1", "g1"]
    );
}

#[tokio::test]
async fn deletions_leave_no_orphan_rows() {
    let h = SqliteHarness::new();
    let s = h.open().await;
    s.create_owner(&suite::owner("o1", "o1@example.com"), false)
        .await
        .expect("owner");
    for f in [
        suite::shared("sf1", "o1", 1),
        suite::folder("a", "o1", Some("sf1"), "sf1", 2),
        suite::folder("a1", "o1", Some("a"), "sf1", 3),
    ] {
        s.create_folder(&f).await.expect("folder");
    }
    s.create_app(&suite::app("app", "o1", 1))
        .await
        .expect("app");
    for (uid, folder) in [("r0", "sf1"), ("r1", "a"), ("r2", "a1"), ("r3", "a1")] {
        s.create_record(&suite::record(uid, "o1", "sf1", folder, 10), "owner:o1")
            .await
            .expect("record");
        let up = suite::upload(&format!("t-{uid}"), &format!("f-{uid}"), uid, None);
        s.create_upload(&up).await.expect("upload");
        s.complete_upload(&up.token_hash, 20)
            .await
            .expect("complete");
        s.create_upload(&suite::upload(
            &format!("p-{uid}"),
            &format!("p-{uid}"),
            uid,
            None,
        ))
        .await
        .expect("pending upload");
        s.update_record(&coffer_store::RecordUpdate {
            transaction: Some(coffer_store::TransactionStart {
                kind: "general".to_owned(),
                expires_at: 100,
            }),
            ..suite::update(uid, 2, uid, 30)
        })
        .await
        .expect("transaction");
        s.put_share(&ShareRow {
            app_uid: "app".to_owned(),
            target_uid: uid.to_owned(),
            kind: ShareKind::Record,
            key: b"k".to_vec(),
            editable: false,
        })
        .await
        .expect("record share");
    }
    s.put_share(&ShareRow {
        app_uid: "app".to_owned(),
        target_uid: "sf1".to_owned(),
        kind: ShareKind::Folder,
        key: b"k".to_vec(),
        editable: false,
    })
    .await
    .expect("folder share");

    assert_eq!(
        s.delete_record("r3").await.expect("delete r3"),
        Removed {
            records: vec!["r3".to_owned()],
            folders: Vec::new(),
            files: vec!["f-r3".to_owned(), "p-r3".to_owned()],
        }
    );
    assert_eq!(
        counts(&mut h.raw().await).await,
        [
            ("folders", 3),
            ("records", 3),
            ("record_history", 9),
            ("record_transactions", 3),
            ("files", 3),
            ("uploads", 3),
            ("shares", 4),
        ]
    );
    let removed = s
        .delete_folder_tree("sf1", true)
        .await
        .expect("delete tree");
    // Children come before their parents in the folder list.
    assert_eq!(removed.folders, ["a1", "a", "sf1"]);
    assert_eq!(removed.records, ["r0", "r1", "r2"]);
    assert_eq!(
        removed.files,
        ["f-r0", "f-r1", "f-r2", "p-r0", "p-r1", "p-r2"]
    );
    assert!(
        counts(&mut h.raw().await)
            .await
            .iter()
            .all(|(_, n)| *n == 0),
        "rows left behind"
    );
    let violations: Vec<(String, i64)> =
        sqlx::query_as("SELECT \"table\", rowid FROM pragma_foreign_key_check")
            .fetch_all(&mut h.raw().await)
            .await
            .expect("foreign key check");
    assert!(violations.is_empty(), "{violations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_of_a_new_file_all_succeed() {
    let h = SqliteHarness::new();
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let path = h.path.clone();
            tokio::spawn(async move { SqliteStore::open(&path).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.expect("join").expect("open"));
    }
    assert_eq!(
        stores[0].setting_init("k", b"first").await.expect("init"),
        b"first"
    );
    assert_eq!(
        stores[5].setting_init("k", b"last").await.expect("init"),
        b"first"
    );
    for s in &stores {
        s.close().await;
    }
    let reopened = SqliteStore::open(&h.path).await.expect("reopen");
    assert_eq!(
        reopened.setting("k").await.expect("setting"),
        Some(b"first".to_vec())
    );
}

#[tokio::test]
async fn closed_store_reports_backend_errors() {
    let h = SqliteHarness::new();
    let s = SqliteStore::open(&h.path).await.expect("open");
    s.close().await;
    match s.setting("k").await {
        Err(StoreError::Backend(msg)) => assert!(msg.starts_with("setting:"), "{msg}"),
        other => panic!("expected Backend, got {other:?}"),
    }
}

/// Set in the child process of [`acknowledged_writes_survive_sigkill`]: the database to write.
const CHILD_DB_ENV: &str = "COFFER_SQLITE_SIGKILL_CHILD_DB";

/// The child half of [`acknowledged_writes_survive_sigkill`]: writes settings `k0`, `k1`, …
/// forever, printing `ACK n` after each write returned.
#[tokio::test]
#[ignore = "child process of acknowledged_writes_survive_sigkill"]
async fn sigkill_child_writer() {
    let Ok(path) = std::env::var(CHILD_DB_ENV) else {
        return;
    };
    let store = SqliteStore::open(Path::new(&path))
        .await
        .expect("child open");
    let mut out = std::io::stdout();
    for i in 0..1_000_000u32 {
        store
            .setting_init(&format!("k{i}"), format!("v{i}").as_bytes())
            .await
            .expect("child write");
        writeln!(out, "ACK {i}").expect("child stdout");
        out.flush().expect("child flush");
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let h = SqliteHarness::new();
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "sigkill_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(CHILD_DB_ENV, &h.path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: Option<u32> = None;
    for line in lines.by_ref() {
        let line = line.expect("read child");
        if let Some(n) = line.strip_prefix("ACK ") {
            let n: u32 = n.parse().expect("ack number");
            acked = Some(n);
            if n >= 150 {
                break;
            }
        }
    }
    // SIGKILL on unix: no destructors, no flush, no checkpoint.
    child.kill().expect("kill child");
    child.wait().expect("reap child");
    // Acknowledgements still in the pipe were given before the kill: they count too.
    for line in lines {
        let line = line.expect("read child");
        if let Some(n) = line.strip_prefix("ACK ") {
            acked = Some(n.parse().expect("ack number"));
        }
    }
    let acked = acked.expect("the child acknowledged no write");
    assert!(acked >= 150, "child stopped early at {acked}");

    let s = h.open().await;
    for i in 0..=acked {
        assert_eq!(
            s.setting(&format!("k{i}")).await.expect("setting"),
            Some(format!("v{i}").into_bytes()),
            "acknowledged write {i} of {acked} lost"
        );
    }
}
