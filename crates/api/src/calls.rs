//! The operator's call log: calls with filters and cursor pagination, and one call with its
//! keys, RTP figures and the challenge's timeline; the log that merges the calls with the
//! challenges that made no call (a trusted device's sign-in) and the refused attempts; and
//! the figures (success rate, time to verdict) of a filter over a bounded window.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use store::{OutcomeFilter, StoreError};
use utoipa::{IntoParams, ToSchema};

use crate::{AppState, Problem, operator, rfc3339};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallsQuery {
    /// An outcome (`approved`, `no_answer`, …) or `in_progress`.
    outcome: Option<String>,
    /// Started at or after, ms since the epoch.
    from: Option<i64>,
    /// Started before, ms since the epoch.
    to: Option<i64>,
    /// The masked number (`+81 ** **** **78`).
    phone: Option<String>,
    /// The trunk's name.
    trunk: Option<String>,
    /// Where the challenges came from: `api`, `eam` or `radius`.
    origin: Option<String>,
    /// The user (as the challenges name it: `alice@example.com`, `demo:alice`, …).
    user_id: Option<String>,
    /// A whole number (E.164), matched on the stored number and shown masked only: the
    /// calls to it (of challenges of it or of a user who registered it), the challenges of
    /// it, and the refusals of its masked form (a refusal keeps no more).
    number: Option<String>,
    /// A challenge (`ch_…`).
    challenge_id: Option<String>,
    /// A call (`call_…`).
    call_id: Option<String>,
    /// `GET /v1/log` only: `call`, `challenge` (one that made no call) or `refusal`.
    kind: Option<String>,
    /// Page size, 1 to 500 (50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl CallsQuery {
    /// The store's filter of the query, each value checked (a bad one is a 422 problem).
    fn filter(&self) -> Result<store::CallFilter, Problem> {
        let outcome = match self.outcome.as_deref() {
            None => None,
            Some(name) => {
                Some(OutcomeFilter::from_name(name).ok_or_else(|| unknown_outcome(name))?)
            }
        };
        let origin = match self.origin.as_deref() {
            None => None,
            Some(name) => Some(store::Origin::from_name(name).ok_or_else(|| unknown_origin(name))?),
        };
        if let Some(u) = &self.user_id {
            check_searched_user(u)?;
        }
        let number = match self.number.as_deref() {
            None => None,
            Some(n) => Some(
                store::PhoneNumber::parse(n)
                    .map_err(|e| Problem::unprocessable(format!("number: {e}")))?,
            ),
        };
        let challenge_id = match self.challenge_id.as_deref() {
            None => None,
            Some(c) => Some(store::ChallengeId::parse(c).ok_or_else(|| {
                Problem::unprocessable(format!("challenge_id {c:?} is not a challenge id (ch_…)"))
            })?),
        };
        let call_id = match self.call_id.as_deref() {
            None => None,
            Some(c) => Some(store::CallId::parse(c).ok_or_else(|| {
                Problem::unprocessable(format!("call_id {c:?} is not a call id (call_…)"))
            })?),
        };
        let kind = match self.kind.as_deref() {
            None => None,
            Some(k) => Some(store::LogKind::from_name(k).ok_or_else(|| {
                Problem::unprocessable(format!("kind {k:?} is not one of call, challenge, refusal"))
            })?),
        };
        if let (Some(f), Some(t)) = (self.from, self.to)
            && f >= t
        {
            return Err(Problem::unprocessable("from must be before to"));
        }
        Ok(store::CallFilter {
            outcome,
            origin,
            from_ms: self.from,
            to_ms: self.to,
            phone_masked: self.phone.clone(),
            trunk: self.trunk.clone(),
            user_id: self.user_id.clone(),
            number,
            challenge_id,
            call_id,
            kind,
        })
    }
}

/// A user id searched for: 1 to 128 of the characters user ids are made of (with `:`, as
/// `demo:` and `entra:` users have).
fn check_searched_user(u: &str) -> Result<(), Problem> {
    let ok = (1..=128).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Problem::unprocessable(
            "user_id must be 1 to 128 of A-Z a-z 0-9 . _ @ + - :",
        ))
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct KeyView {
    digit: String,
    source: String,
    at_ms: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CallView {
    id: String,
    challenge_id: String,
    phone_number: String,
    /// Where the challenge came from: `api`, `eam` (Microsoft Entra) or `radius`.
    #[schema(value_type = String, example = "api")]
    origin: store::Origin,
    /// What there made the challenge: for `eam` Entra's client-request-id, for `radius`
    /// the NAS's name and address (`vpn 192.0.2.10`).
    origin_ref: Option<String>,
    /// How its challenge is confirmed: `pound`, `keypad_code` or `spoken_code`.
    #[schema(value_type = String, example = "keypad_code")]
    confirmation: store::Confirmation,
    /// Whether the code entered was the right one (never the code); null until one is
    /// entered, and for `pound`.
    code_matched: Option<bool>,
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
    /// Whether the media was SRTP.
    srtp: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<KeyView>>,
}

impl CallView {
    fn of(c: &store::CallEntry, with_keys: bool) -> CallView {
        let e = c.end.as_ref();
        CallView {
            id: c.id.to_string(),
            challenge_id: c.challenge_id.to_string(),
            phone_number: c.phone_masked.clone(),
            origin: c.origin,
            origin_ref: c.origin_ref.clone(),
            confirmation: c.confirmation,
            code_matched: c.code_matched,
            started_at: rfc3339(c.started_at_ms),
            ended_at: e.map(|e| rfc3339(e.ended_at_ms)),
            outcome: e.map(|e| e.outcome.to_string()),
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
            srtp: e.map(|e| e.srtp),
            keys: with_keys.then(|| {
                e.map(|e| {
                    e.keys()
                        .iter()
                        .map(|k| KeyView {
                            digit: k.digit.to_string(),
                            source: k.source.to_string(),
                            at_ms: k.at_ms,
                        })
                        .collect()
                })
                .unwrap_or_default()
            }),
        }
    }
}

/// A page of the call log.
#[derive(Serialize, ToSchema)]
pub(crate) struct CallPage {
    calls: Vec<CallView>,
    /// Give it as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// One change of the challenge's state.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventView {
    state: String,
    at: String,
    detail: Option<String>,
}

/// One step of a call.
#[derive(Serialize, ToSchema)]
pub(crate) struct StepView {
    /// Milliseconds since the INVITE.
    at_ms: i64,
    /// `invite`, `sip` (a response), `prompt`, `key`, `verdict` or `end`.
    kind: String,
    /// What happened.
    detail: String,
}

/// A call with its keys, its steps (SIP responses, prompts, keys, verdict) and the
/// challenge's timeline.
#[derive(Serialize, ToSchema)]
pub(crate) struct CallDetail {
    #[serde(flatten)]
    call: CallView,
    steps: Vec<StepView>,
    challenge_events: Vec<EventView>,
}

/// The call log, newest first (operator key).
#[utoipa::path(
    get,
    path = "/v1/calls",
    tag = "operators",
    security(("bearer" = [])),
    params(CallsQuery),
    responses((status = 200, body = CallPage), (status = 401, body = crate::ProblemDoc),
              (status = 403, body = crate::ProblemDoc), (status = 422, body = crate::ProblemDoc))
)]
pub(crate) async fn list_calls(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallsQuery>,
) -> Result<Response, Problem> {
    operator(&state, &headers).await?;
    let filter = q.filter()?;
    if filter.kind.is_some_and(|k| k != store::LogKind::Call) {
        return Err(Problem::unprocessable(
            "the call log lists calls: ask GET /v1/log for the other kinds",
        ));
    }
    let (calls, next) = state
        .store
        .calls(&filter, q.limit.unwrap_or(50), q.cursor.as_deref())
        .await
        .map_err(listing_problem)?;
    Ok(axum::Json(CallPage {
        calls: calls.iter().map(|c| CallView::of(c, false)).collect(),
        next_cursor: next,
    })
    .into_response())
}

/// The answer to an `outcome` that is none: the names there are.
fn unknown_outcome(name: &str) -> Problem {
    let names: Vec<&str> = OutcomeFilter::names().collect();
    Problem::unprocessable(format!(
        "outcome {name:?} is not one of {}",
        names.join(", ")
    ))
}

/// The answer to an `origin` that is none: the names there are.
fn unknown_origin(name: &str) -> Problem {
    let names: Vec<&str> = store::Origin::ALL.map(store::Origin::as_str).to_vec();
    Problem::unprocessable(format!(
        "origin {name:?} is not one of {}",
        names.join(", ")
    ))
}

/// The answer to a listing that failed: a cursor the call log did not give is the client's
/// mistake, anything else the store's.
fn listing_problem(e: StoreError) -> Problem {
    match e {
        StoreError::BadCursor(c) => {
            Problem::unprocessable(format!("cursor {c:?} is not a cursor from this API"))
        }
        other => other.into(),
    }
}

/// One call with its keys, RTP figures and the challenge's timeline (operator key).
#[utoipa::path(
    get,
    path = "/v1/calls/{id}",
    tag = "operators",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the call")),
    responses((status = 200, body = CallDetail), (status = 401, body = crate::ProblemDoc),
              (status = 403, body = crate::ProblemDoc), (status = 404, body = crate::ProblemDoc))
)]
pub(crate) async fn get_call(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    operator(&state, &headers).await?;
    // A path that is no call id is answered as an unknown call is.
    let found = match store::CallId::parse(&id) {
        Some(call_id) => state.store.call(&call_id).await?,
        None => None,
    };
    let call = found.ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such call",
            format!("no call {id}"),
        )
    })?;
    let timeline = state.store.events(&call.challenge_id).await?;
    Ok(axum::Json(CallDetail {
        call: CallView::of(&call, true),
        steps: call
            .end
            .iter()
            .flat_map(|e| &e.steps)
            .map(|s| StepView {
                at_ms: s.at_ms,
                kind: s.kind.to_string(),
                detail: s.detail.clone(),
            })
            .collect(),
        challenge_events: timeline
            .iter()
            .map(|e| EventView {
                state: e.state.to_string(),
                at: rfc3339(e.at_ms),
                detail: e.detail.clone(),
            })
            .collect(),
    })
    .into_response())
}

/// One entry of the operator's log: a call, a challenge that made no call, or a refused
/// attempt. The number is masked; fields that do not apply to the kind are null.
#[derive(Serialize, ToSchema)]
pub(crate) struct LogView {
    /// `call`, `challenge` (one that made no call: a trusted device's sign-in, or one not
    /// called) or `refusal`.
    #[schema(example = "call")]
    kind: &'static str,
    /// The call's id (`call_…`: `GET /v1/calls/{id}`), the challenge's (`ch_…`) or the
    /// refusal's (`rf_…`).
    id: String,
    /// When the call started, the challenge was made or the refusal (first) happened.
    at: String,
    challenge_id: Option<String>,
    user_id: Option<String>,
    /// Masked.
    #[schema(example = "+81 ** **** **78")]
    phone_number: String,
    #[schema(value_type = String, example = "api")]
    origin: store::Origin,
    /// The API key that made the challenge or was refused (its id, never its secret).
    api_key_id: Option<String>,
    /// A call's outcome (null while in progress), a challenge's state; null for a refusal.
    outcome: Option<String>,
    sip_status: Option<i64>,
    /// A call's detail, a challenge's reason (`trusted_device`), a refusal's words.
    detail: Option<String>,
    trunk: Option<String>,
    post_dial_delay_ms: Option<i64>,
    /// A call's INVITE to its verdict; a challenge's creation to its decision.
    time_to_verdict_ms: Option<i64>,
    /// A refusal's rule, as its problem's type names it: `country-not-allowed`,
    /// `number-type-not-allowed`, `invalid-number`, `rate-limited`, `too-many-calls`,
    /// `fraud-block`.
    rule: Option<String>,
    /// The Retry-After the refusal gave, in seconds.
    retry_after_s: Option<i64>,
    /// How many times the refusal happened in the minute its entry covers.
    repeats: Option<i64>,
    /// When the refusal last happened.
    last_at: Option<String>,
}

impl LogView {
    fn of(e: &store::LogEntry) -> LogView {
        LogView {
            kind: e.kind.as_str(),
            id: e.id.clone(),
            at: rfc3339(e.at_ms),
            challenge_id: e.challenge_id.clone(),
            user_id: e.user_id.clone(),
            phone_number: e.phone_masked.clone(),
            origin: e.origin,
            api_key_id: e.api_key_id.clone(),
            outcome: e.outcome.map(|o| o.to_string()),
            sip_status: e.sip_status,
            detail: e.detail.clone(),
            trunk: e.trunk.clone(),
            post_dial_delay_ms: e.post_dial_delay_ms,
            time_to_verdict_ms: e.time_to_verdict_ms,
            rule: e.rule.clone(),
            retry_after_s: e.retry_after_s,
            repeats: e.repeats,
            last_at: e.last_at_ms.map(rfc3339),
        }
    }
}

/// A page of the operator's log.
#[derive(Serialize, ToSchema)]
pub(crate) struct LogPage {
    entries: Vec<LogView>,
    /// Give it as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// The operator's log, newest first: calls, challenges that made no call (a trusted
/// device's sign-in) and refused attempts, with the call log's filters (operator key).
/// Filters of calls only (trunk, call id, masked number) leave the challenges out; those a
/// refusal has no answer to (outcome, trunk, challenge or call id) leave the refusals out.
#[utoipa::path(
    get,
    path = "/v1/log",
    tag = "operators",
    security(("bearer" = [])),
    params(CallsQuery),
    responses((status = 200, body = LogPage), (status = 401, body = crate::ProblemDoc),
              (status = 403, body = crate::ProblemDoc), (status = 422, body = crate::ProblemDoc))
)]
pub(crate) async fn list_log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallsQuery>,
) -> Result<Response, Problem> {
    operator(&state, &headers).await?;
    let filter = q.filter()?;
    let (entries, next) = state
        .store
        .log(&filter, q.limit.unwrap_or(50), q.cursor.as_deref())
        .await
        .map_err(listing_problem)?;
    Ok(axum::Json(LogPage {
        entries: entries.iter().map(LogView::of).collect(),
        next_cursor: next,
    })
    .into_response())
}

/// The figures' window when the query gives no start: this long before its end.
const STATS_DEFAULT_WINDOW_MS: i64 = 7 * 86_400_000;

/// The longest window of the figures.
pub(crate) const STATS_MAX_WINDOW_MS: i64 = 31 * 86_400_000;

/// The figures of the calls a filter selects, over a window of 31 days at most.
#[derive(Serialize, ToSchema)]
pub(crate) struct StatsView {
    /// The window's start (the query's `from`, or 7 days before its end).
    from: String,
    /// The window's end (the query's `to`, or now).
    to: String,
    /// Calls started in it.
    calls: i64,
    /// Of them, not ended yet.
    in_progress: i64,
    /// Approved.
    approved: i64,
    /// Canceled (neither a success nor a failure: left out of the rate).
    canceled: i64,
    /// Approved of the calls ended and not canceled, 0 to 1; null when there are none.
    success_rate: Option<f64>,
    /// Calls with a time to verdict.
    verdicts: i64,
    /// Time to verdict (INVITE to verdict), median, ms.
    p50_verdict_ms: Option<i64>,
    /// Time to verdict, 95th percentile (nearest rank), ms.
    p95_verdict_ms: Option<i64>,
    /// Sign-ins approved by a trusted device (no call).
    trusted_sign_ins: i64,
    /// Refused attempts (each repeat counted).
    refused: i64,
}

/// Success rate and time to verdict (p50, p95) of the calls the call log's filters select
/// (the outcome and kind aside), over `from`..`to` (default: the 7 days to now; 31 days at
/// most), with the trusted sign-ins and refusals of the filter (operator key).
#[utoipa::path(
    get,
    path = "/v1/calls/stats",
    tag = "operators",
    security(("bearer" = [])),
    params(CallsQuery),
    responses((status = 200, body = StatsView), (status = 401, body = crate::ProblemDoc),
              (status = 403, body = crate::ProblemDoc), (status = 422, body = crate::ProblemDoc))
)]
pub(crate) async fn call_stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallsQuery>,
) -> Result<Response, Problem> {
    operator(&state, &headers).await?;
    let mut filter = q.filter()?;
    let to = filter.to_ms.unwrap_or_else(|| crate::now_ms() + 1);
    let from = filter
        .from_ms
        .unwrap_or_else(|| to.saturating_sub(STATS_DEFAULT_WINDOW_MS));
    if to.saturating_sub(from) > STATS_MAX_WINDOW_MS {
        return Err(Problem::unprocessable(
            "the figures' window (from to to) is 31 days at most",
        ));
    }
    (filter.from_ms, filter.to_ms) = (Some(from), Some(to));
    let s = state.store.call_stats(&filter).await?;
    let decided = s.calls - s.in_progress - s.canceled;
    Ok(axum::Json(StatsView {
        from: rfc3339(from),
        to: rfc3339(to),
        calls: s.calls,
        in_progress: s.in_progress,
        approved: s.approved,
        canceled: s.canceled,
        success_rate: (decided > 0).then(|| s.approved as f64 / decided as f64),
        verdicts: s.verdicts,
        p50_verdict_ms: s.p50_verdict_ms,
        p95_verdict_ms: s.p95_verdict_ms,
        trusted_sign_ins: s.trusted,
        refused: s.refused,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_cursor_is_the_clients_mistake_and_only_it() {
        let p = listing_problem(StoreError::BadCursor("bogus".into()));
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(p.detail, "cursor \"bogus\" is not a cursor from this API");
        // A stored value the store does not understand is not the client's, whatever it says.
        let p = listing_problem(StoreError::Corrupt("cursor \"bogus\"".into()));
        assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn an_unknown_outcome_is_refused_naming_the_outcomes_there_are() {
        let p = unknown_outcome("aproved");
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            p.detail
                .starts_with("outcome \"aproved\" is not one of queued, ")
        );
        assert!(p.detail.contains(", approved, ") && p.detail.ends_with(", in_progress"));
    }

    #[test]
    fn an_unknown_origin_is_refused_naming_the_origins_there_are() {
        let p = unknown_origin("entra");
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(p.detail, "origin \"entra\" is not one of api, eam, radius");
    }
}
