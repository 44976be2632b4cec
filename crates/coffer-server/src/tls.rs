//! TLS: the operator's certificate, or a self-signed ECDSA P-256 certificate made on first start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig as RustlsConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ServerConfig, TlsSource, host_without_port};
use crate::fsutil::write_private_file;

/// Paths of the self-signed material inside the data dir.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("hosts.txt"),
    )
}

/// Builds the rustls configuration, creating a self-signed certificate when needed.
pub fn server_tls(config: &ServerConfig) -> Result<Arc<RustlsConfig>, String> {
    let (cert_path, key_path) = match &config.tls {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::SelfSigned => ensure_self_signed(&config.data_dir, &config.public_host)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("cannot read TLS certificate {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid TLS certificate {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("cannot read TLS private key {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = RustlsConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key do not fit together: {e}"))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    tls.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| format!("TLS session tickets unavailable: {e}"))?;
    Ok(Arc::new(tls))
}

/// The names the self-signed certificate covers.
fn subject_names(public_host: &str) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let host = host_without_port(public_host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    if !names.iter().any(|n| n == host) {
        names.push(host.to_owned());
    }
    names
}

/// Makes (or reuses) `DATA_DIR/tls/cert.pem` and `key.pem` for the public host. A certificate
/// made for another host set is replaced.
fn ensure_self_signed(data_dir: &Path, public_host: &str) -> Result<(PathBuf, PathBuf), String> {
    let (cert_path, key_path, hosts_path) = self_signed_paths(data_dir);
    let names = subject_names(public_host);
    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&hosts_path).unwrap_or_default();
    if cert_path.exists() && key_path.exists() && current == wanted {
        return Ok((cert_path, key_path));
    }
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("cannot generate TLS key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| format!("invalid public host for a certificate: {e}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Coffer self-signed");
    // A self-signed end-entity certificate (not a CA): clients trust it directly as their
    // anchor, which both OpenSSL and webpki accept; webpki refuses a CA used as end entity.
    params.is_ca = rcgen::IsCa::NoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(5 * 365 * 24 * 3600)).into();
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| format!("cannot make TLS certificate: {e}"))?;
    write_private_file(&key_path, key_pair.serialize_pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
    std::fs::write(&cert_path, cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
    std::fs::write(&hosts_path, wanted)
        .map_err(|e| format!("cannot write {}: {e}", hosts_path.display()))?;
    Ok((cert_path, key_path))
}
