//! One EAM sign-in: Entra's request checked, the user's phone called, the answer posted back.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use eam::hint::{Hint, HintError};
use eam::request::{AuthRequest, Refusal};
use media::Language;
use store::{
    Challenge, ChallengeId, ChallengeState, EamSession, NewEamSession, Origin, PhoneNumber,
    PhoneRole,
};
use tracing::{info, warn};

use super::page::{self, CallPage};
use super::{Provider, off, provider};
use crate::challenges::{SignInCall, create_sign_in};
use crate::{AppState, now_ms, poll_token, user_tag};

/// The client-request-id as logged: a GUID's characters only, at most 64 of them.
fn request_id(r: Option<&str>) -> String {
    r.unwrap_or("-")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `GET|POST {issuer}/eam/authorize`: Entra's authorization request.
pub(crate) async fn authorize(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Some(p) = provider(&state).cloned() else {
        return off();
    };
    let raw: &[u8] = if method == Method::POST {
        &body
    } else {
        query.as_deref().unwrap_or_default().as_bytes()
    };
    let pairs = url::form_urlencoded::parse(raw).map(|(k, v)| (k.into_owned(), v.into_owned()));
    let accept = header_str(&headers, header::ACCEPT_LANGUAGE);
    let req = match AuthRequest::from_pairs(pairs) {
        Ok(r) => r,
        Err(refusal) => {
            let lang = page::language(None, accept);
            return refuse(lang, None, "-", refusal);
        }
    };
    let lang = page::language(req.ui_locales.as_deref(), accept);
    let crid = request_id(req.client_request_id.as_deref());
    match admit(&state, &p, &req, &crid, lang).await {
        Ok(r) => r,
        Err(refusal) => refuse(lang, Some(&req), &crid, refusal),
    }
}

/// Answers a refused request: an error page with no redirect for a request whose client or
/// redirect URI is not known, else the OAuth error posted back to Entra with the state.
fn refuse(lang: Language, req: Option<&AuthRequest>, crid: &str, refusal: Refusal) -> Response {
    match (refusal, req) {
        (Refusal::Redirect { error, description }, Some(req)) => {
            warn!(client_request_id = %crid, error, reason = %description, "EAM request refused");
            let mut fields = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &req.state {
                fields.push(("state", s));
            }
            let t = page::texts(lang);
            page::post_back(lang, &req.redirect_uri, &fields, t.returning, None)
        }
        (
            Refusal::NoRedirect(why)
            | Refusal::Redirect {
                description: why, ..
            },
            _,
        ) => {
            warn!(client_request_id = %crid, reason = %why, "EAM request refused, not redirected");
            page::dead_end(
                lang,
                StatusCode::BAD_REQUEST,
                page::texts(lang).invalid_title,
            )
        }
    }
}

fn redirect(error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal::Redirect {
        error,
        description: description.into(),
    }
}

/// The request checked, the user's phone called: the page of the call.
async fn admit(
    state: &AppState,
    p: &Provider,
    req: &AuthRequest,
    crid: &str,
    lang: Language,
) -> Result<Response, Refusal> {
    req.check(&p.settings)?;
    let acr = req.acr()?;
    let hint = hint(p, req, crid).await?;
    let now = now_ms();
    let expires = (hint.iat + p.settings.hint_max_age.as_secs() as i64) * 1000;
    // Only a request with a genuine hint gets this far, so only Entra fills the replay
    // store; it keeps each nonce until its hint is too old to be accepted anyway.
    let fresh = state
        .store
        .use_eam_nonce(&req.nonce, now, expires + 60_000)
        .await
        .map_err(|e| store_down(&e))?;
    if !fresh {
        return Err(redirect(
            "access_denied",
            "this request was already used (its nonce was seen before)",
        ));
    }
    let user_id = p.settings.user_id(&hint);
    let secret = &state.cfg.token_secret;
    let phones = phones_of(state, p, &hint, &user_id).await?;
    let Some((phone, phone_lang, enrol)) = phones.first().cloned() else {
        info!(client_request_id = %crid, user = %user_tag(secret, &user_id), "EAM sign-in of a user with no phone");
        let fields = answer_fields(
            "access_denied",
            "the user has no phone registered for verification",
            req.state.as_deref(),
        );
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        return Ok(page::no_phone(
            lang,
            p.help.as_deref(),
            &req.redirect_uri,
            &fields,
        ));
    };
    let (session, session_secret) = state
        .store
        .create_eam_session(&NewEamSession {
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
            nonce: req.nonce.clone(),
            sub: hint.sub.clone(),
            tid: hint.tid.clone(),
            oid: hint.oid.clone(),
            acr: acr.to_string(),
            user_id: user_id.clone(),
            client_request_id: req.client_request_id.as_deref().map(|_| crid.to_string()),
            language: lang.code().to_string(),
            now_ms: now,
            expires_at_ms: expires,
        })
        .await
        .map_err(|e| store_down(&e))?;
    info!(client_request_id = %crid, user = %user_tag(secret, &user_id), session = %session.id, "EAM sign-in: calling");
    let call = SignInCall {
        user_id,
        phone,
        language: phone_lang.unwrap_or(lang),
        enrol,
        origin: Origin::Eam,
        origin_ref: session.client_request_id.clone(),
    };
    let other = other_phone(state, &session, &call.phone).await.is_some();
    Ok(call_and_show(state, p, &session, &session_secret, None, call, other).await)
}

fn store_down(e: &store::StoreError) -> Refusal {
    tracing::error!(error = %e, "store failure during an EAM request");
    redirect(
        "temporarily_unavailable",
        "the gateway's store is unavailable",
    )
}

/// The language of a sign-in's pages.
fn lang_of(session: &EamSession) -> Language {
    Language::from_code(&session.language).unwrap_or(Language::En)
}

/// The page for a store that failed during a sign-in's request (logged).
fn store_failed(lang: Language, e: &store::StoreError) -> Response {
    tracing::error!(error = %e, "store failure during an EAM request");
    page::dead_end(
        lang,
        StatusCode::SERVICE_UNAVAILABLE,
        page::texts(lang).unavailable,
    )
}

/// The hint validated against Entra's keys, fetched again once if it names a key the cache
/// does not hold.
async fn hint(p: &Provider, req: &AuthRequest, crid: &str) -> Result<Hint, Refusal> {
    let now_s = now_ms() / 1000;
    let unavailable = |e: &dyn std::fmt::Display| {
        warn!(client_request_id = %crid, error = %e, "Entra's keys cannot be fetched");
        redirect(
            "temporarily_unavailable",
            "the provider cannot reach Entra's keys",
        )
    };
    let mut meta = p.entra.current().await.map_err(|e| unavailable(&e))?;
    for attempt in 0..2 {
        let keys = eam::jose::parse_jwks(&meta.jwks);
        match eam::hint::validate(
            &req.id_token_hint,
            &keys,
            &meta.issuer,
            &p.settings,
            &req.client_id,
            now_s,
        ) {
            Ok(h) => return Ok(h),
            Err(HintError::UnknownKey(_)) if attempt == 0 => {
                meta = p.entra.refresh().await.map_err(|e| unavailable(&e))?;
            }
            Err(e) => {
                return Err(redirect(
                    "access_denied",
                    format!("the id_token_hint is not valid: {e}"),
                ));
            }
        }
    }
    Err(redirect(
        "access_denied",
        "the id_token_hint is signed by a key Entra does not publish",
    ))
}

/// A phone to call: its number, its registered language, and, for a phone found in
/// Microsoft Graph only, the role it is verified in once a call to it is approved.
type ToCall = (PhoneNumber, Option<Language>, Option<PhoneRole>);

/// The user's phones in the order they are offered: the verified primary, the verified
/// fallback; with neither, the phones Microsoft Graph has for the user (mobile first).
async fn phones_of(
    state: &AppState,
    p: &Provider,
    hint: &Hint,
    user_id: &str,
) -> Result<Vec<ToCall>, Refusal> {
    let mut out = Vec::new();
    for role in [PhoneRole::Primary, PhoneRole::Fallback] {
        if let Some(ph) = state
            .store
            .verified_phone(user_id, role)
            .await
            .map_err(|e| store_down(&e))?
        {
            out.push((ph.phone, Language::from_code(&ph.language), None));
        }
    }
    if !out.is_empty() {
        return Ok(out);
    }
    let Some(graph) = &p.graph else {
        return Ok(out);
    };
    match graph.phones(&hint.tid, &hint.oid).await {
        Ok(found) => {
            let mut found = found;
            found.sort_by_key(|g| g.phone_type != graph::GraphPhoneType::Mobile);
            // The first number that parses, registered as the primary phone (and verified
            // only once its call is approved).
            if let Some(n) = found
                .into_iter()
                .find_map(|g| PhoneNumber::parse(&g.number).ok())
            {
                out.push((n, None, Some(PhoneRole::Primary)));
            }
        }
        Err(e) => warn!(error = %e, "Microsoft Graph did not answer for an EAM user"),
    }
    Ok(out)
}

use super::graph;

/// Makes the challenge that calls, records it in the session, and answers its page (or the
/// page with what stopped the call, e.g. a rate limit).
async fn call_and_show(
    state: &AppState,
    p: &Provider,
    session: &EamSession,
    secret: &str,
    replacing: Option<&ChallengeId>,
    call: SignInCall,
    other_phone: bool,
) -> Response {
    let lang = lang_of(session);
    let masked = call.phone.masked();
    match create_sign_in(state, &p.key, call).await {
        Ok(c) => {
            match state
                .store
                .set_eam_session_challenge(&session.id, replacing, &c.id)
                .await
            {
                Ok(true) => show(state, p, session, secret, &c, other_phone, None),
                // Another request of this sign-in placed its call first (two clicks at
                // once), or the sign-in was answered meanwhile: this call is not placed.
                Ok(false) => {
                    cancel(state, &c).await;
                    info!(session = %session.id, "EAM sign-in: a second call at once was not placed");
                    shown_again(state, p, session, secret, other_phone).await
                }
                Err(e) => store_failed(lang, &e),
            }
        }
        Err(problem) => {
            let t = page::texts(lang);
            let why = match problem.status {
                StatusCode::TOO_MANY_REQUESTS => t.not_now,
                StatusCode::FORBIDDEN | StatusCode::UNPROCESSABLE_ENTITY => t.not_allowed,
                _ => t.unavailable,
            };
            info!(session = %session.id, problem = problem.kind, "EAM sign-in: the call was not placed");
            page::call_page(&CallPage {
                lang,
                prefix: &p.prefix,
                session: &session.id,
                secret,
                challenge: "-",
                poll_token: "",
                phone: &masked,
                state: "failed",
                other_phone,
                problem: Some(why),
                confirmation: "pound",
                display_code: None,
            })
        }
    }
}

/// The page of the session's call as it is now (read again from the store).
async fn shown_again(
    state: &AppState,
    p: &Provider,
    session: &EamSession,
    secret: &str,
    other_phone: bool,
) -> Response {
    let lang = lang_of(session);
    match state.store.eam_session(&session.id, secret, now_ms()).await {
        Ok(Some(now)) if now.finished_at_ms.is_none() => match current(state, &now).await {
            Ok(Some(c)) => show(state, p, &now, secret, &c, other_phone, None),
            Ok(None) => page::dead_end(lang, StatusCode::CONFLICT, page::texts(lang).expired_title),
            Err(r) => r,
        },
        _ => page::dead_end(lang, StatusCode::CONFLICT, page::texts(lang).expired_title),
    }
}

fn show(
    state: &AppState,
    p: &Provider,
    session: &EamSession,
    secret: &str,
    c: &Challenge,
    other_phone: bool,
    problem: Option<&str>,
) -> Response {
    let lang = lang_of(session);
    page::call_page(&CallPage {
        lang,
        prefix: &p.prefix,
        session: &session.id,
        secret,
        challenge: c.id.as_str(),
        poll_token: &poll_token(&state.cfg.token_secret, &c.id),
        phone: &c.phone.masked(),
        state: c.state.as_str(),
        other_phone,
        problem,
        confirmation: c.confirmation.as_str(),
        display_code: c.display_code.as_deref(),
    })
}

/// The form fields of an OAuth error answer.
fn answer_fields(
    error: &str,
    description: &str,
    state: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("error", error.to_string()),
        ("error_description", description.to_string()),
    ];
    if let Some(s) = state {
        f.push(("state", s.to_string()));
    }
    f
}

/// The page's form fields: the session and its secret, and an action.
struct PageForm {
    session: String,
    secret: String,
    action: Option<String>,
}

fn page_form(body: &[u8]) -> Option<PageForm> {
    let (mut session, mut secret, mut action) = (None, None, None);
    for (k, v) in url::form_urlencoded::parse(body).take(8) {
        let slot = match k.as_ref() {
            "session" => &mut session,
            "secret" => &mut secret,
            "action" => &mut action,
            _ => continue,
        };
        if slot.is_some() || v.len() > 256 {
            return None;
        }
        *slot = Some(v.into_owned());
    }
    Some(PageForm {
        session: session?,
        secret: secret?,
        action,
    })
}

/// The session a page's form names, if its secret is right and it has not expired.
async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(PageForm, EamSession), Response> {
    let lang = page::language(None, header_str(headers, header::ACCEPT_LANGUAGE));
    let gone = || {
        page::dead_end(
            lang,
            StatusCode::BAD_REQUEST,
            page::texts(lang).expired_title,
        )
    };
    let form = page_form(body).ok_or_else(gone)?;
    match state
        .store
        .eam_session(&form.session, &form.secret, now_ms())
        .await
    {
        // Answered already: nothing more happens in this sign-in (no call, no answer).
        Ok(Some(s)) if s.finished_at_ms.is_some() => Err(page::dead_end(
            lang,
            StatusCode::CONFLICT,
            page::texts(lang).expired_title,
        )),
        Ok(Some(s)) => Ok((form, s)),
        Ok(None) => Err(gone()),
        Err(e) => Err(store_failed(lang, &e)),
    }
}

/// `POST {issuer}/eam/finish`: the answer to Entra, once the call is decided. An approved
/// call's id_token is released once; any other end posts an OAuth error.
pub(crate) async fn finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, form, session, c) = match page_request(&state, &headers, &body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match c.as_ref().map(|c| c.state) {
        Some(s) if !s.is_terminal() => {
            let c = c.expect("a state comes from a challenge");
            let other = other_phone(&state, &session, &c.phone).await.is_some();
            show(&state, &p, &session, &form.secret, &c, other, None)
        }
        Some(ChallengeState::Approved) => release(&state, &p, &session, c.as_ref()).await,
        _ => end(&state, &session, c.as_ref(), None).await,
    }
}

/// What a page's form brings (the finish form and the buttons): the provider, the form,
/// its session (if its secret is right, and not expired or answered) and the session's
/// current challenge.
async fn page_request(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<
    (
        std::sync::Arc<Provider>,
        PageForm,
        EamSession,
        Option<Challenge>,
    ),
    Response,
> {
    let p = provider(state).cloned().ok_or_else(off)?;
    let (form, session) = session_of(state, headers, body).await?;
    let c = current(state, &session).await?;
    Ok((p, form, session, c))
}

/// The session's current challenge (none: its call could not be placed).
async fn current(state: &AppState, session: &EamSession) -> Result<Option<Challenge>, Response> {
    let Some(id) = &session.challenge_id else {
        return Ok(None);
    };
    state
        .store
        .challenge(id)
        .await
        .map_err(|e| store_failed(lang_of(session), &e))
}

/// Marks the session answered; false (and a page that says so) when it already was.
async fn answered_once(state: &AppState, session: &EamSession) -> Result<(), Response> {
    let lang = lang_of(session);
    match state.store.finish_eam_session(&session.id, now_ms()).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(page::dead_end(
            lang,
            StatusCode::CONFLICT,
            page::texts(lang).expired_title,
        )),
        Err(e) => Err(store_failed(lang, &e)),
    }
}

/// The approved sign-in's id_token, posted to Entra (once).
async fn release(
    state: &AppState,
    p: &Provider,
    session: &EamSession,
    c: Option<&Challenge>,
) -> Response {
    let lang = lang_of(session);
    let unavailable = || {
        page::dead_end(
            lang,
            StatusCode::SERVICE_UNAVAILABLE,
            page::texts(lang).unavailable,
        )
    };
    let now = now_ms();
    let signer = match p.keys.load().await {
        Ok(ring) => ring.signer(now).map(eam::keys::Signer::new),
        Err(e) => {
            tracing::error!(error = %e, "EAM keys cannot be read");
            return unavailable();
        }
    };
    let Some(Ok(signer)) = signer else {
        tracing::error!("no EAM key signs now");
        return unavailable();
    };
    let hint = Hint {
        tid: session.tid.clone(),
        oid: session.oid.clone(),
        sub: session.sub.clone(),
        preferred_username: None,
        name: None,
        iat: 0,
    };
    let token = match eam::token::id_token(
        &signer,
        &p.settings,
        &session.client_id,
        &hint,
        &session.nonce,
        &session.acr,
        now / 1000,
    ) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "an EAM id_token could not be signed");
            return unavailable();
        }
    };
    // Signed first, then released once: a token that could not be signed leaves the
    // sign-in as it was.
    if let Err(r) = answered_once(state, session).await {
        return r;
    }
    info!(
        session = %session.id,
        challenge = %c.map_or("-", |c| c.id.as_str()),
        client_request_id = %session.client_request_id.as_deref().unwrap_or("-"),
        kid = %signer.kid(),
        "EAM sign-in approved: id_token released"
    );
    let mut fields = vec![("id_token", token.as_str())];
    if let Some(s) = &session.state {
        fields.push(("state", s));
    }
    page::post_back(
        lang,
        &session.redirect_uri,
        &fields,
        page::texts(lang).signing_in,
        None,
    )
}

/// An OAuth error posted to Entra for a sign-in that ended without approval.
async fn end(
    state: &AppState,
    session: &EamSession,
    c: Option<&Challenge>,
    why: Option<&str>,
) -> Response {
    if let Err(r) = answered_once(state, session).await {
        return r;
    }
    let lang = lang_of(session);
    let unreachable = c.is_some_and(|c| {
        c.state == ChallengeState::Failed
            && c.reason
                .as_deref()
                .is_some_and(|r| r.contains("no trunk could be reached"))
    });
    let error = if unreachable {
        "temporarily_unavailable"
    } else {
        "access_denied"
    };
    let description = match (why, c) {
        (Some(w), _) => w.to_string(),
        (None, Some(c)) => format!("the verification call ended: {}", c.state),
        (None, None) => "the verification call could not be placed".to_string(),
    };
    info!(session = %session.id, error, reason = %description, "EAM sign-in not approved");
    let fields = answer_fields(error, &description, session.state.as_deref());
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    page::post_back(
        lang,
        &session.redirect_uri,
        &fields,
        page::texts(lang).returning,
        None,
    )
}

/// The user's verified phone that is not `calling` (the other role's), if any.
async fn other_phone(
    state: &AppState,
    session: &EamSession,
    calling: &PhoneNumber,
) -> Option<PhoneNumber> {
    for role in [PhoneRole::Primary, PhoneRole::Fallback] {
        if let Ok(Some(ph)) = state.store.verified_phone(&session.user_id, role).await
            && &ph.phone != calling
        {
            return Some(ph.phone);
        }
    }
    None
}

/// Whether a sign-in may call again after its call ended so: after a failure (the user
/// did not answer, or the call did not get through), never after the user or callverify
/// said no (declined, denied, fraud reported, canceled), so that "no" ends the sign-in.
fn may_call_again(s: ChallengeState) -> bool {
    matches!(
        s,
        ChallengeState::NoAnswer
            | ChallengeState::Busy
            | ChallengeState::Voicemail
            | ChallengeState::NoInput
            | ChallengeState::HungUp
            | ChallengeState::Failed
            | ChallengeState::Expired
            | ChallengeState::Interrupted
    )
}

/// `POST {issuer}/eam/action`: the page's buttons. `again` calls the same phone once the
/// last call failed, `other` the user's other phone (hanging up a call in progress),
/// `cancel` ends the sign-in (the call, if any, hangs up) and tells Entra. A sign-in whose
/// call was approved is answered; one the user said no to ends.
pub(crate) async fn action(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, form, session, mut c) = match page_request(&state, &headers, &body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let lang = lang_of(&session);
    let action = form.action.as_deref();
    if action == Some("cancel") {
        if let Some(now) = c.as_ref().filter(|c| !c.state.is_terminal()) {
            cancel(&state, now).await;
        }
        let c = current(&state, &session).await.ok().flatten();
        return match c.as_ref().map(|c| c.state) {
            // Approved just before the cancel arrived: the approval stands.
            Some(ChallengeState::Approved) => release(&state, &p, &session, c.as_ref()).await,
            _ => {
                end(
                    &state,
                    &session,
                    c.as_ref(),
                    Some("the user canceled the sign-in"),
                )
                .await
            }
        };
    }
    if !matches!(action, Some("again" | "other")) {
        return page::dead_end(
            lang,
            StatusCode::BAD_REQUEST,
            page::texts(lang).invalid_title,
        );
    }
    let last = match &c {
        Some(c) => Some(c.phone.clone()),
        None => first_phone(&state, &session).await,
    };
    let Some(last) = last else {
        return end(&state, &session, None, None).await;
    };
    let other = other_phone(&state, &session, &last).await;
    // "Call my other phone" during a call hangs it up first.
    if action == Some("other")
        && other.is_some()
        && let Some(now) = c.as_ref().filter(|c| !c.state.is_terminal())
    {
        cancel(&state, now).await;
        c = current(&state, &session).await.ok().flatten();
    }
    match c.as_ref().map(|c| c.state) {
        Some(ChallengeState::Approved) => return release(&state, &p, &session, c.as_ref()).await,
        Some(s) if !s.is_terminal() => {
            let now = c.as_ref().expect("a state comes from a challenge");
            return show(
                &state,
                &p,
                &session,
                &form.secret,
                now,
                other.is_some(),
                None,
            );
        }
        Some(s) if !may_call_again(s) => return end(&state, &session, c.as_ref(), None).await,
        _ => {}
    }
    let phone = match (action, other) {
        (Some("other"), Some(o)) => o,
        _ => last,
    };
    let call = SignInCall {
        user_id: session.user_id.clone(),
        phone: phone.clone(),
        language: lang,
        enrol: None,
        origin: Origin::Eam,
        origin_ref: session.client_request_id.clone(),
    };
    let has_other = other_phone(&state, &session, &phone).await.is_some();
    let replacing = c.as_ref().map(|c| c.id.clone());
    call_and_show(
        &state,
        &p,
        &session,
        &form.secret,
        replacing.as_ref(),
        call,
        has_other,
    )
    .await
}

/// The user's first verified phone (primary, else fallback), for a sign-in whose first call
/// was never placed.
async fn first_phone(state: &AppState, session: &EamSession) -> Option<PhoneNumber> {
    for role in [PhoneRole::Primary, PhoneRole::Fallback] {
        if let Ok(Some(p)) = state.store.verified_phone(&session.user_id, role).await {
            return Some(p.phone);
        }
    }
    None
}

/// Cancels a pending challenge and hangs up its call (a challenge decided meanwhile keeps
/// its decision).
async fn cancel(state: &AppState, c: &Challenge) {
    let moved = state
        .store
        .transition(
            &c.id,
            ChallengeState::Canceled,
            now_ms(),
            Some("canceled on the EAM page"),
            None,
        )
        .await
        .unwrap_or(false);
    if moved && let Some(r) = &state.runner {
        r.cancel(&c.id);
    }
}
