//! Records as the application sees them, with typed and untyped field access.

use std::fmt;
use std::sync::Arc;

use coffer_crypto::SymmetricKey;
use coffer_proto::record::{Field, RecordData};
use serde_json::Value;

use crate::error::{Result, SdkError};
use crate::fields::{FieldKind, to_json_values};
use crate::files::KeeperFile;

/// A record link (`requestLinks`, PROTOCOL.md §6.7).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordLink {
    /// The linked record.
    pub record_uid: String,
    /// The link's base64 data, if any.
    pub data: Option<String>,
    /// The link path (`meta`, `ai_settings`, …), if any.
    pub path: Option<String>,
}

/// A decrypted record.
///
/// Read fields with the typed accessors ([`Record::get`], [`Record::get_custom`]) or the
/// untyped ones ([`Record::field_values`], [`Record::custom_field_values`]); change them with
/// the `set_*` methods and write the record back with
/// [`SecretsManager::save`](crate::SecretsManager::save).
///
/// Field lookup follows the official SDKs (PROTOCOL.md §6.2): a field whose label equals the
/// key exactly, otherwise the first field whose type equals the key ignoring case.
#[derive(Clone)]
pub struct Record {
    pub(crate) uid: String,
    pub(crate) key: SymmetricKey,
    pub(crate) revision: i64,
    pub(crate) is_editable: bool,
    pub(crate) folder_uid: Option<String>,
    pub(crate) inner_folder_uid: Option<String>,
    pub(crate) data: RecordData,
    pub(crate) raw: Arc<Vec<u8>>,
    pub(crate) files: Vec<KeeperFile>,
    pub(crate) links: Option<Vec<RecordLink>>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Field values are secrets: never print them.
        f.debug_struct("Record")
            .field("uid", &self.uid)
            .field("title", &self.data.title)
            .field("type", &self.data.record_type)
            .field("revision", &self.revision)
            .field("is_editable", &self.is_editable)
            .field("folder_uid", &self.folder_uid)
            .field("inner_folder_uid", &self.inner_folder_uid)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

fn find_index(fields: &[Field], key: &str) -> Option<usize> {
    fields
        .iter()
        .position(|f| f.label.as_deref() == Some(key))
        .or_else(|| {
            fields
                .iter()
                .position(|f| f.field_type.eq_ignore_ascii_case(key))
        })
}

fn by_type(fields: &[Field], field_type: &str) -> Option<usize> {
    fields
        .iter()
        .position(|f| f.field_type.eq_ignore_ascii_case(field_type))
}

fn decode_values<T: serde::de::DeserializeOwned>(
    uid: &str,
    field: &Field,
    values: &[Value],
) -> Result<Vec<T>> {
    values
        .iter()
        .map(|v| {
            serde_json::from_value(v.clone()).map_err(|e| {
                SdkError::Invalid(format!(
                    "field {:?} of record {uid} has a value of an unexpected shape: {e}",
                    field.label.as_deref().unwrap_or(&field.field_type)
                ))
            })
        })
        .collect()
}

impl Record {
    /// The record UID.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.data.title
    }

    /// Changes the title (saved by [`SecretsManager::save`](crate::SecretsManager::save)).
    pub fn set_title(&mut self, title: impl Into<String>) {
        self.data.title = title.into();
    }

    /// The record type, e.g. `login`.
    pub fn record_type(&self) -> &str {
        &self.data.record_type
    }

    /// Changes the record type.
    pub fn set_record_type(&mut self, record_type: impl Into<String>) {
        self.data.record_type = record_type.into();
    }

    /// The notes, if any.
    pub fn notes(&self) -> Option<&str> {
        self.data.notes.as_deref()
    }

    /// Changes the notes (`None` removes them).
    pub fn set_notes(&mut self, notes: Option<String>) {
        self.data.notes = notes;
    }

    /// The revision the server last reported; sent back with every save.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Whether this application may change the record.
    pub fn is_editable(&self) -> bool {
        self.is_editable
    }

    /// The shared folder that contains the record (`None` when it is shared directly).
    pub fn folder_uid(&self) -> Option<&str> {
        self.folder_uid.as_deref()
    }

    /// The sub-folder that directly contains the record, if any.
    pub fn inner_folder_uid(&self) -> Option<&str> {
        self.inner_folder_uid.as_deref()
    }

    /// The file attachments.
    pub fn files(&self) -> &[KeeperFile] {
        &self.files
    }

    /// The attachment whose UID, file name or title equals `key`.
    pub fn file(&self, key: &str) -> Option<&KeeperFile> {
        self.files
            .iter()
            .find(|f| f.uid() == key)
            .or_else(|| self.files.iter().find(|f| f.name() == key))
            .or_else(|| self.files.iter().find(|f| f.title() == key))
    }

    /// Record links, when they were requested.
    pub fn links(&self) -> Option<&[RecordLink]> {
        self.links.as_deref()
    }

    /// The decrypted record content.
    pub fn data(&self) -> &RecordData {
        &self.data
    }

    /// The decrypted record content, for changes the accessors do not cover.
    pub fn data_mut(&mut self) -> &mut RecordData {
        &mut self.data
    }

    /// The record JSON exactly as it was decrypted (before local changes).
    pub fn raw_json(&self) -> &[u8] {
        &self.raw
    }

    /// The first value of the first `password` field (the convenience of the official SDKs).
    pub fn password(&self) -> Option<&str> {
        self.data
            .fields
            .iter()
            .find(|f| f.field_type == "password")
            .and_then(|f| f.value.first())
            .and_then(Value::as_str)
    }

    // ---- untyped access ------------------------------------------------------------------

    /// The standard field matching `key` (label exactly, else type ignoring case).
    pub fn field(&self, key: &str) -> Option<&Field> {
        find_index(&self.data.fields, key).map(|i| &self.data.fields[i])
    }

    /// The custom field matching `key` (label exactly, else type ignoring case).
    pub fn custom_field(&self, key: &str) -> Option<&Field> {
        find_index(&self.data.custom, key).map(|i| &self.data.custom[i])
    }

    /// All values of the standard field matching `key`.
    pub fn field_values(&self, key: &str) -> Result<&[Value]> {
        self.field(key)
            .map(|f| f.value.as_slice())
            .ok_or_else(|| self.missing("standard field", key))
    }

    /// The first value of the standard field matching `key` (`None` when it has no value).
    pub fn field_value(&self, key: &str) -> Result<Option<&Value>> {
        Ok(self.field_values(key)?.first())
    }

    /// All values of the custom field matching `key`.
    pub fn custom_field_values(&self, key: &str) -> Result<&[Value]> {
        self.custom_field(key)
            .map(|f| f.value.as_slice())
            .ok_or_else(|| self.missing("custom field", key))
    }

    /// The first value of the custom field matching `key`.
    pub fn custom_field_value(&self, key: &str) -> Result<Option<&Value>> {
        Ok(self.custom_field_values(key)?.first())
    }

    /// Replaces the values of the standard field matching `key`. When there is none and `key`
    /// is a field type name, a field of that type is added.
    pub fn set_field_values(&mut self, key: &str, values: Vec<Value>) -> Result<()> {
        match find_index(&self.data.fields, key) {
            Some(i) => self.data.fields[i].value = values,
            None if coffer_proto::record::FIELD_TYPES.contains(&key) => {
                self.data.fields.push(Field::new(key, values));
            }
            None => return Err(self.missing("standard field", key)),
        }
        Ok(())
    }

    /// Replaces the values of the custom field matching `key`, or adds a `text` custom field
    /// labelled `key` when there is none.
    pub fn set_custom_field_values(&mut self, key: &str, values: Vec<Value>) {
        match find_index(&self.data.custom, key) {
            Some(i) => self.data.custom[i].value = values,
            None => self
                .data
                .custom
                .push(Field::new("text", values).with_label(key)),
        }
    }

    /// Appends a custom field.
    pub fn add_custom_field(&mut self, field: Field) {
        self.data.custom.push(field);
    }

    /// Removes the custom fields matching `key` (by label, else by type); returns how many.
    pub fn remove_custom_field(&mut self, key: &str) -> usize {
        let before = self.data.custom.len();
        if self
            .data
            .custom
            .iter()
            .any(|f| f.label.as_deref() == Some(key))
        {
            self.data.custom.retain(|f| f.label.as_deref() != Some(key));
        } else {
            self.data
                .custom
                .retain(|f| !f.field_type.eq_ignore_ascii_case(key));
        }
        before - self.data.custom.len()
    }

    // ---- typed access --------------------------------------------------------------------

    /// All values of the first standard field of type `K`.
    ///
    /// ```no_run
    /// # async fn demo(sm: coffer_sdk::SecretsManager) -> coffer_sdk::Result<()> {
    /// use coffer_sdk::fields;
    /// let record = sm.get_secrets(&["TyB9FvQbQyiN8w7M9Wn4aA"]).await?.remove(0);
    /// let urls: Vec<String> = record.get::<fields::Url>()?;
    /// let host = record.get_one::<fields::Host>()?; // Option<values::Host>
    /// # Ok(()) }
    /// ```
    pub fn get<K: FieldKind>(&self) -> Result<Vec<K::Value>> {
        let i = by_type(&self.data.fields, K::TYPE)
            .ok_or_else(|| self.missing("standard field of type", K::TYPE))?;
        let field = &self.data.fields[i];
        decode_values(&self.uid, field, &field.value)
    }

    /// The first value of the first standard field of type `K` (`None` when it has none).
    pub fn get_one<K: FieldKind>(&self) -> Result<Option<K::Value>> {
        Ok(self.get::<K>()?.into_iter().next())
    }

    /// All values of the standard field of type `K` labelled `label`.
    pub fn get_labeled<K: FieldKind>(&self, label: &str) -> Result<Vec<K::Value>> {
        let field = self
            .data
            .fields
            .iter()
            .find(|f| {
                f.label.as_deref() == Some(label) && f.field_type.eq_ignore_ascii_case(K::TYPE)
            })
            .ok_or_else(|| self.missing("standard field labelled", label))?;
        decode_values(&self.uid, field, &field.value)
    }

    /// Replaces the values of the first standard field of type `K` (adding the field when
    /// the record has none).
    pub fn set<K: FieldKind>(&mut self, values: impl IntoIterator<Item = K::Value>) {
        let values = to_json_values(values);
        match by_type(&self.data.fields, K::TYPE) {
            Some(i) => self.data.fields[i].value = values,
            None => self.data.fields.push(Field::new(K::TYPE, values)),
        }
    }

    /// Replaces the values of the first standard field of type `K` with one value.
    pub fn set_one<K: FieldKind>(&mut self, value: K::Value) {
        self.set::<K>([value]);
    }

    /// All values of the custom field matching `key` (label exactly, else type), read as
    /// type `K`.
    pub fn get_custom<K: FieldKind>(&self, key: &str) -> Result<Vec<K::Value>> {
        let field = self
            .custom_field(key)
            .ok_or_else(|| self.missing("custom field", key))?;
        decode_values(&self.uid, field, &field.value)
    }

    /// The first value of the custom field matching `key`, read as type `K`.
    pub fn get_custom_one<K: FieldKind>(&self, key: &str) -> Result<Option<K::Value>> {
        Ok(self.get_custom::<K>(key)?.into_iter().next())
    }

    /// Replaces the values of the custom field labelled `label`, or adds a custom field of
    /// type `K` with that label.
    pub fn set_custom<K: FieldKind>(
        &mut self,
        label: &str,
        values: impl IntoIterator<Item = K::Value>,
    ) {
        let values = to_json_values(values);
        match self
            .data
            .custom
            .iter()
            .position(|f| f.label.as_deref() == Some(label))
        {
            Some(i) => self.data.custom[i].value = values,
            None => self
                .data
                .custom
                .push(Field::new(K::TYPE, values).with_label(label)),
        }
    }

    fn missing(&self, what: &str, key: &str) -> SdkError {
        SdkError::NotFound(format!("record {} has no {what} {key:?}", self.uid))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{fields, values};

    pub(crate) fn sample() -> Record {
        let raw = br#"{"title":"Web Login","type":"login","fields":[
            {"type":"login","value":["alice@example.com"]},
            {"type":"password","value":["S3cr3t!pass"]},
            {"type":"url","value":["https://a.example.com","https://b.example.com"]},
            {"type":"date","label":"Date Issued","value":[1700000000000]},
            {"type":"host","value":[{"hostName":"db.internal","port":"5432"}]}],
            "custom":[{"type":"text","label":"Environment","value":["prod"]},
            {"type":"name","label":"Owner","value":[{"first":"Jane","middle":"Q","last":"Doe"}]},
            {"type":"checkbox","label":"Flag","value":[true]}],
            "notes":"Line1\nLine2"}"#;
        Record {
            uid: "TyB9FvQbQyiN8w7M9Wn4aA".into(),
            key: SymmetricKey::generate(),
            revision: 3,
            is_editable: true,
            folder_uid: None,
            inner_folder_uid: None,
            data: RecordData::from_slice(raw).unwrap(),
            raw: Arc::new(raw.to_vec()),
            files: Vec::new(),
            links: None,
        }
    }

    #[test]
    fn typed_getters_read_every_shape() {
        let r = sample();
        assert_eq!(r.get::<fields::Url>().unwrap().len(), 2);
        assert_eq!(
            r.get_one::<fields::Login>().unwrap().unwrap(),
            "alice@example.com"
        );
        assert_eq!(
            r.get_one::<fields::Date>().unwrap(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            r.get_labeled::<fields::Date>("Date Issued").unwrap(),
            vec![1_700_000_000_000]
        );
        let host = r.get_one::<fields::Host>().unwrap().unwrap();
        assert_eq!(host.port.as_deref(), Some("5432"));
        let owner: values::Name = r.get_custom_one::<fields::Name>("Owner").unwrap().unwrap();
        assert_eq!(owner.last.as_deref(), Some("Doe"));
        assert_eq!(
            r.get_custom_one::<fields::Checkbox>("Flag").unwrap(),
            Some(true)
        );
        assert!(matches!(
            r.get::<fields::Phone>(),
            Err(SdkError::NotFound(_))
        ));
        // A value of the wrong shape is an error, not a panic.
        assert!(matches!(
            r.get_custom::<fields::Name>("Environment"),
            Err(SdkError::Invalid(_))
        ));
        assert_eq!(r.password(), Some("S3cr3t!pass"));
        assert_eq!(r.notes(), Some("Line1\nLine2"));
    }

    #[test]
    fn setters_change_or_add_fields() {
        let mut r = sample();
        r.set_one::<fields::Password>("new-pass".into());
        assert_eq!(r.password(), Some("new-pass"));
        r.set::<fields::Phone>([values::Phone {
            number: Some("555".into()),
            ..Default::default()
        }]);
        assert_eq!(r.field_values("phone").unwrap()[0]["number"], "555");
        r.set_custom::<fields::Text>("Environment", ["staging".to_owned()]);
        assert_eq!(
            r.custom_field_value("Environment").unwrap().unwrap(),
            "staging"
        );
        r.set_custom::<fields::Secret>("Api Key", ["k".to_owned()]);
        assert_eq!(r.custom_field("Api Key").unwrap().field_type, "secret");
        r.set_field_values("LOGIN", vec!["bob".into()]).unwrap();
        assert_eq!(r.get_one::<fields::Login>().unwrap().unwrap(), "bob");
        assert!(r.set_field_values("No Such Label", vec![]).is_err());
        r.set_custom_field_values("Other", vec!["x".into()]);
        assert_eq!(r.remove_custom_field("Other"), 1);
        r.set_title("T2");
        r.set_notes(None);
        let json: Value = serde_json::from_slice(&r.data().to_vec()).unwrap();
        assert_eq!(json["title"], "T2");
        assert!(json.get("notes").is_none());
        assert!(json["custom"].is_array());
        let shown = format!("{r:?}");
        assert!(!shown.contains("new-pass"));
    }
}
