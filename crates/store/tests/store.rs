//! The same suite on SQLite (a file in WAL mode) and on PostgreSQL (a server of its own,
//! started on loopback by the test).

use callverify_e2e::{Postgres, scratch};
use store::{Backend, ChallengeState, NewChallenge, PhoneNumber, Purpose, Store, StoreError};

fn request(key: Option<&str>, hash: &str, now: i64) -> NewChallenge {
    NewChallenge {
        api_key_id: "key_service".into(),
        idempotency_key: key.map(str::to_string),
        request_hash: hash.into(),
        user_id: None,
        phone: PhoneNumber::parse("+819012345678").unwrap(),
        language: "ja".into(),
        purpose: Purpose::SignIn,
        callback_url: Some("https://idp.example/hook".into()),
        now_ms: now,
        expires_at_ms: now + 300_000,
    }
}

async fn suite(store: Store) {
    use ChallengeState::*;

    // Created queued, with its first event.
    let (c, replay) = store
        .create_challenge(&request(None, "h1", 1000))
        .await
        .unwrap();
    assert!(!replay);
    assert_eq!(c.state, Queued);
    assert_eq!(c.phone.as_e164(), "+819012345678");
    assert_eq!(
        (c.created_at_ms, c.expires_at_ms, c.decided_at_ms),
        (1000, 301_000, None)
    );
    assert_eq!(store.challenge(&c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(store.challenge("ch_unknown").await.unwrap(), None);

    // Forward only, each change with its time; a decision is final.
    assert!(
        store
            .transition(&c.id, Calling, 1100, None, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .transition(&c.id, Calling, 1150, None, None)
            .await
            .unwrap(),
        "already there"
    );
    assert!(
        !store
            .transition(&c.id, Queued, 1160, None, None)
            .await
            .unwrap(),
        "no way back"
    );
    assert!(
        store
            .transition(&c.id, Ringing, 1200, None, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .transition(&c.id, Answered, 3000, None, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .transition(&c.id, Approved, 9000, None, None)
            .await
            .unwrap()
    );
    for later in [Denied, Failed, Calling, Interrupted, Canceled] {
        assert!(
            !store
                .transition(&c.id, later, 9500, Some("late"), None)
                .await
                .unwrap(),
            "{later}"
        );
    }
    let got = store.challenge(&c.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.decided_at_ms, got.updated_at_ms),
        (Approved, Some(9000), 9000)
    );
    let events = store.events(&c.id).await.unwrap();
    let trail: Vec<(ChallengeState, i64)> = events.iter().map(|e| (e.state, e.at_ms)).collect();
    assert_eq!(
        trail,
        vec![
            (Queued, 1000),
            (Calling, 1100),
            (Ringing, 1200),
            (Answered, 3000),
            (Approved, 9000)
        ]
    );
    assert!(
        !store
            .transition("ch_unknown", Calling, 1, None, None)
            .await
            .unwrap()
    );

    // A failure keeps its reason and SIP status; states may be skipped.
    let (f, _) = store
        .create_challenge(&request(None, "h2", 2000))
        .await
        .unwrap();
    assert!(
        store
            .transition(&f.id, Failed, 2500, Some("404 Not Found"), Some(404))
            .await
            .unwrap()
    );
    let f = store.challenge(&f.id).await.unwrap().unwrap();
    assert_eq!(
        (f.state, f.reason.as_deref(), f.sip_status),
        (Failed, Some("404 Not Found"), Some(404))
    );

    // Idempotency: the same key and request give the same challenge; another request with
    // that key is refused; another API key may use the same key.
    let (a, r1) = store
        .create_challenge(&request(Some("idem-1"), "h3", 3000))
        .await
        .unwrap();
    let (b, r2) = store
        .create_challenge(&request(Some("idem-1"), "h3", 3100))
        .await
        .unwrap();
    assert_eq!((a.id.clone(), r1, r2), (b.id.clone(), false, true));
    assert!(matches!(
        store.create_challenge(&request(Some("idem-1"), "other", 3200)).await,
        Err(StoreError::IdempotencyConflict(k)) if k == "idem-1"
    ));
    let mut other_key = request(Some("idem-1"), "h3", 3300);
    other_key.api_key_id = "key_other".into();
    assert_ne!(store.create_challenge(&other_key).await.unwrap().0.id, a.id);

    // Ten requests with one key at once make one challenge.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.create_challenge(&request(Some("idem-race"), "h4", 4000 + i))
                .await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().unwrap().0.id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");

    // A restart: calls in progress become interrupted, queued and decided ones stay.
    let (ringing, _) = store
        .create_challenge(&request(None, "h5", 5000))
        .await
        .unwrap();
    store
        .transition(&ringing.id, Calling, 5001, None, None)
        .await
        .unwrap();
    store
        .transition(&ringing.id, Ringing, 5002, None, None)
        .await
        .unwrap();
    let (queued, _) = store
        .create_challenge(&request(None, "h6", 5003))
        .await
        .unwrap();
    assert_eq!(store.interrupt_unfinished(6000).await.unwrap(), 1);
    let r = store.challenge(&ringing.id).await.unwrap().unwrap();
    assert_eq!((r.state, r.decided_at_ms), (Interrupted, Some(6000)));
    assert_eq!(
        r.reason.as_deref(),
        Some("the gateway stopped during the call")
    );
    assert_eq!(
        store.challenge(&queued.id).await.unwrap().unwrap().state,
        Queued
    );
    assert_eq!(
        store.challenge(&c.id).await.unwrap().unwrap().state,
        Approved
    );
    assert_eq!(store.interrupt_unfinished(7000).await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_in_wal_mode() {
    let dir = scratch("store-sqlite");
    let path = dir.join("callverify.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    suite(store.clone()).await;
    assert!(
        dir.join("callverify.db-wal").exists(),
        "WAL mode leaves a -wal file"
    );
    // Opening again migrates nothing and keeps the data.
    drop(store);
    let again = Store::open(&url).await.unwrap();
    let (c, _) = again
        .create_challenge(&request(Some("idem-1"), "h3", 9999))
        .await
        .unwrap();
    assert_eq!(
        c.created_at_ms, 3000,
        "the replay found the challenge made before"
    );
}

#[tokio::test]
async fn postgresql_on_loopback() {
    let pg = Postgres::start("store");
    let store = Store::open(&pg.url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    suite(store.clone()).await;
    drop(store);
    let again = Store::open(&pg.url).await.unwrap();
    let (c, replay) = again
        .create_challenge(&request(Some("idem-1"), "h3", 9999))
        .await
        .unwrap();
    assert!(replay && c.created_at_ms == 3000);
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error() {
    let e = Store::open("mysql://x").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("expected sqlite://PATH or postgres://"),
        "{e}"
    );
}
