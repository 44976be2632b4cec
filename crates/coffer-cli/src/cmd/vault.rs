//! `coffer vault …`: the owner's tools. All encryption happens here, on this machine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use coffer_owner::{NewClientOptions, OwnerClient, OwnerError, ServerTrust, Session};
use coffer_proto::record::RecordData;
use serde_json::{Value, json};

use super::master_password;
use crate::cli::{
    AppCommand, ClientCommand, FileCommand, FolderCommand, RecordCommand, VaultArgs, VaultCommand,
    VaultGlobal,
};
use crate::fields::{apply_edits, build_record};
use crate::home::{SavedSession, coffer_home};
use crate::output::{self, sanitize};

fn trust(ca_cert: Option<&PathBuf>) -> ServerTrust {
    ca_cert.map_or(ServerTrust::System, |p| ServerTrust::ExtraCa(p.clone()))
}

fn save(home: &Path, session: &Session, ca_cert: Option<&PathBuf>) -> Result<()> {
    SavedSession {
        server: session.client().base_url().to_owned(),
        email: session.email().to_owned(),
        token: session.token().to_owned(),
        expires_at: session.expires_at(),
        ca_cert: ca_cert.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
    }
    .save(home)
}

/// Opens the saved session, logging in again when it expired.
async fn connect(global: &VaultGlobal) -> Result<(PathBuf, Session)> {
    let home = coffer_home()?;
    let saved = SavedSession::load(&home)?
        .context("not logged in: run `coffer vault login --server URL --email EMAIL` first")?;
    let ca_cert = global.ca_cert.clone().or(saved.ca_cert.clone());
    let client = OwnerClient::new(&saved.server, &trust(ca_cert.as_ref()))?;
    let password = master_password(false)?;
    let session =
        match Session::resume(client.clone(), &saved.token, saved.expires_at, &password).await {
            Ok(session) => session,
            Err(OwnerError::Server { status: 401, .. }) => {
                let session = Session::login(client, &saved.email, &password).await?;
                save(&home, &session, ca_cert.as_ref())?;
                session
            }
            Err(err) => return Err(err.into()),
        };
    Ok((home, session))
}

/// Prints `{"uid": …}` or the UID alone.
fn print_uid(global: &VaultGlobal, uid: &str) -> Result<()> {
    if global.json {
        output::json(&json!({ "uid": uid }))
    } else {
        output::line(uid)
    }
}

/// Runs a vault command.
pub async fn run(args: VaultArgs) -> Result<()> {
    let global = args.global;
    match args.command {
        VaultCommand::Register {
            server,
            email,
            setup_code,
        } => {
            let home = coffer_home()?;
            let client = OwnerClient::new(&server, &trust(global.ca_cert.as_ref()))?;
            let code = setup_code.context(
                "--setup-code is required for the first owner (it is in the server's DATA_DIR/setup-code)",
            )?;
            let password = master_password(true)?;
            let session = Session::register(client, &email, &password, &code).await?;
            save(&home, &session, global.ca_cert.as_ref())?;
            if global.json {
                output::json(&json!({ "uid": session.owner_uid(), "email": session.email() }))
            } else {
                output::line(format!("Registered and logged in as {}.", session.email()))
            }
        }
        VaultCommand::Login { server, email } => {
            let home = coffer_home()?;
            let client = OwnerClient::new(&server, &trust(global.ca_cert.as_ref()))?;
            let password = master_password(false)?;
            let session = Session::login(client, &email, &password).await?;
            save(&home, &session, global.ca_cert.as_ref())?;
            if global.json {
                output::json(&json!({ "uid": session.owner_uid(), "email": session.email() }))
            } else {
                output::line(format!("Logged in as {}.", session.email()))
            }
        }
        VaultCommand::Logout => {
            // The local session is forgotten even when the server cannot be told (unreachable,
            // no password at hand): the token then simply expires there.
            let home = coffer_home()?;
            if SavedSession::load(&home)?.is_none() {
                bail!("not logged in");
            }
            let ended = match connect(&global).await {
                Ok((_, session)) => session.logout().await.map_err(anyhow::Error::from),
                Err(err) => Err(err),
            };
            if let Err(err) = &ended {
                eprintln!(
                    "warning: the session could not be ended on the server ({err:#}); it is \
                     forgotten here and expires on the server by itself"
                );
            }
            SavedSession::delete(&home)?;
            if global.json {
                output::json(&json!({}))
            } else {
                output::line("Logged out.")
            }
        }
        VaultCommand::Folder(cmd) => folder(&global, cmd).await,
        VaultCommand::Record(cmd) => record(&global, cmd).await,
        VaultCommand::File(cmd) => file(&global, cmd).await,
        VaultCommand::App(cmd) => app(&global, cmd).await,
        VaultCommand::Client(cmd) => client(&global, cmd).await,
        VaultCommand::Audit {
            actor,
            action,
            target,
            limit,
        } => {
            let (_, session) = connect(&global).await?;
            let mut query = vec![format!("limit={limit}")];
            for (key, value) in [("actor", actor), ("action", action), ("target", target)] {
                if let Some(value) = value {
                    query.push(format!("{key}={}", url_encode(&value)));
                }
            }
            let events = session.audit(&query.join("&")).await?;
            if global.json {
                return output::json(&json!({ "events": events }));
            }
            for e in events {
                output::line(format!(
                    "{:>6}  {}  {:<22} {:<30} {} {}",
                    e.id,
                    format_time(e.at),
                    e.action,
                    sanitize(&e.actor),
                    e.target.unwrap_or_default(),
                    e.ip.unwrap_or_default()
                ))?;
            }
            Ok(())
        }
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn format_time(ms: i64) -> String {
    let secs = ms / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

async fn folder(global: &VaultGlobal, cmd: FolderCommand) -> Result<()> {
    let (_, session) = connect(global).await?;
    match cmd {
        FolderCommand::Create { name, parent } => {
            let uid = session.create_folder(&name, parent.as_deref()).await?;
            print_uid(global, &uid)
        }
        FolderCommand::List => {
            let folders = session.folders().await?;
            if global.json {
                let list: Vec<Value> = folders
                    .iter()
                    .map(|f| json!({ "uid": f.uid, "name": f.name, "parent_uid": f.parent_uid, "shared_folder_uid": f.root_uid }))
                    .collect();
                return output::json(&json!({ "folders": list }));
            }
            let mut depth: HashMap<String, usize> = HashMap::new();
            for f in &folders {
                let d = f
                    .parent_uid
                    .as_ref()
                    .and_then(|p| depth.get(p))
                    .map_or(0, |d| d + 1);
                depth.insert(f.uid.clone(), d);
                output::line(format!(
                    "{}  {}{}",
                    f.uid,
                    "  ".repeat(d),
                    sanitize(&f.name)
                ))?;
            }
            Ok(())
        }
        FolderCommand::Rename { uid, name } => {
            session.rename_folder(&uid, &name).await?;
            if global.json {
                output::json(&json!({ "uid": uid, "name": name }))
            } else {
                output::line(format!("Renamed {uid}."))
            }
        }
        FolderCommand::Delete { uid, force } => {
            let removed = session.delete_folder(&uid, force).await?;
            if global.json {
                output::json(
                    &json!({ "uid": uid, "deleted": true, "folders": removed.folders, "records": removed.records, "files": removed.files }),
                )
            } else {
                output::line(format!(
                    "Deleted {} folder(s), {} record(s), {} file(s).",
                    removed.folders.len(),
                    removed.records.len(),
                    removed.files.len()
                ))
            }
        }
    }
}

fn record_json(view: &coffer_owner::RecordView) -> Value {
    json!({
        "uid": view.uid,
        "folder_uid": view.folder_uid,
        "shared_folder_uid": view.root_folder_uid,
        "revision": view.revision,
        "data": view.data,
        "files": view.files.iter().map(|f| json!({ "uid": f.uid, "meta": f.meta, "size": f.size })).collect::<Vec<_>>(),
    })
}

async fn record(global: &VaultGlobal, cmd: RecordCommand) -> Result<()> {
    let (_, session) = connect(global).await?;
    match cmd {
        RecordCommand::Add {
            folder,
            record_type,
            title,
            fields,
            custom,
            notes,
            json_file,
        } => {
            let data = match json_file {
                Some(path) => {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let data: RecordData = serde_json::from_slice(&bytes).with_context(|| {
                        format!(
                            "{} is not a record JSON (title, type, fields, custom, notes)",
                            path.display()
                        )
                    })?;
                    data
                }
                None => build_record(
                    record_type.as_deref().unwrap_or_default(),
                    title.as_deref().unwrap_or_default(),
                    &fields,
                    &custom,
                    notes.as_deref(),
                )?,
            };
            let uid = session.add_record(&folder, &data).await?;
            print_uid(global, &uid)
        }
        RecordCommand::List { folder } => {
            let records = session.records().await?;
            let records: Vec<_> = records
                .iter()
                .filter(|r| {
                    folder
                        .as_ref()
                        .is_none_or(|f| &r.folder_uid == f || &r.root_folder_uid == f)
                })
                .collect();
            if global.json {
                let list: Vec<Value> = records.iter().map(|r| record_json(r)).collect();
                return output::json(&json!({ "records": list }));
            }
            for r in records {
                output::line(format!(
                    "{}  {:<20} {}",
                    r.uid,
                    sanitize(&r.data.record_type),
                    sanitize(&r.data.title)
                ))?;
            }
            Ok(())
        }
        RecordCommand::Get { uid } => {
            let view = session.record(&uid).await?;
            if global.json {
                return output::json(&record_json(&view));
            }
            output::line(format!(
                "{} ({}), revision {}",
                sanitize(&view.data.title),
                view.data.record_type,
                view.revision
            ))?;
            for f in view.data.fields.iter().chain(&view.data.custom) {
                if f.value.is_empty() {
                    continue;
                }
                let name = f.label.clone().unwrap_or_else(|| f.field_type.clone());
                let values: Vec<String> = f
                    .value
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect();
                output::line(format!(
                    "  {}: {}",
                    sanitize(&name),
                    sanitize(&values.join(", "))
                ))?;
            }
            if let Some(notes) = &view.data.notes
                && !notes.is_empty()
            {
                output::line(format!("  notes: {}", sanitize(notes)))?;
            }
            for f in &view.files {
                output::line(format!(
                    "  file {}: {}",
                    f.uid,
                    sanitize(f.meta["name"].as_str().unwrap_or(""))
                ))?;
            }
            Ok(())
        }
        RecordCommand::Edit {
            uid,
            title,
            notes,
            fields,
            custom,
            json_file,
        } => {
            let view = session.record(&uid).await?;
            let data = match json_file {
                Some(path) => {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    serde_json::from_slice::<RecordData>(&bytes)
                        .with_context(|| format!("{} is not a record JSON", path.display()))?
                }
                None => {
                    let mut data = view.data.clone();
                    if let Some(title) = title {
                        data.title = title;
                    }
                    if let Some(notes) = notes {
                        data.notes = Some(notes);
                    }
                    apply_edits(&mut data, &fields, &custom)?;
                    data
                }
            };
            let revision = session.update_record(&uid, &data, view.revision).await?;
            if global.json {
                output::json(&json!({ "uid": uid, "revision": revision }))
            } else {
                output::line(format!("Saved {uid} as revision {revision}."))
            }
        }
        RecordCommand::Delete { uid } => {
            let removed = session.delete_record(&uid).await?;
            if global.json {
                output::json(&json!({ "uid": uid, "deleted": true, "files": removed.files }))
            } else {
                output::line(format!(
                    "Deleted record {uid} ({} attachment(s)).",
                    removed.files.len()
                ))
            }
        }
        RecordCommand::History { uid } => {
            let history = session.record_history(&uid).await?;
            if global.json {
                let list: Vec<Value> = history
                    .iter()
                    .map(|(h, data)| json!({ "revision": h.revision, "actor": h.actor, "at": h.at, "data": data }))
                    .collect();
                return output::json(&json!({ "uid": uid, "revisions": list }));
            }
            for (h, data) in history {
                output::line(format!(
                    "{:>5}  {}  {:<32} {}",
                    h.revision,
                    format_time(h.at),
                    sanitize(&h.actor),
                    sanitize(&data.title)
                ))?;
            }
            Ok(())
        }
        RecordCommand::Restore { uid, revision } => {
            let new = session.restore_record(&uid, revision).await?;
            if global.json {
                output::json(&json!({ "uid": uid, "revision": new, "restored_from": revision }))
            } else {
                output::line(format!(
                    "Restored revision {revision} of {uid} as revision {new}."
                ))
            }
        }
    }
}

async fn file(global: &VaultGlobal, cmd: FileCommand) -> Result<()> {
    let (_, session) = connect(global).await?;
    match cmd {
        FileCommand::Attach {
            record_uid,
            path,
            name,
        } => {
            let content =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = match name {
                Some(name) => name,
                None => path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("the file has no usable name; pass --name")?
                    .to_owned(),
            };
            let uid = session
                .attach_file(&record_uid, &name, mime_for(&name), &content)
                .await?;
            print_uid(global, &uid)
        }
        FileCommand::Download {
            record_uid,
            file,
            output: path,
            force,
        } => {
            let record = session.record(&record_uid).await?;
            let matches: Vec<_> = record
                .files
                .iter()
                .filter(|f| f.uid == file || f.meta["name"].as_str() == Some(file.as_str()))
                .collect();
            let target = match matches.as_slice() {
                [one] => *one,
                [] => bail!("record {record_uid} has no file {file:?}"),
                _ => bail!(
                    "several files of record {record_uid} are named {file:?}; use the file UID"
                ),
            };
            let bytes = session.download_file(target).await?;
            crate::cmd::client::interpolate::write_new_file(&path, &bytes, force)?;
            if global.json {
                output::json(&json!({ "uid": target.uid, "path": path, "size": bytes.len() }))
            } else {
                output::line(format!("Wrote {} bytes to {}", bytes.len(), path.display()))
            }
        }
        FileCommand::Remove {
            record_uid,
            file_uid,
        } => {
            let revision = session.remove_file(&record_uid, &file_uid).await?;
            if global.json {
                output::json(
                    &json!({ "uid": file_uid, "removed": true, "record_revision": revision }),
                )
            } else {
                output::line(format!("Removed {file_uid} from {record_uid}."))
            }
        }
    }
}

/// A MIME type from a file name's extension.
pub fn mime_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "json" => "application/json",
        "pem" | "crt" | "key" => "application/x-pem-file",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "zip" => "application/zip",
        "yaml" | "yml" => "application/yaml",
        _ => "application/octet-stream",
    }
}

async fn app(global: &VaultGlobal, cmd: AppCommand) -> Result<()> {
    let (_, session) = connect(global).await?;
    match cmd {
        AppCommand::Create { name } => {
            let uid = session.create_app(&name).await?;
            print_uid(global, &uid)
        }
        AppCommand::List => {
            let apps = session.apps().await?;
            if global.json {
                let list: Vec<Value> = apps
                    .iter()
                    .map(|a| json!({ "uid": a.uid, "name": a.name, "shares": a.shares.iter().map(|s| json!({"target_uid": s.target_uid, "kind": s.kind, "editable": s.editable})).collect::<Vec<_>>() }))
                    .collect();
                return output::json(&json!({ "apps": list }));
            }
            for a in apps {
                output::line(format!("{}  {}", a.uid, sanitize(&a.name)))?;
                for s in a.shares {
                    output::line(format!(
                        "    {:?} {} ({})",
                        s.kind,
                        s.target_uid,
                        if s.editable { "editable" } else { "read-only" }
                    ))?;
                }
            }
            Ok(())
        }
        AppCommand::Share {
            app_uid,
            target_uid,
            editable,
        } => {
            let kind = session.share(&app_uid, &target_uid, editable).await?;
            if global.json {
                output::json(
                    &json!({ "app_uid": app_uid, "target_uid": target_uid, "kind": kind, "editable": editable }),
                )
            } else {
                output::line(format!(
                    "Shared {target_uid} with {app_uid} ({}).",
                    if editable { "editable" } else { "read-only" }
                ))
            }
        }
        AppCommand::Unshare {
            app_uid,
            target_uid,
        } => {
            session.unshare(&app_uid, &target_uid).await?;
            if global.json {
                output::json(
                    &json!({ "app_uid": app_uid, "target_uid": target_uid, "removed": true }),
                )
            } else {
                output::line(format!("{target_uid} is no longer shared with {app_uid}."))
            }
        }
    }
}

async fn client(global: &VaultGlobal, cmd: ClientCommand) -> Result<()> {
    let (_, session) = connect(global).await?;
    match cmd {
        ClientCommand::Add {
            app_uid,
            name,
            first_access_expires,
            unlock_ip,
        } => {
            let new = session
                .add_client(
                    &app_uid,
                    &NewClientOptions {
                        name,
                        first_access_expires,
                        unlock_ip,
                    },
                )
                .await?;
            if global.json {
                return output::json(&new);
            }
            output::line(format!("One-time token: {}", new.token))?;
            output::line(format!("Client id:      {}", new.client_id))?;
            output::line(format!("KSM config:     {}", new.config))?;
            output::line(
                "Give the config (KSM_CONFIG) to exactly one device; it binds on first use.",
            )
        }
        ClientCommand::List { app_uid } => {
            let clients = session.clients(&app_uid).await?;
            if global.json {
                return output::json(&json!({ "clients": clients }));
            }
            for c in clients {
                output::line(format!(
                    "{}  {:<20} {}{}",
                    c.client_id,
                    sanitize(&c.name),
                    if c.bound { "bound" } else { "pending" },
                    c.bound_ip
                        .map(|ip| format!(" from {ip}"))
                        .unwrap_or_default()
                ))?;
            }
            Ok(())
        }
        ClientCommand::Remove { app_uid, client_id } => {
            session.remove_client(&app_uid, &client_id).await?;
            if global.json {
                output::json(&json!({ "client_id": client_id, "removed": true }))
            } else {
                output::line(format!("Removed client {client_id}."))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14 22:13:20Z");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(url_encode("client:a+b/="), "client%3Aa%2Bb%2F%3D");
    }
}
