//! Shared setup of the SDK's integration tests: a real Coffer server on 127.0.0.1 with a
//! temporary data dir, provisioned through the owner library.

#![allow(dead_code)]

use std::path::PathBuf;

use coffer_owner::{NewClient, NewClientOptions, OwnerClient, ServerTrust, Session};
use coffer_proto::record::{Field, RecordData};
use coffer_sdk::{MemoryStorage, SecretsManager, SecretsManagerBuilder, Tls};
use serde_json::{Value, json};

/// A running server plus an owner session.
pub struct TestServer {
    pub server: Option<coffer_server::RunningServer>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub base: String,
    pub ca: PathBuf,
    pub session: Session,
}

/// Starts a server on 127.0.0.1:0 and registers an owner.
pub async fn start() -> TestServer {
    start_with_public_host(None).await
}

/// Starts a server whose download links name `public_host` (default: its own address), and
/// registers an owner.
pub async fn start_with_public_host(public_host: Option<String>) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut config = coffer_server::ServerConfig::new(dir.path().to_path_buf());
    config.listen = listener.local_addr().expect("addr");
    config.public_host = public_host.unwrap_or_else(|| format!("127.0.0.1:{port}"));
    let server = coffer_server::start(config, Some(listener))
        .await
        .expect("server starts");
    let base = format!("https://127.0.0.1:{port}");
    let ca = dir.path().join("tls").join("cert.pem");
    let code = server.setup_code.clone().expect("setup code");
    let client = OwnerClient::new(&base, &ServerTrust::ExtraCa(ca.clone())).expect("owner client");
    let session = Session::register(client, "owner@example.com", "correct horse battery", &code)
        .await
        .expect("register");
    TestServer {
        server: Some(server),
        dir,
        port,
        base,
        ca,
        session,
    }
}

impl TestServer {
    /// Stops the server (for offline-cache tests).
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("shutdown");
        }
    }

    /// A new app sharing the given folders/records; returns its UID.
    pub async fn app(&self, name: &str, shares: &[(&str, bool)]) -> String {
        let app = self.session.create_app(name).await.expect("app");
        for (target, editable) in shares {
            self.session
                .share(&app, target, *editable)
                .await
                .expect("share");
        }
        app
    }

    /// A new client device (one-time token + base64 config) of `app`.
    pub async fn client(&self, app: &str) -> NewClient {
        self.session
            .add_client(
                app,
                &NewClientOptions {
                    name: Some("sdk test".into()),
                    first_access_expires: None,
                    unlock_ip: false,
                },
            )
            .await
            .expect("client")
    }

    /// A builder trusting this server's certificate, not reading the environment.
    pub fn builder(&self) -> SecretsManagerBuilder {
        SecretsManager::builder()
            .tls(Tls::ExtraCaFile(self.ca.clone()))
            .use_env(false)
    }

    /// An SDK client from a client's base64 configuration, in memory.
    pub fn sdk(&self, client: &NewClient) -> SecretsManager {
        self.builder()
            .storage(MemoryStorage::from_text(&client.config).expect("config"))
            .build()
            .expect("sdk")
    }

    /// A fresh app sharing `shares` and an SDK client for it.
    pub async fn sdk_for(&self, shares: &[(&str, bool)]) -> SecretsManager {
        let app = self.app("test app", shares).await;
        let client = self.client(&app).await;
        self.sdk(&client)
    }
}

/// Record JSON from a `json!` value.
pub fn record(value: Value) -> RecordData {
    serde_json::from_value(value).expect("record json")
}

/// The UIDs of the fixture of PROTOCOL.md §7.6, as created on the server.
pub struct Fixture {
    pub folder: String,
    pub subfolder: String,
    pub private_folder: String,
    pub web_login: String,
    pub file_uid: String,
    pub db: String,
    pub duplicates: [String; 2],
    pub card_holder: String,
    pub address: String,
    pub direct: String,
}

/// Creates the sample data of PROTOCOL.md §7.6 (with server-chosen UIDs): a shared folder
/// with a sub-folder, a directly shared record, and a folder that is not shared.
pub async fn fixture(server: &TestServer) -> Fixture {
    let s = &server.session;
    let folder = s.create_folder("Shared", None).await.expect("folder");
    let subfolder = s
        .create_folder("Databases", Some(&folder))
        .await
        .expect("sub");
    let private_folder = s.create_folder("Private", None).await.expect("private");
    let web = record(json!({
        "title": "Web Login", "type": "login",
        "fields": [
            {"type": "login", "value": ["alice@example.com"]},
            {"type": "password", "value": ["S3cr3t!pass"]},
            {"type": "url", "value": ["https://a.example.com", "https://b.example.com"]},
            {"type": "fileRef", "value": []},
            {"type": "oneTimeCode", "value": ["otpauth://totp/Example:alice@example.com?secret=JBSWY3DPEHPK3PXP&issuer=Example"]}
        ],
        "custom": [
            {"type": "text", "label": "Environment", "value": ["prod"]},
            {"type": "name", "label": "Owner", "value": [{"first": "Jane", "middle": "Q", "last": "Doe"}]},
            {"type": "phone", "label": "Phones", "value": [
                {"region": "US", "number": "555-0100", "ext": "1", "type": "Work"},
                {"number": "555-0199", "type": "Mobile"}]},
            {"type": "text", "label": "Path/With [Brackets]", "value": ["escaped-label-value"]}
        ],
        "notes": "Line1\nLine2"
    }));
    let web_login = s.add_record(&folder, &web).await.expect("web login");
    let file_uid = s
        .attach_file(&web_login, "hello.txt", "text/plain", b"Hello, Keeper!")
        .await
        .expect("attach");
    let db = record(json!({
        "title": "DB/Primary [eu]", "type": "databaseCredentials",
        "fields": [
            {"type": "text", "label": "type", "value": ["postgresql"]},
            {"type": "host", "value": [{"hostName": "db.internal", "port": "5432"}]},
            {"type": "login", "value": ["dbadmin"]},
            {"type": "password", "value": ["pg-pass"]}
        ],
        "custom": []
    }));
    let db = s.add_record(&subfolder, &db).await.expect("db");
    let dup = |n: u32| {
        record(json!({"title": "Duplicate", "type": "login",
            "fields": [{"type": "login", "value": [format!("dup{n}")]}], "custom": []}))
    };
    let d1 = s.add_record(&folder, &dup(1)).await.expect("dup1");
    let d2 = s.add_record(&folder, &dup(2)).await.expect("dup2");
    let address = record(json!({
        "title": "Home Address", "type": "address",
        "fields": [{"type": "address", "value": [{"street1": "1 Main St", "city": "Springfield",
            "state": "IL", "zip": "62701", "country": "US"}]}],
        "custom": []
    }));
    let address = s.add_record(&folder, &address).await.expect("address");
    let card = RecordData {
        title: "Contact Card".into(),
        record_type: "contact".into(),
        fields: vec![
            Field::new("name", vec![json!({"first": "John", "last": "Smith"})]),
            Field::new("addressRef", vec![json!(address)]),
        ],
        ..Default::default()
    };
    let card_holder = s.add_record(&folder, &card).await.expect("card");
    let direct = record(json!({
        "title": "Direct Secret", "type": "login",
        "fields": [{"type": "password", "value": ["direct-pass"]}], "custom": []
    }));
    let direct = s
        .add_record(&private_folder, &direct)
        .await
        .expect("direct");
    Fixture {
        folder,
        subfolder,
        private_folder,
        web_login,
        file_uid,
        db,
        duplicates: [d1, d2],
        card_holder,
        address,
        direct,
    }
}

/// Whether the server implements the KSM write endpoints yet.
pub async fn server_writes(sm: &SecretsManager) -> bool {
    match sm
        .complete_transaction("AAAAAAAAAAAAAAAAAAAAAA", false)
        .await
    {
        Err(coffer_sdk::SdkError::Server { message, .. }) => {
            !message.contains("not available on this server yet")
        }
        _ => true,
    }
}
