//! `coffer interpolate`: replaces `keeper://…` notations in a template with secrets. Also the
//! notation scanner and resolver `exec` uses.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use coffer_sdk::{NotationValue, SecretsManager, Selector, parse_notation};

use super::{code, connect, fail};
use crate::client_cli::InterpolateArgs;

/// The scheme that starts a notation.
pub const SCHEME: &str = "keeper://";

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text kept as it is.
    Text(&'a str),
    /// A notation to replace.
    Notation(&'a str),
}

/// Characters that end a bare notation.
fn ends_bare(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | ',' | ';' | ')' | '}')
}

/// Splits a template into text and notations: `{{ keeper://… }}` (anything up to `}}`) and
/// bare `keeper://…` (up to whitespace, a quote, `<`, `>`, `,`, `;`, `)` or `}`; a backslash
/// keeps the next character in).
pub fn scan(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    loop {
        let braced = rest.match_indices("{{").find_map(|(start, _)| {
            let inner = &rest[start + 2..];
            if !inner.trim_start().starts_with(SCHEME) {
                return None;
            }
            let close = inner.find("}}")?;
            let notation = inner[..close].trim();
            (notation.starts_with(SCHEME) && !notation.contains('\n')).then_some((
                start,
                start + 2 + close + 2,
                notation,
            ))
        });
        let bare = rest.find(SCHEME).map(|start| {
            let mut end = rest.len();
            let mut escaped = false;
            for (i, c) in rest[start..].char_indices() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if ends_bare(c) {
                    end = start + i;
                    break;
                }
            }
            (start, end, &rest[start..end])
        });
        let next = match (braced, bare) {
            (Some(b), Some(n)) if n.0 < b.0 => Some(n),
            (Some(b), _) => Some(b),
            (None, n) => n,
        };
        let Some((start, end, notation)) = next else {
            if !rest.is_empty() {
                pieces.push(Piece::Text(rest));
            }
            return pieces;
        };
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        pieces.push(Piece::Notation(notation));
        rest = &rest[end..];
    }
}

/// The notations of a text, without repeats.
pub fn notations<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for text in texts {
        for piece in scan(text) {
            if let Piece::Notation(n) = piece
                && !found.iter().any(|f| f == n)
            {
                found.push(n.to_owned());
            }
        }
    }
    found
}

/// Checks a notation's syntax without a server (exit code 2 when it is malformed).
pub fn check(notation: &str) -> Result<()> {
    parse_notation(notation, false).map(|_| ()).map_err(|e| {
        fail(
            code::USAGE,
            format!(
                "{notation}: {e}\nhint: a bare notation ends at whitespace, a quote, < > , ; ) or }}: \
                 write {{{{ keeper://… }}}} around one that contains them (e.g. a title with spaces)"
            ),
        )
    })
}

/// The one value a notation selects, as text. A file's content must be UTF-8.
pub async fn resolve(sm: &SecretsManager, notation: &str) -> Result<String> {
    let parsed = parse_notation(notation, false)
        .map_err(|e| fail(code::USAGE, format!("{notation}: {e}")))?;
    if let Selector::File(_) = parsed.selector {
        return match sm
            .get_notation_value(notation)
            .await
            .with_context(|| notation.to_owned())?
        {
            NotationValue::File(bytes) => String::from_utf8(bytes).map_err(|_| {
                fail(
                    code::ERROR,
                    format!(
                        "{notation}: the file is not text; use `coffer secret download` for binary files"
                    ),
                )
            }),
            NotationValue::Value(value) => Ok(value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned)),
        };
    }
    let mut values = sm
        .get_notation(notation)
        .await
        .with_context(|| notation.to_owned())?;
    match values.len() {
        1 => Ok(values.remove(0)),
        0 => Err(fail(
            code::NOT_FOUND,
            format!("{notation} selects no value (the field is empty)"),
        )),
        n => Err(fail(
            code::USAGE,
            format!("{notation} selects {n} values; add an index such as [0] to pick one"),
        )),
    }
}

/// Resolves notations concurrently; notation → value.
pub async fn resolve_all(
    sm: &SecretsManager,
    notations: &[String],
) -> Result<BTreeMap<String, String>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, notation) in notations.iter().enumerate() {
        let sm = sm.clone();
        let notation = notation.clone();
        tasks.spawn(async move { (i, resolve(&sm, &notation).await) });
    }
    let mut results: Vec<Option<Result<String>>> = notations.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.context("a notation lookup failed")?;
        results[i] = Some(result);
    }
    let mut values = BTreeMap::new();
    for (notation, result) in notations.iter().zip(results) {
        let value = result.unwrap_or_else(|| Err(anyhow::anyhow!("{notation}: not resolved")))?;
        values.insert(notation.clone(), value);
    }
    Ok(values)
}

/// Rebuilds a text with every notation replaced.
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in scan(text) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Notation(n) => out.push_str(values.get(n).map_or(n, String::as_str)),
        }
    }
    out
}

/// Writes `data` to `path` with mode 0600: a new file, or (with `force`) atomically over an
/// existing one. Parent directories are left as they are.
pub fn write_new_file(path: &Path, data: &[u8], force: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    if !force {
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                fail(
                    code::ERROR,
                    format!("{} exists; pass --force to overwrite it", path.display()),
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot create {}", path.display()))
            }
        })?;
        let written = file.write_all(data).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(path);
            return Err(e).with_context(|| format!("cannot write {}", path.display()));
        }
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".to_owned());
    let tmp = dir.join(format!(".{name}.coffer-{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Runs `coffer interpolate`.
pub async fn run(args: InterpolateArgs) -> Result<()> {
    if let Some(out) = &args.output
        && !args.force
        && out.exists()
    {
        return Err(fail(
            code::ERROR,
            format!("{} exists; pass --force to overwrite it", out.display()),
        ));
    }
    let template = match &args.input {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the template {}", path.display()))?,
        None => {
            if std::io::stdin().is_terminal() {
                return Err(fail(
                    code::USAGE,
                    "no template: give -i FILE or pipe one in (coffer interpolate < FILE)",
                ));
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the template from standard input")?;
            text
        }
    };
    let found = notations([template.as_str()]);
    for notation in &found {
        check(notation)?;
    }
    let values = if found.is_empty() {
        BTreeMap::new()
    } else {
        let sm = connect(&args.global)?;
        resolve_all(&sm, &found).await?
    };
    let result = substitute(&template, &values);
    match &args.output {
        Some(path) => {
            write_new_file(path, result.as_bytes(), args.force)?;
            if args.json {
                crate::output::json(&serde_json::json!({
                    "output": path,
                    "notations": found.len(),
                }))?;
            }
            Ok(())
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(result.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_braced_notations_are_found() {
        let text = "A=keeper://uid1/field/password\nB=\"keeper://uid2/field/url[0]\" C={{ keeper://Prod DB/field/login }}\nD=plain";
        let pieces = scan(text);
        assert_eq!(
            pieces,
            vec![
                Piece::Text("A="),
                Piece::Notation("keeper://uid1/field/password"),
                Piece::Text("\nB=\""),
                Piece::Notation("keeper://uid2/field/url[0]"),
                Piece::Text("\" C="),
                Piece::Notation("keeper://Prod DB/field/login"),
                Piece::Text("\nD=plain"),
            ]
        );
        assert_eq!(
            notations([text, "x keeper://uid1/field/password y"]),
            vec![
                "keeper://uid1/field/password",
                "keeper://uid2/field/url[0]",
                "keeper://Prod DB/field/login"
            ]
        );
    }

    #[test]
    fn escapes_and_edges() {
        assert_eq!(
            scan(r"x=keeper://a\,b/field/c,d"),
            vec![
                Piece::Text("x="),
                Piece::Notation(r"keeper://a\,b/field/c"),
                Piece::Text(",d")
            ]
        );
        assert_eq!(
            scan("no notation {{ here }}"),
            vec![Piece::Text("no notation {{ here }}")]
        );
        assert_eq!(
            scan("{{ x }} {{ keeper://Prod DB/title }}"),
            vec![
                Piece::Text("{{ x }} "),
                Piece::Notation("keeper://Prod DB/title")
            ]
        );
        assert_eq!(scan(""), vec![]);
        // An unclosed brace falls back to the bare form.
        assert_eq!(
            scan("{{ keeper://u/title"),
            vec![Piece::Text("{{ "), Piece::Notation("keeper://u/title")]
        );
        let mut values = BTreeMap::new();
        values.insert("keeper://u/title".to_owned(), "T".to_owned());
        assert_eq!(
            substitute("[{{keeper://u/title}}] keeper://u/title.", &values),
            "[T] keeper://u/title."
        );
        values.insert("keeper://u/title.".to_owned(), "T2".to_owned());
        assert_eq!(substitute("keeper://u/title.", &values), "T2");
    }

    #[test]
    fn output_files_are_private_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.env");
        write_new_file(&path, b"one", false).unwrap();
        let err = write_new_file(&path, b"two", false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        write_new_file(&path, b"three", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
