//! Retention on SQLite and on PostgreSQL (a server of its own, started on loopback): rows
//! made older than the retention are deleted or masked, the recent ones are left whole.

use callverify_e2e::{Postgres, scratch};
use store::{
    CallEnd, CallId, CallStep, ChallengeId, ChallengeState, Digit, Forgotten, KeySource, NewCall,
    NewChallenge, PhoneNumber, PhoneRole, PhoneState, Purpose, StepKind, Store, WebhookAttempt,
    WebhookNext, now_ms,
};

const DAY: i64 = 86_400_000;

fn challenge(user: Option<&str>, number: &str, at: i64) -> NewChallenge {
    NewChallenge {
        api_key_id: "key_service".into(),
        idempotency_key: None,
        request_hash: String::new(),
        user_id: user.map(str::to_string),
        phone: PhoneNumber::parse(number).unwrap(),
        language: "en".into(),
        purpose: Purpose::SignIn,
        callback_url: Some("https://idp.example/hook?secret=s3cret".into()),
        enrol: None,
        remember_device_ms: 0,
        fraud_block_ms: 0,
        confirm_primary: false,
        origin: store::Origin::Api,
        origin_ref: None,
        confirmation: Default::default(),
        now_ms: at,
        expires_at_ms: at + 300_000,
    }
}

/// A signed-in user's approved challenge at `at`, with its call (a key and a step), its
/// delivered webhook and a trusted device for 14 days: its id and its call's id.
async fn sign_in_at(store: &Store, user: &str, at: i64) -> (ChallengeId, CallId) {
    let (c, _) = store
        .create_challenge(&NewChallenge {
            remember_device_ms: 14 * DAY,
            ..challenge(Some(user), "+819012345678", at)
        })
        .await
        .unwrap();
    let call = CallId::from_stored(format!("call_{}", c.id));
    store
        .start_call(&NewCall {
            id: call.clone(),
            challenge_id: c.id.clone(),
            phone_masked: c.phone.masked(),
            started_at_ms: at + 100,
        })
        .await
        .unwrap();
    use ChallengeState::*;
    for (s, t) in [(Calling, 100), (Answered, 2000), (Approved, 4000)] {
        assert!(
            store
                .transition(&c.id, s, at + t, None, None)
                .await
                .unwrap()
        );
    }
    let end = CallEnd {
        steps: vec![
            CallStep {
                at_ms: 0,
                kind: StepKind::Invite,
                detail: "pbx".into(),
            },
            CallStep::key_step(3900, Digit::Pound, KeySource::Rfc4733, true),
        ],
        ..CallEnd::new(ChallengeState::Approved, at + 5000)
    };
    assert!(store.finish_call(&call, &end).await.unwrap());
    let attempt = WebhookAttempt {
        attempt: 1,
        at_ms: at + 4100,
        status: Some(204),
        error: None,
        duration_ms: Some(12),
    };
    store
        .record_webhook_attempt(&c.id, &attempt, WebhookNext::Delivered)
        .await
        .unwrap();
    (c.id, call)
}

/// An enrolment of `number` for `user` at `at`, approved or not.
async fn enrolled_at(store: &Store, user: &str, number: &str, role: PhoneRole, at: i64, ok: bool) {
    let (c, _) = store
        .create_challenge(&NewChallenge {
            purpose: Purpose::Enroll,
            enrol: Some(role),
            callback_url: None,
            ..challenge(Some(user), number, at)
        })
        .await
        .unwrap();
    let to = if ok {
        ChallengeState::Approved
    } else {
        ChallengeState::NoAnswer
    };
    assert!(
        store
            .transition(&c.id, to, at + 1000, None, None)
            .await
            .unwrap()
    );
}

/// The users' phones and fraud blocks, old (at `old`) and recent: Alice's primary phone
/// registered long ago and in use, her fallback removed long ago, Carol's registration that
/// never went through, Dave's phone removed recently; Erin's fraud report long ago, Frank's
/// recently.
async fn phones_and_blocks(store: &Store, old: i64, recent: i64) {
    // Alice's primary phone was registered long ago and is in use: it stays. Her fallback
    // was removed long ago, Carol's registration never went through, Dave's phone was
    // removed recently.
    enrolled_at(
        store,
        "alice",
        "+819011112222",
        PhoneRole::Primary,
        old,
        true,
    )
    .await;
    enrolled_at(
        store,
        "alice",
        "+819033334444",
        PhoneRole::Fallback,
        old,
        true,
    )
    .await;
    let fallback = store
        .phones("alice")
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.role == PhoneRole::Fallback)
        .unwrap()
        .id;
    assert!(
        store
            .remove_phone("alice", &fallback, old + DAY, true)
            .await
            .unwrap()
    );
    enrolled_at(
        store,
        "carol",
        "+819055556666",
        PhoneRole::Primary,
        old,
        false,
    )
    .await;
    enrolled_at(
        store,
        "dave",
        "+819077778888",
        PhoneRole::Primary,
        recent,
        true,
    )
    .await;
    let daves = store.phones("dave").await.unwrap()[0].id.clone();
    assert!(
        store
            .remove_phone("dave", &daves, recent + DAY, true)
            .await
            .unwrap()
    );
    // Erin reported fraud long ago (her block ran out long ago); Frank recently.
    for (user, number, at) in [
        ("erin", "+819099990000", old),
        ("frank", "+819099991111", recent),
    ] {
        let (c, _) = store
            .create_challenge(&NewChallenge {
                fraud_block_ms: DAY,
                ..challenge(Some(user), number, at)
            })
            .await
            .unwrap();
        assert!(
            store
                .transition(&c.id, ChallengeState::FraudReported, at + 1000, None, None)
                .await
                .unwrap()
        );
    }
}

async fn retention(store: Store) {
    let now = now_ms();
    let (old, recent, cutoff) = (now - 120 * DAY, now - 10 * DAY, now - 90 * DAY);
    let (old_id, old_call) = sign_in_at(&store, "alice", old).await;
    let (new_id, new_call) = sign_in_at(&store, "bob", recent).await;
    phones_and_blocks(&store, old, recent).await;
    // Three refusals long ago (of three rules: a row each), one recently.
    for (rule, at) in [
        ("rate-limited", old),
        ("fraud-block", old + 1),
        ("country-not-allowed", old + 2),
        ("rate-limited", recent),
    ] {
        store
            .record_refusal(&store::NewRefusal {
                at_ms: at,
                api_key_id: "key_service".into(),
                origin: store::Origin::Api,
                user_id: Some("alice".into()),
                phone: PhoneNumber::parse("+819012345678").unwrap(),
                rule: rule.into(),
                detail: "refused".into(),
                retry_after_s: None,
            })
            .await
            .unwrap();
    }
    // Read once: a cached store holds the old challenge whole now.
    let before = store.challenge(&old_id).await.unwrap().unwrap();
    assert_eq!(before.phone.as_e164(), Some("+819012345678"));
    let recent_before = store.challenge(&new_id).await.unwrap().unwrap();
    let recent_events = store.events(&new_id).await.unwrap();
    let recent_call = store.call(&new_call).await.unwrap().unwrap();

    // Batches of 2: every category has more than that to go.
    let f = store.forget_before(cutoff, 2).await.unwrap();
    assert_eq!(
        f,
        Forgotten {
            calls: 1,
            refusals: 3,
            // alice's sign-in (queued, calling, answered, approved), her two enrolments,
            // carol's and erin's report (queued, decided).
            events: 4 + 4 * 2,
            webhook_attempts: 1,
            // alice's (delivered) and erin's (never tried: its receiver is not served).
            webhooks: 2,
            // alice's removed fallback, carol's failed registration.
            phones: 2,
            trusted_devices: 1,
            // erin's, whose block ran out long ago.
            fraud_blocks: 1,
            // alice's sign-in, her two enrolments, carol's, erin's.
            numbers: 5,
            eam_nonces: 0,
            eam_sessions: 0,
        }
    );
    assert!(store.fraud_blocks("erin").await.unwrap().is_empty());
    assert_eq!(
        store.fraud_blocks("frank").await.unwrap().len(),
        1,
        "a recent block stays"
    );

    // The old challenge is still read, its number masked and not to be dialed, its
    // callback URL gone; its state changes, call, keys, steps and attempts are gone.
    let c = store.challenge(&old_id).await.unwrap().unwrap();
    assert!(c.phone.is_redacted());
    assert_eq!(c.phone.as_e164(), None);
    assert_eq!(c.phone.to_string(), "+81 ** **** **78");
    assert_eq!(
        (c.state, c.callback_url.as_deref()),
        (ChallengeState::Approved, None)
    );
    assert_eq!(
        (c.created_at_ms, c.decided_at_ms),
        (before.created_at_ms, before.decided_at_ms)
    );
    assert!(store.events(&old_id).await.unwrap().is_empty());
    assert_eq!(store.call(&old_call).await.unwrap(), None);
    assert!(store.webhook_attempts(&old_id).await.unwrap().is_empty());
    assert_eq!(store.trusted_device_of(&old_id).await.unwrap(), None);
    // The recent one is whole.
    assert_eq!(
        store.challenge(&new_id).await.unwrap().unwrap(),
        recent_before
    );
    assert_eq!(store.events(&new_id).await.unwrap(), recent_events);
    let call = store.call(&new_call).await.unwrap().unwrap();
    assert_eq!(call, recent_call);
    assert_eq!(call.end.as_ref().unwrap().keys().len(), 1);
    // The INVITE and the key.
    assert_eq!(call.end.as_ref().unwrap().steps.len(), 2);
    assert_eq!(store.webhook_attempts(&new_id).await.unwrap().len(), 1);
    assert!(store.trusted_device_of(&new_id).await.unwrap().is_some());
    // Alice's phone in use is kept whole (sign-ins call it); her removed fallback and
    // Carol's failed registration are gone.
    let phones = store.phones("alice").await.unwrap();
    assert_eq!(phones.len(), 1);
    assert_eq!(
        (phones[0].phone.as_e164(), phones[0].state),
        (Some("+819011112222"), PhoneState::Verified)
    );
    let primary = store
        .verified_phone("alice", PhoneRole::Primary)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(primary.phone.as_e164(), Some("+819011112222"));
    assert!(store.phones("carol").await.unwrap().is_empty());

    // The recent refusal is left.
    let refusals = store::CallFilter {
        kind: Some(store::LogKind::Refusal),
        ..store::CallFilter::default()
    };
    let (left, _) = store.log(&refusals, 10, None).await.unwrap();
    assert_eq!(
        left.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        vec![recent]
    );

    // Again: nothing left to forget.
    assert!(store.forget_before(cutoff, 2).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_forgets_what_is_older_than_the_retention() {
    let dir = scratch("store-retention-sqlite");
    let url = format!("sqlite://{}", dir.join("cv.db").display());
    retention(Store::open(&url).await.unwrap().cached().unwrap()).await;
}

#[tokio::test]
async fn postgresql_forgets_what_is_older_than_the_retention() {
    let pg = Postgres::start("store-retention");
    let store = Store::open(&pg.url).await.unwrap().cached().unwrap();
    retention(store).await;
}
