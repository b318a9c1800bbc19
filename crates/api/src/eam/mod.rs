//! callverify as a Microsoft Entra external authentication method (EAM): an OpenID Connect
//! provider that Entra sends the browser to for the second factor of a sign-in.
//!
//! - `GET {issuer}/.well-known/openid-configuration` and `GET {issuer}/eam/jwks`: the
//!   provider's metadata and its public keys (with their certificates, `x5c`).
//! - `POST {issuer}/eam/authorize` (GET too): Entra's request. It is checked (client,
//!   redirect URI, the `id_token_hint` against Entra's own keys, its tenant, audience and
//!   age, the nonce never seen before), the user is found by the hint's `tid` and `oid`, and
//!   an ordinary sign-in challenge calls their phone. The answer is a page that follows the
//!   call.
//! - `POST {issuer}/eam/finish` and `POST {issuer}/eam/action`: the page's forms, which
//!   carry the session's secret (never in a URL). Finishing releases the signed id_token to
//!   Entra's redirect URI once, or an OAuth error; the actions call again, call the other
//!   phone, or cancel.
//!
//! The protocol itself (JOSE, keys, the request, the hint, the token) is the sans-IO crate
//! `eam`; Entra's keys and Microsoft Graph are fetched by [`entra`] and [`graph`].

pub(crate) mod entra;
mod flow;
pub(crate) mod graph;
pub mod keys;
mod page;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use store::ApiKey;

pub use graph::GraphSettings;
pub use keys::{KeyPlace, KeyStore, KeyStoreError};

use crate::AppState;

/// Entra's authorization request is a form of a few KiB (the hint, the claims request);
/// this leaves room and no more.
const MAX_REQUEST: usize = 64 * 1024;

/// The provider: its settings, keys, Entra's keys and, optionally, Graph.
pub struct Provider {
    /// The protocol's settings.
    pub settings: eam::Settings,
    /// Where its signing keys are.
    pub keys: KeyStore,
    /// Whom a user without a phone should ask (`[eam] help`).
    pub help: Option<String>,
    /// The service key the provider's challenges are made with (never leaves the process).
    pub key: ApiKey,
    entra: entra::EntraKeys,
    graph: Option<graph::Graph>,
    /// The issuer's path ("" or "/mfa"): where the routes are.
    prefix: String,
    /// The JWKS document as last built, and when: the endpoint is public and building it
    /// parses every key, so it is rebuilt at most every [`JWKS_FRESH`].
    jwks: std::sync::Mutex<Option<(std::time::Instant, Arc<serde_json::Value>)>>,
}

/// How long the built JWKS document is served before it is built again from the keys kept
/// (a rotation is published within this time).
const JWKS_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.settings.issuer)
            .field("keys", &self.keys)
            .field("graph", &self.graph.is_some())
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// A provider. `graph`: look users' phones up in Microsoft Graph when they have none
    /// here.
    pub fn new(
        settings: eam::Settings,
        keys: KeyStore,
        key: ApiKey,
        help: Option<String>,
        graph: Option<GraphSettings>,
    ) -> Result<Provider, reqwest::Error> {
        let http = entra::http_client()?;
        let prefix = url::Url::parse(&settings.issuer)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        Ok(Provider {
            entra: entra::EntraKeys::new(http.clone(), settings.entra_discovery_url.clone()),
            graph: graph.map(|g| graph::Graph::new(http, g)),
            settings,
            keys,
            help,
            key,
            prefix,
            jwks: std::sync::Mutex::new(None),
        })
    }
}

/// The provider's routes, at the issuer's path.
pub(crate) fn routes(provider: &Provider) -> Router<AppState> {
    let p = &provider.prefix;
    Router::new()
        .route(
            &format!("{p}{}", eam::discovery::DISCOVERY_PATH),
            get(discovery),
        )
        .route(&format!("{p}{}", eam::discovery::JWKS_PATH), get(jwks))
        .route(
            &format!("{p}{}", eam::discovery::AUTHORIZE_PATH),
            get(flow::authorize).post(flow::authorize),
        )
        .route(&format!("{p}/eam/finish"), post(flow::finish))
        .route(&format!("{p}/eam/action"), post(flow::action))
        .route(
            &format!("{p}/eam/challenges/{{id}}"),
            get(crate::challenges::get_challenge),
        )
        .route(
            &format!("{p}/eam/challenges/{{id}}/check"),
            post(crate::challenges::check_code),
        )
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
}

/// The provider, when it is on.
fn provider(state: &AppState) -> Option<&Arc<Provider>> {
    state.cfg.eam.as_ref()
}

/// The answer of the provider's routes when it is off.
fn off() -> Response {
    (StatusCode::NOT_FOUND, "the EAM provider is off").into_response()
}

/// JSON with its Content-Length (Entra requires one) and a day of caching at most.
fn json(v: &serde_json::Value) -> Response {
    let body = v.to_string();
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// `GET {issuer}/.well-known/openid-configuration`.
async fn discovery(State(state): State<AppState>) -> Response {
    match provider(&state) {
        Some(p) => json(&eam::discovery::document(&p.settings.issuer)),
        None => off(),
    }
}

/// `GET {issuer}/eam/jwks`: every key published now.
async fn jwks(State(state): State<AppState>) -> Response {
    let Some(p) = provider(&state) else {
        return off();
    };
    match p.published().await {
        Ok(doc) => json(&doc),
        Err(why) => {
            tracing::error!(error = %why, "EAM keys cannot be read");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the keys cannot be read now",
            )
                .into_response()
        }
    }
}

impl Provider {
    /// The JWKS document of the keys published now (built again at most every
    /// [`JWKS_FRESH`]).
    async fn published(&self) -> Result<Arc<serde_json::Value>, String> {
        let cached = self.jwks.lock().ok().and_then(|c| c.clone());
        if let Some((at, doc)) = cached
            && at.elapsed() < JWKS_FRESH
        {
            return Ok(doc);
        }
        let ring = self.keys.load().await.map_err(|e| e.to_string())?;
        let doc = Arc::new(
            ring.jwks(store::now_ms(), self.settings.key_publish)
                .map_err(|e| e.to_string())?,
        );
        if let Ok(mut c) = self.jwks.lock() {
            *c = Some((std::time::Instant::now(), doc.clone()));
        }
        Ok(doc)
    }
}
