//! The call log: calls with their outcome, SIP status, timings, RTP figures, keys and steps;
//! listed newest first in pages (keyset), filtered; a note added to a call's detail.

use store::ChallengeState::{Approved, Busy};
use store::{CallEnd, CallEntry, CallFilter, CallStep, NewCall, OutcomeFilter, StepKind, Store};

use crate::common::{Db, call_id, request};

on_both!(
    a_call_ends_once_with_its_outcome_keys_steps_and_figures,
    the_call_log_pages_newest_first_with_every_call_once,
    the_call_log_is_filtered_by_outcome_number_trunk_and_time,
    a_filtered_listing_pages_too_and_a_bad_cursor_is_an_error,
    a_note_goes_in_a_calls_detail_after_what_it_says,
);

/// 25 calls of one challenge, one a millisecond apart, alternating trunks and outcomes; the
/// last one still in progress.
async fn logged(store: &Store) {
    let (challenge, _) = store
        .create_challenge(&request(None, "h1", 1000))
        .await
        .unwrap();
    for i in 0..25i64 {
        let id = call_id(&format!("call_{i:02}"));
        store
            .start_call(&NewCall {
                id: id.clone(),
                challenge_id: challenge.id.clone(),
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
        let end = ended(i);
        assert!(store.finish_call(&id, &end).await.unwrap());
        assert!(
            !store.finish_call(&id, &end).await.unwrap(),
            "a call ends once"
        );
    }
}

/// How call `i` of [`logged`] ended.
fn ended(i: i64) -> CallEnd {
    let outcome = if i % 2 == 0 { Approved } else { Busy };
    CallEnd {
        sip_status: (i % 2 == 1).then_some(486),
        trunk: Some(if i % 3 == 0 { "backup" } else { "pbx" }.into()),
        post_dial_delay_ms: Some(120),
        time_to_answer_ms: (i % 2 == 0).then_some(2500),
        time_to_key_ms: (i % 2 == 0).then_some(3100),
        packets_sent: 400,
        packets_received: 390,
        packets_lost: 2,
        jitter_ms: 1.25,
        srtp: i % 4 == 0,
        steps: {
            let step = |at_ms, kind: StepKind, detail: &str| CallStep {
                at_ms,
                kind,
                detail: detail.into(),
            };
            let mut steps = vec![
                step(0, StepKind::Invite, "pbx"),
                step(120, StepKind::Sip, "180"),
            ];
            // The keys are kept as steps: one taken from each source, one dropped (it came
            // before the instructions, so it is no key of the call's).
            if i % 2 == 0 {
                steps.extend([
                    step(
                        4000,
                        StepKind::Key,
                        "5 (in_band) before the instructions: ignored",
                    ),
                    step(5000, StepKind::Key, "0 (in_band)"),
                    step(5600, StepKind::Key, "# (rfc4733)"),
                ]);
            }
            steps
        },
        ..CallEnd::new(outcome, 20_000 + i)
    }
}

/// A filter of the call log.
fn filter(
    outcome: Option<&str>,
    phone: Option<&str>,
    trunk: Option<&str>,
    from: Option<i64>,
    to: Option<i64>,
) -> CallFilter {
    CallFilter {
        outcome: outcome.map(|o| OutcomeFilter::from_name(o).unwrap()),
        phone_masked: phone.map(str::to_string),
        trunk: trunk.map(str::to_string),
        from_ms: from,
        to_ms: to,
        ..CallFilter::default()
    }
}

fn ids(v: Vec<CallEntry>) -> Vec<String> {
    v.into_iter().map(|c| c.id.to_string()).collect()
}

async fn a_call_ends_once_with_its_outcome_keys_steps_and_figures(db: Db) {
    let store = &db.store;
    logged(store).await;
    let c = store.call(&call_id("call_04")).await.unwrap().unwrap();
    let end = c.end.unwrap();
    assert!(end.srtp);
    let call_05 = store.call(&call_id("call_05")).await.unwrap().unwrap();
    assert!(!call_05.end.unwrap().srtp);
    assert_eq!(
        (end.outcome.as_str(), end.trunk.as_deref()),
        ("approved", Some("pbx"))
    );
    let taken = end.keys();
    let keys: Vec<(String, &str, i64)> = taken
        .iter()
        .map(|k| (k.digit.to_string(), k.source.as_str(), k.at_ms))
        .collect();
    assert_eq!(
        keys,
        vec![("0".into(), "in_band", 5000), ("#".into(), "rfc4733", 5600)]
    );
    assert_eq!((end.jitter_ms, end.packets_lost), (1.25, 2));
    let steps: Vec<(i64, &str, &str)> = end
        .steps
        .iter()
        .map(|s| (s.at_ms, s.kind.as_str(), s.detail.as_str()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (0, "invite", "pbx"),
            (120, "sip", "180"),
            (4000, "key", "5 (in_band) before the instructions: ignored"),
            (5000, "key", "0 (in_band)"),
            (5600, "key", "# (rfc4733)")
        ]
    );
    assert!(
        store
            .call(&call_id("call_24"))
            .await
            .unwrap()
            .unwrap()
            .end
            .is_none()
    );
    assert!(store.call(&call_id("call_nope")).await.unwrap().is_none());
}

/// Pages of 10, newest first, every call once.
async fn the_call_log_pages_newest_first_with_every_call_once(db: Db) {
    let store = &db.store;
    logged(store).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = store
            .calls(&CallFilter::default(), 10, cursor.as_deref())
            .await
            .unwrap();
        seen.extend(page.iter().map(|c| c.id.to_string()));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("call_{i:02}")).collect();
    assert_eq!(seen, expected);
}

/// Filters, alone and together.
async fn the_call_log_is_filtered_by_outcome_number_trunk_and_time(db: Db) {
    let store = &db.store;
    logged(store).await;
    let listed = |f: CallFilter| async move { store.calls(&f, 100, None).await.unwrap().0 };
    let busy = listed(filter(Some("busy"), None, None, None, None)).await;
    assert_eq!(busy.len(), 12);
    let open = listed(filter(Some("in_progress"), None, None, None, None)).await;
    assert_eq!(ids(open), vec!["call_24"]);
    let us = listed(filter(None, Some("+1 ** **** **23"), None, None, None)).await;
    assert_eq!(
        ids(us),
        vec!["call_20", "call_15", "call_10", "call_05", "call_00"]
    );
    let mix = filter(
        Some("approved"),
        None,
        Some("backup"),
        Some(10_003),
        Some(10_019),
    );
    assert_eq!(
        ids(listed(mix).await),
        vec!["call_18", "call_12", "call_06"]
    );
}

async fn a_filtered_listing_pages_too_and_a_bad_cursor_is_an_error(db: Db) {
    let store = &db.store;
    logged(store).await;
    let busy = filter(Some("busy"), None, None, None, None);
    let (p1, next) = store.calls(&busy, 5, None).await.unwrap();
    let (p2, _) = store.calls(&busy, 5, next.as_deref()).await.unwrap();
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

async fn a_note_goes_in_a_calls_detail_after_what_it_says(db: Db) {
    let store = &db.store;
    const T: i64 = 200_000_000;
    let (c, _) = store
        .create_challenge(&request(None, "a", T))
        .await
        .unwrap();
    store
        .start_call(&NewCall {
            id: call_id("call_noted"),
            challenge_id: c.id.clone(),
            phone_masked: "+81 ** **** **10".into(),
            started_at_ms: T,
        })
        .await
        .unwrap();
    let busy = CallEnd {
        detail: Some("486".into()),
        ..CallEnd::new(Busy, T + 1)
    };
    store
        .finish_call(&call_id("call_noted"), &busy)
        .await
        .unwrap();
    assert!(
        store
            .note_call(&call_id("call_noted"), "next: refused")
            .await
            .unwrap()
    );
    let noted = store.call(&call_id("call_noted")).await.unwrap().unwrap();
    assert_eq!(
        noted.end.unwrap().detail.as_deref(),
        Some("486; next: refused")
    );
}
