//! The read path over real HTTPS: binding (PROTOCOL.md §4.5, checklist 19–26), `get_secret`
//! (§5.1, checklist 28–38), file download (§5.11) and `get_folders` (§5.2, checklist 39–41).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use coffer_crypto::{SymmetricKey, gcm_open};
use common::*;
use serde_json::{Value, json};

static SHARED: OnceLock<Shared> = OnceLock::new();

fn fx() -> &'static Shared {
    SHARED.get_or_init(|| Shared::start(|_| {}))
}

/// UIDs of `records` (direct shares) of an answer.
fn direct_uids(answer: &Value) -> Vec<String> {
    let mut uids: Vec<String> = answer["records"]
        .as_array()
        .expect("records is an array")
        .iter()
        .map(|r| r["recordUid"].as_str().expect("recordUid").to_owned())
        .collect();
    uids.sort();
    uids
}

/// Folder UID → sorted record UIDs of an answer's `folders`.
fn folder_map(answer: &Value) -> BTreeMap<String, Vec<String>> {
    answer["folders"]
        .as_array()
        .expect("folders is an array")
        .iter()
        .map(|f| {
            let mut records: Vec<String> = f["records"]
                .as_array()
                .expect("a folder's records is an array")
                .iter()
                .map(|r| r["recordUid"].as_str().expect("recordUid").to_owned())
                .collect();
            records.sort();
            (
                f["folderUid"].as_str().expect("folderUid").to_owned(),
                records,
            )
        })
        .collect()
}

fn sorted(uids: &[&String]) -> Vec<String> {
    let mut out: Vec<String> = uids.iter().map(|s| (*s).clone()).collect();
    out.sort();
    out
}

fn warnings_of(answer: &Value) -> Vec<String> {
    match &answer["warnings"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|w| w.as_str().expect("warnings are strings").to_owned())
            .collect(),
        other => panic!("warnings must be null or an array: {other}"),
    }
}

// ---- binding -------------------------------------------------------------------------------

#[tokio::test]
async fn binding_returns_the_app_key_owner_key_and_app_data() {
    let fx = fx();
    let v = &fx.vault;
    let mut ksm = fx.device(&v.app).await;
    let first = ksm.bind().await;

    let wrapped = first["encryptedAppKey"].as_str().expect("encryptedAppKey");
    assert_eq!(wrapped.len(), 80, "B64 of 60 bytes");
    std_b64(wrapped);
    assert_eq!(
        ksm.app_key(),
        &v.app_key,
        "encryptedAppKey opens to the app key"
    );
    assert_eq!(
        ksm.owner_public_key.as_deref(),
        Some(&v.owner_public_key[..]),
        "appOwnerPublicKey is the owner's public key"
    );
    let app_data = url_b64(first["appData"].as_str().expect("appData"));
    let app_json: Value =
        serde_json::from_slice(&gcm_open(&v.app_key, &app_data).expect("appData opens"))
            .expect("app data JSON");
    assert_eq!(app_json, json!({"title": v.app_name, "type": "app"}));

    // The next call carries no publicKey and is signed with the registered key.
    let second = ksm.get_secret(json!({})).await.expect("second call");
    assert!(second["encryptedAppKey"].is_null());
    assert!(second["appOwnerPublicKey"].is_null());
    // The binding answer is complete (the JS SDK returns it to the caller).
    assert_eq!(direct_uids(&first), direct_uids(&second));
    assert_eq!(folder_map(&first), folder_map(&second));
    assert_eq!(direct_uids(&first), sorted(&[&v.direct_ro, &v.direct_rw]));
}

#[tokio::test]
async fn repeated_binding_with_the_same_key_answers_the_app_key_again() {
    let fx = fx();
    let mut ksm = fx.bound_device(&fx.vault.app).await;
    let again = ksm
        .get_secret(json!({"publicKey": ksm.public_key_b64()}))
        .await
        .expect("a repeated binding with the same key is accepted");
    let wrapped = again["encryptedAppKey"]
        .as_str()
        .expect("encryptedAppKey again");
    assert_eq!(&gcm_key(&ksm.client_key, wrapped), &fx.vault.app_key);
    assert_eq!(
        std_b64(again["appOwnerPublicKey"].as_str().expect("owner key")),
        fx.vault.owner_public_key
    );
    ksm.get_secret(json!({})).await.expect("still usable");
}

#[tokio::test]
async fn binding_works_with_the_cli_dummy_filter() {
    let fx = fx();
    let mut ksm = fx.device(&fx.vault.app).await;
    let answer = ksm
        .get_secret(json!({"requestedRecords": ["AAAAAAAAAAAAAAAAAAAAAA"]}))
        .await
        .expect("binding with an unknown requested UID");
    assert_eq!(ksm.app_key(), &fx.vault.app_key);
    assert_eq!(answer["records"], json!([]));
    assert_eq!(answer["folders"], json!([]));
    let warnings = warnings_of(&answer);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("AAAAAAAAAAAAAAAAAAAAAA"));
    let next = ksm.get_secret(json!({})).await.expect("bound");
    assert_eq!(direct_uids(&next).len(), 2);
}

#[tokio::test]
async fn a_different_public_key_for_a_bound_client_is_refused() {
    let fx = fx();
    let mut ksm = fx.bound_device(&fx.vault.app).await;
    let mut intruder = ksm.sibling();
    // With its own publicKey (a second binding attempt) …
    let failure = expect_failure(intruder.get_secret(json!({})).await, 403, "access_denied");
    assert!(intruder.app_key.is_none(), "{failure:?}");
    // … and without one, signing with a key that is not the registered one.
    expect_failure(
        intruder.get_secret(json!({"publicKey": Value::Null})).await,
        403,
        "access_denied",
    );
    // The registered device is unaffected.
    ksm.get_secret(json!({}))
        .await
        .expect("the bound device works");
    let clients = fx.clients(&fx.vault.app).await;
    let me = clients
        .iter()
        .find(|c| c.client_id == ksm.client_id)
        .expect("listed");
    assert!(me.bound);
}

#[tokio::test]
async fn an_unbound_device_without_public_key_is_refused() {
    let fx = fx();
    let mut ksm = fx.device(&fx.vault.app).await;
    for absent in [json!({"publicKey": null}), json!({"publicKey": ""})] {
        expect_failure(ksm.get_secret(absent).await, 403, "access_denied");
        assert!(ksm.app_key.is_none());
    }
    let clients = fx.clients(&fx.vault.app).await;
    let me = clients
        .iter()
        .find(|c| c.client_id == ksm.client_id)
        .expect("listed");
    assert!(!me.bound, "a refused call does not bind");
    // The refusals did not consume the token.
    ksm.bind().await;
}

#[tokio::test]
async fn get_folders_can_bind() {
    let fx = fx();
    let mut ksm = fx.device(&fx.vault.app).await;
    let answer = ksm
        .get_folders()
        .await
        .expect("binding through get_folders");
    assert_eq!(ksm.app_key(), &fx.vault.app_key);
    assert_eq!(
        ksm.owner_public_key.as_deref(),
        Some(&fx.vault.owner_public_key[..])
    );
    assert_eq!(answer["folders"].as_array().expect("folders").len(), 5);
    let next = ksm.get_folders().await.expect("bound");
    assert!(next.get("encryptedAppKey").is_none_or(Value::is_null));
    ksm.get_secret(json!({}))
        .await
        .expect("get_secret after binding");
}

// ---- get_secret content ---------------------------------------------------------------------

#[tokio::test]
async fn get_secret_returns_every_shared_record_with_working_keys() {
    let fx = fx();
    let v = &fx.vault;
    let mut ksm = fx.bound_device(&v.app).await;
    let answer = ksm.get_secret(json!({})).await.expect("get_secret");
    let revisions: BTreeMap<String, i64> = fx.record_revisions().await.into_iter().collect();

    // The eight top-level keys, always present.
    let keys: BTreeSet<&str> = answer
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "appData",
            "appOwnerPublicKey",
            "encryptedAppKey",
            "expiresOn",
            "extra",
            "folders",
            "records",
            "warnings"
        ])
    );
    assert_eq!(answer["expiresOn"], json!(0));
    assert!(answer["warnings"].is_null());
    assert!(answer["encryptedAppKey"].is_null());

    let check_record =
        |record: &Value, wrap: &SymmetricKey, editable: bool, inner: Option<&str>| {
            let uid = record["recordUid"].as_str().expect("recordUid");
            let key = gcm_key(wrap, record["recordKey"].as_str().expect("recordKey"));
            assert_eq!(&key, &v.record_keys[uid], "record key of {uid}");
            let data = gcm_json(&key, record["data"].as_str().expect("data"));
            assert_eq!(data["title"], json!(v.records[uid].title));
            assert_eq!(password_of(&data), v.records[uid].password);
            assert_eq!(data["custom"][0]["label"], json!("Environment"));
            assert_eq!(record["isEditable"], json!(editable), "isEditable of {uid}");
            assert!(record["revision"].is_i64(), "integer revision");
            assert_eq!(record["revision"].as_i64(), Some(revisions[uid]));
            assert_eq!(
                record["innerFolderUid"].as_str(),
                inner,
                "innerFolderUid of {uid}"
            );
            assert!(record["folderUid"].is_null());
            assert!(record.get("links").is_none(), "no links unless requested");
            assert!(record["files"].is_array() || record["files"].is_null());
            key
        };

    // Direct shares: recordKey under the app key, permission per share.
    let direct = answer["records"].as_array().expect("records");
    assert_eq!(direct_uids(&answer), sorted(&[&v.direct_ro, &v.direct_rw]));
    for record in direct {
        let uid = record["recordUid"].as_str().expect("uid");
        check_record(record, &v.app_key, uid == v.direct_rw, None);
        assert_eq!(record["files"], json!([]));
    }

    // Shared folders: folderKey under the app key, records under the folder key.
    let folders = answer["folders"].as_array().expect("folders");
    let mut expected = BTreeMap::new();
    expected.insert(v.alpha.clone(), sorted(&[&v.a_root, &v.a_sub, &v.a_subsub]));
    expected.insert(v.beta.clone(), vec![v.b_rec.clone()]);
    expected.insert(v.empty.clone(), vec![]);
    assert_eq!(folder_map(&answer), expected);
    let mut file_seen = false;
    for folder in folders {
        let uid = folder["folderUid"].as_str().expect("folderUid");
        let folder_key = gcm_key(&v.app_key, folder["folderKey"].as_str().expect("key"));
        assert_eq!(&folder_key, &v.folder_keys[uid], "folder key of {uid}");
        let editable = uid == v.alpha;
        assert_eq!(folder["isEditable"], json!(editable));
        assert!(folder["parent"].is_null());
        for record in folder["records"].as_array().expect("records") {
            let record_uid = record["recordUid"].as_str().expect("uid");
            let inner = if record_uid == v.a_sub {
                Some(v.sub.as_str())
            } else if record_uid == v.a_subsub {
                Some(v.subsub.as_str())
            } else {
                None
            };
            let record_key = check_record(record, &folder_key, editable, inner);
            if record_uid == v.a_root {
                let files = record["files"].as_array().expect("files");
                assert_eq!(files.len(), 1);
                let file = &files[0];
                assert_eq!(file["fileUid"], json!(v.file_uid));
                let file_key = gcm_key(&record_key, file["fileKey"].as_str().expect("fileKey"));
                let meta = gcm_json(&file_key, file["data"].as_str().expect("data"));
                assert_eq!(meta["name"], json!(v.file_name));
                assert_eq!(meta["type"], json!(v.file_mime));
                assert_eq!(meta["size"], json!(v.file_content.len()));
                let url = file["url"].as_str().expect("url");
                assert!(
                    url.starts_with(&format!("{}/", fx.ep.base)),
                    "an https URL on the server: {url}"
                );
                assert!(file["thumbnailUrl"].is_null());
                file_seen = true;
            } else {
                assert_eq!(record["files"], json!([]));
            }
        }
    }
    assert!(file_seen);
    // The record with the attachment changed revision when the file was attached.
    assert_eq!(revisions[&v.a_root], 2);
    assert_eq!(revisions[&v.b_rec], 1);
}

#[tokio::test]
async fn a_download_url_serves_exactly_the_encrypted_content() {
    let fx = fx();
    let v = &fx.vault;
    let mut ksm = fx.bound_device(&v.app).await;
    let answer = ksm
        .get_secret(json!({"requestedRecords": [v.a_root]}))
        .await
        .expect("get_secret");
    let folder = &answer["folders"][0];
    let folder_key = gcm_key(&v.app_key, folder["folderKey"].as_str().expect("key"));
    let record = &folder["records"][0];
    let record_key = gcm_key(&folder_key, record["recordKey"].as_str().expect("key"));
    let file = &record["files"][0];
    let file_key = gcm_key(&record_key, file["fileKey"].as_str().expect("fileKey"));
    let url = file["url"].as_str().expect("url").to_owned();

    // A plain GET, no KSM headers.
    let http = fx.ep.http();
    let response = http.get(&url).send().await.expect("download");
    assert_eq!(response.status().as_u16(), 200);
    let body = response.bytes().await.expect("body");
    assert_eq!(body.len(), v.file_content.len() + 28);
    assert_eq!(gcm_open(&file_key, &body).expect("opens"), v.file_content);
    // Again: the link is reusable while valid.
    let again = http.get(&url).send().await.expect("download again");
    assert_eq!(again.status().as_u16(), 200);

    // Tampered links: signature, expiry, file UID.
    let (prefix, signature) = url.rsplit_once('/').expect("…/signature");
    let (prefix2, expires) = prefix.rsplit_once('/').expect("…/expires/…");
    let (prefix3, file_uid) = prefix2.rsplit_once('/').expect("…/uid/…");
    assert_eq!(file_uid, v.file_uid);
    let flipped = {
        let mut chars: Vec<char> = signature.chars().collect();
        chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    let later: i64 = expires.parse::<i64>().expect("numeric expiry") + 3600;
    let tampered = [
        format!("{prefix}/{flipped}"),
        format!("{prefix2}/{later}/{signature}"),
        format!("{prefix3}/{}/{expires}/{signature}", v.direct_ro),
        format!("{prefix}/"),
    ];
    for bad in tampered {
        let response = http.get(&bad).send().await.expect("request");
        failure_of(response).await.expect(404, "not_found");
    }
}

#[tokio::test]
async fn requested_records_filter_exactly_and_warn_about_the_rest() {
    let fx = fx();
    let v = &fx.vault;
    let mut ksm = fx.bound_device(&v.app).await;
    let unknown = "AAAAAAAAAAAAAAAAAAAAAA".to_owned();
    let answer = ksm
        .get_secret(json!({
            "requestedRecords": [v.a_subsub, v.direct_ro, unknown, v.hidden, v.other_rec]
        }))
        .await
        .expect("filtered get_secret");
    assert_eq!(direct_uids(&answer), vec![v.direct_ro.clone()]);
    let mut expected = BTreeMap::new();
    expected.insert(v.alpha.clone(), vec![v.a_subsub.clone()]);
    assert_eq!(folder_map(&answer), expected);
    let warnings = warnings_of(&answer);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    for missing in [&unknown, &v.hidden, &v.other_rec] {
        assert_eq!(
            warnings
                .iter()
                .filter(|w| w.contains(missing.as_str()))
                .count(),
            1,
            "one warning for {missing}: {warnings:?}"
        );
    }
    for found in [&v.a_subsub, &v.direct_ro] {
        assert!(!warnings.iter().any(|w| w.contains(found.as_str())));
    }
    // The filtered record is complete and decrypts.
    let record = &answer["folders"][0]["records"][0];
    assert_eq!(record["innerFolderUid"], json!(v.subsub));
    let folder_key = gcm_key(
        &v.app_key,
        answer["folders"][0]["folderKey"].as_str().expect("k"),
    );
    let key = gcm_key(&folder_key, record["recordKey"].as_str().expect("k"));
    assert_eq!(
        gcm_json(&key, record["data"].as_str().expect("data"))["title"],
        json!(v.records[&v.a_subsub].title)
    );

    // One record in a folder: only that folder object, no warnings.
    let answer = ksm
        .get_secret(json!({"requestedRecords": [v.b_rec]}))
        .await
        .expect("single record");
    assert_eq!(direct_uids(&answer), Vec::<String>::new());
    let mut expected = BTreeMap::new();
    expected.insert(v.beta.clone(), vec![v.b_rec.clone()]);
    assert_eq!(folder_map(&answer), expected);
    assert!(warnings_of(&answer).is_empty());
}

#[tokio::test]
async fn an_empty_requested_records_list_is_no_filter() {
    let fx = fx();
    let mut ksm = fx.bound_device(&fx.vault.app).await;
    let all = ksm.get_secret(json!({})).await.expect("unfiltered");
    for empty in [
        json!({"requestedRecords": []}),
        json!({"requestedRecords": null, "requestedFolders": []}),
    ] {
        let answer = ksm.get_secret(empty).await.expect("empty filter");
        assert_eq!(direct_uids(&answer), direct_uids(&all));
        assert_eq!(folder_map(&answer), folder_map(&all));
        assert!(warnings_of(&answer).is_empty());
    }
    assert_eq!(folder_map(&all).len(), 3);
}

#[tokio::test]
async fn requested_folders_select_records_by_location() {
    let fx = fx();
    let v = &fx.vault;
    let mut ksm = fx.bound_device(&v.app).await;
    let mut ask = async |folders: &[&String]| {
        let answer = ksm
            .get_secret(json!({"requestedFolders": folders}))
            .await
            .expect("folder-filtered get_secret");
        assert_eq!(
            direct_uids(&answer),
            Vec::<String>::new(),
            "direct shares are omitted with requestedFolders"
        );
        folder_map(&answer)
    };
    let map = |pairs: &[(&String, Vec<String>)]| -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).clone(), v.clone()))
            .collect()
    };
    assert_eq!(
        ask(&[&v.alpha]).await,
        map(&[(&v.alpha, sorted(&[&v.a_root, &v.a_sub, &v.a_subsub]))])
    );
    assert_eq!(
        ask(&[&v.sub]).await,
        map(&[(&v.alpha, vec![v.a_sub.clone()])])
    );
    assert_eq!(
        ask(&[&v.subsub]).await,
        map(&[(&v.alpha, vec![v.a_subsub.clone()])])
    );
    assert_eq!(
        ask(&[&v.beta, &v.sub]).await,
        map(&[
            (&v.alpha, vec![v.a_sub.clone()]),
            (&v.beta, vec![v.b_rec.clone()])
        ])
    );
    assert_eq!(ask(&[&v.empty]).await, map(&[(&v.empty, vec![])]));
    assert_eq!(ask(&[&v.other_folder]).await, map(&[]));
    assert_eq!(ask(&[&v.private]).await, map(&[]));

    // Both filters: the intersection.
    let answer = ksm
        .get_secret(json!({
            "requestedFolders": [v.alpha],
            "requestedRecords": [v.a_sub, v.b_rec, v.direct_ro]
        }))
        .await
        .expect("both filters");
    assert_eq!(direct_uids(&answer), Vec::<String>::new());
    assert_eq!(
        folder_map(&answer),
        map(&[(&v.alpha, vec![v.a_sub.clone()])])
    );
}

#[tokio::test]
async fn request_links_adds_an_empty_links_array_to_every_record() {
    let fx = fx();
    let mut ksm = fx.bound_device(&fx.vault.app).await;
    let with = ksm
        .get_secret(json!({"requestLinks": true}))
        .await
        .expect("with links");
    let records = all_records(&with);
    assert_eq!(records.len(), 6);
    for record in records {
        assert_eq!(record["links"], json!([]), "{record}");
    }
    for without in [
        json!({"requestLinks": false}),
        json!({"requestLinks": null}),
    ] {
        let answer = ksm.get_secret(without).await.expect("without links");
        for record in all_records(&answer) {
            assert!(record.get("links").is_none(), "{record}");
        }
    }
}

// ---- get_folders ---------------------------------------------------------------------------

#[tokio::test]
async fn get_folders_lists_the_tree_roots_first_with_working_keys() {
    let fx = fx();
    let v = &fx.vault;
    let mut ksm = fx.bound_device(&v.app).await;
    let answer = ksm.get_folders().await.expect("get_folders");
    let keys: Vec<&String> = answer.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["folders"], "no binding fields outside a binding");
    let folders = answer["folders"].as_array().expect("folders");

    let uids: Vec<&str> = folders
        .iter()
        .map(|f| f["folderUid"].as_str().expect("folderUid"))
        .collect();
    let expected: BTreeSet<&str> = [&v.alpha, &v.sub, &v.subsub, &v.beta, &v.empty]
        .into_iter()
        .map(String::as_str)
        .collect();
    assert_eq!(uids.iter().copied().collect::<BTreeSet<_>>(), expected);
    assert_eq!(uids.len(), 5, "no duplicates");

    let mut keys_by_uid: BTreeMap<String, SymmetricKey> = BTreeMap::new();
    let mut root_of: BTreeMap<String, String> = BTreeMap::new();
    for (index, folder) in folders.iter().enumerate() {
        let object = folder.as_object().expect("object");
        let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, ["data", "folderKey", "folderUid", "parent"]);
        let uid = folder["folderUid"].as_str().expect("uid").to_owned();
        let wrapped = folder["folderKey"].as_str().expect("folderKey");
        let key = match folder["parent"].as_str() {
            None => {
                assert!(folder["parent"].is_null());
                root_of.insert(uid.clone(), uid.clone());
                gcm_key(&v.app_key, wrapped)
            }
            Some(parent) => {
                let parent_index = uids.iter().position(|u| *u == parent);
                assert!(
                    parent_index.is_some_and(|p| p < index),
                    "the parent of {uid} is listed before it"
                );
                let root = root_of[parent].clone();
                let root_key = &keys_by_uid[&root];
                root_of.insert(uid.clone(), root);
                // Always wrapped with the ROOT shared folder's key, in CBC.
                cbc_key(root_key, wrapped)
            }
        };
        assert_eq!(&key, &v.folder_keys[&uid], "folder key of {uid}");
        let data = cbc_json(&key, folder["data"].as_str().expect("data"));
        assert_eq!(data, json!({"name": v.folder_names[&uid]}));
        keys_by_uid.insert(uid, key);
    }
    let parent = |uid: &String| {
        folders
            .iter()
            .find(|f| f["folderUid"] == json!(uid))
            .map(|f| f["parent"].clone())
            .expect("listed")
    };
    assert_eq!(parent(&v.sub), json!(v.alpha));
    assert_eq!(parent(&v.subsub), json!(v.sub));
    assert_eq!(root_of[&v.subsub], v.alpha);
    for root in [&v.alpha, &v.beta, &v.empty] {
        assert!(parent(root).is_null());
    }
}
