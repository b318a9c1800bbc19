//! The confirmation modes' codes: number matching's two digits drawn with the challenge, a
//! spoken code kept as a keyed hash and typed at most five times (counted in the statement
//! that allows the attempt, whatever arrives at once), wrong codes as a fraud signal, the
//! call log showing the mode and whether the code matched, an API key's default mode.

use store::{
    CallFilter, ChallengeId, ChallengeState, CodeCheck, Confirmation, KeyKind, NewCall,
    NewChallenge, Store, code_hash,
};

use crate::common::{Db, request, sign_in};

on_both!(
    number_matching_draws_two_digits_and_keeps_whether_they_matched,
    a_spoken_code_is_typed_at_most_five_times_even_all_at_once,
    the_right_spoken_code_approves_only_once_it_was_read,
    an_untyped_spoken_code_expires_with_its_challenge,
    two_wrong_codes_in_a_row_block_the_user,
    an_api_key_carries_a_default_mode,
);

const KEY: &[u8] = b"the gateway's code key";

fn with(mode: Confirmation, base: NewChallenge) -> NewChallenge {
    NewChallenge {
        confirmation: mode,
        ..base
    }
}

/// Makes `new` and moves it into its call (`answered`): its id.
async fn answered(store: &Store, new: &NewChallenge) -> ChallengeId {
    let (c, _) = store.create_challenge(new).await.unwrap();
    for s in [ChallengeState::Calling, ChallengeState::Answered] {
        assert!(
            store
                .transition(&c.id, s, new.now_ms + 1, None, None)
                .await
                .unwrap()
        );
    }
    c.id
}

/// A spoken-code challenge whose call read `code`: its id.
async fn spoken(store: &Store, now: i64, code: &str) -> ChallengeId {
    let id = answered(
        store,
        &with(Confirmation::SpokenCode, request(None, "s", now)),
    )
    .await;
    assert!(
        store
            .set_code_hash(&id, &code_hash(KEY, &id, code))
            .await
            .unwrap()
    );
    assert!(
        store
            .transition(&id, ChallengeState::CodeSpoken, now + 2, None, None)
            .await
            .unwrap()
    );
    id
}

async fn number_matching_draws_two_digits_and_keeps_whether_they_matched(db: Db) {
    let s = &db.store;
    let now = store::now_ms();
    let (pound, _) = s.create_challenge(&request(None, "p", now)).await.unwrap();
    assert_eq!(
        (pound.confirmation, pound.display_code.as_deref()),
        (Confirmation::Pound, None)
    );
    let right = answered(s, &with(Confirmation::KeypadCode, request(None, "r", now))).await;
    let c = s.challenge(&right).await.unwrap().unwrap();
    let code = c.display_code.clone().expect("a display code");
    let b = code.as_bytes();
    assert!(
        b.len() == 2 && b.iter().all(u8::is_ascii_digit) && b[0] != b[1],
        "{code}"
    );
    assert_eq!(
        (c.confirmation, c.code_matched),
        (Confirmation::KeypadCode, None)
    );
    s.start_call(&NewCall {
        id: store::CallId::new(),
        challenge_id: right.clone(),
        phone_masked: c.phone.masked(),
        started_at_ms: now,
    })
    .await
    .unwrap();
    assert!(
        s.transition(&right, ChallengeState::Approved, now + 5, None, None)
            .await
            .unwrap()
    );
    assert_eq!(
        s.challenge(&right).await.unwrap().unwrap().code_matched,
        Some(true)
    );
    let wrong = answered(s, &with(Confirmation::KeypadCode, request(None, "w", now))).await;
    assert!(
        s.transition(
            &wrong,
            ChallengeState::Denied,
            now + 5,
            Some("wrong_code"),
            None
        )
        .await
        .unwrap()
    );
    let w = s.challenge(&wrong).await.unwrap().unwrap();
    assert_eq!(
        (w.reason.as_deref(), w.code_matched),
        (Some("wrong_code"), Some(false))
    );
    // '#' alone: approved, and no code to have matched.
    let p = answered(s, &request(None, "q", now)).await;
    s.transition(&p, ChallengeState::Approved, now + 5, None, None)
        .await
        .unwrap();
    assert_eq!(s.challenge(&p).await.unwrap().unwrap().code_matched, None);
    // The call log shows the mode and the match (it has no field for the code).
    let (calls, _) = s.calls(&CallFilter::default(), 10, None).await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].confirmation, calls[0].code_matched),
        (Confirmation::KeypadCode, Some(true))
    );
}

async fn a_spoken_code_is_typed_at_most_five_times_even_all_at_once(db: Db) {
    let s = &db.store;
    let now = store::now_ms();
    // One after the other: 4, 3, 2, 1, 0 attempts left; the fifth wrong one denies.
    let id = spoken(s, now, "314159").await;
    for left in (0..5).rev() {
        assert_eq!(
            s.check_code(&id, KEY, "000000", now + 10).await.unwrap(),
            CodeCheck::Wrong {
                attempts_left: left
            }
        );
    }
    let c = s.challenge(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            c.state,
            c.reason.as_deref(),
            c.code_matched,
            c.code_attempts
        ),
        (
            ChallengeState::Denied,
            Some("too_many_attempts"),
            Some(false),
            5
        )
    );
    // The right code, too late.
    assert_eq!(
        s.check_code(&id, KEY, "314159", now + 11).await.unwrap(),
        CodeCheck::NotWaiting(ChallengeState::Denied)
    );
    // Forty at once, on two connections: five are counted, whatever the interleaving.
    let id = spoken(s, now, "271828").await;
    let other = db.another().await;
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (st, id) = (
            if i % 2 == 0 { s.clone() } else { other.clone() },
            id.clone(),
        );
        tries.spawn(async move { st.check_code(&id, KEY, &format!("{i:06}"), now + 10).await });
    }
    let results = tries.join_all().await;
    let wrong = results
        .iter()
        .filter(|r| matches!(r, Ok(CodeCheck::Wrong { .. })))
        .count();
    assert_eq!(wrong, 5, "{results:?}");
    assert!(results.iter().all(|r| matches!(
        r,
        Ok(CodeCheck::Wrong { .. }
            | CodeCheck::Exhausted
            | CodeCheck::NotWaiting(ChallengeState::Denied))
    )));
    assert_eq!(
        s.check_code(&id, KEY, "271828", now + 11).await.unwrap(),
        CodeCheck::NotWaiting(ChallengeState::Denied)
    );
}

async fn the_right_spoken_code_approves_only_once_it_was_read(db: Db) {
    let s = &db.store;
    let now = store::now_ms();
    // In the call, before the code was read: not waiting for it.
    let id = answered(s, &with(Confirmation::SpokenCode, request(None, "a", now))).await;
    assert!(
        s.set_code_hash(&id, &code_hash(KEY, &id, "123456"))
            .await
            .unwrap()
    );
    assert_eq!(
        s.check_code(&id, KEY, "123456", now + 3).await.unwrap(),
        CodeCheck::NotWaiting(ChallengeState::Answered)
    );
    // A number-matching challenge keeps no spoken code.
    let k = answered(s, &with(Confirmation::KeypadCode, request(None, "k", now))).await;
    assert!(
        !s.set_code_hash(&k, &code_hash(KEY, &k, "123456"))
            .await
            .unwrap()
    );
    // Read: a wrong one, then the right one under another key (the hash is keyed), then the
    // right one.
    let id = spoken(s, now, "654321").await;
    assert_eq!(
        s.check_code(&id, KEY, "654320", now + 3).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 4 }
    );
    assert_eq!(
        s.check_code(&id, b"another key", "654321", now + 3)
            .await
            .unwrap(),
        CodeCheck::Wrong { attempts_left: 3 }
    );
    let CodeCheck::Matched(c) = s.check_code(&id, KEY, "654321", now + 4).await.unwrap() else {
        panic!("the right code matches");
    };
    assert_eq!(
        (c.state, c.code_matched, c.code_attempts),
        (ChallengeState::Approved, Some(true), 3)
    );
    assert_eq!(
        s.check_code(&id, KEY, "654321", now + 5).await.unwrap(),
        CodeCheck::NotWaiting(ChallengeState::Approved)
    );
    assert_eq!(
        s.check_code(&ChallengeId::new(), KEY, "654321", now + 5)
            .await
            .unwrap(),
        CodeCheck::Unknown
    );
}

async fn an_untyped_spoken_code_expires_with_its_challenge(db: Db) {
    let s = &db.store;
    let now = store::now_ms();
    let id = spoken(s, now, "111111").await;
    let expiry = now + 300_000;
    // Past the expiry the code is refused even before the expiry job runs.
    assert_eq!(
        s.check_code(&id, KEY, "111111", expiry).await.unwrap(),
        CodeCheck::NotWaiting(ChallengeState::CodeSpoken)
    );
    assert_eq!(s.expire_due(expiry).await.unwrap(), vec![id.clone()]);
    let c = s.challenge(&id).await.unwrap().unwrap();
    assert_eq!(
        (c.state, c.reason.as_deref()),
        (
            ChallengeState::Expired,
            Some("the spoken code was not typed before its expiry")
        )
    );
}

async fn two_wrong_codes_in_a_row_block_the_user(db: Db) {
    let s = &db.store;
    let now = store::now_ms();
    let wrong = |n: i64| async move {
        let id = answered(
            s,
            &with(Confirmation::KeypadCode, sign_in("mallory-target", n, 0)),
        )
        .await;
        s.transition(&id, ChallengeState::Denied, n + 5, Some("wrong_code"), None)
            .await
            .unwrap();
    };
    // A wrong code, then an approval, then a wrong code: not in a row, no block.
    wrong(now).await;
    let ok = answered(s, &sign_in("mallory-target", now + 10, 0)).await;
    s.transition(&ok, ChallengeState::Approved, now + 15, None, None)
        .await
        .unwrap();
    wrong(now + 20).await;
    assert!(s.fraud_blocks("mallory-target").await.unwrap().is_empty());
    // A second wrong code in a row blocks the user as a fraud report does.
    wrong(now + 30).await;
    let blocks = s.fraud_blocks("mallory-target").await.unwrap();
    assert!(!blocks.is_empty(), "{blocks:?}");
    assert!(
        blocks
            .iter()
            .all(|b| b.reason == "two wrong number-matching codes in a row")
    );
}

async fn an_api_key_carries_a_default_mode(db: Db) {
    let s = &db.store;
    let (key, secret) = s
        .create_api_key("idp", KeyKind::Service, store::now_ms())
        .await
        .unwrap();
    assert_eq!(key.confirmation, None);
    assert!(
        s.set_key_confirmation(&key.id, Some(Confirmation::KeypadCode))
            .await
            .unwrap()
    );
    let read = s.api_key(&secret).await.unwrap().unwrap();
    assert_eq!(read.confirmation, Some(Confirmation::KeypadCode));
    assert!(s.set_key_confirmation(&key.id, None).await.unwrap());
    assert_eq!(
        s.api_key(&secret).await.unwrap().unwrap().confirmation,
        None
    );
    assert!(!s.set_key_confirmation("key_unknown", None).await.unwrap());
}
