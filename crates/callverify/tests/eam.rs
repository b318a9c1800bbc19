//! callverify as a Microsoft Entra external authentication method, end to end: `callverify
//! serve` with `[eam]`, an Entra stand-in on loopback (its own RSA key, discovery document
//! and JWKS, hints shaped like Microsoft's examples, and a redirect endpoint that validates
//! what callverify posts with `jsonwebtoken`, a JOSE library the project did not write),
//! headless Chromium as the user's browser, and baresip as the user's phone (it answers and
//! presses '#').
//!
//! - A sign-in in English and in Japanese, at 1280x900 and at 390x844 (screenshots in
//!   `target/tmp/eam/`): the stand-in's page posts the request, callverify's page shows the
//!   call, baresip approves, and Chromium lands on the stand-in with an id_token that
//!   validates against callverify's discovery and JWKS (the x5c certificate's key included).
//! - A key rotation: the next key is published at once and signs only after
//!   `key_publish_hours`; `--now` switches at once; tokens of the old key still verify.
//! - A user with no phone: a page that says so and whom to ask; Entra gets `access_denied`.
//! - Refusals, over plain HTTP: a hint signed by another key, another tenant, another
//!   audience, an old `iat`, a replayed nonce (each `access_denied` with the state), an
//!   unknown `redirect_uri` or client (a 400 page, no redirect).
//! - A declined call (sipp answering 603): `access_denied` with the state.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use callverify_e2e::{
    BOUND, Baresip, EntraStandIn, Served, Sipp, V4, accessible, call_log, create_api_key,
    free_media_ports, free_port, open_browser, pound_wav, scratch, validate_id_token,
};
use serde_json::{Value, json};

const TENANT: &str = "14c2f153-90a7-4689-9db7-9543bf084dad";
const CLIENT: &str = "600b719b-3766-4dc5-95a6-3c4a8dc31885";
const OID: &str = "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee";
/// A user of the tenant with no phone anywhere.
const NO_PHONE_OID: &str = "0c6d6a3e-52b4-4c55-9e07-5f7a4e1c0b21";
const SECRET: &str = "0123456789abcdef0123456789abcdef-eam-test";
const HELP: &str = "the IT service desk (extension 4444)";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_callverify"))
}

/// The gateway's configuration: `trunk` its one trunk, the API (and the issuer) on `api`,
/// SQLite beside it, `[eam]` trusting the stand-in.
fn write_config(
    dir: &Path,
    trunk: std::net::SocketAddr,
    api: &str,
    entra: &EntraStandIn,
    graph: bool,
    confirmation: &str,
) -> PathBuf {
    // Two RTP/RTCP pairs: a call's pair lingers a moment after it ends.
    let rtp = free_media_ports(V4);
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts");
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\n\n\
         [[trunk]]\nname = \"phone\"\naddress = \"{trunk}\"\n\n\
         [media]\nrtp_ports = \"{rtp}-{rtp1}\"\n\n\
         [call]\nprompts = \"{prompts}\"\nfirst_key_timeout_s = 8\ncall_timeout_s = 60\n\
         confirmation = \"{confirmation}\"\n\n\
         [store]\nurl = \"sqlite://{db}\"\n\n\
         [api]\nlisten = \"{api}\"\n\n\
         [policy]\nallowed_countries = [\"JP\"]\n\n\
         [eam]\nissuer = \"http://{api}\"\nclient_ids = [\"{CLIENT}\"]\ntenants = [\"{TENANT}\"]\n\
         redirect_uris = [\"{redirect}\"]\nentra_discovery_url = \"{discovery}\"\n\
         help = \"{HELP}\"\n",
        sip = free_port(V4),
        rtp1 = rtp + 3,
        db = dir.join("cv.db").display(),
        redirect = entra.redirect_uri(),
        discovery = entra.discovery_url(),
    );
    let mut config = config;
    if graph {
        // The Graph app's secret: the variable `Served` sets anyway (the stand-in is told
        // the same value).
        config += &format!(
            "\n[eam.graph]\nclient_id = \"graph-app\"\n\
             client_secret_env = \"CALLVERIFY_WEBHOOK_SECRET\"\n\
             login_url = \"{base}\"\nbase_url = \"{base}/v1.0\"\n",
            base = entra.base()
        );
    }
    let path = dir.join("callverify.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Imports the user's phone (baresip's number) with `callverify import-phones`.
fn import_phone(dir: &Path, config: &Path) {
    let csv = dir.join("phones.csv");
    std::fs::write(
        &csv,
        format!("user_id,number,role\nentra:{TENANT}:{OID},+819012345678,primary\n"),
    )
    .unwrap();
    let out = Command::new(bin())
        .env("CALLVERIFY_WEBHOOK_SECRET", SECRET)
        .arg("import-phones")
        .arg("--config")
        .arg(config)
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import-phones: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `callverify eam-keys …` against the gateway's store: its stdout.
fn eam_keys(config: &Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .arg("eam-keys")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("CALLVERIFY_TOKEN_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "eam-keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The gateway serving with `[eam]`.
struct Gateway {
    _served: Served,
    config: PathBuf,
    api: String,
    dir: PathBuf,
}

impl Gateway {
    fn start(name: &str, trunk: std::net::SocketAddr, entra: &EntraStandIn) -> Gateway {
        Gateway::start_with(name, trunk, entra, false, "pound")
    }

    fn start_with(
        name: &str,
        trunk: std::net::SocketAddr,
        entra: &EntraStandIn,
        graph: bool,
        confirmation: &str,
    ) -> Gateway {
        let dir = scratch(name);
        let api = format!("127.0.0.1:{}", free_port(V4));
        let config = write_config(&dir, trunk, &api, entra, graph, confirmation);
        import_phone(&dir, &config);
        let served = Served::start(bin(), &config, &api, SECRET, &[], &dir.join("serve.log"));
        entra.set_provider_issuer(&format!("http://{api}"));
        Gateway {
            _served: served,
            config,
            api,
            dir,
        }
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.api)
    }

    fn authorize(&self) -> String {
        format!("{}/eam/authorize", self.issuer())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }
}

fn http() -> reqwest::Client {
    api::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(BOUND)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `application/x-www-form-urlencoded` of `fields`.
fn form_body(fields: &[(String, String)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// POSTs a form: the status and the body.
async fn post_form(url: &str, fields: &[(String, String)]) -> (u16, String) {
    let r = http()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(fields))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// GETs JSON (with a bearer token when given).
async fn get_json(url: &str, bearer: Option<&str>) -> Value {
    let mut req = http().get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let text = req.send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

/// Undoes the HTML escaping of callverify's pages.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden fields of a page's forms, and the action of its first form.
fn hidden_fields(html: &str) -> (Option<String>, Vec<(String, String)>) {
    let attr = |tag: &str, name: &str| {
        let key = format!("{name}=\"");
        let at = tag.find(&key)? + key.len();
        let end = tag[at..].find('"')? + at;
        Some(unescape(&tag[at..end]))
    };
    let action = html
        .split("<form")
        .nth(1)
        .and_then(|t| attr(t.split('>').next().unwrap_or_default(), "action"));
    let fields = html
        .split("<input")
        .skip(1)
        .filter_map(|t| {
            let tag = t.split('>').next()?;
            Some((attr(tag, "name")?, attr(tag, "value")?))
        })
        .collect();
    (action, fields)
}

fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn form_value<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    field(form, name)
}

/// Posts the request `form` to the authorization endpoint as Entra's page would: the
/// status and the page.
async fn post_request(gw: &Gateway, form: &[(String, String)]) -> (u16, String) {
    post_form(&gw.authorize(), form).await
}

/// A refused request: callverify's page posts `access_denied` and the request's state to
/// the stand-in's redirect URI, with a description containing `why`.
async fn assert_denied(gw: &Gateway, entra: &EntraStandIn, form: Vec<(String, String)>, why: &str) {
    let state = form_value(&form, "state").unwrap().to_string();
    let (status, page) = post_request(gw, &form).await;
    assert_eq!(status, 200, "{page}");
    let (action, fields) = hidden_fields(&page);
    assert_eq!(
        action.as_deref(),
        Some(entra.redirect_uri().as_str()),
        "{page}"
    );
    assert_eq!(field(&fields, "error"), Some("access_denied"), "{page}");
    assert_eq!(field(&fields, "state"), Some(state.as_str()));
    assert!(field(&fields, "id_token").is_none());
    let d = field(&fields, "error_description").unwrap_or_default();
    assert!(d.contains(why), "{why:?} in {d:?}");
}

/// A request refused with no redirect at all: a 400 page with no form to Entra.
async fn assert_not_redirected(gw: &Gateway, entra: &EntraStandIn, form: Vec<(String, String)>) {
    let (status, page) = post_request(gw, &form).await;
    assert_eq!(status, 400, "{page}");
    assert!(!page.contains(&entra.redirect_uri()), "no redirect: {page}");
    assert!(!page.contains("evil.example"), "no redirect: {page}");
    assert!(!page.contains("<form"), "{page}");
}

fn with(mut form: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    form.retain(|(k, _)| k != name);
    form.push((name.to_string(), value.to_string()));
    form
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_requests_are_refused_unless_genuine() {
    let entra = EntraStandIn::start(TENANT, CLIENT).await;
    // No call is placed here: the trunk is a port nobody listens on.
    let nobody = format!("127.0.0.1:{}", free_port(V4)).parse().unwrap();
    let gw = Gateway::start("eam-refusals", nobody, &entra);

    // The metadata: the issuer and the endpoints agree, with a Content-Length.
    let r = http()
        .get(format!("{}/.well-known/openid-configuration", gw.issuer()))
        .send()
        .await
        .unwrap();
    let length = r.headers().get("content-length").cloned();
    let doc: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(length.is_some(), "a Content-Length");
    assert_eq!(doc["issuer"], json!(gw.issuer()));
    assert_eq!(doc["authorization_endpoint"], json!(gw.authorize()));
    assert_eq!(doc["response_modes_supported"], json!(["form_post"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    let jwks = get_json(doc["jwks_uri"].as_str().unwrap(), None).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
    assert!(jwks["keys"][0]["x5c"][0].is_string(), "{jwks}");

    let good = || entra.request_form(&entra.hint(OID, json!({})));
    assert_denied(
        &gw,
        &entra,
        entra.request_form(&entra.hint_signed_by_stranger(OID, true)),
        "signature",
    )
    .await;
    assert_denied(
        &gw,
        &entra,
        entra.request_form(&entra.hint_signed_by_stranger(OID, false)),
        "key",
    )
    .await;
    let other_tenant = "2f5a8c3e-0000-4000-8000-000000000001";
    assert_denied(&gw, &entra, entra.request_form(&entra.hint(OID, json!({"tid": other_tenant, "iss": format!("https://login.microsoftonline.com/{other_tenant}/v2.0")}))), "tenant").await;
    assert_denied(
        &gw,
        &entra,
        entra.request_form(&entra.hint(OID, json!({"aud": "another-client"}))),
        "aud",
    )
    .await;
    let old = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 3600;
    assert_denied(
        &gw,
        &entra,
        entra.request_form(&entra.hint(OID, json!({"iat": old, "nbf": old, "exp": old}))),
        "ago",
    )
    .await;
    // A user with no phone at all: a page that says whom to ask, and access_denied.
    let (status, page) = post_request(
        &gw,
        &entra.request_form(&entra.hint(NO_PHONE_OID, json!({}))),
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains(HELP), "whom to ask: {page}");
    let (_, fields) = hidden_fields(&page);
    assert_eq!(field(&fields, "error"), Some("access_denied"));
    // The same request twice: the second is a replay.
    let form = entra.request_form(&entra.hint(NO_PHONE_OID, json!({})));
    let (status, _) = post_request(&gw, &form).await;
    assert_eq!(status, 200);
    assert_denied(&gw, &entra, form, "already used").await;
    // An unknown redirect URI or client: no redirect, ever.
    assert_not_redirected(
        &gw,
        &entra,
        with(good(), "redirect_uri", "https://evil.example/cb"),
    )
    .await;
    assert_not_redirected(
        &gw,
        &entra,
        with(
            good(),
            "redirect_uri",
            &format!("{}/", entra.redirect_uri()),
        ),
    )
    .await;
    assert_not_redirected(&gw, &entra, with(good(), "client_id", "evil-client")).await;
    // Each refusal is logged with its client-request-id.
    let log = gw.log();
    assert!(log.matches("EAM request refused").count() >= 6, "{log}");
    assert!(log.contains("client_request_id"), "{log}");
}

/// Follows an EAM call's page over HTTP until its state is one of `until`: the last page
/// fields (session, secret) and the state.
async fn follow(gw: &Gateway, page: &str, until: &[&str]) -> (Vec<(String, String)>, String) {
    let (_, fields) = hidden_fields(page);
    let cfg_start = page.find("id=\"cfg\">").expect("the page's settings") + 9;
    let cfg_end = page[cfg_start..].find("</script>").unwrap() + cfg_start;
    let cfg: Value = serde_json::from_str(&page[cfg_start..cfg_end].replace("<\\/", "</")).unwrap();
    let status = format!("http://{}{}", gw.api, cfg["status"].as_str().unwrap());
    let token = cfg["token"].as_str().unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get_json(&format!("{status}?wait=5"), Some(token)).await;
        let state = v["state"].as_str().unwrap_or_default().to_string();
        if until.contains(&state.as_str()) {
            return (fields, state);
        }
        assert!(Instant::now() < end, "still {state}; {}", gw.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_answers_entra_access_denied_with_the_state() {
    let entra = EntraStandIn::start(TENANT, CLIENT).await;
    let sipp = Sipp::start("decline", sip::Transport::Udp, V4);
    let gw = Gateway::start("eam-declined", sipp.addr, &entra);
    let form = entra.request_form(&entra.hint(OID, json!({})));
    let state = form_value(&form, "state").unwrap().to_string();
    let (status, page) = post_request(&gw, &form).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("+81 ** **** **78"),
        "the masked number: {page}"
    );
    let (fields, decided) = follow(&gw, &page, &["declined", "failed", "approved"]).await;
    assert_eq!(decided, "declined", "{}", gw.log());
    let session: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, _)| k == "session" || k == "secret")
        .take(2)
        .cloned()
        .collect();
    // "Call again" after a "no" (scripts off, the form posted by hand) does not call
    // again: the sign-in ends, and Entra hears access_denied.
    let mut again = session.clone();
    again.push(("action".into(), "again".into()));
    let (_, page) = post_form(&format!("{}/eam/action", gw.issuer()), &again).await;
    let (action, answer) = hidden_fields(&page);
    assert_eq!(action.as_deref(), Some(entra.redirect_uri().as_str()));
    assert_eq!(field(&answer, "error"), Some("access_denied"), "{page}");
    assert_eq!(field(&answer, "state"), Some(state.as_str()));
    assert!(field(&answer, "id_token").is_none());
    // Once only: neither the finish form nor another action answers Entra again or calls.
    let (status, _) = post_form(&format!("{}/eam/finish", gw.issuer()), &session).await;
    assert_eq!(status, 409);
    let (status, _) = post_form(&format!("{}/eam/action", gw.issuer()), &again).await;
    assert_eq!(status, 409);
    assert_eq!(
        gw.log().matches("challenge created").count(),
        1,
        "one call: {}",
        gw.log()
    );
    // The call log shows the sign-in came through EAM, with its client-request-id.
    let crid = form_value(&form, "client-request-id").unwrap();

    let log = gw.log();
    assert!(log.contains(crid), "the client-request-id is logged: {log}");
    let operator = create_api_key(bin(), &gw.config, "ops", "operator");
    // The call's row is written as the call ends.
    let end = Instant::now() + BOUND;
    let mut calls = call_log(&gw.api, &operator);
    while calls.is_empty() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        calls = call_log(&gw.api, &operator);
    }
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["origin"], json!("eam"));
    assert_eq!(calls[0]["origin_ref"], json!(crid));
    assert_eq!(calls[0]["outcome"], json!("declined"));
    drop(sipp);
}

/// With `[call] confirmation = "keypad_code"` the EAM sign-in is number matching: the call
/// page shows the two digits the challenge drew (the same the page's poll token reads), the
/// call asks for them, and sipp's decline ends it as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eam_sign_in_uses_the_configured_number_matching() {
    let entra = EntraStandIn::start(TENANT, CLIENT).await;
    let sipp = Sipp::start("decline", sip::Transport::Udp, V4);
    let gw = Gateway::start_with("eam-keypad", sipp.addr, &entra, false, "keypad_code");
    let form = entra.request_form(&entra.hint(OID, json!({})));
    let (status, page) = post_request(&gw, &form).await;
    assert_eq!(status, 200, "{page}");
    let at = page.find("id=\"code\">").expect("the number to enter") + 10;
    let shown = &page[at..at + 2];
    assert!(
        shown.bytes().all(|b| b.is_ascii_digit()) && shown.as_bytes()[0] != shown.as_bytes()[1],
        "{shown}"
    );
    let cfg_start = page.find("id=\"cfg\">").unwrap() + 9;
    let cfg_end = page[cfg_start..].find("</script>").unwrap() + cfg_start;
    let cfg: Value = serde_json::from_str(&page[cfg_start..cfg_end].replace("<\\/", "</")).unwrap();
    assert_eq!(cfg["confirmation"], "keypad_code");
    let status_url = format!("http://{}{}", gw.api, cfg["status"].as_str().unwrap());
    let c = get_json(&status_url, cfg["token"].as_str()).await;
    assert_eq!(
        (&c["confirmation"], c["display_code"].as_str()),
        (&json!("keypad_code"), Some(shown)),
        "{c}"
    );
    let (_, decided) = follow(&gw, &page, &["declined", "failed", "approved"]).await;
    assert_eq!(decided, "declined", "{}", gw.log());
    drop(sipp);
}

/// One sign-in in Chromium: the stand-in's page posts the request, callverify's page shows
/// the call (screenshot `shot`), baresip approves, and the stand-in validates the id_token.
/// Its claims.
async fn sign_in(
    b: &callverify_e2e::Browser,
    gw: &Gateway,
    entra: &EntraStandIn,
    lang: &str,
    shot: &str,
) -> (Value, String) {
    let mut form = entra.request_form(&entra.hint(OID, json!({})));
    form.push(("ui_locales".into(), lang.into()));
    let url = entra.start_url(&gw.authorize(), form.clone());
    b.go(&url).await;
    b.until(
        "return document.getElementById('calling') !== null;",
        "callverify's page",
    )
    .await;
    let calling = b.text("#calling").await;
    let expect = if lang == "ja" {
        "電話に出て # を押すと"
    } else {
        "We're calling your phone +81 ** **** **78. Answer it and press # to sign in."
    };
    assert!(calling.contains(expect), "{calling}");
    b.until(
        "return ['ringing', 'answered'].includes(document.body.dataset.state);",
        "the call's state on the page",
    )
    .await;
    b.screenshot(shot).await;
    accessible(b, shot).await;
    let answer = entra
        .next_answer(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("no answer reached the stand-in; {}", gw.log()));
    b.until(
        "const r = document.getElementById('result'); return r !== null && r.textContent === 'signed in';",
        "the stand-in's page",
    )
    .await;
    let claims = answer
        .verdict
        .unwrap_or_else(|e| panic!("the id_token: {e}"));
    assert_eq!(
        form_value(&answer.form, "state"),
        form_value(&form, "state"),
        "the state comes back"
    );
    let token = form_value(&answer.form, "id_token").unwrap().to_string();
    (claims, token)
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let v: Value = serde_json::from_slice(&header).unwrap();
    v["kid"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_sign_in_calls_the_phone_in_chromium() {
    let entra = EntraStandIn::start(TENANT, CLIENT).await;
    let phone = Baresip::start_saying_for(
        "eam-phone",
        &pound_wav("eam-phone-wav"),
        Duration::from_secs(240),
    );
    let gw = Gateway::start("eam-browser", phone.addr, &entra);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eam");
    std::fs::create_dir_all(&shots).unwrap();
    let (_driver, b) = open_browser(&shots).await;

    // English at 1280x900.
    let (claims, first) = sign_in(&b, &gw, &entra, "en", "eam-en-desktop").await;
    assert_eq!(claims["amr"], json!(["tel"]));
    assert_eq!(claims["acr"], json!("possessionorinherence"));
    assert_eq!(claims["tid"], json!(TENANT));
    assert_eq!(claims["oid"], json!(OID));
    assert_eq!(claims["aud"], json!(CLIENT));
    assert_eq!(claims["iss"], json!(gw.issuer()));

    // Japanese at 390x844.
    b.viewport(390, 844, true).await;
    let (_, _) = sign_in(&b, &gw, &entra, "ja", "eam-ja-mobile").await;
    b.viewport(1280, 900, false).await;

    // A rotation: the next key is published at once, signs only later.
    let out = eam_keys(&gw.config, &["rotate"]);
    assert!(out.contains("signs from"), "{out}");
    // Published within the few seconds the built document is served from memory.
    let end = Instant::now() + BOUND;
    let mut jwks = get_json(&format!("{}/eam/jwks", gw.issuer()), None).await;
    while jwks["keys"].as_array().unwrap().len() < 2 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(250)).await;
        jwks = get_json(&format!("{}/eam/jwks", gw.issuer()), None).await;
    }
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    let (_, second) = sign_in(&b, &gw, &entra, "ja", "eam-ja-desktop").await;
    assert_eq!(
        kid_of(&second),
        kid_of(&first),
        "the old key signs until the new one's time"
    );
    // --now: the new key signs at once; the old one's tokens still verify.
    eam_keys(&gw.config, &["rotate", "--now"]);
    b.viewport(390, 844, true).await;
    let (_, third) = sign_in(&b, &gw, &entra, "en", "eam-en-mobile").await;
    b.viewport(1280, 900, false).await;
    assert_ne!(kid_of(&third), kid_of(&first));
    let sub = entra.sub_of(OID);
    for t in [&first, &third] {
        let nonce = {
            use base64::Engine;
            let payload = t.split('.').nth(1).unwrap();
            let p: Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .unwrap(),
            )
            .unwrap();
            p["nonce"].as_str().unwrap().to_string()
        };
        validate_id_token(
            &gw.issuer(),
            t,
            CLIENT,
            &sub,
            &nonce,
            &["possessionorinherence"],
        )
        .await
        .unwrap_or_else(|e| panic!("a token of {} after the rotation: {e}", kid_of(t)));
    }
    let listed = eam_keys(&gw.config, &["list"]);
    assert_eq!(
        listed.lines().filter(|l| l.contains("published")).count(),
        3,
        "{listed}"
    );

    // A user with no phone, in the browser: the page says whom to ask; back to Entra with
    // access_denied.
    let form = entra.request_form(&entra.hint(NO_PHONE_OID, json!({})));
    b.go(&entra.start_url(&gw.authorize(), form.clone())).await;
    b.until(
        "return document.getElementById('help') !== null;",
        "the no-phone page",
    )
    .await;
    assert!(b.text("#help").await.contains(HELP));
    b.screenshot("eam-en-no-phone").await;
    b.click("#back-button").await;
    let answer = entra
        .next_answer(Duration::from_secs(30))
        .await
        .expect("an answer");
    assert_eq!(form_value(&answer.form, "error"), Some("access_denied"));
    assert_eq!(
        form_value(&answer.form, "state"),
        form_value(&form, "state")
    );
    drop(phone);
}

/// A user of the tenant whose phone only Microsoft Graph knows.
const GRAPH_OID: &str = "7a1f3c52-9d4e-4b8a-a1c3-2e5f6d7c8b90";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_found_in_graph_is_called_and_verified_once_approved() {
    let entra = EntraStandIn::start(TENANT, CLIENT).await;
    entra.set_graph_app("graph-app", SECRET);
    entra.add_graph_phone(GRAPH_OID, "+81 90 1234 5678", "mobile");
    let phone = Baresip::start_saying("eam-graph-phone", &pound_wav("eam-graph-wav"));
    let gw = Gateway::start_with("eam-graph", phone.addr, &entra, true, "pound");
    let user = format!("entra:{TENANT}:{GRAPH_OID}");
    let store = store::Store::open(&format!("sqlite://{}", gw.dir.join("cv.db").display()))
        .await
        .unwrap();
    assert!(
        store
            .verified_phone(&user, store::PhoneRole::Primary)
            .await
            .unwrap()
            .is_none(),
        "no phone here before"
    );

    let form = entra.request_form(&entra.hint(GRAPH_OID, json!({})));
    let (status, page) = post_request(&gw, &form).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("+81 ** **** **78"),
        "Graph's number is called: {page}"
    );
    let (fields, decided) =
        follow(&gw, &page, &["approved", "failed", "voicemail", "no_input"]).await;
    assert_eq!(decided, "approved", "{}", gw.log());
    let session: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, _)| k == "session" || k == "secret")
        .take(2)
        .cloned()
        .collect();
    let (_, answer) = post_form(&format!("{}/eam/finish", gw.issuer()), &session).await;
    let (action, answer) = hidden_fields(&answer);
    assert_eq!(action.as_deref(), Some(entra.redirect_uri().as_str()));
    let token = field(&answer, "id_token").expect("an id_token");
    let nonce = form_value(&form, "nonce").unwrap();
    let claims = validate_id_token(
        &gw.issuer(),
        token,
        CLIENT,
        &entra.sub_of(GRAPH_OID),
        nonce,
        &["possessionorinherence"],
    )
    .await
    .unwrap_or_else(|e| panic!("the id_token: {e}"));
    assert_eq!(claims["oid"], json!(GRAPH_OID));
    // Approved once, the phone is the user's verified phone: the next sign-in needs no
    // Graph.
    let kept = store
        .verified_phone(&user, store::PhoneRole::Primary)
        .await
        .unwrap()
        .expect("the phone is verified after the approved call");
    assert_eq!(kept.phone.masked(), "+81 ** **** **78");
    drop(phone);
}
