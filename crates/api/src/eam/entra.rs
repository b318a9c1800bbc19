//! Entra's metadata and keys (its discovery document, then the JWKS it names), fetched with
//! bounds and cached, to verify the `id_token_hint`s Entra sends; and the bounded JSON
//! exchange under every request callverify makes to Entra or Graph. Nothing here trusts the
//! network: https only (http for a loopback address, for tests), no redirect followed, one
//! timeout for the whole exchange, the body read chunk by chunk up to a cap.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

/// The longest one exchange (connect, send, status and the whole body) may take.
pub(crate) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest discovery document read.
pub(crate) const MAX_DISCOVERY: usize = 64 * 1024;
/// The largest JWKS read.
pub(crate) const MAX_JWKS: usize = 256 * 1024;
/// How long metadata is used before it is fetched again (Entra's own cache of a provider's
/// metadata lasts as long).
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The least time between two fetches asked for by a key id the cache does not hold.
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// The most of an error answer's body read to find its error code.
const MAX_ERROR_BODY: usize = 4096;

/// Entra's issuer template (its discovery document's `issuer`, e.g.
/// "https://login.microsoftonline.com/{tenantid}/v2.0") and its JWKS document as fetched.
#[derive(Debug)]
pub struct EntraMetadata {
    /// The discovery document's `issuer`, `{tenantid}` still in it.
    pub issuer: String,
    /// The JWKS document (an object with a `keys` array).
    pub jwks: Value,
    /// When it was fetched.
    pub fetched_at: Instant,
}

/// What went wrong in one bounded exchange. It never holds the URL (a Graph URL names a
/// user): the caller says what it asked for.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The URL was not sent to.
    #[error("the URL is refused: {0}")]
    BadUrl(&'static str),
    /// No complete answer in time.
    #[error("no complete answer within {} s (is the host reachable from here?)", .0.as_secs())]
    TimedOut(Duration),
    /// No connection, or the request could not be sent.
    #[error("could not connect or send the request ({0})")]
    Unreachable(#[source] reqwest::Error),
    /// The answer broke off.
    #[error("the answer broke off ({0})")]
    BrokenOff(#[source] reqwest::Error),
    /// A status other than 200 (a redirect included: none is followed).
    #[error("{}", status_text(*status, code.as_deref()))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The OAuth or Graph error code in the body, if any (printable characters only).
        code: Option<String>,
    },
    /// The body was longer than the cap (refused as soon as it passed it).
    #[error("answered more than {0} bytes, more than such a document ever is")]
    TooLarge(usize),
    /// The body was not JSON.
    #[error("answered something that is not JSON ({0})")]
    NotJson(#[source] serde_json::Error),
}

fn status_text(status: u16, code: Option<&str>) -> String {
    let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
    if (300..400).contains(&status) {
        format!(
            "answered HTTP {status}{code}, a redirect, which is not followed: configure the URL it points to"
        )
    } else {
        format!("answered HTTP {status}{code}, not 200")
    }
}

/// Why Entra's metadata could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The exchange failed.
    #[error("GET {url}: {why}")]
    Exchange {
        /// What was fetched.
        url: String,
        /// What went wrong.
        #[source]
        why: ExchangeError,
    },
    /// The discovery document lacks a field callverify needs.
    #[error(
        "the discovery document at {url} has no \"{field}\" string: is the URL Entra's \
         .../v2.0/.well-known/openid-configuration?"
    )]
    Missing {
        /// The discovery URL.
        url: String,
        /// The missing field.
        field: &'static str,
    },
    /// The last fetch failed a moment ago: not tried again yet.
    #[error("Entra's keys could not be fetched {secs} s ago ({why}); not tried again yet")]
    Recently {
        /// How long ago.
        secs: u64,
        /// What went wrong then.
        why: String,
    },
    /// The JWKS document has no key list.
    #[error("the JWKS document at {url} has no \"keys\" array")]
    NoKeys {
        /// The JWKS URL.
        url: String,
    },
}

/// The HTTP client for Entra and Graph: no redirect followed, no proxy, the exchange's
/// timeout, https through rustls (ring) with the platform's roots, as the webhooks' client.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(EXCHANGE_TIMEOUT)
        .timeout(EXCHANGE_TIMEOUT)
        .user_agent(concat!("callverify/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// GETs JSON from `url`, bounded: https only (http only for a loopback host), no redirects
/// followed, 5 s timeout for the whole exchange, at most `max_bytes` read (chunk by chunk: a
/// huge or endless body is cut off and refused, never buffered), status 200 only.
pub(crate) async fn fetch_json(
    http: &reqwest::Client,
    url: &str,
    max_bytes: usize,
) -> Result<Value, FetchError> {
    let failed = |why| FetchError::Exchange {
        url: url.to_string(),
        why,
    };
    let parsed =
        reqwest::Url::parse(url).map_err(|_| failed(ExchangeError::BadUrl("not a URL")))?;
    bounded_json(http.get(parsed), max_bytes, EXCHANGE_TIMEOUT)
        .await
        .map_err(failed)
}

/// Sends `request` and reads its JSON answer: the URL checked first ([`check_url`]), the whole
/// exchange within `within`, at most `max_bytes` of body, status 200 only.
pub(crate) async fn bounded_json(
    request: reqwest::RequestBuilder,
    max_bytes: usize,
    within: Duration,
) -> Result<Value, ExchangeError> {
    let (client, request) = request.build_split();
    let request = request.map_err(|_| ExchangeError::BadUrl("no request can be made of it"))?;
    check_url(request.url())?;
    match tokio::time::timeout(within, exchange(&client, request, max_bytes)).await {
        Ok(answer) => answer,
        Err(_) => Err(ExchangeError::TimedOut(within)),
    }
}

/// Refuses what callverify must not send to: anything but https, and http but to a
/// loopback address.
pub(crate) fn check_url(url: &reqwest::Url) -> Result<(), ExchangeError> {
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                _ => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(ExchangeError::BadUrl(
                    "http is allowed to a loopback address only: use https",
                ))
            }
        }
        _ => Err(ExchangeError::BadUrl("only https URLs are fetched")),
    }
}

async fn exchange(
    client: &reqwest::Client,
    request: reqwest::Request,
    max_bytes: usize,
) -> Result<Value, ExchangeError> {
    let mut response = client
        .execute(request)
        .await
        .map_err(|e| ExchangeError::Unreachable(e.without_url()))?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = read_capped(&mut response, MAX_ERROR_BODY).await.ok();
        return Err(ExchangeError::Status {
            status,
            code: body.as_deref().and_then(error_code),
        });
    }
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(max_bytes).unwrap_or(u64::MAX))
    {
        return Err(ExchangeError::TooLarge(max_bytes));
    }
    let body = read_capped(&mut response, max_bytes).await?;
    serde_json::from_slice(&body).map_err(ExchangeError::NotJson)
}

/// The body, read chunk by chunk and refused as soon as it passes `max_bytes`.
async fn read_capped(
    response: &mut reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, ExchangeError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ExchangeError::BrokenOff(e.without_url()))?
    {
        if body.len().saturating_add(chunk.len()) > max_bytes {
            return Err(ExchangeError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error code of an OAuth error answer (`error`, and the first line of
/// `error_description`, which holds Entra's AADSTS code) or of a Graph one (`error.code`),
/// printable characters only and shortened.
fn error_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = match v.get("error")? {
        Value::String(error) => match v.get("error_description").and_then(Value::as_str) {
            Some(d) => format!("{error}: {}", d.lines().next().unwrap_or_default()),
            None => error.clone(),
        },
        Value::Object(graph) => graph.get("code")?.as_str()?.to_string(),
        _ => return None,
    };
    Some(code.chars().filter(|c| !c.is_control()).take(200).collect())
}

/// Entra's metadata, fetched when first needed and cached.
pub struct EntraKeys {
    http: reqwest::Client,
    discovery_url: String,
    /// How long metadata is used (24 h; shortened in tests).
    pub(crate) max_age: Duration,
    /// The least time between two fetches that [`EntraKeys::refresh`] makes (5 min;
    /// shortened in tests).
    pub(crate) refresh_every: Duration,
    /// Held across a fetch: concurrent callers wait for the one fetch in flight.
    cache: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    metadata: Option<Arc<EntraMetadata>>,
    /// When the last fetch was tried, whether or not it succeeded.
    tried_at: Option<Instant>,
    /// The last fetch's failure, if it failed.
    failed: Option<String>,
}

/// After a failed fetch, requests are answered from what is cached (or refused at once)
/// for this long before the next try: a Entra that cannot be reached costs each sign-in
/// nothing, instead of a 5 s wait in line.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

impl EntraKeys {
    /// Metadata from `discovery_url` (e.g.
    /// `https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration`),
    /// fetched with `http` (see [`http_client`]) when first needed.
    pub fn new(http: reqwest::Client, discovery_url: String) -> EntraKeys {
        EntraKeys {
            http,
            discovery_url,
            max_age: MAX_AGE,
            refresh_every: REFRESH_EVERY,
            cache: Mutex::new(Cached::default()),
        }
    }

    /// The cached metadata, fetched at first use (discovery, then its jwks_uri) and again when
    /// older than 24 h. Concurrent callers share one fetch (single flight).
    ///
    /// When a fetch fails, the metadata fetched before (however old) is used, and no fetch is
    /// tried again for [`RETRY_AFTER_FAILURE`].
    pub async fn current(&self) -> Result<Arc<EntraMetadata>, FetchError> {
        let mut cached = self.cache.lock().await;
        if let Some(m) = &cached.metadata
            && m.fetched_at.elapsed() < self.max_age
        {
            return Ok(m.clone());
        }
        if let (Some(why), Some(tried)) = (&cached.failed, cached.tried_at)
            && tried.elapsed() < RETRY_AFTER_FAILURE
        {
            return match &cached.metadata {
                Some(m) => Ok(m.clone()),
                None => Err(FetchError::Recently {
                    secs: tried.elapsed().as_secs(),
                    why: why.clone(),
                }),
            };
        }
        match self.fetch_into(&mut cached).await {
            Ok(m) => Ok(m),
            Err(e) => match &cached.metadata {
                Some(m) => {
                    tracing::warn!(error = %e, "Entra's keys could not be fetched again: using those fetched before");
                    Ok(m.clone())
                }
                None => Err(e),
            },
        }
    }

    /// After a hint named a key id the cache does not hold: fetches again, but at most once
    /// every 5 minutes (a stream of made-up kids must not make callverify hammer Entra);
    /// within that time it returns the cached metadata.
    pub async fn refresh(&self) -> Result<Arc<EntraMetadata>, FetchError> {
        let mut cached = self.cache.lock().await;
        if let (Some(m), Some(tried)) = (&cached.metadata, cached.tried_at)
            && tried.elapsed() < self.refresh_every
        {
            return Ok(m.clone());
        }
        self.fetch_into(&mut cached).await
    }

    async fn fetch_into(&self, cached: &mut Cached) -> Result<Arc<EntraMetadata>, FetchError> {
        cached.tried_at = Some(Instant::now());
        match self.fetch().await {
            Ok(fetched) => {
                let fetched = Arc::new(fetched);
                cached.metadata = Some(fetched.clone());
                cached.failed = None;
                Ok(fetched)
            }
            Err(e) => {
                cached.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<EntraMetadata, FetchError> {
        let url = &self.discovery_url;
        let discovery = fetch_json(&self.http, url, MAX_DISCOVERY).await?;
        let field = |field| match discovery.get(field).and_then(Value::as_str) {
            Some(v) => Ok(v.to_string()),
            None => Err(FetchError::Missing {
                url: url.clone(),
                field,
            }),
        };
        let issuer = field("issuer")?;
        let jwks_uri = field("jwks_uri")?;
        let jwks = fetch_json(&self.http, &jwks_uri, MAX_JWKS).await?;
        if !jwks.get("keys").is_some_and(Value::is_array) {
            return Err(FetchError::NoKeys { url: jwks_uri });
        }
        Ok(EntraMetadata {
            issuer,
            jwks,
            fetched_at: Instant::now(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::body::Body;
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use serde_json::json;

    use super::*;

    /// An axum server on 127.0.0.1 for one test, stopped when dropped.
    pub(crate) struct TestServer {
        pub(crate) base: String,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Serves `app` on a free loopback port.
    pub(crate) async fn serve(app: Router) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer {
            base: format!("http://{addr}"),
            task,
        }
    }

    /// A body of 64 KiB chunks that never ends.
    pub(crate) fn endless() -> Response {
        let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
        let stream = futures_util::stream::repeat_with(move || {
            Ok::<_, std::convert::Infallible>(chunk.clone())
        });
        Body::from_stream(stream).into_response()
    }

    /// A body that sends one byte, then nothing more, never ending.
    pub(crate) fn stalled() -> Response {
        let stream = futures_util::stream::once(async {
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(b"{"))
        })
        .chain(futures_util::stream::pending());
        Body::from_stream(stream).into_response()
    }

    use futures_util::StreamExt;

    fn client() -> reqwest::Client {
        http_client().expect("an HTTP client")
    }

    /// A stand-in for Entra's discovery and keys, counting the fetches of each.
    async fn entra(hits: Arc<[AtomicUsize; 2]>) -> TestServer {
        let (d, k) = (hits.clone(), hits);
        let app = Router::new()
            .route(
                "/common/v2.0/.well-known/openid-configuration",
                get(move |headers: axum::http::HeaderMap| async move {
                    d[0].fetch_add(1, Ordering::SeqCst);
                    let host = headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    axum::Json(json!({
                        "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
                        "jwks_uri": format!("http://{host}/common/discovery/v2.0/keys"),
                    }))
                }),
            )
            .route(
                "/common/discovery/v2.0/keys",
                get(move || async move {
                    k[1].fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"keys": [{"kid": "k1", "kty": "RSA"}]}))
                }),
            );
        serve(app).await
    }

    fn keys_of(server: &TestServer) -> EntraKeys {
        EntraKeys::new(
            client(),
            format!(
                "{}/common/v2.0/.well-known/openid-configuration",
                server.base
            ),
        )
    }

    fn counts(hits: &[AtomicUsize; 2]) -> (usize, usize) {
        (
            hits[0].load(Ordering::SeqCst),
            hits[1].load(Ordering::SeqCst),
        )
    }

    #[tokio::test]
    async fn metadata_is_fetched_once_and_shared_by_concurrent_callers() {
        let hits = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let server = entra(hits.clone()).await;
        let keys = keys_of(&server);
        let (a, b, c) = tokio::join!(keys.current(), keys.current(), keys.current());
        let a = a.expect("metadata");
        assert_eq!(
            a.issuer,
            "https://login.microsoftonline.com/{tenantid}/v2.0"
        );
        assert_eq!(a.jwks["keys"][0]["kid"], "k1");
        assert!(Arc::ptr_eq(&a, &b.expect("metadata")));
        assert!(Arc::ptr_eq(&a, &c.expect("metadata")));
        keys.current().await.expect("metadata");
        assert_eq!(counts(&hits), (1, 1));
    }

    #[tokio::test]
    async fn metadata_older_than_its_age_is_fetched_again() {
        let hits = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let server = entra(hits.clone()).await;
        let mut keys = keys_of(&server);
        keys.max_age = Duration::ZERO;
        keys.current().await.expect("metadata");
        keys.current().await.expect("metadata");
        assert_eq!(counts(&hits), (2, 2));
    }

    #[tokio::test]
    async fn an_unreachable_entra_leaves_the_keys_fetched_before_and_is_not_hammered() {
        let hits = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let server = entra(hits.clone()).await;
        let mut keys = keys_of(&server);
        keys.max_age = Duration::ZERO;
        let first = keys.current().await.expect("metadata");
        // Entra goes away: the keys fetched before still validate hints.
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let again = keys.current().await.expect("the keys fetched before");
        assert!(Arc::ptr_eq(&first, &again));
        // With nothing fetched yet, a failure is answered at once for a while, not tried
        // again by every sign-in.
        let dead = format!("http://127.0.0.1:{}/d", {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        });
        let cold = EntraKeys::new(client(), dead);
        assert!(cold.current().await.is_err());
        // `Recently`, not a refused connection: nothing was tried.
        for _ in 0..20 {
            assert!(matches!(
                cold.current().await,
                Err(FetchError::Recently { .. })
            ));
        }
    }

    #[tokio::test]
    async fn refresh_fetches_at_most_once_per_interval() {
        let hits = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let server = entra(hits.clone()).await;
        let mut keys = keys_of(&server);
        let first = keys.current().await.expect("metadata");
        for _ in 0..20 {
            let again = keys.refresh().await.expect("metadata");
            assert!(Arc::ptr_eq(&first, &again));
        }
        assert_eq!(counts(&hits), (1, 1), "refresh within 5 minutes fetched");
        keys.refresh_every = Duration::ZERO;
        let fresh = keys.refresh().await.expect("metadata");
        assert!(!Arc::ptr_eq(&first, &fresh));
        assert_eq!(counts(&hits), (2, 2));
    }

    #[tokio::test]
    async fn refresh_before_any_fetch_fetches() {
        let hits = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let server = entra(hits.clone()).await;
        let keys = keys_of(&server);
        keys.refresh().await.expect("metadata");
        keys.current().await.expect("metadata");
        assert_eq!(counts(&hits), (1, 1));
    }

    #[tokio::test]
    async fn a_discovery_document_without_jwks_uri_is_refused() {
        let app = Router::new().route(
            "/d",
            get(|| async { axum::Json(json!({"issuer": "https://x/v2.0"})) }),
        );
        let server = serve(app).await;
        let keys = EntraKeys::new(client(), format!("{}/d", server.base));
        let e = keys.current().await.expect_err("no jwks_uri");
        assert!(
            matches!(
                e,
                FetchError::Missing {
                    field: "jwks_uri",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn fetch_json_reads_a_small_document() {
        let app = Router::new().route("/d", get(|| async { axum::Json(json!({"a": [1, 2]})) }));
        let server = serve(app).await;
        let v = fetch_json(&client(), &format!("{}/d", server.base), 1024)
            .await
            .expect("the document");
        assert_eq!(v, json!({"a": [1, 2]}));
    }

    fn exchange_error(e: FetchError) -> ExchangeError {
        match e {
            FetchError::Exchange { why, .. } => why,
            other => panic!("not an exchange error: {other}"),
        }
    }

    #[tokio::test]
    async fn an_endless_body_is_refused_without_buffering_it() {
        let app = Router::new().route("/d", get(|| async { endless() }));
        let server = serve(app).await;
        let started = Instant::now();
        let e = fetch_json(&client(), &format!("{}/d", server.base), MAX_DISCOVERY)
            .await
            .expect_err("endless");
        // Refused when it passed the cap, not cut off by the timeout after buffering.
        assert!(
            matches!(exchange_error(e), ExchangeError::TooLarge(MAX_DISCOVERY)),
            "not refused for its size"
        );
        assert!(started.elapsed() < EXCHANGE_TIMEOUT);
    }

    #[tokio::test]
    async fn a_body_declared_larger_than_the_cap_is_refused() {
        let app = Router::new().route("/d", get(|| async { vec![b' '; 10 * 1024 * 1024] }));
        let server = serve(app).await;
        let e = fetch_json(&client(), &format!("{}/d", server.base), MAX_JWKS)
            .await
            .expect_err("10 MB");
        assert!(matches!(
            exchange_error(e),
            ExchangeError::TooLarge(MAX_JWKS)
        ));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_given_up_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        // Accepts, reads nothing, answers nothing; ends with the test.
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let started = Instant::now();
        let e = fetch_json(&client(), &format!("http://{addr}/d"), 1024)
            .await
            .expect_err("no answer");
        task.abort();
        let e = exchange_error(e);
        assert!(
            matches!(
                e,
                ExchangeError::TimedOut(_) | ExchangeError::Unreachable(_)
            ),
            "{e}"
        );
        assert!(started.elapsed() < EXCHANGE_TIMEOUT + Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_body_that_stalls_is_given_up_on_within_the_timeout() {
        let app = Router::new().route("/d", get(|| async { stalled() }));
        let server = serve(app).await;
        let started = Instant::now();
        let e = fetch_json(&client(), &format!("{}/d", server.base), 1024)
            .await
            .expect_err("stalled");
        let e = exchange_error(e);
        assert!(
            matches!(e, ExchangeError::TimedOut(_) | ExchangeError::BrokenOff(_)),
            "{e}"
        );
        assert!(started.elapsed() < EXCHANGE_TIMEOUT + Duration::from_secs(2));
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let followed = Arc::new(AtomicUsize::new(0));
        let f = followed.clone();
        let app = Router::new()
            .route(
                "/d",
                get(|| async {
                    (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")]).into_response()
                }),
            )
            .route(
                "/elsewhere",
                get(move || async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({}))
                }),
            );
        let server = serve(app).await;
        let e = fetch_json(&client(), &format!("{}/d", server.base), 1024)
            .await
            .expect_err("a redirect");
        assert!(
            e.to_string().contains("a redirect, which is not followed"),
            "{e}"
        );
        assert!(matches!(
            exchange_error(e),
            ExchangeError::Status { status: 302, .. }
        ));
        assert_eq!(followed.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn other_statuses_are_refused_with_their_error_code() {
        let app = Router::new().route(
            "/d",
            get(|| async {
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret.\r\nTrace ID: x"})),
                )
            }),
        );
        let server = serve(app).await;
        let e = fetch_json(&client(), &format!("{}/d", server.base), 1024)
            .await
            .expect_err("400");
        assert_eq!(
            e.to_string(),
            format!(
                "GET {}/d: answered HTTP 400 (invalid_client: AADSTS7000215: Invalid client \
                 secret.), not 200",
                server.base
            )
        );
    }

    #[tokio::test]
    async fn http_is_refused_but_to_loopback() {
        for url in [
            "http://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
            "http://10.0.0.1/d",
            "http://[fe80::1]/d",
            "ftp://127.0.0.1/d",
            "file:///etc/passwd",
            "not a url",
        ] {
            let e = fetch_json(&client(), url, 1024).await.expect_err(url);
            assert!(
                matches!(exchange_error(e), ExchangeError::BadUrl(_)),
                "{url} not refused before sending"
            );
        }
        for ok in [
            "http://127.0.0.1/",
            "http://127.1.2.3/",
            "http://[::1]/",
            "https://example.com/",
        ] {
            let url = reqwest::Url::parse(ok).expect("a URL");
            assert!(check_url(&url).is_ok(), "{ok}");
        }
    }
}
