//! The Entra stand-in itself, checked with libraries only (reqwest, jsonwebtoken, rsa,
//! rcgen): its discovery and keys are Entra's shape, its hints verify against its JWKS and
//! a stranger's do not, its start page posts every field HTML-escaped, and its redirect URI
//! judges a provider's answer as Entra would (here against a small provider made in the test
//! with the same libraries, not callverify).

use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use callverify_e2e::{BOUND, EntraStandIn, V4, validate_id_token};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

const TENANT: &str = "14c2f153-90a7-4689-9db7-9543bf084dad";
const CLIENT: &str = "600b719b-3766-4dc5-95a6-3c4a8dc31885";
const OID: &str = "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee";

fn http() -> reqwest::Client {
    callverify_e2e::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

async fn get_json(url: &str) -> (reqwest::header::HeaderMap, Value) {
    let r = http().get(url).send().await.expect("GET");
    assert_eq!(r.status(), 200, "{url}");
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("the body");
    (headers, serde_json::from_slice(&body).expect("JSON"))
}

/// The key of `jwks` with `kid`, for jsonwebtoken.
fn key_of(jwks: &Value, kid: &str) -> Option<DecodingKey> {
    let k = jwks["keys"].as_array()?.iter().find(|k| k["kid"] == kid)?;
    DecodingKey::from_rsa_components(k["n"].as_str()?, k["e"].as_str()?).ok()
}

/// Verifies a hint as a provider would: by its kid in Entra's JWKS, RS256, the tenant's
/// issuer, our client id; the hint is issued expired, so exp is not checked.
fn verify_hint(jwks: &Value, hint: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(hint).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let key = key_of(jwks, &kid).ok_or("kid not published")?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[CLIENT]);
    v.set_issuer(&[format!("https://login.microsoftonline.com/{TENANT}/v2.0")]);
    v.validate_exp = false;
    jsonwebtoken::decode::<Value>(hint, &key, &v)
        .map(|t| t.claims)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn discovery_and_keys_are_fetchable_and_hints_verify_against_them() {
    let entra = EntraStandIn::start(TENANT, CLIENT).await;
    let (headers, discovery) = get_json(&entra.discovery_url()).await;
    assert!(headers.get("content-length").is_some());
    assert_eq!(
        discovery["issuer"],
        "https://login.microsoftonline.com/{tenantid}/v2.0"
    );
    let jwks_uri = format!("{}/common/discovery/v2.0/keys", entra.base());
    assert_eq!(discovery["jwks_uri"], jwks_uri.as_str());
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    let (_, jwks) = get_json(&jwks_uri).await;
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kid"], entra.kid().as_str());
    let der = STANDARD
        .decode(jwk["x5c"][0].as_str().expect("x5c"))
        .expect("base64");
    x509_parser::parse_x509_certificate(&der).expect("an X.509 certificate");

    let hint = entra.hint(OID, json!({}));
    let header = jsonwebtoken::decode_header(&hint).expect("a JWS");
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.alg, Algorithm::RS256);
    let claims = verify_hint(&jwks, &hint).expect("Entra's hint verifies");
    assert_eq!(claims["oid"], OID);
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["sub"], entra.sub_of(OID).as_str());
    let (exp, iat) = (claims["exp"].as_i64(), claims["iat"].as_i64());
    assert!(exp < iat, "issued expired");

    let other = "9122040d-6c67-4c5b-b112-36a304b66dad";
    let claims = verify_hint(&jwks, &entra.hint(OID, json!({"tid": other, "iat": 1})))
        .expect("an overridden hint verifies");
    assert_eq!(claims["tid"], other);
    assert_eq!(claims["iat"], 1);

    for same_kid in [true, false] {
        let forged = entra.hint_signed_by_stranger(OID, same_kid);
        assert!(
            verify_hint(&jwks, &forged).is_err(),
            "a stranger's hint verified (same kid: {same_kid})"
        );
    }
}

#[tokio::test]
async fn the_start_page_posts_every_field_html_escaped() {
    let entra = EntraStandIn::start(TENANT, CLIENT).await;
    let mut form = entra.request_form(&entra.hint(OID, json!({})));
    let nasty = "\"><script>alert(1)</script>&'";
    form.push(("x\"<y".into(), nasty.into()));
    let url = entra.start_url("https://provider.test/authorize?a=1&b=\"2\"", form.clone());
    let r = http().get(&url).send().await.expect("GET the start page");
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("the page");
    assert!(page.contains(
        "<form method=\"POST\" action=\"https://provider.test/authorize?a=1&amp;b=&quot;2&quot;\" \
         enctype=\"application/x-www-form-urlencoded\">"
    ));
    assert!(page.contains("document.forms[0].submit()"));
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains(
        "name=\"x&quot;&lt;y\" value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;&#39;\""
    ));
    assert_eq!(page.matches("<input type=\"hidden\"").count(), form.len());
    let names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    for name in [
        "scope",
        "response_type",
        "response_mode",
        "client_id",
        "redirect_uri",
        "nonce",
        "state",
        "id_token_hint",
        "claims",
        "client-request-id",
    ] {
        assert!(names.contains(&name), "{name} missing");
    }
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let claims: Value = serde_json::from_str(&field("claims").expect("claims")).expect("JSON");
    assert_eq!(
        claims["id_token"]["acr"]["values"],
        json!(["possessionorinherence"])
    );
    assert!(
        claims["id_token"]["amr"]["values"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("tel")))
    );
    assert_eq!(field("client-request-id").map(|g| g.len()), Some(36));
}

/// A small OIDC provider made of libraries: discovery and JWKS on loopback, and its key.
struct Provider {
    issuer: String,
    kid: String,
    key: EncodingKey,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Provider {
    async fn start(x5c_of_another_key: bool) -> Provider {
        let listener = tokio::net::TcpListener::bind((V4, 0)).await.expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("address"));
        let (pem, n, e, der) = tokio::task::spawn_blocking(move || {
            let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("a key");
            let pem = private
                .to_pkcs8_pem(LineEnding::LF)
                .expect("PEM")
                .to_string();
            let certified = if x5c_of_another_key {
                rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                    .expect("a key")
                    .to_pkcs8_pem(LineEnding::LF)
                    .expect("PEM")
                    .to_string()
            } else {
                pem.clone()
            };
            let pair =
                rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&certified, &rcgen::PKCS_RSA_SHA256)
                    .expect("rcgen key");
            let cert = rcgen::CertificateParams::new(Vec::<String>::new())
                .and_then(|p| p.self_signed(&pair))
                .expect("a certificate");
            (
                pem,
                URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
                URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
                STANDARD.encode(cert.der()),
            )
        })
        .await
        .expect("keys");
        let kid = "provider-key-1".to_string();
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "jwks_uri": format!("{issuer}/jwks"),
            "scopes_supported": ["openid"],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claim_types_supported": ["normal"],
        });
        let jwks = json!({"keys": [{"kty": "RSA", "use": "sig", "kid": kid, "n": n, "e": e, "x5c": [der]}]});
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(discovery) }),
            )
            .route("/jwks", get(move || async move { Json(jwks) }));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("signing key");
        Provider {
            issuer,
            kid,
            key,
            task,
        }
    }

    fn token(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.key).expect("sign")
    }
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
    .expect("seconds fit")
}

/// What a provider answers for `form`: claims as the reference asks, `change` applied.
fn claims_for(issuer: &str, form: &[(String, String)], sub: &str, change: Value) -> Value {
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut c = json!({
        "iss": issuer, "aud": CLIENT, "exp": now() + 300, "iat": now(), "sub": sub,
        "nonce": field("nonce"), "acr": "possessionorinherence", "amr": ["tel"],
    });
    if let (Some(c), Value::Object(o)) = (c.as_object_mut(), change) {
        c.extend(o);
    }
    c
}

async fn post_answer(entra: &EntraStandIn, fields: &[(&str, &str)]) -> String {
    let body = fields
        .iter()
        .fold(
            url::form_urlencoded::Serializer::new(String::new()),
            |mut s, (k, v)| {
                s.append_pair(k, v);
                s
            },
        )
        .finish();
    http()
        .post(entra.redirect_uri())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST the answer")
        .text()
        .await
        .expect("the page")
}

#[tokio::test]
async fn answers_are_judged_as_entra_would() {
    let entra = EntraStandIn::start(TENANT, CLIENT).await;
    let provider = Provider::start(false).await;
    entra.set_provider_issuer(&provider.issuer);
    let sub = entra.sub_of(OID);
    let cases: [(Value, Option<&str>); 7] = [
        (json!({}), None),
        (json!({"nonce": "other"}), Some("nonce")),
        (json!({"amr": ["sms"]}), Some("amr")),
        (json!({"acr": "knowledge"}), Some("acr")),
        (json!({"sub": "someone else"}), Some("sub")),
        (json!({"aud": "another client"}), Some("validate")),
        (json!({"exp": now() - 10}), Some("validate")),
    ];
    for (change, failure) in cases {
        let form = entra.request_form(&entra.hint(OID, json!({})));
        let state = form
            .iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.clone())
            .expect("state");
        let token = provider.token(&claims_for(&provider.issuer, &form, &sub, change.clone()));
        let page = post_answer(&entra, &[("id_token", &token), ("state", &state)]).await;
        let answer = entra.next_answer(BOUND).await.expect("an answer");
        match failure {
            None => {
                assert!(page.contains("<p id=\"result\">signed in</p>"), "{page}");
                assert_eq!(answer.verdict.expect("valid")["amr"], json!(["tel"]));
                // The same answer again: each request is answered once.
                post_answer(&entra, &[("id_token", &token), ("state", &state)]).await;
                let again = entra.next_answer(BOUND).await.expect("an answer");
                assert!(again.verdict.is_err(), "a replayed answer was taken");
            }
            Some(what) => {
                let e = answer.verdict.expect_err(&format!("{change} accepted"));
                assert!(e.contains(what), "{change}: {e}");
                assert!(page.contains("<p id=\"result\">error: "), "{page}");
            }
        }
    }
    let page = post_answer(&entra, &[("error", "access_denied"), ("state", "s")]).await;
    assert!(page.contains("<p id=\"result\">error: access_denied</p>"));
    assert_eq!(
        entra
            .next_answer(BOUND)
            .await
            .expect("an answer")
            .verdict
            .expect_err("denied"),
        "access_denied"
    );
    assert!(
        entra
            .next_answer(Duration::from_millis(100))
            .await
            .is_none()
    );
    assert_eq!(entra.answers().len(), 9);
}

#[tokio::test]
async fn a_jwk_whose_certificate_holds_another_key_is_refused() {
    let provider = Provider::start(true).await;
    let token = provider.token(&json!({
        "iss": provider.issuer, "aud": CLIENT, "exp": now() + 300, "iat": now(), "sub": "s",
        "nonce": "n", "acr": "possessionorinherence", "amr": ["tel"],
    }));
    let e = validate_id_token(
        &provider.issuer,
        &token,
        CLIENT,
        "s",
        "n",
        &["possessionorinherence"],
    )
    .await
    .expect_err("x5c of another key");
    assert!(e.contains("x5c"), "{e}");
}

#[tokio::test]
async fn graph_gives_the_phones_added_to_an_app_with_the_right_secret() {
    let entra = EntraStandIn::start(TENANT, CLIENT).await;
    entra.set_graph_app("graph-app", "graph-secret");
    entra.add_graph_phone(OID, "+1 2065555555", "mobile");
    let token_url = format!("{}/{TENANT}/oauth2/v2.0/token", entra.base());
    let form = |secret: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", "graph-app")
            .append_pair("client_secret", secret)
            .append_pair("scope", "https://graph.microsoft.com/.default")
            .append_pair("grant_type", "client_credentials")
            .finish()
    };
    let post = |body: String| {
        http()
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    assert_eq!(post(form("wrong")).await.expect("POST").status(), 400);
    let answer: Value = serde_json::from_slice(
        &post(form("graph-secret"))
            .await
            .expect("POST")
            .bytes()
            .await
            .expect("body"),
    )
    .expect("JSON");
    let token = answer["access_token"].as_str().expect("a token");
    let phones_url = format!(
        "{}/v1.0/users/{OID}/authentication/phoneMethods",
        entra.base()
    );
    let unauthorised = http()
        .get(&phones_url)
        .bearer_auth("nope")
        .send()
        .await
        .expect("GET");
    assert_eq!(unauthorised.status(), 401);
    let r = http()
        .get(&phones_url)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    let phones: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("JSON");
    assert_eq!(phones["value"][0]["phoneNumber"], "+1 2065555555");
    assert_eq!(phones["value"][0]["phoneType"], "mobile");
}
