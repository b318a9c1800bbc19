//! The HTTP server under abuse, over real connections on loopback: half-sent requests are
//! closed at the header timeout without delaying anyone else, connections beyond the cap are
//! closed at once, long polls and event streams are capped per credential, and slow
//! handlers, slow bodies and unread responses meet the request timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{ApiConfig, AppState, ServeLimits, StreamCaps};
use callverify_e2e::{BOUND, V4, sign_in, sqlite_store};
use store::{KeyKind, Store, now_ms};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &[u8] = b"test token secret";

/// Serves `router` with `limits` on a loopback port of its own.
async fn serve(router: axum::Router, limits: ServeLimits) -> SocketAddr {
    let lis = tokio::net::TcpListener::bind((V4, 0)).await.unwrap();
    let addr = lis.local_addr().unwrap();
    tokio::spawn(api::serve(lis, router, limits, std::future::pending()));
    addr
}

/// The API on a SQLite store of its own, with `cfg`; its store and address.
async fn api_with(name: &str, cfg: ApiConfig, limits: ServeLimits) -> (Store, SocketAddr) {
    let store = sqlite_store(name).await.cached().unwrap();
    let state = AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(ApiConfig {
            token_secret: SECRET.to_vec(),
            ..cfg
        }),
    };
    (store, serve(api::router(state), limits).await)
}

/// One request over a fresh connection; the status, the headers (lower-case names) and the
/// body.
async fn request(addr: SocketAddr, method: &str, path: &str, bearer: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {text:?}"));
    (status, text)
}

/// A queued challenge (nothing calls it) and its poll token.
async fn queued(store: &Store, key_id: &str, n: u32) -> (store::ChallengeId, String) {
    let number = format!("+8190{:08}", 20_000_000 + n);
    let (c, _) = store
        .create_challenge(&sign_in(key_id, &number, now_ms()))
        .await
        .unwrap();
    let token = api::poll_token(SECRET, &c.id);
    (c.id, token)
}

/// Whether the server closed `s` (EOF or reset) by `deadline`.
async fn closed_by(s: &mut TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // Whatever the server says before closing (nothing, here) is read past.
            Ok(Ok(_)) => {}
        }
    }
}

/// Raises this process's open-file limit to its hard limit; returns the soft limit now.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    getrlimit(Resource::RLIMIT_NOFILE).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_delay_no_poll_and_are_closed_at_the_header_timeout() {
    // Each connection takes two descriptors here (the client's and the server's end).
    let limit = raise_fd_limit();
    let n = 3000.min((limit.saturating_sub(300) / 2) as usize);
    assert!(
        n >= 500,
        "the open-file limit is {limit}: {n} connections are too few to mean anything"
    );
    if n < 3000 {
        eprintln!("open-file limit {limit}: {n} half-open connections instead of 3000");
    }
    let header_timeout = Duration::from_secs(3);
    let limits = ServeLimits {
        header_timeout,
        ..ServeLimits::default()
    };
    let (store, addr) = api_with("serve-half-open", ApiConfig::default(), limits).await;
    let (key, _) = store
        .create_api_key("idp", KeyKind::Service, 0)
        .await
        .unwrap();
    let (id, token) = queued(&store, &key.id, 0).await;

    let started = Instant::now();
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Part of the request line and headers, then nothing.
        let part = format!("GET /v1/challenges/{id} HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: a");
        s.write_all(part.as_bytes()).await.unwrap();
        held.push(s);
    }
    let opened = started.elapsed();
    let (status, body) = request(addr, "GET", &format!("/v1/challenges/{id}"), &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"state\":\"queued\""), "{body}");
    let answered = started.elapsed();
    // They were all still open when the poll was answered.
    let mut buf = [0u8; 16];
    let open = held
        .iter()
        .filter(|s| matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count();
    assert_eq!(
        open, n,
        "{n} opened in {opened:?}, the poll answered at {answered:?}: {open} still open then"
    );
    // And the server closes every one within the header timeout.
    let deadline = tokio::time::Instant::now() + header_timeout + Duration::from_secs(5);
    let mut closed = 0;
    for s in &mut held {
        if closed_by(s, deadline).await {
            closed += 1;
        }
    }
    assert_eq!(closed, n, "closed by the server of {n} half-sent requests");
    let (status, _) = request(addr, "GET", &format!("/v1/challenges/{id}"), &token).await;
    assert_eq!(status, 200, "the server serves on");
}

#[tokio::test]
async fn beyond_max_connections_a_new_connection_is_closed_at_once() {
    let limits = ServeLimits {
        max_connections: 8,
        ..ServeLimits::default()
    };
    let (_, addr) = api_with("serve-cap", ApiConfig::default(), limits).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let (status, _) = {
        // The ninth: closed at once, long before the 10 s header timeout.
        let mut ninth = TcpStream::connect(addr).await.unwrap();
        let _ = ninth
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let soon = tokio::time::Instant::now() + Duration::from_secs(2);
        assert!(
            closed_by(&mut ninth, soon).await,
            "the ninth connection stays open"
        );
        // One of the eight goes: a new connection is served again.
        drop(held.pop());
        let deadline = Instant::now() + BOUND;
        loop {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut raw = Vec::new();
            let _ = tokio::time::timeout(BOUND, s.read_to_end(&mut raw)).await;
            let text = String::from_utf8_lossy(&raw).to_string();
            if text.starts_with("HTTP/1.1 200") {
                break (200, text);
            }
            assert!(
                Instant::now() < deadline,
                "no connection served after one closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(status, 200);
}

/// Opens `GET path` as an event stream: the status and, once admitted, the open connection
/// after the first event.
async fn open_stream(addr: SocketAddr, path: &str, bearer: &str) -> (u16, TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\n\
         Accept: text/event-stream\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let got = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("the stream's first event in time")
            .unwrap();
        raw.extend_from_slice(&buf[..got]);
        let text = String::from_utf8_lossy(&raw).to_string();
        let done = got == 0
            || text.contains("\ndata:")
            || (text.contains("\r\n\r\n") && !text.starts_with("HTTP/1.1 200"));
        if done {
            let status = text.split(' ').nth(1).unwrap().parse().unwrap();
            return (status, s, text);
        }
    }
}

/// Waits (bounded) until `caps` count `n` open.
async fn until_open(caps: &StreamCaps, n: u32) {
    let deadline = Instant::now() + BOUND;
    while caps.open() != n {
        assert!(
            Instant::now() < deadline,
            "{} open, expected {n}",
            caps.open()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn long_polls_and_event_streams_are_capped_per_credential() {
    let caps = StreamCaps::new(2, 3);
    let cfg = ApiConfig {
        streams: caps.clone(),
        ..ApiConfig::default()
    };
    let (store, addr) = api_with("serve-streams", cfg, ServeLimits::default()).await;
    let (key, secret) = store
        .create_api_key("idp", KeyKind::Service, 0)
        .await
        .unwrap();
    let (a, token) = queued(&store, &key.id, 1).await;
    let get = |path: String, bearer: String| {
        tokio::spawn(async move { request(addr, "GET", &path, &bearer).await })
    };

    // A poll token: two at once.
    let short = get(format!("/v1/challenges/{a}?wait=2"), token.clone());
    let long = get(format!("/v1/challenges/{a}?wait=20"), token.clone());
    until_open(&caps, 2).await;
    let (status, text) = request(addr, "GET", &format!("/v1/challenges/{a}?wait=5"), &token).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("too-many-streams"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    assert!(text.contains("application/problem+json"), "{text}");
    let (status, _, text) = open_stream(addr, &format!("/v1/challenges/{a}/events"), &token).await;
    assert_eq!(status, 429, "streams and long polls share the cap: {text}");
    // Plain polls are not capped.
    let (status, _) = request(addr, "GET", &format!("/v1/challenges/{a}"), &token).await;
    assert_eq!(status, 200);
    // When one ends, another is admitted.
    assert_eq!(short.await.unwrap().0, 200);
    until_open(&caps, 1).await;
    let (status, text) = request(addr, "GET", &format!("/v1/challenges/{a}?wait=1"), &token).await;
    assert_eq!(status, 200, "{text}");

    // An API key: three at once, over any of its challenges.
    let mut others = Vec::new();
    for n in 2..6 {
        others.push(queued(&store, &key.id, n).await.0);
    }
    let mut streams = Vec::new();
    for id in &others[..3] {
        let (status, s, text) =
            open_stream(addr, &format!("/v1/challenges/{id}/events"), &secret).await;
        assert_eq!(status, 200, "{text}");
        streams.push(s);
    }
    let fourth = &others[3];
    let (status, _, text) =
        open_stream(addr, &format!("/v1/challenges/{fourth}/events"), &secret).await;
    assert_eq!(status, 429, "{text}");
    let (status, text) = request(
        addr,
        "GET",
        &format!("/v1/challenges/{fourth}?wait=5"),
        &secret,
    )
    .await;
    assert_eq!(status, 429, "{text}");
    // The challenge's own poll token is another credential.
    let (status, own, text) = open_stream(
        addr,
        &format!("/v1/challenges/{fourth}/events"),
        &api::poll_token(SECRET, fourth),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    // The first stream's challenge is decided: its stream ends, and the key may open another.
    let (status, _) = request(
        addr,
        "DELETE",
        &format!("/v1/challenges/{}", others[0]),
        &secret,
    )
    .await;
    assert_eq!(status, 200);
    let mut rest = Vec::new();
    tokio::time::timeout(BOUND, streams[0].read_to_end(&mut rest))
        .await
        .expect("the decided challenge's stream ends")
        .unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("canceled"));
    until_open(&caps, 4).await;
    let (status, _, text) =
        open_stream(addr, &format!("/v1/challenges/{fourth}/events"), &secret).await;
    assert_eq!(status, 200, "{text}");
    // Streams and long polls whose client went give their slot back too.
    drop(streams);
    drop(own);
    until_open(&caps, 1).await;
    long.abort();
    until_open(&caps, 0).await;
}

#[tokio::test]
async fn slow_handlers_slow_bodies_and_unread_answers_meet_the_request_timeout() {
    use axum::routing::{get, post};
    let big = axum::body::Bytes::from(vec![b'x'; 64 << 20]);
    let router = axum::Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/echo", post(|body: axum::body::Bytes| async move { body }))
        .route(
            "/v1/challenges/{id}",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "waited"
            }),
        )
        .route("/big", get(move || async move { big.clone() }));
    let limits = ServeLimits {
        request_timeout: Duration::from_secs(1),
        ..ServeLimits::default()
    };
    let addr = serve(router, limits).await;

    let (status, text) = request(addr, "GET", "/slow", "").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("request-timeout"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");

    // Headers beyond the connection's buffer are refused, not held.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let huge = format!(
        "GET /slow HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let _ = s.write_all(huge.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(BOUND, s.read_to_end(&mut raw))
        .await
        .expect("an answer");
    let text = String::from_utf8_lossy(&raw).to_string();
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");

    // A body that stops short of its Content-Length.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let got = tokio::time::timeout(BOUND, s.read(&mut buf))
        .await
        .expect("an answer before the body is done")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..got]).to_string();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");

    // A long poll is not cut at the request timeout; the same route without wait is.
    let (status, text) = request(addr, "GET", "/v1/challenges/ch_x?wait=3", "").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("waited"), "{text}");
    let (status, _) = request(addr, "GET", "/v1/challenges/ch_x", "").await;
    assert_eq!(status, 503);

    // An answer the client does not read: the server drops it after the request timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(BOUND, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the unread answer's connection did not end");
    assert!(
        got < 64 << 20,
        "all {got} bytes came: the server waited for the reader"
    );
}
