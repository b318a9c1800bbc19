//! Talk-off: no digit at all in ten minutes and more of English and Japanese speech from
//! espeak-ng (several voices and speeds), alone, mixed with music-like chords, and after
//! G.711; nor in the gateway's own prompts.

use testaudio::{RATE, Signal, chords, detect, g711_round_trip, speech};

fn speech() -> Vec<i16> {
    let s = speech::talk_off_corpus().expect("speech corpus (needs espeak-ng and sox)");
    let minutes = s.len() as f64 / f64::from(RATE) / 60.0;
    assert!(minutes >= 10.0, "only {minutes:.1} minutes of speech");
    s
}

fn assert_silent(what: &str, pcm: &[i16]) {
    let found = detect(pcm);
    let minutes = pcm.len() as f64 / f64::from(RATE) / 60.0;
    assert!(
        found.is_empty(),
        "{what} ({minutes:.1} min) talked off: {found:?}"
    );
}

#[test]
fn speech_alone() {
    assert_silent("speech", &speech());
}

#[test]
fn speech_with_chords() {
    let s = speech();
    let as_f64: Vec<f64> = s.iter().map(|&v| f64::from(v)).collect();
    let music = chords(s.len() as f64 * 1000.0 / f64::from(RATE), 450.0, -14.0, 7);
    let mixed = Signal(as_f64).mix(&music, 1.0).pcm();
    assert_silent("speech with chords", &mixed);
    assert_silent("chords alone", &Signal(music).pcm());
}

#[test]
fn speech_after_g711() {
    let s = speech();
    assert_silent("speech via PCMU", &g711_round_trip(&s, media::Codec::Pcmu));
    assert_silent("speech via PCMA", &g711_round_trip(&s, media::Codec::Pcma));
}

#[test]
fn the_prompts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prompts");
    let lib = media::PromptLibrary::load(&dir, &media::Language::ALL).unwrap();
    for lang in media::Language::ALL {
        for kind in media::PromptKind::ALL {
            assert_silent(
                &format!("prompt {lang:?}/{kind:?}"),
                lib.get(lang, kind).unwrap().samples(),
            );
        }
    }
}
