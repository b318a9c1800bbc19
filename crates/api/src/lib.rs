//! callverify's HTTP API (axum): identity services create challenges with an API key; the
//! login front end polls one challenge with the poll token it was given (scoped to that
//! challenge, never the API key). Errors are RFC 9457 problem+json.
//!
//! Poll tokens are `HMAC-SHA256(token secret, challenge id)`: nothing to store, the same
//! token again for an idempotent replay, and useless for any other challenge.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use store::{ApiKey, Challenge, KeyKind, NewChallenge, PhoneNumber, Purpose, Store, StoreError};
use tracing::{error, info};

/// Settings of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Secret for poll tokens (keep it across restarts, share it between nodes).
    pub token_secret: Vec<u8>,
    /// How long a challenge may take before it expires.
    pub challenge_ttl: Duration,
    /// The longest `?wait=` honoured.
    pub max_wait: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token_secret: Vec::new(),
            challenge_ttl: Duration::from_secs(300),
            max_wait: Duration::from_secs(25),
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Places the calls of new challenges (none: challenges stay queued, e.g. in tests of
    /// the API alone).
    pub runner: Option<Arc<engine::Runner>>,
    /// Settings.
    pub cfg: Arc<ApiConfig>,
}

/// Request bodies above this are refused (413).
pub const MAX_BODY: usize = 16 * 1024;

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/challenges", post(create_challenge))
        .route("/v1/challenges/{id}", get(get_challenge))
        .route("/v1/calls", get(list_calls))
        .route("/v1/calls/{id}", get(get_call))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
}

impl Problem {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
        }
    }

    fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or unknown credentials",
            "send Authorization: Bearer <API key or poll token>",
        )
    }

    fn not_found(id: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such challenge",
            format!("no challenge {id} for these credentials"),
        )
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::IdempotencyConflict(k) => Problem::new(
                StatusCode::CONFLICT,
                "idempotency-conflict",
                "Idempotency key reused",
                format!("Idempotency-Key {k:?} was used with a different request body"),
            ),
            other => {
                error!(error = %other, "store failure");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "The store is unavailable",
                    "try again shortly",
                )
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("https://callverify.invalid/problems/{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-11-25T05:40:28.123Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn api_key(state: &AppState, headers: &HeaderMap) -> Result<Option<ApiKey>, Problem> {
    match bearer(headers) {
        Some(secret) if secret.starts_with("cvk_") => Ok(state.store.api_key(secret).await?),
        _ => Ok(None),
    }
}

fn poll_mac(secret: &[u8], id: &str) -> Hmac<sha2::Sha256> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac
}

/// The poll token of a challenge.
pub fn poll_token(secret: &[u8], id: &str) -> String {
    let tag = poll_mac(secret, id).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("cvp_{hex}")
}

fn poll_token_matches(secret: &[u8], id: &str, token: &str) -> bool {
    let Some(hex) = token.strip_prefix("cvp_") else {
        return false;
    };
    if hex.len() != 64 {
        return false;
    }
    let bytes: Option<Vec<u8>> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    // Constant-time comparison.
    bytes.is_some_and(|b| poll_mac(secret, id).verify_slice(&b).is_ok())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    phone_number: String,
    #[serde(default = "default_language")]
    language: String,
    #[serde(default = "default_purpose")]
    purpose: Purpose,
    callback_url: Option<String>,
}

fn default_language() -> String {
    "en".into()
}
fn default_purpose() -> Purpose {
    Purpose::SignIn
}

/// A challenge as the API shows it.
#[derive(Serialize)]
struct ChallengeView {
    id: String,
    state: store::ChallengeState,
    purpose: Purpose,
    language: String,
    phone_number: String,
    created_at: String,
    updated_at: String,
    expires_at: String,
    decided_at: Option<String>,
    reason: Option<String>,
    sip_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    poll_token: Option<String>,
}

impl ChallengeView {
    fn of(c: &Challenge, poll_token: Option<String>) -> ChallengeView {
        ChallengeView {
            id: c.id.clone(),
            state: c.state,
            purpose: c.purpose,
            language: c.language.clone(),
            phone_number: c.phone.masked(),
            created_at: rfc3339(c.created_at_ms),
            updated_at: rfc3339(c.updated_at_ms),
            expires_at: rfc3339(c.expires_at_ms),
            decided_at: c.decided_at_ms.map(rfc3339),
            reason: c.reason.clone(),
            sip_status: c.sip_status,
            poll_token,
        }
    }
}

fn unprocessable(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-request",
        "The request is not valid",
        detail,
    )
}

async fn create_challenge(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let key = api_key(&state, &headers)
        .await?
        .ok_or_else(Problem::unauthorized)?;
    if key.kind != KeyKind::Service {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This key may not create challenges",
            "operator keys read the call log only",
        ));
    }
    let req: CreateRequest = serde_json::from_slice(&body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-body",
            "The body is not the expected JSON",
            e.to_string(),
        )
    })?;
    let phone = PhoneNumber::parse(&req.phone_number)
        .map_err(|e| unprocessable(format!("phone_number: {e}")))?;
    if !matches!(req.language.as_str(), "en" | "ja") {
        return Err(unprocessable(format!(
            "language {:?} is not offered: use en or ja",
            req.language
        )));
    }
    if let Some(url) = &req.callback_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(unprocessable("callback_url must be an http(s) URL"));
    }
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= 255 => Some(s.to_string()),
            _ => {
                return Err(unprocessable(
                    "Idempotency-Key must be 1 to 255 visible characters",
                ));
            }
        },
    };
    let request_hash = {
        use sha2::Digest;
        sha2::Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let now = now_ms();
    let (c, replay) = state
        .store
        .create_challenge(&NewChallenge {
            api_key_id: key.id.clone(),
            idempotency_key,
            request_hash,
            user_id: None,
            phone,
            language: req.language,
            purpose: req.purpose,
            callback_url: req.callback_url,
            now_ms: now,
            expires_at_ms: now + state.cfg.challenge_ttl.as_millis() as i64,
        })
        .await?;
    if !replay {
        info!(challenge = %c.id, to = %c.phone, "challenge created");
        if let Some(runner) = &state.runner {
            let runner = runner.clone();
            let id = c.id.clone();
            tokio::spawn(async move {
                if let Err(e) = runner.run(&id).await {
                    error!(challenge = %id, error = %e, "the challenge's call failed");
                }
            });
        }
    }
    let token = poll_token(&state.cfg.token_secret, &c.id);
    let status = if replay {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = format!("/v1/challenges/{}", c.id);
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(ChallengeView::of(&c, Some(token))),
    )
        .into_response())
}

#[derive(Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn get_challenge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let token_ok =
        bearer(&headers).is_some_and(|t| poll_token_matches(&state.cfg.token_secret, &id, t));
    let key = if token_ok {
        None
    } else {
        Some(
            api_key(&state, &headers)
                .await?
                .ok_or_else(Problem::unauthorized)?,
        )
    };
    let mut c = state
        .store
        .challenge(&id)
        .await?
        .ok_or_else(|| Problem::not_found(&id))?;
    if let Some(k) = &key
        && k.kind == KeyKind::Service
        && k.id != c.api_key_id
    {
        return Err(Problem::not_found(&id));
    }
    // Long poll: until the state changes or the wait is over.
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(state.cfg.max_wait);
    if !wait.is_zero() && !c.state.is_terminal() {
        let deadline = tokio::time::Instant::now() + wait;
        let seen = c.state;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match state.store.challenge(&id).await? {
                Some(now) if now.state != seen => {
                    c = now;
                    break;
                }
                Some(now) => c = now,
                None => break,
            }
        }
    }
    Ok(Json(ChallengeView::of(&c, None)).into_response())
}

async fn ready(State(state): State<AppState>) -> Result<&'static str, Problem> {
    state.store.challenge("ch_readiness_probe").await?;
    Ok("ready")
}

async fn operator(state: &AppState, headers: &HeaderMap) -> Result<ApiKey, Problem> {
    let key = api_key(state, headers)
        .await?
        .ok_or_else(Problem::unauthorized)?;
    if key.kind != KeyKind::Operator {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The call log needs an operator key",
            "service keys read their own challenges only",
        ));
    }
    Ok(key)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallsQuery {
    outcome: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    phone: Option<String>,
    trunk: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct KeyView {
    digit: String,
    source: String,
    at_ms: i64,
}

#[derive(Serialize)]
struct CallView {
    id: String,
    challenge_id: String,
    phone_number: String,
    started_at: String,
    ended_at: Option<String>,
    outcome: Option<String>,
    sip_status: Option<i64>,
    detail: Option<String>,
    trunk: Option<String>,
    post_dial_delay_ms: Option<i64>,
    time_to_answer_ms: Option<i64>,
    time_to_key_ms: Option<i64>,
    time_to_verdict_ms: Option<i64>,
    packets_sent: Option<i64>,
    packets_received: Option<i64>,
    packets_lost: Option<i64>,
    jitter_ms: Option<f64>,
    packets_rejected: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<KeyView>>,
}

impl CallView {
    fn of(c: &store::CallEntry, with_keys: bool) -> CallView {
        let e = c.end.as_ref();
        CallView {
            id: c.id.clone(),
            challenge_id: c.challenge_id.clone(),
            phone_number: c.phone_masked.clone(),
            started_at: rfc3339(c.started_at_ms),
            ended_at: e.map(|e| rfc3339(e.ended_at_ms)),
            outcome: e.map(|e| e.outcome.clone()),
            sip_status: e.and_then(|e| e.sip_status),
            detail: e.and_then(|e| e.detail.clone()),
            trunk: e.and_then(|e| e.trunk.clone()),
            post_dial_delay_ms: e.and_then(|e| e.post_dial_delay_ms),
            time_to_answer_ms: e.and_then(|e| e.time_to_answer_ms),
            time_to_key_ms: e.and_then(|e| e.time_to_key_ms),
            time_to_verdict_ms: e.and_then(|e| e.time_to_verdict_ms),
            packets_sent: e.map(|e| e.packets_sent),
            packets_received: e.map(|e| e.packets_received),
            packets_lost: e.map(|e| e.packets_lost),
            jitter_ms: e.map(|e| e.jitter_ms),
            packets_rejected: e.map(|e| e.packets_rejected),
            keys: with_keys.then(|| {
                e.map(|e| {
                    e.keys
                        .iter()
                        .map(|k| KeyView {
                            digit: k.digit.clone(),
                            source: k.source.clone(),
                            at_ms: k.at_ms,
                        })
                        .collect()
                })
                .unwrap_or_default()
            }),
        }
    }
}

async fn list_calls(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallsQuery>,
) -> Result<Response, Problem> {
    operator(&state, &headers).await?;
    let filter = store::CallFilter {
        outcome: q.outcome,
        from_ms: q.from,
        to_ms: q.to,
        phone_masked: q.phone,
        trunk: q.trunk,
    };
    let (calls, next) = state
        .store
        .calls(&filter, q.limit.unwrap_or(50), q.cursor.as_deref())
        .await
        .map_err(|e| match e {
            StoreError::Corrupt(c) if c.starts_with("cursor") => {
                unprocessable(format!("{c} is not a cursor from this API"))
            }
            other => other.into(),
        })?;
    let items: Vec<CallView> = calls.iter().map(|c| CallView::of(c, false)).collect();
    Ok(Json(serde_json::json!({ "calls": items, "next_cursor": next })).into_response())
}

async fn get_call(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    operator(&state, &headers).await?;
    let call = state.store.call(&id).await?.ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such call",
            format!("no call {id}"),
        )
    })?;
    let timeline = state.store.events(&call.challenge_id).await?;
    let events: Vec<serde_json::Value> = timeline
        .iter()
        .map(|e| serde_json::json!({"state": e.state, "at": rfc3339(e.at_ms), "detail": e.detail}))
        .collect();
    let mut v = serde_json::to_value(CallView::of(&call, true)).expect("serialisable");
    v["challenge_events"] = serde_json::Value::Array(events);
    Ok(Json(v).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_585_228_123), "2026-11-25T05:40:28.123Z");
    }

    #[test]
    fn poll_tokens_are_scoped_to_one_challenge() {
        let t = poll_token(b"secret", "ch_1");
        assert!(poll_token_matches(b"secret", "ch_1", &t));
        assert!(!poll_token_matches(b"secret", "ch_2", &t));
        assert!(!poll_token_matches(b"other", "ch_1", &t));
        assert!(!poll_token_matches(b"secret", "ch_1", "cvp_zz"));
        assert!(!poll_token_matches(b"secret", "ch_1", &t[..t.len() - 1]));
    }
}
