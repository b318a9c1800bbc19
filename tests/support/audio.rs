//! The audio the test phones play: an in-band '#' after a pause, as raw PCMU for sipp's
//! `rtp_stream` and as a WAV for baresip (the RTP captures are made by [`crate::pcap`]).

use std::fs;
use std::path::{Path, PathBuf};

use crate::{KEY_AT_MS, scratch};

/// Raw PCMU for sipp's `rtp_stream`: `before_ms` of quiet, a 160 ms in-band '#', 1 s of
/// quiet; written into `dir`.
pub fn pound_ulaw(dir: &Path, before_ms: f64) -> PathBuf {
    let pcm = testaudio::Signal::new()
        .silence(before_ms)
        .digit(dtmf::Digit::Pound, -10.0, 160.0)
        .silence(1000.0)
        .pcm();
    let ulaw: Vec<u8> = pcm.iter().map(|&x| media::g711::ulaw_encode(x)).collect();
    let path = dir.join(format!("pound-after-{before_ms}ms.ulaw"));
    fs::write(&path, ulaw).expect("write the audio");
    path
}

/// A WAV (8 kHz mono) of [`KEY_AT_MS`] of silence, a '#' tone of 200 ms and 0.5 s more, in
/// a scratch directory named `name`: what baresip "says" when it answers.
pub fn pound_wav(name: &str) -> PathBuf {
    let wav = scratch(name).join("pound.wav");
    let pcm = testaudio::Signal::new()
        .silence(KEY_AT_MS)
        .digit(dtmf::Digit::Pound, -10.0, 200.0)
        .silence(500.0)
        .pcm();
    write_wav(&wav, &pcm);
    wav
}

/// Where the prompts of `kinds` were heard in `heard` (the 8 kHz audio a phone decoded from
/// what callverify sent as PCMU), in the order heard: `(sample offset, kind)`.
///
/// A prompt counts as heard where the whole of it (its voiced part, as callverify encodes
/// it) matches the heard audio, piece by piece (40 ms pieces, in order), each piece within
/// 5% of its level, sample by sample: a phone's μ-law decoder may round a little
/// differently (and baresip decodes μ-law's zero as ±2: 3 per sample more is allowed), but
/// another prompt, another digit or speech does not come close. The phone's jitter buffer
/// may insert or drop a frame when a packet comes late (baresip does on a loaded machine),
/// so each piece may sit up to 40 ms from where the one before it puts it, and one piece in
/// five (at least one, for a prompt of three or more) may be missing. A test of a spoken
/// code reads the digits off this (see [`code_readings`]).
pub fn prompts_heard(
    heard: &[i16],
    prompts: &engine::Prompts,
    kinds: &[media::PromptKind],
) -> Vec<(usize, media::PromptKind)> {
    heard_spans(heard, prompts, kinds)
        .into_iter()
        .map(|(start, _, kind)| (start, kind))
        .collect()
}

/// As [`prompts_heard`], with where each voiced part ends: `(start, end, kind)`, sample
/// offsets, in the order heard.
fn heard_spans(
    heard: &[i16],
    prompts: &engine::Prompts,
    kinds: &[media::PromptKind],
) -> Vec<(usize, usize, media::PromptKind)> {
    let mut found = Vec::new();
    for &kind in kinds {
        let template = decoded(prompts.get(kind));
        let Some(core) = voiced(&template) else {
            continue;
        };
        let mut spans: Vec<(usize, usize)> = Vec::new();
        // Two anchors (the loudest frame of each half), so that a glitch at one of them
        // does not hide the prompt.
        let half = core.len() / 2;
        let anchors = [
            loudest_frame(&core[..half.max(FRAME)]),
            loudest_frame(&core[half..]).map(|(at, level)| (half + at, level)),
        ];
        for (anchor_at, anchor_level) in anchors.into_iter().flatten() {
            let anchor = &core[anchor_at..anchor_at + FRAME];
            // The anchor's loudest sample: where the prompt is, the heard sample there is
            // within an eighth of it (plus the decoders' rounding), which rules out most
            // places at one comparison.
            let peak = (0..FRAME)
                .max_by_key(|&i| anchor[i].unsigned_abs())
                .unwrap_or(0);
            let near = |h: i16| {
                (i32::from(h) - i32::from(anchor[peak])).unsigned_abs()
                    <= u32::from(anchor[peak].unsigned_abs()) / 8 + 8
            };
            let mut o = anchor_at;
            while o + FRAME <= heard.len() {
                if near(heard[o + peak])
                    && close(&heard[o..o + FRAME], anchor, anchor_level / 20)
                    && let Some((start, end)) = pieces_heard(heard, core, o - anchor_at)
                {
                    if !spans.iter().any(|&(s, e)| start < e && s < end) {
                        spans.push((start, end));
                    }
                    o = end + anchor_at;
                    continue;
                }
                o += 1;
            }
        }
        found.extend(spans.into_iter().map(|(s, e)| (s, e, kind)));
    }
    found.sort();
    found
}

/// A piece of a prompt, matched on its own.
const PIECE: usize = 2 * FRAME;

/// How far a piece may sit from where the one before puts it (2 frames).
const DRIFT: usize = 2 * FRAME;

/// Whether `core` is heard in `heard` from about `start`, piece by piece (see
/// [`prompts_heard`]): where it starts and ends.
fn pieces_heard(heard: &[i16], core: &[i16], start: usize) -> Option<(usize, usize)> {
    let pieces: Vec<(usize, &[i16])> = core
        .chunks(PIECE)
        .enumerate()
        .map(|(i, p)| (i * PIECE, p))
        .collect();
    let allowed = if pieces.len() >= 3 {
        (pieces.len() / 5).max(1)
    } else {
        0
    };
    let (mut shift, mut missed) = (0isize, 0usize);
    let (mut first, mut last) = (None, None);
    for &(at, piece) in &pieces {
        let level: u64 = piece.iter().map(|x| u64::from(x.unsigned_abs())).sum();
        let expected = start as isize + at as isize + shift;
        let hit = (0..=2 * DRIFT as isize)
            .map(|i| if i % 2 == 0 { i / 2 } else { -(i + 1) / 2 })
            .find(|&d| {
                let from = expected + d;
                from >= 0
                    && heard
                        .get(from as usize..from as usize + piece.len())
                        .is_some_and(|h| close(h, piece, level / 20 + 3 * piece.len() as u64))
            });
        match hit {
            Some(d) => {
                shift += d;
                let from = (expected + d) as usize;
                first.get_or_insert(from.saturating_sub(at));
                last = Some(from + core.len() - at);
            }
            None => {
                missed += 1;
                if missed > allowed {
                    return None;
                }
            }
        }
    }
    Some((first?, last?))
}

/// The longest quiet between the end of a spoken code's intro ("your code is", "again")
/// or of a digit and the start of the next digit, in samples (1.2 s): the call leaves
/// 400 ms after the intro and 360 ms between digits, plus the prompts' own quiet ends.
const NEXT_DIGIT_WITHIN: usize = 9600;

/// How many times `code` was read out in `heard` (the audio a phone decoded), checked in
/// order: every reading is an intro ([`media::PromptKind::CodeIntro`], then
/// [`media::PromptKind::CodeAgain`] for the readings after the first) followed by the
/// code's digit prompts, each one whole, in the code's order, each starting within
/// [`NEXT_DIGIT_WITHIN`] of the end of what came before, and nothing else in between.
/// A digit prompt heard anywhere but in such a reading (another code, the digits in another
/// order, one missing or one more, a digit without its intro) is an error that says where.
pub fn code_readings(
    heard: &[i16],
    prompts: &engine::Prompts,
    code: &[dtmf::Digit],
) -> Result<usize, String> {
    use media::PromptKind;
    let mut kinds = vec![PromptKind::CodeIntro, PromptKind::CodeAgain];
    kinds.extend(PromptKind::DIGITS);
    let spans = heard_spans(heard, prompts, &kinds);
    let want: Vec<PromptKind> = code
        .iter()
        .map(|d| PromptKind::digit(d.event_code()).ok_or("a code of digits 0-9"))
        .collect::<Result<_, _>>()?;
    let ms = |samples: usize| samples / 8;
    let mut readings = 0;
    let mut i = 0;
    while i < spans.len() {
        let (start, mut end, intro) = spans[i];
        let expected_intro = if readings == 0 {
            PromptKind::CodeIntro
        } else {
            PromptKind::CodeAgain
        };
        if intro != expected_intro {
            return Err(format!(
                "reading {}: {intro:?} at {} ms where {expected_intro:?} was due",
                readings + 1,
                ms(start)
            ));
        }
        for (n, &digit) in want.iter().enumerate() {
            let Some(&(s, e, kind)) = spans.get(i + 1 + n) else {
                return Err(format!(
                    "reading {}: heard {n} digits of {}",
                    readings + 1,
                    want.len()
                ));
            };
            if kind != digit {
                return Err(format!(
                    "reading {}: digit {} at {} ms is not the code's",
                    readings + 1,
                    n + 1,
                    ms(s)
                ));
            }
            if s < end || s - end > NEXT_DIGIT_WITHIN {
                return Err(format!(
                    "reading {}: digit {} starts {} ms after what came before",
                    readings + 1,
                    n + 1,
                    ms(s.saturating_sub(end))
                ));
            }
            end = e;
        }
        readings += 1;
        i += 1 + want.len();
        // A digit right after a reading would be one digit too many.
        if let Some(&(s, _, kind)) = spans.get(i)
            && PromptKind::DIGITS.contains(&kind)
        {
            return Err(format!(
                "reading {readings}: one more digit at {} ms",
                ms(s)
            ));
        }
    }
    Ok(readings)
}

/// The spoken code a phone heard, read back from its recording as a person would: the
/// digit prompts that follow the first intro ("your code is"), in order; `None` when no
/// intro followed by six digits was heard.
pub fn spoken_code_heard(heard: &[i16], prompts: &engine::Prompts) -> Option<Vec<dtmf::Digit>> {
    use media::PromptKind;
    let mut kinds = vec![PromptKind::CodeIntro, PromptKind::CodeAgain];
    kinds.extend(PromptKind::DIGITS);
    let spans = heard_spans(heard, prompts, &kinds);
    let intro = spans
        .iter()
        .position(|&(_, _, k)| k == PromptKind::CodeIntro)?;
    let code: Vec<dtmf::Digit> = spans[intro + 1..]
        .iter()
        .take(6)
        .map_while(|&(_, _, k)| {
            let n = PromptKind::DIGITS.iter().position(|&d| d == k)?;
            dtmf::Digit::from_char(char::from(b'0' + n as u8))
        })
        .collect();
    (code.len() == 6).then_some(code)
}

/// A WAV (8 kHz mono) of `pcm` in a scratch directory named `name`: what baresip "says".
pub fn pcm_wav(name: &str, pcm: &[i16]) -> PathBuf {
    let wav = scratch(name).join("said.wav");
    write_wav(&wav, pcm);
    wav
}

const FRAME: usize = media::FRAME_SAMPLES;

/// The prompt as a phone decodes it from callverify's PCMU frames.
fn decoded(p: &media::Prompt) -> Vec<i16> {
    let mut out = vec![0i16; p.frames(media::Codec::Pcmu).len() * FRAME];
    for (frame, chunk) in p
        .frames(media::Codec::Pcmu)
        .iter()
        .zip(out.chunks_mut(FRAME))
    {
        media::Codec::Pcmu.decode_into(frame, chunk);
    }
    out
}

/// The part from the first to the last sample louder than the noise floor.
fn voiced(pcm: &[i16]) -> Option<&[i16]> {
    let loud = |x: &i16| x.unsigned_abs() > 300;
    let first = pcm.iter().position(loud)?;
    let last = pcm.iter().rposition(loud)?;
    (last + 1 - first >= FRAME).then(|| &pcm[first..=last])
}

/// The loudest 20 ms window (at 10 ms steps): where it starts and its level (sum of |x|).
fn loudest_frame(pcm: &[i16]) -> Option<(usize, u64)> {
    (0..=pcm.len().checked_sub(FRAME)?)
        .step_by(FRAME / 2)
        .map(|i| {
            let level = pcm[i..i + FRAME]
                .iter()
                .map(|x| u64::from(x.unsigned_abs()))
                .sum();
            (i, level)
        })
        .max_by_key(|&(_, level)| level)
}

/// Whether `a` and `b` differ by at most `limit` (sum of absolute differences).
fn close(a: &[i16], b: &[i16], limit: u64) -> bool {
    let mut sad = 0u64;
    for (x, y) in a.iter().zip(b) {
        sad += u64::from((i32::from(*x) - i32::from(*y)).unsigned_abs());
        if sad > limit {
            return false;
        }
    }
    true
}

/// A WAV (8 kHz mono) in a scratch directory named `name` that plays in-band `keys` (each
/// a 160 ms tone at -10 dBm0, the first at `first_ms`, then one every 400 ms) and then
/// silence up to `total_ms`: what baresip "says" when it answers. The phone hangs up when
/// its WAV ends, so `total_ms` must cover the call.
pub fn keys_wav(name: &str, keys: &[dtmf::Digit], first_ms: f64, total_ms: f64) -> PathBuf {
    let wav = scratch(name).join("keys.wav");
    let mut signal = testaudio::Signal::new().silence(first_ms);
    let mut at = first_ms;
    for (i, &d) in keys.iter().enumerate() {
        if i > 0 {
            signal = signal.silence(240.0);
            at += 240.0;
        }
        signal = signal.digit(d, -10.0, 160.0);
        at += 160.0;
    }
    write_wav(&wav, &signal.silence((total_ms - at).max(100.0)).pcm());
    wav
}

fn write_wav(path: &Path, pcm: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create the WAV");
    for &s in pcm {
        w.write_sample(s).expect("write a sample");
    }
    w.finalize().expect("finish the WAV");
}
