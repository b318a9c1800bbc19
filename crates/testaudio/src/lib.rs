//! Deterministic test audio for callverify's tests and benchmarks: DTMF tones at given
//! levels and offsets, seeded white noise, music-like chords, espeak-ng speech, and the
//! ITU-T Q.24 / ETSI ES 201 235-3 receiver cases as a list that both the tests and the
//! benchmark (against spandsp) run.
//!
//! Nothing here is used by the gateway itself.

pub mod q24;
pub mod speech;

use dtmf::Digit;

/// Samples per second of all generated audio.
pub const RATE: u32 = 8000;
/// 0 dBm0 as a sine's peak amplitude in 16-bit linear PCM (3.14 dB below full scale).
pub const DBM0_PEAK: f64 = 22_827.0;

/// Peak amplitude of a sine at `dbm0`.
pub fn amplitude(dbm0: f64) -> f64 {
    DBM0_PEAK * 10f64.powf(dbm0 / 20.0)
}

/// Number of samples in `ms` milliseconds.
pub fn samples(ms: f64) -> usize {
    (ms * f64::from(RATE) / 1000.0).round() as usize
}

/// A small seeded PRNG (SplitMix64): the same seed gives the same audio everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn gaussian(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A floating-point signal being built, converted to 16-bit at the end.
#[derive(Clone, Debug, Default)]
pub struct Signal(pub Vec<f64>);

impl Signal {
    /// An empty signal.
    pub fn new() -> Self {
        Signal(Vec::new())
    }

    /// A signal holding these 16-bit samples.
    pub fn from_pcm(pcm: &[i16]) -> Self {
        Signal(pcm.iter().map(|&s| f64::from(s)).collect())
    }

    /// Appends `ms` of silence.
    pub fn silence(mut self, ms: f64) -> Self {
        self.0.extend(std::iter::repeat_n(0.0, samples(ms)));
        self
    }

    /// Appends a sum of sines `(hz, dbm0)` lasting `ms`, starting at phase 0.
    pub fn tones(mut self, tones: &[(f64, f64)], ms: f64) -> Self {
        let n = samples(ms);
        for i in 0..n {
            let t = i as f64 / f64::from(RATE);
            self.0.push(
                tones
                    .iter()
                    .map(|&(hz, dbm0)| {
                        amplitude(dbm0) * (2.0 * std::f64::consts::PI * hz * t).sin()
                    })
                    .sum(),
            );
        }
        self
    }

    /// Appends the DTMF tones of `digit` with each tone at `dbm0` (no twist, no offset).
    pub fn digit(self, digit: Digit, dbm0: f64, ms: f64) -> Self {
        self.dtmf(
            digit,
            DtmfTone {
                row_dbm0: dbm0,
                col_dbm0: dbm0,
                ..DtmfTone::default()
            },
            ms,
        )
    }

    /// Appends `digit` with explicit levels and frequency offsets.
    pub fn dtmf(self, digit: Digit, tone: DtmfTone, ms: f64) -> Self {
        let (r, c) = digit.frequencies();
        self.tones(
            &[
                (f64::from(r) * (1.0 + tone.row_offset), tone.row_dbm0),
                (f64::from(c) * (1.0 + tone.col_offset), tone.col_dbm0),
            ],
            ms,
        )
    }

    /// Appends a string of keypad characters, each `on_ms` long with `off_ms` between.
    pub fn digits(mut self, keys: &str, dbm0: f64, on_ms: f64, off_ms: f64) -> Self {
        for ch in keys.chars() {
            let d = Digit::from_char(ch).expect("keypad character");
            self = self.digit(d, dbm0, on_ms).silence(off_ms);
        }
        self
    }

    /// Appends another signal.
    pub fn then(mut self, other: &Signal) -> Self {
        self.0.extend_from_slice(&other.0);
        self
    }

    /// Mean power of the signal.
    pub fn power(&self) -> f64 {
        self.0.iter().map(|v| v * v).sum::<f64>() / self.0.len().max(1) as f64
    }

    /// Adds white Gaussian noise at `snr_db` below this signal's power over `reference`
    /// (a signal whose power defines the SNR, usually the tone alone).
    pub fn with_noise(mut self, reference_power: f64, snr_db: f64, seed: u64) -> Self {
        let sigma = (reference_power / 10f64.powf(snr_db / 10.0)).sqrt();
        let mut rng = Rng::new(seed);
        for v in &mut self.0 {
            *v += sigma * rng.gaussian();
        }
        self
    }

    /// Adds `other` sample by sample (extending with it if it is longer).
    pub fn mix(mut self, other: &[f64], gain: f64) -> Self {
        if other.len() > self.0.len() {
            self.0.resize(other.len(), 0.0);
        }
        for (v, o) in self.0.iter_mut().zip(other) {
            *v += gain * o;
        }
        self
    }

    /// The signal as 16-bit PCM (clipped).
    pub fn pcm(&self) -> Vec<i16> {
        self.0
            .iter()
            .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }
}

/// Levels and relative frequency offsets of the two tones of a DTMF digit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DtmfTone {
    /// Row (low-group) tone level in dBm0.
    pub row_dbm0: f64,
    /// Column (high-group) tone level in dBm0.
    pub col_dbm0: f64,
    /// Row frequency offset as a fraction (0.015 = +1.5 %).
    pub row_offset: f64,
    /// Column frequency offset as a fraction.
    pub col_offset: f64,
}

impl Default for DtmfTone {
    fn default() -> Self {
        DtmfTone {
            row_dbm0: -10.0,
            col_dbm0: -10.0,
            row_offset: 0.0,
            col_offset: 0.0,
        }
    }
}

/// Passes 16-bit PCM through a G.711 encode/decode round trip.
pub fn g711_round_trip(pcm: &[i16], codec: media::Codec) -> Vec<i16> {
    pcm.iter().map(|&s| codec.decode(codec.encode(s))).collect()
}

/// Music-like chords: triads of notes with decaying harmonics and an attack/release
/// envelope, one chord every `chord_ms`, from a seeded progression. Returns `ms` of audio.
pub fn chords(ms: f64, chord_ms: f64, dbm0: f64, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let n = samples(ms);
    let per = samples(chord_ms);
    let mut out = vec![0.0; n];
    let amp = amplitude(dbm0);
    let mut start = 0;
    while start < n {
        // A root between A3 and A5, then a major or minor third and a fifth, sometimes a 7th.
        let root = 57 + (rng.next_u64() % 25) as i32;
        let third = if rng.next_u64().is_multiple_of(2) {
            4
        } else {
            3
        };
        let mut notes = vec![root, root + third, root + 7];
        if rng.next_u64().is_multiple_of(3) {
            notes.push(root + 10);
        }
        let len = per.min(n - start);
        for note in notes {
            let f0 = 440.0 * 2f64.powf(f64::from(note - 69) / 12.0);
            let vibrato = 0.002 * rng.uniform();
            for (h, weight) in [(1.0, 1.0), (2.0, 0.5), (3.0, 0.3), (4.0, 0.15), (5.0, 0.08)] {
                let f = f0 * h;
                if f >= 3900.0 {
                    continue;
                }
                for i in 0..len {
                    let t = i as f64 / f64::from(RATE);
                    let env = (t / 0.02).min(1.0) * (-(t * 2.5)).exp();
                    let fm = 1.0 + vibrato * (2.0 * std::f64::consts::PI * 5.0 * t).sin();
                    out[start + i] +=
                        amp * 0.35 * weight * env * (2.0 * std::f64::consts::PI * f * fm * t).sin();
                }
            }
        }
        start += per;
    }
    out
}

/// Runs the in-band detector over `pcm` in 160-sample chunks (one RTP packet each) and
/// returns the released digits with their (start, end) in samples.
pub fn detect(pcm: &[i16]) -> Vec<(Digit, u64, u64)> {
    let mut det = dtmf::Detector::new();
    let mut out = Vec::new();
    let mut take = |e: dtmf::DigitEvent| {
        if let dtmf::DigitEvent::Released { digit, start, end } = e {
            out.push((digit, start, end));
        }
    };
    for chunk in pcm.chunks(160) {
        det.push(chunk).for_each(&mut take);
    }
    det.finish().into_iter().for_each(&mut take);
    out
}

/// The digits found in `pcm`, as a string.
pub fn detect_string(pcm: &[i16]) -> String {
    detect(pcm).iter().map(|(d, _, _)| d.as_char()).collect()
}
