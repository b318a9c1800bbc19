//! Challenges: create (with policy, idempotency, users' phones and trusted devices), read
//! (with a long poll), follow as server-sent events, cancel.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use media::Language;
use serde::{Deserialize, Serialize};
use store::{
    ApiKey, Challenge, ChallengeId, ChallengeState, CodeCheck, Confirmation, KeyKind, NewChallenge,
    PhoneNumber, PhoneRole, Purpose, TrustedDevice,
};
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};
use utoipa::{IntoParams, ToSchema};

use crate::keys::KEY_RECHECK;
use crate::{
    AppState, DEMO_USERS, Problem, bearer, now_ms, poll_token, poll_token_matches, rfc3339,
    service, trusted_device_id, trusted_device_token, user_tag,
};

/// A poll token stops working this long after its challenge is decided.
pub(crate) const POLL_TOKEN_AFTER_DECISION_MS: i64 = 10 * 60_000;

/// A new challenge.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRequest {
    /// The number to call (E.164). For a sign-in, give this or `user_id`; an enrolment
    /// needs both.
    #[schema(example = "+819012345678")]
    pub phone_number: Option<String>,
    /// The identity service's user id: a sign-in calls the user's verified primary phone
    /// (its fallback with `phone_role` `fallback`).
    #[schema(example = "alice@example.com")]
    pub user_id: Option<String>,
    /// Prompt language, one of the prompt library's (`en`, `ja`); when absent, the
    /// gateway's configured `[call] language`.
    #[schema(example = "ja")]
    pub language: Option<String>,
    /// `sign_in` (default) or `enroll` (registers `phone_number` for `user_id`).
    #[serde(default = "default_purpose")]
    #[schema(value_type = String, example = "sign_in")]
    pub purpose: Purpose,
    /// For an enrolment: the role it registers; for a sign-in of `user_id`: which of the
    /// user's verified phones is called. `primary` (default) or `fallback`.
    #[schema(value_type = Option<String>, example = "primary")]
    pub phone_role: Option<PhoneRole>,
    /// Where the decision is posted (signed), if anywhere.
    pub callback_url: Option<String>,
    /// A sign-in of a user: when approved, return a trusted-device token ("don't ask
    /// again" for the configured days).
    #[serde(default)]
    pub remember_device: bool,
    /// A trusted-device token of this user: if still valid, the challenge is approved at
    /// once with reason `trusted_device` and no call is made.
    pub trusted_device_token: Option<String>,
    /// How the person confirms: `pound` ('#'), `keypad_code` (number matching: show the
    /// answer's `display_code`; the call asks for those two digits, then '#') or
    /// `spoken_code` (the call reads a 6-digit code; the person types it on the page, sent
    /// with `POST /v1/challenges/{id}/check`). When absent: the API key's mode, or the
    /// gateway's `[call] confirmation`.
    #[schema(value_type = Option<String>, example = "keypad_code")]
    pub confirmation: Option<Confirmation>,
}

fn default_purpose() -> Purpose {
    Purpose::SignIn
}

/// A challenge as the API shows it.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChallengeView {
    #[schema(example = "ch_5kq3v9x2m1r7")]
    id: String,
    /// queued, calling, ringing, answered, approved, denied, fraud_reported, no_input,
    /// voicemail, no_answer, busy, declined, hung_up, failed, canceled, expired,
    /// interrupted.
    #[schema(value_type = String, example = "ringing")]
    state: ChallengeState,
    #[schema(value_type = String, example = "sign_in")]
    purpose: Purpose,
    language: String,
    /// Masked.
    #[schema(example = "+81 ** **** **78")]
    phone_number: String,
    user_id: Option<String>,
    created_at: String,
    updated_at: String,
    expires_at: String,
    decided_at: Option<String>,
    /// Why it ended, when said (a failure's detail, `trusted_device`, …).
    reason: Option<String>,
    /// The SIP status of a failure.
    sip_status: Option<i64>,
    /// For the front end: reads this challenge only. Given when it is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    poll_token: Option<String>,
    /// An approved sign-in that asked to remember the device: present it with the next
    /// challenge of this user to skip the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_device_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_until: Option<String>,
    /// An enrolment that calls the user's current primary phone first: the new phone is
    /// called, and verified, only if that one approves.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    confirm_primary: bool,
    /// `pound`, `keypad_code` or `spoken_code`.
    #[schema(value_type = String, example = "keypad_code")]
    confirmation: Confirmation,
    /// Number matching: the two digits the sign-in page must show (to its poll token and
    /// the key that made it only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "47")]
    display_code: Option<String>,
    /// Spoken code: how many more times the code may be typed.
    #[serde(skip_serializing_if = "Option::is_none")]
    code_attempts_left: Option<i64>,
    /// Whether the code entered was the right one (number matching, spoken code); absent
    /// until one is entered.
    #[serde(skip_serializing_if = "Option::is_none")]
    code_matched: Option<bool>,
}

impl ChallengeView {
    pub(crate) fn of(c: &Challenge, poll_token: Option<String>) -> ChallengeView {
        ChallengeView {
            id: c.id.to_string(),
            state: c.state,
            purpose: c.purpose,
            language: c.language.clone(),
            phone_number: c.phone.masked(),
            user_id: c.user_id.clone(),
            created_at: rfc3339(c.created_at_ms),
            updated_at: rfc3339(c.updated_at_ms),
            expires_at: rfc3339(c.expires_at_ms),
            decided_at: c.decided_at_ms.map(rfc3339),
            reason: c.reason.clone(),
            sip_status: c.sip_status,
            trusted_device_token: None,
            trusted_until: None,
            confirm_primary: c.confirm_primary,
            confirmation: c.confirmation,
            // The reply to the request that made it carries the poll token, and the code.
            display_code: poll_token
                .is_some()
                .then(|| c.display_code.clone())
                .flatten(),
            code_attempts_left: (c.confirmation == Confirmation::SpokenCode)
                .then(|| (store::MAX_CODE_ATTEMPTS - c.code_attempts).max(0)),
            code_matched: c.code_matched,
            poll_token,
        }
    }

    /// The view with its trusted-device token, when the challenge made one and the reader
    /// may see it (`tokens`: its poll token or the key that made it, never an operator).
    pub(crate) async fn full(
        state: &AppState,
        c: &Challenge,
        poll_token: Option<String>,
        tokens: bool,
    ) -> Result<ChallengeView, Problem> {
        let mut v = ChallengeView::of(c, poll_token);
        if tokens {
            v.display_code = c.display_code.clone();
        }
        if tokens
            && c.state == ChallengeState::Approved
            && c.remember_device_ms > 0
            && let Some(td) = state.store.trusted_device_of(&c.id).await?
            && td.valid_at(now_ms())
        {
            v.trusted_device_token = Some(trusted_device_token(&state.cfg.token_secret, &td.id));
            v.trusted_until = Some(rfc3339(td.expires_at_ms));
        }
        Ok(v)
    }
}

/// A user id as the identity service names its users (`demo:` ids are the demo page's).
pub(crate) fn check_user_id(u: &str) -> Result<(), Problem> {
    if u.starts_with(DEMO_USERS) {
        return Err(Problem::unprocessable(
            "user ids starting with demo: belong to the /demo page",
        ));
    }
    let ok = (1..=128).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Problem::unprocessable(
            "user_id must be 1 to 128 of A-Z a-z 0-9 . _ @ + -",
        ))
    }
}

/// A user id the key may name: the demo page's key only `demo:` users, every other key only
/// the others.
pub(crate) fn check_user_for(state: &AppState, key: &ApiKey, u: &str) -> Result<(), Problem> {
    let demo = state.cfg.demo_page.as_ref().is_some_and(|d| d.id == key.id);
    match (demo, u.strip_prefix(DEMO_USERS)) {
        (true, Some(rest)) => check_user_id(rest),
        (true, None) => Err(Problem::forbidden(
            "The demo page's key names demo users only",
            "its users' ids start with demo:",
        )),
        (false, _) => check_user_id(u),
    }
}

/// The prompts' language a request names, or the configured one when it names none.
fn language_of(state: &AppState, name: Option<&str>) -> Result<Language, Problem> {
    let Some(name) = name else {
        return Ok(state.cfg.language);
    };
    Language::from_code(name).ok_or_else(|| {
        Problem::unprocessable(format!(
            "language {name:?} is not offered: use {}",
            Language::choices()
        ))
    })
}

/// Creates a challenge from a request (`POST /v1/challenges` and the phone registration):
/// the reply and whether it was a replay.
pub(crate) async fn create(
    state: &AppState,
    key: &ApiKey,
    headers: &HeaderMap,
    body: &[u8],
    req: CreateRequest,
) -> Result<(Challenge, bool), Problem> {
    let language = check_request(state, key, &req).await?;
    let idempotency_key = idempotency_key(headers)?;
    let request_hash = {
        use sha2::Digest;
        crate::hex(&sha2::Sha256::digest(body))
    };
    // A replay answers as the first time did, whatever the limits say now.
    if let Some(k) = &idempotency_key
        && let Some(found) = state.store.idempotent(&key.id, k, &request_hash).await?
    {
        return Ok((found, true));
    }
    let now = now_ms();
    let (phone, enrol) = phone_to_call(state, &req).await?;
    let remember = req.remember_device || req.trusted_device_token.is_some();
    if remember && (req.purpose != Purpose::SignIn || req.user_id.is_none()) {
        return Err(Problem::unprocessable(
            "remember_device and trusted_device_token are for sign-ins of a user_id",
        ));
    }
    // A valid trusted-device token of this user skips the call.
    let trusted = trusted_device(state, &req, now).await?;
    let policy = &state.cfg.policy;
    let user = req.user_id.clone();
    let origin = store::Origin::Api;
    // Checked and counted in the transaction that makes the challenge. One a trusted device
    // approves makes no call: only a fraud block refuses it.
    let admission = match trusted {
        Some(_) => policy.blocks_only(),
        None => match policy.check_number(&phone) {
            Ok(checked) => policy.admission(&phone, &checked, user.as_deref(), &key.id, true),
            Err(r) => return Err(refused(state, key, origin, user.as_deref(), &phone, r).await),
        },
    };
    // Replacing or adding a phone of a user who has a verified primary one: that phone must
    // approve first, unless the key may administer phones.
    let confirm_primary = match (&enrol, &req.user_id) {
        (Some(_), Some(u)) if !key.phone_admin => state
            .store
            .verified_phone(u, PhoneRole::Primary)
            .await?
            .is_some(),
        _ => false,
    };
    // An enrolment the current phone approves first calls two phones in one challenge: a
    // spoken code (typed after the first call) cannot do that, so a default of spoken_code
    // becomes number matching there, and a request for it is refused.
    let confirmation = match (req.confirmation, confirm_primary) {
        (Some(Confirmation::SpokenCode), true) => {
            return Err(Problem::unprocessable(
                "confirmation spoken_code cannot be used for an enrolment that the user's \
                 current phone must approve first: use keypad_code or pound",
            ));
        }
        (Some(c), _) => c,
        (None, primary) => match key.confirmation.unwrap_or(state.cfg.confirmation) {
            Confirmation::SpokenCode if primary => Confirmation::KeypadCode,
            c => c,
        },
    };
    let now = now_ms();
    let made = state
        .store
        .create_admitted(
            &NewChallenge {
                api_key_id: key.id.clone(),
                idempotency_key,
                request_hash,
                user_id: req.user_id,
                phone: phone.clone(),
                language: language.code().to_string(),
                purpose: req.purpose,
                callback_url: req.callback_url,
                enrol,
                // A trusted device keeps the expiry it has: no new one is made.
                remember_device_ms: if req.remember_device && trusted.is_none() {
                    state.cfg.trusted_device_ttl.as_millis() as i64
                } else {
                    0
                },
                fraud_block_ms: policy.fraud_block.as_millis() as i64,
                confirm_primary,
                origin,
                origin_ref: None,
                confirmation,
                now_ms: now,
                expires_at_ms: now + state.cfg.challenge_ttl.as_millis() as i64,
            },
            &admission,
        )
        .await?;
    let (c, replay) = match made {
        Ok(made) => made,
        Err(r) => {
            let r = policy.refusal(r, &phone, now);
            return Err(refused(state, key, origin, user.as_deref(), &phone, r).await);
        }
    };
    if replay {
        return Ok((c, true));
    }
    after_made(state, c, trusted, now).await
}

/// Checks a request's user (its key's to name), language and callback URL: the language
/// to call in.
async fn check_request(
    state: &AppState,
    key: &ApiKey,
    req: &CreateRequest,
) -> Result<Language, Problem> {
    if let Some(u) = &req.user_id {
        check_user_for(state, key, u)?;
    }
    let language = language_of(state, req.language.as_deref())?;
    if let Some(url) = &req.callback_url {
        state.cfg.webhooks.callbacks.check(url).await.map_err(|r| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "callback-not-allowed",
                "The callback URL is not allowed",
                r.0,
            )
        })?;
    }
    Ok(language)
}

/// The answer to a request the policy refuses (the number's country or type, a rate
/// limit, the cap on concurrent calls, a fraud block), once the refusal is in the operator's
/// log: when, the key, the user, the masked number only, the rule and its Retry-After. At
/// most one row per refused request, and every request is authenticated (its key's); the
/// store adds a repeat within a minute to its row and caps a key at about 100 rows a minute,
/// so refusals in a loop cannot fill the disk faster than that. A store that fails to
/// record it is logged; the refusal is answered all the same.
async fn refused(
    state: &AppState,
    key: &ApiKey,
    origin: store::Origin,
    user: Option<&str>,
    phone: &PhoneNumber,
    r: policy::Refusal,
) -> Problem {
    let record = store::NewRefusal {
        at_ms: now_ms(),
        api_key_id: key.id.clone(),
        origin,
        user_id: user.map(str::to_string),
        phone: phone.clone(),
        rule: r.kind.as_str().to_string(),
        detail: r.detail.clone(),
        retry_after_s: r.retry_after_s,
    };
    if let Err(e) = state.store.record_refusal(&record).await {
        warn!(error = %e, rule = r.kind.as_str(), "a refusal is not in the operator's log");
    }
    r.into()
}

/// A challenge just made (not a replay): approved at once when a trusted device skips its
/// call, otherwise queued and the dispatcher woken to call it.
async fn after_made(
    state: &AppState,
    c: Challenge,
    trusted: Option<TrustedDevice>,
    now: i64,
) -> Result<(Challenge, bool), Problem> {
    metrics::counter!("callverify_challenges_total", "purpose" => c.purpose.as_str()).increment(1);
    if let Some(td) = trusted {
        info!(challenge = %c.id, device = %td.id, "approved by a trusted device, no call");
        state
            .store
            .transition(
                &c.id,
                ChallengeState::Approved,
                now,
                Some("trusted_device"),
                None,
            )
            .await?;
        let c = state.store.challenge(&c.id).await?.unwrap_or(c);
        return Ok((c, false));
    }
    info!(challenge = %c.id, to = %c.phone, purpose = c.purpose.as_str(), "challenge created");
    if let Some(runner) = &state.runner {
        runner.wake();
    }
    Ok((c, false))
}

/// A sign-in call that another front end of the gateway asks for (the EAM provider): the
/// user, the phone it chose among theirs, and where the request came from.
pub(crate) struct SignInCall {
    /// The user (as the store keeps it, e.g. `entra:{tid}:{oid}`).
    pub user_id: String,
    /// The phone to call.
    pub phone: PhoneNumber,
    /// The prompts' language.
    pub language: Language,
    /// A phone not yet verified (found in a directory): registered in this role with the
    /// challenge, and verified when the call is approved.
    pub enrol: Option<PhoneRole>,
    /// The front end.
    pub origin: store::Origin,
    /// What the front end names the request by (EAM: the client-request-id; RADIUS: the
    /// NAS's name and address).
    pub origin_ref: Option<String>,
}

/// Makes a sign-in challenge for another front end, under the same policy, limits and
/// queue as `POST /v1/challenges` (checked and counted in the transaction that makes it).
pub(crate) async fn create_sign_in(
    state: &AppState,
    key: &ApiKey,
    call: SignInCall,
) -> Result<Challenge, Problem> {
    let policy = &state.cfg.policy;
    let (user, origin) = (call.user_id.clone(), call.origin);
    let checked = match policy.check_number(&call.phone) {
        Ok(checked) => checked,
        Err(r) => return Err(refused(state, key, origin, Some(&user), &call.phone, r).await),
    };
    let admission = policy.admission(&call.phone, &checked, Some(&call.user_id), &key.id, true);
    let now = now_ms();
    let made = state
        .store
        .create_admitted(
            &NewChallenge {
                api_key_id: key.id.clone(),
                idempotency_key: None,
                request_hash: String::new(),
                user_id: Some(call.user_id),
                phone: call.phone.clone(),
                language: call.language.code().to_string(),
                purpose: Purpose::SignIn,
                callback_url: None,
                enrol: call.enrol,
                remember_device_ms: 0,
                fraud_block_ms: policy.fraud_block.as_millis() as i64,
                confirm_primary: false,
                now_ms: now,
                expires_at_ms: now + state.cfg.challenge_ttl.as_millis() as i64,
                origin: call.origin,
                origin_ref: call.origin_ref,
                confirmation: key.confirmation.unwrap_or(state.cfg.confirmation),
            },
            &admission,
        )
        .await?;
    let (c, _) = match made {
        Ok(made) => made,
        Err(r) => {
            let r = policy.refusal(r, &call.phone, now);
            return Err(refused(state, key, origin, Some(&user), &call.phone, r).await);
        }
    };
    Ok(after_made(state, c, None, now).await?.0)
}

/// The `Idempotency-Key` header, if given: 1 to 255 visible characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= 255 => Ok(Some(s.to_string())),
            _ => Err(Problem::unprocessable(
                "Idempotency-Key must be 1 to 255 visible characters",
            )),
        },
    }
}

/// The phone a request calls (its number, or the user's verified primary phone), and the
/// role it is enrolled in for an enrolment.
async fn phone_to_call(
    state: &AppState,
    req: &CreateRequest,
) -> Result<(PhoneNumber, Option<PhoneRole>), Problem> {
    let parse = |s: &str| {
        PhoneNumber::parse(s).map_err(|e| Problem::unprocessable(format!("phone_number: {e}")))
    };
    let (phone, enrol) = match (req.purpose, &req.phone_number, &req.user_id) {
        (Purpose::Enroll, Some(p), Some(_)) => (
            parse(p)?,
            Some(req.phone_role.unwrap_or(PhoneRole::Primary)),
        ),
        (Purpose::Enroll, _, _) => {
            return Err(Problem::unprocessable(
                "an enrolment needs phone_number and user_id",
            ));
        }
        (Purpose::SignIn, Some(_), Some(_)) => {
            return Err(Problem::unprocessable(
                "a sign-in takes phone_number or user_id, not both",
            ));
        }
        (Purpose::SignIn, Some(p), None) => (parse(p)?, None),
        (Purpose::SignIn, None, Some(u)) => {
            let role = req.phone_role.unwrap_or(PhoneRole::Primary);
            match state.store.verified_phone(u, role).await? {
                Some(p) => (p.phone, None),
                None if role == PhoneRole::Fallback => {
                    return Err(Problem::new(
                        StatusCode::CONFLICT,
                        "no-verified-phone",
                        "The user has no verified fallback phone",
                        format!(
                            "user {u:?} has no verified fallback phone: register one (purpose \
                             enroll with phone_role fallback, or POST /v1/users/{{user_id}}/phones \
                             with role fallback), or call the primary phone"
                        ),
                    ));
                }
                None => {
                    return Err(Problem::new(
                        StatusCode::CONFLICT,
                        "no-verified-phone",
                        "The user has no verified phone",
                        format!(
                            "user {u:?} must register a phone first (purpose enroll, or \
                             POST /v1/users/{{user_id}}/phones)"
                        ),
                    ));
                }
            }
        }
        (Purpose::SignIn, None, None) => {
            return Err(Problem::unprocessable("give phone_number or user_id"));
        }
    };
    if req.phone_role.is_some() && enrol.is_none() && req.user_id.is_none() {
        return Err(Problem::unprocessable(
            "phone_role is for enrolments and for sign-ins of a user_id, not of a phone_number",
        ));
    }
    Ok((phone, enrol))
}

/// The user's trusted device whose token the request gave, if the token is valid at `now`
/// (one that is not, or not the user's, is logged and the call is made).
async fn trusted_device(
    state: &AppState,
    req: &CreateRequest,
    now: i64,
) -> Result<Option<TrustedDevice>, Problem> {
    let secret = &state.cfg.token_secret;
    let mut trusted = None;
    if let (Some(t), Some(u)) = (&req.trusted_device_token, &req.user_id) {
        match trusted_device_id(secret, t) {
            Some(id) => match state.store.trusted_device(id).await? {
                Some(td) if &td.user_id == u && td.valid_at(now) => trusted = Some(td),
                _ => {
                    info!(user = %user_tag(secret, u), "a trusted-device token was expired, revoked or not the user's: calling");
                }
            },
            None => {
                warn!(user = %user_tag(secret, u), "a trusted-device token with a bad signature: calling");
            }
        }
    }
    Ok(trusted)
}

/// Create a challenge: the gateway calls the number (or the user's verified phone).
#[utoipa::path(
    post,
    path = "/v1/challenges",
    tag = "challenges",
    security(("bearer" = [])),
    request_body = CreateRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key and body give back the same challenge")),
    responses(
        (status = 201, description = "Created; `Location` names it", body = ChallengeView),
        (status = 200, description = "A replay of an earlier request with this Idempotency-Key", body = ChallengeView),
        (status = 400, body = crate::ProblemDoc), (status = 401, body = crate::ProblemDoc),
        (status = 403, description = "An operator key, a country or type of number not allowed, or a fraud block (`blocked_until`)", body = crate::ProblemDoc),
        (status = 409, description = "Idempotency key reused, or the user has no verified phone", body = crate::ProblemDoc),
        (status = 413, description = "Body over 16 KiB"),
        (status = 422, body = crate::ProblemDoc),
        (status = 429, description = "Rate limit or concurrent-call cap; see Retry-After", body = crate::ProblemDoc),
    )
)]
pub(crate) async fn create_challenge(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let key = service(&state, &headers).await?;
    let req: CreateRequest = serde_json::from_slice(&body).map_err(Problem::malformed)?;
    let (c, replay) = create(&state, &key, &headers, &body, req).await?;
    let token = poll_token(&state.cfg.token_secret, &c.id);
    let status = if replay {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = format!("/v1/challenges/{}", c.id);
    let view = ChallengeView::full(&state, &c, Some(token), true).await?;
    Ok((status, [(header::LOCATION, location)], axum::Json(view)).into_response())
}

/// Who may read or cancel a challenge: its poll token (until 10 minutes after the
/// decision), the service key that made it, or an operator key (read only, and never shown
/// a token).
enum Reader {
    PollToken,
    Key(ApiKey),
}

impl Reader {
    /// Whether it may see the challenge's tokens.
    fn sees_tokens(&self) -> bool {
        match self {
            Reader::PollToken => true,
            Reader::Key(k) => k.kind == KeyKind::Service,
        }
    }

    /// The API key's id; `None` for the poll token.
    fn key_id(&self) -> Option<&str> {
        match self {
            Reader::PollToken => None,
            Reader::Key(k) => Some(&k.id),
        }
    }
}

/// Who reads challenge `id` (`None`: a path that is no challenge id, which no poll token is
/// for).
async fn reader(
    state: &AppState,
    id: Option<&ChallengeId>,
    headers: &HeaderMap,
) -> Result<Reader, Problem> {
    if let Some(id) = id
        && bearer(headers).is_some_and(|t| poll_token_matches(&state.cfg.token_secret, id, t))
    {
        return Ok(Reader::PollToken);
    }
    Ok(Reader::Key(
        crate::api_key(state, headers)
            .await?
            .ok_or_else(Problem::unauthorized)?,
    ))
}

async fn readable(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
) -> Result<(Reader, Challenge), Problem> {
    // A path that is no challenge id is answered as an unknown challenge is, at the same
    // point (after the credentials), so that the answer tells nothing more.
    let parsed = ChallengeId::parse(id);
    let who = reader(state, parsed.as_ref(), headers).await?;
    let found = match &parsed {
        Some(id) => state.store.challenge(id).await?,
        None => None,
    };
    let c = found.ok_or_else(|| Problem::not_found("challenge", id))?;
    if let Reader::Key(k) = &who
        && k.kind == KeyKind::Service
        && k.id != c.api_key_id
    {
        return Err(Problem::not_found("challenge", id));
    }
    if let Reader::PollToken = who
        && c.decided_at_ms
            .is_some_and(|d| now_ms() - d > POLL_TOKEN_AFTER_DECISION_MS)
    {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "poll-token-expired",
            "The poll token has expired",
            "a poll token stops working 10 minutes after its challenge is decided",
        ));
    }
    Ok((who, c))
}

/// Waits until challenge `id` leaves state `seen` (announced by this process's store, or
/// seen by reading it again each second for changes made by other nodes) or `deadline`.
/// With `key`, the API key it was opened with: checked again every [`KEY_RECHECK`], a 401
/// once it is revoked (by this node or another).
async fn next_change(
    state: &AppState,
    rx: &mut tokio::sync::broadcast::Receiver<store::Change>,
    id: &ChallengeId,
    seen: ChallengeState,
    deadline: tokio::time::Instant,
    key: Option<&str>,
) -> Result<Option<Challenge>, Problem> {
    let mut key_checked = tokio::time::Instant::now();
    loop {
        let tick = tokio::time::Instant::now() + Duration::from_secs(1);
        let wake = tick.min(deadline);
        let announced = tokio::select! {
            r = rx.recv() => match r {
                Ok(ch) => ch.id == *id,
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => {
                    tokio::time::sleep_until(wake).await;
                    true
                }
            },
            () = tokio::time::sleep_until(wake) => true,
        };
        if let Some(k) = key
            && key_checked.elapsed() >= KEY_RECHECK
        {
            key_checked = tokio::time::Instant::now();
            if !state.store.api_key_live(k).await? {
                return Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "api-key-revoked",
                    "The API key was revoked",
                    "the key this was opened with is revoked",
                ));
            }
        }
        if announced {
            match state.store.challenge(id).await? {
                Some(c) if c.state != seen => return Ok(Some(c)),
                None => return Ok(None),
                Some(_) => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
    }
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct WaitQuery {
    /// Long poll: answer when the state changes or after this many seconds (at most 25).
    wait: Option<u64>,
    /// With `wait`: the state the client last saw. The answer comes at once when the
    /// challenge is in another state already, so that a change between two polls is not
    /// waited past.
    since: Option<String>,
}

/// Read a challenge (API key or its poll token), optionally waiting for a change.
#[utoipa::path(
    get,
    path = "/v1/challenges/{id}",
    tag = "challenges",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the challenge"), WaitQuery),
    responses(
        (status = 200, body = ChallengeView),
        (status = 401, description = "No or unknown credentials, a poll token 10 minutes after the decision, or (api-key-revoked) the API key of a long poll revoked while it waited", body = crate::ProblemDoc),
        (status = 404, body = crate::ProblemDoc),
        (status = 429, description = "A long poll beyond the credential's cap; see Retry-After", body = crate::ProblemDoc),
    )
)]
pub(crate) async fn get_challenge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (who, mut c) = readable(&state, &id, &headers).await?;
    let id = c.id.clone();
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(state.cfg.max_wait);
    let since = match q.since.as_deref() {
        None => None,
        Some(s) => Some(ChallengeState::from_name(s).ok_or_else(|| {
            Problem::unprocessable(format!("since {s:?} is not a challenge state"))
        })?),
    };
    // Plain polls (the common case) do not subscribe; a long poll subscribes, then reads
    // again so that a change between the two reads is not missed.
    if !wait.is_zero() && !c.state.is_terminal() && since.is_none_or(|s| s == c.state) {
        let _slot = state.cfg.streams.admit(&id, who.key_id())?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = state.store.subscribe();
        let seen = c.state;
        if let Some(now) = state.store.challenge(&id).await? {
            c = now;
        }
        if c.state == seen
            && let Some(now) =
                next_change(&state, &mut rx, &id, seen, deadline, who.key_id()).await?
        {
            c = now;
        }
    }
    let view = ChallengeView::full(&state, &c, None, who.sees_tokens()).await?;
    Ok(axum::Json(view).into_response())
}

/// Follow a challenge as server-sent events: one `state` event now and one at each
/// change; the stream ends after the decision, or within 5 s of the revocation of the API
/// key it was opened with.
#[utoipa::path(
    get,
    path = "/v1/challenges/{id}/events",
    tag = "challenges",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the challenge")),
    responses(
        (status = 200, description = "text/event-stream of `state` events, each a ChallengeView", content_type = "text/event-stream", body = String),
        (status = 401, body = crate::ProblemDoc),
        (status = 404, body = crate::ProblemDoc),
        (status = 429, description = "Beyond the credential's cap on streams; see Retry-After", body = crate::ProblemDoc),
    )
)]
pub(crate) async fn challenge_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let rx = state.store.subscribe();
    let (who, c) = readable(&state, &id, &headers).await?;
    let id = c.id.clone();
    let tokens = who.sees_tokens();
    let key = who.key_id().map(str::to_string);
    // Held by the stream: given back when it ends or the client goes.
    let slot = state.cfg.streams.admit(&id, who.key_id())?;
    // Bounded: a challenge is decided by its expiry plus the longest call; the stream ends
    // then at the latest.
    let end = tokio::time::Instant::now() + state.cfg.challenge_ttl + Duration::from_secs(600);
    let stream = futures_util::stream::unfold(
        (Step::Show(Box::new(c)), rx, state, id, end, slot, key),
        move |(step, mut rx, state, id, end, slot, key)| async move {
            let c = match step {
                Step::Done => return None,
                Step::Show(c) => *c,
                Step::Wait(seen) => next_change(&state, &mut rx, &id, seen, end, key.as_deref())
                    .await
                    .ok()
                    .flatten()?,
            };
            let event = match ChallengeView::full(&state, &c, None, tokens).await {
                Ok(v) => Event::default()
                    .event("state")
                    .id(format!("{}", c.updated_at_ms))
                    .json_data(v)
                    .unwrap_or_else(|_| Event::default().event("error")),
                Err(_) => Event::default().event("error").data("store unavailable"),
            };
            let step = if c.state.is_terminal() {
                Step::Done
            } else {
                Step::Wait(c.state)
            };
            Some((Ok(event), (step, rx, state, id, end, slot, key)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What an event stream does next.
enum Step {
    /// Sends this state (the current one at the start).
    Show(Box<Challenge>),
    /// Waits for a change from this state.
    Wait(ChallengeState),
    /// Ends (the challenge is decided).
    Done,
}

/// Cancel a challenge (its service key or poll token): it is decided `canceled` at once and
/// its call, if any, hangs up.
#[utoipa::path(
    delete,
    path = "/v1/challenges/{id}",
    tag = "challenges",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the challenge")),
    responses(
        (status = 200, description = "Canceled", body = ChallengeView),
        (status = 401, body = crate::ProblemDoc),
        (status = 403, description = "An operator key", body = crate::ProblemDoc),
        (status = 404, body = crate::ProblemDoc),
        (status = 409, description = "Already decided", body = crate::ProblemDoc),
    )
)]
pub(crate) async fn cancel_challenge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (who, c) = readable(&state, &id, &headers).await?;
    let id = c.id.clone();
    if let Reader::Key(k) = &who
        && k.kind != KeyKind::Service
    {
        return Err(Problem::forbidden(
            "Operator keys cannot cancel",
            "cancel with the service key or the poll token",
        ));
    }
    let moved = !c.state.is_terminal()
        && state
            .store
            .transition(
                &id,
                ChallengeState::Canceled,
                now_ms(),
                Some("canceled through the API"),
                None,
            )
            .await?;
    let c = state
        .store
        .challenge(&id)
        .await?
        .ok_or_else(|| Problem::not_found("challenge", id.as_str()))?;
    if !moved {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "already-decided",
            "The challenge is already decided",
            format!("challenge {id} is {}", c.state),
        ));
    }
    if let Some(r) = &state.runner
        && r.cancel(&id)
    {
        info!(challenge = %id, "canceled: hanging up");
    }
    Ok(axum::Json(ChallengeView::full(&state, &c, None, true).await?).into_response())
}

/// A spoken code typed on the sign-in page.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckRequest {
    /// The six digits the call read.
    #[schema(example = "314159")]
    pub code: String,
}

/// Checks a code typed for spoken-code challenge `c` by `who`: the approved challenge, or
/// the problem to answer (a wrong code, with the attempts left; not waiting for a code).
pub(crate) async fn check(
    state: &AppState,
    c: &Challenge,
    code: &str,
) -> Result<Challenge, Problem> {
    if c.confirmation != Confirmation::SpokenCode {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "no-spoken-code",
            "The challenge has no spoken code",
            format!("challenge {} is confirmed by {}", c.id, c.confirmation),
        ));
    }
    // Six ASCII digits; anything else is no attempt (and says nothing of the code).
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::unprocessable(
            "code must be the 6 digits the call read",
        ));
    }
    let checked = state
        .store
        .check_code(&c.id, &state.cfg.token_secret, code, now_ms())
        .await?;
    match checked {
        CodeCheck::Matched(c) => {
            info!(challenge = %c.id, "the spoken code matched: approved");
            Ok(*c)
        }
        CodeCheck::Wrong { attempts_left } => {
            info!(challenge = %c.id, attempts_left, "a wrong spoken code");
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "wrong-code",
                "The code is not the one the call read",
                if attempts_left > 0 {
                    format!("{attempts_left} attempts left")
                } else {
                    "no attempts left: the challenge is denied".to_string()
                },
            );
            p.extra = Some(Box::new(("attempts_left", attempts_left.into())));
            Err(p)
        }
        CodeCheck::Exhausted => {
            let mut p = Problem::new(
                StatusCode::CONFLICT,
                "no-attempts-left",
                "No attempts are left",
                "the code was typed wrong 5 times: the challenge is denied",
            );
            p.extra = Some(Box::new(("attempts_left", 0.into())));
            Err(p)
        }
        CodeCheck::NotWaiting(s) => Err(Problem::new(
            StatusCode::CONFLICT,
            "not-awaiting-code",
            "The challenge is not waiting for a code",
            match s {
                ChallengeState::CodeSpoken => "the challenge has expired".to_string(),
                s if s.is_terminal() => format!("challenge {} is {s}", c.id),
                s => format!(
                    "the call has not read the code yet (challenge {} is {s})",
                    c.id
                ),
            },
        )),
        CodeCheck::Unknown => Err(Problem::not_found("challenge", c.id.as_str())),
    }
}

/// Check a spoken code (its service key or poll token): the code the call read, typed by
/// the person on the sign-in page. At most 5 attempts; the right code approves.
#[utoipa::path(
    post,
    path = "/v1/challenges/{id}/check",
    tag = "challenges",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the challenge")),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "The right code: approved", body = ChallengeView),
        (status = 400, body = crate::ProblemDoc),
        (status = 401, body = crate::ProblemDoc),
        (status = 403, description = "An operator key", body = crate::ProblemDoc),
        (status = 404, body = crate::ProblemDoc),
        (status = 409, description = "Not a spoken-code challenge, its code not read yet, decided, expired, or no attempts left", body = crate::ProblemDoc),
        (status = 422, description = "A wrong code (`attempts_left`), or not 6 digits", body = crate::ProblemDoc),
    )
)]
pub(crate) async fn check_code(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let (who, c) = readable(&state, &id, &headers).await?;
    if let Reader::Key(k) = &who
        && k.kind != KeyKind::Service
    {
        return Err(Problem::forbidden(
            "Operator keys cannot check codes",
            "check with the service key or the poll token",
        ));
    }
    let req: CheckRequest = serde_json::from_slice(&body).map_err(Problem::malformed)?;
    let c = check(&state, &c, &req.code).await?;
    Ok(axum::Json(ChallengeView::full(&state, &c, None, true).await?).into_response())
}
