//! The same suite on SQLite (a file in WAL mode) and on PostgreSQL (a server of its own,
//! started on loopback by the test).

use callverify_e2e::{Postgres, scratch};
use store::{
    Admission, Backend, CallEnd, CallFilter, CallStep, ChallengeState, CountScope, Counter,
    KeyKind, KeyRecord, NewCall, NewChallenge, PhoneNumber, PhoneRole, PhoneState, Purpose,
    Refused, Scope, Store, StoreError, WebhookAttempt, WebhookNext,
};

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
        enrol: None,
        remember_device_ms: 0,
        fraud_block_ms: 86_400_000,
        confirm_primary: false,
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
    assert_eq!(c.phone.as_e164(), Some("+819012345678"));
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

    call_log(&store, &c.id).await;
    api_keys(&store).await;
    users_and_trust(&store).await;
    webhooks_limits_and_expiry(&store).await;
    admissions_blocks_and_scopes(&store).await;
}

fn enrolment(user: &str, number: &str, role: PhoneRole, now: i64) -> NewChallenge {
    NewChallenge {
        user_id: Some(user.into()),
        phone: PhoneNumber::parse(number).unwrap(),
        purpose: Purpose::Enroll,
        enrol: Some(role),
        callback_url: None,
        ..request(None, "e", now)
    }
}

async fn decide(store: &Store, id: &str, to: ChallengeState, at: i64) {
    assert!(
        store
            .transition(id, ChallengeState::Calling, at - 2, None, None)
            .await
            .unwrap()
    );
    assert!(store.transition(id, to, at, None, None).await.unwrap());
}

async fn users_and_trust(store: &Store) {
    use ChallengeState::*;
    // A phone is pending until its enrolment call is approved, failed if it is not.
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
            phones[0].challenge_id.as_str()
        ),
        (PhoneState::Pending, PhoneRole::Primary, e1.id.as_str())
    );
    assert_eq!(
        store
            .verified_phone("u-1", PhoneRole::Primary)
            .await
            .unwrap(),
        None
    );
    decide(store, &e1.id, Approved, 10_100).await;
    let primary = store
        .verified_phone("u-1", PhoneRole::Primary)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(primary.phone.as_e164(), Some("+819011112222"));
    assert_eq!(primary.verified_at_ms, Some(10_100));

    let (e2, _) = store
        .create_challenge(&enrolment(
            "u-1",
            "+819033334444",
            PhoneRole::Fallback,
            11_000,
        ))
        .await
        .unwrap();
    decide(store, &e2.id, NoAnswer, 11_100).await;
    let fallback = store.phones("u-1").await.unwrap();
    assert_eq!(fallback[1].state, PhoneState::Failed);
    assert_eq!(
        store
            .verified_phone("u-1", PhoneRole::Fallback)
            .await
            .unwrap(),
        None
    );

    // A new primary replaces the old one only once it is verified.
    let (e3, _) = store
        .create_challenge(&enrolment(
            "u-1",
            "+819055556666",
            PhoneRole::Primary,
            12_000,
        ))
        .await
        .unwrap();
    assert_eq!(
        store
            .verified_phone("u-1", PhoneRole::Primary)
            .await
            .unwrap()
            .unwrap()
            .phone
            .as_e164(),
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
    assert!(
        store
            .remove_phone("u-1", &phones[0].id, 13_000, false)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_phone("u-1", &phones[0].id, 13_001, false)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_phone("u-1", &phones[1].id, 13_001, false)
            .await
            .unwrap(),
        "verified: only when asked"
    );
    assert!(
        !store
            .remove_phone("u-2", &phones[1].id, 13_002, true)
            .await
            .unwrap(),
        "not u-2's"
    );
    assert_eq!(store.phones("u-1").await.unwrap().len(), 1);

    // An approved sign-in that asked to remember the device makes a trusted device; one
    // that did not, or that failed, makes none.
    let sign_in = |now, remember| NewChallenge {
        user_id: Some("u-1".into()),
        remember_device_ms: remember,
        ..request(None, "s", now)
    };
    let (s1, _) = store
        .create_challenge(&sign_in(14_000, 1_000_000))
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
    let (s2, _) = store.create_challenge(&sign_in(15_000, 0)).await.unwrap();
    decide(store, &s2.id, Approved, 15_100).await;
    assert_eq!(store.trusted_device_of(&s2.id).await.unwrap(), None);
    let (s3, _) = store
        .create_challenge(&sign_in(16_000, 1_000_000))
        .await
        .unwrap();
    decide(store, &s3.id, Denied, 16_100).await;
    assert_eq!(store.trusted_device_of(&s3.id).await.unwrap(), None);
    let (s4, _) = store
        .create_challenge(&sign_in(17_000, 1_000_000))
        .await
        .unwrap();
    decide(store, &s4.id, Approved, 17_100).await;
    assert_eq!(store.trusted_devices("u-1").await.unwrap().len(), 2);
    // Revoke one, then all.
    assert_eq!(
        store
            .revoke_trusted_devices("u-1", Some(&td.id), 18_000)
            .await
            .unwrap(),
        1
    );
    assert!(
        !store
            .trusted_device(&td.id)
            .await
            .unwrap()
            .unwrap()
            .valid_at(18_001)
    );
    assert_eq!(
        store
            .revoke_trusted_devices("u-2", None, 18_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .revoke_trusted_devices("u-1", None, 18_000)
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .trusted_devices("u-1")
            .await
            .unwrap()
            .iter()
            .all(|t| !t.valid_at(18_001))
    );
}

async fn webhooks_limits_and_expiry(store: &Store) {
    use ChallengeState::*;
    // A decision with a callback URL is due for delivery at once; claimed by one taker.
    let (c, _) = store
        .create_challenge(&request(None, "w", 20_000))
        .await
        .unwrap();
    assert!(
        store
            .due_webhooks(30_000, 100)
            .await
            .unwrap()
            .iter()
            .all(|w| w.challenge_id != c.id)
    );
    decide(store, &c.id, FraudReported, 20_100).await;
    let due = store.due_webhooks(20_100, 100).await.unwrap();
    let w = due.iter().find(|w| w.challenge_id == c.id).unwrap().clone();
    assert_eq!(
        (w.url.as_str(), w.attempts),
        ("https://idp.example/hook", 0)
    );
    assert!(store.claim_webhook(&w, 50_000).await.unwrap());
    assert!(!store.claim_webhook(&w, 50_000).await.unwrap(), "taken");
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
    assert!(
        store
            .due_webhooks(20_999, 100)
            .await
            .unwrap()
            .iter()
            .all(|w| w.challenge_id != c.id)
    );
    let w = store
        .due_webhooks(21_000, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.challenge_id == c.id)
        .unwrap();
    assert_eq!(w.attempts, 1);
    assert!(store.claim_webhook(&w, 50_000).await.unwrap());
    store
        .record_webhook_attempt(&c.id, &attempt(2, Some(204)), WebhookNext::Delivered)
        .await
        .unwrap();
    assert!(
        store
            .due_webhooks(i64::MAX, 100)
            .await
            .unwrap()
            .iter()
            .all(|w| w.challenge_id != c.id)
    );
    let log = store.webhook_attempts(&c.id).await.unwrap();
    assert_eq!(log, vec![attempt(1, None), attempt(2, Some(204))]);

    // Counts for the rate limits.
    let p = PhoneNumber::parse("+819012345678").unwrap();
    let since = 20_000;
    assert_eq!(
        store
            .count_challenges(Scope::Phone(&p), since)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.count_challenges(Scope::User("u-1"), 0).await.unwrap(),
        7
    );
    assert!(
        store
            .count_challenges(Scope::ApiKey("key_service"), 0)
            .await
            .unwrap()
            >= 10
    );
    assert_eq!(
        store
            .count_challenges(Scope::ApiKey("key_nobody"), 0)
            .await
            .unwrap(),
        0
    );

    // Expiry: only queued challenges past their time.
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
    // Every change made through the store is announced.
    let mut seen = Vec::new();
    while let Ok(ch) = changes.try_recv() {
        seen.push(ch);
    }
    assert!(
        seen.iter().any(|ch| ch.id == q.id && ch.state == Expired),
        "{seen:?}"
    );
}

async fn api_keys(store: &Store) {
    let (k, secret) = store
        .create_api_key("idp", KeyKind::Service, 1)
        .await
        .unwrap();
    assert!(secret.starts_with("cvk_"));
    assert_eq!(store.api_key(&secret).await.unwrap(), Some(k.clone()));
    assert_eq!(store.api_key("cvk_wrong").await.unwrap(), None);
    let (op, op_secret) = store
        .create_api_key("ops", KeyKind::Operator, 1)
        .await
        .unwrap();
    assert_eq!(
        store.api_key(&op_secret).await.unwrap().unwrap().kind,
        KeyKind::Operator
    );
    assert!(store.revoke_api_key(&k.id, 2).await.unwrap());
    assert_eq!(store.api_key(&secret).await.unwrap(), None, "revoked");
    assert!(!store.revoke_api_key(&k.id, 3).await.unwrap());
    assert_eq!(op.name, "ops");
    // By name: the oldest key of that kind not revoked.
    assert_eq!(
        store.api_key_named("idp", KeyKind::Service).await.unwrap(),
        None
    );
    assert_eq!(
        store.api_key_named("ops", KeyKind::Service).await.unwrap(),
        None
    );
    assert_eq!(
        store.api_key_named("ops", KeyKind::Operator).await.unwrap(),
        Some(op.clone())
    );
    store
        .create_api_key("ops", KeyKind::Operator, 5)
        .await
        .unwrap();
    assert_eq!(
        store.api_key_named("ops", KeyKind::Operator).await.unwrap(),
        Some(op)
    );
}

async fn call_log(store: &Store, challenge: &str) {
    // 25 calls, one a millisecond apart, alternating trunks and outcomes; the last one
    // still in progress.
    for i in 0..25i64 {
        let id = format!("call_{i:02}");
        store
            .start_call(&NewCall {
                id: id.clone(),
                challenge_id: challenge.into(),
                phone_masked: if i % 5 == 0 {
                    "+1 ** **** **23"
                } else {
                    "+81 ** **** **78"
                }
                .into(),
                started_at_ms: 10_000 + i,
            })
            .await
            .unwrap();
        if i == 24 {
            continue;
        }
        let end = CallEnd {
            outcome: if i % 2 == 0 { "approved" } else { "busy" }.into(),
            sip_status: (i % 2 == 1).then_some(486),
            trunk: Some(if i % 3 == 0 { "backup" } else { "pbx" }.into()),
            ended_at_ms: 20_000 + i,
            post_dial_delay_ms: Some(120),
            time_to_answer_ms: (i % 2 == 0).then_some(2500),
            time_to_key_ms: (i % 2 == 0).then_some(3100),
            packets_sent: 400,
            packets_received: 390,
            packets_lost: 2,
            jitter_ms: 1.25,
            srtp: i % 4 == 0,
            keys: if i % 2 == 0 {
                vec![
                    KeyRecord {
                        digit: "0".into(),
                        source: "in_band".into(),
                        at_ms: 5000,
                    },
                    KeyRecord {
                        digit: "#".into(),
                        source: "rfc4733".into(),
                        at_ms: 5600,
                    },
                ]
            } else {
                Vec::new()
            },
            steps: vec![
                CallStep {
                    at_ms: 0,
                    kind: "invite".into(),
                    detail: "pbx".into(),
                },
                CallStep {
                    at_ms: 120,
                    kind: "sip".into(),
                    detail: "180".into(),
                },
            ],
            ..CallEnd::default()
        };
        assert!(store.finish_call(&id, &end).await.unwrap());
        assert!(
            !store.finish_call(&id, &end).await.unwrap(),
            "a call ends once"
        );
    }
    let c = store.call("call_04").await.unwrap().unwrap();
    let end = c.end.unwrap();
    assert!(end.srtp);
    assert!(
        !store
            .call("call_05")
            .await
            .unwrap()
            .unwrap()
            .end
            .unwrap()
            .srtp
    );
    assert_eq!(
        (end.outcome.as_str(), end.trunk.as_deref()),
        ("approved", Some("pbx"))
    );
    let keys: Vec<(&str, &str, i64)> = end
        .keys
        .iter()
        .map(|k| (k.digit.as_str(), k.source.as_str(), k.at_ms))
        .collect();
    assert_eq!(keys, vec![("0", "in_band", 5000), ("#", "rfc4733", 5600)]);
    assert_eq!((end.jitter_ms, end.packets_lost), (1.25, 2));
    let steps: Vec<(i64, &str, &str)> = end
        .steps
        .iter()
        .map(|s| (s.at_ms, s.kind.as_str(), s.detail.as_str()))
        .collect();
    assert_eq!(steps, vec![(0, "invite", "pbx"), (120, "sip", "180")]);
    assert!(store.call("call_24").await.unwrap().unwrap().end.is_none());
    assert!(store.call("call_nope").await.unwrap().is_none());

    // Pages of 10, newest first, every call once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = store
            .calls(&CallFilter::default(), 10, cursor.as_deref())
            .await
            .unwrap();
        seen.extend(page.iter().map(|c| c.id.clone()));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("call_{i:02}")).collect();
    assert_eq!(seen, expected);

    // Filters, alone and together.
    let ids = |v: Vec<store::CallEntry>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let f =
        |o: Option<&str>, p: Option<&str>, t: Option<&str>, from: Option<i64>, to: Option<i64>| {
            CallFilter {
                outcome: o.map(str::to_string),
                phone_masked: p.map(str::to_string),
                trunk: t.map(str::to_string),
                from_ms: from,
                to_ms: to,
            }
        };
    let (busy, _) = store
        .calls(&f(Some("busy"), None, None, None, None), 100, None)
        .await
        .unwrap();
    assert_eq!(busy.len(), 12);
    let (open, _) = store
        .calls(&f(Some("in_progress"), None, None, None, None), 100, None)
        .await
        .unwrap();
    assert_eq!(ids(open), vec!["call_24"]);
    let (us, _) = store
        .calls(
            &f(None, Some("+1 ** **** **23"), None, None, None),
            100,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        ids(us),
        vec!["call_20", "call_15", "call_10", "call_05", "call_00"]
    );
    let (mix, _) = store
        .calls(
            &f(
                Some("approved"),
                None,
                Some("backup"),
                Some(10_003),
                Some(10_019),
            ),
            100,
            None,
        )
        .await
        .unwrap();
    assert_eq!(ids(mix), vec!["call_18", "call_12", "call_06"]);
    // A filtered listing pages too.
    let (p1, next) = store
        .calls(&f(Some("busy"), None, None, None, None), 5, None)
        .await
        .unwrap();
    let (p2, _) = store
        .calls(&f(Some("busy"), None, None, None, None), 5, next.as_deref())
        .await
        .unwrap();
    assert_eq!(
        ids(p1),
        vec!["call_23", "call_21", "call_19", "call_17", "call_15"]
    );
    assert_eq!(
        ids(p2),
        vec!["call_13", "call_11", "call_09", "call_07", "call_05"]
    );
    assert!(
        store
            .calls(&CallFilter::default(), 10, Some("garbage"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn sqlite_in_wal_mode() {
    let dir = scratch("store-sqlite");
    let path = dir.join("callverify.db");
    let url = format!("sqlite://{}", path.display());
    // As `serve` uses it: with the copy of the challenges read.
    let store = Store::open(&url).await.unwrap().cached().unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    assert!(store.cache_live());
    // A second process's copy could not be kept current: refused, naming the lock file.
    let e = Store::open(&url).await.unwrap().cached().unwrap_err();
    assert!(e.to_string().contains("callverify.db.node-lock"), "{e}");
    suite(store.clone()).await;
    claims(&store, &Store::open(&url).await.unwrap()).await;
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
    let store = Store::open(&pg.url).await.unwrap().cached().unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    until(|| std::future::ready(store.cache_live()), "notifications").await;
    suite(store.clone()).await;
    claims(&store, &Store::open(&pg.url).await.unwrap()).await;
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

/// Waits (10 s at most) until `f` holds.
async fn until<F: std::future::Future<Output = bool>>(mut f: impl FnMut() -> F, what: &str) {
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < end, "waited 10 s for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_nodes_copies_follow_each_others_changes() {
    let pg = Postgres::start("store-nodes");
    let a = Store::open(&pg.url).await.unwrap().cached().unwrap();
    let b = Store::open(&pg.url).await.unwrap().cached().unwrap();
    until(
        || std::future::ready(a.cache_live() && b.cache_live()),
        "both nodes live",
    )
    .await;
    let (c, _) = a.create_challenge(&request(None, "n", 1000)).await.unwrap();
    // Both read it (and keep it); B moves it on; A's copy and A's subscribers follow.
    let mut changes = a.subscribe();
    assert_eq!(
        a.challenge(&c.id).await.unwrap().unwrap().state,
        ChallengeState::Queued
    );
    assert_eq!(
        b.challenge(&c.id).await.unwrap().unwrap().state,
        ChallengeState::Queued
    );
    moved(&b, &c.id, ChallengeState::Calling, 1001).await;
    sees(&a, &c.id, ChallengeState::Calling, "A to see B's change").await;
    let seen = tokio::time::timeout(std::time::Duration::from_secs(5), changes.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!(
        (seen.id.as_str(), seen.state),
        (c.id.as_str(), ChallengeState::Calling)
    );

    // A change by hand in SQL is followed too.
    let direct = sqlx::PgPool::connect(&pg.url).await.unwrap();
    sqlx::query("UPDATE challenges SET state = 'ringing' WHERE id = $1")
        .bind(&c.id)
        .execute(&direct)
        .await
        .unwrap();
    sees(
        &a,
        &c.id,
        ChallengeState::Ringing,
        "A to see a change made in SQL",
    )
    .await;

    // A's notification connection is cut: its copy is bypassed until it listens again, so
    // B's next change is read at once, and A's copy comes back.
    assert!(a.cache_live());
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .execute(&direct)
    .await
    .unwrap();
    until(
        || std::future::ready(!a.cache_live()),
        "A to notice the cut",
    )
    .await;
    moved(&b, &c.id, ChallengeState::Answered, 1003).await;
    assert_eq!(
        a.challenge(&c.id).await.unwrap().unwrap().state,
        ChallengeState::Answered,
        "read from the database while the copy is bypassed"
    );
    until(|| std::future::ready(a.cache_live()), "A to listen again").await;
    moved(&b, &c.id, ChallengeState::Approved, 1004).await;
    sees(&a, &c.id, ChallengeState::Approved, "A to see the decision").await;
}

async fn moved(node: &Store, id: &str, to: ChallengeState, at: i64) {
    assert!(node.transition(id, to, at, None, None).await.unwrap());
}

/// Waits (bounded) until `node` reads challenge `id` in `state`.
async fn sees(node: &Store, id: &str, state: ChallengeState, what: &str) {
    until(
        || async { node.challenge(id).await.unwrap().unwrap().state == state },
        what,
    )
    .await;
}

/// Two nodes claiming queued challenges: each claimed once, oldest first; claims renewed by
/// their node only; a lapsed claim makes its challenge and call `interrupted`, never
/// claimed again. (Times from 10,000,000 ms, after everything the suite made expired.)
async fn claims(a: &Store, b: &Store) {
    use ChallengeState::*;
    const T: i64 = 10_000_000;
    assert_ne!(a.node(), b.node());
    let mut ids = Vec::new();
    for i in 0..3 {
        let (c, _) = a
            .create_challenge(&request(None, "claim", T + i))
            .await
            .unwrap();
        ids.push(c.id);
    }
    assert_eq!(
        a.claim_next(T + 10, T + 5_000).await.unwrap().as_ref(),
        Some(&ids[0])
    );
    assert_eq!(
        b.claim_next(T + 10, T + 5_000).await.unwrap().as_ref(),
        Some(&ids[1])
    );
    // A named claim of a challenge already claimed fails; of a queued one holds.
    assert!(!b.claim(&ids[0], T + 11, T + 5_000).await.unwrap());
    assert!(b.claim(&ids[2], T + 11, T + 5_000).await.unwrap());
    assert_eq!(a.claim_next(T + 12, T + 5_000).await.unwrap(), None);
    assert_eq!(a.challenge(&ids[0]).await.unwrap().unwrap().state, Calling);
    let events: Vec<_> = a
        .events(&ids[0])
        .await
        .unwrap()
        .iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(events, vec![Queued, Calling]);
    // Renewal: each node renews its own.
    assert_eq!(
        a.renew_claims(T + 9_000).await.unwrap(),
        vec![ids[0].clone()]
    );
    let mut held = b.renew_claims(T + 6_000).await.unwrap();
    held.sort();
    let mut want = vec![ids[1].clone(), ids[2].clone()];
    want.sort();
    assert_eq!(held, want);
    // B stops renewing: at T + 7,000 its two claims have lapsed, A's has not.
    a.start_call(&NewCall {
        id: "call_claimed_by_b".into(),
        challenge_id: ids[1].clone(),
        phone_masked: "+81 ** **** **78".into(),
        started_at_ms: T + 20,
    })
    .await
    .unwrap();
    let mut lapsed = a.interrupt_lapsed(T + 7_000).await.unwrap();
    lapsed.sort();
    assert_eq!(lapsed, want);
    assert_eq!(
        a.challenge(&ids[1]).await.unwrap().unwrap().state,
        Interrupted
    );
    assert_eq!(a.challenge(&ids[0]).await.unwrap().unwrap().state, Calling);
    let call = a.call("call_claimed_by_b").await.unwrap().unwrap();
    assert_eq!(call.end.unwrap().outcome, "interrupted");
    // B's renewal no longer holds them; nothing is claimable again.
    assert_eq!(
        b.renew_claims(T + 8_000).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(b.claim_next(T + 7_001, T + 9_000).await.unwrap(), None);
    assert!(a.interrupt_lapsed(T + 7_001).await.unwrap().is_empty());
    // A decides its own: no longer renewed or interrupted.
    assert!(
        a.transition(&ids[0], Approved, T + 7_100, None, None)
            .await
            .unwrap()
    );
    assert!(a.renew_claims(T + 20_000).await.unwrap().is_empty());
    assert!(a.interrupt_lapsed(T + 30_000).await.unwrap().is_empty());
}

/// Limits counted and checked in the admitting transaction (nothing written when refused),
/// the cap, fraud blocks made by a report and lifted, trusted devices revoked by a report
/// and by a new primary phone, phone_admin keys, notes in the call log, pruning.
async fn admissions_blocks_and_scopes(store: &Store) {
    use ChallengeState::*;
    const T: i64 = 200_000_000;
    let number = |n: &str| PhoneNumber::parse(n).unwrap();
    let per_number = |key: &str, max| Counter {
        scope: CountScope::Phone,
        key: key.into(),
        max,
        window_ms: 600_000,
    };
    let limited = |max| Admission {
        counters: vec![per_number("+819077770001", max)],
        ..Admission::default()
    };
    let at = |n: &str, now: i64| NewChallenge {
        phone: number(n),
        ..request(None, "a", now)
    };
    for i in 0..2 {
        let made = store
            .create_admitted(&at("+819077770001", T + i), &limited(2))
            .await
            .unwrap();
        assert!(made.is_ok(), "{made:?}");
    }
    let refused = store
        .create_admitted(&at("+819077770001", T + 5), &limited(2))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        refused,
        Refused::Limit {
            counter: per_number("+819077770001", 2),
            count: 2
        }
    );
    let made = store
        .count_challenges(Scope::Phone(&number("+819077770001")), T)
        .await
        .unwrap();
    assert_eq!(made, 2, "the refused one was not written");
    // A window (and a bucket, a sixtieth of it) later the calls no longer count.
    assert!(
        store
            .create_admitted(&at("+819077770001", T + 610_001), &limited(2))
            .await
            .unwrap()
            .is_ok()
    );
    // A further call of a challenge is counted the same way.
    let n2 = number("+819077770002");
    let two = Admission {
        counters: vec![per_number("+819077770002", 2)],
        ..Admission::default()
    };
    assert!(store.admit_call(None, &n2, &two, T).await.unwrap().is_ok());
    assert!(store.admit_call(None, &n2, &two, T).await.unwrap().is_ok());
    assert!(matches!(
        store.admit_call(None, &n2, &two, T).await.unwrap(),
        Err(Refused::Limit { count: 2, .. })
    ));
    // The cap counts the new challenge with the others waiting for or in a call.
    let active = store.active_challenges().await.unwrap();
    let cap = Admission {
        max_active: Some(active as u32 + 1),
        ..Admission::default()
    };
    assert!(
        store
            .create_admitted(&at("+819077770003", T), &cap)
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(
        store
            .create_admitted(&at("+819077770003", T), &cap)
            .await
            .unwrap()
            .unwrap_err(),
        Refused::TooManyCalls {
            active: active + 2,
            cap: active as u32 + 1
        }
    );

    // A fraud report blocks the user and both numbers called, revokes the user's trusted
    // devices; a block refuses only an admission that checks blocks; a lift is kept.
    let (e, _) = store
        .create_challenge(&enrolment("u-9", "+819077770010", PhoneRole::Primary, T))
        .await
        .unwrap();
    decide(store, &e.id, Approved, T + 1).await;
    let (s, _) = store
        .create_challenge(&NewChallenge {
            user_id: Some("u-9".into()),
            remember_device_ms: 1_000_000,
            ..at("+819077770010", T + 2)
        })
        .await
        .unwrap();
    decide(store, &s.id, Approved, T + 3).await;
    assert!(
        store
            .trusted_device_of(&s.id)
            .await
            .unwrap()
            .unwrap()
            .valid_at(T + 4)
    );
    let (f, _) = store
        .create_challenge(&NewChallenge {
            user_id: Some("u-9".into()),
            fraud_block_ms: 3_600_000,
            ..at("+819077770010", T + 10)
        })
        .await
        .unwrap();
    for st in [Calling, Answered] {
        assert!(
            store
                .transition(&f.id, st, T + 11, None, None)
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .transition_called(
                &f.id,
                FraudReported,
                T + 20,
                None,
                None,
                &number("+819077770011")
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .trusted_device_of(&s.id)
            .await
            .unwrap()
            .unwrap()
            .valid_at(T + 21)
    );
    let blocks = Admission {
        blocks: true,
        ..Admission::default()
    };
    let until = T + 20 + 3_600_000;
    for (user, n) in [
        (Some("u-9"), "+819077770099"),
        (None, "+819077770010"),
        (None, "+819077770011"),
        (Some("u-other"), "+819077770011"),
    ] {
        let r = store
            .create_admitted(
                &NewChallenge {
                    user_id: user.map(str::to_string),
                    ..at(n, T + 30)
                },
                &blocks,
            )
            .await
            .unwrap();
        assert_eq!(
            r.unwrap_err(),
            Refused::FraudBlock { until_ms: until },
            "{user:?} {n}"
        );
    }
    assert!(
        store
            .create_admitted(&at("+819077770011", T + 30), &Admission::default())
            .await
            .unwrap()
            .is_ok(),
        "an admission without blocks"
    );
    assert!(
        store
            .create_admitted(&at("+819077770011", until), &blocks)
            .await
            .unwrap()
            .is_ok(),
        "lifted by itself at its end"
    );
    let listed = store.fraud_blocks("u-9").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|b| b.holds_at(T + 40) && b.challenge_id == f.id)
    );
    let (key, _) = store
        .create_api_key("idp-9", KeyKind::Service, T)
        .await
        .unwrap();
    assert_eq!(
        store.lift_fraud_blocks("u-9", &key, T + 50).await.unwrap(),
        2
    );
    assert_eq!(
        store.lift_fraud_blocks("u-9", &key, T + 51).await.unwrap(),
        0
    );
    let listed = store.fraud_blocks("u-9").await.unwrap();
    assert!(listed.iter().all(|b| !b.holds_at(T + 60)
        && b.lifted_at_ms == Some(T + 50)
        && b.lifted_by_key_id.as_deref() == Some(key.id.as_str())
        && b.lifted_by_key_name.as_deref() == Some("idp-9")));
    assert!(
        store
            .create_admitted(
                &NewChallenge {
                    user_id: Some("u-9".into()),
                    ..at("+819077770010", T + 60)
                },
                &blocks
            )
            .await
            .unwrap()
            .is_ok()
    );

    // A new primary phone revokes the trusted devices; a new fallback does not.
    let (s2, _) = store
        .create_challenge(&NewChallenge {
            user_id: Some("u-9".into()),
            remember_device_ms: 1_000_000,
            ..at("+819077770010", T + 70)
        })
        .await
        .unwrap();
    decide(store, &s2.id, Approved, T + 71).await;
    let (fb, _) = store
        .create_challenge(&enrolment(
            "u-9",
            "+819077770012",
            PhoneRole::Fallback,
            T + 72,
        ))
        .await
        .unwrap();
    decide(store, &fb.id, Approved, T + 73).await;
    assert!(
        store
            .trusted_device_of(&s2.id)
            .await
            .unwrap()
            .unwrap()
            .valid_at(T + 74)
    );
    let (p2, _) = store
        .create_challenge(&NewChallenge {
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
    assert!(
        !store
            .trusted_device_of(&s2.id)
            .await
            .unwrap()
            .unwrap()
            .valid_at(T + 77)
    );

    // Keys: phone_admin is kept, for service keys only.
    let (admin, secret) = store
        .create_api_key_with("admin", KeyKind::Service, true, T)
        .await
        .unwrap();
    assert!(admin.phone_admin);
    assert_eq!(store.api_key(&secret).await.unwrap(), Some(admin));
    let (op, _) = store
        .create_api_key_with("ops-9", KeyKind::Operator, true, T)
        .await
        .unwrap();
    assert!(!op.phone_admin);
    assert!(
        !store
            .api_key_named("idp-9", KeyKind::Service)
            .await
            .unwrap()
            .unwrap()
            .phone_admin
    );

    // A note in a call's detail, after what it says.
    store
        .start_call(&NewCall {
            id: "call_noted".into(),
            challenge_id: f.id.clone(),
            phone_masked: "+81 ** **** **10".into(),
            started_at_ms: T,
        })
        .await
        .unwrap();
    store
        .finish_call(
            "call_noted",
            &CallEnd {
                outcome: "busy".into(),
                detail: Some("486".into()),
                ended_at_ms: T + 1,
                ..CallEnd::default()
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .note_call("call_noted", "next: refused")
            .await
            .unwrap()
    );
    let noted = store.call("call_noted").await.unwrap().unwrap();
    assert_eq!(
        noted.end.unwrap().detail.as_deref(),
        Some("486; next: refused")
    );

    // Pruning forgets the counts before a time.
    assert!(store.prune_rate_counts(T + 1_000_000).await.unwrap() >= 3);
    assert!(store.admit_call(None, &n2, &two, T).await.unwrap().is_ok());
    // Nothing of these is left queued for the claims that follow.
    store.expire_due(i64::MAX / 2).await.unwrap();
}
