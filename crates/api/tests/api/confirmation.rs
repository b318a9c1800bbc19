//! The confirmation modes over HTTP: the mode per request, per API key and from the
//! configuration; number matching's `display_code` shown to the front end only; a spoken
//! code checked with `POST /v1/challenges/{id}/check` (its poll token or service key, at
//! most five attempts, never an operator), and the call log showing the mode and whether
//! the code matched, never the code.

use api::ApiConfig;
use store::{ChallengeState, Confirmation, code_hash, now_ms};

use crate::common::{Api, auth, authorized, ch, config, kind_of, post_json};

const SIGN_IN: &str = r#"{"phone_number":"+819012345678","language":"ja"#;

fn body(mode: &str) -> String {
    format!(r#"{SIGN_IN}","confirmation":"{mode}"}}"#)
}

#[tokio::test]
async fn number_matching_shows_its_two_digits_to_the_front_end_only() {
    let Api {
        addr,
        service,
        operator,
        store,
    } = Api::start("api-keypad-code", config()).await;
    let r = post_json(addr, "/v1/challenges", &service, &body("keypad_code")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let made = r.json();
    assert_eq!(made["confirmation"], "keypad_code");
    let code = made["display_code"]
        .as_str()
        .expect("a display code")
        .to_string();
    let b = code.as_bytes();
    assert!(
        b.len() == 2 && b.iter().all(u8::is_ascii_digit) && b[0] != b[1],
        "{code}"
    );
    let id = made["id"].as_str().unwrap().to_string();
    let path = format!("/v1/challenges/{id}");
    let token = auth(made["poll_token"].as_str().unwrap());
    // Its poll token and its key read the code; an operator does not.
    for (who, shown) in [
        (token, true),
        (auth(&service), true),
        (auth(&operator), false),
    ] {
        let r = authorized(addr, "GET", &path, &who).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["confirmation"], "keypad_code");
        assert_eq!(
            r.json()["display_code"].as_str() == Some(&code),
            shown,
            "{}",
            r.body
        );
    }
    // '#' alone has no code; an unknown mode is refused.
    let r = post_json(addr, "/v1/challenges", &service, &body("pound")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["confirmation"], "pound");
    assert!(r.json().get("display_code").is_none(), "{}", r.body);
    let r = post_json(addr, "/v1/challenges", &service, &body("sms")).await;
    assert_eq!(
        (r.status, kind_of(&r).as_str()),
        (400, "malformed-body"),
        "{}",
        r.body
    );
    // Approved by its digits: the call log says the code matched, and shows no code.
    let c = store.challenge(&ch(&id)).await.unwrap().unwrap();
    store
        .start_call(&store::NewCall {
            id: store::CallId::new(),
            challenge_id: c.id.clone(),
            phone_masked: c.phone.masked(),
            started_at_ms: now_ms(),
        })
        .await
        .unwrap();
    crate::common::decided(&store, &id, ChallengeState::Approved, now_ms()).await;
    let r = authorized(addr, "GET", "/v1/calls", &auth(&operator)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let call = &r.json()["calls"][0];
    assert_eq!(
        (&call["confirmation"], &call["code_matched"]),
        (&serde_json::json!("keypad_code"), &serde_json::json!(true)),
        "{}",
        r.body
    );
    assert!(!r.body.contains(&format!("\"{code}\"")), "{}", r.body);
}

#[tokio::test]
async fn the_mode_comes_from_the_request_then_the_key_then_the_configuration() {
    let cfg = ApiConfig {
        confirmation: Confirmation::SpokenCode,
        ..config()
    };
    let Api {
        addr,
        service,
        store,
        ..
    } = Api::start("api-confirmation-defaults", cfg).await;
    let plain = format!("{SIGN_IN}\"}}");
    let r = post_json(addr, "/v1/challenges", &service, &plain).await;
    assert_eq!(r.json()["confirmation"], "spoken_code", "{}", r.body);
    assert_eq!(r.json()["code_attempts_left"], 5, "{}", r.body);
    let key = store.api_key(&service).await.unwrap().unwrap();
    store
        .set_key_confirmation(&key.id, Some(Confirmation::KeypadCode))
        .await
        .unwrap();
    let r = post_json(addr, "/v1/challenges", &service, &plain).await;
    assert_eq!(r.json()["confirmation"], "keypad_code", "{}", r.body);
    let r = post_json(addr, "/v1/challenges", &service, &body("pound")).await;
    assert_eq!(r.json()["confirmation"], "pound", "{}", r.body);
}

/// As the runner moves a spoken-code challenge: into its call, the keyed hash of `code`
/// stored, then `code_spoken` once the call has read it.
async fn code_read(store: &store::Store, secret: &[u8], id: &str, code: &str) {
    for s in [ChallengeState::Calling, ChallengeState::Answered] {
        store
            .transition(&ch(id), s, now_ms(), None, None)
            .await
            .unwrap();
    }
    assert!(
        store
            .set_code_hash(&ch(id), &code_hash(secret, &ch(id), code))
            .await
            .unwrap()
    );
    store
        .transition(&ch(id), ChallengeState::CodeSpoken, now_ms(), None, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_spoken_code_is_checked_by_its_front_end_at_most_five_times() {
    let cfg = config();
    let secret = cfg.token_secret.clone();
    let Api {
        addr,
        service,
        operator,
        store,
    } = Api::start("api-spoken-code", cfg).await;
    let made = |mode: &'static str| {
        let service = service.clone();
        async move {
            let r = post_json(addr, "/v1/challenges", &service, &body(mode)).await;
            assert_eq!(r.status, 201, "{}", r.body);
            let j = r.json();
            (
                j["id"].as_str().unwrap().to_string(),
                j["poll_token"].as_str().unwrap().to_string(),
            )
        }
    };
    let (id, token) = made("spoken_code").await;
    let check = format!("/v1/challenges/{id}/check");
    let code = |c: &str| format!(r#"{{"code":"{c}"}}"#);
    // Before its call read it: not waiting for a code.
    let r = post_json(addr, &check, &token, &code("123456")).await;
    assert_eq!(
        (r.status, kind_of(&r).as_str()),
        (409, "not-awaiting-code"),
        "{}",
        r.body
    );
    code_read(&store, &secret, &id, "271828").await;
    // Not 6 digits: refused, and no attempt is counted. An operator may not check.
    for bad in ["12345", "1234567", "12345a", "１２３４５６"] {
        let r = post_json(addr, &check, &token, &code(bad)).await;
        assert_eq!(
            (r.status, kind_of(&r).as_str()),
            (422, "invalid-request"),
            "{bad}: {}",
            r.body
        );
    }
    let r = post_json(addr, &check, &operator, &code("271828")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post_json(addr, &check, &token, r#"{"code":"271828","extra":1}"#).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Wrong: 4 left, then 3 (with the service key).
    let r = post_json(addr, &check, &token, &code("000000")).await;
    assert_eq!(
        (r.status, kind_of(&r).as_str()),
        (422, "wrong-code"),
        "{}",
        r.body
    );
    assert_eq!(r.json()["attempts_left"], 4);
    let r = post_json(addr, &check, &service, &code("000001")).await;
    assert_eq!(r.json()["attempts_left"], 3, "{}", r.body);
    // Right: approved, and the code matched.
    let r = post_json(addr, &check, &token, &code("271828")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (&r.json()["state"], &r.json()["code_matched"]),
        (&serde_json::json!("approved"), &serde_json::json!(true))
    );
    let r = post_json(addr, &check, &token, &code("271828")).await;
    assert_eq!(r.status, 409, "{}", r.body);
    // Another: five wrong codes deny it; the right one after that does not approve.
    let (id, token) = made("spoken_code").await;
    let check = format!("/v1/challenges/{id}/check");
    code_read(&store, &secret, &id, "161803").await;
    for left in (0..5).rev() {
        let r = post_json(addr, &check, &token, &code("999999")).await;
        assert_eq!(r.json()["attempts_left"], left, "{}", r.body);
    }
    let r = post_json(addr, &check, &token, &code("161803")).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = authorized(addr, "GET", &format!("/v1/challenges/{id}"), &auth(&token)).await;
    assert_eq!(
        (&r.json()["state"], &r.json()["reason"]),
        (
            &serde_json::json!("denied"),
            &serde_json::json!("too_many_attempts")
        )
    );
    // A number-matching challenge has no code to check.
    let (id, token) = made("keypad_code").await;
    let r = post_json(
        addr,
        &format!("/v1/challenges/{id}/check"),
        &token,
        &code("123456"),
    )
    .await;
    assert_eq!(
        (r.status, kind_of(&r).as_str()),
        (409, "no-spoken-code"),
        "{}",
        r.body
    );
}
