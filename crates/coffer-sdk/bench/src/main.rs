//! Times `get_secrets` through the official Rust SDK (`keeper-secrets-manager-core` 17.3.0).
//!
//! Run by `coffer-sdk`'s `bench_get_secrets` example:
//! `official_get_secrets BASE64_CONFIG RECORDS` binds, prints `ready`, then for every line
//! `N` on standard input times N calls and prints one JSON line `{"samples_ms": [...]}`, so
//! the two SDKs can be measured in alternating rounds under the same machine load.
//!
//! The official SDK drops any port from the host name (so the server must be on 443) and
//! trusts only the operating system's roots: the benchmark points `SSL_CERT_FILE` at the
//! server's certificate, and certificate checks stay on.

use std::io::BufRead;
use std::time::Instant;

use keeper_secrets_manager_core::{
    ClientOptions, InMemoryKeyValueStorage, KSMCache, KvStoreType, SecretsManager,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, records] = args.as_slice() else {
        eprintln!("usage: official_get_secrets BASE64_CONFIG RECORDS  (then N per line on stdin)");
        std::process::exit(2);
    };
    let records: usize = records.parse().expect("RECORDS");
    let storage = InMemoryKeyValueStorage::new(Some(config.clone())).expect("config");
    let options = ClientOptions::new(
        String::new(),
        KvStoreType::InMemory(storage),
        log::Level::Error,
        None,
        Some(false),
        None,
        KSMCache::None,
    );
    let mut sm = SecretsManager::new(options).expect("official SDK");
    // The first call binds the one-time token (and opens the connection).
    let first = sm.get_secrets(Vec::new()).expect("binding get_secrets");
    assert_eq!(first.len(), records, "the official SDK sees every record");
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        let Ok(count) = line.expect("stdin").trim().parse::<usize>() else {
            break;
        };
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            let secrets = sm.get_secrets(Vec::new()).expect("get_secrets");
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(secrets.len(), records);
        }
        println!("{}", serde_json::json!({ "samples_ms": samples }));
    }
}
