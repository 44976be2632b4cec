//! The environment variables of the official SDKs: `KSM_CONFIG`, `KSM_TOKEN`,
//! `KSM_HOSTNAME`, `KSM_SKIP_VERIFY`, and Coffer's `COFFER_CA_CERT`.
//!
//! The environment is process-wide (and changing it is `unsafe` in Rust 2024), so the test
//! starts a real server and re-runs this test binary as child processes, each with one
//! prepared environment, running the `child` test below.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use coffer_sdk::config::keys;
use coffer_sdk::{Config, MemoryStorage, SdkError, SecretsManager, Tls};
use common::{fixture, start};

const CASE: &str = "COFFER_SDK_ENV_CASE";
const CA: &str = "COFFER_SDK_ENV_CA";
const EXPECT: &str = "COFFER_SDK_ENV_EXPECT";
const SEED: &str = "COFFER_SDK_ENV_SEED";

#[tokio::test]
async fn environment_variables_are_honoured() {
    let server = start().await;
    let fx = fixture(&server).await;
    let app = server.app("Env", &[(&fx.folder, false)]).await;
    let exe = std::env::current_exe().unwrap();
    let run = |case: &str, vars: Vec<(&str, String)>| {
        let mut command = tokio::process::Command::new(&exe);
        command
            .args([
                "--exact",
                "child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CASE, case)
            .env(CA, &server.ca)
            .env(EXPECT, "6");
        for var in [
            "KSM_CONFIG",
            "KSM_TOKEN",
            "KSM_HOSTNAME",
            "KSM_SKIP_VERIFY",
            "KSM_CONFIG_FILE",
            "COFFER_CA_CERT",
        ] {
            command.env_remove(var);
        }
        for (k, v) in vars {
            command.env(k, v);
        }
        command.current_dir(server.dir.path());
        let case = case.to_owned();
        async move {
            let out = command.output().await.unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && text.contains("1 passed"),
                "case {case} failed:\n{text}"
            );
        }
    };

    // KSM_CONFIG: the base64 configuration of `coffer vault client add`.
    let client = server.client(&app).await;
    run("config", vec![("KSM_CONFIG", client.config.clone())]).await;

    // KSM_HOSTNAME overrides the configured host on every request.
    let client = server.client(&app).await;
    let mut wrong_host = Config::parse(&client.config).unwrap();
    wrong_host.set(keys::HOSTNAME, "127.0.0.1:1");
    run(
        "config",
        vec![
            ("KSM_CONFIG", wrong_host.to_base64()),
            ("KSM_HOSTNAME", format!("127.0.0.1:{}", server.port)),
        ],
    )
    .await;

    // KSM_TOKEN: a configuration with host and server key, the token from the environment.
    let client = server.client(&app).await;
    let mut seed = Config::parse(&client.config).unwrap();
    let key = seed.get(keys::CLIENT_KEY).unwrap().to_owned();
    seed.remove(keys::CLIENT_KEY);
    run("token", vec![("KSM_TOKEN", key), (SEED, seed.to_base64())]).await;

    // KSM_SKIP_VERIFY: true works without the CA; an invalid value is refused; without it
    // the self-signed certificate is refused.
    let client = server.client(&app).await;
    run(
        "skip-verify",
        vec![
            ("KSM_CONFIG", client.config.clone()),
            ("KSM_SKIP_VERIFY", "True".into()),
        ],
    )
    .await;
    run(
        "bad-skip-verify",
        vec![
            ("KSM_CONFIG", client.config.clone()),
            ("KSM_SKIP_VERIFY", "maybe".into()),
        ],
    )
    .await;
    run("untrusted", vec![("KSM_CONFIG", client.config.clone())]).await;
    // COFFER_CA_CERT (as the `coffer` command line) trusts the server's certificate.
    let client = server.client(&app).await;
    run(
        "skip-verify",
        vec![
            ("KSM_CONFIG", client.config.clone()),
            ("COFFER_CA_CERT", server.ca.display().to_string()),
        ],
    )
    .await;
}

#[tokio::test]
#[ignore = "run by environment_variables_are_honoured in a child process with a prepared environment"]
async fn child() {
    let case = std::env::var(CASE).expect("run by environment_variables_are_honoured");
    let ca = std::env::var(CA).unwrap();
    let expect: usize = std::env::var(EXPECT).unwrap().parse().unwrap();
    let trusted = SecretsManager::builder().tls(Tls::ExtraCaFile(ca.into()));
    match case.as_str() {
        "config" => {
            let sm = trusted.build().unwrap();
            assert_eq!(sm.get_all_secrets().await.unwrap().len(), expect);
        }
        "token" => {
            let seed = std::env::var(SEED).unwrap();
            let storage = std::sync::Arc::new(MemoryStorage::from_text(&seed).unwrap());
            let sm = trusted.storage(storage.clone()).build().unwrap();
            assert!(!sm.is_bound());
            assert_eq!(sm.get_all_secrets().await.unwrap().len(), expect);
            assert!(storage.snapshot().get(keys::APP_KEY).is_some());
        }
        // Nothing configured in code: KSM_SKIP_VERIFY or COFFER_CA_CERT must make it work.
        "skip-verify" => {
            let sm = SecretsManager::builder().build().unwrap();
            assert_eq!(sm.get_all_secrets().await.unwrap().len(), expect);
        }
        "bad-skip-verify" => {
            let err = SecretsManager::builder().build().unwrap_err();
            assert!(
                matches!(err, SdkError::Config(ref m) if m.contains("KSM_SKIP_VERIFY")),
                "{err}"
            );
        }
        "untrusted" => {
            let sm = SecretsManager::builder().build().unwrap();
            let err = sm.get_all_secrets().await.unwrap_err();
            assert!(matches!(err, SdkError::Network(_)), "{err}");
        }
        other => panic!("unknown case {other}"),
    }
}
