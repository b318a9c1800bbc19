//! Answering machines: a long greeting is voicemail, a person's hello is not.

use std::time::Duration;

use dtmf::Digit;
use engine::Outcome;
use media::PromptKind;
use testaudio::Signal;

use crate::common::*;

#[test]
fn a_long_greeting_is_voicemail_and_its_pound_does_not_approve() {
    // A recorded greeting: 6.6 s of speech, then the '#' tone an attacker recorded.
    let greeting = testaudio::speech::voicemail_greeting().expect("espeak-ng and sox");
    let far = Signal::from_pcm(&greeting)
        .silence(200.0)
        .digit(Digit::Pound, -8.0, 150.0)
        .silence(3000.0);
    let mut sim = Sim::new(cfg());
    sim.answer();
    sim.run_for(Duration::from_secs(30), &mut audio(far));
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.outcome, Outcome::Voicemail);
    assert!(f.keys.is_empty(), "{:?}", f.keys);
    let detail = f.detail.as_deref().unwrap();
    assert!(detail.contains("continuous speech"), "{detail}");
    // Decided about 4 s into the greeting; no closing prompt.
    let verdict = f.timings.time_to_verdict_ms.unwrap() - 1500;
    assert!(
        (4000..4700).contains(&verdict),
        "voicemail after {verdict} ms"
    );
    assert!(!sim.seen.prompts().contains(&PromptKind::Verified));

    // The '#' in the middle of a greeting (after the instructions started: the greeting
    // began a second after the answer) is held, then thrown away with it.
    let far = Signal::new()
        .silence(1000.0)
        .then(&Signal::from_pcm(&greeting[..8000 * 3]))
        .digit(Digit::Pound, -8.0, 150.0)
        .then(&Signal::from_pcm(&greeting[8000 * 3..]));
    let mut sim = Sim::new(cfg());
    sim.answer();
    sim.run_for(Duration::from_secs(30), &mut audio(far));
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.outcome, Outcome::Voicemail);
    assert!(
        f.detail.as_deref().unwrap().contains("held 'approved'"),
        "{:?}",
        f.detail
    );
}

#[test]
fn a_person_saying_hello_then_pressing_pound_is_approved() {
    let hello = testaudio::speech::speak("en-us", 160, "Hello, who is this?").expect("espeak");
    let hello_ms = hello.len() as f64 / 8.0;
    let far = Signal::from_pcm(&hello)
        .silence((instructions_ms() as f64 - hello_ms).max(0.0) + 700.0)
        .digit(Digit::Pound, -8.0, 120.0)
        .silence(1000.0);
    let mut sim = Sim::new(cfg());
    sim.answer();
    sim.run_for(Duration::from_secs(30), &mut audio(far));
    assert_eq!(sim.outcome(), Outcome::Approved);

    // Still talking when pressing: held until the speech stops, then approved.
    let far = Signal::new()
        .silence(3000.0)
        .then(&Signal::from_pcm(&hello))
        .digit(Digit::Pound, -8.0, 120.0)
        .silence(2000.0);
    let mut sim = Sim::new(cfg());
    sim.answer();
    sim.run_for(Duration::from_secs(30), &mut audio(far));
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.outcome, Outcome::Approved);
    let held_ms = f.timings.time_to_verdict_ms.unwrap() - f.keys[0].at_ms;
    assert!((500..900).contains(&held_ms), "held {held_ms} ms");
}
