//! The owner API (DESIGN.md §3): registration with the setup code, login, prelogin decoys,
//! sessions, the audit trail of owner and device actions, and the client list.

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use coffer_owner::{NewClientOptions, OwnerError, Session};
use common::*;
use serde_json::{Value, json};

static SHARED: OnceLock<Shared> = OnceLock::new();

fn fx() -> &'static Shared {
    SHARED.get_or_init(|| Shared::start(|_| {}))
}

fn assert_owner_error(result: Result<Session, OwnerError>, status: u16, code: &str) -> String {
    match result {
        Err(OwnerError::Server {
            status: s,
            code: c,
            message,
        }) => {
            assert_eq!((s, c.as_str()), (status, code), "{message}");
            message
        }
        Err(other) => panic!("expected a server error {status} {code}, got {other}"),
        Ok(_) => panic!("expected a server error {status} {code}, got a session"),
    }
}

#[tokio::test]
async fn login_checks_the_master_password() {
    let fx = fx();
    let ep = fx.ep.clone();
    let owner_uid = fx.owner.owner_uid().to_owned();
    let (good, upper, wrong, unknown) = fx
        .run(async move {
            let good = Session::login(ep.owner_client(), OWNER_EMAIL, OWNER_PASSWORD).await;
            let upper = Session::login(
                ep.owner_client(),
                &OWNER_EMAIL.to_uppercase(),
                OWNER_PASSWORD,
            )
            .await;
            let wrong =
                Session::login(ep.owner_client(), OWNER_EMAIL, "not the password at all").await;
            let unknown =
                Session::login(ep.owner_client(), "nobody@coffer.test", OWNER_PASSWORD).await;
            (good, upper, wrong, unknown)
        })
        .await;
    let good = good.expect("login with the right password");
    assert_eq!(good.owner_uid(), owner_uid);
    assert_eq!(good.public_key(), fx.owner.public_key());
    assert_eq!(
        upper.expect("emails are case-insensitive").owner_uid(),
        owner_uid
    );
    let message = assert_owner_error(wrong, 401, "unauthorized");
    assert_eq!(message, "Wrong email or master password.");
    let message = assert_owner_error(unknown, 401, "unauthorized");
    assert_eq!(message, "Wrong email or master password.");

    // A logged-out session token stops working at once.
    let token = good.token().to_owned();
    let http = fx.ep.http();
    let response = http
        .get(fx.ep.owner_url("/folders"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    fx.run(async move { good.logout().await })
        .await
        .expect("logout");
    let response = http
        .get(fx.ep.owner_url("/folders"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    failure_of(response).await.expect(401, "unauthorized");
}

#[tokio::test]
async fn the_owner_api_needs_a_valid_session() {
    let fx = fx();
    let http = fx.ep.http();
    let routes = ["/folders", "/records", "/apps", "/audit", "/account"];
    for route in routes {
        let url = fx.ep.owner_url(route);
        let attempts = [
            http.get(&url),
            http.get(&url).bearer_auth("wrong-token"),
            http.get(&url)
                .bearer_auth(coffer_crypto::encode_url(&[7u8; 32])),
            http.get(&url)
                .header("Authorization", format!("Basic {}", fx.owner.token())),
        ];
        for attempt in attempts {
            let response = attempt.send().await.expect("request");
            failure_of(response).await.expect(401, "unauthorized");
        }
        let ok = http
            .get(&url)
            .bearer_auth(fx.owner.token())
            .send()
            .await
            .expect("request");
        assert_eq!(ok.status().as_u16(), 200, "{route} with the session");
    }
    let response = http
        .post(fx.ep.owner_url("/folders"))
        .bearer_auth("wrong-token")
        .json(&json!({"uid": "AAAAAAAAAAAAAAAAAAAAAA", "key": "AA==", "data": "AA=="}))
        .send()
        .await
        .expect("request");
    failure_of(response).await.expect(401, "unauthorized");
}

#[tokio::test]
async fn prelogin_answers_stable_decoys_for_unknown_emails() {
    let fx = fx();
    let http = fx.ep.http();
    let prelogin = async |email: &str| -> Value {
        let response = http
            .post(fx.ep.owner_url("/prelogin"))
            .json(&json!({ "email": email }))
            .send()
            .await
            .expect("prelogin");
        assert_eq!(response.status().as_u16(), 200);
        response.json::<Value>().await.expect("JSON")["kdf"].clone()
    };
    let account: Value = http
        .get(fx.ep.owner_url("/account"))
        .bearer_auth(fx.owner.token())
        .send()
        .await
        .expect("account")
        .json()
        .await
        .expect("JSON");
    let real = account["kdf"].clone();
    assert_eq!(prelogin(OWNER_EMAIL).await, real);
    assert_eq!(prelogin(&OWNER_EMAIL.to_uppercase()).await, real);

    let decoy = prelogin("ghost@coffer.test").await;
    assert_eq!(prelogin("ghost@coffer.test").await, decoy, "stable");
    assert_eq!(
        prelogin("GHOST@coffer.test").await,
        decoy,
        "case-insensitive"
    );
    let other = prelogin("phantom@coffer.test").await;
    assert_ne!(other["salt"], decoy["salt"], "per-email salts");
    assert_ne!(decoy["salt"], real["salt"]);
    // Same shape and parameters as a real account.
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object().expect("object").keys().cloned().collect()
    };
    assert_eq!(keys(&decoy), keys(&real));
    for field in ["algorithm", "memory_kib", "iterations", "parallelism"] {
        assert_eq!(decoy[field], real[field], "{field}");
    }
    assert_eq!(decoy["algorithm"], json!("argon2id"));
    assert_eq!(std_b64(decoy["salt"].as_str().expect("salt")).len(), 16);
}

#[tokio::test]
async fn owner_and_device_actions_are_audited() {
    let fx = fx();
    let v = &fx.vault;
    let owner_actor = format!("owner:{}", fx.owner.owner_uid());
    let targets = |events: &[coffer_proto::owner::AuditEvent]| -> BTreeSet<String> {
        events
            .iter()
            .map(|e| e.target.clone().expect("a target"))
            .collect()
    };
    let set =
        |uids: &[&String]| -> BTreeSet<String> { uids.iter().map(|u| (*u).clone()).collect() };

    let register = fx.audit(&[("action", "owner.register")]).await;
    assert_eq!(register.len(), 1);
    assert_eq!(register[0].actor, owner_actor);
    assert_eq!(register[0].ip.as_deref(), Some("127.0.0.1"));

    let folders = fx.audit(&[("action", "folder.create")]).await;
    assert!(folders.iter().all(|e| e.actor == owner_actor));
    assert_eq!(
        targets(&folders),
        set(&[
            &v.alpha,
            &v.sub,
            &v.subsub,
            &v.beta,
            &v.empty,
            &v.private,
            &v.other_folder
        ])
    );
    let records = fx.audit(&[("action", "record.create")]).await;
    assert_eq!(
        targets(&records),
        set(&[
            &v.a_root,
            &v.a_sub,
            &v.a_subsub,
            &v.b_rec,
            &v.direct_ro,
            &v.direct_rw,
            &v.hidden,
            &v.other_rec
        ])
    );
    let apps = fx.audit(&[("action", "app.create")]).await;
    assert_eq!(targets(&apps), set(&[&v.app, &v.other_app]));
    let editable = fx.audit(&[("action", "share.editable")]).await;
    assert_eq!(
        targets(&editable),
        set(&[&v.alpha, &v.direct_rw, &v.other_folder])
    );
    let read_only = fx.audit(&[("action", "share.read_only")]).await;
    assert_eq!(targets(&read_only), set(&[&v.beta, &v.empty, &v.direct_ro]));
    let shares = fx.audit(&[("action", "share.")]).await;
    assert_eq!(shares.len(), editable.len() + read_only.len());
    let files = fx.audit(&[("action", "file.")]).await;
    assert!(targets(&files).contains(&v.file_uid), "{files:?}");

    // A device: client.add, client.bind (written before the answer), ksm.* (queued).
    let started = coffer_now();
    let mut ksm = fx.device(&v.app).await;
    let actor = format!("client:{}", ksm.client_id);
    let added = fx
        .audit(&[("action", "client.add"), ("since", &started.to_string())])
        .await;
    assert!(
        added
            .iter()
            .any(|e| e.target.as_deref() == Some(v.app.as_str()))
    );
    ksm.bind().await;
    let bind = fx
        .audit(&[("actor", &actor), ("action", "client.bind")])
        .await;
    assert_eq!(bind.len(), 1, "client.bind is written before the answer");
    assert_eq!(bind[0].target.as_deref(), Some(v.app.as_str()));
    assert_eq!(bind[0].ip.as_deref(), Some("127.0.0.1"));
    assert!(bind[0].at >= started);
    ksm.get_folders().await.expect("get_folders");
    let (events, complete) = fx
        .audit_until(&[("actor", &actor)], Duration::from_secs(2), |events| {
            let actions: BTreeSet<&str> = events.iter().map(|e| e.action.as_str()).collect();
            actions.contains("ksm.get_secret") && actions.contains("ksm.get_folders")
        })
        .await;
    assert!(complete, "device reads are audited within 2 s: {events:?}");
    for event in &events {
        assert_eq!(event.target.as_deref(), Some(v.app.as_str()));
        assert_eq!(event.ip.as_deref(), Some("127.0.0.1"));
    }
    // Newest first.
    assert!(events.windows(2).all(|w| w[0].id > w[1].id));

    // A refusal is audited too.
    let mut unbound = fx.device(&v.app).await;
    expect_failure(
        unbound.get_secret(json!({"publicKey": null})).await,
        403,
        "access_denied",
    );
    let refusal_actor = format!("client:{}", unbound.client_id);
    let (_, refused) = fx
        .audit_until(
            &[("actor", &refusal_actor), ("action", "client.refused")],
            Duration::from_secs(2),
            |events| !events.is_empty(),
        )
        .await;
    assert!(refused, "client.refused is audited");
}

fn coffer_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        - 1
}

#[tokio::test]
async fn the_client_list_shows_binding_state() {
    let fx = fx();
    let app = fx.vault.app.clone();
    let named = |name: &str, unlock_ip: bool| NewClientOptions {
        name: Some(name.to_owned()),
        first_access_expires: Some(Duration::from_secs(3600)),
        unlock_ip,
    };
    let locked = fx.token(&app, named("build agent", false)).await;
    let free = fx.token(&app, named("laptop", true)).await;
    let before = fx.clients(&app).await;
    let view = |list: &[coffer_owner::ClientView], id: &str| {
        list.iter()
            .find(|c| c.client_id == id)
            .cloned()
            .expect("listed")
    };
    let l = view(&before, &locked.client_id);
    assert_eq!(l.name, "build agent");
    assert!(!l.bound);
    assert!(l.ip_lock);
    assert_eq!(l.bound_ip, None);
    assert_eq!(l.last_access_at, None);
    assert!(l.first_access_expires_at.is_some_and(|t| t > l.created_at));
    let f = view(&before, &free.client_id);
    assert_eq!(f.name, "laptop");
    assert!(!f.ip_lock);

    let mut device = Ksm::from_config(&locked.config, &fx.ep.cert_path);
    assert_eq!(device.client_id, locked.client_id);
    device.bind().await;
    let after = fx.clients(&app).await;
    let l = view(&after, &locked.client_id);
    assert!(l.bound);
    assert_eq!(l.bound_ip.as_deref(), Some("127.0.0.1"));
    assert!(l.last_access_at.is_some());
    assert!(!view(&after, &free.client_id).bound);

    // The other app's list does not show this app's clients.
    let others = fx.clients(&fx.vault.other_app).await;
    assert!(!others.iter().any(|c| c.client_id == locked.client_id));
}

#[tokio::test]
async fn registration_needs_the_setup_code_and_happens_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, ep) = start_server(dir.path(), |_| {}).await;
    let code = server.setup_code.clone().expect("a setup code");
    let code_file = dir.path().join("setup-code");
    assert_eq!(
        std::fs::read_to_string(&code_file)
            .expect("setup-code file")
            .trim(),
        code
    );
    let info = || async { ep.owner_client().info().await.expect("info").setup_required };
    assert!(info().await);

    for wrong in [String::new(), "wrong-code".to_owned(), format!("{code}x")] {
        let result =
            Session::register(ep.owner_client(), OWNER_EMAIL, OWNER_PASSWORD, &wrong).await;
        assert_owner_error(result, 403, "access_denied");
        assert!(info().await, "no owner after a refused registration");
    }
    let owner = Session::register(ep.owner_client(), OWNER_EMAIL, OWNER_PASSWORD, &code)
        .await
        .expect("registration with the setup code");
    assert!(!info().await);
    assert!(!code_file.exists(), "the setup code file is deleted");

    for email in [OWNER_EMAIL, "second@coffer.test"] {
        let again = Session::register(ep.owner_client(), email, OWNER_PASSWORD, &code).await;
        assert_owner_error(again, 403, "access_denied");
    }
    let login = Session::login(ep.owner_client(), OWNER_EMAIL, OWNER_PASSWORD)
        .await
        .expect("the first owner logs in");
    assert_eq!(login.owner_uid(), owner.owner_uid());
    drop((owner, login));
    server.shutdown().await.expect("clean shutdown");
}
