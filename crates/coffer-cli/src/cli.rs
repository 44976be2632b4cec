//! The command-line grammar (clap derive). Names and flags are a contract (DESIGN.md §4).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Coffer: a zero-knowledge secrets manager that speaks the Keeper Secrets Manager protocol.
#[derive(Debug, Parser)]
#[command(
    name = "coffer",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
#[command(
    after_help = "Start here:\n  coffer server --dev        a throwaway server with demo data and a ready client config\n  coffer vault --help        manage folders, records, applications and client tokens"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Coffer server (HTTPS: KSM API, owner API, files).
    Server(ServerArgs),
    /// Owner tools: accounts, folders, records, files, applications, client tokens.
    Vault(VaultArgs),
    /// Operator tools: server keys, moving to another database.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Client profiles: bind a one-time token, list, switch, export, import, delete.
    Profile(crate::client_cli::ProfileArgs),
    /// Read and write the secrets shared with this device (records, fields, files, TOTP).
    Secret(crate::client_cli::SecretArgs),
    /// Folders shared with this device.
    Folder(crate::client_cli::FolderArgs),
    /// Run a command with keeper:// notations in its environment replaced by secrets.
    Exec(crate::client_cli::ExecArgs),
    /// Replace keeper:// notations in a template (a .env file, a config) with secrets.
    Interpolate(crate::client_cli::InterpolateArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(crate::client_cli::CompletionArgs),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Write a new server key file (for instances that share one key: --server-key-file).
    #[command(
        after_help = "Example:\n  coffer admin gen-server-key -o /etc/coffer/server-key.json"
    )]
    GenServerKey {
        /// Where to write it (mode 0600); refuses to overwrite.
        #[arg(short, long)]
        output: PathBuf,
        /// Print `{"path","key_id","public_key"}` instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a new key to a server key file; it becomes the published key, older ones keep working.
    #[command(
        after_help = "Restart the server(s) afterwards. Clients configured with an older key keep working;\nnew client configs (`coffer vault client add`) carry the new key."
    )]
    RotateServerKey {
        /// The key file (e.g. DATA_DIR/server-key.json).
        file: PathBuf,
        /// Print `{"path","key_id","public_key","key_ids"}` instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Copy a whole database into a new, empty one (e.g. SQLite to PostgreSQL) and verify it.
    #[command(
        after_help = "Stop the server first: changes made after the copy started are not moved.\nNothing is decrypted: every key and secret is copied as the ciphertext it is. Sessions and\nunfinished uploads are left behind (owners log in again). Attachment contents are files, not\nrows: copy DATA_DIR/files to the new --files-dir (or point --files-dir at the same directory).\n\nExample:\n  coffer admin migrate --from sqlite:///var/lib/coffer/coffer.db --to postgres://coffer@db.example.com/coffer"
    )]
    Migrate {
        /// Database to copy: sqlite://PATH (the file must exist) or postgres://USER@HOST/DB.
        #[arg(long, env = "COFFER_MIGRATE_FROM", hide_env_values = true)]
        from: String,
        /// Empty database to copy into: sqlite://PATH or postgres://USER@HOST/DB (the schema
        /// is created).
        #[arg(long, env = "COFFER_MIGRATE_TO", hide_env_values = true)]
        to: String,
        /// Print one JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  coffer server --dev\n  coffer server --data-dir /var/lib/coffer --listen 0.0.0.0:443 --public-host vault.example.com\n  coffer server --tls-cert cert.pem --tls-key key.pem --public-host vault.example.com:8443"
)]
pub struct ServerArgs {
    /// State directory: database, server key, TLS material, files. [default: ~/.local/share/coffer;
    /// with --dev a new temporary directory]
    #[arg(long, env = "COFFER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "COFFER_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// HOST or HOST:PORT clients use to reach this server (goes into client configs and file
    /// links).
    /// [default: the --listen address]
    #[arg(long, env = "COFFER_PUBLIC_HOST", value_parser = parse_public_host)]
    pub public_host: Option<String>,
    /// PEM certificate chain; without it a self-signed certificate is made in DATA_DIR/tls/.
    #[arg(long, env = "COFFER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "COFFER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Server key file shared by several instances (see `coffer admin gen-server-key`).
    /// [default: DATA_DIR/server-key.json, generated on first start]
    #[arg(long, env = "COFFER_SERVER_KEY_FILE")]
    pub server_key_file: Option<PathBuf>,
    /// The server key file's JSON itself (e.g. from a secret store).
    #[arg(
        long,
        env = "COFFER_SERVER_KEY",
        hide_env_values = true,
        conflicts_with = "server_key_file"
    )]
    pub server_key: Option<String>,
    /// Database: sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB (password and port
    /// optional; several instances may share a PostgreSQL database).
    /// [default: SQLite in DATA_DIR/coffer.db]
    #[arg(long, env = "COFFER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Most connections to PostgreSQL this instance opens (every instance counts against the
    /// server's max_connections); unused with SQLite.
    #[arg(long, env = "COFFER_DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_max_connections: u32,
    /// Directory of encrypted file contents; several instances may share one (a network file
    /// system). [default: DATA_DIR/files]
    #[arg(long, env = "COFFER_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    /// Largest encrypted file accepted, in bytes (suffixes K, M, G allowed).
    #[arg(long, env = "COFFER_MAX_FILE_SIZE", default_value = "100M", value_parser = parse_size)]
    pub max_file_size: u64,
    /// Open `general`/`rotation` transactions are rolled back after this (e.g. 30m, 1h).
    #[arg(long, env = "COFFER_TRANSACTION_TIMEOUT", default_value = "1h", value_parser = humantime::parse_duration)]
    pub transaction_timeout: std::time::Duration,
    /// KSM requests allowed per client and endpoint, as N/WINDOW (e.g. 200/10s), or `off`.
    /// Past it, clients get `403 throttled` with `retry_after` and the SDKs back off.
    #[arg(long, env = "COFFER_RATE_LIMIT", default_value = "200/10s", value_parser = parse_rate)]
    pub rate_limit: RateSetting,
    /// Owner login attempts allowed per email, as N/WINDOW, or `off`.
    #[arg(long, env = "COFFER_LOGIN_RATE_LIMIT", default_value = "10/1m", value_parser = parse_rate)]
    pub login_rate_limit: RateSetting,
    /// Development mode: throwaway data, a demo owner, folder, records, app and a ready
    /// one-time token and config, printed at start.
    #[arg(long)]
    pub dev: bool,
}

/// A rate limit, or none (`off`).
#[derive(Debug, Clone, Copy)]
pub struct RateSetting(pub Option<coffer_server::throttle::RateLimit>);

/// Parses a rate limit (`N/WINDOW`) or `off`.
pub fn parse_rate(text: &str) -> Result<RateSetting, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(RateSetting(None));
    }
    coffer_server::throttle::RateLimit::parse(text).map(|r| RateSetting(Some(r)))
}

/// `--public-host`: HOST or HOST:PORT, checked as `profile init --hostname` is (a leading
/// `https://` and a trailing `/` are dropped); it goes into every client configuration and file
/// link as is.
fn parse_public_host(text: &str) -> Result<String, String> {
    crate::cmd::client::profile::normalize_host(text).map_err(|e| format!("{e:#}"))
}

/// Parses `100M`, `5K`, `1G` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, factor) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 1024),
        Some('M' | 'm') => (&text[..text.len() - 1], 1024 * 1024),
        Some('G' | 'g') => (&text[..text.len() - 1], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a size like 100M, 512K or 1048576"))
}

#[derive(Debug, Args)]
pub struct VaultArgs {
    #[command(flatten)]
    pub global: VaultGlobal,
    #[command(subcommand)]
    pub command: VaultCommand,
}

#[derive(Debug, Args, Clone)]
pub struct VaultGlobal {
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Extra CA certificate (PEM) to trust, e.g. the server's DATA_DIR/tls/cert.pem.
    #[arg(long, env = "COFFER_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Create an owner account (the first one needs the server's setup code).
    #[command(
        after_help = "The master password comes from COFFER_PASSWORD or a prompt.\nExample:\n  coffer vault register --server https://127.0.0.1:8443 --email me@example.com --setup-code $(cat DATA_DIR/setup-code) --ca-cert DATA_DIR/tls/cert.pem"
    )]
    Register {
        /// Server URL, https://HOST or https://HOST:PORT.
        #[arg(long)]
        server: String,
        /// Login email.
        #[arg(long)]
        email: String,
        /// One-time setup code printed by the server at first start (DATA_DIR/setup-code).
        /// Codes are URL-safe base64 and may start with `-`.
        #[arg(
            long,
            env = "COFFER_SETUP_CODE",
            hide_env_values = true,
            allow_hyphen_values = true
        )]
        setup_code: Option<String>,
    },
    /// Log in and remember the session in COFFER_HOME.
    Login {
        /// Server URL, https://HOST or https://HOST:PORT.
        #[arg(long)]
        server: String,
        /// Login email.
        #[arg(long)]
        email: String,
    },
    /// End the session.
    Logout,
    /// Folders: shared folders and sub-folders.
    #[command(subcommand)]
    Folder(FolderCommand),
    /// Records.
    #[command(subcommand)]
    Record(RecordCommand),
    /// File attachments.
    #[command(subcommand)]
    File(FileCommand),
    /// Applications and what they can see.
    #[command(subcommand)]
    App(AppCommand),
    /// Client devices (one-time tokens) of an application.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Audit events of your vault, newest first.
    Audit {
        /// Only this actor (`owner:UID` or `client:CLIENT_ID`).
        #[arg(long)]
        actor: Option<String>,
        /// Only actions starting with this (e.g. `client.` or `ksm.get_secret`).
        #[arg(long)]
        action: Option<String>,
        /// Only events about this UID.
        #[arg(long)]
        target: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum FolderCommand {
    /// Create a shared folder, or a sub-folder with --parent. Prints the UID.
    Create {
        /// Folder name.
        name: String,
        /// Parent folder UID.
        #[arg(long)]
        parent: Option<String>,
    },
    /// List folders as a tree.
    List,
    /// Rename a folder.
    Rename {
        /// Folder UID.
        uid: String,
        /// New name.
        name: String,
    },
    /// Delete a folder (a non-empty one only with --force, which deletes everything in it).
    Delete {
        /// Folder UID.
        uid: String,
        /// Also delete its sub-folders and records.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecordCommand {
    /// Add a record. Prints the UID.
    #[command(
        after_help = "Field values that are JSON (objects, arrays, numbers, booleans) are parsed as JSON.\nExamples:\n  coffer vault record add --folder UID --type login --title 'Prod DB' --field login=admin --field password='s3cret' --field url=https://db.example.com\n  coffer vault record add --folder UID --type databaseCredentials --title DB --field 'host={\"hostName\":\"db\",\"port\":\"5432\"}' --custom Environment=prod\n  coffer vault record add --folder UID --type contact --title Jane --custom 'Owner:name={\"first\":\"Jane\",\"last\":\"Doe\"}'\n  coffer vault record add --folder UID --json-file record.json"
    )]
    Add {
        /// Folder to put it in.
        #[arg(long)]
        folder: String,
        /// Record type (login, databaseCredentials, bankCard, …; custom types allowed).
        #[arg(long = "type", required_unless_present = "json_file")]
        record_type: Option<String>,
        /// Title.
        #[arg(long, required_unless_present = "json_file")]
        title: Option<String>,
        /// Standard field, TYPE=VALUE (repeat for several fields or values).
        #[arg(long = "field")]
        fields: Vec<String>,
        /// Custom field, LABEL=VALUE (text) or LABEL:TYPE=VALUE.
        #[arg(long = "custom")]
        custom: Vec<String>,
        /// Notes.
        #[arg(long)]
        notes: Option<String>,
        /// Read the whole record JSON (title, type, fields, custom, notes) from a file.
        #[arg(long, conflicts_with_all = ["record_type", "title", "fields", "custom", "notes"])]
        json_file: Option<PathBuf>,
    },
    /// List records (titles and UIDs).
    List {
        /// Only records in this folder.
        #[arg(long)]
        folder: Option<String>,
    },
    /// Show one record, decrypted.
    Get {
        /// Record UID.
        uid: String,
    },
    /// Change a record: title, notes, fields (each --field/--custom replaces that field's values).
    #[command(
        after_help = "Examples:\n  coffer vault record edit UID --field password='n3w-s3cret'\n  coffer vault record edit UID --title 'Prod DB (old)' --custom Environment=staging\n  coffer vault record edit UID --json-file record.json"
    )]
    Edit {
        /// Record UID.
        uid: String,
        /// New title.
        #[arg(long)]
        title: Option<String>,
        /// New notes.
        #[arg(long)]
        notes: Option<String>,
        /// Standard field, TYPE=VALUE (or TYPE.LABEL=VALUE); replaces that field's values.
        #[arg(long = "field")]
        fields: Vec<String>,
        /// Custom field, LABEL=VALUE or LABEL:TYPE=VALUE; replaces that field's values.
        #[arg(long = "custom")]
        custom: Vec<String>,
        /// Replace the whole record JSON from a file.
        #[arg(long, conflicts_with_all = ["title", "fields", "custom", "notes"])]
        json_file: Option<PathBuf>,
    },
    /// Delete a record with its attachments and history.
    Delete {
        /// Record UID.
        uid: String,
    },
    /// List every revision of a record (newest first).
    History {
        /// Record UID.
        uid: String,
    },
    /// Make an old revision current again (saved as a new revision).
    Restore {
        /// Record UID.
        uid: String,
        /// Revision to restore (from `record history`).
        revision: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// Encrypt and attach a file to a record. Prints the file UID.
    Attach {
        /// Record UID.
        record_uid: String,
        /// File to attach.
        path: PathBuf,
        /// Name to store (default: the file's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Download and decrypt an attachment.
    Download {
        /// Record UID.
        record_uid: String,
        /// File UID or name (file UIDs may start with `-`).
        #[arg(allow_hyphen_values = true)]
        file: String,
        /// Where to write it (created with mode 0600).
        #[arg(short, long)]
        output: PathBuf,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Delete an attachment from a record.
    Remove {
        /// Record UID.
        record_uid: String,
        /// File UID (file UIDs may start with `-`).
        #[arg(allow_hyphen_values = true)]
        file_uid: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an application. Prints the UID.
    Create {
        /// Application name.
        name: String,
    },
    /// List applications and their shares.
    List,
    /// Share a shared folder or a record with an application (read-only unless --editable).
    Share {
        /// Application UID.
        app_uid: String,
        /// Shared folder UID or record UID.
        target_uid: String,
        /// Let the application's devices change it.
        #[arg(long)]
        editable: bool,
    },
    /// Stop sharing a folder or record with an application.
    Unshare {
        /// Application UID.
        app_uid: String,
        /// Shared folder UID or record UID.
        target_uid: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Make a one-time token for a new device; prints the token and a base64 KSM config.
    #[command(
        after_help = "The config is what KSM_CONFIG and the official SDKs accept; give it to exactly one device.\nExample:\n  coffer vault client add APP_UID --name ci-runner --first-access-expires 60m"
    )]
    Add {
        /// Application UID.
        app_uid: String,
        /// Device name.
        #[arg(long)]
        name: Option<String>,
        /// The token must be used within this time (e.g. 10m, 2h, 7d).
        #[arg(long, value_parser = humantime::parse_duration)]
        first_access_expires: Option<std::time::Duration>,
        /// Do not lock the device to the IP address it first connects from.
        #[arg(long)]
        unlock_ip: bool,
    },
    /// List the devices of an application.
    List {
        /// Application UID.
        app_uid: String,
    },
    /// Revoke a device; it is refused from its next request on.
    Remove {
        /// Application UID.
        app_uid: String,
        /// Client id (from `client list`).
        client_id: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command, VaultCommand};
    use crate::client_cli::ProfileCommand;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("coffer").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Setup codes and client keys are URL-safe base64: about one in 64 starts with `-`, which
    /// must be taken as the value, not as an unknown flag.
    #[test]
    fn secrets_that_start_with_a_hyphen_are_values() {
        let cli = parse(&[
            "vault",
            "register",
            "--server",
            "https://127.0.0.1:8443",
            "--setup-code",
            "-_ffSt7YQEvMOuBIufM9Ziot",
            "--email",
            "me@example.com",
        ]);
        let Command::Vault(vault) = cli.command else {
            panic!("not vault");
        };
        let VaultCommand::Register {
            setup_code, email, ..
        } = vault.command
        else {
            panic!("not register");
        };
        assert_eq!(setup_code.as_deref(), Some("-_ffSt7YQEvMOuBIufM9Ziot"));
        assert_eq!(email, "me@example.com");

        for args in [
            &["profile", "init", "-Ab_c", "--profile", "ci"][..],
            &["profile", "init", "--token", "-Ab_c", "--profile", "ci"][..],
        ] {
            let Command::Profile(profile) = parse(args).command else {
                panic!("not profile");
            };
            let ProfileCommand::Init {
                token, token_flag, ..
            } = profile.command
            else {
                panic!("not init");
            };
            assert_eq!(token.or(token_flag).as_deref(), Some("-Ab_c"), "{args:?}");
            assert_eq!(profile.global.profile.as_deref(), Some("ci"), "{args:?}");
        }
    }

    /// File UIDs are client-chosen and, unlike record and folder UIDs, may start with `-`
    /// (PROTOCOL.md §3.10); flags around them still parse.
    #[test]
    fn file_uids_that_start_with_a_hyphen_are_values() {
        use super::FileCommand;
        use crate::client_cli::SecretCommand;
        for args in [
            &["vault", "file", "remove", "rec", "-fileUid", "--json"][..],
            &["vault", "--json", "file", "remove", "rec", "-fileUid"][..],
        ] {
            let cli = parse(args);
            let Command::Vault(vault) = cli.command else {
                panic!("not vault");
            };
            assert!(vault.global.json, "{args:?}");
            let VaultCommand::File(FileCommand::Remove { file_uid, .. }) = vault.command else {
                panic!("not file remove");
            };
            assert_eq!(file_uid, "-fileUid", "{args:?}");
        }
        let cli = parse(&[
            "vault", "file", "download", "rec", "-fileUid", "-o", "out.bin",
        ]);
        let Command::Vault(vault) = cli.command else {
            panic!("not vault");
        };
        let VaultCommand::File(FileCommand::Download { file, output, .. }) = vault.command else {
            panic!("not file download");
        };
        assert_eq!(
            (file.as_str(), output.to_str()),
            ("-fileUid", Some("out.bin"))
        );

        let Command::Secret(secret) =
            parse(&["secret", "delete-attachment", "rec", "-fileUid", "--json"]).command
        else {
            panic!("not secret");
        };
        let SecretCommand::DeleteAttachment { file_uid, json, .. } = secret.command else {
            panic!("not delete-attachment");
        };
        assert_eq!(file_uid, "-fileUid");
        assert!(json);
        let Command::Secret(secret) = parse(&[
            "secret",
            "download",
            "rec",
            "--file-uid",
            "-fileUid",
            "-o",
            "-",
        ])
        .command
        else {
            panic!("not secret");
        };
        let SecretCommand::Download {
            file_uid, output, ..
        } = secret.command
        else {
            panic!("not download");
        };
        assert_eq!(file_uid.as_deref(), Some("-fileUid"));
        assert_eq!(output.as_deref().and_then(|p| p.to_str()), Some("-"));
    }

    /// Flags after the command are still flags when no token is given.
    #[test]
    fn flags_are_not_taken_for_a_token() {
        let Command::Profile(profile) = parse(&["profile", "init", "--profile", "ci"]).command
        else {
            panic!("not profile");
        };
        let ProfileCommand::Init {
            token, token_flag, ..
        } = profile.command
        else {
            panic!("not init");
        };
        assert_eq!((token, token_flag), (None, None));
        assert_eq!(profile.global.profile.as_deref(), Some("ci"));
    }

    #[test]
    fn public_hosts_are_host_and_optional_port() {
        for (given, kept) in [
            ("vault.example.com", "vault.example.com"),
            ("vault.example.com:8443", "vault.example.com:8443"),
            ("https://vault.example.com/", "vault.example.com"),
            ("10.0.0.5:443", "10.0.0.5:443"),
            ("[2001:db8::1]:8443", "[2001:db8::1]:8443"),
        ] {
            assert_eq!(crate::cli::parse_public_host(given).as_deref(), Ok(kept));
        }
        for bad in [
            "http://vault.example.com",
            "https://bad host/x",
            "vault.example.com/path",
            "host:0",
            "host:99999",
            "",
            "[::1",
            "::1",
        ] {
            assert!(crate::cli::parse_public_host(bad).is_err(), "{bad}");
        }
    }
}
