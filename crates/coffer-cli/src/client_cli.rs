//! The grammar of the client commands (`profile`, `secret`, `folder`, `exec`, `interpolate`,
//! `completion`): what a machine or a person holding a client device runs. They reach the
//! server only through the Coffer SDK (`coffer-sdk`).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Flags every client command takes (before or after the sub-command name).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Profile and connection")]
pub struct ClientGlobal {
    /// Use this profile instead of the active one (`coffer profile list`); for `profile init`
    /// and `profile import`, the name of the new profile [default: default].
    #[arg(long, global = true, env = "COFFER_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Answer reads from the offline cache (COFFER_HOME/cache/) when the server cannot be
    /// reached; every successful read refreshes it.
    #[arg(long, global = true, env = "COFFER_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    pub cache: bool,
    /// Extra CA certificate (PEM) to trust, e.g. the server's DATA_DIR/tls/cert.pem. `profile
    /// init` remembers it for the profile.
    #[arg(long, global = true, env = "COFFER_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
}

impl ClientGlobal {
    /// The profile asked for; an empty `COFFER_PROFILE` (or `--profile ""`) asks for none, as
    /// an empty `KSM_CONFIG` is no configuration.
    pub fn profile_name(&self) -> Option<&str> {
        self.profile
            .as_deref()
            .filter(|name| !name.trim().is_empty())
    }
}

// ---- profile -------------------------------------------------------------------------------

/// `coffer profile …`
#[derive(Debug, Args)]
#[command(
    after_help = "Profiles live in COFFER_HOME/profiles.json (mode 0600). Which configuration a command uses:\n  1. --profile NAME (or COFFER_PROFILE)\n  2. KSM_CONFIG (a base64 or JSON KSM config, as the official SDKs take it)\n  3. the active profile\n\nExamples:\n  coffer profile init 127.0.0.1:AbC… --hostname 127.0.0.1:8443 --ca-cert cert.pem\n  coffer profile list\n  coffer profile active staging"
)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub global: ClientGlobal,
    #[command(subcommand)]
    pub command: ProfileCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Bind a one-time token (or a KSM config) to this machine and save it as a profile.
    #[command(
        after_help = "The token comes from `coffer vault client add` (HOST:KEY; tokens carry no port). Before the\ntoken is spent, the token's shape, the host name, TLS and the server are checked: a wrong\ninput leaves the token usable and nothing saved. A base64 KSM config (the `config` of `vault\nclient add`) is accepted in place of a token. Without TOKEN: KSM_TOKEN, else a KSM_CONFIG that\nis not bound yet (later commands then use this profile for it), else standard input (hidden\nwhen typed).\n\nExamples:\n  coffer profile init vault.example.com:AbCdEf…\n  coffer profile init 127.0.0.1:AbCdEf… --hostname 127.0.0.1:8443 --ca-cert DATA_DIR/tls/cert.pem\n  coffer profile init --profile ci < token.txt"
    )]
    Init {
        /// One-time token HOST:KEY (or a base64 KSM config). Prefer standard input: arguments
        /// are visible to other users of this machine.
        #[arg(allow_hyphen_values = true)]
        token: Option<String>,
        /// The token, as the official ksm CLI spells it.
        #[arg(
            long = "token",
            value_name = "TOKEN",
            conflicts_with = "token",
            allow_hyphen_values = true
        )]
        token_flag: Option<String>,
        /// Server HOST or HOST:PORT when it is not the token's host on port 443.
        #[arg(long, value_name = "HOST[:PORT]")]
        hostname: Option<String>,
        /// The server's public key (B64URL of 65 bytes). Default: asked from a Coffer server;
        /// give it for other KSM servers.
        #[arg(long, value_name = "KEY", requires = "server_public_key_id")]
        server_public_key: Option<String>,
        /// Id of --server-public-key.
        #[arg(long, value_name = "ID", requires = "server_public_key")]
        server_public_key_id: Option<u32>,
        /// Replace an existing profile of the same name.
        #[arg(long)]
        force: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the profiles (`*` marks the active one).
    #[command(after_help = "Example:\n  coffer profile list --json")]
    List {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Make a profile the active one.
    #[command(after_help = "Example:\n  coffer profile active staging")]
    Active {
        /// Profile name.
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a profile's KSM config as base64 (what KSM_CONFIG and the official SDKs take).
    #[command(
        after_help = "The config is the device's identity: whoever has it reads what the device reads.\n\nExamples:\n  coffer profile export > ci-config.b64\n  KSM_CONFIG=$(coffer profile export --profile ci) python app.py"
    )]
    Export {
        /// Profile name [default: --profile, else the active profile].
        name: Option<String>,
        /// Print `{"profile","config"}` instead of the bare base64.
        #[arg(long)]
        json: bool,
    },
    /// Save a KSM config (base64 or JSON, e.g. from `profile export`) as a profile.
    #[command(
        after_help = "Without CONFIG it is read from standard input. A config that is not bound yet binds on first use.\n\nExamples:\n  coffer profile import --profile ci < ci-config.b64\n  coffer profile import eyJob3N0bmFtZSI6…"
    )]
    Import {
        /// The config (base64 or JSON). Prefer standard input.
        config: Option<String>,
        /// Replace an existing profile of the same name.
        #[arg(long)]
        force: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Delete a profile.
    #[command(after_help = "Example:\n  coffer profile delete staging")]
    Delete {
        /// Profile name.
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

// ---- secret --------------------------------------------------------------------------------

/// `coffer secret …`
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  coffer secret list\n  coffer secret get kKqi9CtJf8S1geE9WPQi6g\n  coffer secret notation 'keeper://Prod DB/field/password'\n  coffer secret update kKqi9CtJf8S1geE9WPQi6g --field password='n3w-s3cret'"
)]
pub struct SecretArgs {
    #[command(flatten)]
    pub global: ClientGlobal,
    #[command(subcommand)]
    pub command: SecretCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// List the records shared with this device: a table on a terminal, UID, type and title
    /// separated by tabs when piped, JSON with --json.
    #[command(
        after_help = "PATTERN matches titles ignoring case: a glob when it has * or ?, else any title containing it.\n\nExamples:\n  coffer secret list\n  coffer secret list --folder JwUFzZ3sWXa1Rp5Jdv4y2g --title 'prod*'\n  coffer secret list --json | jq -r '.records[].uid'"
    )]
    List {
        /// Only records in this shared folder or sub-folder.
        #[arg(long, value_name = "UID")]
        folder: Option<String>,
        /// Only records whose title matches.
        #[arg(long, value_name = "PATTERN")]
        title: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show records, or one field of them. Secret values are masked unless --unmask.
    #[command(
        after_help = "Masked: passwords, hidden fields (secret), PINs, one-time-code seeds, license and account\nnumbers, card numbers and codes, private keys, security answers. --json masks them too unless\n--unmask. With --field or --custom-field only that field's values are printed, one per line\n(--json: {\"uid\",\"values\"}; several UIDs give {\"records\":[…]}).\n\nExamples:\n  coffer secret get kKqi9CtJf8S1geE9WPQi6g\n  coffer secret get --title 'Prod DB' --field password --unmask\n  coffer secret get kKqi9CtJf8S1geE9WPQi6g --custom-field Environment\n  coffer secret get kKqi9CtJf8S1geE9WPQi6g --json --unmask | jq .fields"
    )]
    Get {
        /// Record UIDs.
        #[arg(required_unless_present_any = ["title", "uid"], conflicts_with = "title")]
        uids: Vec<String>,
        /// A record UID (the official ksm CLI's spelling; same as the positional UIDs).
        #[arg(long, short = 'u', value_name = "UID", conflicts_with = "title")]
        uid: Vec<String>,
        /// The record with exactly this title instead of a UID.
        #[arg(long, short = 't', value_name = "TITLE")]
        title: Option<String>,
        /// Only this standard field (type or label).
        #[arg(
            long,
            short = 'f',
            value_name = "FIELD",
            conflicts_with = "custom_field"
        )]
        field: Option<String>,
        /// Only this custom field (label or type).
        #[arg(long, value_name = "LABEL")]
        custom_field: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Show secret values instead of ********.
        #[arg(long)]
        unmask: bool,
    },
    /// Print the value(s) a keeper:// notation selects (never masked), one per line.
    #[command(
        after_help = "A notation names a record by UID or title, then what to take from it:\n  keeper://UID/field/password            a standard field (type or label)\n  keeper://Prod DB/custom_field/Env       a custom field\n  keeper://UID/field/url[1]               one value by index\n  keeper://UID/field/host[0][hostName]    a property of an object value\n  keeper://UID/file/cert.pem              a file's content (written as is)\n  keeper://UID/title | /type | /notes\nEscape / [ ] \\ in titles and labels with a backslash.\n\nExample:\n  coffer secret notation 'keeper://Prod DB/field/password'"
    )]
    Notation {
        /// keeper://RECORD/SELECTOR…
        notation: String,
        /// Print a JSON array of the values.
        #[arg(long)]
        json: bool,
    },
    /// Change a record: each --field/--custom-field replaces that field's values (repeat the
    /// same field to give several).
    #[command(
        after_help = "Values of object fields (host, name, phone, paymentCard, …) and numbers are JSON.\n\nExamples:\n  coffer secret update kKqi9CtJf8S1geE9WPQi6g --field password='n3w-s3cret'\n  coffer secret update kKqi9CtJf8S1geE9WPQi6g --generate-password\n  coffer secret update kKqi9CtJf8S1geE9WPQi6g --title 'Prod DB (old)' --custom-field Environment=staging\n  coffer secret update kKqi9CtJf8S1geE9WPQi6g --field 'host={\"hostName\":\"db2\",\"port\":\"5432\"}'"
    )]
    Update {
        /// Record UID.
        uid: String,
        /// Standard field, TYPE=VALUE or TYPE.LABEL=VALUE.
        #[arg(long = "field", value_name = "TYPE=VALUE")]
        fields: Vec<String>,
        /// Custom field, LABEL=VALUE (text) or LABEL:TYPE=VALUE.
        #[arg(long = "custom-field", alias = "custom", value_name = "LABEL=VALUE")]
        custom: Vec<String>,
        /// New title.
        #[arg(long)]
        title: Option<String>,
        /// New notes.
        #[arg(long)]
        notes: Option<String>,
        /// Set the password to a new random one (see `secret password`).
        #[arg(long)]
        generate_password: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Create a record in a shared folder (or a sub-folder). Prints its UID.
    #[command(
        after_help = "Examples:\n  coffer secret add --folder JwUFzZ3sWXa1Rp5Jdv4y2g --type login --title 'Prod DB' --field login=admin --generate-password --field url=https://db.example.com\n  coffer secret add --folder JwUFzZ3sWXa1Rp5Jdv4y2g --type databaseCredentials --title DB --field 'host={\"hostName\":\"db\",\"port\":\"5432\"}' --custom-field Environment=prod\n  coffer secret add --folder JwUFzZ3sWXa1Rp5Jdv4y2g --json-file record.json"
    )]
    Add {
        /// Shared folder or sub-folder UID.
        #[arg(long, value_name = "UID")]
        folder: String,
        /// Record type (login, databaseCredentials, bankCard, serverCredentials, …).
        #[arg(
            long = "type",
            value_name = "TYPE",
            required_unless_present = "json_file"
        )]
        record_type: Option<String>,
        /// Title.
        #[arg(long, required_unless_present = "json_file")]
        title: Option<String>,
        /// Standard field, TYPE=VALUE (repeat for several fields or values).
        #[arg(long = "field", value_name = "TYPE=VALUE")]
        fields: Vec<String>,
        /// Custom field, LABEL=VALUE (text) or LABEL:TYPE=VALUE.
        #[arg(long = "custom-field", alias = "custom", value_name = "LABEL=VALUE")]
        custom: Vec<String>,
        /// Notes.
        #[arg(long)]
        notes: Option<String>,
        /// Fill the password field with a new random password.
        #[arg(long)]
        generate_password: bool,
        /// Read the record (title, type, fields, custom, notes) from a JSON file.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["record_type", "title", "fields", "custom", "notes"])]
        json_file: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Delete records.
    #[command(
        after_help = "Example:\n  coffer secret delete kKqi9CtJf8S1geE9WPQi6g kNzdQ0c2k3y8eG1fFqN3vA"
    )]
    Delete {
        /// Record UIDs.
        #[arg(required = true)]
        uids: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Encrypt and attach a file to a record. Prints the file UID.
    #[command(
        after_help = "A progress bar is shown on a terminal for files over 4 MiB.\n\nExample:\n  coffer secret upload kKqi9CtJf8S1geE9WPQi6g ./tls/cert.pem"
    )]
    Upload {
        /// Record UID.
        uid: String,
        /// File to attach.
        path: PathBuf,
        /// Name to store [default: the file's name].
        #[arg(long)]
        name: Option<String>,
        /// Title to store [default: the name].
        #[arg(long)]
        title: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Download and decrypt an attachment.
    #[command(
        after_help = "The file is written with mode 0600; an existing file is kept unless --force. `-o -` writes\nto standard output.\n\nExamples:\n  coffer secret download kKqi9CtJf8S1geE9WPQi6g --name cert.pem\n  coffer secret download kKqi9CtJf8S1geE9WPQi6g --file-uid Xk3… -o /etc/app/cert.pem --force"
    )]
    Download {
        /// Record UID.
        uid: String,
        /// The attachment's name (or title).
        #[arg(
            long,
            required_unless_present = "file_uid",
            conflicts_with = "file_uid"
        )]
        name: Option<String>,
        /// The attachment's UID (file UIDs may start with `-`).
        #[arg(long, value_name = "UID", allow_hyphen_values = true)]
        file_uid: Option<String>,
        /// Where to write it (`-` for standard output) [default: the attachment's name].
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
        /// Print `{"uid","file_uid","name","path","size"}` once the file is written (not with
        /// `-o -`).
        #[arg(long)]
        json: bool,
    },
    /// Remove an attachment from a record.
    #[command(
        name = "delete-attachment",
        after_help = "Example:\n  coffer secret delete-attachment kKqi9CtJf8S1geE9WPQi6g Xk3Qm0b9TtGgYQ1m2v5c7A"
    )]
    DeleteAttachment {
        /// Record UID.
        uid: String,
        /// File UID (see `secret get`; file UIDs may start with `-`).
        #[arg(allow_hyphen_values = true)]
        file_uid: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the current TOTP code of a record and the seconds it stays valid.
    #[command(
        after_help = "Examples:\n  coffer secret totp kKqi9CtJf8S1geE9WPQi6g\n  coffer secret totp kKqi9CtJf8S1geE9WPQi6g --watch"
    )]
    Totp {
        /// Record UID.
        uid: String,
        /// Keep printing the code as it changes, until Ctrl-C.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Generate a random password (locally; no server needed).
    #[command(
        after_help = "As in the official SDKs: a positive count is a minimum; 0 leaves the class out of the remaining characters (when every class is 0, all four are used); the password is at least as long as the counts add up to.\n\nExamples:\n  coffer secret password\n  coffer secret password --length 20 --special 0\n  coffer secret password --length 16 --digits 4 --uppercase 2"
    )]
    Password {
        /// Length.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
        length: u16,
        /// Lower-case letters (at least).
        #[arg(long, value_name = "N")]
        lowercase: Option<u16>,
        /// Upper-case letters (at least).
        #[arg(long, value_name = "N")]
        uppercase: Option<u16>,
        /// Digits (at least).
        #[arg(long, value_name = "N")]
        digits: Option<u16>,
        /// Special characters (at least).
        #[arg(long, value_name = "N")]
        special: Option<u16>,
        /// The special characters to draw from.
        #[arg(long, value_name = "CHARS")]
        special_characters: Option<String>,
        /// Print one JSON object (`{"password": …}`).
        #[arg(long)]
        json: bool,
    },
}

// ---- folder --------------------------------------------------------------------------------

/// `coffer folder …`
#[derive(Debug, Args)]
#[command(
    after_help = "These are the folders shared with this device's application (the owner's own tools are\n`coffer vault folder`).\n\nExamples:\n  coffer folder list\n  coffer folder add --parent JwUFzZ3sWXa1Rp5Jdv4y2g Databases"
)]
pub struct FolderArgs {
    #[command(flatten)]
    pub global: ClientGlobal,
    #[command(subcommand)]
    pub command: ClientFolderCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientFolderCommand {
    /// List shared folders and their sub-folders as a tree.
    #[command(after_help = "Example:\n  coffer folder list --json")]
    List {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Create a sub-folder. Prints its UID.
    #[command(
        after_help = "Example:\n  coffer folder add --parent JwUFzZ3sWXa1Rp5Jdv4y2g Databases"
    )]
    Add {
        /// Parent: a shared folder or a sub-folder.
        #[arg(long, value_name = "UID")]
        parent: String,
        /// Name.
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Rename a folder.
    #[command(
        after_help = "Example:\n  coffer folder update Qm2kT0aPZ1y3vNs4Rq8LwA 'Databases (old)'"
    )]
    Update {
        /// Folder UID.
        uid: String,
        /// New name.
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Delete folders (a non-empty one only with --force, which deletes what is in it).
    #[command(after_help = "Example:\n  coffer folder delete Qm2kT0aPZ1y3vNs4Rq8LwA --force")]
    Delete {
        /// Folder UIDs.
        #[arg(required = true)]
        uids: Vec<String>,
        /// Also delete the folders' records and sub-folders.
        #[arg(long)]
        force: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

// ---- exec, interpolate, completion ---------------------------------------------------------

/// `coffer exec …`
#[derive(Debug, Args)]
#[command(
    after_help = "Every environment variable whose value is a keeper:// notation is replaced by the secret\nbefore COMMAND starts; with --inline, notations inside the arguments too (a bare one ends at\nwhitespace, a quote, < > , ; ) or }; write {{ keeper://… }} for one with such characters).\nEach notation must select exactly one value (add [0] for the first of several). The\nsecrets are never printed. Coffer's exit code is the command's (128+N when it dies of\nsignal N); SIGINT, SIGTERM and SIGHUP sent to Coffer are passed on to it.\n\nExamples:\n  DB_PASSWORD='keeper://Prod DB/field/password' coffer exec -- ./migrate.sh\n  coffer exec --inline -- app --token keeper://kKqi9CtJf8S1geE9WPQi6g/field/password\n  coffer exec --inline -- psql 'postgres://admin:{{keeper://Prod DB/field/password}}@db/prod'"
)]
pub struct ExecArgs {
    /// Also replace notations inside the command's arguments.
    #[arg(long)]
    pub inline: bool,
    /// The command and its arguments (after --).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
    #[command(flatten)]
    pub global: ClientGlobal,
}

/// `coffer interpolate …`
#[derive(Debug, Args)]
#[command(
    after_help = "A bare notation ends at whitespace, a quote, < > , ; ) or }; write {{ keeper://… }} for one\nthat contains such characters (e.g. a title with spaces). Each must select exactly one\nvalue. The output file is written with mode 0600 and an existing one is kept unless --force.\nNothing is written when a notation fails.\n\nExamples:\n  coffer interpolate -i .env.template -o .env\n  coffer interpolate < config.yaml.tpl > config.yaml"
)]
pub struct InterpolateArgs {
    /// Template to read [default: standard input].
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Where to write the result [default: standard output].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Print `{"output","notations"}` once the output file is written (needs --output).
    #[arg(long, requires = "output")]
    pub json: bool,
    #[command(flatten)]
    pub global: ClientGlobal,
}

/// Shells `coffer completion` writes scripts for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
    /// Elvish.
    Elvish,
    /// PowerShell.
    Powershell,
}

/// `coffer completion SHELL`
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  coffer completion bash > ~/.local/share/bash-completion/completions/coffer\n  coffer completion zsh > \"${fpath[1]}/_coffer\"\n  coffer completion fish > ~/.config/fish/completions/coffer.fish"
)]
pub struct CompletionArgs {
    /// The shell.
    pub shell: Shell,
}
