//! Tokens: operator keys never see trusted-device tokens; a poll token stops working 10
//! minutes after the decision; a trusted device presented with remember_device keeps its
//! expiry; a new primary phone revokes the user's trusted devices.

use store::{KeyKind, now_ms};

use crate::common::{
    Api, Remembered, auth, authorized, config, decided, enrolled, kind_of, post_json, remembered,
    sse,
};

const MINUTE: i64 = 60_000;

/// Alice enrolled, and a sign-in of hers that asked to remember the device approved nine
/// minutes ago (its poll token still reads it).
async fn alice_remembered(name: &str) -> (Api, Remembered) {
    let api = Api::start(name, config()).await;
    enrolled(api.addr, &api.store, &api.service, "alice", "+819012345678").await;
    let remembered = remembered(&api, "alice", now_ms() - 9 * MINUTE).await;
    (api, remembered)
}

#[tokio::test]
async fn operator_keys_never_see_trusted_device_tokens() {
    let (api, signed_in) = alice_remembered("api-tokens-operator").await;
    let (addr, operator) = (api.addr, auth(&api.operator));
    let path = format!("/v1/challenges/{}", signed_in.id);
    let r = authorized(addr, "GET", &path, &operator).await;
    assert_eq!(r.status, 200);
    assert!(
        r.json().get("trusted_device_token").is_none() && !r.body.contains("cvt_"),
        "an operator sees no token: {}",
        r.body
    );
    let (status, events) = sse(addr, &format!("{path}/events"), &operator).await;
    assert_eq!(status, 200);
    assert!(events[0].get("trusted_device_token").is_none());
    let r = authorized(addr, "GET", &path, &signed_in.poll).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(&signed_in.token));
    let r = authorized(addr, "GET", &path, &auth(&api.service)).await;
    assert!(r.body.contains(&signed_in.token));
}

/// Ten minutes after the decision the poll token no longer reads, streams nor cancels; the
/// service key still reads.
#[tokio::test]
async fn a_poll_token_stops_working_ten_minutes_after_the_decision() {
    let Api {
        store,
        addr,
        service,
        ..
    } = Api::start("api-tokens-expire", config()).await;
    enrolled(addr, &store, &service, "alice", "+819012345678").await;
    let r = post_json(addr, "/v1/challenges", &service, r#"{"user_id":"alice"}"#).await;
    let old = r.json()["id"].as_str().unwrap().to_string();
    let old_poll = auth(r.json()["poll_token"].as_str().unwrap());
    decided(
        &store,
        &old,
        store::ChallengeState::Denied,
        now_ms() - 11 * MINUTE,
    )
    .await;
    let old_path = format!("/v1/challenges/{old}");
    let r = authorized(addr, "GET", &old_path, &old_poll).await;
    assert_eq!(
        (r.status, kind_of(&r).as_str()),
        (401, "poll-token-expired")
    );
    assert_eq!(
        sse(addr, &format!("{old_path}/events"), &old_poll).await.0,
        401
    );
    let r = authorized(addr, "DELETE", &old_path, &old_poll).await;
    assert_eq!(r.status, 401);
    let r = authorized(addr, "GET", &old_path, &auth(&service)).await;
    assert_eq!(r.status, 200);
}

/// Presented again with remember_device: approved, and the device keeps its expiry (no new
/// token, so trust is not renewed without a call).
#[tokio::test]
async fn a_trusted_device_presented_again_keeps_its_expiry() {
    let (api, signed_in) = alice_remembered("api-tokens-renew").await;
    let body = format!(
        r#"{{"user_id":"alice","remember_device":true,"trusted_device_token":"{}"}}"#,
        signed_in.token
    );
    let r = post_json(api.addr, "/v1/challenges", &api.service, &body).await;
    assert_eq!(
        (r.json()["state"].as_str(), r.json()["reason"].as_str()),
        (Some("approved"), Some("trusted_device")),
        "{}",
        r.body
    );
    assert!(
        r.json().get("trusted_device_token").is_none(),
        "no new token: {}",
        r.body
    );
    let path = "/v1/users/alice/trusted-devices";
    let r = authorized(api.addr, "GET", path, &auth(&api.service)).await;
    let devices = r.json()["trusted_devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 1, "{}", r.body);
    assert_eq!(devices[0]["expires_at"], signed_in.until.as_str());
}

/// A new primary phone (here by a phone_admin key, so without the old phone's call) revokes
/// the trusted devices: the device is called again.
#[tokio::test]
async fn a_new_primary_phone_revokes_the_trusted_devices() {
    let (api, signed_in) = alice_remembered("api-tokens-new-phone").await;
    let (_, admin) = api
        .store
        .create_api_key_with("idp-admin", KeyKind::Service, true, 0)
        .await
        .unwrap();
    enrolled(api.addr, &api.store, &admin, "alice", "+819055556666").await;
    let path = "/v1/users/alice/trusted-devices";
    let r = authorized(api.addr, "GET", path, &auth(&api.service)).await;
    assert_eq!(
        r.json()["trusted_devices"][0]["active"],
        false,
        "{}",
        r.body
    );
    let body = format!(
        r#"{{"user_id":"alice","remember_device":true,"trusted_device_token":"{}"}}"#,
        signed_in.token
    );
    let r = post_json(api.addr, "/v1/challenges", &api.service, &body).await;
    assert_eq!(r.json()["state"], "queued", "called again: {}", r.body);
}
