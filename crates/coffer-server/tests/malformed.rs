//! Malformed and hostile input (PROTOCOL.md §2.6, §2.10, §3.6; DESIGN.md §6): every case is
//! answered with a non-200 protocol JSON error, the server keeps serving, and nothing is
//! stored — the device that sent it stays unbound, no audit event names it, no record changes,
//! and its token still binds afterwards.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use coffer_crypto::{KeyPair, SymmetricKey, encode_std, gcm_seal};
use common::*;
use serde_json::{Value, json};

static SHARED: OnceLock<Shared> = OnceLock::new();

fn fx() -> &'static Shared {
    SHARED.get_or_init(|| Shared::start(|_| {}))
}

/// Checks that `ksm`'s malformed requests left no trace, then binds it (the token is intact)
/// and proves with the audit trail that no earlier event of this device was queued.
async fn assert_untouched(fx: &Shared, ksm: &mut Ksm, records_before: &[(String, i64)]) {
    let clients = fx.clients(&fx.vault.app).await;
    let view = clients
        .iter()
        .find(|c| c.client_id == ksm.client_id)
        .expect("the device is listed");
    assert!(!view.bound, "a malformed request bound the device");
    assert_eq!(view.bound_ip, None);
    assert_eq!(
        view.last_access_at, None,
        "a malformed request touched the device"
    );
    assert_eq!(
        fx.record_revisions().await,
        records_before,
        "records changed"
    );

    // The token still binds; then, once this bind's queued event is written, the device's
    // audit trail holds exactly the bind and this read (events are written in order).
    ksm.bind().await;
    let actor = format!("client:{}", ksm.client_id);
    let (events, written) = fx
        .audit_until(&[("actor", &actor)], Duration::from_secs(2), |events| {
            events.iter().any(|e| e.action == "ksm.get_secret")
        })
        .await;
    let actions: Vec<String> = events.into_iter().map(|e| e.action).collect();
    assert!(written, "the read was audited: {actions:?}");
    assert_eq!(actions, ["ksm.get_secret", "client.bind"]);
}

async fn fresh(fx: &Shared) -> (Ksm, Vec<(String, i64)>) {
    let ksm = fx.device(&fx.vault.app).await;
    let before = fx.record_revisions().await;
    (ksm, before)
}

#[tokio::test]
async fn a_missing_or_undecodable_transmission_key_is_refused() {
    let fx = fx();
    let (mut ksm, before) = fresh(fx).await;
    let payload = ksm.payload(json!({}));

    let mut prepared = ksm.prepare("get_secret", &payload);
    prepared.remove_header("TransmissionKey");
    ksm.send(&prepared)
        .await
        .failure()
        .expect(403, "access_denied");

    for garbage in ["!!!not base64!!!", "", "AAAA===", "äöü"] {
        let mut prepared = ksm.prepare("get_secret", &payload);
        prepared.set_header("TransmissionKey", garbage);
        let failure = ksm.send(&prepared).await.failure();
        assert!(failure.status >= 400, "{garbage:?}");
        assert_eq!(
            failure.code, "access_denied",
            "{garbage:?}: {:?}",
            failure.body
        );
    }
    assert_untouched(fx, &mut ksm, &before).await;
}

#[tokio::test]
async fn a_transmission_key_the_server_cannot_open_is_access_denied_never_key() {
    let fx = fx();
    let (mut ksm, before) = fresh(fx).await;
    let payload = ksm.payload(json!({}));
    let random = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 37 + 11) as u8).collect() };
    let foreign_server = KeyPair::generate();
    let candidates: Vec<(&str, Vec<u8>)> = vec![
        ("random 125 bytes", random(125)),
        ("10 bytes", random(10)),
        ("200 bytes", random(200)),
        (
            "ECIES of a 16-byte key",
            ksm.server_key.ecies_seal(&[7u8; 16]),
        ),
        (
            "ECIES of a 33-byte key",
            ksm.server_key.ecies_seal(&[7u8; 33]),
        ),
        (
            "ECIES to another server's key",
            foreign_server.public_key().ecies_seal(&[7u8; 32]),
        ),
    ];
    for (what, etk) in candidates {
        let mut prepared = ksm.prepare("get_secret", &payload);
        prepared.set_etk_bytes(&etk);
        prepared.sign_with(&ksm.device);
        let failure = ksm
            .send(&prepared)
            .await
            .failure()
            .expect(403, "access_denied");
        assert!(failure.body.get("key_id").is_none(), "{what}");
    }
    assert_untouched(fx, &mut ksm, &before).await;
}

#[tokio::test]
async fn a_body_that_does_not_open_is_refused() {
    let fx = fx();
    let (mut ksm, before) = fresh(fx).await;
    let payload = ksm.payload(json!({}));
    let json = serde_json::to_vec(&payload).expect("json");

    let cut = |n: usize| {
        move |p: &mut Prepared| {
            p.body.truncate(p.body.len().saturating_sub(n));
        }
    };
    type Breaker = Box<dyn Fn(&mut Prepared)>;
    let variants: Vec<(&str, Breaker)> = vec![
        ("one byte cut", Box::new(cut(1))),
        ("tag cut", Box::new(cut(16))),
        (
            "only a nonce",
            Box::new(|p: &mut Prepared| p.body.truncate(12)),
        ),
        ("empty body", Box::new(|p: &mut Prepared| p.body.clear())),
        ("flipped bit", Box::new(|p: &mut Prepared| p.body[20] ^= 1)),
        (
            "another key",
            Box::new(move |p: &mut Prepared| {
                p.body = gcm_seal(&SymmetricKey::generate(), &json);
            }),
        ),
        (
            "plain JSON",
            Box::new(|p: &mut Prepared| p.body = b"{\"clientId\":\"x\"}".to_vec()),
        ),
    ];
    for (what, break_it) in variants {
        let mut prepared = ksm.prepare("get_secret", &payload);
        break_it(&mut prepared);
        // A valid signature over the broken bytes: the body itself is what is wrong.
        prepared.sign_with(&ksm.device);
        let failure = ksm.send(&prepared).await.failure();
        assert_eq!(
            (failure.status, failure.code.as_str()),
            (400, "bad_request"),
            "{what}: {:?}",
            failure.body
        );
    }
    assert_untouched(fx, &mut ksm, &before).await;
}

#[tokio::test]
async fn a_payload_that_is_not_a_usable_json_object_is_refused() {
    let fx = fx();
    let (mut ksm, before) = fresh(fx).await;
    let public_key = ksm.public_key_b64();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"this is not json {".to_vec()),
        ("binary", vec![0xff, 0xfe, 0x00, 0x01]),
        ("a JSON array", b"[1, 2, 3]".to_vec()),
        ("a JSON string", b"\"get_secret\"".to_vec()),
        ("truncated JSON", {
            let full = serde_json::to_vec(&ksm.payload(json!({}))).expect("json");
            full[..full.len() / 2].to_vec()
        }),
        (
            "no clientId",
            serde_json::to_vec(&json!({"clientVersion": CLIENT_VERSION, "publicKey": public_key}))
                .expect("json"),
        ),
        (
            "empty clientId",
            serde_json::to_vec(&ksm.payload(json!({"clientId": ""}))).expect("json"),
        ),
        (
            "null clientId",
            serde_json::to_vec(&ksm.payload(json!({"clientId": null}))).expect("json"),
        ),
        (
            "numeric clientId",
            serde_json::to_vec(&ksm.payload(json!({"clientId": 12}))).expect("json"),
        ),
    ];
    for (what, body) in bodies {
        let prepared = ksm.prepare_bytes("get_secret", &body);
        let failure = ksm.send(&prepared).await.failure();
        assert_eq!(
            (failure.status, failure.code.as_str()),
            (400, "bad_request"),
            "{what}: {:?}",
            failure.body
        );
    }
    assert_untouched(fx, &mut ksm, &before).await;
}

#[tokio::test]
async fn an_unknown_client_id_is_access_denied() {
    let fx = fx();
    let (mut ksm, before) = fresh(fx).await;
    let unknown = coffer_crypto::derive_client_id(SymmetricKey::generate().expose());
    for payload in [
        ksm.payload(json!({"clientId": unknown})),
        // Almost the real one: clientIds are compared exactly.
        ksm.payload(json!({"clientId": ksm.client_id.to_lowercase()})),
        ksm.payload(json!({"clientId": ksm.client_id.trim_end_matches('=')})),
    ] {
        let prepared = ksm.prepare("get_secret", &payload);
        ksm.send(&prepared)
            .await
            .failure()
            .expect(403, "access_denied");
    }
    assert!(
        fx.audit(&[("actor", &format!("client:{unknown}"))])
            .await
            .is_empty()
    );
    assert_untouched(fx, &mut ksm, &before).await;
}

#[tokio::test]
async fn a_bad_authorization_header_is_refused() {
    let fx = fx();
    let (mut ksm, before) = fresh(fx).await;
    let payload = ksm.payload(json!({}));
    let good = ksm.prepare("get_secret", &payload);
    let signature = good
        .headers
        .iter()
        .find(|(n, _)| n == "Authorization")
        .map(|(_, v)| v.trim_start_matches("Signature ").to_owned())
        .expect("signed");
    for value in [
        None,
        Some(format!("Bearer {signature}")),
        Some(signature.clone()),
        Some("Signature !!!".to_owned()),
        Some("Signature ".to_owned()),
        Some(format!("Signature {}", encode_std(b"not a DER signature"))),
    ] {
        let mut prepared = ksm.prepare("get_secret", &payload);
        match &value {
            None => prepared.remove_header("Authorization"),
            Some(v) => prepared.set_header("Authorization", v),
        }
        let failure = ksm.send(&prepared).await.failure();
        assert_eq!(
            (failure.status, failure.code.as_str()),
            (403, "access_denied"),
            "{value:?}"
        );
    }
    assert_untouched(fx, &mut ksm, &before).await;
}

#[tokio::test]
async fn an_invalid_public_key_is_refused() {
    let fx = fx();
    let (mut ksm, before) = fresh(fx).await;
    let mut off_curve = vec![0x04];
    off_curve.extend([0x11u8; 64]);
    let compressed = {
        let point = ksm.device.public_key().as_bytes();
        let mut c = vec![0x02 | (point[64] & 1)];
        c.extend_from_slice(&point[1..33]);
        c
    };
    for bad in [
        "!!!".to_owned(),
        encode_std(&off_curve),
        encode_std(&compressed),
        encode_std(&[0x04; 64]),
        encode_std(&[0x00]),
    ] {
        let prepared = ksm.prepare("get_secret", &ksm.payload(json!({"publicKey": bad})));
        let failure = ksm.send(&prepared).await.failure();
        assert_eq!(
            (failure.status, failure.code.as_str()),
            (400, "bad_request"),
            "{bad}: {:?}",
            failure.body
        );
    }
    assert_untouched(fx, &mut ksm, &before).await;
}

#[tokio::test]
async fn unknown_endpoints_and_paths_are_json_errors() {
    let fx = fx();
    let (mut ksm, before) = fresh(fx).await;
    let payload = ksm.payload(json!({}));
    for endpoint in [
        "get_everything",
        "GET_SECRET",
        "get_secret.json",
        "request_upload",
    ] {
        let prepared = ksm.prepare(endpoint, &payload);
        ksm.send(&prepared).await.failure().expect(404, "not_found");
    }
    for path in [
        "/nope",
        "/api/rest/sm/v2/get_secret",
        "/api/rest/sm/v1/",
        "/api/rest/sm/v1/get_secret/x",
    ] {
        let prepared = ksm.prepare(path, &payload);
        let failure = ksm.send(&prepared).await.failure();
        assert_eq!(
            (failure.status, failure.code.as_str()),
            (404, "not_found"),
            "{path}: {:?}",
            failure.body
        );
    }
    assert_untouched(fx, &mut ksm, &before).await;
}

/// Requests that the HTTP framework itself rejects (wrong method, unparsable path or query
/// parameters) must get the protocol's JSON error too (checklist 6), not axum's bare
/// plain-text or empty bodies.
#[tokio::test]
async fn framework_rejections_are_json_errors() {
    let fx = fx();
    let http = fx.ep.http();
    let token = fx.owner.token().to_owned();
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "GET on a KSM endpoint",
            http.get(fx.ep.ksm_url("get_secret")),
        ),
        (
            "PUT on a KSM endpoint",
            http.put(fx.ep.ksm_url("get_secret")),
        ),
        (
            "DELETE on a KSM endpoint",
            http.delete(fx.ep.ksm_url("get_folders")),
        ),
        (
            "POST on a download link",
            http.post(format!("{}/files/{}/1/x", fx.ep.base, fx.vault.file_uid)),
        ),
        (
            "non-numeric download expiry",
            http.get(format!("{}/files/{}/soon/x", fx.ep.base, fx.vault.file_uid)),
        ),
        (
            "non-numeric audit limit",
            http.get(fx.ep.owner_url("/audit?limit=lots"))
                .bearer_auth(&token),
        ),
        (
            "DELETE on an owner route",
            http.delete(fx.ep.owner_url("/folders")).bearer_auth(&token),
        ),
    ];
    let mut bad = Vec::new();
    for (what, request) in cases {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("body");
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let ok = status >= 400
            && json
                .as_ref()
                .is_some_and(|j| j["error"].is_string() && j["message"].is_string());
        if !ok {
            bad.push(format!(
                "{what}: {status} {:?}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "answers without a JSON error body:\n{}",
        bad.join("\n")
    );
}

#[tokio::test]
async fn an_oversized_body_is_too_large() {
    let fx = fx();
    let (mut ksm, before) = fresh(fx).await;
    let mut prepared = ksm.prepare("get_secret", &ksm.payload(json!({})));
    prepared.body = vec![0x5a; 8 * 1024 * 1024 + 1];
    prepared.sign_with(&ksm.device);
    ksm.send(&prepared).await.failure().expect(413, "too_large");
    // An oversized payload that is a valid encryption of (padded) JSON: still refused.
    let mut padded = serde_json::to_vec(&ksm.payload(json!({}))).expect("json");
    padded.extend(std::iter::repeat_n(b' ', 9 * 1024 * 1024));
    let prepared = ksm.prepare_bytes("get_secret", &padded);
    ksm.send(&prepared).await.failure().expect(413, "too_large");
    assert_untouched(fx, &mut ksm, &before).await;
}

#[tokio::test]
async fn wrongly_typed_filters_are_a_bad_request_for_a_bound_device() {
    let fx = fx();
    let mut ksm = fx.bound_device(&fx.vault.app).await;
    for extra in [
        json!({"requestedRecords": "AAAAAAAAAAAAAAAAAAAAAA"}),
        json!({"requestedRecords": [1, 2]}),
        json!({"requestedFolders": {"a": 1}}),
        json!({"requestLinks": "yes"}),
    ] {
        let failure = expect_failure(ksm.get_secret(extra.clone()).await, 400, "bad_request");
        assert!(!failure.message.is_empty(), "{extra}");
    }
    ksm.get_secret(json!({})).await.expect("still served");
}

#[tokio::test]
async fn garbage_on_the_owner_api_is_a_json_error() {
    let fx = fx();
    let http = fx.ep.http();
    let token = fx.owner.token().to_owned();
    // Malformed JSON, wrong shape, wrong content type.
    for (body, content_type) in [
        ("{not json", "application/json"),
        ("[1,2,3]", "application/json"),
        ("{\"uid\": 5}", "application/json"),
        ("{\"uid\":\"x\"}", "text/plain"),
    ] {
        let response = http
            .post(fx.ep.owner_url("/folders"))
            .bearer_auth(&token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let failure = failure_of(response).await;
        assert_eq!(
            (failure.status, failure.code.as_str()),
            (400, "bad_request"),
            "{body}: {:?}",
            failure.body
        );
    }
    let before = fx.record_revisions().await;
    let response = http
        .post(fx.ep.owner_url("/records"))
        .bearer_auth(&token)
        .json(&json!({"uid": "AAAAAAAAAAAAAAAAAAAAAA", "folder_uid": fx.vault.alpha, "key": "!!", "data": "!!"}))
        .send()
        .await
        .expect("request");
    failure_of(response).await.expect(400, "bad_request");
    assert_eq!(fx.record_revisions().await, before);
    let answer: Value = http
        .get(fx.ep.owner_url("/info"))
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["setup_required"], json!(false));
}
