//! Keys: which count, from which source, and the verdict they give.

use std::time::Duration;

use dtmf::Digit;
use engine::Outcome;
use engine::call::{KeySource, Report};
use media::PromptKind;
use testaudio::Signal;

use crate::common::*;

#[test]
fn pound_as_rfc4733_approves_plays_the_closing_prompt_and_hangs_up() {
    let mut sim = Sim::new(cfg());
    sim.answer();
    sim.run_for(
        Duration::from_secs(30),
        &mut Far::Events(vec![(Digit::Pound, 250, 6)]),
    );
    let f = sim.seen.finished().unwrap().clone();
    assert_eq!(f.outcome, Outcome::Approved);
    assert_eq!(f.keys.len(), 1);
    assert_eq!(
        (f.keys[0].digit, f.keys[0].source),
        ('#', KeySource::Rfc4733)
    );
    assert_eq!(f.timings.post_dial_delay_ms, Some(300));
    assert_eq!(f.timings.time_to_answer_ms, Some(1500));
    // Pressed at the 250th frame after the answer: 5.0 s.
    assert_eq!(f.timings.time_to_key_ms, Some(5000));
    assert_eq!(f.timings.time_to_verdict_ms, Some(6500));
    assert_eq!(f.trunk.as_deref(), Some("pbx"));
    // Greeting, instructions (cut by the key), then the closing prompt to its end.
    assert_eq!(
        sim.seen.prompts(),
        vec![
            PromptKind::Greeting,
            PromptKind::Instructions,
            PromptKind::Verified
        ]
    );
    let hangup = sim.seen.hangups[0];
    let verified = prompts().get(media::PromptKind::Verified).duration_ms();
    let closing_ms = (hangup - sim.answered_at.unwrap()).as_millis() as u64 - 5000;
    assert!(
        closing_ms >= verified + 160 && closing_ms <= verified + 260,
        "hung up {closing_ms} ms after the key, the prompt lasts {verified} ms"
    );
    assert_eq!(f.media.codec, Some("PCMU"));
    assert!(f.media.packets_received > 100);
    assert_eq!(f.media.packets_rejected, 0);
}

#[test]
fn pound_in_band_approves_and_a_key_stops_the_prompt() {
    let mut sim = Sim::new(cfg());
    sim.answer();
    // Pressed 1.5 s into the instructions.
    let at = instructions_ms() + 1500;
    sim.run_for(Duration::from_secs(30), &mut pound_after(at as f64));
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.outcome, Outcome::Approved);
    assert_eq!(f.keys[0].source, KeySource::InBand);
    let key_ms = f.timings.time_to_key_ms.unwrap();
    assert!((at + 20..at + 100).contains(&key_ms), "key at {key_ms} ms");
    // Barge-in: the instructions stop at the key, the closing prompt plays.
    assert_eq!(
        sim.seen.prompts(),
        vec![
            PromptKind::Greeting,
            PromptKind::Instructions,
            PromptKind::Verified
        ]
    );
    let played = sim.seen.rtp.len() as u64 * 20;
    let verified = prompts().get(media::PromptKind::Verified).duration_ms();
    assert!(
        played < key_ms + verified + 1000,
        "the instructions stopped at the key ({played} ms of audio sent)"
    );
}

/// Keys during the greeting, before anyone was asked for one (a voicemail greeting set to
/// end in '#', or a reflex), are dropped and reported; the greeting plays on, and the time
/// for the first key counts from the instructions.
#[test]
fn keys_before_the_instructions_are_dropped() {
    for far in [
        pound_after(800.0),
        // All within the English greeting (2.97 s: 148 frames).
        Far::Events(vec![
            (Digit::Pound, 40, 6),
            (Digit::D0, 80, 5),
            (Digit::Pound, 120, 6),
        ]),
    ] {
        let mut far = far;
        let mut sim = Sim::new(cfg());
        sim.answer();
        sim.run_for(Duration::from_secs(40), &mut far);
        let f = sim.seen.finished().unwrap();
        assert_eq!(f.outcome, Outcome::NoInput, "{f:?}");
        assert!(f.keys.is_empty(), "{:?}", f.keys);
        let ignored: Vec<u64> = sim
            .seen
            .reports
            .iter()
            .filter_map(|(_, r)| match r {
                Report::KeyIgnored(k) => Some(k.at_ms - 1500),
                _ => None,
            })
            .collect();
        assert!(!ignored.is_empty() && ignored.iter().all(|&t| t < instructions_ms()));
        assert_eq!(
            &sim.seen.prompts()[..2],
            &[PromptKind::Greeting, PromptKind::Instructions],
            "the greeting was not cut"
        );
        assert_eq!(
            f.timings.time_to_verdict_ms,
            Some(1500 + instructions_ms() + 20_000)
        );
    }
}

#[test]
fn zero_pound_reports_fraud_and_other_keys_deny() {
    for (keys, outcome, closing) in [
        ("0#", Outcome::FraudReported, PromptKind::FraudReported),
        ("12#", Outcome::Denied, PromptKind::Denied),
        ("00#", Outcome::Denied, PromptKind::Denied),
        ("*#", Outcome::Denied, PromptKind::Denied),
    ] {
        let mut sim = Sim::new(cfg());
        sim.answer();
        let mut far = audio(
            Signal::new()
                .silence(4000.0)
                .digits(keys, -8.0, 100.0, 150.0),
        );
        sim.run_for(Duration::from_secs(30), &mut far);
        assert_eq!(sim.outcome(), outcome, "{keys}");
        let pressed: String = sim
            .seen
            .finished()
            .unwrap()
            .keys
            .iter()
            .map(|k| k.digit)
            .collect();
        assert_eq!(pressed, keys);
        assert_eq!(sim.seen.prompts().last(), Some(&closing), "{keys}");
    }
}

#[test]
fn a_key_without_pound_times_out_as_no_input() {
    let mut c = cfg();
    c.digit_timeout = Duration::from_secs(5);
    let mut sim = Sim::new(c);
    sim.answer();
    sim.run_for(
        Duration::from_secs(30),
        &mut audio(
            Signal::new()
                .silence(instructions_ms() as f64 + 1000.0)
                .digits("1", -8.0, 100.0, 0.0),
        ),
    );
    assert_eq!(sim.outcome(), Outcome::NoInput);
    let f = sim.seen.finished().unwrap();
    let key_at = f.keys[0].at_ms;
    assert_eq!(f.timings.time_to_verdict_ms, Some(key_at + 5000));
}

#[test]
fn the_same_key_in_band_and_as_an_event_counts_once() {
    let mut sim = Sim::new(cfg());
    sim.answer();
    // '0' at 5.0 s both in band and as events, then '#' as events only: one '0', so the
    // verdict is a fraud report, not a denial for "00#".
    let pcm = Signal::new()
        .silence(5000.0)
        .digit(Digit::D0, -8.0, 100.0)
        .silence(5000.0)
        .pcm();
    sim.run_for(
        Duration::from_secs(13),
        &mut Far::Both(pcm, vec![(Digit::D0, 250, 5), (Digit::Pound, 300, 6)]),
    );
    let f = sim.seen.finished().unwrap();
    let pressed: String = f.keys.iter().map(|k| k.digit).collect();
    assert_eq!(pressed, "0#");
    assert_eq!(f.outcome, Outcome::FraudReported);
}

/// A caller pressing without end (RFC 4733 events are cheap to send) is heard to the end, but
/// what is kept of it for the call log is capped.
#[test]
fn endless_keys_are_judged_but_not_all_kept() {
    let mut sim = Sim::new(cfg());
    sim.answer();
    // '1' every 3 frames from the 200th (4 s, in the instructions) on, then '#'.
    let mut presses: Vec<(Digit, usize, usize)> =
        (0..300).map(|i| (Digit::D1, 200 + 3 * i, 1)).collect();
    presses.push((Digit::Pound, 200 + 3 * 300 + 5, 6));
    sim.run_for(Duration::from_secs(40), &mut Far::Events(presses));
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.outcome, Outcome::Denied, "{:?}", f.outcome);
    assert_eq!(f.keys.len(), 64);
    let reported = sim
        .seen
        .reports
        .iter()
        .filter(|(_, r)| matches!(r, Report::Key(_)))
        .count();
    assert_eq!(reported, 64);
}
