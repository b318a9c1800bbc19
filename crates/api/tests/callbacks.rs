//! Webhooks cannot reach inside: callback URLs to loopback, private, link-local and the
//! other special-purpose addresses are refused at creation, and checked again at each
//! delivery (a name is resolved once and the connection pinned to what was checked); a
//! failed attempt is logged as `refused by policy` or `no answer`, nothing finer. Over real
//! HTTP on loopback.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::callback::{CallbackPolicy, Resolver, parse_net};
use api::{ApiConfig, AppState};
use callverify_e2e::{BOUND, V4, sqlite_store};
use store::{KeyKind, Store, WebhookAttempt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request over a fresh connection: the status and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Names a test resolves, and what to: changed as the test goes.
type Names = Arc<Mutex<HashMap<String, Vec<IpAddr>>>>;

fn resolver_of(names: &Names) -> Resolver {
    let names = names.clone();
    Resolver::new(move |host| {
        match names.lock().unwrap().get(host) {
            Some(found) => {
                let found = found.clone();
                Box::pin(async move { Ok(found) })
            }
            // localhost and the like.
            None => Resolver::system().answer(host),
        }
    })
}

fn cfg(callbacks: CallbackPolicy) -> Arc<ApiConfig> {
    let mut cfg = ApiConfig {
        token_secret: b"test token secret".to_vec(),
        ..ApiConfig::default()
    };
    cfg.webhooks.secret = b"webhook secret".to_vec();
    cfg.webhooks.max_attempts = 1;
    cfg.webhooks.timeout = Duration::from_secs(2);
    cfg.webhooks.callbacks = callbacks;
    cfg.policy.allowed_countries = api::Countries::Only(vec!["JP".into()]);
    Arc::new(cfg)
}

async fn serve(state: AppState) -> SocketAddr {
    let lis = tokio::net::TcpListener::bind((V4, 0)).await.unwrap();
    let addr = lis.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(lis, api::router(state)).await });
    addr
}

async fn service_key(store: &Store) -> String {
    store
        .create_api_key("idp", KeyKind::Service, 0)
        .await
        .unwrap()
        .1
}

/// A challenge's body, each to a number of its own (the rate limits are per number).
fn challenge_with(url: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let number = format!("+8190{:08}", 10_000_000 + n);
    serde_json::json!({"phone_number": number, "callback_url": url}).to_string()
}

fn loopback_allowed() -> Vec<api::callback::IpNet> {
    vec![
        parse_net("127.0.0.0/8").unwrap(),
        parse_net("::1/128").unwrap(),
    ]
}

#[tokio::test]
async fn callbacks_to_inside_are_refused_at_creation() {
    let store = sqlite_store("callbacks-refused").await;
    let key = service_key(&store).await;
    let names: Names = Arc::default();
    names.lock().unwrap().insert(
        "public.example".into(),
        vec!["93.184.215.14".parse().unwrap()],
    );
    names.lock().unwrap().insert(
        "half-inside.example".into(),
        vec![
            "93.184.215.14".parse().unwrap(),
            "10.1.2.3".parse().unwrap(),
        ],
    );
    let state = |allow_http| AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: cfg(CallbackPolicy {
            allow_http,
            allow: Vec::new(),
            resolver: resolver_of(&names),
        }),
    };
    let https_only = serve(state(false)).await;
    let with_http = serve(state(true)).await;
    let create = |addr, url: &str| {
        let body = challenge_with(url);
        let key = key.clone();
        async move { http(addr, "POST", "/v1/challenges", &key, &body).await }
    };
    // With http allowed, so that each of these is refused for its address.
    for (url, words) in [
        ("http://127.0.0.1:5432/", "loopback"),
        (
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "link-local",
        ),
        ("http://[::1]:22/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("https://192.168.0.1/", "private"),
        ("https://172.16.5.4/", "private"),
        ("https://100.64.0.1/", "CGNAT"),
        ("https://0.0.0.0:8080/", "this network"),
        ("https://255.255.255.255/", "broadcast"),
        ("https://224.0.0.1/", "multicast"),
        ("https://192.0.2.1/", "documentation"),
        ("https://198.51.100.1/", "documentation"),
        ("https://203.0.113.1/", "documentation"),
        ("https://[fd00::1]/", "unique local"),
        ("https://[fe80::1]/", "link-local"),
        ("https://[ff02::1]/", "multicast"),
        ("https://[::]/", "unspecified"),
        ("https://[2001:db8::1]/", "documentation"),
        ("https://[::ffff:127.0.0.1]:5432/", "loopback"),
        ("https://[64:ff9b::a9fe:a9fe]/", "link-local"),
        ("https://2130706433:5432/", "loopback"),
        ("https://0x7f.1/", "loopback"),
        ("http://localhost:5432/", "loopback"),
        ("https://half-inside.example/hook", "private"),
        ("https://nowhere.invalid/hook", "does not resolve"),
        ("https://user:secret@public.example/hook", "user name"),
        ("gopher://public.example/", "https"),
    ] {
        let (status, body) = create(with_http, url).await;
        assert_eq!(status, 422, "{url}: {body}");
        let p: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            p["type"], "https://callverify.invalid/problems/callback-not-allowed",
            "{url}"
        );
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(words), "{url}: {detail}");
        assert!(!detail.contains("secret"), "{url}: {detail}");
    }
    let long = format!("https://public.example/{}", "a".repeat(2048));
    let (status, body) = create(with_http, &long).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("at most 2048"), "{body}");
    // Plain http needs allow_http_callbacks, even to a public address.
    let (status, body) = create(https_only, "http://93.184.215.14/hook").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("allow_http_callbacks"), "{body}");
    // A phone's registration takes the same check.
    let (status, body) = http(
        https_only,
        "POST",
        "/v1/users/alice/phones",
        &key,
        r#"{"phone_number":"+819012345678","callback_url":"https://127.0.0.1/hook"}"#,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("callback-not-allowed"), "{body}");
    // Public addresses and names that resolve to them only are taken.
    for url in [
        "https://93.184.215.14/hook",
        "https://public.example/hook?token=x",
        "https://[2606:4700::1111]:8443/hook",
    ] {
        let (status, body) = create(https_only, url).await;
        assert_eq!(status, 201, "{url}: {body}");
    }
    let (status, body) = create(with_http, "http://public.example/hook").await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn callback_allow_admits_the_listed_networks() {
    let store = sqlite_store("callbacks-allowed").await;
    let key = service_key(&store).await;
    let state = AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: cfg(CallbackPolicy {
            allow_http: true,
            allow: loopback_allowed(),
            resolver: Resolver::system(),
        }),
    };
    let addr = serve(state).await;
    for url in [
        "http://127.0.0.1:5432/",
        "http://[::1]:22/",
        "http://[::ffff:127.0.0.1]:22/",
        "http://localhost:8080/hook",
    ] {
        let (status, body) = http(addr, "POST", "/v1/challenges", &key, &challenge_with(url)).await;
        assert_eq!(status, 201, "{url}: {body}");
    }
    for url in ["http://10.0.0.1/", "http://169.254.169.254/"] {
        let (status, body) = http(addr, "POST", "/v1/challenges", &key, &challenge_with(url)).await;
        assert_eq!(status, 422, "{url}: {body}");
    }
}

/// Requests a receiver got.
type Got = Arc<Mutex<Vec<String>>>;

/// A webhook receiver on loopback answering 204.
async fn receiver() -> (SocketAddr, Got) {
    let got: Got = Arc::default();
    let lis = tokio::net::TcpListener::bind((V4, 0)).await.unwrap();
    let addr = lis.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = got.clone();
            move |body: String| {
                let got = got.clone();
                async move {
                    got.lock().unwrap().push(body);
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(lis, app).await });
    (addr, got)
}

/// Creates a challenge with `url` through `api` and cancels it (so its webhook is due).
async fn decided_with(api: SocketAddr, key: &str, url: &str) -> String {
    let (status, body) = http(api, "POST", "/v1/challenges", key, &challenge_with(url)).await;
    assert_eq!(status, 201, "{url}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let (status, _) = http(api, "DELETE", &format!("/v1/challenges/{id}"), key, "").await;
    assert_eq!(status, 200);
    id
}

/// The attempt logged for challenge `id` (waits for it, bounded).
async fn attempt(store: &Store, id: &str) -> WebhookAttempt {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let id = store::ChallengeId::parse(id).expect("a challenge id");
        if let Some(a) = store.webhook_attempts(&id).await.unwrap().pop() {
            return a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt logged for {id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A challenge made through `api` (with `key`) whose callback goes to `name` on `port`,
/// the name resolving to `public` when it is made and to `later` when it is cancelled: the
/// attempt at its delivery.
async fn re_resolved(
    store: &Store,
    names: &Names,
    (api, key, port): (SocketAddr, &str, u16),
    name: &str,
    public: IpAddr,
    later: Vec<IpAddr>,
) -> WebhookAttempt {
    names.lock().unwrap().insert(name.into(), vec![public]);
    let url = format!("http://{name}:{port}/hook");
    let (status, body) = http(api, "POST", "/v1/challenges", key, &challenge_with(&url)).await;
    assert_eq!(status, 201, "{body}");
    let id: String = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .into();
    names.lock().unwrap().insert(name.into(), later);
    let (status, _) = http(api, "DELETE", &format!("/v1/challenges/{id}"), key, "").await;
    assert_eq!(status, 200);
    attempt(store, &id).await
}

#[tokio::test]
async fn a_delivery_checks_the_address_again_and_connects_only_there() {
    let store = sqlite_store("callbacks-delivery").await.cached().unwrap();
    let key = service_key(&store).await;
    let (hook, got) = receiver().await;
    let names: Names = Arc::default();
    let policy = |allow| CallbackPolicy {
        allow_http: true,
        allow,
        resolver: resolver_of(&names),
    };
    let state = |allow| AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: cfg(policy(allow)),
    };
    // Challenges are made where loopback is allowed, delivered where it no longer is.
    let allowing = serve(state(loopback_allowed())).await;
    let strict = serve(state(Vec::new())).await;
    let workers = api::webhooks::spawn_workers(state(Vec::new()));

    let to_loopback = format!("http://{hook}/hook");
    let id = decided_with(allowing, &key, &to_loopback).await;
    let a = attempt(&store, &id).await;
    assert_eq!(
        (a.status, a.error.as_deref()),
        (None, Some("refused by policy")),
        "the allow list was removed"
    );

    // A name that was public at creation and points inside at delivery (DNS rebinding).
    let public: IpAddr = "93.184.215.14".parse().unwrap();
    let to = (strict, key.as_str(), hook.port());
    let a = re_resolved(&store, &names, to, "rebind.example", public, vec![V4]).await;
    assert_eq!(
        (a.status, a.error.as_deref()),
        (None, Some("refused by policy"))
    );
    // Every address is checked: one inside among public ones is enough to refuse.
    let a = re_resolved(
        &store,
        &names,
        to,
        "mixed.example",
        public,
        vec![public, V4],
    )
    .await;
    assert_eq!(
        (a.status, a.error.as_deref()),
        (None, Some("refused by policy"))
    );
    assert!(got.lock().unwrap().is_empty(), "nothing was posted");
    workers.abort();

    // Where loopback is allowed, a name is connected to at the address it was checked at
    // (the system's resolver knows nothing of pinned.example): the receiver gets it.
    names
        .lock()
        .unwrap()
        .insert("pinned.example".into(), vec![V4]);
    let workers = api::webhooks::spawn_workers(state(loopback_allowed()));
    let url = format!("http://pinned.example:{}/hook", hook.port());
    let id = decided_with(allowing, &key, &url).await;
    let a = attempt(&store, &id).await;
    assert_eq!((a.status, a.error.as_deref()), (Some(204), None));
    assert_eq!(got.lock().unwrap().len(), 1);
    workers.abort();
}

#[tokio::test]
async fn failed_deliveries_say_only_no_answer() {
    let store = sqlite_store("callbacks-no-answer").await.cached().unwrap();
    let key = service_key(&store).await;
    let (hook, got) = receiver().await;
    let state = AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: cfg(CallbackPolicy {
            allow_http: true,
            allow: loopback_allowed(),
            resolver: Resolver::system(),
        }),
    };
    let api = serve(state.clone()).await;
    let workers = api::webhooks::spawn_workers(state);
    // A closed port.
    let closed = {
        let l = std::net::TcpListener::bind((V4, 0)).unwrap();
        l.local_addr().unwrap()
    };
    // An open port that speaks something else, and one that says nothing.
    let ssh = tokio::net::TcpListener::bind((V4, 0)).await.unwrap();
    let ssh_addr = ssh.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = ssh.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1\r\n").await;
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
        }
    });
    let silent = tokio::net::TcpListener::bind((V4, 0)).await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut cases = Vec::new();
    for (what, url) in [
        ("a closed port", format!("http://{closed}/hook")),
        ("an SSH server", format!("http://{ssh_addr}/hook")),
        ("a silent server", format!("http://{silent_addr}/hook")),
        ("TLS to plain HTTP", format!("https://{hook}/hook")),
        (
            "a closed IPv6 port",
            format!("http://[::1]:{}/hook", closed.port()),
        ),
    ] {
        cases.push((what, decided_with(api, &key, &url).await));
    }
    for (what, id) in cases {
        let a = attempt(&store, &id).await;
        assert_eq!(
            (a.status, a.error.as_deref()),
            (None, Some("no answer")),
            "{what}"
        );
    }
    assert!(got.lock().unwrap().is_empty());
    // An answer is logged by its status alone.
    let id = decided_with(api, &key, &format!("http://{hook}/hook")).await;
    let a = attempt(&store, &id).await;
    assert_eq!((a.status, a.error), (Some(204), None));
    workers.abort();
}
