//! Backend-independent tests of the [`Store`] contract.
//!
//! Every test takes a [`Harness`] that opens the database under test; a backend's test file
//! implements the harness and instantiates each function here as a `#[tokio::test]` (see
//! `tests/store.rs`). Nothing here knows which backend it talks to, so the PostgreSQL backend can
//! include this module (`#[path = …] mod suite;`) and run the same bodies.
//!
//! Values are distinct per field and per row, so a swapped column or a row mixed up with
//! another fails an equality check.

/// Calls `$runner!(test, …)` with every test of the suite, so each backend instantiates the
/// same list (a test missing here is dead code, which the lint check refuses).
macro_rules! all_suite_tests {
    ($runner:ident) => {
        $runner!(
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
            upload_refused_while_transaction_open,
            records_and_folders_share_one_uid_space,
            record_folder_uid_race,
            apps_and_shares,
            app_contents,
            app_contents_is_one_snapshot,
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
            folder_tree_deletion,
            folder_deletion_without_force,
            count_request,
            export_import_round_trip,
            import_refuses_a_non_empty_store,
        );
    };
}

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use coffer_store::{
    AppContents, AppRow, AuditFilter, AuditRow, BindOutcome, DeviceRow, FileRow, FolderRow,
    HistoryRow, NewAuditEvent, OwnerRow, RecordChange, RecordRow, RecordUpdate, Removed,
    SessionRow, ShareKind, ShareRow, Snapshot, Store, StoreError, TransactionRow, TransactionStart,
    UploadRow,
};

/// Opens the backend under test.
pub trait Harness: Sized {
    /// Opens the database under test. Every call on one harness opens the same database: a
    /// second call after dropping the first store shows what the first one made durable.
    fn open(&self) -> impl Future<Output = Arc<dyn Store>>;
    /// Another harness of the same backend, with a new, empty database of its own (to copy a
    /// vault from one store into another).
    fn another(&self) -> impl Future<Output = Self>;
}

/// Asserts that `$result` is an `Err` matching `$pattern`, showing the actual value otherwise.
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected Err({}), got {:?}", stringify!($pattern), other),
        }
    };
}

// ---- fixtures ------------------------------------------------------------------------------

fn bytes(tag: &str, uid: &str) -> Vec<u8> {
    format!("{tag}:{uid}").into_bytes()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

pub fn owner(uid: &str, email: &str) -> OwnerRow {
    OwnerRow {
        uid: uid.to_owned(),
        email: email.to_owned(),
        kdf: format!(r#"{{"alg":"argon2id","salt":"{uid}"}}"#),
        auth_hash: format!("$argon2id$v=19$m=65536,t=3,p=1${uid}"),
        encrypted_data_key: bytes("edk", uid),
        public_key: bytes("pub", uid),
        encrypted_private_key: bytes("epk", uid),
        created_at: 1_000,
    }
}

/// A shared folder (`parent` none) or a sub-folder of `parent` in the tree of `root`.
pub fn folder(uid: &str, owner: &str, parent: Option<&str>, root: &str, at: i64) -> FolderRow {
    FolderRow {
        uid: uid.to_owned(),
        owner_uid: owner.to_owned(),
        parent_uid: parent.map(str::to_owned),
        root_uid: root.to_owned(),
        key: bytes("fkey", uid),
        data: bytes("fdata", uid),
        created_at: at,
    }
}

pub fn shared(uid: &str, owner: &str, at: i64) -> FolderRow {
    folder(uid, owner, None, uid, at)
}

pub fn record(uid: &str, owner: &str, root: &str, folder: &str, at: i64) -> RecordRow {
    RecordRow {
        uid: uid.to_owned(),
        owner_uid: owner.to_owned(),
        root_folder_uid: root.to_owned(),
        folder_uid: folder.to_owned(),
        key: bytes("rkey", uid),
        owner_key: None,
        data: bytes("rdata", uid),
        revision: 1,
        created_at: at,
        updated_at: at,
    }
}

pub fn upload(token: &str, file_uid: &str, record_uid: &str, revision: Option<i64>) -> UploadRow {
    UploadRow {
        token_hash: bytes("token", token),
        file: FileRow {
            uid: file_uid.to_owned(),
            record_uid: record_uid.to_owned(),
            key: bytes("filekey", file_uid),
            owner_key: Some(bytes("fileownerkey", file_uid)),
            data: bytes("filedata", file_uid),
            size: 4096,
            created_at: 5_000,
        },
        record_data: bytes("rdata-with", file_uid),
        record_revision: revision,
        actor: format!("client:{token}"),
        expires_at: 10_000,
    }
}

pub fn app(uid: &str, owner: &str, at: i64) -> AppRow {
    AppRow {
        uid: uid.to_owned(),
        owner_uid: owner.to_owned(),
        key: bytes("akey", uid),
        data: bytes("adata", uid),
        created_at: at,
    }
}

pub fn device(client_id: &str, app: &str, at: i64) -> DeviceRow {
    DeviceRow {
        client_id: client_id.to_owned(),
        app_uid: app.to_owned(),
        name: bytes("name", client_id),
        encrypted_app_key: bytes("eak", client_id),
        public_key: None,
        first_access_expires_at: Some(at + 60_000),
        ip_lock: true,
        bound_at: None,
        bound_ip: None,
        created_at: at,
        last_access_at: None,
    }
}

pub fn event(
    at: i64,
    owner: Option<&str>,
    actor: &str,
    action: &str,
    target: Option<&str>,
) -> NewAuditEvent {
    NewAuditEvent {
        at,
        owner_uid: owner.map(str::to_owned),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        ip: Some(format!("10.0.0.{}", at % 250)),
        detail: Some(format!("detail {at}")),
    }
}

/// Owner `o1` with shared folder `sf1` holding record `r1` (revision 1).
async fn vault_with_record(store: &dyn Store) -> RecordRow {
    store
        .create_owner(&owner("o1", "o1@example.com"), false)
        .await
        .expect("create owner");
    store
        .create_folder(&shared("sf1", "o1", 100))
        .await
        .expect("create folder");
    let r1 = record("r1", "o1", "sf1", "sf1", 200);
    store
        .create_record(&r1, "owner:o1")
        .await
        .expect("create record");
    r1
}

fn folder_uids(rows: &[FolderRow]) -> Vec<&str> {
    rows.iter().map(|f| f.uid.as_str()).collect()
}

fn record_uids(rows: &[RecordRow]) -> Vec<&str> {
    rows.iter().map(|r| r.uid.as_str()).collect()
}

fn audit_events(rows: &[AuditRow]) -> Vec<&NewAuditEvent> {
    rows.iter().map(|r| &r.event).collect()
}

// ---- settings ------------------------------------------------------------------------------

pub async fn settings<H: Harness>(h: &H) {
    let s = h.open().await;
    assert_eq!(s.setting("k").await.expect("setting"), None);
    assert_eq!(s.setting_init("k", b"one").await.expect("init"), b"one");
    assert_eq!(
        s.setting_init("k", b"two").await.expect("init again"),
        b"one"
    );
    assert_eq!(
        s.setting("k").await.expect("setting"),
        Some(b"one".to_vec())
    );
    assert_eq!(s.setting("K").await.expect("keys are case-sensitive"), None);
    assert_eq!(
        s.setting_init("empty", b"").await.expect("empty value"),
        b""
    );
    assert_eq!(s.setting("empty").await.expect("setting"), Some(Vec::new()));

    s.setting_delete("k").await.expect("delete");
    assert_eq!(s.setting("k").await.expect("setting"), None);
    s.setting_delete("k")
        .await
        .expect("deleting an absent setting is fine");
    assert_eq!(
        s.setting_init("k", b"three")
            .await
            .expect("init after delete"),
        b"three"
    );
    assert_eq!(
        s.setting("empty").await.expect("other key untouched"),
        Some(Vec::new())
    );
}

pub async fn settings_init_race<H: Harness>(h: &H) {
    let s = h.open().await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.setting_init("server-key", format!("v{i}").as_bytes())
                    .await
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.expect("join").expect("setting_init"));
    }
    let stored = s
        .setting("server-key")
        .await
        .expect("setting")
        .expect("set");
    assert!(
        seen.iter().all(|v| *v == stored),
        "callers disagree: {seen:?}"
    );
    let candidates: Vec<Vec<u8>> = (0..32).map(|i| format!("v{i}").into_bytes()).collect();
    assert!(candidates.contains(&stored));
}

// ---- owners and sessions -------------------------------------------------------------------

pub async fn owners<H: Harness>(h: &H) {
    let s = h.open().await;
    assert_eq!(s.owner_count().await.expect("count"), 0);
    assert_err!(s.owner("o1").await, StoreError::NotFound);
    assert_err!(
        s.owner_by_email("a@example.com").await,
        StoreError::NotFound
    );

    s.create_owner(&owner("o1", "Alice@Example.COM"), true)
        .await
        .expect("first owner");
    assert_eq!(s.owner_count().await.expect("count"), 1);
    assert_err!(
        s.create_owner(&owner("o2", "bob@example.com"), true).await,
        StoreError::Precondition(_)
    );
    assert_eq!(s.owner_count().await.expect("count"), 1);
    assert_err!(s.owner("o2").await, StoreError::NotFound);

    // Same email in another case, and same UID with another email: both taken.
    assert_err!(
        s.create_owner(&owner("o3", "ALICE@example.com"), false)
            .await,
        StoreError::Conflict
    );
    assert_err!(
        s.create_owner(&owner("o1", "other@example.com"), false)
            .await,
        StoreError::Conflict
    );
    s.create_owner(&owner("o2", "bob@example.com"), false)
        .await
        .expect("second owner");
    assert_eq!(s.owner_count().await.expect("count"), 2);

    // Stored (and returned) lower-cased.
    let expected = owner("o1", "alice@example.com");
    assert_eq!(s.owner("o1").await.expect("by uid"), expected);
    assert_eq!(
        s.owner_by_email("aLiCe@eXample.com")
            .await
            .expect("by email"),
        expected
    );
    assert_eq!(
        s.owner_by_email("alice@example.com")
            .await
            .expect("by email"),
        expected
    );
    assert_eq!(
        s.owner_by_email("bob@example.com").await.expect("bob"),
        owner("o2", "bob@example.com")
    );
    assert_err!(
        s.owner_by_email("carol@example.com").await,
        StoreError::NotFound
    );
}

pub async fn first_owner_race<H: Harness>(h: &H) {
    let s = h.open().await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.create_owner(
                    &owner(&format!("o{i}"), &format!("user{i}@example.com")),
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
    assert_eq!(s.owner_count().await.expect("count"), 1);
}

pub async fn sessions<H: Harness>(h: &H) {
    let s = h.open().await;
    s.create_owner(&owner("o1", "o1@example.com"), false)
        .await
        .expect("owner");
    let session = |token: &str, expires_at| SessionRow {
        token_hash: bytes("session", token),
        owner_uid: "o1".to_owned(),
        expires_at,
    };
    s.create_session(&session("a", 1_000)).await.expect("a");
    s.create_session(&session("b", 5_000)).await.expect("b");
    s.create_session(&session("c", 9_000)).await.expect("c");
    assert_err!(
        s.create_session(&session("a", 7_000)).await,
        StoreError::Conflict
    );

    let a = bytes("session", "a");
    let b = bytes("session", "b");
    let c = bytes("session", "c");
    assert_eq!(s.session_owner(&a, 999).await.expect("valid"), "o1");
    assert_err!(s.session_owner(&a, 1_000).await, StoreError::NotFound);
    assert_err!(s.session_owner(&a, 2_000).await, StoreError::NotFound);
    assert_err!(
        s.session_owner(&bytes("session", "x"), 0).await,
        StoreError::NotFound
    );

    // Deleting c at time 2000 also removes a (expired then) but not b.
    s.delete_session(&c, 2_000).await.expect("delete");
    assert_err!(s.session_owner(&c, 0).await, StoreError::NotFound);
    assert_err!(s.session_owner(&a, 0).await, StoreError::NotFound);
    assert_eq!(s.session_owner(&b, 0).await.expect("b survives"), "o1");
    s.delete_session(&bytes("session", "x"), 0)
        .await
        .expect("absent is fine");
    assert_eq!(s.session_owner(&b, 4_999).await.expect("b survives"), "o1");
}

// ---- folders -------------------------------------------------------------------------------

pub async fn folders<H: Harness>(h: &H) {
    let s = h.open().await;
    s.create_owner(&owner("o1", "o1@example.com"), false)
        .await
        .expect("o1");
    s.create_owner(&owner("o2", "o2@example.com"), false)
        .await
        .expect("o2");

    // The tree of o1, with creation times that disagree with insertion order:
    //   sf-b (100): b-0 (120), b-1 (150) [b-1-x (50)], b-2 (150) [b-2-y (300), b-2-x (400)]
    //   sf-a (200): a-1 (210) [a-1-1 (220) [a-1-1-1 (10)]]
    // and o2's sf-o2 (0) with o2-child (1).
    let inserts = [
        shared("sf-a", "o1", 200),
        shared("sf-b", "o1", 100),
        folder("a-1", "o1", Some("sf-a"), "sf-a", 210),
        folder("b-2", "o1", Some("sf-b"), "sf-b", 150),
        shared("sf-o2", "o2", 0),
        folder("b-2-x", "o1", Some("b-2"), "sf-b", 400),
        folder("b-1", "o1", Some("sf-b"), "sf-b", 150),
        folder("a-1-1", "o1", Some("a-1"), "sf-a", 220),
        folder("b-2-y", "o1", Some("b-2"), "sf-b", 300),
        folder("b-0", "o1", Some("sf-b"), "sf-b", 120),
        folder("b-1-x", "o1", Some("b-1"), "sf-b", 50),
        folder("a-1-1-1", "o1", Some("a-1-1"), "sf-a", 10),
        folder("o2-child", "o2", Some("sf-o2"), "sf-o2", 1),
    ];
    for f in &inserts {
        s.create_folder(f).await.expect("create folder");
    }
    assert_err!(
        s.create_folder(&shared("b-1", "o1", 999)).await,
        StoreError::Conflict
    );
    assert_eq!(
        s.folder("b-1").await.expect("b-1"),
        folder("b-1", "o1", Some("sf-b"), "sf-b", 150)
    );
    assert_eq!(
        s.folder("sf-a").await.expect("sf-a"),
        shared("sf-a", "o1", 200)
    );
    assert_err!(s.folder("nope").await, StoreError::NotFound);

    let tree_b = ["sf-b", "b-0", "b-1", "b-1-x", "b-2", "b-2-y", "b-2-x"];
    let tree_a = ["sf-a", "a-1", "a-1-1", "a-1-1-1"];
    let all_o1: Vec<&str> = tree_b.iter().chain(tree_a.iter()).copied().collect();

    let listed = s.folders_of_owner("o1").await.expect("folders_of_owner");
    assert_eq!(folder_uids(&listed), all_o1);
    // Full rows come back, not just UIDs.
    let by_uid: BTreeMap<&str, &FolderRow> = inserts.iter().map(|f| (f.uid.as_str(), f)).collect();
    for f in &listed {
        assert_eq!(Some(&f), by_uid.get(f.uid.as_str()));
    }
    assert_eq!(
        folder_uids(&s.folders_of_owner("o2").await.expect("o2")),
        ["sf-o2", "o2-child"]
    );
    assert!(s.folders_of_owner("o3").await.expect("nobody").is_empty());

    assert_eq!(
        folder_uids(&s.folders_in_roots(&strings(&["sf-a"])).await.expect("a")),
        tree_a
    );
    assert_eq!(
        folder_uids(
            &s.folders_in_roots(&strings(&["sf-a", "sf-b"]))
                .await
                .expect("a, b")
        ),
        all_o1
    );
    assert_eq!(
        folder_uids(
            &s.folders_in_roots(&strings(&["sf-b", "sf-a"]))
                .await
                .expect("b, a")
        ),
        all_o1
    );
    let mut with_o2 = vec!["sf-o2", "o2-child"];
    with_o2.extend(&all_o1);
    assert_eq!(
        folder_uids(
            &s.folders_in_roots(&strings(&["sf-a", "sf-o2", "sf-b", "unknown"]))
                .await
                .expect("three roots")
        ),
        with_o2
    );
    // Only tops of trees select; a sub-folder UID is not a root.
    assert!(
        s.folders_in_roots(&strings(&["b-1"]))
            .await
            .expect("sub")
            .is_empty()
    );
    assert!(s.folders_in_roots(&[]).await.expect("empty").is_empty());
}

// ---- records -------------------------------------------------------------------------------

pub async fn records<H: Harness>(h: &H) {
    let s = h.open().await;
    s.create_owner(&owner("o1", "o1@example.com"), false)
        .await
        .expect("o1");
    s.create_owner(&owner("o2", "o2@example.com"), false)
        .await
        .expect("o2");
    for f in [
        shared("sf-a", "o1", 1),
        folder("a-1", "o1", Some("sf-a"), "sf-a", 2),
        shared("sf-b", "o1", 3),
        shared("sf-o2", "o2", 4),
    ] {
        s.create_folder(&f).await.expect("folder");
    }
    let mut r1 = record("r1", "o1", "sf-a", "a-1", 30);
    r1.owner_key = Some(bytes("ownerkey", "r1"));
    r1.revision = 7;
    r1.updated_at = 31;
    let r2 = record("r2", "o1", "sf-b", "sf-b", 10);
    let r3 = record("r3", "o1", "sf-a", "sf-a", 20);
    let r4 = record("r4", "o2", "sf-o2", "sf-o2", 5);
    let r5 = record("r5", "o1", "sf-b", "sf-b", 20);
    for r in [&r5, &r1, &r4, &r3, &r2] {
        s.create_record(r, "owner:test")
            .await
            .expect("create record");
    }
    assert_err!(
        s.create_record(&record("r1", "o1", "sf-b", "sf-b", 99), "owner:o1")
            .await,
        StoreError::Conflict
    );
    assert_eq!(
        s.record("r1").await.expect("r1"),
        r1,
        "the conflict changed nothing"
    );
    assert_eq!(s.record("r2").await.expect("r2"), r2);
    assert_err!(s.record("nope").await, StoreError::NotFound);

    assert_eq!(
        s.records_of_owner("o1").await.expect("o1"),
        vec![r2.clone(), r3.clone(), r5.clone(), r1.clone()]
    );
    assert_eq!(
        s.records_of_owner("o2").await.expect("o2"),
        vec![r4.clone()]
    );
    assert!(s.records_of_owner("o3").await.expect("nobody").is_empty());

    assert_eq!(
        s.records_in_roots(&strings(&["sf-a"])).await.expect("a"),
        vec![r3.clone(), r1.clone()]
    );
    assert_eq!(
        record_uids(
            &s.records_in_roots(&strings(&["sf-a", "sf-o2"]))
                .await
                .expect("a, o2")
        ),
        ["r4", "r3", "r1"]
    );
    assert_eq!(
        record_uids(
            &s.records_in_roots(&strings(&["sf-b", "sf-a", "x"]))
                .await
                .expect("b, a")
        ),
        ["r2", "r3", "r5", "r1"]
    );
    assert!(
        s.records_in_roots(&strings(&["a-1"]))
            .await
            .expect("sub-folder")
            .is_empty()
    );
    assert!(s.records_in_roots(&[]).await.expect("empty").is_empty());

    let mut found = s
        .records_by_uids(&strings(&["r4", "nope", "r1", "r1"]))
        .await
        .expect("by uids");
    found.sort_by(|a, b| a.uid.cmp(&b.uid));
    assert_eq!(found, vec![r1.clone(), r4.clone()]);
    assert!(
        s.records_by_uids(&strings(&["nope"]))
            .await
            .expect("none")
            .is_empty()
    );
    assert!(s.records_by_uids(&[]).await.expect("empty").is_empty());
}

// ---- files and uploads ---------------------------------------------------------------------

pub async fn upload_lifecycle<H: Harness>(h: &H) {
    let s = h.open().await;
    let r1 = vault_with_record(&*s).await;
    let up = upload("t1", "f1", "r1", Some(1));
    s.create_upload(&up).await.expect("create upload");

    assert_eq!(s.upload(&up.token_hash, 9_999).await.expect("pending"), up);
    assert_err!(
        s.upload(&bytes("token", "other"), 0).await,
        StoreError::NotFound
    );
    // A pending file is invisible.
    assert_err!(s.file("f1").await, StoreError::NotFound);
    assert!(
        s.files_of_records(&strings(&["r1"]))
            .await
            .expect("files")
            .is_empty()
    );
    // Its UID and its token are taken.
    assert_err!(
        s.create_upload(&upload("t2", "f1", "r1", None)).await,
        StoreError::Conflict
    );
    assert_err!(
        s.create_upload(&upload("t1", "f9", "r1", None)).await,
        StoreError::Conflict
    );
    assert_err!(
        s.upload(&bytes("token", "t2"), 0).await,
        StoreError::NotFound
    );

    assert_eq!(
        s.complete_upload(&up.token_hash, 7_000)
            .await
            .expect("complete"),
        2
    );
    let after = s.record("r1").await.expect("record");
    assert_eq!(
        after,
        RecordRow {
            data: up.record_data.clone(),
            revision: 2,
            updated_at: 7_000,
            ..r1.clone()
        }
    );
    assert_eq!(s.file("f1").await.expect("file"), up.file);
    assert_eq!(
        s.files_of_records(&strings(&["r1", "rx"]))
            .await
            .expect("files"),
        vec![up.file.clone()]
    );
    assert_err!(s.upload(&up.token_hash, 0).await, StoreError::NotFound);
    assert_err!(
        s.complete_upload(&up.token_hash, 7_001).await,
        StoreError::NotFound
    );
    assert_eq!(
        s.record("r1").await.expect("record").revision,
        2,
        "no second increment"
    );
    // A complete file's UID stays taken.
    assert_err!(
        s.create_upload(&upload("t3", "f1", "r1", None)).await,
        StoreError::Conflict
    );

    // A second file, made earlier but completed later, lists first; an unchecked revision
    // always applies.
    let mut up2 = upload("t4", "f2", "r1", None);
    up2.file.created_at = 4_000;
    up2.file.owner_key = None;
    s.create_upload(&up2).await.expect("second upload");
    assert_eq!(
        s.complete_upload(&up2.token_hash, 8_000)
            .await
            .expect("complete"),
        3
    );
    assert_eq!(
        s.files_of_records(&strings(&["r1"])).await.expect("files"),
        vec![up2.file.clone(), up.file.clone()]
    );
    assert_eq!(s.record("r1").await.expect("record").data, up2.record_data);
    assert!(s.files_of_records(&[]).await.expect("empty").is_empty());
    assert_err!(s.file("nope").await, StoreError::NotFound);
}

pub async fn upload_stale_revision<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    let a = upload("ta", "fa", "r1", Some(1));
    let b = upload("tb", "fb", "r1", Some(1));
    s.create_upload(&a).await.expect("a");
    s.create_upload(&b).await.expect("b");
    assert_eq!(
        s.complete_upload(&a.token_hash, 6_000)
            .await
            .expect("a wins"),
        2
    );
    let before = s.record("r1").await.expect("record");

    assert_err!(
        s.complete_upload(&b.token_hash, 6_500).await,
        StoreError::Precondition(_)
    );
    assert_eq!(
        s.record("r1").await.expect("record"),
        before,
        "record unchanged"
    );
    assert_err!(s.file("fb").await, StoreError::NotFound);
    assert_eq!(s.upload(&b.token_hash, 0).await.expect("upload kept"), b);
    assert_eq!(
        s.files_of_records(&strings(&["r1"])).await.expect("files"),
        vec![a.file.clone()]
    );

    // The caller may register a fresh upload made from the current revision.
    let c = upload("tc", "fc", "r1", Some(2));
    s.create_upload(&c).await.expect("c");
    assert_eq!(s.complete_upload(&c.token_hash, 6_600).await.expect("c"), 3);
}

/// An upload's record data does not mention a transaction's change: completing it while a
/// transaction is open on the record is refused and changes nothing.
pub async fn upload_refused_while_transaction_open<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    for (token, revision) in [("ta", Some(1)), ("tb", None)] {
        let file = format!("f-{token}");
        s.create_upload(&upload(token, &file, "r1", revision))
            .await
            .expect("announce");
    }
    s.update_record(&transactional(
        update("r1", 1, "rotated", 9_000),
        "rotation",
        60_000,
    ))
    .await
    .expect("rotation");
    let during = s.record("r1").await.expect("r1");
    for token in ["ta", "tb"] {
        let up = upload(token, &format!("f-{token}"), "r1", None);
        assert_err!(
            s.complete_upload(&up.token_hash, 9_500).await,
            StoreError::Precondition(_)
        );
        assert_err!(s.file(&up.file.uid).await, StoreError::NotFound);
    }
    assert_eq!(
        s.record("r1").await.expect("r1"),
        during,
        "record unchanged"
    );
    assert_eq!(
        s.transaction("r1")
            .await
            .expect("still open")
            .previous_revision,
        1
    );
    assert!(
        s.files_of_records(&strings(&["r1"]))
            .await
            .expect("files")
            .is_empty()
    );
}

/// A share names its target by UID alone, so a record and a folder never share a UID.
pub async fn records_and_folders_share_one_uid_space<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    s.create_folder(&folder("sub", "o1", Some("sf1"), "sf1", 300))
        .await
        .expect("sub");
    assert_err!(
        s.create_folder(&folder("r1", "o1", Some("sf1"), "sf1", 400))
            .await,
        StoreError::Conflict
    );
    assert_err!(
        s.create_folder(&shared("r1", "o1", 401)).await,
        StoreError::Conflict
    );
    for uid in ["sf1", "sub"] {
        assert_err!(
            s.create_record(&record(uid, "o1", "sf1", "sf1", 402), "owner:o1")
                .await,
            StoreError::Conflict
        );
    }
    assert_err!(s.folder("r1").await, StoreError::NotFound);
    assert_err!(s.record("sf1").await, StoreError::NotFound);
    assert_err!(s.record("sub").await, StoreError::NotFound);
    assert_eq!(
        folder_uids(&s.folders_of_owner("o1").await.expect("folders")),
        ["sf1", "sub"]
    );
    assert_eq!(
        record_uids(&s.records_of_owner("o1").await.expect("records")),
        ["r1"]
    );
}

/// A record and a folder created at once with one UID: exactly one of them exists after.
pub async fn record_folder_uid_race<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    for round in 0..8 {
        let uid = format!("both-{round}");
        let (a, b) = (s.clone(), s.clone());
        let (u1, u2) = (uid.clone(), uid.clone());
        let as_record = tokio::spawn(async move {
            a.create_record(&record(&u1, "o1", "sf1", "sf1", 500), "owner:o1")
                .await
        });
        let as_folder = tokio::spawn(async move {
            b.create_folder(&folder(&u2, "o1", Some("sf1"), "sf1", 500))
                .await
        });
        let outcomes = [
            as_record.await.expect("join"),
            as_folder.await.expect("join"),
        ];
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Ok(()) | Err(StoreError::Conflict))),
            "round {round}: {outcomes:?}"
        );
        let is_record = s.record(&uid).await.is_ok();
        let is_folder = s.folder(&uid).await.is_ok();
        assert!(is_record != is_folder, "round {round}");
    }
}

pub async fn upload_completion_race<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    // Ten uploads made from revision 1, completed at once: exactly one applies.
    let uploads: Vec<UploadRow> = (0..10)
        .map(|i| upload(&format!("t{i}"), &format!("f{i}"), "r1", Some(1)))
        .collect();
    for up in &uploads {
        s.create_upload(up).await.expect("create");
    }
    let tasks: Vec<_> = uploads
        .iter()
        .map(|up| {
            let s = Arc::clone(&s);
            let token = up.token_hash.clone();
            tokio::spawn(async move { s.complete_upload(&token, 6_000).await })
        })
        .collect();
    let mut revisions = Vec::new();
    for task in tasks {
        match task.await.expect("join") {
            Ok(rev) => revisions.push(rev),
            Err(StoreError::Precondition(_)) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(revisions, [2]);
    assert_eq!(s.record("r1").await.expect("record").revision, 2);
    assert_eq!(
        s.files_of_records(&strings(&["r1"]))
            .await
            .expect("files")
            .len(),
        1
    );

    // One token completed by many callers at once: one success, the rest find it gone.
    let up = upload("same", "f-same", "r1", None);
    s.create_upload(&up).await.expect("create");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = Arc::clone(&s);
            let token = up.token_hash.clone();
            tokio::spawn(async move { s.complete_upload(&token, 7_000).await })
        })
        .collect();
    let mut ok = Vec::new();
    for task in tasks {
        match task.await.expect("join") {
            Ok(rev) => ok.push(rev),
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(ok, [3]);
    assert_eq!(s.record("r1").await.expect("record").revision, 3);
}

pub async fn upload_uid_race<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.create_upload(&upload(&format!("t{i}"), "f1", "r1", None))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(()) => won += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(won, 1);
}

pub async fn upload_expiry<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    let mut early = upload("t1", "f1", "r1", None);
    early.expires_at = 1_000;
    let mut late = upload("t2", "f2", "r1", None);
    late.expires_at = 5_000;
    let mut early2 = upload("t3", "f3", "r1", None);
    early2.expires_at = 900;
    for up in [&early, &late, &early2] {
        s.create_upload(up).await.expect("create");
    }

    assert_eq!(
        s.upload(&early.token_hash, 999)
            .await
            .expect("not yet expired"),
        early
    );
    assert_err!(
        s.upload(&early.token_hash, 1_000).await,
        StoreError::NotFound
    );
    assert_err!(
        s.upload(&early.token_hash, 3_000).await,
        StoreError::NotFound
    );

    let mut expired = s.expire_uploads(1_000).await.expect("expire");
    expired.sort();
    assert_eq!(expired, ["f1", "f3"]);
    assert!(s.expire_uploads(1_000).await.expect("again").is_empty());
    assert_err!(s.upload(&early.token_hash, 0).await, StoreError::NotFound);
    assert_err!(
        s.complete_upload(&early.token_hash, 1_001).await,
        StoreError::NotFound
    );
    assert_eq!(
        s.upload(&late.token_hash, 1_000)
            .await
            .expect("late survives"),
        late
    );
    assert_eq!(
        s.record("r1").await.expect("record").revision,
        1,
        "nothing completed"
    );

    // The UID of an expired upload is free again.
    s.create_upload(&upload("t4", "f1", "r1", None))
        .await
        .expect("reuse uid");
    assert_eq!(s.expire_uploads(5_000).await.expect("expire"), ["f2"]);
}

// ---- apps and shares -----------------------------------------------------------------------

pub async fn apps_and_shares<H: Harness>(h: &H) {
    let s = h.open().await;
    s.create_owner(&owner("o1", "o1@example.com"), false)
        .await
        .expect("o1");
    s.create_owner(&owner("o2", "o2@example.com"), false)
        .await
        .expect("o2");
    let a1 = app("a1", "o1", 300);
    let a2 = app("a2", "o1", 100);
    let a3 = app("a3", "o2", 200);
    for a in [&a1, &a2, &a3] {
        s.create_app(a).await.expect("create app");
    }
    assert_err!(
        s.create_app(&app("a1", "o2", 1)).await,
        StoreError::Conflict
    );
    assert_eq!(s.app("a1").await.expect("a1"), a1);
    assert_err!(s.app("nope").await, StoreError::NotFound);
    assert_eq!(
        s.apps_of_owner("o1").await.expect("o1"),
        vec![a2.clone(), a1.clone()]
    );
    assert_eq!(s.apps_of_owner("o2").await.expect("o2"), vec![a3.clone()]);
    assert!(s.apps_of_owner("o3").await.expect("none").is_empty());

    let folder_share = ShareRow {
        app_uid: "a1".to_owned(),
        target_uid: "sf1".to_owned(),
        kind: ShareKind::Folder,
        key: bytes("skey", "sf1"),
        editable: false,
    };
    let record_share = ShareRow {
        app_uid: "a1".to_owned(),
        target_uid: "r1".to_owned(),
        kind: ShareKind::Record,
        key: bytes("skey", "r1"),
        editable: true,
    };
    s.put_share(&folder_share).await.expect("share folder");
    s.put_share(&record_share).await.expect("share record");
    s.put_share(&ShareRow {
        app_uid: "a2".to_owned(),
        ..record_share.clone()
    })
    .await
    .expect("same target, other app");
    let mut listed = s.shares_of_app("a1").await.expect("shares");
    listed.sort_by(|a, b| a.target_uid.cmp(&b.target_uid));
    assert_eq!(listed, vec![record_share.clone(), folder_share.clone()]);

    // Putting again replaces.
    let replaced = ShareRow {
        key: bytes("skey2", "sf1"),
        editable: true,
        ..folder_share.clone()
    };
    s.put_share(&replaced).await.expect("replace");
    let mut listed = s.shares_of_app("a1").await.expect("shares");
    listed.sort_by(|a, b| a.target_uid.cmp(&b.target_uid));
    assert_eq!(listed, vec![record_share.clone(), replaced.clone()]);

    s.delete_share("a1", "r1").await.expect("delete");
    assert_err!(s.delete_share("a1", "r1").await, StoreError::NotFound);
    assert_err!(s.delete_share("a3", "sf1").await, StoreError::NotFound);
    assert_eq!(s.shares_of_app("a1").await.expect("shares"), vec![replaced]);
    assert_eq!(s.shares_of_app("a2").await.expect("a2 untouched").len(), 1);
    assert!(s.shares_of_app("a3").await.expect("none").is_empty());
    assert!(s.shares_of_app("nope").await.expect("none").is_empty());
}

/// `app_contents`: exactly what the app's shares reach, each list in its order, files once.
pub async fn app_contents<H: Harness>(h: &H) {
    let s = h.open().await;
    let file = |uid: &str, record: &str, at: i64| FileRow {
        uid: uid.to_owned(),
        record_uid: record.to_owned(),
        key: bytes("filekey", uid),
        owner_key: None,
        data: bytes("filedata", uid),
        size: 10,
        created_at: at,
    };
    let share = |app: &str, target: &str, kind: ShareKind, editable: bool| ShareRow {
        app_uid: app.to_owned(),
        target_uid: target.to_owned(),
        kind,
        key: bytes("skey", target),
        editable,
    };
    // sf-a holds a sub-folder; two records share a creation time (then the UID decides).
    let ra1 = record("ra1", "o1", "sf-a", "sf-a", 50);
    let ra2 = record("ra2", "o1", "sf-a", "a-1", 10);
    let ra3 = record("ra3", "o1", "sf-a", "a-1", 50);
    let ra0 = record("ra0", "o1", "sf-a", "sf-a", 50);
    let rb1 = record("rb1", "o1", "sf-b", "sf-b", 20);
    let rc1 = record("rc1", "o1", "sf-c", "sf-c", 5);
    let rc2 = record("rc2", "o1", "sf-c", "sf-c", 6);
    let ro2 = record("ro2", "o2", "sf-o2", "sf-o2", 1);
    let files = vec![
        file("fa1-late", "ra1", 90),
        file("fa1-early", "ra1", 40),
        file("fa2", "ra2", 60),
        file("fb1", "rb1", 70),
        file("fc2", "rc2", 80),
        file("fo2", "ro2", 30),
    ];
    let shares = vec![
        share("app1", "sf-a", ShareKind::Folder, false),
        share("app1", "rc1", ShareKind::Record, true),
        share("app1", "r-gone", ShareKind::Record, false),
        share("app3", "sf-b", ShareKind::Folder, true),
        share("app3", "rb1", ShareKind::Record, false),
    ];
    s.import(&Snapshot {
        owners: vec![owner("o1", "o1@example.com"), owner("o2", "o2@example.com")],
        folders: vec![
            shared("sf-a", "o1", 1),
            folder("a-1", "o1", Some("sf-a"), "sf-a", 2),
            shared("sf-b", "o1", 3),
            shared("sf-c", "o1", 4),
            shared("sf-o2", "o2", 5),
        ],
        records: vec![
            ra1.clone(),
            ra2.clone(),
            ra3.clone(),
            ra0.clone(),
            rb1.clone(),
            rc1.clone(),
            rc2.clone(),
            ro2.clone(),
        ],
        files: files.clone(),
        apps: vec![
            app("app1", "o1", 1),
            app("app2", "o1", 2),
            app("app3", "o1", 3),
        ],
        shares: shares.clone(),
        ..Default::default()
    })
    .await
    .expect("vault");

    let one = s.app_contents("app1").await.expect("app1");
    assert_eq!(
        one,
        AppContents {
            shares: vec![shares[2].clone(), shares[1].clone(), shares[0].clone()],
            folder_records: vec![ra2.clone(), ra0.clone(), ra1.clone(), ra3.clone()],
            direct_records: vec![rc1.clone()],
            files: vec![files[1].clone(), files[2].clone(), files[0].clone()],
        },
        "app1: its folder tree and its one existing direct record, nothing of rc2 or o2"
    );
    // The same as the general statements say.
    assert_eq!(one.shares, s.shares_of_app("app1").await.expect("shares"));
    assert_eq!(
        one.folder_records,
        s.records_in_roots(&strings(&["sf-a"]))
            .await
            .expect("roots")
    );
    assert_eq!(
        one.files,
        s.files_of_records(&strings(&["ra0", "ra1", "ra2", "ra3", "rc1"]))
            .await
            .expect("files")
    );

    // A record reached twice (its folder and directly) is in both lists, its file once.
    let three = s.app_contents("app3").await.expect("app3");
    assert_eq!(three.folder_records, vec![rb1.clone()]);
    assert_eq!(three.direct_records, vec![rb1.clone()]);
    assert_eq!(three.files, vec![files[3].clone()]);

    // No shares, or no such app: nothing, not an error.
    assert_eq!(
        s.app_contents("app2").await.expect("app2"),
        AppContents::default()
    );
    assert_eq!(
        s.app_contents("nope").await.expect("nope"),
        AppContents::default()
    );

    // Changes are seen by the next read.
    s.delete_share("app1", "sf-a").await.expect("unshare");
    let after = s.app_contents("app1").await.expect("after unshare");
    assert!(after.folder_records.is_empty());
    assert_eq!(after.direct_records, vec![rc1.clone()]);
    assert!(after.files.is_empty());
}

/// `app_contents` reads at one point in time: while a writer keeps attaching a file to a
/// shared record and then removing the older one, every read shows the record with exactly the
/// files of the revision it shows. (Reading the record and its files in separate statements lets
/// a change land in between, and the record shows up with a file set it never had.)
pub async fn app_contents_is_one_snapshot<H: Harness>(h: &H) {
    const STEPS: usize = 150;
    let s = h.open().await;
    vault_with_record(&*s).await;
    s.create_app(&app("a1", "o1", 1)).await.expect("app");
    s.put_share(&share("a1", "sf1", ShareKind::Folder))
        .await
        .expect("share");
    // Revision 1: no files. Step i attaches f<i> (revision 2i+2: f<i-1> and f<i>), then removes
    // f<i-1> (revision 2i+3: f<i> alone), so a revision alone says which files the record has.
    let expected = |revision: i64| -> Vec<String> {
        let i = (revision - 2).div_euclid(2);
        match revision {
            1 => Vec::new(),
            r if r % 2 == 0 && i >= 1 => vec![format!("f{:03}", i - 1), format!("f{i:03}")],
            _ => vec![format!("f{i:03}")],
        }
    };
    let writer = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            for i in 0..STEPS {
                let attached = attach_file(&*s, &format!("t{i}"), &format!("f{i:03}"), "r1").await;
                assert_eq!(attached.uid, format!("f{i:03}"));
                let previous = if i == 0 {
                    Vec::new()
                } else {
                    vec![format!("f{:03}", i - 1)]
                };
                let change = s
                    .update_record(&RecordUpdate {
                        remove_files: previous.clone(),
                        ..update("r1", 2 * i as i64 + 2, &format!("u{i}"), 8_000)
                    })
                    .await
                    .expect("remove the older file");
                assert_eq!(change.revision, 2 * i as i64 + 3);
                assert_eq!(change.removed_files, previous);
            }
        })
    };
    let mut reads = 0;
    let mut revisions_seen = std::collections::BTreeSet::new();
    loop {
        let done = writer.is_finished();
        let contents = s.app_contents("a1").await.expect("read");
        let [r1] = contents.folder_records.as_slice() else {
            panic!("one record expected: {:?}", contents.folder_records);
        };
        let mut files: Vec<String> = contents.files.iter().map(|f| f.uid.clone()).collect();
        files.sort();
        assert_eq!(
            files,
            expected(r1.revision),
            "read {reads}: files of revision {}",
            r1.revision
        );
        revisions_seen.insert(r1.revision);
        reads += 1;
        if done {
            break;
        }
    }
    writer.await.expect("writer");
    assert!(
        revisions_seen.contains(&(2 * STEPS as i64 + 1)),
        "the last read sees the last revision: {revisions_seen:?}"
    );
    assert!(reads > 1, "reads ran while the writer wrote");
}

// ---- devices -------------------------------------------------------------------------------

pub async fn devices<H: Harness>(h: &H) {
    let s = h.open().await;
    s.create_owner(&owner("o1", "o1@example.com"), false)
        .await
        .expect("o1");
    s.create_app(&app("a1", "o1", 1)).await.expect("a1");
    s.create_app(&app("a2", "o1", 2)).await.expect("a2");
    let c1 = device("c1", "a1", 300);
    let mut c2 = device("c2", "a1", 100);
    c2.ip_lock = false;
    c2.first_access_expires_at = None;
    let c3 = device("c3", "a2", 200);
    for d in [&c1, &c2, &c3] {
        s.create_device(d).await.expect("create device");
    }
    assert_err!(
        s.create_device(&device("c1", "a2", 5)).await,
        StoreError::Conflict
    );
    assert_eq!(s.device("c1").await.expect("c1"), c1);
    assert_eq!(s.device("c2").await.expect("c2"), c2);
    assert_err!(s.device("C1").await, StoreError::NotFound);
    assert_eq!(
        s.devices_of_app("a1").await.expect("a1"),
        vec![c2.clone(), c1.clone()]
    );
    assert!(s.devices_of_app("nope").await.expect("none").is_empty());

    assert_eq!(
        s.bind_device("c1", b"key-1", "192.0.2.1", 400)
            .await
            .expect("bind"),
        BindOutcome::Bound
    );
    let bound = DeviceRow {
        public_key: Some(b"key-1".to_vec()),
        bound_at: Some(400),
        bound_ip: Some("192.0.2.1".to_owned()),
        ..c1.clone()
    };
    assert_eq!(s.device("c1").await.expect("c1"), bound);
    assert_eq!(
        s.bind_device("c1", b"key-1", "192.0.2.9", 500)
            .await
            .expect("again"),
        BindOutcome::AlreadyBoundSameKey
    );
    assert_eq!(
        s.bind_device("c1", b"key-2", "192.0.2.9", 600)
            .await
            .expect("other"),
        BindOutcome::AlreadyBoundOtherKey
    );
    assert_eq!(
        s.device("c1").await.expect("c1"),
        bound,
        "repeats change nothing"
    );
    assert_err!(
        s.bind_device("nope", b"key-1", "192.0.2.1", 1).await,
        StoreError::NotFound
    );

    s.touch_device("c1", 700).await.expect("touch");
    s.touch_device("c1", 800).await.expect("touch");
    assert_eq!(
        s.device("c1").await.expect("c1"),
        DeviceRow {
            last_access_at: Some(800),
            ..bound.clone()
        }
    );
    assert_eq!(s.device("c2").await.expect("c2"), c2, "others untouched");

    assert_err!(s.delete_device("a2", "c1").await, StoreError::NotFound);
    assert!(s.device("c1").await.is_ok(), "wrong app deletes nothing");
    s.delete_device("a1", "c1").await.expect("delete");
    assert_err!(s.device("c1").await, StoreError::NotFound);
    assert_err!(s.delete_device("a1", "c1").await, StoreError::NotFound);
    assert_eq!(s.devices_of_app("a1").await.expect("a1"), vec![c2]);
    assert_eq!(s.devices_of_app("a2").await.expect("a2"), vec![c3]);
}

pub async fn bind_device_race<H: Harness>(h: &H) {
    let s = h.open().await;
    s.create_owner(&owner("o1", "o1@example.com"), false)
        .await
        .expect("o1");
    s.create_app(&app("a1", "o1", 1)).await.expect("a1");
    s.create_device(&device("c1", "a1", 1)).await.expect("c1");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let key = format!("key-{i}").into_bytes();
                let ip = format!("192.0.2.{i}");
                (i, s.bind_device("c1", &key, &ip, 1_000 + i).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (i, outcome) = task.await.expect("join");
        match outcome.expect("bind") {
            BindOutcome::Bound => winners.push(i),
            BindOutcome::AlreadyBoundOtherKey => {}
            BindOutcome::AlreadyBoundSameKey => panic!("task {i} saw its own key"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let w = winners[0];
    let d = s.device("c1").await.expect("c1");
    assert_eq!(d.public_key, Some(format!("key-{w}").into_bytes()));
    assert_eq!(d.bound_ip, Some(format!("192.0.2.{w}")));
    assert_eq!(d.bound_at, Some(1_000 + w));
}

// ---- audit ---------------------------------------------------------------------------------

pub async fn audit<H: Harness>(h: &H) {
    let s = h.open().await;
    assert!(
        s.list_audit(&AuditFilter::default())
            .await
            .expect("empty")
            .is_empty()
    );
    let events = [
        event(100, Some("o1"), "owner:o1", "record.create", Some("r1")),
        event(200, Some("o1"), "client:c1", "record.update", Some("r1")),
        event(300, Some("o2"), "owner:o2", "folder.create", Some("f9")),
        NewAuditEvent {
            at: 400,
            owner_uid: None,
            actor: "system".to_owned(),
            action: "server.start".to_owned(),
            target: None,
            ip: None,
            detail: None,
        },
        event(500, Some("o1"), "owner:o1", "records.export", Some("r2")),
        event(600, Some("o1"), "client:c1", "Record.delete", Some("r1")),
        event(
            700,
            Some("o1"),
            "client:c1",
            "file_upload.start",
            Some("r1"),
        ),
        // Written later with an earlier time: order is by sequence, not by time.
        event(
            150,
            Some("o2"),
            "client:c2",
            "filexupload.start",
            Some("r7"),
        ),
    ];
    for e in &events {
        s.append_audit(e).await.expect("append");
    }

    let all = s.list_audit(&AuditFilter::default()).await.expect("all");
    let newest_first: Vec<&NewAuditEvent> = events.iter().rev().collect();
    assert_eq!(audit_events(&all), newest_first);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "ids decrease");
    let id_of = |i: usize| all[events.len() - 1 - i].id;

    let list = |filter: AuditFilter| {
        let s = Arc::clone(&s);
        async move { s.list_audit(&filter).await.expect("list") }
    };
    let picked =
        |idx: &[usize]| -> Vec<&NewAuditEvent> { idx.iter().map(|&i| &events[i]).collect() };

    let owner1 = list(AuditFilter {
        owner_uid: Some("o1".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(audit_events(&owner1), picked(&[6, 5, 4, 1, 0]));
    let c1 = list(AuditFilter {
        actor: Some("client:c1".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(audit_events(&c1), picked(&[6, 5, 1]));
    // Prefixes are literal and case-sensitive.
    let rec = list(AuditFilter {
        action_prefix: Some("record.".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(audit_events(&rec), picked(&[1, 0]));
    let recs = list(AuditFilter {
        action_prefix: Some("record".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(audit_events(&recs), picked(&[4, 1, 0]));
    let file = list(AuditFilter {
        action_prefix: Some("file_".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(audit_events(&file), picked(&[6]));
    let pct = list(AuditFilter {
        action_prefix: Some("%".to_owned()),
        ..Default::default()
    })
    .await;
    assert!(pct.is_empty());
    let target = list(AuditFilter {
        target: Some("r1".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(audit_events(&target), picked(&[6, 5, 1, 0]));
    let since = list(AuditFilter {
        since: Some(500),
        ..Default::default()
    })
    .await;
    assert_eq!(audit_events(&since), picked(&[6, 5, 4]));
    let before = list(AuditFilter {
        before_id: Some(id_of(3)),
        ..Default::default()
    })
    .await;
    assert_eq!(audit_events(&before), picked(&[2, 1, 0]));
    let limited = list(AuditFilter {
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(audit_events(&limited), picked(&[7, 6]));
    let combined = list(AuditFilter {
        owner_uid: Some("o1".to_owned()),
        actor: Some("client:c1".to_owned()),
        action_prefix: Some("Record".to_owned()),
        target: Some("r1".to_owned()),
        since: Some(200),
        before_id: Some(id_of(7)),
        limit: 10,
    })
    .await;
    assert_eq!(audit_events(&combined), picked(&[5]));
    assert_eq!(combined[0].id, id_of(5));

    // Paging backwards three at a time visits everything once, newest first.
    let mut paged = Vec::new();
    let mut before_id = None;
    loop {
        let page = list(AuditFilter {
            before_id,
            limit: 3,
            ..Default::default()
        })
        .await;
        let Some(last) = page.last() else { break };
        before_id = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

pub async fn audit_limits<H: Harness>(h: &H) {
    let s = h.open().await;
    for i in 0..1_005 {
        s.append_audit(&event(i, Some("o1"), "owner:o1", "bulk.event", None))
            .await
            .expect("append");
    }
    let default = s
        .list_audit(&AuditFilter::default())
        .await
        .expect("default");
    assert_eq!(default.len(), 100);
    assert_eq!(default[0].event.at, 1_004);
    assert_eq!(default[99].event.at, 905);
    let capped = s
        .list_audit(&AuditFilter {
            limit: 5_000,
            ..Default::default()
        })
        .await
        .expect("cap");
    assert_eq!(capped.len(), 1_000);
    assert_eq!(capped[999].event.at, 5);
    let exact = s
        .list_audit(&AuditFilter {
            limit: 1_000,
            ..Default::default()
        })
        .await
        .expect("max");
    assert_eq!(exact, capped);
}

// ---- durability ----------------------------------------------------------------------------

pub async fn survives_reopen<H: Harness>(h: &H) {
    let up = upload("t1", "f1", "r1", Some(1));
    let pending = upload("t2", "f2", "r1", None);
    let r1;
    {
        let s = h.open().await;
        r1 = vault_with_record(&*s).await;
        s.setting_init("k", b"v").await.expect("setting");
        s.create_session(&SessionRow {
            token_hash: bytes("session", "s"),
            owner_uid: "o1".to_owned(),
            expires_at: 9_000,
        })
        .await
        .expect("session");
        s.create_upload(&up).await.expect("upload");
        s.create_upload(&pending).await.expect("pending upload");
        assert_eq!(
            s.complete_upload(&up.token_hash, 6_000)
                .await
                .expect("complete"),
            2
        );
        s.create_app(&app("a1", "o1", 1)).await.expect("app");
        s.create_device(&device("c1", "a1", 1))
            .await
            .expect("device");
        assert_eq!(
            s.bind_device("c1", b"k", "192.0.2.1", 2)
                .await
                .expect("bind"),
            BindOutcome::Bound
        );
        s.append_audit(&event(1, Some("o1"), "owner:o1", "vault.create", None))
            .await
            .expect("audit");
        // The store is dropped here, without any explicit close or flush.
    }
    let s = h.open().await;
    assert_eq!(s.setting("k").await.expect("setting"), Some(b"v".to_vec()));
    assert_eq!(
        s.owner("o1").await.expect("owner"),
        owner("o1", "o1@example.com")
    );
    assert_eq!(
        s.session_owner(&bytes("session", "s"), 0)
            .await
            .expect("session"),
        "o1"
    );
    assert_eq!(
        s.folder("sf1").await.expect("folder"),
        shared("sf1", "o1", 100)
    );
    assert_eq!(
        s.record("r1").await.expect("record"),
        RecordRow {
            data: up.record_data.clone(),
            revision: 2,
            updated_at: 6_000,
            ..r1
        }
    );
    assert_eq!(s.file("f1").await.expect("file"), up.file);
    assert_eq!(
        s.upload(&pending.token_hash, 0).await.expect("pending"),
        pending
    );
    assert_eq!(
        s.device("c1").await.expect("device").public_key,
        Some(b"k".to_vec())
    );
    assert_eq!(
        s.bind_device("c1", b"other", "192.0.2.1", 3)
            .await
            .expect("bind"),
        BindOutcome::AlreadyBoundOtherKey
    );
    let trail = s.list_audit(&AuditFilter::default()).await.expect("audit");
    assert_eq!(
        audit_events(&trail),
        [&event(1, Some("o1"), "owner:o1", "vault.create", None)]
    );
    // The reopened store keeps working from where it was.
    assert_eq!(
        s.complete_upload(&pending.token_hash, 7_000)
            .await
            .expect("complete"),
        3
    );
}

// ---- record changes (write path) -----------------------------------------------------------

/// An update of `uid` from `expected` to data `rdata-update:<tag>` by `owner:o1` at `now`,
/// without files and without a transaction.
pub fn update(uid: &str, expected: i64, tag: &str, now: i64) -> RecordUpdate {
    RecordUpdate {
        uid: uid.to_owned(),
        expected_revision: expected,
        data: bytes("rdata-update", tag),
        remove_files: Vec::new(),
        transaction: None,
        actor: "owner:o1".to_owned(),
        now,
    }
}

/// The same update, opening a transaction of `kind` that expires at `expires_at`.
fn transactional(update: RecordUpdate, kind: &str, expires_at: i64) -> RecordUpdate {
    RecordUpdate {
        transaction: Some(TransactionStart {
            kind: kind.to_owned(),
            expires_at,
        }),
        ..update
    }
}

/// Attaches a complete file to a record (through an unchecked upload, so the record's revision
/// goes up by one).
async fn attach_file(store: &dyn Store, token: &str, file_uid: &str, record_uid: &str) -> FileRow {
    let up = upload(token, file_uid, record_uid, None);
    store.create_upload(&up).await.expect("create upload");
    store
        .complete_upload(&up.token_hash, 7_000)
        .await
        .expect("complete upload");
    up.file
}

/// A `Removed` with every list sorted (the trait does not promise an order).
fn sorted(mut removed: Removed) -> Removed {
    removed.records.sort();
    removed.folders.sort();
    removed.files.sort();
    removed
}

fn history_revisions(rows: &[HistoryRow]) -> Vec<i64> {
    rows.iter().map(|r| r.revision).collect()
}

fn share(app_uid: &str, target_uid: &str, kind: ShareKind) -> ShareRow {
    ShareRow {
        app_uid: app_uid.to_owned(),
        target_uid: target_uid.to_owned(),
        kind,
        key: bytes("skey", &format!("{app_uid}/{target_uid}")),
        editable: kind == ShareKind::Record,
    }
}

pub async fn record_updates<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    s.create_record(&record("r2", "o1", "sf1", "sf1", 300), "owner:o1")
        .await
        .expect("r2");
    let f1 = attach_file(&*s, "t1", "f1", "r1").await;
    attach_file(&*s, "t2", "f2", "r1").await;
    let g1 = attach_file(&*s, "t3", "g1", "r2").await;
    let pending = upload("t4", "p1", "r1", None);
    s.create_upload(&pending).await.expect("pending upload");
    let before = s.record("r1").await.expect("r1");
    assert_eq!(before.revision, 3);
    let r2_before = s.record("r2").await.expect("r2");

    // Only complete files of this record go: another record's file, a pending upload and an
    // unknown UID are ignored, and a repeated UID is reported once.
    let change = s
        .update_record(&RecordUpdate {
            remove_files: strings(&["f2", "g1", "p1", "nope", "f2"]),
            ..update("r1", 3, "one", 9_000)
        })
        .await
        .expect("update");
    assert_eq!(
        change,
        RecordChange {
            revision: 4,
            removed_files: strings(&["f2"]),
        }
    );
    assert_eq!(
        s.record("r1").await.expect("r1"),
        RecordRow {
            data: bytes("rdata-update", "one"),
            revision: 4,
            updated_at: 9_000,
            ..before.clone()
        }
    );
    assert_eq!(
        s.files_of_records(&strings(&["r1", "r2"]))
            .await
            .expect("files"),
        vec![f1.clone(), g1.clone()]
    );
    assert_err!(s.file("f2").await, StoreError::NotFound);
    assert_eq!(
        s.upload(&pending.token_hash, 0)
            .await
            .expect("pending kept"),
        pending
    );
    assert_err!(s.transaction("r1").await, StoreError::NotFound);
    let history = s.record_history("r1").await.expect("history");
    assert_eq!(history_revisions(&history), [4, 3, 2, 1]);
    assert_eq!(
        history[0],
        HistoryRow {
            revision: 4,
            data: bytes("rdata-update", "one"),
            actor: "owner:o1".to_owned(),
            at: 9_000,
        }
    );

    // No files to remove, another actor.
    let change = s
        .update_record(&RecordUpdate {
            actor: "client:c1".to_owned(),
            ..update("r1", 4, "two", 9_100)
        })
        .await
        .expect("second update");
    assert_eq!(
        change,
        RecordChange {
            revision: 5,
            removed_files: Vec::new(),
        }
    );
    assert_eq!(
        s.record_history("r1").await.expect("history")[0],
        HistoryRow {
            revision: 5,
            data: bytes("rdata-update", "two"),
            actor: "client:c1".to_owned(),
            at: 9_100,
        }
    );
    assert_eq!(s.record("r2").await.expect("r2"), r2_before, "r2 untouched");

    assert_err!(
        s.update_record(&update("nope", 1, "x", 9_200)).await,
        StoreError::NotFound
    );
    assert_err!(
        s.update_record(&transactional(
            update("nope", 1, "x", 9_200),
            "general",
            60_000
        ))
        .await,
        StoreError::NotFound
    );
    assert_err!(s.transaction("nope").await, StoreError::NotFound);
}

pub async fn record_update_stale<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    let f1 = attach_file(&*s, "t1", "f1", "r1").await;
    let before = s.record("r1").await.expect("r1");
    assert_eq!(before.revision, 2);
    let history = s.record_history("r1").await.expect("history");

    for expected in [1, 3, 0, -1] {
        let stale = RecordUpdate {
            remove_files: strings(&["f1"]),
            ..update("r1", expected, "late", 9_000)
        };
        assert_err!(
            s.update_record(&stale).await,
            StoreError::Precondition("stale")
        );
        assert_err!(
            s.update_record(&transactional(stale, "general", 60_000))
                .await,
            StoreError::Precondition("stale")
        );
    }
    assert_eq!(
        s.record("r1").await.expect("r1"),
        before,
        "record unchanged"
    );
    assert_eq!(
        s.record_history("r1").await.expect("history"),
        history,
        "no history entry"
    );
    assert_eq!(s.file("f1").await.expect("file kept"), f1);
    assert_err!(s.transaction("r1").await, StoreError::NotFound);

    // The current revision still applies.
    assert_eq!(
        s.update_record(&RecordUpdate {
            remove_files: strings(&["f1"]),
            ..update("r1", 2, "fresh", 9_100)
        })
        .await
        .expect("fresh update"),
        RecordChange {
            revision: 3,
            removed_files: strings(&["f1"]),
        }
    );
}

pub async fn transaction_finalize<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    s.create_record(&record("r2", "o1", "sf1", "sf1", 300), "owner:o1")
        .await
        .expect("r2");
    let f1 = attach_file(&*s, "t1", "f1", "r1").await;
    let f2 = attach_file(&*s, "t2", "f2", "r1").await;
    let g1 = attach_file(&*s, "t3", "g1", "r2").await;
    let before = s.record("r1").await.expect("r1");
    assert_eq!(before.revision, 3);

    let change = s
        .update_record(&transactional(
            RecordUpdate {
                remove_files: strings(&["f1", "g1", "nope"]),
                ..update("r1", 3, "rotated", 9_000)
            },
            "rotation",
            60_000,
        ))
        .await
        .expect("transactional update");
    assert_eq!(
        change,
        RecordChange {
            revision: 4,
            removed_files: Vec::new(),
        }
    );
    let during = RecordRow {
        data: bytes("rdata-update", "rotated"),
        revision: 4,
        updated_at: 9_000,
        ..before.clone()
    };
    assert_eq!(s.record("r1").await.expect("r1"), during);
    let open = TransactionRow {
        record_uid: "r1".to_owned(),
        kind: "rotation".to_owned(),
        previous_data: before.data.clone(),
        previous_revision: 3,
        remove_files: strings(&["f1", "g1", "nope"]),
        actor: "owner:o1".to_owned(),
        expires_at: 60_000,
    };
    assert_eq!(s.transaction("r1").await.expect("open"), open);
    assert_eq!(
        s.files_of_records(&strings(&["r1", "r2"]))
            .await
            .expect("files"),
        vec![f1.clone(), f2.clone(), g1.clone()],
        "nothing deleted before finalisation"
    );
    assert_eq!(
        history_revisions(&s.record_history("r1").await.expect("history")),
        [4, 3, 2, 1]
    );

    // Any further update is refused while it is open, whatever revision it names.
    for expected in [4, 3] {
        assert_err!(
            s.update_record(&update("r1", expected, "blocked", 9_100))
                .await,
            StoreError::Precondition("transaction open")
        );
        assert_err!(
            s.update_record(&transactional(
                update("r1", expected, "blocked", 9_100),
                "general",
                70_000
            ))
            .await,
            StoreError::Precondition("transaction open")
        );
    }
    assert_eq!(s.record("r1").await.expect("r1"), during);
    assert_eq!(s.transaction("r1").await.expect("still open"), open);
    assert_eq!(
        history_revisions(&s.record_history("r1").await.expect("history")),
        [4, 3, 2, 1]
    );
    // Other records are not affected.
    assert_eq!(
        s.update_record(&update("r2", 2, "r2-new", 9_150))
            .await
            .expect("r2 update")
            .revision,
        3
    );
    assert_err!(
        s.finalize_transaction("r2", 9_150).await,
        StoreError::NotFound
    );

    // Finalising deletes the pending files of this record only; the revision stays.
    assert_eq!(
        s.finalize_transaction("r1", 9_200).await.expect("finalize"),
        RecordChange {
            revision: 4,
            removed_files: strings(&["f1"]),
        }
    );
    assert_eq!(
        s.files_of_records(&strings(&["r1", "r2"]))
            .await
            .expect("files"),
        vec![f2.clone(), g1.clone()]
    );
    assert_eq!(
        s.record("r1").await.expect("r1"),
        during,
        "record unchanged"
    );
    assert_err!(s.transaction("r1").await, StoreError::NotFound);
    assert_err!(
        s.finalize_transaction("r1", 9_300).await,
        StoreError::NotFound
    );
    assert_err!(
        s.rollback_transaction("r1", "owner:o1", 9_300).await,
        StoreError::NotFound
    );
    assert_err!(
        s.finalize_transaction("nope", 9_300).await,
        StoreError::NotFound
    );
    assert_eq!(
        history_revisions(&s.record_history("r1").await.expect("history")),
        [4, 3, 2, 1]
    );

    // Updates work again.
    assert_eq!(
        s.update_record(&update("r1", 4, "after", 9_400))
            .await
            .expect("update after finalize")
            .revision,
        5
    );
}

pub async fn transaction_rollback<H: Harness>(h: &H) {
    let s = h.open().await;
    let r1 = vault_with_record(&*s).await;

    let change = s
        .update_record(&transactional(
            update("r1", 1, "tentative", 9_000),
            "general",
            60_000,
        ))
        .await
        .expect("transactional update");
    assert_eq!(change.revision, 2);
    assert_err!(
        s.rollback_transaction("nope", "owner:o1", 9_100).await,
        StoreError::NotFound
    );

    let change = s
        .rollback_transaction("r1", "client:c7", 9_500)
        .await
        .expect("rollback");
    assert_eq!(
        change,
        RecordChange {
            revision: 3,
            removed_files: Vec::new(),
        }
    );
    assert_eq!(
        s.record("r1").await.expect("r1"),
        RecordRow {
            revision: 3,
            updated_at: 9_500,
            ..r1.clone()
        },
        "previous data restored under a higher revision"
    );
    assert_err!(s.transaction("r1").await, StoreError::NotFound);
    assert_err!(
        s.rollback_transaction("r1", "owner:o1", 9_600).await,
        StoreError::NotFound
    );
    assert_err!(
        s.finalize_transaction("r1", 9_600).await,
        StoreError::NotFound
    );
    assert_eq!(
        s.record_history("r1").await.expect("history"),
        vec![
            HistoryRow {
                revision: 3,
                data: r1.data.clone(),
                actor: "client:c7".to_owned(),
                at: 9_500,
            },
            HistoryRow {
                revision: 2,
                data: bytes("rdata-update", "tentative"),
                actor: "owner:o1".to_owned(),
                at: 9_000,
            },
            HistoryRow {
                revision: 1,
                data: r1.data.clone(),
                actor: "owner:o1".to_owned(),
                at: 200,
            },
        ]
    );

    // Files listed for removal survive a rollback.
    s.create_record(&record("r2", "o1", "sf1", "sf1", 300), "owner:o1")
        .await
        .expect("r2");
    let g1 = attach_file(&*s, "t1", "g1", "r2").await;
    s.update_record(&transactional(
        RecordUpdate {
            remove_files: strings(&["g1"]),
            ..update("r2", 2, "without-g1", 9_700)
        },
        "general",
        60_000,
    ))
    .await
    .expect("transactional update");
    assert_eq!(
        s.rollback_transaction("r2", "owner:o1", 9_800)
            .await
            .expect("rollback"),
        RecordChange {
            revision: 4,
            removed_files: Vec::new(),
        }
    );
    assert_eq!(s.file("g1").await.expect("file kept"), g1);
    assert_eq!(
        s.record("r2").await.expect("r2").data,
        bytes("rdata-with", "g1")
    );
    // A new update may start from the rolled-back revision.
    assert_eq!(
        s.update_record(&update("r2", 4, "next", 9_900))
            .await
            .expect("update")
            .revision,
        5
    );
}

pub async fn transaction_expiry<H: Harness>(h: &H) {
    let s = h.open().await;
    let r1 = vault_with_record(&*s).await;
    s.create_owner(&owner("o2", "o2@example.com"), false)
        .await
        .expect("o2");
    s.create_folder(&shared("sf2", "o2", 100))
        .await
        .expect("sf2");
    let r2 = record("r2", "o1", "sf1", "sf1", 300);
    let r3 = record("r3", "o2", "sf2", "sf2", 400);
    let r4 = record("r4", "o1", "sf1", "sf1", 500);
    for r in [&r2, &r3, &r4] {
        s.create_record(r, "owner:test").await.expect("record");
    }
    for (uid, expires_at) in [("r1", 1_000), ("r2", 2_000), ("r3", 1_000)] {
        s.update_record(&transactional(
            update(uid, 1, uid, 500),
            "general",
            expires_at,
        ))
        .await
        .expect("open transaction");
    }
    s.update_record(&update("r4", 1, "r4", 500))
        .await
        .expect("plain update");

    assert!(
        s.expire_transactions(999)
            .await
            .expect("nothing due")
            .is_empty()
    );
    let mut expired = s.expire_transactions(1_000).await.expect("expire");
    expired.sort();
    assert_eq!(
        expired,
        [
            ("r1".to_owned(), "o1".to_owned()),
            ("r3".to_owned(), "o2".to_owned()),
        ]
    );
    for original in [&r1, &r3] {
        assert_eq!(
            s.record(&original.uid).await.expect("record"),
            RecordRow {
                revision: 3,
                updated_at: 1_000,
                ..original.clone()
            }
        );
        assert_eq!(
            s.record_history(&original.uid).await.expect("history")[0],
            HistoryRow {
                revision: 3,
                data: original.data.clone(),
                actor: "system:expiry".to_owned(),
                at: 1_000,
            }
        );
        assert_err!(s.transaction(&original.uid).await, StoreError::NotFound);
    }
    // Not yet due, and no transaction at all: untouched.
    assert_eq!(
        s.transaction("r2").await.expect("r2 still open").expires_at,
        2_000
    );
    assert_eq!(
        s.record("r2").await.expect("r2").data,
        bytes("rdata-update", "r2")
    );
    assert_eq!(s.record("r4").await.expect("r4").revision, 2);

    assert!(
        s.expire_transactions(1_000)
            .await
            .expect("again")
            .is_empty()
    );
    assert!(
        s.expire_transactions(1_999)
            .await
            .expect("early")
            .is_empty()
    );
    assert_eq!(
        s.expire_transactions(5_000).await.expect("expire r2"),
        [("r2".to_owned(), "o1".to_owned())]
    );
    assert_eq!(
        s.record("r2").await.expect("r2"),
        RecordRow {
            revision: 3,
            updated_at: 5_000,
            ..r2
        }
    );
    assert_eq!(s.record("r4").await.expect("r4").revision, 2);
    assert!(s.expire_transactions(9_999).await.expect("none").is_empty());
}

pub async fn transaction_expiry_race<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    let uids: Vec<String> = (0..10).map(|i| format!("x{i}")).collect();
    for uid in &uids {
        s.create_record(&record(uid, "o1", "sf1", "sf1", 300), "owner:o1")
            .await
            .expect("record");
        s.update_record(&transactional(update(uid, 1, uid, 500), "general", 1_000))
            .await
            .expect("open transaction");
    }
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.expire_transactions(2_000).await })
        })
        .collect();
    let mut expired = Vec::new();
    for task in tasks {
        expired.extend(task.await.expect("join").expect("expire"));
    }
    expired.sort();
    let expected: Vec<(String, String)> = uids
        .iter()
        .map(|uid| (uid.clone(), "o1".to_owned()))
        .collect();
    assert_eq!(
        expired, expected,
        "each transaction rolled back exactly once"
    );
    for uid in &uids {
        let record = s.record(uid).await.expect("record");
        assert_eq!(record.revision, 3);
        assert_eq!(record.data, bytes("rdata", uid));
        let history = s.record_history(uid).await.expect("history");
        assert_eq!(history_revisions(&history), [3, 2, 1]);
        assert_eq!(history[0].actor, "system:expiry");
    }
}

pub async fn record_update_race<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    let tasks: Vec<_> = (0..20)
        .map(|i: i64| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let result = s
                    .update_record(&RecordUpdate {
                        actor: format!("client:c{i}"),
                        ..update("r1", 1, &format!("race-{i}"), 1_000 + i)
                    })
                    .await;
                (i, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut stale = 0;
    for task in tasks {
        match task.await.expect("join") {
            (i, Ok(change)) => winners.push((i, change)),
            (_, Err(StoreError::Precondition("stale"))) => stale += 1,
            (i, Err(e)) => panic!("task {i}: unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(stale, 19);
    let (w, change) = &winners[0];
    assert_eq!(
        change,
        &RecordChange {
            revision: 2,
            removed_files: Vec::new(),
        }
    );
    let stored = s.record("r1").await.expect("r1");
    assert_eq!(stored.data, bytes("rdata-update", &format!("race-{w}")));
    assert_eq!(stored.revision, 2);
    assert_eq!(stored.updated_at, 1_000 + w);
    let history = s.record_history("r1").await.expect("history");
    assert_eq!(history_revisions(&history), [2, 1]);
    assert_eq!(history[0].actor, format!("client:c{w}"));

    // Racing transactional updates: one opens its transaction, the others are refused.
    let tasks: Vec<_> = (0..20)
        .map(|i: i64| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let result = s
                    .update_record(&transactional(
                        RecordUpdate {
                            actor: format!("client:c{i}"),
                            ..update("r1", 2, &format!("tx-{i}"), 2_000 + i)
                        },
                        "general",
                        60_000,
                    ))
                    .await;
                (i, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("join") {
            (i, Ok(change)) => winners.push((i, change)),
            (_, Err(StoreError::Precondition("transaction open"))) => {}
            (i, Err(e)) => panic!("task {i}: unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let (w, change) = &winners[0];
    assert_eq!(change.revision, 3);
    let open = s.transaction("r1").await.expect("open");
    assert_eq!(open.actor, format!("client:c{w}"));
    assert_eq!(open.previous_revision, 2);
    assert_eq!(
        s.record("r1").await.expect("r1").data,
        bytes("rdata-update", &format!("tx-{w}"))
    );
}

pub async fn transaction_end_race<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    let f1 = attach_file(&*s, "t1", "f1", "r1").await;
    s.update_record(&transactional(
        RecordUpdate {
            remove_files: strings(&["f1"]),
            ..update("r1", 2, "tentative", 9_000)
        },
        "general",
        60_000,
    ))
    .await
    .expect("open transaction");

    // Finalisations, rollbacks and expiry sweeps at once: exactly one of them ends it.
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                match i % 3 {
                    0 => s
                        .finalize_transaction("r1", 9_500)
                        .await
                        .map(|c| (i, c.revision)),
                    1 => s
                        .rollback_transaction("r1", "owner:o1", 9_500)
                        .await
                        .map(|c| (i, c.revision)),
                    _ => match s.expire_transactions(60_000).await {
                        Ok(expired) if expired.is_empty() => Err(StoreError::NotFound),
                        Ok(expired) => {
                            assert_eq!(expired, [("r1".to_owned(), "o1".to_owned())]);
                            Ok((i, 4))
                        }
                        Err(e) => Err(e),
                    },
                }
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("join") {
            Ok(won) => winners.push(won),
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let (w, revision) = winners[0];
    let stored = s.record("r1").await.expect("r1");
    assert_eq!(stored.revision, revision);
    if w % 3 == 0 {
        assert_eq!(revision, 3);
        assert_eq!(stored.data, bytes("rdata-update", "tentative"));
        assert_err!(s.file("f1").await, StoreError::NotFound);
    } else {
        assert_eq!(revision, 4);
        assert_eq!(stored.data, bytes("rdata-with", "f1"));
        assert_eq!(s.file("f1").await.expect("file kept"), f1);
    }
    assert_err!(s.transaction("r1").await, StoreError::NotFound);
}

pub async fn record_history_order<H: Harness>(h: &H) {
    let s = h.open().await;
    let r1 = vault_with_record(&*s).await;
    s.update_record(&update("r1", 1, "second", 300))
        .await
        .expect("update");
    let up = upload("t1", "f1", "r1", Some(2));
    s.create_upload(&up).await.expect("upload");
    assert_eq!(
        s.complete_upload(&up.token_hash, 400)
            .await
            .expect("complete"),
        3
    );
    s.update_record(&RecordUpdate {
        actor: "client:c1".to_owned(),
        ..update("r1", 3, "fourth", 500)
    })
    .await
    .expect("update");
    assert_eq!(
        s.record_history("r1").await.expect("history"),
        vec![
            HistoryRow {
                revision: 4,
                data: bytes("rdata-update", "fourth"),
                actor: "client:c1".to_owned(),
                at: 500,
            },
            HistoryRow {
                revision: 3,
                data: up.record_data.clone(),
                actor: up.actor.clone(),
                at: 400,
            },
            HistoryRow {
                revision: 2,
                data: bytes("rdata-update", "second"),
                actor: "owner:o1".to_owned(),
                at: 300,
            },
            HistoryRow {
                revision: 1,
                data: r1.data.clone(),
                actor: "owner:o1".to_owned(),
                at: 200,
            },
        ]
    );
    assert!(
        s.record_history("nope")
            .await
            .expect("unknown record")
            .is_empty()
    );
}

pub async fn record_deletion<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    let r2 = record("r2", "o1", "sf1", "sf1", 300);
    s.create_record(&r2, "owner:o1").await.expect("r2");
    attach_file(&*s, "t1", "f1", "r1").await;
    attach_file(&*s, "t2", "f2", "r1").await;
    let g1 = attach_file(&*s, "t3", "g1", "r2").await;
    let pending = upload("t4", "p1", "r1", None);
    s.create_upload(&pending).await.expect("pending upload");
    let other_pending = upload("t5", "p2", "r2", None);
    s.create_upload(&other_pending)
        .await
        .expect("pending upload of r2");
    s.update_record(&transactional(
        RecordUpdate {
            remove_files: strings(&["f1"]),
            ..update("r1", 3, "tentative", 8_000)
        },
        "general",
        60_000,
    ))
    .await
    .expect("open transaction");
    s.create_app(&app("a1", "o1", 1)).await.expect("a1");
    s.create_app(&app("a2", "o1", 2)).await.expect("a2");
    let shares = [
        share("a1", "r1", ShareKind::Record),
        share("a2", "r1", ShareKind::Record),
        share("a1", "r2", ShareKind::Record),
        share("a2", "sf1", ShareKind::Folder),
    ];
    for sh in &shares {
        s.put_share(sh).await.expect("share");
    }
    let r2_now = s.record("r2").await.expect("r2");

    let removed = s.delete_record("r1").await.expect("delete");
    assert_eq!(
        sorted(removed),
        Removed {
            records: strings(&["r1"]),
            folders: Vec::new(),
            files: strings(&["f1", "f2", "p1"]),
        }
    );
    assert_err!(s.record("r1").await, StoreError::NotFound);
    assert_err!(s.file("f1").await, StoreError::NotFound);
    assert_err!(s.file("f2").await, StoreError::NotFound);
    assert!(
        s.files_of_records(&strings(&["r1"]))
            .await
            .expect("files")
            .is_empty()
    );
    assert_err!(s.upload(&pending.token_hash, 0).await, StoreError::NotFound);
    assert!(s.record_history("r1").await.expect("history").is_empty());
    assert_err!(s.transaction("r1").await, StoreError::NotFound);
    assert_eq!(
        s.shares_of_app("a1").await.expect("a1"),
        vec![shares[2].clone()]
    );
    assert_eq!(
        s.shares_of_app("a2").await.expect("a2"),
        vec![shares[3].clone()]
    );
    // The other record keeps everything.
    assert_eq!(s.record("r2").await.expect("r2"), r2_now);
    assert_eq!(
        s.files_of_records(&strings(&["r2"])).await.expect("files"),
        vec![g1]
    );
    assert_eq!(
        s.upload(&other_pending.token_hash, 0)
            .await
            .expect("r2's upload"),
        other_pending
    );
    assert_eq!(
        history_revisions(&s.record_history("r2").await.expect("history")),
        [2, 1]
    );
    assert_eq!(
        record_uids(&s.records_of_owner("o1").await.expect("records")),
        ["r2"]
    );

    assert_err!(s.delete_record("r1").await, StoreError::NotFound);
    assert_err!(s.delete_record("nope").await, StoreError::NotFound);
    // Nothing of the old record is left to clash with a new one of the same UID.
    let again = record("r1", "o1", "sf1", "sf1", 900);
    s.create_record(&again, "owner:o1").await.expect("recreate");
    assert_eq!(
        history_revisions(&s.record_history("r1").await.expect("history")),
        [1]
    );
    assert_eq!(
        s.delete_record("r1").await.expect("delete again"),
        Removed {
            records: strings(&["r1"]),
            folders: Vec::new(),
            files: Vec::new(),
        }
    );
}

pub async fn folder_updates<H: Harness>(h: &H) {
    let s = h.open().await;
    s.create_owner(&owner("o1", "o1@example.com"), false)
        .await
        .expect("o1");
    let sf1 = shared("sf1", "o1", 1);
    let sub = folder("sub", "o1", Some("sf1"), "sf1", 2);
    s.create_folder(&sf1).await.expect("sf1");
    s.create_folder(&sub).await.expect("sub");

    s.update_folder("sub", b"renamed").await.expect("update");
    assert_eq!(
        s.folder("sub").await.expect("sub"),
        FolderRow {
            data: b"renamed".to_vec(),
            ..sub.clone()
        }
    );
    assert_eq!(s.folder("sf1").await.expect("sf1"), sf1, "others untouched");
    s.update_folder("sf1", b"").await.expect("empty data");
    assert_eq!(s.folder("sf1").await.expect("sf1").data, Vec::<u8>::new());
    assert_err!(s.update_folder("nope", b"x").await, StoreError::NotFound);
    assert_err!(s.folder("nope").await, StoreError::NotFound);
}

/// Without force a folder is deleted only if it is empty when the deletion runs; a refused
/// deletion changes nothing.
pub async fn folder_deletion_without_force<H: Harness>(h: &H) {
    let s = h.open().await;
    vault_with_record(&*s).await;
    for f in [
        folder("a", "o1", Some("sf1"), "sf1", 3),
        folder("a-1", "o1", Some("a"), "sf1", 4),
        folder("b", "o1", Some("sf1"), "sf1", 5),
    ] {
        s.create_folder(&f).await.expect("folder");
    }
    s.create_record(&record("rb", "o1", "sf1", "b", 6), "owner:o1")
        .await
        .expect("rb");
    let folders_before = s.folders_of_owner("o1").await.expect("folders");
    let records_before = s.records_of_owner("o1").await.expect("records");
    for uid in ["a", "b", "sf1"] {
        assert_err!(
            s.delete_folder_tree(uid, false).await,
            StoreError::Precondition("folder not empty")
        );
    }
    assert_eq!(
        s.folders_of_owner("o1").await.expect("folders"),
        folders_before
    );
    assert_eq!(
        s.records_of_owner("o1").await.expect("records"),
        records_before
    );
    assert_err!(
        s.delete_folder_tree("nope", false).await,
        StoreError::NotFound
    );

    // Empty ones go without force.
    let removed = s.delete_folder_tree("a-1", false).await.expect("a-1");
    assert_eq!(removed.folders, ["a-1"]);
    assert!(removed.records.is_empty());
    s.delete_record("rb").await.expect("rb");
    s.delete_folder_tree("b", false).await.expect("b");
    s.delete_folder_tree("a", false).await.expect("a");
    assert_eq!(
        folder_uids(&s.folders_of_owner("o1").await.expect("folders")),
        ["sf1"]
    );
}

pub async fn folder_tree_deletion<H: Harness>(h: &H) {
    let s = h.open().await;
    s.create_owner(&owner("o1", "o1@example.com"), false)
        .await
        .expect("o1");
    // sf1 ── a ── a1 ── a1x        sf2 ── z
    //    │     └─ a2
    //    └─ b
    let sf2 = shared("sf2", "o1", 20);
    let z = folder("z", "o1", Some("sf2"), "sf2", 21);
    for f in [
        shared("sf1", "o1", 1),
        folder("a", "o1", Some("sf1"), "sf1", 2),
        folder("a1", "o1", Some("a"), "sf1", 3),
        folder("a1x", "o1", Some("a1"), "sf1", 4),
        folder("a2", "o1", Some("a"), "sf1", 5),
        folder("b", "o1", Some("sf1"), "sf1", 6),
        sf2.clone(),
        z.clone(),
    ] {
        s.create_folder(&f).await.expect("folder");
    }
    let records = [
        record("r-root", "o1", "sf1", "sf1", 10),
        record("r-a", "o1", "sf1", "a", 11),
        record("r-a1", "o1", "sf1", "a1", 12),
        record("r-a1x", "o1", "sf1", "a1x", 13),
        record("r-b", "o1", "sf1", "b", 14),
        record("r-z", "o1", "sf2", "z", 15),
    ];
    for r in &records {
        s.create_record(r, "owner:o1").await.expect("record");
    }
    attach_file(&*s, "t1", "f-a1", "r-a1").await;
    attach_file(&*s, "t2", "f-a1x", "r-a1x").await;
    attach_file(&*s, "t3", "f-b", "r-b").await;
    let fz = attach_file(&*s, "t4", "f-z", "r-z").await;
    s.create_upload(&upload("t5", "p-a", "r-a", None))
        .await
        .expect("pending upload");
    s.update_record(&transactional(
        update("r-a1", 2, "tx", 9_000),
        "general",
        60_000,
    ))
    .await
    .expect("open transaction");
    s.create_app(&app("app", "o1", 1)).await.expect("app");
    for sh in [
        share("app", "sf1", ShareKind::Folder),
        share("app", "sf2", ShareKind::Folder),
        share("app", "r-a1x", ShareKind::Record),
        share("app", "r-root", ShareKind::Record),
        share("app", "r-z", ShareKind::Record),
    ] {
        s.put_share(&sh).await.expect("share");
    }

    // A sub-folder: itself, its sub-folders at every depth and their records.
    let removed = s.delete_folder_tree("a", true).await.expect("delete a");
    assert_eq!(
        sorted(removed),
        Removed {
            records: strings(&["r-a", "r-a1", "r-a1x"]),
            folders: strings(&["a", "a1", "a1x", "a2"]),
            files: strings(&["f-a1", "f-a1x", "p-a"]),
        }
    );
    assert_eq!(
        folder_uids(&s.folders_of_owner("o1").await.expect("folders")),
        ["sf1", "b", "sf2", "z"]
    );
    assert_eq!(
        record_uids(&s.records_of_owner("o1").await.expect("records")),
        ["r-root", "r-b", "r-z"]
    );
    for gone in ["r-a", "r-a1", "r-a1x"] {
        assert_err!(s.record(gone).await, StoreError::NotFound);
        assert!(s.record_history(gone).await.expect("history").is_empty());
    }
    assert_err!(s.transaction("r-a1").await, StoreError::NotFound);
    assert_err!(s.file("f-a1x").await, StoreError::NotFound);
    assert_err!(
        s.upload(&bytes("token", "t5"), 0).await,
        StoreError::NotFound
    );
    let targets =
        |rows: Vec<ShareRow>| -> Vec<String> { rows.into_iter().map(|sh| sh.target_uid).collect() };
    assert_eq!(
        targets(s.shares_of_app("app").await.expect("shares")),
        strings(&["r-root", "r-z", "sf1", "sf2"])
    );
    assert_err!(s.folder("a").await, StoreError::NotFound);
    assert_err!(
        s.delete_folder_tree("a1x", true).await,
        StoreError::NotFound
    );

    // A shared folder: the rest of its tree and its own share.
    let removed = s.delete_folder_tree("sf1", true).await.expect("delete sf1");
    assert_eq!(
        sorted(removed),
        Removed {
            records: strings(&["r-b", "r-root"]),
            folders: strings(&["b", "sf1"]),
            files: strings(&["f-b"]),
        }
    );
    assert_eq!(
        s.folders_of_owner("o1").await.expect("folders"),
        vec![sf2.clone(), z.clone()]
    );
    assert_eq!(
        s.records_of_owner("o1").await.expect("records"),
        vec![RecordRow {
            data: bytes("rdata-with", "f-z"),
            revision: 2,
            updated_at: 7_000,
            ..records[5].clone()
        }]
    );
    assert_eq!(
        s.files_of_records(&strings(&["r-z"])).await.expect("files"),
        vec![fz]
    );
    assert_eq!(
        targets(s.shares_of_app("app").await.expect("shares")),
        strings(&["r-z", "sf2"])
    );
    assert_err!(
        s.delete_folder_tree("sf1", true).await,
        StoreError::NotFound
    );
    assert_err!(
        s.delete_folder_tree("nope", true).await,
        StoreError::NotFound
    );

    // A whole tree in one go, straight from the root.
    let removed = s.delete_folder_tree("sf2", true).await.expect("delete sf2");
    assert_eq!(
        sorted(removed),
        Removed {
            records: strings(&["r-z"]),
            folders: strings(&["sf2", "z"]),
            files: strings(&["f-z"]),
        }
    );
    assert!(s.folders_of_owner("o1").await.expect("none").is_empty());
    assert!(s.records_of_owner("o1").await.expect("none").is_empty());
    assert!(s.shares_of_app("app").await.expect("none").is_empty());
    // An empty leaf folder deletes alone.
    s.create_folder(&shared("sf3", "o1", 30))
        .await
        .expect("sf3");
    assert_eq!(
        s.delete_folder_tree("sf3", true).await.expect("delete sf3"),
        Removed {
            records: Vec::new(),
            folders: strings(&["sf3"]),
            files: Vec::new(),
        }
    );
}

// ---- rate limiting -------------------------------------------------------------------------

pub async fn count_request<H: Harness>(h: &H) {
    let s = h.open().await;
    for expected in 1..=3 {
        assert_eq!(
            s.count_request("ksm:c1:get_secret", 60_000)
                .await
                .expect("count"),
            expected
        );
    }
    // Keys are exact strings, counted apart.
    assert_eq!(
        s.count_request("ksm:C1:get_secret", 60_000)
            .await
            .expect("other key"),
        1
    );
    assert_eq!(
        s.count_request("login:a@example.com", 0)
            .await
            .expect("login"),
        1
    );
    // A new window starts again at 1, and goes on from there.
    assert_eq!(
        s.count_request("ksm:c1:get_secret", 70_000)
            .await
            .expect("new window"),
        1
    );
    assert_eq!(
        s.count_request("ksm:c1:get_secret", 70_000)
            .await
            .expect("new window"),
        2
    );
    // Another key's running window is not forgotten because some key started a newer one: a
    // longer limit (logins per minute) keeps its count while shorter ones roll over.
    assert_eq!(
        s.count_request("login:a@example.com", 0)
            .await
            .expect("login again"),
        2
    );
    assert_eq!(
        s.count_request("ksm:C1:get_secret", 60_000)
            .await
            .expect("other key again"),
        2
    );

    // Concurrent callers each get their own count: exactly 1..=16.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.count_request("ksm:race:get_secret", 80_000).await })
        })
        .collect();
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.expect("join").expect("count"));
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=16).collect::<Vec<u64>>());
    assert_eq!(
        s.count_request("ksm:race:get_secret", 80_000)
            .await
            .expect("after the race"),
        17
    );
}

// ---- whole-vault copy ----------------------------------------------------------------------

/// Fills a store with a row in every table a [`Snapshot`] holds, with every optional column both
/// set and unset somewhere, plus rows a snapshot leaves out (a session, a pending upload):
///
/// ```text
/// o1: sf1 ── a ── a1 (r2: files f2, f2b; open transaction removing f2)
///         │     └ a2
///         └─ b (r4: file f4)
///     sf1 holds r1 (owner key, three revisions, file f1)
///     sf2 (empty)
/// o2: sf3 ── c (r3)
/// app1 (o1): shares sf1, r1 (editable); devices c-bound (bound, touched), c-pending
/// app2 (o2): shares sf3; device c-open (no expiry, not IP-locked)
/// ```
///
/// Creation times do not follow the tree (a child may be "older" than its parent), so an
/// import that ordered folders by time alone would break a foreign key.
pub async fn rich_vault(s: &dyn Store) {
    s.setting_init("link_secret", &[0, 1, 2, 255])
        .await
        .expect("setting");
    s.setting_init("empty", b"").await.expect("empty setting");
    s.create_owner(&owner("o1", "o1@example.com"), true)
        .await
        .expect("o1");
    s.create_owner(
        &OwnerRow {
            created_at: 500,
            ..owner("o2", "o2@example.com")
        },
        false,
    )
    .await
    .expect("o2");
    s.create_session(&SessionRow {
        token_hash: bytes("session", "o1"),
        owner_uid: "o1".to_owned(),
        expires_at: i64::MAX,
    })
    .await
    .expect("session");
    for f in [
        shared("sf1", "o1", 50),
        folder("a", "o1", Some("sf1"), "sf1", 40),
        folder("a1", "o1", Some("a"), "sf1", 10),
        folder("a2", "o1", Some("a"), "sf1", 10),
        folder("b", "o1", Some("sf1"), "sf1", 30),
        shared("sf2", "o1", 60),
        shared("sf3", "o2", 5),
        folder("c", "o2", Some("sf3"), "sf3", 1),
    ] {
        s.create_folder(&f).await.expect("folder");
    }
    let r1 = RecordRow {
        owner_key: Some(bytes("ownerkey", "r1")),
        ..record("r1", "o1", "sf1", "sf1", 100)
    };
    for (r, actor) in [
        (r1, "owner:o1"),
        (record("r2", "o1", "sf1", "a1", 90), "client:c-bound"),
        (record("r3", "o2", "sf3", "c", 80), "owner:o2"),
        (record("r4", "o1", "sf1", "b", 100), "owner:o1"),
    ] {
        s.create_record(&r, actor).await.expect("record");
    }
    s.update_record(&update("r1", 1, "r1-second", 1_100))
        .await
        .expect("r1 rev 2");
    attach_file(s, "t-f1", "f1", "r1").await;
    attach_file(s, "t-f2", "f2", "r2").await;
    attach_file(s, "t-f2b", "f2b", "r2").await;
    attach_file(s, "t-f4", "f4", "r4").await;
    s.update_record(&transactional(
        RecordUpdate {
            remove_files: strings(&["f2", "gone"]),
            ..update("r2", 3, "r2-tx", 8_000)
        },
        "rotation",
        90_000,
    ))
    .await
    .expect("open transaction");
    s.create_upload(&upload("t-pending", "f-pending", "r3", None))
        .await
        .expect("pending upload");

    s.create_app(&app("app1", "o1", 20)).await.expect("app1");
    s.create_app(&app("app2", "o2", 10)).await.expect("app2");
    for sh in [
        share("app1", "sf1", ShareKind::Folder),
        share("app1", "r1", ShareKind::Record),
        share("app2", "sf3", ShareKind::Folder),
    ] {
        s.put_share(&sh).await.expect("share");
    }
    s.create_device(&device("c-bound", "app1", 30))
        .await
        .expect("device");
    assert_eq!(
        s.bind_device("c-bound", b"device-public-key", "192.0.2.7", 40)
            .await
            .expect("bind"),
        BindOutcome::Bound
    );
    s.touch_device("c-bound", 45).await.expect("touch");
    s.create_device(&device("c-pending", "app1", 31))
        .await
        .expect("device");
    s.create_device(&DeviceRow {
        first_access_expires_at: None,
        ip_lock: false,
        ..device("c-open", "app2", 32)
    })
    .await
    .expect("device");

    for e in [
        event(100, Some("o1"), "owner:o1", "vault.create", None),
        event(
            200,
            Some("o1"),
            "client:c-bound",
            "ksm.get_secret",
            Some("r1"),
        ),
        NewAuditEvent {
            at: 300,
            owner_uid: None,
            actor: "system:expiry".to_owned(),
            action: "transaction.expire".to_owned(),
            target: None,
            ip: None,
            detail: None,
        },
        event(150, Some("o2"), "owner:o2", "folder.create", Some("sf3")),
    ] {
        s.append_audit(&e).await.expect("audit");
    }
}

/// Checks the orders [`Store::export`] promises.
fn assert_export_orders(snapshot: &Snapshot) {
    let position: BTreeMap<&str, usize> = snapshot
        .folders
        .iter()
        .enumerate()
        .map(|(i, f)| (f.uid.as_str(), i))
        .collect();
    for (i, f) in snapshot.folders.iter().enumerate() {
        if let Some(parent) = &f.parent_uid {
            assert!(
                position[parent.as_str()] < i,
                "{parent} after its child {}",
                f.uid
            );
        }
    }
    let ids: Vec<i64> = snapshot.audit.iter().map(|a| a.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "audit ids {ids:?}");
    let history: Vec<(&str, i64)> = snapshot
        .history
        .iter()
        .map(|(uid, h)| (uid.as_str(), h.revision))
        .collect();
    let mut sorted = history.clone();
    sorted.sort_unstable();
    assert_eq!(history, sorted);
}

pub async fn export_import_round_trip<H: Harness>(h: &H) {
    let a = h.open().await;
    assert_eq!(a.export().await.expect("empty export"), Snapshot::default());
    rich_vault(&*a).await;
    let snapshot = a.export().await.expect("export");
    assert_export_orders(&snapshot);
    let counts = [
        snapshot.settings.len(),
        snapshot.owners.len(),
        snapshot.folders.len(),
        snapshot.records.len(),
        snapshot.history.len(),
        snapshot.transactions.len(),
        snapshot.files.len(),
        snapshot.apps.len(),
        snapshot.shares.len(),
        snapshot.devices.len(),
        snapshot.audit.len(),
    ];
    assert_eq!(counts, [2, 2, 8, 4, 10, 1, 4, 2, 3, 3, 4]);
    assert_eq!(
        snapshot.settings,
        [
            ("empty".to_owned(), Vec::new()),
            ("link_secret".to_owned(), vec![0, 1, 2, 255])
        ]
    );
    // What the API shows is what the snapshot holds, verbatim.
    assert_eq!(
        snapshot.transactions,
        [a.transaction("r2").await.expect("transaction")]
    );
    assert_eq!(
        snapshot.transactions[0].remove_files,
        strings(&["f2", "gone"])
    );
    assert!(
        snapshot
            .records
            .contains(&a.record("r1").await.expect("r1"))
    );
    assert!(
        snapshot
            .devices
            .contains(&a.device("c-bound").await.expect("device"))
    );
    let trail = a.list_audit(&AuditFilter::default()).await.expect("audit");
    assert_eq!(
        snapshot.audit,
        trail.iter().rev().cloned().collect::<Vec<_>>()
    );

    let other = h.another().await;
    let b = other.open().await;
    b.import(&snapshot).await.expect("import");
    assert_eq!(b.export().await.expect("export the copy"), snapshot);

    // The copy works like the original.
    assert_eq!(b.owner_count().await.expect("owners"), 2);
    assert_eq!(
        b.owner_by_email("O1@example.com").await.expect("login"),
        a.owner("o1").await.expect("o1")
    );
    assert_eq!(
        folder_uids(&b.folders_of_owner("o1").await.expect("folders")),
        folder_uids(&a.folders_of_owner("o1").await.expect("folders"))
    );
    for uid in ["r1", "r2", "r3", "r4"] {
        assert_eq!(
            b.record_history(uid).await.expect("history"),
            a.record_history(uid).await.expect("history")
        );
    }
    assert_eq!(
        b.bind_device("c-bound", b"device-public-key", "192.0.2.7", 50)
            .await
            .expect("bind again"),
        BindOutcome::AlreadyBoundSameKey
    );
    let finalized = b
        .finalize_transaction("r2", 9_000)
        .await
        .expect("finalize the copied transaction");
    assert_eq!(finalized.removed_files, strings(&["f2"]));
    // Sessions and pending uploads are not part of a vault.
    assert_err!(
        b.session_owner(&bytes("session", "o1"), 0).await,
        StoreError::NotFound
    );
    assert_err!(
        b.upload(&bytes("token", "t-pending"), 0).await,
        StoreError::NotFound
    );
    // Audit ids go on after the imported ones.
    let last = snapshot.audit.iter().map(|e| e.id).max().expect("events");
    b.append_audit(&event(400, Some("o1"), "owner:o1", "after.import", None))
        .await
        .expect("append");
    let newest = b
        .list_audit(&AuditFilter {
            limit: 1,
            ..AuditFilter::default()
        })
        .await
        .expect("newest");
    assert_eq!(newest[0].event.action, "after.import");
    assert!(newest[0].id > last, "{} <= {last}", newest[0].id);
    // The original is untouched by all this.
    assert_eq!(a.export().await.expect("export again"), snapshot);
}

pub async fn import_refuses_a_non_empty_store<H: Harness>(h: &H) {
    let s = h.open().await;
    rich_vault(&*s).await;
    let before = s.export().await.expect("export");
    assert_err!(
        s.import(&before).await,
        StoreError::Precondition("not empty")
    );
    let unrelated = Snapshot {
        settings: vec![("new".to_owned(), b"value".to_vec())],
        owners: vec![owner("o9", "o9@example.com")],
        ..Snapshot::default()
    };
    assert_err!(
        s.import(&unrelated).await,
        StoreError::Precondition("not empty")
    );
    assert_eq!(s.export().await.expect("export again"), before);

    // All or nothing: a snapshot that breaks a reference half-way leaves an empty store empty.
    let other = h.another().await;
    let empty = other.open().await;
    let mut broken = before.clone();
    broken.files.push(FileRow {
        record_uid: "no-such-record".to_owned(),
        ..broken.files[0].clone()
    });
    broken.files.last_mut().expect("file").uid = "f-dangling".to_owned();
    assert!(empty.import(&broken).await.is_err());
    assert_eq!(
        empty.export().await.expect("export after failure"),
        Snapshot::default()
    );
    assert_eq!(empty.owner_count().await.expect("owners"), 0);
    // The same store takes the good snapshot afterwards, folders in any order.
    let mut shuffled = before.clone();
    shuffled.folders.reverse();
    empty.import(&shuffled).await.expect("import");
    assert_eq!(empty.export().await.expect("export the copy"), before);
    assert_err!(
        empty.import(&before).await,
        StoreError::Precondition("not empty")
    );
}
