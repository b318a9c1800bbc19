//! Retention through the API's background work, on SQLite and on PostgreSQL: the sweep at
//! start forgets the call log and state changes older than the retention and masks old
//! decided challenges' numbers, and the API still reads such a challenge.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api::{ApiConfig, AppState};
use callverify_e2e::{BOUND, Postgres, V4, http, scratch, sign_in};
use store::{CallEnd, CallId, ChallengeId, ChallengeState, KeyKind, NewCall, Store, now_ms};

const DAY: i64 = 86_400_000;

/// A decided challenge of `key` made at `at`, with its call: their ids (in the shape the
/// API takes).
async fn decided_at(store: &Store, key: &str, number: &str, at: i64) -> (ChallengeId, CallId) {
    let (c, _) = store
        .create_challenge(&sign_in(key, number, at))
        .await
        .unwrap();
    let call = CallId::new();
    store
        .start_call(&NewCall {
            id: call.clone(),
            challenge_id: c.id.clone(),
            phone_masked: c.phone.masked(),
            started_at_ms: at + 100,
        })
        .await
        .unwrap();
    for s in [ChallengeState::Calling, ChallengeState::Approved] {
        assert!(
            store
                .transition(&c.id, s, at + 200, None, None)
                .await
                .unwrap()
        );
    }
    let end = CallEnd::new(ChallengeState::Approved, at + 300);
    assert!(store.finish_call(&call, &end).await.unwrap());
    (c.id, call)
}

async fn old_challenges_are_read_with_their_numbers_masked(store: Store) {
    let (key, service) = store
        .create_api_key("idp", KeyKind::Service, 0)
        .await
        .unwrap();
    let (_, operator) = store
        .create_api_key("ops", KeyKind::Operator, 0)
        .await
        .unwrap();
    let now = now_ms();
    let (old, old_call) = decided_at(&store, &key.id, "+819012345678", now - 120 * DAY).await;
    let (recent, recent_call) = decided_at(&store, &key.id, "+819087654321", now - DAY).await;
    let state = AppState {
        store: store.clone(),
        runner: None,
        readiness: Default::default(),
        cfg: Arc::new(ApiConfig {
            token_secret: b"test token secret".to_vec(),
            retention: Duration::from_secs(90 * 86_400),
            ..ApiConfig::default()
        }),
    };
    let lis = tokio::net::TcpListener::bind((V4, 0)).await.unwrap();
    let addr: SocketAddr = lis.local_addr().unwrap();
    tokio::spawn(api::serve(
        lis,
        api::router(state.clone()),
        api::ServeLimits::default(),
        std::future::pending(),
    ));
    // The background work sweeps at start.
    let workers = api::webhooks::spawn_workers(state);
    let deadline = tokio::time::Instant::now() + BOUND;
    while !store
        .challenge(&old)
        .await
        .unwrap()
        .unwrap()
        .phone
        .is_redacted()
    {
        assert!(tokio::time::Instant::now() < deadline, "no sweep");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = addr.to_string();
    let get = |path: String, key: String| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || http(&addr, "GET", &path, &key, ""))
    };
    let (status, body) = get(format!("/v1/challenges/{old}"), service.clone())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["state"].as_str(), v["phone_number"].as_str()),
        (Some("approved"), Some("+81 ** **** **78"))
    );
    let (status, _) = get(format!("/v1/calls/{old_call}"), operator.clone())
        .await
        .unwrap();
    assert_eq!(status, 404, "the old call is forgotten");
    let (status, body) = get(format!("/v1/calls/{recent_call}"), operator)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let c = store.challenge(&recent).await.unwrap().unwrap();
    assert_eq!(c.phone.as_e164(), Some("+819087654321"));
    assert_eq!(store.events(&recent).await.unwrap().len(), 3);
    assert!(store.events(&old).await.unwrap().is_empty());
    workers.abort();
}

#[tokio::test]
async fn on_sqlite() {
    let dir = scratch("api-retention");
    let url = format!("sqlite://{}", dir.join("cv.db").display());
    let store = Store::open(&url).await.unwrap().cached().unwrap();
    old_challenges_are_read_with_their_numbers_masked(store).await;
}

#[tokio::test]
async fn on_postgresql() {
    let pg = Postgres::start("api-retention");
    let store = Store::open(&pg.url).await.unwrap().cached().unwrap();
    old_challenges_are_read_with_their_numbers_masked(store).await;
}
