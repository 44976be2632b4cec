//! Value structs of the object-shaped field types (PROTOCOL.md §6.3).
//!
//! Every member is optional (records written by other clients may omit any of them) and keys
//! this version does not know are kept in `extra`.

use serde::{Deserialize, Serialize};

/// A person's name (`name` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Name {
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    /// Middle name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A phone number (`phone` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phone {
    /// ISO 3166 region, e.g. `US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
    /// `Mobile`, `Home` or `Work`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A postal address (`address` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// First street line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street1: Option<String>,
    /// Second street line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street2: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State or province.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// ISO 3166 alpha-2 country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A payment card (`paymentCard` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCard {
    /// Card number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_number: Option<String>,
    /// Expiry as `MM/YYYY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_expiration_date: Option<String>,
    /// Security code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_security_code: Option<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A bank account (`bankAccount` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BankAccount {
    /// `Checking`, `Savings` or `Other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_type: Option<String>,
    /// Routing number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_number: Option<String>,
    /// Account number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_number: Option<String>,
    /// Description when the type is `Other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_type: Option<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A security question (`securityQuestion` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityQuestion {
    /// The question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// The answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A key pair in PEM (`keyPair` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyPair {
    /// PEM public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// PEM private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A host and port (`host` and `pamHostname` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    /// Host name or address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// Port, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A rotation schedule (`schedule` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Schedule type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Time of day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// Day of the week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekday: Option<String>,
    /// Interval count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_count: Option<i64>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A rotation script reference (`script` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Script {
    /// File UID of the script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_ref: Option<String>,
    /// Command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Record UID(s) the script uses (a string or an array, depending on the writer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_ref: Option<serde_json::Value>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What a PAM resource allows (part of [`PamResources`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedSettings {
    /// Connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<bool>,
    /// Port forwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_forwards: Option<bool>,
    /// Rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<bool>,
    /// Session recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_recording: Option<bool>,
    /// Typescript recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typescript_recording: Option<bool>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// PAM resources (`pamResources` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PamResources {
    /// Controller UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_uid: Option<String>,
    /// Folder UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder_uid: Option<String>,
    /// Resource record UIDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_ref: Option<Vec<String>>,
    /// Allowed settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_settings: Option<AllowedSettings>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A passkey (`passkey` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Passkey {
    /// The private key as a JWK object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<serde_json::Value>,
    /// Credential id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// Signature counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_count: Option<i64>,
    /// User id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Relying party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relying_party: Option<String>,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Creation time, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date: Option<i64>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Application filler settings (`appFiller` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppFiller {
    /// Application title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_title: Option<String>,
    /// Content filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_filter: Option<String>,
    /// Macro sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_sequence: Option<String>,
    /// Keys this version does not know.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_survive_a_round_trip() {
        let text = r#"{"hostName":"h","port":"1","future":[1,2]}"#;
        let host: Host = serde_json::from_str(text).unwrap();
        assert_eq!(host.host_name.as_deref(), Some("h"));
        let back = serde_json::to_value(&host).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
        let phone: Phone = serde_json::from_str(r#"{"number":"1","type":"Work"}"#).unwrap();
        assert_eq!(phone.r#type.as_deref(), Some("Work"));
        let card: PaymentCard =
            serde_json::from_str(r#"{"cardNumber":"4111","cardExpirationDate":"01/2030"}"#)
                .unwrap();
        assert_eq!(card.card_expiration_date.as_deref(), Some("01/2030"));
    }
}
