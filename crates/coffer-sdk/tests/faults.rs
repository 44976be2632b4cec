//! Fault injection: a small HTTPS test double in front of the real server that throttles,
//! drops connections, answers garbage or 503, or forwards requests unchanged. The double is
//! used only for these cases; everything else is tested against the real server.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_sdk::config::keys;
use coffer_sdk::{CacheOptions, MemoryStorage, RetryPolicy, SdkError, SecretsManager, Tls};
use common::{TestServer, fixture, start, start_with_public_host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Pass requests to the real server.
    Forward,
    /// Answer `n` requests with 403 `throttled` (and `retry_after`), then forward.
    Throttle403 { times: usize, retry_after: u64 },
    /// Answer `n` requests with 429 and a `Retry-After` header, then forward.
    Throttle429 { times: usize },
    /// Read the request, then close the connection without an answer.
    Drop,
    /// Answer 200 with bytes that are not the protocol.
    Garbage,
    /// Answer 503 with an HTML page.
    Unavailable,
    /// Answer 400 `bad_request` (a refusal, not an outage).
    Refuse,
    /// Read the request and never answer.
    Hang,
    /// File downloads (GET) get the real content plus extra bytes, with a `content-length`
    /// that says so or chunked (no length announced); other requests are forwarded.
    DownloadOversize { chunked: bool },
    /// File downloads (GET) get their headers and half of the content, then nothing.
    DownloadStall,
}

struct Double {
    port: u16,
    pem: String,
    hits: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    fault: Arc<Mutex<Fault>>,
}

impl Double {
    fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
        self.hits.store(0, Ordering::SeqCst);
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn read_request<S: AsyncReadExt + Unpin>(stream: &mut S) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn response(status: u16, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A double on a new port, in front of `server`.
async fn start_double(server: &TestServer) -> Double {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_double(listener, server)
}

/// A double on `listener` (bound before the server started, so the server's download and
/// upload links can name it), in front of `server`. It presents the server's own
/// certificate, so every client that trusts the server trusts the double.
fn serve_double(listener: tokio::net::TcpListener, server: &TestServer) -> Double {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read_to_string(&server.ca).unwrap();
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(server.ca.with_file_name("key.pem"))
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let fault = Arc::new(Mutex::new(Fault::Forward));
    let upstream = reqwest::Client::builder()
        .tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(&std::fs::read(&server.ca).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let base = server.base.clone();
    let (h, f, c) = (hits.clone(), fault.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let (hits, fault, upstream, base) =
                (h.clone(), f.clone(), upstream.clone(), base.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                while let Some(req) = read_request(&mut tls).await {
                    let n = hits.fetch_add(1, Ordering::SeqCst);
                    let mut mode = *fault.lock().unwrap();
                    let download_fault =
                        matches!(mode, Fault::DownloadOversize { .. } | Fault::DownloadStall);
                    if download_fault && req.method != "GET" {
                        mode = Fault::Forward;
                    }
                    let fetch = || async {
                        let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
                        let mut call = upstream.request(method, format!("{base}{}", req.path));
                        for (k, v) in &req.headers {
                            if [
                                "publickeyid",
                                "transmissionkey",
                                "authorization",
                                "content-type",
                            ]
                            .contains(&k.as_str())
                            {
                                call = call.header(k.as_str(), v.as_str());
                            }
                        }
                        match call.body(req.body.clone()).send().await {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                (status, r.bytes().await.unwrap_or_default().to_vec())
                            }
                            Err(_) => (502, b"upstream failed".to_vec()),
                        }
                    };
                    let forward = || async {
                        let (status, body) = fetch().await;
                        response(status, "", &body)
                    };
                    let out = match mode {
                        Fault::Forward => forward().await,
                        Fault::DownloadOversize { chunked } => {
                            let (_, mut body) = fetch().await;
                            body.extend_from_slice(&[0u8; 1000]);
                            if chunked {
                                let mut out = format!(
                                    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
                                    body.len()
                                )
                                .into_bytes();
                                out.extend_from_slice(&body);
                                out.extend_from_slice(b"\r\n0\r\n\r\n");
                                out
                            } else {
                                response(200, "", &body)
                            }
                        }
                        Fault::DownloadStall => {
                            let (_, body) = fetch().await;
                            let mut out = response(200, "", &body);
                            out.truncate(out.len() - body.len() / 2);
                            if tls.write_all(&out).await.is_err() || tls.flush().await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        Fault::Throttle403 { times, retry_after } if n < times => response(
                            403,
                            "",
                            format!(r#"{{"error":"throttled","message":"slow down","retry_after":{retry_after}}}"#)
                                .as_bytes(),
                        ),
                        Fault::Throttle429 { times } if n < times => {
                            response(429, "retry-after: 0\r\n", b"Too Many Requests")
                        }
                        Fault::Throttle403 { .. } | Fault::Throttle429 { .. } => forward().await,
                        Fault::Drop => return,
                        Fault::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        Fault::Garbage => response(200, "", b"this is not a KSM answer at all"),
                        Fault::Unavailable => response(503, "", b"<html>Service Unavailable</html>"),
                        Fault::Refuse => response(
                            400,
                            "",
                            br#"{"error":"bad_request","message":"no"}"#,
                        ),
                    };
                    if tls.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Double {
        port,
        pem,
        hits,
        connections,
        fault,
    }
}

/// A client already bound through the real server, then pointed at the double.
async fn bound_client_via_double(
    server: &TestServer,
    double: &Double,
    retry: RetryPolicy,
    cache: Option<CacheOptions>,
) -> SecretsManager {
    let fx = fixture(server).await;
    let direct = server.sdk_for(&[(&fx.folder, false)]).await;
    direct.get_all_secrets().await.unwrap();
    let mut config = direct.config();
    config.set(keys::HOSTNAME, format!("127.0.0.1:{}", double.port));
    let mut builder = SecretsManager::builder()
        .use_env(false)
        .storage(MemoryStorage::from_config(config))
        .tls(Tls::ExtraCaPem(double.pem.clone().into_bytes()))
        .retry_policy(retry)
        .timeout(Duration::from_secs(2));
    if let Some(cache) = cache {
        builder = builder.cache(cache);
    }
    builder.build().unwrap()
}

fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(2),
        jitter: 0.25,
    }
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_until_it_passes() {
    let server = start().await;
    let double = start_double(&server).await;
    let sm = bound_client_via_double(&server, &double, fast_retries(5), None).await;
    double.set(Fault::Forward);
    assert_eq!(sm.get_all_secrets().await.unwrap().len(), 6);
    assert_eq!(double.hits(), 1);

    double.set(Fault::Throttle403 {
        times: 3,
        retry_after: 0,
    });
    assert_eq!(sm.get_all_secrets().await.unwrap().len(), 6);
    assert_eq!(double.hits(), 4, "three throttled attempts, then success");

    // The server's retry_after is honoured.
    double.set(Fault::Throttle403 {
        times: 1,
        retry_after: 1,
    });
    let started = Instant::now();
    sm.get_all_secrets().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );

    // 429 counts as throttling too.
    double.set(Fault::Throttle429 { times: 2 });
    sm.get_all_secrets().await.unwrap();
    assert_eq!(double.hits(), 3);
}

#[tokio::test]
async fn throttling_gives_up_after_the_bounded_retries() {
    let server = start().await;
    let double = start_double(&server).await;
    let sm = bound_client_via_double(&server, &double, fast_retries(3), None).await;
    double.set(Fault::Throttle403 {
        times: usize::MAX,
        retry_after: 0,
    });
    match sm.get_all_secrets().await {
        Err(SdkError::Throttled { retries, .. }) => assert_eq!(retries, 3),
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert_eq!(double.hits(), 4);
}

#[tokio::test]
async fn drops_garbage_and_outages_are_reported() {
    let server = start().await;
    let double = start_double(&server).await;
    let sm = bound_client_via_double(&server, &double, fast_retries(2), None).await;

    double.set(Fault::Drop);
    let err = sm.get_all_secrets().await.unwrap_err();
    assert!(matches!(err, SdkError::Network(_)), "{err:?}");
    assert!(err.is_unavailable());

    double.set(Fault::Garbage);
    let err = sm.get_all_secrets().await.unwrap_err();
    assert!(matches!(err, SdkError::Protocol(_)), "{err:?}");

    double.set(Fault::Unavailable);
    let err = sm.get_all_secrets().await.unwrap_err();
    assert!(matches!(err, SdkError::Http { status: 503, .. }), "{err:?}");
    assert!(err.is_unavailable());
    assert_eq!(double.hits(), 1, "a 503 is not retried as throttling");

    double.set(Fault::Refuse);
    let err = sm.get_all_secrets().await.unwrap_err();
    assert_eq!(err.code(), Some("bad_request"));

    double.set(Fault::Forward);
    assert_eq!(sm.get_all_secrets().await.unwrap().len(), 6);
}

#[tokio::test]
async fn the_offline_cache_covers_drops_and_5xx_but_not_refusals() {
    let server = start().await;
    let double = start_double(&server).await;
    let sm = bound_client_via_double(
        &server,
        &double,
        fast_retries(1),
        Some(CacheOptions::memory()),
    )
    .await;
    double.set(Fault::Forward);
    let live = sm.get_all_secrets().await.unwrap();
    assert!(!live.from_cache());

    for fault in [Fault::Drop, Fault::Unavailable] {
        double.set(fault);
        let cached = sm.get_all_secrets().await.unwrap();
        assert!(cached.from_cache(), "{fault:?}");
        assert_eq!(cached.len(), live.len());
    }
    // Garbage and refusals are not outages: no cache.
    double.set(Fault::Garbage);
    assert!(matches!(
        sm.get_all_secrets().await,
        Err(SdkError::Protocol(_))
    ));
    double.set(Fault::Refuse);
    assert!(sm.get_all_secrets().await.is_err());
    // Back online: fresh answers again.
    double.set(Fault::Forward);
    assert!(!sm.get_all_secrets().await.unwrap().from_cache());
}

/// `refresh` promises the server's current record: a cached copy (which may predate a save
/// just made) is refused and the record is left as it was.
#[tokio::test]
async fn refresh_is_never_answered_from_the_offline_cache() {
    let server = start().await;
    let double = start_double(&server).await;
    let sm = bound_client_via_double(
        &server,
        &double,
        fast_retries(1),
        Some(CacheOptions::memory()),
    )
    .await;
    double.set(Fault::Forward);
    let uid = sm.get_all_secrets().await.unwrap()[0].uid().to_owned();
    let mut record = sm.get_secret(&uid).await.unwrap();
    let before = record.clone();

    double.set(Fault::Unavailable);
    assert!(
        sm.get_secret(&uid).await.is_ok(),
        "reads fall back to the cache"
    );
    let err = sm.refresh(&mut record).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(record.revision(), before.revision());
    assert_eq!(record.data(), before.data());

    double.set(Fault::Forward);
    sm.refresh(&mut record).await.unwrap();
    assert_eq!(record.revision(), before.revision());
}

#[tokio::test]
async fn one_connection_is_reused_and_a_silent_server_times_out() {
    let server = start().await;
    let double = start_double(&server).await;
    let sm = bound_client_via_double(&server, &double, fast_retries(0), None).await;
    double.set(Fault::Forward);
    let before = double.connections();
    for _ in 0..5 {
        assert_eq!(sm.get_all_secrets().await.unwrap().len(), 6);
    }
    // Clones share the pool too.
    let clone = sm.clone();
    clone.get_folders().await.unwrap();
    assert!(
        double.connections() - before <= 1,
        "keep-alive: {} new connections for 6 calls",
        double.connections() - before
    );

    double.set(Fault::Hang);
    let started = Instant::now();
    let err = sm.get_all_secrets().await.unwrap_err();
    assert!(matches!(err, SdkError::Network(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn downloads_bigger_than_the_file_or_stalling_are_refused() {
    // The double is bound first so that the server's download links name it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = start_with_public_host(Some(public_host)).await;
    let double = serve_double(listener, &server);
    let sm = bound_client_via_double(&server, &double, fast_retries(0), None).await;
    let web = sm.get_secret_by_title("Web Login").await.unwrap().unwrap();
    let file = web.file("hello.txt").unwrap();
    assert_eq!(file.size(), Some(14));
    assert_eq!(sm.download_file(file).await.unwrap(), b"Hello, Keeper!");
    let target = server.dir.path().join("saved.txt");

    // 14 bytes of content are 42 encrypted; the server announces 1,042.
    double.set(Fault::DownloadOversize { chunked: false });
    match sm.download_file(file).await {
        Err(SdkError::DownloadTooLarge { limit, reason }) => {
            assert_eq!(limit, 14 + 28);
            assert!(reason.contains("announced 1042 bytes"), "{reason}");
            assert!(reason.contains("recorded as 14 bytes"), "{reason}");
        }
        other => panic!("expected DownloadTooLarge, got {other:?}"),
    }
    // Without a length announced, the refusal comes as the bytes arrive.
    double.set(Fault::DownloadOversize { chunked: true });
    match sm.save_file(file, &target, true).await {
        Err(SdkError::DownloadTooLarge { limit, reason }) => {
            assert_eq!(limit, 14 + 28);
            assert!(reason.contains("sent 1042 bytes"), "{reason}");
        }
        other => panic!("expected DownloadTooLarge, got {other:?}"),
    }
    assert!(!target.exists(), "a refused download writes nothing");

    // Half the content, then silence: the per-wait timer (2 s here) ends it.
    double.set(Fault::DownloadStall);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let started = Instant::now();
    let err = sm
        .download_file_with_progress(file, Box::new(move |p| sink.lock().unwrap().push(p)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SdkError::Network(m) if m.contains("no data from the server")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let last = *seen.lock().unwrap().last().unwrap();
    assert_eq!(last.total, Some(42));
    assert!(last.done < 42, "{last:?}");
    assert!(sm.save_file(file, &target, true).await.is_err());
    assert!(!target.exists(), "a stalled download writes nothing");

    double.set(Fault::Forward);
    sm.save_file(file, &target, true).await.unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"Hello, Keeper!");
}
