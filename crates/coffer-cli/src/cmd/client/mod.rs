//! The client commands: `profile`, `secret`, `folder`, `exec`, `interpolate`, `completion`.
//!
//! They reach the server only through the Coffer SDK. This module holds what they share:
//! opening the SDK client for the chosen profile ([`connect`]), the exit codes and hints of
//! failures ([`exit_status`]), and terminal output helpers.

pub mod completion;
pub mod exec;
pub mod folder;
pub mod interpolate;
pub mod profile;
pub mod profiles;
pub mod progress;
pub mod secret;
pub mod table;

use std::fmt;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use coffer_sdk::config::{keys, parse_bool};
use coffer_sdk::{
    CacheOptions, CachedAnswer, Config, MemoryStorage, SdkError, SecretsManager, Tls,
};

use crate::client_cli::ClientGlobal;
use crate::home::coffer_home;
use profiles::{ProfileStorage, Profiles};

/// Exit codes of the client commands (documented in README.md).
pub mod code {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other error.
    pub const ERROR: u8 = 1;
    /// Wrong usage: bad flags or arguments, a malformed token or notation.
    pub const USAGE: u8 = 2;
    /// A record, folder, file, field or profile does not exist (or is not shared).
    pub const NOT_FOUND: u8 = 3;
    /// The server refused: access denied, token used or expired, read-only record.
    pub const REFUSED: u8 = 4;
    /// The server cannot be reached (network, TLS).
    pub const UNREACHABLE: u8 = 5;
}

/// A failure with a chosen exit code. `message: None` exits quietly (e.g. `exec` passing on
/// its child's exit code).
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What to print after `error: `.
    pub message: Option<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message.as_deref().unwrap_or("(exit)"))
    }
}

impl std::error::Error for Failure {}

/// An error with an exit code.
pub fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        message: Some(message.into()),
    })
}

/// Exits with `code` without printing anything.
pub fn exit_quietly(code: u8) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        message: None,
    })
}

/// The exit code of a failed command and whether to print its message; `None` for errors
/// that are not the client commands' (they keep the generic code 1).
pub fn exit_status(err: &anyhow::Error) -> Option<(u8, bool)> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map(|f| (f.code, f.message.is_some()))
}

/// Which exit code an SDK error deserves.
fn sdk_code(err: &SdkError) -> u8 {
    match err {
        SdkError::NotFound(_) => code::NOT_FOUND,
        SdkError::Notation(message) => {
            if message.starts_with("Keeper notation is invalid")
                || message.starts_with("Keeper notation URI missing")
            {
                code::USAGE
            } else {
                code::NOT_FOUND
            }
        }
        SdkError::Invalid(_) | SdkError::Config(_) => code::USAGE,
        SdkError::Binding(_) => code::REFUSED,
        SdkError::Server { status, code, .. }
            if *status == 401 || *status == 403 || code == "access_denied" =>
        {
            code::REFUSED
        }
        SdkError::Network(_) => code::UNREACHABLE,
        _ => code::ERROR,
    }
}

/// What to do about an SDK error, when there is more to say than its message.
fn sdk_hint(err: &SdkError) -> Option<&'static str> {
    match err {
        SdkError::Network(message) => {
            let lower = message.to_ascii_lowercase();
            if lower.contains("certificate") || lower.contains("unknownissuer") {
                Some(
                    "the server's TLS certificate is not trusted: pass --ca-cert PEM (or set \
                     COFFER_CA_CERT), e.g. the server's DATA_DIR/tls/cert.pem",
                )
            } else {
                Some(
                    "check that the server runs and that the profile's hostname (with its port) is \
                     right (`coffer profile list`); --cache answers reads from the offline cache",
                )
            }
        }
        SdkError::Server { message, .. } if message.contains("transmission key") => Some(
            "the profile's serverPublicKey does not match this server: bind a new one-time token \
             with `coffer profile init`",
        ),
        _ => None,
    }
}

/// Turns any error of a client command into a [`Failure`] with its exit code and hint.
pub fn classify(err: anyhow::Error) -> anyhow::Error {
    if err.chain().any(|c| c.downcast_ref::<Failure>().is_some()) {
        return err;
    }
    if crate::is_broken_pipe(&err) {
        return err;
    }
    let sdk = err.chain().find_map(|c| c.downcast_ref::<SdkError>());
    let code = sdk.map_or(code::ERROR, sdk_code);
    let mut message = format!("{err:#}");
    if let Some(hint) = sdk.and_then(sdk_hint) {
        message.push_str("\nhint: ");
        message.push_str(hint);
    }
    anyhow::Error::new(Failure {
        code,
        message: Some(message),
    })
}

/// Logs to stderr: only errors unless `COFFER_LOG`/`RUST_LOG` asks for more (the commands
/// print their own notes and warnings).
pub fn init_logging() {
    super::init_logging("error,rustls=off");
}

/// Prints a note on stderr.
pub fn note(text: impl fmt::Display) {
    eprintln!("note: {text}");
}

/// Prints a warning on stderr.
pub fn warn(text: impl fmt::Display) {
    eprintln!("warning: {text}");
}

/// True when standard output is a terminal.
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Says so when an answer came from the offline cache.
pub fn report_cached(cached: Option<&CachedAnswer>) {
    if let Some(answer) = cached {
        warn(format!(
            "the server could not be reached: this answer is from the offline cache ({} old)",
            humantime::format_duration(Duration::from_secs(answer.age.as_secs()))
        ));
    }
}

/// Reads a boolean environment variable the way the official SDKs do.
fn env_flag(name: &str) -> Result<Option<bool>> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => match parse_bool(&value) {
            Some(flag) => Ok(Some(flag)),
            None => Err(fail(
                code::USAGE,
                format!("{name}={value:?} is not a boolean (true/false)"),
            )),
        },
        _ => Ok(None),
    }
}

/// The TLS trust of a client command: `--ca-cert`/`COFFER_CA_CERT`, else the CA the profile
/// was set up with, else the system's; `KSM_SKIP_VERIFY=true` turns verification off.
pub fn tls_for(global: &ClientGlobal, profile_ca: Option<&std::path::Path>) -> Result<Tls> {
    if env_flag("KSM_SKIP_VERIFY")? == Some(true) {
        warn("KSM_SKIP_VERIFY is set: the server's TLS certificate is not verified");
        return Ok(Tls::SkipVerify);
    }
    let ca = global.ca_cert.as_deref().or(profile_ca);
    Ok(match ca {
        Some(path) => {
            if !path.is_file() {
                return Err(fail(
                    code::USAGE,
                    format!(
                        "the CA certificate {} does not exist (--ca-cert / COFFER_CA_CERT)",
                        path.display()
                    ),
                ));
            }
            Tls::ExtraCaFile(path.to_path_buf())
        }
        None => Tls::System,
    })
}

/// `KSM_HOSTNAME`, when set: the server host for every request, over the configuration's.
fn hostname_override() -> Option<String> {
    std::env::var("KSM_HOSTNAME")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Creates a directory (and its parents) with mode 0700.
fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))
}

/// The configuration a command uses.
enum Source {
    /// `KSM_CONFIG`, in memory.
    Env(Config),
    /// A saved profile.
    Profile(String),
}

/// The saved, bound profile of the device whose one-time token `config` carries (the
/// profile `profile init "$KSM_CONFIG"` made), if there is one.
fn bound_profile_of(profiles: &Profiles, config: &Config) -> Option<String> {
    let key = coffer_crypto::decode_lenient(config.get(keys::CLIENT_KEY)?).ok()?;
    let client_id = coffer_crypto::derive_client_id(&key);
    profiles
        .profiles
        .iter()
        .find(|(_, stored)| {
            stored.get(keys::CLIENT_ID) == Some(&client_id) && stored.contains_key(keys::APP_KEY)
        })
        .map(|(name, _)| name.clone())
}

/// Opens the SDK client of the chosen configuration: `--profile`, else `KSM_CONFIG`, else the
/// active profile. A `KSM_CONFIG` that is not bound yet but was bound into a profile before
/// (`coffer profile init "$KSM_CONFIG"`) means that profile.
pub fn connect(global: &ClientGlobal) -> Result<SecretsManager> {
    let home = coffer_home()?;
    let env_config = std::env::var("KSM_CONFIG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let source = match (global.profile_name(), env_config) {
        (None, Some(text)) => {
            let config = Config::parse(&text).map_err(|e| {
                fail(
                    code::USAGE,
                    format!("KSM_CONFIG does not hold a KSM configuration: {e}"),
                )
            })?;
            if config.get(keys::APP_KEY).is_some() {
                Source::Env(config)
            } else {
                match bound_profile_of(&Profiles::load(&home)?, &config) {
                    Some(name) => Source::Profile(name),
                    None => {
                        warn(
                            "KSM_CONFIG is not bound yet: this run spends its one-time token and \
                             the binding cannot be saved; run `coffer profile init` to bind and \
                             keep it",
                        );
                        Source::Env(config)
                    }
                }
            }
        }
        (name, _) => Source::Profile(Profiles::load(&home)?.resolve(name)?),
    };
    let builder = SecretsManager::builder().use_env(false);
    let (builder, cache_name, profile_ca) = match source {
        Source::Env(mut config) => {
            if let Some(host) = hostname_override() {
                config.set(keys::HOSTNAME, host);
            }
            let cache_name = env_cache_name(&config);
            let builder = builder.storage(MemoryStorage::from_config(config));
            (builder, cache_name, None)
        }
        Source::Profile(name) => {
            let ca = Profiles::load(&home)?.settings(&name).ca_cert;
            let storage = ProfileStorage::new(&home, &name, hostname_override());
            (builder.storage(storage), name, ca)
        }
    };
    let mut builder = builder.tls(tls_for(global, profile_ca.as_deref())?);
    if global.cache {
        let dir = home.join("cache");
        create_private_dir(&dir)?;
        builder = builder.cache(CacheOptions::file(dir.join(format!("{cache_name}.cache"))));
    }
    Ok(builder.build()?)
}

/// The offline cache file of a `KSM_CONFIG` run: one per device (client id), so configurations
/// of different apps or devices never share or evict each other's entries. The name is a hash:
/// it does not reveal the client id.
fn env_cache_name(config: &Config) -> String {
    let device = config
        .get(keys::CLIENT_ID)
        .or_else(|| config.get(keys::CLIENT_KEY))
        .unwrap_or_default();
    let digest = coffer_crypto::sha256(device.as_bytes());
    format!("ksm-config-{}", coffer_crypto::encode_hex(&digest[..8]))
}

/// The exit code of a partly failed delete: "not found" when every failure says so,
/// "refused" when every failure is a refusal (read-only share, a shared folder's root).
pub fn delete_failure_code(errors: &[(String, String)]) -> u8 {
    let kind = |e: &str| {
        let e = e.to_lowercase();
        if e.contains("does not exist") || e.contains("not found") {
            code::NOT_FOUND
        } else if e.contains("read-only") || e.contains("only its owner") || e.contains("denied") {
            code::REFUSED
        } else {
            code::ERROR
        }
    };
    let mut kinds = errors.iter().map(|(_, e)| kind(e));
    match kinds.next() {
        Some(first) if kinds.all(|k| k == first) => first,
        _ => code::ERROR,
    }
}

/// Runs a client command: logging set up, failures given their exit code and hint.
pub async fn finish(work: impl Future<Output = Result<()>>) -> Result<()> {
    init_logging();
    work.await.map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_failures_get_the_code_they_share() {
        let e = |m: &str| ("uid".to_owned(), m.to_owned());
        let missing = e("Record x is not shared with this application or does not exist.");
        let read_only = e(
            "Record x is shared read-only with this application; the owner must share it as editable.",
        );
        let other = e("database error");
        assert_eq!(
            delete_failure_code(&[missing.clone(), missing.clone()]),
            code::NOT_FOUND
        );
        assert_eq!(
            delete_failure_code(std::slice::from_ref(&read_only)),
            code::REFUSED
        );
        assert_eq!(
            delete_failure_code(&[e(
                "Folder x is a shared folder; only its owner can delete it."
            )]),
            code::REFUSED
        );
        assert_eq!(delete_failure_code(&[missing, read_only]), code::ERROR);
        assert_eq!(delete_failure_code(&[other]), code::ERROR);
        assert_eq!(delete_failure_code(&[]), code::ERROR);
    }
}
