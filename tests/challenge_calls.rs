//! A stored challenge called through sipp: the store follows the call (`queued → calling →
//! ringing → answered → approved`, or a failure) and keeps the call log, on SQLite and on
//! PostgreSQL; a user's fallback phone, and the current primary phone an enrolment must be
//! approved on, are checked against the policy before they are called.

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

/// The policy of these tests: Japan's mobiles and fixed lines.
fn japan() -> Arc<policy::Policy> {
    Arc::new(policy::Policy {
        allowed_countries: policy::Countries::Only(vec!["JP".into()]),
        ..policy::Policy::default()
    })
}

/// A sipp callee for `calls` calls in `dir`: 486 to `busy` (if any), and to any other number
/// an answer, then RFC 4733 '#'.
fn phones(dir: &std::path::Path, busy: Option<&str>, calls: usize) -> Sipp {
    let file = callee_scenario_after(
        dir,
        Some(std::path::Path::new(SIPP_POUND)),
        std::time::Duration::from_millis(300),
        std::time::Duration::from_millis(KEY_AT_MS as u64),
    );
    if let Some(number) = busy {
        let scenario = std::fs::read_to_string(&file).unwrap();
        let digits = number.trim_start_matches('+');
        let scenario = scenario
            .replacen(
                "<recv request=\"INVITE\" crlf=\"true\">\n    <action>",
                &format!("<recv request=\"INVITE\" crlf=\"true\">\n    <action>\n      <ereg regexp=\"sip:[+]{digits}@\" search_in=\"msg\" check_it=\"false\" assign_to=\"busy\"/>"),
                1,
            )
            .replacen("</recv>", "</recv>\n  <nop next=\"busy\" test=\"busy\"/>", 1)
            .replace(
                "</scenario>",
                "  <nop next=\"done\"/>\n  <label id=\"busy\"/>\n  <send><![CDATA[\n\nSIP/2.0 486 Busy Here\n[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]SIPpTag02[call_number]\n[last_Call-ID:]\n[last_CSeq:]\nContent-Length: 0\n\n  ]]></send>\n  <recv request=\"ACK\" crlf=\"true\"/>\n  <label id=\"done\"/>\n</scenario>",
            );
        std::fs::write(&file, scenario).unwrap();
    }
    Sipp::start_file(dir.to_path_buf(), &file, V4, &["-m", &calls.to_string()])
}

/// The call log, oldest first: (masked number, outcome, detail).
async fn call_log(store: &Store) -> Vec<(String, String, Option<String>)> {
    let (calls, _) = store
        .calls(&store::CallFilter::default(), 10, None)
        .await
        .unwrap();
    let mut log = Vec::new();
    for call in calls.iter().rev() {
        let end = store.call(&call.id).await.unwrap().unwrap().end.unwrap();
        log.push((
            call.phone_masked.clone(),
            end.outcome.to_string(),
            end.detail,
        ));
    }
    log
}

/// Enrols `number` for `user` in `role`, verified (as an approved enrolment call leaves it).
async fn verified(store: &Store, user: &str, number: &str, role: PhoneRole, now: i64) {
    let (e, _) = store
        .create_challenge(&NewChallenge {
            user_id: Some(user.into()),
            purpose: Purpose::Enroll,
            enrol: Some(role),
            ..sign_in("key_test", number, now)
        })
        .await
        .unwrap();
    for s in [ChallengeState::Calling, ChallengeState::Approved] {
        assert!(store.transition(&e.id, s, now, None, None).await.unwrap());
    }
}

async fn challenge_through(
    store: Store,
    sipp: Sipp,
) -> (store::ChallengeId, Option<ChallengeState>) {
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
    assert_eq!(end.outcome.as_str(), "approved");
    assert_eq!(end.trunk.as_deref(), Some("sipp"));
    let keys = end.keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].digit.as_char(), keys[0].source.as_str()),
        ('#', "rfc4733")
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
    verified(&store, "carol", "+819011112222", PhoneRole::Primary, now).await;
    verified(&store, "carol", "+819033334444", PhoneRole::Fallback, now).await;
    let (c, _) = store
        .create_challenge(&request("+819011112222", Purpose::SignIn, None, "carol"))
        .await
        .unwrap();
    let sipp = phones(&dir, Some("+819011112222"), 2);
    let runner = runner_through(store.clone(), sipp.addr)
        .await
        .with_fallback(true)
        .with_policy(japan());
    let state = tokio::time::timeout(BOUND, runner.run(&c.id))
        .await
        .expect("within the bound")
        .unwrap();
    let exit = sipp.finish().await;
    assert!(exit.passed, "{}", exit.log);
    assert_eq!(state, Some(ChallengeState::Approved));
    let log: Vec<(String, String)> = call_log(&store)
        .await
        .into_iter()
        .map(|(n, o, _)| (n, o))
        .collect();
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

/// The fallback phone goes through the number checks and the limits before it is called:
/// refused, the challenge ends with the primary's outcome, the refusal in its reason and in
/// the primary call's detail, and the fallback is not called.
#[tokio::test]
async fn a_fallback_phone_is_checked_and_counted_before_it_is_called() {
    let now = store::now_ms();
    // A premium-rate fallback (registered when the policy allowed it, or written in SQL).
    let store = sqlite_store("challenge-fallback-type").await;
    verified(&store, "carol", "+819011112222", PhoneRole::Primary, now).await;
    verified(&store, "carol", "+81990123456", PhoneRole::Fallback, now).await;
    let (c, _) = store
        .create_challenge(&NewChallenge {
            user_id: Some("carol".into()),
            ..sign_in("key_test", "+819011112222", now)
        })
        .await
        .unwrap();
    let dir = scratch("challenge-fallback-type-sipp");
    let sipp = phones(&dir, Some("+819011112222"), 1);
    let runner = runner_through(store.clone(), sipp.addr)
        .await
        .with_fallback(true)
        .with_policy(japan());
    let state = tokio::time::timeout(BOUND, runner.run(&c.id))
        .await
        .unwrap()
        .unwrap();
    assert!(sipp.finish().await.passed);
    assert_eq!(state, Some(ChallengeState::Busy));
    let reason = store
        .challenge(&c.id)
        .await
        .unwrap()
        .unwrap()
        .reason
        .unwrap();
    assert!(
        reason.contains("the fallback phone (+81 * **** **56) was not called")
            && reason.contains("number-type-not-allowed"),
        "{reason}"
    );
    let log = call_log(&store).await;
    assert_eq!(log.len(), 1, "only the primary was called: {log:?}");
    assert_eq!(log[0].1, "busy");
    assert!(
        log[0].2.as_deref().unwrap_or("").contains("premium_rate"),
        "{log:?}"
    );

    // A fallback of an allowed type, but the user's limit is reached by the sign-in itself.
    let store = sqlite_store("challenge-fallback-limit").await;
    verified(&store, "dave", "+819011112222", PhoneRole::Primary, now).await;
    verified(&store, "dave", "+819033334444", PhoneRole::Fallback, now).await;
    let policy = Arc::new(policy::Policy {
        per_user: policy::RateLimit::new(1, std::time::Duration::from_secs(600)),
        ..(*japan()).clone()
    });
    let number = store::PhoneNumber::parse("+819011112222").unwrap();
    let checked = policy.check_number(&number).unwrap();
    let (c, _) = store
        .create_admitted(
            &NewChallenge {
                user_id: Some("dave".into()),
                ..sign_in("key_test", "+819011112222", now)
            },
            &policy.admission(&number, &checked, Some("dave"), "key_test", true),
        )
        .await
        .unwrap()
        .unwrap();
    let dir = scratch("challenge-fallback-limit-sipp");
    let sipp = phones(&dir, Some("+819011112222"), 1);
    let runner = runner_through(store.clone(), sipp.addr)
        .await
        .with_fallback(true)
        .with_policy(policy);
    let state = tokio::time::timeout(BOUND, runner.run(&c.id))
        .await
        .unwrap()
        .unwrap();
    assert!(sipp.finish().await.passed);
    assert_eq!(state, Some(ChallengeState::Busy));
    let reason = store
        .challenge(&c.id)
        .await
        .unwrap()
        .unwrap()
        .reason
        .unwrap();
    assert!(
        reason.contains("rate-limited: the user had 1 calls in the last 600 s (limit 1)"),
        "{reason}"
    );
    assert_eq!(call_log(&store).await.len(), 1);
}

/// Erin's enrolment of +819055556666 as her primary phone at `now`, to be approved on her
/// current primary phone first when `confirm`.
fn erin_enrols(confirm: bool, now: i64) -> NewChallenge {
    NewChallenge {
        user_id: Some("erin".into()),
        purpose: Purpose::Enroll,
        enrol: Some(PhoneRole::Primary),
        confirm_primary: confirm,
        origin: store::Origin::Api,
        origin_ref: None,
        confirmation: Default::default(),
        ..sign_in("key_test", "+819055556666", now)
    }
}

/// Erin's verified primary number.
async fn erins_primary(store: &Store) -> Option<String> {
    store
        .verified_phone("erin", PhoneRole::Primary)
        .await
        .unwrap()
        .map(|p| p.phone.as_e164().unwrap_or_default().to_string())
}

/// Erin, whose primary phone is +819011112222, enrols +819055556666 as her primary phone
/// (to be approved on the current one first when `confirm`), and the challenge is called
/// through sipp answering `calls` calls (busy for `busy`'s number): the store, the challenge
/// and the state the call left it in.
async fn erin_replaces(
    name: &str,
    confirm: bool,
    busy: Option<&str>,
    calls: usize,
) -> (Store, store::Challenge, Option<ChallengeState>) {
    let now = store::now_ms();
    let store = sqlite_store(&format!("challenge-replace-{name}")).await;
    verified(&store, "erin", "+819011112222", PhoneRole::Primary, now).await;
    let (c, _) = store
        .create_challenge(&erin_enrols(confirm, now))
        .await
        .unwrap();
    let dir = scratch(&format!("challenge-replace-{name}-sipp"));
    let sipp = phones(&dir, busy, calls);
    let runner = runner_through(store.clone(), sipp.addr)
        .await
        .with_policy(japan());
    let state = tokio::time::timeout(BOUND, runner.run(&c.id))
        .await
        .unwrap()
        .unwrap();
    assert!(sipp.finish().await.passed);
    (store, c, state)
}

/// An enrolment that must be approved on the user's current primary phone calls that phone
/// first: when it is busy, the challenge ends so, and the new phone is not called.
#[tokio::test]
async fn replacing_a_verified_phone_calls_the_current_one_first() {
    let (store, c, state) = erin_replaces("busy", true, Some("+819011112222"), 1).await;
    assert_eq!(state, Some(ChallengeState::Busy));
    let c = store.challenge(&c.id).await.unwrap().unwrap();
    assert_eq!(
        c.reason.as_deref(),
        Some("the current primary phone did not approve: busy")
    );
    let log = call_log(&store).await;
    assert_eq!(
        log.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
        ["+81 ** **** **22"],
        "only the current phone was called"
    );
    assert_eq!(
        erins_primary(&store).await.as_deref(),
        Some("+819011112222")
    );
}

/// When the current primary phone and then the new one approve, they are called in that
/// order, and the new phone replaces the old one.
#[tokio::test]
async fn a_replacing_phone_is_verified_once_the_current_one_approved() {
    let (store, _, state) = erin_replaces("both", true, None, 2).await;
    assert_eq!(state, Some(ChallengeState::Approved));
    let log: Vec<(String, String)> = call_log(&store)
        .await
        .into_iter()
        .map(|(n, o, _)| (n, o))
        .collect();
    assert_eq!(
        log,
        [
            ("+81 ** **** **22".to_string(), "approved".to_string()),
            ("+81 ** **** **66".to_string(), "approved".to_string())
        ]
    );
    assert_eq!(
        erins_primary(&store).await.as_deref(),
        Some("+819055556666")
    );
}

/// Without the need to confirm on the current phone (a phone_admin key made the enrolment),
/// only the new phone is called.
#[tokio::test]
async fn a_replacement_by_a_phone_admin_calls_only_the_new_phone() {
    let (store, _, state) = erin_replaces("admin", false, None, 1).await;
    assert_eq!(state, Some(ChallengeState::Approved));
    assert_eq!(
        call_log(&store)
            .await
            .iter()
            .map(|l| l.0.as_str())
            .collect::<Vec<_>>(),
        ["+81 ** **** **66"]
    );
    assert_eq!(
        erins_primary(&store).await.as_deref(),
        Some("+819055556666")
    );
}

/// A number-matching challenge called through the runner, sipp entering `keys` as RFC 4733
/// events during the instructions: the challenge's state and reason, and its one call in
/// the log.
async fn number_matching(
    name: &str,
    keys: impl Fn(&str) -> Vec<store::Digit>,
) -> (store::Challenge, store::CallEntry) {
    use callverify_e2e::pcap::{self, Part};
    let store = sqlite_store(name).await;
    let now = store::now_ms();
    let (c, _) = store
        .create_challenge(&NewChallenge {
            confirmation: store::Confirmation::KeypadCode,
            ..sign_in("key_test", "+819012345678", now)
        })
        .await
        .unwrap();
    let shown = c
        .display_code
        .clone()
        .expect("number matching has its two digits");
    let silence = |ms: f64| Part::Audio(vec![0; (ms * 8.0) as usize]);
    let mut parts = vec![silence(KEY_AT_MS)];
    for d in keys(&shown) {
        parts.push(Part::Key(d, 120));
        parts.push(silence(250.0));
    }
    parts.push(silence(1500.0));
    let dir = scratch(&format!("{name}-sipp"));
    let capture = dir.join("keys.pcap");
    pcap::write(&capture, &pcap::rtp(&parts));
    let file = callee_scenario_after(
        &dir,
        Some(&capture),
        std::time::Duration::from_millis(300),
        std::time::Duration::from_millis(0),
    );
    let sipp = Sipp::start_file(dir.clone(), &file, V4, &["-m", "1"]);
    let runner = runner_through(store.clone(), sipp.addr).await;
    tokio::time::timeout(BOUND, runner.run(&c.id))
        .await
        .expect("within the bound")
        .unwrap();
    sipp.finish().await;
    let decided = store.challenge(&c.id).await.unwrap().unwrap();
    let (calls, _) = store
        .calls(&store::CallFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
    let call = store.call(&calls[0].id).await.unwrap().unwrap();
    (decided, call)
}

fn digits(s: &str) -> Vec<store::Digit> {
    s.chars()
        .map(|c| store::Digit::from_char(c).unwrap())
        .collect()
}

/// The digits the page showed, then '#': approved, the code matched; the call log says a
/// digit came twice, never which.
#[tokio::test]
async fn number_matching_through_the_runner_approves_the_digits_shown() {
    let (c, call) = number_matching("nm-runner-right", |shown| digits(&format!("{shown}#"))).await;
    assert_eq!(
        (c.state, c.code_matched),
        (ChallengeState::Approved, Some(true)),
        "{c:?}"
    );
    assert_eq!(
        (call.confirmation, call.code_matched),
        (store::Confirmation::KeypadCode, Some(true))
    );
    let end = call.end.unwrap();
    let steps: Vec<&str> = end
        .steps
        .iter()
        .filter(|s| s.kind == store::StepKind::Key)
        .map(|s| s.detail.as_str())
        .collect();
    assert_eq!(
        steps,
        ["a digit (rfc4733)", "a digit (rfc4733)", "# (rfc4733)"]
    );
    // No step names the code as a number of its own (a status such as "200 OK" may hold
    // its two digits inside a longer number).
    let code = c.display_code.unwrap();
    assert!(
        end.steps.iter().all(|s| s
            .detail
            .split(|ch: char| !ch.is_ascii_digit())
            .all(|number| number != code)),
        "{:?}",
        end.steps
    );
}

/// Other digits than those shown (the two the other way round), then '#': denied
/// `wrong_code`, the code did not match.
#[tokio::test]
async fn number_matching_through_the_runner_denies_other_digits() {
    let (c, call) = number_matching("nm-runner-wrong", |shown| {
        let swapped: String = shown.chars().rev().collect();
        digits(&format!("{swapped}#"))
    })
    .await;
    assert_eq!(
        (c.state, c.reason.as_deref(), c.code_matched),
        (ChallengeState::Denied, Some("wrong_code"), Some(false))
    );
    assert_eq!(call.end.unwrap().outcome, ChallengeState::Denied);
}

/// A spoken-code challenge through the runner to baresip, which answers and says nothing (a
/// person, for answering-machine detection): the runner draws the code and stores only its
/// keyed hash, the call reads it and the challenge waits `code_spoken`. The code is read
/// back from what baresip heard, as the person would, and typed: approved, the code matched
/// (a wrong one first costs an attempt). The call log shows the mode and the match.
#[tokio::test]
async fn a_spoken_code_heard_by_the_phone_and_typed_approves() {
    use callverify_e2e::{Baresip, code_readings, pcm_wav, spoken_code_heard};
    let key = b"the gateway's token secret";
    let store = sqlite_store("spoken-runner").await;
    let now = store::now_ms();
    let (c, _) = store
        .create_challenge(&NewChallenge {
            confirmation: store::Confirmation::SpokenCode,
            ..sign_in("key_test", "+819012345678", now)
        })
        .await
        .unwrap();
    let quiet = pcm_wav("spoken-runner-phone", &vec![0i16; 8000 * 40]);
    let phone = Baresip::start_saying("spoken-runner-baresip", &quiet);
    let runner = runner_through(store.clone(), phone.addr)
        .await
        .with_code_key(key);
    let state = tokio::time::timeout(BOUND, runner.run(&c.id))
        .await
        .expect("within the bound")
        .unwrap();
    assert_eq!(state, Some(ChallengeState::CodeSpoken), "{}", phone.log());
    let heard = phone.heard();
    let p = prompts(Language::Ja);
    let code = spoken_code_heard(&heard, &p).expect("the phone heard a code");
    assert_eq!(code_readings(&heard, &p, &code), Ok(2));
    let typed: String = code.iter().map(|d| d.as_char()).collect();
    let wrong: String = typed
        .chars()
        .map(|ch| {
            if ch == '9' {
                '0'
            } else {
                char::from(ch as u8 + 1)
            }
        })
        .collect();
    let later = store::now_ms();
    assert_eq!(
        store.check_code(&c.id, key, &wrong, later).await.unwrap(),
        store::CodeCheck::Wrong { attempts_left: 4 }
    );
    let store::CodeCheck::Matched(approved) =
        store.check_code(&c.id, key, &typed, later).await.unwrap()
    else {
        panic!("the code the phone heard is the challenge's");
    };
    assert_eq!(
        (approved.state, approved.code_matched),
        (ChallengeState::Approved, Some(true))
    );
    let (calls, _) = store
        .calls(&store::CallFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(
        (calls[0].confirmation, calls[0].code_matched),
        (store::Confirmation::SpokenCode, Some(true))
    );
    let end = store
        .call(&calls[0].id)
        .await
        .unwrap()
        .unwrap()
        .end
        .unwrap();
    assert_eq!(end.outcome, ChallengeState::CodeSpoken);
    assert!(end.steps.iter().any(|s| s.detail == "the code was read"));
    assert!(end.steps.iter().all(|s| !s.detail.contains(&typed)));
}
