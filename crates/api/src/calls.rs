//! The operator's call log: calls with filters and cursor pagination, and one call with its
//! keys, RTP figures and the challenge's timeline.

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
    /// Page size, 1 to 500 (50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
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
    /// What there made the challenge: for `eam` Entra's client-request-id.
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
    let outcome = match q.outcome.as_deref() {
        None => None,
        Some(name) => Some(OutcomeFilter::from_name(name).ok_or_else(|| unknown_outcome(name))?),
    };
    let origin = match q.origin.as_deref() {
        None => None,
        Some(name) => Some(store::Origin::from_name(name).ok_or_else(|| unknown_origin(name))?),
    };
    let filter = store::CallFilter {
        outcome,
        origin,
        from_ms: q.from,
        to_ms: q.to,
        phone_masked: q.phone,
        trunk: q.trunk,
    };
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
