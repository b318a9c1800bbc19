//! The API keys, for operators (who run the gateway, as opposed to the identity services
//! that hold service keys): the list, never a secret, and revocation. Keys are made with
//! `callverify api-keys create`, which prints the secret once.
//!
//! No node caches a key: each request reads its key from the store, so a revoked key is
//! refused by the next request on every node. What a key opened and keeps open (an event
//! stream, a long poll) checks the key again every [`KEY_RECHECK`] and ends once it is
//! revoked.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use store::{ApiKeyEntry, Revocation, now_ms};
use utoipa::ToSchema;

use crate::{AppState, Problem, rfc3339};

/// How often an event stream or long poll opened with an API key checks that the key is
/// not revoked.
pub const KEY_RECHECK: Duration = Duration::from_secs(5);

/// An API key as operators see it (never its secret).
#[derive(Serialize, ToSchema, Debug)]
pub struct ApiKeyView {
    /// `key_…`
    pub id: String,
    /// A name for people.
    pub name: String,
    /// `service` or `operator`.
    pub kind: &'static str,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// When it was last used as far as the store knows: its newest challenge or refused
    /// attempt still kept (absent for operator keys and unused ones).
    pub last_used_at: Option<String>,
    /// A service key that may replace and remove users' verified phones.
    pub phone_admin: bool,
    /// How its challenges are confirmed when a request does not say (absent: the gateway's
    /// `[call] confirmation`).
    pub confirmation: Option<&'static str>,
}

impl ApiKeyView {
    /// The view of `e`.
    pub fn of(e: &ApiKeyEntry) -> ApiKeyView {
        ApiKeyView {
            id: e.key.id.clone(),
            name: e.key.name.clone(),
            kind: e.key.kind.as_str(),
            created_at: rfc3339(e.created_at_ms),
            revoked_at: e.revoked_at_ms.map(rfc3339),
            last_used_at: e.last_used_ms.map(rfc3339),
            phone_admin: e.key.phone_admin,
            confirmation: e.key.confirmation.map(store::Confirmation::as_str),
        }
    }
}

/// Every API key, revoked ones included, oldest first.
#[derive(Serialize, ToSchema, Debug)]
pub struct ApiKeyList {
    /// The keys.
    pub api_keys: Vec<ApiKeyView>,
}

impl ApiKeyList {
    /// The list of `entries`.
    pub fn of(entries: &[ApiKeyEntry]) -> ApiKeyList {
        ApiKeyList {
            api_keys: entries.iter().map(ApiKeyView::of).collect(),
        }
    }
}

/// An operator key, or 401/403.
async fn operator(state: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    crate::operator_for(
        state,
        headers,
        "API keys are managed with an operator key",
        "a service key cannot list or revoke keys",
    )
    .await
    .map(drop)
}

/// List the API keys (operators: whoever runs the gateway), never their secrets.
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    tag = "operators",
    security(("bearer" = [])),
    responses((status = 200, body = ApiKeyList), (status = 401, body = crate::ProblemDoc),
              (status = 403, description = "A service key", body = crate::ProblemDoc))
)]
pub(crate) async fn list_api_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<ApiKeyList>, Problem> {
    operator(&state, &headers).await?;
    Ok(axum::Json(ApiKeyList::of(&state.store.api_keys().await?)))
}

/// Revoke an API key (operators): requests with it are refused at once on every node, and
/// its open event streams and long polls end within 5 s. New keys are made with
/// `callverify api-keys create`.
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    tag = "operators",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the key (`key_…`)")),
    responses((status = 200, description = "Revoked", body = ApiKeyView),
              (status = 401, body = crate::ProblemDoc),
              (status = 403, description = "A service key", body = crate::ProblemDoc),
              (status = 404, body = crate::ProblemDoc),
              (status = 409, description = "Revoked already", body = crate::ProblemDoc))
)]
pub(crate) async fn revoke_api_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<ApiKeyView>, Problem> {
    operator(&state, &headers).await?;
    match state.store.revoke_api_key_by_id(&id, now_ms()).await? {
        Revocation::Revoked(e) => {
            tracing::info!(key = %e.key.id, name = %e.key.name, "API key revoked");
            Ok(axum::Json(ApiKeyView::of(&e)))
        }
        Revocation::AlreadyRevoked(e) => Err(Problem::new(
            StatusCode::CONFLICT,
            "already-revoked",
            "The key is revoked already",
            format!(
                "{} was revoked at {}",
                e.key.id,
                e.revoked_at_ms.map(rfc3339).unwrap_or_default()
            ),
        )),
        Revocation::Unknown => Err(Problem::not_found("API key", &id)),
    }
}
