//! Benchmark: reading everything an application sees (what `get_secret` answers from) for an
//! app with `RECORDS` records, through the one-snapshot read path (`Store::app_contents` on
//! rusqlite) and through the general statements on sqlx (`shares_of_app`, `records_in_roots`,
//! `records_by_uids`, `files_of_records`), in one run on one database file. The ratio is the
//! figure. An audit event is written before every read, as the server does, so that each read
//! starts after a change (SQLite then drops the reading connection's page cache).
//!
//! ```text
//! cargo run --release -p coffer-store-sqlite --example bench_app_contents -- [RECORDS] [ITERATIONS]
//! ```

use std::time::Instant;

use coffer_store::{
    AppRow, FileRow, FolderRow, NewAuditEvent, OwnerRow, RecordRow, ShareKind, ShareRow, Snapshot,
    Store,
};
use coffer_store_sqlite::SqliteStore;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let records: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let iterations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("bench.db")).await?;

    // The vault is written in one import: one owner, one shared folder, `records` records (a
    // tenth of them with a file), one app sharing the folder.
    let mut vault = Snapshot {
        owners: vec![OwnerRow {
            uid: "owner".into(),
            email: "bench@example.com".into(),
            kdf: "{}".into(),
            auth_hash: "x".into(),
            encrypted_data_key: vec![1; 60],
            public_key: vec![4; 65],
            encrypted_private_key: vec![2; 80],
            created_at: 1,
        }],
        folders: vec![FolderRow {
            uid: "root".into(),
            owner_uid: "owner".into(),
            parent_uid: None,
            root_uid: "root".into(),
            key: vec![3; 60],
            data: vec![5; 60],
            created_at: 1,
        }],
        apps: vec![AppRow {
            uid: "app".into(),
            owner_uid: "owner".into(),
            key: vec![10; 60],
            data: vec![11; 60],
            created_at: 1,
        }],
        shares: vec![ShareRow {
            app_uid: "app".into(),
            target_uid: "root".into(),
            kind: ShareKind::Folder,
            key: vec![12; 60],
            editable: false,
        }],
        ..Default::default()
    };
    for i in 0..records {
        let uid = format!("record-{i:06}");
        if i % 10 == 0 {
            vault.files.push(FileRow {
                uid: format!("file-{i:06}"),
                record_uid: uid.clone(),
                key: vec![8; 60],
                owner_key: None,
                data: vec![9; 120],
                size: 1024,
                created_at: i as i64,
            });
        }
        vault.records.push(RecordRow {
            uid,
            owner_uid: "owner".into(),
            root_folder_uid: "root".into(),
            folder_uid: "root".into(),
            key: vec![6; 60],
            owner_key: None,
            // About the size of an encrypted login record.
            data: vec![7; 700],
            revision: 1,
            created_at: i as i64,
            updated_at: i as i64,
        });
    }
    store.import(&vault).await?;

    let composed = async |store: &SqliteStore| -> Result<usize, Box<dyn std::error::Error>> {
        let shares = store.shares_of_app("app").await?;
        let roots: Vec<String> = shares.iter().map(|s| s.target_uid.clone()).collect();
        let rows = store.records_in_roots(&roots).await?;
        let direct = store.records_by_uids(&[]).await?;
        let uids: Vec<String> = rows.iter().map(|r| r.uid.clone()).collect();
        let files = store.files_of_records(&uids).await?;
        Ok(rows.len() + direct.len() + files.len())
    };
    let expected = composed(&store).await?;
    let mut snapshot_ms = Vec::with_capacity(iterations);
    let mut composed_ms = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let event = NewAuditEvent {
            at: i as i64,
            owner_uid: Some("owner".into()),
            actor: "client:bench".into(),
            action: "ksm.get_secret".into(),
            target: Some("app".into()),
            ip: None,
            detail: None,
        };
        store.append_audit(&event).await?;
        let started = Instant::now();
        let contents = store.app_contents("app").await?;
        snapshot_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let seen = contents.folder_records.len() + contents.files.len();
        assert_eq!(seen, expected, "both paths read the same rows");

        store.append_audit(&event).await?;
        let started = Instant::now();
        assert_eq!(composed(&store).await?, expected);
        composed_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let (snapshot, composed) = (median(snapshot_ms), median(composed_ms));
    println!("app contents, {records} records, {iterations} reads each, one SQLite file");
    println!("  one snapshot (rusqlite)      median {snapshot:7.3} ms");
    println!("  four statements (sqlx)       median {composed:7.3} ms");
    println!("  ratio: {:.2}x", composed / snapshot);
    store.close().await;
    Ok(())
}
