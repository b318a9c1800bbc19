//! Recorded prompts: loaded once from `prompts/<lang>/<name>.wav`, converted to 8 kHz mono
//! and pre-encoded into 20 ms G.711 frames that all calls share through an `Arc`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::g711::Codec;
use crate::wav::{WavError, load_wav, load_wav_file};

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// A prompt language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Language {
    /// English.
    En,
    /// Japanese.
    Ja,
}

impl Language {
    /// Every language with recorded prompts: the folders of the prompt library.
    pub const ALL: [Language; 2] = [Language::En, Language::Ja];

    /// The BCP 47 code, also the folder name under `prompts/`.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Ja => "ja",
        }
    }

    /// The language of a code exactly as [`Language::code`] writes it.
    pub fn from_code(code: &str) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The codes there are, for people: `en or ja`.
    pub fn choices() -> String {
        let codes: Vec<&str> = Language::ALL.into_iter().map(Language::code).collect();
        match codes.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

/// A code in any case (`EN`, `ja`).
impl std::str::FromStr for Language {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        Language::from_code(&lower).ok_or_else(|| {
            format!(
                "unknown language {lower:?}, expected {}",
                Language::choices()
            )
        })
    }
}

/// Which prompt of the verification script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PromptKind {
    /// "This is a sign-in verification call."
    Greeting,
    /// "Press # to finish your verification, or 0 then # to report fraud."
    Instructions,
    /// "Your verification is complete. Goodbye."
    Verified,
    /// "Thank you, the sign-in attempt has been reported as fraud. Goodbye."
    FraudReported,
    /// "We did not receive a key press. Goodbye."
    NoInputGoodbye,
    /// "That key does not complete the verification. Goodbye."
    Denied,
    /// Number matching: "Enter the two-digit number shown on your sign-in screen, then
    /// press #; 0 then # reports fraud."
    KeypadInstructions,
    /// Number matching: "That number does not match the one on your sign-in screen.
    /// Goodbye."
    WrongCode,
    /// A spoken code: "Your verification code is".
    CodeIntro,
    /// A spoken code, the second time: "Again, your code is".
    CodeAgain,
    /// A spoken code, after it: "Enter this code on your sign-in screen; 0 then # reports
    /// fraud."
    CodeOutro,
    /// "Goodbye."
    Goodbye,
    /// The digit 0, spoken alone (the digits of a spoken code are joined from these).
    Digit0,
    /// The digit 1.
    Digit1,
    /// The digit 2.
    Digit2,
    /// The digit 3.
    Digit3,
    /// The digit 4.
    Digit4,
    /// The digit 5.
    Digit5,
    /// The digit 6.
    Digit6,
    /// The digit 7.
    Digit7,
    /// The digit 8.
    Digit8,
    /// The digit 9.
    Digit9,
}

impl PromptKind {
    /// Every prompt of the script.
    pub const ALL: [PromptKind; 22] = [
        PromptKind::Greeting,
        PromptKind::Instructions,
        PromptKind::Verified,
        PromptKind::FraudReported,
        PromptKind::NoInputGoodbye,
        PromptKind::Denied,
        PromptKind::KeypadInstructions,
        PromptKind::WrongCode,
        PromptKind::CodeIntro,
        PromptKind::CodeAgain,
        PromptKind::CodeOutro,
        PromptKind::Goodbye,
        PromptKind::Digit0,
        PromptKind::Digit1,
        PromptKind::Digit2,
        PromptKind::Digit3,
        PromptKind::Digit4,
        PromptKind::Digit5,
        PromptKind::Digit6,
        PromptKind::Digit7,
        PromptKind::Digit8,
        PromptKind::Digit9,
    ];

    /// The digits' prompts, 0 to 9.
    pub const DIGITS: [PromptKind; 10] = [
        PromptKind::Digit0,
        PromptKind::Digit1,
        PromptKind::Digit2,
        PromptKind::Digit3,
        PromptKind::Digit4,
        PromptKind::Digit5,
        PromptKind::Digit6,
        PromptKind::Digit7,
        PromptKind::Digit8,
        PromptKind::Digit9,
    ];

    /// The prompt that speaks `d` (0–9); `None` for anything else.
    pub fn digit(d: u8) -> Option<PromptKind> {
        PromptKind::DIGITS.get(usize::from(d)).copied()
    }

    /// The file name (without `.wav`) under `prompts/<lang>/`.
    pub fn file_stem(self) -> &'static str {
        match self {
            PromptKind::Greeting => "greeting",
            PromptKind::Instructions => "instructions",
            PromptKind::Verified => "verified",
            PromptKind::FraudReported => "fraud_reported",
            PromptKind::NoInputGoodbye => "no_input",
            PromptKind::Denied => "denied",
            PromptKind::KeypadInstructions => "keypad_instructions",
            PromptKind::WrongCode => "wrong_code",
            PromptKind::CodeIntro => "code_intro",
            PromptKind::CodeAgain => "code_again",
            PromptKind::CodeOutro => "code_outro",
            PromptKind::Goodbye => "goodbye",
            PromptKind::Digit0 => "digit_0",
            PromptKind::Digit1 => "digit_1",
            PromptKind::Digit2 => "digit_2",
            PromptKind::Digit3 => "digit_3",
            PromptKind::Digit4 => "digit_4",
            PromptKind::Digit5 => "digit_5",
            PromptKind::Digit6 => "digit_6",
            PromptKind::Digit7 => "digit_7",
            PromptKind::Digit8 => "digit_8",
            PromptKind::Digit9 => "digit_9",
        }
    }
}

/// Why a prompt could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// A prompt file is missing or unreadable or not a usable WAV.
    #[error("prompt {path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        source: WavError,
    },
}

/// One prompt as 8 kHz linear samples and as 20 ms μ-law and A-law frames.
#[derive(Clone, Debug)]
pub struct Prompt {
    pcm: Vec<i16>,
    pcmu: Vec<[u8; FRAME_SAMPLES]>,
    pcma: Vec<[u8; FRAME_SAMPLES]>,
}

impl Prompt {
    /// Encodes 8 kHz samples; the last frame is padded with silence.
    pub fn from_samples(pcm: Vec<i16>) -> Result<Prompt, WavError> {
        if pcm.is_empty() {
            return Err(WavError::Empty);
        }
        let encode = |codec: Codec| {
            pcm.chunks(FRAME_SAMPLES)
                .map(|chunk| {
                    let mut frame = [codec.silence(); FRAME_SAMPLES];
                    codec.encode_into(chunk, &mut frame);
                    frame
                })
                .collect()
        };
        let (pcmu, pcma) = (encode(Codec::Pcmu), encode(Codec::Pcma));
        Ok(Prompt { pcm, pcmu, pcma })
    }

    /// Loads a prompt from the bytes of any WAV file.
    pub fn from_wav(bytes: &[u8]) -> Result<Prompt, WavError> {
        Prompt::from_samples(load_wav(bytes)?)
    }

    /// Loads a prompt from a WAV file.
    pub fn from_file(path: &Path) -> Result<Prompt, WavError> {
        Prompt::from_samples(load_wav_file(path)?)
    }

    /// The 20 ms frames for `codec`, ready to be RTP payloads.
    pub fn frames(&self, codec: Codec) -> &[[u8; FRAME_SAMPLES]] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }

    /// The 8 kHz linear samples.
    pub fn samples(&self) -> &[i16] {
        &self.pcm
    }

    /// Length in milliseconds (whole frames).
    pub fn duration_ms(&self) -> u64 {
        self.pcmu.len() as u64 * 20
    }
}

/// Every prompt of every loaded language, shared across calls.
#[derive(Clone, Debug, Default)]
pub struct PromptLibrary {
    prompts: HashMap<(Language, PromptKind), Arc<Prompt>>,
}

impl PromptLibrary {
    /// Loads `dir/<lang>/<kind>.wav` for each language and kind; any missing or broken
    /// file fails the whole load, so that a gateway never starts with a silent prompt.
    pub fn load(dir: &Path, languages: &[Language]) -> Result<PromptLibrary, PromptError> {
        let mut prompts = HashMap::new();
        for &lang in languages {
            for kind in PromptKind::ALL {
                let path = dir
                    .join(lang.code())
                    .join(format!("{}.wav", kind.file_stem()));
                let prompt =
                    Prompt::from_file(&path).map_err(|source| PromptError::Wav { path, source })?;
                prompts.insert((lang, kind), Arc::new(prompt));
            }
        }
        Ok(PromptLibrary { prompts })
    }

    /// The prompt, if its language was loaded.
    pub fn get(&self, lang: Language, kind: PromptKind) -> Option<Arc<Prompt>> {
        self.prompts.get(&(lang, kind)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompts_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prompts")
    }

    #[test]
    fn every_kind_is_listed_at_its_place() {
        for (i, k) in PromptKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i, "{k:?}");
        }
        for (d, k) in PromptKind::DIGITS.into_iter().enumerate() {
            assert_eq!(PromptKind::digit(d as u8), Some(k));
        }
    }

    #[test]
    fn frames_are_padded_and_shared() {
        let p = Prompt::from_samples(vec![1000; 330]).unwrap();
        assert_eq!(p.frames(Codec::Pcmu).len(), 3);
        assert_eq!(p.frames(Codec::Pcma)[2][10..], [Codec::Pcma.silence(); 150]);
        assert_eq!(p.duration_ms(), 60);
        assert!(matches!(Prompt::from_samples(vec![]), Err(WavError::Empty)));
    }

    #[test]
    fn the_languages_are_the_prompt_librarys_folders() {
        let mut folders: Vec<String> = std::fs::read_dir(prompts_dir())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let codes: Vec<&str> = Language::ALL.into_iter().map(Language::code).collect();
        assert_eq!(folders, codes);
        assert_eq!(Language::choices(), "en or ja");
        assert_eq!(Language::from_code("ja"), Some(Language::Ja));
        assert_eq!(Language::from_code("JA"), None);
        assert_eq!("JA".parse::<Language>(), Ok(Language::Ja));
        assert_eq!(
            "fr".parse::<Language>(),
            Err("unknown language \"fr\", expected en or ja".to_string())
        );
    }

    #[test]
    fn the_recorded_prompts_load_for_every_language() {
        let lib = PromptLibrary::load(&prompts_dir(), &Language::ALL).unwrap();
        for lang in Language::ALL {
            for kind in PromptKind::ALL {
                let p = lib.get(lang, kind).unwrap();
                let ms = p.duration_ms();
                // A digit alone is short; the rest are phrases.
                let shortest = if PromptKind::DIGITS.contains(&kind) {
                    200
                } else {
                    600
                };
                assert!(
                    (shortest..=15_000).contains(&ms),
                    "{lang:?}/{kind:?} lasts {ms} ms"
                );
                let peak = p.samples().iter().map(|s| s.unsigned_abs()).max().unwrap();
                assert!(
                    peak > 4000,
                    "{lang:?}/{kind:?} is nearly silent (peak {peak})"
                );
            }
        }
    }

    /// Loudness in dBFS as `prompts/make_prompts.py` measures it (its `level()`): the mean
    /// power of the 20 ms frames above -50 dBFS, then of those no more than 10 dB under
    /// that mean (the gating of EBU R 128, without its weighting: the prompts are already
    /// band-limited), so pauses and padding do not count.
    fn level_dbfs(pcm: &[i16]) -> f64 {
        let powers: Vec<f64> = pcm
            .chunks_exact(FRAME_SAMPLES)
            .map(|f| {
                f.iter()
                    .map(|&s| (f64::from(s) / 32768.0).powi(2))
                    .sum::<f64>()
                    / FRAME_SAMPLES as f64
            })
            .collect();
        let mean = |p: &[f64]| p.iter().sum::<f64>() / p.len().max(1) as f64;
        let gated: Vec<f64> = powers.into_iter().filter(|&p| p > 1e-5).collect();
        let first = mean(&gated);
        let loud: Vec<f64> = gated.into_iter().filter(|&p| p > first / 10.0).collect();
        10.0 * mean(&loud).log10()
    }

    /// Largest |sample| among the first and among the last 40 samples of a joinable prompt.
    const EDGE_SAMPLES: usize = 40;
    const EDGE_MAX: u16 = 32;
    /// Largest spread of loudness between two prompts of one language, in dB.
    const LEVEL_SPREAD_DB: f64 = 3.0;
    /// Largest mean of a prompt's samples (a DC offset thumps at every join).
    const DC_MAX: f64 = 16.0;

    /// What makes one prompt unfit to be joined to another, if anything.
    fn join_faults(p: &Prompt, digit: bool) -> Vec<String> {
        let pcm = p.samples();
        let mut faults = Vec::new();
        let edge = |s: &[i16]| s.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        let n = pcm.len();
        let (head, tail) = (
            edge(&pcm[..EDGE_SAMPLES.min(n)]),
            edge(&pcm[n.saturating_sub(EDGE_SAMPLES)..]),
        );
        if head > EDGE_MAX || tail > EDGE_MAX {
            faults.push(format!("edges {head} and {tail} (a click at a join)"));
        }
        let clipped = pcm
            .iter()
            .filter(|&&s| s == i16::MAX || s <= -i16::MAX)
            .count();
        if clipped > 0 {
            faults.push(format!("{clipped} samples at full scale"));
        }
        let dc = pcm.iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
        if dc.abs() > DC_MAX {
            faults.push(format!("DC offset {dc:.1}"));
        }
        let ms = p.duration_ms();
        let range = if digit { 200..=1500 } else { 600..=15_000 };
        if !range.contains(&ms) {
            faults.push(format!("lasts {ms} ms, not {range:?}"));
        }
        faults
    }

    #[test]
    fn the_recorded_prompts_join_without_clicks_at_one_level() {
        let lib = PromptLibrary::load(&prompts_dir(), &Language::ALL).unwrap();
        let mut faults = Vec::new();
        for lang in Language::ALL {
            let mut levels = Vec::new();
            for kind in PromptKind::ALL {
                let p = lib.get(lang, kind).unwrap();
                let digit = PromptKind::DIGITS.contains(&kind);
                for fault in join_faults(&p, digit) {
                    faults.push(format!("{lang:?}/{kind:?}: {fault}"));
                }
                levels.push((level_dbfs(p.samples()), kind));
            }
            levels.sort_by(|a, b| a.0.total_cmp(&b.0));
            if let (Some(low), Some(high)) = (levels.first(), levels.last())
                && high.0 - low.0 > LEVEL_SPREAD_DB
            {
                faults.push(format!(
                    "{lang:?}: {:?} at {:.1} dBFS but {:?} at {:.1} dBFS",
                    low.1, low.0, high.1, high.0
                ));
            }
        }
        assert!(faults.is_empty(), "{faults:#?}");
    }

    #[test]
    fn join_faults_are_found() {
        // A digit cut out of a tone: it starts and ends at full amplitude, clipped, offset.
        let tone: Vec<i16> = (0..4000)
            .map(|i| {
                let v = 40_000.0 * (f64::from(i) * 0.3).sin() + 500.0;
                v.clamp(-32768.0, 32767.0) as i16
            })
            .collect();
        let faults = join_faults(&Prompt::from_samples(tone).unwrap(), true);
        assert_eq!(faults.len(), 3, "{faults:?}");
        // 100 ms is too short for a digit, and a quiet half of it is 20 dB down.
        let mut short: Vec<f64> = (0..800)
            .map(|i| {
                let a = if i < 400 { 10_000.0 } else { 1_000.0 };
                // Silent for 5 ms at each end, then a 10 ms ramp.
                let edge = ((f64::from(i.min(799 - i)) - 40.0) / 80.0).clamp(0.0, 1.0);
                a * edge * (f64::from(i) * 0.3).sin()
            })
            .collect();
        let dc = short.iter().sum::<f64>() / (800.0 - 80.0);
        short[40..760].iter_mut().for_each(|v| *v -= dc);
        let short: Vec<i16> = short.into_iter().map(|v| v.round() as i16).collect();
        let faults = join_faults(&Prompt::from_samples(short.clone()).unwrap(), true);
        assert_eq!(faults, vec!["lasts 100 ms, not 200..=1500".to_string()]);
        // The quiet frames are gated out: the level is the loud half's.
        let loud = level_dbfs(&short[..400]);
        assert!((level_dbfs(&short) - loud).abs() < 0.5);
        assert!((level_dbfs(&vec![3277; 1600]) + 20.0).abs() < 0.01);
    }

    #[test]
    fn a_missing_prompt_names_its_file() {
        let dir = std::env::temp_dir().join(format!("callverify-noprompts-{}", std::process::id()));
        let err = PromptLibrary::load(&dir, &[Language::Ja]).unwrap_err();
        assert!(err.to_string().contains("ja/greeting.wav"), "{err}");
    }
}
