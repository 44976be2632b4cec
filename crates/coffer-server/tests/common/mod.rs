//! Test harness for the server's integration tests.
//!
//! * A real server started in-process on `127.0.0.1:<random port>` over HTTPS with its
//!   self-signed certificate ([`start_server`]), either owned by one test or shared by all the
//!   tests of a file ([`Shared`], which runs the server on a runtime of its own so that it
//!   outlives each test's runtime).
//! * An owner registered with the setup code, and a standard vault ([`provision`]).
//! * A raw KSM client ([`Ksm`]) written directly on `coffer-crypto`: fresh transmission key
//!   per request, ECIES to the server key, GCM body, ECDSA signature over `ETK || BODY`.
//!   Every step can be broken on purpose through [`Prepared`].
//! * A raw HTTP/1.1-over-TLS client ([`raw_exchange`]) for what `reqwest` normalises away
//!   (header-name case, keep-alive behaviour).

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coffer_crypto::{
    KeyPair, PublicKey, SymmetricKey, cbc_open, decode_lenient, encode_std, encode_url, gcm_open,
    gcm_seal,
};
use coffer_owner::{NewClient, NewClientOptions, OwnerClient, ServerTrust, Session};
use coffer_proto::owner::AuditEvent;
use coffer_proto::record::{Field, RecordData};
use coffer_server::{RunningServer, ServerConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The owner every test server gets.
pub const OWNER_EMAIL: &str = "owner@coffer.test";
/// Their master password.
pub const OWNER_PASSWORD: &str = "pw-Owner-5b0c1e-correct-horse";
/// What the raw client sends as `clientVersion`.
pub const CLIENT_VERSION: &str = "mr17.3.0";

// ---- server ------------------------------------------------------------------------------

/// Where a running test server is and how to trust it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    /// Listening address.
    pub addr: SocketAddr,
    /// The self-signed certificate.
    pub cert_path: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
    /// B64URL of the server public key.
    pub public_key: String,
    /// Its key id.
    pub key_id: u32,
}

impl Endpoint {
    /// An owner-API transport trusting the server's certificate.
    pub fn owner_client(&self) -> OwnerClient {
        OwnerClient::new(&self.base, &ServerTrust::ExtraCa(self.cert_path.clone()))
            .expect("owner client")
    }

    /// A plain HTTPS client trusting the server's certificate.
    pub fn http(&self) -> reqwest::Client {
        https_client(&self.cert_path, None)
    }

    /// URL of a KSM endpoint.
    pub fn ksm_url(&self, endpoint: &str) -> String {
        format!("{}/api/rest/sm/v1/{endpoint}", self.base)
    }

    /// URL of an owner-API path.
    pub fn owner_url(&self, path: &str) -> String {
        format!("{}/api/owner/v1{path}", self.base)
    }
}

/// An HTTPS client that trusts `cert` (and only ever speaks to the test server).
pub fn https_client(cert: &Path, local: Option<IpAddr>) -> reqwest::Client {
    let pem = std::fs::read(cert).expect("read the server certificate");
    let certs = reqwest::Certificate::from_pem_bundle(&pem).expect("parse the certificate");
    let mut builder = reqwest::Client::builder()
        .tls_certs_merge(certs)
        .no_proxy()
        .timeout(Duration::from_secs(60));
    if let Some(ip) = local {
        builder = builder.local_address(ip);
    }
    builder.build().expect("build the HTTPS client")
}

/// Starts a server on a fresh `127.0.0.1` port with `data_dir`; `tweak` may adjust the config.
pub async fn start_server(
    data_dir: &Path,
    tweak: impl FnOnce(&mut ServerConfig),
) -> (RunningServer, Endpoint) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let addr = listener.local_addr().expect("local address");
    let mut config = ServerConfig::new(data_dir.to_path_buf());
    config.listen = addr;
    config.public_host = format!("127.0.0.1:{}", addr.port());
    tweak(&mut config);
    let server = coffer_server::start(config, Some(listener))
        .await
        .expect("the server starts");
    assert_eq!(server.local_addr, addr);
    let endpoint = Endpoint {
        base: format!("https://127.0.0.1:{}", addr.port()),
        addr,
        cert_path: data_dir.join("tls").join("cert.pem"),
        data_dir: data_dir.to_path_buf(),
        public_key: server.public_key.clone(),
        key_id: server.key_id,
    };
    assert!(endpoint.cert_path.exists(), "the self-signed certificate");
    (server, endpoint)
}

/// Registers the first owner with the server's setup code.
pub async fn register_owner(endpoint: &Endpoint, setup_code: &str) -> Session {
    Session::register(
        endpoint.owner_client(),
        OWNER_EMAIL,
        OWNER_PASSWORD,
        setup_code,
    )
    .await
    .expect("register the first owner")
}

/// A fresh data directory for a server that outlives its test (removed by a later run once
/// the process that made it is gone, since a static is never dropped).
fn shared_data_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("coffer-server-it");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.split('-').next() else {
                continue;
            };
            if pid.chars().all(|c| c.is_ascii_digit())
                && Path::new("/proc/self").exists()
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = root.join(format!(
        "{}-{}",
        std::process::id(),
        encode_url(&coffer_crypto::random_bytes::<6>())
    ));
    std::fs::create_dir_all(&dir).expect("create the shared data dir");
    dir
}

/// A server, its owner and the standard vault, shared by the tests of one file.
///
/// The server runs on a runtime of its own thread (each `#[tokio::test]` has its own runtime,
/// which ends with the test). Owner operations also run there ([`Shared::run`]), because an
/// HTTP client's pooled connections belong to the runtime that opened them.
pub struct Shared {
    /// The server.
    pub ep: Endpoint,
    /// Its owner, logged in.
    pub owner: Arc<Session>,
    /// The standard vault.
    pub vault: Vault,
    rt: tokio::runtime::Handle,
}

impl Shared {
    /// Starts the shared server (blocks until it is provisioned).
    pub fn start(tweak: fn(&mut ServerConfig)) -> Shared {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("shared-test-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                let handle = rt.handle().clone();
                rt.block_on(async move {
                    let dir = shared_data_dir();
                    let (server, ep) = start_server(&dir, tweak).await;
                    let code = server
                        .setup_code
                        .clone()
                        .expect("a fresh server has a code");
                    let owner = register_owner(&ep, &code).await;
                    let vault = provision(&owner).await;
                    tx.send((ep, Arc::new(owner), vault, handle))
                        .expect("hand the server over");
                    let _running = server;
                    std::future::pending::<()>().await;
                });
            })
            .expect("spawn the server thread");
        let (ep, owner, vault, rt) = rx
            .recv()
            .expect("the shared test server failed to start (see the panic above)");
        Shared {
            ep,
            owner,
            vault,
            rt,
        }
    }

    /// Runs a future on the server's runtime.
    pub async fn run<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt
            .spawn(fut)
            .await
            .expect("a task on the server runtime panicked")
    }

    /// A new one-time token for `app`.
    pub async fn token(&self, app: &str, options: NewClientOptions) -> NewClient {
        let owner = self.owner.clone();
        let app = app.to_owned();
        self.run(async move { owner.add_client(&app, &options).await })
            .await
            .expect("add a client")
    }

    /// A raw KSM client for a new (unbound, IP-locked) device of `app`.
    pub async fn device(&self, app: &str) -> Ksm {
        let token = self.token(app, NewClientOptions::default()).await;
        Ksm::from_config(&token.config, &self.ep.cert_path)
    }

    /// A raw KSM client for a new device of `app`, already bound.
    pub async fn bound_device(&self, app: &str) -> Ksm {
        let mut ksm = self.device(app).await;
        ksm.bind().await;
        ksm
    }

    /// The owner's view of an app's devices.
    pub async fn clients(&self, app: &str) -> Vec<coffer_owner::ClientView> {
        let owner = self.owner.clone();
        let app = app.to_owned();
        self.run(async move { owner.clients(&app).await })
            .await
            .expect("list clients")
    }

    /// The owner's audit events matching a query (`key=value&…`, values raw).
    pub async fn audit(&self, filters: &[(&str, &str)]) -> Vec<AuditEvent> {
        let owner = self.owner.clone();
        let query = query_string(filters);
        self.run(async move { owner.audit(&query).await })
            .await
            .expect("list audit events")
    }

    /// Polls the audit trail (up to `limit`) until `done` accepts the events; returns the last
    /// list and whether `done` accepted it. Device reads are audited through a queue.
    pub async fn audit_until(
        &self,
        filters: &[(&str, &str)],
        limit: Duration,
        done: impl Fn(&[AuditEvent]) -> bool,
    ) -> (Vec<AuditEvent>, bool) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let events = self.audit(filters).await;
            let ok = done(&events);
            if ok || std::time::Instant::now() > deadline {
                return (events, ok);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The owner's record UIDs and revisions.
    pub async fn record_revisions(&self) -> Vec<(String, i64)> {
        let owner = self.owner.clone();
        let mut out: Vec<(String, i64)> = self
            .run(async move { owner.records().await })
            .await
            .expect("list records")
            .into_iter()
            .map(|r| (r.uid, r.revision))
            .collect();
        out.sort();
        out
    }
}

/// `a=b&c=d` with values percent-encoded.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// ---- the standard vault -------------------------------------------------------------------

/// A record as the tests expect to read it back.
#[derive(Clone, Debug)]
pub struct Expected {
    /// Title.
    pub title: String,
    /// The password field's value.
    pub password: String,
}

/// What [`provision`] made.
///
/// ```text
/// Alpha (shared with `app`, editable)      a_root (+ file), Sub: a_sub, Sub/SubSub: a_subsub
/// Beta  (shared with `app`, read-only)     b_rec
/// Empty (shared with `app`, read-only)     —
/// Private (not shared)                     direct_ro (shared directly, read-only),
///                                          direct_rw (shared directly, editable), hidden
/// Other (shared with `other_app`)          other_rec
/// ```
#[derive(Clone, Debug)]
pub struct Vault {
    pub app: String,
    pub app_name: String,
    pub app_key: SymmetricKey,
    pub other_app: String,
    pub other_app_key: SymmetricKey,
    pub alpha: String,
    pub sub: String,
    pub subsub: String,
    pub beta: String,
    pub empty: String,
    pub private: String,
    pub other_folder: String,
    pub a_root: String,
    pub a_sub: String,
    pub a_subsub: String,
    pub b_rec: String,
    pub direct_ro: String,
    pub direct_rw: String,
    pub hidden: String,
    pub other_rec: String,
    pub file_uid: String,
    pub file_name: String,
    pub file_mime: String,
    pub file_content: Vec<u8>,
    /// Folder names by UID.
    pub folder_names: HashMap<String, String>,
    /// Folder keys by UID (from the owner's side).
    pub folder_keys: HashMap<String, SymmetricKey>,
    /// Record keys by UID (from the owner's side).
    pub record_keys: HashMap<String, SymmetricKey>,
    /// Record content by UID.
    pub records: HashMap<String, Expected>,
    /// The owner's public key.
    pub owner_public_key: Vec<u8>,
}

/// A login record with a password, a labelled custom field and notes.
pub fn login_record(title: &str, password: &str) -> RecordData {
    RecordData {
        title: title.to_owned(),
        record_type: "login".to_owned(),
        fields: vec![
            Field::new("login", vec![json!("user@example.test")]),
            Field::new("password", vec![json!(password)]),
        ],
        custom: vec![Field::new("text", vec![json!("staging")]).with_label("Environment")],
        notes: Some(format!("notes of {title}")),
        extra: serde_json::Map::new(),
    }
}

/// Builds the standard vault (see [`Vault`]).
pub async fn provision(owner: &Session) -> Vault {
    let mut folder_names = HashMap::new();
    let mut records = HashMap::new();
    let mut folder = async |name: &str, parent: Option<&str>| {
        let uid = owner
            .create_folder(name, parent)
            .await
            .expect("create folder");
        folder_names.insert(uid.clone(), name.to_owned());
        uid
    };
    let alpha = folder("Alpha", None).await;
    let sub = folder("Alpha Sub", Some(&alpha)).await;
    let subsub = folder("Alpha Sub Sub", Some(&sub)).await;
    let beta = folder("Beta", None).await;
    let empty = folder("Empty", None).await;
    let private = folder("Private", None).await;
    let other_folder = folder("Other", None).await;
    let mut record = async |folder_uid: &str, title: &str| {
        let password = format!("pw of {title} 9f2c");
        let uid = owner
            .add_record(folder_uid, &login_record(title, &password))
            .await
            .expect("add record");
        records.insert(
            uid.clone(),
            Expected {
                title: title.to_owned(),
                password,
            },
        );
        uid
    };
    let a_root = record(&alpha, "Alpha root record").await;
    let a_sub = record(&sub, "Alpha sub record").await;
    let a_subsub = record(&subsub, "Alpha sub-sub record").await;
    let b_rec = record(&beta, "Beta record").await;
    let direct_ro = record(&private, "Direct read-only").await;
    let direct_rw = record(&private, "Direct editable").await;
    let hidden = record(&private, "Hidden").await;
    let other_rec = record(&other_folder, "Other app record").await;

    let file_name = "report.bin".to_owned();
    let file_mime = "application/x-test".to_owned();
    let file_content: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file_uid = owner
        .attach_file(&a_root, &file_name, &file_mime, &file_content)
        .await
        .expect("attach a file");

    let app_name = "Read Path App".to_owned();
    let app = owner.create_app(&app_name).await.expect("create app");
    owner.share(&app, &alpha, true).await.expect("share alpha");
    owner.share(&app, &beta, false).await.expect("share beta");
    owner.share(&app, &empty, false).await.expect("share empty");
    owner
        .share(&app, &direct_ro, false)
        .await
        .expect("share direct_ro");
    owner
        .share(&app, &direct_rw, true)
        .await
        .expect("share direct_rw");
    let other_app = owner.create_app("Other App").await.expect("create app");
    owner
        .share(&other_app, &other_folder, true)
        .await
        .expect("share other");

    let apps = owner.apps().await.expect("apps");
    let app_key_of = |uid: &str| {
        apps.iter()
            .find(|a| a.uid == uid)
            .map(|a| a.key.clone())
            .expect("the app is listed")
    };
    let app_key = app_key_of(&app);
    let other_app_key = app_key_of(&other_app);
    let folder_keys = owner
        .folders()
        .await
        .expect("folders")
        .into_iter()
        .map(|f| (f.uid, f.key))
        .collect();
    let record_keys = owner
        .records()
        .await
        .expect("records")
        .into_iter()
        .map(|r| (r.uid, r.key))
        .collect();
    Vault {
        app,
        app_name,
        app_key,
        other_app,
        other_app_key,
        alpha,
        sub,
        subsub,
        beta,
        empty,
        private,
        other_folder,
        a_root,
        a_sub,
        a_subsub,
        b_rec,
        direct_ro,
        direct_rw,
        hidden,
        other_rec,
        file_uid,
        file_name,
        file_mime,
        file_content,
        folder_names,
        folder_keys,
        record_keys,
        records,
        owner_public_key: owner.public_key().as_bytes().to_vec(),
    }
}

// ---- decoding helpers -----------------------------------------------------------------------

/// Decodes B64 that must be canonical standard base64 with padding.
pub fn std_b64(text: &str) -> Vec<u8> {
    let bytes = decode_lenient(text).unwrap_or_else(|_| panic!("not base64: {text:?}"));
    assert_eq!(encode_std(&bytes), text, "not canonical padded B64");
    bytes
}

/// Decodes B64URL that must be canonical URL-safe base64 without padding.
pub fn url_b64(text: &str) -> Vec<u8> {
    let bytes = decode_lenient(text).unwrap_or_else(|_| panic!("not base64: {text:?}"));
    assert_eq!(encode_url(&bytes), text, "not canonical unpadded B64URL");
    bytes
}

/// Opens B64 `GCM(wrap, key)` into a 32-byte key.
pub fn gcm_key(wrap: &SymmetricKey, text: &str) -> SymmetricKey {
    let plain = gcm_open(wrap, &std_b64(text)).expect("GCM-wrapped key opens");
    SymmetricKey::from_slice(&plain).expect("a 32-byte key")
}

/// Opens B64 `GCM(key, json)`.
pub fn gcm_json(key: &SymmetricKey, text: &str) -> Value {
    let plain = gcm_open(key, &std_b64(text)).expect("GCM data opens");
    serde_json::from_slice(&plain).expect("GCM data is JSON")
}

/// Opens B64 `CBC(wrap, key)` into a 32-byte key.
pub fn cbc_key(wrap: &SymmetricKey, text: &str) -> SymmetricKey {
    let plain = cbc_open(wrap, &std_b64(text)).expect("CBC-wrapped key opens");
    SymmetricKey::from_slice(&plain).expect("a 32-byte key")
}

/// Opens B64 `CBC(key, json)`.
pub fn cbc_json(key: &SymmetricKey, text: &str) -> Value {
    let plain = cbc_open(key, &std_b64(text)).expect("CBC data opens");
    serde_json::from_slice(&plain).expect("CBC data is JSON")
}

/// The password field of decrypted record JSON.
pub fn password_of(record: &Value) -> &str {
    record["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["type"] == "password")
        .and_then(|f| f["value"][0].as_str())
        .expect("a password field")
}

// ---- errors -------------------------------------------------------------------------------

/// A non-200 answer, already checked for the protocol's error shape (PROTOCOL.md §2.6,
/// checklist 6): an unencrypted JSON object with string `error` and `message`, and
/// `result_code` equal to `error`.
#[derive(Debug, Clone)]
pub struct Failure {
    /// HTTP status.
    pub status: u16,
    /// `error`.
    pub code: String,
    /// `message`.
    pub message: String,
    /// The whole body.
    pub body: Value,
}

impl Failure {
    /// Parses and checks an error answer.
    pub fn parse(status: u16, body: &[u8]) -> Failure {
        assert_ne!(status, 200, "an error must not answer 200");
        assert!(!(200..300).contains(&status), "an error answered {status}");
        let json: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "error body (status {status}) is not JSON ({e}): {:?}",
                String::from_utf8_lossy(body)
            )
        });
        let code = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("error body without a string `error`: {json}"))
            .to_owned();
        let message = json["message"]
            .as_str()
            .unwrap_or_else(|| panic!("error body without a string `message`: {json}"))
            .to_owned();
        assert!(!code.is_empty(), "empty error code: {json}");
        assert!(!message.is_empty(), "empty error message: {json}");
        // PROTOCOL.md allows `result_code` to be absent; Coffer always sends it (the Python
        // and Rust SDKs read it first), and it must never differ from `error` or be null.
        assert_eq!(
            json.get("result_code").and_then(Value::as_str),
            Some(code.as_str()),
            "result_code must equal error: {json}"
        );
        Failure {
            status,
            code,
            message,
            body: json,
        }
    }

    /// Asserts the status and code.
    pub fn expect(self, status: u16, code: &str) -> Failure {
        assert_eq!(
            (self.status, self.code.as_str()),
            (status, code),
            "unexpected failure: {}",
            self.body
        );
        self
    }
}

/// Unwraps a failure, asserting status and code.
pub fn expect_failure(result: Result<Value, Failure>, status: u16, code: &str) -> Failure {
    match result {
        Ok(value) => panic!("expected {status} {code}, got success: {value}"),
        Err(failure) => failure.expect(status, code),
    }
}

/// Reads an error answer of the owner API or download links via reqwest.
pub async fn failure_of(response: reqwest::Response) -> Failure {
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("read the body");
    Failure::parse(status, &body)
}

// ---- the raw KSM client --------------------------------------------------------------------

/// A KSM device: its token's client key, its own key pair, the app key once bound.
pub struct Ksm {
    /// `https://host:port` from the config's `hostname`.
    pub base: String,
    /// The server key from the config.
    pub server_key: PublicKey,
    /// `serverPublicKeyId` from the config.
    pub key_id: String,
    /// The one-time token's client key.
    pub client_key: SymmetricKey,
    /// B64 HMAC client id.
    pub client_id: String,
    /// The device key pair.
    pub device: KeyPair,
    /// The app key, once bound.
    pub app_key: Option<SymmetricKey>,
    /// The owner public key from the binding answer.
    pub owner_public_key: Option<Vec<u8>>,
    /// `clientVersion` to send.
    pub client_version: String,
    http: reqwest::Client,
    cert_path: PathBuf,
}

/// A request ready to send; every part can be replaced to break it.
#[derive(Clone)]
pub struct Prepared {
    /// Endpoint name (`get_secret`, …) or a raw path starting with `/`.
    pub endpoint: String,
    /// The transmission key.
    pub transmission_key: SymmetricKey,
    /// `ECIES(server, TK)`.
    pub etk: Vec<u8>,
    /// `GCM(TK, payload)`.
    pub body: Vec<u8>,
    /// Header (name, value) pairs, sent as given.
    pub headers: Vec<(String, String)>,
}

impl Prepared {
    /// Replaces (case-insensitively) or adds a header.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.remove_header(name);
        self.headers.push((name.to_owned(), value.to_owned()));
    }

    /// Removes a header.
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Re-encrypts `json` as the body with the transmission key.
    pub fn set_payload(&mut self, json: &[u8]) {
        self.body = gcm_seal(&self.transmission_key, json);
    }

    /// Signs `ETK || BODY` with `key` into the Authorization header.
    pub fn sign_with(&mut self, key: &KeyPair) {
        let signature = key.sign(&self.signed_bytes());
        self.set_signature(&signature);
    }

    /// Puts a DER signature into the Authorization header.
    pub fn set_signature(&mut self, der: &[u8]) {
        self.set_header("Authorization", &format!("Signature {}", encode_std(der)));
    }

    /// `ETK || BODY`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut signed = self.etk.clone();
        signed.extend_from_slice(&self.body);
        signed
    }

    /// Sets the TransmissionKey header to B64 of arbitrary bytes (keeps `etk` for signing).
    pub fn set_etk_bytes(&mut self, etk: &[u8]) {
        self.etk = etk.to_vec();
        self.set_header("TransmissionKey", &encode_std(etk));
    }
}

/// An answer as received.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Raw body.
    pub body: Vec<u8>,
    transmission_key: SymmetricKey,
}

impl Reply {
    /// Asserts 200 and decrypts the JSON answer.
    pub fn json(&self) -> Value {
        assert_eq!(
            self.status,
            200,
            "expected 200, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let plain = gcm_open(&self.transmission_key, &self.body)
            .expect("the answer is GCM under the request's transmission key");
        serde_json::from_slice(&plain).expect("the answer is JSON")
    }

    /// Asserts a protocol error answer.
    pub fn failure(&self) -> Failure {
        Failure::parse(self.status, &self.body)
    }

    /// The decrypted JSON, or the checked failure.
    pub fn result(&self) -> Result<Value, Failure> {
        if self.status == 200 {
            Ok(self.json())
        } else {
            Err(self.failure())
        }
    }
}

/// The decoded KSM config of a new client (`hostname`, `clientKey`, `serverPublicKeyId`,
/// `serverPublicKey`), checked for the exact key set and encodings.
pub fn decode_config(config_b64: &str) -> Value {
    let json: Value = serde_json::from_slice(&std_b64(config_b64)).expect("config is JSON");
    let mut keys: Vec<&str> = json
        .as_object()
        .expect("config is an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "clientKey",
            "hostname",
            "serverPublicKey",
            "serverPublicKeyId"
        ]
    );
    json
}

impl Ksm {
    /// A device from a `client add` config.
    pub fn from_config(config_b64: &str, cert_path: &Path) -> Ksm {
        let config = decode_config(config_b64);
        let text = |k: &str| {
            config[k]
                .as_str()
                .expect("config values are strings")
                .to_owned()
        };
        let client_key = SymmetricKey::from_slice(&url_b64(&text("clientKey"))).expect("32 bytes");
        let server_key =
            PublicKey::from_bytes(&url_b64(&text("serverPublicKey"))).expect("server key");
        Ksm {
            base: format!("https://{}", text("hostname")),
            server_key,
            key_id: text("serverPublicKeyId"),
            client_id: coffer_crypto::derive_client_id(client_key.expose()),
            client_key,
            device: KeyPair::generate(),
            app_key: None,
            owner_public_key: None,
            client_version: CLIENT_VERSION.to_owned(),
            http: https_client(cert_path, None),
            cert_path: cert_path.to_path_buf(),
        }
    }

    /// Sends from another local address from now on (e.g. `127.0.0.2`).
    pub fn use_source_address(&mut self, ip: IpAddr) {
        self.http = https_client(&self.cert_path, Some(ip));
    }

    /// Another device holding the same token (a second key pair, never bound).
    pub fn sibling(&self) -> Ksm {
        Ksm {
            base: self.base.clone(),
            server_key: self.server_key.clone(),
            key_id: self.key_id.clone(),
            client_key: self.client_key.clone(),
            client_id: self.client_id.clone(),
            device: KeyPair::generate(),
            app_key: None,
            owner_public_key: None,
            client_version: self.client_version.clone(),
            http: https_client(&self.cert_path, None),
            cert_path: self.cert_path.clone(),
        }
    }

    /// B64 of the device public key (as `publicKey` is sent).
    pub fn public_key_b64(&self) -> String {
        encode_std(self.device.public_key().as_bytes())
    }

    /// The app key (panics before binding).
    pub fn app_key(&self) -> &SymmetricKey {
        self.app_key.as_ref().expect("the device is bound")
    }

    /// The base payload (`clientVersion`, `clientId`, and `publicKey` while unbound) with the
    /// fields of `extra` added or replaced.
    pub fn payload(&self, extra: Value) -> Value {
        let mut payload = json!({
            "clientVersion": self.client_version,
            "clientId": self.client_id,
        });
        if self.app_key.is_none() {
            payload["publicKey"] = json!(self.public_key_b64());
        }
        if let Value::Object(fields) = extra {
            for (k, v) in fields {
                payload[k] = v;
            }
        }
        payload
    }

    /// Encrypts and signs a JSON payload for `endpoint`.
    pub fn prepare(&self, endpoint: &str, payload: &Value) -> Prepared {
        self.prepare_bytes(
            endpoint,
            &serde_json::to_vec(payload).expect("payload serialises"),
        )
    }

    /// Encrypts and signs raw payload bytes for `endpoint`.
    pub fn prepare_bytes(&self, endpoint: &str, payload: &[u8]) -> Prepared {
        let transmission_key = SymmetricKey::generate();
        let etk = self.server_key.ecies_seal(transmission_key.expose());
        assert_eq!(etk.len(), 125);
        let body = gcm_seal(&transmission_key, payload);
        let mut prepared = Prepared {
            endpoint: endpoint.to_owned(),
            transmission_key,
            headers: vec![
                ("Content-Type".into(), "application/octet-stream".into()),
                ("PublicKeyId".into(), self.key_id.clone()),
                ("TransmissionKey".into(), encode_std(&etk)),
            ],
            etk,
            body,
        };
        prepared.sign_with(&self.device);
        prepared
    }

    /// The URL a prepared request goes to.
    pub fn url(&self, endpoint: &str) -> String {
        if endpoint.starts_with('/') {
            format!("{}{endpoint}", self.base)
        } else {
            format!("{}/api/rest/sm/v1/{endpoint}", self.base)
        }
    }

    /// Sends a prepared request.
    pub async fn send(&self, prepared: &Prepared) -> Reply {
        let mut request = self
            .http
            .post(self.url(&prepared.endpoint))
            .body(prepared.body.clone());
        for (name, value) in &prepared.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request
            .send()
            .await
            .expect("the request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("read the answer").to_vec();
        Reply {
            status,
            headers,
            body,
            transmission_key: prepared.transmission_key.clone(),
        }
    }

    /// Learns the app key and owner key from a binding answer.
    pub fn absorb(&mut self, answer: &Value) {
        let Some(wrapped) = answer.get("encryptedAppKey").and_then(Value::as_str) else {
            return;
        };
        let app_key = gcm_key(&self.client_key, wrapped);
        if let Some(existing) = &self.app_key {
            assert_eq!(
                existing, &app_key,
                "a repeated binding returns the same app key"
            );
        }
        self.app_key = Some(app_key);
        let owner = answer["appOwnerPublicKey"]
            .as_str()
            .expect("a binding answer carries appOwnerPublicKey");
        self.owner_public_key = Some(std_b64(owner));
    }

    /// Calls an endpoint with the base payload plus `extra`; learns keys from a binding answer.
    pub async fn call(&mut self, endpoint: &str, extra: Value) -> Result<Value, Failure> {
        let prepared = self.prepare(endpoint, &self.payload(extra));
        let answer = self.send(&prepared).await.result()?;
        self.absorb(&answer);
        Ok(answer)
    }

    /// `get_secret` with extra payload fields.
    pub async fn get_secret(&mut self, extra: Value) -> Result<Value, Failure> {
        self.call("get_secret", extra).await
    }

    /// `get_folders`.
    pub async fn get_folders(&mut self) -> Result<Value, Failure> {
        self.call("get_folders", json!({})).await
    }

    /// Binds the device with an unfiltered `get_secret`; returns the binding answer.
    pub async fn bind(&mut self) -> Value {
        assert!(self.app_key.is_none(), "already bound");
        let answer = self.get_secret(json!({})).await.expect("binding succeeds");
        assert!(
            self.app_key.is_some(),
            "the binding answer has encryptedAppKey"
        );
        answer
    }
}

// ---- raw HTTP/1.1 over TLS --------------------------------------------------------------------

/// An answer read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header (name, value) pairs as received.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A TLS connection to the test server, verifying its certificate.
pub async fn tls_connect(ep: &Endpoint) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(&ep.cert_path).expect("read cert") {
        roots.add(cert.expect("PEM cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(ep.addr)
        .await
        .expect("TCP connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// Serialises an HTTP/1.1 request with headers exactly as given (names keep their case).
pub fn raw_request(method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Reads one response from a stream; `leftover` carries bytes read past it.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    leftover: &mut Vec<u8>,
) -> RawResponse {
    let mut buf = std::mem::take(leftover);
    let header_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read the response");
        assert!(n > 0, "connection closed before the response headers");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..header_end].to_vec()).expect("ASCII headers");
    let mut rest = buf[header_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    async fn fill<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>, n: usize) {
        while buf.len() < n {
            let mut chunk = [0u8; 8192];
            let got = stream.read(&mut chunk).await.expect("read the body");
            assert!(got > 0, "connection closed inside the body");
            buf.extend_from_slice(&chunk[..got]);
        }
    }
    let body = if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().expect("numeric content-length");
        fill(stream, &mut rest, len).await;
        *leftover = rest.split_off(len);
        rest
    } else if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = find(&rest, b"\r\n") {
                    break pos;
                }
                let want = rest.len() + 1;
                fill(stream, &mut rest, want).await;
            };
            let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            fill(stream, &mut rest, line_end + 2 + size + 2).await;
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
        *leftover = rest;
        body
    } else {
        let _ = stream.read_to_end(&mut rest).await;
        rest
    };
    RawResponse { body, ..response }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends requests one after the other on ONE TLS connection and reads each answer.
pub async fn raw_exchange(ep: &Endpoint, requests: &[Vec<u8>]) -> Vec<RawResponse> {
    let mut stream = tls_connect(ep).await;
    let mut leftover = Vec::new();
    let mut out = Vec::new();
    for request in requests {
        stream.write_all(request).await.expect("write the request");
        stream.flush().await.expect("flush");
        out.push(read_response(&mut stream, &mut leftover).await);
    }
    out
}

/// Every record of a `get_secret` answer: the directly shared ones, then those of each folder.
pub fn all_records(answer: &Value) -> Vec<&Value> {
    let mut out: Vec<&Value> = answer["records"]
        .as_array()
        .expect("records")
        .iter()
        .collect();
    for folder in answer["folders"].as_array().expect("folders") {
        out.extend(folder["records"].as_array().expect("records"));
    }
    out
}
