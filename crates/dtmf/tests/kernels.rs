//! Every code path of the in-band receiver (portable, AVX2+FMA, AVX-512 where the CPU has
//! them) reports the same events, at the same sample positions, on the Q.24 cases, the
//! talk-off speech (alone, with chords, after G.711) and on borderline tones over speech.

use dtmf::{Detector, Digit, DigitEvent, Kernel};
use testaudio::{DtmfTone, Rng, Signal, chords, g711_round_trip, q24, speech};

/// Every event of `pcm` fed in 160-sample chunks, the last key released by `finish`.
fn events(kernel: Kernel, pcm: &[i16]) -> Vec<DigitEvent> {
    let mut det = Detector::new().with_kernel(kernel);
    assert_eq!(det.kernel(), kernel);
    let mut v: Vec<DigitEvent> = Vec::new();
    for chunk in pcm.chunks(160) {
        v.extend(det.push(chunk));
    }
    v.extend(det.finish());
    v
}

/// Asserts that every available kernel gives the portable kernel's events on `pcm`.
fn assert_same(what: &str, pcm: &[i16]) -> usize {
    let reference = events(Kernel::Portable, pcm);
    for &k in Kernel::available() {
        assert_eq!(
            events(k, pcm),
            reference,
            "{what}: {k:?} differs from portable"
        );
    }
    reference.len()
}

/// Random keys near every limit (level, twist, frequency offset, duration, gap) over speech
/// and noise: many windows decided near a threshold, where rounding differences would show.
fn borderline(speech: &[i16], seed: u64) -> Vec<i16> {
    let mut rng = Rng::new(seed);
    let mut s = Signal::new().silence(50.0);
    for _ in 0..400 {
        let digit = Digit::from_char(
            q24::KEYS
                .chars()
                .nth((rng.next_u64() % 16) as usize)
                .expect("16 keys"),
        )
        .expect("keypad character");
        let row_dbm0 = -38.0 + 36.0 * rng.uniform();
        let tone = DtmfTone {
            row_dbm0,
            col_dbm0: row_dbm0 - 10.0 + 18.0 * rng.uniform(),
            row_offset: 0.045 * (2.0 * rng.uniform() - 1.0),
            col_offset: 0.045 * (2.0 * rng.uniform() - 1.0),
        };
        s = s
            .dtmf(digit, tone, 15.0 + 75.0 * rng.uniform())
            .silence(10.0 + 70.0 * rng.uniform());
    }
    let n = s.0.len().min(speech.len());
    let talk: Vec<f64> = speech[..n].iter().map(|&v| f64::from(v)).collect();
    let power = s.power();
    s.mix(&talk, 0.3 * rng.uniform())
        .with_noise(power, 10.0 + 20.0 * rng.uniform(), seed)
        .pcm()
}

#[test]
fn the_kernels_are_listed() {
    assert_eq!(Kernel::available()[0], Kernel::Portable);
    assert!(Kernel::available().contains(&Detector::new().kernel()));
    assert_eq!(Kernel::best(), *Kernel::available().last().unwrap());
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        assert_eq!(Kernel::Avx2.is_available(), avx2);
    }
}

#[test]
fn every_kernel_gives_the_same_events_on_the_q24_cases() {
    for c in q24::cases() {
        assert_same(&c.name, &c.audio);
    }
}

#[test]
fn every_kernel_gives_the_same_events_on_the_talk_off_corpus() {
    let s = speech::talk_off_corpus().expect("speech corpus (needs espeak-ng and sox)");
    assert_same("speech", &s);
    let as_f64: Vec<f64> = s.iter().map(|&v| f64::from(v)).collect();
    let music = chords(s.len() as f64 / 8.0, 450.0, -14.0, 7);
    assert_same("speech with chords", &Signal(as_f64).mix(&music, 1.0).pcm());
    assert_same("chords alone", &Signal(music).pcm());
    assert_same("speech via PCMU", &g711_round_trip(&s, media::Codec::Pcmu));
}

#[test]
fn every_kernel_gives_the_same_events_on_borderline_keys() {
    let s = speech::talk_off_corpus().expect("speech corpus (needs espeak-ng and sox)");
    let mut total = 0;
    for seed in 1..=8 {
        total += assert_same(
            &format!("borderline keys, seed {seed}"),
            &borderline(&s, seed),
        );
    }
    // Enough keys pass (and enough fail) for the comparison to mean something.
    assert!(total > 300, "only {total} events");
}
