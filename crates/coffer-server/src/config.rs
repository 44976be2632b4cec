//! Server configuration, resolved and validated before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the TLS certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsSource {
    /// A self-signed ECDSA certificate made (once) in `DATA_DIR/tls/` for localhost,
    /// 127.0.0.1 and the public host.
    SelfSigned,
    /// PEM files given by the operator.
    Files {
        /// Certificate chain (leaf first).
        cert: PathBuf,
        /// Private key (PKCS#8, SEC1 or RSA).
        key: PathBuf,
    },
}

/// Where the server's P-256 key pair(s) come from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// `DATA_DIR/server-key.json`, generated on first start.
    DataDir,
    /// A key file shared by several instances (never generated: it must exist).
    File(PathBuf),
    /// The key file's JSON given directly (e.g. from a secret store via `COFFER_SERVER_KEY`).
    Inline(String),
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// State directory (database, keys, files, TLS material).
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `host[:port]` clients use to reach the server; goes into configs and file URLs.
    pub public_host: String,
    /// TLS certificate source.
    pub tls: TlsSource,
    /// Server key source.
    pub server_key: KeySource,
    /// Directory of encrypted file contents (may be shared by instances); none = `DATA_DIR/files`.
    pub files_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://…`; none = SQLite in the data dir.
    pub database_url: Option<String>,
    /// Most connections of the PostgreSQL pool (per instance); unused with SQLite.
    pub db_max_connections: u32,
    /// Largest accepted API request body.
    pub max_request_bytes: usize,
    /// Largest accepted encrypted file.
    pub max_file_bytes: u64,
    /// How long download links stay valid.
    pub download_ttl: Duration,
    /// How long an announced upload may take to arrive.
    pub upload_ttl: Duration,
    /// Owner session lifetime.
    pub session_ttl: Duration,
    /// How long a `general`/`rotation` transaction may stay open before it is rolled back.
    pub transaction_ttl: Duration,
    /// KSM requests per client and endpoint; none = unlimited.
    pub client_rate_limit: Option<crate::throttle::RateLimit>,
    /// Owner login attempts per email; none = unlimited.
    pub login_rate_limit: Option<crate::throttle::RateLimit>,
}

impl ServerConfig {
    /// Defaults for a data dir; `listen` 127.0.0.1:8443 and a matching public host.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_host: "127.0.0.1:8443".to_owned(),
            tls: TlsSource::SelfSigned,
            server_key: KeySource::DataDir,
            database_url: None,
            db_max_connections: 10,
            files_dir: None,
            max_request_bytes: 8 * 1024 * 1024,
            max_file_bytes: 100 * 1024 * 1024,
            download_ttl: Duration::from_secs(15 * 60),
            upload_ttl: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(12 * 3600),
            transaction_ttl: Duration::from_secs(3600),
            client_rate_limit: None,
            login_rate_limit: None,
        }
    }

    /// The public host without a port (what one-time tokens carry: a token cannot hold a port).
    pub fn public_host_name(&self) -> &str {
        host_without_port(&self.public_host)
    }

    /// Base URL of the server as clients see it.
    pub fn public_base_url(&self) -> String {
        format!("https://{}", self.public_host)
    }
}

/// Strips a `:port` suffix (IPv6 literals in brackets are kept whole).
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(host_without_port("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(host_without_port("vault.example.com"), "vault.example.com");
        assert_eq!(host_without_port("[::1]:443"), "[::1]");
    }
}
