//! End to end through the real `coffer` binary: a vault made on a SQLite server, moved to
//! PostgreSQL with `coffer admin migrate`, then served from PostgreSQL with the same data dir
//! (server key, TLS certificate, attachment files) and read back identical.
//!
//! Needs a PostgreSQL server: `COFFER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); the test creates a database of its own there and
//! drops it at the end. Without a reachable server the test fails, unless
//! `COFFER_SKIP_POSTGRES=1`.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sqlx::{Connection, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_coffer");
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const EMAIL: &str = "owner@example.com";
const PASSWORD: &str = "correct horse battery staple";

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// `coffer …` with none of the caller's `COFFER_*` settings (they would change what the
/// commands do), logging quietly.
fn coffer() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("COFFER_") {
            command.env_remove(&name);
        }
    }
    command.env("COFFER_LOG", "warn").stdin(Stdio::null());
    command
}

// ---- PostgreSQL ----------------------------------------------------------------------------

fn postgres_url() -> String {
    std::env::var("COFFER_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned())
}

/// `url` naming database `name` instead (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (server, _) = base.rsplit_once('/').expect("a URL with a database");
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// A database of this test's own, dropped when this goes away (also when the test fails).
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    /// Creates it; `None` when PostgreSQL is unreachable and `COFFER_SKIP_POSTGRES=1`.
    fn create() -> Option<Database> {
        let admin_url = postgres_url();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("coffer_migrate_{}_{nanos}", std::process::id());
        let created = block_on(async {
            let mut conn = PgConnection::connect(&admin_url).await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await?;
            conn.close().await
        });
        match created {
            Ok(()) => Some(Database {
                url: with_database(&admin_url, &name),
                admin_url,
                name,
            }),
            Err(e) if std::env::var("COFFER_SKIP_POSTGRES").is_ok_and(|v| v == "1") => {
                eprintln!(
                    "skipping: cannot create a database on PostgreSQL \
                     (COFFER_TEST_POSTGRES_URL): {e}; COFFER_SKIP_POSTGRES=1"
                );
                None
            }
            Err(e) => panic!(
                "cannot create a database on PostgreSQL: {e}\nThis test moves a vault to \
                 PostgreSQL and needs a server: start one, point COFFER_TEST_POSTGRES_URL at it \
                 (default {DEFAULT_POSTGRES_URL}), or set COFFER_SKIP_POSTGRES=1 to skip it."
            ),
        }
    }

    /// One number from the database, e.g. a row count.
    fn count(&self, sql: &str) -> i64 {
        block_on(async {
            let mut conn = PgConnection::connect(&self.url).await.expect("connect");
            let n = sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .expect("query");
            conn.close().await.expect("close");
            n
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run while a runtime is unwinding: use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            block_on(async {
                let mut conn = PgConnection::connect(&admin_url).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

// ---- the server ----------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A `coffer server` process, killed if the test ends without stopping it.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(data: &Path, port: u16, database_url: Option<&str>, log: PathBuf) -> Server {
        let address = format!("127.0.0.1:{port}");
        let mut command = coffer();
        command
            .env("COFFER_LOG", "info")
            .arg("server")
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", &address, "--public-host", &address]);
        if let Some(url) = database_url {
            command.args(["--database-url", url, "--db-max-connections", "4"]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start coffer server");
        let mut server = Server { child, log };
        server.wait_until_listening(&address);
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_until_listening(&mut self, address: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("server status") {
                panic!(
                    "the server exited ({status}) before listening:\n{}",
                    self.log()
                );
            }
            // It prints this once everything is ready.
            if self.log().contains("listening on") && TcpStream::connect(address).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and waits for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().expect("server status") {
                assert!(
                    status.success(),
                    "the server stopped with {status}:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---- the owner tools -----------------------------------------------------------------------

/// Runs `coffer vault …` commands as the test's owner.
struct Owner {
    home: PathBuf,
    ca_cert: PathBuf,
    server: String,
}

impl Owner {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = coffer();
        command
            .env("COFFER_HOME", &self.home)
            .env("COFFER_PASSWORD", PASSWORD)
            .env("COFFER_CA_CERT", &self.ca_cert)
            .arg("vault")
            .args(args)
            .arg("--json");
        command
    }

    /// The command's JSON output; fails the test if it fails.
    fn vault(&self, args: &[&str]) -> Value {
        let out = self.command(args).output().expect("run coffer vault");
        assert!(
            out.status.success(),
            "coffer vault {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "coffer vault {args:?} printed no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn uid(&self, args: &[&str]) -> String {
        self.vault(args)["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("no uid from {args:?}"))
            .to_owned()
    }
}

/// Everything the owner can read back, to compare before and after the move.
fn read_back(owner: &Owner, records: &[&str], app: &str, out: &Path) -> Vec<Value> {
    let mut seen = vec![
        owner.vault(&["folder", "list"]),
        owner.vault(&["record", "list"]),
        owner.vault(&["app", "list"]),
        owner.vault(&["client", "list", app]),
    ];
    for uid in records {
        seen.push(owner.vault(&["record", "get", uid]));
        seen.push(owner.vault(&["record", "history", uid]));
    }
    let _ = std::fs::remove_file(out);
    let record = records.first().expect("a record");
    let args = [
        "file",
        "download",
        record,
        "report.bin",
        "-o",
        out.to_str().expect("path"),
    ];
    let download = owner.vault(&args);
    assert_eq!(download["path"].as_str(), out.to_str());
    // The decrypted file is private, and an existing one is kept unless --force.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out)
        .expect("downloaded")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let content = std::fs::read(out).expect("downloaded");
    std::fs::write(out, b"keep me").expect("overwrite");
    let refused = owner.command(&args).output().expect("run coffer vault");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read(out).expect("kept"), b"keep me");
    let mut forced = args.to_vec();
    forced.push("--force");
    owner.vault(&forced);
    assert_eq!(std::fs::read(out).expect("replaced"), content);
    seen
}

// ---- migrate -------------------------------------------------------------------------------

fn migrate(from: &str, to: &str, json: bool) -> Output {
    let mut command = coffer();
    command.args(["admin", "migrate", "--from", from, "--to", to]);
    if json {
        command.arg("--json");
    }
    command.output().expect("run coffer admin migrate")
}

/// `--json` output of a successful migration: table name → (rows, sha256).
fn migrated(out: &Output) -> Vec<(String, u64, String)> {
    assert!(
        out.status.success(),
        "migrate failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("migrate --json output");
    assert_eq!(report["verified"], Value::Bool(true), "{report}");
    let tables = report["tables"].as_object().expect("tables");
    tables
        .iter()
        .map(|(name, t)| {
            let sha = t["sha256"].as_str().expect("sha256").to_owned();
            assert_eq!(sha.len(), 64, "{name}: {sha}");
            (name.clone(), t["rows"].as_u64().expect("rows"), sha)
        })
        .collect()
}

fn rows(tables: &[(String, u64, String)], name: &str) -> u64 {
    tables
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no table {name} in {tables:?}"))
        .1
}

#[test]
fn a_sqlite_vault_moves_to_postgres_and_is_served_from_there() {
    // Checked first: no point in making a vault if the target cannot exist.
    let Some(database) = Database::create() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let owner = Owner {
        home: dir.path().join("home"),
        ca_cert: data.join("tls").join("cert.pem"),
        server: format!("https://127.0.0.1:{port}"),
    };

    // ---- a vault on SQLite ----
    let sqlite_server = Server::start(&data, port, None, dir.path().join("sqlite.log"));
    let setup_code = std::fs::read_to_string(data.join("setup-code")).expect("setup code");
    owner.vault(&[
        "register",
        "--server",
        &owner.server,
        "--email",
        EMAIL,
        "--setup-code",
        setup_code.trim(),
    ]);
    let production = owner.uid(&["folder", "create", "Production"]);
    let databases = owner.uid(&["folder", "create", "Databases", "--parent", &production]);
    let personal = owner.uid(&["folder", "create", "Personal"]);
    let prod_db = owner.uid(&[
        "record",
        "add",
        "--folder",
        &production,
        "--type",
        "login",
        "--title",
        "Prod DB",
        "--field",
        "login=admin",
        "--field",
        "password=s3cret",
        "--field",
        "url=https://db.example.com",
    ]);
    let replica = owner.uid(&[
        "record",
        "add",
        "--folder",
        &databases,
        "--type",
        "login",
        "--title",
        "Replica",
        "--field",
        "login=reader",
        "--custom",
        "Environment=prod",
        "--notes",
        "read only",
    ]);
    let bank = owner.uid(&[
        "record",
        "add",
        "--folder",
        &personal,
        "--type",
        "login",
        "--title",
        "Bank",
        "--field",
        "password=1234",
    ]);
    owner.vault(&["record", "edit", &prod_db, "--field", "password=n3w-s3cret"]);
    // Binary content with every byte value, bigger than one read buffer.
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let original = dir.path().join("report.bin");
    std::fs::write(&original, &content).expect("write attachment");
    owner.vault(&["file", "attach", &prod_db, original.to_str().expect("path")]);
    let app = owner.uid(&["app", "create", "CI"]);
    owner.vault(&["app", "share", &app, &production]);
    owner.vault(&["app", "share", &app, &bank, "--editable"]);
    let client = owner.vault(&["client", "add", &app, "--name", "runner"]);
    assert!(client["config"].as_str().is_some_and(|c| !c.is_empty()));
    let records = [prod_db.as_str(), replica.as_str(), bank.as_str()];
    let before = read_back(&owner, &records, &app, &dir.path().join("before.bin"));
    assert_eq!(
        std::fs::read(dir.path().join("before.bin")).expect("download"),
        content
    );
    sqlite_server.stop();

    // ---- the move ----
    let sqlite_url = format!("sqlite://{}", data.join("coffer.db").display());
    let started = Instant::now();
    let out = migrate(&sqlite_url, &database.url, true);
    let took = started.elapsed();
    let tables = migrated(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("copy DATA_DIR/files to the new --files-dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total: u64 = tables.iter().map(|(_, n, _)| n).sum();
    eprintln!(
        "migrated {total} rows from SQLite to PostgreSQL in {} ms",
        took.as_millis()
    );
    for (table, expected) in [
        ("owners", 1),
        ("folders", 3),
        ("records", 3),
        ("record_history", 5),
        ("files", 1),
        ("apps", 1),
        ("shares", 2),
        ("devices", 1),
        ("record_transactions", 0),
    ] {
        assert_eq!(rows(&tables, table), expected, "{table}");
    }
    assert!(rows(&tables, "settings") >= 1);
    assert!(rows(&tables, "audit_events") >= 10);
    assert_eq!(
        database.count("SELECT count(*) FROM records"),
        3,
        "the rows are in PostgreSQL"
    );

    // The same source copied into a SQLite file gives the very same checksums.
    let copy_url = format!("sqlite://{}", dir.path().join("copy.db").display());
    assert_eq!(migrated(&migrate(&sqlite_url, &copy_url, true)), tables);
    // Text output: the table, the verdict and what to do about files.
    let text_url = format!("sqlite://{}", dir.path().join("text.db").display());
    let out = migrate(&sqlite_url, &text_url, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for needle in [
        "records",
        &tables[0].2,
        "Verified",
        "copy DATA_DIR/files to the new --files-dir (or point --files-dir at the same directory)",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }

    // Refusals, each leaving the target as it was.
    let again = migrate(&sqlite_url, &database.url, true);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "a second copy was accepted");
    assert!(stderr.contains("not empty"), "{stderr}");
    let missing = format!("sqlite://{}", dir.path().join("missing.db").display());
    let out = migrate(&missing, &copy_url, true);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(
        !dir.path().join("missing.db").exists(),
        "the source was made"
    );
    let out = migrate(&sqlite_url, "mysql://localhost/coffer", true);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unsupported database URL"));
    assert_eq!(database.count("SELECT count(*) FROM records"), 3);

    // ---- served from PostgreSQL, same data dir (server key, TLS, files) ----
    let pg_server = Server::start(
        &data,
        port,
        Some(&database.url),
        dir.path().join("postgres.log"),
    );
    assert!(
        !data.join("setup-code").exists(),
        "the migrated server asked for a new first owner"
    );
    // Sessions stay behind: the owner logs in again, with the same password.
    owner.vault(&["login", "--server", &owner.server, "--email", EMAIL]);
    assert_eq!(database.count("SELECT count(*) FROM sessions"), 1);
    let after = read_back(&owner, &records, &app, &dir.path().join("after.bin"));
    assert_eq!(after, before);
    assert_eq!(
        std::fs::read(dir.path().join("after.bin")).expect("download"),
        content
    );
    // The server appended audit events (login, reads) after the migrated ones: the identity
    // went on past the imported ids instead of colliding with them.
    let migrated_audit = i64::try_from(rows(&tables, "audit_events")).expect("count");
    assert!(database.count("SELECT count(*) FROM audit_events") > migrated_audit);
    let mut log = String::new();
    std::fs::File::open(dir.path().join("postgres.log"))
        .and_then(|mut f| f.read_to_string(&mut log))
        .expect("server log");
    assert!(!log.contains("ERROR"), "{log}");
    pg_server.stop();

    // With the server gone, logout still forgets the local session (and says the server could
    // not be told); a second logout finds nothing to forget.
    assert!(owner.home.join("owner-session.json").exists());
    let out = owner
        .command(&["logout"])
        .output()
        .expect("run coffer vault");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("could not be ended on the server"),
        "{stderr}"
    );
    assert!(!owner.home.join("owner-session.json").exists());
    let again = owner
        .command(&["logout"])
        .output()
        .expect("run coffer vault");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not logged in"));
}

/// SIGTERM stops the server even when nobody reads its log any more (stderr a closed pipe):
/// stopping must not depend on logging that it stops.
#[test]
fn the_server_stops_on_sigterm_with_its_stderr_closed() {
    use std::io::BufRead;
    let data = tempfile::tempdir().expect("data dir");
    let address = format!("127.0.0.1:{}", free_port());
    let mut child = coffer()
        .env("COFFER_LOG", "info")
        .arg("server")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--listen", &address])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coffer server");
    let mut log = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        let read = log.read_line(&mut line).expect("read the log");
        assert!(read > 0, "the server exited before listening");
    }
    drop(log);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = child.try_wait().expect("server status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not stop on SIGTERM with its stderr closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// The key commands write 0600 files and leave the directory they write into as it was (it may
/// be shared); a second `gen-server-key` refuses and keeps the first key.
#[test]
fn server_key_commands_keep_the_directory_and_the_first_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let key = shared.join("server-key.json");
    let run = |args: &[&str]| {
        coffer()
            .arg("admin")
            .args(args)
            .arg(&key)
            .output()
            .expect("run coffer admin")
    };
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
    let made = run(&["gen-server-key", "--json", "-o"]);
    assert!(made.status.success());
    let made: Value = serde_json::from_slice(&made.stdout).expect("one JSON object");
    assert_eq!(made["path"], key.to_str().expect("utf-8 path"));
    let first_id = made["key_id"].as_u64().expect("key id");
    let first_public = made["public_key"].as_str().expect("public key").to_owned();
    assert_eq!(
        coffer_crypto::decode_lenient(&first_public)
            .expect("base64")
            .len(),
        65,
        "an uncompressed P-256 point"
    );
    let first = std::fs::read(&key).expect("key");
    assert_eq!((mode(&shared), mode(&key)), (0o1777, 0o600));
    let again = run(&["gen-server-key", "-o"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(&key).expect("key"), first);
    let rotated = run(&["rotate-server-key", "--json"]);
    assert!(rotated.status.success());
    let rotated: Value = serde_json::from_slice(&rotated.stdout).expect("one JSON object");
    let new_id = rotated["key_id"].as_u64().expect("key id");
    assert_ne!(new_id, first_id);
    assert_ne!(rotated["public_key"], first_public.as_str());
    assert_eq!(rotated["key_ids"], serde_json::json!([first_id, new_id]));
    assert_ne!(std::fs::read(&key).expect("key"), first);
    assert_eq!((mode(&shared), mode(&key)), (0o1777, 0o600));
}
