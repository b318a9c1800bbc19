//! What the API's tests share: the API on a loopback port over a SQLite store of its own,
//! requests over fresh connections, keys, a webhook receiver, and challenges moved on as
//! the call runner moves them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use api::{ApiConfig, AppState};
use callverify_e2e::{BOUND, Sipp, V4, runner_through, sqlite_store};
use store::{KeyKind, Store, now_ms};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// A sign-in of the number most tests call.
pub const BODY: &str = r#"{"phone_number":"+819012345678","language":"ja"}"#;

/// An answer: its status, its headers (names in lower case) and its body.
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request over a fresh connection (the answer read within [`BOUND`]).
pub async fn http(
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

/// A request with no body and only an `Authorization` header (its whole value).
pub async fn authorized(addr: SocketAddr, method: &str, path: &str, authorization: &str) -> Reply {
    http(addr, method, path, &[("Authorization", authorization)], b"").await
}

/// The `Authorization` header's value for `k`.
pub fn auth(k: &str) -> String {
    format!("Bearer {k}")
}

/// A POST of the JSON `body` with `key`.
pub async fn post_json(addr: SocketAddr, path: &str, key: &str, body: &str) -> Reply {
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
pub async fn sse(addr: SocketAddr, path: &str, bearer: &str) -> (u16, Vec<serde_json::Value>) {
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

/// The last part of a problem's `type`.
pub fn kind_of(r: &Reply) -> String {
    r.json()["type"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Serves the API of `state` on a loopback port of its own.
pub async fn serve(state: AppState) -> SocketAddr {
    let lis = tokio::net::TcpListener::bind((V4, 0)).await.unwrap();
    let addr = lis.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(lis, api::router(state)).await });
    addr
}

/// A store as `serve` opens it: SQLite, with its copy of the challenges read.
pub async fn sqlite(name: &str) -> Store {
    sqlite_store(name).await.cached().unwrap()
}

/// The settings of most tests: every country may be called (the default is none).
pub fn config() -> ApiConfig {
    let mut c = ApiConfig {
        token_secret: b"test token secret".to_vec(),
        ..ApiConfig::default()
    };
    c.policy.allowed_countries = api::Countries::Any;
    c
}

/// `cfg` with webhooks signed with "webhook secret", retried 200 ms after a first failure,
/// and allowed to the receiver on loopback over plain HTTP.
pub fn with_loopback_webhooks(mut cfg: ApiConfig) -> ApiConfig {
    cfg.webhooks.secret = b"webhook secret".to_vec();
    cfg.webhooks.first_retry = std::time::Duration::from_millis(200);
    cfg.webhooks.callbacks.allow_http = true;
    cfg.webhooks.callbacks.allow = vec![api::callback::parse_net("127.0.0.0/8").unwrap()];
    cfg
}

/// The API's state over `store` with `cfg` and no call runner (challenges stay queued).
pub fn state(store: &Store, cfg: ApiConfig) -> AppState {
    AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(cfg),
    }
}

/// A service key ("idp") and an operator key ("ops"): their secrets.
pub async fn keys(store: &Store) -> (String, String) {
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

/// The API of one test: its store, its address and the secrets of its two keys.
pub struct Api {
    pub store: Store,
    pub addr: SocketAddr,
    pub service: String,
    pub operator: String,
}

impl Api {
    /// A SQLite store of its own named `name` with [`keys`], served with `cfg` and no call
    /// runner.
    pub async fn start(name: &str, cfg: ApiConfig) -> Api {
        Api::over(sqlite(name).await, |store| state(store, cfg)).await
    }

    /// As [`Api::start`], with the background work (webhook deliveries, expiry) running.
    pub async fn with_workers(name: &str, cfg: ApiConfig) -> (Api, JoinHandle<()>) {
        let store = sqlite(name).await;
        let state = state(&store, cfg);
        let workers = api::webhooks::spawn_workers(state.clone());
        (Api::over(store, |_| state).await, workers)
    }

    /// As [`Api::start`] over `store`, serving the state `of` makes of it.
    pub async fn over(store: Store, of: impl FnOnce(&Store) -> AppState) -> Api {
        let (service, operator) = keys(&store).await;
        let addr = serve(of(&store)).await;
        Api {
            store,
            addr,
            service,
            operator,
        }
    }
}

/// The challenge id the API answered with (it has the store's shape).
pub fn ch(id: &str) -> store::ChallengeId {
    store::ChallengeId::parse(id).unwrap_or_else(|| panic!("{id:?} is not a challenge id"))
}

/// Moves a challenge through the states a call takes it to `last`, as the call runner does,
/// `at` ms since the epoch.
pub async fn decided(store: &Store, id: &str, last: store::ChallengeState, at: i64) {
    use store::ChallengeState::*;
    for s in [Calling, Ringing, Answered, last] {
        assert!(
            store.transition(&ch(id), s, at, None, None).await.unwrap(),
            "{id} to {s}"
        );
    }
}

/// Registers `number` as `user`'s primary phone and approves the enrolment call.
pub async fn enrolled(addr: SocketAddr, store: &Store, key: &str, user: &str, number: &str) {
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

/// A sign-in of `user` that asked to remember the device, approved at `at`: its id, its
/// poll token (as a header value), and the trusted-device token and expiry the poll token
/// reads.
pub struct Remembered {
    pub id: String,
    pub poll: String,
    pub token: String,
    pub until: String,
}

/// Signs `user` in with `remember_device` through `api`'s service key, approved at `at`.
pub async fn remembered(api: &Api, user: &str, at: i64) -> Remembered {
    let body = format!(r#"{{"user_id":"{user}","remember_device":true}}"#);
    let r = post_json(api.addr, "/v1/challenges", &api.service, &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let poll = auth(r.json()["poll_token"].as_str().unwrap());
    decided(&api.store, &id, store::ChallengeState::Approved, at).await;
    let r = authorized(api.addr, "GET", &format!("/v1/challenges/{id}"), &poll).await;
    assert_eq!(r.status, 200, "{}", r.body);
    Remembered {
        id,
        poll,
        token: r.json()["trusted_device_token"]
            .as_str()
            .expect("a token")
            .to_string(),
        until: r.json()["trusted_until"].as_str().unwrap().to_string(),
    }
}

/// Requests a receiver got: headers and body.
pub type Received = Arc<std::sync::Mutex<Vec<(HashMap<String, String>, String)>>>;

/// A webhook receiver on loopback: answers 500 to the first delivery and 204 after; keeps
/// each request's headers and body.
pub async fn receiver() -> (SocketAddr, Received) {
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

/// A challenge called through sipp, which answers and presses '#', while the front end
/// long-polls it with its poll token until it is decided.
pub struct Called {
    pub api: Api,
    pub id: String,
    /// The states the long polls saw, in order, each once.
    pub seen: Vec<String>,
    /// The phone, still to finish.
    pub sipp: Sipp,
}

/// The states a call takes an approved challenge through, in order.
pub const APPROVED_ORDER: [&str; 5] = ["queued", "calling", "ringing", "answered", "approved"];

/// Makes a challenge through an API with a call runner whose trunk is sipp, and long-polls
/// it (bounded by [`BOUND`]) until it is decided.
pub async fn called_through_sipp(name: &str) -> Called {
    let sipp = Sipp::callee_pressing_pound(name, V4);
    let store = sqlite(name).await;
    let runner = Arc::new(runner_through(store.clone(), sipp.addr).await);
    // The dispatcher claims what the API queues; it ends with the test's runtime.
    runner.dispatch();
    let api = Api::over(store, |store| AppState {
        runner: Some(runner),
        ..state(store, config())
    })
    .await;
    let r = post_json(api.addr, "/v1/challenges", &api.service, BODY).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let token = auth(r.json()["poll_token"].as_str().unwrap());

    let mut seen = vec![r.json()["state"].as_str().unwrap().to_string()];
    let deadline = tokio::time::Instant::now() + BOUND;
    while tokio::time::Instant::now() < deadline {
        let path = format!("/v1/challenges/{id}?wait=5");
        let r = authorized(api.addr, "GET", &path, &token).await;
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
    Called {
        api,
        id,
        seen,
        sipp,
    }
}
