//! Backend-independent tests of the [`Store`] contract.
//!
//! Every test takes a [`Harness`] that opens the database under test; a backend's test file
//! implements the harness and instantiates each function here as a `#[tokio::test]` (see
//! `tests/store.rs`). Nothing here knows which backend it talks to, so the PostgreSQL backend can
//! include this module (`#[path = …] mod suite;`) and run the same bodies.
//!
//! Values are distinct per field and per row, so a swapped column or a row mixed up with
//! another fails an equality check.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use coffer_store::{
    AppRow, AuditFilter, AuditRow, BindOutcome, DeviceRow, FileRow, FolderRow, NewAuditEvent,
    OwnerRow, RecordRow, SessionRow, ShareKind, ShareRow, Store, StoreError, UploadRow,
};

/// Opens the backend under test.
pub trait Harness {
    /// Opens the database under test. Every call on one harness opens the same database: a
    /// second call after dropping the first store shows what the first one made durable.
    fn open(&self) -> impl Future<Output = Arc<dyn Store>>;
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
