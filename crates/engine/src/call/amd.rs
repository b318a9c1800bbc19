//! Answering-machine detection: the far end's audio goes through a voice detector, and a
//! continuous run of speech that starts soon after the answer and lasts longer than a
//! person's "hello" ends the call as `voicemail`; a verdict held for a long run of speech is
//! given when the speech stops.
//!
//! Before a spoken code is read the detection must say "human" ([`Amd::says_human`]): no
//! run of speech is going on (the last voiced frame is more than [`AmdConfig::gap`] ago),
//! every run heard was at most [`HELLO_MAX`] long, and either one has ended (a person's
//! "hello?", then silence) or [`AmdConfig::window`] has passed since the answer with no
//! speech (a person who said nothing). Speech longer than a hello that ended before it was
//! greeting-length is not sure to be a person: a short recorded greeting ("please leave a
//! message after the tone", 2.4 s, then a beep) is just that. The code is then not read and
//! the call ends `voicemail` ([`Amd::unsure`]): a code is never read to a machine, at the
//! cost of a person who answers with a sentence being asked to call again. A recorded
//! greeting going on at the end of the window is never "human"; it becomes `voicemail` once
//! it is greeting-length. With detection disabled nothing is judged and a code is read as
//! soon as the greeting has played.

use std::time::{Duration, Instant};

use media::{FRAME_SAMPLES, Vad};

use super::report::Outcome;
use super::{Phase, VerificationCall};

/// Answering-machine detection settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmdConfig {
    /// Whether to detect answering machines at all.
    pub enabled: bool,
    /// Continuous speech longer than this is a recorded greeting.
    pub max_greeting: Duration,
    /// Silence shorter than this does not end a run of speech.
    pub gap: Duration,
    /// Only runs that start within this time after the answer are judged.
    pub window: Duration,
}

impl Default for AmdConfig {
    fn default() -> Self {
        AmdConfig {
            enabled: true,
            max_greeting: Duration::from_millis(4000),
            gap: Duration::from_millis(600),
            window: Duration::from_millis(5000),
        }
    }
}

const FRAME_MS: u64 = 20;

/// A first run of speech at most this long, then silence, is a person's "hello".
pub(super) const HELLO_MAX: Duration = Duration::from_millis(2000);

/// Tracks runs of far-end speech (20 ms frames of received audio).
#[derive(Debug)]
pub(super) struct Amd {
    vad: Vad,
    frame: Vec<i16>,
    /// Received audio frames so far.
    frames: u64,
    /// Frame where the current run of speech started, and its last voiced frame.
    run: Option<(u64, u64)>,
    /// How long the first run of speech that ended was, in milliseconds.
    first_run_ms: Option<u64>,
    /// The longest run of speech that ended, in milliseconds.
    longest_run_ms: u64,
    /// Runs of speech started so far.
    runs: u32,
    /// Whether a greeting-length run was heard (the call is then voicemail).
    greeting_heard: bool,
}

/// What one frame of received audio changed.
enum Speech {
    /// Nothing to act on.
    Nothing,
    /// A run of speech ended (the silence after it outlasted the gap).
    RunEnded,
    /// The run going on is a recorded greeting: it is this long, from this frame.
    Greeting {
        /// The run's length in milliseconds.
        run_ms: u64,
        /// The frame it started at.
        run_start: u64,
    },
}

impl Amd {
    pub(super) fn new() -> Amd {
        Amd {
            vad: Vad::new(),
            frame: Vec::with_capacity(FRAME_SAMPLES),
            frames: 0,
            run: None,
            first_run_ms: None,
            longest_run_ms: 0,
            runs: 0,
            greeting_heard: false,
        }
    }

    /// Whether the far end is judged a person, `since_answer` after the answer (see the
    /// module's docs).
    pub(super) fn says_human(&self, cfg: &AmdConfig, since_answer: Duration) -> bool {
        if !cfg.enabled {
            return true;
        }
        if self.run.is_some() || self.greeting_heard {
            return false;
        }
        if self.longest_run_ms > HELLO_MAX.as_millis() as u64 {
            return false;
        }
        self.first_run_ms.is_some() || since_answer >= cfg.window
    }

    /// Speech longer than a hello, shorter than a greeting, has ended: its length in
    /// milliseconds (the far end is not sure to be a person, see the module's docs).
    pub(super) fn unsure(&self, cfg: &AmdConfig) -> Option<u64> {
        (cfg.enabled
            && self.run.is_none()
            && !self.greeting_heard
            && self.longest_run_ms > HELLO_MAX.as_millis() as u64)
            .then_some(self.longest_run_ms)
    }

    fn run_ms(&self) -> u64 {
        self.run.map_or(0, |(s, l)| (l + 1 - s) * FRAME_MS)
    }

    /// Whether a run of speech has gone on for at least `d`.
    pub(super) fn speaking_for(&self, d: Duration) -> bool {
        self.run.is_some() && self.run_ms() >= d.as_millis() as u64
    }

    /// One more frame, voiced or not.
    fn next_frame(&mut self, cfg: &AmdConfig, voice: bool) -> Speech {
        let idx = self.frames;
        self.frames += 1;
        let gap = cfg.gap.as_millis() as u64 / FRAME_MS;
        let window = cfg.window.as_millis() as u64 / FRAME_MS;
        if voice {
            match &mut self.run {
                Some((_, last)) => *last = idx,
                None => {
                    self.run = Some((idx, idx));
                    self.runs = self.runs.saturating_add(1);
                }
            }
        } else if let Some((_, last)) = self.run
            && idx - last > gap
        {
            if self.first_run_ms.is_none() {
                self.first_run_ms = Some(self.run_ms());
            }
            self.longest_run_ms = self.longest_run_ms.max(self.run_ms());
            self.run = None;
            return Speech::RunEnded;
        }
        let Some((run_start, _)) = self.run else {
            return Speech::Nothing;
        };
        let run_ms = self.run_ms();
        if run_start <= window && run_ms > cfg.max_greeting.as_millis() as u64 {
            self.greeting_heard = true;
            return Speech::Greeting { run_ms, run_start };
        }
        Speech::Nothing
    }
}

impl VerificationCall {
    /// Decoded audio from the far end, for the voice detector (tones are not speech).
    pub(super) fn listen_for_speech(&mut self, now: Instant, pcm: &[i16]) {
        if !self.cfg.amd.enabled {
            return;
        }
        for &s in pcm {
            self.amd.frame.push(s);
            if self.amd.frame.len() == FRAME_SAMPLES {
                let tone = self.inband.active().is_some() || self.events.active().is_some();
                let voice = !tone && self.amd.vad.is_voice(&self.amd.frame);
                self.amd.frame.clear();
                self.speech_frame(now, voice);
                if self.phase != Phase::Script {
                    return;
                }
            }
        }
    }

    fn speech_frame(&mut self, now: Instant, voice: bool) {
        match self.amd.next_frame(&self.cfg.amd, voice) {
            Speech::Nothing => {}
            Speech::RunEnded => {
                if let Some(held) = self.held.take() {
                    self.decide(now, held);
                }
                self.read_code_if_human(now);
            }
            Speech::Greeting { run_ms, run_start } => {
                let held = self.held.take().map(|o| o.name());
                let mut why = format!(
                    "{:.1} s of continuous speech starting {:.1} s after the answer",
                    run_ms as f64 / 1000.0,
                    (run_start * FRAME_MS) as f64 / 1000.0
                );
                if let Some(h) = held {
                    why.push_str(&format!("; a held '{h}' verdict was discarded"));
                }
                self.detail = Some(why);
                self.decide(now, Outcome::Voicemail);
            }
        }
    }
}
