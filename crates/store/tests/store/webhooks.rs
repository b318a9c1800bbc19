//! Webhook deliveries: due when a challenge with a callback URL is decided, claimed by one
//! taker, retried at the time an attempt says, ended by a delivery, every attempt logged.

use store::ChallengeState::FraudReported;
use store::{Store, WebhookAttempt, WebhookNext};

use crate::common::{Db, decide, request};

on_both!(
    a_decision_with_a_callback_url_is_due_at_once_and_claimed_by_one_taker,
    a_failed_attempt_is_retried_at_its_time_and_a_delivery_ends_them,
);

/// Whether the delivery of challenge `id` is due at `now`.
async fn due(store: &Store, id: &store::ChallengeId, now: i64) -> Option<store::Webhook> {
    let due = store.due_webhooks(now, 100).await.unwrap();
    due.into_iter().find(|w| w.challenge_id == *id)
}

async fn a_decision_with_a_callback_url_is_due_at_once_and_claimed_by_one_taker(db: Db) {
    let store = &db.store;
    let (c, _) = store
        .create_challenge(&request(None, "w", 20_000))
        .await
        .unwrap();
    assert!(due(store, &c.id, 30_000).await.is_none());
    decide(store, &c.id, FraudReported, 20_100).await;
    let w = due(store, &c.id, 20_100).await.unwrap();
    assert_eq!(
        (w.url.as_str(), w.attempts),
        ("https://idp.example/hook", 0)
    );
    assert!(store.claim_webhook(&w, 50_000).await.unwrap());
    assert!(!store.claim_webhook(&w, 50_000).await.unwrap(), "taken");
}

async fn a_failed_attempt_is_retried_at_its_time_and_a_delivery_ends_them(db: Db) {
    let store = &db.store;
    let (c, _) = store
        .create_challenge(&request(None, "w", 20_000))
        .await
        .unwrap();
    decide(store, &c.id, FraudReported, 20_100).await;
    let w = due(store, &c.id, 20_100).await.unwrap();
    assert!(store.claim_webhook(&w, 50_000).await.unwrap());
    let attempt = |n, status: Option<i64>| WebhookAttempt {
        attempt: n,
        at_ms: 20_200 + n,
        status,
        error: status.is_none().then(|| "connection refused".to_string()),
        duration_ms: Some(3),
    };
    store
        .record_webhook_attempt(&c.id, &attempt(1, None), WebhookNext::RetryAt(21_000))
        .await
        .unwrap();
    assert!(due(store, &c.id, 20_999).await.is_none());
    let w = due(store, &c.id, 21_000).await.unwrap();
    assert_eq!(w.attempts, 1);
    assert!(store.claim_webhook(&w, 50_000).await.unwrap());
    store
        .record_webhook_attempt(&c.id, &attempt(2, Some(204)), WebhookNext::Delivered)
        .await
        .unwrap();
    assert!(due(store, &c.id, i64::MAX).await.is_none());
    let log = store.webhook_attempts(&c.id).await.unwrap();
    assert_eq!(log, vec![attempt(1, None), attempt(2, Some(204))]);
}
