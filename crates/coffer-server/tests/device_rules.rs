//! Device rules (PROTOCOL.md §4.5, §5.0.2; DESIGN.md §2): a token binds once, first-access
//! expiry, revocation, IP lock, signatures, application isolation, download-link expiry.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use std::time::Duration;

use coffer_crypto::KeyPair;
use coffer_owner::NewClientOptions;
use common::*;
use serde_json::{Value, json};

static SHARED: OnceLock<Shared> = OnceLock::new();

/// Download links live 2 s on this server, so their expiry can be observed.
fn fx() -> &'static Shared {
    SHARED.get_or_init(|| Shared::start(|config| config.download_ttl = Duration::from_secs(2)))
}

const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn all_uids_in(answer: &Value) -> String {
    answer.to_string()
}

#[tokio::test]
async fn a_token_binds_only_once() {
    let fx = fx();
    let mut first = fx.device(&fx.vault.app).await;
    let mut second = first.sibling();
    first.bind().await;
    let failure = expect_failure(second.get_secret(json!({})).await, 403, "access_denied");
    assert!(failure.message.contains("already"), "{}", failure.message);
    assert!(second.app_key.is_none());
    // The winner keeps working, the loser stays out even when it tries again.
    first.get_secret(json!({})).await.expect("first device");
    expect_failure(second.get_folders().await, 403, "access_denied");
    let clients = fx.clients(&fx.vault.app).await;
    assert_eq!(
        clients
            .iter()
            .filter(|c| c.client_id == first.client_id)
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_binding_attempts_have_exactly_one_winner() {
    let fx = fx();
    let first = fx.device(&fx.vault.app).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let mut contender = first.sibling();
        tasks.spawn(async move {
            let result = contender.get_secret(json!({})).await;
            (contender, result)
        });
    }
    let mut winners = Vec::new();
    for (contender, result) in tasks.join_all().await {
        match result {
            Ok(_) => winners.push(contender),
            Err(failure) => {
                failure.expect(403, "access_denied");
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one device binds a token");
    let mut winner = winners.pop().expect("a winner");
    winner
        .get_secret(json!({}))
        .await
        .expect("the winner works");
}

#[tokio::test]
async fn an_expired_first_access_deadline_refuses_binding() {
    let fx = fx();
    let app = &fx.vault.app;
    let short = |secs| NewClientOptions {
        name: None,
        first_access_expires: Some(Duration::from_secs(secs)),
        unlock_ip: false,
    };
    let late = fx.token(app, short(1)).await;
    let prompt = fx.token(app, short(2)).await;
    let prompt_created = std::time::Instant::now();
    let roomy = fx.token(app, short(600)).await;
    let mut prompt = Ksm::from_config(&prompt.config, &fx.ep.cert_path);
    prompt.bind().await;
    // Past both deadlines.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(prompt_created.elapsed())).await;

    let mut late = Ksm::from_config(&late.config, &fx.ep.cert_path);
    let failure = expect_failure(late.get_secret(json!({})).await, 403, "access_denied");
    assert!(
        failure.message.to_lowercase().contains("expire"),
        "the message mentions the expiry: {}",
        failure.message
    );
    assert!(late.app_key.is_none());
    // Same through get_folders.
    expect_failure(late.get_folders().await, 403, "access_denied");
    // The deadline only limits the first use.
    prompt
        .get_secret(json!({}))
        .await
        .expect("a device bound in time keeps working");
    let mut roomy = Ksm::from_config(&roomy.config, &fx.ep.cert_path);
    roomy.bind().await;
    let clients = fx.clients(app).await;
    let late_view = clients
        .iter()
        .find(|c| c.client_id == late.client_id)
        .expect("listed");
    assert!(!late_view.bound);
}

#[tokio::test]
async fn a_removed_client_is_refused_at_once() {
    let fx = fx();
    let app = fx.vault.app.clone();
    let mut bound = fx.bound_device(&app).await;
    bound
        .get_secret(json!({}))
        .await
        .expect("works before removal");
    let mut pending = fx.device(&app).await;
    let owner = fx.owner.clone();
    let (a, b) = (bound.client_id.clone(), pending.client_id.clone());
    fx.run(async move {
        owner.remove_client(&app, &a).await?;
        owner.remove_client(&app, &b).await
    })
    .await
    .expect("remove clients");
    expect_failure(bound.get_secret(json!({})).await, 403, "access_denied");
    expect_failure(bound.get_folders().await, 403, "access_denied");
    expect_failure(pending.get_secret(json!({})).await, 403, "access_denied");
    let clients = fx.clients(&fx.vault.app).await;
    assert!(
        !clients
            .iter()
            .any(|c| c.client_id == bound.client_id || c.client_id == pending.client_id)
    );
}

#[tokio::test]
async fn an_ip_locked_device_only_works_from_its_binding_address() {
    let fx = fx();
    let app = &fx.vault.app;
    let mut locked = fx.device(app).await;
    locked.bind().await;
    locked.use_source_address(OTHER_IP);
    let failure = expect_failure(locked.get_secret(json!({})).await, 403, "access_denied");
    assert!(failure.message.contains("IP"), "{}", failure.message);
    expect_failure(locked.get_folders().await, 403, "access_denied");
    locked.use_source_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
    locked
        .get_secret(json!({}))
        .await
        .expect("from the binding address");

    // The lock follows the binding address, whichever it is.
    let mut elsewhere = fx.device(app).await;
    elsewhere.use_source_address(OTHER_IP);
    elsewhere.bind().await;
    elsewhere.use_source_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
    expect_failure(elsewhere.get_secret(json!({})).await, 403, "access_denied");

    // Unlocked devices work from anywhere.
    let token = fx
        .token(
            app,
            NewClientOptions {
                name: None,
                first_access_expires: None,
                unlock_ip: true,
            },
        )
        .await;
    let mut free = Ksm::from_config(&token.config, &fx.ep.cert_path);
    free.bind().await;
    free.use_source_address(OTHER_IP);
    free.get_secret(json!({})).await.expect("from 127.0.0.2");
    free.get_folders().await.expect("from 127.0.0.2");

    let clients = fx.clients(app).await;
    let view = |id: &str| {
        clients
            .iter()
            .find(|c| c.client_id == id)
            .cloned()
            .expect("listed")
    };
    let locked_view = view(&locked.client_id);
    assert!(locked_view.ip_lock);
    assert_eq!(locked_view.bound_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        view(&elsewhere.client_id).bound_ip.as_deref(),
        Some("127.0.0.2")
    );
    let free_view = view(&free.client_id);
    assert!(!free_view.ip_lock);
    assert_eq!(free_view.bound_ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_wrong_signature_is_refused_with_signature_is_invalid() {
    let fx = fx();
    let ksm = fx.bound_device(&fx.vault.app).await;
    let stranger = KeyPair::generate();

    // Signed with another key.
    let mut prepared = ksm.prepare("get_secret", &ksm.payload(json!({})));
    prepared.sign_with(&stranger);
    let failure = ksm
        .send(&prepared)
        .await
        .failure()
        .expect(403, "access_denied");
    assert_eq!(failure.message, "Signature is invalid");

    // Signed with the right key over the wrong bytes (body only, or ETK only).
    let mut prepared = ksm.prepare("get_secret", &ksm.payload(json!({})));
    let body_only = ksm.device.sign(&prepared.body);
    prepared.set_signature(&body_only);
    let failure = ksm
        .send(&prepared)
        .await
        .failure()
        .expect(403, "access_denied");
    assert_eq!(failure.message, "Signature is invalid");
    let mut prepared = ksm.prepare("get_secret", &ksm.payload(json!({})));
    let etk_only = ksm.device.sign(&prepared.etk);
    prepared.set_signature(&etk_only);
    let failure = ksm
        .send(&prepared)
        .await
        .failure()
        .expect(403, "access_denied");
    assert_eq!(failure.message, "Signature is invalid");

    // A valid signature of another request.
    let other = ksm.prepare("get_secret", &ksm.payload(json!({})));
    let mut prepared = ksm.prepare("get_secret", &ksm.payload(json!({})));
    prepared.set_header(
        "Authorization",
        &other
            .headers
            .iter()
            .find(|(n, _)| n == "Authorization")
            .expect("signed")
            .1,
    );
    let failure = ksm
        .send(&prepared)
        .await
        .failure()
        .expect(403, "access_denied");
    assert_eq!(failure.message, "Signature is invalid");

    // A binding request whose publicKey does not match the signing key does not bind.
    let mut fresh = fx.device(&fx.vault.app).await;
    let mut prepared = fresh.prepare("get_secret", &fresh.payload(json!({})));
    prepared.sign_with(&stranger);
    let failure = fresh
        .send(&prepared)
        .await
        .failure()
        .expect(403, "access_denied");
    assert_eq!(failure.message, "Signature is invalid");
    let clients = fx.clients(&fx.vault.app).await;
    assert!(
        !clients
            .iter()
            .find(|c| c.client_id == fresh.client_id)
            .expect("listed")
            .bound
    );
    fresh.bind().await;
}

#[tokio::test]
async fn applications_are_isolated_from_each_other() {
    let fx = fx();
    let v = &fx.vault;
    let mut other = fx.bound_device(&v.other_app).await;
    assert_eq!(other.app_key(), &v.other_app_key);

    let answer = other.get_secret(json!({})).await.expect("get_secret");
    assert_eq!(answer["records"], json!([]));
    let folders = answer["folders"].as_array().expect("folders");
    assert_eq!(folders.len(), 1);
    assert_eq!(folders[0]["folderUid"], json!(v.other_folder));
    let records = folders[0]["records"].as_array().expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["recordUid"], json!(v.other_rec));
    let text = all_uids_in(&answer);
    for foreign in [
        &v.alpha,
        &v.sub,
        &v.subsub,
        &v.beta,
        &v.empty,
        &v.a_root,
        &v.a_sub,
        &v.a_subsub,
        &v.b_rec,
        &v.direct_ro,
        &v.direct_rw,
        &v.hidden,
        &v.file_uid,
    ] {
        assert!(
            !text.contains(foreign.as_str()),
            "{foreign} leaked into app B"
        );
    }

    // Asking for app A's records by UID gives warnings, not records.
    let answer = other
        .get_secret(json!({"requestedRecords": [v.a_root, v.direct_ro]}))
        .await
        .expect("filtered");
    assert_eq!(answer["records"], json!([]));
    assert_eq!(answer["folders"], json!([]));
    let warnings = answer["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 2);
    // And by folder: nothing.
    let answer = other
        .get_secret(json!({"requestedFolders": [v.alpha, v.sub]}))
        .await
        .expect("folder filter");
    assert_eq!(answer["records"], json!([]));
    assert_eq!(answer["folders"], json!([]));

    let folders = other.get_folders().await.expect("get_folders");
    let folders = folders["folders"].as_array().expect("folders");
    assert_eq!(folders.len(), 1);
    assert_eq!(folders[0]["folderUid"], json!(v.other_folder));

    // The other direction too.
    let mut mine = fx.bound_device(&v.app).await;
    let answer = mine
        .get_secret(json!({"requestedRecords": [v.other_rec]}))
        .await
        .expect("filtered");
    assert_eq!(answer["folders"], json!([]));
    assert_eq!(answer["warnings"].as_array().expect("warnings").len(), 1);
    assert!(
        !mine
            .get_secret(json!({}))
            .await
            .expect("all")
            .to_string()
            .contains(&v.other_rec)
    );
}

#[tokio::test]
async fn download_links_expire() {
    let fx = fx();
    let v = &fx.vault;
    let mut ksm = fx.bound_device(&v.app).await;
    let answer = ksm
        .get_secret(json!({"requestedRecords": [v.a_root]}))
        .await
        .expect("get_secret");
    let url = answer["folders"][0]["records"][0]["files"][0]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let http = fx.ep.http();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let response = http.get(&url).send().await.expect("request");
    failure_of(response).await.expect(404, "not_found");
    // A fresh get_secret gives a fresh link.
    let answer = ksm
        .get_secret(json!({"requestedRecords": [v.a_root]}))
        .await
        .expect("get_secret");
    let url = answer["folders"][0]["records"][0]["files"][0]["url"]
        .as_str()
        .expect("url");
    let response = http.get(url).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
}
