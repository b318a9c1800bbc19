//! What the Entra EAM provider keeps: nonces accepted once (also when two ask at once),
//! sign-ins found only with their secret and before their expiry, their answer released
//! once, signing keys, phones imported by an administrator, where a challenge came from, and
//! the retention of nonces and sign-ins.

use sqlx::Row;
use store::ChallengeState::Approved;
use store::{
    CallEnd, CallFilter, ChallengeId, EamSession, Imported, NewCall, NewChallenge, NewEamSession,
    Origin, PhoneNumber, PhoneRole, PhoneState, StoredEamKey,
};

use crate::common::{Db, T, call_id, decided, enrolment, request, u9_trusted};

on_both!(
    a_nonce_is_accepted_once_and_only_its_hash_is_kept,
    of_two_nodes_using_one_nonce_at_once_one_gets_it,
    a_session_is_found_only_with_its_secret_before_its_expiry,
    a_sessions_answer_is_released_once,
    signing_keys_round_trip_in_order,
    an_imported_phone_is_verified_and_replaces_the_one_in_its_role,
    an_imported_primary_phone_revokes_trusted_devices_and_a_fallback_does_not,
    a_challenges_origin_is_stored_and_the_call_log_is_filtered_by_it,
    nonces_and_sessions_are_forgotten_a_day_past_their_expiry,
);

/// The rows `sql` gives, as text, read around the store (to see what it really keeps).
async fn raw(db: &Db, sql: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&pool)
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).unwrap())
        .collect()
}

async fn a_nonce_is_accepted_once_and_only_its_hash_is_kept(db: Db) {
    let store = &db.store;
    assert!(store.use_eam_nonce("n-1", T, T + 600_000).await.unwrap());
    assert!(
        !store
            .use_eam_nonce("n-1", T + 1, T + 600_000)
            .await
            .unwrap()
    );
    // Even after its expiry: a replay is a replay until retention forgets it.
    assert!(
        !store
            .use_eam_nonce("n-1", T + 700_000, T + 1_300_000)
            .await
            .unwrap()
    );
    assert!(store.use_eam_nonce("n-2", T, T + 600_000).await.unwrap());
    let kept = raw(&db, "SELECT nonce_hash FROM eam_nonces ORDER BY nonce_hash").await;
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|h| h.len() == 64 && !h.contains("n-")));
}

async fn of_two_nodes_using_one_nonce_at_once_one_gets_it(db: Db) {
    let other = db.another().await;
    for round in 0..5 {
        let nonce = format!("race-{round}");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = if i % 2 == 0 {
                    db.store.clone()
                } else {
                    other.clone()
                };
                let nonce = nonce.clone();
                tokio::spawn(async move { store.use_eam_nonce(&nonce, T, T + 60_000).await })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap().unwrap());
        }
        assert_eq!(won, 1, "round {round}");
    }
}

fn new_session(now: i64) -> NewEamSession {
    NewEamSession {
        client_id: "600b719b-3766-4dc5-95a6-3c4a8dc31885".into(),
        redirect_uri: "https://login.microsoftonline.com/common/federation/externalauthprovider"
            .into(),
        state: Some("st-1".into()),
        nonce: "nonce-1".into(),
        sub: "sub-1".into(),
        tid: "14c2f153-90a7-4689-9db7-9543bf084dad".into(),
        oid: "oid-1".into(),
        acr: "possessionorinherence".into(),
        user_id: "entra:14c2f153-90a7-4689-9db7-9543bf084dad:oid-1".into(),
        client_request_id: Some("crid-1".into()),
        language: "ja".into(),
        now_ms: now,
        expires_at_ms: now + 600_000,
    }
}

fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

async fn a_session_is_found_only_with_its_secret_before_its_expiry(db: Db) {
    let store = &db.store;
    let (made, secret) = store.create_eam_session(&new_session(T)).await.unwrap();
    assert!(made.id.strip_prefix("es_").is_some_and(|h| is_hex(h, 32)));
    assert!(is_hex(&secret, 64));
    let found = store.eam_session(&made.id, &secret, T + 1).await.unwrap();
    assert_eq!(found.as_ref(), Some(&made));
    let found: EamSession = found.unwrap();
    assert_eq!(found.client_request_id.as_deref(), Some("crid-1"));
    assert_eq!((found.challenge_id, found.finished_at_ms), (None, None));
    // The same None for every miss.
    let mut wrong = secret.clone();
    wrong.replace_range(..1, if secret.starts_with('0') { "1" } else { "0" });
    assert_eq!(
        store.eam_session(&made.id, &wrong, T + 1).await.unwrap(),
        None
    );
    assert_eq!(store.eam_session(&made.id, "", T + 1).await.unwrap(), None);
    assert_eq!(
        store
            .eam_session("es_unknown", &secret, T + 1)
            .await
            .unwrap(),
        None
    );
    let expiry = made.expires_at_ms;
    assert_eq!(
        store.eam_session(&made.id, &secret, expiry).await.unwrap(),
        None
    );
    // Another session's secret is not this one's.
    let (other, other_secret) = store.create_eam_session(&new_session(T)).await.unwrap();
    assert_ne!(other.id, made.id);
    assert_ne!(other_secret, secret);
    assert_eq!(
        store
            .eam_session(&made.id, &other_secret, T + 1)
            .await
            .unwrap(),
        None
    );
    // Only the secret's hash is kept.
    let hashes = raw(&db, "SELECT secret_hash FROM eam_sessions").await;
    assert!(
        hashes
            .iter()
            .all(|h| is_hex(h, 64) && *h != secret && *h != other_secret)
    );
}

async fn a_sessions_answer_is_released_once(db: Db) {
    let store = &db.store;
    let (s, secret) = store.create_eam_session(&new_session(T)).await.unwrap();
    let (c, _) = store
        .create_challenge(&request(None, "h", T))
        .await
        .unwrap();
    assert!(
        store
            .set_eam_session_challenge(&s.id, None, &c.id)
            .await
            .unwrap()
    );
    // A second "first call" (two clicks at once) loses.
    let twin = ChallengeId::from_stored("ch_twin".into());
    assert!(
        !store
            .set_eam_session_challenge(&s.id, None, &twin)
            .await
            .unwrap(),
        "compare-and-set"
    );
    let found = store
        .eam_session(&s.id, &secret, T + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.challenge_id, Some(c.id.clone()));
    assert!(store.finish_eam_session(&s.id, T + 2).await.unwrap());
    assert!(
        !store.finish_eam_session(&s.id, T + 3).await.unwrap(),
        "once"
    );
    assert!(!store.finish_eam_session("es_unknown", T + 3).await.unwrap());
    let found = store
        .eam_session(&s.id, &secret, T + 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.finished_at_ms, Some(T + 2));
    // A finished sign-in's challenge stays the one its answer was for.
    let later = ChallengeId::from_stored("ch_later".into());
    assert!(
        !store
            .set_eam_session_challenge(&s.id, Some(&c.id), &later)
            .await
            .unwrap()
    );
    let found = store
        .eam_session(&s.id, &secret, T + 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.challenge_id, Some(c.id));
}

async fn signing_keys_round_trip_in_order(db: Db) {
    let store = &db.store;
    assert!(store.eam_keys().await.unwrap().is_empty());
    let key = |kid: &str, sign_from_ms| StoredEamKey {
        kid: kid.into(),
        // Every byte value, a NUL among them: opaque bytes, kept as they are.
        sealed_key: (0..=255u8).chain([0, 0, 7]).collect(),
        certificate: vec![0x30, 0x82, 0x00, 0xff],
        created_ms: T,
        sign_from_ms,
    };
    let (later, sooner) = (key("k-later", T + 100), key("k-sooner", T));
    store.add_eam_key(&later).await.unwrap();
    store.add_eam_key(&sooner).await.unwrap();
    assert_eq!(store.eam_keys().await.unwrap(), vec![sooner, later.clone()]);
    assert!(
        store.add_eam_key(&later).await.is_err(),
        "a kid is taken once"
    );
}

fn number(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).unwrap()
}

async fn an_imported_phone_is_verified_and_replaces_the_one_in_its_role(db: Db) {
    let store = &db.store;
    let user = "entra:14c2f153-90a7-4689-9db7-9543bf084dad:oid-1";
    let (a, b) = (number("+819011110001"), number("+819011110002"));
    let import = |n, role, at| store.import_phone(user, n, role, "ja", at);
    assert_eq!(
        import(&a, PhoneRole::Primary, T).await.unwrap(),
        Imported::Added
    );
    let p = store
        .verified_phone(user, PhoneRole::Primary)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.phone.clone(), p.state, p.challenge_id),
        (a.clone(), PhoneState::Verified, None)
    );
    assert_eq!(p.verified_at_ms, Some(T));
    assert_eq!(
        import(&a, PhoneRole::Primary, T + 1).await.unwrap(),
        Imported::Unchanged
    );
    // The same number as the fallback is another role's phone.
    assert_eq!(
        import(&a, PhoneRole::Fallback, T + 2).await.unwrap(),
        Imported::Added
    );
    assert_eq!(
        import(&b, PhoneRole::Primary, T + 3).await.unwrap(),
        Imported::Replaced
    );
    let phones = store.phones(user).await.unwrap();
    let kept: Vec<_> = phones.iter().map(|p| (p.phone.clone(), p.role)).collect();
    assert_eq!(
        kept,
        vec![
            (a.clone(), PhoneRole::Fallback),
            (b.clone(), PhoneRole::Primary)
        ]
    );
    // An approved enrolment replaces an imported phone as it replaces any other.
    let c = number("+819011110003");
    let enrol = enrolment(user, "+819011110003", PhoneRole::Primary, T + 4);
    decided(store, &enrol, Approved, T + 5).await;
    let p = store
        .verified_phone(user, PhoneRole::Primary)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.phone, c);
    assert!(p.challenge_id.is_some());
    assert_eq!(store.phones(user).await.unwrap().len(), 2);
    // And an import replaces an enrolled one.
    assert_eq!(
        import(&b, PhoneRole::Primary, T + 6).await.unwrap(),
        Imported::Replaced
    );
    assert_eq!(
        store
            .verified_phone(user, PhoneRole::Primary)
            .await
            .unwrap()
            .unwrap()
            .phone,
        b
    );
}

async fn an_imported_primary_phone_revokes_trusted_devices_and_a_fallback_does_not(db: Db) {
    let store = &db.store;
    let trusted = u9_trusted(store).await;
    let device = store.trusted_device_of(&trusted).await.unwrap().unwrap();
    let fallback = number("+819077770099");
    let done = store.import_phone("u-9", &fallback, PhoneRole::Fallback, "en", T + 10);
    assert_eq!(done.await.unwrap(), Imported::Added);
    assert!(
        store
            .trusted_device(&device.id)
            .await
            .unwrap()
            .unwrap()
            .valid_at(T + 11)
    );
    // u-9's primary phone again: nothing changes, nothing is revoked.
    let same = number("+819077770010");
    let done = store.import_phone("u-9", &same, PhoneRole::Primary, "en", T + 12);
    assert_eq!(done.await.unwrap(), Imported::Unchanged);
    assert!(
        store
            .trusted_device(&device.id)
            .await
            .unwrap()
            .unwrap()
            .valid_at(T + 13)
    );
    let primary = number("+819077770098");
    let done = store.import_phone("u-9", &primary, PhoneRole::Primary, "en", T + 14);
    assert_eq!(done.await.unwrap(), Imported::Replaced);
    let device = store.trusted_device(&device.id).await.unwrap().unwrap();
    assert_eq!(device.revoked_at_ms, Some(T + 14));
}

async fn a_challenges_origin_is_stored_and_the_call_log_is_filtered_by_it(db: Db) {
    let store = &db.store;
    let (api, _) = store
        .create_challenge(&request(None, "a", T))
        .await
        .unwrap();
    assert_eq!((api.origin, api.origin_ref.as_deref()), (Origin::Api, None));
    let (eam, _) = store
        .create_challenge(&NewChallenge {
            origin: Origin::Eam,
            origin_ref: Some("crid-7".into()),
            confirmation: Default::default(),
            ..request(None, "b", T)
        })
        .await
        .unwrap();
    let read = store.challenge(&eam.id).await.unwrap().unwrap();
    assert_eq!(
        (read.origin, read.origin_ref.as_deref()),
        (Origin::Eam, Some("crid-7"))
    );
    // Read again past the node's copy.
    let other = db.another().await;
    let read = other.challenge(&eam.id).await.unwrap().unwrap();
    assert_eq!(
        (read.origin, read.origin_ref.as_deref()),
        (Origin::Eam, Some("crid-7"))
    );
    for (i, c) in [&api, &eam].into_iter().enumerate() {
        let id = call_id(&format!("call_{i}"));
        let call = NewCall {
            id: id.clone(),
            challenge_id: c.id.clone(),
            phone_masked: c.phone.masked(),
            started_at_ms: T + i as i64,
        };
        store.start_call(&call).await.unwrap();
        assert!(
            store
                .finish_call(&id, &CallEnd::new(Approved, T + 9))
                .await
                .unwrap()
        );
    }
    let listed = |origin| {
        let filter = CallFilter {
            origin,
            ..CallFilter::default()
        };
        async move { store.calls(&filter, 10, None).await.unwrap().0 }
    };
    let all = listed(None).await;
    let seen: Vec<_> = all
        .iter()
        .map(|c| (c.origin, c.origin_ref.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![(Origin::Eam, Some("crid-7".into())), (Origin::Api, None)]
    );
    let only: Vec<_> = listed(Some(Origin::Eam))
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(only, vec![call_id("call_1")]);
    assert_eq!(listed(Some(Origin::Api)).await.len(), 1);
    assert!(listed(Some(Origin::Radius)).await.is_empty());
    let one = store.call(&call_id("call_1")).await.unwrap().unwrap();
    assert_eq!(one.origin, Origin::Eam);
}

async fn nonces_and_sessions_are_forgotten_a_day_past_their_expiry(db: Db) {
    const DAY: i64 = 86_400_000;
    let store = &db.store;
    let now = 1_000 * DAY;
    assert!(
        store
            .use_eam_nonce("old", now - 3 * DAY, now - DAY - 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .use_eam_nonce("older", now - 3 * DAY, now - 2 * DAY)
            .await
            .unwrap()
    );
    assert!(
        store
            .use_eam_nonce("recent", now - DAY, now - DAY + 1)
            .await
            .unwrap()
    );
    let (old, _) = store
        .create_eam_session(&new_session(now - 3 * DAY))
        .await
        .unwrap();
    let (recent, recent_secret) = store
        .create_eam_session(&NewEamSession {
            expires_at_ms: now - DAY + 1,
            ..new_session(now - 2 * DAY)
        })
        .await
        .unwrap();
    assert_eq!(store.forget_expired_eam(now, 1).await.unwrap(), (2, 1));
    assert_eq!(store.forget_expired_eam(now, 1).await.unwrap(), (0, 0));
    // What is left: the recent nonce is still a replay, the recent session still there.
    assert!(!store.use_eam_nonce("recent", now, now + 1).await.unwrap());
    assert!(store.use_eam_nonce("old", now, now + 1).await.unwrap());
    let left = raw(&db, "SELECT id FROM eam_sessions").await;
    assert_eq!(left, vec![recent.id.clone()]);
    assert_ne!(old.id, recent.id);
    assert!(!recent_secret.is_empty());
    // The retention sweep does it too, on the clock's time.
    let (gone, _) = store
        .create_eam_session(&NewEamSession {
            expires_at_ms: store::now_ms() - 2 * DAY,
            ..new_session(store::now_ms() - 3 * DAY)
        })
        .await
        .unwrap();
    let f = store.forget_before(0, 10).await.unwrap();
    assert!(f.eam_sessions >= 1 && f.eam_nonces >= 2, "{f:?}");
    assert!(
        !raw(&db, "SELECT id FROM eam_sessions")
            .await
            .contains(&gone.id)
    );
}
