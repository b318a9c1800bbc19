//! `/v1/users/{user}/fraud-block`: a fraud report (0#) blocks the user and the number for
//! `fraud_block_hours`: new challenges answer 403 `fraud-block` with the time it lifts, a
//! trusted device does not get around it (its token is revoked too), the webhook says
//! `fraud_reported`; the service key lifts it early, and the lift is kept with the key that
//! made it.

use callverify_e2e::BOUND;
use store::now_ms;
use tokio::task::JoinHandle;

use crate::common::{
    Api, BODY, Received, Reply, auth, authorized, config, decided, enrolled, kind_of, post_json,
    receiver, remembered, with_loopback_webhooks,
};

const HOURS: i64 = 3;

/// Alice, with a trusted device, reported fraud on a sign-in with a callback URL.
struct Reported {
    api: Api,
    /// The trusted device's token.
    td: String,
    /// The reported challenge.
    id: String,
    /// When it was decided.
    at: i64,
    /// What the webhook receiver got.
    got: Received,
    workers: JoinHandle<()>,
}

async fn reported(name: &str) -> Reported {
    let (hook, got) = receiver().await;
    let mut cfg = with_loopback_webhooks(config());
    cfg.policy.fraud_block = std::time::Duration::from_secs(HOURS as u64 * 3600);
    let (api, workers) = Api::with_workers(name, cfg).await;
    enrolled(api.addr, &api.store, &api.service, "alice", "+819012345678").await;
    let td = remembered(&api, "alice", now_ms()).await.token;
    // A sign-in on which alice presses 0#.
    let body = format!(r#"{{"user_id":"alice","callback_url":"http://{hook}/hook"}}"#);
    let r = post_json(api.addr, "/v1/challenges", &api.service, &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let at = now_ms();
    decided(&api.store, &id, store::ChallengeState::FraudReported, at).await;
    Reported {
        api,
        td,
        id,
        at,
        got,
        workers,
    }
}

/// Refused by the block of a report decided at `at`.
fn refused(r: &Reply, at: i64) {
    assert_eq!(
        (r.status, kind_of(r).as_str()),
        (403, "fraud-block"),
        "{}",
        r.body
    );
    let until = api::rfc3339(at + HOURS * 3_600_000);
    assert_eq!(r.json()["blocked_until"], until.as_str(), "{}", r.body);
    assert!(r.json()["detail"].as_str().unwrap().contains(&until));
    let retry: u64 = r.headers["retry-after"].parse().unwrap();
    let hours = HOURS as u64 * 3600;
    assert!((hours - 60..=hours).contains(&retry), "{retry}");
}

#[tokio::test]
async fn a_fraud_report_blocks_the_user_and_the_number() {
    let Reported {
        api,
        td,
        at,
        workers,
        ..
    } = reported("api-fraud-blocks").await;
    let post = |path: &'static str, body: String| {
        let (addr, key) = (api.addr, api.service.clone());
        async move { post_json(addr, path, &key, &body).await }
    };
    refused(
        &post("/v1/challenges", r#"{"user_id":"alice"}"#.into()).await,
        at,
    );
    // A trusted-device token does not get around it.
    let with_td = format!(r#"{{"user_id":"alice","trusted_device_token":"{td}"}}"#);
    refused(&post("/v1/challenges", with_td).await, at);
    // The number is blocked too, whoever asks for it.
    refused(&post("/v1/challenges", BODY.into()).await, at);
    let number = r#"{"phone_number":"+819012345678"}"#;
    refused(&post("/v1/users/bob/phones", number.into()).await, at);
    // Others are not.
    let other = r#"{"phone_number":"+819011112222"}"#;
    assert_eq!(post("/v1/challenges", other.into()).await.status, 201);
    workers.abort();
}

#[tokio::test]
async fn a_fraud_report_revokes_the_users_trusted_devices() {
    let Reported { api, workers, .. } = reported("api-fraud-devices").await;
    let path = "/v1/users/alice/trusted-devices";
    let r = authorized(api.addr, "GET", path, &auth(&api.service)).await;
    assert_eq!(
        r.json()["trusted_devices"][0]["active"],
        false,
        "{}",
        r.body
    );
    workers.abort();
}

/// The webhook of the reported challenge says so (its first attempt gets a 500).
#[tokio::test]
async fn the_webhook_of_a_fraud_report_says_so() {
    let Reported {
        id, got, workers, ..
    } = reported("api-fraud-webhook").await;
    let deadline = tokio::time::Instant::now() + BOUND;
    while got.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let deliveries = got.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 2);
    for (_, body) in &deliveries {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["challenge"]["id"], id.as_str());
        assert_eq!(v["challenge"]["state"], "fraud_reported");
    }
    workers.abort();
}

/// Listed; lifted by the service key; the lift is kept with the key's id and name.
#[tokio::test]
async fn a_fraud_block_is_lifted_by_the_service_key_and_the_lift_kept() {
    let Reported {
        api, id, workers, ..
    } = reported("api-fraud-lift").await;
    let (addr, key) = (api.addr, auth(&api.service));
    let path = "/v1/users/alice/fraud-block";
    let r = authorized(addr, "GET", path, &key).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let blocks = r.json()["fraud_blocks"].as_array().unwrap().clone();
    assert_eq!(blocks.len(), 1, "{}", r.body);
    assert_eq!(
        (
            blocks[0]["active"].as_bool(),
            blocks[0]["challenge_id"].as_str(),
            blocks[0]["phone_number"].as_str()
        ),
        (Some(true), Some(id.as_str()), Some("+81 ** **** **78"))
    );
    let r = authorized(addr, "DELETE", path, &key).await;
    assert_eq!((r.status, r.json()["lifted"].as_u64()), (200, Some(1)));
    let r = authorized(addr, "GET", path, &key).await;
    let block = &r.json()["fraud_blocks"][0];
    assert_eq!(block["active"], false);
    let by = block["lifted_by"].as_str().unwrap();
    assert!(by.starts_with("key_") && by.ends_with(" (idp)"), "{by}");
    assert!(block["lifted_at"].is_string());
    let r = post_json(
        addr,
        "/v1/challenges",
        &api.service,
        r#"{"user_id":"alice"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = authorized(addr, "DELETE", path, &auth("cvk_unknown")).await;
    assert_eq!(r.status, 401);
    workers.abort();
}
