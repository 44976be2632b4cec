//! The Coffer server: the Keeper Secrets Manager protocol API, the owner API and file transfer,
//! over HTTPS (rustls), on top of a [`coffer_store::Store`].
//!
//! [`start`] binds, prepares keys, TLS and the database, and serves until
//! [`RunningServer::shutdown`] (or a signal handled by the caller). Tests start it on
//! `127.0.0.1:0`.

pub mod config;
mod error;
mod files;
pub mod fsutil;
pub mod keys;
mod ksm;
mod links;
mod owner;
mod setup;
mod state;
pub mod throttle;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use coffer_proto::ErrorCode;
use coffer_store::Store;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

pub use config::{KeySource, ServerConfig, TlsSource};
pub use error::ApiError;

use crate::state::{AppState, Audit, Inner, now_ms};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad configuration or unusable data dir, keys, certificate or database.
    #[error("{0}")]
    Startup(String),
    /// Network failure.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
}

/// A server that is accepting connections.
pub struct RunningServer {
    /// The address it listens on.
    pub local_addr: SocketAddr,
    /// The setup code, while no owner is registered and this instance made it.
    pub setup_code: Option<String>,
    /// B64URL of the server public key clients must be configured with.
    pub public_key: String,
    /// Its key id.
    pub key_id: u32,
    /// `https://PUBLIC_HOST` as clients are told (with the bound port when listening on port 0).
    pub public_url: String,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Stops accepting, lets open requests finish (up to 30 s), and waits for the end.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the server stops.
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task
            .await
            .map_err(|e| ServerError::Startup(format!("server task failed: {e}")))?
    }

    /// A handle that stops the server when `true` is sent.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens the database named by the configuration: SQLite for `sqlite://PATH` (or none: SQLite in
/// the data dir), PostgreSQL for `postgres://` and `postgresql://` URLs (a pool of at most
/// `db_max_connections` connections).
pub async fn open_store(config: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    let path = match config.database_url.as_deref() {
        None => config.data_dir.join("coffer.db"),
        Some(url) => {
            if let Some(path) = url.strip_prefix("sqlite://") {
                std::path::PathBuf::from(path)
            } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                let options = coffer_store_postgres::PoolOptions {
                    max_connections: config.db_max_connections,
                    ..coffer_store_postgres::PoolOptions::default()
                };
                // The error never repeats the URL, which may hold a password.
                let store = coffer_store_postgres::PostgresStore::connect(url, options)
                    .await
                    .map_err(|e| {
                        ServerError::Startup(format!("cannot open the PostgreSQL database: {e}"))
                    })?;
                return Ok(Arc::new(store));
            } else {
                return Err(ServerError::Startup(format!(
                    "Unsupported database URL {:?}: use sqlite://PATH or postgres://….",
                    url.split("://").next().unwrap_or(url)
                )));
            }
        }
    };
    let store = coffer_store_sqlite::SqliteStore::open(&path)
        .await
        .map_err(|e| {
            ServerError::Startup(format!("cannot open database {}: {e}", path.display()))
        })?;
    Ok(Arc::new(store))
}

/// The HTTP routes.
pub fn router(state: AppState) -> Router {
    let max = state.config.max_request_bytes;
    Router::new()
        .route("/api/rest/sm/v1/{endpoint}", post(ksm::handle))
        .route(
            "/api/rest/sm/v1/upload/{token}",
            post(ksm::upload).layer(DefaultBodyLimit::disable()),
        )
        .nest(coffer_proto::owner::OWNER_PREFIX, owner::routes())
        .route("/files/{uid}/{expires}/{sig}", get(links::download))
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async {
            ApiError::new(
                ErrorCode::NotFound,
                "No such endpoint on this Coffer server.",
            )
            .into_response()
        })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("{method} is not allowed here; see the API documentation for the method."),
            )
            .into_response()
        })
        .layer(DefaultBodyLimit::max(max))
        .with_state(state)
}

/// Prepares everything and starts serving on `listener` (or on `config.listen`).
pub async fn start(
    config: ServerConfig,
    listener: Option<TcpListener>,
) -> Result<RunningServer, ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        ServerError::Startup(format!(
            "cannot create data dir {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let keys = match &config.server_key {
        config::KeySource::DataDir => {
            keys::ServerKeys::load_or_create(&config.data_dir.join("server-key.json"))
        }
        config::KeySource::File(path) => keys::ServerKeys::load(path),
        config::KeySource::Inline(json) => keys::ServerKeys::parse(json).map_err(|e| {
            format!("the server key given inline (COFFER_SERVER_KEY) is invalid: {e}")
        }),
    }
    .map_err(ServerError::Startup)?;
    let tls = tls::server_tls(&config).map_err(ServerError::Startup)?;
    let store = open_store(&config).await?;
    let link_secret = store
        .setting_init("link_secret", &coffer_crypto::random_bytes::<32>())
        .await
        .map_err(|e| ServerError::Startup(format!("database: {e}")))?;
    let files_dir = config
        .files_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("files"));
    let files = files::FileStore::open(&files_dir)
        .map_err(|e| ServerError::Startup(format!("file store: {e}")))?;
    let (audit, audit_task) = Audit::start(store.clone());
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(config.listen).await.map_err(|e| {
            ServerError::Startup(format!("cannot listen on {}: {e}", config.listen))
        })?,
    };
    let local_addr = listener.local_addr()?;
    let mut config = config;
    if config.public_host.ends_with(":0") {
        // Listening on an ephemeral port: tell clients the port actually bound.
        config.public_host = format!("{}:{}", config.public_host_name(), local_addr.port());
    }
    let (key_id, _) = keys.current();
    let public_key = keys.public_key_b64url();
    let state = AppState(Arc::new(Inner {
        store,
        keys,
        files,
        config,
        link_secret,
        audit,
        decoy_auth_hash: tokio::sync::OnceCell::new(),
    }));
    let setup_code = setup::ensure(&state).await.map_err(ServerError::Startup)?;
    let public_url = state.config.public_base_url();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, tls, state, shutdown_rx, audit_task));
    Ok(RunningServer {
        local_addr,
        setup_code,
        public_key,
        key_id,
        public_url,
        shutdown,
        task,
    })
}

async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
    audit_task: tokio::task::JoinHandle<()>,
) -> Result<(), ServerError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let janitor = tokio::spawn(janitor(state.clone()));
    let app = router(state.clone());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let app = app.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(15), acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer));
                        app.clone().oneshot(req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .header_read_timeout(Duration::from_secs(30))
                        .timer(hyper_util::rt::TokioTimer::new())
                        .serve_connection(TokioIo::new(tls), service);
                    if let Err(err) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    janitor.abort();
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after 30 s and were closed");
    }
    let store = state.store.clone();
    let files = state.files.clone();
    drop(app);
    drop(state);
    let _ = tokio::time::timeout(Duration::from_secs(10), audit_task).await;
    store.close().await;
    files.close();
    Ok(())
}

/// Periodic clean-up: expired uploads and their partial content.
async fn janitor(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        if let Err(err) = ksm::expire_transactions(&state).await {
            tracing::warn!(error = %err.message, "transaction expiry failed");
        }
        match state.store.expire_uploads(now_ms()).await {
            Ok(uids) => {
                for uid in uids {
                    if state.store.file(&uid).await.is_err() {
                        let _ = state.files.remove(&uid).await;
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "upload clean-up failed"),
        }
    }
}
