//! Interoperability with the official Python SDK (`keeper-secrets-manager-core` 17.3.0 in the
//! repository's `.venv`, made by `scripts/python-venv.sh`), against a real Coffer server:
//!
//! * a configuration bound by the Python SDK is used by Coffer's SDK, and the other way round;
//! * records (and files) created by Coffer's SDK are read correctly by the Python SDK, and
//!   records created or changed by the Python SDK are read correctly by Coffer's SDK.
//!
//! Without `.venv` these tests fail and say how to create it; `COFFER_SKIP_PYTHON=1` skips
//! them instead.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use coffer_sdk::{FileStorage, FileUpload, RecordCreate, fields, values};
use common::{TestServer, fixture, start};
use serde_json::{Value, json};

/// The Python interpreter of the repository's virtual environment, or `None` (with a note)
/// when the tests are to be skipped.
fn python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    if std::env::var("COFFER_SKIP_PYTHON").as_deref() == Ok("1") {
        println!(
            "note: skipping the Python interop test: {} is missing and COFFER_SKIP_PYTHON=1",
            python.display()
        );
        return None;
    }
    panic!(
        "{} is missing: run scripts/python-venv.sh to create the Python environment with the \
         official SDK (or set COFFER_SKIP_PYTHON=1 to skip these tests)",
        python.display()
    );
}

/// The Python side: one script, driven by a JSON argument, answering JSON on stdout.
const SCRIPT: &str = r#"
import json, os, sys
from keeper_secrets_manager_core import SecretsManager
from keeper_secrets_manager_core.storage import FileKeyValueStorage
from keeper_secrets_manager_core.dto.dtos import RecordCreate, RecordField, KeeperFileUpload

args = json.loads(sys.argv[1])
kw = {"config": FileKeyValueStorage(args["config"])}
if args.get("token"):
    kw.update(token=args["token"], hostname=args["hostname"],
              server_public_key=args["server_public_key"],
              server_public_key_id=args["server_public_key_id"])
sm = SecretsManager(**kw)
out = {}

def dump(r):
    return {"uid": r.uid, "title": r.title, "type": r.type, "revision": r.revision,
            "data": r.dict, "folder_uid": r.folder_uid, "inner_folder_uid": r.inner_folder_uid,
            "files": [{"uid": f.f.get("fileUid"), "name": f.name, "title": f.title, "type": f.type,
                       "size": f.size, "content": f.get_file_data().decode("latin-1")}
                      for f in r.files]}

if args.get("read") is not None:
    out["records"] = [dump(r) for r in sm.get_secrets(args["read"] or None)]
if args.get("notation"):
    out["notation"] = sm.get_notation(args["notation"])
if args.get("create"):
    c = args["create"]
    rec = RecordCreate("login", c["title"])
    if c.get("bare"):
        # No fields set: the Python SDK writes "fields": null.
        out["created"] = sm.create_secret(c["folder"], rec)
        print(json.dumps(out))
        sys.exit(0)
    rec.fields = [RecordField(field_type="login", value=[c["login"]]),
                  RecordField(field_type="password", value=[c["password"]]),
                  RecordField(field_type="url", value=["https://py.example.com"]),
                  RecordField(field_type="fileRef", value=[])]
    rec.custom = [RecordField(field_type="text", label="Made By", value=["python"]),
                  RecordField(field_type="phone", label="Phone",
                              value=[{"region": "US", "number": "555-0123", "type": "Mobile"}])]
    rec.notes = "from python"
    out["created"] = sm.create_secret(c["folder"], rec)
if args.get("update"):
    u = args["update"]
    r = sm.get_secrets([u["uid"]])[0]
    r.field("password", value=u["password"])
    sm.save(r)
if args.get("upload"):
    u = args["upload"]
    r = sm.get_secrets([u["uid"]])[0]
    out["uploaded"] = sm.upload_file(r, KeeperFileUpload(name=u["name"], title=u["title"],
                                     mime_type="text/plain", data=u["content"].encode()))
print(json.dumps(out))
"#;

async fn run_python(python: &PathBuf, server: &TestServer, args: Value) -> Value {
    let mut command = tokio::process::Command::new(python);
    command
        .arg("-c")
        .arg(SCRIPT)
        .arg(args.to_string())
        .env("REQUESTS_CA_BUNDLE", &server.ca)
        .current_dir(server.dir.path());
    for var in [
        "KSM_CONFIG",
        "KSM_TOKEN",
        "KSM_HOSTNAME",
        "KSM_SKIP_VERIFY",
        "KSM_CONFIG_FILE",
        "KSM_CACHE_DIR",
        "CURL_CA_BUNDLE",
        "HTTPS_PROXY",
        "https_proxy",
    ] {
        command.env_remove(var);
    }
    let output = command.output().await.expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python SDK failed:\nargs: {args}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("python printed {stdout:?}: {e}"))
}

fn server_key(server: &TestServer) -> (String, String) {
    let running = server.server.as_ref().expect("running");
    (running.public_key.clone(), running.key_id.to_string())
}

#[tokio::test]
async fn a_configuration_bound_by_python_works_in_coffer_and_back() {
    let Some(python) = python() else { return };
    let server = start().await;
    let fx = fixture(&server).await;
    let (spk, spk_id) = server_key(&server);

    // Python binds with the one-time token (key part; the host with port is a parameter).
    let app = server.app("Py first", &[(&fx.folder, false)]).await;
    let client = server.client(&app).await;
    let py_config = server.dir.path().join("py-config.json");
    let key = client.token.split_once(':').unwrap().1;
    let out = run_python(
        &python,
        &server,
        json!({"config": py_config, "token": key, "hostname": format!("127.0.0.1:{}", server.port),
               "server_public_key": spk, "server_public_key_id": spk_id, "read": []}),
    )
    .await;
    assert_eq!(out["records"].as_array().unwrap().len(), 6);
    // Coffer's SDK uses the Python-written file as it is.
    let sm = server
        .builder()
        .storage(FileStorage::new(&py_config))
        .build()
        .unwrap();
    assert!(sm.is_bound());
    let secrets = sm.get_all_secrets().await.unwrap();
    assert_eq!(secrets.len(), 6);
    assert_eq!(sm.client_id(), client.client_id);

    // Coffer's SDK binds; the Python SDK uses the file Coffer wrote.
    let app2 = server.app("Coffer first", &[(&fx.folder, false)]).await;
    let client2 = server.client(&app2).await;
    let ours = server.dir.path().join("coffer-config.json");
    let sm2 = server
        .builder()
        .storage(FileStorage::new(&ours))
        .token(client2.token.split_once(':').unwrap().1)
        .hostname(format!("127.0.0.1:{}", server.port))
        .server_public_key(spk.clone(), spk_id.clone())
        .build()
        .unwrap();
    assert_eq!(sm2.get_all_secrets().await.unwrap().len(), 6);
    let out = run_python(
        &python,
        &server,
        json!({"config": ours, "read": [fx.web_login],
               "notation": format!("keeper://{}/custom_field/Phones[1][number]", fx.web_login)}),
    )
    .await;
    let records = out["records"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["title"], "Web Login");
    assert_eq!(records[0]["files"][0]["content"], "Hello, Keeper!");
    assert_eq!(out["notation"], "555-0199");
}

#[tokio::test]
async fn records_written_by_either_sdk_read_the_same_in_the_other() {
    let Some(python) = python() else { return };
    let server = start().await;
    let fx = fixture(&server).await;
    let (spk, spk_id) = server_key(&server);
    let app = server.app("Both ways", &[(&fx.folder, true)]).await;

    // Both SDKs bound to the same app (two devices).
    let ours = server.sdk(&server.client(&app).await);
    let py_config = server.dir.path().join("py.json");
    let py_client = server.client(&app).await;
    let py = |extra: Value| {
        let mut args = json!({"config": py_config});
        if !py_config.exists() {
            args["token"] = json!(py_client.token.split_once(':').unwrap().1);
            args["hostname"] = json!(format!("127.0.0.1:{}", server.port));
            args["server_public_key"] = json!(spk);
            args["server_public_key_id"] = json!(spk_id);
        }
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        run_python(&python, &server, args)
    };

    // Coffer creates (in a sub-folder), attaches a file; Python reads.
    let uid = ours
        .create_secret(
            &fx.subfolder,
            RecordCreate::login("From Coffer")
                .set::<fields::Login>(["coffer@example.com".to_owned()])
                .set::<fields::Password>(["c0ffer!".to_owned()])
                .set::<fields::Url>(["https://coffer.example.com".to_owned()])
                .custom::<fields::Name>(
                    "Owner",
                    [values::Name {
                        first: Some("Ada".into()),
                        last: Some("Lovelace".into()),
                        ..Default::default()
                    }],
                )
                .custom::<fields::Date>("Rotated", [1_700_000_000_000])
                .notes("from coffer"),
        )
        .await
        .unwrap();
    let mut created = ours.get_secrets(&[&uid]).await.unwrap().remove(0);
    let file_uid = ours
        .upload_file(
            &mut created,
            FileUpload::new("coffer.txt", b"written by coffer".to_vec()).title("Coffer File"),
        )
        .await
        .unwrap();
    let out = py(json!({"read": [uid]})).await;
    let rec = &out["records"][0];
    assert_eq!(rec["title"], "From Coffer");
    assert_eq!(rec["type"], "login");
    assert_eq!(rec["folder_uid"], fx.folder.as_str());
    assert_eq!(rec["inner_folder_uid"], fx.subfolder.as_str());
    let data = &rec["data"];
    let field = |t: &str| {
        data["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["type"] == t)
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(field("login"), json!(["coffer@example.com"]));
    assert_eq!(field("password"), json!(["c0ffer!"]));
    assert_eq!(field("fileRef"), json!([file_uid]));
    assert_eq!(data["custom"][0]["value"][0]["last"], "Lovelace");
    assert_eq!(data["custom"][1]["value"][0], 1_700_000_000_000i64);
    assert_eq!(data["notes"], "from coffer");
    assert_eq!(rec["files"][0]["name"], "coffer.txt");
    assert_eq!(rec["files"][0]["title"], "Coffer File");
    assert_eq!(rec["files"][0]["content"], "written by coffer");

    // Python creates, uploads and updates; Coffer reads.
    let out = py(
        json!({"create": {"folder": fx.folder, "title": "From Python",
                                    "login": "py@example.com", "password": "pyth0n!"}}),
    )
    .await;
    let py_uid = out["created"].as_str().unwrap().to_owned();
    let out = py(
        json!({"upload": {"uid": py_uid, "name": "py.txt", "title": "Py File",
                                    "content": "written by python"}}),
    )
    .await;
    let py_file = out["uploaded"].as_str().unwrap().to_owned();
    py(json!({"update": {"uid": py_uid, "password": "changed-by-python"}})).await;
    // And Python changes the record Coffer made.
    py(json!({"update": {"uid": uid, "password": "python-was-here"}})).await;

    let got = ours.get_secrets(&[&py_uid, &uid]).await.unwrap();
    let from_py = got.iter().find(|r| r.uid() == py_uid).unwrap();
    assert_eq!(from_py.title(), "From Python");
    assert_eq!(
        from_py.get_one::<fields::Login>().unwrap().unwrap(),
        "py@example.com"
    );
    assert_eq!(from_py.password(), Some("changed-by-python"));
    assert_eq!(from_py.notes(), Some("from python"));
    assert_eq!(from_py.folder_uid(), Some(fx.folder.as_str()));
    assert_eq!(
        from_py
            .get_custom_one::<fields::Text>("Made By")
            .unwrap()
            .unwrap(),
        "python"
    );
    let phone = from_py
        .get_custom_one::<fields::Phone>("Phone")
        .unwrap()
        .unwrap();
    assert_eq!(phone.number.as_deref(), Some("555-0123"));
    let file = from_py.file(&py_file).unwrap();
    assert_eq!((file.name(), file.title()), ("py.txt", "Py File"));
    assert_eq!(
        ours.download_file(file).await.unwrap(),
        b"written by python"
    );
    assert_eq!(
        ours.get_notation(&format!("{py_uid}/field/password"))
            .await
            .unwrap(),
        ["changed-by-python"]
    );
    let mine = got.iter().find(|r| r.uid() == uid).unwrap();
    assert_eq!(mine.password(), Some("python-was-here"));
    // What Python rewrote still carries everything Coffer wrote.
    assert_eq!(
        mine.get_custom_one::<fields::Name>("Owner")
            .unwrap()
            .unwrap()
            .first
            .as_deref(),
        Some("Ada")
    );
    assert_eq!(mine.files().len(), 1);

    // A record Python creates without fields ("fields": null) reads as one with none.
    let out =
        py(json!({"create": {"folder": fx.folder, "title": "Bare From Python", "bare": true}}))
            .await;
    let bare_uid = out["created"].as_str().unwrap().to_owned();
    let all = ours
        .get_secrets_with_options(&Default::default())
        .await
        .unwrap();
    assert!(all.bad_records.is_empty(), "{:?}", all.bad_records);
    let bare = ours
        .get_secret_by_title("Bare From Python")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bare.uid(), bare_uid);
    assert_eq!(bare.record_type(), "login");
    assert!(bare.data().fields.is_empty());
}
