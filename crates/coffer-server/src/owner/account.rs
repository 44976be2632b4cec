//! Accounts: server info, registration (setup code), prelogin, login, logout.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use coffer_crypto::{PublicKey, ct_eq, encode_std, encode_url, make_uid, random_bytes, sha256};
use coffer_proto::ErrorCode;
use coffer_proto::owner::{
    Account, KdfParams, LoginRequest, LoginResponse, PreloginRequest, PreloginResponse,
    RegisterRequest, ServerInfo,
};
use coffer_store::{OwnerRow, SessionRow, StoreError};

use super::{Body, Owner, ciphertext};
use crate::error::{ApiError, ApiResult};
use crate::setup;
use crate::state::{AppState, now_ms};

/// Defaults a client should use for new accounts (Argon2id, 64 MiB, 3 passes).
pub const DEFAULT_KDF_MEMORY_KIB: u32 = 64 * 1024;

/// `GET /info`.
pub async fn info(State(state): State<AppState>) -> ApiResult<Json<ServerInfo>> {
    let (key_id, _) = state.keys.current();
    Ok(Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        key_id,
        public_key: state.keys.public_key_b64url(),
        public_host: state.config.public_host.clone(),
        setup_required: state.store.owner_count().await? == 0,
    }))
}

fn check_kdf(kdf: &KdfParams) -> ApiResult<()> {
    let salt = coffer_crypto::decode_lenient(&kdf.salt)
        .map_err(|_| ApiError::bad_request("kdf.salt is not base64."))?;
    if kdf.within_bounds() && coffer_proto::owner::KDF_SALT_BYTES.contains(&salt.len()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "Unsupported KDF parameters: argon2id with a 16–64-byte salt, 19 MiB–1 GiB, 2–20 \
             passes, 1–16 lanes.",
        ))
    }
}

async fn hash_auth_key(auth_key: Vec<u8>) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random_bytes::<16>())
            .map_err(|e| ApiError::internal(format!("salt: {e}")))?;
        argon2::Argon2::default()
            .hash_password(&auth_key, &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal(format!("argon2: {e}")))
    })
    .await
    .map_err(ApiError::internal)?
}

async fn verify_auth_key(auth_key: Vec<u8>, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                argon2::Argon2::default()
                    .verify_password(&auth_key, &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

fn account_of(owner: &OwnerRow) -> ApiResult<Account> {
    Ok(Account {
        uid: owner.uid.clone(),
        email: owner.email.clone(),
        kdf: serde_json::from_str(&owner.kdf).map_err(ApiError::internal)?,
        encrypted_data_key: encode_std(&owner.encrypted_data_key),
        public_key: encode_std(&owner.public_key),
        encrypted_private_key: encode_std(&owner.encrypted_private_key),
    })
}

async fn new_session(state: &AppState, owner: &OwnerRow) -> ApiResult<LoginResponse> {
    let token = encode_url(&random_bytes::<32>());
    let expires_at = now_ms() + state.config.session_ttl.as_millis() as i64;
    state
        .store
        .create_session(&SessionRow {
            token_hash: sha256(token.as_bytes()).to_vec(),
            owner_uid: owner.uid.clone(),
            expires_at,
        })
        .await?;
    Ok(LoginResponse {
        session_token: token,
        expires_at,
        account: account_of(owner)?,
    })
}

fn normalise_email(email: &str) -> ApiResult<String> {
    let email = email.trim().to_lowercase();
    if email.is_empty()
        || email.len() > 254
        || !email.contains('@')
        || email.contains(char::is_whitespace)
    {
        return Err(ApiError::bad_request("A valid email address is required."));
    }
    Ok(email)
}

/// `POST /register`: the first owner with the setup code.
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(req): Body<RegisterRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let email = normalise_email(&req.email)?;
    check_kdf(&req.kdf)?;
    let auth_key = ciphertext("auth_key", &req.auth_key, 32, 64)?;
    let encrypted_data_key = ciphertext("encrypted_data_key", &req.encrypted_data_key, 60, 60)?;
    let public_key = ciphertext("public_key", &req.public_key, 65, 65)?;
    PublicKey::from_bytes(&public_key)
        .map_err(|_| ApiError::bad_request("public_key is not a P-256 public key."))?;
    let encrypted_private_key =
        ciphertext("encrypted_private_key", &req.encrypted_private_key, 60, 60)?;

    if state.store.owner_count().await? > 0 {
        return Err(ApiError::new(
            ErrorCode::AccessDenied,
            "This server already has an owner; new owners join by invitation from an existing \
             owner.",
        ));
    }
    let code = req.setup_code.as_deref().unwrap_or("").trim().to_owned();
    let expected = state.store.setting(setup::SETUP_CODE_HASH).await?;
    let valid = expected.is_some_and(|hash| ct_eq(&hash, &sha256(code.as_bytes())));
    if !valid {
        return Err(ApiError::denied(
            "The setup code is wrong. It is in DATA_DIR/setup-code on the server and was printed \
             when the server first started.",
        ));
    }
    let owner = OwnerRow {
        uid: make_uid(),
        email,
        kdf: serde_json::to_string(&req.kdf).map_err(ApiError::internal)?,
        auth_hash: hash_auth_key(auth_key).await?,
        encrypted_data_key,
        public_key,
        encrypted_private_key,
        created_at: now_ms(),
    };
    match state.store.create_owner(&owner, true).await {
        Ok(()) => {}
        Err(StoreError::Precondition(_)) | Err(StoreError::Conflict) => {
            return Err(ApiError::denied("This server already has an owner."));
        }
        Err(err) => return Err(err.into()),
    }
    setup::consume(&state).await;
    let session = new_session(&state, &owner).await?;
    let actor = Owner {
        uid: owner.uid.clone(),
        ip: Some(peer.ip().to_string()),
    };
    actor.audit(&state, "owner.register", &owner.uid).await?;
    Ok(Json(session))
}

/// `POST /prelogin`: KDF parameters of an account. Unknown emails get stable decoy
/// parameters, so the answer does not reveal which accounts exist.
pub async fn prelogin(
    State(state): State<AppState>,
    Body(req): Body<PreloginRequest>,
) -> ApiResult<Json<PreloginResponse>> {
    let email = normalise_email(&req.email)?;
    let kdf = match state.store.owner_by_email(&email).await {
        Ok(owner) => serde_json::from_str(&owner.kdf).map_err(ApiError::internal)?,
        Err(StoreError::NotFound) => {
            let salt = coffer_crypto::hmac_sha256(&state.link_secret, email.as_bytes());
            KdfParams {
                algorithm: "argon2id".into(),
                salt: encode_std(&salt[..16]),
                memory_kib: DEFAULT_KDF_MEMORY_KIB,
                iterations: 3,
                parallelism: 1,
            }
        }
        Err(err) => return Err(err.into()),
    };
    Ok(Json(PreloginResponse { kdf }))
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let email = normalise_email(&req.email)?;
    let auth_key = ciphertext("auth_key", &req.auth_key, 32, 64)?;
    crate::throttle::check(
        &state,
        state.config.login_rate_limit,
        &format!("login:{email}"),
    )
    .await?;
    let wrong = || ApiError::new(ErrorCode::Unauthorized, "Wrong email or master password.");
    let owner = match state.store.owner_by_email(&email).await {
        Ok(owner) => owner,
        Err(StoreError::NotFound) => {
            // One verification, as for a real account, so timing does not reveal accounts (the
            // decoy hash itself is made once per process).
            let decoy = state
                .decoy_auth_hash
                .get_or_try_init(|| hash_auth_key(random_bytes::<32>().to_vec()))
                .await?
                .clone();
            verify_auth_key(auth_key, decoy).await;
            return Err(wrong());
        }
        Err(err) => return Err(err.into()),
    };
    if !verify_auth_key(auth_key, owner.auth_hash.clone()).await {
        return Err(wrong());
    }
    let session = new_session(&state, &owner).await?;
    let actor = Owner {
        uid: owner.uid.clone(),
        ip: Some(peer.ip().to_string()),
    };
    actor.audit(&state, "owner.login", &owner.uid).await?;
    Ok(Json(session))
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<AppState>,
    owner: Owner,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    if let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        state
            .store
            .delete_session(&sha256(token.trim().as_bytes()), now_ms())
            .await?;
    }
    owner.audit(&state, "owner.logout", &owner.uid).await?;
    Ok(Json(serde_json::json!({})))
}

/// `GET /account`.
pub async fn account(State(state): State<AppState>, owner: Owner) -> ApiResult<Json<Account>> {
    let row = state.store.owner(&owner.uid).await?;
    Ok(Json(account_of(&row)?))
}
