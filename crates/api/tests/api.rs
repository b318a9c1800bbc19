//! The API over real HTTP on loopback: credentials, bodies, idempotency, poll tokens,
//! long polls, and a challenge that calls sipp and is approved.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use api::{ApiConfig, AppState};
use callverify_e2e::{BOUND, Sipp, V4, runner_through, sqlite_store};
use sip::Transport;
use store::{KeyKind, Store, now_ms};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn serve(state: AppState) -> SocketAddr {
    let lis = tokio::net::TcpListener::bind((V4, 0)).await.unwrap();
    let addr = lis.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(lis, api::router(state)).await });
    addr
}

/// A store as `serve` opens it: SQLite, with its copy of the challenges read.
async fn sqlite(name: &str) -> Store {
    sqlite_store(name).await.cached().unwrap()
}

/// The settings of most tests: every country may be called (the default is none).
fn config() -> ApiConfig {
    let mut c = ApiConfig {
        token_secret: b"test token secret".to_vec(),
        ..ApiConfig::default()
    };
    c.policy.allowed_countries = api::Countries::Any;
    c
}

fn cfg() -> Arc<ApiConfig> {
    Arc::new(config())
}

const BODY: &str = r#"{"phone_number":"+819012345678","language":"ja"}"#;

#[tokio::test]
async fn credentials_bodies_idempotency_and_poll_tokens() {
    let store = sqlite("api-basics").await;
    let (_, service) = store
        .create_api_key("idp", KeyKind::Service, 0)
        .await
        .unwrap();
    let (_, other) = store
        .create_api_key("idp-2", KeyKind::Service, 0)
        .await
        .unwrap();
    let (_, operator) = store
        .create_api_key("ops", KeyKind::Operator, 0)
        .await
        .unwrap();
    let addr = serve(AppState {
        store,
        runner: None,
        readiness: Default::default(),
        cfg: cfg(),
    })
    .await;
    let auth = |k: &str| format!("Bearer {k}");
    let post = |h: Vec<(&'static str, String)>, body: &'static [u8]| async move {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http(addr, "POST", "/v1/challenges", &h, body).await
    };

    let r = post(vec![], BODY.as_bytes()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.json()["status"], 401);
    let r = post(
        vec![("Authorization", auth("cvk_unknown"))],
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = post(vec![("Authorization", auth(&operator))], BODY.as_bytes()).await;
    assert_eq!(r.status, 403);
    for (body, status, words) in [
        (&b"{not json"[..], 400, "key must be a string"),
        (
            br#"{"phone_number":"+819012345678","colour":"red"}"#,
            400,
            "unknown field `colour`",
        ),
        (br#"{"phone_number":"090-1234-5678"}"#, 422, "E.164"),
        (
            br#"{"phone_number":"+819012345678","language":"fr"}"#,
            422,
            "en or ja",
        ),
        (
            br#"{"phone_number":"+819012345678","purpose":"spam"}"#,
            400,
            "unknown variant",
        ),
        (
            br#"{"phone_number":"+819012345678","callback_url":"ftp://x"}"#,
            422,
            "https",
        ),
    ] {
        let r = post(vec![("Authorization", auth(&service))], body).await;
        assert_eq!(r.status, status, "{}", r.body);
        assert!(
            r.json()["detail"].as_str().unwrap().contains(words),
            "{}",
            r.body
        );
    }
    let big: &'static [u8] = Box::leak(vec![b' '; 20 * 1024].into_boxed_slice());
    let r = post(vec![("Authorization", auth(&service))], big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.json()["status"], 413);
    // axum's own answers are problems too: no route, a method not allowed, a bad query.
    let r = http(addr, "GET", "/v1/nothing", &[], b"").await;
    assert_eq!(
        (r.status, r.headers["content-type"].as_str()),
        (404, "application/problem+json")
    );
    let r = http(addr, "PUT", "/v1/challenges", &[], b"").await;
    assert_eq!(
        (r.status, r.headers["content-type"].as_str()),
        (405, "application/problem+json")
    );
    let r = http(
        addr,
        "GET",
        "/v1/calls?limit=many",
        &[("Authorization", &auth(&operator))],
        b"",
    )
    .await;
    assert_eq!(
        (r.status, r.headers["content-type"].as_str()),
        (400, "application/problem+json")
    );
    assert!(
        r.json()["detail"].as_str().unwrap().contains("limit"),
        "{}",
        r.body
    );

    // Created, then the same request again gives the same challenge and token.
    let key = vec![
        ("Authorization", auth(&service)),
        ("Idempotency-Key", "login-42".into()),
    ];
    let r = post(key.clone(), BODY.as_bytes()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(r.headers["location"], format!("/v1/challenges/{id}"));
    assert_eq!(created["state"], "queued");
    assert_eq!(created["phone_number"], "+81 ** **** **78");
    assert_eq!(created["purpose"], "sign_in");
    let token = created["poll_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("cvp_"));
    let r = post(key.clone(), BODY.as_bytes()).await;
    assert_eq!(
        (r.status, r.json()["id"].as_str()),
        (200, Some(id.as_str()))
    );
    assert_eq!(r.json()["poll_token"].as_str(), Some(token.as_str()));
    let r = post(key, br#"{"phone_number":"+12025550123"}"#).await;
    assert_eq!(r.status, 409);

    // Reading it: the poll token (never shown again), the key that made it, an operator
    // key; not another service's key, not another challenge's token.
    let get =
        |path: String, bearer: String| async move { authorized(addr, "GET", &path, &bearer).await };
    let path = format!("/v1/challenges/{id}");
    let r = get(path.clone(), auth(&token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"], "queued");
    assert!(r.json().get("poll_token").is_none());
    assert_eq!(get(path.clone(), auth(&service)).await.status, 200);
    assert_eq!(get(path.clone(), auth(&operator)).await.status, 200);
    assert_eq!(get(path.clone(), auth(&other)).await.status, 404);
    let r = post(vec![("Authorization", auth(&service))], BODY.as_bytes()).await;
    let second = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        get(format!("/v1/challenges/{second}"), auth(&token))
            .await
            .status,
        401
    );
    assert_eq!(
        get("/v1/challenges/ch_nope".into(), auth(&service))
            .await
            .status,
        404
    );
    // A long poll on a challenge nobody calls returns it unchanged when the wait is over.
    let r = get(format!("{path}?wait=1"), auth(&token)).await;
    assert_eq!(
        (r.status, r.json()["state"].as_str()),
        (200, Some("queued"))
    );
}

#[tokio::test]
async fn a_challenge_is_called_and_the_front_end_sees_it_approved() {
    let store = sqlite("api-call").await;
    let (_, service) = store
        .create_api_key("idp", KeyKind::Service, 0)
        .await
        .unwrap();
    let (_, operator) = store
        .create_api_key("ops", KeyKind::Operator, 0)
        .await
        .unwrap();
    let sipp = Sipp::callee_pressing_pound("api-approved", V4);
    let runner = runner_through(store.clone(), sipp.addr).await;
    let addr = serve(AppState {
        store,
        runner: Some(Arc::new(runner)),
        readiness: Default::default(),
        cfg: cfg(),
    })
    .await;
    let bearer = format!("Bearer {service}");
    let r = http(
        addr,
        "POST",
        "/v1/challenges",
        &[("Authorization", &bearer)],
        BODY.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let token = format!("Bearer {}", r.json()["poll_token"].as_str().unwrap());

    // The front end long-polls with the poll token until the challenge is decided.
    let mut seen = vec![r.json()["state"].as_str().unwrap().to_string()];
    let deadline = tokio::time::Instant::now() + BOUND;
    while tokio::time::Instant::now() < deadline {
        let r = authorized(addr, "GET", &format!("/v1/challenges/{id}?wait=5"), &token).await;
        assert_eq!(r.status, 200);
        let state = r.json()["state"].as_str().unwrap().to_string();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if !matches!(
            state.as_str(),
            "queued" | "calling" | "ringing" | "answered"
        ) {
            assert!(r.json()["decided_at"].is_string());
            break;
        }
    }
    assert_eq!(
        seen.last().map(String::as_str),
        Some("approved"),
        "{seen:?}"
    );
    let order = ["queued", "calling", "ringing", "answered", "approved"];
    let positions: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let exit = sipp.finish().await;
    assert!(exit.passed, "{}", exit.log);

    // The operator's call log shows the call with its key and the challenge's timeline;
    // a service key may not read it.
    let op = format!("Bearer {operator}");
    // The call is logged as ended just after sipp has its BYE: wait (bounded) for that.
    let mut calls = Vec::new();
    while calls.is_empty() && tokio::time::Instant::now() < deadline + BOUND {
        let r = authorized(addr, "GET", "/v1/calls?outcome=approved&limit=10", &op).await;
        assert_eq!(r.status, 200, "{}", r.body);
        calls = r.json()["calls"].as_array().unwrap().clone();
        if calls.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["challenge_id"], id.as_str());
    assert_eq!(calls[0]["phone_number"], "+81 ** **** **78");
    let call_id = calls[0]["id"].as_str().unwrap();
    let r = authorized(addr, "GET", &format!("/v1/calls/{call_id}"), &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let call = r.json();
    assert_eq!(call["keys"][0]["digit"], "#");
    assert_eq!(call["outcome"], "approved");
    let timeline: Vec<&str> = call["challenge_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(timeline, order.to_vec());
    // The call's steps: the INVITE, sipp's responses, the prompts, the key, the verdict.
    let steps: Vec<(String, String)> = call["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap().to_string();
            (f("kind"), f("detail"))
        })
        .collect();
    let step = |kind: &str, detail: &str| (kind.to_string(), detail.to_string());
    for want in [
        step("sip", "180 Ringing"),
        step("sip", "200 OK (PCMU)"),
        step("prompt", "greeting"),
        step("verdict", "approved"),
        step("prompt", "verified"),
        step("end", "approved"),
    ] {
        assert!(steps.contains(&want), "{want:?} in {steps:?}");
    }
    assert_eq!(steps[0].0, "invite", "{steps:?}");
    assert!(
        steps
            .iter()
            .any(|(k, d)| k == "key" && d.starts_with("# (")),
        "{steps:?}"
    );
    let at: Vec<i64> = call["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] != "key")
        .map(|s| s["at_ms"].as_i64().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
    assert_eq!(
        authorized(addr, "GET", "/v1/calls", &bearer).await.status,
        403
    );
    let r = authorized(addr, "GET", "/v1/calls?cursor=bogus", &op).await;
    assert_eq!(r.status, 422);
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").await.status, 200);
    assert_eq!(http(addr, "GET", "/readyz", &[], b"").await.status, 200);
}

/// A request with no body and only an `Authorization` header (its whole value).
async fn authorized(addr: SocketAddr, method: &str, path: &str, authorization: &str) -> Reply {
    http(addr, method, path, &[("Authorization", authorization)], b"").await
}

fn auth(k: &str) -> String {
    format!("Bearer {k}")
}

async fn keys(store: &Store) -> (String, String) {
    let (_, service) = store
        .create_api_key("idp", KeyKind::Service, 0)
        .await
        .unwrap();
    let (_, operator) = store
        .create_api_key("ops", KeyKind::Operator, 0)
        .await
        .unwrap();
    (service, operator)
}

async fn post_json(addr: SocketAddr, path: &str, key: &str, body: &str) -> Reply {
    http(
        addr,
        "POST",
        path,
        &[("Authorization", &auth(key))],
        body.as_bytes(),
    )
    .await
}

/// Reads server-sent events until the stream ends (or `BOUND`); returns each `data:` line.
async fn sse(addr: SocketAddr, path: &str, bearer: &str) -> (u16, Vec<serde_json::Value>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {bearer}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut raw))
        .await
        .expect("the stream ends after the decision")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let events = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    (status, events)
}

#[tokio::test]
async fn cancel_server_sent_events_and_expiry() {
    use store::ChallengeState::*;
    let store = sqlite("api-cancel").await;
    let (service, operator) = keys(&store).await;
    let state = AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(ApiConfig {
            challenge_ttl: std::time::Duration::from_secs(2),
            ..config()
        }),
    };
    let workers = api::webhooks::spawn_workers(state.clone());
    let addr = serve(state).await;

    // SSE: the current state at once, then each change, ending after the decision. The
    // changes are made through the store, as the call runner makes them.
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let token = auth(r.json()["poll_token"].as_str().unwrap());
    let events = tokio::spawn({
        let (path, token) = (format!("/v1/challenges/{id}/events"), token.clone());
        async move { sse(addr, &path, &token).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for s in [Calling, Ringing, Answered, Approved] {
        assert!(
            store
                .transition(&id, s, now_ms(), None, None)
                .await
                .unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, events) = events.await.unwrap();
    assert_eq!(status, 200);
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["queued", "calling", "ringing", "answered", "approved"]
    );
    // Of a decided challenge: one event and the end.
    let (_, events) = sse(addr, &format!("/v1/challenges/{id}/events"), &token).await;
    assert_eq!(events.len(), 1);
    let (status, _) = sse(
        addr,
        &format!("/v1/challenges/{id}/events"),
        "Bearer cvp_00",
    )
    .await;
    assert_eq!(status, 401);

    // DELETE: a waiting long poll sees the cancel at once; a decided challenge stays.
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
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = http(
        addr,
        "DELETE",
        &path,
        &[("Authorization", &auth(&operator))],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    let r = http(
        addr,
        "DELETE",
        &path,
        &[("Authorization", &auth(&service))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "canceled");
    assert_eq!(r.json()["reason"], "canceled through the API");
    let (r, waited) = poll.await.unwrap();
    assert_eq!(r.json()["state"], "canceled");
    assert!(waited < std::time::Duration::from_secs(20), "{waited:?}");
    let r = authorized(addr, "DELETE", &path, &token).await;
    assert_eq!(r.status, 409);
    assert!(r.json()["detail"].as_str().unwrap().contains("canceled"));
    // The poll token may cancel too (the user's "this wasn't me" before the call).
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    let other = r.json()["id"].as_str().unwrap().to_string();
    let t = auth(r.json()["poll_token"].as_str().unwrap());
    let r = authorized(addr, "DELETE", &format!("/v1/challenges/{other}"), &t).await;
    assert_eq!(r.json()["state"], "canceled");

    // Expiry: nobody calls this one; after its 2 s it is expired.
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = http(
        addr,
        "GET",
        &format!("/v1/challenges/{id}?wait=10"),
        &[("Authorization", &auth(&service))],
        b"",
    )
    .await;
    assert_eq!(r.json()["state"], "expired", "{}", r.body);
    assert_eq!(r.json()["reason"], "not called before its expiry");
    workers.abort();
}

#[tokio::test]
async fn policy_refuses_with_reasons() {
    let store = sqlite("api-policy").await;
    let (service, _) = keys(&store).await;
    let mut cfg = config();
    cfg.policy.allowed_countries = api::Countries::Only(vec!["JP".into()]);
    cfg.policy.per_number = api::RateLimit::new(2, std::time::Duration::from_secs(600));
    cfg.policy.per_user = api::RateLimit::new(1, std::time::Duration::from_secs(600));
    cfg.policy.max_concurrent_calls = 4;
    let addr = serve(AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(cfg),
    })
    .await;
    let post = |body: &'static str| post_json(addr, "/v1/challenges", &service, body);
    let r = post(r#"{"phone_number":"+442071838750"}"#).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("/country-not-allowed")
    );
    assert!(r.json()["detail"].as_str().unwrap().contains("GB"));
    let r = post(r#"{"phone_number":"+8190123456"}"#).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("/invalid-number")
    );
    assert_eq!(post(BODY).await.status, 201);
    assert_eq!(post(BODY).await.status, 201);
    let r = post(BODY).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("+81 ** **** **78 had 2 calls")
    );
    assert_eq!(r.headers["retry-after"], "600");
    // An idempotent replay is answered even at the limit.
    let idem = |k: &'static str| {
        let key = service.clone();
        async move {
            http(
                addr,
                "POST",
                "/v1/challenges",
                &[("Authorization", &auth(&key)), ("Idempotency-Key", k)],
                br#"{"phone_number":"+819011112222"}"#,
            )
            .await
        }
    };
    assert_eq!(idem("once").await.status, 201);
    // Three queued now; the cap is four.
    assert_eq!(
        post(r#"{"phone_number":"+819033334444"}"#).await.status,
        201
    );
    let r = post(r#"{"phone_number":"+819055556666"}"#).await;
    assert_eq!(r.status, 429);
    assert!(
        r.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("/too-many-calls"),
        "{}",
        r.body
    );
    assert_eq!(idem("once").await.status, 200);
    // A user without a verified phone cannot sign in.
    let r = post(r#"{"user_id":"nobody"}"#).await;
    assert_eq!(r.status, 409);
    assert!(
        r.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("/no-verified-phone")
    );
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
        let r = post(body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert!(
            r.json()["detail"].as_str().unwrap().contains(words),
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn rate_limits_per_user_and_per_api_key() {
    use store::ChallengeState::*;
    let store = sqlite("api-rates").await;
    let (service, _) = keys(&store).await;
    let (_, other_service) = store
        .create_api_key("idp-2", KeyKind::Service, 0)
        .await
        .unwrap();
    let mut cfg = config();
    cfg.policy.per_user = api::RateLimit::new(2, std::time::Duration::from_secs(600));
    cfg.policy.per_api_key = api::RateLimit::new(5, std::time::Duration::from_secs(60));
    let addr = serve(AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(cfg),
    })
    .await;
    let refused = |r: &Reply, words: &str, retry: &str| {
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(
            r.json()["type"]
                .as_str()
                .unwrap()
                .ends_with("/rate-limited")
        );
        let detail = r.json()["detail"].as_str().unwrap().to_string();
        assert!(detail.contains(words), "{detail}");
        assert_eq!(r.headers["retry-after"], retry);
    };

    // Alice's enrolment is her first challenge, her sign-in the second; a third is refused.
    let r = post_json(
        addr,
        "/v1/users/alice/phones",
        &service,
        r#"{"phone_number":"+819012345678"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let enrol = r.json()["challenge"]["id"].as_str().unwrap().to_string();
    for s in [Calling, Ringing, Answered, Approved] {
        assert!(
            store
                .transition(&enrol, s, now_ms(), None, None)
                .await
                .unwrap()
        );
    }
    let alice = r#"{"user_id":"alice"}"#;
    assert_eq!(
        post_json(addr, "/v1/challenges", &service, alice)
            .await
            .status,
        201
    );
    let r = post_json(addr, "/v1/challenges", &service, alice).await;
    refused(
        &r,
        "the user had 2 calls in the last 600 s (limit 2)",
        "600",
    );
    // Another API key is held to the same user limit.
    let r = post_json(addr, "/v1/challenges", &other_service, alice).await;
    refused(&r, "the user had 2", "600");

    // The first key has made 2 challenges: 3 more to other numbers, then it is refused.
    for n in 1..=3 {
        let body = format!(r#"{{"phone_number":"+81901111000{n}"}}"#);
        let r = post_json(addr, "/v1/challenges", &service, &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = post_json(
        addr,
        "/v1/challenges",
        &service,
        r#"{"phone_number":"+819011110009"}"#,
    )
    .await;
    refused(
        &r,
        "this API key had 5 calls in the last 60 s (limit 5)",
        "60",
    );
    // The other key is not.
    let r = post_json(
        addr,
        "/v1/challenges",
        &other_service,
        r#"{"phone_number":"+819011110009"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Requests a receiver got: headers and body.
type Received = Arc<std::sync::Mutex<Vec<(HashMap<String, String>, String)>>>;

/// A webhook receiver on loopback: answers 500 to the first delivery and 204 after; keeps
/// each request's headers and body.
async fn receiver() -> (SocketAddr, Received) {
    let got: Received = Arc::default();
    let lis = tokio::net::TcpListener::bind((V4, 0)).await.unwrap();
    let addr = lis.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = got.clone();
            move |headers: axum::http::HeaderMap, body: String| {
                let got = got.clone();
                async move {
                    let h = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    let mut g = got.lock().unwrap();
                    g.push((h, body));
                    if g.len() == 1 {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::NO_CONTENT
                    }
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(lis, app).await });
    (addr, got)
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_logged() {
    let store = sqlite("api-webhooks").await;
    let (service, _) = keys(&store).await;
    let (hook, got) = receiver().await;
    let mut cfg = config();
    cfg.webhooks.secret = b"webhook secret".to_vec();
    cfg.webhooks.first_retry = std::time::Duration::from_millis(200);
    // The receiver is on loopback, over plain HTTP.
    cfg.webhooks.callbacks.allow_http = true;
    cfg.webhooks.callbacks.allow = vec![api::callback::parse_net("127.0.0.0/8").unwrap()];
    let state = AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(cfg),
    };
    let workers = api::webhooks::spawn_workers(state.clone());
    let addr = serve(state).await;
    let body = format!(r#"{{"phone_number":"+819012345678","callback_url":"http://{hook}/hook"}}"#);
    let r = post_json(addr, "/v1/challenges", &service, &body).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    // Nothing is posted before the decision.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(got.lock().unwrap().is_empty());
    let r = http(
        addr,
        "DELETE",
        &format!("/v1/challenges/{id}"),
        &[("Authorization", &auth(&service))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let deadline = tokio::time::Instant::now() + BOUND;
    while store.webhook_attempts(&id).await.unwrap().len() < 2
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let attempts = store.webhook_attempts(&id).await.unwrap();
    let statuses: Vec<Option<i64>> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(204)]);
    assert!(
        attempts[1].at_ms - attempts[0].at_ms >= 200,
        "backoff: {attempts:?}"
    );
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "delivered once it succeeded, not again");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (n, (headers, body)) in got.iter().enumerate() {
        let sig = &headers["callverify-signature"];
        assert!(api::webhooks::verify_signature(
            b"webhook secret",
            sig,
            body.as_bytes(),
            now
        ));
        assert!(!api::webhooks::verify_signature(
            b"other",
            sig,
            body.as_bytes(),
            now
        ));
        assert!(
            !api::webhooks::verify_signature(b"webhook secret", sig, body.as_bytes(), now + 3600),
            "stale"
        );
        assert_eq!(headers["callverify-delivery"], format!("{id}/{}", n + 1));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["type"], "challenge.decided");
        assert_eq!(
            (
                v["challenge"]["id"].as_str(),
                v["challenge"]["state"].as_str()
            ),
            (Some(id.as_str()), Some("canceled"))
        );
        assert!(v["challenge"].get("poll_token").is_none());
    }
    workers.abort();
}

#[tokio::test]
async fn users_phones_and_trusted_devices() {
    use store::ChallengeState::*;
    let store = sqlite("api-users").await;
    let (service, _) = keys(&store).await;
    let addr = serve(AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: cfg(),
    })
    .await;
    let key = auth(&service);
    // Decides a challenge as the call runner does when '#' is pressed.
    let approve = |id: String| {
        let store = store.clone();
        async move {
            for s in [Calling, Ringing, Answered, Approved] {
                assert!(
                    store
                        .transition(&id, s, now_ms(), None, None)
                        .await
                        .unwrap()
                );
            }
        }
    };

    // Registering a phone calls it; it is verified once the call is approved.
    let r = post_json(
        addr,
        "/v1/users/alice/phones",
        &service,
        r#"{"phone_number":"+819012345678","language":"ja"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let reg = r.json();
    assert_eq!(reg["phone"]["state"], "pending");
    assert_eq!(reg["phone"]["role"], "primary");
    assert_eq!(reg["phone"]["phone_number"], "+81 ** **** **78");
    assert_eq!(reg["challenge"]["purpose"], "enroll");
    assert!(
        reg["challenge"]["poll_token"]
            .as_str()
            .unwrap()
            .starts_with("cvp_")
    );
    let phone_id = reg["phone"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.headers["location"],
        format!("/v1/users/alice/phones/{phone_id}")
    );
    // Not verified yet: a sign-in has no phone to call.
    assert_eq!(
        post_json(addr, "/v1/challenges", &service, r#"{"user_id":"alice"}"#)
            .await
            .status,
        409
    );
    approve(reg["challenge"]["id"].as_str().unwrap().to_string()).await;
    let r = authorized(addr, "GET", "/v1/users/alice/phones", &key).await;
    assert_eq!(r.json()["phones"][0]["state"], "verified", "{}", r.body);

    // A sign-in of the user calls the verified phone; "don't ask again" gives a token.
    let r = post_json(
        addr,
        "/v1/challenges",
        &service,
        r#"{"user_id":"alice","remember_device":true}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["phone_number"], "+81 ** **** **78");
    assert!(r.json().get("trusted_device_token").is_none());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let poll = auth(r.json()["poll_token"].as_str().unwrap());
    approve(id.clone()).await;
    let r = authorized(addr, "GET", &format!("/v1/challenges/{id}"), &poll).await;
    let td = r.json()["trusted_device_token"]
        .as_str()
        .expect("a token")
        .to_string();
    assert!(td.starts_with("cvt_"));
    let until = r.json()["trusted_until"].as_str().unwrap().to_string();
    assert!(until.as_str() > r.json()["decided_at"].as_str().unwrap());

    // The next sign-in with it is approved without a call.
    let with = |t: &str| format!(r#"{{"user_id":"alice","trusted_device_token":"{t}"}}"#);
    let r = post_json(addr, "/v1/challenges", &service, &with(&td)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (r.json()["state"].as_str(), r.json()["reason"].as_str()),
        (Some("approved"), Some("trusted_device"))
    );
    // Not for another user, not forged: those are called.
    let r = post_json(
        addr,
        "/v1/challenges",
        &service,
        &with(&td).replace("alice", "bob"),
    )
    .await;
    assert_eq!(r.status, 409, "bob has no phone: {}", r.body);
    // Change the signature's last character (to one it is not already).
    let last = if td.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &td[..td.len() - 1]);
    let r = post_json(addr, "/v1/challenges", &service, &with(&forged)).await;
    assert_eq!(r.json()["state"], "queued");

    // Revoked: called again.
    let r = authorized(addr, "GET", "/v1/users/alice/trusted-devices", &key).await;
    let devices = r.json()["trusted_devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["active"], true);
    let dev = devices[0]["id"].as_str().unwrap();
    let r = authorized(
        addr,
        "DELETE",
        &format!("/v1/users/alice/trusted-devices/{dev}"),
        &key,
    )
    .await;
    assert_eq!(r.status, 204);
    let r = authorized(
        addr,
        "DELETE",
        &format!("/v1/users/alice/trusted-devices/{dev}"),
        &key,
    )
    .await;
    assert_eq!(r.status, 404);
    let r = post_json(addr, "/v1/challenges", &service, &with(&td)).await;
    assert_eq!(r.json()["state"], "queued");
    let r = authorized(addr, "DELETE", "/v1/users/alice/trusted-devices", &key).await;
    assert_eq!(r.json()["revoked"], 0);

    // A fallback phone; removing phones.
    let r = post_json(
        addr,
        "/v1/users/alice/phones",
        &service,
        r#"{"phone_number":"+819033334444","role":"fallback"}"#,
    )
    .await;
    assert_eq!(r.json()["phone"]["role"], "fallback");
    // Alice has a verified primary phone: the fallback is called only once that approves.
    assert_eq!(r.json()["challenge"]["confirm_primary"], true, "{}", r.body);
    let r = authorized(addr, "GET", "/v1/users/alice/phones", &key).await;
    assert_eq!(r.json()["phones"].as_array().unwrap().len(), 2);
    // A verified phone is removed only with a phone_admin key.
    let path = format!("/v1/users/alice/phones/{phone_id}");
    let r = authorized(addr, "DELETE", &path, &key).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let (admin_key, admin) = store
        .create_api_key_with("idp-admin", KeyKind::Service, true, 0)
        .await
        .unwrap();
    assert!(admin_key.phone_admin);
    let r = authorized(addr, "DELETE", &path, &auth(&admin)).await;
    assert_eq!(r.status, 204);
    let r = authorized(
        addr,
        "DELETE",
        &format!("/v1/users/bob/phones/{phone_id}"),
        &key,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        post_json(addr, "/v1/challenges", &service, r#"{"user_id":"alice"}"#)
            .await
            .status,
        409
    );
}

#[tokio::test]
async fn the_pages_are_served_and_the_demo_page_is_off_unless_configured() {
    let store = sqlite("api-pages").await;
    let addr = serve(AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: cfg(),
    })
    .await;
    let r = http(addr, "GET", "/console", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/html"));
    assert!(r.headers["content-security-policy"].contains("connect-src 'self'"));
    assert!(r.body.contains("Operator key"));
    for (method, path) in [
        ("GET", "/demo"),
        ("POST", "/demo/api/sign-in"),
        ("POST", "/demo/api/register"),
    ] {
        let r = http(addr, method, path, &[], br#"{"user_id":"alice"}"#).await;
        assert_eq!(r.status, 404, "{method} {path}");
        assert!(r.json()["type"].as_str().unwrap().ends_with("/demo-off"));
    }

    // On: the backend answers for the page with its own key, and problem+json on bad input.
    let (key, _) = store
        .create_api_key("demo page", KeyKind::Service, 0)
        .await
        .unwrap();
    let addr = serve(AppState {
        store,
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(ApiConfig {
            demo_page: Some(key),
            demo_numbers: vec![store::PhoneNumber::parse("+819012345678").unwrap()],
            ..config()
        }),
    })
    .await;
    assert_eq!(http(addr, "GET", "/demo", &[], b"").await.status, 200);
    let post = |path: &'static str, body: &'static str| {
        http(
            addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    let r = post("/demo/api/sign-in", r#"{"user_id":"alice"}"#).await;
    assert_eq!(
        (r.status, r.json()["next"].as_str()),
        (200, Some("register"))
    );
    let r = post("/demo/api/sign-in", r#"{"user_id":"a b"}"#).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = post("/demo/api/sign-in", r#"{"user":"alice"}"#).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Not JSON (what another site's form or no-cors fetch could send): refused.
    let r = http(
        addr,
        "POST",
        "/demo/api/register",
        &[("Content-Type", "text/plain")],
        br#"{"user_id":"alice","phone_number":"+819012345678"}"#,
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.body);
    let r = post(
        "/demo/api/register",
        r#"{"user_id":"alice","phone_number":"+819012345678","language":"ja"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c = &r.json()["challenge"];
    assert_eq!(
        (c["purpose"].as_str(), c["state"].as_str()),
        (Some("enroll"), Some("queued"))
    );
    assert!(c["poll_token"].as_str().unwrap().starts_with("cvp_"));
    assert!(!r.body.contains("cvk_"), "no API key in the answer");
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let store = sqlite("api-openapi").await;
    let (service, _) = keys(&store).await;
    let addr = serve(AppState {
        store,
        runner: None,
        readiness: Default::default(),
        cfg: cfg(),
    })
    .await;
    let r = http(addr, "GET", "/openapi.json", &[], b"").await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    let mut expected = vec![
        "POST /v1/challenges",
        "GET /v1/challenges/{id}",
        "DELETE /v1/challenges/{id}",
        "GET /v1/challenges/{id}/events",
        "POST /v1/users/{user_id}/phones",
        "GET /v1/users/{user_id}/phones",
        "DELETE /v1/users/{user_id}/phones/{phone_id}",
        "GET /v1/users/{user_id}/trusted-devices",
        "DELETE /v1/users/{user_id}/trusted-devices",
        "DELETE /v1/users/{user_id}/trusted-devices/{device_id}",
        "GET /v1/users/{user_id}/fraud-block",
        "DELETE /v1/users/{user_id}/fraud-block",
        "GET /v1/calls",
        "GET /v1/calls/{id}",
        "GET /healthz",
        "GET /readyz",
    ];
    expected.sort();
    assert_eq!(documented, expected);
    // Every documented operation is routed: with a key it never meets the router's "no
    // route" or "method not allowed", and every answer it documents is a real status.
    for op in &documented {
        let (method, path) = op.split_once(' ').unwrap();
        let concrete = path
            .replace("{id}", "x_1")
            .replace("{user_id}", "alice")
            .replace("{phone_id}", "ph_1")
            .replace("{device_id}", "td_1");
        let r = http(
            addr,
            method,
            &concrete,
            &[("Authorization", &auth(&service))],
            if method == "POST" { b"{}" } else { b"" },
        )
        .await;
        let kind = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_default();
        assert!(
            !kind.ends_with("/no-route") && !kind.ends_with("/method-not-allowed"),
            "{op}: {} {}",
            r.status,
            r.body
        );
        let responses = doc["paths"][path][method.to_lowercase()]["responses"]
            .as_object()
            .unwrap();
        assert!(
            responses.contains_key(&r.status.to_string())
                || r.status == 403 && method == "GET" && path.starts_with("/v1/calls"),
            "{op} answered {} which it does not document: {}",
            r.status,
            r.body
        );
    }
    // Each operation says how it authenticates, and the schemas it names exist.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ChallengeView",
        "CreateRequest",
        "CallPage",
        "CallDetail",
        "PhoneView",
        "ProblemDoc",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
}

#[tokio::test]
async fn cancel_hangs_up_a_ringing_call() {
    let store = sqlite("api-cancel-call").await;
    let (service, operator) = keys(&store).await;
    let sipp = Sipp::start("ring_no_answer", Transport::Udp, V4);
    let runner = runner_through(store.clone(), sipp.addr).await;
    let addr = serve(AppState {
        store: store.clone(),
        runner: Some(Arc::new(runner)),
        readiness: Default::default(),
        cfg: cfg(),
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
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(outcome, "canceled");
    let r = authorized(addr, "GET", &path, &key).await;
    assert_eq!(
        r.json()["state"],
        "canceled",
        "still: a decided challenge never changes"
    );
}

/// Moves a challenge through the states a call takes it to `last`, as the call runner does,
/// `at` ms since the epoch.
async fn decided(store: &Store, id: &str, last: store::ChallengeState, at: i64) {
    use store::ChallengeState::*;
    for s in [Calling, Ringing, Answered, last] {
        assert!(
            store.transition(id, s, at, None, None).await.unwrap(),
            "{id} to {s}"
        );
    }
}

/// Registers `number` as `user`'s primary phone and approves the enrolment call.
async fn enrolled(addr: SocketAddr, store: &Store, key: &str, user: &str, number: &str) {
    let r = post_json(
        addr,
        &format!("/v1/users/{user}/phones"),
        key,
        &format!(r#"{{"phone_number":"{number}"}}"#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["challenge"]["id"].as_str().unwrap().to_string();
    decided(store, &id, store::ChallengeState::Approved, now_ms()).await;
}

fn kind_of(r: &Reply) -> String {
    r.json()["type"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Premium-rate, shared-cost, personal and other costly numbers of allowed countries are
/// refused by their type (libphonenumber's metadata) unless the policy lists the type.
#[tokio::test]
async fn costly_numbers_are_refused_by_their_type() {
    let store = sqlite("api-number-types").await;
    let (service, _) = keys(&store).await;
    let mut cfg = config();
    cfg.policy.allowed_countries =
        api::Countries::Only(vec!["US".into(), "GB".into(), "JP".into()]);
    let addr = serve(AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(cfg.clone()),
    })
    .await;
    for (number, kind) in [
        ("+19002345678", "premium_rate"),
        ("+449012345678", "premium_rate"),
        ("+81990123456", "premium_rate"),
        ("+448431234567", "premium_rate"),
        ("+447012345678", "personal_number"),
        ("+18002345678", "toll_free"),
    ] {
        let r = post_json(
            addr,
            "/v1/challenges",
            &service,
            &format!(r#"{{"phone_number":"{number}"}}"#),
        )
        .await;
        assert_eq!(r.status, 403, "{number}: {}", r.body);
        assert_eq!(kind_of(&r), "number-type-not-allowed", "{}", r.body);
        let detail = r.json()["detail"].as_str().unwrap().to_string();
        assert!(detail.contains(&format!("a {kind} number")), "{detail}");
        // Registering one as a phone is refused the same way.
        let r = post_json(
            addr,
            "/v1/users/mallory/phones",
            &service,
            &format!(r#"{{"phone_number":"{number}"}}"#),
        )
        .await;
        assert_eq!(
            (r.status, kind_of(&r).as_str()),
            (403, "number-type-not-allowed")
        );
    }
    // Mobile, fixed line and either are called.
    for number in ["+819012345678", "+442071838750", "+12025550123"] {
        let r = post_json(
            addr,
            "/v1/challenges",
            &service,
            &format!(r#"{{"phone_number":"{number}"}}"#),
        )
        .await;
        assert_eq!(r.status, 201, "{number}: {}", r.body);
    }
    // A type the policy lists is called.
    cfg.policy
        .allowed_number_types
        .push(api::NumberType::PremiumRate);
    let addr = serve(AppState {
        store,
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(cfg),
    })
    .await;
    let r = post_json(
        addr,
        "/v1/challenges",
        &service,
        r#"{"phone_number":"+449012345678"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Calls to one country are capped in a window, with another cap for some countries.
#[tokio::test]
async fn calls_per_country_are_capped() {
    let store = sqlite("api-per-country").await;
    let (service, _) = keys(&store).await;
    let mut cfg = config();
    cfg.policy.per_country = api::CountryLimit {
        limit: api::RateLimit::new(2, std::time::Duration::from_secs(3600)),
        overrides: [("JP".to_string(), 3)].into(),
    };
    let addr = serve(AppState {
        store,
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(cfg),
    })
    .await;
    let post = |n: &str| {
        let body = format!(r#"{{"phone_number":"{n}"}}"#);
        let service = service.clone();
        async move { post_json(addr, "/v1/challenges", &service, &body).await }
    };
    for n in ["+819011110001", "+819011110002", "+819011110003"] {
        assert_eq!(post(n).await.status, 201);
    }
    let r = post("+819011110004").await;
    assert_eq!((r.status, kind_of(&r).as_str()), (429, "rate-limited"));
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("country JP had 3 calls in the last 3600 s (limit 3)"),
        "{}",
        r.body
    );
    assert_eq!(r.headers["retry-after"], "3600");
    for n in ["+12025550123", "+12025550124"] {
        assert_eq!(post(n).await.status, 201);
    }
    let r = post("+12025550125").await;
    assert_eq!(r.status, 429);
    assert!(r.body.contains("country US had 2 calls"), "{}", r.body);
    assert_eq!(post("+442071838750").await.status, 201);
}

/// `n` requests at once, each on its own connection, spread over `addrs` in turn: their
/// answers.
async fn at_once(
    addrs: &[SocketAddr],
    n: usize,
    key: &str,
    extra: &[(&'static str, &'static str)],
    body: &'static str,
) -> Vec<Reply> {
    at_once_each(addrs, key, extra, vec![body.to_string(); n]).await
}

/// One request for each of `bodies` at once (as [`at_once`]).
async fn at_once_each(
    addrs: &[SocketAddr],
    key: &str,
    extra: &[(&'static str, &'static str)],
    bodies: Vec<String>,
) -> Vec<Reply> {
    let start = Arc::new(tokio::sync::Barrier::new(bodies.len()));
    let tasks: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let (addr, start) = (addrs[i % addrs.len()], start.clone());
            let mut headers = vec![("Authorization".to_string(), auth(key))];
            headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            tokio::spawn(async move {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                start.wait().await;
                http(addr, "POST", "/v1/challenges", &h, body.as_bytes()).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// 50 requests at once for one new number with a limit of 5 make exactly 5 challenges and 45
/// answers 429; 20 at once with one Idempotency-Key make one challenge, the others its
/// replays (even with the number's limit reached).
async fn bursts_are_held_to_the_limits(stores: Vec<Store>) {
    let (service, _) = keys(&stores[0]).await;
    let mut cfg = config();
    cfg.policy.per_number = api::RateLimit::new(5, std::time::Duration::from_secs(600));
    let cfg = Arc::new(cfg);
    let mut addrs = Vec::new();
    for store in &stores {
        addrs.push(
            serve(AppState {
                store: store.clone(),
                runner: None,
                readiness: Default::default(),
                cfg: cfg.clone(),
            })
            .await,
        );
    }
    let number = store::PhoneNumber::parse("+819012340000").unwrap();
    let replies = at_once(
        &addrs,
        50,
        &service,
        &[],
        r#"{"phone_number":"+819012340000"}"#,
    )
    .await;
    let count = |s: u16| replies.iter().filter(|r| r.status == s).count();
    let made = stores[0]
        .count_challenges(store::Scope::Phone(&number), 0)
        .await
        .unwrap();
    eprintln!(
        "50 at once over {} node(s): {} created (201), {} refused (429), {} challenges stored",
        addrs.len(),
        count(201),
        count(429),
        made
    );
    assert_eq!((count(201), count(429), made), (5, 45, 5));
    assert!(
        replies
            .iter()
            .filter(|r| r.status == 429)
            .all(|r| kind_of(r) == "rate-limited"),
        "{}",
        replies.iter().find(|r| r.status != 201).unwrap().body
    );

    // One Idempotency-Key sent 20 times at once (the number is at its limit already).
    let replies = at_once(
        &addrs,
        20,
        &service,
        &[("Idempotency-Key", "burst-1")],
        r#"{"phone_number":"+819012349999"}"#,
    )
    .await;
    let ids: std::collections::HashSet<String> = replies
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or("none").to_string())
        .collect();
    assert_eq!(
        replies.iter().filter(|r| r.status == 201).count(),
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 19);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let replayed = at_once(
        &addrs,
        4,
        &service,
        &[("Idempotency-Key", "burst-1")],
        r#"{"phone_number":"+819012349999"}"#,
    )
    .await;
    assert!(replayed.iter().all(|r| r.status == 200));

    // The cap on challenges waiting for a call: 5 more places, 50 numbers at once.
    let active = stores[0].active_challenges().await.unwrap() as u32;
    let mut cfg = config();
    cfg.policy.max_concurrent_calls = active + 5;
    let cfg = Arc::new(cfg);
    let mut addrs = Vec::new();
    for store in &stores {
        addrs.push(
            serve(AppState {
                store: store.clone(),
                runner: None,
                readiness: Default::default(),
                cfg: cfg.clone(),
            })
            .await,
        );
    }
    let bodies = (0..50)
        .map(|i| format!(r#"{{"phone_number":"+8190555{i:05}"}}"#))
        .collect();
    let replies = at_once_each(&addrs, &service, &[], bodies).await;
    let count = |s: u16| replies.iter().filter(|r| r.status == s).count();
    eprintln!(
        "50 numbers at once, 5 places left under the cap: {} created, {} refused",
        count(201),
        count(429)
    );
    assert_eq!((count(201), count(429)), (5, 45));
    assert!(
        replies
            .iter()
            .filter(|r| r.status == 429)
            .all(|r| kind_of(r) == "too-many-calls")
    );
    assert_eq!(
        stores[0].active_challenges().await.unwrap() as u32,
        active + 5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_at_once_make_exactly_five_challenges_on_sqlite() {
    bursts_are_held_to_the_limits(vec![sqlite("api-burst").await]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_at_once_over_two_nodes_make_exactly_five_challenges_on_postgresql() {
    let pg = callverify_e2e::Postgres::start("api-burst");
    let a = Store::open(&pg.url).await.unwrap().cached().unwrap();
    let b = Store::open(&pg.url).await.unwrap().cached().unwrap();
    bursts_are_held_to_the_limits(vec![a, b]).await;
}

/// A fraud report (0#) blocks the user and the number for `fraud_block_hours`: new
/// challenges answer 403 `fraud-block` with the time it lifts, a trusted device does not get
/// around it (its token is revoked too), the webhook says `fraud_reported`; the service key
/// lifts it early, and the lift is kept with the key that made it.
#[tokio::test]
async fn a_fraud_report_blocks_the_user_and_the_number_until_it_is_lifted() {
    use store::ChallengeState::*;
    let store = sqlite("api-fraud").await;
    let (service, _) = keys(&store).await;
    let (hook, got) = receiver().await;
    let mut cfg = config();
    cfg.webhooks.secret = b"webhook secret".to_vec();
    cfg.webhooks.first_retry = std::time::Duration::from_millis(200);
    cfg.policy.fraud_block = std::time::Duration::from_secs(3 * 3600);
    // The receiver is on loopback, over plain HTTP.
    cfg.webhooks.callbacks.allow_http = true;
    cfg.webhooks.callbacks.allow = vec![api::callback::parse_net("127.0.0.0/8").unwrap()];
    let state = AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(cfg),
    };
    let workers = api::webhooks::spawn_workers(state.clone());
    let addr = serve(state).await;
    enrolled(addr, &store, &service, "alice", "+819012345678").await;
    // A trusted device, then a sign-in on which alice presses 0#.
    let r = post_json(
        addr,
        "/v1/challenges",
        &service,
        r#"{"user_id":"alice","remember_device":true}"#,
    )
    .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    decided(&store, &id, Approved, now_ms()).await;
    let r = authorized(
        addr,
        "GET",
        &format!("/v1/challenges/{id}"),
        &auth(&service),
    )
    .await;
    let td = r.json()["trusted_device_token"]
        .as_str()
        .unwrap()
        .to_string();
    let body = format!(r#"{{"user_id":"alice","callback_url":"http://{hook}/hook"}}"#);
    let r = post_json(addr, "/v1/challenges", &service, &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let reported = r.json()["id"].as_str().unwrap().to_string();
    let at = now_ms();
    decided(&store, &reported, FraudReported, at).await;

    let refused = |r: &Reply| {
        assert_eq!(
            (r.status, kind_of(r).as_str()),
            (403, "fraud-block"),
            "{}",
            r.body
        );
        let until = api::rfc3339(at + 3 * 3_600_000);
        assert_eq!(r.json()["blocked_until"], until.as_str(), "{}", r.body);
        assert!(r.json()["detail"].as_str().unwrap().contains(&until));
        let retry: u64 = r.headers["retry-after"].parse().unwrap();
        assert!((3 * 3600 - 60..=3 * 3600).contains(&retry), "{retry}");
    };
    refused(&post_json(addr, "/v1/challenges", &service, r#"{"user_id":"alice"}"#).await);
    // A trusted-device token does not get around it.
    let with_td = format!(r#"{{"user_id":"alice","trusted_device_token":"{td}"}}"#);
    refused(&post_json(addr, "/v1/challenges", &service, &with_td).await);
    // The number is blocked too, whoever asks for it.
    refused(&post_json(addr, "/v1/challenges", &service, BODY).await);
    refused(
        &post_json(
            addr,
            "/v1/users/bob/phones",
            &service,
            r#"{"phone_number":"+819012345678"}"#,
        )
        .await,
    );
    // Others are not.
    assert_eq!(
        post_json(
            addr,
            "/v1/challenges",
            &service,
            r#"{"phone_number":"+819011112222"}"#
        )
        .await
        .status,
        201
    );
    // The report revoked alice's trusted devices.
    let r = authorized(
        addr,
        "GET",
        "/v1/users/alice/trusted-devices",
        &auth(&service),
    )
    .await;
    assert_eq!(
        r.json()["trusted_devices"][0]["active"],
        false,
        "{}",
        r.body
    );
    // The webhook of the reported challenge says so (its first attempt gets a 500).
    let deadline = tokio::time::Instant::now() + BOUND;
    while got.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let deliveries = got.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 2);
    for (_, body) in &deliveries {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["challenge"]["id"], reported.as_str());
        assert_eq!(v["challenge"]["state"], "fraud_reported");
    }

    // Listed; lifted by the service key; the lift is kept.
    let path = "/v1/users/alice/fraud-block";
    let r = authorized(addr, "GET", path, &auth(&service)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let blocks = r.json()["fraud_blocks"].as_array().unwrap().clone();
    assert_eq!(blocks.len(), 1, "{}", r.body);
    assert_eq!(
        (
            blocks[0]["active"].as_bool(),
            blocks[0]["challenge_id"].as_str(),
            blocks[0]["phone_number"].as_str()
        ),
        (
            Some(true),
            Some(reported.as_str()),
            Some("+81 ** **** **78")
        )
    );
    let r = authorized(addr, "DELETE", path, &auth(&service)).await;
    assert_eq!((r.status, r.json()["lifted"].as_u64()), (200, Some(1)));
    let r = authorized(addr, "GET", path, &auth(&service)).await;
    let block = &r.json()["fraud_blocks"][0];
    assert_eq!(block["active"], false);
    let by = block["lifted_by"].as_str().unwrap();
    assert!(by.starts_with("key_") && by.ends_with(" (idp)"), "{by}");
    assert!(block["lifted_at"].is_string());
    let r = post_json(addr, "/v1/challenges", &service, r#"{"user_id":"alice"}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        authorized(addr, "DELETE", path, &auth("cvk_unknown"))
            .await
            .status,
        401
    );
    workers.abort();
}

/// Operator keys never see trusted-device tokens; a poll token stops working 10 minutes
/// after the decision; a trusted device presented with remember_device keeps its expiry; a
/// new primary phone revokes the user's trusted devices.
#[tokio::test]
async fn tokens_are_shown_only_to_their_owners_and_do_not_renew() {
    use store::ChallengeState::*;
    let store = sqlite("api-tokens").await;
    let (service, operator) = keys(&store).await;
    let addr = serve(AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: cfg(),
    })
    .await;
    enrolled(addr, &store, &service, "alice", "+819012345678").await;
    let sign_in = |body: &'static str| post_json(addr, "/v1/challenges", &service, body);
    let r = sign_in(r#"{"user_id":"alice","remember_device":true}"#).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let poll = auth(r.json()["poll_token"].as_str().unwrap());
    // Decided nine minutes ago.
    decided(&store, &id, Approved, now_ms() - 9 * 60_000).await;
    let path = format!("/v1/challenges/{id}");
    let r = authorized(addr, "GET", &path, &auth(&operator)).await;
    assert_eq!(r.status, 200);
    assert!(
        r.json().get("trusted_device_token").is_none() && !r.body.contains("cvt_"),
        "an operator sees no token: {}",
        r.body
    );
    let (status, events) = sse(addr, &format!("{path}/events"), &auth(&operator)).await;
    assert_eq!(status, 200);
    assert!(events[0].get("trusted_device_token").is_none());
    let r = authorized(addr, "GET", &path, &poll).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let td = r.json()["trusted_device_token"]
        .as_str()
        .unwrap()
        .to_string();
    let until = r.json()["trusted_until"].as_str().unwrap().to_string();
    assert!(
        authorized(addr, "GET", &path, &auth(&service))
            .await
            .body
            .contains(&td)
    );

    // Ten minutes after the decision the poll token no longer reads nor cancels.
    let r = sign_in(r#"{"user_id":"alice"}"#).await;
    let old = r.json()["id"].as_str().unwrap().to_string();
    let old_poll = auth(r.json()["poll_token"].as_str().unwrap());
    decided(&store, &old, Denied, now_ms() - 11 * 60_000).await;
    let old_path = format!("/v1/challenges/{old}");
    let r = authorized(addr, "GET", &old_path, &old_poll).await;
    assert_eq!(
        (r.status, kind_of(&r).as_str()),
        (401, "poll-token-expired")
    );
    assert_eq!(
        sse(addr, &format!("{old_path}/events"), &old_poll).await.0,
        401
    );
    assert_eq!(
        authorized(addr, "DELETE", &old_path, &old_poll)
            .await
            .status,
        401
    );
    assert_eq!(
        authorized(addr, "GET", &old_path, &auth(&service))
            .await
            .status,
        200
    );

    // Presented again with remember_device: approved, and the device keeps its expiry.
    let body =
        format!(r#"{{"user_id":"alice","remember_device":true,"trusted_device_token":"{td}"}}"#);
    let r = post_json(addr, "/v1/challenges", &service, &body).await;
    assert_eq!(
        (r.json()["state"].as_str(), r.json()["reason"].as_str()),
        (Some("approved"), Some("trusted_device")),
        "{}",
        r.body
    );
    assert!(
        r.json().get("trusted_device_token").is_none(),
        "no new token: {}",
        r.body
    );
    let r = authorized(
        addr,
        "GET",
        "/v1/users/alice/trusted-devices",
        &auth(&service),
    )
    .await;
    let devices = r.json()["trusted_devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 1, "{}", r.body);
    assert_eq!(devices[0]["expires_at"], until.as_str());

    // A new primary phone (here by a phone_admin key, so without the old phone's call)
    // revokes the trusted devices.
    let (_, admin) = store
        .create_api_key_with("idp-admin", KeyKind::Service, true, 0)
        .await
        .unwrap();
    enrolled(addr, &store, &admin, "alice", "+819055556666").await;
    let r = authorized(
        addr,
        "GET",
        "/v1/users/alice/trusted-devices",
        &auth(&service),
    )
    .await;
    assert_eq!(
        r.json()["trusted_devices"][0]["active"],
        false,
        "{}",
        r.body
    );
    let r = post_json(addr, "/v1/challenges", &service, &body).await;
    assert_eq!(r.json()["state"], "queued", "called again: {}", r.body);
}

/// An enrolment for a user with a verified primary phone is marked to be approved on that
/// phone first (the runner calls it first), unless the key has `phone_admin`.
#[tokio::test]
async fn replacing_a_verified_phone_needs_it_unless_the_key_is_a_phone_admin() {
    let store = sqlite("api-replace").await;
    let (service, _) = keys(&store).await;
    let (_, admin) = store
        .create_api_key_with("idp-admin", KeyKind::Service, true, 0)
        .await
        .unwrap();
    let addr = serve(AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: cfg(),
    })
    .await;
    let register = |key: String, number: &'static str, role: &'static str| async move {
        let body = format!(r#"{{"phone_number":"{number}","role":"{role}"}}"#);
        let r = post_json(addr, "/v1/users/carol/phones", &key, &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["challenge"]["confirm_primary"].as_bool()
    };
    // The first phone: nothing to confirm with.
    assert_eq!(
        register(service.clone(), "+819011112222", "primary").await,
        None
    );
    enrolled(addr, &store, &service, "carol", "+819011112222").await;
    assert_eq!(
        register(service.clone(), "+819055556666", "primary").await,
        Some(true)
    );
    assert_eq!(
        register(service.clone(), "+819033334444", "fallback").await,
        Some(true)
    );
    assert_eq!(register(admin, "+819055556666", "primary").await, None);
    let c = store
        .phones("carol")
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.phone.as_e164() == Some("+819055556666"))
        .count();
    assert_eq!(c, 2);
}

/// The demo page's users are `demo:` users of its own, and it registers only its numbers:
/// it never reaches a real user's phone, and real keys cannot name its users.
#[tokio::test]
async fn the_demo_page_has_users_and_numbers_of_its_own() {
    let store = sqlite("api-demo-namespace").await;
    let (service, _) = keys(&store).await;
    let (demo_key, _) = store
        .create_api_key("demo page", KeyKind::Service, 0)
        .await
        .unwrap();
    let addr = serve(AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(ApiConfig {
            demo_page: Some(demo_key),
            demo_numbers: vec![store::PhoneNumber::parse("+819012345678").unwrap()],
            ..config()
        }),
    })
    .await;
    // A real user with a real phone.
    enrolled(addr, &store, &service, "alice", "+819011112222").await;
    let page = |path: &'static str, body: &'static str| {
        http(
            addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    // The page's alice is not the real alice: she has no phone yet.
    let r = page("/demo/api/sign-in", r#"{"user_id":"alice"}"#).await;
    assert_eq!(r.json()["next"], "register", "{}", r.body);
    // Only the demo's numbers.
    let r = page(
        "/demo/api/register",
        r#"{"user_id":"alice","phone_number":"+819077778888"}"#,
    )
    .await;
    assert_eq!(
        (r.status, kind_of(&r).as_str()),
        (403, "not-a-demo-number"),
        "{}",
        r.body
    );
    assert!(r.body.contains("+81 ** **** **78"), "{}", r.body);
    let r = page(
        "/demo/api/register",
        r#"{"user_id":"alice","phone_number":"+819012345678"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["challenge"]["user_id"], "demo:alice");
    let phones = store.phones("alice").await.unwrap();
    assert_eq!(phones.len(), 1);
    assert_eq!(
        phones[0].phone.as_e164(),
        Some("+819011112222"),
        "untouched"
    );
    assert_eq!(store.phones("demo:alice").await.unwrap().len(), 1);
    // Real keys cannot name demo users.
    for (method, path, body) in [
        ("POST", "/v1/challenges", r#"{"user_id":"demo:alice"}"#),
        (
            "POST",
            "/v1/users/demo:alice/phones",
            r#"{"phone_number":"+819012345678"}"#,
        ),
        ("GET", "/v1/users/demo:alice/phones", ""),
        ("DELETE", "/v1/users/demo:alice/trusted-devices", ""),
        ("DELETE", "/v1/users/demo:alice/fraud-block", ""),
    ] {
        let r = http(
            addr,
            method,
            path,
            &[("Authorization", &auth(&service))],
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 422, "{method} {path}: {}", r.body);
        assert!(r.body.contains("demo:"), "{}", r.body);
    }
}

/// Log lines name users by a keyed tag, never by their id.
#[tokio::test]
async fn logs_name_users_by_a_keyed_tag() {
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let lines = lines.clone();
            move || lines.clone()
        })
        .with_ansi(false)
        .finish();
    // This test's runtime has one thread: the server's tasks log through this subscriber.
    let _logs = tracing::subscriber::set_default(subscriber);
    let store = sqlite("api-log-users").await;
    let (service, _) = keys(&store).await;
    let addr = serve(AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: cfg(),
    })
    .await;
    let user = "alice.liddell@example.com";
    enrolled(addr, &store, &service, user, "+819012345678").await;
    // A forged token, and a genuine one of no device: both logged, both called.
    let unknown = api::trusted_device_token(b"test token secret", "td_unknown");
    for token in ["cvt_td_1.00", unknown.as_str()] {
        let body = format!(r#"{{"user_id":"{user}","trusted_device_token":"{token}"}}"#);
        let r = post_json(addr, "/v1/challenges", &service, &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    authorized(
        addr,
        "DELETE",
        &format!("/v1/users/{user}/fraud-block"),
        &auth(&service),
    )
    .await;
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let tag = api::user_tag(b"test token secret", user);
    assert_eq!(tag.len(), 12);
    for said in ["bad signature", "expired, revoked", "fraud block lifted"] {
        assert!(text.contains(said), "{said}: {text}");
    }
    assert_eq!(text.matches(&format!("user={tag}")).count(), 3, "{text}");
    assert!(!text.contains("alice"), "{text}");
    assert_ne!(tag, api::user_tag(b"another secret", user));
}
