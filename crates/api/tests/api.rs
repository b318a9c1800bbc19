//! The API over real HTTP on loopback: credentials, bodies, idempotency, poll tokens,
//! long polls, and a challenge that calls sipp and is approved.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use api::{ApiConfig, AppState};
use callverify_e2e::{
    BOUND, Sipp, V4, endpoint, free_rtp_pair, media_at, prompts, scratch, script, trunk,
};
use media::Language;
use sip::Transport;
use store::{KeyKind, Store};
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

async fn sqlite(name: &str) -> Store {
    let dir = scratch(name);
    Store::open(&format!("sqlite://{}", dir.join("cv.db").display()))
        .await
        .unwrap()
}

fn cfg() -> Arc<ApiConfig> {
    Arc::new(ApiConfig {
        token_secret: b"test token secret".to_vec(),
        ..ApiConfig::default()
    })
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
            "http(s)",
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
    assert_eq!(
        post(vec![("Authorization", auth(&service))], big)
            .await
            .status,
        413
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
    assert_eq!(created["phone_number"], "+8190****5678");
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
    let get = |path: String, bearer: String| async move {
        http(addr, "GET", &path, &[("Authorization", &bearer)], b"").await
    };
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
    let pcap = std::path::Path::new("/usr/share/sip-tester/dtmf_2833_pound.pcap");
    let sipp = Sipp::callee("api-approved", V4, Some(pcap));
    let ep = endpoint(V4, BOUND, vec![trunk("sipp", Transport::Udp, sipp.addr)]).await;
    let runner = engine::Runner {
        store: store.clone(),
        endpoint: Arc::new(ep),
        media: media_at(V4, free_rtp_pair(V4)),
        script: script(),
        prompts: HashMap::from([(Language::Ja, prompts(Language::Ja))]),
    };
    let addr = serve(AppState {
        store,
        runner: Some(Arc::new(runner)),
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
        let r = http(
            addr,
            "GET",
            &format!("/v1/challenges/{id}?wait=5"),
            &[("Authorization", &token)],
            b"",
        )
        .await;
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
    let r = http(
        addr,
        "GET",
        "/v1/calls?outcome=approved&limit=10",
        &[("Authorization", &op)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let calls = r.json()["calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["challenge_id"], id.as_str());
    assert_eq!(calls[0]["phone_number"], "+8190****5678");
    let call_id = calls[0]["id"].as_str().unwrap();
    let r = http(
        addr,
        "GET",
        &format!("/v1/calls/{call_id}"),
        &[("Authorization", &op)],
        b"",
    )
    .await;
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
    assert_eq!(
        http(addr, "GET", "/v1/calls", &[("Authorization", &bearer)], b"")
            .await
            .status,
        403
    );
    let r = http(
        addr,
        "GET",
        "/v1/calls?cursor=bogus",
        &[("Authorization", &op)],
        b"",
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").await.status, 200);
    assert_eq!(http(addr, "GET", "/readyz", &[], b"").await.status, 200);
}
