//! Shared setup of the client-command tests: a real Coffer server on 127.0.0.1 (in this
//! process, on a runtime of its own), a provisioned vault, and the real `coffer` binary run
//! with a temporary `COFFER_HOME`.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use coffer_owner::{NewClient, NewClientOptions, OwnerClient, ServerTrust, Session};
use coffer_proto::record::RecordData;
use serde_json::{Value, json};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_coffer");

/// The TOTP seed of the login record.
pub const TOTP_URI: &str =
    "otpauth://totp/Example:alice@example.com?secret=JBSWY3DPEHPK3PXP&issuer=Example";
/// The password of the login record.
pub const PASSWORD: &str = "S3cr3t!pass";

/// A running server with an owner session.
pub struct TestServer {
    pub runtime: tokio::runtime::Runtime,
    pub server: Option<coffer_server::RunningServer>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub ca: PathBuf,
    pub session: Session,
}

/// What [`TestServer::provision`] made.
pub struct Vault {
    pub folder: String,
    pub subfolder: String,
    pub login: String,
    pub db: String,
    pub file_uid: String,
    pub duplicates: [String; 2],
    pub readonly_folder: String,
    pub readonly_record: String,
    /// An app sharing `folder` (editable) and `readonly_folder` (read-only).
    pub app: String,
}

fn record(value: Value) -> RecordData {
    serde_json::from_value(value).expect("record json")
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0 and registers an owner.
    pub fn start() -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let (server, port, session) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let mut config = coffer_server::ServerConfig::new(dir.path().to_path_buf());
            config.listen = addr;
            config.public_host = format!("127.0.0.1:{}", addr.port());
            let server = coffer_server::start(config, Some(listener))
                .await
                .expect("server starts");
            let base = format!("https://127.0.0.1:{}", addr.port());
            let ca = dir.path().join("tls").join("cert.pem");
            let code = server.setup_code.clone().expect("setup code");
            let client = OwnerClient::new(&base, &ServerTrust::ExtraCa(ca)).expect("owner client");
            let session =
                Session::register(client, "owner@example.com", "correct horse battery", &code)
                    .await
                    .expect("register");
            (server, addr.port(), session)
        });
        let ca = dir.path().join("tls").join("cert.pem");
        TestServer {
            runtime,
            server: Some(server),
            dir,
            port,
            ca,
            session,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server (for offline tests).
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown()).expect("shutdown");
        }
    }

    /// Creates folders, records, a file and an application.
    pub fn provision(&self) -> Vault {
        let s = &self.session;
        self.runtime.block_on(async {
            let folder = s.create_folder("Shared", None).await.expect("folder");
            let subfolder = s.create_folder("Databases", Some(&folder)).await.expect("sub");
            let login = s
                .add_record(
                    &folder,
                    &record(json!({
                        "title": "Web Login", "type": "login",
                        "fields": [
                            {"type": "login", "value": ["alice@example.com"]},
                            {"type": "password", "value": [PASSWORD]},
                            {"type": "url", "value": ["https://a.example.com", "https://b.example.com"]},
                            {"type": "fileRef", "value": []},
                            {"type": "oneTimeCode", "value": [TOTP_URI]}
                        ],
                        "custom": [
                            {"type": "text", "label": "Environment", "value": ["prod"]},
                            {"type": "secret", "label": "API key", "value": ["api-key-123"]}
                        ],
                        "notes": "Line1\nLine2"
                    })),
                )
                .await
                .expect("login");
            let file_uid = s
                .attach_file(&login, "hello.txt", "text/plain", b"Hello, Keeper!")
                .await
                .expect("attach");
            let db = s
                .add_record(
                    &subfolder,
                    &record(json!({
                        "title": "Prod DB", "type": "databaseCredentials",
                        "fields": [
                            {"type": "host", "value": [{"hostName": "db.internal", "port": "5432"}]},
                            {"type": "login", "value": ["dbadmin"]},
                            {"type": "password", "value": ["pg-pass"]}
                        ],
                        "custom": []
                    })),
                )
                .await
                .expect("db");
            let dup = |n: u32| {
                record(json!({"title": "Duplicate", "type": "login",
                    "fields": [{"type": "login", "value": [format!("dup{n}")]}], "custom": []}))
            };
            let d1 = s.add_record(&folder, &dup(1)).await.expect("dup1");
            let d2 = s.add_record(&folder, &dup(2)).await.expect("dup2");
            let readonly_folder = s.create_folder("Read only", None).await.expect("ro folder");
            let readonly_record = s
                .add_record(
                    &readonly_folder,
                    &record(json!({"title": "Frozen", "type": "login",
                        "fields": [{"type": "password", "value": ["frozen-pass"]}], "custom": []})),
                )
                .await
                .expect("ro record");
            let app = s.create_app("CLI tests").await.expect("app");
            s.share(&app, &folder, true).await.expect("share");
            s.share(&app, &readonly_folder, false).await.expect("share ro");
            Vault {
                folder,
                subfolder,
                login,
                db,
                file_uid,
                duplicates: [d1, d2],
                readonly_folder,
                readonly_record,
                app,
            }
        })
    }

    /// A new one-time token (and config) for a device of `app`.
    pub fn token(&self, app: &str) -> NewClient {
        self.runtime
            .block_on(self.session.add_client(
                app,
                &NewClientOptions {
                    name: Some("cli test".into()),
                    first_access_expires: None,
                    unlock_ip: true,
                },
            ))
            .expect("client")
    }
}

/// A `COFFER_HOME` of its own and the commands run with it.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("home"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn profiles_file(&self) -> PathBuf {
        self.dir.path().join("profiles.json")
    }

    /// `coffer ARGS…` with none of the caller's COFFER_*/KSM_* settings, in this home, with
    /// no standard input.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(BIN);
        for (name, _) in std::env::vars_os() {
            let n = name.to_string_lossy();
            if n.starts_with("COFFER_") || n.starts_with("KSM_") || n == "NO_COLOR" {
                command.env_remove(&name);
            }
        }
        command
            .env("COFFER_HOME", self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .args(args);
        command
    }

    /// Runs a command to its end.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(args).output().expect("run coffer")
    }
}

/// What a command printed, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts success; returns stdout.
pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "expected success:\n{}",
        describe(&output)
    );
    String::from_utf8(output.stdout).expect("utf-8 stdout")
}

/// Asserts success; parses stdout as JSON.
pub fn json_of(output: Output) -> Value {
    let text = ok(output);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts the exit code; returns stderr.
pub fn fails(output: Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit {code}:\n{}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Binds a fresh token of `app` as profile `name` (trusting the server's certificate).
pub fn init_profile(server: &TestServer, home: &Home, app: &str, name: &str) {
    let token = server.token(app);
    let out = home.run([
        "profile",
        "init",
        &token.token,
        "--hostname",
        &server.host(),
        "--ca-cert",
        server.ca.to_str().expect("utf-8 path"),
        "--profile",
        name,
        "--json",
    ]);
    let answer = json_of(out);
    assert_eq!(answer["profile"], name);
}
