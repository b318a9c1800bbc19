//! The ITU-T Q.24 / ETSI ES 201 235-3 receiver limits, each on audio made here.

use dtmf::{Detector, Digit, DigitEvent};
use testaudio::{Signal, detect, detect_string, q24, samples};

#[test]
fn every_q24_case_holds() {
    let mut failures = Vec::new();
    let cases = q24::cases();
    for c in &cases {
        let got = detect_string(&c.audio);
        if got != c.expect {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                c.name, c.expect, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_portable_path_gives_the_same_events() {
    for c in q24::cases() {
        let run = |mut det: Detector| {
            let mut v: Vec<DigitEvent> = c
                .audio
                .chunks(160)
                .flat_map(|ch| det.push(ch).collect::<Vec<_>>())
                .collect();
            v.extend(det.finish());
            v
        };
        assert_eq!(
            run(Detector::new()),
            run(Detector::new().with_kernel(dtmf::Kernel::Portable)),
            "{}",
            c.name
        );
    }
}

#[test]
fn reported_times_are_within_10_ms_of_the_tone() {
    // Tones starting at every alignment to the 34-sample hop, several lengths.
    for on_ms in [40.0, 60.0, 100.0, 500.0] {
        for lead in 0..34 {
            let lead_ms = 100.0 + f64::from(lead) / 8.0;
            let s = Signal::new()
                .silence(lead_ms)
                .digit(Digit::Pound, -10.0, on_ms)
                .silence(100.0);
            let got = detect(&s.pcm());
            assert_eq!(got.len(), 1, "{on_ms} ms tone at {lead_ms} ms: {got:?}");
            let (d, start, end) = got[0];
            assert_eq!(d, Digit::Pound);
            let (t0, t1) = (samples(lead_ms) as i64, samples(lead_ms + on_ms) as i64);
            assert!(
                (start as i64 - t0).abs() <= 80,
                "start {start} vs {t0} ({on_ms} ms)"
            );
            assert!(
                (end as i64 - t1).abs() <= 80,
                "end {end} vs {t1} ({on_ms} ms)"
            );
        }
    }
}

#[test]
fn the_key_is_pressed_before_it_is_released() {
    let s = Signal::new()
        .silence(50.0)
        .digit(Digit::D0, -10.0, 300.0)
        .silence(100.0);
    let mut det = Detector::new();
    let events: Vec<_> = s
        .pcm()
        .chunks(160)
        .flat_map(|c| det.push(c).collect::<Vec<_>>())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let DigitEvent::Pressed {
        digit: Digit::D0,
        start,
    } = events[0]
    else {
        panic!("{events:?}")
    };
    // Reported once confirmed, long before the key is released.
    assert!(det.samples_seen() > start);
    assert!(matches!(
        events[1],
        DigitEvent::Released {
            digit: Digit::D0,
            ..
        }
    ));
}

#[test]
fn a_10_ms_interruption_does_not_split_a_digit() {
    let s = Signal::new()
        .silence(50.0)
        .digit(Digit::D7, -10.0, 60.0)
        .silence(10.0)
        .digit(Digit::D7, -10.0, 60.0)
        .silence(100.0);
    assert_eq!(detect_string(&s.pcm()), "7");
}

#[test]
fn a_held_key_is_released_by_finish() {
    let s = Signal::new().silence(50.0).digit(Digit::D9, -10.0, 200.0);
    let mut det = Detector::new();
    let n = det.push(&s.pcm()).count();
    assert_eq!(n, 1);
    assert_eq!(det.active(), Some(Digit::D9));
    let Some(DigitEvent::Released {
        digit: Digit::D9,
        end,
        ..
    }) = det.finish()
    else {
        panic!()
    };
    assert_eq!(end, s.pcm().len() as u64);
    assert_eq!(det.finish(), None);
}
