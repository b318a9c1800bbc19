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
use store::{PhoneNumber, PhoneRole};

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

/// A number typed on the page is at most this many characters.
const MAX_TYPED_NUMBER: usize = 40;

/// A country the page offers in its select: its ISO 3166 code and calling code.
#[derive(Serialize)]
struct Country {
    id: String,
    calling_code: u16,
}

/// A number the demo calls, as the page shows it.
#[derive(Serialize)]
struct DemoNumber {
    /// In its country's national format (`090-1234-5678`).
    national: String,
    /// International (`+81 90-1234-5678`).
    international: String,
}

/// What the page needs to know: the countries it offers (the first is the default) and
/// the numbers it calls.
#[derive(Serialize)]
struct DemoConfig {
    default_country: Option<String>,
    countries: Vec<Country>,
    numbers: Vec<DemoNumber>,
    /// How long "don't ask again" trusts the device.
    trusted_days: u64,
}

/// The countries the page offers: the policy's allowed ones, or (when every country is
/// allowed) those of the demo's numbers; each with its calling code.
fn countries(state: &AppState) -> Vec<Country> {
    let ids: Vec<String> = match &state.cfg.policy.allowed_countries {
        policy::Countries::Only(list) => list.iter().map(|c| c.to_ascii_uppercase()).collect(),
        policy::Countries::Any => {
            let mut ids: Vec<String> = Vec::new();
            for n in &state.cfg.demo_numbers {
                let id = n
                    .as_e164()
                    .and_then(|e| phonenumber::parse(None, e).ok())
                    .and_then(|p| p.country().id())
                    .map(|id| id.as_ref().to_string());
                if let Some(id) = id
                    && !ids.contains(&id)
                {
                    ids.push(id);
                }
            }
            ids
        }
    };
    ids.into_iter()
        .filter_map(|id| {
            let meta = phonenumber::metadata::DATABASE.by_id(id.as_str())?;
            Some(Country {
                calling_code: meta.country_code(),
                id,
            })
        })
        .collect()
}

/// `GET /demo/api/config`.
pub(crate) async fn config(State(state): State<AppState>) -> Result<Response, Problem> {
    state.cfg.demo_page.as_ref().ok_or_else(demo_off)?;
    let countries = countries(&state);
    let numbers = state
        .cfg
        .demo_numbers
        .iter()
        .filter_map(|n| phonenumber::parse(None, n.as_e164()?).ok())
        .map(|p| DemoNumber {
            national: p.format().mode(phonenumber::Mode::National).to_string(),
            international: p
                .format()
                .mode(phonenumber::Mode::International)
                .to_string(),
        })
        .collect();
    Ok(axum::Json(DemoConfig {
        default_country: countries.first().map(|c| c.id.clone()),
        countries,
        numbers,
        trusted_days: state.cfg.trusted_device_ttl.as_secs() / 86_400,
    })
    .into_response())
}

/// A number the page could not take: `why` says which of the page's messages fits
/// (`empty`, `too_long`, `characters`, `country`, `invalid`).
fn bad_number(why: &'static str, detail: impl Into<String>) -> Problem {
    let mut p = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad-phone-number",
        "The phone number cannot be read",
        detail,
    );
    p.extra = Some(Box::new(("why", serde_json::Value::from(why))));
    p
}

/// Full-width digits and signs (as Japanese keyboards type them) as ASCII; `None` for a
/// character no phone number has.
fn ascii_of(c: char) -> Option<char> {
    match c {
        '0'..='9' | '+' | '-' | '(' | ')' | ' ' | '.' => Some(c),
        '０'..='９' => char::from_u32(u32::from(c) - u32::from('０') + u32::from('0')),
        '＋' => Some('+'),
        '－' | '‐' | '‑' | '–' | '—' | '―' | '−' | 'ー' => Some('-'),
        '（' => Some('('),
        '）' => Some(')'),
        '\u{3000}' | '\u{a0}' | '\t' => Some(' '),
        _ => None,
    }
}

/// A number as typed on the page, in E.164: international (`+81 90 1234 5678`) or in the
/// national format of `country` (`090-1234-5678`), with spaces, dashes, dots and
/// parentheses, full-width or not. `offered` are the page's countries.
fn typed_number(
    typed: &str,
    country: Option<&str>,
    offered: &[Country],
) -> Result<PhoneNumber, Problem> {
    if typed.chars().count() > MAX_TYPED_NUMBER {
        return Err(bad_number(
            "too_long",
            format!("a phone number has at most {MAX_TYPED_NUMBER} characters"),
        ));
    }
    let ascii: String = typed
        .chars()
        .map(ascii_of)
        .collect::<Option<String>>()
        .ok_or_else(|| {
            bad_number(
                "characters",
                "a phone number holds only digits, +, spaces, dashes, dots and parentheses",
            )
        })?;
    let ascii = ascii.trim();
    if !ascii.bytes().any(|b| b.is_ascii_digit()) {
        return Err(bad_number("empty", "enter the phone number"));
    }
    let region = if ascii.starts_with('+') {
        None
    } else {
        let id = country
            .filter(|c| offered.iter().any(|o| o.id.eq_ignore_ascii_case(c)))
            .and_then(|c| {
                c.to_ascii_uppercase()
                    .parse::<phonenumber::country::Id>()
                    .ok()
            })
            .ok_or_else(|| {
                bad_number(
                    "country",
                    "choose the country, or start the number with + and its country code",
                )
            })?;
        Some(id)
    };
    let parsed = phonenumber::parse(region, ascii)
        .ok()
        .filter(phonenumber::is_valid)
        .ok_or_else(|| {
            bad_number(
                "invalid",
                "this is not a phone number of the country chosen: check the digits",
            )
        })?;
    let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
    PhoneNumber::parse(&e164).map_err(|e| bad_number("invalid", e.0))
}

/// The page's sign-in form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    user_id: String,
    /// The configured language when absent.
    language: Option<String>,
    /// Kept from an earlier "don't ask again".
    trusted_device_token: Option<String>,
}

/// The verification step's call: placed when the user asks for it, with "don't ask again"
/// as ticked there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Call {
    user_id: String,
    language: Option<String>,
    #[serde(default)]
    remember_device: bool,
    /// `pound`, `keypad_code` or `spoken_code`; absent: the gateway's default.
    confirmation: Option<String>,
    /// Which of the user's verified phones is called: `primary` (default) or `fallback`
    /// ("call my other phone").
    phone_role: Option<String>,
}

/// The page's phone registration form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Register {
    user_id: String,
    /// As typed: national (with `country`) or international.
    phone_number: String,
    /// ISO 3166 code of the country chosen on the page.
    country: Option<String>,
    /// The configured language when absent.
    language: Option<String>,
    confirmation: Option<String>,
    /// `primary` (default) or `fallback` (another phone, which the primary approves first).
    phone_role: Option<String>,
}

/// What the page does next: `register` (the user has no verified phone: "more
/// information is required"), `verify` (the verification step: call `phone`, with "don't
/// ask again" there) or `call` (follow `challenge` with its poll token).
#[derive(Serialize)]
pub(crate) struct Next {
    next: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge: Option<ChallengeView>,
    /// The phone the verification step calls, masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    /// The user's verified fallback phone ("call my other phone"), masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    other_phone: Option<String>,
    /// The page sent a trusted-device token that no longer holds: forget it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    forget_device: bool,
}

impl Next {
    fn to(next: &'static str) -> Next {
        Next {
            next,
            challenge: None,
            phone: None,
            other_phone: None,
            forget_device: false,
        }
    }
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

/// A challenge request as `POST /v1/challenges` reads it (so that the fields it has
/// and the defaults it takes are the API's own).
fn create_request(body: serde_json::Value) -> Result<CreateRequest, Problem> {
    serde_json::from_value(body).map_err(Problem::malformed)
}

/// Whether `token` is a valid trusted-device token of `user` now.
async fn trusted(state: &AppState, user: &str, token: &str) -> Result<bool, Problem> {
    let Some(id) = crate::trusted_device_id(&state.cfg.token_secret, token) else {
        return Ok(false);
    };
    Ok(state
        .store
        .trusted_device(id)
        .await?
        .is_some_and(|td| td.user_id == user && td.valid_at(crate::now_ms())))
}

/// `POST /demo/api/sign-in`: `register`, `verify` (with the other phone, if the user has a
/// verified fallback), or (a trusted device) `call` with the
/// challenge approved.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let key = demo_key(&state, &headers)?;
    let req: SignIn = serde_json::from_slice(&body).map_err(Problem::malformed)?;
    check_user_id(&req.user_id)?;
    let user = format!("{DEMO_USERS}{}", req.user_id);
    let Some(phone) = state
        .store
        .verified_phone(&user, PhoneRole::Primary)
        .await?
    else {
        return Ok(axum::Json(Next::to("register")).into_response());
    };
    if let Some(token) = &req.trusted_device_token
        && trusted(&state, &user, token).await?
    {
        let create_req = create_request(serde_json::json!({
            "user_id": user, "language": req.language, "trusted_device_token": token,
        }))?;
        return started(&state, &key, &body, create_req).await;
    }
    let other_phone = state
        .store
        .verified_phone(&user, PhoneRole::Fallback)
        .await?
        .map(|p| p.phone.masked());
    Ok(axum::Json(Next {
        phone: Some(phone.phone.masked()),
        other_phone,
        forget_device: req.trusted_device_token.is_some(),
        ..Next::to("verify")
    })
    .into_response())
}

/// `POST /demo/api/call`: the verification step's call to the user's phone (`phone_role`
/// `fallback`: their other phone).
pub(crate) async fn call(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let key = demo_key(&state, &headers)?;
    let req: Call = serde_json::from_slice(&body).map_err(Problem::malformed)?;
    check_user_id(&req.user_id)?;
    let mut json = serde_json::json!({
        "user_id": format!("{DEMO_USERS}{}", req.user_id),
        "language": req.language,
        "remember_device": req.remember_device,
    });
    if let Some(c) = req.confirmation {
        json["confirmation"] = c.into();
    }
    if let Some(r) = req.phone_role {
        json["phone_role"] = r.into();
    }
    started(&state, &key, &body, create_request(json)?).await
}

/// `POST /demo/api/register`: a phone for the user, `primary` or (`phone_role`) `fallback`.
pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let key = demo_key(&state, &headers)?;
    let req: Register = serde_json::from_slice(&body).map_err(Problem::malformed)?;
    check_user_id(&req.user_id)?;
    let number = typed_number(
        &req.phone_number,
        req.country.as_deref(),
        &countries(&state),
    )?;
    if !state.cfg.demo_numbers.contains(&number) {
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
    let mut json = serde_json::json!({
        "phone_number": number.as_e164(),
        "user_id": format!("{DEMO_USERS}{}", req.user_id),
        "language": req.language,
        "purpose": "enroll",
        "phone_role": req.phone_role.as_deref().unwrap_or("primary"),
    });
    if let Some(c) = req.confirmation {
        json["confirmation"] = c.into();
    }
    started(&state, &key, &body, create_request(json)?).await
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
            challenge: Some(view),
            ..Next::to("call")
        }),
    )
        .into_response())
}

/// The spoken code the user typed, for a challenge the page follows.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Check {
    challenge_id: String,
    code: String,
}

/// `POST /demo/api/check`, with the challenge's poll token: the code checked as
/// `POST /v1/challenges/{id}/check` checks it (the same answers and problems).
pub(crate) async fn check(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    demo_key(&state, &headers)?;
    let req: Check = serde_json::from_slice(&body).map_err(Problem::malformed)?;
    let id = store::ChallengeId::parse(&req.challenge_id)
        .ok_or_else(|| Problem::not_found("challenge", "given"))?;
    crate::bearer(&headers)
        .filter(|t| crate::poll_token_matches(&state.cfg.token_secret, &id, t))
        .ok_or_else(Problem::unauthorized)?;
    let c = state
        .store
        .challenge(&id)
        .await?
        .ok_or_else(|| Problem::not_found("challenge", id.as_str()))?;
    let c = crate::challenges::check(&state, &c, &req.code).await?;
    Ok(axum::Json(ChallengeView::full(&state, &c, None, true).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn japan() -> Vec<Country> {
        vec![Country {
            id: "JP".into(),
            calling_code: 81,
        }]
    }

    fn e164(typed: &str, country: Option<&str>) -> Result<String, &'static str> {
        typed_number(typed, country, &japan())
            .map(|n| n.as_e164().unwrap_or_default().to_string())
            .map_err(|p| match p.extra.as_deref() {
                Some((_, serde_json::Value::String(why))) => match why.as_str() {
                    "empty" => "empty",
                    "too_long" => "too_long",
                    "characters" => "characters",
                    "country" => "country",
                    _ => "invalid",
                },
                _ => "no reason",
            })
    }

    #[test]
    fn national_and_international_numbers_become_e164() {
        let want = Ok("+819012345678".to_string());
        for typed in [
            "090-1234-5678",
            "090 1234 5678",
            "(090) 1234-5678",
            "09012345678",
            "０９０－１２３４－５６７８",
            "+81 90 1234 5678",
            "+81 (0)90-1234-5678",
            " 090.1234.5678 ",
        ] {
            assert_eq!(e164(typed, Some("JP")), want, "{typed}");
        }
        // International needs no country; national does, among the page's.
        assert_eq!(e164("+81 90 1234 5678", None), want);
        assert_eq!(e164("090-1234-5678", None), Err("country"));
        assert_eq!(e164("090-1234-5678", Some("US")), Err("country"));
        assert_eq!(
            e164("+44 20 7183 8750", Some("JP")),
            Ok("+442071838750".into())
        );
    }

    #[test]
    fn numbers_that_cannot_be_read_say_why() {
        assert_eq!(e164("", Some("JP")), Err("empty"));
        assert_eq!(e164(" - ", Some("JP")), Err("empty"));
        assert_eq!(e164("090-12", Some("JP")), Err("invalid"));
        assert_eq!(e164("090-1234-5678 ext", Some("JP")), Err("characters"));
        assert_eq!(e164("090;1234", Some("JP")), Err("characters"));
        assert_eq!(e164(&"0".repeat(41), Some("JP")), Err("too_long"));
        // Counted in characters, not bytes: 40 full-width digits are not too long.
        assert_eq!(e164(&"０".repeat(40), Some("JP")), Err("invalid"));
    }
}
