//! Users' phones (pending until their enrolment call is approved, failed if it is not, a new
//! primary replacing the old one, removal) and trusted devices (made by an approved sign-in
//! that asked, revoked one or all, by a fraud report and by a new primary phone).

use store::ChallengeState::*;
use store::{PhoneRole, PhoneState, Store};

use crate::common::{
    Db, T, decide, decided, enrolment, sign_in, u9_reported, u9_sign_in, u9_trusted,
};

on_both!(
    a_phone_is_pending_until_its_enrolment_is_approved_and_failed_if_not,
    a_new_primary_phone_replaces_the_old_one_once_it_is_verified,
    a_verified_phone_is_removed_only_when_asked,
    an_approved_sign_in_that_asked_makes_a_trusted_device,
    trusted_devices_are_revoked_one_or_all,
    a_fraud_report_revokes_the_users_trusted_devices,
    a_new_primary_phone_revokes_the_trusted_devices_a_new_fallback_does_not,
);

/// u-1's first phones: +819011112222 verified as primary, +819033334444 failed as fallback.
async fn first_phones(store: &Store) {
    let primary = enrolment("u-1", "+819011112222", PhoneRole::Primary, 10_000);
    decided(store, &primary, Approved, 10_100).await;
    let fallback = enrolment("u-1", "+819033334444", PhoneRole::Fallback, 11_000);
    decided(store, &fallback, NoAnswer, 11_100).await;
}

async fn a_phone_is_pending_until_its_enrolment_is_approved_and_failed_if_not(db: Db) {
    let store = &db.store;
    let (e1, _) = store
        .create_challenge(&enrolment(
            "u-1",
            "+819011112222",
            PhoneRole::Primary,
            10_000,
        ))
        .await
        .unwrap();
    let phones = store.phones("u-1").await.unwrap();
    assert_eq!(phones.len(), 1);
    assert_eq!(
        (
            phones[0].state,
            phones[0].role,
            phones[0].challenge_id.as_deref()
        ),
        (
            PhoneState::Pending,
            PhoneRole::Primary,
            Some(e1.id.as_str())
        )
    );
    let verified = |role| store.verified_phone("u-1", role);
    assert_eq!(verified(PhoneRole::Primary).await.unwrap(), None);
    decide(store, &e1.id, Approved, 10_100).await;
    let primary = verified(PhoneRole::Primary).await.unwrap().unwrap();
    assert_eq!(primary.phone.as_e164(), Some("+819011112222"));
    assert_eq!(primary.verified_at_ms, Some(10_100));

    let fallback = enrolment("u-1", "+819033334444", PhoneRole::Fallback, 11_000);
    decided(store, &fallback, NoAnswer, 11_100).await;
    let fallback = store.phones("u-1").await.unwrap();
    assert_eq!(fallback[1].state, PhoneState::Failed);
    assert_eq!(verified(PhoneRole::Fallback).await.unwrap(), None);
}

async fn a_new_primary_phone_replaces_the_old_one_once_it_is_verified(db: Db) {
    let store = &db.store;
    first_phones(store).await;
    let (e3, _) = store
        .create_challenge(&enrolment(
            "u-1",
            "+819055556666",
            PhoneRole::Primary,
            12_000,
        ))
        .await
        .unwrap();
    let primary = store.verified_phone("u-1", PhoneRole::Primary).await;
    assert_eq!(
        primary.unwrap().unwrap().phone.as_e164(),
        Some("+819011112222")
    );
    decide(store, &e3.id, Approved, 12_100).await;
    let phones = store.phones("u-1").await.unwrap();
    let numbers: Vec<&str> = phones.iter().filter_map(|p| p.phone.as_e164()).collect();
    assert_eq!(
        numbers,
        ["+819033334444", "+819055556666"],
        "the old primary is gone"
    );
}

/// A phone that is not verified is removed, once; a verified one only when asked, and only
/// through its user.
async fn a_verified_phone_is_removed_only_when_asked(db: Db) {
    let store = &db.store;
    first_phones(store).await;
    let primary = enrolment("u-1", "+819055556666", PhoneRole::Primary, 12_000);
    decided(store, &primary, Approved, 12_100).await;
    let phones = store.phones("u-1").await.unwrap();
    assert_eq!(phones[0].state, PhoneState::Failed);
    assert_eq!(phones[1].state, PhoneState::Verified);
    let remove = |user: &'static str, i: usize, at, admin| {
        let id = phones[i].id.clone();
        async move { store.remove_phone(user, &id, at, admin).await.unwrap() }
    };
    assert!(remove("u-1", 0, 13_000, false).await);
    assert!(!remove("u-1", 0, 13_001, false).await);
    assert!(
        !remove("u-1", 1, 13_001, false).await,
        "verified: only when asked"
    );
    assert!(!remove("u-2", 1, 13_002, true).await, "not u-2's");
    assert_eq!(store.phones("u-1").await.unwrap().len(), 1);
}

/// An approved sign-in that asked to remember the device makes a trusted device; one that
/// did not, or that failed, makes none.
async fn an_approved_sign_in_that_asked_makes_a_trusted_device(db: Db) {
    let store = &db.store;
    let (s1, _) = store
        .create_challenge(&sign_in("u-1", 14_000, 1_000_000))
        .await
        .unwrap();
    assert_eq!(s1.remember_device_ms, 1_000_000);
    decide(store, &s1.id, Approved, 14_100).await;
    let td = store.trusted_device_of(&s1.id).await.unwrap().unwrap();
    assert_eq!((td.user_id.as_str(), td.expires_at_ms), ("u-1", 1_014_100));
    assert!(td.valid_at(14_200) && !td.valid_at(1_014_100));
    assert_eq!(
        store.trusted_device(&td.id).await.unwrap(),
        Some(td.clone())
    );
    let s2 = decided(store, &sign_in("u-1", 15_000, 0), Approved, 15_100).await;
    assert_eq!(store.trusted_device_of(&s2).await.unwrap(), None);
    let s3 = decided(store, &sign_in("u-1", 16_000, 1_000_000), Denied, 16_100).await;
    assert_eq!(store.trusted_device_of(&s3).await.unwrap(), None);
    decided(store, &sign_in("u-1", 17_000, 1_000_000), Approved, 17_100).await;
    assert_eq!(store.trusted_devices("u-1").await.unwrap().len(), 2);
}

/// Revoke one, then all.
async fn trusted_devices_are_revoked_one_or_all(db: Db) {
    let store = &db.store;
    let s1 = decided(store, &sign_in("u-1", 14_000, 1_000_000), Approved, 14_100).await;
    decided(store, &sign_in("u-1", 17_000, 1_000_000), Approved, 17_100).await;
    let td = store.trusted_device_of(&s1).await.unwrap().unwrap();
    let revoke = |user, one| store.revoke_trusted_devices(user, one, 18_000);
    assert_eq!(revoke("u-1", Some(&td.id)).await.unwrap(), 1);
    let revoked = store.trusted_device(&td.id).await.unwrap().unwrap();
    assert!(!revoked.valid_at(18_001));
    assert_eq!(revoke("u-2", None).await.unwrap(), 0);
    assert_eq!(revoke("u-1", None).await.unwrap(), 1);
    assert!(
        store
            .trusted_devices("u-1")
            .await
            .unwrap()
            .iter()
            .all(|t| !t.valid_at(18_001))
    );
}

/// Whether the trusted device that sign-in `id` made is valid at `at`.
async fn trusted(store: &Store, id: &store::ChallengeId, at: i64) -> bool {
    let td = store.trusted_device_of(id).await.unwrap().unwrap();
    td.valid_at(at)
}

async fn a_fraud_report_revokes_the_users_trusted_devices(db: Db) {
    let store = &db.store;
    let s = u9_trusted(store).await;
    assert!(trusted(store, &s, T + 4).await);
    u9_reported(store).await;
    assert!(!trusted(store, &s, T + 21).await);
}

async fn a_new_primary_phone_revokes_the_trusted_devices_a_new_fallback_does_not(db: Db) {
    let store = &db.store;
    let primary = enrolment("u-9", "+819077770010", PhoneRole::Primary, T);
    decided(store, &primary, Approved, T + 1).await;
    let s2 = decided(store, &u9_sign_in(T + 70, 1_000_000), Approved, T + 71).await;
    let fallback = enrolment("u-9", "+819077770012", PhoneRole::Fallback, T + 72);
    decided(store, &fallback, Approved, T + 73).await;
    assert!(trusted(store, &s2, T + 74).await);
    let (p2, _) = store
        .create_challenge(&store::NewChallenge {
            confirm_primary: true,
            ..enrolment("u-9", "+819077770013", PhoneRole::Primary, T + 75)
        })
        .await
        .unwrap();
    assert!(
        store
            .challenge(&p2.id)
            .await
            .unwrap()
            .unwrap()
            .confirm_primary
    );
    decide(store, &p2.id, Approved, T + 76).await;
    assert!(!trusted(store, &s2, T + 77).await);
}
