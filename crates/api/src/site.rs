//! The two pages the gateway serves, with no build step: `/demo`, a login front end that
//! shows the user's side of the flow in English and Japanese, and `/console`, the
//! operators' call log.
//!
//! `/demo`'s small backend (`/demo/api/*`) plays the identity service: it makes the
//! challenges with a service key of its own (never sent to the browser), so the page holds
//! only each challenge's poll token, as a real login page would. Its users live in a
//! namespace of their own: the ids the page sends are prefixed with `demo:` here (no other
//! key may name such users, and this key names no others), so the page never touches a real
//! user; and it registers only the numbers of `[demo] numbers`. It is off unless configured
//! ([`ApiConfig::demo_page`](crate::ApiConfig)), since anyone who can reach it can have those
//! numbers called (the policy's limits still apply).
//! `/console` is static: the operator pastes an operator key, which the page keeps in the
//! tab's session storage and sends to `/v1/calls`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use store::{PhoneNumber, PhoneRole, Purpose};

use crate::challenges::{ChallengeView, CreateRequest, check_user_id, create};
use crate::{AppState, DEMO_USERS, Problem, poll_token};

const DEMO_HTML: &str = include_str!("../site/demo.html");
const CONSOLE_HTML: &str = include_str!("../site/console.html");

fn page(html: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            // Everything is inline in the page; nothing from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
                ),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        html,
    )
        .into_response()
}

pub(crate) async fn demo_page(State(state): State<AppState>) -> Result<Response, Problem> {
    state.cfg.demo_page.as_ref().ok_or_else(demo_off)?;
    Ok(page(DEMO_HTML))
}

pub(crate) async fn console_page() -> Response {
    page(CONSOLE_HTML)
}

fn demo_off() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "demo-off",
        "The demo page is off",
        "set demo_page = true in [api] to serve it",
    )
}

/// The page's sign-in form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    user_id: String,
    /// The configured language when absent.
    language: Option<String>,
    #[serde(default)]
    remember_device: bool,
    trusted_device_token: Option<String>,
}

/// The page's phone registration form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Register {
    user_id: String,
    phone_number: String,
    /// The configured language when absent.
    language: Option<String>,
}

/// What the page does next: `register` (the user has no verified phone: "more
/// information is required") or `call` (follow `challenge` with its poll token).
#[derive(Serialize)]
pub(crate) struct Next {
    next: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge: Option<ChallengeView>,
}

/// The demo page's key, for a JSON request. JSON only: another site's page cannot send
/// that without the browser asking first (CORS), which the gateway never allows, so it
/// cannot have calls placed through a visitor's browser.
fn demo_key(state: &AppState, headers: &HeaderMap) -> Result<store::ApiKey, Problem> {
    let key = state.cfg.demo_page.clone().ok_or_else(demo_off)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "JSON expected",
            "send Content-Type: application/json",
        ));
    }
    Ok(key)
}

/// `POST /demo/api/sign-in`.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let key = demo_key(&state, &headers)?;
    let req: SignIn = serde_json::from_slice(&body).map_err(Problem::malformed)?;
    check_user_id(&req.user_id)?;
    let user = format!("{DEMO_USERS}{}", req.user_id);
    if state
        .store
        .verified_phone(&user, PhoneRole::Primary)
        .await?
        .is_none()
    {
        return Ok(axum::Json(Next {
            next: "register",
            challenge: None,
        })
        .into_response());
    }
    let create_req = CreateRequest {
        phone_number: None,
        user_id: Some(user),
        language: req.language,
        purpose: Purpose::SignIn,
        phone_role: None,
        callback_url: None,
        remember_device: req.remember_device,
        trusted_device_token: req.trusted_device_token,
    };
    started(&state, &key, &body, create_req).await
}

/// `POST /demo/api/register`.
pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let key = demo_key(&state, &headers)?;
    let req: Register = serde_json::from_slice(&body).map_err(Problem::malformed)?;
    check_user_id(&req.user_id)?;
    let demo_number = PhoneNumber::parse(&req.phone_number)
        .ok()
        .filter(|n| state.cfg.demo_numbers.contains(n));
    if demo_number.is_none() {
        let numbers: Vec<String> = state
            .cfg
            .demo_numbers
            .iter()
            .map(store::PhoneNumber::masked)
            .collect();
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "not-a-demo-number",
            "The demo calls its own numbers only",
            format!(
                "this demo registers only {}",
                if numbers.is_empty() {
                    "no number".to_string()
                } else {
                    numbers.join(", ")
                }
            ),
        ));
    }
    let create_req = CreateRequest {
        phone_number: Some(req.phone_number),
        user_id: Some(format!("{DEMO_USERS}{}", req.user_id)),
        language: req.language,
        purpose: Purpose::Enroll,
        phone_role: Some(PhoneRole::Primary),
        callback_url: None,
        remember_device: false,
        trusted_device_token: None,
    };
    started(&state, &key, &body, create_req).await
}

async fn started(
    state: &AppState,
    key: &store::ApiKey,
    body: &[u8],
    req: CreateRequest,
) -> Result<Response, Problem> {
    // No Idempotency-Key from the browser: each press of the button is a new challenge.
    let (c, _) = create(state, key, &HeaderMap::new(), body, req).await?;
    let token = poll_token(&state.cfg.token_secret, &c.id);
    let view = ChallengeView::full(state, &c, Some(token), true).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Next {
            next: "call",
            challenge: Some(view),
        }),
    )
        .into_response())
}
