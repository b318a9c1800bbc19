//! The confirmation modes: number matching (the code shown on the page, then '#') and a
//! spoken code (read twice once the far end is judged a person, typed on the page).

use std::time::Duration;

use dtmf::Digit;
use engine::call::{Confirmation, Report, ScriptConfig};
use engine::{CallReport, Outcome};
use media::{Codec, PromptKind};
use sip::{CallEvent, EndReason};
use store::ChallengeState;
use testaudio::Signal;

use crate::common::*;

/// The number shown on the sign-in page.
const SHOWN: [Digit; 2] = [Digit::D4, Digit::D7];

/// The code the call reads.
const CODE: [Digit; 6] = [
    Digit::D8,
    Digit::D3,
    Digit::D6,
    Digit::D1,
    Digit::D9,
    Digit::D4,
];

fn keypad_call(c: ScriptConfig) -> Sim {
    let mut sim = Sim::new(c);
    sim.vc.confirm_by(Confirmation::KeypadCode(SHOWN));
    sim.answer();
    sim
}

/// A spoken-code call, answered: the reading is long, so the whole-call timeout is too.
fn spoken_call() -> Sim {
    let mut sim = Sim::new(ScriptConfig {
        call_timeout: Duration::from_secs(120),
        ..cfg()
    });
    sim.vc.confirm_by(Confirmation::SpokenCode(CODE));
    sim.answer();
    sim
}

/// `keys` pressed in band from `at_ms` after the answer.
fn in_band(at_ms: f64, keys: &str) -> Far {
    audio(
        Signal::new()
            .silence(at_ms)
            .digits(keys, -8.0, 100.0, 150.0)
            .silence(500.0),
    )
}

/// `keys` sent as RFC 4733 events from frame `from` after the answer, one every 10 frames.
fn events(from: usize, keys: &str) -> Far {
    Far::Events(
        keys.chars()
            .enumerate()
            .map(|(i, c)| (Digit::from_char(c).unwrap(), from + 10 * i, 5))
            .collect(),
    )
}

fn pressed(f: &CallReport) -> String {
    f.keys.iter().map(|k| k.digit).collect()
}

fn silence() -> Far {
    Far::Audio(Vec::new())
}

/// Frames after the answer at the simulated clock's time.
fn frame_now(sim: &Sim) -> usize {
    ((sim.now - sim.answered_at.unwrap()).as_millis() / 20) as usize
}

/// Runs the call in 20 ms steps until `until` holds (at most 120 s).
fn run_until(sim: &mut Sim, far: &mut Far, until: impl Fn(&Sim) -> bool) {
    for _ in 0..6000 {
        if until(sim) || sim.vc.is_done() {
            return;
        }
        sim.run_for(FRAME, far);
    }
    panic!("the condition never held");
}

fn reported(sim: &Sim, kind: PromptKind) -> bool {
    sim.seen.prompts().contains(&kind)
}

fn frames(kind: PromptKind) -> Vec<Vec<u8>> {
    prompts()
        .get(kind)
        .frames(Codec::Pcmu)
        .iter()
        .map(|f| f.to_vec())
        .collect()
}

fn is_silence(frame: &[u8]) -> bool {
    frame.iter().all(|&b| b == Codec::Pcmu.silence())
}

/// Where each of `kinds` was sent, in order, as (first frame, end) indices of the payloads
/// sent; every frame outside them is silence. `None` if they are not all there so.
fn locate(sent: &[Vec<u8>], kinds: &[PromptKind]) -> Result<Vec<(usize, usize)>, String> {
    let mut at = 0;
    let mut found = Vec::new();
    for &kind in kinds {
        let want = frames(kind);
        let start = (at..=sent.len().saturating_sub(want.len()))
            .find(|&i| sent[i..i + want.len()] == want[..])
            .ok_or(format!("{kind:?} not sent after frame {at}"))?;
        if let Some(i) = (at..start).find(|&i| !is_silence(&sent[i])) {
            return Err(format!("frame {i}, before {kind:?}, is not silence"));
        }
        found.push((start, start + want.len()));
        at = start + want.len();
    }
    if let Some(i) = (at..sent.len()).find(|&i| !is_silence(&sent[i])) {
        return Err(format!("frame {i}, after the last prompt, is not silence"));
    }
    Ok(found)
}

fn digit_prompts(code: &[Digit]) -> Vec<PromptKind> {
    code.iter()
        .map(|d| PromptKind::digit(d.event_code()).unwrap())
        .collect()
}

/// What a spoken-code call plays: the greeting, the reading, then `end`.
fn script(end: &[PromptKind]) -> Vec<PromptKind> {
    let mut k = vec![PromptKind::Greeting, PromptKind::CodeIntro];
    k.extend(digit_prompts(&CODE));
    k.push(PromptKind::CodeAgain);
    k.extend(digit_prompts(&CODE));
    k.push(PromptKind::CodeOutro);
    k.extend_from_slice(end);
    k
}

// Number matching.

#[test]
fn keypad_the_right_code_then_pound_approves_in_band_and_as_rfc4733() {
    let at = instructions_ms() as f64 + 1500.0;
    for mut far in [in_band(at, "47#"), events(at as usize / 20, "47#")] {
        let mut sim = keypad_call(cfg());
        sim.run_for(Duration::from_secs(30), &mut far);
        let f = sim.seen.finished().unwrap();
        assert_eq!(f.outcome, Outcome::Approved);
        assert_eq!(pressed(f), "47#");
        assert_eq!(
            (f.confirmation, f.code_matched),
            ("keypad_code", Some(true))
        );
        // The keypad instructions instead of the '#' ones; cut by the first key.
        assert_eq!(
            sim.seen.prompts(),
            vec![
                PromptKind::Greeting,
                PromptKind::KeypadInstructions,
                PromptKind::Verified
            ]
        );
    }
}

#[test]
fn keypad_a_wrong_code_then_pound_is_wrong_code_with_its_prompt() {
    let at = instructions_ms() as f64 + 1500.0;
    for keys in ["74#", "4#", "477#", "12#", "00#", "*47#"] {
        for mut far in [in_band(at, keys), events(at as usize / 20, keys)] {
            let mut sim = keypad_call(cfg());
            sim.run_for(Duration::from_secs(30), &mut far);
            let f = sim.seen.finished().unwrap();
            assert_eq!(f.outcome, Outcome::WrongCode, "{keys}");
            assert_eq!(pressed(f), keys);
            assert_eq!(f.code_matched, Some(false));
            assert_eq!(sim.seen.prompts().last(), Some(&PromptKind::WrongCode));
            assert!(
                sim.seen
                    .reports
                    .iter()
                    .any(|(_, r)| *r == Report::Verdict(Outcome::WrongCode))
            );
        }
    }
    // The challenge is denied, with reason wrong_code; the call log says wrong_code.
    let o = Outcome::WrongCode;
    assert_eq!(o.state(), ChallengeState::Denied);
    assert_eq!(o.reason(), Some("wrong_code"));
    assert_eq!(o.name(), "wrong_code");
    assert_eq!(Outcome::Denied.reason(), None);
}

#[test]
fn keypad_the_code_without_pound_is_no_input() {
    let mut c = cfg();
    c.digit_timeout = Duration::from_secs(5);
    let mut sim = keypad_call(c);
    let at = instructions_ms() as f64 + 1000.0;
    sim.run_for(Duration::from_secs(30), &mut in_band(at, "47"));
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.outcome, Outcome::NoInput);
    assert_eq!(f.code_matched, None);
    let last_key = f.keys[1].at_ms;
    assert_eq!(f.timings.time_to_verdict_ms, Some(last_key + 5000));
}

#[test]
fn keypad_pound_alone_does_not_approve_and_the_instructions_play_again() {
    let at = instructions_ms() as f64 + 1500.0;
    let mut sim = keypad_call(cfg());
    sim.run_for(Duration::from_secs(60), &mut in_band(at, "#"));
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.outcome, Outcome::NoInput, "'#' alone is no approval");
    assert_eq!(pressed(f), "#");
    assert!(
        !sim.seen
            .reports
            .iter()
            .any(|(_, r)| matches!(r, Report::Verdict(Outcome::Approved)))
    );
    // Cut by the '#', played again from its start at once, then repeated once more (three
    // plays in all), then no input.
    assert_eq!(
        sim.seen.prompts(),
        vec![
            PromptKind::Greeting,
            PromptKind::KeypadInstructions,
            PromptKind::KeypadInstructions,
            PromptKind::KeypadInstructions,
            PromptKind::NoInputGoodbye
        ]
    );
    let key_at = sim
        .seen
        .reports
        .iter()
        .find(|(_, r)| matches!(r, Report::Key(_)))
        .unwrap()
        .0;
    let again_at = sim
        .seen
        .reports
        .iter()
        .filter(|(_, r)| *r == Report::Prompt(PromptKind::KeypadInstructions))
        .nth(1)
        .unwrap()
        .0;
    assert!(again_at - key_at <= Duration::from_millis(40));

    // After it, the code and '#' still approve.
    let mut sim = keypad_call(cfg());
    let mut far = audio(
        Signal::new()
            .silence(at)
            .digits("#", -8.0, 100.0, 0.0)
            .silence(3000.0)
            .digits("47#", -8.0, 100.0, 150.0)
            .silence(500.0),
    );
    sim.run_for(Duration::from_secs(30), &mut far);
    assert_eq!(sim.outcome(), Outcome::Approved);

    // With no plays left, '#' alone plays nothing more and still does not approve.
    let mut c = cfg();
    c.repeats = 1;
    c.digit_timeout = Duration::from_secs(5);
    let mut sim = keypad_call(c);
    sim.run_for(Duration::from_secs(30), &mut in_band(at, "#"));
    assert_eq!(sim.outcome(), Outcome::NoInput);
    assert_eq!(
        sim.seen.prompts(),
        vec![
            PromptKind::Greeting,
            PromptKind::KeypadInstructions,
            PromptKind::NoInputGoodbye
        ]
    );
}

#[test]
fn keypad_zero_pound_reports_fraud() {
    let at = instructions_ms() as f64 + 1500.0;
    for mut far in [in_band(at, "0#"), events(at as usize / 20, "0#")] {
        let mut sim = keypad_call(cfg());
        sim.run_for(Duration::from_secs(30), &mut far);
        let f = sim.seen.finished().unwrap();
        assert_eq!(f.outcome, Outcome::FraudReported);
        assert_eq!(f.code_matched, None);
        assert_eq!(sim.seen.prompts().last(), Some(&PromptKind::FraudReported));
    }
}

// A spoken code.

#[test]
fn spoken_the_call_reads_the_code_twice_digit_by_digit_then_says_goodbye() {
    let mut sim = spoken_call();
    sim.run_for(Duration::from_secs(90), &mut silence());
    let f = sim.seen.finished().unwrap().clone();
    assert_eq!(f.outcome, Outcome::CodeSpoken);
    assert_eq!(f.outcome.state(), ChallengeState::CodeSpoken);
    assert_eq!(f.outcome.name(), "code_spoken");
    assert_eq!((f.confirmation, f.code_matched), ("spoken_code", None));
    // Exactly these prompts' frames, in this order, and silence between them: the right
    // digits in the right order.
    let at = locate(&sim.seen.payloads, &script(&[PromptKind::Goodbye])).unwrap();
    let ms = |frames: usize| frames as u64 * 20;
    // Nobody spoke: "human" once the detection window (5 s) has passed.
    assert!((5000..5060).contains(&ms(at[1].0)), "{}", ms(at[1].0));
    for reading in [&at[2..8], &at[9..15]] {
        for pair in reading.windows(2) {
            let gap = ms(pair[1].0 - pair[0].1);
            assert!((300..=400).contains(&gap), "{gap} ms between two digits");
        }
    }
    let between = ms(at[8].0 - at[7].1);
    assert!(
        (900..=1100).contains(&between),
        "{between} ms between the readings"
    );
    // Goodbye at once after the outro (no key was pressed), then the hang-up.
    assert!(at[16].0 - at[15].1 <= 2);
    assert_eq!(sim.seen.hangups.len(), 1);
    // The digits are not reported as prompts (the reports go to the logs).
    assert_eq!(
        sim.seen.prompts(),
        vec![
            PromptKind::Greeting,
            PromptKind::CodeIntro,
            PromptKind::CodeAgain,
            PromptKind::CodeOutro,
            PromptKind::Goodbye
        ]
    );
}

#[test]
fn spoken_code_spoken_is_reported_once_when_the_first_reading_ends() {
    let mut sim = spoken_call();
    sim.run_for(Duration::from_secs(90), &mut silence());
    let at = locate(&sim.seen.payloads, &script(&[PromptKind::Goodbye])).unwrap();
    let spoken: Vec<_> = sim
        .seen
        .reports
        .iter()
        .filter(|(_, r)| *r == Report::CodeSpoken)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(spoken.len(), 1);
    // With the first reading's last frame (the sixth digit's), before the second reading.
    let last_digit = sim.seen.rtp[at[7].1 - 1].3;
    let again = sim.seen.rtp[at[8].0].3;
    assert!(spoken[0] >= last_digit && spoken[0] - last_digit <= Duration::from_millis(20));
    assert!(spoken[0] < again);
    // Before the verdict, which comes at the hang-up.
    let verdict = sim
        .seen
        .reports
        .iter()
        .position(|(_, r)| *r == Report::Verdict(Outcome::CodeSpoken))
        .unwrap();
    let code = sim
        .seen
        .reports
        .iter()
        .position(|(_, r)| *r == Report::CodeSpoken)
        .unwrap();
    assert!(code < verdict);
}

#[test]
fn spoken_an_answering_machine_never_hears_the_code() {
    let greeting = testaudio::speech::voicemail_greeting().expect("espeak-ng and sox");
    for delay in [0.0, 1000.0] {
        let mut sim = spoken_call();
        let far = Signal::new()
            .silence(delay)
            .then(&Signal::from_pcm(&greeting))
            .silence(5000.0);
        sim.run_for(Duration::from_secs(60), &mut audio(far));
        let f = sim.seen.finished().unwrap();
        assert_eq!(f.outcome, Outcome::Voicemail, "{delay}");
        // The greeting, then only silence: not even the intro, let alone a digit.
        locate(&sim.seen.payloads, &[PromptKind::Greeting]).unwrap();
        assert!(
            !sim.seen
                .reports
                .iter()
                .any(|(_, r)| *r == Report::CodeSpoken)
        );
        assert_eq!(sim.seen.prompts(), vec![PromptKind::Greeting]);
    }
}

#[test]
fn spoken_human_is_a_short_hello_then_silence_or_the_window_without_speech() {
    let ms_of_intro = |sim: &Sim| {
        let at = locate(&sim.seen.payloads, &script(&[PromptKind::Goodbye])).unwrap();
        at[1].0 as u64 * 20
    };
    // "Hello?" then silence: read as soon as the greeting has played (before the window).
    let hello = testaudio::speech::speak("en-us", 160, "Hello?").expect("espeak");
    assert!(hello.len() < 8000 * 2);
    let mut sim = spoken_call();
    sim.run_for(
        Duration::from_secs(90),
        &mut audio(Signal::from_pcm(&hello).silence(100_000.0)),
    );
    let intro = ms_of_intro(&sim);
    let greeting = instructions_ms();
    assert!(
        (greeting..greeting + 60).contains(&intro),
        "intro at {intro} ms"
    );

    // Speech longer than a hello, shorter than a greeting (a person's sentence, or a short
    // recorded greeting such as "please leave a message after the tone"): not sure to be a
    // person, so the code is not read and the call is voicemail.
    for words in [
        "Yes, this is me, hold on a moment",
        "Please leave a message after the tone",
    ] {
        let talk = testaudio::speech::speak("en-us", 160, words).expect("espeak");
        let talk_ms = talk.len() as u64 / 8;
        assert!((2200..3800).contains(&talk_ms), "{talk_ms} ms of speech");
        let beep = Signal::new()
            .silence(300.0)
            .tones(&[(1000.0, -10.0)], 500.0);
        let mut sim = spoken_call();
        sim.run_for(
            Duration::from_secs(90),
            &mut audio(
                Signal::new()
                    .silence(3000.0)
                    .then(&Signal::from_pcm(&talk))
                    .then(&beep)
                    .silence(100_000.0),
            ),
        );
        assert_eq!(sim.outcome(), Outcome::Voicemail, "{words}");
        let sent = &sim.seen.payloads;
        for d in 0..10 {
            let digit = PromptKind::digit(d).unwrap();
            assert!(
                locate(sent, &[digit]).is_err(),
                "{words}: digit {d} was read"
            );
        }
        assert!(locate(sent, &[PromptKind::CodeIntro]).is_err(), "{words}");
    }
}

#[test]
fn spoken_zero_pound_reports_fraud_until_the_hang_up() {
    // '0' during the outro's last second, '#' 3 s after the outro: the call waited for it.
    // '0#' during the goodbye. '0' during the second reading, '#' after the outro.
    for case in 0..3 {
        let mut sim = spoken_call();
        run_until(&mut sim, &mut silence(), |s| {
            reported(s, PromptKind::CodeAgain)
        });
        let again = frame_now(&sim);
        let mut reading = match case {
            2 => Far::Events(vec![(Digit::D0, again + 60, 5)]),
            _ => silence(),
        };
        run_until(&mut sim, &mut reading, |s| {
            reported(s, PromptKind::CodeOutro)
        });
        let outro_end = frame_now(&sim) + frames(PromptKind::CodeOutro).len();
        let mut far = Far::Events(match case {
            0 => vec![
                (Digit::D0, outro_end - 50, 5),
                (Digit::Pound, outro_end + 150, 6),
            ],
            1 => vec![
                (Digit::D0, outro_end + 10, 5),
                (Digit::Pound, outro_end + 25, 6),
            ],
            _ => vec![(Digit::Pound, outro_end + 100, 6)],
        });
        sim.run_for(Duration::from_secs(30), &mut far);
        let f = sim.seen.finished().unwrap();
        assert_eq!(f.outcome, Outcome::FraudReported, "case {case}");
        assert_eq!(pressed(f), "0#");
        assert_eq!(sim.seen.prompts().last(), Some(&PromptKind::FraudReported));
        if case == 2 {
            // The '0' did not cut the reading short.
            let mut all = script(&[]);
            all.push(PromptKind::FraudReported);
            locate(&sim.seen.payloads, &all).unwrap();
        }
    }
}

#[test]
fn spoken_other_keys_are_reported_but_decide_nothing_and_do_not_cut_the_reading() {
    let mut sim = spoken_call();
    run_until(&mut sim, &mut silence(), |s| {
        reported(s, PromptKind::CodeIntro)
    });
    let intro = frame_now(&sim);
    // '5' and '#' during the first reading; '#', then '1' and '#' after the outro.
    let mut far = Far::Events(vec![
        (Digit::D5, intro + 150, 5),
        (Digit::Pound, intro + 200, 5),
    ]);
    run_until(&mut sim, &mut far, |s| reported(s, PromptKind::CodeOutro));
    let outro_end = frame_now(&sim) + frames(PromptKind::CodeOutro).len();
    let mut far = Far::Events(vec![
        // While "goodbye" plays (0.65 s in English).
        (Digit::Pound, outro_end + 4, 5),
        (Digit::D1, outro_end + 12, 5),
        (Digit::Pound, outro_end + 20, 5),
    ]);
    sim.run_for(Duration::from_secs(40), &mut far);
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.outcome, Outcome::CodeSpoken);
    assert_eq!(pressed(f), "5##1#");
    let keys = sim
        .seen
        .reports
        .iter()
        .filter(|(_, r)| matches!(r, Report::Key(_)))
        .count();
    assert_eq!(keys, 5);
    // The whole reading went out, then goodbye, despite the keys.
    locate(&sim.seen.payloads, &script(&[PromptKind::Goodbye])).unwrap();
}

#[test]
fn spoken_a_hang_up_after_the_reading_is_code_spoken_before_it_hung_up() {
    let mut sim = spoken_call();
    run_until(&mut sim, &mut silence(), |s| {
        s.seen.reports.iter().any(|(_, r)| *r == Report::CodeSpoken)
    });
    sim.sip(
        Duration::from_millis(500),
        CallEvent::Ended(EndReason::RemoteHangup),
    );
    assert_eq!(sim.outcome(), Outcome::CodeSpoken);

    let mut sim = spoken_call();
    run_until(&mut sim, &mut silence(), |s| {
        reported(s, PromptKind::CodeIntro)
    });
    sim.sip(
        Duration::from_secs(3),
        CallEvent::Ended(EndReason::RemoteHangup),
    );
    assert_eq!(sim.outcome(), Outcome::HungUp);
    assert!(
        !sim.seen
            .reports
            .iter()
            .any(|(_, r)| *r == Report::CodeSpoken)
    );
}

/// Whether `text` shows a digit of a code: a prompt's digit name (`Digit8`) or a key's
/// (`D8`), or the code written out.
fn shows_digits(text: &str) -> bool {
    text.contains("Digit")
        || text.contains("836194")
        || (text.contains("47") && text.contains("KeypadCode("))
        || text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w.len() == 2 && w.starts_with('D') && w.as_bytes()[1].is_ascii_digit())
}

#[test]
fn the_codes_are_not_in_the_debug_of_the_call_or_its_reports() {
    assert_eq!(
        format!("{:?}", Confirmation::SpokenCode(CODE)),
        "SpokenCode"
    );
    assert_eq!(
        format!("{:?}", Confirmation::KeypadCode(SHOWN)),
        "KeypadCode"
    );
    // During the second reading: its digits are queued to be played.
    let mut sim = spoken_call();
    run_until(&mut sim, &mut silence(), |s| {
        reported(s, PromptKind::CodeAgain)
    });
    sim.run_for(Duration::from_millis(2500), &mut silence());
    let during = format!("{:?}", sim.vc);
    assert!(!shows_digits(&during), "{during}");
    sim.run_for(Duration::from_secs(60), &mut silence());
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.outcome, Outcome::CodeSpoken);
    for text in [
        format!("{:?}", sim.vc),
        format!("{f:?}"),
        format!("{:?}", sim.seen.reports),
    ] {
        assert!(!shows_digits(&text), "{text}");
    }

    let mut sim = keypad_call(cfg());
    let during = format!("{:?}", sim.vc);
    assert!(!shows_digits(&during), "{during}");
    sim.run_for(Duration::from_secs(40), &mut silence());
    assert!(!shows_digits(&format!(
        "{:?}",
        sim.seen.finished().unwrap()
    )));
}
