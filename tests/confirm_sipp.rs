//! The confirmation modes end to end against sipp as the phone, its keys sent as RFC 4733
//! events from captures made here: number matching (the right code then '#', a wrong code,
//! the code without '#', '#' alone, '0#'), '#' in the '#' mode, and keys that decide nothing
//! while a spoken code is read.

use std::time::Duration;

use callverify_e2e::pcap::{self, Part};
use callverify_e2e::{
    BOUND, CODE, KEY_AT_MS, SHOWN, Sipp, V4, endpoint, free_rtp_pair, media_at, scratch, script,
    times_played, trunk, verify_call_confirming,
};
use dtmf::Digit;
use engine::call::KeySource;
use engine::{Confirmation, Outcome, Report};
use media::{Language, PromptKind};
use sip::Transport;
use store::ChallengeState;
use testaudio::Signal;

/// A capture of [`KEY_AT_MS`] of silence (while the greeting and then the instructions
/// play), then `keys` as RFC 4733 events (each held 120 ms, 280 ms apart), then 1 s of
/// silence.
fn pressing(name: &str, keys: &[Digit]) -> std::path::PathBuf {
    let mut parts = vec![Part::Audio(silence(KEY_AT_MS))];
    for &k in keys {
        parts.push(Part::Key(k, 120));
        parts.push(Part::Audio(silence(280.0)));
    }
    parts.push(Part::Audio(silence(1000.0)));
    let path = scratch(&format!("pcap-{name}")).join(format!("{name}.pcap"));
    pcap::write(&path, &pcap::rtp(&parts));
    path
}

fn silence(ms: f64) -> Vec<i16> {
    Signal::new().silence(ms).pcm()
}

/// One call to sipp playing the capture of `keys`, confirmed as `confirmation` says; checks
/// that sipp's scenario passed too.
async fn call(
    name: &str,
    keys: &[Digit],
    lang: Language,
    script: engine::ScriptConfig,
    confirmation: Confirmation,
) -> (engine::CallReport, Vec<Report>) {
    let sipp = Sipp::callee(name, V4, Some(&pressing(name, keys)));
    let ep = endpoint(V4, BOUND, vec![trunk("sipp", Transport::Udp, sipp.addr)]).await;
    let media = media_at(V4, free_rtp_pair(V4));
    let (r, reports) = verify_call_confirming(&ep, &media, script, lang, confirmation, BOUND).await;
    let exit = sipp.finish().await;
    assert!(exit.passed, "{r:?}\n{}", exit.log);
    ep.shutdown().await;
    (r, reports)
}

fn keypad(keys: &[Digit], name: &str, lang: Language) -> impl Future<Output = engine::CallReport> {
    let call = call(name, keys, lang, script(), Confirmation::KeypadCode(SHOWN));
    async { call.await.0 }
}

fn pressed(r: &engine::CallReport) -> String {
    r.keys.iter().map(|k| k.digit).collect()
}

#[tokio::test]
async fn keypad_the_shown_code_then_pound_approves_in_both_languages() {
    for (lang, name) in [
        (Language::En, "keypad-right-en"),
        (Language::Ja, "keypad-right-ja"),
    ] {
        let r = keypad(&[Digit::D4, Digit::D7, Digit::Pound], name, lang).await;
        assert_eq!(r.outcome, Outcome::Approved, "{lang:?}: {r:?}");
        assert_eq!(r.confirmation, "keypad_code");
        assert_eq!(r.code_matched, Some(true), "{r:?}");
        assert_eq!(pressed(&r), "47#");
        assert!(
            r.keys.iter().all(|k| k.source == KeySource::Rfc4733),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn keypad_a_wrong_code_then_pound_is_denied_as_wrong_code() {
    // The shown digits in the wrong order.
    let r = keypad(
        &[Digit::D7, Digit::D4, Digit::Pound],
        "keypad-wrong",
        Language::En,
    )
    .await;
    assert_eq!(r.outcome, Outcome::WrongCode, "{r:?}");
    assert_eq!(r.outcome.state(), ChallengeState::Denied);
    assert_eq!(r.outcome.reason(), Some("wrong_code"));
    assert_eq!(r.code_matched, Some(false), "{r:?}");
    assert_eq!(pressed(&r), "74#");
}

#[tokio::test]
async fn keypad_the_code_without_pound_is_no_input() {
    let r = keypad(&[Digit::D4, Digit::D7], "keypad-no-pound", Language::En).await;
    assert_eq!(r.outcome, Outcome::NoInput, "{r:?}");
    assert_eq!(r.code_matched, None, "{r:?}");
    assert_eq!(pressed(&r), "47");
}

/// '#' alone proves only that someone answered: the instructions play again from the
/// start, and with no code after them the call ends as no input.
#[tokio::test]
async fn keypad_pound_alone_asks_again_and_ends_as_no_input() {
    let twice = engine::ScriptConfig {
        repeats: 2,
        ..script()
    };
    let (r, reports) = call(
        "keypad-pound-alone",
        &[Digit::Pound],
        Language::En,
        twice,
        Confirmation::KeypadCode(SHOWN),
    )
    .await;
    assert_eq!(r.outcome, Outcome::NoInput, "{r:?}");
    assert_eq!(r.code_matched, None, "{r:?}");
    assert_eq!(pressed(&r), "#");
    assert_eq!(
        times_played(&reports, PromptKind::KeypadInstructions),
        2,
        "{reports:?}"
    );
    assert_eq!(times_played(&reports, PromptKind::NoInputGoodbye), 1);
}

#[tokio::test]
async fn keypad_zero_then_pound_reports_fraud() {
    let r = keypad(&[Digit::D0, Digit::Pound], "keypad-fraud", Language::En).await;
    assert_eq!(r.outcome, Outcome::FraudReported, "{r:?}");
    assert_eq!(r.code_matched, None, "{r:?}");
    assert_eq!(pressed(&r), "0#");
}

#[tokio::test]
async fn pound_mode_pound_alone_approves_and_the_shown_code_is_not_asked_for() {
    let (r, reports) = call(
        "pound-mode",
        &[Digit::Pound],
        Language::En,
        script(),
        Confirmation::Pound,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Approved, "{r:?}");
    assert_eq!((r.confirmation, r.code_matched), ("pound", None));
    assert_eq!(times_played(&reports, PromptKind::Instructions), 1);
    assert_eq!(times_played(&reports, PromptKind::KeypadInstructions), 0);
}

/// While a spoken code is read, '#', the shown code and '#', or any other keys decide
/// nothing: the reading goes on and the call ends as `code_spoken` (the code is checked on
/// the page). sipp says nothing, so detection says "human" once its window has passed.
#[tokio::test]
async fn spoken_code_keys_do_not_approve_and_the_code_is_still_read() {
    // The script ends the call soon after the first reading (sipp waits 24 s for the BYE).
    let short = engine::ScriptConfig {
        call_timeout: Duration::from_secs(21),
        ..script()
    };
    let (r, reports) = call(
        "spoken-keys",
        &[
            Digit::Pound,
            Digit::D4,
            Digit::D7,
            Digit::Pound,
            Digit::D1,
            Digit::Pound,
        ],
        Language::En,
        short,
        Confirmation::SpokenCode(CODE),
    )
    .await;
    assert_eq!(r.outcome, Outcome::CodeSpoken, "{r:?}");
    assert_eq!(r.outcome.state(), ChallengeState::CodeSpoken);
    assert_eq!((r.confirmation, r.code_matched), ("spoken_code", None));
    assert_eq!(pressed(&r), "#47#1#");
    assert!(
        !reports
            .iter()
            .any(|x| matches!(x, Report::Verdict(o) if *o != Outcome::CodeSpoken)),
        "{reports:?}"
    );
    assert_eq!(
        reports.iter().filter(|x| **x == Report::CodeSpoken).count(),
        1,
        "{reports:?}"
    );
    assert_eq!(times_played(&reports, PromptKind::CodeIntro), 1);
}

/// '0#' still reports fraud while a spoken code is read.
#[tokio::test]
async fn spoken_code_zero_then_pound_reports_fraud() {
    let (r, reports) = call(
        "spoken-fraud",
        &[Digit::D0, Digit::Pound],
        Language::En,
        script(),
        Confirmation::SpokenCode(CODE),
    )
    .await;
    assert_eq!(r.outcome, Outcome::FraudReported, "{r:?}");
    assert_eq!(pressed(&r), "0#");
    assert_eq!(times_played(&reports, PromptKind::FraudReported), 1);
}
