//! Typed field access: one marker type per field type of PROTOCOL.md §6.3, and the value
//! structs of the object-shaped types.
//!
//! ```
//! use coffer_sdk::fields::{self, FieldKind};
//! use coffer_sdk::values;
//!
//! let phone = fields::Phone::field([values::Phone {
//!     number: Some("555-0100".into()),
//!     r#type: Some("Work".into()),
//!     ..Default::default()
//! }]);
//! assert_eq!(phone.field_type, "phone");
//! assert_eq!(phone.value[0]["number"], "555-0100");
//! ```
//!
//! Values of every struct keep keys this version does not know in `extra`, so reading a value
//! and writing it back never drops data.

use coffer_proto::record::Field;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A field type: its wire name and the Rust type of one of its values.
pub trait FieldKind {
    /// The field type name on the wire, e.g. `password`.
    const TYPE: &'static str;
    /// One element of the field's `value` array.
    type Value: Serialize + DeserializeOwned;

    /// A field of this type with the given values (no label).
    fn field(values: impl IntoIterator<Item = Self::Value>) -> Field
    where
        Self: Sized,
    {
        Field::new(Self::TYPE, to_json_values(values))
    }

    /// A field of this type with a label and the given values.
    fn labeled(label: &str, values: impl IntoIterator<Item = Self::Value>) -> Field
    where
        Self: Sized,
    {
        Self::field(values).with_label(label)
    }
}

pub(crate) fn to_json_values<T: Serialize>(
    values: impl IntoIterator<Item = T>,
) -> Vec<serde_json::Value> {
    values
        .into_iter()
        // Serialising the SDK's own value types (strings, numbers, derived structs) cannot fail.
        .map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
        .collect()
}

macro_rules! field_kinds {
    ($( $(#[$doc:meta])* $name:ident = $wire:literal => $value:ty ;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $name;
            impl FieldKind for $name {
                const TYPE: &'static str = $wire;
                type Value = $value;
            }
        )*
        /// Every field type this module has a marker for.
        pub const ALL_TYPES: &[&str] = &[$($wire),*];
    };
}

use crate::values;

field_kinds! {
    /// `accountNumber`: text.
    AccountNumber = "accountNumber" => String;
    /// `address`: street, city, state, zip, country.
    Address = "address" => values::Address;
    /// `addressRef`: UID of an `address` record.
    AddressRef = "addressRef" => String;
    /// `appFiller`: application title, content filter, macro sequence.
    AppFiller = "appFiller" => values::AppFiller;
    /// `bankAccount`: account type, routing and account numbers.
    BankAccount = "bankAccount" => values::BankAccount;
    /// `birthDate`: milliseconds since the epoch.
    BirthDate = "birthDate" => i64;
    /// `cardRef`: UID of a payment-card record.
    CardRef = "cardRef" => String;
    /// `checkbox`: true or false.
    Checkbox = "checkbox" => bool;
    /// `databaseType`: text.
    DatabaseType = "databaseType" => String;
    /// `date`: milliseconds since the epoch.
    Date = "date" => i64;
    /// `directoryType`: text.
    DirectoryType = "directoryType" => String;
    /// `dropdown`: text.
    Dropdown = "dropdown" => String;
    /// `email`: text.
    Email = "email" => String;
    /// `expirationDate`: milliseconds since the epoch.
    ExpirationDate = "expirationDate" => i64;
    /// `fileRef`: UID of a file attachment of this record.
    FileRef = "fileRef" => String;
    /// `host`: host name and port.
    Host = "host" => values::Host;
    /// `isSSIDHidden`: true or false.
    IsSsidHidden = "isSSIDHidden" => bool;
    /// `keyPair`: PEM public and private key.
    KeyPair = "keyPair" => values::KeyPair;
    /// `licenseNumber`: text.
    LicenseNumber = "licenseNumber" => String;
    /// `login`: text.
    Login = "login" => String;
    /// `multiline`: text.
    Multiline = "multiline" => String;
    /// `name`: first, middle, last.
    Name = "name" => values::Name;
    /// `note`: text.
    Note = "note" => String;
    /// `oneTimeCode`: an `otpauth://` URI.
    OneTimeCode = "oneTimeCode" => String;
    /// `otp`: an `otpauth://` URI.
    Otp = "otp" => String;
    /// `pamHostname`: host name and port.
    PamHostname = "pamHostname" => values::Host;
    /// `pamRemoteBrowserSettings`: opaque JSON.
    PamRemoteBrowserSettings = "pamRemoteBrowserSettings" => serde_json::Value;
    /// `pamResources`: controller, folder, resources and allowed settings.
    PamResources = "pamResources" => values::PamResources;
    /// `pamSettings`: opaque JSON (the official SDKs disagree on its shape).
    PamSettings = "pamSettings" => serde_json::Value;
    /// `passkey`: a WebAuthn credential.
    Passkey = "passkey" => values::Passkey;
    /// `password`: text.
    Password = "password" => String;
    /// `paymentCard`: card number, expiry, security code.
    PaymentCard = "paymentCard" => values::PaymentCard;
    /// `phone`: region, number, extension, type.
    Phone = "phone" => values::Phone;
    /// `pinCode`: text.
    PinCode = "pinCode" => String;
    /// `rbiUrl`: text.
    RbiUrl = "rbiUrl" => String;
    /// `recordRef`: UID of any record.
    RecordRef = "recordRef" => String;
    /// `schedule`: a rotation schedule.
    Schedule = "schedule" => values::Schedule;
    /// `script`: a rotation script reference.
    Script = "script" => values::Script;
    /// `secret`: text.
    Secret = "secret" => String;
    /// `securityQuestion`: question and answer.
    SecurityQuestion = "securityQuestion" => values::SecurityQuestion;
    /// `text`: text.
    Text = "text" => String;
    /// `trafficEncryptionSeed`: text.
    TrafficEncryptionSeed = "trafficEncryptionSeed" => String;
    /// `url`: text.
    Url = "url" => String;
    /// `wifiEncryption`: text.
    WifiEncryption = "wifiEncryption" => String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_field_type_has_a_marker() {
        let mut ours: Vec<&str> = ALL_TYPES.to_vec();
        ours.sort_unstable();
        let mut theirs: Vec<&str> = coffer_proto::record::FIELD_TYPES.to_vec();
        theirs.sort_unstable();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn typed_fields_serialise_to_the_wire_shape() {
        let f = Date::labeled("Date Issued", [1_700_000_000_000]);
        assert_eq!(f.label.as_deref(), Some("Date Issued"));
        assert_eq!(f.value, vec![serde_json::json!(1_700_000_000_000i64)]);
        let h = Host::field([values::Host {
            host_name: Some("db".into()),
            port: Some("5432".into()),
            ..Default::default()
        }]);
        assert_eq!(
            serde_json::to_string(&h.value).unwrap(),
            r#"[{"hostName":"db","port":"5432"}]"#
        );
    }
}
