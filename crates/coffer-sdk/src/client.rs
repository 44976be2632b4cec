//! `SecretsManager`: configuration, binding, the request loop and the record operations.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_crypto::{
    KeyPair, PublicKey, SymmetricKey, decode_lenient, derive_client_id, encode_std, gcm_open,
    gcm_seal,
};
use coffer_proto::record::RecordData;
use serde::Serialize;

use crate::builder::RecordCreate;
use crate::cache::{CacheOptions, CachedAnswer, OfflineCache};
use crate::config::{Config, ConfigStorage, FileStorage, MemoryStorage, env, keys, parse_bool};
use crate::error::{Result, SdkError};
use crate::files::KeeperFile;
use crate::record::{Record, RecordLink};
use crate::transport::{
    Attempt, CLIENT_VERSION, CallKeys, HttpSettings, RetryPolicy, Tls, build_http, post_once,
};
use crate::wire;

/// Region codes of the official SDKs (PROTOCOL.md §2.2).
const REGIONS: [(&str, &str); 7] = [
    ("US", "keepersecurity.com"),
    ("EU", "keepersecurity.eu"),
    ("AU", "keepersecurity.com.au"),
    ("GOV", "govcloud.keepersecurity.us"),
    ("JP", "keepersecurity.jp"),
    ("CA", "keepersecurity.ca"),
    ("IL5", "il5.keepersecurity.us"),
];

/// The default server key id written to new configurations (as the Python and Rust SDKs do).
const DEFAULT_KEY_ID: &str = "10";

/// A UID no record has: the filter of a binding call made before a write (as the official
/// CLI binds).
const BIND_PROBE_UID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

/// Builds a [`SecretsManager`]. Nothing touches the network until the first call.
///
/// ```no_run
/// use coffer_sdk::{SecretsManager, Tls, FileStorage};
/// # fn demo() -> coffer_sdk::Result<()> {
/// let sm = SecretsManager::builder()
///     .token("vault.example.com:Ab3...one-time-token")
///     .hostname("vault.example.com:8443")
///     .storage(FileStorage::new("client-config.json"))
///     .tls(Tls::ExtraCaFile("cert.pem".into()))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SecretsManagerBuilder {
    token: Option<String>,
    hostname: Option<String>,
    storage: Option<Box<dyn ConfigStorage>>,
    server_public_key: Option<String>,
    server_public_key_id: Option<String>,
    tls: Tls,
    proxy: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    cache: Option<CacheOptions>,
    use_env: bool,
    max_download: u64,
}

/// Default of [`SecretsManagerBuilder::max_download_size`]: 1 GiB.
pub const DEFAULT_MAX_DOWNLOAD: u64 = 1 << 30;

impl Default for SecretsManagerBuilder {
    fn default() -> Self {
        Self {
            token: None,
            hostname: None,
            storage: None,
            server_public_key: None,
            server_public_key_id: None,
            tls: Tls::System,
            proxy: None,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            cache: None,
            use_env: true,
            max_download: DEFAULT_MAX_DOWNLOAD,
        }
    }
}

impl SecretsManagerBuilder {
    /// A one-time token, `KEY` or `host:KEY` (a token cannot carry a port: give it with
    /// [`hostname`](Self::hostname)). Ignored when the storage is already bound with it.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The server, `host[:port]` or a region code (`US`, `EU`, …). Takes precedence over the
    /// token's host prefix and is written to the configuration.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Where the configuration lives. Default: `KSM_CONFIG` when set, else the file
    /// `KSM_CONFIG_FILE` or `client-config.json`.
    pub fn storage(mut self, storage: impl ConfigStorage + 'static) -> Self {
        self.storage = Some(Box::new(storage));
        self
    }

    /// A configuration given as JSON or base64 text (kept in memory).
    pub fn config_text(self, text: &str) -> Result<Self> {
        Ok(self.storage(MemoryStorage::from_text(text)?))
    }

    /// The server's public key (B64URL, 65-byte point) and its id, for self-hosted servers
    /// whose key is not already in the configuration.
    pub fn server_public_key(mut self, key: impl Into<String>, key_id: impl Into<String>) -> Self {
        self.server_public_key = Some(key.into());
        self.server_public_key_id = Some(key_id.into());
        self
    }

    /// Which server certificates to trust (default: the system's; `COFFER_CA_CERT` names an
    /// extra PEM file). `KSM_SKIP_VERIFY=true` disables verification.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// Send every request through this proxy (`http://[user:pass@]host:port`).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Time allowed for one API call, and the longest a file transfer may go without any data
    /// moving (default 60 s). A file transfer has no fixed total limit: a download may take as
    /// long as data keeps arriving, an upload this long plus one second per 32 KiB.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most bytes one file download may bring (default [`DEFAULT_MAX_DOWNLOAD`], 1 GiB).
    ///
    /// Downloads are held in memory until their GCM tag is verified, so this bounds what a
    /// broken or hostile server can make the client allocate. A file whose metadata records
    /// its size is further limited to that size plus the encryption overhead: a server that
    /// sends more is refused as soon as it does. Larger downloads fail with
    /// [`SdkError::DownloadTooLarge`].
    pub fn max_download_size(mut self, bytes: u64) -> Self {
        self.max_download = bytes;
        self
    }

    /// Time allowed to open a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Throttling retry policy (default: 5 retries, 11 s doubling, ±25 % jitter).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Enables the offline cache.
    pub fn cache(mut self, options: CacheOptions) -> Self {
        self.cache = Some(options);
        self
    }

    /// Whether to read `KSM_CONFIG`, `KSM_TOKEN`, `KSM_HOSTNAME`, `KSM_SKIP_VERIFY` and
    /// `COFFER_CA_CERT` (default true).
    pub fn use_env(mut self, use_env: bool) -> Self {
        self.use_env = use_env;
        self
    }

    /// Prepares the configuration (PROTOCOL.md §4.4) and the HTTP client. No network call.
    pub fn build(self) -> Result<SecretsManager> {
        let env_var = |name: &str| {
            if self.use_env {
                std::env::var(name).ok().filter(|v| !v.trim().is_empty())
            } else {
                None
            }
        };
        let (storage, token): (Box<dyn ConfigStorage>, Option<String>) = match self.storage {
            Some(storage) => (storage, self.token.or_else(|| env_var(env::KSM_TOKEN))),
            None => match env_var(env::KSM_CONFIG) {
                // As in the official SDKs, a configuration in KSM_CONFIG makes the token moot.
                Some(text) => {
                    if self.token.is_some() {
                        tracing::warn!(
                            "KSM_CONFIG is set and no storage was given: using it and ignoring the token"
                        );
                    }
                    (Box::new(MemoryStorage::from_text(&text)?), None)
                }
                None => (
                    Box::new(FileStorage::default_location()),
                    self.token.or_else(|| env_var(env::KSM_TOKEN)),
                ),
            },
        };
        let mut config = storage.load()?;
        let before = config.clone();
        initialize(
            &mut config,
            token.as_deref(),
            self.hostname.as_deref(),
            self.server_public_key.as_deref(),
            self.server_public_key_id.as_deref(),
        )?;
        if config != before {
            storage.save(&config)?;
        }
        let state = State::from_config(config)?;
        let mut tls = self.tls;
        if tls == Tls::System
            && let Some(path) = env_var(env::COFFER_CA_CERT)
        {
            tls = Tls::ExtraCaFile(path.into());
        }
        if let Some(value) = env_var(env::KSM_SKIP_VERIFY) {
            match parse_bool(&value) {
                Some(true) => tls = Tls::SkipVerify,
                Some(false) => {}
                None => {
                    return Err(SdkError::Config(format!(
                        "KSM_SKIP_VERIFY={value:?} is not a boolean (true/false)"
                    )));
                }
            }
        }
        let settings = HttpSettings {
            tls,
            proxy: self.proxy,
            connect_timeout: self.connect_timeout,
        };
        let http = build_http(&settings)?;
        Ok(SecretsManager {
            inner: Arc::new(Inner {
                http,
                timeout: self.timeout,
                max_download: self.max_download,
                storage,
                state: Mutex::new(state),
                bind_lock: tokio::sync::Mutex::new(()),
                retry: self.retry,
                cache: self.cache.map(OfflineCache::new),
                hostname_override: env_var(env::KSM_HOSTNAME),
            }),
        })
    }
}

/// A parsed one-time token (PROTOCOL.md §4.3).
#[derive(Debug, PartialEq)]
pub(crate) struct Token {
    pub host: Option<String>,
    pub client_key: String,
    pub server_key: Option<(String, String)>,
}

pub(crate) fn parse_token(text: &str) -> Result<Token> {
    let text = text.trim();
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() == 1 {
        return Ok(Token {
            host: None,
            client_key: text.to_owned(),
            server_key: None,
        });
    }
    let prefix = parts[0];
    if prefix.eq_ignore_ascii_case("IL5") && parts.len() == 4 {
        if parts[1..].iter().any(|p| p.is_empty()) {
            return Err(SdkError::Invalid(
                "malformed IL5 one-time token: expected IL5:KEY:KEY_ID:SERVER_PUBLIC_KEY".into(),
            ));
        }
        return Ok(Token {
            host: Some("il5.keepersecurity.us".into()),
            client_key: parts[1].to_owned(),
            server_key: Some((parts[2].to_owned(), parts[3].to_owned())),
        });
    }
    let host = REGIONS
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(prefix))
        .map_or_else(|| prefix.to_owned(), |(_, host)| (*host).to_owned());
    if host.is_empty() || parts[1].is_empty() {
        return Err(SdkError::Invalid(
            "malformed one-time token: expected HOST:KEY".into(),
        ));
    }
    Ok(Token {
        host: Some(host),
        client_key: parts[1].to_owned(),
        server_key: None,
    })
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Prepares a configuration for use (PROTOCOL.md §4.4). Pure: no I/O, no network.
pub(crate) fn initialize(
    config: &mut Config,
    token: Option<&str>,
    hostname: Option<&str>,
    server_public_key: Option<&str>,
    server_public_key_id: Option<&str>,
) -> Result<()> {
    let token = token.map(parse_token).transpose()?;
    // Host: explicit > token prefix > existing configuration. A token host that only lacks
    // the configured port does not replace it.
    if let Some(host) = hostname.map(str::trim).filter(|h| !h.is_empty()) {
        config.set(keys::HOSTNAME, host);
    } else if let Some(host) = token.as_ref().and_then(|t| t.host.as_deref()) {
        let keep = config
            .get(keys::HOSTNAME)
            .is_some_and(|current| strip_port(current) == host);
        if !keep {
            config.set(keys::HOSTNAME, host);
        }
    }
    if let Some((id, key)) = token.as_ref().and_then(|t| t.server_key.as_ref()) {
        config.set(keys::SERVER_PUBLIC_KEY_ID, id.as_str());
        config.set(keys::SERVER_PUBLIC_KEY, key.as_str());
    }
    if let Some(key) = server_public_key {
        config.set(keys::SERVER_PUBLIC_KEY, key.trim());
    }
    if let Some(id) = server_public_key_id {
        config.set(keys::SERVER_PUBLIC_KEY_ID, id.trim());
    }
    if config.get(keys::SERVER_PUBLIC_KEY_ID).is_none() {
        config.set(keys::SERVER_PUBLIC_KEY_ID, DEFAULT_KEY_ID);
    }
    if let Some(id) = config.get(keys::SERVER_PUBLIC_KEY_ID)
        && id.parse::<u32>().is_err()
    {
        return Err(SdkError::Config(format!(
            "serverPublicKeyId must be a decimal integer, not {id:?}"
        )));
    }

    let mut reinitialise = false;
    if let Some(token) = &token {
        let key = client_key_bytes(&token.client_key)?;
        let client_id = derive_client_id(key.expose());
        match config.get(keys::CLIENT_ID) {
            Some(existing) if existing == client_id => {
                if config.get(keys::APP_KEY).is_some() {
                    tracing::warn!(
                        "the configuration is already bound with this one-time token; the token is ignored"
                    );
                    config.remove(keys::CLIENT_KEY);
                    return Ok(());
                }
                // Initialised but never bound: start again with a fresh device key.
                reinitialise = true;
            }
            Some(_) => {
                return Err(SdkError::Config(
                    "the configuration is already initialised with a different one-time token; \
                     use an empty configuration for a new token"
                        .into(),
                ));
            }
            None => reinitialise = true,
        }
    }
    if !reinitialise && config.get(keys::CLIENT_ID).is_some() {
        if config.get(keys::APP_KEY).is_some() {
            config.remove(keys::CLIENT_KEY);
        }
        if config.get(keys::PRIVATE_KEY).is_none() {
            return Err(SdkError::Config(
                "the configuration has a clientId but no privateKey".into(),
            ));
        }
        return Ok(());
    }
    let client_key_text = match &token {
        Some(token) => token.client_key.clone(),
        None => config
            .get(keys::CLIENT_KEY)
            .map(str::to_owned)
            .ok_or_else(|| {
                SdkError::Config(
                    "no one-time token and no bound configuration: give a token (builder `token`, \
                 or KSM_TOKEN) or a configuration (builder `storage`, or KSM_CONFIG)"
                        .into(),
                )
            })?,
    };
    let key = client_key_bytes(&client_key_text)?;
    let device = KeyPair::generate();
    config.set(keys::CLIENT_KEY, client_key_text);
    config.set(keys::CLIENT_ID, derive_client_id(key.expose()));
    config.set(keys::PRIVATE_KEY, encode_std(&device.to_pkcs8()));
    config.remove(keys::APP_KEY);
    config.remove(keys::OWNER_PUBLIC_KEY);
    if config.get(keys::HOSTNAME).is_none() {
        return Err(SdkError::Config(
            "the hostname must be present in the token or provided as a parameter".into(),
        ));
    }
    Ok(())
}

fn client_key_bytes(text: &str) -> Result<SymmetricKey> {
    decode_lenient(text)
        .ok()
        .and_then(|b| SymmetricKey::from_slice(&b).ok())
        .ok_or_else(|| {
            SdkError::Invalid("the one-time token's key is not base64 of 32 bytes".into())
        })
}

/// Keys and identity derived from the configuration.
pub(crate) struct State {
    pub config: Config,
    pub device: Arc<KeyPair>,
    pub device_public: String,
    pub client_id: String,
    pub app_key: Option<SymmetricKey>,
    pub owner_key: Option<PublicKey>,
    pub server_key: Option<PublicKey>,
}

impl State {
    fn from_config(config: Config) -> Result<Self> {
        let bad = |what: &str| SdkError::Config(format!("{what} in the configuration is invalid"));
        let der = decode_lenient(config.get(keys::PRIVATE_KEY).unwrap_or(""))
            .map_err(|_| bad("privateKey"))?;
        let device = KeyPair::from_pkcs8(&der).map_err(|_| bad("privateKey"))?;
        let app_key = match config.get(keys::APP_KEY) {
            Some(text) => Some(
                decode_lenient(text)
                    .ok()
                    .and_then(|b| SymmetricKey::from_slice(&b).ok())
                    .ok_or_else(|| bad("appKey"))?,
            ),
            None => None,
        };
        let public_key = |key: &str| -> Result<Option<PublicKey>> {
            match config.get(key) {
                Some(text) => decode_lenient(text)
                    .ok()
                    .and_then(|b| PublicKey::from_bytes(&b).ok())
                    .map(Some)
                    .ok_or_else(|| bad(key)),
                None => Ok(None),
            }
        };
        let owner_key = public_key(keys::OWNER_PUBLIC_KEY)?;
        let server_key = public_key(keys::SERVER_PUBLIC_KEY)?;
        let client_id = config
            .get(keys::CLIENT_ID)
            .ok_or_else(|| bad("clientId"))?
            .to_owned();
        Ok(Self {
            device_public: encode_std(device.public_key().as_bytes()),
            device: Arc::new(device),
            client_id,
            app_key,
            owner_key,
            server_key,
            config,
        })
    }
}

pub(crate) struct Inner {
    pub http: reqwest::Client,
    /// Deadline of one API call; see [`SecretsManagerBuilder::timeout`].
    pub timeout: Duration,
    /// See [`SecretsManagerBuilder::max_download_size`].
    pub max_download: u64,
    storage: Box<dyn ConfigStorage>,
    state: Mutex<State>,
    bind_lock: tokio::sync::Mutex<()>,
    retry: RetryPolicy,
    cache: Option<OfflineCache>,
    hostname_override: Option<String>,
}

/// The client of a KSM server (Coffer or any other).
///
/// Cheap to clone (all clones share one HTTP connection pool and configuration); every
/// method takes `&self` and may be called from many tasks at once.
#[derive(Clone)]
pub struct SecretsManager {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for SecretsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManager")
            .field("storage", &self.inner.storage.describe())
            .finish_non_exhaustive()
    }
}

/// Filters of [`SecretsManager::get_secrets_with_options`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryOptions {
    /// Only these records (empty = no record filter).
    pub records_filter: Vec<String>,
    /// Only records in these folders (empty = no folder filter).
    pub folders_filter: Vec<String>,
    /// Ask the server for record links.
    pub request_links: bool,
}

/// The application's title and type, from `appData`.
#[derive(Debug, Clone, PartialEq)]
pub struct AppInfo {
    /// Application title.
    pub title: String,
    /// Application type (`app`).
    pub app_type: String,
}

/// The answer of a `get_secret` call: the records plus what came with them.
///
/// Dereferences to the `Vec<Record>`, so it can be indexed and iterated directly.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The decrypted records, in server order (a record shared twice appears twice).
    pub records: Vec<Record>,
    /// Server warnings (e.g. requested UIDs that are not shared with the application).
    pub warnings: Vec<String>,
    /// The application, when the server sent `appData`.
    pub app: Option<AppInfo>,
    /// Device expiry (ms since the epoch), when the server sets one.
    pub expires_on: Option<i64>,
    /// Set when the server was unavailable and the offline cache answered.
    pub cached: Option<CachedAnswer>,
    /// Records that could not be decrypted (UIDs); they are left out of `records`.
    pub bad_records: Vec<String>,
}

impl Secrets {
    /// True when this answer came from the offline cache rather than the server.
    pub fn from_cache(&self) -> bool {
        self.cached.is_some()
    }

    /// The records.
    pub fn into_records(self) -> Vec<Record> {
        self.records
    }
}

impl Deref for Secrets {
    type Target = Vec<Record>;
    fn deref(&self) -> &Vec<Record> {
        &self.records
    }
}

impl DerefMut for Secrets {
    fn deref_mut(&mut self) -> &mut Vec<Record> {
        &mut self.records
    }
}

impl IntoIterator for Secrets {
    type Item = Record;
    type IntoIter = std::vec::IntoIter<Record>;
    fn into_iter(self) -> Self::IntoIter {
        self.records.into_iter()
    }
}

/// Transaction types of [`SaveOptions`] (PROTOCOL.md §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionType {
    /// A general transaction.
    General,
    /// A password rotation.
    Rotation,
}

impl TransactionType {
    fn as_str(self) -> &'static str {
        match self {
            TransactionType::General => "general",
            TransactionType::Rotation => "rotation",
        }
    }
}

/// Options of [`SecretsManager::save_with_options`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SaveOptions {
    /// Open a transaction: the update stays revertible until
    /// [`SecretsManager::complete_transaction`].
    pub transaction_type: Option<TransactionType>,
    /// File attachments to detach (UIDs); they are also removed from the `fileRef` fields.
    pub links_to_remove: Vec<String>,
}

/// Where [`SecretsManager::create_secret_with_options`] puts a new record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOptions {
    /// The shared folder (or any sub-folder inside one).
    pub folder_uid: String,
    /// A sub-folder of `folder_uid` to place the record in.
    pub subfolder_uid: Option<String>,
}

/// The outcome for one UID of a delete call.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteOutcome {
    /// The record or folder UID.
    pub uid: String,
    /// The server's code: `ok` on success.
    pub response_code: String,
    /// Why it failed.
    pub error_message: Option<String>,
}

impl DeleteOutcome {
    /// True when the object was deleted.
    pub fn is_ok(&self) -> bool {
        self.response_code == "ok"
    }
}

/// The wire form of a read request, also the cache's key.
pub(crate) struct ReadRequest {
    pub endpoint: &'static str,
    pub body: wire::GetSecretBody,
}

impl SecretsManager {
    /// A builder.
    pub fn builder() -> SecretsManagerBuilder {
        SecretsManagerBuilder::default()
    }

    /// A client from a one-time token and a configuration storage (the common case).
    pub fn with_token(token: &str, storage: impl ConfigStorage + 'static) -> Result<Self> {
        Self::builder().token(token).storage(storage).build()
    }

    /// A client from the environment: `KSM_CONFIG` (or the default configuration file) and
    /// `KSM_TOKEN`.
    pub fn from_env() -> Result<Self> {
        Self::builder().build()
    }

    /// The current configuration (a copy).
    pub fn config(&self) -> Config {
        self.state().config.clone()
    }

    /// True once the one-time token has been redeemed.
    pub fn is_bound(&self) -> bool {
        self.state().app_key.is_some()
    }

    /// The device's client id.
    pub fn client_id(&self) -> String {
        self.state().client_id.clone()
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn app_key(&self) -> Result<SymmetricKey> {
        self.state()
            .app_key
            .clone()
            .ok_or_else(|| SdkError::Binding("the client is not bound yet".into()))
    }

    pub(crate) fn owner_key(&self) -> Result<PublicKey> {
        self.state().owner_key.clone().ok_or_else(|| {
            SdkError::Config(
                "the configuration has no appOwnerPublicKey (needed to create records and \
                 files); bind the client again with a new one-time token"
                    .into(),
            )
        })
    }

    fn update_config(&self, change: impl FnOnce(&mut State)) -> Result<()> {
        let config = {
            let mut state = self.state();
            change(&mut state);
            state.config.clone()
        };
        self.inner.storage.save(&config)
    }

    /// `https://host[:port]` of the server for this request.
    pub(crate) fn base_url(&self) -> Result<String> {
        let configured = match &self.inner.hostname_override {
            Some(h) => h.clone(),
            None => self
                .state()
                .config
                .get(keys::HOSTNAME)
                .map(str::to_owned)
                .ok_or_else(|| SdkError::Config("the configuration has no hostname".into()))?,
        };
        let host = REGIONS
            .iter()
            .find(|(code, _)| *code == configured)
            .map_or(configured.as_str(), |(_, host)| host);
        let host = host
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        if host.is_empty() {
            return Err(SdkError::Config("the configured hostname is empty".into()));
        }
        let base = format!("https://{host}");
        // A host the URL parser refuses (`h:99999`, `x y`, `[`) is a configuration error, not
        // a failure to reach the server.
        match reqwest::Url::parse(&base) {
            Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(base),
            _ => Err(SdkError::Config(format!(
                "the configured hostname {configured:?} is not HOST or HOST:PORT"
            ))),
        }
    }

    /// Posts one call, retrying on throttling and following one key-id change.
    pub(crate) async fn post<T: Serialize>(
        &self,
        endpoint: &str,
        body: &T,
        with_public_key: bool,
    ) -> Result<Vec<u8>> {
        let url = format!("{}/api/rest/sm/v1/{endpoint}", self.base_url()?);
        let mut throttles = 0u32;
        let mut key_switched = false;
        loop {
            let (device, device_public, client_id, server_key, key_id) = {
                let state = self.state();
                let server_key = state.server_key.clone().ok_or_else(|| {
                    SdkError::Config(
                        "no server public key: a self-hosted server's key must be in the \
                         configuration (serverPublicKey) or given to the builder"
                            .into(),
                    )
                })?;
                (
                    state.device.clone(),
                    state.device_public.clone(),
                    state.client_id.clone(),
                    server_key,
                    state
                        .config
                        .get(keys::SERVER_PUBLIC_KEY_ID)
                        .unwrap_or(DEFAULT_KEY_ID)
                        .to_owned(),
                )
            };
            let payload = serde_json::to_vec(&wire::Envelope {
                client_version: CLIENT_VERSION,
                client_id: &client_id,
                public_key: with_public_key.then_some(device_public.as_str()),
                body,
            })
            .map_err(|e| SdkError::Invalid(format!("cannot serialise the request: {e}")))?;
            let keys = CallKeys {
                server_key: &server_key,
                key_id: &key_id,
                device: &device,
            };
            match post_once(&self.inner.http, self.inner.timeout, &url, &keys, &payload).await {
                Attempt::Ok(plain) => return Ok(plain),
                Attempt::Throttled(retry_after) => {
                    if throttles >= self.inner.retry.max_retries {
                        return Err(SdkError::Throttled {
                            retries: throttles,
                            retry_after,
                        });
                    }
                    let wait = self.inner.retry.delay(throttles, retry_after);
                    tracing::warn!(
                        endpoint,
                        ?wait,
                        attempt = throttles + 1,
                        "throttled by the server; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    throttles += 1;
                }
                Attempt::Key(Some(new_id)) if !key_switched && new_id != key_id => {
                    tracing::warn!(old = %key_id, new = %new_id, "the server asks for another key id");
                    self.update_config(|state| {
                        state.config.set(keys::SERVER_PUBLIC_KEY_ID, new_id.clone());
                    })?;
                    key_switched = true;
                }
                Attempt::Key(wanted) => {
                    return Err(SdkError::Server {
                        status: 401,
                        code: "key".into(),
                        message: format!(
                            "the server refuses server key id {key_id}{}; the configured \
                             serverPublicKey does not match this server",
                            wanted
                                .map(|w| format!(" and asks for {w}"))
                                .unwrap_or_default()
                        ),
                    });
                }
                Attempt::Failed(err) => return Err(err),
            }
        }
    }

    /// Redeems the one-time token with a binding call, unless already bound. Returns the
    /// binding answer when this call bound the device.
    async fn bind_with(&self, request: &ReadRequest) -> Result<Option<Vec<u8>>> {
        if self.is_bound() {
            return Ok(None);
        }
        let _guard = self.inner.bind_lock.lock().await;
        if self.is_bound() {
            return Ok(None);
        }
        let answer = self
            .post(request.endpoint, &request.body, true)
            .await
            .map_err(|e| match e {
                SdkError::Server { code, message, .. } => SdkError::Binding(format!(
                    "{message} ({code}); a one-time token can be used only once and may have \
                     expired: ask for a new one"
                )),
                other => other,
            })?;
        let part: wire::BindingPart = serde_json::from_slice(&answer)
            .map_err(|e| SdkError::Protocol(format!("binding answer is not JSON: {e}")))?;
        let encrypted = part.encrypted_app_key.ok_or_else(|| {
            SdkError::Binding("the server did not send encryptedAppKey in its answer".into())
        })?;
        let client_key = {
            let state = self.state();
            let text = state.config.get(keys::CLIENT_KEY).ok_or_else(|| {
                SdkError::Binding("the configuration lost its clientKey before binding".into())
            })?;
            client_key_bytes(text)?
        };
        let app_key = decode_lenient(&encrypted)
            .ok()
            .and_then(|b| gcm_open(&client_key, &b).ok())
            .and_then(|b| SymmetricKey::from_slice(&b).ok())
            .ok_or_else(|| {
                SdkError::Binding(
                    "encryptedAppKey does not decrypt with the one-time token's key".into(),
                )
            })?;
        let owner_key = match part.app_owner_public_key {
            Some(text) => Some(
                decode_lenient(&text)
                    .ok()
                    .and_then(|b| PublicKey::from_bytes(&b).ok())
                    .ok_or_else(|| {
                        SdkError::Protocol("appOwnerPublicKey is not a P-256 public key".into())
                    })?,
            ),
            None => None,
        };
        self.update_config(|state| {
            state
                .config
                .set(keys::APP_KEY, encode_std(app_key.expose()));
            if let Some(owner) = &owner_key {
                state
                    .config
                    .set(keys::OWNER_PUBLIC_KEY, encode_std(owner.as_bytes()));
                state.owner_key = Some(owner.clone());
            }
            state.config.remove(keys::CLIENT_KEY);
            state.app_key = Some(app_key.clone());
        })?;
        tracing::info!("the one-time token was redeemed; this device is bound");
        Ok(Some(answer))
    }

    /// Makes sure the device is bound before a write.
    pub(crate) async fn ensure_bound(&self) -> Result<()> {
        self.bind_with(&ReadRequest {
            endpoint: "get_secret",
            body: wire::GetSecretBody {
                requested_records: Some(vec![BIND_PROBE_UID.to_owned()]),
                ..Default::default()
            },
        })
        .await
        .map(|_| ())
    }

    /// A read call (`get_secret` / `get_folders`): binds on first use (and then repeats the
    /// call, as the protocol says), and falls back to the offline cache when the server is
    /// unavailable.
    pub(crate) async fn read(
        &self,
        request: &ReadRequest,
    ) -> Result<(Vec<u8>, Option<CachedAnswer>)> {
        self.bind_with(request).await?;
        let result = self.post(request.endpoint, &request.body, false).await;
        let Some(cache) = &self.inner.cache else {
            return result.map(|plain| (plain, None));
        };
        let (app_key, client_id) = {
            let state = self.state();
            (state.app_key.clone(), state.client_id.clone())
        };
        let Some(app_key) = app_key else {
            return result.map(|plain| (plain, None));
        };
        let cache_request = serde_json::to_vec(&request.body).unwrap_or_default();
        match result {
            Ok(plain) => {
                cache.store(
                    &app_key,
                    &client_id,
                    request.endpoint,
                    &cache_request,
                    &plain,
                );
                Ok((plain, None))
            }
            Err(err) if err.is_unavailable() => {
                match cache.load(&app_key, &client_id, request.endpoint, &cache_request) {
                    Some((plain, info)) => {
                        tracing::warn!(
                            endpoint = request.endpoint,
                            age = ?info.age,
                            error = %err,
                            "the server is unavailable; answering from the offline cache"
                        );
                        Ok((plain, Some(info)))
                    }
                    None => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Clears the offline cache (if enabled).
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.clear();
        }
    }

    // ---- reading ------------------------------------------------------------------------

    /// The records with the given UIDs, or all records shared with the application when
    /// `uids` is empty.
    pub async fn get_secrets(&self, uids: &[&str]) -> Result<Secrets> {
        self.get_secrets_with_options(&QueryOptions {
            records_filter: uids.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
        .await
    }

    /// One record by UID; [`SdkError::NotFound`] when it is not shared with the application.
    pub async fn get_secret(&self, uid: &str) -> Result<Record> {
        self.get_secrets(&[uid])
            .await?
            .into_iter()
            .find(|r| r.uid() == uid)
            .ok_or_else(|| {
                SdkError::NotFound(format!(
                    "record {uid} is not shared with this application or does not exist"
                ))
            })
    }

    /// All records shared with the application.
    pub async fn get_all_secrets(&self) -> Result<Secrets> {
        self.get_secrets(&[]).await
    }

    /// Records, filtered by record and/or folder UIDs, optionally with links.
    pub async fn get_secrets_with_options(&self, options: &QueryOptions) -> Result<Secrets> {
        let request = ReadRequest {
            endpoint: "get_secret",
            body: wire::GetSecretBody {
                requested_records: (!options.records_filter.is_empty())
                    .then(|| options.records_filter.clone()),
                requested_folders: (!options.folders_filter.is_empty())
                    .then(|| options.folders_filter.clone()),
                request_links: options.request_links.then_some(true),
            },
        };
        let (plain, cached) = self.read(&request).await?;
        let mut secrets = self.parse_secrets(&plain)?;
        secrets.cached = cached;
        Ok(secrets)
    }

    /// Every record whose title equals `title` exactly.
    pub async fn get_secrets_by_title(&self, title: &str) -> Result<Vec<Record>> {
        Ok(self
            .get_all_secrets()
            .await?
            .into_iter()
            .filter(|r| r.title() == title)
            .collect())
    }

    /// The first record whose title equals `title` exactly.
    pub async fn get_secret_by_title(&self, title: &str) -> Result<Option<Record>> {
        Ok(self.get_secrets_by_title(title).await?.into_iter().next())
    }

    /// Decrypts a `get_secret` answer.
    pub(crate) fn parse_secrets(&self, plain: &[u8]) -> Result<Secrets> {
        let response: wire::SecretsResponse<'_> = serde_json::from_slice(plain)
            .map_err(|e| SdkError::Protocol(format!("get_secret answer: {e}")))?;
        let app_key = self.app_key()?;
        let app = match &response.app_data {
            Some(text) if !text.is_empty() => {
                let plain = decode_lenient(text)
                    .ok()
                    .and_then(|b| gcm_open(&app_key, &b).ok())
                    .ok_or_else(|| SdkError::Decrypt("the application data".into()))?;
                let value: serde_json::Value = serde_json::from_slice(&plain)
                    .map_err(|_| SdkError::Decrypt("the application data".into()))?;
                Some(AppInfo {
                    title: value["title"].as_str().unwrap_or_default().to_owned(),
                    app_type: value["type"].as_str().unwrap_or_default().to_owned(),
                })
            }
            _ => None,
        };
        // Work list: (wire record, wrapping key, shared folder uid).
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for record in response.records.unwrap_or_default() {
            jobs.push((record, app_key.clone(), None));
        }
        let mut bad_records = Vec::new();
        for folder in response.folders.unwrap_or_default() {
            let Some(folder_key) = open_key(&app_key, &folder.folder_key) else {
                tracing::warn!(folder = %folder.folder_uid, "skipping a shared folder whose key does not decrypt");
                continue;
            };
            for record in folder.records.unwrap_or_default() {
                jobs.push((record, folder_key.clone(), Some(folder.folder_uid.clone())));
            }
        }
        let results = decrypt_records(jobs);
        let mut records = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(record) => records.push(record),
                Err(uid) => bad_records.push(uid),
            }
        }
        Ok(Secrets {
            records,
            warnings: response.warnings.unwrap_or_default(),
            app,
            expires_on: response.expires_on.filter(|e| *e > 0),
            cached: None,
            bad_records,
        })
    }

    /// Re-reads a record from the server (new revision, files, data). Never answered from the
    /// offline cache: when the server is unavailable this fails and `record` is left as it was
    /// (a cached copy could hold an older revision than the one just written).
    pub async fn refresh(&self, record: &mut Record) -> Result<()> {
        let secrets = self.get_secrets(&[record.uid()]).await?;
        if let Some(cached) = &secrets.cached {
            return Err(SdkError::Network(format!(
                "the server is unavailable (only a cached copy {:?} old could be read)",
                cached.age
            )));
        }
        let fresh = secrets
            .into_iter()
            .find(|r| r.uid == record.uid)
            .ok_or_else(|| {
                SdkError::NotFound(format!(
                    "record {} is no longer shared with this application",
                    record.uid
                ))
            })?;
        *record = fresh;
        Ok(())
    }

    // ---- writing ------------------------------------------------------------------------

    /// Writes a changed record back (`update_secret`), then re-reads its revision so the
    /// next save works.
    pub async fn save(&self, record: &mut Record) -> Result<()> {
        self.save_with_options(record, &SaveOptions::default())
            .await
    }

    /// [`save`](Self::save) with a transaction type and/or attachments to detach.
    pub async fn save_with_options(
        &self,
        record: &mut Record,
        options: &SaveOptions,
    ) -> Result<()> {
        self.ensure_bound().await?;
        // What is written: the record's data without references to the detached files. The
        // caller's record changes only once the server has accepted it.
        let mut data = record.data.clone();
        if !options.links_to_remove.is_empty() {
            let remove = &options.links_to_remove;
            for field in data.fields.iter_mut().filter(|f| f.field_type == "fileRef") {
                field.value.retain(|v| {
                    v.as_str()
                        .is_none_or(|uid| !remove.iter().any(|r| r == uid))
                });
            }
        }
        let body = wire::UpdateSecretBody {
            record_uid: record.uid.clone(),
            data: encode_std(&gcm_seal(&record.key, &record_json(&data))),
            revision: record.revision,
            transaction_type: options.transaction_type.map(TransactionType::as_str),
            links2_remove: (!options.links_to_remove.is_empty())
                .then(|| options.links_to_remove.clone()),
        };
        self.post("update_secret", &body, false).await?;
        record.data = data;
        if !options.links_to_remove.is_empty() {
            record
                .files
                .retain(|f| !options.links_to_remove.iter().any(|r| r == f.uid()));
        }
        self.after_write(record).await;
        Ok(())
    }

    /// Refreshes revision and files after a successful write; a failure here does not undo
    /// the write, so it is only logged.
    async fn after_write(&self, record: &mut Record) {
        let data = record.data.clone();
        match self.refresh(record).await {
            Ok(()) => {
                // Keep local field objects (same content as what was just written).
                record.data = data;
            }
            Err(err) => tracing::warn!(
                record = %record.uid,
                error = %err,
                "the record was saved but its new revision could not be read; re-read it before saving again"
            ),
        }
    }

    /// Commits (`rollback = false`) or reverts (`rollback = true`) the open transaction of a
    /// record.
    pub async fn complete_transaction(&self, record_uid: &str, rollback: bool) -> Result<()> {
        self.ensure_bound().await?;
        let endpoint = if rollback {
            "rollback_secret_update"
        } else {
            "finalize_secret_update"
        };
        self.post(
            endpoint,
            &wire::RecordUidBody {
                record_uid: record_uid.to_owned(),
            },
            false,
        )
        .await?;
        Ok(())
    }

    /// Creates a record in a shared folder or one of its sub-folders; returns its UID.
    pub async fn create_secret(&self, folder_uid: &str, record: RecordCreate) -> Result<String> {
        self.create_secret_with_options(
            &CreateOptions {
                folder_uid: folder_uid.to_owned(),
                subfolder_uid: None,
            },
            record,
        )
        .await
    }

    /// Creates a record at the place `options` names; returns its UID.
    pub async fn create_secret_with_options(
        &self,
        options: &CreateOptions,
        record: RecordCreate,
    ) -> Result<String> {
        let data = record.build()?;
        self.ensure_bound().await?;
        let owner_key = self.owner_key()?;
        let folders = self.get_folders().await?;
        let target_uid = options
            .subfolder_uid
            .as_deref()
            .unwrap_or(&options.folder_uid);
        let target = folders
            .iter()
            .find(|f| f.uid() == target_uid)
            .ok_or_else(|| {
                SdkError::NotFound(format!(
                    "folder {target_uid} is not shared with this application"
                ))
            })?;
        let root_uid = target.shared_folder_uid().to_owned();
        if options.subfolder_uid.is_some() {
            let parent = folders.iter().find(|f| f.uid() == options.folder_uid);
            if parent.is_none_or(|p| p.shared_folder_uid() != root_uid) {
                return Err(SdkError::Invalid(format!(
                    "sub-folder {target_uid} is not inside folder {}",
                    options.folder_uid
                )));
            }
        }
        let root = folders
            .iter()
            .find(|f| f.uid() == root_uid)
            .ok_or_else(|| SdkError::NotFound(format!("shared folder {root_uid}")))?;
        let record_key = SymmetricKey::generate();
        let uid = coffer_crypto::make_uid();
        let body = wire::CreateSecretBody {
            record_uid: uid.clone(),
            record_key: encode_std(&owner_key.ecies_seal(record_key.expose())),
            folder_uid: root_uid.clone(),
            folder_key: encode_std(&gcm_seal(&root.key, record_key.expose())),
            data: encode_std(&gcm_seal(&record_key, &record_json(&data))),
            sub_folder_uid: (target_uid != root_uid).then(|| target_uid.to_owned()),
        };
        self.post("create_secret", &body, false).await?;
        Ok(uid)
    }

    /// Deletes records; one outcome per UID (a failure for one UID does not fail the call).
    pub async fn delete_secret(&self, uids: &[&str]) -> Result<Vec<DeleteOutcome>> {
        self.ensure_bound().await?;
        let plain = self
            .post(
                "delete_secret",
                &wire::DeleteSecretBody {
                    record_uids: uids.iter().map(|s| (*s).to_owned()).collect(),
                },
                false,
            )
            .await?;
        let response: wire::DeleteResponse = serde_json::from_slice(&plain)
            .map_err(|e| SdkError::Protocol(format!("delete_secret answer: {e}")))?;
        Ok(response
            .records
            .unwrap_or_default()
            .into_iter()
            .map(|r| DeleteOutcome {
                uid: r.record_uid.unwrap_or_default(),
                response_code: r.response_code,
                error_message: r.error_message,
            })
            .collect())
    }
}

/// Record JSON as written: compact, `custom` always present, unknown keys kept.
pub(crate) fn record_json(data: &RecordData) -> Vec<u8> {
    serde_json::to_vec(data).unwrap_or_default()
}

/// Decodes a base64 field of an answer: the standard padded form the protocol prescribes
/// (§3.11) on the fast path, anything else leniently.
pub(crate) fn b64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .or_else(|| decode_lenient(text).ok())
}

pub(crate) fn open_key(wrapping: &SymmetricKey, text: &str) -> Option<SymmetricKey> {
    let bytes = b64(text)?;
    let plain = gcm_open(wrapping, &bytes).ok()?;
    SymmetricKey::from_slice(&plain).ok()
}

type Job<'a> = (wire::WireRecord<'a>, SymmetricKey, Option<String>);

/// Answers with fewer records than this are decrypted on the calling thread alone.
const PARALLEL_MIN_RECORDS: usize = 128;
/// Records a thread takes at a time from the shared work list.
const BATCH: usize = 32;
/// Most threads used for one answer (the calling thread included).
const MAX_THREADS: usize = 4;

/// Decrypts records, about 4 µs each (half of it parsing the record JSON). A large answer is
/// shared with scoped helper threads (one fewer than the available cores, at most
/// [`MAX_THREADS`] in all): every thread, the calling one included, takes batches of
/// [`BATCH`] records from one list until it is empty. On a busy machine a helper may start
/// late; the calling thread then simply takes more batches, so the call is never slower than
/// decrypting alone by more than one batch. Results keep the answer's order.
fn decrypt_records(jobs: Vec<Job<'_>>) -> Vec<Result<Record, String>> {
    let threads = if jobs.len() < PARALLEL_MIN_RECORDS {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(MAX_THREADS)
    };
    if threads == 1 {
        return jobs.into_iter().map(decrypt_record).collect();
    }
    let total = jobs.len();
    let mut jobs = jobs.into_iter();
    let mut batches = Vec::with_capacity(total.div_ceil(BATCH));
    loop {
        let batch: Vec<Job<'_>> = jobs.by_ref().take(BATCH).collect();
        if batch.is_empty() {
            break;
        }
        batches.push(std::sync::Mutex::new(batch));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(batch) = batches.get(i) else {
                return done;
            };
            let batch = std::mem::take(
                &mut *batch
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            done.push((i, batch.into_iter().map(decrypt_record).collect::<Vec<_>>()));
        }
    };
    let mut done = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut done = work();
        for helper in helpers {
            match helper.join() {
                Ok(theirs) => done.extend(theirs),
                // A panic while decrypting is re-raised on the calling thread.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        done
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    let mut results = Vec::with_capacity(total);
    for (_, batch) in done {
        results.extend(batch);
    }
    results
}

fn decrypt_record(job: Job<'_>) -> Result<Record, String> {
    let (wire, wrapping, folder_uid) = job;
    let uid = wire.record_uid.clone();
    let fail = |what: &str| {
        tracing::warn!(record = %uid, "skipping a record: {what}");
        uid.clone()
    };
    // Python and Rust fall back to the wrapping key itself when `recordKey` is missing.
    let key = match wire.record_key.as_ref() {
        "" => wrapping.clone(),
        text => open_key(&wrapping, text).ok_or_else(|| fail("its key does not decrypt"))?,
    };
    let sealed = b64(&wire.data).ok_or_else(|| fail("its data is not base64"))?;
    let plain = gcm_open(&key, &sealed).map_err(|_| fail("its data does not decrypt"))?;
    let data = RecordData::from_slice(&plain).map_err(|_| fail("its data is not record JSON"))?;
    let files = wire
        .files
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| match KeeperFile::decrypt(&key, &f) {
            Ok(file) => Some(file),
            Err(file_uid) => {
                tracing::warn!(record = %uid, file = %file_uid, "skipping a file attachment that does not decrypt");
                None
            }
        })
        .collect();
    Ok(Record {
        uid: wire.record_uid,
        key,
        revision: wire.revision,
        is_editable: wire.is_editable,
        folder_uid: folder_uid.or(wire.folder_uid),
        inner_folder_uid: wire.inner_folder_uid.filter(|s| !s.is_empty()),
        data,
        raw: Arc::new(plain),
        files,
        links: wire.links.map(|links| {
            links
                .into_iter()
                .map(|l| RecordLink {
                    record_uid: l.record_uid,
                    data: l.data,
                    path: l.path,
                })
                .collect()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const KEY_CLIENT_ID: &str =
        "HDWtY7+/cWpJ86C1KBh6DgWY4ovDJBrjliUeY7fvzOEVISYTHNlkqkoyz0IHQrqO0GLFvBPnFb6JvPOzemsZEg==";

    /// A sealed record for [`decrypt_records`]: every seventh one has a key that does not
    /// open, every eleventh one data that is not record JSON.
    fn sealed_job(i: usize, wrapping: &SymmetricKey) -> Job<'static> {
        let key = SymmetricKey::generate();
        let record_key = if i % 7 == 3 {
            encode_std(&gcm_seal(&SymmetricKey::generate(), key.expose()))
        } else {
            encode_std(&gcm_seal(wrapping, key.expose()))
        };
        let plain = if i % 11 == 5 {
            b"not json".to_vec()
        } else {
            format!(r#"{{"title":"record {i}","type":"login","fields":[]}}"#).into_bytes()
        };
        let record = wire::WireRecord {
            record_uid: format!("uid-{i}"),
            record_key: record_key.into(),
            data: encode_std(&gcm_seal(&key, &plain)).into(),
            revision: i as i64,
            ..Default::default()
        };
        (record, wrapping.clone(), None)
    }

    #[test]
    fn large_answers_decrypt_in_order_with_failures_in_place() {
        let wrapping = SymmetricKey::generate();
        // Below and above the size from which helper threads share the work, and a size
        // that leaves a partial last batch.
        for count in [
            5,
            PARALLEL_MIN_RECORDS - 1,
            PARALLEL_MIN_RECORDS,
            1000 + BATCH / 2,
        ] {
            let jobs: Vec<_> = (0..count).map(|i| sealed_job(i, &wrapping)).collect();
            let results = decrypt_records(jobs);
            assert_eq!(results.len(), count);
            for (i, result) in results.iter().enumerate() {
                // A record that does not decrypt is reported by its uid, in its place.
                match (i % 7 == 3 || i % 11 == 5, result) {
                    (true, Err(uid)) => assert_eq!(uid, &format!("uid-{i}")),
                    (false, Ok(record)) => {
                        assert_eq!(record.uid, format!("uid-{i}"));
                        assert_eq!(record.revision, i as i64);
                        assert_eq!(record.data.title, format!("record {i}"));
                    }
                    (_, other) => panic!("record {i} of {count}: unexpected {other:?}"),
                }
            }
        }
    }

    #[test]
    fn tokens_parse_like_the_official_sdks() {
        let t = parse_token(" eu:abc ").unwrap();
        assert_eq!(t.host.as_deref(), Some("keepersecurity.eu"));
        assert_eq!(t.client_key, "abc");
        let t = parse_token("vault.example.com:abc:ignored").unwrap();
        assert_eq!(t.host.as_deref(), Some("vault.example.com"));
        let t = parse_token("abc").unwrap();
        assert_eq!(t.host, None);
        let t = parse_token("IL5:key:7:SERVERKEY").unwrap();
        assert_eq!(t.host.as_deref(), Some("il5.keepersecurity.us"));
        assert_eq!(t.server_key, Some(("7".into(), "SERVERKEY".into())));
        assert!(parse_token(":abc").is_err());
        assert!(parse_token("IL5:key::x").is_err());
    }

    #[test]
    fn initialisation_follows_the_protocol() {
        let mut config = Config::new();
        initialize(
            &mut config,
            Some(&format!("ksm.example.test:{KEY}")),
            None,
            Some("BFFc"),
            Some("100"),
        )
        .unwrap();
        assert_eq!(config.get(keys::HOSTNAME), Some("ksm.example.test"));
        assert_eq!(config.get(keys::CLIENT_ID), Some(KEY_CLIENT_ID));
        assert_eq!(config.get(keys::CLIENT_KEY), Some(KEY));
        assert_eq!(config.get(keys::SERVER_PUBLIC_KEY_ID), Some("100"));
        let der = decode_lenient(config.get(keys::PRIVATE_KEY).unwrap()).unwrap();
        assert_eq!(der.len(), 138);
        assert!(KeyPair::from_pkcs8(&der).is_ok());

        // The same token again, never bound: a fresh device key.
        let first_key = config.get(keys::PRIVATE_KEY).unwrap().to_owned();
        initialize(&mut config, Some(KEY), None, None, None).unwrap();
        assert_ne!(config.get(keys::PRIVATE_KEY).unwrap(), first_key);

        // Bound: the token is ignored and clientKey dropped.
        config.set(keys::APP_KEY, encode_std(&[1u8; 32]));
        let bound_key = config.get(keys::PRIVATE_KEY).unwrap().to_owned();
        initialize(&mut config, Some(KEY), None, None, None).unwrap();
        assert_eq!(config.get(keys::PRIVATE_KEY).unwrap(), bound_key);
        assert_eq!(config.get(keys::CLIENT_KEY), None);

        // A different token on a bound configuration is refused.
        let other = coffer_crypto::encode_url(&[9u8; 32]);
        assert!(initialize(&mut config, Some(&other), None, None, None).is_err());
    }

    #[test]
    fn hostname_precedence_and_missing_host() {
        // A token host without the configured port keeps the configured host:port.
        let mut config = Config::new();
        config.set(keys::HOSTNAME, "127.0.0.1:8443");
        config.set(keys::CLIENT_KEY, KEY);
        initialize(&mut config, None, None, None, None).unwrap();
        assert_eq!(config.get(keys::HOSTNAME), Some("127.0.0.1:8443"));
        assert_eq!(config.get(keys::SERVER_PUBLIC_KEY_ID), Some("10"));
        let mut config = Config::new();
        initialize(
            &mut config,
            Some(&format!("127.0.0.1:{KEY}")),
            Some("127.0.0.1:9443"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(config.get(keys::HOSTNAME), Some("127.0.0.1:9443"));
        let mut config = Config::new();
        let err = initialize(&mut config, Some(KEY), None, None, None).unwrap_err();
        assert!(err.to_string().contains("hostname"), "{err}");
        let mut config = Config::new();
        assert!(initialize(&mut config, None, Some("h"), None, None).is_err());
        let mut config = Config::new();
        assert!(initialize(&mut config, Some("h:notbase64!"), None, None, None).is_err());
    }
}
