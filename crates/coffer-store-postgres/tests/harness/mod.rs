//! A fresh PostgreSQL schema per test.
//!
//! The server comes from `COFFER_TEST_POSTGRES_URL` (default [`DEFAULT_URL`]). Each harness
//! creates its own schema `coffer_test_<random>` and hands out URLs whose connections use it as
//! `search_path` (and carry the schema name as `application_name`, so tests can find their own
//! connections in `pg_stat_activity`). The schema is dropped when the harness is dropped, also
//! after a failed test, unless `COFFER_TEST_KEEP_DB=1`.
//!
//! An unreachable server fails the test with an explanation, unless `COFFER_SKIP_POSTGRES=1`,
//! which turns that case into a skip.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coffer_store::{Store, StoreResult};
use coffer_store_postgres::{PoolOptions, PostgresStore};
use sqlx::{Connection, PgConnection};

use crate::suite::Harness;

/// The test server when `COFFER_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The URL of the test server.
pub fn server_url() -> String {
    std::env::var("COFFER_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| value == "1")
}

/// `url` without the password, for messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// `base` with extra query parameters.
fn with_params(base: &str, params: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{params}")
}

/// A schema name no other test (in this or another process) uses.
fn fresh_schema_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    format!("coffer_test_{:016x}", hasher.finish())
}

/// Connects to the test server, failing the test with an explanation if it is unreachable;
/// `None` when it is unreachable and `COFFER_SKIP_POSTGRES=1`.
pub async fn server() -> Option<PgConnection> {
    let url = server_url();
    match PgConnection::connect(&url).await {
        Ok(conn) => Some(conn),
        Err(e) if env_flag("COFFER_SKIP_POSTGRES") => {
            eprintln!(
                "skipping: PostgreSQL at {} is unreachable ({e}) and COFFER_SKIP_POSTGRES=1",
                redacted(&url)
            );
            None
        }
        Err(e) => panic!(
            "PostgreSQL at {} is unreachable: {e}\n\
             The PostgreSQL store tests need a server. Start one, point \
             COFFER_TEST_POSTGRES_URL at it, or set COFFER_SKIP_POSTGRES=1 to skip these tests.",
            redacted(&url)
        ),
    }
}

/// One fresh schema on the test server.
pub struct PgHarness {
    server: String,
    schema: String,
}

impl PgHarness {
    /// Creates the schema; `None` when the tests are skipped (see the module docs).
    pub async fn new() -> Option<PgHarness> {
        let mut conn = server().await?;
        let schema = fresh_schema_name();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("create test schema");
        conn.close().await.expect("close");
        Some(PgHarness {
            server: server_url(),
            schema,
        })
    }

    /// The schema's name (also the `application_name` of the store connections).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A URL of the schema whose connections are named `app`.
    pub fn url_as(&self, app: &str) -> String {
        with_params(
            &self.server,
            &format!(
                "options=-c%20search_path%3D{}&application_name={app}",
                self.schema
            ),
        )
    }

    /// The URL the stores of this harness use.
    pub fn url(&self) -> String {
        self.url_as(&self.schema)
    }

    /// Opens a store on the schema.
    pub async fn connect(&self, options: PoolOptions) -> StoreResult<PostgresStore> {
        PostgresStore::connect(&self.url(), options).await
    }

    /// Opens a store on the schema with the default pool options.
    pub async fn open_store(&self) -> Arc<PostgresStore> {
        Arc::new(
            self.connect(PoolOptions::default())
                .await
                .expect("open store"),
        )
    }

    /// A plain connection to the schema (named `<schema>_raw`), to look at tables directly.
    pub async fn raw(&self) -> PgConnection {
        PgConnection::connect(&self.url_as(&format!("{}_raw", self.schema)))
            .await
            .expect("raw connection")
    }

    /// A plain connection with no schema selected, for server-wide views.
    pub async fn server(&self) -> PgConnection {
        PgConnection::connect(&self.server)
            .await
            .expect("server connection")
    }

    /// Server backends named `app`: (all of them, those waiting for a lock).
    pub async fn backends(&self, server: &mut PgConnection, app: &str) -> (i64, i64) {
        sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') \
             FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(app)
        .fetch_one(&mut *server)
        .await
        .expect("pg_stat_activity")
    }
}

impl Harness for PgHarness {
    async fn open(&self) -> Arc<dyn Store> {
        self.open_store().await
    }

    async fn another(&self) -> Self {
        PgHarness::new()
            .await
            .expect("the server this harness uses is reachable")
    }
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        if env_flag("COFFER_TEST_KEEP_DB") {
            eprintln!("keeping schema {} (COFFER_TEST_KEEP_DB=1)", self.schema);
            return;
        }
        // Drop cannot await, and may run on a runtime thread or while unwinding: do the work on
        // a thread of its own with its own runtime.
        let server = self.server.clone();
        let schema = self.schema.clone();
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_schema(&server, &schema))
                .map_err(|e| e.to_string())
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {}: {e}", self.schema),
            Err(_) => eprintln!("dropping test schema {} panicked", self.schema),
        }
    }
}

async fn drop_schema(server: &str, schema: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(server).await?;
    // A failed test may have left connections of its own (named after the schema) inside a
    // transaction holding locks: end them, and do not wait forever for anything else.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name IN ($1, $1 || '_raw') AND pid <> pg_backend_pid()",
    )
    .bind(schema)
    .execute(&mut conn)
    .await?;
    sqlx::query("SET lock_timeout = '10s'")
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

/// Polls `check` until it holds, failing the test after 20 seconds.
pub async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
