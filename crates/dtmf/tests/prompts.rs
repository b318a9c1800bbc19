//! Talk-off on the gateway's own prompts, every kind in every language: the detector hears
//! them as the call's echo (the prompt coming back from the far end while a key is awaited),
//! so none of them, nor a spoken code as the call joins it, may look like a key. Checked with
//! the default limits and with a detector 10 dB more sensitive (its level floor at -43 dBm0
//! instead of -33), at the recorded level and 10 dB down, and after G.711.
//!
//! `talk_off_of_a_candidate` (ignored) measures a folder of candidate prompts the same way;
//! `prompts/make_prompts.py --compare` says how (it compared espeak-ng with Piper).

use std::path::{Path, PathBuf};

use dtmf::{Detector, Digit, DigitEvent, Limits};
use media::{Codec, Language, PromptKind, PromptLibrary};
use testaudio::{DtmfTone, Signal, g711_round_trip, samples};

/// The level floor of the more sensitive detector, 10 dB under the default.
const SENSITIVE_FLOOR_DBM0: f32 = -43.0;

fn prompts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prompts")
}

fn default_limits() -> Limits {
    Limits::default()
}

fn sensitive_limits() -> Limits {
    Limits {
        min_level_dbm0: SENSITIVE_FLOOR_DBM0,
        ..Limits::default()
    }
}

/// The digits `limits` finds in `pcm`, fed as 20 ms packets.
fn detect(pcm: &[i16], limits: Limits) -> Vec<Digit> {
    let mut det = Detector::with_limits(limits);
    let mut out = Vec::new();
    let mut take = |e: DigitEvent| {
        if let DigitEvent::Released { digit, .. } = e {
            out.push(digit);
        }
    };
    for chunk in pcm.chunks(160) {
        det.push(chunk).for_each(&mut take);
    }
    det.finish().into_iter().for_each(&mut take);
    out
}

/// `pcm` made `db` louder (negative: quieter).
fn scaled(pcm: &[i16], db: f64) -> Vec<i16> {
    let gain = 10f64.powf(db / 20.0);
    Signal(pcm.iter().map(|&s| f64::from(s) * gain).collect()).pcm()
}

/// Every way the prompt is heard: as recorded, 10 dB down, after PCMU and PCMA.
fn variants(pcm: &[i16]) -> Vec<(&'static str, Vec<i16>)> {
    vec![
        ("as recorded", pcm.to_vec()),
        ("10 dB down", scaled(pcm, -10.0)),
        ("via PCMU", g711_round_trip(pcm, Codec::Pcmu)),
        ("via PCMA", g711_round_trip(pcm, Codec::Pcma)),
        (
            "10 dB down via PCMU",
            g711_round_trip(&scaled(pcm, -10.0), Codec::Pcmu),
        ),
    ]
}

/// The false digits in every prompt of `languages` under `dir`, one line per finding.
fn false_digits(dir: &Path, languages: &[Language]) -> (usize, Vec<String>) {
    let lib = PromptLibrary::load(dir, languages).expect("the prompts load");
    let mut checked = 0;
    let mut found = Vec::new();
    for &lang in languages {
        for kind in PromptKind::ALL {
            let prompt = lib.get(lang, kind).expect("every kind is loaded");
            for (how, pcm) in variants(prompt.samples()) {
                for (which, limits) in [
                    ("default", default_limits()),
                    ("-43 dBm0", sensitive_limits()),
                ] {
                    checked += 1;
                    let digits = detect(&pcm, limits);
                    if !digits.is_empty() {
                        found.push(format!("{lang:?}/{kind:?} {how}, {which}: {digits:?}"));
                    }
                }
            }
        }
    }
    (checked, found)
}

#[test]
fn no_prompt_talks_off_in_any_language() {
    let (checked, found) = false_digits(&prompts_dir(), &Language::ALL);
    // 22 kinds x 2 languages x 5 ways x 2 detectors.
    assert_eq!(checked, PromptKind::ALL.len() * Language::ALL.len() * 5 * 2);
    assert!(found.is_empty(), "talk-off: {found:#?}");
}

/// A spoken code as the call plays it: the intro, six digits with silence between, again,
/// the outro; and every digit once, so that each pair of neighbours meets somewhere.
fn spoken_code(lib: &PromptLibrary, lang: Language, code: &[u8]) -> Vec<i16> {
    let get = |kind| lib.get(lang, kind).expect("every kind is loaded");
    let gap = vec![0i16; samples(300.0)];
    let mut pcm = Vec::new();
    for intro in [PromptKind::CodeIntro, PromptKind::CodeAgain] {
        pcm.extend_from_slice(get(intro).samples());
        for &d in code {
            pcm.extend_from_slice(&gap);
            let digit = PromptKind::digit(d).expect("a digit 0-9");
            pcm.extend_from_slice(get(digit).samples());
        }
        pcm.extend_from_slice(&gap);
    }
    pcm.extend_from_slice(get(PromptKind::CodeOutro).samples());
    pcm
}

#[test]
fn a_spoken_code_as_the_call_joins_it_talks_off_nothing() {
    let lib = PromptLibrary::load(&prompts_dir(), &Language::ALL).expect("the prompts load");
    let codes: [&[u8]; 3] = [
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        &[9, 7, 5, 3, 1, 8, 6, 4, 2, 0],
        &[1, 1, 0, 0, 9, 9],
    ];
    for lang in Language::ALL {
        for code in codes {
            let pcm = spoken_code(&lib, lang, code);
            for (how, heard) in variants(&pcm) {
                for limits in [default_limits(), sensitive_limits()] {
                    let digits = detect(&heard, limits);
                    assert!(
                        digits.is_empty(),
                        "{lang:?} code {code:?} {how} ({} dBm0 floor): {digits:?}",
                        limits.min_level_dbm0
                    );
                }
            }
        }
    }
}

/// The other half of the same property: a real key pressed while a prompt echoes back at
/// -10 dB is still heard (the prompts do not mask DTMF), so a detector that simply heard
/// nothing would fail here.
#[test]
fn a_key_over_the_prompts_echo_is_still_heard() {
    let lib = PromptLibrary::load(&prompts_dir(), &Language::ALL).expect("the prompts load");
    for lang in Language::ALL {
        for kind in PromptKind::ALL {
            let echo = scaled(lib.get(lang, kind).expect("loaded").samples(), -10.0);
            // In the middle of the prompt, where even a digit is speaking.
            let at = echo.len() / 2;
            let key = Signal::new().silence(at as f64 * 1000.0 / 8000.0).dtmf(
                Digit::Pound,
                DtmfTone::default(),
                80.0,
            );
            let echo_f64: Vec<f64> = echo.iter().map(|&s| f64::from(s)).collect();
            let heard = key.mix(&echo_f64, 1.0).pcm();
            assert_eq!(
                detect(&heard, default_limits()),
                vec![Digit::Pound],
                "{lang:?}/{kind:?}: '#' at -10 dBm0 over the prompt's echo"
            );
        }
    }
}

/// Measures the candidate prompts in `$CALLVERIFY_PROMPTS_DIR/en` (see make_prompts.py).
#[test]
#[ignore = "measures candidate prompts made by prompts/make_prompts.py --compare"]
fn talk_off_of_a_candidate() {
    let Some(dir) = std::env::var_os("CALLVERIFY_PROMPTS_DIR") else {
        panic!("set CALLVERIFY_PROMPTS_DIR to a folder holding en/<name>.wav");
    };
    let (checked, found) = false_digits(Path::new(&dir), &[Language::En]);
    println!(
        "{}: {checked} runs of the detector, {} false digits",
        Path::new(&dir).display(),
        found.len()
    );
    for line in &found {
        println!("  {line}");
    }
    // The margin: a receiver far laxer than any that could pass Q.24 (half the tone share,
    // half the group margin, 5 % off frequency), to show how near each engine comes.
    let lax = Limits {
        min_tone_share: 0.35,
        min_group_margin_db: 3.0,
        max_freq_deviation: 0.05,
        ..sensitive_limits()
    };
    let lib = PromptLibrary::load(Path::new(&dir), &[Language::En]).expect("the prompts load");
    let mut near = Vec::new();
    for kind in PromptKind::ALL {
        let pcm = lib.get(Language::En, kind).expect("loaded");
        let digits = detect(pcm.samples(), lax);
        if !digits.is_empty() {
            near.push(format!("{kind:?}: {digits:?}"));
        }
    }
    println!(
        "with a lax receiver: {} prompts talk off {near:?}",
        near.len()
    );
}
