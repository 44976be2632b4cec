//! The owner client's transport refuses what a hostile or misconfigured front end could use
//! to move the session token or a login body elsewhere (redirects, plain HTTP), and answers
//! longer than expected.
//! Everything else the owner client does is tested against the real server (coffer-server's
//! owner API tests and the CLI tests).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use coffer_owner::{OwnerClient, OwnerError, ServerTrust};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads one request head (enough for these tests: the bodies are small and unused).
async fn read_head<S: AsyncReadExt + Unpin>(stream: &mut S) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An HTTPS server on 127.0.0.1 with a fresh self-signed certificate that answers every
/// request with `answer` (`PORT` in it replaced by the server's port). Returns the port, the
/// folder holding `ca.pem` and the request counter.
async fn tls_server(answer: String) -> (u16, tempfile::TempDir, Arc<AtomicUsize>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = answer.replace("PORT", &port.to_string());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter, answer) = (acceptor.clone(), counter.clone(), answer.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                read_head(&mut stream).await;
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, dir, hits)
}

#[tokio::test]
async fn redirects_are_reported_not_followed() {
    for status in [
        "302 Found",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        // The redirect points back at the same server: a client that follows it would
        // make a second request there.
        let answer = format!(
            "HTTP/1.1 {status}\r\nlocation: https://127.0.0.1:PORT/elsewhere\r\n\
             content-length: 0\r\n\
             connection: close\r\n\r\n"
        );
        let (port, dir, hits) = tls_server(answer).await;
        let client = OwnerClient::new(
            &format!("https://127.0.0.1:{port}"),
            &ServerTrust::ExtraCa(dir.path().join("ca.pem")),
        )
        .unwrap();
        let err = client
            .send_json::<_, serde_json::Value>(
                false,
                "/login",
                Some("session-token"),
                &serde_json::json!({"email": "a@example.com"}),
            )
            .await
            .unwrap_err();
        match &err {
            OwnerError::Http(text) => {
                assert!(text.contains("redirect"), "{status}: {text}");
                assert!(text.contains("/elsewhere"), "{status}: {text}");
            }
            other => panic!("{status}: expected a transport error, got {other:?}"),
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "{status}: the redirect was followed"
        );
        let err = client
            .get_bytes("/files/x", "session-token", 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, OwnerError::Http(_)), "{status}: {err:?}");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "{status}: the redirect was followed"
        );
    }
}

#[tokio::test]
async fn plain_http_upload_links_are_refused_without_connecting() {
    // A plain-HTTP listener that would accept the upload (and say so) if asked.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = plain.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            read_head(&mut tcp).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                .await;
        }
    });
    let (port, dir, _) = tls_server(String::new()).await;
    let client = OwnerClient::new(
        &format!("https://127.0.0.1:{port}"),
        &ServerTrust::ExtraCa(dir.path().join("ca.pem")),
    )
    .unwrap();
    let err = client
        .put_bytes::<serde_json::Value>(
            &format!("http://127.0.0.1:{plain_port}/upload/abc"),
            b"ciphertext".to_vec(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OwnerError::Http(_)), "{err:?}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the upload went over plain HTTP"
    );
}

async fn client_for(answer: String) -> OwnerClient {
    let (port, dir, _) = tls_server(answer).await;
    let client = OwnerClient::new(
        &format!("https://127.0.0.1:{port}"),
        &ServerTrust::ExtraCa(dir.path().join("ca.pem")),
    )
    .unwrap();
    // The certificate was read when the client was made.
    drop(dir);
    client
}

#[tokio::test]
async fn downloads_longer_than_expected_are_refused() {
    let body = "x".repeat(100);
    let announced =
        format!("HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{body}");
    let chunked = format!(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         32\r\n{half}\r\n32\r\n{half}\r\n0\r\n\r\n",
        half = &body[..50]
    );
    for (how, answer) in [("announced", announced), ("sent", chunked)] {
        let client = client_for(answer).await;
        let err = client.get_bytes("/files/x", "t", 99).await.unwrap_err();
        match &err {
            OwnerError::Http(text) => assert!(text.contains(how), "{how}: {text}"),
            other => panic!("{how}: expected a transport error, got {other:?}"),
        }
        // Exactly the expected size passes.
        assert_eq!(
            client.get_bytes("/files/x", "t", 100).await.unwrap(),
            body.as_bytes(),
            "{how}"
        );
    }
}

#[tokio::test]
async fn huge_error_bodies_are_cut_and_still_reported() {
    // The answer announces 1 GiB and sends 1 MiB: a client that read it all would wait for
    // the rest and fail on the closed connection instead of reporting the server's error.
    let body = "e".repeat(1 << 20);
    let client = client_for(format!(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        1u64 << 30
    ))
    .await;
    match client.get_bytes("/files/x", "t", 10).await.unwrap_err() {
        OwnerError::Server {
            status, message, ..
        } => {
            assert_eq!(status, 500);
            assert!(message.len() < 1024, "the error text is short");
        }
        other => panic!("expected the server's error, got {other:?}"),
    }
}

#[test]
fn server_urls_must_be_https() {
    for url in ["http://127.0.0.1:8443", "127.0.0.1:8443", "ftp://x"] {
        let err = OwnerClient::new(url, &ServerTrust::System).unwrap_err();
        assert!(matches!(err, OwnerError::Invalid(_)), "{url}: {err:?}");
    }
}
