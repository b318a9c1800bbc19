//! The confirmation modes end to end against baresip, a real softphone: number matching
//! with in-band keys from a WAV made per test (the right code then '#', a wrong code, the
//! code without '#', '#' alone, '0#'), and a spoken code read to a phone that answers as a
//! person does (what baresip recorded is matched against the digit prompts, in order) or
//! as an answering machine does (it never hears a digit).

use std::path::Path;
use std::time::Duration;

use callverify_e2e::{
    BOUND, Baresip, CODE, KEY_AT_MS, SHOWN, V4, code_readings, endpoint, free_rtp_pair, keys_wav,
    media_at, pcm_wav, prompts, prompts_heard, script, times_played, trunk, verify_call_confirming,
};
use dtmf::Digit;
use engine::call::KeySource;
use engine::{Confirmation, Outcome, Report};
use media::{Language, PromptKind};
use sip::Transport;
use store::ChallengeState;
use testaudio::Signal;

/// The prompts that may be heard whole in a number-matching call.
const KEYPAD_PROMPTS: [PromptKind; 7] = [
    PromptKind::Greeting,
    PromptKind::KeypadInstructions,
    PromptKind::Verified,
    PromptKind::WrongCode,
    PromptKind::Denied,
    PromptKind::FraudReported,
    PromptKind::NoInputGoodbye,
];

/// One call to baresip saying `wav`, confirmed as `confirmation` says: the report, what the
/// call reported as it went, and what baresip heard. baresip lives for `lifetime`, and the
/// call is bounded a little longer than its script's `call_timeout`.
async fn call(
    name: &str,
    wav: &Path,
    lang: Language,
    script: engine::ScriptConfig,
    confirmation: Confirmation,
    lifetime: Duration,
) -> (engine::CallReport, Vec<Report>, Vec<i16>) {
    let phone = Baresip::start_saying_for(name, wav, lifetime);
    let ep = endpoint(
        V4,
        BOUND,
        vec![trunk("softphone", Transport::Udp, phone.addr)],
    )
    .await;
    let media = media_at(V4, free_rtp_pair(V4));
    let bound = script.call_timeout + Duration::from_secs(10);
    let (r, reports) = verify_call_confirming(&ep, &media, script, lang, confirmation, bound).await;
    ep.shutdown().await;
    let heard = phone.heard();
    assert!(
        !heard.is_empty(),
        "baresip recorded nothing\n{}",
        phone.log()
    );
    (r, reports, heard)
}

/// A number-matching call in `lang` to baresip pressing `keys` in band from [`KEY_AT_MS`]
/// (while the instructions play), its WAV long enough for any closing prompt.
async fn keypad(
    name: &str,
    keys: &[Digit],
    lang: Language,
    script: engine::ScriptConfig,
) -> (engine::CallReport, Vec<Report>, Vec<PromptKind>) {
    let wav = keys_wav(
        &format!("{name}-wav"),
        keys,
        KEY_AT_MS,
        KEY_AT_MS + 16_000.0,
    );
    let (r, reports, heard) = call(
        name,
        &wav,
        lang,
        script,
        Confirmation::KeypadCode(SHOWN),
        BOUND,
    )
    .await;
    let whole = prompts_heard(&heard, &prompts(lang), &KEYPAD_PROMPTS)
        .into_iter()
        .map(|h| h.1)
        .collect();
    (r, reports, whole)
}

fn pressed(r: &engine::CallReport) -> String {
    r.keys.iter().map(|k| k.digit).collect()
}

#[tokio::test]
async fn keypad_the_shown_code_in_band_then_pound_approves_in_both_languages() {
    for (lang, name) in [
        (Language::Ja, "keypad-right-ja"),
        (Language::En, "keypad-right-en"),
    ] {
        let (r, _, heard) =
            keypad(name, &[Digit::D4, Digit::D7, Digit::Pound], lang, script()).await;
        assert_eq!(r.outcome, Outcome::Approved, "{lang:?}: {r:?}");
        assert_eq!(
            (r.confirmation, r.code_matched),
            ("keypad_code", Some(true))
        );
        assert_eq!(pressed(&r), "47#");
        assert!(
            r.keys.iter().all(|k| k.source == KeySource::InBand),
            "{r:?}"
        );
        // The instructions were cut by the first key (barge-in); "verified" was heard whole.
        assert_eq!(
            heard,
            [PromptKind::Greeting, PromptKind::Verified],
            "{lang:?}: {r:?}"
        );
    }
}

#[tokio::test]
async fn keypad_a_wrong_code_in_band_then_pound_is_denied_as_wrong_code() {
    let keys = [Digit::D7, Digit::D4, Digit::Pound];
    let (r, _, heard) = keypad("keypad-wrong", &keys, Language::Ja, script()).await;
    assert_eq!(r.outcome, Outcome::WrongCode, "{r:?}");
    assert_eq!(r.outcome.state(), ChallengeState::Denied);
    assert_eq!(r.outcome.reason(), Some("wrong_code"));
    assert_eq!(r.code_matched, Some(false), "{r:?}");
    assert_eq!(pressed(&r), "74#");
    assert_eq!(
        heard,
        [PromptKind::Greeting, PromptKind::WrongCode],
        "{r:?}"
    );
}

#[tokio::test]
async fn keypad_the_code_in_band_without_pound_is_no_input() {
    let keys = [Digit::D4, Digit::D7];
    let (r, _, heard) = keypad("keypad-no-pound", &keys, Language::Ja, script()).await;
    assert_eq!(r.outcome, Outcome::NoInput, "{r:?}");
    assert_eq!(r.code_matched, None, "{r:?}");
    assert_eq!(pressed(&r), "47");
    assert_eq!(
        heard,
        [PromptKind::Greeting, PromptKind::NoInputGoodbye],
        "{r:?}"
    );
}

/// '#' alone is not enough: the instructions play again, and with no code after them the
/// call ends as no input.
#[tokio::test]
async fn keypad_pound_alone_in_band_asks_again_and_ends_as_no_input() {
    let twice = engine::ScriptConfig {
        repeats: 2,
        ..script()
    };
    let (r, reports, heard) =
        keypad("keypad-pound-alone", &[Digit::Pound], Language::Ja, twice).await;
    assert_eq!(r.outcome, Outcome::NoInput, "{r:?}");
    assert_eq!(r.code_matched, None, "{r:?}");
    assert_eq!(pressed(&r), "#");
    assert_eq!(
        times_played(&reports, PromptKind::KeypadInstructions),
        2,
        "{reports:?}"
    );
    assert_eq!(
        heard,
        [PromptKind::Greeting, PromptKind::NoInputGoodbye],
        "{r:?}"
    );
}

#[tokio::test]
async fn keypad_zero_then_pound_in_band_reports_fraud() {
    let keys = [Digit::D0, Digit::Pound];
    let (r, _, heard) = keypad("keypad-fraud", &keys, Language::Ja, script()).await;
    assert_eq!(r.outcome, Outcome::FraudReported, "{r:?}");
    assert_eq!(r.code_matched, None, "{r:?}");
    assert_eq!(pressed(&r), "0#");
    assert_eq!(
        heard,
        [PromptKind::Greeting, PromptKind::FraudReported],
        "{r:?}"
    );
}

/// The script of a spoken-code call, with room for the whole reading (the Japanese one,
/// greeting to goodbye, is about 32 s).
fn spoken_script() -> engine::ScriptConfig {
    engine::ScriptConfig {
        call_timeout: Duration::from_secs(50),
        ..script()
    }
}

/// A phone that answers as a person does: a short "hello" 400 ms after the answer, then
/// silence for `total_ms` in all.
fn hello_wav(name: &str, lang: Language, total_ms: f64) -> std::path::PathBuf {
    let hello = match lang {
        Language::Ja => testaudio::speech::speak("ja", 160, "もしもし"),
        Language::En => testaudio::speech::speak("en-us", 160, "Hello?"),
    }
    .expect("espeak-ng and sox");
    let hello_ms = hello.len() as f64 / 8.0;
    assert!(hello_ms < 1500.0, "a hello of {hello_ms} ms");
    let pcm = Signal::new()
        .silence(400.0)
        .then(&Signal::from_pcm(&hello))
        .silence(total_ms - 400.0 - hello_ms)
        .pcm();
    pcm_wav(name, &pcm)
}

/// A person answers ("hello", then silence): detection says "human", the code is read
/// twice, digit by digit, and the call ends as `code_spoken`. What the phone recorded
/// holds the code's six digit prompts in order, twice, and only those; the same matcher
/// refuses the recording for a code with two digits swapped, or another code.
async fn a_person_hears_the_code_twice_in_order(lang: Language, name: &str) {
    let script = spoken_script();
    let wav = hello_wav(
        &format!("{name}-wav"),
        lang,
        script.call_timeout.as_millis() as f64 + 5000.0,
    );
    let (r, reports, heard) = call(
        name,
        &wav,
        lang,
        script,
        Confirmation::SpokenCode(CODE),
        Duration::from_secs(70),
    )
    .await;
    assert_eq!(r.outcome, Outcome::CodeSpoken, "{lang:?}: {r:?}");
    assert_eq!(r.outcome.state(), ChallengeState::CodeSpoken);
    assert_eq!((r.confirmation, r.code_matched), ("spoken_code", None));
    assert!(r.keys.is_empty(), "{r:?}");
    assert_eq!(
        reports.iter().filter(|x| **x == Report::CodeSpoken).count(),
        1,
        "{reports:?}"
    );
    // The call's reports never carry a digit of the code.
    assert!(
        !reports
            .iter()
            .any(|x| matches!(x, Report::Prompt(k) if PromptKind::DIGITS.contains(k))),
        "{reports:?}"
    );
    let p = prompts(lang);
    assert_eq!(code_readings(&heard, &p, &CODE), Ok(2), "{lang:?}: {r:?}");
    // The negative checks of the matcher, on the same recording.
    let swapped = [CODE[0], CODE[1], CODE[2], CODE[3], CODE[5], CODE[4]];
    let refused = code_readings(&heard, &p, &swapped);
    assert!(refused.is_err(), "{lang:?}: swapped digits: {refused:?}");
    let other = [
        Digit::D8,
        Digit::D3,
        Digit::D6,
        Digit::D1,
        Digit::D9,
        Digit::D4,
    ];
    let refused = code_readings(&heard, &p, &other);
    assert!(refused.is_err(), "{lang:?}: another code: {refused:?}");
    assert!(
        code_readings(&heard, &p, &CODE[..5]).is_err(),
        "{lang:?}: five digits of six"
    );
    // Around the readings: the greeting before, the outro and goodbye after, all whole.
    let frame = [
        PromptKind::Greeting,
        PromptKind::CodeIntro,
        PromptKind::CodeAgain,
        PromptKind::CodeOutro,
        PromptKind::Goodbye,
    ];
    let kinds: Vec<PromptKind> = prompts_heard(&heard, &p, &frame)
        .into_iter()
        .map(|h| h.1)
        .collect();
    assert_eq!(kinds, frame, "{lang:?}: {r:?}");
    eprintln!(
        "{lang:?}: the code was heard twice in order; call of {} ms",
        r.timings.duration_ms
    );
}

#[tokio::test]
async fn spoken_code_a_person_hears_the_code_twice_in_order_in_japanese() {
    a_person_hears_the_code_twice_in_order(Language::Ja, "spoken-human-ja").await;
}

#[tokio::test]
async fn spoken_code_a_person_hears_the_code_twice_in_order_in_english() {
    a_person_hears_the_code_twice_in_order(Language::En, "spoken-human-en").await;
}

/// An answering machine answers (a long recorded greeting): the call ends as voicemail,
/// and what the machine recorded holds the greeting and not one digit of the code, nor the
/// words that introduce it.
#[tokio::test]
async fn spoken_code_voicemail_never_hears_a_digit() {
    let greeting = testaudio::speech::voicemail_greeting().expect("espeak-ng and sox");
    let pcm = Signal::from_pcm(&greeting).silence(15_000.0).pcm();
    let wav = pcm_wav("spoken-voicemail-wav", &pcm);
    for lang in [Language::En, Language::Ja] {
        let (r, reports, heard) = call(
            &format!("spoken-voicemail-{lang:?}"),
            &wav,
            lang,
            spoken_script(),
            Confirmation::SpokenCode(CODE),
            BOUND,
        )
        .await;
        assert_eq!(r.outcome, Outcome::Voicemail, "{lang:?}: {r:?}");
        assert!(!reports.contains(&Report::CodeSpoken), "{reports:?}");
        let p = prompts(lang);
        let mut code_prompts = vec![PromptKind::CodeIntro, PromptKind::CodeAgain];
        code_prompts.extend(PromptKind::DIGITS);
        let found = prompts_heard(&heard, &p, &code_prompts);
        assert!(found.is_empty(), "{lang:?}: heard {found:?}");
        assert_eq!(code_readings(&heard, &p, &CODE), Ok(0));
        // The recording is good enough to find a prompt in: the greeting is there.
        let greeting = prompts_heard(&heard, &p, &[PromptKind::Greeting]);
        assert_eq!(greeting.len(), 1, "{lang:?}");
    }
}

/// A reading as a phone records it: the intro, 400 ms, the digits 360 ms apart (PCMU
/// decoded), then `after` applied to the samples.
fn recorded_reading(lang: Language, code: &[Digit]) -> Vec<i16> {
    let p = prompts(lang);
    let decoded = |kind: PromptKind| -> Vec<i16> {
        let frames = p.get(kind).frames(media::Codec::Pcmu);
        let mut out = vec![0i16; frames.len() * 160];
        for (f, chunk) in frames.iter().zip(out.chunks_mut(160)) {
            media::Codec::Pcmu.decode_into(f, chunk);
        }
        out
    };
    let mut pcm = vec![0i16; 8000];
    for (n, intro) in [PromptKind::CodeIntro, PromptKind::CodeAgain]
        .into_iter()
        .enumerate()
    {
        if n > 0 {
            pcm.extend(vec![0i16; 8000]);
        }
        pcm.extend(decoded(intro));
        pcm.extend(vec![0i16; 3200]);
        for (i, d) in code.iter().enumerate() {
            if i > 0 {
                pcm.extend(vec![0i16; 2880]);
            }
            pcm.extend(decoded(PromptKind::digit(d.event_code()).unwrap()));
        }
    }
    pcm.extend(vec![0i16; 8000]);
    pcm
}

/// The matcher, without a peer: a frame of silence inserted in a digit, or a frame of one
/// dropped (what a jitter buffer does with a late packet), still reads the code; 100 ms of
/// a digit lost, the digits swapped, or another code does not.
#[test]
fn the_code_matcher_tolerates_a_frame_inserted_or_dropped_but_not_a_wrong_digit() {
    for lang in [Language::En, Language::Ja] {
        let p = prompts(lang);
        let clean = recorded_reading(lang, &CODE);
        assert_eq!(code_readings(&clean, &p, &CODE), Ok(2), "{lang:?}");
        // Where the third digit of the second reading is: in the middle of it.
        let spans = prompts_heard(&clean, &p, &PromptKind::DIGITS);
        assert_eq!(spans.len(), 12, "{lang:?}: {spans:?}");
        let mid = spans[8].0 + 1600;
        let mut inserted = clean.clone();
        inserted.splice(mid..mid, vec![0i16; 160]);
        assert_eq!(
            code_readings(&inserted, &p, &CODE),
            Ok(2),
            "{lang:?} inserted"
        );
        let mut dropped = clean.clone();
        dropped.drain(mid..mid + 160);
        assert_eq!(
            code_readings(&dropped, &p, &CODE),
            Ok(2),
            "{lang:?} dropped"
        );
        // 100 ms of the digit lost (its voiced part is 210 ms in Japanese).
        let mut cut = clean.clone();
        cut[spans[8].0 + 400..spans[8].0 + 1200].fill(0);
        assert!(code_readings(&cut, &p, &CODE).is_err(), "{lang:?} cut");
        let swapped = [CODE[0], CODE[1], CODE[3], CODE[2], CODE[4], CODE[5]];
        assert!(code_readings(&clean, &p, &swapped).is_err(), "{lang:?}");
        let other = recorded_reading(lang, &swapped);
        assert!(code_readings(&other, &p, &CODE).is_err(), "{lang:?}");
        assert_eq!(code_readings(&other, &p, &swapped), Ok(2), "{lang:?}");
    }
}
