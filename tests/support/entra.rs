//! A stand-in for Microsoft Entra in the EAM flow, built only from Microsoft's public
//! description of it (the external method provider reference, and the shapes of Entra's
//! discovery document and id tokens): Entra's discovery and keys, hints signed with its key
//! (and with a stranger's), the page that posts the authorization request to the provider,
//! the redirect URI that takes the provider's answer and validates its id_token as Entra
//! would, and the two Graph endpoints the provider may ask for the user's phones. JOSE is
//! jsonwebtoken's, RSA keys the rsa crate's, certificates rcgen's and x509-parser's: nothing
//! of callverify's own.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

/// Entra's issuer, with the tenant left as a template, as its discovery document has it.
const ISSUER_TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
/// The amr values the reference's example request offers.
const AMR_OFFERED: [&str; 13] = [
    "face", "fido", "fpt", "hwk", "iris", "otp", "pop", "retina", "sc", "sms", "swk", "tel", "vbm",
];
/// The acr the standard request asks for.
const ACR_ASKED: &str = "possessionorinherence";
/// Graph's scope for app tokens.
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The largest discovery or JWKS document [`validate_id_token`] reads.
const MAX_DOCUMENT: usize = 256 * 1024;

/// What the provider posted to the redirect URI, and what Entra would make of it.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The posted form, in order.
    pub form: Vec<(String, String)>,
    /// The id_token's claims if it validated, else what failed (or the posted `error`).
    pub verdict: Result<Value, String>,
}

/// A signing key: its key id, its private half for jsonwebtoken, its JWK with `x5c`.
struct Key {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

/// What the stand-in remembers of a request it started, to judge the answer.
#[derive(Clone)]
struct Request {
    sub: String,
    nonce: String,
    acr_values: Vec<String>,
}

#[derive(Default)]
struct Memory {
    subs: HashMap<String, String>,
    starts: HashMap<String, (String, Vec<(String, String)>)>,
    requests: HashMap<String, Request>,
    provider_issuer: Option<String>,
    answers: Vec<Answer>,
    taken: usize,
    graph_app: Option<(String, String)>,
    graph_tokens: HashSet<String>,
    phones: HashMap<String, Vec<(String, String)>>,
}

struct Shared {
    base: String,
    tenant: String,
    client_id: String,
    entra: Key,
    stranger: Key,
    memory: Mutex<Memory>,
    answered: tokio::sync::Notify,
}

impl Shared {
    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Entra, on 127.0.0.1, for one test; stopped when dropped.
pub struct EntraStandIn {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EntraStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EntraStandIn {
    /// An axum server on 127.0.0.1:<free port> (a task of the test's runtime, stopped on drop),
    /// with its own RSA key and, for a second key that Entra does not publish, another.
    pub async fn start(tenant: &str, client_id: &str) -> EntraStandIn {
        let listener = tokio::net::TcpListener::bind((crate::V4, 0))
            .await
            .expect("bind the Entra stand-in to a loopback port");
        let addr = listener.local_addr().expect("the stand-in's address");
        let (entra, stranger) = tokio::task::spawn_blocking(|| (new_key(), new_key()))
            .await
            .expect("make the stand-in's keys");
        let shared = Arc::new(Shared {
            base: format!("http://{addr}"),
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            entra,
            stranger,
            memory: Mutex::new(Memory::default()),
            answered: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route(
                "/common/v2.0/.well-known/openid-configuration",
                get(discovery),
            )
            .route("/common/discovery/v2.0/keys", get(keys))
            .route("/common/federation/externalauthprovider", post(redirect))
            .route("/start/{id}", get(start_page))
            .route("/{tid}/oauth2/v2.0/token", post(graph_token))
            .route(
                "/v1.0/users/{oid}/authentication/phoneMethods",
                get(graph_phones),
            )
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EntraStandIn { shared, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        self.shared.base.clone()
    }

    /// GET {base}/common/v2.0/.well-known/openid-configuration: issuer
    /// "https://login.microsoftonline.com/{tenantid}/v2.0", jwks_uri {base}/common/discovery/v2.0/keys,
    /// and the other fields of Entra's real document.
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/common/v2.0/.well-known/openid-configuration",
            self.base()
        )
    }

    /// {base}/common/federation/externalauthprovider (POST: records an [`Answer`]).
    pub fn redirect_uri(&self) -> String {
        format!("{}/common/federation/externalauthprovider", self.base())
    }

    /// The issuer the provider's id_tokens are validated against (its discovery document is
    /// `{issuer}/.well-known/openid-configuration`).
    pub fn set_provider_issuer(&self, issuer: &str) {
        self.shared.memory().provider_issuer = Some(issuer.to_string());
    }

    /// The key id of Entra's published key.
    pub fn kid(&self) -> String {
        self.shared.entra.kid.clone()
    }

    /// A hint shaped like Microsoft's example (ver 2.0, iss https://login.microsoftonline.com/{tid}/v2.0,
    /// sub, aud = client id, iat = now, nbf = now, exp = now - 1 (issued expired), name,
    /// preferred_username, oid, tid; header typ JWT, alg RS256, kid), signed with Entra's key;
    /// `overrides` replaces or adds claims (e.g. {"tid": other} or {"iat": old}).
    pub fn hint(&self, oid: &str, overrides: Value) -> String {
        let claims = self.hint_claims(oid, overrides);
        sign(&self.shared.entra, &self.shared.entra.kid, &claims)
    }

    /// The same, signed by the unpublished key (same kid as the real one, or another: both).
    pub fn hint_signed_by_stranger(&self, oid: &str, same_kid: bool) -> String {
        let claims = self.hint_claims(oid, json!({}));
        let kid = if same_kid {
            &self.shared.entra.kid
        } else {
            &self.shared.stranger.kid
        };
        sign(&self.shared.stranger, kid, &claims)
    }

    /// The pairwise `sub` the stand-in gives the user `oid` (the same in every hint).
    pub fn sub_of(&self, oid: &str) -> String {
        self.shared
            .memory()
            .subs
            .entry(oid.to_string())
            .or_insert_with(|| URL_SAFE_NO_PAD.encode(random::<32>()))
            .clone()
    }

    fn hint_claims(&self, oid: &str, overrides: Value) -> Value {
        let now = unix_now();
        let tenant = &self.shared.tenant;
        let mut claims = json!({
            "ver": "2.0",
            "iss": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
            "sub": self.sub_of(oid),
            "aud": self.shared.client_id,
            "exp": now - 1,
            "iat": now,
            "nbf": now,
            "name": "Test User",
            "preferred_username": "testuser@contoso.com",
            "oid": oid,
            "tid": tenant,
        });
        if let (Some(c), Value::Object(o)) = (claims.as_object_mut(), overrides) {
            c.extend(o);
        }
        claims
    }

    /// Registers an authorization request (its form fields) and returns a URL on the stand-in
    /// whose page auto-posts that form (method POST, application/x-www-form-urlencoded) to
    /// `authorize_url`, as Entra does. A test's browser goes there.
    pub fn start_url(&self, authorize_url: &str, form: Vec<(String, String)>) -> String {
        let id = hex(&random::<16>());
        self.shared
            .memory()
            .starts
            .insert(id.clone(), (authorize_url.to_string(), form));
        format!("{}/start/{id}", self.base())
    }

    /// The standard form Entra posts: scope openid, response_type id_token, response_mode
    /// form_post, client_id, redirect_uri, a fresh random nonce and state, id_token_hint,
    /// claims (acr possessionorinherence, amr the reference's list), client-request-id a
    /// fresh GUID. The stand-in remembers it (by state) to judge the answer.
    pub fn request_form(&self, hint: &str) -> Vec<(String, String)> {
        let nonce = URL_SAFE_NO_PAD.encode(random::<24>());
        let state = URL_SAFE_NO_PAD.encode(random::<48>());
        let sub = jsonwebtoken::dangerous::insecure_decode::<Value>(hint)
            .ok()
            .and_then(|t| {
                t.claims
                    .get("sub")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .unwrap_or_default();
        self.shared.memory().requests.insert(
            state.clone(),
            Request {
                sub,
                nonce: nonce.clone(),
                acr_values: vec![ACR_ASKED.to_string()],
            },
        );
        let claims = json!({"id_token": {
            "acr": {"essential": true, "values": [ACR_ASKED]},
            "amr": {"essential": true, "values": AMR_OFFERED},
        }});
        [
            ("scope", "openid".to_string()),
            ("response_type", "id_token".to_string()),
            ("response_mode", "form_post".to_string()),
            ("client_id", self.shared.client_id.clone()),
            ("redirect_uri", self.redirect_uri()),
            ("nonce", nonce),
            ("state", state),
            ("id_token_hint", hint.to_string()),
            ("claims", claims.to_string()),
            ("client-request-id", guid()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Graph, for tests of the Graph lookup: POST {base}/{tid}/oauth2/v2.0/token (client
    /// credentials, checks the client id and secret given here) and GET
    /// {base}/v1.0/users/{oid}/authentication/phoneMethods (checks the bearer token).
    pub fn set_graph_app(&self, client_id: &str, client_secret: &str) {
        self.shared.memory().graph_app = Some((client_id.to_string(), client_secret.to_string()));
    }

    /// Gives the user `oid` a phone in Graph (`phone_type`: mobile, alternateMobile, office;
    /// `number` as Graph writes it, e.g. "+1 2065555555").
    pub fn add_graph_phone(&self, oid: &str, number: &str, phone_type: &str) {
        self.shared
            .memory()
            .phones
            .entry(oid.to_string())
            .or_default()
            .push((number.to_string(), phone_type.to_string()));
    }

    /// Waits (bounded by `timeout`) for the next answer posted to the redirect URI.
    pub async fn next_answer(&self, timeout: Duration) -> Option<Answer> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.answered.notified();
            {
                let mut m = self.shared.memory();
                if let Some(a) = m.answers.get(m.taken).cloned() {
                    m.taken += 1;
                    return Some(a);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Every answer posted so far.
    pub fn answers(&self) -> Vec<Answer> {
        self.shared.memory().answers.clone()
    }
}

/// A fresh 2048-bit RSA key, its self-signed certificate and its JWK.
fn new_key() -> Key {
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
    let pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .expect("the key as PKCS#8");
    let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("jsonwebtoken takes the key");
    let pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
        .expect("rcgen takes the key");
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.self_signed(&pair))
        .expect("a self-signed certificate");
    let kid = URL_SAFE_NO_PAD.encode(random::<20>());
    let jwk = json!({
        "kty": "RSA",
        "use": "sig",
        "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        "x5c": [STANDARD.encode(cert.der())],
        "cloud_instance_name": "microsoftonline.com",
        "issuer": ISSUER_TEMPLATE,
    });
    Key { kid, encoding, jwk }
}

fn sign(key: &Key, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign a hint")
}

async fn discovery(State(s): State<Arc<Shared>>) -> Json<Value> {
    let b = &s.base;
    Json(json!({
        "token_endpoint": format!("{b}/common/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{b}/common/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": ISSUER_TEMPLATE,
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{b}/common/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{b}/common/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{b}/common/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{b}/common/kerberos"),
        "tenant_region_scope": null,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }))
}

async fn keys(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "keys": [s.entra.jwk] }))
}

/// The page that posts a registered request to the provider, as Entra's does.
async fn start_page(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some((action, form)) = s.memory().starts.get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such request").into_response();
    };
    let inputs = form.iter().fold(String::new(), |mut out, (k, v)| {
        let _ = writeln!(
            out,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\" />",
            escape(k),
            escape(v)
        );
        out
    });
    Html(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Working...</title></head>\n\
         <body onload=\"document.forms[0].submit()\">\n\
         <form method=\"POST\" action=\"{}\" enctype=\"application/x-www-form-urlencoded\">\n\
         {inputs}<noscript><p>Script is disabled. Click Submit to continue.</p>\
         <input type=\"submit\" value=\"Submit\" /></noscript>\n</form></body></html>\n",
        escape(&action)
    ))
    .into_response()
}

/// The redirect URI: records the answer and Entra's verdict on it.
async fn redirect(
    State(s): State<Arc<Shared>>,
    Form(form): Form<Vec<(String, String)>>,
) -> Html<String> {
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let verdict = match (field("id_token"), field("error")) {
        (Some(token), _) => judge(&s, &token, field("state")).await,
        (None, Some(error)) => Err(error),
        (None, None) => Err("neither an id_token nor an error was posted".to_string()),
    };
    let page = match &verdict {
        Ok(_) => "<p id=\"result\">signed in</p>".to_string(),
        Err(e) => format!("<p id=\"result\">error: {}</p>", escape(e)),
    };
    s.memory().answers.push(Answer { form, verdict });
    s.answered.notify_one();
    Html(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Entra</title></head>\
         <body>{page}</body></html>\n"
    ))
}

/// Entra's verdict on an id_token answering the request of `state` (each state answered once).
async fn judge(s: &Shared, token: &str, state: Option<String>) -> Result<Value, String> {
    let (request, issuer) = {
        let mut m = s.memory();
        let request = state.and_then(|st| m.requests.remove(&st));
        (request, m.provider_issuer.clone())
    };
    let request = request
        .ok_or("the answer's state is not one of a request sent, or was answered already")?;
    let issuer = issuer.ok_or("the stand-in was given no provider issuer")?;
    let acr: Vec<&str> = request.acr_values.iter().map(String::as_str).collect();
    validate_id_token(
        &issuer,
        token,
        &s.client_id,
        &request.sub,
        &request.nonce,
        &acr,
    )
    .await
}

async fn graph_token(
    State(s): State<Arc<Shared>>,
    Path(tid): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let app = s.memory().graph_app.clone();
    let refuse = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    if tid != s.tenant {
        return refuse("invalid_request", "AADSTS90002: Tenant not found.");
    }
    let Some((id, secret)) = app else {
        return refuse(
            "unauthorized_client",
            "AADSTS700016: Application not found.",
        );
    };
    if field("client_id") != Some(id.as_str()) || field("client_secret") != Some(secret.as_str()) {
        return refuse(
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    if field("grant_type") != Some("client_credentials") || field("scope") != Some(GRAPH_SCOPE) {
        return refuse(
            "invalid_request",
            "AADSTS900144: grant_type or scope is wrong.",
        );
    }
    let token = URL_SAFE_NO_PAD.encode(random::<32>());
    s.memory().graph_tokens.insert(token.clone());
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}))
        .into_response()
}

async fn graph_phones(
    State(s): State<Arc<Shared>>,
    Path(oid): Path<String>,
    headers: HeaderMap,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let m = s.memory();
    if !bearer.is_some_and(|t| m.graph_tokens.contains(t)) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty or invalid."}})),
        )
            .into_response();
    }
    let value: Vec<Value> = m
        .phones
        .get(&oid)
        .into_iter()
        .flatten()
        .map(|(number, kind)| {
            json!({"id": guid(), "phoneNumber": number, "phoneType": kind, "smsSignInState": "notSupported"})
        })
        .collect();
    Json(json!({
        "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{oid}')/authentication/phoneMethods"),
        "value": value,
    }))
    .into_response()
}

/// Validates an id_token as Entra would, with jsonwebtoken, against the provider at `issuer`:
/// fetches {issuer}/.well-known/openid-configuration (checks it has a Content-Length and the
/// required fields, issuer equal to `issuer`), then its jwks_uri; picks the key by the token's
/// kid; checks the x5c certificate's public key is exactly that JWK's n and e (x509-parser);
/// RS256; iss, aud = client_id, exp in the future, iat not in the future; sub, nonce, acr one
/// of `acr_values`, amr == ["tel"]. Returns the claims or what failed.
pub async fn validate_id_token(
    issuer: &str,
    token: &str,
    client_id: &str,
    sub: &str,
    nonce: &str,
    acr_values: &[&str],
) -> Result<Value, String> {
    crate::install_crypto_provider();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))?;
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let discovery = get_document(&http, &discovery_url, true).await?;
    check_discovery(&discovery, issuer)?;
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap_or_default();
    let jwks = get_document(&http, jwks_uri, false).await?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("token header: {e}"))?;
    if header.alg != Algorithm::RS256 {
        return Err(format!("token alg {:?}, not RS256", header.alg));
    }
    let kid = header.kid.ok_or("the token's header has no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("no key {kid} in the provider's JWKS"))?;
    let (n, e) = (
        jwk["n"].as_str().ok_or("the JWK has no n")?,
        jwk["e"].as_str().ok_or("the JWK has no e")?,
    );
    check_x5c(jwk, n, e)?;
    let key = DecodingKey::from_rsa_components(n, e).map_err(|e| format!("the JWK: {e}"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[client_id]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| format!("the id_token does not validate: {e}"))?
        .claims;
    check_claims(&claims, sub, nonce, acr_values)?;
    Ok(claims)
}

/// A provider's document: status 200, JSON, at most [`MAX_DOCUMENT`] bytes; with
/// `content_length`, a Content-Length equal to the body's length.
async fn get_document(
    http: &reqwest::Client,
    url: &str,
    content_length: bool,
) -> Result<Value, String> {
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("GET {url}: more than {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    if content_length && declared != Some(body.len()) {
        return Err(format!(
            "GET {url}: Content-Length {declared:?} for {} bytes",
            body.len()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

/// The discovery document's required values, as the reference lists them.
fn check_discovery(d: &Value, issuer: &str) -> Result<(), String> {
    let has = |field: &str, value: &str| {
        d[field]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == value))
    };
    if d["issuer"] != issuer {
        return Err(format!("discovery issuer {} is not {issuer}", d["issuer"]));
    }
    for field in ["authorization_endpoint", "jwks_uri"] {
        if !d[field].is_string() {
            return Err(format!("discovery has no {field}"));
        }
    }
    if !has("scopes_supported", "openid") {
        return Err("discovery scopes_supported lacks openid".into());
    }
    if !has("response_types_supported", "id_token") {
        return Err("discovery response_types_supported lacks id_token".into());
    }
    if !d["subject_types_supported"].is_array() {
        return Err("discovery has no subject_types_supported".into());
    }
    if !has("id_token_signing_alg_values_supported", "RS256") {
        return Err("discovery id_token_signing_alg_values_supported lacks RS256".into());
    }
    if !d["claim_types_supported"].is_null() && !has("claim_types_supported", "normal") {
        return Err("discovery claim_types_supported lacks normal".into());
    }
    Ok(())
}

/// The JWK's first x5c certificate holds exactly the JWK's public key.
fn check_x5c(jwk: &Value, n: &str, e: &str) -> Result<(), String> {
    let der = jwk["x5c"][0]
        .as_str()
        .ok_or("the JWK has no x5c")
        .and_then(|c| {
            STANDARD
                .decode(c)
                .map_err(|_| "the JWK's x5c is not base64")
        })?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("the JWK's x5c is not a certificate: {e}"))?;
    let Ok(x509_parser::public_key::PublicKey::RSA(key)) = cert.public_key().parsed() else {
        return Err("the x5c certificate's key is not RSA".into());
    };
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "the JWK's n or e is not base64url")
    };
    let same = |a: &[u8], b: &[u8]| strip_zeros(a) == strip_zeros(b);
    if !same(key.modulus, &decode(n)?) || !same(key.exponent, &decode(e)?) {
        return Err("the x5c certificate's key is not the JWK's".into());
    }
    Ok(())
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

/// The claims Entra checks beyond the signature and the registered ones.
fn check_claims(c: &Value, sub: &str, nonce: &str, acr_values: &[&str]) -> Result<(), String> {
    let iat = c["iat"].as_i64().ok_or("iat is not a number")?;
    if iat > unix_now() {
        return Err(format!("iat {iat} is in the future"));
    }
    if c["sub"] != sub {
        return Err(format!("sub {} is not the hint's", c["sub"]));
    }
    if c["nonce"] != nonce {
        return Err(format!("nonce {} is not the request's", c["nonce"]));
    }
    if !c["acr"].as_str().is_some_and(|a| acr_values.contains(&a)) {
        return Err(format!("acr {} is not one of {acr_values:?}", c["acr"]));
    }
    if c["amr"] != json!(["tel"]) {
        return Err(format!("amr {} is not [\"tel\"]", c["amr"]));
    }
    Ok(())
}

/// `s` for HTML text and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS generator");
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut out, x| {
        let _ = write!(out, "{x:02x}");
        out
    })
}

/// A fresh random (version 4) GUID.
fn guid() -> String {
    let mut b = random::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!(
        "{}-{}-{}-{}-{}",
        hex(&b[..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..])
    )
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}
