//! `/v1/challenges`: who may create and read a challenge, what a request must say, the
//! Idempotency-Key, long polls and server-sent events, a call through sipp approved, a cancel
//! (hanging up a ringing call), and expiry.

use std::time::Duration;

use api::{ApiConfig, AppState};
use callverify_e2e::{BOUND, Sipp, V4, runner_through};
use sip::Transport;
use store::{KeyKind, now_ms};

use crate::common::{
    APPROVED_ORDER, Api, BODY, Reply, auth, authorized, called_through_sipp, ch, config, http,
    post_json, sqlite, sse, state,
};

#[tokio::test]
async fn creating_one_needs_a_service_key() {
    let Api { addr, operator, .. } = Api::start("api-create-keys", config()).await;
    let r = http(addr, "POST", "/v1/challenges", &[], BODY.as_bytes()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.json()["status"], 401);
    let r = post_json(addr, "/v1/challenges", "cvk_unknown", BODY).await;
    assert_eq!(r.status, 401);
    let r = post_json(addr, "/v1/challenges", &operator, BODY).await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn bad_bodies_are_refused_with_a_problem_that_says_why() {
    let Api { addr, service, .. } = Api::start("api-bad-bodies", config()).await;
    for (body, status, words) in [
        ("{not json", 400, "key must be a string"),
        (
            r#"{"phone_number":"+819012345678","colour":"red"}"#,
            400,
            "unknown field `colour`",
        ),
        (r#"{"phone_number":"090-1234-5678"}"#, 422, "E.164"),
        (
            r#"{"phone_number":"+819012345678","language":"fr"}"#,
            422,
            "en or ja",
        ),
        (
            r#"{"phone_number":"+819012345678","purpose":"spam"}"#,
            400,
            "unknown variant",
        ),
        (
            r#"{"phone_number":"+819012345678","callback_url":"ftp://x"}"#,
            422,
            "https",
        ),
    ] {
        let r = post_json(addr, "/v1/challenges", &service, body).await;
        assert_eq!(r.status, status, "{}", r.body);
        assert!(
            r.json()["detail"].as_str().unwrap().contains(words),
            "{}",
            r.body
        );
    }
    let r = post_json(addr, "/v1/challenges", &service, &" ".repeat(20 * 1024)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.json()["status"], 413);
}

/// A request that names no language gets the configured one (`[call] language`); one the
/// prompt library has not is refused, naming those it has.
#[tokio::test]
async fn a_challenge_without_a_language_gets_the_configured_one() {
    let cfg = ApiConfig {
        language: media::Language::Ja,
        ..config()
    };
    let Api { addr, service, .. } = Api::start("api-language-default", cfg).await;
    let post = |body: &'static str| post_json(addr, "/v1/challenges", &service, body);
    let r = post(r#"{"phone_number":"+819012345678"}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["language"], "ja");
    let r = post(r#"{"phone_number":"+819012345678","language":"en"}"#).await;
    assert_eq!(r.json()["language"], "en", "{}", r.body);
    for unknown in ["fr", "EN", ""] {
        let body = format!(r#"{{"phone_number":"+819012345678","language":"{unknown}"}}"#);
        let r = post_json(addr, "/v1/challenges", &service, &body).await;
        assert_eq!(r.status, 422, "{}", r.body);
        let want = format!("language {unknown:?} is not offered: use en or ja");
        assert_eq!(r.json()["detail"], want.as_str());
    }
    // Unconfigured, the default is English.
    let Api { addr, service, .. } = Api::start("api-language-en", config()).await;
    let r = post_json(
        addr,
        "/v1/challenges",
        &service,
        r#"{"phone_number":"+819012345678"}"#,
    )
    .await;
    assert_eq!(r.json()["language"], "en", "{}", r.body);
}

#[tokio::test]
async fn a_request_names_a_phone_or_a_user_as_its_purpose_needs() {
    let Api { addr, service, .. } = Api::start("api-request-shapes", config()).await;
    for (body, words) in [
        (r#"{"user_id":"bad user"}"#, "user_id must be"),
        (
            r#"{"user_id":"u","phone_number":"+819012345678"}"#,
            "not both",
        ),
        (
            r#"{"purpose":"enroll","phone_number":"+819012345678"}"#,
            "needs phone_number and user_id",
        ),
        (
            r#"{"phone_number":"+819012345678","remember_device":true}"#,
            "sign-ins of a user_id",
        ),
        (r#"{}"#, "phone_number or user_id"),
    ] {
        let r = post_json(addr, "/v1/challenges", &service, body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert!(
            r.json()["detail"].as_str().unwrap().contains(words),
            "{}",
            r.body
        );
    }
}

/// Created, then the same request again gives the same challenge and token; another request
/// with the same key is refused.
#[tokio::test]
async fn an_idempotency_key_gives_back_the_challenge_it_made() {
    let Api { addr, service, .. } = Api::start("api-idempotency", config()).await;
    let key = auth(&service);
    let headers = [
        ("Authorization", key.as_str()),
        ("Idempotency-Key", "login-42"),
    ];
    let post = |body: &'static str| http(addr, "POST", "/v1/challenges", &headers, body.as_bytes());
    let r = post(BODY).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(r.headers["location"], format!("/v1/challenges/{id}"));
    assert_eq!(created["state"], "queued");
    assert_eq!(created["phone_number"], "+81 ** **** **78");
    assert_eq!(created["purpose"], "sign_in");
    let token = created["poll_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("cvp_"));
    let r = post(BODY).await;
    assert_eq!(
        (r.status, r.json()["id"].as_str()),
        (200, Some(id.as_str()))
    );
    assert_eq!(r.json()["poll_token"].as_str(), Some(token.as_str()));
    let r = post(r#"{"phone_number":"+12025550123"}"#).await;
    assert_eq!(r.status, 409);
}

/// The poll token (never shown again), the key that made it and an operator key read a
/// challenge; not another service's key, not another challenge's token.
#[tokio::test]
async fn a_challenge_is_read_by_its_poll_token_its_key_and_operators() {
    let Api {
        store,
        addr,
        service,
        operator,
    } = Api::start("api-readers", config()).await;
    let (_, other) = store
        .create_api_key("idp-2", KeyKind::Service, 0)
        .await
        .unwrap();
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let token = r.json()["poll_token"].as_str().unwrap().to_string();
    let get = |path: String, bearer: &str| {
        let bearer = auth(bearer);
        async move { authorized(addr, "GET", &path, &bearer).await }
    };
    let path = format!("/v1/challenges/{id}");
    let r = get(path.clone(), &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"], "queued");
    assert!(r.json().get("poll_token").is_none());
    assert_eq!(get(path.clone(), &service).await.status, 200);
    assert_eq!(get(path.clone(), &operator).await.status, 200);
    assert_eq!(get(path.clone(), &other).await.status, 404);
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    let second = r.json()["id"].as_str().unwrap().to_string();
    let r = get(format!("/v1/challenges/{second}"), &token).await;
    assert_eq!(r.status, 401);
    let r = get("/v1/challenges/ch_nope".into(), &service).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn a_long_poll_on_a_challenge_nobody_calls_returns_it_unchanged() {
    let Api { addr, service, .. } = Api::start("api-long-poll", config()).await;
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let token = auth(r.json()["poll_token"].as_str().unwrap());
    let r = authorized(addr, "GET", &format!("/v1/challenges/{id}?wait=1"), &token).await;
    assert_eq!(
        (r.status, r.json()["state"].as_str()),
        (200, Some("queued"))
    );
}

/// The front end long-polls with the poll token until the challenge is decided: it sees the
/// states in order, ending `approved`; the gateway is live and ready after the call.
#[tokio::test]
async fn a_challenge_is_called_and_the_front_end_sees_it_approved() {
    let called = called_through_sipp("api-approved").await;
    let seen = called.seen;
    assert_eq!(
        seen.last().map(String::as_str),
        Some("approved"),
        "{seen:?}"
    );
    let positions: Vec<usize> = seen
        .iter()
        .map(|s| APPROVED_ORDER.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let exit = called.sipp.finish().await;
    assert!(exit.passed, "{}", exit.log);
    let addr = called.api.addr;
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").await.status, 200);
    assert_eq!(http(addr, "GET", "/readyz", &[], b"").await.status, 200);
}

/// Server-sent events: the current state at once, then each change, ending after the
/// decision (the changes made through the store, as the call runner makes them); of a
/// decided challenge, one event and the end.
#[tokio::test]
async fn server_sent_events_say_each_state_until_the_decision() {
    use store::ChallengeState::*;
    let Api {
        store,
        addr,
        service,
        ..
    } = Api::start("api-events", config()).await;
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let token = auth(r.json()["poll_token"].as_str().unwrap());
    let path = format!("/v1/challenges/{id}/events");
    let events = tokio::spawn({
        let (path, token) = (path.clone(), token.clone());
        async move { sse(addr, &path, &token).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in [Calling, Ringing, Answered, Approved] {
        assert!(
            store
                .transition(&ch(&id), s, now_ms(), None, None)
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, events) = events.await.unwrap();
    assert_eq!(status, 200);
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, APPROVED_ORDER);
    let (_, events) = sse(addr, &path, &token).await;
    assert_eq!(events.len(), 1);
    let (status, _) = sse(addr, &path, "Bearer cvp_00").await;
    assert_eq!(status, 401);
}

/// DELETE: a waiting long poll sees the cancel at once; a decided challenge stays.
#[tokio::test]
async fn a_cancel_is_seen_by_a_waiting_long_poll_at_once_and_is_final() {
    let Api {
        addr,
        service,
        operator,
        ..
    } = Api::start("api-cancel", config()).await;
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let token = auth(r.json()["poll_token"].as_str().unwrap());
    let path = format!("/v1/challenges/{id}");
    let poll = tokio::spawn({
        let (path, token) = (path.clone(), token.clone());
        async move {
            let started = std::time::Instant::now();
            let r = authorized(addr, "GET", &format!("{path}?wait=20"), &token).await;
            (r, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = authorized(addr, "DELETE", &path, &auth(&operator)).await;
    assert_eq!(r.status, 403);
    let r = authorized(addr, "DELETE", &path, &auth(&service)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "canceled");
    assert_eq!(r.json()["reason"], "canceled through the API");
    let (r, waited) = poll.await.unwrap();
    assert_eq!(r.json()["state"], "canceled");
    assert!(waited < Duration::from_secs(20), "{waited:?}");
    let r = authorized(addr, "DELETE", &path, &token).await;
    assert_eq!(r.status, 409);
    assert!(r.json()["detail"].as_str().unwrap().contains("canceled"));
}

/// The poll token may cancel too (the user's "this wasn't me" before the call).
#[tokio::test]
async fn the_poll_token_may_cancel_its_challenge() {
    let Api { addr, service, .. } = Api::start("api-cancel-by-token", config()).await;
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let t = auth(r.json()["poll_token"].as_str().unwrap());
    let r = authorized(addr, "DELETE", &format!("/v1/challenges/{id}"), &t).await;
    assert_eq!(r.json()["state"], "canceled");
}

/// Nobody calls this one; after its 2 s it is expired (by the background work).
#[tokio::test]
async fn a_challenge_nobody_calls_expires() {
    let cfg = ApiConfig {
        challenge_ttl: Duration::from_secs(2),
        ..config()
    };
    let (api, workers) = Api::with_workers("api-expiry", cfg).await;
    let r = post_json(api.addr, "/v1/challenges", &api.service, BODY).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/challenges/{id}?wait=10");
    let r = authorized(api.addr, "GET", &path, &auth(&api.service)).await;
    assert_eq!(r.json()["state"], "expired", "{}", r.body);
    assert_eq!(r.json()["reason"], "not called before its expiry");
    workers.abort();
}

#[tokio::test]
async fn cancel_hangs_up_a_ringing_call() {
    let sipp = Sipp::start("ring_no_answer", Transport::Udp, V4);
    let store = sqlite("api-cancel-call").await;
    let runner = std::sync::Arc::new(runner_through(store.clone(), sipp.addr).await);
    // The dispatcher claims what the API queues; it ends with the test's runtime.
    runner.dispatch();
    let Api {
        addr,
        service,
        operator,
        ..
    } = Api::over(store, |store| AppState {
        runner: Some(runner),
        ..state(store, config())
    })
    .await;
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/challenges/{id}");
    let key = auth(&service);
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let r = authorized(addr, "GET", &format!("{path}?wait=5"), &key).await;
        if r.json()["state"] == "ringing" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", r.body);
    }
    let r = authorized(addr, "DELETE", &path, &key).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "canceled");
    // The phone stops ringing: sipp got the CANCEL (its scenario ends only then).
    let exit = sipp.finish().await;
    assert!(exit.passed, "{}", exit.log);
    // The call log says so once the call has ended.
    let op = auth(&operator);
    let mut outcome = serde_json::Value::Null;
    while tokio::time::Instant::now() < deadline {
        let r = authorized(addr, "GET", "/v1/calls", &op).await;
        outcome = r.json()["calls"][0]["outcome"].clone();
        if !outcome.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outcome, "canceled");
    let r = authorized(addr, "GET", &path, &key).await;
    assert_eq!(
        r.json()["state"],
        "canceled",
        "still: a decided challenge never changes"
    );
}

/// A path id not in the shape the store makes (too long, too short, not hex, upper case,
/// multibyte, another prefix) is answered exactly as an unknown id in that shape is (the
/// same status, content type and problem, the id aside), whoever asks (no key, a poll
/// token, the service key, the operator key), on the challenges' and the calls' routes.
#[tokio::test]
async fn a_malformed_id_is_answered_as_an_unknown_one() {
    let Api {
        addr,
        service,
        operator,
        ..
    } = Api::start("api-malformed-ids", config()).await;
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.json()["poll_token"].as_str().unwrap().to_string();
    let hex = "0123456789abcdef0123456789abcdef";
    // (the path segment, the id the server reads from it)
    let malformed = |prefix: &str| {
        let other = if prefix == "ch" { "call" } else { "ch" };
        let same = |s: String| (s.clone(), s);
        vec![
            same(format!("{prefix}_{hex}{hex}")),
            same(format!("{prefix}_{}", &hex[1..])),
            same(format!("{prefix}_{}g", &hex[1..])),
            same(format!("{prefix}_{}", hex.to_uppercase())),
            (
                format!("{prefix}_{}%C3%A9", &hex[2..]),
                format!("{prefix}_{}é", &hex[2..]),
            ),
            same(format!("{other}_{hex}")),
            same(format!("{prefix}-{hex}")),
            same(hex.to_string()),
        ]
    };
    let keys = [
        "Bearer cvk_not_a_key".to_string(),
        auth(&token),
        auth(&service),
        auth(&operator),
    ];
    // The answer with the id it names replaced.
    let answer = |r: Reply, id: &str| {
        let mut v: serde_json::Value =
            serde_json::from_str(&r.body).unwrap_or(serde_json::Value::String(r.body.clone()));
        if let Some(d) = v.get_mut("detail") {
            *d = d.as_str().unwrap().replace(id, "<id>").into();
        }
        (r.status, r.headers.get("content-type").cloned(), v)
    };
    let routes: [(&str, &str, &str, &str); 4] = [
        ("GET", "ch", "/v1/challenges/", ""),
        ("GET", "ch", "/v1/challenges/", "/events"),
        ("DELETE", "ch", "/v1/challenges/", ""),
        ("GET", "call", "/v1/calls/", ""),
    ];
    for (method, prefix, before, after) in routes {
        let unknown = format!("{prefix}_{}", "f".repeat(32));
        for key in &keys {
            let path = format!("{before}{unknown}{after}");
            let want = answer(authorized(addr, method, &path, key).await, &unknown);
            let owner = if prefix == "ch" { &service } else { &operator };
            if key == &auth(owner) {
                assert_eq!(
                    (want.0, want.1.as_deref()),
                    (404, Some("application/problem+json")),
                    "{method} {path}: {:?}",
                    want.2
                );
            }
            for (segment, id) in malformed(prefix) {
                let path = format!("{before}{segment}{after}");
                let got = answer(authorized(addr, method, &path, key).await, &id);
                assert_eq!(got, want, "{method} {path} with {key}");
            }
        }
    }
}
