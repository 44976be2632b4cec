//! Reading against a real Coffer server on 127.0.0.1: binding, configuration storage,
//! get_secrets and its filters, typed fields, notation, TOTP, files, folders, refusals, the
//! offline cache and the blocking wrapper.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_sdk::config::keys;
use coffer_sdk::{
    CacheOptions, FileStorage, MemoryStorage, NotationValue, QueryOptions, SdkError,
    SecretsManager, fields, values,
};
use common::{fixture, start};
use serde_json::json;

#[tokio::test]
async fn binds_on_first_use_then_reads_every_shared_record() {
    let server = start().await;
    let fx = fixture(&server).await;
    let app = server
        .app("Reader", &[(&fx.folder, false), (&fx.direct, false)])
        .await;
    let client = server.client(&app).await;
    let storage = Arc::new(MemoryStorage::new());
    let sm = server
        .builder()
        .token(client.token.clone())
        .hostname(format!("127.0.0.1:{}", server.port))
        .server_public_key(
            server.server.as_ref().unwrap().public_key.clone(),
            server.server.as_ref().unwrap().key_id.to_string(),
        )
        .storage(storage.clone())
        .build()
        .unwrap();
    // Initialised, not bound: device key and client id are there, the app key is not.
    let config = storage.snapshot();
    assert_eq!(config.get(keys::CLIENT_ID), Some(client.client_id.as_str()));
    assert!(config.get(keys::PRIVATE_KEY).is_some());
    assert!(config.get(keys::APP_KEY).is_none());
    assert!(!sm.is_bound());

    let secrets = sm.get_all_secrets().await.unwrap();
    assert!(sm.is_bound());
    let config = storage.snapshot();
    assert!(config.get(keys::APP_KEY).is_some());
    assert!(config.get(keys::OWNER_PUBLIC_KEY).is_some());
    assert_eq!(
        config.get(keys::CLIENT_KEY),
        None,
        "clientKey is dropped after binding"
    );
    assert!(!secrets.from_cache());
    assert_eq!(secrets.app.as_ref().unwrap().title, "Reader");
    assert_eq!(secrets.app.as_ref().unwrap().app_type, "app");
    assert!(secrets.bad_records.is_empty());

    let mut titles: Vec<&str> = secrets.iter().map(|r| r.title()).collect();
    titles.sort_unstable();
    assert_eq!(
        titles,
        [
            "Contact Card",
            "DB/Primary [eu]",
            "Direct Secret",
            "Duplicate",
            "Duplicate",
            "Home Address",
            "Web Login"
        ]
    );
    let direct = secrets.iter().find(|r| r.uid() == fx.direct).unwrap();
    assert_eq!(direct.folder_uid(), None);
    assert_eq!(direct.password(), Some("direct-pass"));
    assert!(!direct.is_editable());
    let db = secrets.iter().find(|r| r.uid() == fx.db).unwrap();
    assert_eq!(db.folder_uid(), Some(fx.folder.as_str()));
    assert_eq!(db.inner_folder_uid(), Some(fx.subfolder.as_str()));
    let web = secrets.iter().find(|r| r.uid() == fx.web_login).unwrap();
    assert_eq!(web.inner_folder_uid(), None);
    assert!(web.revision() > 0);
    assert_eq!(web.files().len(), 1);
    assert_eq!(web.files()[0].name(), "hello.txt");
    assert_eq!(web.files()[0].size(), Some(14));
    assert_eq!(web.notes(), Some("Line1\nLine2"));

    // A second client on the same storage is already bound: no token needed.
    let again = server.builder().storage(storage.clone()).build().unwrap();
    assert!(again.is_bound());
    assert_eq!(again.get_secrets(&[&fx.db]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_first_calls_bind_exactly_once() {
    let server = start().await;
    let fx = fixture(&server).await;
    let app = server.app("Parallel", &[(&fx.folder, false)]).await;
    let client = server.client(&app).await;
    let sm = server.sdk(&client);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let sm = sm.clone();
        tasks.push(tokio::spawn(async move {
            sm.get_all_secrets().await.map(|s| s.len())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 6);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn configuration_file_is_private_and_reusable() {
    use std::os::unix::fs::PermissionsExt;
    let server = start().await;
    let fx = fixture(&server).await;
    let app = server.app("File", &[(&fx.folder, false)]).await;
    let client = server.client(&app).await;
    let path = server.dir.path().join("client").join("ksm-config.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Seed the file with the owner's config (hostname, clientKey, server key).
    let seeded = coffer_sdk::Config::parse(&client.config).unwrap();
    std::fs::write(&path, seeded.to_json_pretty()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sm = server
        .builder()
        .storage(FileStorage::new(&path))
        .build()
        .unwrap();
    assert_eq!(sm.get_all_secrets().await.unwrap().len(), 6);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"appKey\"") && text.starts_with("{\n    \""));
    assert!(!text.contains("clientKey"));
    // A new process reads it back, bound.
    let reused = server
        .builder()
        .storage(FileStorage::new(&path))
        .build()
        .unwrap();
    assert!(reused.is_bound());
    assert_eq!(reused.get_secrets(&[&fx.web_login]).await.unwrap().len(), 1);
    // World-readable: refused unless allowed.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = server.builder().storage(FileStorage::new(&path)).build();
    assert!(matches!(refused, Err(SdkError::Config(_))));
    let allowed = server
        .builder()
        .storage(FileStorage::new(&path).allow_insecure_permissions(true))
        .build()
        .unwrap();
    assert_eq!(allowed.get_all_secrets().await.unwrap().len(), 6);
}

#[tokio::test]
async fn filters_titles_and_warnings() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server
        .sdk_for(&[(&fx.folder, false), (&fx.direct, false)])
        .await;

    let one = sm.get_secrets(&[&fx.db]).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].title(), "DB/Primary [eu]");
    assert!(one.warnings.is_empty());

    let missing = "AAAAAAAAAAAAAAAAAAAAAB";
    let some = sm.get_secrets(&[&fx.direct, missing]).await.unwrap();
    assert_eq!(some.len(), 1);
    assert_eq!(some.warnings.len(), 1);
    assert!(some.warnings[0].contains(missing));

    // Folder filter: the sub-folder only.
    let sub = sm
        .get_secrets_with_options(&QueryOptions {
            folders_filter: vec![fx.subfolder.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        sub.iter().map(|r| r.uid()).collect::<Vec<_>>(),
        [fx.db.as_str()]
    );

    // Links on request.
    let linked = sm
        .get_secrets_with_options(&QueryOptions {
            records_filter: vec![fx.web_login.clone()],
            request_links: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(linked[0].links().is_some());
    assert!(one[0].links().is_none());

    let dups = sm.get_secrets_by_title("Duplicate").await.unwrap();
    assert_eq!(dups.len(), 2);
    let web = sm.get_secret_by_title("Web Login").await.unwrap().unwrap();
    assert_eq!(web.uid(), fx.web_login);
    assert!(sm.get_secret_by_title("web login").await.unwrap().is_none());
}

#[tokio::test]
async fn typed_and_untyped_field_access_on_server_records() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server.sdk_for(&[(&fx.folder, false)]).await;
    let secrets = sm.get_secrets(&[&fx.web_login, &fx.db]).await.unwrap();
    let web = secrets.iter().find(|r| r.uid() == fx.web_login).unwrap();
    let db = secrets.iter().find(|r| r.uid() == fx.db).unwrap();

    assert_eq!(web.record_type(), "login");
    assert_eq!(
        web.get_one::<fields::Login>().unwrap().unwrap(),
        "alice@example.com"
    );
    assert_eq!(web.get::<fields::Url>().unwrap().len(), 2);
    assert_eq!(
        web.get::<fields::FileRef>().unwrap(),
        vec![fx.file_uid.clone()]
    );
    let phones: Vec<values::Phone> = web.get_custom::<fields::Phone>("Phones").unwrap();
    assert_eq!(phones[1].number.as_deref(), Some("555-0199"));
    assert_eq!(phones[0].r#type.as_deref(), Some("Work"));
    let owner = web
        .get_custom_one::<fields::Name>("Owner")
        .unwrap()
        .unwrap();
    assert_eq!(owner.first.as_deref(), Some("Jane"));
    assert_eq!(
        web.custom_field_value("Environment").unwrap().unwrap(),
        &json!("prod")
    );
    assert_eq!(web.field_values("url").unwrap()[1], "https://b.example.com");
    // Lookup by label first: the `text` field labelled "type".
    assert_eq!(db.field_value("type").unwrap().unwrap(), "postgresql");
    let host = db.get_one::<fields::Host>().unwrap().unwrap();
    assert_eq!(
        (host.host_name.as_deref(), host.port.as_deref()),
        (Some("db.internal"), Some("5432"))
    );
    assert!(db.get::<fields::OneTimeCode>().is_err());

    let uri = web.get_one::<fields::OneTimeCode>().unwrap().unwrap();
    let code = coffer_sdk::get_totp_code(&uri).unwrap();
    assert_eq!(code.code.len(), 6);
    assert!((1..=30).contains(&code.time_left));
    let at = coffer_sdk::get_totp_code_at(&uri, 1_700_000_000).unwrap();
    assert_eq!(at.code, "324550");
}

#[tokio::test]
async fn notation_matches_the_protocol_table() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server.sdk_for(&[(&fx.folder, false)]).await;
    let w = &fx.web_login;
    let cases: Vec<(String, Vec<&str>)> = vec![
        (format!("keeper://{w}/type"), vec!["login"]),
        (format!("{w}/title"), vec!["Web Login"]),
        (format!("{w}/notes"), vec!["Line1\nLine2"]),
        (format!("KEEPER://{w}/TYPE"), vec!["login"]),
        (
            "keeper://Web Login/field/login".into(),
            vec!["alice@example.com"],
        ),
        (
            format!("{w}/field/url"),
            vec!["https://a.example.com", "https://b.example.com"],
        ),
        (
            format!("{w}/field/url[]"),
            vec!["https://a.example.com", "https://b.example.com"],
        ),
        (format!("{w}/field/url[1]"), vec!["https://b.example.com"]),
        (format!("{w}/field/password[0]"), vec!["S3cr3t!pass"]),
        (format!("{w}/custom_field/Environment"), vec!["prod"]),
        (
            format!("{w}/custom_field/Owner"),
            vec![r#"{"first":"Jane","last":"Doe","middle":"Q"}"#],
        ),
        (
            format!("{w}/custom_field/Owner[0]"),
            vec![r#"{"first":"Jane","last":"Doe","middle":"Q"}"#],
        ),
        (
            format!("{w}/custom_field/Owner[][]"),
            vec![r#"{"first":"Jane","last":"Doe","middle":"Q"}"#],
        ),
        (format!("{w}/custom_field/Owner[0][first]"), vec!["Jane"]),
        (format!("{w}/custom_field/Owner[][last]"), vec!["Doe"]),
        (format!("{w}/custom_field/Owner[0][nick]"), vec![]),
        (
            format!("{w}/custom_field/Phones"),
            vec![
                r#"{"ext":"1","number":"555-0100","region":"US","type":"Work"}"#,
                r#"{"number":"555-0199","type":"Mobile"}"#,
            ],
        ),
        (
            format!("{w}/custom_field/Phones[][number]"),
            vec!["555-0100", "555-0199"],
        ),
        (format!("{w}/custom_field/Phones[1][ext]"), vec![]),
        (format!("{w}/custom_field/phone[0][region]"), vec!["US"]),
        (
            format!(r"{w}/custom_field/Path\/With \[Brackets\]"),
            vec!["escaped-label-value"],
        ),
        (
            format!("{w}/field/oneTimeCode"),
            vec!["otpauth://totp/Example:alice@example.com?secret=JBSWY3DPEHPK3PXP&issuer=Example"],
        ),
        (format!("{w}/file/hello.txt"), vec!["SGVsbG8sIEtlZXBlciE"]),
        (
            format!("{w}/file/{}", fx.file_uid),
            vec!["SGVsbG8sIEtlZXBlciE"],
        ),
        (
            r"keeper://DB\/Primary \[eu\]/field/host[0][hostName]".into(),
            vec!["db.internal"],
        ),
        (
            r"DB\/Primary \[eu\]/field/host".into(),
            vec![r#"{"hostName":"db.internal","port":"5432"}"#],
        ),
        (
            r"keeper://DB\/Primary \[eu\]/field/type".into(),
            vec!["postgresql"],
        ),
        (
            r"keeper://DB\/Primary \[eu\]/field/host[0][port]".into(),
            vec!["5432"],
        ),
    ];
    // Objects print as compact JSON in the key order of the stored record JSON (the owner
    // library writes keys sorted; the order-preserving rendering itself is unit-tested).
    for (notation, want) in &cases {
        let got = sm
            .get_notation(notation)
            .await
            .unwrap_or_else(|e| panic!("{notation}: {e}"));
        assert_eq!(&got, want, "{notation}");
    }
    // The base64 form of `keeper://<uid>/field/login`.
    let b64 = coffer_crypto::encode_std(format!("keeper://{w}/field/login").as_bytes())
        .replace('+', "-")
        .replace('/', "_");
    assert_eq!(sm.get_notation(&b64).await.unwrap(), ["alice@example.com"]);

    let errors: Vec<(String, &str)> = vec![
        (
            format!("{w}/field/url[2]"),
            "Field index out of bounds 2 >= 2 for field 'url'",
        ),
        (format!("{w}/field/Login"), "no fields matching 'Login'"),
        (
            format!("{w}/custom_field/Owner[first]"),
            "first index must be numeric",
        ),
        (
            format!("{w}/custom_field/Path/With [Brackets]"),
            "first index must be numeric",
        ),
        (
            format!("{w}/file/hello.txt[0]"),
            "file selectors don't accept indexes",
        ),
        (
            "Duplicate/field/login".into(),
            "multiple records match record 'Duplicate'",
        ),
        (
            "NoSuchTitle/field/login".into(),
            "no records match record 'NoSuchTitle'",
        ),
        (
            format!("{w}/fields/login"),
            "extra characters after last section",
        ),
        (format!("{w}/field"), "require parameters"),
        (
            format!("{w}/type/extra"),
            "extra characters after last section",
        ),
        (
            format!("{w}/field/login[0][x][y]"),
            "extra characters after last section",
        ),
        (format!("{w}/field/url[-1]"), "first index must be numeric"),
        (
            format!(r"{w}\x/title"),
            "Incorrect escape sequence at position 22",
        ),
        (format!("{w}/file/nothing.txt"), "no files matching"),
    ];
    for (notation, want) in &errors {
        match sm.get_notation(notation).await {
            Err(SdkError::Notation(msg)) => assert!(msg.contains(want), "{notation}: {msg}"),
            other => panic!("{notation}: expected a notation error, got {other:?}"),
        }
    }
    assert!(
        sm.try_get_notation(&format!("{w}/field/url[2]"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn legacy_notation_values_and_inflation() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server.sdk_for(&[(&fx.folder, false)]).await;
    let w = &fx.web_login;
    let value = |v: serde_json::Value| NotationValue::Value(v);
    let cases: Vec<(String, NotationValue)> = vec![
        (
            format!("{w}/field/login"),
            value(json!("alice@example.com")),
        ),
        (
            format!("{w}/field/url"),
            value(json!("https://a.example.com")),
        ),
        (
            format!("{w}/field/url[]"),
            value(json!(["https://a.example.com", "https://b.example.com"])),
        ),
        (
            format!("{w}/field/url[1]"),
            value(json!("https://b.example.com")),
        ),
        (
            format!("{w}/field/Login"),
            value(json!("alice@example.com")),
        ),
        (
            format!("{w}/custom_field/Owner"),
            value(json!({"first": "Jane", "middle": "Q", "last": "Doe"})),
        ),
        (
            format!("{w}/custom_field/Owner[first]"),
            value(json!("Jane")),
        ),
        (
            format!("{w}/custom_field/Owner[0][last]"),
            value(json!("Doe")),
        ),
        (
            format!("{w}/custom_field/Phones[1]"),
            value(json!({"number": "555-0199", "type": "Mobile"})),
        ),
        (
            format!("{w}/custom_field/Phones[1][number]"),
            value(json!("555-0199")),
        ),
        (
            format!("{w}/file/hello.txt"),
            NotationValue::File(b"Hello, Keeper!".to_vec()),
        ),
        (format!("{w}/type"), value(json!("login"))),
        (format!("{w}/notes"), value(json!("Line1\nLine2"))),
        (
            format!("{}/field/addressRef", fx.card_holder),
            value(
                json!({"street1": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701", "country": "US"}),
            ),
        ),
        (
            format!("{}/field/addressRef[0][city]", fx.card_holder),
            value(json!("Springfield")),
        ),
    ];
    for (notation, want) in &cases {
        let got = sm
            .get_notation_value(notation)
            .await
            .unwrap_or_else(|e| panic!("{notation}: {e}"));
        assert_eq!(&got, want, "{notation}");
    }
    for (notation, want) in [
        (
            format!("{w}/field/url[5]"),
            "The value at index 5 does not exist",
        ),
        (
            format!("{w}/custom_field/phones"),
            "Cannot find custom field 'phones'",
        ),
    ] {
        let err = sm
            .get_notation_value(&notation)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{notation}: {err}");
    }
}

#[tokio::test]
async fn files_download_to_memory_and_disk_with_progress() {
    let server = start().await;
    let fx = fixture(&server).await;
    let sm = server.sdk_for(&[(&fx.folder, false)]).await;
    let web = sm.get_secrets(&[&fx.web_login]).await.unwrap().remove(0);
    let file = web.file("hello.txt").unwrap();
    assert_eq!(file.uid(), fx.file_uid);
    assert_eq!(file.mime_type(), Some("text/plain"));
    assert!(web.file(&fx.file_uid).is_some());
    assert_eq!(sm.download_file(file).await.unwrap(), b"Hello, Keeper!");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let bytes = sm
        .download_file_with_progress(file, Box::new(move |p| sink.lock().unwrap().push(p)))
        .await
        .unwrap();
    assert_eq!(bytes, b"Hello, Keeper!");
    let last = *seen.lock().unwrap().last().unwrap();
    assert_eq!(last.done, 14 + 28);
    assert_eq!(last.total, Some(14 + 28));

    let target = server.dir.path().join("out").join("deep").join("hello.txt");
    assert!(
        sm.save_file(file, &target, false).await.is_err(),
        "no parent dirs without create_folders"
    );
    sm.save_file(file, &target, true).await.unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"Hello, Keeper!");
    assert!(sm.download_thumbnail(file).await.is_err());

    // A file bigger than the configured maximum is refused before any transfer.
    let app = server.app("small downloads", &[(&fx.folder, false)]).await;
    let client = server.client(&app).await;
    let small = server
        .builder()
        .storage(MemoryStorage::from_text(&client.config).unwrap())
        .max_download_size(41)
        .build()
        .unwrap();
    let web = small.get_secrets(&[&fx.web_login]).await.unwrap().remove(0);
    let file = web.file("hello.txt").unwrap();
    let refused = server.dir.path().join("refused.txt");
    match small.save_file(file, &refused, true).await {
        Err(SdkError::DownloadTooLarge { limit: 41, reason }) => {
            assert!(reason.contains("14 bytes"), "{reason}");
        }
        other => panic!("expected DownloadTooLarge, got {other:?}"),
    }
    assert!(!refused.exists());
}

#[tokio::test]
async fn folders_are_listed_with_names_and_tree() {
    let server = start().await;
    let fx = fixture(&server).await;
    let deeper = server
        .session
        .create_folder("Deeper", Some(&fx.subfolder))
        .await
        .unwrap();
    let sm = server.sdk_for(&[(&fx.folder, false)]).await;
    let folders = sm.get_folders().await.unwrap();
    assert!(!folders.from_cache());
    assert_eq!(folders.len(), 3);
    let by_uid = |uid: &str| folders.iter().find(|f| f.uid() == uid).unwrap();
    let root = by_uid(&fx.folder);
    assert!(root.is_shared_folder());
    assert_eq!(root.name(), "Shared");
    let sub = by_uid(&fx.subfolder);
    assert_eq!(
        (sub.name(), sub.parent_uid()),
        ("Databases", Some(fx.folder.as_str()))
    );
    let deep = by_uid(&deeper);
    assert_eq!(deep.parent_uid(), Some(fx.subfolder.as_str()));
    assert_eq!(deep.shared_folder_uid(), fx.folder);
    assert_eq!(deep.name(), "Deeper");
    assert!(folders.iter().all(|f| f.uid() != fx.private_folder));
}

#[tokio::test]
async fn refusals_are_reported_clearly() {
    let server = start().await;
    let fx = fixture(&server).await;
    let app = server.app("Refusals", &[(&fx.folder, false)]).await;
    let client = server.client(&app).await;

    // A token binds once: a second device with the same token is refused.
    let first = server.sdk(&client);
    first.get_all_secrets().await.unwrap();
    let second = server.sdk(&client);
    match second.get_all_secrets().await {
        Err(SdkError::Binding(msg)) => assert!(msg.contains("access_denied"), "{msg}"),
        other => panic!("expected a binding refusal, got {other:?}"),
    }

    // A wrong server public key: the server cannot read the request.
    let other_key = coffer_crypto::KeyPair::generate();
    let wrong = server
        .builder()
        .config_text(&server.client(&app).await.config)
        .unwrap()
        .server_public_key(
            coffer_crypto::encode_url(other_key.public_key().as_bytes()),
            "1",
        )
        .build()
        .unwrap();
    match wrong.get_all_secrets().await {
        Err(SdkError::Binding(msg)) => assert!(msg.contains("access_denied"), "{msg}"),
        other => panic!("expected access_denied, got {other:?}"),
    }

    // A revoked device.
    server
        .session
        .remove_client(&app, &client.client_id)
        .await
        .unwrap();
    match first.get_all_secrets().await {
        Err(err @ SdkError::Server { .. }) => {
            assert_eq!(err.code(), Some("access_denied"));
            assert!(!err.is_unavailable());
        }
        other => panic!("expected access_denied, got {other:?}"),
    }

    // No configuration and no token.
    let empty = server.builder().storage(MemoryStorage::new()).build();
    assert!(matches!(empty, Err(SdkError::Config(_))));
}

#[tokio::test]
async fn offline_cache_answers_only_the_same_request_when_the_server_is_down() {
    let mut server = start().await;
    let fx = fixture(&server).await;
    let app = server.app("Cache", &[(&fx.folder, false)]).await;
    let client = server.client(&app).await;
    let cache_path = server.dir.path().join("ksm-cache.json");
    let sm = server
        .builder()
        .config_text(&client.config)
        .unwrap()
        .cache(CacheOptions::file(&cache_path).max_age(Duration::from_secs(3600)))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let live = sm.get_all_secrets().await.unwrap();
    assert!(!live.from_cache());
    let one = sm.get_secrets(&[&fx.db]).await.unwrap();
    assert_eq!(one.len(), 1);
    let folders = sm.get_folders().await.unwrap();
    let cached_file = std::fs::read_to_string(&cache_path).unwrap();
    assert!(!cached_file.contains("Web Login") && !cached_file.contains(&fx.web_login));

    server.stop().await;

    let offline = sm.get_all_secrets().await.unwrap();
    assert!(offline.from_cache());
    assert!(offline.cached.unwrap().age < Duration::from_secs(600));
    assert_eq!(offline.len(), live.len());
    let offline_one = sm.get_secrets(&[&fx.db]).await.unwrap();
    assert!(offline_one.from_cache());
    assert_eq!(offline_one[0].uid(), fx.db);
    let offline_folders = sm.get_folders().await.unwrap();
    assert!(offline_folders.from_cache());
    assert_eq!(offline_folders.len(), folders.len());
    // A request never made while online is not answered from another request's entry.
    match sm.get_secrets(&[&fx.web_login]).await {
        Err(err) => assert!(err.is_unavailable(), "{err}"),
        Ok(_) => panic!("a different request must not be answered from the cache"),
    }
    // Writes are never answered from the cache.
    let mut record = offline_one.into_records().remove(0);
    record.set_title("changed offline");
    assert!(sm.save(&mut record).await.unwrap_err().is_unavailable());
    // Past the maximum age: not used.
    let strict = server
        .builder()
        .storage(MemoryStorage::from_config(sm.config()))
        .cache(CacheOptions::file(&cache_path).max_age(Duration::ZERO))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(strict.get_all_secrets().await.is_err());
    // Another process with the same configuration and cache file still reads offline.
    let restarted = server
        .builder()
        .storage(MemoryStorage::from_config(sm.config()))
        .cache(CacheOptions::file(&cache_path))
        .build()
        .unwrap();
    assert!(restarted.get_all_secrets().await.unwrap().from_cache());
    // Without a cache the error surfaces.
    let uncached = server
        .builder()
        .storage(MemoryStorage::from_config(sm.config()))
        .build()
        .unwrap();
    assert!(matches!(
        uncached.get_all_secrets().await,
        Err(SdkError::Network(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_wrapper_reads_and_notates() {
    let server = start().await;
    let fx = fixture(&server).await;
    let app = server.app("Blocking", &[(&fx.folder, false)]).await;
    let client = server.client(&app).await;
    let builder = server.builder().config_text(&client.config).unwrap();
    let web = fx.web_login.clone();
    let result = std::thread::spawn(move || {
        let sm = coffer_sdk::blocking::SecretsManager::from_builder(builder)?;
        let all = sm.get_secrets(&[])?.len();
        let password = sm.get_notation(&format!("{web}/field/password"))?;
        let folders = sm.get_folders()?.len();
        let by_title = sm
            .get_secret_by_title("Web Login")?
            .map(|r| r.uid().to_owned());
        Ok::<_, SdkError>((all, password, folders, by_title))
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(result.0, 6);
    assert_eq!(result.1, ["S3cr3t!pass"]);
    assert_eq!(result.2, 2);
    assert_eq!(result.3.as_deref(), Some(fx.web_login.as_str()));
}

#[tokio::test]
async fn a_one_time_token_with_host_prefix_works_for_a_server_on_another_port() {
    let server = start().await;
    let fx = fixture(&server).await;
    let app = server.app("Token", &[(&fx.folder, false)]).await;
    let client = server.client(&app).await;
    // The owner's config carries the host with port and the server key; the token only
    // `127.0.0.1:KEY`. Using the token on top of a config that already names the host keeps
    // the port.
    let mut seed = coffer_sdk::Config::parse(&client.config).unwrap();
    seed.remove(keys::CLIENT_KEY);
    let sm = SecretsManager::builder()
        .tls(coffer_sdk::Tls::ExtraCaFile(server.ca.clone()))
        .use_env(false)
        .storage(MemoryStorage::from_config(seed))
        .token(client.token.clone())
        .build()
        .unwrap();
    assert_eq!(
        sm.config().get(keys::HOSTNAME),
        Some(format!("127.0.0.1:{}", server.port).as_str())
    );
    assert_eq!(sm.get_all_secrets().await.unwrap().len(), 6);
}
