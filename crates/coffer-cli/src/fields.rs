//! Building record JSON from `--field TYPE=VALUE` and `--custom LABEL[:TYPE]=VALUE` flags.

use anyhow::{Context, Result, bail};
use coffer_proto::record::{Field, RecordData, ValueShape, record_type_fields, value_shape};
use serde_json::Value;

/// Parses one flag value for a field type: JSON where the type needs it, text otherwise. A
/// JSON array gives several values; for a text field only an array of strings does, anything
/// else (`{s3cret`, `[1,true]`, `{"a":1}`) is the text itself, so text fields only ever hold
/// strings.
pub fn parse_values(field_type: &str, text: &str) -> Result<Vec<Value>> {
    let shape = value_shape(field_type);
    if shape == ValueShape::Text {
        if text.starts_with('[')
            && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text)
            && items.iter().all(Value::is_string)
        {
            return Ok(items);
        }
        return Ok(vec![Value::from(text)]);
    }
    let value: Value = serde_json::from_str(text).with_context(|| {
        format!("the value of a {field_type} field must be JSON here, got {text:?}")
    })?;
    let values = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    for v in &values {
        let ok = match shape {
            ValueShape::Number => v.is_number(),
            ValueShape::Bool => v.is_boolean(),
            ValueShape::Object => v.is_object(),
            ValueShape::Text => true,
        };
        if !ok {
            bail!("a {field_type} field takes {shape:?} values, got {v}");
        }
    }
    Ok(values)
}

fn split_flag<'a>(flag: &str, text: &'a str) -> Result<(&'a str, &'a str)> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .with_context(|| format!("--{flag} takes KEY=VALUE, got {text:?}"))
}

/// Builds a record: the type's standard fields in order, filled from the flags.
pub fn build_record(
    record_type: &str,
    title: &str,
    fields: &[String],
    custom: &[String],
    notes: Option<&str>,
) -> Result<RecordData> {
    let mut record = RecordData {
        title: title.to_owned(),
        record_type: record_type.to_owned(),
        notes: notes.map(str::to_owned),
        ..Default::default()
    };
    if let Some(template) = record_type_fields(record_type) {
        record.fields = template
            .iter()
            .map(|(t, label)| {
                let field = Field::new(t, vec![]);
                match label {
                    Some(label) => field.with_label(label),
                    None => field,
                }
            })
            .collect();
    }
    for flag in fields {
        let (key, text) = split_flag("field", flag)?;
        // `TYPE.LABEL=VALUE` addresses a labelled standard field (e.g. text.Company).
        let (field_type, label) = match key.split_once('.') {
            Some((t, l)) => (t, Some(l)),
            None => (key, None),
        };
        let values = parse_values(field_type, text)?;
        let slot = record.fields.iter_mut().find(|f| {
            f.field_type == field_type && (label.is_none() || f.label.as_deref() == label)
        });
        match slot {
            Some(field) => field.value.extend(values),
            None => {
                let field = Field::new(field_type, values);
                record.fields.push(match label {
                    Some(label) => field.with_label(label),
                    None => field,
                });
            }
        }
    }
    for flag in custom {
        let (key, text) = split_flag("custom", flag)?;
        let (label, field_type) = match key.rsplit_once(':') {
            Some((label, t)) if !t.is_empty() && !t.contains(' ') => (label, t),
            _ => (key, "text"),
        };
        let values = parse_values(field_type, text)?;
        match record
            .custom
            .iter_mut()
            .find(|f| f.label.as_deref() == Some(label) && f.field_type == field_type)
        {
            Some(field) => field.value.extend(values),
            None => record
                .custom
                .push(Field::new(field_type, values).with_label(label)),
        }
    }
    Ok(record)
}

/// Applies `record edit` flags: each flag replaces the values of the first matching field
/// (a second flag for the same field adds a value); unknown fields are appended.
pub fn apply_edits(record: &mut RecordData, fields: &[String], custom: &[String]) -> Result<()> {
    let mut touched: Vec<(bool, usize)> = Vec::new();
    for (is_custom, flag) in fields
        .iter()
        .map(|f| (false, f))
        .chain(custom.iter().map(|f| (true, f)))
    {
        let (key, text) = split_flag(if is_custom { "custom" } else { "field" }, flag)?;
        let (field_type, label) = if is_custom {
            match key.rsplit_once(':') {
                Some((label, t)) if !t.is_empty() && !t.contains(' ') => (t, Some(label)),
                _ => ("text", Some(key)),
            }
        } else {
            match key.split_once('.') {
                Some((t, l)) => (t, Some(l)),
                None => (key, None),
            }
        };
        let values = parse_values(field_type, text)?;
        let list = if is_custom {
            &mut record.custom
        } else {
            &mut record.fields
        };
        let position = list.iter().position(|f| match label {
            Some(label) => f.label.as_deref() == Some(label),
            None => f.field_type == field_type,
        });
        match position {
            Some(i) if touched.contains(&(is_custom, i)) => list[i].value.extend(values),
            Some(i) => {
                list[i].value = values;
                touched.push((is_custom, i));
            }
            None => {
                let field = Field::new(field_type, values);
                list.push(match label {
                    Some(label) => field.with_label(label),
                    None => field,
                });
                touched.push((is_custom, list.len() - 1));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_template_is_filled_in_order() {
        let rec = build_record(
            "login",
            "T",
            &[
                "login=alice".into(),
                "password=p=w".into(),
                "url=https://a".into(),
                "url=https://b".into(),
            ],
            &["Env=prod".into(), "Owner:name={\"first\":\"Jane\"}".into()],
            Some("n"),
        )
        .unwrap();
        let types: Vec<_> = rec.fields.iter().map(|f| f.field_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "passkey",
                "login",
                "password",
                "url",
                "fileRef",
                "oneTimeCode"
            ]
        );
        assert_eq!(
            rec.field("password").unwrap().value,
            vec![Value::from("p=w")]
        );
        assert_eq!(rec.field("url").unwrap().value.len(), 2);
        assert_eq!(rec.custom_field("Env").unwrap().value[0], "prod");
        assert_eq!(rec.custom_field("Owner").unwrap().value[0]["first"], "Jane");
        assert_eq!(rec.custom_field("Owner").unwrap().field_type, "name");
    }

    #[test]
    fn edits_replace_then_append() {
        let mut rec = build_record(
            "login",
            "T",
            &["password=old".into(), "url=a".into()],
            &["Env=prod".into()],
            None,
        )
        .unwrap();
        apply_edits(
            &mut rec,
            &["password=new".into(), "url=b".into(), "url=c".into()],
            &["Env=dev".into(), "New=x".into()],
        )
        .unwrap();
        assert_eq!(
            rec.field("password").unwrap().value,
            vec![Value::from("new")]
        );
        assert_eq!(
            rec.field("url").unwrap().value,
            vec![Value::from("b"), Value::from("c")]
        );
        assert_eq!(
            rec.custom_field("Env").unwrap().value,
            vec![Value::from("dev")]
        );
        assert_eq!(
            rec.custom_field("New").unwrap().value,
            vec![Value::from("x")]
        );
    }

    #[test]
    fn typed_values_are_checked() {
        assert!(parse_values("birthDate", "1700000000000").unwrap()[0].is_number());
        assert!(parse_values("birthDate", "soon").is_err());
        assert!(parse_values("host", "\"db\"").is_err());
        assert!(
            parse_values("checkbox", "true").unwrap()[0]
                .as_bool()
                .unwrap()
        );
        assert!(build_record("login", "T", &["nokey".into()], &[], None).is_err());
        let labelled =
            build_record("contact", "T", &["text.Company=ACME".into()], &[], None).unwrap();
        assert_eq!(labelled.field("Company").unwrap().value[0], "ACME");
    }

    /// Text fields hold strings only: text that merely looks like JSON is the text itself;
    /// a JSON array of strings gives several values.
    #[test]
    fn text_fields_take_text_that_looks_like_json() {
        for text in ["{s3cret", "[1,true]", "{\"a\":1}", "[not json", "{}"] {
            assert_eq!(
                parse_values("password", text).unwrap(),
                vec![Value::from(text)],
                "{text}"
            );
        }
        assert_eq!(
            parse_values("url", "[\"https://a\",\"https://b\"]").unwrap(),
            vec![Value::from("https://a"), Value::from("https://b")]
        );
        assert_eq!(
            parse_values("login", "plain").unwrap(),
            vec![Value::from("plain")]
        );
    }
}
