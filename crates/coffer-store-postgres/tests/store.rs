//! The PostgreSQL store against the backend-independent suite of the SQLite crate
//! (`coffer-store-sqlite/tests/suite`), each test in a fresh schema, plus tests of what is
//! specific to PostgreSQL (`tests/postgres`): migrations under concurrency and the advisory
//! lock, the connection pool, the schema's equivalence with SQLite's, lock-order races.
//!
//! Needs a PostgreSQL server: `COFFER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Without one the tests fail, unless
//! `COFFER_SKIP_POSTGRES=1`. `COFFER_TEST_KEEP_DB=1` keeps the test schemas for inspection.

#[path = "../../coffer-store-sqlite/tests/suite/mod.rs"]
#[macro_use]
mod suite;

mod harness;
mod postgres;

use harness::PgHarness;

/// Runs each named suite test against a fresh schema, on a multi-threaded runtime so that the
/// race tests really race; `all_suite_tests!` (in the suite) names every test.
macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(h) = PgHarness::new().await else {
                    return;
                };
                suite::$name(&h).await;
            }
        )*
    };
}

all_suite_tests!(suite_tests);
