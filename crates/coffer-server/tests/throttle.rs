//! Rate limits: KSM requests per client and endpoint, owner logins per email. Past the limit
//! the answer is `403 throttled` with `retry_after` (PROTOCOL.md §2.9).

mod common;

use std::time::Duration;

use coffer_owner::{NewClientOptions, OwnerError, Session};
use coffer_server::throttle::RateLimit;
use common::{Ksm, OWNER_EMAIL, OWNER_PASSWORD, expect_failure, register_owner, start_server};
use serde_json::json;

#[tokio::test]
async fn clients_and_logins_are_throttled_past_their_limits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, ep) = start_server(dir.path(), |config| {
        config.client_rate_limit = Some(RateLimit {
            requests: 3,
            window: Duration::from_secs(600),
        });
        config.login_rate_limit = Some(RateLimit {
            requests: 2,
            window: Duration::from_secs(600),
        });
    })
    .await;
    let owner = register_owner(&ep, server.setup_code.as_deref().expect("code")).await;
    let folder = owner.create_folder("F", None).await.expect("folder");
    let app = owner.create_app("A").await.expect("app");
    owner.share(&app, &folder, false).await.expect("share");
    let options = NewClientOptions {
        unlock_ip: true,
        ..Default::default()
    };
    let token = owner.add_client(&app, &options).await.expect("client");
    let mut device = Ksm::from_config(&token.config, &ep.cert_path);
    device.bind().await; // get_secret request 1 of 3
    for n in [2, 3] {
        let allowed = device.get_secret(json!({})).await;
        assert!(allowed.is_ok(), "request {n} of 3 is allowed");
    }
    let refused = expect_failure(device.get_secret(json!({})).await, 403, "throttled");
    let retry = refused.body["retry_after"].as_u64().expect("retry_after");
    assert!((1..=600).contains(&retry), "retry_after {retry}");
    assert_eq!(refused.body["result_code"], "throttled");

    // The limit is per endpoint and per client.
    device
        .get_folders()
        .await
        .expect("another endpoint has its own count");
    let other = owner.add_client(&app, &options).await.expect("client");
    let mut second = Ksm::from_config(&other.config, &ep.cert_path);
    second.bind().await;

    // Logins: two attempts per email and window, wrong or right.
    let wrong = Session::login(ep.owner_client(), OWNER_EMAIL, "not the password").await;
    assert!(matches!(wrong, Err(OwnerError::Server { status: 401, .. })));
    Session::login(ep.owner_client(), OWNER_EMAIL, OWNER_PASSWORD)
        .await
        .expect("second attempt");
    match Session::login(ep.owner_client(), OWNER_EMAIL, OWNER_PASSWORD).await {
        Err(OwnerError::Server { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (403, "throttled"))
        }
        other => panic!("expected throttling, got {:?}", other.map(|_| ())),
    }
    server.shutdown().await.expect("shutdown");
}
