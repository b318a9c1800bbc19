//! The receiver cases of ITU-T Q.24 / ETSI ES 201 235-3 that callverify is held to, as
//! audio plus the digits a compliant receiver reports. The tests assert every case; the
//! benchmark runs the same list through spandsp for comparison.

use crate::{DtmfTone, Signal, g711_round_trip};
use dtmf::Digit;

/// Every key, in keypad order.
pub const KEYS: &str = "123A456B789C*0#D";

/// One receiver case.
#[derive(Clone, Debug)]
pub struct Case {
    /// What the case checks.
    pub name: String,
    /// 8 kHz audio.
    pub audio: Vec<i16>,
    /// The digits a compliant receiver reports, in order ("" = none).
    pub expect: String,
}

fn keys_with(tone: DtmfTone, on_ms: f64, off_ms: f64) -> Signal {
    let mut s = Signal::new().silence(off_ms);
    for ch in KEYS.chars() {
        s = s
            .dtmf(Digit::from_char(ch).unwrap(), tone, on_ms)
            .silence(off_ms);
    }
    s
}

fn case(name: impl Into<String>, s: &Signal, expect: &str) -> Case {
    Case {
        name: name.into(),
        audio: s.pcm(),
        expect: expect.to_string(),
    }
}

/// All cases.
pub fn cases() -> Vec<Case> {
    let nominal = DtmfTone::default();
    let mut v = Vec::new();

    v.push(case(
        "all 16 keys, -10 dBm0 per tone, 60 ms on / 60 ms off",
        &keys_with(nominal, 60.0, 60.0),
        KEYS,
    ));

    for (r, c) in [(1.5, 1.5), (1.5, -1.5), (-1.5, 1.5), (-1.5, -1.5)] {
        let t = DtmfTone {
            row_offset: r / 100.0,
            col_offset: c / 100.0,
            ..nominal
        };
        v.push(case(
            format!("offsets row {r:+}% col {c:+}%: accepted"),
            &keys_with(t, 60.0, 60.0),
            KEYS,
        ));
    }
    for (r, c) in [
        (3.5, 0.0),
        (-3.5, 0.0),
        (0.0, 3.5),
        (0.0, -3.5),
        (3.5, 3.5),
        (-3.5, -3.5),
    ] {
        let t = DtmfTone {
            row_offset: r / 100.0,
            col_offset: c / 100.0,
            ..nominal
        };
        v.push(case(
            format!("offsets row {r:+}% col {c:+}%: rejected"),
            &keys_with(t, 60.0, 60.0),
            "",
        ));
    }

    let normal = DtmfTone {
        row_dbm0: -10.0,
        col_dbm0: -18.0,
        ..nominal
    };
    v.push(case(
        "normal twist 8 dB (column 8 dB below row): accepted",
        &keys_with(normal, 60.0, 60.0),
        KEYS,
    ));
    let reverse = DtmfTone {
        row_dbm0: -14.0,
        col_dbm0: -10.0,
        ..nominal
    };
    v.push(case(
        "reverse twist 4 dB (row 4 dB below column): accepted",
        &keys_with(reverse, 60.0, 60.0),
        KEYS,
    ));

    let level = |dbm0| DtmfTone {
        row_dbm0: dbm0,
        col_dbm0: dbm0,
        ..nominal
    };
    v.push(case(
        "-25 dBm0 per tone: accepted",
        &keys_with(level(-25.0), 60.0, 60.0),
        KEYS,
    ));
    v.push(case(
        "-3 dBm0 per tone: accepted",
        &keys_with(level(-3.0), 60.0, 60.0),
        KEYS,
    ));
    v.push(case(
        "-45 dBm0 per tone: below the floor, rejected",
        &keys_with(level(-45.0), 60.0, 60.0),
        "",
    ));

    v.push(case(
        "40 ms tones, 60 ms pauses: accepted",
        &keys_with(nominal, 40.0, 60.0),
        KEYS,
    ));
    v.push(case(
        "20 ms tones: rejected",
        &keys_with(nominal, 20.0, 60.0),
        "",
    ));

    let doubled: String = KEYS.chars().flat_map(|c| [c, c]).collect();
    let mut pairs = Signal::new().silence(60.0);
    for ch in KEYS.chars() {
        let d = Digit::from_char(ch).unwrap();
        pairs = pairs
            .digit(d, -10.0, 60.0)
            .silence(40.0)
            .digit(d, -10.0, 60.0)
            .silence(100.0);
    }
    v.push(case(
        "each key twice with a 40 ms pause: two digits",
        &pairs,
        &doubled,
    ));
    let hash = Signal::new()
        .silence(60.0)
        .digits("#", -10.0, 50.0, 40.0)
        .digits("#", -10.0, 50.0, 100.0);
    v.push(case("\"##\" with a 40 ms gap: two digits", &hash, "##"));

    // The SNR is taken against the power of one key's two tones (each at -10 dBm0).
    let tone_power = Signal::new().digit(Digit::D5, -10.0, 1000.0).power();
    let tones = keys_with(nominal, 60.0, 60.0);
    for seed in 1..=3 {
        let noisy = tones.clone().with_noise(tone_power, 15.0, seed);
        v.push(case(
            format!("15 dB SNR white noise, seed {seed}: accepted"),
            &noisy,
            KEYS,
        ));
    }
    let noise = Signal::new()
        .silence(5000.0)
        .with_noise(tone_power, 15.0, 99);
    v.push(case("white noise alone (5 s): nothing", &noise, ""));

    let uncoded = v.clone();
    for codec in [media::Codec::Pcmu, media::Codec::Pcma] {
        let base: Vec<Case> = uncoded
            .iter()
            .filter(|c| {
                c.name.starts_with("all 16")
                    || c.name.starts_with("offsets")
                    || c.name.contains("twist")
                    || c.name.starts_with("-25")
                    || c.name.starts_with("40 ms")
                    || c.name.starts_with("20 ms")
                    || c.name.contains("seed 1")
            })
            .cloned()
            .collect();
        for c in base {
            v.push(Case {
                name: format!("{} via G.711 {}", c.name, codec.name()),
                audio: g711_round_trip(&c.audio, codec),
                expect: c.expect,
            });
        }
    }
    v
}
