//! Zero knowledge (DESIGN.md §2): after provisioning and reading secrets whose every name and
//! value carries a sentinel, no byte of the stopped server's data directory (database, WAL,
//! SHM, file store, keys, everything) contains the sentinel, the owner's password or any
//! plaintext key — in UTF-8, UTF-16LE, hex, or base64 (both alphabets, all three alignments).

mod common;

use std::path::{Path, PathBuf};

use coffer_crypto::{SymmetricKey, encode_std, gcm_open};
use coffer_owner::{NewClientOptions, Session};
use coffer_proto::record::{Field, RecordData};
use common::*;
use serde_json::{Value, json};

const SENTINEL: &str = "ZK-SENTINEL-7f3a9c";
const PASSWORD: &str = "pw-ZK-owner-4e1b77d2-horse";

/// The forms a secret could take on disk.
fn text_forms(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut forms = vec![
        ("UTF-8".to_owned(), text.as_bytes().to_vec()),
        (
            "UTF-16LE".to_owned(),
            text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        ),
        (
            "UTF-16BE".to_owned(),
            text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        ),
    ];
    forms.extend(binary_forms(text.as_bytes()));
    forms
}

/// Hex and base64 forms of bytes: for each of the three alignments the base64 characters that
/// depend only on `data`, in the standard and the URL-safe alphabet.
fn binary_forms(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let hex = coffer_crypto::encode_hex(data);
    let mut forms = vec![
        ("hex".to_owned(), hex.clone().into_bytes()),
        ("HEX".to_owned(), hex.to_uppercase().into_bytes()),
    ];
    for align in 0..3usize {
        let mut shifted = vec![0u8; align];
        shifted.extend_from_slice(data);
        let encoded = encode_std(&shifted);
        let start = (8 * align).div_ceil(6);
        let end = 8 * (align + data.len()) / 6;
        let std_form = &encoded[start..end];
        let url_form: String = std_form
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        forms.push((
            format!("base64 align {align}"),
            std_form.as_bytes().to_vec(),
        ));
        forms.push((format!("base64url align {align}"), url_form.into_bytes()));
    }
    forms
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("dir entry");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Every (file, what, form) where a needle occurs.
fn scan(dir: &Path, needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut hits = Vec::new();
    for path in files_under(dir) {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // SQLite removes its -wal/-shm files when the last connection closes.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {}: {e}", path.display()),
        };
        for (what, needle) in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                hits.push(format!("{} contains {what}", path.display()));
            }
        }
    }
    hits
}

fn needles_for(label: &str, forms: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    forms
        .into_iter()
        .map(|(form, bytes)| (format!("{label} ({form})"), bytes))
        .collect()
}

#[test]
fn the_scanner_finds_every_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let needles = needles_for("sentinel", text_forms(SENTINEL));
    assert!(scan(dir.path(), &needles).is_empty());
    for (i, (form, bytes)) in text_forms(SENTINEL).into_iter().enumerate() {
        let sub = dir.path().join(format!("d{i}"));
        std::fs::create_dir_all(&sub).expect("mkdir");
        let mut content = vec![0x13u8; 7 + i];
        content.extend(bytes);
        content.extend([0x37u8; 5]);
        std::fs::write(sub.join("f"), &content).expect("write");
        let hits = scan(dir.path(), &needles);
        assert!(
            hits.iter().any(|h| h.contains(&format!("d{i}"))),
            "{form} not found"
        );
    }
    // Real base64 of text embedded at every offset is found.
    for prefix in 0..3 {
        let other = tempfile::tempdir().expect("tempdir");
        let mut data = vec![b'x'; prefix];
        data.extend_from_slice(SENTINEL.as_bytes());
        data.extend_from_slice(b"tail");
        for text in [encode_std(&data), coffer_crypto::encode_url(&data)] {
            std::fs::write(other.path().join("b"), text.as_bytes()).expect("write");
            assert!(!scan(other.path(), &needles).is_empty(), "offset {prefix}");
        }
    }
}

fn zk_record(title: &str) -> RecordData {
    RecordData {
        title: format!("{title} {SENTINEL}"),
        record_type: "login".to_owned(),
        fields: vec![
            Field::new(
                "login",
                vec![json!(format!("user-{SENTINEL}@example.test"))],
            ),
            Field::new("password", vec![json!(format!("secret {SENTINEL} value"))]),
            Field::new(
                "url",
                vec![json!(format!("https://{SENTINEL}.example.test"))],
            ),
        ],
        custom: vec![
            Field::new("text", vec![json!(format!("custom value {SENTINEL}"))])
                .with_label(&format!("Label {SENTINEL}")),
        ],
        notes: Some(format!("notes {SENTINEL}")),
        extra: serde_json::Map::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_holds_no_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, ep) = start_server(dir.path(), |_| {}).await;
    let code = server.setup_code.clone().expect("setup code");
    let owner = Session::register(ep.owner_client(), "zk-owner@coffer.test", PASSWORD, &code)
        .await
        .expect("register");

    let folder = owner
        .create_folder(&format!("Folder {SENTINEL}"), None)
        .await
        .expect("folder");
    let sub = owner
        .create_folder(&format!("Sub {SENTINEL}"), Some(&folder))
        .await
        .expect("sub-folder");
    let top = owner
        .add_record(&folder, &zk_record("Top"))
        .await
        .expect("record");
    let inner = owner
        .add_record(&sub, &zk_record("Inner"))
        .await
        .expect("record");
    let file_name = format!("{SENTINEL}.txt");
    let content: Vec<u8> = format!("file content {SENTINEL}\n").repeat(50).into_bytes();
    owner
        .attach_file(&top, &file_name, "text/plain", &content)
        .await
        .expect("attach");
    let app = owner
        .create_app(&format!("App {SENTINEL}"))
        .await
        .expect("app");
    owner.share(&app, &folder, true).await.expect("share");
    let token = owner
        .add_client(
            &app,
            &NewClientOptions {
                name: Some(format!("Client {SENTINEL}")),
                first_access_expires: None,
                unlock_ip: false,
            },
        )
        .await
        .expect("client");
    let clients = owner.clients(&app).await.expect("clients");
    assert_eq!(clients[0].name, format!("Client {SENTINEL}"));

    // Read everything once as a device, and check the sentinel comes back.
    let mut ksm = Ksm::from_config(&token.config, &ep.cert_path);
    let answer = ksm.bind().await;
    let app_key = ksm.app_key().clone();
    let app_data = gcm_open(
        &app_key,
        &url_b64(answer["appData"].as_str().expect("appData")),
    )
    .expect("appData");
    assert!(String::from_utf8_lossy(&app_data).contains(SENTINEL));
    let answer = ksm.get_secret(json!({})).await.expect("get_secret");
    let shared = &answer["folders"][0];
    let folder_key = gcm_key(&app_key, shared["folderKey"].as_str().expect("key"));
    let mut keys: Vec<(String, SymmetricKey)> = vec![
        ("app key".into(), app_key.clone()),
        ("client key".into(), ksm.client_key.clone()),
        ("folder key".into(), folder_key.clone()),
    ];
    let records = shared["records"].as_array().expect("records");
    assert_eq!(records.len(), 2);
    let mut seen_file = false;
    for record in records {
        let key = gcm_key(&folder_key, record["recordKey"].as_str().expect("key"));
        let data = gcm_json(&key, record["data"].as_str().expect("data"));
        assert!(data.to_string().contains(SENTINEL));
        keys.push((format!("record key {}", record["recordUid"]), key.clone()));
        for file in record["files"].as_array().expect("files") {
            let file_key = gcm_key(&key, file["fileKey"].as_str().expect("fileKey"));
            let meta = gcm_json(&file_key, file["data"].as_str().expect("data"));
            assert_eq!(meta["name"], json!(file_name));
            let body = ep
                .http()
                .get(file["url"].as_str().expect("url"))
                .send()
                .await
                .expect("download")
                .bytes()
                .await
                .expect("body");
            assert_eq!(gcm_open(&file_key, &body).expect("content"), content);
            keys.push(("file key".into(), file_key));
            seen_file = true;
        }
    }
    assert!(seen_file);
    let folders = ksm.get_folders().await.expect("get_folders");
    let folders = folders["folders"].as_array().expect("folders");
    assert_eq!(folders.len(), 2);
    let sub_info = folders
        .iter()
        .find(|f| f["folderUid"] == json!(sub))
        .expect("sub-folder listed");
    let sub_key = cbc_key(&folder_key, sub_info["folderKey"].as_str().expect("key"));
    let name: Value = cbc_json(&sub_key, sub_info["data"].as_str().expect("data"));
    assert_eq!(name, json!({"name": format!("Sub {SENTINEL}")}));
    keys.push(("sub-folder key".into(), sub_key));
    assert!(
        owner
            .records()
            .await
            .expect("records")
            .iter()
            .any(|r| r.uid == inner)
    );

    // Stop the server; everything it wrote is now on disk.
    drop(owner);
    drop(ksm);
    server.shutdown().await.expect("clean shutdown");

    let mut needles = needles_for("the sentinel", text_forms(SENTINEL));
    needles.extend(needles_for("the owner password", text_forms(PASSWORD)));
    for (what, key) in &keys {
        let mut forms = binary_forms(key.expose());
        forms.push(("raw".to_owned(), key.expose().to_vec()));
        needles.extend(needles_for(what, forms));
    }
    // At once (the WAL may still be there) …
    let hits = scan(dir.path(), &needles);
    assert!(hits.is_empty(), "plaintext on disk:\n{}", hits.join("\n"));
    // … and again once the database connections are closed and the WAL checkpointed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline
        && files_under(dir.path()).iter().any(|p| {
            let name = p.to_string_lossy();
            name.ends_with("-wal") || name.ends_with("-shm")
        })
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let files = files_under(dir.path());
    let names: Vec<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix(dir.path())
                .expect("inside")
                .display()
                .to_string()
        })
        .collect();
    assert!(names.iter().any(|n| n == "coffer.db"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("files/objects/")),
        "the file store is scanned: {names:?}"
    );
    let total: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).expect("metadata").len())
        .sum();
    assert!(total > 10_000, "{total} bytes scanned");
    let hits = scan(dir.path(), &needles);
    assert!(hits.is_empty(), "plaintext on disk:\n{}", hits.join("\n"));
}
