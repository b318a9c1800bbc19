//! Answering-machine detection: the far end's audio goes through a voice detector, and a
//! continuous run of speech that starts soon after the answer and lasts longer than a
//! person's "hello" ends the call as `voicemail`; a verdict held for a long run of speech is
//! given when the speech stops.

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

/// Tracks runs of far-end speech (20 ms frames of received audio).
#[derive(Debug)]
pub(super) struct Amd {
    vad: Vad,
    frame: Vec<i16>,
    /// Received audio frames so far.
    frames: u64,
    /// Frame where the current run of speech started, and its last voiced frame.
    run: Option<(u64, u64)>,
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
        }
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
                None => self.run = Some((idx, idx)),
            }
        } else if let Some((_, last)) = self.run
            && idx - last > gap
        {
            self.run = None;
            return Speech::RunEnded;
        }
        let Some((run_start, _)) = self.run else {
            return Speech::Nothing;
        };
        let run_ms = self.run_ms();
        if run_start <= window && run_ms > cfg.max_greeting.as_millis() as u64 {
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
