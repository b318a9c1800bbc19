//! A stored challenge called through sipp: the store follows the call (`queued → calling →
//! ringing → answered → approved`, or a failure) and keeps the call log, on SQLite and on
//! PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;

use callverify_e2e::{
    BOUND, KEY_AT_MS, Postgres, SIPP_POUND, Sipp, V4, callee_scenario_after, endpoint,
    free_rtp_pair, media_at, prompts, runner_through, scratch, script, sign_in, sqlite_store,
    trunk,
};
use engine::Runner;
use media::Language;
use sip::Transport;
use store::{ChallengeState, NewChallenge, PhoneRole, Purpose, Store};

async fn challenge_through(store: Store, sipp: Sipp) -> (String, Option<ChallengeState>) {
    let ep = endpoint(V4, BOUND, vec![trunk("sipp", Transport::Udp, sipp.addr)]).await;
    let now = 1_795_000_000_000;
    let (c, _) = store
        .create_challenge(&sign_in("key_test", "+819012345678", now))
        .await
        .unwrap();
    let runner = Runner::new(
        store.clone(),
        Arc::new(ep),
        media_at(V4, free_rtp_pair(V4)),
        script(),
        HashMap::from([(Language::Ja, prompts(Language::Ja))]),
    );
    let state = tokio::time::timeout(BOUND, runner.run(&c.id))
        .await
        .expect("within the bound")
        .unwrap();
    let exit = sipp.finish().await;
    assert!(exit.passed, "{}", exit.log);
    // Once decided, running it again does nothing.
    assert_eq!(runner.run(&c.id).await.unwrap(), None);
    (c.id, state)
}

async fn approved_with_its_trail(store: Store) {
    let sipp = Sipp::callee_pressing_pound("challenge-approved", V4);
    let (id, state) = challenge_through(store.clone(), sipp).await;
    assert_eq!(state, Some(ChallengeState::Approved));
    let events = store.events(&id).await.unwrap();
    let trail: Vec<ChallengeState> = events.iter().map(|e| e.state).collect();
    use ChallengeState::*;
    assert_eq!(trail, vec![Queued, Calling, Ringing, Answered, Approved]);
    assert!(events[1..].windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    let (calls, _) = store
        .calls(&store::CallFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].challenge_id, id);
    assert_eq!(calls[0].phone_masked, "+81 ** **** **78");
    let call = store.call(&calls[0].id).await.unwrap().unwrap();
    let end = call.end.unwrap();
    assert_eq!(end.outcome, "approved");
    assert_eq!(end.trunk.as_deref(), Some("sipp"));
    assert_eq!(end.keys.len(), 1);
    assert_eq!(
        (end.keys[0].digit.as_str(), end.keys[0].source.as_str()),
        ("#", "rfc4733")
    );
    assert!(end.time_to_answer_ms.is_some() && end.packets_sent > 0);
}

async fn busy_is_recorded(store: Store) {
    let sipp = Sipp::start("busy", Transport::Udp, V4);
    let (id, state) = challenge_through(store.clone(), sipp).await;
    assert_eq!(state, Some(ChallengeState::Busy));
    let trail: Vec<ChallengeState> = store
        .events(&id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.state)
        .collect();
    use ChallengeState::*;
    assert_eq!(trail, vec![Queued, Calling, Ringing, Busy]);
}

#[tokio::test]
async fn a_challenge_on_sqlite() {
    let store = sqlite_store("challenge-sqlite").await;
    approved_with_its_trail(store.clone()).await;
    busy_is_recorded(store).await;
}

#[tokio::test]
async fn a_challenge_on_postgresql() {
    let pg = Postgres::start("challenge");
    let store = Store::open(&pg.url).await.unwrap();
    approved_with_its_trail(store.clone()).await;
    busy_is_recorded(store).await;
}

/// A user's sign-in whose primary phone is busy calls the fallback phone, which approves:
/// sipp answers 486 to the primary's number and answers and presses '#' on any other.
#[tokio::test]
async fn a_busy_primary_falls_back_to_the_verified_fallback_phone() {
    let store = sqlite_store("challenge-fallback").await;
    let dir = scratch("challenge-fallback-sipp");
    let now = 1_795_000_000_000;
    let request = |number: &str, purpose, enrol, user: &str| NewChallenge {
        user_id: Some(user.into()),
        purpose,
        enrol,
        ..sign_in("key_test", number, now)
    };
    // Both phones enrolled and verified (as approved enrolment calls leave them).
    for (number, role) in [
        ("+819011112222", PhoneRole::Primary),
        ("+819033334444", PhoneRole::Fallback),
    ] {
        let (e, _) = store
            .create_challenge(&request(number, Purpose::Enroll, Some(role), "carol"))
            .await
            .unwrap();
        for s in [ChallengeState::Calling, ChallengeState::Approved] {
            assert!(store.transition(&e.id, s, now, None, None).await.unwrap());
        }
    }
    let (c, _) = store
        .create_challenge(&request("+819011112222", Purpose::SignIn, None, "carol"))
        .await
        .unwrap();

    let file = callee_scenario_after(
        &dir,
        Some(std::path::Path::new(SIPP_POUND)),
        std::time::Duration::from_millis(300),
        std::time::Duration::from_millis(KEY_AT_MS as u64),
    );
    let scenario = std::fs::read_to_string(&file).unwrap();
    let scenario = scenario
        .replacen(
            "<recv request=\"INVITE\" crlf=\"true\">\n    <action>",
            "<recv request=\"INVITE\" crlf=\"true\">\n    <action>\n      <ereg regexp=\"sip:[+]819011112222@\" search_in=\"msg\" check_it=\"false\" assign_to=\"primary\"/>",
            1,
        )
        .replacen("</recv>", "</recv>\n  <nop next=\"busy\" test=\"primary\"/>", 1)
        .replace(
            "</scenario>",
            "  <nop next=\"done\"/>\n  <label id=\"busy\"/>\n  <send><![CDATA[\n\nSIP/2.0 486 Busy Here\n[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]SIPpTag02[call_number]\n[last_Call-ID:]\n[last_CSeq:]\nContent-Length: 0\n\n  ]]></send>\n  <recv request=\"ACK\" crlf=\"true\"/>\n  <label id=\"done\"/>\n</scenario>",
        );
    std::fs::write(&file, scenario).unwrap();
    let sipp = Sipp::start_file(dir.clone(), &file, V4, &["-m", "2"]);
    let runner = runner_through(store.clone(), sipp.addr)
        .await
        .with_fallback(true);
    let state = tokio::time::timeout(BOUND, runner.run(&c.id))
        .await
        .expect("within the bound")
        .unwrap();
    let exit = sipp.finish().await;
    assert!(exit.passed, "{}", exit.log);
    assert_eq!(state, Some(ChallengeState::Approved));
    let (calls, _) = store
        .calls(&store::CallFilter::default(), 10, None)
        .await
        .unwrap();
    let mut log: Vec<(String, String)> = Vec::new();
    for call in calls.iter().rev() {
        let end = store.call(&call.id).await.unwrap().unwrap().end.unwrap();
        log.push((call.phone_masked.clone(), end.outcome));
    }
    assert_eq!(
        log,
        [
            ("+81 ** **** **22".to_string(), "busy".to_string()),
            ("+81 ** **** **44".to_string(), "approved".to_string())
        ]
    );
    // The busy primary did not decide the challenge: its trail goes on to the approval.
    let trail: Vec<ChallengeState> = store
        .events(&c.id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.state)
        .collect();
    use ChallengeState::*;
    assert_eq!(trail, vec![Queued, Calling, Ringing, Answered, Approved]);

    // Without the fallback setting, the busy primary decides.
    let (c2, _) = store
        .create_challenge(&request("+819011112222", Purpose::SignIn, None, "carol"))
        .await
        .unwrap();
    let sipp = Sipp::start("busy", Transport::Udp, V4);
    let runner = runner_through(store.clone(), sipp.addr).await;
    let state = tokio::time::timeout(BOUND, runner.run(&c2.id))
        .await
        .unwrap()
        .unwrap();
    assert!(sipp.finish().await.passed);
    assert_eq!(state, Some(ChallengeState::Busy));
}
