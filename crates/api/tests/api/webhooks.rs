//! Webhooks: a decided challenge with a `callback_url` is posted once it is decided, signed,
//! retried after a failure and every attempt logged.

use callverify_e2e::BOUND;

use crate::common::{
    Api, auth, authorized, ch, config, post_json, receiver, with_loopback_webhooks,
};

#[tokio::test]
async fn webhooks_are_signed_retried_and_logged() {
    let (hook, got) = receiver().await;
    let (
        Api {
            store,
            addr,
            service,
            ..
        },
        workers,
    ) = Api::with_workers("api-webhooks", with_loopback_webhooks(config())).await;
    let body = format!(r#"{{"phone_number":"+819012345678","callback_url":"http://{hook}/hook"}}"#);
    let r = post_json(addr, "/v1/challenges", &service, &body).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    // Nothing is posted before the decision.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(got.lock().unwrap().is_empty());
    let r = authorized(
        addr,
        "DELETE",
        &format!("/v1/challenges/{id}"),
        &auth(&service),
    )
    .await;
    assert_eq!(r.status, 200);
    let deadline = tokio::time::Instant::now() + BOUND;
    while store.webhook_attempts(&ch(&id)).await.unwrap().len() < 2
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let attempts = store.webhook_attempts(&ch(&id)).await.unwrap();
    let statuses: Vec<Option<i64>> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(204)]);
    assert!(
        attempts[1].at_ms - attempts[0].at_ms >= 200,
        "backoff: {attempts:?}"
    );
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "delivered once it succeeded, not again");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (n, (headers, body)) in got.iter().enumerate() {
        let sig = &headers["callverify-signature"];
        assert!(api::webhooks::verify_signature(
            b"webhook secret",
            sig,
            body.as_bytes(),
            now
        ));
        assert!(!api::webhooks::verify_signature(
            b"other",
            sig,
            body.as_bytes(),
            now
        ));
        assert!(
            !api::webhooks::verify_signature(b"webhook secret", sig, body.as_bytes(), now + 3600),
            "stale"
        );
        assert_eq!(headers["callverify-delivery"], format!("{id}/{}", n + 1));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["type"], "challenge.decided");
        assert_eq!(
            (
                v["challenge"]["id"].as_str(),
                v["challenge"]["state"].as_str()
            ),
            (Some(id.as_str()), Some("canceled"))
        );
        assert!(v["challenge"].get("poll_token").is_none());
    }
    workers.abort();
}
