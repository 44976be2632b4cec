//! HTTPS transport for the owner API.

use std::path::PathBuf;

use coffer_proto::ErrorBody;
use coffer_proto::owner::{OWNER_PREFIX, ServerInfo};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{OwnerError, OwnerResult};

/// Which certificates the client trusts.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ServerTrust {
    /// The operating system's roots only.
    #[default]
    System,
    /// The system roots plus a PEM file (e.g. the server's `DATA_DIR/tls/cert.pem`).
    ExtraCa(PathBuf),
    /// No verification of the server's certificate at all (for a test server whose
    /// certificate is not at hand, as `KSM_SKIP_VERIFY` does for the SDKs). Dangerous.
    SkipVerify,
}

/// A connection to one server's owner API.
#[derive(Clone, Debug)]
pub struct OwnerClient {
    http: reqwest::Client,
    base: String,
}

impl OwnerClient {
    /// A client for `server` (`https://host[:port]`).
    pub fn new(server: &str, trust: &ServerTrust) -> OwnerResult<Self> {
        let base = server.trim().trim_end_matches('/').to_owned();
        if !base.starts_with("https://") {
            return Err(OwnerError::Invalid(format!(
                "the server URL must start with https:// (got {base:?})"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            .timeout(std::time::Duration::from_secs(600))
            // The owner API never redirects. Following one would carry the session token
            // or a login body to wherever a hostile or misconfigured front end points,
            // perhaps over plain HTTP: refuse both instead.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .no_proxy();
        if *trust == ServerTrust::SkipVerify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let ServerTrust::ExtraCa(path) = trust {
            let pem = std::fs::read(path).map_err(|e| {
                OwnerError::Io(format!(
                    "cannot read CA certificate {}: {e}",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                OwnerError::Invalid(format!("{} is not a PEM certificate: {e}", path.display()))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| OwnerError::Http(format!("cannot set up HTTPS: {e}")))?;
        Ok(Self { http, base })
    }

    /// `https://host[:port]`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{OWNER_PREFIX}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> OwnerResult<T> {
        let bytes = exchange(request, MAX_JSON_ANSWER).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| OwnerError::Http(format!("the server sent an unexpected answer: {e}")))
    }

    /// `GET` a JSON resource.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> OwnerResult<T> {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// `POST` (or `PUT` when `put`) a JSON body.
    pub async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        put: bool,
        path: &str,
        token: Option<&str>,
        body: &B,
    ) -> OwnerResult<T> {
        let url = self.url(path);
        let mut request = if put {
            self.http.put(url)
        } else {
            self.http.post(url)
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request.json(body)).await
    }

    /// `PUT` raw bytes to an absolute URL (uploads).
    pub async fn put_bytes<T: DeserializeOwned>(
        &self,
        url: &str,
        bytes: Vec<u8>,
    ) -> OwnerResult<T> {
        let request = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        self.send(request).await
    }

    /// `GET` raw bytes, at most `max` of them: an answer that announces or sends more is
    /// refused (a file's encrypted size is known before it is fetched).
    pub async fn get_bytes(&self, path: &str, token: &str, max: u64) -> OwnerResult<Vec<u8>> {
        let request = self.http.get(self.url(path)).bearer_auth(token);
        exchange(request, max).await
    }

    /// The server's public facts (key, host, whether setup is pending).
    pub async fn info(&self) -> OwnerResult<ServerInfo> {
        self.get("/info", None).await
    }
}

/// The largest JSON answer the owner API is believed to send (a vault's whole record list).
const MAX_JSON_ANSWER: u64 = 256 << 20;

/// How much of an error answer is read: enough for any error body the server makes.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// Sends `request`; the body of a 2xx answer (at most `max` bytes), else the server's error
/// (a redirect is one).
async fn exchange(request: reqwest::RequestBuilder, max: u64) -> OwnerResult<Vec<u8>> {
    let response = request.send().await.map_err(http_error)?;
    let status = response.status();
    if status.is_redirection() {
        let target = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nowhere")
            .to_owned();
        return Err(OwnerError::Http(format!(
            "the server answered HTTP {} redirecting to {target}; Coffer does not follow \
             redirects: use the server's own https:// address",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        let body = read_body(response, MAX_ERROR_BODY, true).await?;
        return Err(server_error(status.as_u16(), &body));
    }
    read_body(response, max, false).await
}

/// Reads a body of at most `max` bytes: more (announced or sent) is an error, or with
/// `truncate` the first `max` bytes.
async fn read_body(
    mut response: reqwest::Response,
    max: u64,
    truncate: bool,
) -> OwnerResult<Vec<u8>> {
    let too_long = |what: &str| {
        OwnerError::Http(format!(
            "the server {what} more than the {max} bytes expected; nothing was kept"
        ))
    };
    if !truncate && response.content_length().is_some_and(|n| n > max) {
        return Err(too_long("announced"));
    }
    let max_len = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(http_error)? {
        let room = max_len - body.len();
        if chunk.len() > room {
            if truncate {
                body.extend_from_slice(&chunk[..room]);
                break;
            }
            return Err(too_long("sent"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn http_error(err: reqwest::Error) -> OwnerError {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    OwnerError::Http(text)
}

fn server_error(status: u16, body: &[u8]) -> OwnerError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(err) => OwnerError::Server {
            status,
            code: err.code().to_owned(),
            message: err.message,
        },
        Err(_) => OwnerError::Server {
            status,
            code: "http".into(),
            message: format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        },
    }
}
