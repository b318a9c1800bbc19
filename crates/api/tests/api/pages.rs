//! The pages: the operators' `/console`, and the `/demo` page, off unless configured, whose
//! backend plays the identity service for users and numbers of its own.

use api::ApiConfig;
use store::KeyKind;

use crate::common::{Api, Reply, auth, config, enrolled, http, kind_of, sqlite, state};

#[tokio::test]
async fn the_console_is_served_with_its_content_security_policy() {
    let Api { addr, .. } = Api::start("api-console", config()).await;
    let r = http(addr, "GET", "/console", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/html"));
    assert!(r.headers["content-security-policy"].contains("connect-src 'self'"));
    assert!(r.body.contains("Operator key"));
}

#[tokio::test]
async fn the_demo_page_is_off_unless_configured() {
    let Api { addr, .. } = Api::start("api-demo-off", config()).await;
    for (method, path) in [
        ("GET", "/demo"),
        ("POST", "/demo/api/sign-in"),
        ("POST", "/demo/api/register"),
    ] {
        let r = http(addr, method, path, &[], br#"{"user_id":"alice"}"#).await;
        assert_eq!(r.status, 404, "{method} {path}");
        assert!(r.json()["type"].as_str().unwrap().ends_with("/demo-off"));
    }
}

/// The API with the demo page on, its key of its own, and +819012345678 its one number.
async fn demo_on(name: &str) -> Api {
    let store = sqlite(name).await;
    let (key, _) = store
        .create_api_key("demo page", KeyKind::Service, 0)
        .await
        .unwrap();
    let cfg = ApiConfig {
        demo_page: Some(key),
        demo_numbers: vec![store::PhoneNumber::parse("+819012345678").unwrap()],
        ..config()
    };
    Api::over(store, |store| state(store, cfg)).await
}

/// A POST of JSON from the page (it holds no key).
async fn page(api: &Api, path: &str, body: &str) -> Reply {
    let json = [("Content-Type", "application/json")];
    http(api.addr, "POST", path, &json, body.as_bytes()).await
}

/// On: the backend answers for the page with its own key (never shown), and problem+json on
/// bad input.
#[tokio::test]
async fn the_demo_backend_answers_for_the_page_with_a_key_of_its_own() {
    let api = demo_on("api-demo-on").await;
    assert_eq!(http(api.addr, "GET", "/demo", &[], b"").await.status, 200);
    let r = page(&api, "/demo/api/sign-in", r#"{"user_id":"alice"}"#).await;
    assert_eq!(
        (r.status, r.json()["next"].as_str()),
        (200, Some("register"))
    );
    let r = page(&api, "/demo/api/sign-in", r#"{"user_id":"a b"}"#).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = page(&api, "/demo/api/sign-in", r#"{"user":"alice"}"#).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Not JSON (what another site's form or no-cors fetch could send): refused.
    let r = http(
        api.addr,
        "POST",
        "/demo/api/register",
        &[("Content-Type", "text/plain")],
        br#"{"user_id":"alice","phone_number":"+819012345678"}"#,
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.body);
    let r = page(
        &api,
        "/demo/api/register",
        r#"{"user_id":"alice","phone_number":"+819012345678","language":"ja"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c = &r.json()["challenge"];
    assert_eq!(
        (c["purpose"].as_str(), c["state"].as_str()),
        (Some("enroll"), Some("queued"))
    );
    assert!(c["poll_token"].as_str().unwrap().starts_with("cvp_"));
    assert!(!r.body.contains("cvk_"), "no API key in the answer");
}

/// The demo page's users are `demo:` users of its own, and it registers only its numbers:
/// it never reaches a real user's phone.
#[tokio::test]
async fn the_demo_page_has_users_and_numbers_of_its_own() {
    let api = demo_on("api-demo-namespace").await;
    // A real user with a real phone.
    enrolled(api.addr, &api.store, &api.service, "alice", "+819011112222").await;
    // The page's alice is not the real alice: she has no phone yet.
    let r = page(&api, "/demo/api/sign-in", r#"{"user_id":"alice"}"#).await;
    assert_eq!(r.json()["next"], "register", "{}", r.body);
    // Only the demo's numbers.
    let r = page(
        &api,
        "/demo/api/register",
        r#"{"user_id":"alice","phone_number":"+819077778888"}"#,
    )
    .await;
    assert_eq!(
        (r.status, kind_of(&r).as_str()),
        (403, "not-a-demo-number"),
        "{}",
        r.body
    );
    assert!(r.body.contains("+81 ** **** **78"), "{}", r.body);
    let r = page(
        &api,
        "/demo/api/register",
        r#"{"user_id":"alice","phone_number":"+819012345678"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["challenge"]["user_id"], "demo:alice");
    let phones = api.store.phones("alice").await.unwrap();
    assert_eq!(phones.len(), 1);
    assert_eq!(
        phones[0].phone.as_e164(),
        Some("+819011112222"),
        "untouched"
    );
    assert_eq!(api.store.phones("demo:alice").await.unwrap().len(), 1);
}

#[tokio::test]
async fn real_keys_cannot_name_the_demo_pages_users() {
    let api = demo_on("api-demo-names").await;
    for (method, path, body) in [
        ("POST", "/v1/challenges", r#"{"user_id":"demo:alice"}"#),
        (
            "POST",
            "/v1/users/demo:alice/phones",
            r#"{"phone_number":"+819012345678"}"#,
        ),
        ("GET", "/v1/users/demo:alice/phones", ""),
        ("DELETE", "/v1/users/demo:alice/trusted-devices", ""),
        ("DELETE", "/v1/users/demo:alice/fraud-block", ""),
    ] {
        let key = auth(&api.service);
        let r = http(
            api.addr,
            method,
            path,
            &[("Authorization", &key)],
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 422, "{method} {path}: {}", r.body);
        assert!(r.body.contains("demo:"), "{}", r.body);
    }
}
