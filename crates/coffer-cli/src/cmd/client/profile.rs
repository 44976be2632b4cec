//! `coffer profile …`: binding one-time tokens and managing the saved KSM configurations.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use coffer_owner::{OwnerClient, OwnerError, ServerTrust};
use coffer_sdk::config::keys;
use coffer_sdk::{Config, MemoryStorage, RetryPolicy, SdkError, SecretsManager, Tls};
use serde_json::json;

use super::profiles::{DEFAULT_PROFILE, Profiles, check_name, profiles_path};
use super::{code, fail, note, stdout_is_terminal, table, tls_for, warn};
use crate::client_cli::{ClientGlobal, ProfileArgs, ProfileCommand};
use crate::home::coffer_home;
use crate::output;

/// A UID no record has: the filter of the reachability probe.
const PROBE_UID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

/// Runs `coffer profile …`.
pub async fn run(args: ProfileArgs) -> Result<()> {
    let global = args.global;
    let home = coffer_home()?;
    match args.command {
        ProfileCommand::Init {
            token,
            token_flag,
            hostname,
            server_public_key,
            server_public_key_id,
            force,
            json,
        } => {
            let key = server_public_key.zip(server_public_key_id);
            init(
                &global,
                &home,
                token.or(token_flag),
                hostname,
                key,
                force,
                json,
            )
            .await
        }
        ProfileCommand::List { json } => list(&home, json),
        ProfileCommand::Active { name, json } => {
            check_name(&name)?;
            let (_lock, mut profiles) = Profiles::load_for_change(&home)?;
            profiles.resolve(Some(&name))?;
            profiles.active = Some(name.clone());
            profiles.save(&home)?;
            if json {
                return output::json(&json!({ "active": name }));
            }
            output::line(format!("Profile {name:?} is now active."))
        }
        ProfileCommand::Export { name, json } => {
            let profiles = Profiles::load(&home)?;
            let name = profiles.resolve(name.as_deref().or(global.profile_name()))?;
            let config = profiles
                .config(&name)
                .ok_or_else(|| fail(code::NOT_FOUND, format!("there is no profile {name:?}")))?;
            if stdout_is_terminal() {
                warn("this config is the device's identity: whoever holds it reads its secrets");
            }
            if json {
                return output::json(&json!({ "profile": name, "config": config.to_base64() }));
            }
            output::line(config.to_base64())
        }
        ProfileCommand::Import {
            config,
            force,
            json,
        } => import(&global, &home, config, force, json),
        ProfileCommand::Delete { name, json } => {
            check_name(&name)?;
            let (_lock, mut profiles) = Profiles::load_for_change(&home)?;
            profiles.resolve(Some(&name))?;
            let was_active = profiles.active.as_deref() == Some(name.as_str());
            profiles.remove(&name);
            let mut message = format!("Deleted profile {name:?}.");
            if profiles.active.is_none() {
                if profiles.profiles.len() == 1 {
                    let only = profiles.profiles.keys().next().cloned();
                    if let Some(only) = only {
                        message.push_str(&format!(" {only:?} is now active."));
                        profiles.active = Some(only);
                    }
                } else if was_active && !profiles.profiles.is_empty() {
                    message.push_str(" No profile is active now: `coffer profile active NAME`.");
                }
            }
            profiles.save(&home)?;
            if json {
                return output::json(&json!({ "deleted": name, "active": profiles.active }));
            }
            output::line(message)
        }
    }
}

/// Reads a secret input: the argument, else a hidden prompt on a terminal, else standard
/// input.
fn secret_input(arg: Option<String>, prompt: &str, what: &str) -> Result<String> {
    let text = match arg {
        Some(text) => text,
        None if std::io::stdin().is_terminal() => {
            rpassword::prompt_password(prompt).with_context(|| format!("cannot read the {what}"))?
        }
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read the {what} from standard input"))?;
            text
        }
    };
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(fail(code::USAGE, format!("no {what} given")));
    }
    Ok(text)
}

/// What `profile init` was given.
enum Credential {
    /// A one-time token; `host` is its prefix.
    Token { text: String, host: Option<String> },
    /// A KSM configuration (e.g. the `config` of `vault client add`).
    Config(Config),
}

fn bad_token(detail: &str) -> anyhow::Error {
    fail(
        code::USAGE,
        format!(
            "this is not a one-time token: {detail}. A token is HOST:KEY as `coffer vault client \
             add` prints it, KEY being 43 characters of base64url; copy it whole"
        ),
    )
}

/// Tells a token from a configuration and checks its shape (no network).
fn parse_credential(text: &str) -> Result<Credential> {
    let looks_like_config = text.starts_with('{') || (!text.contains(':') && text.len() > 60);
    if looks_like_config {
        let config = Config::parse(text).map_err(|e| {
            fail(
                code::USAGE,
                format!("this is neither a one-time token nor a KSM config: {e}"),
            )
        })?;
        if config.get(keys::CLIENT_KEY).is_none() && config.get(keys::CLIENT_ID).is_none() {
            return Err(fail(
                code::USAGE,
                "this KSM config holds neither a clientKey nor a clientId",
            ));
        }
        return Ok(Credential::Config(config));
    }
    let parts: Vec<&str> = text.split(':').collect();
    let (host, key) = match parts.as_slice() {
        [key] => (None, *key),
        [host, key] => (Some(*host), *key),
        [prefix, key, _, _] if prefix.eq_ignore_ascii_case("IL5") => (Some(*prefix), *key),
        _ => return Err(bad_token("it has too many ':'")),
    };
    if host.is_some_and(|h| h.trim().is_empty()) {
        return Err(bad_token("the host before ':' is empty"));
    }
    let key_ok = coffer_crypto::decode_lenient(key.trim()).is_ok_and(|bytes| bytes.len() == 32);
    if !key_ok {
        return Err(bad_token("its key is not base64 of 32 bytes"));
    }
    Ok(Credential::Token {
        text: text.to_owned(),
        host: host.map(str::to_owned),
    })
}

/// Checks and normalises `HOST[:PORT]` (an `https://` prefix and a trailing `/` are dropped).
pub fn normalize_host(text: &str) -> Result<String> {
    let bad = |why: &str| {
        fail(
            code::USAGE,
            format!("{text:?} is not a server host name: {why} (expected HOST or HOST:PORT)"),
        )
    };
    let trimmed = text.trim();
    if trimmed.starts_with("http://") {
        return Err(bad("Coffer speaks HTTPS only"));
    }
    let host = trimmed.trim_start_matches("https://").trim_end_matches('/');
    if host.is_empty() {
        return Err(bad("it is empty"));
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(bad("not an IPv6 address inside [ ]"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (&host[..host.len() - after.len()], Some(port)),
                None => return Err(bad("unexpected text after ']'")),
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if !name.starts_with('[')
        && (name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return Err(bad("a host name has only letters, digits, '-' and '.'"));
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(bad("the port must be a number from 1 to 65535"));
    }
    Ok(host.to_owned())
}

/// Asks a Coffer server for its public key (and so checks that it is reachable over TLS).
async fn discover(
    hostname: &str,
    trust: &ServerTrust,
    from_token: bool,
) -> Result<(String, String)> {
    let base = format!("https://{hostname}");
    let client = OwnerClient::new(&base, trust).map_err(|e| {
        fail(
            code::USAGE,
            format!("cannot set up the connection to {base}: {e}"),
        )
    })?;
    match client.info().await {
        Ok(info) => Ok((info.public_key, info.key_id.to_string())),
        Err(OwnerError::Http(text)) => {
            let mut message = format!(
                "cannot reach {base}: {text}\nNothing was saved and the token was not used."
            );
            let lower = text.to_ascii_lowercase();
            if lower.contains("certificate") || lower.contains("unknownissuer") {
                message.push_str(
                    "\nhint: the server's TLS certificate is not trusted: pass --ca-cert PEM (e.g. \
                     the server's DATA_DIR/tls/cert.pem)",
                );
            } else if from_token && !hostname.contains(':') {
                message.push_str(
                    "\nhint: one-time tokens carry no port: when the server does not listen on \
                     443, pass --hostname HOST:PORT",
                );
            }
            Err(fail(code::UNREACHABLE, message))
        }
        Err(other) => Err(fail(
            code::ERROR,
            format!(
                "{base} does not answer like a Coffer server ({other}); for another KSM server \
                 pass --server-public-key and --server-public-key-id. Nothing was saved and the \
                 token was not used."
            ),
        )),
    }
}

/// Checks, with a throw-away client key, that the server's KSM endpoint answers and accepts
/// the server key — without spending the real token.
async fn probe(hostname: &str, key: &str, key_id: &str, tls: Tls) -> Result<()> {
    let throwaway = coffer_crypto::encode_url(&coffer_crypto::random_bytes::<32>());
    let sm = SecretsManager::builder()
        .use_env(false)
        .storage(MemoryStorage::new())
        .token(throwaway)
        .hostname(hostname)
        .server_public_key(key, key_id)
        .tls(tls)
        .retry_policy(RetryPolicy::none())
        .build()
        .map_err(|e| fail(code::USAGE, format!("{e}")))?;
    let untouched = "Nothing was saved and the token was not used.";
    match sm.get_secrets(&[PROBE_UID]).await {
        Ok(_) | Err(SdkError::Throttled { .. }) => Ok(()),
        Err(SdkError::Binding(message)) => {
            if message.contains("transmission key") || message.contains("(key)") {
                Err(fail(
                    code::USAGE,
                    format!(
                        "https://{hostname} does not accept the server public key: {message}\n{untouched}"
                    ),
                ))
            } else {
                // The expected refusal of an unknown client: the server speaks KSM.
                Ok(())
            }
        }
        Err(SdkError::Network(text)) => Err(fail(
            code::UNREACHABLE,
            format!("cannot reach https://{hostname}: {text}\n{untouched}"),
        )),
        Err(SdkError::Http { status, .. }) => Err(fail(
            code::ERROR,
            format!(
                "https://{hostname} answered HTTP {status} on the KSM endpoint: it does not speak \
                 the KSM protocol there. {untouched}"
            ),
        )),
        Err(other) => Err(anyhow::Error::new(other)
            .context(format!("checking https://{hostname} failed. {untouched}"))),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

async fn init(
    global: &ClientGlobal,
    home: &Path,
    token: Option<String>,
    hostname: Option<String>,
    server_key: Option<(String, u32)>,
    force: bool,
    json: bool,
) -> Result<()> {
    let name = global.profile_name().unwrap_or(DEFAULT_PROFILE).to_owned();
    check_name(&name)?;
    let profiles = Profiles::load(home)?;
    if profiles.profiles.contains_key(&name) && !force {
        return Err(fail(
            code::ERROR,
            format!(
                "profile {name:?} already exists: pass --profile NAME for another one, or --force \
                 to replace it (the token was not used)"
            ),
        ));
    }
    // Without a token: KSM_TOKEN, else a KSM_CONFIG that is not bound yet (e.g. the one
    // `coffer server --dev` writes to dev.env), else standard input.
    let token = token.or_else(|| {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        from_env("KSM_TOKEN").or_else(|| {
            from_env("KSM_CONFIG")
                .filter(|text| Config::parse(text).is_ok_and(|c| c.get(keys::APP_KEY).is_none()))
        })
    });
    let text = secret_input(token, "One-time token: ", "one-time token")?;
    let credential = parse_credential(&text)?;
    let (token_host, mut config) = match &credential {
        Credential::Token { host, .. } => (host.clone(), Config::new()),
        Credential::Config(config) => (None, config.clone()),
    };
    let host = match hostname
        .as_deref()
        .or(token_host.as_deref())
        .or(config.get(keys::HOSTNAME))
    {
        Some(host) => normalize_host(host)?,
        None => {
            return Err(fail(
                code::USAGE,
                "the token has no host: pass --hostname HOST[:PORT]",
            ));
        }
    };
    if let Some(ca) = &global.ca_cert
        && !ca.is_file()
    {
        return Err(fail(
            code::USAGE,
            format!("the CA certificate {} does not exist", ca.display()),
        ));
    }
    let tls = tls_for(global, None)?;
    let (key, key_id) = match (server_key, config.get(keys::SERVER_PUBLIC_KEY)) {
        (Some((key, id)), _) => (key, id.to_string()),
        (None, Some(key)) => (
            key.to_owned(),
            config
                .get(keys::SERVER_PUBLIC_KEY_ID)
                .unwrap_or("10")
                .to_owned(),
        ),
        (None, None) => {
            let from_token = hostname.is_none() && matches!(credential, Credential::Token { .. });
            let trust = match &tls {
                Tls::SkipVerify => ServerTrust::SkipVerify,
                Tls::ExtraCaFile(path) => ServerTrust::ExtraCa(path.clone()),
                _ => ServerTrust::System,
            };
            discover(&host, &trust, from_token).await?
        }
    };
    let key_ok = coffer_crypto::decode_lenient(&key).is_ok_and(|b| b.len() == 65);
    if !key_ok {
        return Err(fail(
            code::USAGE,
            "the server public key is not base64url of a 65-byte P-256 point",
        ));
    }
    probe(&host, &key, &key_id, tls.clone()).await?;

    // Bind in memory: nothing is written unless the server accepts the token.
    config.set(keys::HOSTNAME, host.clone());
    let mut builder = SecretsManager::builder()
        .use_env(false)
        .storage(MemoryStorage::from_config(config))
        .hostname(host.clone())
        .server_public_key(key, key_id)
        .tls(tls);
    if let Credential::Token { text, .. } = &credential {
        builder = builder.token(text.clone());
    }
    let sm = builder
        .build()
        .map_err(|e| fail(code::USAGE, e.to_string()))?;
    let secrets = sm.get_all_secrets().await.map_err(|e| {
        let code = match &e {
            SdkError::Binding(_) => code::REFUSED,
            SdkError::Network(_) => code::UNREACHABLE,
            _ => code::ERROR,
        };
        fail(code, format!("{e}\nNothing was saved."))
    })?;
    let config = sm.config();

    let (_lock, mut profiles) = Profiles::load_for_change(home)?;
    profiles.set_config(&name, &config);
    let mut settings = profiles.settings(&name);
    settings.ca_cert = global.ca_cert.as_deref().map(absolute);
    settings.app = secrets.app.as_ref().map(|a| a.title.clone());
    profiles.settings.insert(name.clone(), settings);
    let make_active = profiles
        .active
        .as_ref()
        .is_none_or(|a| a == &name || !profiles.profiles.contains_key(a));
    if make_active {
        profiles.active = Some(name.clone());
    }
    profiles.save(home)?;

    let app = secrets.app.as_ref().map(|a| a.title.clone());
    if json {
        return output::json(&json!({
            "profile": name,
            "hostname": host,
            "app": app,
            "records": secrets.len(),
            "active": make_active,
            "path": profiles_path(home),
        }));
    }
    output::line(format!(
        "Profile {name:?} is ready: application {:?} on {host}, {} record(s) shared.",
        app.unwrap_or_default(),
        secrets.len()
    ))?;
    if make_active {
        output::line("It is the active profile. Try: coffer secret list")
    } else {
        output::line(format!(
            "Use it with --profile {name}, or make it the active one: coffer profile active {name}"
        ))
    }
}

fn import(
    global: &ClientGlobal,
    home: &Path,
    text: Option<String>,
    force: bool,
    json: bool,
) -> Result<()> {
    let name = global.profile_name().unwrap_or(DEFAULT_PROFILE).to_owned();
    check_name(&name)?;
    let (_lock, mut profiles) = Profiles::load_for_change(home)?;
    if profiles.profiles.contains_key(&name) && !force {
        return Err(fail(
            code::ERROR,
            format!(
                "profile {name:?} already exists: pass --profile NAME for another one, or --force to replace it"
            ),
        ));
    }
    let text = secret_input(text, "KSM config (base64): ", "KSM config")?;
    let config = Config::parse(&text)
        .map_err(|e| fail(code::USAGE, format!("this is not a KSM config: {e}")))?;
    let bound = config.get(keys::CLIENT_ID).is_some()
        && config.get(keys::PRIVATE_KEY).is_some()
        && config.get(keys::APP_KEY).is_some();
    if !bound && config.get(keys::CLIENT_KEY).is_none() {
        return Err(fail(
            code::USAGE,
            "this KSM config is incomplete: it needs clientId, privateKey and appKey (a bound \
             device) or a clientKey (a one-time token)",
        ));
    }
    match config.get(keys::HOSTNAME) {
        Some(host) => {
            normalize_host(host)?;
        }
        None => return Err(fail(code::USAGE, "this KSM config has no hostname")),
    }
    if let Some(ca) = &global.ca_cert
        && !ca.is_file()
    {
        return Err(fail(
            code::USAGE,
            format!("the CA certificate {} does not exist", ca.display()),
        ));
    }
    profiles.set_config(&name, &config);
    let mut settings = profiles.settings(&name);
    if let Some(ca) = &global.ca_cert {
        settings.ca_cert = Some(absolute(ca));
    }
    profiles.settings.insert(name.clone(), settings);
    let make_active = profiles
        .active
        .as_ref()
        .is_none_or(|a| a == &name || !profiles.profiles.contains_key(a));
    if make_active {
        profiles.active = Some(name.clone());
    }
    profiles.save(home)?;
    if json {
        return output::json(&json!({
            "profile": name,
            "hostname": config.get(keys::HOSTNAME),
            "bound": bound,
            "active": make_active,
        }));
    }
    output::line(format!(
        "Imported profile {name:?}{}{}",
        if bound {
            ""
        } else {
            " (it binds its one-time token on first use)"
        },
        if make_active {
            "; it is the active profile."
        } else {
            "."
        }
    ))
}

fn list(home: &Path, json: bool) -> Result<()> {
    let profiles = Profiles::load(home)?;
    let rows: Vec<(String, String, String, bool, bool, Option<PathBuf>)> = profiles
        .profiles
        .keys()
        .map(|name| {
            let config = profiles.config(name).unwrap_or_default();
            let settings = profiles.settings(name);
            (
                name.clone(),
                config.get(keys::HOSTNAME).unwrap_or_default().to_owned(),
                settings.app.unwrap_or_default(),
                config.get(keys::APP_KEY).is_some(),
                profiles.active.as_deref() == Some(name.as_str()),
                settings.ca_cert,
            )
        })
        .collect();
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(name, host, app, bound, active, ca)| {
                json!({ "name": name, "hostname": host, "app": app, "bound": bound, "active": active, "ca_cert": ca })
            })
            .collect();
        return output::json(&json!({ "active": profiles.active, "profiles": list }));
    }
    if rows.is_empty() {
        note("no profiles yet: run `coffer profile init TOKEN`");
        return Ok(());
    }
    let state = |bound: bool| if bound { "bound" } else { "not bound yet" };
    if stdout_is_terminal() {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|(name, host, app, bound, active, _)| {
                vec![
                    if *active { "*".into() } else { String::new() },
                    name.clone(),
                    host.clone(),
                    app.clone(),
                    state(*bound).into(),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["", "NAME", "HOSTNAME", "APP", "STATE"], &cells)
        );
        return Ok(());
    }
    for (name, host, app, bound, active, _) in rows {
        output::line(format!(
            "{name}\t{host}\t{}\t{}\t{}",
            crate::output::sanitize(&app),
            state(bound),
            if active { "active" } else { "" }
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    #[test]
    fn tokens_and_configs_are_told_apart_and_checked() {
        match parse_credential(&format!("vault.example.com:{KEY}")).unwrap() {
            Credential::Token { host, .. } => {
                assert_eq!(host.as_deref(), Some("vault.example.com"))
            }
            Credential::Config(_) => panic!("a token"),
        }
        assert!(matches!(
            parse_credential(KEY).unwrap(),
            Credential::Token { host: None, .. }
        ));
        let mut config = Config::new();
        config.set(keys::HOSTNAME, "h:8443");
        config.set(keys::CLIENT_KEY, KEY);
        assert!(matches!(
            parse_credential(&config.to_base64()).unwrap(),
            Credential::Config(_)
        ));
        for bad in [
            "h:short",
            ":abc",
            "a:b:c",
            "h:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8!",
        ] {
            assert!(parse_credential(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names_are_checked() {
        assert_eq!(
            normalize_host("https://vault.example.com/").unwrap(),
            "vault.example.com"
        );
        assert_eq!(normalize_host("127.0.0.1:8443").unwrap(), "127.0.0.1:8443");
        assert_eq!(normalize_host("[::1]:8443").unwrap(), "[::1]:8443");
        for bad in [
            "", "http://h", "h:0", "h:99999", "h:x", "bad host", "h/x", "[::1",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad}");
        }
    }
}
