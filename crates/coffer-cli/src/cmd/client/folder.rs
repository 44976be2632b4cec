//! `coffer folder …`: the folders shared with this device, through the SDK.

use std::collections::HashMap;

use anyhow::Result;
use coffer_sdk::KeeperFolder;
use serde_json::{Value, json};

use super::{code, connect, fail, note, report_cached, stdout_is_terminal, table};
use crate::client_cli::{ClientFolderCommand, FolderArgs};
use crate::output::{self, sanitize};

/// Folders in tree order (each parent before its children, siblings by name) with depths.
pub fn tree(folders: &[KeeperFolder]) -> Vec<(&KeeperFolder, usize)> {
    let known: HashMap<&str, &KeeperFolder> = folders.iter().map(|f| (f.uid(), f)).collect();
    let mut children: HashMap<Option<&str>, Vec<&KeeperFolder>> = HashMap::new();
    for f in folders {
        // A folder whose parent is not visible is shown at the top.
        let parent = f.parent_uid().filter(|p| known.contains_key(p));
        children.entry(parent).or_default().push(f);
    }
    for list in children.values_mut() {
        list.sort_by_key(|f| (f.name().to_lowercase(), f.uid().to_owned()));
    }
    let mut out = Vec::new();
    let mut stack: Vec<(&KeeperFolder, usize)> = children
        .get(&None)
        .map(|roots| roots.iter().rev().map(|f| (*f, 0)).collect())
        .unwrap_or_default();
    while let Some((folder, depth)) = stack.pop() {
        out.push((folder, depth));
        if let Some(kids) = children.get(&Some(folder.uid())) {
            for kid in kids.iter().rev() {
                stack.push((kid, depth + 1));
            }
        }
    }
    out
}

/// Runs `coffer folder …`.
pub async fn run(args: FolderArgs) -> Result<()> {
    let sm = connect(&args.global)?;
    match args.command {
        ClientFolderCommand::List { json } => {
            let folders = sm.get_folders().await?;
            report_cached(folders.cached.as_ref());
            let ordered = tree(&folders);
            if json {
                let list: Vec<Value> = ordered
                    .iter()
                    .map(|(f, depth)| {
                        json!({
                            "uid": f.uid(),
                            "name": f.name(),
                            "parent_uid": f.parent_uid(),
                            "shared_folder_uid": f.shared_folder_uid(),
                            "shared": f.is_shared_folder(),
                            "depth": depth,
                        })
                    })
                    .collect();
                return output::json(&json!({ "folders": list }));
            }
            if stdout_is_terminal() {
                if ordered.is_empty() {
                    note("no folders are shared with this device's application");
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = ordered
                    .iter()
                    .map(|(f, depth)| {
                        vec![
                            f.uid().to_owned(),
                            format!("{}{}", "  ".repeat(*depth), f.name()),
                            if f.is_shared_folder() {
                                "shared folder"
                            } else {
                                "sub-folder"
                            }
                            .to_owned(),
                        ]
                    })
                    .collect();
                print!("{}", table::render(&["UID", "NAME", "KIND"], &rows));
                return Ok(());
            }
            for (f, _) in ordered {
                output::line(format!(
                    "{}\t{}\t{}",
                    f.uid(),
                    f.parent_uid().unwrap_or_default(),
                    sanitize(f.name()).replace(['\t', '\n'], " ")
                ))?;
            }
            Ok(())
        }
        ClientFolderCommand::Add { parent, name, json } => {
            if name.trim().is_empty() {
                return Err(fail(code::USAGE, "a folder needs a non-blank name"));
            }
            let uid = sm.create_folder(&parent, &name).await?;
            if json {
                output::json(&json!({ "uid": uid, "name": name, "parent_uid": parent }))
            } else {
                output::line(uid)
            }
        }
        ClientFolderCommand::Update { uid, name, json } => {
            if name.trim().is_empty() {
                return Err(fail(code::USAGE, "a folder needs a non-blank name"));
            }
            sm.update_folder(&uid, &name).await?;
            if json {
                output::json(&json!({ "uid": uid, "name": name }))
            } else {
                output::line(format!("Renamed {uid} to {}.", sanitize(&name)))
            }
        }
        ClientFolderCommand::Delete { uids, force, json } => {
            let refs: Vec<&str> = uids.iter().map(String::as_str).collect();
            let outcomes = sm.delete_folder(&refs, force).await?;
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
            let hint = if !force
                && failed
                    .iter()
                    .any(|(_, e)| e.to_lowercase().contains("not empty"))
            {
                "\nhint: --force also deletes what is in the folder"
            } else {
                ""
            };
            Err(fail(
                super::delete_failure_code(&failed),
                format!(
                    "{} of {} folder(s) were not deleted:\n  {}{hint}",
                    failed.len(),
                    uids.len(),
                    details.join("\n  ")
                ),
            ))
        }
    }
}
