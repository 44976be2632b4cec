//! The owner side of the write path: record edit (optimistic), history and restore, record and
//! folder deletion, folder rename, attachment removal, share revocation and the editable toggle.

mod common;

use std::path::Path;

use coffer_owner::{NewClientOptions, OwnerError, Session};
use coffer_proto::record::{Field, RecordData};
use common::{Ksm, register_owner, start_server};
use serde_json::{Value, json};

fn login_record(title: &str, password: &str) -> RecordData {
    RecordData {
        title: title.to_owned(),
        record_type: "login".into(),
        fields: vec![
            Field::new("login", vec![Value::from("alice")]),
            Field::new("password", vec![Value::from(password)]),
        ],
        ..Default::default()
    }
}

fn password_of(data: &RecordData) -> &str {
    data.field("password")
        .and_then(|f| f.value.first())
        .and_then(Value::as_str)
        .expect("a password value")
}

fn object_path(data_dir: &Path, uid: &str) -> std::path::PathBuf {
    data_dir
        .join("files")
        .join("objects")
        .join(&uid[..2])
        .join(uid)
}

fn server_code(err: OwnerError) -> String {
    match err {
        OwnerError::Server { code, .. } => code,
        other => panic!("expected a server error, got {other}"),
    }
}

async fn fresh() -> (
    tempfile::TempDir,
    coffer_server::RunningServer,
    common::Endpoint,
    Session,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, ep) = start_server(dir.path(), |_| {}).await;
    let code = server.setup_code.clone().expect("setup code");
    let owner = register_owner(&ep, &code).await;
    (dir, server, ep, owner)
}

#[tokio::test]
async fn edits_are_optimistic_and_every_revision_is_kept() {
    let (_dir, server, _ep, owner) = fresh().await;
    let folder = owner.create_folder("Team", None).await.unwrap();
    let uid = owner
        .add_record(&folder, &login_record("Mail", "one"))
        .await
        .unwrap();
    let first = owner.record(&uid).await.unwrap();
    assert_eq!(first.revision, 1);

    let second = owner
        .update_record(&uid, &login_record("Mail", "two"), 1)
        .await
        .unwrap();
    assert_eq!(second, 2);
    let third = owner
        .update_record(&uid, &login_record("Mail renamed", "three"), 2)
        .await
        .unwrap();
    assert_eq!(third, 3);

    // A stale edit is refused and changes nothing.
    let err = owner
        .update_record(&uid, &login_record("Mail", "stale"), 2)
        .await
        .unwrap_err();
    assert_eq!(server_code(err), "out_of_sync");
    let now = owner.record(&uid).await.unwrap();
    assert_eq!(now.revision, 3);
    assert_eq!(password_of(&now.data), "three");
    assert_eq!(now.data.title, "Mail renamed");

    // History: newest first, every revision with its data and author.
    let history = owner.record_history(&uid).await.unwrap();
    let revisions: Vec<i64> = history.iter().map(|(h, _)| h.revision).collect();
    assert_eq!(revisions, vec![3, 2, 1]);
    let passwords: Vec<&str> = history.iter().map(|(_, d)| password_of(d)).collect();
    assert_eq!(passwords, vec!["three", "two", "one"]);
    assert!(
        history
            .iter()
            .all(|(h, _)| h.actor == format!("owner:{}", owner.owner_uid()))
    );

    // Restore revision 1: its data becomes revision 4.
    let restored = owner.restore_record(&uid, 1).await.unwrap();
    assert_eq!(restored, 4);
    let now = owner.record(&uid).await.unwrap();
    assert_eq!((now.revision, password_of(&now.data)), (4, "one"));
    assert_eq!(now.data.title, "Mail");
    assert_eq!(owner.record_history(&uid).await.unwrap().len(), 4);
    let err = owner.restore_record(&uid, 99).await.unwrap_err();
    assert_eq!(server_code(err), "not_found");
    assert_eq!(owner.record(&uid).await.unwrap().revision, 4);

    let actions: Vec<String> = owner
        .audit(&format!("target={uid}"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        vec![
            "record.restore",
            "record.update",
            "record.update",
            "record.create"
        ]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn attachments_can_be_removed_and_records_deleted() {
    let (dir, server, _ep, owner) = fresh().await;
    let folder = owner.create_folder("Files", None).await.unwrap();
    let uid = owner
        .add_record(&folder, &login_record("Cert", "pw"))
        .await
        .unwrap();
    let keep = owner
        .attach_file(&uid, "keep.pem", "application/x-pem-file", b"keep me")
        .await
        .unwrap();
    let drop = owner
        .attach_file(&uid, "drop.pem", "application/x-pem-file", b"drop me")
        .await
        .unwrap();
    assert!(object_path(dir.path(), &drop).exists());

    let revision = owner.remove_file(&uid, &drop).await.unwrap();
    let record = owner.record(&uid).await.unwrap();
    assert_eq!(record.revision, revision);
    let files: Vec<&str> = record.files.iter().map(|f| f.uid.as_str()).collect();
    assert_eq!(files, vec![keep.as_str()]);
    let refs = &record.data.field("fileRef").unwrap().value;
    assert_eq!(refs, &vec![Value::from(keep.clone())]);
    assert!(!object_path(dir.path(), &drop).exists(), "content deleted");
    assert_eq!(
        owner.download_file(&record.files[0]).await.unwrap(),
        b"keep me"
    );
    assert!(
        owner.remove_file(&uid, &drop).await.is_err(),
        "already gone"
    );

    let removed = owner.delete_record(&uid).await.unwrap();
    assert_eq!(removed.records, vec![uid.clone()]);
    assert_eq!(removed.files, vec![keep.clone()]);
    assert!(!object_path(dir.path(), &keep).exists());
    assert!(owner.records().await.unwrap().is_empty());
    assert_eq!(
        server_code(owner.delete_record(&uid).await.unwrap_err()),
        "not_found"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn folders_rename_and_delete_only_with_force_when_not_empty() {
    let (_dir, server, _ep, owner) = fresh().await;
    let root = owner.create_folder("Root", None).await.unwrap();
    let sub = owner.create_folder("Sub", Some(&root)).await.unwrap();
    let leaf = owner.create_folder("Leaf", Some(&sub)).await.unwrap();
    let in_leaf = owner
        .add_record(&leaf, &login_record("Deep", "x"))
        .await
        .unwrap();
    let in_root = owner
        .add_record(&root, &login_record("Top", "y"))
        .await
        .unwrap();

    owner.rename_folder(&sub, "Sub renamed").await.unwrap();
    let names: Vec<(String, String)> = owner
        .folders()
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.uid, f.name))
        .collect();
    assert!(names.contains(&(sub.clone(), "Sub renamed".into())));

    let err = owner.delete_folder(&sub, false).await.unwrap_err();
    assert_eq!(server_code(err), "bad_request");
    assert_eq!(owner.folders().await.unwrap().len(), 3, "nothing deleted");

    let removed = owner.delete_folder(&sub, true).await.unwrap();
    let mut folders = removed.folders.clone();
    folders.sort();
    let mut expected = vec![sub.clone(), leaf.clone()];
    expected.sort();
    assert_eq!(folders, expected);
    assert_eq!(removed.records, vec![in_leaf]);
    let left: Vec<String> = owner
        .records()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uid)
        .collect();
    assert_eq!(left, vec![in_root]);
    let left: Vec<String> = owner
        .folders()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.uid)
        .collect();
    assert_eq!(left, vec![root.clone()]);

    let empty = owner.create_folder("Empty", None).await.unwrap();
    owner.delete_folder(&empty, false).await.unwrap();
    assert_eq!(owner.folders().await.unwrap().len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unsharing_and_toggling_editable_take_effect_at_once() {
    let (_dir, server, ep, owner) = fresh().await;
    let folder = owner.create_folder("Shared", None).await.unwrap();
    let uid = owner
        .add_record(&folder, &login_record("Db", "pw"))
        .await
        .unwrap();
    let app = owner.create_app("Ops").await.unwrap();
    owner.share(&app, &folder, false).await.unwrap();
    let token = owner
        .add_client(
            &app,
            &NewClientOptions {
                unlock_ip: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut device = Ksm::from_config(&token.config, &ep.cert_path);
    device.bind().await;

    let visible = device.get_secret(json!({})).await.unwrap();
    assert_eq!(visible["folders"][0]["isEditable"], false);
    assert_eq!(
        visible["folders"][0]["records"][0]["recordUid"],
        uid.as_str()
    );

    owner.share(&app, &folder, true).await.unwrap();
    let visible = device.get_secret(json!({})).await.unwrap();
    assert_eq!(visible["folders"][0]["isEditable"], true);
    assert_eq!(visible["folders"][0]["records"][0]["isEditable"], true);

    owner.unshare(&app, &folder).await.unwrap();
    let visible = device.get_secret(json!({})).await.unwrap();
    assert_eq!(visible["folders"], json!([]));
    assert_eq!(visible["records"], json!([]));
    let filtered = device
        .get_secret(json!({ "requestedRecords": [uid] }))
        .await
        .unwrap();
    assert_eq!(filtered["warnings"].as_array().map(Vec::len), Some(1));
    assert!(owner.unshare(&app, &folder).await.is_err(), "no share left");
    server.shutdown().await.unwrap();
}

/// The owner client checks what the server says about the account before using it: the
/// public key devices wrap new records to must belong to the account's private key, and the
/// key-derivation parameters must be within bounds (cheap ones would make the auth key sent
/// at login cheap to brute-force).
#[tokio::test]
async fn login_refuses_a_tampered_public_key_or_weak_kdf_parameters() {
    let (dir, _server, ep, _owner) = fresh().await;
    let db = rusqlite::Connection::open(dir.path().join("coffer.db")).unwrap();
    let (public_key, kdf): (Vec<u8>, String) = db
        .query_row("SELECT public_key, kdf FROM owners", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    let login = || {
        Session::login(
            ep.owner_client(),
            common::OWNER_EMAIL,
            common::OWNER_PASSWORD,
        )
    };

    let intruder = coffer_crypto::KeyPair::generate();
    db.execute(
        "UPDATE owners SET public_key = ?",
        [intruder.public_key().as_bytes().to_vec()],
    )
    .unwrap();
    let err = login().await.err().expect("refused");
    assert!(err.to_string().contains("does not match"), "{err}");

    db.execute("UPDATE owners SET public_key = ?", [public_key])
        .unwrap();
    let mut weak: Value = serde_json::from_str(&kdf).unwrap();
    weak["memory_kib"] = json!(8);
    weak["iterations"] = json!(1);
    db.execute("UPDATE owners SET kdf = ?", [weak.to_string()])
        .unwrap();
    let err = login().await.err().expect("refused");
    assert!(
        err.to_string().contains("outside the accepted bounds"),
        "{err}"
    );

    db.execute("UPDATE owners SET kdf = ?", [kdf]).unwrap();
    login().await.expect("the untouched account logs in");
}
