//! `coffer server --dev`: a throwaway server with demo data, ready to read in a minute.

use anyhow::{Context, Result};
use coffer_owner::{NewClientOptions, OwnerClient, ServerTrust, Session};
use coffer_proto::record::RecordData;

use super::server::{config_from_args, serve_until_signal};
use crate::cli::ServerArgs;
use crate::fields::build_record;
use crate::home::{SavedSession, write_private};

/// The demo TOTP secret (RFC 4648 base32 of "Hello!\xde\xad\xbe\xef").
const DEMO_TOTP: &str =
    "otpauth://totp/Coffer:dev@example.com?secret=JBSWY3DPEHPK3PXP&issuer=Coffer";

pub async fn run(args: ServerArgs, signals: super::server::StopSignals) -> Result<()> {
    let (data_dir, _guard) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("coffer-dev-")
                .tempdir()
                .context("cannot create a temporary data directory")?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    let config = config_from_args(&args, data_dir.clone());
    let server = coffer_server::start(config, None)
        .await
        .context("the dev server could not start (is the port taken? try --listen 127.0.0.1:0)")?;
    let base = server.public_url.clone();
    let ca_cert = data_dir.join("tls").join("cert.pem");
    let password = coffer_crypto::encode_url(&coffer_crypto::random_bytes::<12>());
    let home = data_dir.join("home");
    let code = server
        .setup_code
        .clone()
        .context("this data dir already has an owner; --dev needs a fresh one (omit --data-dir)")?;
    let client = OwnerClient::new(&base, &ServerTrust::ExtraCa(ca_cert.clone()))?;
    let session = Session::register(client, "dev@localhost", &password, &code).await?;
    let demo = provision(&session, &ca_cert).await?;
    SavedSession {
        server: base.clone(),
        email: session.email().to_owned(),
        token: session.token().to_owned(),
        expires_at: session.expires_at(),
        ca_cert: Some(ca_cert.clone()),
    }
    .save(&home)?;
    let env = format!(
        "export COFFER_HOME={home}\nexport COFFER_PASSWORD={password}\nexport COFFER_CA_CERT={ca}\nexport KSM_CONFIG={config}\nexport REQUESTS_CA_BUNDLE={ca}\nexport NODE_EXTRA_CA_CERTS={ca}\n",
        home = home.display(),
        ca = ca_cert.display(),
        config = demo.config,
    );
    write_private(&data_dir.join("dev.env"), env.as_bytes())?;
    say!(
        stdout,
        "Coffer dev server: {base}   (data: {}{})",
        data_dir.display(),
        if _guard.is_some() {
            ", deleted on exit"
        } else {
            ""
        }
    );
    say!(stdout);
    say!(stdout, "Owner     dev@localhost / {password}");
    say!(
        stdout,
        "Folder    Demo {}  (shared with app \"Demo App\" {}, editable)",
        demo.folder,
        demo.app
    );
    say!(
        stdout,
        "Records   Demo Login {} (login, password, url, TOTP, hello.txt)",
        demo.login
    );
    say!(stdout, "          Demo Database {}", demo.database);
    say!(stdout, "Config    {}", demo.config);
    say!(
        stdout,
        "          (a bound device of Demo App: KSM_CONFIG for any number of processes)"
    );
    say!(
        stdout,
        "Token     {}   (one-time, unbound: `coffer profile init --hostname {} TOKEN`)",
        demo.token,
        base.trim_start_matches("https://")
    );
    say!(
        stdout,
        "          unbound config for it: {}",
        demo.one_time_config
    );
    say!(stdout);
    say!(stdout, "Read a secret (another terminal):");
    say!(stdout, "  source {}", data_dir.join("dev.env").display());
    say!(stdout, "  coffer secret list");
    say!(stdout, "  coffer secret get {} --unmask", demo.login);
    say!(stdout, "  coffer vault record get {}", demo.login);
    say!(
        stdout,
        "  python3 -c \"from keeper_secrets_manager_core import SecretsManager; from keeper_secrets_manager_core.storage import InMemoryKeyValueStorage; import os; sm = SecretsManager(config=InMemoryKeyValueStorage(os.environ['KSM_CONFIG'])); print(sm.get_notation('keeper://{}/field/password'))\"",
        demo.login
    );
    say!(stdout);
    say!(stdout, "Ctrl-C stops the server.");
    serve_until_signal(server, signals).await
}

struct Demo {
    folder: String,
    login: String,
    database: String,
    app: String,
    token: String,
    one_time_config: String,
    config: String,
}

async fn provision(session: &Session, ca_cert: &std::path::Path) -> Result<Demo> {
    let folder = session.create_folder("Demo", None).await?;
    let password = coffer_crypto::encode_url(&coffer_crypto::random_bytes::<15>());
    let login: RecordData = build_record(
        "login",
        "Demo Login",
        &[
            "login=dev@example.com".into(),
            format!("password={password}"),
            "url=https://example.com".into(),
            format!("oneTimeCode={DEMO_TOTP}"),
        ],
        &["Environment=dev".into()],
        Some("Created by coffer server --dev."),
    )?;
    let login = session.add_record(&folder, &login).await?;
    session
        .attach_file(&login, "hello.txt", "text/plain", b"Hello from Coffer!\n")
        .await?;
    let database = build_record(
        "databaseCredentials",
        "Demo Database",
        &[
            "text.type=postgresql".into(),
            r#"host={"hostName":"localhost","port":"5432"}"#.into(),
            "login=app".into(),
            format!(
                "password={}",
                coffer_crypto::encode_url(&coffer_crypto::random_bytes::<15>())
            ),
        ],
        &[],
        None,
    )?;
    let database = session.add_record(&folder, &database).await?;
    let app = session.create_app("Demo App").await?;
    session.share(&app, &folder, true).await?;
    let device = |name: &str| NewClientOptions {
        name: Some(name.into()),
        first_access_expires: None,
        unlock_ip: true,
    };
    // A device bound here, so its config works for any number of processes (an unbound config
    // binds once, in whichever process uses it first), and a one-time token left for trying.
    let bound = session.add_client(&app, &device("dev device")).await?;
    let sm = coffer_sdk::SecretsManager::builder()
        .storage(coffer_sdk::MemoryStorage::from_text(&bound.config)?)
        .tls(coffer_sdk::Tls::ExtraCaFile(ca_cert.to_path_buf()))
        .use_env(false)
        .build()?;
    sm.get_all_secrets().await?;
    let one_time = session.add_client(&app, &device("dev token")).await?;
    Ok(Demo {
        folder,
        login,
        database,
        app,
        token: one_time.token,
        one_time_config: one_time.config,
        config: sm.config().to_base64(),
    })
}
