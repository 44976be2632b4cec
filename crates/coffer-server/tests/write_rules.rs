//! Write-path rules that hold across requests: records and folders never share a UID (a share
//! names its target by UID alone), an upload never overwrites a save made after its
//! announcement, a revoked device's pending upload is refused, and of two requests racing with
//! one upload token the loser never harms the winner's content.

mod common;

use std::time::Duration;

use coffer_crypto::{decode_lenient, encode_std, encode_url, random_bytes};
use common::{
    Ksm, Vault, all_records, provision, read_response, register_owner, start_server, tls_connect,
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

struct World {
    _dir: tempfile::TempDir,
    _server: coffer_server::RunningServer,
    ep: common::Endpoint,
    owner: coffer_owner::Session,
    v: Vault,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, ep) = start_server(dir.path(), |_| {}).await;
    let code = server.setup_code.clone().expect("setup code");
    let owner = register_owner(&ep, &code).await;
    let v = provision(&owner).await;
    World {
        _dir: dir,
        _server: server,
        ep,
        owner,
        v,
    }
}

impl World {
    async fn device(&self, app: &str) -> Ksm {
        let token = self
            .owner
            .add_client(app, &coffer_owner::NewClientOptions::default())
            .await
            .expect("client token");
        let mut ksm = Ksm::from_config(&token.config, &self.ep.cert_path);
        ksm.bind().await;
        ksm
    }

    /// Announces a file on `a_root` (with the given record data and, if any, revision);
    /// returns (file UID, upload URL).
    async fn add_file(
        &self,
        ksm: &Ksm,
        record_data: &[u8],
        revision: Option<i64>,
        size: usize,
    ) -> (String, String) {
        let file_uid = encode_url(&random_bytes::<16>());
        let mut req = json!({
            "fileRecordUid": file_uid,
            "fileRecordKey": bytes_b64(125),
            "fileRecordData": bytes_b64(40),
            "ownerRecordUid": self.v.a_root,
            "ownerRecordData": encode_url(record_data),
            "linkKey": bytes_b64(60),
            "fileSize": size,
        });
        if let Some(revision) = revision {
            req["ownerRecordRevision"] = json!(revision);
        }
        let (status, body) = call(ksm, "add_file", req).await;
        assert_eq!(status, 200, "add_file: {body}");
        let answer: Value = serde_json::from_str(&body).expect("add_file answer");
        let url = answer["url"].as_str().expect("upload url").to_owned();
        (file_uid, url)
    }

    async fn post_upload(&self, url: &str, content: &[u8]) -> u16 {
        let body = multipart(content);
        self.ep
            .http()
            .post(url)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await
            .expect("upload request")
            .status()
            .as_u16()
    }
}

/// Calls a KSM endpoint: (status, decrypted JSON text or the raw error body).
async fn call(ksm: &Ksm, endpoint: &str, extra: Value) -> (u16, String) {
    let reply = ksm.send(&ksm.prepare(endpoint, &ksm.payload(extra))).await;
    if reply.status == 200 && !reply.body.is_empty() {
        (200, reply.json().to_string())
    } else {
        (
            reply.status,
            String::from_utf8_lossy(&reply.body).into_owned(),
        )
    }
}

fn bytes_b64(n: usize) -> String {
    encode_std(&(0..n).map(|i| i as u8).collect::<Vec<_>>())
}

const BOUNDARY: &str = "CofferWriteRulesBoundary";

fn multipart(content: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"fileUid\"\r\n\r\nx\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn record_uids(answer: &Value) -> Vec<String> {
    all_records(answer)
        .iter()
        .map(|r| r["recordUid"].as_str().expect("uid").to_owned())
        .collect()
}

fn folder_uids(answer: &Value) -> Vec<String> {
    answer["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .map(|f| f["folderUid"].as_str().expect("uid").to_owned())
        .collect()
}

/// (revision, raw encrypted data) of a record in a `get_secret` answer.
fn revision_and_data(answer: &Value, uid: &str) -> (i64, Vec<u8>) {
    let record = all_records(answer)
        .into_iter()
        .find(|r| r["recordUid"] == uid)
        .unwrap_or_else(|| panic!("record {uid} not in the answer"));
    (
        record["revision"].as_i64().expect("revision"),
        decode_lenient(record["data"].as_str().expect("data")).expect("base64 data"),
    )
}

#[tokio::test]
async fn a_record_cannot_take_a_folders_uid_nor_a_folder_a_records() {
    let w = world().await;
    w.owner
        .share(&w.v.other_app, &w.v.hidden, false)
        .await
        .expect("share hidden with the other app");
    let mut a = w.device(&w.v.app).await;
    let mut b = w.device(&w.v.other_app).await;
    let seen_by_b = b.get_secret(json!({})).await.expect("b reads");
    assert!(folder_uids(&seen_by_b).contains(&w.v.other_folder));
    assert!(record_uids(&seen_by_b).contains(&w.v.hidden));

    // A record named like a folder `a` cannot see, in a folder `a` may edit: refused.
    let (status, body) = call(
        &a,
        "create_secret",
        json!({
            "recordUid": w.v.other_folder,
            "recordKey": bytes_b64(125),
            "folderUid": w.v.alpha,
            "folderKey": bytes_b64(60),
            "data": bytes_b64(40),
        }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already used"), "{body}");
    // A sub-folder named like a record `a` cannot see: refused.
    let (status, body) = call(
        &a,
        "create_folder",
        json!({
            "folderUid": w.v.hidden,
            "sharedFolderUid": w.v.alpha,
            "sharedFolderKey": encode_url(&[1u8; 64]),
            "data": encode_url(&[2u8; 32]),
        }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already used"), "{body}");

    // Deleting by those UIDs finds nothing `a` may touch, and `b` keeps both shares.
    let (_, deleted) = call(
        &a,
        "delete_secret",
        json!({ "recordUids": [w.v.other_folder] }),
    )
    .await;
    assert!(!deleted.contains("\"ok\""), "{deleted}");
    let (_, deleted) = call(&a, "delete_folder", json!({ "folderUids": [w.v.hidden] })).await;
    assert!(!deleted.contains("\"ok\""), "{deleted}");
    let after = b.get_secret(json!({})).await.expect("b reads");
    assert_eq!(after, seen_by_b, "the other app's view is unchanged");
    assert!(
        !record_uids(&a.get_secret(json!({})).await.expect("a reads")).contains(&w.v.other_folder)
    );
}

#[tokio::test]
async fn an_upload_never_overwrites_a_save_made_after_its_announcement() {
    let w = world().await;
    let mut a = w.device(&w.v.app).await;
    let (revision, _) =
        revision_and_data(&a.get_secret(json!({})).await.expect("read"), &w.v.a_root);
    // As the official Rust SDK announces: without `ownerRecordRevision`.
    let content = vec![9u8; 100];
    let (file_uid, url) = w.add_file(&a, &[7u8; 50], None, content.len()).await;
    let (status, body) = call(
        &a,
        "update_secret",
        json!({ "recordUid": w.v.a_root, "data": encode_url(&[8u8; 50]), "revision": revision }),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let status = w.post_upload(&url, &content).await;
    assert_eq!(status, 400, "a stale upload is refused");
    let answer = a.get_secret(json!({})).await.expect("read");
    assert_eq!(
        revision_and_data(&answer, &w.v.a_root),
        (revision + 1, vec![8u8; 50]),
        "the save is kept"
    );
    assert!(!answer.to_string().contains(&file_uid), "no file published");
}

#[tokio::test]
async fn a_revoked_device_cannot_finish_its_upload() {
    let w = world().await;
    let mut a = w.device(&w.v.app).await;
    let (revision, data) =
        revision_and_data(&a.get_secret(json!({})).await.expect("read"), &w.v.a_root);
    let content = vec![9u8; 100];

    // The share made read-only after the announcement.
    let (file_uid, url) = w
        .add_file(&a, &[7u8; 50], Some(revision), content.len())
        .await;
    w.owner
        .share(&w.v.app, &w.v.alpha, false)
        .await
        .expect("make alpha read-only");
    assert_eq!(w.post_upload(&url, &content).await, 403);
    let answer = a.get_secret(json!({})).await.expect("read");
    assert_eq!(
        revision_and_data(&answer, &w.v.a_root),
        (revision, data.clone())
    );
    assert!(!answer.to_string().contains(&file_uid));

    // The device removed after the announcement.
    w.owner
        .share(&w.v.app, &w.v.alpha, true)
        .await
        .expect("make alpha editable again");
    let (file_uid, url) = w
        .add_file(&a, &[7u8; 50], Some(revision), content.len())
        .await;
    w.owner
        .remove_client(&w.v.app, &a.client_id)
        .await
        .expect("remove the device");
    assert_eq!(w.post_upload(&url, &content).await, 403);
    let record = w.owner.record(&w.v.a_root).await.expect("owner reads");
    assert_eq!(record.revision, revision);
    assert!(record.files.iter().all(|f| f.uid != file_uid));
}

#[tokio::test]
async fn the_loser_of_two_uploads_with_one_token_leaves_the_winners_content() {
    let w = world().await;
    let mut a = w.device(&w.v.app).await;
    let (revision, _) =
        revision_and_data(&a.get_secret(json!({})).await.expect("read"), &w.v.a_root);
    let content: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let (file_uid, url) = w
        .add_file(&a, &[7u8; 50], Some(revision), content.len())
        .await;
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
        .expect("upload path");
    let body = multipart(&content);

    // Upload A sends its headers and most of the body, then waits.
    let mut slow = tls_connect(&w.ep).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.expect("write head");
    slow.write_all(&body[..body.len() - 10])
        .await
        .expect("write body");
    slow.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Upload B, with the same token, completes.
    assert_eq!(w.post_upload(&url, &content).await, 204);

    // A finishes and is refused.
    slow.write_all(&body[body.len() - 10..])
        .await
        .expect("write rest");
    slow.flush().await.expect("flush");
    let mut left = Vec::new();
    let reply = read_response(&mut slow, &mut left).await;
    assert_eq!(
        reply.status,
        404,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    // B's file is listed and its content downloads intact.
    let answer = a.get_secret(json!({})).await.expect("read");
    let file_url = all_records(&answer)
        .iter()
        .flat_map(|r| r["files"].as_array().cloned().unwrap_or_default())
        .find(|f| f["fileUid"] == file_uid.as_str())
        .and_then(|f| f["url"].as_str().map(str::to_owned))
        .expect("the file is listed");
    let download = w.ep.http().get(&file_url).send().await.expect("download");
    assert_eq!(download.status().as_u16(), 200);
    assert_eq!(download.bytes().await.expect("content").to_vec(), content);
}
