//! The limits: counted and checked in the transaction that admits a challenge (nothing
//! written when it is refused), in windows of buckets; further calls of a challenge counted
//! the same way; the cap on challenges waiting; fraud blocks made by a report and lifted;
//! the counts by number, user and API key; pruning.

use store::{
    Admission, CountScope, Counter, KeyKind, NewChallenge, PhoneNumber, Refused, Scope, Store,
};

use crate::common::{Db, T, request, u9_reported, u9_trusted};

on_both!(
    a_limit_is_counted_and_checked_in_the_admitting_transaction,
    calls_no_longer_count_a_window_and_a_bucket_later,
    a_further_call_of_a_challenge_is_counted_the_same_way,
    the_cap_counts_the_new_challenge_with_the_others_waiting,
    a_fraud_report_blocks_the_user_and_both_numbers_called,
    a_lift_of_the_fraud_blocks_is_kept_with_its_key,
    challenges_are_counted_by_number_user_and_api_key,
    pruning_forgets_the_counts_before_a_time,
);

fn number(n: &str) -> PhoneNumber {
    PhoneNumber::parse(n).unwrap()
}

/// At most `max` calls to number `key` in 10 minutes.
fn per_number(key: &str, max: u32) -> Counter {
    Counter {
        scope: CountScope::Phone,
        key: key.into(),
        max,
        window_ms: 600_000,
    }
}

/// An admission with that one limit.
fn limited(key: &str, max: u32) -> Admission {
    Admission {
        counters: vec![per_number(key, max)],
        ..Admission::default()
    }
}

/// A sign-in by no user to `n` at `now`.
fn at(n: &str, now: i64) -> NewChallenge {
    NewChallenge {
        phone: number(n),
        ..request(None, "a", now)
    }
}

/// Admits a challenge to `n` at `now` with `admission`.
async fn admit(store: &Store, n: &str, now: i64, admission: &Admission) -> Result<(), Refused> {
    let made = store.create_admitted(&at(n, now), admission).await.unwrap();
    made.map(|_| ())
}

async fn a_limit_is_counted_and_checked_in_the_admitting_transaction(db: Db) {
    let store = &db.store;
    let n1 = "+819077770001";
    for i in 0..2 {
        let made = admit(store, n1, T + i, &limited(n1, 2)).await;
        assert!(made.is_ok(), "{made:?}");
    }
    let refused = admit(store, n1, T + 5, &limited(n1, 2)).await.unwrap_err();
    assert_eq!(
        refused,
        Refused::Limit {
            counter: per_number(n1, 2),
            count: 2
        }
    );
    let made = store
        .count_challenges(Scope::Phone(&number(n1)), T)
        .await
        .unwrap();
    assert_eq!(made, 2, "the refused one was not written");
}

/// A window (and a bucket, a sixtieth of it) later the calls no longer count.
async fn calls_no_longer_count_a_window_and_a_bucket_later(db: Db) {
    let store = &db.store;
    let n1 = "+819077770001";
    for i in 0..2 {
        let made = admit(store, n1, T + i, &limited(n1, 2)).await;
        assert!(made.is_ok(), "{made:?}");
    }
    assert!(admit(store, n1, T + 610_001, &limited(n1, 2)).await.is_ok());
}

async fn a_further_call_of_a_challenge_is_counted_the_same_way(db: Db) {
    let store = &db.store;
    let n2 = number("+819077770002");
    let two = limited("+819077770002", 2);
    assert!(store.admit_call(None, &n2, &two, T).await.unwrap().is_ok());
    assert!(store.admit_call(None, &n2, &two, T).await.unwrap().is_ok());
    assert!(matches!(
        store.admit_call(None, &n2, &two, T).await.unwrap(),
        Err(Refused::Limit { count: 2, .. })
    ));
}

async fn the_cap_counts_the_new_challenge_with_the_others_waiting(db: Db) {
    let store = &db.store;
    // Some waiting already.
    for i in 0..2 {
        store
            .create_challenge(&at("+819077770004", T + i))
            .await
            .unwrap();
    }
    let active = store.active_challenges().await.unwrap();
    let cap = Admission {
        max_active: Some(active as u32 + 1),
        ..Admission::default()
    };
    assert!(admit(store, "+819077770003", T, &cap).await.is_ok());
    assert_eq!(
        admit(store, "+819077770003", T, &cap).await.unwrap_err(),
        Refused::TooManyCalls {
            active: active + 2,
            cap: active as u32 + 1
        }
    );
}

/// An admission that checks the fraud blocks.
fn blocks() -> Admission {
    Admission {
        blocks: true,
        ..Admission::default()
    }
}

/// A fraud report blocks the user and both numbers called (the user's and the one the call
/// went to); a block refuses only an admission that checks blocks, until it ends.
async fn a_fraud_report_blocks_the_user_and_both_numbers_called(db: Db) {
    let store = &db.store;
    u9_trusted(store).await;
    let f = u9_reported(store).await;
    let until = T + 20 + 3_600_000;
    for (user, n) in [
        (Some("u-9"), "+819077770099"),
        (None, "+819077770010"),
        (None, "+819077770011"),
        (Some("u-other"), "+819077770011"),
    ] {
        let new = NewChallenge {
            user_id: user.map(str::to_string),
            ..at(n, T + 30)
        };
        let r = store.create_admitted(&new, &blocks()).await.unwrap();
        assert_eq!(
            r.unwrap_err(),
            Refused::FraudBlock { until_ms: until },
            "{user:?} {n}"
        );
    }
    assert!(
        admit(store, "+819077770011", T + 30, &Admission::default())
            .await
            .is_ok(),
        "an admission without blocks"
    );
    assert!(
        admit(store, "+819077770011", until, &blocks())
            .await
            .is_ok(),
        "lifted by itself at its end"
    );
    let listed = store.fraud_blocks("u-9").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|b| b.holds_at(T + 40) && b.challenge_id == f.as_str())
    );
}

async fn a_lift_of_the_fraud_blocks_is_kept_with_its_key(db: Db) {
    let store = &db.store;
    u9_trusted(store).await;
    u9_reported(store).await;
    let (key, _) = store
        .create_api_key("idp-9", KeyKind::Service, T)
        .await
        .unwrap();
    let lift = |at| store.lift_fraud_blocks("u-9", &key, at);
    assert_eq!(lift(T + 50).await.unwrap(), 2);
    assert_eq!(lift(T + 51).await.unwrap(), 0);
    let listed = store.fraud_blocks("u-9").await.unwrap();
    assert!(listed.iter().all(|b| !b.holds_at(T + 60)
        && b.lifted_at_ms == Some(T + 50)
        && b.lifted_by_key_id.as_deref() == Some(key.id.as_str())
        && b.lifted_by_key_name.as_deref() == Some("idp-9")));
    let new = NewChallenge {
        user_id: Some("u-9".into()),
        ..at("+819077770010", T + 60)
    };
    assert!(
        store
            .create_admitted(&new, &blocks())
            .await
            .unwrap()
            .is_ok()
    );
}

/// Counts for the rate limits: by number since a time, by user, by API key.
async fn challenges_are_counted_by_number_user_and_api_key(db: Db) {
    let store = &db.store;
    // Seven challenges of u-1 and three by no user to the same number before 20,000, then
    // one at 20,000: all of the same API key.
    for i in 0..10 {
        let user = (i < 7).then(|| "u-1".to_string());
        let new = NewChallenge {
            user_id: user,
            ..request(None, "c", 10_000 + i * 1000)
        };
        store.create_challenge(&new).await.unwrap();
    }
    store
        .create_challenge(&request(None, "w", 20_000))
        .await
        .unwrap();
    let p = number("+819012345678");
    let count = |scope| store.count_challenges(scope, 0);
    assert_eq!(
        store
            .count_challenges(Scope::Phone(&p), 20_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(Scope::User("u-1")).await.unwrap(), 7);
    assert!(count(Scope::ApiKey("key_service")).await.unwrap() >= 10);
    assert_eq!(count(Scope::ApiKey("key_nobody")).await.unwrap(), 0);
}

/// Pruning forgets the counts before a time: a number at its limit may be called again.
async fn pruning_forgets_the_counts_before_a_time(db: Db) {
    let store = &db.store;
    let n1 = "+819077770001";
    for now in [T, T + 610_001] {
        assert!(admit(store, n1, now, &limited(n1, 2)).await.is_ok());
    }
    let n2 = number("+819077770002");
    let two = limited("+819077770002", 2);
    for _ in 0..2 {
        assert!(store.admit_call(None, &n2, &two, T).await.unwrap().is_ok());
    }
    assert!(store.admit_call(None, &n2, &two, T).await.unwrap().is_err());
    assert!(store.prune_rate_counts(T + 1_000_000).await.unwrap() >= 3);
    assert!(store.admit_call(None, &n2, &two, T).await.unwrap().is_ok());
}
