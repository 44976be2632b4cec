//! Runs one operation of the official Rust SDK (`keeper-secrets-manager-core` 17.3.0, unmodified)
//! against a Coffer server and prints its outcome as one line of JSON. Driven by
//! `tests/conformance/test_rust_sdk.py`.
//!
//! ```text
//! official_ksm CONFIG_FILE OPERATION ARGS_JSON
//! ```
//!
//! `CONFIG_FILE` is the SDK's own JSON config file (`FileKeyValueStorage`): the test writes the
//! one-time config `coffer vault client add` prints into it, and the first call binds it. The
//! official Rust SDK drops any port from the host name, so the server listens on 127.0.0.1:443;
//! it trusts the operating system's roots, which the test points at the server's certificate
//! with `SSL_CERT_FILE` (certificate checks stay on).
//!
//! Output: `{"ok": RESULT}` and exit code 0, or `{"error": MESSAGE}` and exit code 1.

use std::collections::HashMap;

use keeper_secrets_manager_core::dto::KeeperField;
use keeper_secrets_manager_core::dto::dtos::{KeeperFileUpload, RecordCreate};
use keeper_secrets_manager_core::dto::payload::{
    CreateOptions, QueryOptions, UpdateOptions, UpdateTransactionType,
};
use keeper_secrets_manager_core::{
    ClientOptionsBuilder, FileKeyValueStorage, KvStoreType, Record, SecretsManager,
};
use serde_json::{Value, json};

type Outcome = Result<Value, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.as_slice() {
        [config, operation, arguments] => serde_json::from_str(arguments)
            .map_err(|e| format!("ARGS_JSON: {e}"))
            .and_then(|arguments| run(config, operation, &arguments)),
        _ => Err("usage: official_ksm CONFIG_FILE OPERATION ARGS_JSON".to_owned()),
    };
    match outcome {
        Ok(result) => println!("{}", json!({ "ok": result })),
        Err(message) => {
            println!("{}", json!({ "error": message }));
            std::process::exit(1);
        }
    }
}

fn sdk(config: &str) -> Result<SecretsManager, String> {
    let storage = FileKeyValueStorage::new(Some(config.to_owned())).map_err(|e| e.to_string())?;
    let options = ClientOptionsBuilder::new(KvStoreType::File(storage))
        .insecure_skip_verify(false)
        .build();
    SecretsManager::new(options).map_err(|e| e.to_string())
}

fn text(args: &Value, key: &str) -> Result<String, String> {
    args.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("argument {key} (a string) is missing"))
}

fn texts(args: &Value, key: &str) -> Vec<String> {
    args.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn summary(record: &Record) -> Value {
    json!({
        "uid": record.uid,
        "title": record.title,
        "type": record.record_type,
        "revision": record.revision,
        "isEditable": record.is_editable,
        "folderUid": record.folder_uid,
        "innerFolderUid": record.inner_folder_uid,
        "data": serde_json::from_str::<Value>(&record.raw_json).unwrap_or(Value::Null),
        "files": record.files.iter().map(|f| json!({
            "uid": f.uid, "name": f.name, "title": f.title, "type": f.file_type,
        })).collect::<Vec<_>>(),
    })
}

fn the_record(sm: &mut SecretsManager, uid: &str) -> Result<Record, String> {
    let mut found = sm
        .get_secrets(vec![uid.to_owned()])
        .map_err(|e| e.to_string())?;
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(format!("record {uid} not visible ({n} records)")),
    }
}

fn field(value: &Value) -> Result<KeeperField, String> {
    Ok(KeeperField {
        field_type: text(value, "type")?,
        label: value
            .get("label")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        value: value.get("value").cloned().unwrap_or_else(|| json!([])),
        required: false,
        privacy_screen: false,
    })
}

fn run(config: &str, operation: &str, args: &Value) -> Outcome {
    let mut sm = sdk(config)?;
    let err = |e: keeper_secrets_manager_core::KSMRError| e.to_string();
    match operation {
        "get_secrets" => {
            let options = QueryOptions::new(texts(args, "uids"), texts(args, "folders"));
            let records = sm.get_secrets_with_options(options).map_err(err)?;
            Ok(json!(records.iter().map(summary).collect::<Vec<_>>()))
        }
        "get_folders" => {
            let folders = sm.get_folders().map_err(err)?;
            Ok(json!(
                folders
                    .iter()
                    .map(
                        |f| json!({"uid": f.folder_uid, "parentUid": f.parent_uid, "name": f.name})
                    )
                    .collect::<Vec<_>>()
            ))
        }
        "by_title" => {
            let records = sm
                .get_secrets_by_title(&text(args, "title")?)
                .map_err(err)?;
            Ok(json!(records.iter().map(|r| &r.uid).collect::<Vec<_>>()))
        }
        "notation" => {
            let values = sm
                .get_notation_result(&text(args, "notation")?)
                .map_err(err)?;
            Ok(json!(values))
        }
        "totp" => {
            let code = keeper_secrets_manager_core::utils::get_totp_code(&text(args, "url")?)
                .map_err(err)?;
            Ok(
                json!({"code": code.get_code(), "period": code.get_period(), "timeLeft": code.get_time_left()}),
            )
        }
        "download" => {
            let mut record = the_record(&mut sm, &text(args, "uid")?)?;
            let path = text(args, "path")?;
            let saved = record
                .download_file(&text(args, "fileUid")?, &path)
                .map_err(err)?;
            if !saved {
                return Err("the record has no such file".to_owned());
            }
            Ok(json!({"size": std::fs::metadata(&path).map_err(|e| e.to_string())?.len()}))
        }
        "upload" => {
            let record = the_record(&mut sm, &text(args, "uid")?)?;
            let upload = KeeperFileUpload {
                name: text(args, "name")?,
                data: std::fs::read(text(args, "path")?).map_err(|e| e.to_string())?,
                title: text(args, "title")?,
                mime_type: text(args, "type")?,
            };
            Ok(json!(sm.upload_file(record, upload).map_err(err)?))
        }
        "update" => {
            let mut record = the_record(&mut sm, &text(args, "uid")?)?;
            if let Some(values) = args.get("fields").and_then(Value::as_object) {
                let fields = record
                    .record_dict
                    .get_mut("fields")
                    .and_then(Value::as_array_mut)
                    .ok_or("the record has no fields")?;
                for (kind, value) in values {
                    let field = fields
                        .iter_mut()
                        .find(|f| f.get("type").and_then(Value::as_str) == Some(kind))
                        .ok_or_else(|| format!("the record has no {kind} field"))?;
                    field["value"] = value.clone();
                }
            }
            if let Some(title) = args.get("title").and_then(Value::as_str) {
                record.title = title.to_owned();
            }
            if let Some(notes) = args.get("notes").and_then(Value::as_str) {
                record.record_dict.insert("notes".into(), json!(notes));
            }
            if let Some(revision) = args.get("revision").and_then(Value::as_i64) {
                record.revision = Some(revision);
            }
            record.update().map_err(err)?;
            let transaction = match args.get("transaction").and_then(Value::as_str) {
                None => UpdateTransactionType::None,
                Some("general") => UpdateTransactionType::General,
                Some("rotation") => UpdateTransactionType::Rotation,
                Some(other) => return Err(format!("unknown transaction type {other}")),
            };
            let options = UpdateOptions::new(transaction, texts(args, "linksToRemove"));
            sm.update_secret_with_options(record, options)
                .map_err(err)?;
            Ok(Value::Null)
        }
        "complete" => {
            let rollback = args
                .get("rollback")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            sm.complete_transaction(text(args, "uid")?, rollback)
                .map_err(err)?;
            Ok(Value::Null)
        }
        "create" => {
            let data = args.get("data").ok_or("argument data is missing")?;
            let mut create = RecordCreate::new(
                text(data, "type")?,
                text(data, "title")?,
                data.get("notes").and_then(Value::as_str).map(str::to_owned),
            );
            let list = |key: &str| -> Result<Option<Vec<KeeperField>>, String> {
                match data.get(key).and_then(Value::as_array) {
                    None => Ok(None),
                    Some(items) => items.iter().map(field).collect::<Result<_, _>>().map(Some),
                }
            };
            create.fields = list("fields")?;
            create.custom = list("custom")?;
            Ok(json!(
                sm.create_secret(text(args, "folderUid")?, create)
                    .map_err(err)?
            ))
        }
        "delete" => {
            // The SDK answers with the deleted UIDs, each as JSON text, joined by ", ".
            Ok(json!(sm.delete_secret(texts(args, "uids")).map_err(err)?))
        }
        "create_folder" => {
            let options = CreateOptions::new(
                text(args, "folderUid")?,
                args.get("subFolderUid")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
            Ok(json!(
                sm.create_folder(options, text(args, "name")?, Vec::new())
                    .map_err(err)?
            ))
        }
        "update_folder" => {
            sm.update_folder(text(args, "uid")?, text(args, "name")?, Vec::new())
                .map_err(err)?;
            Ok(Value::Null)
        }
        "delete_folder" => {
            let force = args.get("force").and_then(Value::as_bool).unwrap_or(false);
            let results: Vec<HashMap<String, Value>> =
                sm.delete_folder(texts(args, "uids"), force).map_err(err)?;
            Ok(json!(results))
        }
        other => Err(format!("unknown operation {other}")),
    }
}
