//! Speech for talk-off tests, spoken by espeak-ng (Debian package `espeak-ng`) in English
//! and Japanese with several voices and speeds, converted to 8 kHz by sox (package `sox`).
//!
//! The texts and voices below are the generator; the audio is made on demand and cached in
//! the temp directory under a name derived from them, so it is never committed.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const ENGLISH: &str = "\
Good morning. Thank you for calling the service desk; all of our agents are busy right now, \
so please stay on the line. Your call is important to us and will be answered in the order it \
was received. If you know the extension of the person you are calling, you may dial it at any \
time. The weather today will be cloudy with a chance of rain in the afternoon, with highs near \
sixty two degrees and winds from the south west at ten to fifteen miles per hour. Remember that \
the office will be closed on Monday for the holiday, and that the quarterly report is due on the \
fourth of next month. Shall we meet at half past nine in the conference room on the seventh \
floor? I will bring the slides, the budget figures and a few questions about the roadmap. \
Hello, hello, can you hear me now? The line is a little noisy; I think I am in a tunnel. \
Ninety nine bottles, eight hundred and forty three, one two three four five six seven eight \
nine zero. Please hold while I transfer you. Oh yes, absolutely, that sounds wonderful, we \
would love to come. Singing, humming, whistling and laughing are all part of ordinary speech.";

const JAPANESE: &str = "\
おはようございます。 おでんわ ありがとうございます。 ただいま でんわが こみあっております。 \
このまま しばらく おまちください。 きょうの てんきは くもり のち あめ、 さいこうきおんは \
じゅうななど の よそうです。 かいぎは くじ はんから、 ななかいの かいぎしつで おこないます。 \
しりょうと よさんの すうじを もっていきます。 もしもし、 きこえますか。 すこし ざつおんが \
おおいようです。 いち に さん よん ご ろく なな はち きゅう ぜろ。 しょうしょう おまちください。 \
はい、 ぜひ うかがいます。 たのしみに しています。 ありがとうございました。 しつれいいたします。";

/// (voice, words per minute) for each language.
const VOICES: &[(&str, &str, u32)] = &[
    ("en", "en-us", 120),
    ("en", "en-us", 175),
    ("en", "en-us", 240),
    ("en", "en-gb", 160),
    ("en", "en-gb-x-rp+f3", 150),
    ("en", "en-us+f2", 200),
    ("en", "en-gb-scotland+m3", 170),
    ("en", "en-029+f4", 140),
    ("ja", "ja", 110),
    ("ja", "ja", 160),
    ("ja", "ja+f3", 140),
    ("ja", "ja+m2", 190),
    ("ja", "ja+f2", 120),
];

fn cache_path() -> PathBuf {
    // FNV-1a over everything that shapes the audio.
    let mut h: u64 = 0xcbf29ce484222325;
    let mut feed = |b: &[u8]| {
        for &x in b {
            h = (h ^ u64::from(x)).wrapping_mul(0x100000001b3);
        }
    };
    feed(ENGLISH.as_bytes());
    feed(JAPANESE.as_bytes());
    for (l, v, s) in VOICES {
        feed(l.as_bytes());
        feed(v.as_bytes());
        feed(&s.to_le_bytes());
    }
    std::env::temp_dir().join(format!("callverify-talkoff-{h:016x}.raw"))
}

/// `text` spoken by espeak-ng with `voice` at `wpm` words per minute, as 8 kHz samples.
pub fn speak(voice: &str, wpm: u32, text: &str) -> Result<Vec<i16>, String> {
    let espeak = Command::new("espeak-ng")
        .args(["-v", voice, "-s", &wpm.to_string(), "--stdout", text])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run espeak-ng (apt-get install espeak-ng): {e}"))?;
    if !espeak.status.success() || espeak.stdout.is_empty() {
        return Err(format!(
            "espeak-ng -v {voice} failed: {}",
            String::from_utf8_lossy(&espeak.stderr)
        ));
    }
    // To 8 kHz, telephone band, peak at -1 dBFS: loud speech is the hard case for talk-off.
    let mut sox = Command::new("sox")
        .args([
            "-t",
            "wav",
            "-",
            "-t",
            "raw",
            "-r",
            "8000",
            "-e",
            "signed-integer",
            "-b",
            "16",
            "-c",
            "1",
        ])
        .args([
            "-L", "-", "highpass", "200", "lowpass", "3600", "norm", "-1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sox (apt-get install sox): {e}"))?;
    let mut stdin = sox.stdin.take().expect("piped");
    let wav = espeak.stdout;
    let writer = std::thread::spawn(move || stdin.write_all(&wav));
    let out = sox.wait_with_output().map_err(|e| format!("sox: {e}"))?;
    writer
        .join()
        .map_err(|_| "sox writer panicked".to_string())?
        .map_err(|e| format!("sox stdin: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sox failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// An answering machine's greeting (about 6.6 s of continuous English speech), as 8 kHz
/// samples. Fails if espeak-ng or sox is missing.
pub fn voicemail_greeting() -> Result<Vec<i16>, String> {
    speak(
        "en-us",
        160,
        "Hi, you have reached Alex. I cannot take your call right now, \
         please leave a message after the tone.",
    )
}

/// At least ten minutes of English and Japanese speech at 8 kHz from several voices and
/// speeds, the utterances joined with 200 ms pauses. Fails if espeak-ng or sox is missing.
pub fn talk_off_corpus() -> Result<Vec<i16>, String> {
    let path = cache_path();
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect());
    }
    let mut all = Vec::new();
    // Each voice reads the text twice, the second time from its middle, for variety.
    for &(lang, voice, wpm) in VOICES {
        let text = if lang == "en" { ENGLISH } else { JAPANESE };
        let mid = text
            .char_indices()
            .nth(text.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        for part in [text, &text[mid..]] {
            let spoken = speak(voice, wpm, part)?;
            // A voice that is missing or cannot read the script must not shrink the corpus
            // unnoticed.
            if spoken.len() < 2 * 8000 {
                return Err(format!(
                    "espeak-ng -v {voice} gave only {} samples",
                    spoken.len()
                ));
            }
            all.extend(spoken);
            all.extend(std::iter::repeat_n(0i16, 1600));
        }
    }
    let bytes: Vec<u8> = all.iter().flat_map(|s| s.to_le_bytes()).collect();
    // Written whole then renamed, so that parallel tests never read half a file.
    let tmp = path.with_extension(format!("{}.part", std::process::id()));
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| e.to_string())?;
    Ok(all)
}
