//! Request authentication and the device rules (PROTOCOL.md §3.6–§3.8, §4.5, §5.0.2).

use axum::http::HeaderMap;
use coffer_crypto::{PublicKey, SymmetricKey, decode_lenient, gcm_open};
use coffer_proto::ksm::BaseRequest;
use coffer_store::{BindOutcome, DeviceRow, NewAuditEvent, StoreError};

use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, now_ms};

/// Only touch `last_access_at` when it is older than this (keeps reads free of writes).
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// An authenticated request.
pub struct Caller {
    /// The request's transmission key (answers are encrypted with it).
    pub transmission_key: SymmetricKey,
    /// The decrypted payload JSON.
    pub payload: Vec<u8>,
    /// The device, as stored (after binding, with its key).
    pub device: DeviceRow,
    /// Owner of the device's app.
    pub owner_uid: String,
    /// The device's application.
    pub app: coffer_store::AppRow,
    /// This request bound the device (or repeated a binding with the same key): the answer
    /// must carry `encryptedAppKey` and `appOwnerPublicKey`.
    pub binding: bool,
    /// Source address.
    pub ip: String,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Authenticates a KSM request or explains the refusal.
pub async fn authenticate(
    state: &AppState,
    endpoint: &str,
    headers: &HeaderMap,
    body: &[u8],
    ip: &str,
) -> ApiResult<Caller> {
    let etk_text = header(headers, "transmissionkey").ok_or_else(|| {
        ApiError::denied("The TransmissionKey header is missing: this is a KSM protocol endpoint.")
    })?;
    let etk = decode_lenient(etk_text)
        .map_err(|_| ApiError::denied("The TransmissionKey header is not valid base64."))?;
    let key_id = header(headers, "publickeyid").and_then(|v| v.parse::<u32>().ok());
    let tk_bytes = state
        .keys
        .open_transmission_key(key_id, &etk)
        .ok_or_else(|| {
            ApiError::denied(
                "The transmission key could not be decrypted: the client is not configured with \
             this server's public key (check serverPublicKey and serverPublicKeyId in its config).",
            )
        })?;
    let transmission_key = SymmetricKey::from_slice(&tk_bytes)
        .map_err(|_| ApiError::denied("The transmission key must be 32 bytes."))?;
    let payload = gcm_open(&transmission_key, body).map_err(|_| {
        ApiError::bad_request("The request body could not be decrypted with the transmission key.")
    })?;
    let base: BaseRequest = serde_json::from_slice(&payload).map_err(|e| {
        ApiError::bad_request(format!("The request payload is not valid JSON: {e}"))
    })?;
    let client_id = coffer_proto::non_empty(&base.client_id)
        .ok_or_else(|| ApiError::bad_request("The request payload has no clientId."))?
        .to_owned();
    let signature = header(headers, "authorization")
        .and_then(|v| v.strip_prefix("Signature "))
        .and_then(|v| decode_lenient(v.trim()).ok())
        .ok_or_else(|| {
            ApiError::denied("The Authorization header must be \"Signature <base64 DER>\".")
        })?;
    let mut signed = Vec::with_capacity(etk.len() + body.len());
    signed.extend_from_slice(&etk);
    signed.extend_from_slice(body);

    let device = match state.store.device(&client_id).await {
        Ok(device) => device,
        Err(StoreError::NotFound) => {
            return Err(ApiError::denied(
                "Unknown client: this device was removed or never existed. Ask the \
                 application's owner for a new one-time token.",
            )
            .log(format!("unknown clientId on {endpoint}")));
        }
        Err(err) => return Err(err.into()),
    };
    let app = state.store.app(&device.app_uid).await?;
    let offered_key = match coffer_proto::non_empty(&base.public_key) {
        Some(text) => Some(
            decode_lenient(text)
                .ok()
                .and_then(|bytes| PublicKey::from_bytes(&bytes).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("publicKey is not a 65-byte P-256 public key.")
                })?,
        ),
        None => None,
    };
    let app_uid = device.app_uid.clone();
    let refuse = |action: &str, message: &str, detail: &str| {
        state.audit.queue(NewAuditEvent {
            at: now_ms(),
            owner_uid: Some(app.owner_uid.clone()),
            actor: format!("client:{client_id}"),
            action: action.to_owned(),
            target: Some(app_uid.clone()),
            ip: Some(ip.to_owned()),
            detail: Some(detail.to_owned()),
        });
        ApiError::denied(message.to_owned()).log(detail.to_owned())
    };

    let now = now_ms();
    let (device, binding) = match (&device.public_key, offered_key) {
        (None, None) => {
            return Err(refuse(
                "client.refused",
                "This device has not been bound yet: the first request must carry the \
                 device's publicKey (initialise the client with its one-time token).",
                "unbound device without publicKey",
            ));
        }
        (None, Some(key)) => {
            key.verify(&signed, &signature)
                .map_err(|_| ApiError::denied("Signature is invalid"))?;
            if let Some(expires) = device.first_access_expires_at
                && now > expires
            {
                return Err(refuse(
                    "client.refused",
                    "This one-time token has expired: it had to be used before its first-access \
                     deadline. Ask the application's owner for a new one.",
                    "expired one-time token",
                ));
            }
            match state
                .store
                .bind_device(&client_id, key.as_bytes(), ip, now)
                .await?
            {
                BindOutcome::Bound | BindOutcome::AlreadyBoundSameKey => {}
                BindOutcome::AlreadyBoundOtherKey => {
                    return Err(refuse(
                        "client.refused",
                        "This one-time token has already been used by another device. Ask the \
                         application's owner for a new one.",
                        "token reuse with a different key",
                    ));
                }
            }
            state
                .audit
                .write(NewAuditEvent {
                    at: now,
                    owner_uid: Some(app.owner_uid.clone()),
                    actor: format!("client:{client_id}"),
                    action: "client.bind".into(),
                    target: Some(device.app_uid.clone()),
                    ip: Some(ip.to_owned()),
                    detail: None,
                })
                .await?;
            (state.store.device(&client_id).await?, true)
        }
        (Some(stored), offered) => {
            let stored_key = PublicKey::from_bytes(stored).map_err(ApiError::internal)?;
            let repeated = match offered {
                Some(key) if key != stored_key => {
                    return Err(refuse(
                        "client.refused",
                        "This one-time token has already been used by another device. Ask the \
                         application's owner for a new one.",
                        "token reuse with a different key",
                    ));
                }
                Some(_) => true,
                None => false,
            };
            stored_key
                .verify(&signed, &signature)
                .map_err(|_| ApiError::denied("Signature is invalid"))?;
            (device, repeated)
        }
    };
    if device.ip_lock
        && let Some(bound_ip) = &device.bound_ip
        && bound_ip != ip
    {
        return Err(refuse(
            "client.refused",
            "This device is locked to the IP address it was first used from. Ask the \
             application's owner for a new one-time token (or one with the IP lock off).",
            &format!("ip lock: bound {bound_ip}"),
        ));
    }
    if device
        .last_access_at
        .is_none_or(|last| now - last > TOUCH_INTERVAL_MS)
    {
        state.store.touch_device(&client_id, now).await?;
    }
    Ok(Caller {
        transmission_key,
        payload,
        owner_uid: app.owner_uid.clone(),
        app,
        device,
        binding,
        ip: ip.to_owned(),
    })
}
