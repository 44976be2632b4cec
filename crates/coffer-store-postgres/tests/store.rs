//! The PostgreSQL store against the backend-independent suite of the SQLite crate
//! (`coffer-store-sqlite/tests/suite`), each test in a fresh schema, plus tests of what is
//! specific to PostgreSQL (`tests/postgres`): migrations under concurrency and the advisory
//! lock, the connection pool, the schema's equivalence with SQLite's, lock-order races.
//!
//! Needs a PostgreSQL server: `COFFER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Without one the tests fail, unless
//! `COFFER_SKIP_POSTGRES=1`. `COFFER_TEST_KEEP_DB=1` keeps the test schemas for inspection.

#[path = "../../coffer-store-sqlite/tests/suite/mod.rs"]
mod suite;

mod harness;
mod postgres;

use harness::PgHarness;

/// Runs each named suite test against a fresh schema, on a multi-threaded runtime so that the
/// race tests really race. Every function of the suite must be listed (an unlisted one is dead
/// code, which the lint check refuses).
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

suite_tests!(
    settings,
    settings_init_race,
    owners,
    first_owner_race,
    sessions,
    folders,
    records,
    upload_lifecycle,
    upload_stale_revision,
    upload_completion_race,
    upload_uid_race,
    upload_expiry,
    apps_and_shares,
    devices,
    bind_device_race,
    audit,
    audit_limits,
    survives_reopen,
    record_updates,
    record_update_stale,
    transaction_finalize,
    transaction_rollback,
    transaction_expiry,
    transaction_expiry_race,
    record_update_race,
    transaction_end_race,
    record_history_order,
    record_deletion,
    folder_updates,
    folder_emptiness,
    folder_tree_deletion,
    count_request,
    export_import_round_trip,
    import_refuses_a_non_empty_store,
);
