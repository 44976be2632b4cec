//! Transport and request-format obligations (PROTOCOL.md §2.3–§2.5, §2.11, §3.6–§3.7; checklist
//! 2–4, 7, 9, 11, 12, 14, 15, 18).

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use coffer_crypto::{encode_url, gcm_open};
use coffer_owner::NewClientOptions;
use common::*;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

static SHARED: OnceLock<Shared> = OnceLock::new();

fn fx() -> &'static Shared {
    SHARED.get_or_init(|| Shared::start(|_| {}))
}

fn header_value<'a>(prepared: &'a Prepared, name: &str) -> &'a str {
    prepared
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .expect("header present")
}

/// A raw request for `prepared` with header names spelled as `names` says
/// (PublicKeyId, TransmissionKey, Authorization, Content-Length, Host).
fn spelled(ep: &Endpoint, prepared: &Prepared, names: [&str; 5]) -> Vec<u8> {
    raw_request(
        "POST",
        &format!("/api/rest/sm/v1/{}", prepared.endpoint),
        &[
            (names[4], format!("127.0.0.1:{}", ep.addr.port())),
            (names[0], header_value(prepared, "PublicKeyId").to_owned()),
            (
                names[1],
                header_value(prepared, "TransmissionKey").to_owned(),
            ),
            (names[2], header_value(prepared, "Authorization").to_owned()),
            (names[3], prepared.body.len().to_string()),
        ],
        &prepared.body,
    )
}

#[tokio::test]
async fn header_names_are_case_insensitive_and_no_user_agent_is_needed() {
    let fx = fx();
    let ksm = fx.bound_device(&fx.vault.app).await;
    let spellings = [
        [
            "publickeyid",
            "transmissionkey",
            "authorization",
            "content-length",
            "host",
        ],
        [
            "PUBLICKEYID",
            "TRANSMISSIONKEY",
            "AUTHORIZATION",
            "CONTENT-LENGTH",
            "HOST",
        ],
        [
            "PublicKeyId",
            "TransmissionKey",
            "Authorization",
            "Content-Length",
            "Host",
        ],
        [
            "pUBLICkEYiD",
            "tRaNsMiSsIoNkEy",
            "AuThOrIzAtIoN",
            "content-LENGTH",
            "hOsT",
        ],
    ];
    let prepared: Vec<Prepared> = spellings
        .iter()
        .map(|_| ksm.prepare("get_secret", &ksm.payload(json!({}))))
        .collect();
    let requests: Vec<Vec<u8>> = prepared
        .iter()
        .zip(spellings)
        .map(|(p, names)| spelled(&fx.ep, p, names))
        .collect();
    for request in &requests {
        let text = String::from_utf8_lossy(request).to_lowercase();
        assert!(!text.contains("user-agent"));
    }
    // All four on one keep-alive connection.
    let responses = raw_exchange(&fx.ep, &requests).await;
    assert_eq!(responses.len(), 4);
    for (response, p) in responses.iter().zip(&prepared) {
        assert_eq!(
            response.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&response.body)
        );
        assert!(response.header("content-encoding").is_none());
        let plain = gcm_open(&p.transmission_key, &response.body).expect("decrypts");
        let answer: Value = serde_json::from_slice(&plain).expect("JSON");
        assert_eq!(answer["records"].as_array().expect("records").len(), 2);
    }
}

#[tokio::test]
async fn answers_are_never_compressed_and_success_is_exactly_200() {
    let fx = fx();
    let ksm = fx.bound_device(&fx.vault.app).await;
    for endpoint in ["get_secret", "get_folders"] {
        let mut prepared = ksm.prepare(endpoint, &ksm.payload(json!({})));
        prepared.set_header("Accept-Encoding", "gzip, deflate, br");
        let reply = ksm.send(&prepared).await;
        assert_eq!(reply.status, 200);
        assert!(reply.headers.get("content-encoding").is_none());
        let answer = reply.json();
        assert!(answer["folders"].is_array());
    }
    // Errors are not compressed either.
    let mut prepared = ksm.prepare("get_secret", &ksm.payload(json!({})));
    prepared.set_header("Accept-Encoding", "gzip");
    prepared.sign_with(&coffer_crypto::KeyPair::generate());
    let reply = ksm.send(&prepared).await;
    assert!(reply.headers.get("content-encoding").is_none());
    reply.failure().expect(403, "access_denied");
    // Nor are downloads.
    let mut ksm = ksm;
    let answer = ksm
        .get_secret(json!({"requestedRecords": [fx.vault.a_root]}))
        .await
        .expect("get_secret");
    let url = answer["folders"][0]["records"][0]["files"][0]["url"]
        .as_str()
        .expect("url");
    let response = fx
        .ep
        .http()
        .get(url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("download");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().get("content-encoding").is_none());
    let body = response.bytes().await.expect("body");
    assert_eq!(body.len(), fx.vault.file_content.len() + 28);
}

#[tokio::test]
async fn any_public_key_id_is_accepted_with_a_single_server_key() {
    let fx = fx();
    let mut ksm = fx.device(&fx.vault.app).await;
    assert_eq!(ksm.key_id, fx.ep.key_id.to_string());
    // Bind while claiming key id 7 (the JS default) …
    let mut prepared = ksm.prepare("get_secret", &ksm.payload(json!({})));
    prepared.set_header("PublicKeyId", "7");
    let answer = ksm.send(&prepared).await.json();
    ksm.absorb(&answer);
    assert!(ksm.app_key.is_some());
    // … then use others.
    for id in ["10", "999", "1", "100"] {
        let mut prepared = ksm.prepare("get_secret", &ksm.payload(json!({})));
        prepared.set_header("PublicKeyId", id);
        let reply = ksm.send(&prepared).await;
        assert_eq!(reply.status, 200, "PublicKeyId {id}");
        reply.json();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_on_separate_connections_all_succeed() {
    let fx = fx();
    let owner = fx.owner.clone();
    let app = fx.vault.app.clone();
    let tokens = fx
        .run(async move {
            let mut tokens = Vec::new();
            for _ in 0..20 {
                tokens.push(owner.add_client(&app, &NewClientOptions::default()).await?);
            }
            Ok::<_, coffer_owner::OwnerError>(tokens)
        })
        .await
        .expect("twenty tokens");

    // A client that opened a connection and went quiet in the middle of a request.
    let mut idle = tls_connect(&fx.ep).await;
    idle.write_all(
        format!(
            "POST /api/rest/sm/v1/get_secret HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 500\r\n\r\npartial",
            fx.ep.addr.port()
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    idle.flush().await.expect("flush");

    let mut tasks = tokio::task::JoinSet::new();
    for token in tokens {
        let cert = fx.ep.cert_path.clone();
        tasks.spawn(async move {
            let mut ksm = Ksm::from_config(&token.config, &cert);
            ksm.bind().await;
            let answer = ksm.get_secret(json!({})).await.expect("get_secret");
            let folders = ksm.get_folders().await.expect("get_folders");
            (
                answer["records"].as_array().map(Vec::len),
                folders["folders"].as_array().map(Vec::len),
            )
        });
    }
    let results = tokio::time::timeout(Duration::from_secs(60), tasks.join_all())
        .await
        .expect("no request is blocked by the idle connection");
    assert_eq!(results.len(), 20);
    for result in results {
        assert_eq!(result, (Some(2), Some(5)));
    }
    drop(idle);
}

#[tokio::test]
async fn python_style_payloads_are_accepted() {
    let fx = fx();
    let ksm = fx.device(&fx.vault.app).await;
    // 4-space pretty printing, every optional field as null, an unknown field, and the
    // public key in URL-safe base64 without padding.
    let payload = json!({
        "clientVersion": "mp17.3.0",
        "clientId": ksm.client_id,
        "publicKey": encode_url(ksm.device.public_key().as_bytes()),
        "requestedRecords": null,
        "requestedFolders": null,
        "requestLinks": null,
        "somethingNew": {"nested": [1, 2, 3]}
    });
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
    payload.serialize(&mut serializer).expect("serialise");
    assert!(String::from_utf8_lossy(&text).contains("\n    \"clientId\""));
    let prepared = ksm.prepare_bytes("get_secret", &text);
    let answer = ksm.send(&prepared).await.json();
    let mut ksm = ksm;
    ksm.absorb(&answer);
    assert_eq!(ksm.app_key(), &fx.vault.app_key);
    assert_eq!(answer["records"].as_array().expect("records").len(), 2);
}

#[tokio::test]
async fn every_official_client_version_is_accepted() {
    let fx = fx();
    let mut ksm = fx.bound_device(&fx.vault.app).await;
    for version in [
        "mp17.3.0", "ms17.5.0", "mr17.3.0", "mj17.3.0", "mn17.1.2", "mb17.2.0",
    ] {
        ksm.client_version = version.to_owned();
        ksm.get_secret(json!({}))
            .await
            .unwrap_or_else(|f| panic!("{version} refused: {:?}", f.body));
    }
}

// ---- signatures: high-S and low-S -------------------------------------------------------------

/// The order of P-256.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

fn der_integer(bytes: &[u8]) -> ([u8; 32], usize) {
    assert_eq!(bytes[0], 0x02, "INTEGER");
    let len = bytes[1] as usize;
    let value = &bytes[2..2 + len];
    let value = &value[value.iter().take_while(|b| **b == 0).count()..];
    assert!(value.len() <= 32);
    let mut out = [0u8; 32];
    out[32 - value.len()..].copy_from_slice(value);
    (out, 2 + len)
}

fn der_parse(signature: &[u8]) -> ([u8; 32], [u8; 32]) {
    assert_eq!(signature[0], 0x30, "SEQUENCE");
    assert_eq!(signature[1] as usize, signature.len() - 2);
    let (r, used) = der_integer(&signature[2..]);
    let (s, _) = der_integer(&signature[2 + used..]);
    (r, s)
}

fn der_int_bytes(value: &[u8; 32]) -> Vec<u8> {
    let mut v: Vec<u8> = value.iter().copied().skip_while(|b| *b == 0).collect();
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    let mut out = vec![0x02, v.len() as u8];
    out.extend(v);
    out
}

fn der_encode(r: &[u8; 32], s: &[u8; 32]) -> Vec<u8> {
    let mut body = der_int_bytes(r);
    body.extend(der_int_bytes(s));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// `ORDER - s`.
fn negate(s: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = ORDER[i] as i16 - s[i] as i16 - borrow;
        borrow = if d < 0 {
            d += 256;
            1
        } else {
            0
        };
        out[i] = d as u8;
    }
    out
}

fn is_high(s: &[u8; 32]) -> bool {
    // s > n/2  ⇔  s > n - s.
    *s > negate(s)
}

#[test]
fn signature_helpers_negate_correctly() {
    let one = {
        let mut v = [0u8; 32];
        v[31] = 1;
        v
    };
    let minus_one = negate(&one);
    assert_eq!(minus_one[31], 0x50);
    assert_eq!(negate(&minus_one), one);
    assert!(is_high(&minus_one) && !is_high(&one));
    let der = der_encode(&one, &minus_one);
    assert_eq!(der_parse(&der), (one, minus_one));
}

#[tokio::test]
async fn high_s_and_low_s_signatures_are_both_accepted() {
    let fx = fx();
    let ksm = fx.bound_device(&fx.vault.app).await;
    for want_high in [true, false] {
        let mut prepared = ksm.prepare("get_secret", &ksm.payload(json!({})));
        let signature = ksm.device.sign(&prepared.signed_bytes());
        let (r, s) = der_parse(&signature);
        let s = if is_high(&s) == want_high {
            s
        } else {
            negate(&s)
        };
        assert_eq!(is_high(&s), want_high);
        prepared.set_signature(&der_encode(&r, &s));
        let reply = ksm.send(&prepared).await;
        assert_eq!(reply.status, 200, "high S = {want_high}");
        reply.json();
    }
}

#[tokio::test]
async fn each_answer_uses_a_fresh_nonce() {
    let fx = fx();
    let ksm = fx.bound_device(&fx.vault.app).await;
    let prepared = ksm.prepare("get_secret", &ksm.payload(json!({})));
    let first = ksm.send(&prepared).await;
    first.json();
    // The same request again (a server MAY refuse replays; if it answers, the nonce differs).
    let second = ksm.send(&prepared).await;
    if second.status == 200 {
        second.json();
        assert_ne!(first.body[..12], second.body[..12], "GCM nonce reused");
    } else {
        second.failure();
    }
}
