//! The operator's log: calls, challenges that made no call and refused attempts in one
//! listing newest first, paged and searched by user, whole number, challenge and call; the
//! call log searched the same way; refusals recorded within their bound; the figures of a
//! filter.

use store::ChallengeState::{Approved, Busy, NoAnswer};
use store::{
    CallEnd, CallFilter, ChallengeState, LogKind, NewCall, NewChallenge, NewRefusal, OutcomeFilter,
    PhoneNumber, PhoneRole, Store,
};

use crate::common::{Db, call_id, challenge_id, decided, enrolment, request};

on_both!(
    the_log_merges_calls_challenges_without_a_call_and_refusals_newest_first,
    the_log_and_the_call_log_are_searched_by_user_number_challenge_and_call,
    a_refusal_repeated_within_a_minute_adds_to_its_row_and_a_key_is_capped,
    the_figures_give_the_outcomes_and_the_time_to_verdicts_percentiles,
);

const T: i64 = 300_000_000;

/// A sign-in of `user` to `number` made at `at`.
fn sign_in(user: &str, number: &str, at: i64) -> NewChallenge {
    NewChallenge {
        user_id: Some(user.into()),
        phone: PhoneNumber::parse(number).unwrap(),
        ..request(None, "x", at)
    }
}

/// A call `id` of a new sign-in of `user` to `number` (made at `at`), to `called` at
/// `at + 1`, ended `outcome` with `verdict_ms` as its time to verdict: the challenge's id.
async fn called(
    store: &Store,
    (user, number, called): (&str, &str, &str),
    id: &str,
    at: i64,
    (outcome, verdict_ms): (ChallengeState, Option<i64>),
) -> String {
    let (c, _) = store
        .create_challenge(&sign_in(user, number, at))
        .await
        .unwrap();
    store
        .start_call(&NewCall {
            id: call_id(id),
            challenge_id: c.id.clone(),
            phone_masked: PhoneNumber::parse(called).unwrap().masked(),
            started_at_ms: at + 1,
        })
        .await
        .unwrap();
    let end = CallEnd {
        sip_status: (outcome == Busy).then_some(486),
        time_to_verdict_ms: verdict_ms,
        trunk: Some("pbx".into()),
        ..CallEnd::new(outcome, at + 5)
    };
    assert!(store.finish_call(&call_id(id), &end).await.unwrap());
    c.id.to_string()
}

fn refusal(user: &str, number: &str, rule: &str, at: i64) -> NewRefusal {
    NewRefusal {
        at_ms: at,
        api_key_id: "key_service".into(),
        origin: store::Origin::Api,
        user_id: Some(user.into()),
        phone: PhoneNumber::parse(number).unwrap(),
        rule: rule.into(),
        detail: format!("{rule}: refused"),
        retry_after_s: Some(600),
    }
}

/// u-a's fallback phone +819011110003 registered (its enrolment approved, no call), calls
/// of u-a, u-b and u-c (u-c's number has u-a's number's mask), u-a's second sign-in called
/// on the fallback, a trusted sign-in of u-a, and three refusals in two rows: the ids of
/// the enrolment, of u-a's second sign-in and of the trusted one.
async fn logged(store: &Store) -> (String, String, String) {
    let enrol = decided(
        store,
        &enrolment("u-a", "+819011110003", PhoneRole::Fallback, T),
        Approved,
        T + 1,
    )
    .await;
    let a = ("u-a", "+819011110001", "+819011110001");
    called(store, a, "call_a1", T + 10, (Approved, Some(3000))).await;
    let b = ("u-b", "+819011110002", "+819011110002");
    called(store, b, "call_b1", T + 20, (Busy, Some(800))).await;
    let fallback = ("u-a", "+819011110001", "+819011110003");
    let second = called(store, fallback, "call_a2", T + 30, (NoAnswer, None)).await;
    let c = ("u-c", "+819022220001", "+819022220001");
    called(store, c, "call_c1", T + 40, (Approved, Some(5000))).await;
    let (t, _) = store
        .create_challenge(&sign_in("u-a", "+819011110001", T + 50))
        .await
        .unwrap();
    assert!(
        store
            .transition(&t.id, Approved, T + 51, Some("trusted_device"), None)
            .await
            .unwrap()
    );
    for r in [
        refusal("u-a", "+819011110001", "rate-limited", T + 60),
        refusal("u-a", "+819011110001", "rate-limited", T + 61),
        refusal("u-b", "+819011110002", "fraud-block", T + 62),
    ] {
        store.record_refusal(&r).await.unwrap();
    }
    (enrol.to_string(), second, t.id.to_string())
}

/// The log's entries `filter` selects, each as `kind:id` (a refusal as `refusal:rule`).
async fn listed(store: &Store, filter: &CallFilter) -> Vec<String> {
    let (page, next) = store.log(filter, 100, None).await.unwrap();
    assert!(next.is_none());
    page.iter()
        .map(|e| match e.kind {
            LogKind::Refusal => format!("refusal:{}", e.rule.as_deref().unwrap()),
            k => format!("{}:{}", k.as_str(), e.id),
        })
        .collect()
}

async fn the_log_merges_calls_challenges_without_a_call_and_refusals_newest_first(db: Db) {
    let store = &db.store;
    let (enrol, _, trusted) = logged(store).await;
    let all = listed(store, &CallFilter::default()).await;
    assert_eq!(
        all,
        vec![
            "refusal:fraud-block".to_string(),
            "refusal:rate-limited".into(),
            format!("challenge:{trusted}"),
            "call:call_c1".into(),
            "call:call_a2".into(),
            "call:call_b1".into(),
            "call:call_a1".into(),
            format!("challenge:{enrol}"),
        ]
    );
    // Pages of 3 give the same, each entry once.
    let (mut seen, mut cursor) = (Vec::new(), None);
    loop {
        let (page, next) = store
            .log(&CallFilter::default(), 3, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.into_iter().map(|e| e.id));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    let (page, _) = store.log(&CallFilter::default(), 100, None).await.unwrap();
    assert_eq!(seen, page.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
    // What each kind says: the trusted sign-in's reason and masked number, the refusal's
    // rule, repeats and Retry-After, never a whole number.
    let t = page.iter().find(|e| e.id == trusted).unwrap();
    assert_eq!(
        (t.outcome, t.detail.as_deref(), t.phone_masked.as_str()),
        (Some(Approved), Some("trusted_device"), "+81 ** **** **01")
    );
    assert_eq!(t.time_to_verdict_ms, Some(1));
    let r = &page[1];
    assert_eq!(
        (r.repeats, r.retry_after_s, r.last_at_ms, r.at_ms),
        (Some(2), Some(600), Some(T + 61), T + 60)
    );
    assert_eq!(
        (r.user_id.as_deref(), r.phone_masked.as_str()),
        (Some("u-a"), "+81 ** **** **01")
    );
    assert!(page.iter().all(|e| !e.phone_masked.contains("1111")));
    // By kind, and by outcome (which no refusal has).
    let kind = |k| CallFilter {
        kind: Some(k),
        ..CallFilter::default()
    };
    assert_eq!(
        listed(store, &kind(LogKind::Refusal)).await,
        ["refusal:fraud-block", "refusal:rate-limited"]
    );
    assert_eq!(
        listed(store, &kind(LogKind::Challenge)).await,
        [format!("challenge:{trusted}"), format!("challenge:{enrol}")]
    );
    let approved = CallFilter {
        outcome: Some(OutcomeFilter::Ended(Approved)),
        ..CallFilter::default()
    };
    assert_eq!(
        listed(store, &approved).await,
        [
            format!("challenge:{trusted}"),
            "call:call_c1".into(),
            "call:call_a1".into(),
            format!("challenge:{enrol}"),
        ]
    );
    // A trunk is a call's only.
    let trunk = CallFilter {
        trunk: Some("pbx".into()),
        ..CallFilter::default()
    };
    assert_eq!(listed(store, &trunk).await.len(), 4);
    assert!(store.log(&trunk, 10, Some("bogus")).await.is_err());
}

async fn the_log_and_the_call_log_are_searched_by_user_number_challenge_and_call(db: Db) {
    let store = &db.store;
    let (enrol, second, trusted) = logged(store).await;
    let user = CallFilter {
        user_id: Some("u-a".into()),
        ..CallFilter::default()
    };
    assert_eq!(
        listed(store, &user).await,
        vec![
            "refusal:rate-limited".to_string(),
            format!("challenge:{trusted}"),
            "call:call_a2".into(),
            "call:call_a1".into(),
            format!("challenge:{enrol}"),
        ]
    );
    // A whole number: the calls to it (not u-c's, whose number has the same mask), the
    // challenges of it, the refusals of its masked form.
    let number = |n: &str| CallFilter {
        number: Some(PhoneNumber::parse(n).unwrap()),
        ..CallFilter::default()
    };
    assert_eq!(
        listed(store, &number("+819011110001")).await,
        [
            "refusal:rate-limited".to_string(),
            format!("challenge:{trusted}"),
            "call:call_a1".into(),
        ]
    );
    // The fallback phone's number finds the call to it (its challenge is of the primary).
    assert_eq!(
        listed(store, &number("+819011110003")).await,
        ["call:call_a2".to_string(), format!("challenge:{enrol}")]
    );
    // A refusal keeps the masked number only: u-a's shows for u-c's number, whose mask it
    // has.
    assert_eq!(
        listed(store, &number("+819022220001")).await,
        ["refusal:rate-limited", "call:call_c1"]
    );
    assert!(listed(store, &number("+819099990009")).await.is_empty());
    let of = |c: &str| CallFilter {
        challenge_id: Some(challenge_id(c)),
        ..CallFilter::default()
    };
    assert_eq!(listed(store, &of(&second)).await, ["call:call_a2"]);
    assert_eq!(
        listed(store, &of(&trusted)).await,
        [format!("challenge:{trusted}")]
    );
    assert!(listed(store, &of("ch_unknown")).await.is_empty());
    let call = CallFilter {
        call_id: Some(call_id("call_b1")),
        ..CallFilter::default()
    };
    assert_eq!(listed(store, &call).await, ["call:call_b1"]);
    // The call log, the same way.
    let calls = |f: CallFilter| async move {
        let (page, _) = store.calls(&f, 100, None).await.unwrap();
        page.into_iter()
            .map(|c| c.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(calls(user.clone()).await, ["call_a2", "call_a1"]);
    assert_eq!(calls(number("+819011110001")).await, ["call_a1"]);
    assert_eq!(calls(number("+819011110003")).await, ["call_a2"]);
    assert_eq!(calls(of(&second)).await, ["call_a2"]);
    assert_eq!(calls(call).await, ["call_b1"]);
    // Together with the others: u-a's approved calls.
    let both = CallFilter {
        outcome: Some(OutcomeFilter::Ended(Approved)),
        ..user
    };
    assert_eq!(calls(both).await, ["call_a1"]);
}

async fn a_refusal_repeated_within_a_minute_adds_to_its_row_and_a_key_is_capped(db: Db) {
    let store = &db.store;
    let refusals = CallFilter {
        kind: Some(LogKind::Refusal),
        ..CallFilter::default()
    };
    // The same refusal three times in a minute: one row; a minute later, another.
    for at in [T, T + 30_000, T + 59_000, T + 60_001] {
        store
            .record_refusal(&refusal("u-r", "+819011110001", "rate-limited", at))
            .await
            .unwrap();
    }
    let (rows, _) = store.log(&refusals, 500, None).await.unwrap();
    let repeats: Vec<(i64, Option<i64>)> = rows.iter().map(|r| (r.at_ms, r.repeats)).collect();
    assert_eq!(repeats, [(T + 60_001, Some(1)), (T, Some(3))]);
    // 150 refusals of one key in a minute, each of another user: 100 rows at most, every
    // one counted.
    for i in 0..150 {
        store
            .record_refusal(&refusal(
                &format!("flood-{i}"),
                "+819011110002",
                "country-not-allowed",
                T + 120_000 + i,
            ))
            .await
            .unwrap();
    }
    let (rows, _) = store.log(&refusals, 500, None).await.unwrap();
    let flood: Vec<_> = rows
        .iter()
        .filter(|r| r.rule.as_deref() == Some("country-not-allowed"))
        .collect();
    assert_eq!(flood.len(), 100);
    assert_eq!(flood.iter().map(|r| r.repeats.unwrap()).sum::<i64>(), 150);
    let figures = store.call_stats(&CallFilter::default()).await.unwrap();
    assert_eq!(figures.refused, 154);
}

async fn the_figures_give_the_outcomes_and_the_time_to_verdicts_percentiles(db: Db) {
    let store = &db.store;
    logged(store).await;
    let all = store.call_stats(&CallFilter::default()).await.unwrap();
    assert_eq!(
        all,
        store::CallStats {
            calls: 4,
            in_progress: 0,
            approved: 2,
            canceled: 0,
            verdicts: 3,
            p50_verdict_ms: Some(3000),
            p95_verdict_ms: Some(5000),
            trusted: 1,
            refused: 3,
        }
    );
    // The outcome and kind filters do not narrow the figures; the others do.
    let busy_only = CallFilter {
        outcome: Some(OutcomeFilter::Ended(Busy)),
        kind: Some(LogKind::Call),
        ..CallFilter::default()
    };
    assert_eq!(store.call_stats(&busy_only).await.unwrap(), all);
    let u_a = CallFilter {
        user_id: Some("u-a".into()),
        ..CallFilter::default()
    };
    assert_eq!(
        store.call_stats(&u_a).await.unwrap(),
        store::CallStats {
            calls: 2,
            approved: 1,
            verdicts: 1,
            p50_verdict_ms: Some(3000),
            p95_verdict_ms: Some(3000),
            trusted: 1,
            refused: 2,
            ..store::CallStats::default()
        }
    );
    let window = CallFilter {
        from_ms: Some(T + 15),
        to_ms: Some(T + 45),
        ..CallFilter::default()
    };
    let w = store.call_stats(&window).await.unwrap();
    assert_eq!(
        (w.calls, w.approved, w.p50_verdict_ms, w.p95_verdict_ms),
        (3, 1, Some(800), Some(5000))
    );
    assert_eq!((w.trusted, w.refused), (0, 0));
    let nothing = CallFilter {
        user_id: Some("nobody".into()),
        ..CallFilter::default()
    };
    assert_eq!(
        store.call_stats(&nothing).await.unwrap(),
        store::CallStats::default()
    );
}
