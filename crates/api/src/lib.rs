//! callverify's HTTP API (axum): identity services create challenges and manage users'
//! phones with an API key; the login front end follows one challenge with the poll token it
//! was given (scoped to that challenge, never the API key); operators read the call log.
//! Errors are RFC 9457 problem+json; the OpenAPI document is built from the same route
//! declarations as the router (utoipa-axum), so the two cannot drift apart.
//!
//! Poll tokens are `HMAC-SHA256(token secret, challenge id)` and trusted-device tokens
//! `HMAC-SHA256(token secret, device id)`: nothing secret is stored, and neither is of use
//! for anything else. Logs name users by [`user_tag`], never by their id.

pub mod callback;
mod calls;
mod challenges;
pub mod eam;
pub mod keys;
pub mod radius;
mod serve;
mod site;
mod streams;
mod users;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use store::{ApiKey, KeyKind, PhoneNumber, Store, StoreError, now_ms};
use tracing::error;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use policy::{Countries, CountryLimit, NumberType, Policy, RateLimit, RefusalKind};
pub use serve::{ServeLimits, serve};
pub use streams::StreamCaps;

/// Settings of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Secret for poll and trusted-device tokens (keep it across restarts, share it between
    /// nodes).
    pub token_secret: Vec<u8>,
    /// How long a challenge may wait for its call before it expires.
    pub challenge_ttl: Duration,
    /// The longest `?wait=` honoured.
    pub max_wait: Duration,
    /// Long polls and event streams a credential may hold open at once on this node (the
    /// count is shared by the clones of this configuration).
    pub streams: StreamCaps,
    /// How long "don't ask again" trusts a device.
    pub trusted_device_ttl: Duration,
    /// Toll-fraud and abuse limits.
    pub policy: Policy,
    /// Webhook signing and retries.
    pub webhooks: webhooks::WebhookConfig,
    /// How long the call log, state changes and webhook attempts are kept, and decided
    /// challenges' numbers in full (`[store] retention_days`).
    pub retention: Duration,
    /// The service key the `/demo` page's backend makes its challenges with; `None`: the
    /// demo page is off.
    pub demo_page: Option<ApiKey>,
    /// The only numbers the `/demo` page registers.
    pub demo_numbers: Vec<PhoneNumber>,
    /// The prompts' language of a challenge that names none (`[call] language`).
    pub language: media::Language,
    /// The Entra external authentication method provider (`[eam]`); `None`: off.
    pub eam: Option<Arc<crate::eam::Provider>>,
    /// How a challenge is confirmed when neither its request nor its API key says
    /// (`[call] confirmation`).
    pub confirmation: store::Confirmation,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token_secret: Vec::new(),
            challenge_ttl: Duration::from_secs(300),
            max_wait: Duration::from_secs(25),
            streams: StreamCaps::default(),
            trusted_device_ttl: Duration::from_secs(14 * 86_400),
            policy: Policy::default(),
            webhooks: webhooks::WebhookConfig::default(),
            retention: Duration::from_secs(90 * 86_400),
            demo_page: None,
            demo_numbers: Vec::new(),
            language: media::Language::En,
            eam: None,
            confirmation: store::Confirmation::Pound,
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
    /// Whether the process can go on (`/readyz`).
    pub readiness: Readiness,
}

impl AppState {
    /// Why the process cannot go on, if it cannot (`/readyz`'s 503): a core task ended, the
    /// runner failed or the store's notifications stopped. Once said, said for good.
    pub fn failure(&self) -> Option<String> {
        let failure = self
            .readiness
            .failure()
            .map(str::to_string)
            .or_else(|| self.runner.as_ref().and_then(|r| r.failure()))
            .or_else(|| self.store.failure().map(str::to_string));
        if let Some(why) = &failure {
            self.readiness.fail(why);
        }
        failure
    }
}

/// Whether the gateway can go on: once a core task has stopped (the SIP endpoint, a call's
/// task, the dispatcher, the store's notifications, the background work), it cannot, and
/// `/readyz` says so until the process exits and is restarted.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<std::sync::OnceLock<String>>);

impl Readiness {
    /// Marks the process unready for good, with the first reason given.
    pub fn fail(&self, why: &str) {
        let _ = self.0.set(why.to_string());
    }

    /// Why the process is not ready, if it is not.
    pub fn failure(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// Makes ring the process's TLS crypto provider (once; later calls do nothing): the one
/// provider of the tree, as rustls panics when it has to choose between several.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Request bodies above this are refused (413).
pub const MAX_BODY: usize = 16 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "callverify",
        description = "Telephony voice verification: challenges, users' phones, trusted \
                       devices and the operator's call log."
    ),
    tags((
        name = "operators",
        description = "For operators, who run the gateway (operator keys): the call log, its \
                       figures and the API keys. Identity services hold service keys."
    )),
    components(schemas(ProblemDoc)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (cvk_…, service or operator) or, where said, a \
                         challenge's poll token (cvp_…)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The routes, declared once for the router and its OpenAPI document.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(challenges::create_challenge))
        .routes(routes!(
            challenges::get_challenge,
            challenges::cancel_challenge
        ))
        .routes(routes!(challenges::challenge_events))
        .routes(routes!(challenges::check_code))
        .routes(routes!(users::register_phone, users::list_phones))
        .routes(routes!(users::remove_phone))
        .routes(routes!(
            users::list_trusted_devices,
            users::revoke_trusted_devices
        ))
        .routes(routes!(users::revoke_trusted_device))
        .routes(routes!(users::list_fraud_blocks, users::lift_fraud_blocks))
        .routes(routes!(calls::list_calls))
        .routes(routes!(calls::call_stats))
        .routes(routes!(calls::get_call))
        .routes(routes!(calls::list_log))
        .routes(routes!(keys::list_api_keys))
        .routes(routes!(keys::revoke_api_key))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        // The pages (not part of the API's document).
        .route("/demo", get(site::demo_page))
        .route("/demo/api/sign-in", post(site::sign_in))
        .route("/demo/api/register", post(site::register))
        .route("/demo/api/config", get(site::config))
        .route("/demo/api/call", post(site::call))
        .route("/demo/api/check", post(site::check))
        .route("/console", get(site::console_page))
}

/// The OpenAPI document of the routes (served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

/// The routes and `/openapi.json`.
pub fn router(state: AppState) -> Router {
    let (router, doc) = api_routes().split_for_parts();
    let router = match &state.cfg.eam {
        Some(p) => router.merge(crate::eam::routes(p)),
        None => router,
    };
    let router = router.with_state(state);
    let doc = Arc::new(doc.to_json().expect("the OpenAPI document serialises"));
    router
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        doc.as_ref().clone(),
                    )
                }
            }),
        )
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "no-route",
                "No such route",
                "the routes are listed in /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(problemize))
}

/// Errors that axum answers itself (a body over the limit, a method not allowed, a query
/// or path that does not parse) become problem+json too.
async fn problemize(r: Response) -> Response {
    let status = r.status();
    let is_problem = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    // The EAM provider's pages are HTML for people, whatever their status.
    let is_page = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem || is_page {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&text).trim().to_string();
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        s if s.is_client_error() => "invalid-request",
        _ => "internal",
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let mut out = Problem::new(status, kind, title, detail).into_response();
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k, v.clone());
        }
    }
    out
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: every core task runs and the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses((status = 200, body = String), (status = 503, body = ProblemDoc))
)]
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<&'static str, Problem> {
    if let Some(why) = state.failure() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "The gateway cannot go on",
            format!("{why}; it stops to be restarted"),
        ));
    }
    // A read of an id no challenge has: the store answers.
    let probe = store::ChallengeId::from_stored("ch_readiness_probe".into());
    state.store.challenge(&probe).await?;
    Ok("ready")
}

/// An RFC 9457 problem, as documented.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ProblemDoc {
    /// `https://callverify.invalid/problems/<kind>`
    r#type: String,
    title: String,
    status: u16,
    detail: String,
}

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    retry_after: Option<u64>,
    /// An extension member (RFC 9457 §3.2), e.g. when a block lifts.
    extra: Option<Box<(&'static str, serde_json::Value)>>,
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
            retry_after: None,
            extra: None,
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

    fn forbidden(title: &'static str, detail: &str) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", title, detail)
    }

    fn not_found(what: &'static str, id: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("no {what} {id} for these credentials"),
        )
    }

    fn unprocessable(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "The request is not valid",
            detail,
        )
    }

    fn malformed(e: impl std::fmt::Display) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-body",
            "The body is not the expected JSON",
            e.to_string(),
        )
    }

    fn with_retry_after(mut self, secs: u64) -> Problem {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl From<policy::Refusal> for Problem {
    fn from(r: policy::Refusal) -> Problem {
        use policy::RefusalKind as K;
        let status = match r.kind {
            K::InvalidNumber => StatusCode::UNPROCESSABLE_ENTITY,
            K::CountryNotAllowed | K::NumberTypeNotAllowed | K::FraudBlock => StatusCode::FORBIDDEN,
            K::RateLimited | K::TooManyCalls => StatusCode::TOO_MANY_REQUESTS,
        };
        let mut p = Problem::new(status, r.kind.as_str(), r.kind.title(), r.detail);
        if let Some(s) = r.retry_after_s {
            p = p.with_retry_after(s);
        }
        if let Some(until) = r.until_ms {
            p.extra = Some(Box::new((
                "blocked_until",
                serde_json::Value::String(rfc3339(until)),
            )));
        }
        p
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
        let mut body = serde_json::json!({
            "type": format!("https://callverify.invalid/problems/{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let (Some(extra), Some(o)) = (self.extra, body.as_object_mut()) {
            let (k, v) = *extra;
            o.insert(k.into(), v);
        }
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

pub use policy::rfc3339;

/// How a log line names user `id`: the first 12 hex digits of HMAC-SHA256(token secret,
/// "user:" + id), the same on every node and across restarts, of no use to find the id.
pub fn user_tag(secret: &[u8], id: &str) -> String {
    let tag = mac(secret, "user:", id).finalize().into_bytes();
    hex(&tag[..6])
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

/// The id of the `/demo` page's users: its backend prefixes the ids the page sends with
/// this, and only its key may name such users (other keys cannot: ':' is not allowed in
/// their user ids).
pub const DEMO_USERS: &str = "demo:";

/// A service key, or 401/403.
async fn service(state: &AppState, headers: &HeaderMap) -> Result<ApiKey, Problem> {
    let key = api_key(state, headers)
        .await?
        .ok_or_else(Problem::unauthorized)?;
    if key.kind != KeyKind::Service {
        return Err(Problem::forbidden(
            "This needs a service key",
            "operator keys read the call log and manage the API keys only",
        ));
    }
    Ok(key)
}

/// An operator key, or 401/403.
async fn operator(state: &AppState, headers: &HeaderMap) -> Result<ApiKey, Problem> {
    operator_for(
        state,
        headers,
        "The call log needs an operator key",
        "service keys read their own challenges only",
    )
    .await
}

/// The request's operator key: 401 without a valid key, 403 (`title`, `detail`) for a
/// service key.
async fn operator_for(
    state: &AppState,
    headers: &HeaderMap,
    title: &'static str,
    detail: &str,
) -> Result<ApiKey, Problem> {
    let key = api_key(state, headers)
        .await?
        .ok_or_else(Problem::unauthorized)?;
    if key.kind != KeyKind::Operator {
        return Err(Problem::forbidden(title, detail));
    }
    Ok(key)
}

fn mac(secret: &[u8], label: &str, id: &str) -> Hmac<sha2::Sha256> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.update(id.as_bytes());
    mac
}

use store::hex;

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// The poll token of a challenge.
pub fn poll_token(secret: &[u8], id: &store::ChallengeId) -> String {
    format!(
        "cvp_{}",
        hex(&mac(secret, "", id.as_str()).finalize().into_bytes())
    )
}

fn poll_token_matches(secret: &[u8], id: &store::ChallengeId, token: &str) -> bool {
    token
        .strip_prefix("cvp_")
        .and_then(unhex)
        // Constant-time comparison.
        .is_some_and(|b| mac(secret, "", id.as_str()).verify_slice(&b).is_ok())
}

/// The token of a trusted device (`cvt_<id>.<hex HMAC>`).
pub fn trusted_device_token(secret: &[u8], device_id: &str) -> String {
    let tag = mac(secret, "trusted-device:", device_id)
        .finalize()
        .into_bytes();
    format!("cvt_{device_id}.{}", hex(&tag))
}

/// The device id of a genuine trusted-device token.
fn trusted_device_id<'t>(secret: &[u8], token: &'t str) -> Option<&'t str> {
    let (id, tag) = token.strip_prefix("cvt_")?.split_once('.')?;
    let tag = unhex(tag)?;
    mac(secret, "trusted-device:", id)
        .verify_slice(&tag)
        .is_ok()
        .then_some(id)
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
        let id = |s: &str| store::ChallengeId::from_stored(s.into());
        let t = poll_token(b"secret", &id("ch_1"));
        assert!(poll_token_matches(b"secret", &id("ch_1"), &t));
        assert!(!poll_token_matches(b"secret", &id("ch_2"), &t));
        assert!(!poll_token_matches(b"other", &id("ch_1"), &t));
        assert!(!poll_token_matches(b"secret", &id("ch_1"), "cvp_zz"));
        assert!(!poll_token_matches(
            b"secret",
            &id("ch_1"),
            &t[..t.len() - 1]
        ));
        assert!(!poll_token_matches(b"secret", &id("ch_1"), "cvp_é"));
    }

    #[test]
    fn trusted_device_tokens_are_signed() {
        let t = trusted_device_token(b"secret", "td_1");
        assert_eq!(trusted_device_id(b"secret", &t), Some("td_1"));
        assert_eq!(trusted_device_id(b"other", &t), None);
        let forged = t.replace("td_1", "td_2");
        assert_eq!(trusted_device_id(b"secret", &forged), None);
        // A poll token is not a device token, nor the other way round.
        let td = store::ChallengeId::from_stored("td_1".into());
        let p = poll_token(b"secret", &td);
        assert_eq!(trusted_device_id(b"secret", &p), None);
        assert!(!poll_token_matches(b"secret", &td, &t));
        assert_eq!(trusted_device_id(b"secret", "cvt_td_1"), None);
    }
}
