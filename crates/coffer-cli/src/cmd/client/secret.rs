//! `coffer secret …`: records, fields, notation, files, TOTP and passwords, through the SDK.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use coffer_proto::record::{FIELD_TYPES, Field, RecordData};
use coffer_sdk::{
    FileUpload, KeeperFile, NotationValue, PasswordOptions, Record, RecordCreate, SaveOptions,
    SecretsManager, Selector, generate_password_with_options, get_totp_code, parse_notation,
};
use serde_json::{Value, json};

use super::interpolate::write_new_file;
use super::{code, connect, fail, note, progress, report_cached, stdout_is_terminal, table};
use crate::client_cli::{ClientGlobal, SecretArgs, SecretCommand};
use crate::fields::{apply_edits, build_record};
use crate::output::{self, sanitize};

/// What a masked value shows.
pub const MASK: &str = "********";

/// Field types whose every value is a secret.
const SECRET_TYPES: [&str; 8] = [
    "password",
    "secret",
    "pinCode",
    "oneTimeCode",
    "otp",
    "licenseNumber",
    "accountNumber",
    "trafficEncryptionSeed",
];

/// Properties of object values that are secrets (cards, keys, security answers, …).
const SECRET_PROPERTIES: [&str; 7] = [
    "privateKey",
    "answer",
    "cardNumber",
    "cardSecurityCode",
    "pinCode",
    "accountNumber",
    "password",
];

/// A value as shown: masked when it is a secret and `unmask` is off. Sets `masked` when
/// something was hidden.
pub fn shown_value(field_type: &str, value: &Value, unmask: bool, masked: &mut bool) -> Value {
    if unmask {
        return value.clone();
    }
    if SECRET_TYPES.contains(&field_type) {
        if value.as_str().is_some_and(str::is_empty) || value.is_null() {
            return value.clone();
        }
        *masked = true;
        return Value::from(MASK);
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let secret = SECRET_PROPERTIES.contains(&k.as_str())
                        && !v.is_null()
                        && !v.as_str().is_some_and(str::is_empty);
                    if secret {
                        *masked = true;
                        (k.clone(), Value::from(MASK))
                    } else {
                        (k.clone(), v.clone())
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Raw text for pipes and files; on a terminal, control characters are neutralised so a
/// stored value cannot drive it.
fn for_stdout(text: &str) -> std::borrow::Cow<'_, str> {
    if stdout_is_terminal() {
        std::borrow::Cow::Owned(sanitize(text))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A value as one line of text: strings as they are, anything else as compact JSON.
pub fn value_text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

fn fields_json(fields: &[Field], unmask: bool, masked: &mut bool) -> Vec<Value> {
    fields
        .iter()
        .map(|f| {
            let values: Vec<Value> = f
                .value
                .iter()
                .map(|v| shown_value(&f.field_type, v, unmask, masked))
                .collect();
            let mut entry = json!({ "type": f.field_type, "value": values });
            if let Some(label) = &f.label {
                entry["label"] = Value::from(label.clone());
            }
            entry
        })
        .collect()
}

fn file_json(f: &KeeperFile) -> Value {
    json!({
        "uid": f.uid(),
        "name": f.name(),
        "title": f.title(),
        "type": f.mime_type(),
        "size": f.size(),
        "last_modified": f.last_modified(),
    })
}

/// A record as JSON (secret values masked unless `unmask`).
pub fn record_json(r: &Record, unmask: bool, masked: &mut bool) -> Value {
    let data = r.data();
    json!({
        "uid": r.uid(),
        "title": r.title(),
        "type": r.record_type(),
        "revision": r.revision(),
        "editable": r.is_editable(),
        "folder_uid": r.folder_uid(),
        "inner_folder_uid": r.inner_folder_uid(),
        "fields": fields_json(&data.fields, unmask, masked),
        "custom": fields_json(&data.custom, unmask, masked),
        "notes": r.notes(),
        "files": r.files().iter().map(file_json).collect::<Vec<_>>(),
    })
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// A record as readable text.
fn record_text(r: &Record, unmask: bool, masked: &mut bool) -> String {
    let mut rows: Vec<(String, Vec<String>)> = vec![
        ("UID".into(), vec![r.uid().to_owned()]),
        ("Type".into(), vec![r.record_type().to_owned()]),
    ];
    if let Some(folder) = r.inner_folder_uid().or(r.folder_uid()) {
        rows.push(("Folder".into(), vec![folder.to_owned()]));
    }
    let data = r.data();
    for (custom, f) in data
        .fields
        .iter()
        .map(|f| (false, f))
        .chain(data.custom.iter().map(|f| (true, f)))
    {
        if f.value.is_empty() || f.field_type == "fileRef" {
            continue;
        }
        let name = match (&f.label, custom) {
            (Some(label), _) if !label.is_empty() => label.clone(),
            _ => f.field_type.clone(),
        };
        // One line per value, and per line of a multi-line value (keys, certificates).
        let values: Vec<String> = f
            .value
            .iter()
            .map(|v| value_text(&shown_value(&f.field_type, v, unmask, masked)))
            .flat_map(|text| text.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        rows.push((name, values));
    }
    if let Some(notes) = r.notes().filter(|n| !n.is_empty()) {
        rows.push(("Notes".into(), notes.lines().map(str::to_owned).collect()));
    }
    for f in r.files() {
        rows.push((
            "File".into(),
            vec![format!(
                "{}  ({}, {})",
                f.name(),
                f.size()
                    .map_or_else(|| "size unknown".to_owned(), human_size),
                f.uid()
            )],
        ));
    }
    let width = rows
        .iter()
        .map(|(k, _)| unicode_width::UnicodeWidthStr::width(k.as_str()))
        .max()
        .unwrap_or(0);
    let mut out = format!("{}\n", sanitize(r.title()));
    for (key, values) in rows {
        let key = sanitize(&key);
        for (i, value) in values.iter().enumerate() {
            let label = if i == 0 { key.as_str() } else { "" };
            let pad = width.saturating_sub(unicode_width::UnicodeWidthStr::width(label));
            out.push_str(&format!(
                "  {label}{}  {}\n",
                " ".repeat(pad),
                sanitize(value)
            ));
        }
    }
    out
}

/// A title filter: a case-insensitive glob (`*`, `?`) or substring.
pub fn title_matches(pattern: &str, title: &str) -> bool {
    let pattern = pattern.to_lowercase();
    let title = title.to_lowercase();
    if !pattern.contains(['*', '?']) {
        return title.contains(&pattern);
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = title.chars().collect();
    // Iterative glob matching with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn dedupe(records: Vec<Record>) -> Vec<Record> {
    let mut seen = HashSet::new();
    records
        .into_iter()
        .filter(|r| seen.insert(r.uid().to_owned()))
        .collect()
}

fn masked_note(masked: bool) {
    if masked {
        note("secret values are masked; add --unmask to show them");
    }
}

fn not_found_record(uid: &str) -> anyhow::Error {
    fail(
        code::NOT_FOUND,
        format!(
            "record {uid} does not exist or is not shared with this device's application \
             (`coffer secret list` shows what is)"
        ),
    )
}

async fn one_record(sm: &SecretsManager, uid: &str) -> Result<Record> {
    let secrets = sm.get_secrets(&[uid]).await?;
    report_cached(secrets.cached.as_ref());
    secrets
        .into_records()
        .into_iter()
        .find(|r| r.uid() == uid)
        .ok_or_else(|| not_found_record(uid))
}

fn editable(record: &Record) -> Result<()> {
    if record.is_editable() {
        Ok(())
    } else {
        Err(fail(
            code::REFUSED,
            format!(
                "record {} is read-only for this device's application; ask its owner to share it \
                 editable (`coffer vault app share APP_UID TARGET --editable`)",
                record.uid()
            ),
        ))
    }
}

/// Checks the field types that `--field`/`--custom-field` flags name.
fn check_field_flags(fields: &[String], custom: &[String]) -> Result<()> {
    let unknown = |t: &str| {
        fail(
            code::USAGE,
            format!(
                "{t:?} is not a field type; known types: {}",
                FIELD_TYPES.join(", ")
            ),
        )
    };
    for flag in fields {
        if let Some((key, _)) = flag.split_once('=') {
            let field_type = key.split_once('.').map_or(key, |(t, _)| t);
            if !FIELD_TYPES.contains(&field_type) {
                return Err(unknown(field_type));
            }
        }
    }
    for flag in custom {
        if let Some((key, _)) = flag.split_once('=')
            && let Some((_, field_type)) = key.rsplit_once(':')
            && !field_type.is_empty()
            && !field_type.contains(' ')
            && !FIELD_TYPES.contains(&field_type)
        {
            return Err(unknown(field_type));
        }
    }
    Ok(())
}

fn usage(err: anyhow::Error) -> anyhow::Error {
    fail(code::USAGE, format!("{err:#}"))
}

/// A new random password with the default rules.
fn new_password() -> Result<String> {
    Ok(generate_password_with_options(&PasswordOptions::default())?)
}

fn set_password(data: &mut RecordData, password: String) {
    match data.fields.iter_mut().find(|f| f.field_type == "password") {
        Some(field) => field.value = vec![Value::from(password)],
        None => data
            .fields
            .push(Field::new("password", vec![Value::from(password)])),
    }
}

fn sets_password(fields: &[String]) -> bool {
    fields.iter().any(|f| {
        f.split_once('=')
            .is_some_and(|(k, _)| k == "password" || k.starts_with("password."))
    })
}

/// Runs `coffer secret …`.
pub async fn run(args: SecretArgs) -> Result<()> {
    let global = args.global;
    match args.command {
        SecretCommand::List {
            folder,
            title,
            json,
        } => list(&global, folder, title, json).await,
        SecretCommand::Get {
            mut uids,
            uid,
            title,
            field,
            custom_field,
            json,
            unmask,
        } => {
            uids.extend(uid);
            get(&global, uids, title, field, custom_field, json, unmask).await
        }
        SecretCommand::Notation { notation, json } => notation_cmd(&global, &notation, json).await,
        SecretCommand::Update {
            uid,
            fields,
            custom,
            title,
            notes,
            generate_password,
            json,
        } => {
            if fields.is_empty()
                && custom.is_empty()
                && title.is_none()
                && notes.is_none()
                && !generate_password
            {
                return Err(fail(
                    code::USAGE,
                    "nothing to change: give --field, --custom-field, --title, --notes or --generate-password",
                ));
            }
            if generate_password && sets_password(&fields) {
                return Err(fail(
                    code::USAGE,
                    "--generate-password and --field password=… both set the password; give one",
                ));
            }
            check_field_flags(&fields, &custom)?;
            let sm = connect(&global)?;
            let mut record = one_record(&sm, &uid).await?;
            editable(&record)?;
            if let Some(title) = title {
                if title.trim().is_empty() {
                    return Err(fail(code::USAGE, "the title cannot be blank"));
                }
                record.set_title(title);
            }
            if let Some(notes) = notes {
                record.set_notes((!notes.is_empty()).then_some(notes));
            }
            apply_edits(record.data_mut(), &fields, &custom).map_err(usage)?;
            if generate_password {
                set_password(record.data_mut(), new_password()?);
            }
            sm.save(&mut record).await?;
            if json {
                output::json(&json!({ "uid": record.uid(), "revision": record.revision() }))
            } else {
                output::line(format!(
                    "Updated {} (revision {}).",
                    record.uid(),
                    record.revision()
                ))
            }
        }
        SecretCommand::Add {
            folder,
            record_type,
            title,
            fields,
            custom,
            notes,
            generate_password,
            json_file,
            json,
        } => {
            let mut data = match json_file {
                Some(path) => {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    serde_json::from_slice::<RecordData>(&bytes).map_err(|e| {
                        fail(
                            code::USAGE,
                            format!(
                                "{} is not a record JSON (title, type, fields, custom, notes): {e}",
                                path.display()
                            ),
                        )
                    })?
                }
                None => {
                    check_field_flags(&fields, &custom)?;
                    if generate_password && sets_password(&fields) {
                        return Err(fail(
                            code::USAGE,
                            "--generate-password and --field password=… both set the password; give one",
                        ));
                    }
                    build_record(
                        record_type.as_deref().unwrap_or_default(),
                        title.as_deref().unwrap_or_default(),
                        &fields,
                        &custom,
                        notes.as_deref(),
                    )
                    .map_err(usage)?
                }
            };
            if generate_password {
                set_password(&mut data, new_password()?);
            }
            // Validate before connecting: a bad record never reaches the server.
            let data = RecordCreate::from(data)
                .build()
                .map_err(|e| fail(code::USAGE, e.to_string()))?;
            let sm = connect(&global)?;
            let uid = sm.create_secret(&folder, RecordCreate::from(data)).await?;
            if json {
                output::json(&json!({ "uid": uid }))
            } else {
                output::line(uid)
            }
        }
        SecretCommand::Delete { uids, json } => {
            let sm = connect(&global)?;
            let refs: Vec<&str> = uids.iter().map(String::as_str).collect();
            let outcomes = sm.delete_secret(&refs).await?;
            let answers: HashMap<&str, _> = outcomes.iter().map(|o| (o.uid.as_str(), o)).collect();
            let mut deleted = Vec::new();
            let mut failed = Vec::new();
            for uid in &uids {
                match answers.get(uid.as_str()) {
                    Some(o) if o.is_ok() => deleted.push(uid.clone()),
                    Some(o) => failed.push((
                        uid.clone(),
                        o.error_message
                            .clone()
                            .unwrap_or_else(|| o.response_code.clone()),
                    )),
                    None => failed.push((uid.clone(), "the server did not answer for it".into())),
                }
            }
            if json {
                output::json(&json!({
                    "deleted": deleted,
                    "failed": failed.iter().map(|(u, e)| json!({ "uid": u, "error": e })).collect::<Vec<_>>(),
                }))?;
            } else {
                for uid in &deleted {
                    output::line(format!("Deleted {uid}."))?;
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            let details: Vec<String> = failed
                .iter()
                .map(|(u, e)| format!("{u}: {}", sanitize(e)))
                .collect();
            Err(fail(
                super::delete_failure_code(&failed),
                format!(
                    "{} of {} record(s) were not deleted:\n  {}",
                    failed.len(),
                    uids.len(),
                    details.join("\n  ")
                ),
            ))
        }
        SecretCommand::Upload {
            uid,
            path,
            name,
            title,
            json,
        } => upload(&global, &uid, &path, name, title, json).await,
        SecretCommand::Download {
            uid,
            name,
            file_uid,
            output: out,
            force,
            json,
        } => download(&global, &uid, name, file_uid, out, force, json).await,
        SecretCommand::DeleteAttachment {
            uid,
            file_uid,
            json,
        } => {
            let sm = connect(&global)?;
            let mut record = one_record(&sm, &uid).await?;
            editable(&record)?;
            if !record.files().iter().any(|f| f.uid() == file_uid) {
                return Err(fail(
                    code::NOT_FOUND,
                    format!(
                        "record {uid} has no attachment {file_uid} (`coffer secret get {uid}` lists them)"
                    ),
                ));
            }
            sm.save_with_options(
                &mut record,
                &SaveOptions {
                    links_to_remove: vec![file_uid.clone()],
                    ..Default::default()
                },
            )
            .await?;
            if json {
                output::json(&json!({ "uid": uid, "file_uid": file_uid, "removed": true }))
            } else {
                output::line(format!("Removed {file_uid} from {uid}."))
            }
        }
        SecretCommand::Totp { uid, watch, json } => totp(&global, &uid, watch, json).await,
        SecretCommand::Password {
            length,
            lowercase,
            uppercase,
            digits,
            special,
            special_characters,
            json,
        } => {
            let mut options = PasswordOptions {
                length: usize::from(length),
                lowercase: lowercase.map(i32::from),
                uppercase: uppercase.map(i32::from),
                digits: digits.map(i32::from),
                special: special.map(i32::from),
                ..Default::default()
            };
            if let Some(chars) = special_characters {
                options.special_characters = chars;
            }
            let password = generate_password_with_options(&options)
                .map_err(|e| fail(code::USAGE, e.to_string()))?;
            if json {
                output::json(&json!({ "password": password }))
            } else {
                output::line(password)
            }
        }
    }
}

async fn list(
    global: &ClientGlobal,
    folder: Option<String>,
    title: Option<String>,
    json: bool,
) -> Result<()> {
    let sm = connect(global)?;
    let table = !json && stdout_is_terminal();
    let (secrets, folders) = if table {
        let (secrets, folders) = tokio::join!(sm.get_all_secrets(), sm.get_folders());
        (secrets?, folders.ok())
    } else {
        (sm.get_all_secrets().await?, None)
    };
    report_cached(secrets.cached.as_ref());
    let secrets_cached_is_none = secrets.cached.is_none();
    for warning in &secrets.warnings {
        super::warn(sanitize(warning));
    }
    if !secrets.bad_records.is_empty() {
        super::warn(format!(
            "{} record(s) could not be decrypted and are left out: {}",
            secrets.bad_records.len(),
            secrets.bad_records.join(", ")
        ));
    }
    let mut records: Vec<Record> = dedupe(secrets.into_records())
        .into_iter()
        .filter(|r| {
            folder
                .as_deref()
                .is_none_or(|f| r.folder_uid() == Some(f) || r.inner_folder_uid() == Some(f))
        })
        .filter(|r| title.as_deref().is_none_or(|p| title_matches(p, r.title())))
        .collect();
    // No record in the folder: it may be empty, or not exist at all (or not be shared).
    if let Some(folder) = folder.as_deref()
        && records.is_empty()
        && secrets_cached_is_none
    {
        let known = sm.get_folders().await?;
        if !known.iter().any(|f| f.uid() == folder) {
            return Err(fail(
                code::NOT_FOUND,
                format!("folder {folder} does not exist or is not shared with this device"),
            ));
        }
    }
    if json {
        let list: Vec<Value> = records
            .iter()
            .map(|r| {
                json!({
                    "uid": r.uid(),
                    "title": r.title(),
                    "type": r.record_type(),
                    "folder_uid": r.folder_uid(),
                    "inner_folder_uid": r.inner_folder_uid(),
                    "editable": r.is_editable(),
                    "files": r.files().len(),
                })
            })
            .collect();
        return output::json(&json!({ "records": list }));
    }
    if table {
        if records.is_empty() {
            note("no records match");
            return Ok(());
        }
        records.sort_by_key(|r| r.title().to_lowercase());
        let names: HashMap<String, String> = folders
            .map(|f| {
                f.iter()
                    .map(|f| (f.uid().to_owned(), f.name().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                let folder = r
                    .inner_folder_uid()
                    .or(r.folder_uid())
                    .map(|uid| names.get(uid).cloned().unwrap_or_else(|| uid.to_owned()))
                    .unwrap_or_default();
                vec![
                    r.uid().to_owned(),
                    r.record_type().to_owned(),
                    r.title().to_owned(),
                    folder,
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["UID", "TYPE", "TITLE", "FOLDER"], &rows)
        );
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for r in records {
        writeln!(
            out,
            "{}\t{}\t{}",
            r.uid(),
            sanitize(r.record_type()),
            sanitize(r.title()).replace(['\t', '\n'], " ")
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn get(
    global: &ClientGlobal,
    uids: Vec<String>,
    title: Option<String>,
    field: Option<String>,
    custom_field: Option<String>,
    json: bool,
    unmask: bool,
) -> Result<()> {
    let sm = connect(global)?;
    let several = uids.len() > 1;
    let records: Vec<Record> = match &title {
        Some(title) => {
            let secrets = sm.get_all_secrets().await?;
            report_cached(secrets.cached.as_ref());
            let found: Vec<Record> = dedupe(
                secrets
                    .into_records()
                    .into_iter()
                    .filter(|r| r.title() == title)
                    .collect(),
            );
            match found.len() {
                0 => {
                    return Err(fail(
                        code::NOT_FOUND,
                        format!("no record shared with this device is titled {title:?}"),
                    ));
                }
                1 => found,
                _ => {
                    let uids: Vec<&str> = found.iter().map(Record::uid).collect();
                    return Err(fail(
                        code::ERROR,
                        format!(
                            "{} records are titled {title:?}: {}; give a UID instead",
                            found.len(),
                            uids.join(", ")
                        ),
                    ));
                }
            }
        }
        None => {
            let refs: Vec<&str> = uids.iter().map(String::as_str).collect();
            let secrets = sm.get_secrets(&refs).await?;
            report_cached(secrets.cached.as_ref());
            let all = secrets.into_records();
            let mut out = Vec::new();
            for uid in &uids {
                let record = all
                    .iter()
                    .find(|r| r.uid() == uid)
                    .ok_or_else(|| not_found_record(uid))?;
                out.push(record.clone());
            }
            out
        }
    };
    let mut masked = false;
    if field.is_some() || custom_field.is_some() {
        let (custom, key) = match (&field, &custom_field) {
            (Some(key), _) => (false, key.as_str()),
            (None, Some(key)) => (true, key.as_str()),
            (None, None) => return Ok(()),
        };
        let mut per_record: Vec<(String, Vec<Value>)> = Vec::new();
        for r in &records {
            let found = if custom {
                r.custom_field(key)
            } else {
                r.field(key)
            };
            let f = found.ok_or_else(|| {
                let list = if custom {
                    &r.data().custom
                } else {
                    &r.data().fields
                };
                let names: Vec<String> = list
                    .iter()
                    .map(|f| f.label.clone().unwrap_or_else(|| f.field_type.clone()))
                    .collect();
                fail(
                    code::NOT_FOUND,
                    format!(
                        "record {} has no {} {key:?} (it has: {})",
                        r.uid(),
                        if custom { "custom field" } else { "field" },
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                )
            })?;
            let values = f
                .value
                .iter()
                .map(|v| shown_value(&f.field_type, v, unmask, &mut masked))
                .collect();
            per_record.push((r.uid().to_owned(), values));
        }
        if json {
            one_or_records(
                per_record
                    .into_iter()
                    .map(|(uid, values)| json!({ "uid": uid, "values": values }))
                    .collect(),
                several,
            )?;
        } else {
            let mut out = std::io::stdout().lock();
            for (_, values) in per_record {
                for value in values {
                    writeln!(out, "{}", for_stdout(&value_text(&value)))?;
                }
            }
        }
        masked_note(masked);
        return Ok(());
    }
    if json {
        one_or_records(
            records
                .iter()
                .map(|r| record_json(r, unmask, &mut masked))
                .collect(),
            several,
        )?;
    } else {
        let texts: Vec<String> = records
            .iter()
            .map(|r| record_text(r, unmask, &mut masked))
            .collect();
        let mut out = std::io::stdout().lock();
        write!(out, "{}", texts.join("\n"))?;
    }
    masked_note(masked);
    Ok(())
}

/// Prints the one object asked for, or `{"records": [...]}` when several UIDs were asked for.
fn one_or_records(mut list: Vec<Value>, several: bool) -> Result<()> {
    if several || list.len() != 1 {
        return output::json(&json!({ "records": list }));
    }
    output::json(&list.remove(0))
}

async fn notation_cmd(global: &ClientGlobal, notation: &str, json: bool) -> Result<()> {
    let parsed = parse_notation(notation, false).map_err(|e| fail(code::USAGE, e.to_string()))?;
    let sm = connect(global)?;
    if let Selector::File(_) = parsed.selector {
        let NotationValue::File(bytes) = sm.get_notation_value(notation).await? else {
            return Err(fail(code::ERROR, "the notation did not give a file"));
        };
        if json {
            return output::json(&json!({
                "notation": notation,
                "content_base64": coffer_crypto::encode_std(&bytes),
            }));
        }
        if stdout_is_terminal() && std::str::from_utf8(&bytes).is_err() {
            return Err(fail(
                code::ERROR,
                "the file is binary: redirect the output to a file, or use `coffer secret download`",
            ));
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)?;
        out.flush()?;
        return Ok(());
    }
    let values = sm.get_notation(notation).await?;
    if json {
        return output::json(&json!({ "notation": notation, "values": values }));
    }
    let mut out = std::io::stdout().lock();
    for value in values {
        writeln!(out, "{}", for_stdout(&value))?;
    }
    Ok(())
}

async fn upload(
    global: &ClientGlobal,
    uid: &str,
    path: &Path,
    name: Option<String>,
    title: Option<String>,
    json: bool,
) -> Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        return Err(fail(
            code::USAGE,
            format!("{} is not a file", path.display()),
        ));
    }
    let sm = connect(global)?;
    let mut record = one_record(&sm, uid).await?;
    editable(&record)?;
    let mut upload = FileUpload::from_path(path)?;
    if let Some(name) = name {
        upload.name = name;
    }
    if let Some(title) = title {
        upload.title = Some(title);
    }
    let label = format!("Uploading {}", upload.name);
    let bar = progress::bar(meta.len(), &label);
    let result = sm
        .upload_file_with_progress(&mut record, upload, progress::callback(bar.as_ref()))
        .await;
    progress::finish(bar, result.is_ok());
    let file_uid = result?;
    if json {
        output::json(&json!({ "uid": uid, "file_uid": file_uid, "size": meta.len() }))
    } else {
        output::line(file_uid)
    }
}

/// A safe local file name from an attachment's name (no directories, no control characters).
fn local_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    match clean.trim() {
        "" | "." | ".." => "attachment".to_owned(),
        other => other.to_owned(),
    }
}

async fn download(
    global: &ClientGlobal,
    uid: &str,
    name: Option<String>,
    file_uid: Option<String>,
    out: Option<PathBuf>,
    force: bool,
    json: bool,
) -> Result<()> {
    if json && out.as_deref().is_some_and(|o| o.as_os_str() == "-") {
        return Err(fail(
            code::USAGE,
            "--json cannot share standard output with the file (-o -): write it to a path",
        ));
    }
    let sm = connect(global)?;
    let record = one_record(&sm, uid).await?;
    let file = match (&file_uid, &name) {
        (Some(f), _) => record.files().iter().find(|x| x.uid() == f),
        (None, Some(n)) => {
            let named: Vec<&KeeperFile> = record.files().iter().filter(|x| x.name() == n).collect();
            if named.len() > 1 {
                return Err(fail(
                    code::ERROR,
                    format!(
                        "record {uid} has {} files named {n:?}; use --file-uid",
                        named.len()
                    ),
                ));
            }
            named
                .into_iter()
                .next()
                .or_else(|| record.files().iter().find(|x| x.title() == n))
        }
        (None, None) => None,
    };
    let Some(file) = file else {
        let wanted = file_uid.or(name).unwrap_or_default();
        let have: Vec<String> = record
            .files()
            .iter()
            .map(|f| format!("{} ({})", f.name(), f.uid()))
            .collect();
        return Err(fail(
            code::NOT_FOUND,
            format!(
                "record {uid} has no attachment {wanted:?}; it has: {}",
                if have.is_empty() {
                    "none".to_owned()
                } else {
                    have.join(", ")
                }
            ),
        ));
    };
    let target = out.unwrap_or_else(|| PathBuf::from(local_name(file.name())));
    let to_stdout = target.as_os_str() == "-";
    if !to_stdout && !force && target.exists() {
        return Err(fail(
            code::ERROR,
            format!("{} exists; pass --force to overwrite it", target.display()),
        ));
    }
    let label = format!("Downloading {}", local_name(file.name()));
    let bar = progress::bar(file.size().unwrap_or(0), &label);
    let result = sm
        .download_file_with_progress(file, progress::callback(bar.as_ref()))
        .await;
    progress::finish(bar, result.is_ok());
    let bytes = result?;
    if to_stdout {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&bytes)?;
        stdout.flush()?;
        return Ok(());
    }
    write_new_file(&target, &bytes, force)?;
    if json {
        return output::json(&json!({
            "uid": uid,
            "file_uid": file.uid(),
            "name": file.name(),
            "path": target,
            "size": bytes.len(),
        }));
    }
    if std::io::stderr().is_terminal() {
        note(format!(
            "wrote {} ({})",
            target.display(),
            human_size(bytes.len() as u64)
        ));
    }
    Ok(())
}

/// The first `oneTimeCode`/`otp` URI of a record (standard fields first).
fn totp_uri(record: &Record) -> Option<String> {
    let data = record.data();
    data.fields
        .iter()
        .chain(&data.custom)
        .filter(|f| f.field_type == "oneTimeCode" || f.field_type == "otp")
        .flat_map(|f| f.value.iter())
        .find_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
}

async fn totp(global: &ClientGlobal, uid: &str, watch: bool, json: bool) -> Result<()> {
    let sm = connect(global)?;
    let record = one_record(&sm, uid).await?;
    let uri = totp_uri(&record).ok_or_else(|| {
        fail(
            code::NOT_FOUND,
            format!("record {uid} has no one-time code (oneTimeCode) field with a value"),
        )
    })?;
    let first = get_totp_code(&uri).map_err(|e| fail(code::ERROR, e.to_string()))?;
    if json {
        return output::json(&json!({
            "code": first.code,
            "seconds_left": first.time_left,
            "period": first.period,
        }));
    }
    if !watch {
        return output::line(format!("{}  ({} s left)", first.code, first.time_left));
    }
    let terminal = stdout_is_terminal();
    let mut last_code = String::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    // Watch Ctrl-C before the first code is printed.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot watch Ctrl-C")?;
    loop {
        tokio::select! {
            _ = interrupt.recv() => {
                if terminal {
                    println!();
                }
                return Ok(());
            }
            _ = ticker.tick() => {
                let code = get_totp_code(&uri).map_err(|e| fail(code::ERROR, e.to_string()))?;
                let mut out = std::io::stdout().lock();
                if terminal {
                    write!(out, "\r\x1b[2K{}  ({:>2} s left)", code.code, code.time_left)?;
                    out.flush()?;
                } else if code.code != last_code {
                    writeln!(out, "{}  ({} s left)", code.code, code.time_left)?;
                    out.flush()?;
                }
                last_code = code.code;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_others_not() {
        let mut masked = false;
        assert_eq!(
            shown_value("login", &json!("alice"), false, &mut masked),
            json!("alice")
        );
        assert!(!masked);
        assert_eq!(
            shown_value("password", &json!("p"), false, &mut masked),
            json!(MASK)
        );
        assert!(masked);
        assert_eq!(
            shown_value("password", &json!("p"), true, &mut masked),
            json!("p")
        );
        let card =
            json!({"cardNumber": "4111", "cardExpirationDate": "01/30", "cardSecurityCode": ""});
        let shown = shown_value("paymentCard", &card, false, &mut masked);
        assert_eq!(shown["cardNumber"], MASK);
        assert_eq!(shown["cardExpirationDate"], "01/30");
        assert_eq!(shown["cardSecurityCode"], "");
        let mut untouched = false;
        assert_eq!(
            shown_value("password", &json!(""), false, &mut untouched),
            json!("")
        );
        assert!(!untouched);
    }

    #[test]
    fn titles_match_globs_and_substrings() {
        assert!(title_matches("prod", "My Prod DB"));
        assert!(title_matches("PROD*", "prod db"));
        assert!(!title_matches("prod*", "my prod"));
        assert!(title_matches("*db", "prod db"));
        assert!(title_matches("p?od*d?", "prod db"));
        assert!(title_matches("*", ""));
        assert!(!title_matches("a*b*c", "abxbx"));
        assert!(title_matches("a*b*c", "axbxbc"));
    }

    #[test]
    fn attachment_names_are_made_safe() {
        assert_eq!(local_name("../../etc/passwd"), "passwd");
        assert_eq!(local_name("dir\\x.txt"), "x.txt");
        assert_eq!(local_name(".."), "attachment");
        assert_eq!(local_name("a\u{7}b"), "ab");
    }

    #[test]
    fn field_flags_name_known_types() {
        assert!(
            check_field_flags(
                &["password=x".into(), "text.Company=y".into()],
                &["Env=1".into(), "Pin:pinCode=1".into()]
            )
            .is_ok()
        );
        assert!(check_field_flags(&["pasword=x".into()], &[]).is_err());
        assert!(check_field_flags(&[], &["Env:nonsense=1".into()]).is_err());
        assert!(sets_password(&["password=x".into()]));
        assert!(!sets_password(&["login=password".into()]));
    }
}
