//! `/v1/users/{user}/…`: a user's phones (registered by an enrolment call, verified when it
//! is approved, replaced and removed), sign-ins of a user, their trusted devices, and users
//! named in the logs by a keyed tag only.

use std::sync::Arc;

use store::{KeyKind, now_ms};

use crate::common::{Api, auth, authorized, config, decided, enrolled, post_json, remembered};

/// Registering a phone calls it; it is verified once the call is approved, and until then a
/// sign-in has no phone to call.
#[tokio::test]
async fn a_registered_phone_is_verified_once_its_call_is_approved() {
    let Api {
        store,
        addr,
        service,
        ..
    } = Api::start("api-register", config()).await;
    let r = post_json(
        addr,
        "/v1/users/alice/phones",
        &service,
        r#"{"phone_number":"+819012345678","language":"ja"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let reg = r.json();
    assert_eq!(reg["phone"]["state"], "pending");
    assert_eq!(reg["phone"]["role"], "primary");
    assert_eq!(reg["phone"]["phone_number"], "+81 ** **** **78");
    assert_eq!(reg["challenge"]["purpose"], "enroll");
    assert!(
        reg["challenge"]["poll_token"]
            .as_str()
            .unwrap()
            .starts_with("cvp_")
    );
    let phone_id = reg["phone"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.headers["location"],
        format!("/v1/users/alice/phones/{phone_id}")
    );
    let sign_in = post_json(addr, "/v1/challenges", &service, r#"{"user_id":"alice"}"#);
    assert_eq!(sign_in.await.status, 409);
    let enrolment = reg["challenge"]["id"].as_str().unwrap();
    decided(&store, enrolment, store::ChallengeState::Approved, now_ms()).await;
    let r = authorized(addr, "GET", "/v1/users/alice/phones", &auth(&service)).await;
    assert_eq!(r.json()["phones"][0]["state"], "verified", "{}", r.body);
}

#[tokio::test]
async fn a_user_without_a_verified_phone_cannot_sign_in() {
    let Api { addr, service, .. } = Api::start("api-no-phone", config()).await;
    let r = post_json(addr, "/v1/challenges", &service, r#"{"user_id":"nobody"}"#).await;
    assert_eq!(r.status, 409);
    assert!(
        r.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("/no-verified-phone")
    );
}

/// A sign-in of the user calls the verified phone; "don't ask again" gives a token once the
/// sign-in is approved.
#[tokio::test]
async fn a_sign_in_calls_the_verified_phone_and_may_remember_the_device() {
    let Api {
        store,
        addr,
        service,
        ..
    } = Api::start("api-sign-in", config()).await;
    enrolled(addr, &store, &service, "alice", "+819012345678").await;
    let r = post_json(
        addr,
        "/v1/challenges",
        &service,
        r#"{"user_id":"alice","remember_device":true}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["phone_number"], "+81 ** **** **78");
    assert!(r.json().get("trusted_device_token").is_none());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let poll = auth(r.json()["poll_token"].as_str().unwrap());
    decided(&store, &id, store::ChallengeState::Approved, now_ms()).await;
    let r = authorized(addr, "GET", &format!("/v1/challenges/{id}"), &poll).await;
    let td = r.json()["trusted_device_token"]
        .as_str()
        .expect("a token")
        .to_string();
    assert!(td.starts_with("cvt_"));
    let until = r.json()["trusted_until"].as_str().unwrap().to_string();
    assert!(until.as_str() > r.json()["decided_at"].as_str().unwrap());
}

/// The next sign-in with the token is approved without a call; not for another user, not
/// forged: those are called.
#[tokio::test]
async fn a_trusted_device_signs_its_user_in_without_a_call() {
    let api = Api::start("api-trusted", config()).await;
    let (addr, service) = (api.addr, api.service.as_str());
    enrolled(addr, &api.store, service, "alice", "+819012345678").await;
    let td = remembered(&api, "alice", now_ms()).await.token;
    let with = |t: &str| format!(r#"{{"user_id":"alice","trusted_device_token":"{t}"}}"#);
    let r = post_json(addr, "/v1/challenges", service, &with(&td)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (r.json()["state"].as_str(), r.json()["reason"].as_str()),
        (Some("approved"), Some("trusted_device"))
    );
    let bob = with(&td).replace("alice", "bob");
    let r = post_json(addr, "/v1/challenges", service, &bob).await;
    assert_eq!(r.status, 409, "bob has no phone: {}", r.body);
    // Change the signature's last character (to one it is not already).
    let last = if td.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &td[..td.len() - 1]);
    let r = post_json(addr, "/v1/challenges", service, &with(&forged)).await;
    assert_eq!(r.json()["state"], "queued");
}

/// Revoked (one, then all): the device's next sign-in is called again.
#[tokio::test]
async fn a_revoked_trusted_device_is_called_again() {
    let api = Api::start("api-revoked", config()).await;
    let (addr, key) = (api.addr, auth(&api.service));
    enrolled(addr, &api.store, &api.service, "alice", "+819012345678").await;
    let td = remembered(&api, "alice", now_ms()).await.token;
    let r = authorized(addr, "GET", "/v1/users/alice/trusted-devices", &key).await;
    let devices = r.json()["trusted_devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["active"], true);
    let dev = devices[0]["id"].as_str().unwrap();
    let path = format!("/v1/users/alice/trusted-devices/{dev}");
    let r = authorized(addr, "DELETE", &path, &key).await;
    assert_eq!(r.status, 204);
    let r = authorized(addr, "DELETE", &path, &key).await;
    assert_eq!(r.status, 404);
    let body = format!(r#"{{"user_id":"alice","trusted_device_token":"{td}"}}"#);
    let r = post_json(addr, "/v1/challenges", &api.service, &body).await;
    assert_eq!(r.json()["state"], "queued");
    let r = authorized(addr, "DELETE", "/v1/users/alice/trusted-devices", &key).await;
    assert_eq!(r.json()["revoked"], 0);
}

/// Alice has a verified primary phone: a fallback is called only once that approves.
#[tokio::test]
async fn a_fallback_phone_needs_the_primary_phones_approval() {
    let Api {
        store,
        addr,
        service,
        ..
    } = Api::start("api-fallback", config()).await;
    enrolled(addr, &store, &service, "alice", "+819012345678").await;
    let r = post_json(
        addr,
        "/v1/users/alice/phones",
        &service,
        r#"{"phone_number":"+819033334444","role":"fallback"}"#,
    )
    .await;
    assert_eq!(r.json()["phone"]["role"], "fallback");
    assert_eq!(r.json()["challenge"]["confirm_primary"], true, "{}", r.body);
    let r = authorized(addr, "GET", "/v1/users/alice/phones", &auth(&service)).await;
    assert_eq!(r.json()["phones"].as_array().unwrap().len(), 2);
}

/// A sign-in of a user may call their verified fallback phone (`phone_role` `fallback`): a
/// user without one is answered 409 `no-verified-phone`, and a sign-in of a number takes no
/// role.
#[tokio::test]
async fn a_sign_in_may_call_the_users_verified_fallback_phone() {
    let Api {
        store,
        addr,
        service,
        ..
    } = Api::start("api-sign-in-fallback", config()).await;
    enrolled(addr, &store, &service, "alice", "+819012345678").await;
    let fallback = r#"{"user_id":"alice","phone_role":"fallback"}"#;
    let r = post_json(addr, "/v1/challenges", &service, fallback).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("no-verified-phone")
    );
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("no verified fallback phone"),
        "{}",
        r.body
    );
    let r = post_json(
        addr,
        "/v1/users/alice/phones",
        &service,
        r#"{"phone_number":"+819033334444","role":"fallback"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let enrolment = r.json()["challenge"]["id"].as_str().unwrap().to_string();
    // Pending, the fallback is not called.
    let r = post_json(addr, "/v1/challenges", &service, fallback).await;
    assert_eq!(r.status, 409, "{}", r.body);
    decided(
        &store,
        &enrolment,
        store::ChallengeState::Approved,
        now_ms(),
    )
    .await;
    let r = post_json(addr, "/v1/challenges", &service, fallback).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["phone_number"], "+81 ** **** **44");
    assert_eq!(r.json()["purpose"], "sign_in");
    let primary = r#"{"user_id":"alice","phone_role":"primary"}"#;
    let r = post_json(addr, "/v1/challenges", &service, primary).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["phone_number"], "+81 ** **** **78");
    let r = post_json(
        addr,
        "/v1/challenges",
        &service,
        r#"{"phone_number":"+819033334444","phone_role":"fallback"}"#,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
}

/// A verified phone is removed only with a phone_admin key, and only through its user.
#[tokio::test]
async fn a_verified_phone_is_removed_only_with_a_phone_admin_key() {
    let Api {
        store,
        addr,
        service,
        ..
    } = Api::start("api-remove-phone", config()).await;
    enrolled(addr, &store, &service, "alice", "+819012345678").await;
    let key = auth(&service);
    let r = authorized(addr, "GET", "/v1/users/alice/phones", &key).await;
    let phone_id = r.json()["phones"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/users/alice/phones/{phone_id}");
    let r = authorized(addr, "DELETE", &path, &key).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let (admin_key, admin) = store
        .create_api_key_with("idp-admin", KeyKind::Service, true, 0)
        .await
        .unwrap();
    assert!(admin_key.phone_admin);
    let r = authorized(addr, "DELETE", &path, &auth(&admin)).await;
    assert_eq!(r.status, 204);
    let bobs = format!("/v1/users/bob/phones/{phone_id}");
    assert_eq!(authorized(addr, "DELETE", &bobs, &key).await.status, 404);
    let sign_in = post_json(addr, "/v1/challenges", &service, r#"{"user_id":"alice"}"#);
    assert_eq!(sign_in.await.status, 409);
}

/// An enrolment for a user with a verified primary phone is marked to be approved on that
/// phone first (the runner calls it first), unless the key has `phone_admin`.
#[tokio::test]
async fn replacing_a_verified_phone_needs_it_unless_the_key_is_a_phone_admin() {
    let Api {
        store,
        addr,
        service,
        ..
    } = Api::start("api-replace", config()).await;
    let (_, admin) = store
        .create_api_key_with("idp-admin", KeyKind::Service, true, 0)
        .await
        .unwrap();
    let register = |key: String, number: &'static str, role: &'static str| async move {
        let body = format!(r#"{{"phone_number":"{number}","role":"{role}"}}"#);
        let r = post_json(addr, "/v1/users/carol/phones", &key, &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["challenge"]["confirm_primary"].as_bool()
    };
    // The first phone: nothing to confirm with.
    assert_eq!(
        register(service.clone(), "+819011112222", "primary").await,
        None
    );
    enrolled(addr, &store, &service, "carol", "+819011112222").await;
    assert_eq!(
        register(service.clone(), "+819055556666", "primary").await,
        Some(true)
    );
    assert_eq!(
        register(service.clone(), "+819033334444", "fallback").await,
        Some(true)
    );
    assert_eq!(register(admin, "+819055556666", "primary").await, None);
    let c = store
        .phones("carol")
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.phone.as_e164() == Some("+819055556666"))
        .count();
    assert_eq!(c, 2);
}

/// Log lines name users by a keyed tag, never by their id.
#[tokio::test]
async fn logs_name_users_by_a_keyed_tag() {
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let lines = lines.clone();
            move || lines.clone()
        })
        .with_ansi(false)
        .finish();
    // This test's runtime has one thread: the server's tasks log through this subscriber.
    let _logs = tracing::subscriber::set_default(subscriber);
    let Api {
        store,
        addr,
        service,
        ..
    } = Api::start("api-log-users", config()).await;
    let user = "alice.liddell@example.com";
    enrolled(addr, &store, &service, user, "+819012345678").await;
    // A forged token, and a genuine one of no device: both logged, both called.
    let unknown = api::trusted_device_token(b"test token secret", "td_unknown");
    for token in ["cvt_td_1.00", unknown.as_str()] {
        let body = format!(r#"{{"user_id":"{user}","trusted_device_token":"{token}"}}"#);
        let r = post_json(addr, "/v1/challenges", &service, &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let path = format!("/v1/users/{user}/fraud-block");
    authorized(addr, "DELETE", &path, &auth(&service)).await;
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let tag = api::user_tag(b"test token secret", user);
    assert_eq!(tag.len(), 12);
    for said in ["bad signature", "expired, revoked", "fraud block lifted"] {
        assert!(text.contains(said), "{said}: {text}");
    }
    assert_eq!(text.matches(&format!("user={tag}")).count(), 3, "{text}");
    assert!(!text.contains("alice"), "{text}");
    assert_ne!(tag, api::user_tag(b"another secret", user));
}
