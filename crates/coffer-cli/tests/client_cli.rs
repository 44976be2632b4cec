//! End to end: the real `coffer` binary's client commands (`profile`, `secret`, `folder`,
//! `exec`, `interpolate`, `completion`) against a real Coffer server on 127.0.0.1, with
//! `COFFER_HOME` in a temporary directory. A pseudo-terminal test checks that the table and
//! the progress bar render.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Home, PASSWORD, TOTP_URI, TestServer, describe, fails, init_profile, json_of, ok};
use serde_json::Value;

/// Exit codes (README.md).
const USAGE: i32 = 2;
const NOT_FOUND: i32 = 3;
const REFUSED: i32 = 4;
const UNREACHABLE: i32 = 5;

fn uids(list: &Value) -> Vec<String> {
    list["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["uid"].as_str().expect("uid").to_owned())
        .collect()
}

#[test]
fn profiles_bind_without_burning_tokens_and_are_managed() {
    let server = TestServer::start();
    let vault = server.provision();
    let home = Home::new();
    let host = server.host();
    let ca = server.ca.to_str().expect("path").to_owned();
    let token = server.token(&vault.app);

    // A malformed token: usage error, nothing written.
    let err = fails(
        home.run([
            "profile",
            "init",
            "127.0.0.1:not-a-key",
            "--hostname",
            &host,
        ]),
        USAGE,
    );
    assert!(err.contains("not a one-time token"), "{err}");
    assert!(!home.profiles_file().exists());

    // A bad host name: usage error.
    fails(
        home.run(["profile", "init", &token.token, "--hostname", "bad host"]),
        USAGE,
    );

    // The token's host without the port (443): unreachable, with a hint, and nothing written.
    // (Something else may listen on 443 here: then its certificate is what fails.)
    let err = fails(home.run(["profile", "init", &token.token]), UNREACHABLE);
    assert!(
        err.contains("--hostname HOST:PORT") || err.contains("--ca-cert"),
        "{err}"
    );
    assert!(!home.profiles_file().exists());

    // The server's certificate is not trusted without --ca-cert.
    let err = fails(
        home.run(["profile", "init", &token.token, "--hostname", &host]),
        UNREACHABLE,
    );
    assert!(err.contains("--ca-cert"), "{err}");
    assert!(!home.profiles_file().exists());

    // A wrong server key is caught before the token is spent.
    let wrong_key =
        coffer_crypto::encode_url(&coffer_crypto::KeyPair::generate().public_key().as_bytes()[..]);
    let err = fails(
        home.run([
            "profile",
            "init",
            &token.token,
            "--hostname",
            &host,
            "--ca-cert",
            &ca,
            "--server-public-key",
            &wrong_key,
            "--server-public-key-id",
            "7",
        ]),
        USAGE,
    );
    assert!(
        err.contains("does not accept the server public key"),
        "{err}"
    );
    assert!(!home.profiles_file().exists());

    // The same token still binds: none of the failures spent it.
    let answer = json_of(home.run([
        "profile",
        "init",
        &token.token,
        "--hostname",
        &host,
        "--ca-cert",
        &ca,
        "--json",
    ]));
    assert_eq!(answer["profile"], "default");
    assert_eq!(answer["app"], "CLI tests");
    assert_eq!(answer["active"], true);
    assert_eq!(answer["records"], 5);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.profiles_file())
            .expect("profiles")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let file: Value =
        serde_json::from_slice(&std::fs::read(home.profiles_file()).expect("read")).expect("json");
    assert_eq!(file["active"], "default");
    let config = file["profiles"]["default"].as_object().expect("config");
    let mut keys: Vec<&str> = config.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "appKey",
            "appOwnerPublicKey",
            "clientId",
            "hostname",
            "privateKey",
            "serverPublicKey",
            "serverPublicKeyId"
        ],
        "only KSM keys, all strings, in the KSM config"
    );
    assert!(config.values().all(Value::is_string));
    assert_eq!(config["hostname"], host.as_str());
    assert_eq!(file["settings"]["default"]["caCert"], ca.as_str());

    // The used token is refused by the server: exit 4, and no profile is left behind.
    let err = fails(
        home.run([
            "profile",
            "init",
            &token.token,
            "--hostname",
            &host,
            "--ca-cert",
            &ca,
            "--profile",
            "again",
        ]),
        REFUSED,
    );
    assert!(
        err.contains("already been used") && err.contains("Nothing was saved"),
        "{err}"
    );
    let list = json_of(home.run(["profile", "list", "--json"]));
    assert_eq!(list["profiles"].as_array().expect("list").len(), 1);

    // An existing name is kept unless --force (and the token is not spent).
    let fresh = server.token(&vault.app);
    let err = fails(
        home.run([
            "profile",
            "init",
            &fresh.token,
            "--hostname",
            &host,
            "--ca-cert",
            &ca,
        ]),
        1,
    );
    assert!(err.contains("already exists"), "{err}");

    // Profile commands work with the saved CA (no --ca-cert any more).
    let records = json_of(home.run(["secret", "list", "--json"]));
    assert_eq!(uids(&records).len(), 5);

    // Export: a base64 KSM config that works on its own through KSM_CONFIG.
    let exported = ok(home.run(["profile", "export"])).trim().to_owned();
    let as_json = json_of(home.run(["profile", "export", "--json"]));
    assert_eq!(
        as_json,
        serde_json::json!({ "profile": "default", "config": exported })
    );
    let other = Home::new();
    let out = other
        .cmd(["secret", "list", "--json"])
        .env("KSM_CONFIG", &exported)
        .env("COFFER_CA_CERT", &ca)
        .output()
        .expect("run");
    assert_eq!(uids(&json_of(out)).len(), 5);
    assert!(
        !other.profiles_file().exists(),
        "KSM_CONFIG writes no profile"
    );

    // Import it under another name; switch; --profile overrides the active one.
    let out = home
        .cmd([
            "profile",
            "import",
            "--profile",
            "copy",
            "--ca-cert",
            &ca,
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(exported.as_bytes())?;
            child.wait_with_output()
        })
        .expect("import");
    let imported = json_of(out);
    assert_eq!(imported["profile"], "copy");
    assert_eq!(imported["bound"], true);
    assert_eq!(imported["active"], false, "default stays active");
    assert_eq!(
        json_of(home.run(["profile", "active", "copy", "--json"])),
        serde_json::json!({ "active": "copy" })
    );
    let list = json_of(home.run(["profile", "list", "--json"]));
    assert_eq!(list["active"], "copy");
    assert_eq!(list["profiles"].as_array().expect("list").len(), 2);
    let records = json_of(home.run(["secret", "list", "--json", "--profile", "default"]));
    assert_eq!(uids(&records).len(), 5);
    fails(home.run(["profile", "active", "nope"]), NOT_FOUND);
    fails(home.run(["secret", "list", "--profile", "nope"]), NOT_FOUND);

    // An unbound config (the `config` of `vault client add`) binds on first use and is saved.
    let unbound = server.token(&vault.app);
    ok(home.run([
        "profile",
        "import",
        &unbound.config,
        "--profile",
        "fresh",
        "--ca-cert",
        &ca,
    ]));
    let list = json_of(home.run(["profile", "list", "--json"]));
    let fresh_entry = |list: &Value| {
        list["profiles"]
            .as_array()
            .expect("list")
            .iter()
            .find(|p| p["name"] == "fresh")
            .cloned()
            .expect("fresh")
    };
    assert_eq!(fresh_entry(&list)["bound"], false);
    ok(home.run(["secret", "list", "--profile", "fresh"]));
    let list = json_of(home.run(["profile", "list", "--json"]));
    assert_eq!(fresh_entry(&list)["bound"], true);
    ok(home.run(["secret", "list", "--profile", "fresh"]));

    // A base64 config is accepted by `profile init` too; it binds at once.
    let another = server.token(&vault.app);
    let answer = json_of(home.run([
        "profile",
        "init",
        "--token",
        &another.config,
        "--profile",
        "viaconfig",
        "--ca-cert",
        &ca,
        "--json",
    ]));
    assert_eq!(answer["records"], 5);
    assert_eq!(answer["active"], false);

    // An unbound KSM_CONFIG in the environment (as dev.env sets it): `profile init` binds it,
    // and later commands use that profile for it instead of spending the token again.
    let env_config = server.token(&vault.app).config;
    let from_env = Home::new();
    let answer = json_of(
        from_env
            .cmd(["profile", "init", "--json"])
            .env("KSM_CONFIG", &env_config)
            .env("COFFER_CA_CERT", &ca)
            .output()
            .expect("run"),
    );
    assert_eq!(answer["profile"], "default");
    for _ in 0..2 {
        let out = from_env
            .cmd(["secret", "list", "--json"])
            .env("KSM_CONFIG", &env_config)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(uids(&json_of(out)).len(), 5);
        assert!(!stderr.contains("not bound"), "{stderr}");
    }

    // Delete.
    ok(home.run(["profile", "delete", "copy"]));
    ok(home.run(["profile", "delete", "fresh"]));
    assert_eq!(
        json_of(home.run(["profile", "delete", "viaconfig", "--json"])),
        serde_json::json!({ "deleted": "viaconfig", "active": "default" })
    );
    let list = json_of(home.run(["profile", "list", "--json"]));
    assert_eq!(list["profiles"].as_array().expect("list").len(), 1);
    assert_eq!(
        list["active"], "default",
        "the only profile left becomes active"
    );

    // Without any profile: a message that says what to do.
    let empty = Home::new();
    let err = fails(empty.run(["secret", "list"]), 1);
    assert!(err.contains("coffer profile init"), "{err}");

    // A world-readable profiles file is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(home.profiles_file(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let err = fails(home.run(["secret", "list"]), 1);
        assert!(err.contains("chmod 600"), "{err}");
    }
}

#[test]
fn secrets_are_read_masked_and_selected() {
    let server = TestServer::start();
    let vault = server.provision();
    let home = Home::new();
    init_profile(&server, &home, &vault.app, "default");

    // List: JSON parsed and checked; filters; tab-separated when piped.
    let list = json_of(home.run(["secret", "list", "--json"]));
    let records = list["records"].as_array().expect("records");
    assert_eq!(records.len(), 5);
    let login = records
        .iter()
        .find(|r| r["uid"] == vault.login.as_str())
        .expect("login listed");
    assert_eq!(login["title"], "Web Login");
    assert_eq!(login["type"], "login");
    assert_eq!(login["folder_uid"], vault.folder.as_str());
    assert_eq!(login["files"], 1);
    assert_eq!(login["editable"], true);
    let dup = json_of(home.run(["secret", "list", "--json", "--title", "dup*"]));
    let mut found = uids(&dup);
    found.sort();
    let mut expected = vault.duplicates.to_vec();
    expected.sort();
    assert_eq!(found, expected);
    let sub = json_of(home.run(["secret", "list", "--json", "--folder", &vault.subfolder]));
    assert_eq!(uids(&sub), vec![vault.db.clone()]);
    // A folder with nothing matching is an empty list; a folder that does not exist is 3.
    let none = json_of(home.run([
        "secret",
        "list",
        "--json",
        "--folder",
        &vault.subfolder,
        "--title",
        "no such title",
    ]));
    assert!(uids(&none).is_empty());
    let err = fails(
        home.run(["secret", "list", "--folder", "NoSuchFolderUid0000000"]),
        NOT_FOUND,
    );
    assert!(err.contains("does not exist"), "{err}");
    let plain = ok(home.run(["secret", "list", "--title", "web"]));
    assert_eq!(plain.trim(), format!("{}\tlogin\tWeb Login", vault.login));

    // Get: masked unless --unmask, in text and JSON.
    let out = home.run(["secret", "get", &vault.login]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = ok(out);
    assert!(
        text.contains("Web Login") && text.contains("alice@example.com"),
        "{text}"
    );
    assert!(text.contains("********"), "{text}");
    assert!(
        !text.contains(PASSWORD) && !text.contains("api-key-123") && !text.contains("JBSWY3"),
        "{text}"
    );
    assert!(
        text.contains("https://b.example.com") && text.contains("hello.txt"),
        "{text}"
    );
    assert!(stderr.contains("--unmask"), "{stderr}");
    let text = ok(home.run(["secret", "get", &vault.login, "--unmask"]));
    assert!(
        text.contains(PASSWORD) && text.contains("api-key-123"),
        "{text}"
    );

    let masked = json_of(home.run(["secret", "get", &vault.login, "--json"]));
    assert_eq!(masked["uid"], vault.login.as_str());
    assert_eq!(masked["title"], "Web Login");
    let password = masked["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["type"] == "password")
        .expect("password field");
    assert_eq!(password["value"][0], "********");
    assert!(!masked.to_string().contains(PASSWORD));
    assert_eq!(masked["files"][0]["name"], "hello.txt");
    assert_eq!(masked["files"][0]["uid"], vault.file_uid.as_str());
    let unmasked = json_of(home.run(["secret", "get", &vault.login, "--json", "--unmask"]));
    assert!(unmasked.to_string().contains(PASSWORD));
    let custom = unmasked["custom"].as_array().expect("custom");
    assert!(
        custom
            .iter()
            .any(|f| f["label"] == "API key" && f["value"][0] == "api-key-123")
    );

    // One field.
    assert_eq!(
        ok(home.run(["secret", "get", &vault.login, "--field", "password"])).trim(),
        "********"
    );
    assert_eq!(
        ok(home.run([
            "secret",
            "get",
            &vault.login,
            "--field",
            "password",
            "--unmask"
        ]))
        .trim(),
        PASSWORD
    );
    assert_eq!(
        ok(home.run([
            "secret",
            "get",
            "-u",
            &vault.login,
            "-f",
            "password",
            "--unmask"
        ]))
        .trim(),
        PASSWORD,
        "the official ksm CLI's flags"
    );
    assert_eq!(
        ok(home.run(["secret", "get", &vault.login, "--field", "url"])),
        "https://a.example.com\nhttps://b.example.com\n"
    );
    let values = json_of(home.run([
        "secret",
        "get",
        &vault.login,
        "--custom-field",
        "Environment",
        "--json",
    ]));
    assert_eq!(
        values,
        serde_json::json!({ "uid": vault.login, "values": ["prod"] })
    );
    let host = json_of(home.run(["secret", "get", &vault.db, "--field", "host", "--json"]));
    assert_eq!(host["values"][0]["hostName"], "db.internal");
    // One field of several records: one object, a list per record in the order asked.
    let passwords = json_of(home.run([
        "secret",
        "get",
        &vault.db,
        &vault.login,
        "--field",
        "password",
        "--json",
        "--unmask",
    ]));
    assert_eq!(passwords["records"][0]["uid"], vault.db.as_str());
    assert_eq!(passwords["records"][1]["uid"], vault.login.as_str());
    assert_eq!(
        passwords["records"][1]["values"],
        serde_json::json!([PASSWORD])
    );
    let err = fails(
        home.run(["secret", "get", &vault.login, "--field", "nope"]),
        NOT_FOUND,
    );
    assert!(err.contains("it has:"), "{err}");

    // Several UIDs: one object listing the records in the order asked; by title.
    let both = json_of(home.run(["secret", "get", &vault.login, &vault.db, "--json"]));
    assert_eq!(uids(&both), [vault.login.clone(), vault.db.clone()]);
    let by_title = json_of(home.run(["secret", "get", "--title", "Prod DB", "--json"]));
    assert_eq!(by_title["uid"], vault.db.as_str());
    fails(
        home.run(["secret", "get", "--title", "No such title"]),
        NOT_FOUND,
    );
    let err = fails(home.run(["secret", "get", "--title", "Duplicate"]), 1);
    assert!(err.contains("give a UID"), "{err}");
    fails(
        home.run(["secret", "get", "AAAAAAAAAAAAAAAAAAAAAA"]),
        NOT_FOUND,
    );
    fails(home.run(["secret", "get"]), USAGE);

    // Notation: never masked; files as content; errors with their codes.
    assert_eq!(
        ok(home.run(["secret", "notation", "keeper://Web Login/field/password"])).trim(),
        PASSWORD
    );
    assert_eq!(
        ok(home.run([
            "secret",
            "notation",
            &format!("keeper://{}/field/host[0][hostName]", vault.db)
        ]))
        .trim(),
        "db.internal"
    );
    assert_eq!(
        ok(home.run([
            "secret",
            "notation",
            &format!("keeper://{}/file/hello.txt", vault.login)
        ])),
        "Hello, Keeper!"
    );
    let urls = json_of(home.run([
        "secret",
        "notation",
        "keeper://Web Login/field/url",
        "--json",
    ]));
    assert_eq!(
        urls,
        serde_json::json!({
            "notation": "keeper://Web Login/field/url",
            "values": ["https://a.example.com", "https://b.example.com"],
        })
    );
    let file_notation = format!("keeper://{}/file/hello.txt", vault.login);
    let file = json_of(home.run(["secret", "notation", &file_notation, "--json"]));
    assert_eq!(file["notation"], file_notation.as_str());
    assert_eq!(
        coffer_crypto::decode_lenient(file["content_base64"].as_str().expect("base64"))
            .expect("valid base64"),
        b"Hello, Keeper!"
    );
    fails(home.run(["secret", "notation", "keeper://"]), USAGE);
    fails(
        home.run(["secret", "notation", "keeper://Nobody/field/password"]),
        NOT_FOUND,
    );

    // TOTP: the code the SDK computes for the same seed (either side of a period change).
    let before = coffer_sdk::get_totp_code(TOTP_URI).expect("totp").code;
    let answer = json_of(home.run(["secret", "totp", &vault.login, "--json"]));
    let after = coffer_sdk::get_totp_code(TOTP_URI).expect("totp").code;
    let code = answer["code"].as_str().expect("code");
    assert!(code == before || code == after, "{answer}");
    assert_eq!(answer["period"], 30);
    let left = answer["seconds_left"].as_u64().expect("seconds");
    assert!((1..=30).contains(&left));
    let text = ok(home.run(["secret", "totp", &vault.login]));
    assert!(text.contains("s left)"), "{text}");
    fails(home.run(["secret", "totp", &vault.db]), NOT_FOUND);
    // --watch keeps printing codes until Ctrl-C, then ends cleanly.
    let mut child = home
        .cmd(["secret", "totp", &vault.login, "--watch"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a code").expect("read");
    let (code, rest) = first.split_once("  (").expect("code and time left");
    assert!(
        code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()),
        "{first}"
    );
    assert!(rest.ends_with(" s left)"), "{first}");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("kill");
    assert_eq!(child.wait().expect("wait").code(), Some(0));

    // Passwords: local, length and classes as asked.
    let password = ok(home.run([
        "secret",
        "password",
        "--length",
        "20",
        "--special",
        "0",
        "--digits",
        "4",
    ]));
    let password = password.trim();
    assert_eq!(password.len(), 20);
    assert!(
        password.chars().all(|c| c.is_ascii_alphanumeric()),
        "{password}"
    );
    assert!(
        password.chars().filter(char::is_ascii_digit).count() >= 4,
        "{password}"
    );
    assert_eq!(ok(Home::new().run(["secret", "password"])).trim().len(), 32);
    let json = json_of(Home::new().run(["secret", "password", "--length", "12", "--json"]));
    assert_eq!(json["password"].as_str().map(str::len), Some(12), "{json}");
}

#[test]
fn secrets_files_and_folders_are_written() {
    let server = TestServer::start();
    let vault = server.provision();
    let home = Home::new();
    init_profile(&server, &home, &vault.app, "default");

    // Add with generated password; read it back.
    let uid = ok(home.run([
        "secret",
        "add",
        "--folder",
        &vault.folder,
        "--type",
        "login",
        "--title",
        "CLI made",
        "--field",
        "login=bob",
        "--field",
        "url=https://c.example.com",
        "--generate-password",
        "--custom-field",
        "Team=ops",
        "--notes",
        "from the CLI",
    ]))
    .trim()
    .to_owned();
    let made = json_of(home.run(["secret", "get", &uid, "--json", "--unmask"]));
    assert_eq!(made["title"], "CLI made");
    assert_eq!(made["notes"], "from the CLI");
    let field = |record: &Value, t: &str| {
        record["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .find(|f| f["type"] == t)
            .map(|f| f["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(field(&made, "login")[0], "bob");
    assert_eq!(
        field(&made, "password")[0]
            .as_str()
            .expect("password")
            .len(),
        32
    );
    assert_eq!(made["custom"][0]["label"], "Team");

    // Into a sub-folder, from a JSON file.
    let json_file = home.path().join("record.json");
    std::fs::write(
        &json_file,
        r#"{"title":"From JSON","type":"serverCredentials","fields":[{"type":"host","value":[{"hostName":"s1","port":"22"}]},{"type":"login","value":["root"]}],"custom":[]}"#,
    )
    .expect("write");
    let from_json = json_of(home.run([
        "secret",
        "add",
        "--folder",
        &vault.subfolder,
        "--json-file",
        json_file.to_str().expect("path"),
        "--json",
    ]));
    let from_json = from_json["uid"].as_str().expect("uid").to_owned();
    let listed = json_of(home.run(["secret", "list", "--json", "--folder", &vault.subfolder]));
    assert!(uids(&listed).contains(&from_json));

    // Bad input never reaches the server.
    let err = fails(
        home.run([
            "secret",
            "add",
            "--folder",
            &vault.folder,
            "--type",
            "login",
            "--title",
            "x",
            "--field",
            "pasword=oops",
        ]),
        USAGE,
    );
    assert!(err.contains("not a field type"), "{err}");
    fails(
        home.run([
            "secret",
            "add",
            "--folder",
            "AAAAAAAAAAAAAAAAAAAAAA",
            "--type",
            "login",
            "--title",
            "x",
        ]),
        NOT_FOUND,
    );

    // Update.
    let answer = json_of(home.run([
        "secret",
        "update",
        &uid,
        "--field",
        "password=n3w-pass",
        "--title",
        "CLI changed",
        "--custom-field",
        "Team=dev",
        "--notes",
        "changed",
        "--json",
    ]));
    assert_eq!(answer["uid"], uid.as_str());
    let changed = json_of(home.run(["secret", "get", &uid, "--json", "--unmask"]));
    assert_eq!(changed["title"], "CLI changed");
    assert_eq!(changed["notes"], "changed");
    assert_eq!(field(&changed, "password")[0], "n3w-pass");
    assert_eq!(field(&changed, "url")[0], "https://c.example.com");
    assert_eq!(changed["custom"][0]["value"][0], "dev");
    assert!(changed["revision"].as_i64() > made["revision"].as_i64());
    ok(home.run(["secret", "update", &uid, "--generate-password"]));
    let regenerated = json_of(home.run(["secret", "get", &uid, "--json", "--unmask"]));
    assert_ne!(field(&regenerated, "password")[0], "n3w-pass");
    fails(home.run(["secret", "update", &uid]), USAGE);
    let err = fails(
        home.run(["secret", "update", &vault.readonly_record, "--title", "x"]),
        REFUSED,
    );
    assert!(err.contains("read-only"), "{err}");

    // Files: upload, download (to a file, refusing to overwrite, to stdout, by UID), remove.
    std::fs::create_dir(home.path().join("in")).expect("mkdir");
    let source = home.path().join("in").join("report.txt");
    std::fs::write(&source, b"quarterly numbers\n").expect("write");
    let file_uid = ok(home.run(["secret", "upload", &uid, source.to_str().expect("path")]))
        .trim()
        .to_owned();
    let target = home.path().join("copy.txt");
    let target_s = target.to_str().expect("path");
    ok(home.run([
        "secret",
        "download",
        &uid,
        "--name",
        "report.txt",
        "-o",
        target_s,
    ]));
    assert_eq!(
        std::fs::read(&target).expect("read"),
        b"quarterly numbers\n"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let err = fails(
        home.run([
            "secret",
            "download",
            &uid,
            "--name",
            "report.txt",
            "-o",
            target_s,
        ]),
        1,
    );
    assert!(err.contains("--force"), "{err}");
    let by_file_uid = |extra: &[&str]| {
        let mut args = vec!["secret", "download", &uid, "--file-uid", &file_uid];
        args.extend_from_slice(extra);
        home.run(args)
    };
    let written = json_of(by_file_uid(&["-o", target_s, "--force", "--json"]));
    assert_eq!(
        written,
        serde_json::json!({
            "uid": uid, "file_uid": file_uid, "name": "report.txt",
            "path": target_s, "size": 18,
        })
    );
    // --json cannot share standard output with the content.
    fails(by_file_uid(&["-o", "-", "--json"]), USAGE);
    assert_eq!(ok(by_file_uid(&["-o", "-"])), "quarterly numbers\n");
    // Default name: the attachment's, in the working directory.
    ok(home.run(["secret", "download", &uid, "--name", "report.txt"]));
    assert!(home.path().join("report.txt").exists());
    fails(
        home.run(["secret", "download", &uid, "--name", "missing.txt"]),
        NOT_FOUND,
    );
    ok(home.run(["secret", "delete-attachment", &uid, &file_uid]));
    let after = json_of(home.run(["secret", "get", &uid, "--json"]));
    assert_eq!(after["files"].as_array().expect("files").len(), 0);
    fails(
        home.run(["secret", "delete-attachment", &uid, &file_uid]),
        NOT_FOUND,
    );

    // Folders.
    let list = json_of(home.run(["folder", "list", "--json"]));
    let folders = list["folders"].as_array().expect("folders");
    assert!(folders.iter().any(|f| f["uid"] == vault.folder.as_str()
        && f["shared"] == true
        && f["name"] == "Shared"));
    assert!(folders.iter().any(|f| f["uid"] == vault.subfolder.as_str()
        && f["parent_uid"] == vault.folder.as_str()
        && f["depth"] == 1));
    let new_folder = ok(home.run(["folder", "add", "--parent", &vault.folder, "Scratch"]))
        .trim()
        .to_owned();
    ok(home.run(["folder", "update", &new_folder, "Scratch (renamed)"]));
    let list = json_of(home.run(["folder", "list", "--json"]));
    assert!(
        list["folders"]
            .as_array()
            .expect("folders")
            .iter()
            .any(|f| f["uid"] == new_folder.as_str() && f["name"] == "Scratch (renamed)")
    );
    let inside = ok(home.run([
        "secret",
        "add",
        "--folder",
        &new_folder,
        "--type",
        "login",
        "--title",
        "Inside",
    ]))
    .trim()
    .to_owned();
    let err = fails(home.run(["folder", "delete", &new_folder]), 1);
    assert!(err.contains("--force"), "{err}");
    let answer = json_of(home.run(["folder", "delete", &new_folder, "--force", "--json"]));
    assert_eq!(answer["deleted"][0], new_folder.as_str());
    fails(home.run(["secret", "get", &inside]), NOT_FOUND);

    // Delete records: one outcome per UID.
    let out = home.run(["secret", "delete", &uid, "AAAAAAAAAAAAAAAAAAAAAA", "--json"]);
    assert_eq!(out.status.code(), Some(NOT_FOUND), "{}", describe(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["deleted"], serde_json::json!([uid]));
    assert_eq!(answer["failed"][0]["uid"], "AAAAAAAAAAAAAAAAAAAAAA");
    fails(home.run(["secret", "get", &uid]), NOT_FOUND);
    ok(home.run(["secret", "delete", &from_json]));
}

#[test]
fn exec_and_interpolate_replace_notations() {
    let server = TestServer::start();
    let vault = server.provision();
    let home = Home::new();
    init_profile(&server, &home, &vault.app, "default");
    let login_url = format!("keeper://{}/field/url[1]", vault.login);

    // The child sees the secrets in its environment; other variables are untouched; nothing
    // secret is printed by coffer itself.
    let out = home
        .cmd(["exec", "--", "env"])
        .env("APP_PASSWORD", "keeper://Web Login/field/password")
        .env("APP_URL", &login_url)
        .env("APP_PLAIN", "just text")
        .env("COFFER_PASSWORD", "owner master password")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let env = ok(out);
    assert!(!env.contains("owner master password"), "{env}");
    assert!(
        env.lines().any(|l| l == format!("APP_PASSWORD={PASSWORD}")),
        "{env}"
    );
    assert!(
        env.lines().any(|l| l == "APP_URL=https://b.example.com"),
        "{env}"
    );
    assert!(env.lines().any(|l| l == "APP_PLAIN=just text"), "{env}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    // --inline: notations inside arguments, bare and braced.
    let out = ok(home.run([
        "exec",
        "--inline",
        "--",
        "echo",
        &format!("url={login_url}"),
        "pw={{ keeper://Web Login/field/password }}",
    ]));
    assert_eq!(
        out.trim(),
        format!("url=https://b.example.com pw={PASSWORD}")
    );
    // Without --inline arguments are left alone.
    let out = ok(home.run(["exec", "--", "echo", &login_url]));
    assert_eq!(out.trim(), login_url);

    // Exit codes: the child's, 128+signal, 127 for a missing command; a failing notation
    // stops before the command runs.
    fails(home.run(["exec", "--", "sh", "-c", "exit 42"]), 42);
    fails(
        home.run(["exec", "--", "sh", "-c", "kill -TERM $$"]),
        128 + 15,
    );
    fails(home.run(["exec", "--", "no-such-command-coffer-test"]), 127);
    let marker = home.path().join("ran");
    let err = fails(
        home.cmd(["exec", "--", "touch", marker.to_str().expect("path")])
            .env("X", "keeper://Web Login/field/nofield")
            .output()
            .expect("run"),
        NOT_FOUND,
    );
    assert!(err.contains("nofield"), "{err}");
    assert!(
        !marker.exists(),
        "the command must not run when a notation fails"
    );
    fails(
        home.cmd(["exec", "--", "true"])
            .env("X", "keeper://Web Login/field/url")
            .output()
            .expect("run"),
        USAGE,
    );
    // No notation at all: no profile needed.
    ok(Home::new().run(["exec", "--", "true"]));

    // Signals sent to coffer reach the child.
    let mut child = home
        .cmd([
            "exec",
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().expect("line").expect("read"), "ready");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    assert_eq!(lines.next().expect("line").expect("read"), "got-term");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(3));

    // KSM_CONFIG instead of a profile.
    let exported = ok(home.run(["profile", "export"])).trim().to_owned();
    let out = Home::new()
        .cmd(["exec", "--", "sh", "-c", "printf %s \"$P\""])
        .env("KSM_CONFIG", &exported)
        .env("COFFER_CA_CERT", &server.ca)
        .env("P", format!("keeper://{}/field/login", vault.db))
        .output()
        .expect("run");
    assert_eq!(ok(out), "dbadmin");

    // interpolate: a .env template to a file (0600), kept unless --force; stdin to stdout.
    let template = home.path().join(".env.template");
    std::fs::write(
        &template,
        format!(
            "# settings\nDB_HOST=keeper://{db}/field/host[0][hostName]\nDB_PASSWORD=\"keeper://{db}/field/password\"\nLOGIN={{{{ keeper://Web Login/field/login }}}}\nPLAIN=value\n",
            db = vault.db
        ),
    )
    .expect("write");
    let output = home.path().join(".env");
    let t = template.to_str().expect("path");
    let o = output.to_str().expect("path");
    ok(home.run(["interpolate", "-i", t, "-o", o]));
    let expected = "# settings\nDB_HOST=db.internal\nDB_PASSWORD=\"pg-pass\"\nLOGIN=alice@example.com\nPLAIN=value\n";
    assert_eq!(std::fs::read_to_string(&output).expect("read"), expected);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&output)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(&output, "keep me").expect("write");
    let err = fails(home.run(["interpolate", "-i", t, "-o", o]), 1);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&output).expect("read"), "keep me");
    assert_eq!(
        json_of(home.run(["interpolate", "-i", t, "-o", o, "--force", "--json"])),
        serde_json::json!({ "output": o, "notations": 3 })
    );
    assert_eq!(std::fs::read_to_string(&output).expect("read"), expected);
    // --json needs an output file: standard output is the result's.
    fails(home.run(["interpolate", "-i", t, "--json"]), USAGE);
    let mut child = home
        .cmd(["interpolate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"password: {{keeper://Web Login/field/password}}\n")
            .expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(ok(out), format!("password: {PASSWORD}\n"));
    // A failing notation writes nothing.
    let bad = home.path().join("bad.tpl");
    std::fs::write(&bad, "A=keeper://Nobody/field/password\n").expect("write");
    let none = home.path().join("none.env");
    fails(
        home.run([
            "interpolate",
            "-i",
            bad.to_str().expect("path"),
            "-o",
            none.to_str().expect("path"),
        ]),
        NOT_FOUND,
    );
    assert!(!none.exists());
}

#[test]
fn the_offline_cache_answers_when_the_server_is_gone() {
    let mut server = TestServer::start();
    let vault = server.provision();
    let home = Home::new();
    init_profile(&server, &home, &vault.app, "default");
    let list = json_of(home.run(["secret", "list", "--json", "--cache"]));
    assert_eq!(uids(&list).len(), 5);
    let value = ok(home
        .cmd(["secret", "get", &vault.login, "--field", "login"])
        .env("COFFER_CACHE", "true")
        .output()
        .expect("run"));
    assert_eq!(value.trim(), "alice@example.com");
    server.stop();

    let out = home.run(["secret", "list", "--json", "--cache"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(uids(&json_of(out)).len(), 5);
    assert!(stderr.contains("offline cache"), "{stderr}");
    let value = ok(home
        .cmd(["secret", "get", &vault.login, "--field", "login"])
        .env("COFFER_CACHE", "1")
        .output()
        .expect("run"));
    assert_eq!(value.trim(), "alice@example.com");

    // Without the cache: exit 5 and a hint.
    let err = fails(home.run(["secret", "list"]), UNREACHABLE);
    assert!(err.contains("hint:"), "{err}");
    // Writes never come from the cache.
    fails(
        home.run(["secret", "update", &vault.login, "--title", "x", "--cache"]),
        UNREACHABLE,
    );
}

#[test]
fn ksm_config_runs_keep_one_offline_cache_per_device() {
    let server = TestServer::start();
    let vault = server.provision();
    let home = Home::new();
    let mut exported = Vec::new();
    for name in ["one", "two"] {
        init_profile(&server, &home, &vault.app, name);
        exported.push(ok(home.run(["profile", "export", name])).trim().to_owned());
    }
    let runner = Home::new();
    let cache_files = || {
        let mut names: Vec<String> = std::fs::read_dir(runner.path().join("cache"))
            .map(|dir| {
                dir.map(|e| e.expect("entry").file_name().into_string().expect("name"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    for (i, config) in exported.iter().enumerate() {
        for _ in 0..2 {
            let out = runner
                .cmd(["secret", "list", "--json", "--cache"])
                .env("KSM_CONFIG", config)
                .env("COFFER_CA_CERT", &server.ca)
                .output()
                .expect("run");
            assert_eq!(uids(&json_of(out)).len(), 5);
        }
        // The same configuration reuses its file; another device gets its own.
        let files = cache_files();
        assert_eq!(files.len(), i + 1, "{files:?}");
        assert!(
            files
                .iter()
                .all(|f| f.starts_with("ksm-config-") && f.ends_with(".cache")),
            "{files:?}"
        );
    }
}

#[test]
fn completion_version_and_help() {
    let home = Home::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(home.run(["completion", shell]));
        assert!(
            script.contains("coffer") && script.contains("interpolate"),
            "{shell}"
        );
    }
    fails(home.run(["completion", "tcsh"]), USAGE);
    // A write error is an ordinary failure, not a panic (exit 101); a closed pipe is quiet.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = home
        .cmd(["completion", "bash"])
        .stdout(full)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let mut child = home
        .cmd(["completion", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // An empty COFFER_PROFILE is no profile, as an empty KSM_CONFIG is no config.
    let out = home
        .cmd(["secret", "list"])
        .env("COFFER_PROFILE", "")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("not a valid profile name"),
        "{}",
        describe(&out)
    );
    assert!(err.contains("profile init"), "{}", describe(&out));
    let version = ok(home.run(["--version"]));
    assert!(version.starts_with("coffer "), "{version}");
    for args in [
        vec!["profile", "init"],
        vec!["profile", "list"],
        vec!["profile", "active"],
        vec!["profile", "export"],
        vec!["profile", "import"],
        vec!["profile", "delete"],
        vec!["secret", "list"],
        vec!["secret", "get"],
        vec!["secret", "notation"],
        vec!["secret", "update"],
        vec!["secret", "add"],
        vec!["secret", "delete"],
        vec!["secret", "upload"],
        vec!["secret", "download"],
        vec!["secret", "delete-attachment"],
        vec!["secret", "totp"],
        vec!["secret", "password"],
        vec!["folder", "list"],
        vec!["folder", "add"],
        vec!["folder", "update"],
        vec!["folder", "delete"],
        vec!["exec"],
        vec!["interpolate"],
        vec!["completion"],
    ] {
        let mut full = args.clone();
        full.push("--help");
        let help = ok(home.run(&full));
        assert!(
            help.contains("Example"),
            "{args:?} --help has no example:\n{help}"
        );
    }
    fails(home.run(["secret", "frobnicate"]), USAGE);
}

/// Text without ANSI escape sequences (CSI … letter) and with `\r` line rewrites resolved
/// to what they leave visible.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out.lines()
        .map(|line| {
            line.rsplit('\r')
                .find(|part| !part.is_empty())
                .unwrap_or("")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `coffer ARGS` with stdout and stderr on a pseudo-terminal; returns the exit code and
/// everything the terminal received.
fn run_on_terminal(home: &Home, args: &[&str]) -> (Option<i32>, String) {
    let winsize = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(&winsize, None::<&nix::sys::termios::Termios>).expect("openpty");
    let mut child = {
        let mut command = home.cmd(args);
        command
            .env("TERM", "xterm-256color")
            .stdout(Stdio::from(pty.slave.try_clone().expect("dup")))
            .stderr(Stdio::from(pty.slave));
        command.spawn().expect("spawn")
        // `command` (holding the terminal's other end) is dropped here, so reads end when
        // the child exits.
    };
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break, // EIO once the child's side is closed
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        seen
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "coffer {args:?} hangs on a terminal"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let seen = reader.join().expect("reader");
    (status.code(), String::from_utf8_lossy(&seen).into_owned())
}

#[test]
fn on_a_terminal_tables_and_progress_bars_render() {
    let server = TestServer::start();
    let vault = server.provision();
    let home = Home::new();
    init_profile(&server, &home, &vault.app, "default");

    // secret list: an aligned table with a bold header and folder names.
    let (code, screen) = run_on_terminal(&home, &["secret", "list"]);
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("\x1b[1mUID"), "{screen:?}");
    let header = screen
        .lines()
        .find(|l| l.contains("TITLE"))
        .expect("header");
    assert!(
        header.contains("TYPE") && header.contains("FOLDER"),
        "{header:?}"
    );
    let row = screen
        .lines()
        .find(|l| l.contains(&vault.db))
        .expect("the db row");
    assert!(
        row.contains("databaseCredentials") && row.contains("Prod DB") && row.contains("Databases"),
        "{row:?}"
    );
    // Columns line up: every row's TITLE starts at the header's TITLE column.
    let column = header
        .replace("\x1b[1m", "")
        .find("TITLE")
        .expect("TITLE column");
    let plain_row = row.replace('\r', "");
    assert_eq!(
        plain_row.find("Prod DB"),
        Some(column),
        "{header:?}\n{row:?}"
    );
    // Piped, the same command prints no table.
    let piped = ok(home.run(["secret", "list"]));
    assert!(
        !piped.contains("TITLE") && !piped.contains('\x1b'),
        "{piped}"
    );

    // folder list and profile list are tables too.
    let (code, screen) = run_on_terminal(&home, &["folder", "list"]);
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("NAME") && screen.contains("  Databases"),
        "{screen:?}"
    );
    let (code, screen) = run_on_terminal(&home, &["profile", "list"]);
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("HOSTNAME") && screen.contains("CLI tests"),
        "{screen:?}"
    );

    // An 8 MiB upload and its download show a progress bar; a small one does not.
    let big = home.path().join("big.bin");
    let content: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&big, &content).expect("write");
    let (code, screen) = run_on_terminal(
        &home,
        &["secret", "upload", &vault.db, big.to_str().expect("path")],
    );
    assert_eq!(code, Some(0), "{screen}");
    let text = strip_ansi(&screen);
    assert!(text.contains("Uploading big.bin ["), "{screen:?}");
    assert!(text.contains("8.00 MiB/8.00 MiB"), "{screen:?}");
    assert!(
        text.contains(&format!("[{}]", "=".repeat(32))),
        "a full bar: {screen:?}"
    );
    // The bar ends its line: what comes next (the file UID) starts on a line of its own.
    let last = text
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .expect("a last line");
    assert_eq!(last.trim().len(), 22, "{screen:?}");
    let copy = home.path().join("copy.bin");
    let (code, screen) = run_on_terminal(
        &home,
        &[
            "secret",
            "download",
            &vault.db,
            "--name",
            "big.bin",
            "-o",
            copy.to_str().expect("path"),
        ],
    );
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("Downloading big.bin") && screen.contains("MiB"),
        "{screen:?}"
    );
    assert_eq!(std::fs::read(&copy).expect("read"), content);
    let small = home.path().join("small.txt");
    std::fs::write(&small, b"tiny").expect("write");
    let (code, screen) = run_on_terminal(
        &home,
        &["secret", "upload", &vault.db, small.to_str().expect("path")],
    );
    assert_eq!(code, Some(0), "{screen}");
    assert!(!screen.contains("Uploading"), "{screen:?}");
    // Off a terminal, no bar even for a big file.
    let out = home.run(["secret", "upload", &vault.db, big.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(!stderr.contains("Uploading"), "{stderr}");
}

/// `KSM_SKIP_VERIFY=true` applies to `profile init` too (with a warning): it binds a profile
/// against a server whose certificate is not at hand.
#[test]
fn profile_init_honours_skip_verify() {
    let server = TestServer::start();
    let vault = server.provision();
    let home = Home::new();
    let token = server.token(&vault.app);
    let out = home
        .cmd([
            "profile",
            "init",
            &token.token,
            "--hostname",
            &server.host(),
            "--json",
        ])
        .env("KSM_SKIP_VERIFY", "true")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KSM_SKIP_VERIFY"));
    let listed = home
        .cmd(["secret", "list", "--json"])
        .env("KSM_SKIP_VERIFY", "true")
        .output()
        .expect("run");
    assert_eq!(listed.status.code(), Some(0), "{}", describe(&listed));
    // A malformed host name is wrong usage, not an unreachable server.
    for host in ["h:99999", "x y", "["] {
        let out = home
            .cmd(["secret", "list"])
            .env("KSM_SKIP_VERIFY", "true")
            .env("KSM_HOSTNAME", host)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(USAGE), "{host}: {}", describe(&out));
    }
}
