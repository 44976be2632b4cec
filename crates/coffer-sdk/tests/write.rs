//! Writing against a real Coffer server on 127.0.0.1: save (revision refresh, stale
//! revisions, permissions, unknown data preserved), transactions, create (every standard
//! record type, sub-folders), delete, folders, file upload.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use coffer_sdk::{
    CreateOptions, FileUpload, RecordCreate, SaveOptions, SdkError, TransactionType, fields, values,
};
use common::{fixture, record, start};
use serde_json::json;

#[tokio::test]
async fn save_writes_refreshes_the_revision_and_keeps_unknown_data() {
    let server = start().await;
    let fx = fixture(&server).await;
    let extra = record(json!({
        "title": "With extras", "type": "login",
        "fields": [
            {"type": "login", "value": ["u"]},
            {"type": "password", "value": ["p1"], "required": true, "privacyScreen": true,
             "complexity": {"length": 20, "caps": 1, "lowercase": 1, "digits": 1, "special": 1}},
            {"type": "someFutureType", "value": [{"x": 1}]}
        ],
        "custom": [],
        "futureKey": {"nested": [1, 2]}
    }));
    let uid = server.session.add_record(&fx.folder, &extra).await.unwrap();
    let sm = server.sdk_for(&[(&fx.folder, true)]).await;
    let mut rec = sm.get_secrets(&[&uid]).await.unwrap().remove(0);
    assert!(rec.is_editable());
    let first_revision = rec.revision();

    rec.set_one::<fields::Password>("p2".into());
    rec.set_custom::<fields::Text>("Environment", ["prod".to_owned()]);
    sm.save(&mut rec).await.unwrap();
    assert!(
        rec.revision() > first_revision,
        "the revision is refreshed after a save"
    );
    // The refreshed revision makes a second save of the same object work.
    rec.set_one::<fields::Password>("p3".into());
    rec.set_notes(Some("second save".into()));
    sm.save(&mut rec).await.unwrap();

    let back = sm.get_secrets(&[&uid]).await.unwrap().remove(0);
    assert_eq!(back.password(), Some("p3"));
    assert_eq!(back.notes(), Some("second save"));
    assert_eq!(back.revision(), rec.revision());
    let json: serde_json::Value = serde_json::from_slice(back.raw_json()).unwrap();
    assert_eq!(json["futureKey"], json!({"nested": [1, 2]}));
    assert_eq!(json["fields"][1]["required"], true);
    assert_eq!(json["fields"][1]["complexity"]["length"], 20);
    assert_eq!(json["fields"][2]["type"], "someFutureType");
    assert_eq!(json["custom"][0]["label"], "Environment");
    // Also visible to the owner.
    let owner_view = server.session.record(&uid).await.unwrap();
    assert_eq!(owner_view.data.field("password").unwrap().value[0], "p3");
}

#[tokio::test]
async fn stale_revisions_and_read_only_shares_are_refused() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server
        .sdk_for(&[(&fx.folder, true), (&fx.direct, false)])
        .await;
    let mut a = sm.get_secrets(&[&fx.web_login]).await.unwrap().remove(0);
    let mut b = a.clone();
    a.set_title("first writer");
    sm.save(&mut a).await.unwrap();
    b.set_title("second writer");
    let err = sm.save(&mut b).await.unwrap_err();
    assert!(err.is_out_of_sync(), "{err}");
    assert!(err.to_string().contains(&fx.web_login), "{err}");
    // After a refresh it goes through.
    sm.refresh(&mut b).await.unwrap();
    assert_eq!(b.title(), "first writer");
    b.set_title("second writer");
    sm.save(&mut b).await.unwrap();

    let mut direct = sm.get_secrets(&[&fx.direct]).await.unwrap().remove(0);
    assert!(!direct.is_editable());
    direct.set_title("not allowed");
    let err = sm.save(&mut direct).await.unwrap_err();
    assert_eq!(err.code(), Some("access_denied"), "{err}");
}

#[tokio::test]
async fn transactions_roll_back_and_commit() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server.sdk_for(&[(&fx.folder, true)]).await;
    let mut rec = sm.get_secrets(&[&fx.web_login]).await.unwrap().remove(0);
    let rotation = SaveOptions {
        transaction_type: Some(TransactionType::Rotation),
        ..Default::default()
    };
    rec.set_one::<fields::Password>("rotated-1".into());
    sm.save_with_options(&mut rec, &rotation).await.unwrap();
    sm.complete_transaction(&fx.web_login, true).await.unwrap();
    let rolled_back = sm.get_secrets(&[&fx.web_login]).await.unwrap().remove(0);
    assert_eq!(rolled_back.password(), Some("S3cr3t!pass"));

    let mut rec = rolled_back;
    rec.set_one::<fields::Password>("rotated-2".into());
    sm.save_with_options(
        &mut rec,
        &SaveOptions {
            transaction_type: Some(TransactionType::General),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    sm.complete_transaction(&fx.web_login, false).await.unwrap();
    let committed = sm.get_secrets(&[&fx.web_login]).await.unwrap().remove(0);
    assert_eq!(committed.password(), Some("rotated-2"));
    // Nothing open any more.
    assert!(sm.complete_transaction(&fx.web_login, true).await.is_err());
}

#[tokio::test]
async fn create_secret_for_every_standard_type_and_in_sub_folders() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server.sdk_for(&[(&fx.folder, true)]).await;

    let login = RecordCreate::login("Created Login")
        .set::<fields::Login>(["svc@example.com".to_owned()])
        .set::<fields::Password>([
            coffer_sdk::generate_password(24, None, None, Some(2), None).unwrap()
        ])
        .set::<fields::Url>(["https://svc.example.com".to_owned()])
        .custom::<fields::Phone>(
            "Support",
            [values::Phone {
                number: Some("555-0000".into()),
                r#type: Some("Work".into()),
                ..Default::default()
            }],
        )
        .notes("made by the SDK");
    let uid = sm.create_secret(&fx.folder, login).await.unwrap();
    assert!(coffer_crypto::is_uid(&uid));
    let created = sm.get_secrets(&[&uid]).await.unwrap().remove(0);
    assert_eq!(created.title(), "Created Login");
    assert_eq!(created.folder_uid(), Some(fx.folder.as_str()));
    assert_eq!(created.inner_folder_uid(), None);
    assert!(created.is_editable());
    assert_eq!(
        created.get_one::<fields::Login>().unwrap().unwrap(),
        "svc@example.com"
    );
    assert_eq!(created.get::<fields::Password>().unwrap()[0].len(), 24);
    assert_eq!(
        created.get_custom::<fields::Phone>("Support").unwrap()[0]
            .number
            .as_deref(),
        Some("555-0000")
    );
    let raw: serde_json::Value = serde_json::from_slice(created.raw_json()).unwrap();
    assert!(raw["custom"].is_array());
    // The owner can read what the app created (owner copy of the key via ECIES).
    let owner_view = server.session.record(&uid).await.unwrap();
    assert_eq!(owner_view.data.title, "Created Login");

    // Into a sub-folder, by naming the sub-folder directly and through options.
    let sub = sm
        .create_secret(&fx.subfolder, RecordCreate::database_credentials("In Sub"))
        .await
        .unwrap();
    let sub2 = sm
        .create_secret_with_options(
            &CreateOptions {
                folder_uid: fx.folder.clone(),
                subfolder_uid: Some(fx.subfolder.clone()),
            },
            RecordCreate::ssh_keys("In Sub 2"),
        )
        .await
        .unwrap();
    for uid in [&sub, &sub2] {
        let r = sm.get_secrets(&[uid]).await.unwrap().remove(0);
        assert_eq!(r.inner_folder_uid(), Some(fx.subfolder.as_str()));
        assert_eq!(r.folder_uid(), Some(fx.folder.as_str()));
    }

    // Every standard record type round-trips through the server.
    for record_type in coffer_sdk::standard_record_types() {
        let record = RecordCreate::template(record_type, &format!("T {record_type}"));
        let expected = record.clone().build().unwrap();
        let uid = sm.create_secret(&fx.folder, record).await.unwrap();
        let back = sm.get_secrets(&[&uid]).await.unwrap().remove(0);
        assert_eq!(back.data(), &expected, "{record_type}");
    }

    // Refusals: unknown folder, bad record.
    let err = sm
        .create_secret("AAAAAAAAAAAAAAAAAAAAAB", RecordCreate::login("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::NotFound(_)), "{err}");
    assert!(
        sm.create_secret(&fx.folder, RecordCreate::login(" "))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn create_secret_needs_an_editable_share() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server.sdk_for(&[(&fx.folder, false)]).await;
    let err = sm
        .create_secret(&fx.folder, RecordCreate::login("nope"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("access_denied"), "{err}");
}

#[tokio::test]
async fn delete_secret_reports_per_record() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server.sdk_for(&[(&fx.folder, true)]).await;
    let before = sm.get_all_secrets().await.unwrap().len();
    let unknown = "AAAAAAAAAAAAAAAAAAAAAB";
    let outcomes = sm
        .delete_secret(&[&fx.duplicates[0], unknown])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 2);
    let ok = outcomes.iter().find(|o| o.uid == fx.duplicates[0]).unwrap();
    assert!(ok.is_ok());
    let bad = outcomes.iter().find(|o| o.uid == unknown).unwrap();
    assert!(!bad.is_ok());
    let after = sm.get_all_secrets().await.unwrap();
    assert_eq!(after.len(), before - 1);
    assert!(after.iter().all(|r| r.uid() != fx.duplicates[0]));
}

#[tokio::test]
async fn folders_are_created_renamed_and_deleted() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server.sdk_for(&[(&fx.folder, true)]).await;
    let top = sm.create_folder(&fx.folder, "Top").await.unwrap();
    let nested = sm.create_folder(&top, "Nested").await.unwrap();
    let folders = sm.get_folders().await.unwrap();
    let find = |uid: &str| folders.iter().find(|f| f.uid() == uid).unwrap().clone();
    assert_eq!(find(&top).name(), "Top");
    assert_eq!(find(&top).parent_uid(), Some(fx.folder.as_str()));
    assert_eq!(find(&nested).parent_uid(), Some(top.as_str()));
    assert_eq!(find(&nested).shared_folder_uid(), fx.folder);

    sm.update_folder(&nested, "Renamed").await.unwrap();
    let renamed = sm.get_folders().await.unwrap();
    assert_eq!(
        renamed.iter().find(|f| f.uid() == nested).unwrap().name(),
        "Renamed"
    );

    // A record inside: a non-forced delete of the parent is refused per item.
    let inside = sm
        .create_secret(&nested, RecordCreate::login("inside"))
        .await
        .unwrap();
    let refused = sm.delete_folder(&[&top], false).await.unwrap();
    assert_eq!(refused.len(), 1);
    assert!(!refused[0].is_ok(), "{refused:?}");
    let forced = sm.delete_folder(&[&top], true).await.unwrap();
    assert!(forced[0].is_ok(), "{forced:?}");
    let left = sm.get_folders().await.unwrap();
    assert!(left.iter().all(|f| f.uid() != top && f.uid() != nested));
    assert!(sm.get_secrets(&[&inside]).await.unwrap().is_empty());

    // An empty folder goes without force.
    let empty = sm.create_folder(&fx.subfolder, "Empty").await.unwrap();
    assert!(sm.delete_folder(&[&empty], false).await.unwrap()[0].is_ok());
    assert!(
        sm.update_folder("AAAAAAAAAAAAAAAAAAAAAB", "x")
            .await
            .is_err()
    );
    assert!(sm.create_folder(&fx.folder, "  ").await.is_err());
}

#[tokio::test]
async fn files_are_uploaded_with_progress_and_detached() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server.sdk_for(&[(&fx.folder, true)]).await;
    let mut rec = sm.get_secrets(&[&fx.db]).await.unwrap().remove(0);
    let revision = rec.revision();

    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let uid = sm
        .upload_file_with_progress(
            &mut rec,
            FileUpload::new("dump.bin", content.clone()).title("Nightly dump"),
            Box::new(move |p| sink.lock().unwrap().push(p)),
        )
        .await
        .unwrap();
    assert!(rec.revision() > revision);
    let file = rec
        .file(&uid)
        .expect("the record is refreshed with the new file")
        .clone();
    assert_eq!(file.title(), "Nightly dump");
    assert_eq!(file.name(), "dump.bin");
    assert_eq!(file.mime_type(), Some("application/octet-stream"));
    assert_eq!(file.size(), Some(content.len() as u64));
    assert_eq!(rec.get::<fields::FileRef>().unwrap(), vec![uid.clone()]);
    {
        let seen = seen.lock().unwrap();
        assert!(seen.len() >= 4, "progress is reported per chunk");
        assert_eq!(seen.last().unwrap().done, content.len() as u64 + 28);
    }
    assert_eq!(sm.download_file(&file).await.unwrap(), content);

    // From a path, MIME type guessed from the name.
    let path = server.dir.path().join("notes.txt");
    std::fs::write(&path, b"plain text").unwrap();
    let second = sm.upload_file_path(&mut rec, &path).await.unwrap();
    let f2 = rec.file(&second).unwrap().clone();
    assert_eq!(
        (f2.name(), f2.mime_type()),
        ("notes.txt", Some("text/plain"))
    );
    assert_eq!(
        sm.get_notation(&format!("{}/file/notes.txt", fx.db))
            .await
            .unwrap(),
        [coffer_crypto::encode_url(b"plain text")]
    );

    // A refused detach (read-only share) leaves the caller's record as it was.
    let ro = server.sdk_for(&[(&fx.folder, false)]).await;
    let mut ro_rec = ro.get_secrets(&[&fx.db]).await.unwrap().remove(0);
    let before = ro_rec.clone();
    let err = ro
        .save_with_options(
            &mut ro_rec,
            &SaveOptions {
                links_to_remove: vec![uid.clone()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("access_denied"), "{err}");
    assert_eq!(
        ro_rec.get::<fields::FileRef>().unwrap(),
        vec![uid.clone(), second.clone()]
    );
    assert_eq!(ro_rec.data(), before.data());
    assert_eq!(ro_rec.files().len(), 2);

    // Detach the first file.
    sm.save_with_options(
        &mut rec,
        &SaveOptions {
            links_to_remove: vec![uid.clone()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let back = sm.get_secrets(&[&fx.db]).await.unwrap().remove(0);
    assert!(back.file(&uid).is_none());
    assert!(back.file(&second).is_some());
    assert_eq!(back.get::<fields::FileRef>().unwrap(), vec![second.clone()]);
}

#[tokio::test]
async fn uploads_need_an_editable_share() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server.sdk_for(&[(&fx.folder, false)]).await;
    let mut rec = sm.get_secrets(&[&fx.db]).await.unwrap().remove(0);
    let err = sm
        .upload_file(&mut rec, FileUpload::new("x.txt", b"x".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("access_denied"), "{err}");
}

/// The timeout bounds API calls and waits for data, not whole file transfers: a transfer that
/// keeps moving completes even when it takes several times the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_transfers_longer_than_the_timeout_complete_while_data_moves() {
    let server = start().await;
    let fx = fixture(&server).await;
    let app = server.app("slow link", &[(&fx.folder, true)]).await;
    let client = server.client(&app).await;
    let timeout = std::time::Duration::from_millis(300);
    let sm = server
        .builder()
        .storage(coffer_sdk::MemoryStorage::from_text(&client.config).unwrap())
        .timeout(timeout)
        .build()
        .unwrap();
    let mut rec = sm.get_secrets(&[&fx.db]).await.unwrap().remove(0);
    let content: Vec<u8> = (0..512 * 1024u32).map(|i| (i % 253) as u8).collect();

    // Every 64 KiB chunk is held back 80 ms: about 0.65 s for the upload.
    let started = std::time::Instant::now();
    let uid = sm
        .upload_file_with_progress(
            &mut rec,
            FileUpload::new("slow.bin", content.clone()),
            Box::new(|_| std::thread::sleep(std::time::Duration::from_millis(80))),
        )
        .await
        .unwrap();
    assert!(started.elapsed() > timeout * 2, "{:?}", started.elapsed());

    // The download is read slowly too: 20 ms after every piece that arrives.
    let file = rec.file(&uid).unwrap().clone();
    let started = std::time::Instant::now();
    let pieces = Arc::new(Mutex::new(0usize));
    let counter = pieces.clone();
    let back = sm
        .download_file_with_progress(
            &file,
            Box::new(move |_| {
                *counter.lock().unwrap() += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }),
        )
        .await
        .unwrap();
    assert_eq!(back, content);
    let pieces = *pieces.lock().unwrap();
    assert!(
        started.elapsed() > timeout || pieces < 16,
        "{pieces} pieces in {:?}",
        started.elapsed()
    );
}
