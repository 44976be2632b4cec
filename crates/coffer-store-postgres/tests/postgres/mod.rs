//! What is specific to the PostgreSQL store: the schema and its equivalence with SQLite's,
//! migrations under concurrency and the advisory locks, the connection pool, error mapping, and
//! races that exercise the row-lock order across tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_store::{
    RecordChange, RecordUpdate, Removed, SessionRow, ShareKind, ShareRow, Store, StoreError,
    StoreResult, TransactionStart,
};
use coffer_store_postgres::{MIGRATION_LOCK_ID, OWNER_LOCK_ID, PoolOptions, PostgresStore};
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::harness::{self, PgHarness, wait_until};
use crate::suite;

/// Opens a harness, or returns from the test when PostgreSQL tests are skipped.
macro_rules! harness {
    () => {
        match PgHarness::new().await {
            Some(h) => h,
            None => return,
        }
    };
}

/// `(version, success)` of every applied migration.
async fn applied_migrations(h: &PgHarness) -> Vec<(i64, bool)> {
    sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut h.raw().await)
        .await
        .expect("migrations")
}

/// Advisory locks held or awaited by backends named `app`.
async fn advisory_locks(server: &mut PgConnection, app: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND a.application_name = $1",
    )
    .bind(app)
    .fetch_one(server)
    .await
    .expect("pg_locks")
}

/// Backends named `app` waiting for an advisory lock.
async fn advisory_waiters(server: &mut PgConnection, app: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
         AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
    )
    .bind(app)
    .fetch_one(server)
    .await
    .expect("pg_stat_activity")
}

/// Owner `o1` with shared folder `sf1`.
async fn vault(s: &dyn Store) {
    s.create_owner(&suite::owner("o1", "o1@example.com"), false)
        .await
        .expect("owner");
    s.create_folder(&suite::shared("sf1", "o1", 1))
        .await
        .expect("folder");
}

fn transactional(update: RecordUpdate, expires_at: i64) -> RecordUpdate {
    RecordUpdate {
        transaction: Some(TransactionStart {
            kind: "general".to_owned(),
            expires_at,
        }),
        ..update
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Panics on a `Backend` error: in the races below every loser must get a contract outcome.
fn no_backend<T: std::fmt::Debug>(what: &str, result: &StoreResult<T>) {
    if let Err(StoreError::Backend(msg)) = result {
        panic!("{what}: backend error {msg}");
    }
}

// ---- schema ------------------------------------------------------------------------------

/// The parts of a schema both backends must agree on.
#[derive(Debug, PartialEq)]
struct Shape {
    /// Table → its columns in order: (name, kind, not null). Kinds: `text`, `bytes`,
    /// `integer` (PostgreSQL booleans count as integers, as SQLite stores flags so).
    columns: BTreeMap<String, Vec<(String, String, bool)>>,
    /// Table → primary key columns.
    primary_keys: BTreeMap<String, Vec<String>>,
    /// Named index → (table, columns).
    indexes: BTreeMap<String, (String, Vec<String>)>,
    /// Unique constraints other than primary keys: (table, columns).
    uniques: BTreeSet<(String, Vec<String>)>,
    /// Foreign keys: (table, column, referenced table, referenced column).
    foreign_keys: BTreeSet<(String, String, String, String)>,
}

async fn sqlite_shape() -> Shape {
    let mut conn = SqliteConnection::connect("sqlite::memory:")
        .await
        .expect("sqlite");
    let migrations =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../coffer-store-sqlite/migrations");
    Migrator::new(migrations)
        .await
        .expect("sqlite migrations")
        .run(&mut conn)
        .await
        .expect("sqlite schema");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    let mut shape = Shape {
        columns: BTreeMap::new(),
        primary_keys: BTreeMap::new(),
        indexes: BTreeMap::new(),
        uniques: BTreeSet::new(),
        foreign_keys: BTreeSet::new(),
    };
    for table in tables {
        let columns: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .expect("columns");
        let mut pk: Vec<(i64, String)> = Vec::new();
        let mut described = Vec::new();
        for (name, declared, not_null, pk_position) in columns {
            let kind = match declared.as_str() {
                "TEXT" => "text",
                "BLOB" => "bytes",
                "INTEGER" => "integer",
                other => panic!("unexpected SQLite type {other}"),
            };
            if pk_position > 0 {
                pk.push((pk_position, name.clone()));
            }
            described.push((name, kind.to_owned(), not_null == 1 || pk_position > 0));
        }
        pk.sort();
        shape
            .primary_keys
            .insert(table.clone(), pk.into_iter().map(|(_, c)| c).collect());
        shape.columns.insert(table.clone(), described);

        let unique_indexes: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_index_list(?1) WHERE origin = 'u'")
                .bind(&table)
                .fetch_all(&mut conn)
                .await
                .expect("unique indexes");
        for index in unique_indexes {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(&mut conn)
                    .await
                    .expect("index columns");
            shape.uniques.insert((table.clone(), columns));
        }
        let keys: Vec<(String, String, String)> =
            sqlx::query_as("SELECT \"from\", \"table\", \"to\" FROM pragma_foreign_key_list(?1)")
                .bind(&table)
                .fetch_all(&mut conn)
                .await
                .expect("foreign keys");
        for (column, target, target_column) in keys {
            shape
                .foreign_keys
                .insert((table.clone(), column, target, target_column));
        }
    }
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .expect("indexes");
    for (index, table) in indexes {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                .bind(&index)
                .fetch_all(&mut conn)
                .await
                .expect("index columns");
        shape.indexes.insert(index, (table, columns));
    }
    shape
}

async fn postgres_shape(h: &PgHarness) -> Shape {
    let mut conn = h.raw().await;
    let schema = h.schema();
    let columns: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable = 'NO' \
         FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name <> '_sqlx_migrations' \
         ORDER BY table_name, ordinal_position",
    )
    .bind(schema)
    .fetch_all(&mut conn)
    .await
    .expect("columns");
    let mut shape = Shape {
        columns: BTreeMap::new(),
        primary_keys: BTreeMap::new(),
        indexes: BTreeMap::new(),
        uniques: BTreeSet::new(),
        foreign_keys: BTreeSet::new(),
    };
    for (table, column, data_type, not_null) in columns {
        let kind = match (table.as_str(), column.as_str(), data_type.as_str()) {
            (_, _, "text") => "text",
            (_, _, "bytea") => "bytes",
            (_, _, "bigint") => "integer",
            ("shares", "editable", "boolean") | ("devices", "ip_lock", "boolean") => "integer",
            // SQLite keeps this list as JSON text.
            ("record_transactions", "remove_files", "ARRAY") => "text",
            other => panic!("unexpected PostgreSQL column {other:?}"),
        };
        shape
            .columns
            .entry(table)
            .or_default()
            .push((column, kind.to_owned(), not_null));
    }
    let indexes: Vec<(String, String, bool, bool, Vec<String>)> = sqlx::query_as(
        "SELECT i.relname::text, t.relname::text, x.indisprimary, x.indisunique, \
                array_agg(a.attname::text ORDER BY k.ord) \
         FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
         WHERE n.nspname = $1 AND t.relname <> '_sqlx_migrations' \
         GROUP BY i.relname, t.relname, x.indisprimary, x.indisunique",
    )
    .bind(schema)
    .fetch_all(&mut conn)
    .await
    .expect("indexes");
    for (index, table, primary, unique, columns) in indexes {
        if primary {
            shape.primary_keys.insert(table, columns);
        } else if unique {
            shape.uniques.insert((table, columns));
        } else {
            shape.indexes.insert(index, (table, columns));
        }
    }
    let keys: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT t.relname::text, a.attname::text, rt.relname::text, ra.attname::text \
         FROM pg_constraint c \
         JOIN pg_class t ON t.oid = c.conrelid \
         JOIN pg_class rt ON rt.oid = c.confrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
         JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1] \
         WHERE c.contype = 'f' AND n.nspname = $1 AND cardinality(c.conkey) = 1",
    )
    .bind(schema)
    .fetch_all(&mut conn)
    .await
    .expect("foreign keys");
    shape.foreign_keys = keys.into_iter().collect();
    // Tables without a primary key would be missing from the map: the SQLite side lists them
    // with an empty key.
    for table in shape.columns.keys() {
        shape.primary_keys.entry(table.clone()).or_default();
    }
    // The request counters are PostgreSQL's alone (SQLite counts in the process): checked by
    // `rate_counters_table` instead.
    shape.columns.remove("rate_counters");
    shape.primary_keys.remove("rate_counters");
    shape
        .indexes
        .retain(|_, (table, _)| table.as_str() != "rate_counters");
    shape
}

#[tokio::test]
async fn schema_matches_the_sqlite_schema() {
    let h = harness!();
    let _store = h.connect(PoolOptions::default()).await.expect("connect");
    assert_eq!(
        applied_migrations(&h).await,
        [(1, true), (2, true), (3, true)]
    );
    let expected = sqlite_shape().await;
    assert_eq!(expected.columns.len(), 13, "{:?}", expected.columns.keys());
    assert_eq!(postgres_shape(&h).await, expected);
}

#[tokio::test]
async fn rate_counters_table() {
    let h = harness!();
    let _store = h.connect(PoolOptions::default()).await.expect("connect");
    let mut raw = h.raw().await;
    let columns: Vec<(String, String, bool, Option<String>)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable = 'NO', collation_name::text \
         FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'rate_counters' ORDER BY ordinal_position",
    )
    .bind(h.schema())
    .fetch_all(&mut raw)
    .await
    .expect("columns");
    assert_eq!(
        columns,
        [
            (
                "key".to_owned(),
                "text".to_owned(),
                true,
                Some("C".to_owned())
            ),
            ("window_start".to_owned(), "bigint".to_owned(), true, None),
            ("count".to_owned(), "bigint".to_owned(), true, None),
        ]
    );
    let indexes: Vec<(String, bool, String)> = sqlx::query_as(
        "SELECT i.relname::text, x.indisprimary, pg_get_indexdef(x.indexrelid) \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND t.relname = 'rate_counters' \
         ORDER BY x.indisprimary DESC, 1",
    )
    .bind(h.schema())
    .fetch_all(&mut raw)
    .await
    .expect("indexes");
    assert_eq!(indexes.len(), 2, "{indexes:?}");
    assert!(
        indexes[0].1 && indexes[0].2.ends_with("(key, window_start)"),
        "{indexes:?}"
    );
    assert_eq!(indexes[1].0, "rate_counters_by_window");
    assert!(indexes[1].2.ends_with("(window_start)"), "{indexes:?}");
}

#[tokio::test]
async fn schema_types_and_collations() {
    let h = harness!();
    let _store = h.connect(PoolOptions::default()).await.expect("connect");
    let mut raw = h.raw().await;
    // Every text column (and the text array) compares byte-wise, whatever the database default.
    let not_c: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name <> '_sqlx_migrations' \
         AND data_type IN ('text', 'ARRAY') AND collation_name IS DISTINCT FROM 'C'",
    )
    .bind(h.schema())
    .fetch_all(&mut raw)
    .await
    .expect("collations");
    assert!(not_c.is_empty(), "{not_c:?}");
    let types: BTreeSet<String> = sqlx::query_scalar(
        "SELECT DISTINCT data_type::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name <> '_sqlx_migrations'",
    )
    .bind(h.schema())
    .fetch_all(&mut raw)
    .await
    .expect("types")
    .into_iter()
    .collect();
    assert_eq!(
        types,
        ["ARRAY", "bigint", "boolean", "bytea", "text"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
    // Commits are durable: nothing turned synchronous commit off for these sessions.
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut raw)
        .await
        .expect("synchronous_commit");
    assert_eq!(sync, "on");
}

#[tokio::test]
async fn text_is_compared_and_ordered_bytewise() {
    let h = harness!();
    let s = h.open_store().await;
    vault(&*s).await;
    let uids = ["b", "B", "a-2", "a2", "_x", "Z", "\u{e9}", "a"];
    for uid in uids {
        s.create_record(&suite::record(uid, "o1", "sf1", "sf1", 5), "owner:o1")
            .await
            .expect("record");
    }
    let mut expected: Vec<&str> = uids.to_vec();
    expected.sort();
    let listed: Vec<String> = s
        .records_of_owner("o1")
        .await
        .expect("records")
        .into_iter()
        .map(|r| r.uid)
        .collect();
    assert_eq!(listed, expected);
    // Exact, case-sensitive equality.
    assert_eq!(s.record("B").await.expect("B").uid, "B");
    assert!(matches!(s.record("A").await, Err(StoreError::NotFound)));
    // Lower-casing is the store's, so it covers more than ASCII, like SQLite's.
    s.create_owner(&suite::owner("o2", "\u{c9}MILE@Example.com"), false)
        .await
        .expect("owner");
    assert_eq!(
        s.owner_by_email("\u{e9}mile@example.COM")
            .await
            .expect("by email")
            .email,
        "\u{e9}mile@example.com"
    );
    s.create_app(&suite::app("app", "o1", 1))
        .await
        .expect("app");
    for target in uids {
        s.put_share(&ShareRow {
            app_uid: "app".to_owned(),
            target_uid: target.to_owned(),
            kind: ShareKind::Record,
            key: b"k".to_vec(),
            editable: false,
        })
        .await
        .expect("share");
    }
    let targets: Vec<String> = s
        .shares_of_app("app")
        .await
        .expect("shares")
        .into_iter()
        .map(|sh| sh.target_uid)
        .collect();
    assert_eq!(targets, expected);
}

// ---- migrations ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connects_on_a_fresh_schema_migrate_once() {
    let h = harness!();
    let connects: Vec<_> = (0..6)
        .map(|_| {
            let url = h.url();
            tokio::spawn(async move { PostgresStore::connect(&url, PoolOptions::default()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for connect in connects {
        stores.push(connect.await.expect("join").expect("connect"));
    }
    assert_eq!(
        applied_migrations(&h).await,
        [(1, true), (2, true), (3, true)]
    );
    let mut server = h.server().await;
    assert_eq!(advisory_locks(&mut server, h.schema()).await, 0);
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
    let again = h.open_store().await;
    assert_eq!(
        again.setting("k").await.expect("setting"),
        Some(b"first".to_vec())
    );
    assert_eq!(
        applied_migrations(&h).await,
        [(1, true), (2, true), (3, true)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_wait_for_the_advisory_lock() {
    let h = harness!();
    let mut holder = h.server().await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_ID)
        .execute(&mut holder)
        .await
        .expect("take the migration lock");
    let url = h.url();
    let connecting =
        tokio::spawn(async move { PostgresStore::connect(&url, PoolOptions::default()).await });
    let mut server = h.server().await;
    let app = h.schema().to_owned();
    wait_until(
        "the migration connection to wait for the lock",
        async || advisory_waiters(&mut server, &app).await == 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!connecting.is_finished(), "connect went ahead of the lock");
    let migrations: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("{}._sqlx_migrations", h.schema()))
        .fetch_one(&mut server)
        .await
        .expect("to_regclass");
    assert_eq!(migrations, None, "nothing may be migrated under the lock");

    let unlocked: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_ID)
        .fetch_one(&mut holder)
        .await
        .expect("unlock");
    assert!(unlocked);
    let store = connecting.await.expect("join").expect("connect");
    assert_eq!(
        applied_migrations(&h).await,
        [(1, true), (2, true), (3, true)]
    );
    // Done migrating, the store's connections hold no advisory lock.
    assert_eq!(advisory_locks(&mut server, &app).await, 0);
    assert_eq!(store.setting_init("k", b"v").await.expect("init"), b"v");
}

#[tokio::test]
async fn a_failed_migration_reports_backend_and_releases_the_lock() {
    let h = harness!();
    sqlx::query("CREATE TABLE settings (unrelated INTEGER)")
        .execute(&mut h.raw().await)
        .await
        .expect("clashing table");
    match h.connect(PoolOptions::default()).await {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.starts_with("migrate: "), "{msg}");
            assert!(msg.contains("settings"), "{msg}");
        }
        other => panic!("expected Backend, got {other:?}"),
    }
    // The migration connection is gone, and its lock with it.
    let mut server = h.server().await;
    let app = h.schema().to_owned();
    wait_until("the migration connection to close", async || {
        h.backends(&mut server, &app).await.0 == 0
    })
    .await;
    assert_eq!(advisory_locks(&mut server, &app).await, 0);
    // Migration 1 ran in a transaction that was rolled back: nothing is recorded as applied.
    assert!(applied_migrations(&h).await.is_empty());

    sqlx::query("DROP TABLE settings")
        .execute(&mut h.raw().await)
        .await
        .expect("drop clashing table");
    let s = h.connect(PoolOptions::default()).await.expect("connect");
    assert_eq!(
        applied_migrations(&h).await,
        [(1, true), (2, true), (3, true)]
    );
    assert_eq!(s.setting_init("k", b"v").await.expect("init"), b"v");
}

#[tokio::test]
async fn a_version_1_schema_is_upgraded_on_connect() {
    let h = harness!();
    let v1 = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/0001_initial.sql"),
        v1.path().join("0001_initial.sql"),
    )
    .expect("copy migration 1");
    {
        let mut raw = h.raw().await;
        Migrator::new(v1.path())
            .await
            .expect("v1 migrator")
            .run(&mut raw)
            .await
            .expect("v1 schema");
        for statement in [
            "INSERT INTO owners VALUES ('o1', 'o1@example.com', '{}', 'h', \
             decode('01', 'hex'), decode('02', 'hex'), decode('03', 'hex'), 1)",
            "INSERT INTO folders VALUES ('sf1', 'o1', NULL, 'sf1', \
             decode('04', 'hex'), decode('05', 'hex'), 2)",
            "INSERT INTO records VALUES ('r1', 'o1', 'sf1', 'sf1', decode('06', 'hex'), NULL, \
             decode('07', 'hex'), 1, 3, 3)",
            "INSERT INTO record_history VALUES ('r1', 1, decode('07', 'hex'), 'owner:o1', 3)",
        ] {
            sqlx::query(statement)
                .execute(&mut raw)
                .await
                .expect("v1 row");
        }
        assert_eq!(applied_migrations(&h).await, [(1, true)]);
    }
    let s = h.open_store().await;
    assert_eq!(
        applied_migrations(&h).await,
        [(1, true), (2, true), (3, true)]
    );
    assert_eq!(s.record("r1").await.expect("old record").data, [7]);
    let change = s
        .update_record(&transactional(suite::update("r1", 1, "new", 50), 100))
        .await
        .expect("transactional update");
    assert_eq!(change.revision, 2);
    assert_eq!(
        s.expire_transactions(100).await.expect("expire"),
        [("r1".to_owned(), "o1".to_owned())]
    );
    assert_eq!(s.record("r1").await.expect("rolled back").data, [7]);
}

// ---- owner lock ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_creation_waits_for_the_owner_lock() {
    let h = harness!();
    let s = h.open_store().await;
    let mut holder = h.server().await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(OWNER_LOCK_ID)
        .execute(&mut holder)
        .await
        .expect("take the owner lock");
    let creating = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            s.create_owner(&suite::owner("o1", "o1@example.com"), true)
                .await
        })
    };
    let mut server = h.server().await;
    let app = h.schema().to_owned();
    wait_until("create_owner to wait for the owner lock", async || {
        advisory_waiters(&mut server, &app).await == 1
    })
    .await;
    assert!(!creating.is_finished());
    assert_eq!(s.owner_count().await.expect("reads go on"), 0);
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(OWNER_LOCK_ID)
        .execute(&mut holder)
        .await
        .expect("unlock");
    creating.await.expect("join").expect("first owner");
    assert_eq!(s.owner_count().await.expect("count"), 1);
    // The transaction-scoped lock went with the commit.
    assert_eq!(advisory_locks(&mut server, &app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_owner_race_across_instances() {
    let h = harness!();
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(
            h.connect(PoolOptions {
                max_connections: 3,
                ..PoolOptions::default()
            })
            .await
            .expect("connect"),
        ));
    }
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let s = Arc::clone(&stores[i % stores.len()]);
            tokio::spawn(async move {
                s.create_owner(
                    &suite::owner(&format!("o{i}"), &format!("user{i}@example.com")),
                    true,
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(()) => won += 1,
            Err(StoreError::Precondition(_)) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(won, 1);
    for s in &stores {
        assert_eq!(s.owner_count().await.expect("count"), 1);
    }
}

// ---- connection pool -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pool_keeps_to_max_connections_and_times_out() {
    let h = harness!();
    let app = h.schema().to_owned();
    let s = Arc::new(
        h.connect(PoolOptions {
            max_connections: 2,
            min_connections: 0,
            acquire_timeout: Duration::from_millis(500),
        })
        .await
        .expect("connect"),
    );
    vault(&*s).await;
    s.create_record(&suite::record("r1", "o1", "sf1", "sf1", 10), "owner:o1")
        .await
        .expect("record");
    let mut server = h.server().await;
    // The migration connection may take a moment to disappear.
    wait_until("the store to use at most two connections", async || {
        h.backends(&mut server, &app).await.0 <= 2
    })
    .await;

    // A burst of work never takes more than two connections.
    let burst: Vec<_> = (0..24)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.setting_init(&format!("k{i}"), b"v").await })
        })
        .collect();
    let mut most = 0;
    while !burst.iter().all(|t| t.is_finished()) {
        most = most.max(h.backends(&mut server, &app).await.0);
    }
    for task in burst {
        task.await.expect("join").expect("setting_init");
    }
    assert!(most <= 2, "{most} connections");

    // Occupy both connections: two updates wait for a row lock held elsewhere.
    let mut blocker = h.raw().await;
    let mut held = blocker.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM records WHERE uid = 'r1' FOR UPDATE")
        .execute(&mut *held)
        .await
        .expect("lock r1");
    let updates: Vec<_> = (0..2)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.update_record(&suite::update("r1", 1, &format!("u{i}"), 100 + i))
                    .await
            })
        })
        .collect();
    wait_until(
        "both pool connections to wait for the row lock",
        async || h.backends(&mut server, &app).await == (2, 2),
    )
    .await;
    // A third caller finds no free connection and gives up after the acquire timeout.
    let started = Instant::now();
    match s.setting("k0").await {
        Err(StoreError::Backend(msg)) => assert!(msg.starts_with("setting: "), "{msg}"),
        other => panic!("expected Backend, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(h.backends(&mut server, &app).await, (2, 2));

    held.rollback().await.expect("release r1");
    let mut outcomes = Vec::new();
    for update in updates {
        outcomes.push(update.await.expect("join"));
    }
    let revisions: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|c| c.revision))
        .collect();
    assert_eq!(revisions, [2], "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(StoreError::Precondition("stale")))),
        "{outcomes:?}"
    );
    assert_eq!(
        s.setting("k0").await.expect("working again"),
        Some(b"v".to_vec())
    );
}

#[tokio::test]
async fn min_connections_are_kept_open() {
    let h = harness!();
    let app = h.schema().to_owned();
    let _s = h
        .connect(PoolOptions {
            max_connections: 4,
            min_connections: 3,
            ..PoolOptions::default()
        })
        .await
        .expect("connect");
    let mut server = h.server().await;
    wait_until("three idle connections", async || {
        h.backends(&mut server, &app).await.0 == 3
    })
    .await;
}

#[tokio::test]
async fn unusable_urls_servers_and_options_are_backend_errors() {
    let expect_backend = |result: StoreResult<PostgresStore>, prefix: &str| match result {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.starts_with(prefix), "{msg}");
            assert!(!msg.contains("s3cret"), "password in {msg}");
        }
        Err(other) => panic!("expected Backend, got {other:?}"),
        Ok(_) => panic!("expected Backend, got a store"),
    };
    let quick = PoolOptions {
        acquire_timeout: Duration::from_secs(2),
        ..PoolOptions::default()
    };
    expect_backend(
        PostgresStore::connect("not a url", quick).await,
        "connect: invalid database URL",
    );
    expect_backend(
        PostgresStore::connect("postgres://coffer:s3cret@127.0.0.1:1/test", quick).await,
        "connect: ",
    );
    expect_backend(
        PostgresStore::connect(
            &harness::server_url(),
            PoolOptions {
                max_connections: 0,
                ..quick
            },
        )
        .await,
        "connect: max_connections",
    );
    if harness::server().await.is_none() {
        return;
    }
    let url = harness::server_url();
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url.as_str(), String::new()),
    };
    let (server, _) = base.rsplit_once('/').expect("database in the URL");
    let missing = format!("{server}/coffer_no_such_database{query}");
    expect_backend(PostgresStore::connect(&missing, quick).await, "connect: ");
}

#[tokio::test]
async fn a_closed_store_reports_backend_errors() {
    let h = harness!();
    let s = h.open_store().await;
    s.close().await;
    match s.setting("k").await {
        Err(StoreError::Backend(msg)) => assert!(msg.starts_with("setting: "), "{msg}"),
        other => panic!("expected Backend, got {other:?}"),
    }
    match s.update_record(&suite::update("r1", 1, "x", 1)).await {
        Err(StoreError::Backend(msg)) => assert!(msg.starts_with("update_record: "), "{msg}"),
        other => panic!("expected Backend, got {other:?}"),
    }
}

// ---- error mapping and rows ----------------------------------------------------------------

#[tokio::test]
async fn missing_referenced_rows_are_preconditions() {
    let h = harness!();
    let s = h.open_store().await;
    let precondition = |r: StoreResult<()>| {
        matches!(
            r,
            Err(StoreError::Precondition("referenced object does not exist"))
        )
    };
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
    // A malformed folder (shared but with another root) is refused by the schema, and the
    // message names the table but quotes none of the row's (secret) values.
    match s
        .create_folder(&suite::folder("bad", "o1", None, "sf1", 1))
        .await
    {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.starts_with("create_folder: "), "{msg}");
            assert!(msg.contains("folders"), "{msg}");
            assert!(
                !msg.contains("fkey:bad") && !msg.contains("fdata:bad"),
                "{msg}"
            );
        }
        other => panic!("expected Backend, got {other:?}"),
    }
    assert!(matches!(s.folder("bad").await, Err(StoreError::NotFound)));
}

#[tokio::test]
async fn every_record_data_change_appends_history() {
    let h = harness!();
    let s = h.open_store().await;
    vault(&*s).await;
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
    assert!(matches!(
        s.complete_upload(&stale.token_hash, 30).await,
        Err(StoreError::Precondition("record is out of date"))
    ));
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
async fn transaction_file_lists_are_text_arrays() {
    let h = harness!();
    let s = h.open_store().await;
    vault(&*s).await;
    s.create_record(&suite::record("r1", "o1", "sf1", "sf1", 10), "owner:o1")
        .await
        .expect("record");
    s.update_record(&RecordUpdate {
        remove_files: strings(&["f\"1", "g,1", "{h}"]),
        transaction: Some(TransactionStart {
            kind: "rotation".to_owned(),
            expires_at: 100,
        }),
        ..suite::update("r1", 1, "new", 50)
    })
    .await
    .expect("transactional update");
    let stored: (String, Vec<String>, i64) = sqlx::query_as(
        "SELECT kind, remove_files, previous_revision FROM record_transactions \
         WHERE record_uid = 'r1'",
    )
    .fetch_one(&mut h.raw().await)
    .await
    .expect("row");
    assert_eq!(
        stored,
        ("rotation".to_owned(), strings(&["f\"1", "g,1", "{h}"]), 1)
    );
    assert_eq!(
        s.transaction("r1").await.expect("open").remove_files,
        ["f\"1", "g,1", "{h}"]
    );
}

/// Row counts of every table that hangs off records and folders.
async fn counts(conn: &mut PgConnection) -> Vec<(&'static str, i64)> {
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
async fn deletions_leave_no_orphan_rows() {
    let h = harness!();
    let s = h.open_store().await;
    vault(&*s).await;
    for f in [
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
        s.update_record(&transactional(suite::update(uid, 2, uid, 30), 100))
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
            records: strings(&["r3"]),
            folders: Vec::new(),
            files: strings(&["f-r3", "p-r3"]),
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
    // Children come before their parents in the folder list, as with SQLite.
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
}

// ---- races across tables -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn folder_tree_deletion_races_with_inserts() {
    let h = harness!();
    let s = h.open_store().await;
    s.create_owner(&suite::owner("o1", "o1@example.com"), false)
        .await
        .expect("owner");
    for round in 0..8 {
        let sf = format!("sf{round}");
        let a = format!("a{round}");
        s.create_folder(&suite::shared(&sf, "o1", 1))
            .await
            .expect("root");
        s.create_folder(&suite::folder(&a, "o1", Some(sf.as_str()), &sf, 2))
            .await
            .expect("sub-folder");
        s.create_record(
            &suite::record(&format!("r{round}"), "o1", &sf, &a, 3),
            "owner:o1",
        )
        .await
        .expect("record");
        let deleting = {
            let s = Arc::clone(&s);
            let sf = sf.clone();
            tokio::spawn(async move { s.delete_folder_tree(&sf, true).await })
        };
        // (kind, uid, outcome) of each insert into the tree.
        let inserts: Vec<_> = [
            ("folder", format!("{a}-c"), Some(a.clone())),
            ("folder", format!("b{round}"), Some(sf.clone())),
            ("record", format!("r{round}-x"), Some(a.clone())),
            ("record", format!("r{round}-y"), Some(sf.clone())),
        ]
        .into_iter()
        .map(|(kind, uid, parent)| {
            let s = Arc::clone(&s);
            let sf = sf.clone();
            tokio::spawn(async move {
                let parent = parent.unwrap_or_default();
                let outcome = if kind == "folder" {
                    s.create_folder(&suite::folder(&uid, "o1", Some(parent.as_str()), &sf, 4))
                        .await
                } else {
                    s.create_record(&suite::record(&uid, "o1", &sf, &parent, 4), "owner:o1")
                        .await
                };
                (kind, uid, outcome)
            })
        })
        .collect();
        let removed = deleting.await.expect("join").expect("delete tree");
        for insert in inserts {
            let (kind, uid, outcome) = insert.await.expect("join");
            match outcome {
                // It got in before the deletion, so the deletion took it along.
                Ok(()) if kind == "folder" => assert!(removed.folders.contains(&uid), "{uid}"),
                Ok(()) => assert!(removed.records.contains(&uid), "{uid}"),
                Err(StoreError::Precondition("referenced object does not exist")) => {}
                Err(e) => panic!("{kind} {uid}: unexpected error {e:?}"),
            }
        }
        assert!(
            s.folders_in_roots(std::slice::from_ref(&sf))
                .await
                .expect("folders")
                .is_empty()
        );
        assert!(
            s.records_in_roots(std::slice::from_ref(&sf))
                .await
                .expect("records")
                .is_empty()
        );
    }
    assert!(s.folders_of_owner("o1").await.expect("none").is_empty());
    assert!(s.records_of_owner("o1").await.expect("none").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn record_operations_race_without_deadlocks() {
    let h = harness!();
    let s = h.open_store().await;
    vault(&*s).await;
    for round in 0..6 {
        let r = format!("r{round}");
        s.create_record(&suite::record(&r, "o1", "sf1", "sf1", 10), "owner:o1")
            .await
            .expect("record");
        let attached = suite::upload(&format!("{r}-t0"), &format!("{r}-f0"), &r, None);
        s.create_upload(&attached).await.expect("upload");
        s.complete_upload(&attached.token_hash, 20)
            .await
            .expect("complete");
        let checked = suite::upload(&format!("{r}-t1"), &format!("{r}-f1"), &r, Some(2));
        let unchecked = suite::upload(&format!("{r}-t2"), &format!("{r}-f2"), &r, None);
        s.create_upload(&checked).await.expect("upload");
        s.create_upload(&unchecked).await.expect("upload");
        s.update_record(&transactional(
            RecordUpdate {
                remove_files: vec![attached.file.uid.clone()],
                ..suite::update(&r, 2, "tx", 30)
            },
            1_000,
        ))
        .await
        .expect("open transaction");

        let mut tasks = Vec::new();
        for op in 0..9 {
            let s = Arc::clone(&s);
            let r = r.clone();
            let checked = checked.token_hash.clone();
            let unchecked = unchecked.token_hash.clone();
            tasks.push(tokio::spawn(async move {
                let outcome: StoreResult<()> = match op {
                    0 => s.complete_upload(&checked, 40).await.map(|_| ()),
                    1 => s.complete_upload(&unchecked, 40).await.map(|_| ()),
                    2 => s
                        .update_record(&suite::update(&r, 3, "u", 40))
                        .await
                        .map(|_| ()),
                    3 => s.finalize_transaction(&r, 40).await.map(|_| ()),
                    4 => s.rollback_transaction(&r, "owner:o1", 40).await.map(|_| ()),
                    5 => s.expire_transactions(2_000).await.map(|_| ()),
                    6 => s.delete_record(&r).await.map(|_| ()),
                    7 => {
                        s.create_upload(&suite::upload(
                            &format!("{r}-t3"),
                            &format!("{r}-f3"),
                            &r,
                            None,
                        ))
                        .await
                    }
                    _ => s.record_history(&r).await.map(|_| ()),
                };
                (op, outcome)
            }));
        }
        for task in tasks {
            let (op, outcome) = task.await.expect("join");
            no_backend(&format!("round {round} op {op}"), &outcome);
        }
        assert!(matches!(s.transaction(&r).await, Err(StoreError::NotFound)));
        match s.record(&r).await {
            Ok(record) => {
                let revisions: Vec<i64> = s
                    .record_history(&r)
                    .await
                    .expect("history")
                    .into_iter()
                    .map(|h| h.revision)
                    .collect();
                let expected: Vec<i64> = (1..=record.revision).rev().collect();
                assert_eq!(revisions, expected, "round {round}");
            }
            Err(StoreError::NotFound) => {
                assert!(s.record_history(&r).await.expect("history").is_empty());
                assert!(
                    s.files_of_records(std::slice::from_ref(&r))
                        .await
                        .expect("files")
                        .is_empty()
                );
                for token in [&checked.token_hash, &unchecked.token_hash] {
                    assert!(matches!(
                        s.upload(token, 0).await,
                        Err(StoreError::NotFound)
                    ));
                }
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_uid_stays_taken_while_its_upload_completes() {
    let h = harness!();
    let s = h.open_store().await;
    vault(&*s).await;
    s.create_record(&suite::record("r1", "o1", "sf1", "sf1", 10), "owner:o1")
        .await
        .expect("record");
    for round in 0..16 {
        let file = format!("f{round}");
        let first = suite::upload(&format!("t{round}"), &file, "r1", None);
        s.create_upload(&first).await.expect("upload");
        let completing = {
            let s = Arc::clone(&s);
            let token = first.token_hash.clone();
            tokio::spawn(async move { s.complete_upload(&token, 50).await })
        };
        let second = suite::upload(&format!("t{round}-again"), &file, "r1", None);
        let reusing = {
            let s = Arc::clone(&s);
            let second = second.clone();
            tokio::spawn(async move { s.create_upload(&second).await })
        };
        completing.await.expect("join").expect("complete");
        // Before, during or after the completion: the UID belongs to the first upload's file.
        assert!(
            matches!(reusing.await.expect("join"), Err(StoreError::Conflict)),
            "round {round}"
        );
        assert_eq!(s.file(&file).await.expect("file"), first.file);
        assert!(matches!(
            s.upload(&second.token_hash, 0).await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_sweeps_from_several_instances_roll_back_once() {
    let h = harness!();
    let first = h.open_store().await;
    vault(&*first).await;
    let uids: Vec<String> = (0..12).map(|i| format!("x{i}")).collect();
    for uid in &uids {
        first
            .create_record(&suite::record(uid, "o1", "sf1", "sf1", 10), "owner:o1")
            .await
            .expect("record");
        first
            .update_record(&transactional(suite::update(uid, 1, uid, 20), 1_000))
            .await
            .expect("open transaction");
    }
    let mut instances = vec![first];
    for _ in 0..3 {
        instances.push(h.open_store().await);
    }
    let sweeps: Vec<_> = (0..12)
        .map(|i| {
            let s = Arc::clone(&instances[i % instances.len()]);
            tokio::spawn(async move { s.expire_transactions(5_000).await })
        })
        .collect();
    let mut expired = Vec::new();
    for sweep in sweeps {
        expired.extend(sweep.await.expect("join").expect("sweep"));
    }
    expired.sort();
    let mut expected: Vec<(String, String)> = uids
        .iter()
        .map(|uid| (uid.clone(), "o1".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(expired, expected);
    for uid in &uids {
        let record = instances[0].record(uid).await.expect("record");
        assert_eq!(record.revision, 3);
        assert_eq!(record.data, suite::record(uid, "o1", "sf1", "sf1", 10).data);
    }
    // Nothing left for a later sweep, and the changes are committed for every instance.
    assert!(
        instances[3]
            .expire_transactions(9_000)
            .await
            .expect("sweep")
            .is_empty()
    );
    let unchanged = RecordChange {
        revision: 4,
        removed_files: Vec::new(),
    };
    assert_eq!(
        instances[2]
            .update_record(&suite::update("x0", 3, "after", 9_000))
            .await
            .expect("update"),
        unchanged
    );
}

// ---- rate counters -------------------------------------------------------------------------

/// Rows of `rate_counters`, by key and window.
async fn counter_rows(h: &PgHarness) -> Vec<(String, i64, i64)> {
    sqlx::query_as("SELECT key, window_start, count FROM rate_counters ORDER BY key, window_start")
        .fetch_all(&mut h.raw().await)
        .await
        .expect("rate_counters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_counts_are_global_across_instances() {
    let h = harness!();
    let mut instances = Vec::new();
    for _ in 0..4 {
        instances.push(h.open_store().await);
    }
    // 4 instances × 25 concurrent callers on one key, with another key counted in between.
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let s = Arc::clone(&instances[i % instances.len()]);
            tokio::spawn(async move {
                if i % 10 == 0 {
                    s.count_request("login:x@example.com", 60_000)
                        .await
                        .expect("other key");
                }
                s.count_request("ksm:shared:get_secret", 10_000).await
            })
        })
        .collect();
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.expect("join").expect("count"));
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=100).collect::<Vec<u64>>());
    assert_eq!(
        counter_rows(&h).await,
        [
            ("ksm:shared:get_secret".to_owned(), 10_000, 100),
            ("login:x@example.com".to_owned(), 60_000, 10),
        ]
    );
    // A fifth instance started later sees the same counts.
    let late = h.open_store().await;
    assert_eq!(
        late.count_request("ksm:shared:get_secret", 10_000)
            .await
            .expect("late"),
        101
    );
}

#[tokio::test]
async fn old_counter_windows_are_deleted() {
    let h = harness!();
    let s = h.open_store().await;
    // A key starting a new window deletes its own older windows, and only those.
    for (key, window) in [("a", 1_000), ("a", 1_000), ("b", 1_000), ("a", 2_000)] {
        s.count_request(key, window).await.expect("count");
    }
    assert_eq!(
        counter_rows(&h).await,
        [("a".to_owned(), 2_000, 1), ("b".to_owned(), 1_000, 1)]
    );
    // The periodic sweep (every RATE_SWEEP_EVERY-th call of an instance) deletes the windows of
    // keys idle for longer than the retention, and keeps everything more recent.
    let now = coffer_store_postgres::RATE_RETENTION_MS + 10_000;
    let fresh = h.open_store().await;
    fresh.count_request("idle", 9_999).await.expect("idle");
    fresh.count_request("recent", 10_000).await.expect("recent");
    let calls = coffer_store_postgres::RATE_SWEEP_EVERY - 2;
    for i in 0..calls - 1 {
        fresh.count_request("busy", now).await.expect("busy");
        assert_eq!(counter_rows(&h).await.len(), 5, "swept early, call {i}");
    }
    fresh
        .count_request("busy", now)
        .await
        .expect("sweeping call");
    assert_eq!(
        counter_rows(&h).await,
        [
            ("busy".to_owned(), now, i64::try_from(calls).expect("calls")),
            ("recent".to_owned(), 10_000, 1),
        ]
    );
    // Counting goes on normally on the connection that swept.
    assert_eq!(
        fresh.count_request("recent", 10_000).await.expect("recent"),
        2
    );
}

// ---- whole-vault copy ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sqlite_vault_moves_to_postgres() {
    let h = harness!();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = coffer_store_sqlite::SqliteStore::open(&dir.path().join("coffer.db"))
        .await
        .expect("sqlite");
    suite::rich_vault(&sqlite).await;
    let snapshot = sqlite.export().await.expect("export sqlite");
    let pg = h.open_store().await;
    pg.import(&snapshot).await.expect("import into postgres");
    assert_eq!(pg.export().await.expect("export postgres"), snapshot);

    // The identity continues after the largest imported id, in PostgreSQL as in SQLite.
    let last = snapshot.audit.iter().map(|e| e.id).max().expect("events");
    let after = suite::event(900, Some("o1"), "owner:o1", "after.migration", None);
    pg.append_audit(&after).await.expect("append to postgres");
    sqlite.append_audit(&after).await.expect("append to sqlite");
    let newest = |s: Arc<dyn Store>| async move {
        s.list_audit(&coffer_store::AuditFilter {
            limit: 1,
            ..coffer_store::AuditFilter::default()
        })
        .await
        .expect("newest")
        .remove(0)
    };
    let in_pg = newest(pg.clone()).await;
    assert!(in_pg.id > last, "{} <= {last}", in_pg.id);
    assert_eq!(in_pg, newest(Arc::new(sqlite.clone())).await);

    // And back: PostgreSQL → a new SQLite file gives the same snapshot again.
    let back = coffer_store_sqlite::SqliteStore::open(&dir.path().join("back.db"))
        .await
        .expect("sqlite again");
    let round = pg.export().await.expect("export postgres again");
    back.import(&round).await.expect("import into sqlite");
    assert_eq!(back.export().await.expect("export back"), round);
    sqlite.close().await;
    back.close().await;
}
