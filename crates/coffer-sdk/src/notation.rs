//! Keeper notation (PROTOCOL.md §7): `keeper://<uid or title>/<selector>[…]`.
//!
//! ```text
//! keeper://TyB9FvQbQyiN8w7M9Wn4aA/field/password
//! keeper://Web Login/custom_field/Phones[1][number]
//! keeper://DB\/Primary \[eu\]/field/host[0][hostName]
//! TyB9FvQbQyiN8w7M9Wn4aA/file/hello.txt
//! ```
//!
//! * [`SecretsManager::get_notation`] returns every selected value as text (the current form
//!   of the official SDKs, `get_notation_results`): strings as they are, objects as compact
//!   JSON with their keys in record order.
//! * [`SecretsManager::get_notation_value`] is the legacy single-value form (the official
//!   Python SDK's `get_notation`), which also inflates `addressRef` and `cardRef` values.
//! * [`parse_notation`] checks a notation without a server.

use std::collections::HashSet;

use serde_json::Value;

use crate::client::SecretsManager;
use crate::error::{Result, SdkError};
use crate::ordered::OValue;
use crate::record::Record;

/// What a notation selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `type`
    Type,
    /// `title`
    Title,
    /// `notes`
    Notes,
    /// `file/<name, title or UID>`
    File(String),
    /// `field/<type or label>[index][property]` or `custom_field/…`
    Field {
        /// `custom_field` rather than `field`.
        custom: bool,
        /// Field type or label.
        parameter: String,
        /// `None` = no index, `Some(None)` = `[]`, `Some(Some(n))` = `[n]`.
        index: Option<Option<usize>>,
        /// `None` = no property, `Some(None)` = `[]`, `Some(Some(p))` = `[p]`.
        property: Option<Option<String>>,
    },
}

/// A parsed notation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notation {
    /// Record UID or title (unescaped).
    pub record: String,
    /// The selection.
    pub selector: Selector,
}

/// The legacy notation answer.
#[derive(Debug, Clone, PartialEq)]
pub enum NotationValue {
    /// A field value, list of values, property, title, type or notes.
    Value(Value),
    /// The decrypted content of a file.
    File(Vec<u8>),
}

const MISSING: &str =
    "Keeper notation URI missing information about the uid, file, field type, or field key.";

fn invalid(detail: impl std::fmt::Display) -> SdkError {
    SdkError::Notation(format!("Keeper notation is invalid - {detail}"))
}

/// Reads text up to (not including) the first unescaped character for which `stop` is true.
/// Returns the unescaped text and the position after it.
fn read_escaped(
    chars: &[char],
    mut pos: usize,
    stop: impl Fn(char) -> bool,
) -> Result<(String, usize)> {
    let mut out = String::new();
    while pos < chars.len() {
        let c = chars[pos];
        if c == '\\' {
            match chars.get(pos + 1) {
                Some(&next @ ('/' | '[' | ']' | '\\')) => {
                    out.push(next);
                    pos += 2;
                    continue;
                }
                _ => {
                    return Err(invalid(format_args!(
                        "Incorrect escape sequence at position {pos}"
                    )));
                }
            }
        }
        if stop(c) {
            break;
        }
        out.push(c);
        pos += 1;
    }
    Ok((out, pos))
}

/// Reads `[...]` at `pos`; returns the unescaped content and the position after `]`.
fn read_index(chars: &[char], pos: usize) -> Result<(String, usize)> {
    let (text, end) = read_escaped(chars, pos + 1, |c| c == ']' || c == '[')?;
    match chars.get(end) {
        Some(']') => Ok((text, end + 1)),
        Some('[') => Err(invalid(format_args!(
            "index at position {pos} contains an unescaped '['"
        ))),
        _ => Err(invalid(format_args!(
            "index at position {pos} is not closed with ']'"
        ))),
    }
}

/// Parses a notation (PROTOCOL.md §7.1, §7.2). `legacy` accepts `name[property]` for
/// `name[][property]`, as the official Python SDK's `get_notation` does.
pub fn parse_notation(notation: &str, legacy: bool) -> Result<Notation> {
    let decoded;
    let text = if notation.contains('/') {
        notation
    } else {
        let bytes = coffer_crypto::decode_lenient(notation)
            .map_err(|_| invalid("plaintext URI or URL safe base64 string expected"))?;
        decoded = String::from_utf8(bytes)
            .map_err(|_| invalid("the base64 form does not decode to UTF-8 text"))?;
        if !decoded.contains('/') {
            return Err(SdkError::Notation(MISSING.into()));
        }
        decoded.as_str()
    };
    let chars: Vec<char> = text.chars().collect();
    let mut pos = 0;
    let prefix: Vec<char> = "keeper://".chars().collect();
    if chars.len() >= prefix.len()
        && chars[..prefix.len()]
            .iter()
            .zip(&prefix)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
    {
        pos = prefix.len();
    }
    let (record, after_record) = read_escaped(&chars, pos, |c| c == '/')?;
    if record.is_empty() || after_record >= chars.len() {
        return Err(SdkError::Notation(MISSING.into()));
    }
    pos = after_record + 1;
    let keyword_end = chars[pos..]
        .iter()
        .position(|c| *c == '/' || *c == '[')
        .map_or(chars.len(), |i| pos + i);
    let keyword: String = chars[pos..keyword_end].iter().collect();
    if keyword.is_empty() {
        return Err(SdkError::Notation(MISSING.into()));
    }
    let rest = |from: usize| -> String { chars[from..].iter().collect() };
    let extra = |from: usize| {
        invalid(format_args!(
            "extra characters after last section: {:?}",
            rest(from)
        ))
    };
    let lower = keyword.to_ascii_lowercase();
    let selector = match lower.as_str() {
        "type" | "title" | "notes" => {
            if keyword_end < chars.len() {
                return Err(extra(keyword_end));
            }
            match lower.as_str() {
                "type" => Selector::Type,
                "title" => Selector::Title,
                _ => Selector::Notes,
            }
        }
        "field" | "custom_field" | "file" => {
            let require = || invalid("selectors (field, custom_field, file) require parameters");
            if chars.get(keyword_end) != Some(&'/') {
                return Err(require());
            }
            let (parameter, mut pos) = read_escaped(&chars, keyword_end + 1, |c| c == '[')?;
            if parameter.is_empty() {
                return Err(require());
            }
            let mut index1 = None;
            let mut index2 = None;
            if chars.get(pos) == Some(&'[') {
                let (text, next) = read_index(&chars, pos)?;
                index1 = Some(text);
                pos = next;
                if chars.get(pos) == Some(&'[') {
                    let (text, next) = read_index(&chars, pos)?;
                    index2 = Some(text);
                    pos = next;
                }
            }
            if pos < chars.len() {
                return Err(extra(pos));
            }
            if lower == "file" {
                if index1.is_some() {
                    return Err(invalid("file selectors don't accept indexes"));
                }
                Selector::File(parameter)
            } else {
                let (index, property) = match (index1, index2) {
                    (None, _) => (None, None),
                    (Some(i1), i2) => {
                        if i1.is_empty() {
                            (Some(None), i2)
                        } else if i1.bytes().all(|b| b.is_ascii_digit()) {
                            let n = i1
                                .parse::<usize>()
                                .map_err(|_| invalid("first index must be numeric: [n] or []"))?;
                            (Some(Some(n)), i2)
                        } else if legacy && i2.is_none() {
                            (Some(None), Some(i1))
                        } else {
                            return Err(invalid("first index must be numeric: [n] or []"));
                        }
                    }
                };
                Selector::Field {
                    custom: lower == "custom_field",
                    parameter,
                    index,
                    property: property.map(|p| (!p.is_empty()).then_some(p)),
                }
            }
        }
        _ => {
            if keyword_end < chars.len() {
                return Err(extra(after_record + 1));
            }
            return Err(invalid(
                "bad selector, must be one of (type, title, notes, field, custom_field, file)",
            ));
        }
    };
    Ok(Notation { record, selector })
}

fn record_document(record: &Record) -> Result<OValue> {
    serde_json::from_slice(record.raw_json())
        .or_else(|_| serde_json::from_slice(&record.data().to_vec()))
        .map_err(|e| SdkError::Protocol(format!("record {} is not JSON: {e}", record.uid())))
}

fn section(doc: &OValue, custom: bool) -> &[OValue] {
    doc.get(if custom { "custom" } else { "fields" })
        .and_then(OValue::as_array)
        .unwrap_or(&[])
}

impl SecretsManager {
    /// Resolves a notation to the record it names (by UID, else by exact title).
    async fn notation_record(&self, text: &str) -> Result<Record> {
        let mut found: Vec<Record> = Vec::new();
        if coffer_crypto::is_uid(text) {
            found = self
                .get_secrets(&[text])
                .await?
                .into_iter()
                .filter(|r| r.uid() == text)
                .collect();
        }
        if found.is_empty() {
            found = self
                .get_all_secrets()
                .await?
                .into_iter()
                .filter(|r| r.title() == text)
                .collect();
        }
        let mut seen = HashSet::new();
        found.retain(|r| seen.insert(r.uid().to_owned()));
        match found.len() {
            0 => Err(SdkError::Notation(format!(
                "no records match record '{text}'"
            ))),
            1 => Ok(found.remove(0)),
            _ => Err(SdkError::Notation(format!(
                "multiple records match record '{text}'"
            ))),
        }
    }

    /// Evaluates a notation; every selected value as text (PROTOCOL.md §7.4).
    ///
    /// ```no_run
    /// # async fn demo(sm: coffer_sdk::SecretsManager) -> coffer_sdk::Result<()> {
    /// let password = sm.get_notation("keeper://TyB9FvQbQyiN8w7M9Wn4aA/field/password").await?;
    /// let numbers = sm.get_notation("keeper://Web Login/custom_field/Phones[][number]").await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_notation(&self, notation: &str) -> Result<Vec<String>> {
        let parsed = parse_notation(notation, false)?;
        let record = self.notation_record(&parsed.record).await?;
        match &parsed.selector {
            Selector::Type => Ok(vec![record.record_type().to_owned()]),
            Selector::Title => Ok(vec![record.title().to_owned()]),
            Selector::Notes => Ok(record.notes().map(str::to_owned).into_iter().collect()),
            Selector::File(name) => {
                let file = notation_file(&record, name)?;
                let content = self.download_file(file).await?;
                Ok(vec![coffer_crypto::encode_url(&content)])
            }
            Selector::Field {
                custom,
                parameter,
                index,
                property,
            } => {
                let doc = record_document(&record)?;
                let matching: Vec<&OValue> = section(&doc, *custom)
                    .iter()
                    .filter(|f| {
                        f.get("type").and_then(OValue::as_str) == Some(parameter.as_str())
                            || f.get("label").and_then(OValue::as_str) == Some(parameter.as_str())
                    })
                    .collect();
                let field = match matching.len() {
                    0 => {
                        return Err(SdkError::Notation(format!(
                            "no fields matching '{parameter}' in record {}",
                            record.uid()
                        )));
                    }
                    1 => matching[0],
                    _ => {
                        return Err(SdkError::Notation(format!(
                            "multiple fields matching '{parameter}' in record {}",
                            record.uid()
                        )));
                    }
                };
                let values = field.get("value").and_then(OValue::as_array).unwrap_or(&[]);
                let selected: Vec<&OValue> = match index {
                    None | Some(None) => values.iter().collect(),
                    Some(Some(n)) => match values.get(*n) {
                        Some(v) => vec![v],
                        None => {
                            return Err(SdkError::Notation(format!(
                                "Field index out of bounds {n} >= {} for field '{parameter}'",
                                values.len()
                            )));
                        }
                    },
                };
                Ok(match property {
                    None | Some(None) => selected.iter().map(|v| v.to_text()).collect(),
                    Some(Some(prop)) => selected
                        .iter()
                        .filter_map(|v| {
                            let found = v.get(prop).map(OValue::to_text);
                            if found.is_none() {
                                tracing::debug!(property = %prop, "notation: a value has no such property; skipped");
                            }
                            found
                        })
                        .collect(),
                })
            }
        }
    }

    /// Like [`get_notation`](Self::get_notation), but logs failures and returns an empty list.
    pub async fn try_get_notation(&self, notation: &str) -> Vec<String> {
        match self.get_notation(notation).await {
            Ok(values) => values,
            Err(err) => {
                tracing::warn!(error = %err, "notation failed");
                Vec::new()
            }
        }
    }

    /// The legacy single-value notation of the official Python SDK (PROTOCOL.md §7.5):
    /// no index → the first value, `[n]` → value n, `[]` → all values, `[n][prop]` → a
    /// property; `addressRef` and `cardRef` values are replaced by the records they point to;
    /// `file` gives the decrypted content.
    pub async fn get_notation_value(&self, notation: &str) -> Result<NotationValue> {
        let parsed = parse_notation(notation, true)?;
        let record = self.notation_record(&parsed.record).await?;
        let (custom, parameter, index, property) = match parsed.selector {
            Selector::Type => return Ok(NotationValue::Value(record.record_type().into())),
            Selector::Title => return Ok(NotationValue::Value(record.title().into())),
            Selector::Notes => {
                return Ok(NotationValue::Value(
                    record.notes().map_or(Value::Null, Value::from),
                ));
            }
            Selector::File(name) => {
                let file = notation_file(&record, &name)?;
                return Ok(NotationValue::File(self.download_file(file).await?));
            }
            Selector::Field {
                custom,
                parameter,
                index,
                property,
            } => (custom, parameter, index, property),
        };
        let field = if custom {
            record.custom_field(&parameter)
        } else {
            record.field(&parameter)
        }
        .ok_or_else(|| {
            SdkError::Notation(format!(
                "Cannot find {} field '{parameter}' in record {}",
                if custom { "custom" } else { "standard" },
                record.uid()
            ))
        })?;
        let field_type = field.field_type.clone();
        let mut values = field.value.clone();
        if field_type == "addressRef" || field_type == "cardRef" {
            values = self.inflate(&field_type, values).await?;
        }
        // `[][prop]` means the property of the first value.
        let index = match (&index, &property) {
            (Some(None), Some(Some(_))) => Some(Some(0)),
            _ => index,
        };
        let selected = match index {
            None => values.into_iter().next().unwrap_or(Value::Null),
            Some(None) => Value::Array(values),
            Some(Some(n)) => values.into_iter().nth(n).ok_or_else(|| {
                SdkError::Notation(format!(
                    "The value at index {n} does not exist for field '{parameter}' of record {}",
                    record.uid()
                ))
            })?,
        };
        Ok(NotationValue::Value(match property {
            None | Some(None) => selected,
            Some(Some(prop)) => selected.get(&prop).cloned().ok_or_else(|| {
                SdkError::Notation(format!(
                    "Cannot find the dictionary key {prop} in the value of field '{parameter}'"
                ))
            })?,
        }))
    }

    /// Replaces `addressRef` / `cardRef` UIDs with the data of the records they name.
    async fn inflate(&self, field_type: &str, values: Vec<Value>) -> Result<Vec<Value>> {
        let uids: Vec<String> = values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        if uids.is_empty() {
            return Ok(values);
        }
        let refs: Vec<&str> = uids.iter().map(String::as_str).collect();
        let records = self.get_secrets(&refs).await?.into_records();
        let mut out = Vec::new();
        for uid in &uids {
            let Some(target) = records.iter().find(|r| r.uid() == uid) else {
                continue;
            };
            if field_type == "addressRef" {
                if let Some(v) = target.field("address").and_then(|f| f.value.first()) {
                    out.push(v.clone());
                }
                continue;
            }
            let mut merged = serde_json::Map::new();
            for kind in ["paymentCard", "text", "pinCode", "addressRef"] {
                let Some(field) = target.data().fields.iter().find(|f| f.field_type == kind) else {
                    continue;
                };
                let mut value = field.value.first().cloned();
                if kind == "addressRef" && value.is_some() {
                    let inflated =
                        Box::pin(self.inflate("addressRef", field.value.clone())).await?;
                    value = inflated.into_iter().next();
                }
                match value {
                    Some(Value::Object(obj)) => merged.extend(obj),
                    Some(other) => {
                        let key = field.label.clone().unwrap_or_else(|| kind.to_owned());
                        merged.insert(key, other);
                    }
                    None => {}
                }
            }
            out.push(Value::Object(merged));
        }
        Ok(out)
    }
}

fn notation_file<'a>(record: &'a Record, name: &str) -> Result<&'a crate::files::KeeperFile> {
    let matching: Vec<_> = record
        .files()
        .iter()
        .filter(|f| f.name() == name || f.title() == name || f.uid() == name)
        .collect();
    match matching.len() {
        0 => Err(SdkError::Notation(format!(
            "no files matching '{name}' in record {}",
            record.uid()
        ))),
        1 => Ok(matching[0]),
        _ => Err(SdkError::Notation(format!(
            "multiple files matching '{name}' in record {}",
            record.uid()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(n: &str) -> Notation {
        parse_notation(n, false).unwrap_or_else(|e| panic!("{n}: {e}"))
    }

    fn err(n: &str) -> String {
        parse_notation(n, false).unwrap_err().to_string()
    }

    const UID: &str = "TyB9FvQbQyiN8w7M9Wn4aA";

    #[test]
    fn short_selectors_and_prefix() {
        assert_eq!(ok(&format!("keeper://{UID}/type")).selector, Selector::Type);
        assert_eq!(ok(&format!("{UID}/title")).selector, Selector::Title);
        assert_eq!(ok(&format!("KEEPER://{UID}/TYPE")).selector, Selector::Type);
        assert_eq!(ok(&format!("{UID}/notes")).record, UID);
        assert_eq!(ok("keeper://Web Login/field/login").record, "Web Login");
    }

    #[test]
    fn fields_indexes_and_properties() {
        let field = |parameter: &str, index, property: Option<Option<&str>>| Selector::Field {
            custom: false,
            parameter: parameter.into(),
            index,
            property: property.map(|p| p.map(str::to_owned)),
        };
        assert_eq!(
            ok(&format!("{UID}/field/url")).selector,
            field("url", None, None)
        );
        assert_eq!(
            ok(&format!("{UID}/field/url[]")).selector,
            field("url", Some(None), None)
        );
        assert_eq!(
            ok(&format!("{UID}/field/url[1]")).selector,
            field("url", Some(Some(1)), None)
        );
        assert_eq!(
            ok(&format!("{UID}/field/host[0][hostName]")).selector,
            field("host", Some(Some(0)), Some(Some("hostName")))
        );
        assert_eq!(
            ok(&format!("{UID}/field/host[][]")).selector,
            field("host", Some(None), Some(None))
        );
        let n = ok(&format!(r"{UID}/custom_field/Path\/With \[Brackets\]"));
        assert_eq!(
            n.selector,
            Selector::Field {
                custom: true,
                parameter: "Path/With [Brackets]".into(),
                index: None,
                property: None
            }
        );
        let n = ok(r"keeper://DB\/Primary \[eu\]/field/host[0][hostName]");
        assert_eq!(n.record, "DB/Primary [eu]");
        // A `/` inside a parameter belongs to the label.
        assert_eq!(
            ok(&format!("{UID}/field/a/b")).selector,
            field("a/b", None, None)
        );
        assert_eq!(
            ok(&format!("{UID}/file/hello.txt")).selector,
            Selector::File("hello.txt".into())
        );
    }

    #[test]
    fn base64_form_is_decoded() {
        let n = ok("a2VlcGVyOi8vVHlCOUZ2UWJReWlOOHc3TTlXbjRhQS9maWVsZC9sb2dpbg==");
        assert_eq!(n.record, UID);
        assert!(
            matches!(n.selector, Selector::Field { ref parameter, .. } if parameter == "login")
        );
    }

    #[test]
    fn errors_of_the_protocol_table() {
        assert!(err(&format!("{UID}/field/url[-1]")).contains("first index must be numeric"));
        assert!(err(&format!("{UID}/field/url[a]")).contains("first index must be numeric"));
        assert!(err(&format!("{UID}/custom_field/Owner[first]")).contains("numeric"));
        assert!(err(&format!("{UID}/custom_field/Path/With [Brackets]")).contains("numeric"));
        assert!(err(&format!("{UID}/file/hello.txt[0]")).contains("don't accept indexes"));
        assert!(err(&format!("{UID}/fields/login")).contains("extra characters"));
        assert!(err(&format!("{UID}/field")).contains("require parameters"));
        assert!(err(&format!("{UID}/field/")).contains("require parameters"));
        assert!(err(&format!("{UID}/type/extra")).contains("extra characters"));
        assert!(err(&format!("{UID}/field/login[0][x][y]")).contains("extra characters"));
        assert!(
            err(&format!(r"{UID}\x/title")).contains("Incorrect escape sequence at position 22")
        );
        assert!(err(&format!("{UID}/bogus")).contains("bad selector"));
        assert!(err(&format!("{UID}/field/url[0")).contains("not closed"));
        assert!(err(&format!("{UID}/field/url[0[1]]")).contains("'['"));
        assert!(err(&format!(r"{UID}/field/x\")).contains("escape"));
        assert!(err(UID).contains("missing information") || err(UID).contains("base64"));
        assert!(err("keeper://").contains("missing information"));
        assert!(err(&format!("{UID}/")).contains("missing information"));
    }

    #[test]
    fn legacy_mode_accepts_a_bare_property() {
        let n = parse_notation(&format!("{UID}/custom_field/Owner[first]"), true).unwrap();
        assert_eq!(
            n.selector,
            Selector::Field {
                custom: true,
                parameter: "Owner".into(),
                index: Some(None),
                property: Some(Some("first".into()))
            }
        );
    }
}
