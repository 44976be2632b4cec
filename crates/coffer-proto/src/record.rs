//! The decrypted record model (PROTOCOL.md §6): record JSON, field types, standard types.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Decrypted record content.
///
/// Unknown keys are kept in `extra` so that rewriting a record never drops data.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
pub struct RecordData {
    /// Title.
    #[serde(deserialize_with = "null_as_default")]
    pub title: String,
    /// Record type name, e.g. `login`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// Standard fields (`null`, as the Python SDK writes for a record created without fields,
    /// reads as none).
    #[serde(default, deserialize_with = "null_as_default")]
    pub fields: Vec<Field>,
    /// Custom fields (always written, the backend expects the key; `null` reads as none).
    #[serde(default, deserialize_with = "null_as_default")]
    pub custom: Vec<Field>,
    /// Notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// Reads `null` as the type's default: SDKs write `null` for an unset list or title.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// One field of a record.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Field {
    /// Field type, e.g. `password`.
    #[serde(rename = "type")]
    pub field_type: String,
    /// Display label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Values, always an array (`null` reads as none).
    #[serde(default, deserialize_with = "null_as_default")]
    pub value: Vec<Value>,
    /// Keys this version does not know (`required`, `privacyScreen`, `complexity`, …).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl Field {
    /// A field of `field_type` with the given values.
    pub fn new(field_type: &str, value: Vec<Value>) -> Self {
        Self {
            field_type: field_type.to_owned(),
            label: None,
            value,
            extra: serde_json::Map::new(),
        }
    }

    /// Sets the label.
    pub fn with_label(mut self, label: &str) -> Self {
        self.label = Some(label.to_owned());
        self
    }
}

impl RecordData {
    /// Parses record JSON; trailing whitespace padding is allowed (§6.1).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Compact JSON.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("record data always serialises")
    }

    /// First standard field of `field_type` (label match first, then type ignoring case, §6.2).
    pub fn field(&self, key: &str) -> Option<&Field> {
        find_field(&self.fields, key)
    }

    /// First custom field matching `key` (label exact, then type ignoring case).
    pub fn custom_field(&self, key: &str) -> Option<&Field> {
        find_field(&self.custom, key)
    }
}

fn find_field<'a>(fields: &'a [Field], key: &str) -> Option<&'a Field> {
    fields
        .iter()
        .find(|f| f.label.as_deref() == Some(key))
        .or_else(|| {
            fields
                .iter()
                .find(|f| f.field_type.eq_ignore_ascii_case(key))
        })
}

/// The 44 field types the official record builders accept (§6.3).
pub const FIELD_TYPES: [&str; 44] = [
    "accountNumber",
    "address",
    "addressRef",
    "appFiller",
    "bankAccount",
    "birthDate",
    "cardRef",
    "checkbox",
    "databaseType",
    "date",
    "directoryType",
    "dropdown",
    "email",
    "expirationDate",
    "fileRef",
    "host",
    "isSSIDHidden",
    "keyPair",
    "licenseNumber",
    "login",
    "multiline",
    "name",
    "note",
    "oneTimeCode",
    "otp",
    "pamHostname",
    "pamRemoteBrowserSettings",
    "pamResources",
    "pamSettings",
    "passkey",
    "password",
    "paymentCard",
    "phone",
    "pinCode",
    "rbiUrl",
    "recordRef",
    "schedule",
    "script",
    "secret",
    "securityQuestion",
    "text",
    "trafficEncryptionSeed",
    "url",
    "wifiEncryption",
];

/// How a field type's values are shaped (§6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueShape {
    /// A string.
    Text,
    /// Milliseconds since the epoch.
    Number,
    /// true / false.
    Bool,
    /// A JSON object.
    Object,
}

/// The value shape of a field type; unknown types are treated as text.
pub fn value_shape(field_type: &str) -> ValueShape {
    match field_type {
        "date" | "birthDate" | "expirationDate" => ValueShape::Number,
        "checkbox" | "isSSIDHidden" => ValueShape::Bool,
        "name"
        | "phone"
        | "address"
        | "paymentCard"
        | "bankAccount"
        | "securityQuestion"
        | "keyPair"
        | "host"
        | "pamHostname"
        | "schedule"
        | "script"
        | "pamResources"
        | "passkey"
        | "appFiller"
        | "pamRemoteBrowserSettings"
        | "pamSettings" => ValueShape::Object,
        _ => ValueShape::Text,
    }
}

/// A standard field of a record type: field type and optional label.
pub type TemplateField = (&'static str, Option<&'static str>);

/// Standard record types and their field lists (type, label) in order (§6.4).
pub const RECORD_TYPES: &[(&str, &[TemplateField])] = &[
    (
        "login",
        &[
            ("passkey", None),
            ("login", None),
            ("password", None),
            ("url", None),
            ("fileRef", None),
            ("oneTimeCode", None),
        ],
    ),
    (
        "bankAccount",
        &[
            ("bankAccount", None),
            ("name", None),
            ("login", None),
            ("password", None),
            ("url", None),
            ("cardRef", None),
            ("fileRef", None),
            ("oneTimeCode", None),
        ],
    ),
    ("address", &[("address", None), ("fileRef", None)]),
    (
        "bankCard",
        &[
            ("paymentCard", None),
            ("text", Some("Cardholder Name")),
            ("pinCode", None),
            ("addressRef", None),
            ("fileRef", None),
        ],
    ),
    (
        "birthCertificate",
        &[("name", None), ("birthDate", None), ("fileRef", None)],
    ),
    (
        "contact",
        &[
            ("name", None),
            ("text", Some("Company")),
            ("email", None),
            ("phone", None),
            ("addressRef", None),
            ("fileRef", None),
        ],
    ),
    (
        "driverLicense",
        &[
            ("accountNumber", Some("Driver's License Number")),
            ("name", None),
            ("birthDate", None),
            ("addressRef", None),
            ("expirationDate", None),
            ("fileRef", None),
        ],
    ),
    (
        "encryptedNotes",
        &[("note", None), ("date", None), ("fileRef", None)],
    ),
    ("file", &[("fileRef", None)]),
    (
        "healthInsurance",
        &[
            ("accountNumber", None),
            ("name", Some("Insured's Name")),
            ("login", None),
            ("password", None),
            ("url", None),
            ("fileRef", None),
        ],
    ),
    (
        "membership",
        &[
            ("accountNumber", None),
            ("name", None),
            ("password", None),
            ("fileRef", None),
        ],
    ),
    (
        "passport",
        &[
            ("accountNumber", Some("Passport Number")),
            ("name", None),
            ("birthDate", None),
            ("addressRef", None),
            ("expirationDate", None),
            ("date", Some("Date Issued")),
            ("password", None),
            ("fileRef", None),
        ],
    ),
    ("photo", &[("fileRef", None)]),
    (
        "serverCredentials",
        &[
            ("host", None),
            ("login", None),
            ("password", None),
            ("fileRef", None),
        ],
    ),
    (
        "softwareLicense",
        &[
            ("licenseNumber", None),
            ("expirationDate", None),
            ("date", Some("Date Active")),
            ("fileRef", None),
            ("securityQuestion", None),
        ],
    ),
    (
        "ssnCard",
        &[
            ("accountNumber", Some("Identity Number")),
            ("name", None),
            ("fileRef", None),
        ],
    ),
    (
        "sshKeys",
        &[
            ("login", None),
            ("keyPair", None),
            ("password", None),
            ("host", None),
            ("fileRef", None),
        ],
    ),
    (
        "databaseCredentials",
        &[
            ("text", Some("type")),
            ("host", None),
            ("login", None),
            ("password", None),
            ("fileRef", None),
        ],
    ),
];

/// The standard field list of a record type, if it is one of [`RECORD_TYPES`].
pub fn record_type_fields(name: &str) -> Option<&'static [TemplateField]> {
    RECORD_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_json_round_trips_and_keeps_unknown_keys() {
        let text = br#"{"title":"T","type":"login","fields":[{"type":"login","value":["a"],"required":true}],"custom":[],"notes":"n","future":1}    "#;
        let rec = RecordData::from_slice(text).unwrap();
        assert_eq!(rec.field("login").unwrap().value, vec![Value::from("a")]);
        let back: Value = serde_json::from_slice(&rec.to_vec()).unwrap();
        assert_eq!(back["future"], 1);
        assert_eq!(back["fields"][0]["required"], true);
    }

    /// The Python SDK writes `"fields": null` for a record created without fields; such a
    /// record must read as one with no fields, not as undecryptable.
    #[test]
    fn null_lists_and_title_read_as_empty() {
        let text = br#"{"title":null,"type":"login","fields":null,"custom":null,"notes":null}"#;
        let rec = RecordData::from_slice(text).unwrap();
        assert_eq!(rec.title, "");
        assert!(rec.fields.is_empty() && rec.custom.is_empty());
        let text = br#"{"title":"T","type":"login","fields":[{"type":"login","value":null}]}"#;
        let rec = RecordData::from_slice(text).unwrap();
        assert!(rec.field("login").unwrap().value.is_empty());
        // Written back, the lists are lists.
        let back: Value = serde_json::from_slice(&rec.to_vec()).unwrap();
        assert_eq!(back["custom"], serde_json::json!([]));
        // Other types still fail.
        assert!(RecordData::from_slice(br#"{"title":"T","type":"login","fields":{}}"#).is_err());
    }

    #[test]
    fn parsing_keeps_every_key_where_it_belongs() {
        let text = br#"{"fields":[{"value":[{"hostName":"h","port":"1"}],"type":"host","title":"kept","privacyScreen":true,"label":null}],
            "label":"record-level","ti\u0074le":"escaped key","type":"login","custom":[{"type":"text","label":"L","value":[]}],
            "notes":null,"x":{"nested":[1,2]}}"#;
        let rec = RecordData::from_slice(text).unwrap();
        assert_eq!(rec.title, "escaped key");
        assert_eq!(rec.record_type, "login");
        assert_eq!(rec.notes, None);
        assert_eq!(rec.fields.len(), 1);
        assert_eq!(rec.fields[0].field_type, "host");
        assert_eq!(rec.fields[0].label, None);
        assert_eq!(rec.fields[0].extra["title"], "kept");
        assert_eq!(rec.fields[0].extra["privacyScreen"], true);
        assert_eq!(rec.custom[0].label.as_deref(), Some("L"));
        assert_eq!(rec.extra["label"], "record-level");
        assert_eq!(rec.extra["x"]["nested"][1], 2);
        // Written back, it is the same JSON value (null notes and labels are left out).
        let back: Value = serde_json::from_slice(&rec.to_vec()).unwrap();
        let mut expected: Value = serde_json::from_slice(text).unwrap();
        expected.as_object_mut().unwrap().remove("notes");
        expected["fields"][0]
            .as_object_mut()
            .unwrap()
            .remove("label");
        assert_eq!(back, expected);
        // Missing optional parts default.
        let bare = RecordData::from_slice(br#"{"title":"","type":"t"}"#).unwrap();
        assert!(bare.fields.is_empty() && bare.custom.is_empty() && bare.extra.is_empty());
    }

    #[test]
    fn parsing_refuses_what_is_not_a_record() {
        for bad in [
            &br#"{"type":"login"}"#[..],
            br#"{"title":"t"}"#,
            br#"{"title":"t","type":"login","title":"again"}"#,
            br#"{"title":"t","type":"login","fields":[{"value":[]}]}"#,
            br#"{"title":"t","type":"login","fields":[{"type":"a","type":"b"}]}"#,
            br#"{"title":"t","type":"login","fields":[{"type":"a","value":"not a list"}]}"#,
            br#"{"title":1,"type":"login"}"#,
            br#"["title","type"]"#,
            br#"{"title":"t","type":"login""#,
        ] {
            assert!(
                RecordData::from_slice(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn field_lookup_prefers_label_then_type_ignoring_case() {
        let rec = RecordData {
            fields: vec![
                Field::new("text", vec!["x".into()]),
                Field::new("text", vec!["y".into()]).with_label("type"),
            ],
            ..Default::default()
        };
        assert_eq!(rec.field("type").unwrap().value[0], "y");
        assert_eq!(rec.field("TEXT").unwrap().value[0], "x");
        assert!(rec.field("nothing").is_none());
    }

    #[test]
    fn every_standard_field_type_is_known() {
        for (_, fields) in RECORD_TYPES {
            for (t, _) in *fields {
                assert!(FIELD_TYPES.contains(t), "{t}");
            }
        }
        assert_eq!(value_shape("birthDate"), ValueShape::Number);
        assert_eq!(value_shape("host"), ValueShape::Object);
    }
}
