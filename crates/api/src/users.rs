//! Users' phones (registration starts an `enroll` call; the phone is verified only when it
//! is approved, and when the user already has a verified primary phone, only once that phone
//! approved too), trusted devices and fraud blocks. Users are the identity service's own
//! ids; any service key of the gateway may manage them, but only a `phone_admin` key replaces
//! a verified phone without its approval or removes one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use store::{FraudBlock, Phone, PhoneRole, PhoneState, Purpose, TrustedDevice};
use tracing::info;
use utoipa::ToSchema;

use crate::challenges::{ChallengeView, CreateRequest, check_user_for, check_user_id, create};
use crate::{AppState, Problem, now_ms, poll_token, rfc3339, service, user_tag};

/// A phone to register.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterPhone {
    /// E.164.
    #[schema(example = "+819012345678")]
    phone_number: String,
    /// `primary` (default) or `fallback`.
    #[schema(value_type = Option<String>, example = "primary")]
    role: Option<PhoneRole>,
    /// Prompt language of the enrolment call (`en`, `ja`); the configured one by default.
    language: Option<String>,
    /// Where the enrolment's decision is posted.
    callback_url: Option<String>,
}

/// A registered phone.
#[derive(Serialize, ToSchema)]
pub(crate) struct PhoneView {
    #[schema(example = "ph_3m9x2k1q7v5r")]
    id: String,
    /// Masked.
    #[schema(example = "+81 ** **** **78")]
    phone_number: String,
    /// primary or fallback.
    #[schema(value_type = String, example = "primary")]
    role: PhoneRole,
    language: String,
    /// pending (enrolment call not decided), verified, failed (register again).
    #[schema(value_type = String, example = "verified")]
    state: PhoneState,
    /// The enrolment challenge (null for a phone an administrator imported).
    challenge_id: Option<String>,
    created_at: String,
    verified_at: Option<String>,
}

impl PhoneView {
    fn of(p: &Phone) -> PhoneView {
        PhoneView {
            id: p.id.clone(),
            phone_number: p.phone.masked(),
            role: p.role,
            language: p.language.clone(),
            state: p.state,
            challenge_id: p.challenge_id.clone(),
            created_at: rfc3339(p.created_at_ms),
            verified_at: p.verified_at_ms.map(rfc3339),
        }
    }
}

/// A registration: the phone (pending) and its enrolment challenge (with its poll token).
#[derive(Serialize, ToSchema)]
pub(crate) struct Registration {
    phone: PhoneView,
    challenge: ChallengeView,
}

/// The phones of a user.
#[derive(Serialize, ToSchema)]
pub(crate) struct PhoneList {
    phones: Vec<PhoneView>,
}

/// Register a phone for a user: the gateway calls it (an `enroll` challenge) and the phone
/// is verified when the user presses '#'. A verified phone replaces the user's earlier one
/// in the same role. When the user has a verified primary phone, that phone is called first
/// and the new one only if it approves (unless the key has `phone_admin`).
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/phones",
    tag = "users",
    security(("bearer" = [])),
    params(("user_id" = String, Path, description = "the identity service's user id"),
           ("Idempotency-Key" = Option<String>, Header, description = "as for challenges")),
    request_body = RegisterPhone,
    responses(
        (status = 201, body = Registration),
        (status = 200, description = "A replay", body = Registration),
        (status = 400, body = crate::ProblemDoc), (status = 401, body = crate::ProblemDoc),
        (status = 403, body = crate::ProblemDoc), (status = 409, body = crate::ProblemDoc),
        (status = 422, body = crate::ProblemDoc), (status = 429, body = crate::ProblemDoc),
    )
)]
pub(crate) async fn register_phone(
    State(state): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let key = service(&state, &headers).await?;
    check_user_for(&state, &key, &user)?;
    let reg: RegisterPhone = serde_json::from_slice(&body).map_err(Problem::malformed)?;
    let req = CreateRequest {
        phone_number: Some(reg.phone_number),
        user_id: Some(user.clone()),
        language: reg.language,
        purpose: Purpose::Enroll,
        phone_role: Some(reg.role.unwrap_or(PhoneRole::Primary)),
        callback_url: reg.callback_url,
        remember_device: false,
        trusted_device_token: None,
        confirmation: None,
    };
    let (c, replay) = create(&state, &key, &headers, &body, req).await?;
    let phone = state
        .store
        .phones(&user)
        .await?
        .into_iter()
        .find(|p| p.challenge_id.as_deref() == Some(c.id.as_str()))
        .ok_or_else(|| {
            Problem::new(
                StatusCode::CONFLICT,
                "phone-removed",
                "The phone was removed",
                "the phone this request registered has been removed since",
            )
        })?;
    let token = poll_token(&state.cfg.token_secret, &c.id);
    let status = if replay {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = format!("/v1/users/{user}/phones/{}", phone.id);
    Ok((
        status,
        [(header::LOCATION, location)],
        axum::Json(Registration {
            phone: PhoneView::of(&phone),
            challenge: ChallengeView::of(&c, Some(token)),
        }),
    )
        .into_response())
}

/// The phones of a user (removed ones are not listed).
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/phones",
    tag = "users",
    security(("bearer" = [])),
    params(("user_id" = String, Path, description = "the identity service's user id")),
    responses((status = 200, body = PhoneList), (status = 401, body = crate::ProblemDoc),
              (status = 403, body = crate::ProblemDoc), (status = 422, body = crate::ProblemDoc))
)]
pub(crate) async fn list_phones(
    State(state): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<PhoneList>, Problem> {
    service(&state, &headers).await?;
    check_user_id(&user)?;
    let phones = state.store.phones(&user).await?;
    Ok(axum::Json(PhoneList {
        phones: phones.iter().map(PhoneView::of).collect(),
    }))
}

/// Remove a phone of a user (a verified one with a `phone_admin` key only: removing it and
/// registering another would replace it without its approval).
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/phones/{phone_id}",
    tag = "users",
    security(("bearer" = [])),
    params(("user_id" = String, Path, description = "the identity service's user id"),
           ("phone_id" = String, Path, description = "the phone")),
    responses((status = 204, description = "Removed"), (status = 401, body = crate::ProblemDoc),
              (status = 403, description = "A verified phone, and the key has no phone_admin", body = crate::ProblemDoc),
              (status = 404, body = crate::ProblemDoc), (status = 422, body = crate::ProblemDoc))
)]
pub(crate) async fn remove_phone(
    State(state): State<AppState>,
    Path((user, phone)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    let key = service(&state, &headers).await?;
    check_user_id(&user)?;
    let verified = state
        .store
        .phones(&user)
        .await?
        .iter()
        .any(|p| p.id == phone && p.state == PhoneState::Verified);
    if verified && !key.phone_admin {
        return Err(Problem::forbidden(
            "Removing a verified phone needs a phone_admin key",
            "register the new phone instead: the verified one is called to approve it",
        ));
    }
    if state
        .store
        .remove_phone(&user, &phone, now_ms(), key.phone_admin)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found("phone", &phone))
    }
}

/// A trusted device.
#[derive(Serialize, ToSchema)]
pub(crate) struct TrustedDeviceView {
    #[schema(example = "td_7c2m9x4k1q8v")]
    id: String,
    /// The sign-in that made it.
    challenge_id: String,
    created_at: String,
    expires_at: String,
    revoked_at: Option<String>,
    /// Not revoked nor expired.
    active: bool,
}

impl TrustedDeviceView {
    fn of(t: &TrustedDevice, now: i64) -> TrustedDeviceView {
        TrustedDeviceView {
            id: t.id.clone(),
            challenge_id: t.challenge_id.clone(),
            created_at: rfc3339(t.created_at_ms),
            expires_at: rfc3339(t.expires_at_ms),
            revoked_at: t.revoked_at_ms.map(rfc3339),
            active: t.valid_at(now),
        }
    }
}

/// A user's trusted devices.
#[derive(Serialize, ToSchema)]
pub(crate) struct TrustedDeviceList {
    trusted_devices: Vec<TrustedDeviceView>,
}

/// How many were revoked.
#[derive(Serialize, ToSchema)]
pub(crate) struct Revoked {
    revoked: u64,
}

/// A user's trusted devices, newest first (revoked and expired ones included).
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/trusted-devices",
    tag = "users",
    security(("bearer" = [])),
    params(("user_id" = String, Path, description = "the identity service's user id")),
    responses((status = 200, body = TrustedDeviceList), (status = 401, body = crate::ProblemDoc),
              (status = 403, body = crate::ProblemDoc), (status = 422, body = crate::ProblemDoc))
)]
pub(crate) async fn list_trusted_devices(
    State(state): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<TrustedDeviceList>, Problem> {
    service(&state, &headers).await?;
    check_user_id(&user)?;
    let now = now_ms();
    let list = state.store.trusted_devices(&user).await?;
    Ok(axum::Json(TrustedDeviceList {
        trusted_devices: list.iter().map(|t| TrustedDeviceView::of(t, now)).collect(),
    }))
}

/// Revoke all of a user's trusted devices (e.g. when the password changes).
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/trusted-devices",
    tag = "users",
    security(("bearer" = [])),
    params(("user_id" = String, Path, description = "the identity service's user id")),
    responses((status = 200, body = Revoked), (status = 401, body = crate::ProblemDoc),
              (status = 403, body = crate::ProblemDoc), (status = 422, body = crate::ProblemDoc))
)]
pub(crate) async fn revoke_trusted_devices(
    State(state): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Revoked>, Problem> {
    service(&state, &headers).await?;
    check_user_id(&user)?;
    let revoked = state
        .store
        .revoke_trusted_devices(&user, None, now_ms())
        .await?;
    Ok(axum::Json(Revoked { revoked }))
}

/// Revoke one trusted device.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/trusted-devices/{device_id}",
    tag = "users",
    security(("bearer" = [])),
    params(("user_id" = String, Path, description = "the identity service's user id"),
           ("device_id" = String, Path, description = "the device")),
    responses((status = 204, description = "Revoked"), (status = 401, body = crate::ProblemDoc),
              (status = 403, body = crate::ProblemDoc), (status = 404, body = crate::ProblemDoc),
              (status = 422, body = crate::ProblemDoc))
)]
pub(crate) async fn revoke_trusted_device(
    State(state): State<AppState>,
    Path((user, device)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    service(&state, &headers).await?;
    check_user_id(&user)?;
    if state
        .store
        .revoke_trusted_devices(&user, Some(&device), now_ms())
        .await?
        == 1
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found("active trusted device", &device))
    }
}

/// A fraud block: a fraud report (0#) on a call of the user's refuses new challenges for the
/// user and the number called until it lifts.
#[derive(Serialize, ToSchema)]
pub(crate) struct FraudBlockView {
    #[schema(example = "fb_2k9x7m1q4v8c")]
    id: String,
    /// The number blocked, masked.
    #[schema(example = "+81 ** **** **78")]
    phone_number: String,
    /// The challenge whose call the fraud was reported on.
    challenge_id: String,
    reason: String,
    created_at: String,
    /// When it lifts by itself.
    until: String,
    /// When it was lifted early, and by which API key (id and name).
    lifted_at: Option<String>,
    lifted_by: Option<String>,
    /// It refuses challenges now.
    active: bool,
}

impl FraudBlockView {
    fn of(b: &FraudBlock, now: i64) -> FraudBlockView {
        FraudBlockView {
            id: b.id.clone(),
            phone_number: b.phone.masked(),
            challenge_id: b.challenge_id.clone(),
            reason: b.reason.clone(),
            created_at: rfc3339(b.created_at_ms),
            until: rfc3339(b.until_ms),
            lifted_at: b.lifted_at_ms.map(rfc3339),
            lifted_by: match (&b.lifted_by_key_id, &b.lifted_by_key_name) {
                (Some(id), Some(name)) => Some(format!("{id} ({name})")),
                (Some(id), None) => Some(id.clone()),
                _ => None,
            },
            active: b.holds_at(now),
        }
    }
}

/// A user's fraud blocks.
#[derive(Serialize, ToSchema)]
pub(crate) struct FraudBlockList {
    fraud_blocks: Vec<FraudBlockView>,
}

/// How many blocks were lifted.
#[derive(Serialize, ToSchema)]
pub(crate) struct Lifted {
    lifted: u64,
}

/// A user's fraud blocks, newest first (lifted and past ones included).
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/fraud-block",
    tag = "users",
    security(("bearer" = [])),
    params(("user_id" = String, Path, description = "the identity service's user id")),
    responses((status = 200, body = FraudBlockList), (status = 401, body = crate::ProblemDoc),
              (status = 403, body = crate::ProblemDoc), (status = 422, body = crate::ProblemDoc))
)]
pub(crate) async fn list_fraud_blocks(
    State(state): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<FraudBlockList>, Problem> {
    service(&state, &headers).await?;
    check_user_id(&user)?;
    let now = now_ms();
    let list = state.store.fraud_blocks(&user).await?;
    Ok(axum::Json(FraudBlockList {
        fraud_blocks: list.iter().map(|b| FraudBlockView::of(b, now)).collect(),
    }))
}

/// Lift a user's fraud blocks now (e.g. once the user has confirmed the report was a
/// mistake); the lift is kept with the key that made it.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/fraud-block",
    tag = "users",
    security(("bearer" = [])),
    params(("user_id" = String, Path, description = "the identity service's user id")),
    responses((status = 200, body = Lifted), (status = 401, body = crate::ProblemDoc),
              (status = 403, body = crate::ProblemDoc), (status = 422, body = crate::ProblemDoc))
)]
pub(crate) async fn lift_fraud_blocks(
    State(state): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Lifted>, Problem> {
    let key = service(&state, &headers).await?;
    check_user_id(&user)?;
    let lifted = state.store.lift_fraud_blocks(&user, &key, now_ms()).await?;
    info!(
        user = %user_tag(&state.cfg.token_secret, &user),
        lifted,
        key = %key.id,
        key_name = %key.name,
        "fraud block lifted through the API"
    );
    Ok(axum::Json(Lifted { lifted }))
}
