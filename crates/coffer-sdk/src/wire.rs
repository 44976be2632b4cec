//! Request bodies and lenient response shapes of the KSM endpoints (PROTOCOL.md §5).
//!
//! Requests are compact JSON with unset optional fields omitted. Responses are read leniently
//! (missing optional keys default) so that the SDK also works with servers that leave keys
//! out where the official backend sends `null`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The fields every payload carries, around the endpoint body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Envelope<'a, T: Serialize> {
    pub client_version: &'static str,
    pub client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<&'a str>,
    #[serde(flatten)]
    pub body: &'a T,
}

/// `get_secret` / `get_folders` filters.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetSecretBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_records: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_folders: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_links: Option<bool>,
}

/// An empty body.
#[cfg(test)]
#[derive(Serialize)]
pub(crate) struct Empty {}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct BindingPart {
    pub encrypted_app_key: Option<String>,
    pub app_owner_public_key: Option<String>,
}

/// A `get_secret` answer. The long base64 strings borrow from the decrypted body (they never
/// contain JSON escapes), which saves an allocation and a copy per field.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct SecretsResponse<'a> {
    pub app_data: Option<String>,
    #[serde(borrow)]
    pub records: Option<Vec<WireRecord<'a>>>,
    #[serde(borrow)]
    pub folders: Option<Vec<WireFolder<'a>>>,
    pub expires_on: Option<i64>,
    pub warnings: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct WireRecord<'a> {
    pub record_uid: String,
    /// Empty when the server sent none.
    #[serde(borrow)]
    pub record_key: Cow<'a, str>,
    #[serde(borrow)]
    pub data: Cow<'a, str>,
    pub revision: i64,
    pub is_editable: bool,
    #[serde(borrow)]
    pub files: Option<Vec<WireFile<'a>>>,
    pub inner_folder_uid: Option<String>,
    pub folder_uid: Option<String>,
    pub links: Option<Vec<WireLink>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct WireFile<'a> {
    pub file_uid: String,
    #[serde(borrow)]
    pub file_key: Cow<'a, str>,
    #[serde(borrow)]
    pub data: Cow<'a, str>,
    pub url: Option<String>,
    pub thumbnail_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct WireLink {
    pub record_uid: String,
    pub data: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct WireFolder<'a> {
    pub folder_uid: String,
    #[serde(borrow)]
    pub folder_key: Cow<'a, str>,
    #[serde(borrow)]
    pub records: Option<Vec<WireRecord<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct FoldersResponse {
    pub folders: Option<Vec<WireFolderInfo>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct WireFolderInfo {
    pub folder_uid: String,
    pub folder_key: String,
    pub data: Option<String>,
    pub parent: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateSecretBody {
    pub record_uid: String,
    pub data: String,
    pub revision: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links2_remove: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecordUidBody {
    pub record_uid: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateSecretBody {
    pub record_uid: String,
    pub record_key: String,
    pub folder_uid: String,
    pub folder_key: String,
    pub data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_folder_uid: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteSecretBody {
    pub record_uids: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateFolderBody {
    pub folder_uid: String,
    pub shared_folder_uid: String,
    pub shared_folder_key: String,
    pub data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_uid: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateFolderBody {
    pub folder_uid: String,
    pub data: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteFolderBody {
    pub folder_uids: Vec<String>,
    pub force_deletion: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct DeleteResponse {
    pub records: Option<Vec<WireDeleteResult>>,
    pub folders: Option<Vec<WireDeleteResult>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct WireDeleteResult {
    pub record_uid: Option<String>,
    pub folder_uid: Option<String>,
    pub response_code: String,
    pub error_message: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AddFileBody {
    pub file_record_uid: String,
    pub file_record_key: String,
    pub file_record_data: String,
    pub owner_record_uid: String,
    pub owner_record_data: String,
    pub owner_record_revision: i64,
    pub link_key: String,
    pub file_size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AddFileResponse {
    pub url: String,
    pub parameters: Option<String>,
    pub success_status_code: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_optional_fields_are_omitted() {
        let body = GetSecretBody {
            requested_records: Some(vec!["A".into()]),
            ..Default::default()
        };
        let env = Envelope {
            client_version: "mr17.3.0",
            client_id: "id==",
            public_key: None,
            body: &body,
        };
        assert_eq!(
            serde_json::to_string(&env).unwrap(),
            r#"{"clientVersion":"mr17.3.0","clientId":"id==","requestedRecords":["A"]}"#
        );
        let env = Envelope {
            client_version: "mr17.3.0",
            client_id: "id",
            public_key: Some("pk"),
            body: &Empty {},
        };
        assert_eq!(
            serde_json::to_string(&env).unwrap(),
            r#"{"clientVersion":"mr17.3.0","clientId":"id","publicKey":"pk"}"#
        );
    }

    #[test]
    fn responses_with_missing_or_null_keys_parse() {
        let r: SecretsResponse =
            serde_json::from_str(r#"{"records":null,"folders":[{"folderUid":"f","folderKey":"k","records":[]}],"expiresOn":0}"#)
                .unwrap();
        assert!(r.records.is_none());
        assert_eq!(r.folders.unwrap().len(), 1);
    }
}
