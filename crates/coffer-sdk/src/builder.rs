//! Record builders for [`SecretsManager::create_secret`](crate::SecretsManager::create_secret).
//!
//! ```
//! use coffer_sdk::{RecordCreate, fields, values};
//!
//! let login = RecordCreate::login("Build server")
//!     .set::<fields::Login>(["ci@example.com".to_owned()])
//!     .set::<fields::Password>(["s3cret".to_owned()])
//!     .set::<fields::Url>(["https://ci.example.com".to_owned()])
//!     .custom::<fields::Text>("Environment", ["prod".to_owned()])
//!     .notes("Rotated monthly");
//! let data = login.build().unwrap();
//! assert_eq!(data.fields[1].field_type, "login"); // the template's order: passkey, login, …
//! ```

use coffer_proto::record::{FIELD_TYPES, Field, RecordData, record_type_fields};

use crate::error::{Result, SdkError};
use crate::fields::{FieldKind, to_json_values};

/// A standard field list: (field type, label) in order.
type FieldList = &'static [(&'static str, Option<&'static str>)];

/// The PAM record types of PROTOCOL.md §6.4 (the others come from `coffer-proto`).
const PAM_TYPES: &[(&str, FieldList)] = &[
    (
        "pamDatabase",
        &[
            ("pamHostname", None),
            ("checkbox", Some("Use SSL")),
            ("login", None),
            ("password", None),
            ("script", Some("Rotation Scripts")),
            ("text", Some("Connect Database")),
            ("text", Some("Database Id")),
            ("databaseType", None),
            ("text", Some("Provider Group")),
            ("text", Some("Provider Region")),
            ("fileRef", None),
            ("oneTimeCode", None),
        ],
    ),
    (
        "pamDirectory",
        &[
            ("pamHostname", None),
            ("checkbox", Some("Use SSL")),
            ("login", None),
            ("password", None),
            ("script", Some("Rotation Scripts")),
            ("text", Some("Distinguished Name")),
            ("text", Some("Domain Name")),
            ("multiline", Some("Alternative IPs")),
            ("text", Some("Directory Id")),
            ("directoryType", None),
            ("text", Some("User Match")),
            ("text", Some("Provider Group")),
            ("text", Some("Provider Region")),
            ("fileRef", None),
            ("oneTimeCode", None),
        ],
    ),
    (
        "pamMachine",
        &[
            ("pamHostname", None),
            ("login", None),
            ("password", None),
            ("script", Some("Rotation Scripts")),
            ("secret", Some("Private PEM Key")),
            ("text", Some("Operating System")),
            ("checkbox", Some("SSL Verification")),
            ("text", Some("Instance Name")),
            ("text", Some("Instance Id")),
            ("text", Some("Provider Group")),
            ("text", Some("Provider Region")),
            ("fileRef", None),
            ("oneTimeCode", None),
        ],
    ),
    (
        "pamUser",
        &[
            ("login", None),
            ("password", None),
            ("script", Some("Rotation Scripts")),
            ("secret", Some("Private PEM Key")),
            ("text", Some("Distinguished Name")),
            ("text", Some("Connect Database")),
            ("checkbox", Some("Managed")),
            ("fileRef", None),
            ("oneTimeCode", None),
        ],
    ),
    (
        "pamAwsConfiguration",
        &[
            ("pamResources", None),
            ("schedule", Some("Default Rotation Schedule")),
            ("text", Some("AWS Id")),
            ("secret", Some("Access Key Id")),
            ("secret", Some("Access Secret Key")),
            ("multiline", Some("Region Names")),
            ("multiline", Some("Port Mapping")),
            ("script", Some("Rotation Scripts")),
            ("fileRef", None),
        ],
    ),
    (
        "pamAzureConfiguration",
        &[
            ("pamResources", None),
            ("schedule", Some("Default Rotation Schedule")),
            ("text", Some("Azure Id")),
            ("secret", Some("Client Id")),
            ("secret", Some("Client Secret")),
            ("secret", Some("Subscription Id")),
            ("secret", Some("Tenant Id")),
            ("multiline", Some("Resource Groups")),
            ("multiline", Some("Port Mapping")),
            ("script", Some("Rotation Scripts")),
            ("fileRef", None),
        ],
    ),
    (
        "pamLocalConfiguration",
        &[
            ("pamResources", None),
            ("schedule", Some("Default Rotation Schedule")),
            ("text", Some("Local Id")),
            ("multiline", Some("Port Mapping")),
            ("script", Some("Rotation Scripts")),
            ("fileRef", None),
        ],
    ),
    (
        "pamNetworkConfiguration",
        &[
            ("pamResources", None),
            ("schedule", Some("Default Rotation Schedule")),
            ("text", Some("Network Id")),
            ("text", Some("Network CIDR")),
            ("multiline", Some("Port Mapping")),
            ("script", Some("Rotation Scripts")),
            ("fileRef", None),
        ],
    ),
];

/// The standard field list (type, label) of a record type, if it is a standard type.
pub fn template_fields(
    record_type: &str,
) -> Option<&'static [(&'static str, Option<&'static str>)]> {
    record_type_fields(record_type).or_else(|| {
        PAM_TYPES
            .iter()
            .find(|(name, _)| *name == record_type)
            .map(|(_, fields)| *fields)
    })
}

/// Every standard record type name.
pub fn standard_record_types() -> Vec<&'static str> {
    coffer_proto::record::RECORD_TYPES
        .iter()
        .map(|(n, _)| *n)
        .chain(PAM_TYPES.iter().map(|(n, _)| *n))
        .collect()
}

/// A new record, before it is created.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordCreate {
    data: RecordData,
}

macro_rules! standard_constructors {
    ($( $(#[$doc:meta])* $fn_name:ident => $wire:literal ;)*) => {
        $(
            $(#[$doc])*
            pub fn $fn_name(title: &str) -> Self {
                Self::template($wire, title)
            }
        )*
    };
}

impl RecordCreate {
    /// A record of any type (standard or custom) with no fields yet.
    pub fn new(record_type: &str, title: &str) -> Self {
        Self {
            data: RecordData {
                title: title.to_owned(),
                record_type: record_type.to_owned(),
                ..Default::default()
            },
        }
    }

    /// A record of a standard type with its standard fields, in order, all empty; fill them
    /// with [`set`](Self::set). A non-standard type gets no fields.
    pub fn template(record_type: &str, title: &str) -> Self {
        let mut record = Self::new(record_type, title);
        if let Some(fields) = template_fields(record_type) {
            record.data.fields = fields
                .iter()
                .map(|(field_type, label)| {
                    let field = Field::new(field_type, Vec::new());
                    match label {
                        Some(label) => field.with_label(label),
                        None => field,
                    }
                })
                .collect();
        }
        record
    }

    standard_constructors! {
        /// A `login` record template.
        login => "login";
        /// A `bankAccount` record template.
        bank_account => "bankAccount";
        /// An `address` record template.
        address => "address";
        /// A `bankCard` record template.
        bank_card => "bankCard";
        /// A `birthCertificate` record template.
        birth_certificate => "birthCertificate";
        /// A `contact` record template.
        contact => "contact";
        /// A `driverLicense` record template.
        driver_license => "driverLicense";
        /// An `encryptedNotes` record template.
        encrypted_notes => "encryptedNotes";
        /// A `file` record template.
        file => "file";
        /// A `healthInsurance` record template.
        health_insurance => "healthInsurance";
        /// A `membership` record template.
        membership => "membership";
        /// A `passport` record template.
        passport => "passport";
        /// A `photo` record template.
        photo => "photo";
        /// A `serverCredentials` record template.
        server_credentials => "serverCredentials";
        /// A `softwareLicense` record template.
        software_license => "softwareLicense";
        /// An `ssnCard` record template.
        ssn_card => "ssnCard";
        /// An `sshKeys` record template.
        ssh_keys => "sshKeys";
        /// A `databaseCredentials` record template.
        database_credentials => "databaseCredentials";
        /// A `pamDatabase` record template.
        pam_database => "pamDatabase";
        /// A `pamDirectory` record template.
        pam_directory => "pamDirectory";
        /// A `pamMachine` record template.
        pam_machine => "pamMachine";
        /// A `pamUser` record template.
        pam_user => "pamUser";
        /// A `pamAwsConfiguration` record template.
        pam_aws_configuration => "pamAwsConfiguration";
        /// A `pamAzureConfiguration` record template.
        pam_azure_configuration => "pamAzureConfiguration";
        /// A `pamLocalConfiguration` record template.
        pam_local_configuration => "pamLocalConfiguration";
        /// A `pamNetworkConfiguration` record template.
        pam_network_configuration => "pamNetworkConfiguration";
    }

    /// Sets the values of the first unlabelled field of type `K` that is still empty (the
    /// template's slot), else of the first field of type `K`, else appends such a field.
    pub fn set<K: FieldKind>(mut self, values: impl IntoIterator<Item = K::Value>) -> Self {
        let values = to_json_values(values);
        let fields = &mut self.data.fields;
        let slot = fields
            .iter()
            .position(|f| f.field_type == K::TYPE && f.label.is_none() && f.value.is_empty())
            .or_else(|| fields.iter().position(|f| f.field_type == K::TYPE));
        match slot {
            Some(i) => fields[i].value = values,
            None => fields.push(Field::new(K::TYPE, values)),
        }
        self
    }

    /// Sets the values of the standard field of type `K` labelled `label` (as in the
    /// templates, e.g. `text` "Cardholder Name"), appending it when missing.
    pub fn set_labeled<K: FieldKind>(
        mut self,
        label: &str,
        values: impl IntoIterator<Item = K::Value>,
    ) -> Self {
        let values = to_json_values(values);
        match self
            .data
            .fields
            .iter()
            .position(|f| f.field_type == K::TYPE && f.label.as_deref() == Some(label))
        {
            Some(i) => self.data.fields[i].value = values,
            None => self
                .data
                .fields
                .push(Field::new(K::TYPE, values).with_label(label)),
        }
        self
    }

    /// Appends a standard field.
    pub fn field(mut self, field: Field) -> Self {
        self.data.fields.push(field);
        self
    }

    /// Appends a custom field of type `K` labelled `label`.
    pub fn custom<K: FieldKind>(
        mut self,
        label: &str,
        values: impl IntoIterator<Item = K::Value>,
    ) -> Self {
        self.data.custom.push(K::labeled(label, values));
        self
    }

    /// Appends a custom field.
    pub fn custom_field(mut self, field: Field) -> Self {
        self.data.custom.push(field);
        self
    }

    /// Sets the notes.
    pub fn notes(mut self, notes: &str) -> Self {
        self.data.notes = Some(notes.to_owned());
        self
    }

    /// Validates the record (non-blank title and type, known field types) and returns its
    /// data.
    pub fn build(self) -> Result<RecordData> {
        if self.data.title.trim().is_empty() {
            return Err(SdkError::Invalid("a record needs a non-blank title".into()));
        }
        if self.data.record_type.trim().is_empty() {
            return Err(SdkError::Invalid("a record needs a type".into()));
        }
        for field in self.data.fields.iter().chain(&self.data.custom) {
            if !FIELD_TYPES.contains(&field.field_type.as_str()) {
                return Err(SdkError::Invalid(format!(
                    "unknown field type {:?} (see coffer_sdk::fields::ALL_TYPES)",
                    field.field_type
                )));
            }
        }
        Ok(self.data)
    }
}

impl From<RecordData> for RecordCreate {
    fn from(data: RecordData) -> Self {
        Self { data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fields, values};

    #[test]
    fn every_standard_type_has_a_template_of_known_fields() {
        let types = standard_record_types();
        assert_eq!(types.len(), 26);
        for t in types {
            let data = RecordCreate::template(t, "x").build().unwrap();
            assert!(!data.fields.is_empty(), "{t}");
        }
    }

    #[test]
    fn set_fills_template_slots_in_order() {
        let data = RecordCreate::bank_card("Card")
            .set::<fields::PaymentCard>([values::PaymentCard {
                card_number: Some("4111111111111111".into()),
                ..Default::default()
            }])
            .set_labeled::<fields::Text>("Cardholder Name", ["Jane".to_owned()])
            .set::<fields::PinCode>(["1234".to_owned()])
            .custom::<fields::Date>("Issued", [1_700_000_000_000])
            .build()
            .unwrap();
        assert_eq!(data.fields[0].value[0]["cardNumber"], "4111111111111111");
        assert_eq!(data.fields[1].label.as_deref(), Some("Cardholder Name"));
        assert_eq!(data.fields[1].value[0], "Jane");
        assert_eq!(data.fields[2].value[0], "1234");
        assert_eq!(data.custom[0].field_type, "date");
        let json: serde_json::Value = serde_json::from_slice(&data.to_vec()).unwrap();
        assert!(json["custom"].is_array());
    }

    #[test]
    fn validation_rejects_bad_records() {
        assert!(RecordCreate::new("login", " ").build().is_err());
        assert!(RecordCreate::new("", "t").build().is_err());
        let bad = RecordCreate::new("login", "t").field(Field::new("nonsense", vec![]));
        assert!(bad.build().is_err());
        // Custom record types are fine.
        assert!(RecordCreate::new("myType", "t").build().is_ok());
    }
}
