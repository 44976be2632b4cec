//! `coffer admin migrate`: copies every row of one database into a new, empty one (SQLite to
//! PostgreSQL, or any other pair of backends) and proves the copy complete.
//!
//! The source is read in one consistent snapshot ([`Store::export`]) and written into the target
//! in one transaction ([`Store::import`]), so the target ends up with all of it or nothing. The
//! target is then read back and compared with what was read from the source, table by table:
//! row counts, and a SHA-256 over a canonical serialisation of the rows. Nothing is decrypted on
//! the way: keys and secrets are client-made ciphertext and are copied as opaque bytes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use coffer_server::ServerConfig;
use coffer_store::{Snapshot, Store, StoreError};
use serde_json::{Map, json};

use crate::output;

/// What to do about attachment contents, which are files next to the database, not rows in it.
const FILES_HINT: &str = "Attachment contents are not in the database: copy DATA_DIR/files to the \
                          new --files-dir (or point --files-dir at the same directory).";

/// Runs the command.
pub async fn run(from: &str, to: &str, as_json: bool) -> Result<()> {
    if from == to {
        bail!("--from and --to name the same database; the target must be a new, empty one");
    }
    if let Some(path) = from.strip_prefix("sqlite://")
        && !std::path::Path::new(path).is_file()
    {
        bail!("the source database {path} does not exist (is --from right?)");
    }
    let started = Instant::now();
    let source = open(from)
        .await
        .with_context(|| format!("cannot open the source database {}", describe(from)))?;
    let target = match open(to).await {
        Ok(target) => target,
        Err(e) => {
            source.close().await;
            return Err(e.context(format!("cannot open the target database {}", describe(to))));
        }
    };
    let outcome = copy_and_verify(&*source, &*target).await;
    source.close().await;
    target.close().await;
    let (expected, actual) = outcome?;
    report(from, to, &expected, &actual, started, as_json)
}

/// Opens a database the way `coffer server --database-url URL` does.
async fn open(url: &str) -> Result<Arc<dyn Store>> {
    let mut config = ServerConfig::new(PathBuf::new());
    config.database_url = Some(url.to_owned());
    // The copy runs on one connection at a time.
    config.db_max_connections = 2;
    coffer_server::open_store(&config)
        .await
        .map_err(|e| anyhow!("{e}"))
}

/// Copies `source` into `target`; returns the checksums of what was read from the source and of
/// what the target holds afterwards.
async fn copy_and_verify(
    source: &dyn Store,
    target: &dyn Store,
) -> Result<(Vec<TableSum>, Vec<TableSum>)> {
    let snapshot = source
        .export()
        .await
        .context("cannot read the source database")?;
    if snapshot == Snapshot::default() {
        bail!("the source database is empty: there is nothing to migrate (is --from right?)");
    }
    let existing = target
        .export()
        .await
        .context("cannot read the target database")?;
    let occupied: Vec<String> = summarize(&existing)
        .into_iter()
        .filter(|t| t.rows > 0)
        .map(|t| format!("{} {}", t.name, t.rows))
        .collect();
    if !occupied.is_empty() {
        bail!(
            "the target database is not empty (rows: {}); migrate into a new, empty database",
            occupied.join(", ")
        );
    }
    match target.import(&snapshot).await {
        Ok(()) => {}
        Err(StoreError::Precondition(_)) => bail!(
            "the target database is not empty any more (an owner was created in it meanwhile); \
             nothing was copied"
        ),
        Err(e) => bail!("copying into the target database failed, nothing was copied: {e}"),
    }
    let copied = target
        .export()
        .await
        .context("the copy was written but cannot be read back from the target database")?;
    Ok((summarize(&snapshot), summarize(&copied)))
}

/// Prints the tables and checksums; fails when the target differs from the source.
fn report(
    from: &str,
    to: &str,
    expected: &[TableSum],
    actual: &[TableSum],
    started: Instant,
    as_json: bool,
) -> Result<()> {
    let mismatches: Vec<&str> = expected
        .iter()
        .zip(actual)
        .filter(|(e, a)| e != a)
        .map(|(e, _)| e.name)
        .collect();
    let verified = mismatches.is_empty() && expected.len() == actual.len();
    if as_json {
        let mut tables = Map::new();
        for t in actual {
            tables.insert(
                t.name.to_owned(),
                json!({ "rows": t.rows, "sha256": coffer_crypto::encode_hex(&t.sha256) }),
            );
        }
        let mut out = json!({ "tables": tables, "verified": verified });
        if !verified {
            out["mismatches"] = json!(mismatches);
        }
        output::json(&out)?;
        // stdout carries the one JSON object; the reminder goes to the operator on stderr.
        eprintln!("{FILES_HINT}");
    } else {
        output::line(format!(
            "Copied {} to {} in {:.2} s.\n",
            describe(from),
            describe(to),
            started.elapsed().as_secs_f64()
        ))?;
        output::line(format!("{:<20} {:>8}  sha256", "table", "rows"))?;
        for (e, a) in expected.iter().zip(actual) {
            let mark = if e == a {
                String::new()
            } else {
                format!(
                    "  MISMATCH: source {} rows, {}",
                    e.rows,
                    coffer_crypto::encode_hex(&e.sha256)
                )
            };
            output::line(format!(
                "{:<20} {:>8}  {}{mark}",
                a.name,
                a.rows,
                coffer_crypto::encode_hex(&a.sha256)
            ))?;
        }
        let total: usize = actual.iter().map(|t| t.rows).sum();
        output::line(format!("{:<20} {:>8}", "total", total))?;
        if verified {
            output::line(
                "\nVerified: every table of the target has the source's row count and SHA-256.",
            )?;
            output::line(format!("\nNext:\n  * {FILES_HINT}"))?;
            output::line(
                "  * Start the server with --database-url pointing at the target, and the same \
                 server key (DATA_DIR/server-key.json or --server-key-file) and TLS certificate, \
                 so configured clients keep working.\n  \
                 * Sessions were not copied: owners log in again.",
            )?;
        }
    }
    if !verified {
        bail!(
            "verification failed: the target differs from the source in {}. Do not use the \
             target; drop it, and look at both databases before trying again",
            mismatches.join(", ")
        );
    }
    Ok(())
}

/// A database URL for messages: the password of a PostgreSQL URL and its parameters left out.
fn describe(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if scheme == "sqlite" {
        return url.to_owned();
    }
    let rest = rest.split('?').next().unwrap_or(rest);
    match rest.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or(user);
            format!("{scheme}://{user}@{host}")
        }
        None => format!("{scheme}://{rest}"),
    }
}

// ---- checksums -----------------------------------------------------------------------------

/// Row count and checksum of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSum {
    /// The table's name in the database.
    pub name: &'static str,
    /// Rows in it.
    pub rows: usize,
    /// SHA-256 over its rows' canonical forms ([`Canon`]), sorted, each preceded by its length.
    /// Sorting makes it independent of the order a backend lists rows in.
    pub sha256: [u8; 32],
}

/// The canonical byte form of one row: every value starts with a type tag, and variable-length
/// values with their length, so two different rows never serialise alike.
#[derive(Default)]
struct Canon(Vec<u8>);

impl Canon {
    fn length(mut self, n: usize) -> Self {
        self.0.extend_from_slice(&(n as u64).to_be_bytes());
        self
    }

    fn bytes(mut self, value: &[u8]) -> Self {
        self.0.push(b'b');
        self = self.length(value.len());
        self.0.extend_from_slice(value);
        self
    }

    fn text(mut self, value: &str) -> Self {
        self.0.push(b't');
        self = self.length(value.len());
        self.0.extend_from_slice(value.as_bytes());
        self
    }

    fn int(mut self, value: i64) -> Self {
        self.0.push(b'i');
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    fn flag(mut self, value: bool) -> Self {
        self.0.push(b'f');
        self.0.push(u8::from(value));
        self
    }

    fn none(mut self) -> Self {
        self.0.push(b'n');
        self
    }

    fn opt_bytes(self, value: Option<&Vec<u8>>) -> Self {
        match value {
            Some(v) => self.bytes(v),
            None => self.none(),
        }
    }

    fn opt_text(self, value: Option<&String>) -> Self {
        match value {
            Some(v) => self.text(v),
            None => self.none(),
        }
    }

    fn opt_int(self, value: Option<i64>) -> Self {
        match value {
            Some(v) => self.int(v),
            None => self.none(),
        }
    }

    fn list(mut self, items: &[String]) -> Self {
        self.0.push(b'l');
        self = self.length(items.len());
        items.iter().fold(self, |row, item| row.text(item))
    }
}

/// Counts and checksums `rows`, each turned into its canonical form by `canon`.
fn table<T>(name: &'static str, rows: &[T], canon: impl Fn(&T) -> Canon) -> TableSum {
    let mut encoded: Vec<Vec<u8>> = rows.iter().map(|row| canon(row).0).collect();
    encoded.sort_unstable();
    let mut all = Vec::with_capacity(encoded.iter().map(|r| r.len() + 8).sum());
    for row in &encoded {
        all.extend_from_slice(&(row.len() as u64).to_be_bytes());
        all.extend_from_slice(row);
    }
    TableSum {
        name,
        rows: rows.len(),
        sha256: coffer_crypto::sha256(&all),
    }
}

/// Counts and checksums of every table a snapshot holds, in a fixed order (the order the rows
/// are imported in).
pub fn summarize(s: &Snapshot) -> Vec<TableSum> {
    vec![
        table("settings", &s.settings, |(key, value)| {
            Canon::default().text(key).bytes(value)
        }),
        table("owners", &s.owners, |o| {
            Canon::default()
                .text(&o.uid)
                .text(&o.email)
                .text(&o.kdf)
                .text(&o.auth_hash)
                .bytes(&o.encrypted_data_key)
                .bytes(&o.public_key)
                .bytes(&o.encrypted_private_key)
                .int(o.created_at)
        }),
        table("folders", &s.folders, |f| {
            Canon::default()
                .text(&f.uid)
                .text(&f.owner_uid)
                .opt_text(f.parent_uid.as_ref())
                .text(&f.root_uid)
                .bytes(&f.key)
                .bytes(&f.data)
                .int(f.created_at)
        }),
        table("records", &s.records, |r| {
            Canon::default()
                .text(&r.uid)
                .text(&r.owner_uid)
                .text(&r.root_folder_uid)
                .text(&r.folder_uid)
                .bytes(&r.key)
                .opt_bytes(r.owner_key.as_ref())
                .bytes(&r.data)
                .int(r.revision)
                .int(r.created_at)
                .int(r.updated_at)
        }),
        table("record_history", &s.history, |(record_uid, h)| {
            Canon::default()
                .text(record_uid)
                .int(h.revision)
                .bytes(&h.data)
                .text(&h.actor)
                .int(h.at)
        }),
        table("record_transactions", &s.transactions, |t| {
            Canon::default()
                .text(&t.record_uid)
                .text(&t.kind)
                .bytes(&t.previous_data)
                .int(t.previous_revision)
                .list(&t.remove_files)
                .text(&t.actor)
                .int(t.expires_at)
        }),
        table("files", &s.files, |f| {
            Canon::default()
                .text(&f.uid)
                .text(&f.record_uid)
                .bytes(&f.key)
                .opt_bytes(f.owner_key.as_ref())
                .bytes(&f.data)
                .int(f.size)
                .int(f.created_at)
        }),
        table("apps", &s.apps, |a| {
            Canon::default()
                .text(&a.uid)
                .text(&a.owner_uid)
                .bytes(&a.key)
                .bytes(&a.data)
                .int(a.created_at)
        }),
        table("shares", &s.shares, |sh| {
            Canon::default()
                .text(&sh.app_uid)
                .text(&sh.target_uid)
                .text(sh.kind.as_str())
                .bytes(&sh.key)
                .flag(sh.editable)
        }),
        table("devices", &s.devices, |d| {
            Canon::default()
                .text(&d.client_id)
                .text(&d.app_uid)
                .bytes(&d.name)
                .bytes(&d.encrypted_app_key)
                .opt_bytes(d.public_key.as_ref())
                .opt_int(d.first_access_expires_at)
                .flag(d.ip_lock)
                .opt_int(d.bound_at)
                .opt_text(d.bound_ip.as_ref())
                .int(d.created_at)
                .opt_int(d.last_access_at)
        }),
        table("audit_events", &s.audit, |a| {
            Canon::default()
                .int(a.id)
                .opt_text(a.event.owner_uid.as_ref())
                .int(a.event.at)
                .text(&a.event.actor)
                .text(&a.event.action)
                .opt_text(a.event.target.as_ref())
                .opt_text(a.event.ip.as_ref())
                .opt_text(a.event.detail.as_ref())
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::{AuditRow, NewAuditEvent, ShareKind, ShareRow};

    fn share(target: &str, editable: bool) -> ShareRow {
        ShareRow {
            app_uid: "app".to_owned(),
            target_uid: target.to_owned(),
            kind: ShareKind::Record,
            key: vec![1, 2],
            editable,
        }
    }

    fn sum<'a>(sums: &'a [TableSum], name: &str) -> &'a TableSum {
        sums.iter().find(|t| t.name == name).expect("table")
    }

    #[test]
    fn every_snapshot_table_is_summed_in_import_order() {
        let names: Vec<&str> = summarize(&Snapshot::default())
            .iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(
            names,
            [
                "settings",
                "owners",
                "folders",
                "records",
                "record_history",
                "record_transactions",
                "files",
                "apps",
                "shares",
                "devices",
                "audit_events"
            ]
        );
        // An empty table has the digest of nothing.
        assert_eq!(
            coffer_crypto::encode_hex(&summarize(&Snapshot::default())[0].sha256),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn checksums_ignore_row_order_and_see_every_change() {
        let a = Snapshot {
            shares: vec![share("r1", false), share("r2", true)],
            ..Snapshot::default()
        };
        let reordered = Snapshot {
            shares: vec![share("r2", true), share("r1", false)],
            ..Snapshot::default()
        };
        assert_eq!(summarize(&a), summarize(&reordered));
        let flipped = Snapshot {
            shares: vec![share("r1", true), share("r2", true)],
            ..Snapshot::default()
        };
        assert_ne!(
            sum(&summarize(&a), "shares"),
            sum(&summarize(&flipped), "shares")
        );
        let mut key = a.clone();
        key.shares[1].key[0] ^= 1;
        assert_ne!(
            sum(&summarize(&a), "shares"),
            sum(&summarize(&key), "shares")
        );
        // The other tables are not affected.
        assert_eq!(sum(&summarize(&a), "apps"), sum(&summarize(&key), "apps"));
    }

    #[test]
    fn the_canonical_form_is_unambiguous() {
        assert_ne!(Canon::default().text("ab").text("c").0, {
            Canon::default().text("a").text("bc").0
        });
        assert_ne!(Canon::default().none().0, Canon::default().text("").0);
        assert_ne!(Canon::default().bytes(b"x").0, Canon::default().text("x").0);
        assert_ne!(
            Canon::default().list(&["a".to_owned()]).text("b").0,
            Canon::default().list(&["a".to_owned(), "b".to_owned()]).0
        );
        let event = |detail: Option<&str>| AuditRow {
            id: 7,
            event: NewAuditEvent {
                at: 1,
                owner_uid: None,
                actor: "owner:o".to_owned(),
                action: "a".to_owned(),
                target: None,
                ip: None,
                detail: detail.map(str::to_owned),
            },
        };
        let with = |detail| Snapshot {
            audit: vec![event(detail)],
            ..Snapshot::default()
        };
        assert_ne!(
            sum(&summarize(&with(None)), "audit_events"),
            sum(&summarize(&with(Some(""))), "audit_events")
        );
    }

    #[test]
    fn a_differing_table_fails_the_verification() {
        let source = Snapshot {
            shares: vec![share("r1", false)],
            ..Snapshot::default()
        };
        let mut target = source.clone();
        target.shares[0].editable = true;
        let (expected, actual) = (summarize(&source), summarize(&target));
        let started = Instant::now();
        for as_json in [true, false] {
            let err = report(
                "sqlite://a",
                "sqlite://b",
                &expected,
                &actual,
                started,
                as_json,
            )
            .expect_err("a mismatch must fail");
            let message = err.to_string();
            assert!(message.contains("verification failed"), "{message}");
            assert!(message.ends_with(", and look at both databases before trying again"));
            assert!(message.contains("in shares."), "{message}");
        }
        assert!(
            report(
                "sqlite://a",
                "sqlite://b",
                &expected,
                &expected,
                started,
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(
            describe("postgres://coffer:s3cret@db.example.com:5432/coffer?sslmode=require"),
            "postgres://coffer@db.example.com:5432/coffer"
        );
        assert_eq!(
            describe("postgresql://db.example.com/coffer"),
            "postgresql://db.example.com/coffer"
        );
        assert_eq!(
            describe("sqlite:///var/lib/coffer/coffer.db"),
            "sqlite:///var/lib/coffer/coffer.db"
        );
    }
}
