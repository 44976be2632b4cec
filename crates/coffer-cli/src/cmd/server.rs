//! `coffer server`.

use anyhow::{Context, Result};
use coffer_server::{KeySource, RunningServer, ServerConfig, TlsSource};

use super::init_logging;
use crate::cli::ServerArgs;
use crate::home::default_data_dir;

/// Turns the flags into a server configuration.
pub fn config_from_args(args: &ServerArgs, data_dir: std::path::PathBuf) -> ServerConfig {
    let mut config = ServerConfig::new(data_dir);
    config.listen = args.listen;
    config.public_host = args
        .public_host
        .clone()
        .unwrap_or_else(|| args.listen.to_string());
    config.database_url = args.database_url.clone();
    config.db_max_connections = args.db_max_connections;
    config.files_dir = args.files_dir.clone();
    config.max_file_bytes = args.max_file_size;
    config.transaction_ttl = args.transaction_timeout;
    config.client_rate_limit = args.rate_limit.0;
    config.login_rate_limit = args.login_rate_limit.0;
    if let Some(path) = &args.server_key_file {
        config.server_key = KeySource::File(path.clone());
    } else if let Some(json) = &args.server_key {
        config.server_key = KeySource::Inline(json.clone());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        };
    }
    config
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(args: ServerArgs) -> Result<()> {
    init_logging("info");
    // Before anything is announced: a SIGTERM right after "listening on" is a graceful stop
    // too, not the default (immediate) death.
    let signals = StopSignals::watch()?;
    if args.dev {
        return super::dev::run(args, signals).await;
    }
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir()?,
    };
    let config = config_from_args(&args, data_dir.clone());
    let server = coffer_server::start(config, None)
        .await
        .context("the server could not start")?;
    let public = server.public_url.clone();
    say!(
        stderr,
        "Coffer {} listening on https://{} (public URL {public})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr
    );
    say!(stderr, "Data directory: {}", data_dir.display());
    say!(
        stderr,
        "Server public key (id {}): {}",
        server.key_id,
        server.public_key
    );
    if let Some(code) = &server.setup_code {
        say!(stderr);
        say!(
            stderr,
            "No owner account exists yet. One-time setup code: {code}"
        );
        say!(
            stderr,
            "(also in {}). Register the first owner with:",
            data_dir.join("setup-code").display()
        );
        let trust = match (&args.tls_cert, &args.tls_key) {
            (Some(_), Some(_)) => String::new(),
            _ => format!(
                " --ca-cert {}",
                data_dir.join("tls").join("cert.pem").display()
            ),
        };
        say!(
            stderr,
            "  coffer vault register --server {public} --email YOU@EXAMPLE.COM --setup-code {code}{trust}"
        );
    }
    serve_until_signal(server, signals).await
}

/// SIGTERM and SIGINT, watched from the moment this is made (signals that arrive before
/// anyone waits are kept).
pub struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts watching.
    pub fn watch() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The first SIGTERM or SIGINT.
    async fn first(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Waits for SIGTERM/SIGINT, then shuts down gracefully.
pub async fn serve_until_signal(server: RunningServer, signals: StopSignals) -> Result<()> {
    let handle = server.shutdown_handle();
    tokio::spawn(async move {
        signals.first().await;
        // Stop first, log after: logging can fail (stderr closed), stopping must not.
        let _ = handle.send(true);
        tracing::info!("shutting down");
    });
    server
        .wait()
        .await
        .context("the server stopped with an error")
}
