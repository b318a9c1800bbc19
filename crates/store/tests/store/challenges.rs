//! Challenges and their states: created queued, moved forward only, decided once; failures
//! with their SIP status; the Idempotency-Key; a restart; expiry; the backends themselves.

use store::ChallengeState::{self, *};
use store::{Store, StoreError};

use crate::common::{Db, challenge_id, decided, request};

on_both!(
    a_challenge_is_created_queued_with_its_first_event,
    a_challenge_moves_forward_only_and_its_decision_is_final,
    a_failure_keeps_its_reason_and_sip_status,
    an_idempotency_key_gives_back_the_challenge_it_made,
    ten_requests_with_one_key_at_once_make_one_challenge,
    a_restart_interrupts_the_calls_in_progress_only,
    only_queued_challenges_past_their_time_expire,
    opening_again_migrates_nothing_and_keeps_the_data,
);

async fn a_challenge_is_created_queued_with_its_first_event(db: Db) {
    let store = &db.store;
    let (c, replay) = store
        .create_challenge(&request(None, "h1", 1000))
        .await
        .unwrap();
    assert!(!replay);
    assert_eq!(c.state, Queued);
    assert_eq!(c.phone.as_e164(), Some("+819012345678"));
    assert_eq!(
        (c.created_at_ms, c.expires_at_ms, c.decided_at_ms),
        (1000, 301_000, None)
    );
    assert_eq!(store.challenge(&c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(
        store.challenge(&challenge_id("ch_unknown")).await.unwrap(),
        None
    );
}

/// Forward only, each change with its time; a decision is final.
async fn a_challenge_moves_forward_only_and_its_decision_is_final(db: Db) {
    let store = &db.store;
    let (c, _) = store
        .create_challenge(&request(None, "h1", 1000))
        .await
        .unwrap();
    let to = |state, at| store.transition(&c.id, state, at, None, None);
    assert!(to(Calling, 1100).await.unwrap());
    assert!(!to(Calling, 1150).await.unwrap(), "already there");
    assert!(!to(Queued, 1160).await.unwrap(), "no way back");
    assert!(to(Ringing, 1200).await.unwrap());
    assert!(to(Answered, 3000).await.unwrap());
    assert!(to(Approved, 9000).await.unwrap());
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
            .transition(&challenge_id("ch_unknown"), Calling, 1, None, None)
            .await
            .unwrap()
    );
}

/// A failure keeps its reason and SIP status; states may be skipped.
async fn a_failure_keeps_its_reason_and_sip_status(db: Db) {
    let store = &db.store;
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
}

/// The same key and request give the same challenge; another request with that key is
/// refused; another API key may use the same key.
async fn an_idempotency_key_gives_back_the_challenge_it_made(db: Db) {
    let store = &db.store;
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
}

async fn ten_requests_with_one_key_at_once_make_one_challenge(db: Db) {
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = db.store.clone();
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
}

/// A restart: calls in progress become interrupted, queued and decided ones stay.
async fn a_restart_interrupts_the_calls_in_progress_only(db: Db) {
    let store = &db.store;
    let approved = decided(store, &request(None, "h1", 1000), Approved, 9000).await;
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
    let state =
        |id: store::ChallengeId| async move { store.challenge(&id).await.unwrap().unwrap().state };
    assert_eq!(state(queued.id).await, Queued);
    assert_eq!(state(approved).await, Approved);
    assert_eq!(store.interrupt_unfinished(7000).await.unwrap(), 0);
}

/// Expiry: only queued challenges past their time; every change made through the store is
/// announced.
async fn only_queued_challenges_past_their_time_expire(db: Db) {
    let store = &db.store;
    // One waiting already.
    store
        .create_challenge(&request(None, "w", 20_000))
        .await
        .unwrap();
    let active = store.active_challenges().await.unwrap();
    let (q, _) = store
        .create_challenge(&request(None, "x", 30_000))
        .await
        .unwrap();
    assert_eq!(store.active_challenges().await.unwrap(), active + 1);
    let mut changes = store.subscribe();
    assert!(
        !store
            .expire_due(q.expires_at_ms - 1)
            .await
            .unwrap()
            .contains(&q.id)
    );
    assert!(
        store
            .expire_due(q.expires_at_ms)
            .await
            .unwrap()
            .contains(&q.id)
    );
    let q = store.challenge(&q.id).await.unwrap().unwrap();
    assert_eq!(q.state, Expired);
    assert_eq!(q.reason.as_deref(), Some("not called before its expiry"));
    let mut seen = Vec::new();
    while let Ok(ch) = changes.try_recv() {
        seen.push(ch);
    }
    assert!(
        seen.iter().any(|ch| ch.id == q.id && ch.state == Expired),
        "{seen:?}"
    );
}

/// Opening again migrates nothing and keeps the data: a replay finds the challenge made
/// before.
async fn opening_again_migrates_nothing_and_keeps_the_data(db: Db) {
    db.store
        .create_challenge(&request(Some("idem-1"), "h3", 3000))
        .await
        .unwrap();
    drop(db.store);
    let again = Store::open(&db.url).await.unwrap();
    let (c, replay) = again
        .create_challenge(&request(Some("idem-1"), "h3", 9999))
        .await
        .unwrap();
    assert!(replay);
    assert_eq!(
        c.created_at_ms, 3000,
        "the replay found the challenge made before"
    );
}

/// A second process's copy of a SQLite store could not be kept current: refused, naming the
/// lock file; WAL mode leaves a -wal file.
#[tokio::test]
async fn sqlite_is_one_nodes_file_in_wal_mode() {
    let db = Db::sqlite("store-sqlite-wal").await;
    let e = Store::open(&db.url).await.unwrap().cached().unwrap_err();
    assert!(e.to_string().contains("callverify.db.node-lock"), "{e}");
    db.store
        .create_challenge(&request(None, "h1", 1000))
        .await
        .unwrap();
    let dir = db.dir.as_ref().unwrap();
    assert!(
        dir.join("callverify.db-wal").exists(),
        "WAL mode leaves a -wal file"
    );
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
