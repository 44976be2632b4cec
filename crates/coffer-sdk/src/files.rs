//! File attachments: download (bytes, a path, progress) and upload (`add_file` plus the
//! multipart upload, PROTOCOL.md §5.10, §5.11).
//!
//! Content is end-to-end encrypted with AES-256-GCM under the file's own key. Transfers are
//! streamed in chunks over the client's shared connection pool and report progress; the
//! GCM envelope is verified as a whole, so content is held in memory once while it is
//! decrypted or encrypted.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use coffer_crypto::{GCM_OVERHEAD, SymmetricKey, encode_std, encode_url, gcm_open, gcm_seal};
use coffer_proto::record::Field;
use futures_util::StreamExt;
use serde_json::Value;

use crate::client::{SecretsManager, b64, open_key, record_json};
use crate::config::write_private_file;
use crate::error::{Result, SdkError};
use crate::ordered::OValue;
use crate::record::Record;
use crate::transport::error_chain;
use crate::wire;

/// A file attached to a record.
#[derive(Clone)]
pub struct KeeperFile {
    uid: String,
    name: String,
    title: String,
    mime_type: Option<String>,
    size: Option<u64>,
    last_modified: Option<i64>,
    url: Option<String>,
    thumbnail_url: Option<String>,
    pub(crate) key: SymmetricKey,
}

impl fmt::Debug for KeeperFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeeperFile")
            .field("uid", &self.uid)
            .field("name", &self.name)
            .field("title", &self.title)
            .field("mime_type", &self.mime_type)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl KeeperFile {
    pub(crate) fn decrypt(
        record_key: &SymmetricKey,
        wire: &wire::WireFile<'_>,
    ) -> Result<Self, String> {
        let key = open_key(record_key, &wire.file_key).ok_or_else(|| wire.file_uid.clone())?;
        let meta: Value = b64(&wire.data)
            .and_then(|b| gcm_open(&key, &b).ok())
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or_else(|| wire.file_uid.clone())?;
        let text = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_owned);
        let name = text("name").unwrap_or_default();
        Ok(Self {
            title: text("title").unwrap_or_else(|| name.clone()),
            name,
            mime_type: text("type"),
            size: meta.get("size").and_then(Value::as_u64),
            last_modified: meta.get("lastModified").and_then(Value::as_i64),
            url: wire.url.clone().filter(|u| !u.is_empty()),
            thumbnail_url: wire.thumbnail_url.clone().filter(|u| !u.is_empty()),
            uid: wire.file_uid.clone(),
            key,
        })
    }

    /// The file UID.
    pub fn uid(&self) -> &str {
        &self.uid
    }
    /// The file name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The display title (the name when none was set).
    pub fn title(&self) -> &str {
        &self.title
    }
    /// The MIME type, if recorded.
    pub fn mime_type(&self) -> Option<&str> {
        self.mime_type.as_deref()
    }
    /// The plaintext size in bytes, if recorded.
    pub fn size(&self) -> Option<u64> {
        self.size
    }
    /// Last modification time (ms since the epoch), if recorded.
    pub fn last_modified(&self) -> Option<i64> {
        self.last_modified
    }
    /// The download URL (a short-lived capability).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
    /// Whether a thumbnail exists.
    pub fn has_thumbnail(&self) -> bool {
        self.thumbnail_url.is_some()
    }
}

/// Transfer progress: bytes moved so far and the total when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes transferred (of the encrypted body).
    pub done: u64,
    /// Total bytes, when known.
    pub total: Option<u64>,
}

/// A progress callback.
pub type ProgressFn = Box<dyn FnMut(Progress) + Send>;

/// Total deadline of an upload of `bytes`: the API timeout plus one second per 32 KiB, so a
/// slow link (~256 kbit/s) still gets through while a stalled one is eventually given up.
fn upload_deadline(timeout: Duration, bytes: u64) -> Duration {
    timeout.saturating_add(Duration::from_secs(bytes / (32 * 1024)))
}

/// A file to attach to a record.
#[derive(Clone, PartialEq)]
pub struct FileUpload {
    /// File name.
    pub name: String,
    /// Display title (default: the name).
    pub title: Option<String>,
    /// MIME type (default: guessed from the name's extension).
    pub mime_type: Option<String>,
    /// Content.
    pub data: Vec<u8>,
}

impl fmt::Debug for FileUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileUpload")
            .field("name", &self.name)
            .field("title", &self.title)
            .field("mime_type", &self.mime_type)
            .field("len", &self.data.len())
            .finish()
    }
}

impl FileUpload {
    /// A file from bytes.
    pub fn new(name: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            title: None,
            mime_type: None,
            data: data.into(),
        }
    }

    /// Reads a file from disk; its name becomes the file name.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let data = std::fs::read(path)
            .map_err(|e| SdkError::io(format!("cannot read {}", path.display()), e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned());
        Ok(Self::new(name, data))
    }

    /// Sets the title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the MIME type.
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }
}

/// A MIME type from a file name's extension (`application/octet-stream` when unknown).
pub fn guess_mime_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "text" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "pem" | "crt" | "cer" => "application/x-pem-file",
        "key" => "application/pkcs8",
        "yaml" | "yml" => "application/yaml",
        "toml" => "application/toml",
        "sh" => "application/x-sh",
        "md" => "text/markdown",
        _ => "application/octet-stream",
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const CHUNK: usize = 64 * 1024;

/// The most encrypted bytes one download may bring, and why.
#[derive(Debug, Clone, Copy)]
struct DownloadLimit {
    bytes: u64,
    /// The file's recorded plaintext size, when that (not the configured maximum) sets it.
    recorded: Option<u64>,
}

impl DownloadLimit {
    /// The limit for a file whose metadata records `recorded` plaintext bytes (if any).
    /// A recorded size over the configured maximum is refused before any request.
    fn for_file(recorded: Option<u64>, max: u64) -> Result<Self> {
        let Some(size) = recorded else {
            return Ok(Self {
                bytes: max,
                recorded: None,
            });
        };
        let expected = size.saturating_add(GCM_OVERHEAD as u64);
        if expected > max {
            return Err(SdkError::DownloadTooLarge {
                limit: max,
                reason: format!("the file is {size} bytes, more than max_download_size allows"),
            });
        }
        Ok(Self {
            bytes: expected,
            recorded,
        })
    }

    /// Refuses `bytes` (what the server `announced` or has `sent` so far) over the limit.
    fn check(self, bytes: u64, what: &str) -> Result<()> {
        if bytes <= self.bytes {
            return Ok(());
        }
        let reason = match self.recorded {
            Some(size) => {
                format!("the server {what} {bytes} bytes for a file recorded as {size} bytes")
            }
            None => format!("the server {what} {bytes} bytes, more than max_download_size"),
        };
        Err(SdkError::DownloadTooLarge {
            limit: self.bytes,
            reason,
        })
    }
}

impl SecretsManager {
    /// Downloads and decrypts an attachment.
    pub async fn download_file(&self, file: &KeeperFile) -> Result<Vec<u8>> {
        self.download_file_with_progress(file, Box::new(|_| {}))
            .await
    }

    /// Downloads and decrypts an attachment, reporting progress as chunks arrive.
    pub async fn download_file_with_progress(
        &self,
        file: &KeeperFile,
        progress: ProgressFn,
    ) -> Result<Vec<u8>> {
        let url = file
            .url
            .as_deref()
            .ok_or_else(|| SdkError::NotFound(format!("file {} has no download URL", file.uid)))?;
        let limit = DownloadLimit::for_file(file.size, self.inner.max_download)?;
        self.fetch_decrypt(url, &file.key, limit, progress).await
    }

    /// Downloads and decrypts an attachment's thumbnail.
    pub async fn download_thumbnail(&self, file: &KeeperFile) -> Result<Vec<u8>> {
        let url = file
            .thumbnail_url
            .as_deref()
            .ok_or_else(|| SdkError::NotFound(format!("file {} has no thumbnail", file.uid)))?;
        let limit = DownloadLimit::for_file(None, self.inner.max_download)?;
        self.fetch_decrypt(url, &file.key, limit, Box::new(|_| {}))
            .await
    }

    async fn fetch_decrypt(
        &self,
        url: &str,
        key: &SymmetricKey,
        limit: DownloadLimit,
        mut progress: ProgressFn,
    ) -> Result<Vec<u8>> {
        // No deadline for the whole download, only for each wait for data: a large file on a
        // slow link completes as long as data keeps coming.
        let wait = self.inner.timeout;
        let stalled = || SdkError::Network(format!("no data from the server for {wait:?}"));
        let response = tokio::time::timeout(wait, self.inner.http.get(url).send())
            .await
            .map_err(|_| stalled())?
            .map_err(|e| SdkError::Network(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(SdkError::Http {
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            });
        }
        let total = response.content_length();
        if let Some(announced) = total {
            limit.check(announced, "announced")?;
        }
        let mut buffer = Vec::with_capacity(total.unwrap_or(0).min(64 << 20) as usize);
        let mut stream = response.bytes_stream();
        progress(Progress { done: 0, total });
        while let Some(chunk) = tokio::time::timeout(wait, stream.next())
            .await
            .map_err(|_| stalled())?
        {
            let chunk = chunk.map_err(|e| SdkError::Network(error_chain(&e)))?;
            limit.check((buffer.len() + chunk.len()) as u64, "sent")?;
            buffer.extend_from_slice(&chunk);
            progress(Progress {
                done: buffer.len() as u64,
                total,
            });
        }
        gcm_open(key, &buffer).map_err(|_| SdkError::Decrypt("the downloaded file".into()))
    }

    /// Downloads an attachment to `path`, creating missing parent directories when
    /// `create_folders` is set. The file is written atomically with mode 0600.
    pub async fn save_file(
        &self,
        file: &KeeperFile,
        path: impl AsRef<Path>,
        create_folders: bool,
    ) -> Result<()> {
        let path = path.as_ref();
        if create_folders && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| SdkError::io(format!("cannot create {}", parent.display()), e))?;
        }
        let content = self.download_file(file).await?;
        write_private_file(path, &content)
    }

    /// Attaches a file to a record; returns the new file UID. The record is refreshed
    /// afterwards (new revision, the new file in [`Record::files`]).
    pub async fn upload_file(&self, owner: &mut Record, upload: FileUpload) -> Result<String> {
        self.upload_file_with_progress(owner, upload, Box::new(|_| {}))
            .await
    }

    /// Attaches the file at `path` to a record; returns the new file UID.
    pub async fn upload_file_path(
        &self,
        owner: &mut Record,
        path: impl AsRef<Path>,
    ) -> Result<String> {
        self.upload_file(owner, FileUpload::from_path(path)?).await
    }

    /// [`upload_file`](Self::upload_file) with a progress callback for the upload body.
    pub async fn upload_file_with_progress(
        &self,
        owner: &mut Record,
        upload: FileUpload,
        progress: ProgressFn,
    ) -> Result<String> {
        self.ensure_bound().await?;
        let owner_public = self.owner_key()?;
        let file_uid = coffer_crypto::make_uid();
        let file_key = SymmetricKey::generate();
        let mime = upload
            .mime_type
            .clone()
            .unwrap_or_else(|| guess_mime_type(&upload.name).to_owned());
        let meta = serde_json::json!({
            "name": upload.name,
            "size": upload.data.len(),
            "title": upload.title.clone().unwrap_or_else(|| upload.name.clone()),
            "lastModified": now_ms(),
            "type": mime,
        });
        let encrypted = gcm_seal(&file_key, &upload.data);
        let mut data = owner.data.clone();
        match data.fields.iter_mut().find(|f| f.field_type == "fileRef") {
            Some(field) => field.value.push(Value::from(file_uid.clone())),
            None => data
                .fields
                .push(Field::new("fileRef", vec![Value::from(file_uid.clone())])),
        }
        let body = wire::AddFileBody {
            file_record_uid: file_uid.clone(),
            file_record_key: encode_std(&owner_public.ecies_seal(file_key.expose())),
            file_record_data: encode_url(&gcm_seal(&file_key, meta.to_string().as_bytes())),
            owner_record_uid: owner.uid.clone(),
            owner_record_data: encode_url(&gcm_seal(&owner.key, &record_json(&data))),
            owner_record_revision: owner.revision,
            link_key: encode_std(&gcm_seal(&owner.key, file_key.expose())),
            file_size: encrypted.len() as u64,
        };
        let plain = self.post("add_file", &body, false).await?;
        let answer: wire::AddFileResponse = serde_json::from_slice(&plain)
            .map_err(|e| SdkError::Protocol(format!("add_file answer: {e}")))?;
        self.send_upload(&answer, encrypted, progress).await?;
        owner.data = data;
        self.after_upload(owner).await;
        Ok(file_uid)
    }

    async fn after_upload(&self, owner: &mut Record) {
        if let Err(err) = self.refresh(owner).await {
            tracing::warn!(record = %owner.uid, error = %err, "the file was attached but the record could not be re-read");
        }
    }

    async fn send_upload(
        &self,
        answer: &wire::AddFileResponse,
        encrypted: Vec<u8>,
        progress: ProgressFn,
    ) -> Result<()> {
        let mut form = reqwest::multipart::Form::new();
        if let Some(text) = answer.parameters.as_deref().filter(|t| !t.is_empty()) {
            let params: OValue = serde_json::from_str(text).map_err(|e| {
                SdkError::Protocol(format!("add_file parameters are not JSON: {e}"))
            })?;
            let OValue::Object(entries) = params else {
                return Err(SdkError::Protocol(
                    "add_file parameters are not a JSON object".into(),
                ));
            };
            for (name, value) in entries {
                form = form.text(name, value.to_text());
            }
        }
        let total = encrypted.len() as u64;
        let bytes = Bytes::from(encrypted);
        let chunks: Vec<Bytes> = (0..bytes.len())
            .step_by(CHUNK)
            .map(|start| bytes.slice(start..(start + CHUNK).min(bytes.len())))
            .collect();
        let progress = Arc::new(Mutex::new(progress));
        let mut done = 0u64;
        let stream = futures_util::stream::iter(chunks).map(move |chunk| {
            done += chunk.len() as u64;
            if let Ok(mut callback) = progress.lock() {
                callback(Progress {
                    done,
                    total: Some(total),
                });
            }
            Ok::<Bytes, std::io::Error>(chunk)
        });
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), total)
                .file_name("file")
                .mime_str("application/octet-stream")
                .map_err(|e| SdkError::Invalid(e.to_string()))?;
        form = form.part("file", part);
        let response = self
            .inner
            .http
            .post(&answer.url)
            .timeout(upload_deadline(self.inner.timeout, total))
            .multipart(form)
            .send()
            .await
            .map_err(|e| SdkError::Network(error_chain(&e)))?;
        let status = response.status().as_u16();
        let ok = match answer.success_status_code {
            Some(expected) => status == expected,
            None => (200..300).contains(&status),
        };
        if !ok {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| body.chars().take(300).collect());
            return Err(SdkError::Http {
                status,
                body: format!("the file upload failed: {message}"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_limits_follow_the_recorded_size_else_the_maximum() {
        let limit = DownloadLimit::for_file(Some(100), 1000).unwrap();
        assert!(limit.check(128, "sent").is_ok());
        let err = limit.check(129, "sent").unwrap_err().to_string();
        assert!(
            err.contains("sent 129 bytes for a file recorded as 100 bytes"),
            "{err}"
        );
        assert!(err.contains("limit 128 bytes"), "{err}");

        let unknown = DownloadLimit::for_file(None, 1000).unwrap();
        assert!(unknown.check(1000, "announced").is_ok());
        let err = unknown.check(1001, "announced").unwrap_err().to_string();
        assert!(
            err.contains("announced 1001 bytes, more than max_download_size"),
            "{err}"
        );

        // Exactly at the maximum passes; one byte over is refused before any request.
        assert!(DownloadLimit::for_file(Some(972), 1000).is_ok());
        let err = DownloadLimit::for_file(Some(973), 1000).unwrap_err();
        assert!(
            matches!(err, SdkError::DownloadTooLarge { limit: 1000, .. }),
            "{err:?}"
        );
        // A recorded size near u64::MAX does not overflow.
        assert!(DownloadLimit::for_file(Some(u64::MAX), u64::MAX).is_ok());
    }

    #[test]
    fn mime_types_are_guessed_from_extensions() {
        assert_eq!(guess_mime_type("a.TXT"), "text/plain");
        assert_eq!(guess_mime_type("cert.pem"), "application/x-pem-file");
        assert_eq!(guess_mime_type("noext"), "application/octet-stream");
    }

    #[test]
    fn file_metadata_decrypts() {
        let record_key = SymmetricKey::generate();
        let file_key = SymmetricKey::generate();
        let meta = br#"{"name":"hello.txt","title":"Greeting","size":14,"type":"text/plain","lastModified":5}"#;
        let wire = wire::WireFile {
            file_uid: "FileUid000000000000000".into(),
            file_key: encode_std(&gcm_seal(&record_key, file_key.expose())).into(),
            data: encode_std(&gcm_seal(&file_key, meta)).into(),
            url: Some("https://h/f".into()),
            thumbnail_url: None,
        };
        let f = KeeperFile::decrypt(&record_key, &wire).unwrap();
        assert_eq!(
            (f.name(), f.title(), f.size()),
            ("hello.txt", "Greeting", Some(14))
        );
        assert_eq!(f.mime_type(), Some("text/plain"));
        assert!(!f.has_thumbnail());
        let bad = wire::WireFile {
            file_uid: "X".into(),
            file_key: encode_std(&gcm_seal(&SymmetricKey::generate(), file_key.expose())).into(),
            data: String::new().into(),
            url: None,
            thumbnail_url: None,
        };
        assert_eq!(KeeperFile::decrypt(&record_key, &bad).unwrap_err(), "X");
    }
}
