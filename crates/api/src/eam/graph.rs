//! The user's phones from Microsoft Graph (`/users/{oid}/authentication/phoneMethods`), read
//! with an app token of the user's tenant (client credentials), so that an EAM sign-in can
//! call a phone the user registered with Entra. Tokens are cached per tenant; the ids are
//! checked to be GUIDs before they go into a URL; every exchange is bounded
//! ([`bounded_json`]). Neither the client secret nor a token is ever logged or shown.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::header;
use serde_json::Value;

use super::entra::{EXCHANGE_TIMEOUT, ExchangeError, bounded_json};

/// The largest token or phone-methods answer read.
const MAX_BODY: usize = 64 * 1024;
/// The most phones kept of one user.
const MAX_PHONES: usize = 16;
/// A number longer than this is not a phone number.
const MAX_NUMBER_CHARS: usize = 40;
/// A token is used until this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// The longest a token is kept, whatever its answer says.
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(24 * 3600);
/// The most tenants whose tokens are kept at once.
const MAX_TENANTS: usize = 1024;
/// The scope of an app token for Graph.
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Where Graph and its token endpoint are, and the app callverify reads phones as.
#[derive(Clone)]
pub struct GraphSettings {
    /// The token endpoints' base, e.g. `https://login.microsoftonline.com`.
    pub login_url: String,
    /// Graph's base, e.g. `https://graph.microsoft.com/v1.0`.
    pub base_url: String,
    /// The app's client (application) id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
}

impl std::fmt::Debug for GraphSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSettings")
            .field("login_url", &self.login_url)
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// The kinds of phone Graph knows (`phoneType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphPhoneType {
    /// `mobile`.
    Mobile,
    /// `alternateMobile`.
    AlternateMobile,
    /// `office`.
    Office,
}

impl GraphPhoneType {
    /// The type of Graph's `phoneType` value; `None` for one callverify does not know.
    fn parse(s: &str) -> Option<GraphPhoneType> {
        match s {
            "mobile" => Some(GraphPhoneType::Mobile),
            "alternateMobile" => Some(GraphPhoneType::AlternateMobile),
            "office" => Some(GraphPhoneType::Office),
            _ => None,
        }
    }
}

/// One phone of a user, as Graph has it (the number without its spaces, not yet checked to
/// be E.164).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphPhone {
    /// The number, e.g. `+12065555555`.
    pub number: String,
    /// Its kind.
    pub phone_type: GraphPhoneType,
}

/// Why the user's phones could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A tenant or user id that is not a GUID (it is not put into a URL).
    #[error("the {0} is not a GUID: Graph is not asked")]
    NotGuid(&'static str),
    /// No app token.
    #[error(
        "getting a Graph token for tenant {tenant}: {why} (check the Graph app's client id and \
         secret, and that it has admin consent in that tenant)"
    )]
    Token {
        /// The tenant.
        tenant: String,
        /// What went wrong.
        #[source]
        why: ExchangeError,
    },
    /// The token answer was not one.
    #[error("the token endpoint answered without an access_token")]
    NoToken,
    /// Graph did not give the phones.
    #[error(
        "reading the user's phone methods from Graph: {why}{}",
        permission_hint(why)
    )]
    Phones {
        /// What went wrong.
        #[source]
        why: ExchangeError,
    },
    /// Graph's answer had no list.
    #[error("Graph's phone methods answer has no \"value\" array")]
    NoList,
}

fn permission_hint(why: &ExchangeError) -> &'static str {
    match why {
        ExchangeError::Status { status: 403, .. } => {
            " (the app needs the application permission UserAuthenticationMethod.Read.All, \
             with admin consent)"
        }
        _ => "",
    }
}

/// An app token; never shown.
struct AccessToken {
    secret: String,
    until: Instant,
}

/// Reads users' phones from Graph, with app tokens cached per tenant.
pub struct Graph {
    http: reqwest::Client,
    settings: GraphSettings,
    tokens: Mutex<HashMap<String, AccessToken>>,
    /// The longest one exchange may take (5 s; shortened in tests).
    pub(crate) timeout: Duration,
}

impl Graph {
    /// Graph as `settings` say, reached with `http` (see [`super::entra::http_client`]).
    pub fn new(http: reqwest::Client, settings: GraphSettings) -> Graph {
        Graph {
            http,
            settings,
            tokens: Mutex::new(HashMap::new()),
            timeout: EXCHANGE_TIMEOUT,
        }
    }

    /// GET {base_url}/users/{oid}/authentication/phoneMethods with an app token of tenant
    /// `tid` (client credentials: POST {login_url}/{tid}/oauth2/v2.0/token, form
    /// client_id, client_secret, scope=https://graph.microsoft.com/.default,
    /// grant_type=client_credentials). tid and oid must be GUIDs (checked before they go into a
    /// URL: no path injection). Numbers as Graph gives them ("+1 2065555555"): return them with
    /// the spaces removed; unknown phone types skipped; at most 16 kept; bodies ≤ 64 KiB.
    pub async fn phones(&self, tid: &str, oid: &str) -> Result<Vec<GraphPhone>, GraphError> {
        if !is_guid(tid) {
            return Err(GraphError::NotGuid("tenant id (tid)"));
        }
        if !is_guid(oid) {
            return Err(GraphError::NotGuid("user's object id (oid)"));
        }
        let token = self.token(tid).await?;
        let url = format!(
            "{}/users/{oid}/authentication/phoneMethods",
            self.settings.base_url.trim_end_matches('/')
        );
        let request = self.http.get(url).bearer_auth(token);
        match bounded_json(request, MAX_BODY, self.timeout).await {
            Ok(answer) => phones_in(&answer),
            Err(why) => {
                if matches!(why, ExchangeError::Status { status: 401, .. }) {
                    self.forget_token(tid);
                }
                Err(GraphError::Phones { why })
            }
        }
    }

    /// A token of tenant `tid`, cached or fetched.
    async fn token(&self, tid: &str) -> Result<String, GraphError> {
        if let Some(t) = self.locked_tokens().get(tid)
            && Instant::now() < t.until
        {
            return Ok(t.secret.clone());
        }
        let url = format!(
            "{}/{tid}/oauth2/v2.0/token",
            self.settings.login_url.trim_end_matches('/')
        );
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("client_secret", &self.settings.client_secret)
            .append_pair("scope", GRAPH_SCOPE)
            .append_pair("grant_type", "client_credentials")
            .finish();
        let request = self
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        let answer = bounded_json(request, MAX_BODY, self.timeout)
            .await
            .map_err(|why| GraphError::Token {
                tenant: tid.to_string(),
                why,
            })?;
        let secret = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or(GraphError::NoToken)?
            .to_string();
        let life = expires_in(&answer).min(MAX_TOKEN_LIFE);
        if let Some(usable) = life.checked_sub(TOKEN_MARGIN) {
            self.keep_token(tid, &secret, Instant::now() + usable);
        }
        Ok(secret)
    }

    fn locked_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, AccessToken>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn keep_token(&self, tid: &str, secret: &str, until: Instant) {
        let mut tokens = self.locked_tokens();
        if tokens.len() >= MAX_TENANTS && !tokens.contains_key(tid) {
            let now = Instant::now();
            tokens.retain(|_, t| now < t.until);
            if tokens.len() >= MAX_TENANTS {
                tokens.clear();
            }
        }
        tokens.insert(
            tid.to_string(),
            AccessToken {
                secret: secret.to_string(),
                until,
            },
        );
    }

    fn forget_token(&self, tid: &str) {
        self.locked_tokens().remove(tid);
    }
}

/// A token answer's `expires_in` (a number, or a string of one as older endpoints sent);
/// zero when absent, so that the token is used once and not kept.
fn expires_in(answer: &Value) -> Duration {
    let secs = match answer.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    Duration::from_secs(secs.unwrap_or(0))
}

/// The phones of a phone-methods answer: known types only, spaces removed, at most 16.
fn phones_in(answer: &Value) -> Result<Vec<GraphPhone>, GraphError> {
    let list = answer
        .get("value")
        .and_then(Value::as_array)
        .ok_or(GraphError::NoList)?;
    Ok(list
        .iter()
        .filter_map(|m| {
            let phone_type = GraphPhoneType::parse(m.get("phoneType")?.as_str()?)?;
            let number: String = m
                .get("phoneNumber")?
                .as_str()?
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let fits = !number.is_empty() && number.chars().count() <= MAX_NUMBER_CHARS;
            fits.then_some(GraphPhone { number, phone_type })
        })
        .take(MAX_PHONES)
        .collect())
}

/// Whether `s` is a GUID as Entra writes them (8-4-4-4-12 hexadecimal digits).
pub(crate) fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::{Form, Json, Router};
    use serde_json::json;

    use super::super::entra::tests::{TestServer, endless, serve};
    use super::*;

    const TID: &str = "14c2f153-90a7-4689-9db7-9543bf084dad";
    const OID: &str = "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee";
    const SECRET: &str = "s3cret~value";

    /// A stand-in for the token endpoint and Graph.
    #[derive(Default)]
    struct Fake {
        token_hits: AtomicUsize,
        phone_hits: AtomicUsize,
        expires_in: u64,
        issued: Mutex<HashSet<String>>,
        phones: Value,
        endless: bool,
    }

    async fn token(
        State(f): State<Arc<Fake>>,
        Path(_tid): Path<String>,
        Form(form): Form<HashMap<String, String>>,
    ) -> Response {
        let n = f.token_hits.fetch_add(1, Ordering::SeqCst);
        let field = |k: &str| form.get(k).map(String::as_str);
        if field("client_id") != Some("app")
            || field("client_secret") != Some(SECRET)
            || field("scope") != Some(GRAPH_SCOPE)
            || field("grant_type") != Some("client_credentials")
        {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})),
            )
                .into_response();
        }
        let t = format!("token-{n}");
        f.issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(t.clone());
        Json(json!({"token_type": "Bearer", "expires_in": f.expires_in, "access_token": t}))
            .into_response()
    }

    async fn phone_methods(
        State(f): State<Arc<Fake>>,
        Path(_oid): Path<String>,
        headers: HeaderMap,
    ) -> Response {
        f.phone_hits.fetch_add(1, Ordering::SeqCst);
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let known = f
            .issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(bearer);
        if !known {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"code": "InvalidAuthenticationToken"}})),
            )
                .into_response();
        }
        if f.endless {
            return endless();
        }
        Json(f.phones.clone()).into_response()
    }

    async fn fake(f: Fake) -> (Arc<Fake>, TestServer, Graph) {
        let f = Arc::new(f);
        let app = Router::new()
            .route("/{tid}/oauth2/v2.0/token", post(token))
            .route(
                "/v1.0/users/{oid}/authentication/phoneMethods",
                get(phone_methods),
            )
            .with_state(f.clone());
        let server = serve(app).await;
        let graph = graph_at(&server, SECRET);
        (f, server, graph)
    }

    fn graph_at(server: &TestServer, secret: &str) -> Graph {
        Graph::new(
            super::super::entra::http_client().expect("an HTTP client"),
            GraphSettings {
                login_url: server.base.clone(),
                base_url: format!("{}/v1.0/", server.base),
                client_id: "app".into(),
                client_secret: secret.into(),
            },
        )
    }

    fn three_phones() -> Value {
        json!({"value": [
            {"id": "3179e48a-750b-4051-897c-87b9720928f7", "phoneNumber": "+1 2065555555", "phoneType": "mobile", "smsSignInState": "notConfigured"},
            {"id": "b6332ec1-7057-4abe-9331-3d72feddfe41", "phoneNumber": "+44 20 7946 0958", "phoneType": "alternateMobile"},
            {"id": "e37fc753-ff3b-4958-9484-eaa9425c82bc", "phoneNumber": "+1 4255550100", "phoneType": "office"},
            {"id": "x", "phoneNumber": "+1 4255550101", "phoneType": "unknownFutureValue"},
            {"id": "y", "phoneType": "mobile"},
            {"id": "z", "phoneNumber": 12, "phoneType": "mobile"},
            "not an object"
        ]})
    }

    #[tokio::test]
    async fn phones_come_from_graph_with_an_app_token() {
        let (f, _server, graph) = fake(Fake {
            expires_in: 3599,
            phones: three_phones(),
            ..Fake::default()
        })
        .await;
        let phones = graph.phones(TID, OID).await.expect("the phones");
        assert_eq!(
            phones,
            vec![
                GraphPhone {
                    number: "+12065555555".into(),
                    phone_type: GraphPhoneType::Mobile
                },
                GraphPhone {
                    number: "+442079460958".into(),
                    phone_type: GraphPhoneType::AlternateMobile
                },
                GraphPhone {
                    number: "+14255550100".into(),
                    phone_type: GraphPhoneType::Office
                },
            ]
        );
        assert_eq!(f.token_hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn tokens_are_cached_per_tenant() {
        let (f, _server, graph) = fake(Fake {
            expires_in: 3599,
            phones: three_phones(),
            ..Fake::default()
        })
        .await;
        for _ in 0..3 {
            graph.phones(TID, OID).await.expect("the phones");
        }
        assert_eq!(f.token_hits.load(Ordering::SeqCst), 1);
        let other = "9122040d-6c67-4c5b-b112-36a304b66dad";
        graph.phones(other, OID).await.expect("the phones");
        graph.phones(other, OID).await.expect("the phones");
        assert_eq!(f.token_hits.load(Ordering::SeqCst), 2);
        assert_eq!(f.phone_hits.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn tokens_are_fetched_again_a_minute_before_they_expire() {
        // 61 s of life: usable for one second.
        let (f, _server, graph) = fake(Fake {
            expires_in: 61,
            phones: three_phones(),
            ..Fake::default()
        })
        .await;
        graph.phones(TID, OID).await.expect("the phones");
        graph.phones(TID, OID).await.expect("the phones");
        assert_eq!(f.token_hits.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        graph.phones(TID, OID).await.expect("the phones");
        assert_eq!(f.token_hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_token_with_a_minute_or_less_to_live_is_not_kept() {
        let (f, _server, graph) = fake(Fake {
            expires_in: 60,
            phones: three_phones(),
            ..Fake::default()
        })
        .await;
        graph.phones(TID, OID).await.expect("the phones");
        graph.phones(TID, OID).await.expect("the phones");
        assert_eq!(f.token_hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_token_graph_refuses_is_forgotten() {
        let (f, _server, graph) = fake(Fake {
            expires_in: 3599,
            phones: three_phones(),
            ..Fake::default()
        })
        .await;
        graph.phones(TID, OID).await.expect("the phones");
        f.issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let e = graph.phones(TID, OID).await.expect_err("revoked");
        assert!(e.to_string().contains("InvalidAuthenticationToken"), "{e}");
        graph.phones(TID, OID).await.expect("a new token");
        assert_eq!(f.token_hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn ids_that_are_not_guids_never_reach_graph() {
        let (f, _server, graph) = fake(Fake {
            expires_in: 3599,
            phones: three_phones(),
            ..Fake::default()
        })
        .await;
        let bad = [
            "",
            "..",
            "../../v1.0/users",
            "951ddb04-b16d-45f3-bbf7-b0fa18fa7ae",
            "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee/",
            "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee/../../x",
            "951ddb04-b16d-45f3-bbf7-b0fa18fa7aeg",
            "951ddb04+b16d-45f3-bbf7-b0fa18fa7aee",
            "951ddb04-b16d-45f3-bbf7-b0fa18fa7aé",
            "951ddb04-b16d-45f3-bbf7%2fb0fa18fa7ae",
        ];
        for id in bad {
            assert!(matches!(
                graph.phones(id, OID).await,
                Err(GraphError::NotGuid(_))
            ));
            assert!(matches!(
                graph.phones(TID, id).await,
                Err(GraphError::NotGuid(_))
            ));
        }
        assert_eq!(f.token_hits.load(Ordering::SeqCst), 0);
        assert_eq!(f.phone_hits.load(Ordering::SeqCst), 0);
        assert!(is_guid(&OID.to_uppercase()));
    }

    #[tokio::test]
    async fn an_endless_phone_list_is_refused() {
        let (_f, _server, graph) = fake(Fake {
            expires_in: 3599,
            endless: true,
            ..Fake::default()
        })
        .await;
        let e = graph.phones(TID, OID).await.expect_err("endless");
        assert!(
            matches!(
                e,
                GraphError::Phones {
                    why: ExchangeError::TooLarge(MAX_BODY)
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn at_most_sixteen_phones_are_kept() {
        let many: Vec<Value> = (0..40)
            .map(|i| json!({"phoneNumber": format!("+1 20655500{i:02}"), "phoneType": "mobile"}))
            .collect();
        let (_f, _server, graph) = fake(Fake {
            expires_in: 3599,
            phones: json!({ "value": many }),
            ..Fake::default()
        })
        .await;
        let phones = graph.phones(TID, OID).await.expect("the phones");
        assert_eq!(phones.len(), MAX_PHONES);
        assert_eq!(phones[15].number, "+12065550015");
    }

    #[tokio::test]
    async fn a_silent_graph_is_given_up_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let mut graph = Graph::new(
            super::super::entra::http_client().expect("an HTTP client"),
            GraphSettings {
                login_url: format!("http://{addr}"),
                base_url: format!("http://{addr}/v1.0"),
                client_id: "app".into(),
                client_secret: SECRET.into(),
            },
        );
        graph.timeout = Duration::from_millis(300);
        let e = graph.phones(TID, OID).await.expect_err("no answer");
        task.abort();
        assert!(
            matches!(
                e,
                GraphError::Token {
                    why: ExchangeError::TimedOut(_),
                    ..
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_secret_is_neither_shown_nor_in_errors() {
        let (_f, server, _graph) = fake(Fake {
            expires_in: 3599,
            phones: three_phones(),
            ..Fake::default()
        })
        .await;
        let wrong = "wrong-secret-value";
        let graph = graph_at(&server, wrong);
        let shown = format!("{:?}", graph.settings);
        assert!(!shown.contains(wrong), "{shown}");
        let e = graph.phones(TID, OID).await.expect_err("a wrong secret");
        let said = format!("{e} {e:?}");
        assert!(said.contains("AADSTS7000215"), "{said}");
        assert!(!said.contains(wrong), "{said}");
        assert!(!said.contains(OID), "{said}");
    }
}
