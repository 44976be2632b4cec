//! Benchmark: `get_secrets` for an application with 1,000 records, through Coffer's SDK and
//! through the official Rust SDK (`keeper-secrets-manager-core` 17.3.0 from crates.io), in one
//! run against one local Coffer server. The ratio is the figure.
//!
//! ```text
//! cargo build --release --manifest-path crates/coffer-sdk/bench/Cargo.toml   # the official side
//! cargo run --release -p coffer-sdk --example bench_get_secrets -- [RECORDS] [ITERATIONS]
//! ```
//!
//! * The official Rust SDK drops any port from the host name, so the server listens on
//!   127.0.0.1:443: run as root.
//! * The official SDK trusts only the operating system's roots, so it runs with `SSL_CERT_FILE`
//!   pointing at the server's certificate; both SDKs verify the server.
//! * The official SDK runs in its own process (built from `crates/coffer-sdk/bench`, a
//!   separate workspace, because it changes serde_json's features); set
//!   `OFFICIAL_GET_SECRETS` to use a binary elsewhere.
//! * Each SDK first binds its own one-time token (not timed), then `get_secrets` is timed
//!   `ITERATIONS` times over a kept-alive connection, the two SDKs alternating every two
//!   calls so that both see the same machine load; both check they see every record.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use coffer_owner::{NewClientOptions, OwnerClient, ServerTrust, Session};
use coffer_proto::record::{Field, RecordData};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn record(i: usize) -> RecordData {
    RecordData {
        title: format!("Service account {i:04}"),
        record_type: "login".into(),
        fields: vec![
            Field::new("login", vec![json!(format!("svc{i}@example.com"))]),
            Field::new(
                "password",
                vec![json!(coffer_crypto::encode_url(
                    &coffer_crypto::random_bytes::<18>()
                ))],
            ),
            Field::new(
                "url",
                vec![json!(format!("https://svc{i}.example.com/login"))],
            ),
            Field::new(
                "host",
                vec![json!({"hostName": format!("db{i}.internal"), "port": "5432"})],
            ),
            Field::new(
                "oneTimeCode",
                vec![json!(
                    "otpauth://totp/Example:svc?secret=JBSWY3DPEHPK3PXP&issuer=Example"
                )],
            ),
        ],
        custom: vec![Field::new("text", vec![json!("production")]).with_label("Environment")],
        notes: Some(format!("Benchmark record number {i}.")),
        ..Default::default()
    }
}

fn summary(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    (ms[ms.len() / 2], mean, ms[0])
}

fn official_binary() -> PathBuf {
    std::env::var_os("OFFICIAL_GET_SECRETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("bench/target/release/official_get_secrets")
        })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let records: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let iterations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let official = official_binary();
    if !official.exists() {
        return Err(format!(
            "{} is missing: build it with `cargo build --release --manifest-path \
             crates/coffer-sdk/bench/Cargo.toml` (or set OFFICIAL_GET_SECRETS)",
            official.display()
        )
        .into());
    }

    // ---- one server, one application with `records` records ------------------------------
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:443").await.map_err(|e| {
        format!("cannot listen on 127.0.0.1:443 ({e}); the official Rust SDK only talks to port 443: run as root")
    })?;
    let mut config = coffer_server::ServerConfig::new(dir.path().to_path_buf());
    config.listen = listener.local_addr()?;
    config.public_host = "127.0.0.1".into();
    let server = coffer_server::start(config, Some(listener)).await?;
    let ca = dir.path().join("tls").join("cert.pem");
    let owner = OwnerClient::new("https://127.0.0.1", &ServerTrust::ExtraCa(ca.clone()))?;
    let code = server.setup_code.clone().ok_or("no setup code")?;
    let session =
        Session::register(owner, "bench@example.com", "benchmark password", &code).await?;
    let folder = session.create_folder("Benchmark", None).await?;
    let started = Instant::now();
    for i in 0..records {
        session.add_record(&folder, &record(i)).await?;
    }
    eprintln!(
        "provisioned {records} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let app = session.create_app("Benchmark App").await?;
    session.share(&app, &folder, false).await?;
    let options = NewClientOptions {
        name: Some("bench".into()),
        first_access_expires: None,
        unlock_ip: true,
    };
    let ours = session.add_client(&app, &options).await?;
    let theirs = session.add_client(&app, &options).await?;

    // ---- both SDKs, bound, then timed in alternating rounds ------------------------------
    // The official SDK runs in its own process and answers "N" on its stdin with N timed calls,
    // so both are measured in alternating rounds under the same (shared-machine) load.
    let sm = coffer_sdk::SecretsManager::builder()
        .use_env(false)
        .config_text(&ours.config)?
        .tls(coffer_sdk::Tls::ExtraCaFile(ca.clone()))
        .build()?;
    assert_eq!(sm.get_all_secrets().await?.len(), records);
    let mut child = tokio::process::Command::new(&official)
        .arg(&theirs.config)
        .arg(records.to_string())
        .env_remove("KSM_CONFIG")
        .env_remove("KSM_TOKEN")
        .env_remove("KSM_HOSTNAME")
        // The official SDK trusts the system's roots, which this file replaces (it verifies).
        .env("SSL_CERT_FILE", &ca)
        .env_remove("SSL_CERT_DIR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut to_official = child.stdin.take().ok_or("no stdin")?;
    let mut from_official = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let ready = from_official.next_line().await?;
    if ready.as_deref() != Some("ready") {
        return Err(format!("the official SDK did not start: {ready:?}").into());
    }
    const ROUND: usize = 2;
    let mut coffer_ms = Vec::with_capacity(iterations);
    let mut official_ms: Vec<f64> = Vec::with_capacity(iterations);
    while coffer_ms.len() < iterations {
        let n = ROUND.min(iterations - coffer_ms.len());
        for _ in 0..n {
            let started = Instant::now();
            let secrets = sm.get_all_secrets().await?;
            coffer_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(secrets.len(), records);
        }
        to_official.write_all(format!("{n}\n").as_bytes()).await?;
        to_official.flush().await?;
        let line = from_official
            .next_line()
            .await?
            .ok_or("the official SDK stopped")?;
        let parsed: serde_json::Value = serde_json::from_str(&line)?;
        official_ms.extend(
            parsed["samples_ms"]
                .as_array()
                .ok_or("no samples from the official SDK")?
                .iter()
                .filter_map(serde_json::Value::as_f64),
        );
    }
    drop(to_official);
    let _ = child.wait().await;

    let (c_median, c_mean, c_min) = summary(coffer_ms);
    let (o_median, o_mean, o_min) = summary(official_ms);
    println!(
        "get_secrets, {records} records, {iterations} timed calls each, one Coffer server on 127.0.0.1:443"
    );
    println!(
        "  Coffer SDK (coffer-sdk)           median {c_median:8.2} ms   mean {c_mean:8.2} ms   min {c_min:8.2} ms"
    );
    println!(
        "  official Rust SDK 17.3.0          median {o_median:8.2} ms   mean {o_mean:8.2} ms   min {o_min:8.2} ms"
    );
    println!(
        "  ratio official / Coffer: {:.2}x (median), {:.2}x (mean)",
        o_median / c_median,
        o_mean / c_mean
    );
    tokio::time::timeout(Duration::from_secs(30), server.shutdown()).await??;
    Ok(())
}
