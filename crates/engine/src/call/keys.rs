//! The keys' state machine: where a key was heard, the same press from both sources counted
//! once, keys before the instructions dropped, the entry up to '#' and what it means in the
//! call's confirmation mode, a verdict held while a long run of speech goes on.

use std::time::{Duration, Instant};

use dtmf::Digit;

use super::confirmation::{Confirmation, Entry, Spoken};
use super::report::Report;
use super::{Outcome, Output, Phase, VerificationCall};

/// Speech already this long when a '#' arrives holds the verdict until it stops.
const HOLD_AFTER_SPEECH: Duration = Duration::from_millis(800);

/// The same key from the other source (in-band vs RFC 4733) this close in time is one press.
const SAME_PRESS: Duration = Duration::from_millis(300);

/// At most this many keys before '#' are kept.
const MAX_KEYS: usize = 16;

/// At most this many keys are reported and kept for the call log (and as many dropped keys
/// reported): a caller pressing without end (events are cheap to send) cannot grow the call's
/// memory or its log. The verdict still follows every key.
const MAX_KEYS_LOGGED: usize = 64;

pub use store::KeySource;

/// One key press, as kept for the call log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyPress {
    /// The key ('0'–'9', '*', '#', 'A'–'D').
    pub digit: char,
    /// Where it was heard.
    pub source: KeySource,
    /// When, in milliseconds since the INVITE.
    pub at_ms: u64,
}

/// The keys heard so far.
#[derive(Debug, Default)]
pub(super) struct Keys {
    /// The keys pressed, in order, as kept for the call log (at most [`MAX_KEYS_LOGGED`]).
    pub(super) pressed: Vec<KeyPress>,
    /// Keys since the last '#'.
    entry: String,
    /// The last key accepted: digit, source, time.
    last: Option<(Digit, KeySource, Instant)>,
    /// Keys dropped for coming before the instructions.
    ignored: usize,
}

impl Keys {
    /// Whether `digit` from `source` is the press just heard from the other source.
    fn is_echo(&self, digit: Digit, source: KeySource, now: Instant) -> bool {
        self.last.is_some_and(|(d, s, at)| {
            d == digit && s != source && now.saturating_duration_since(at) < SAME_PRESS
        })
    }

    /// A key before the instructions: counted, and reported while under the cap.
    fn ignore(&mut self, key: KeyPress) -> Option<Report> {
        self.ignored += 1;
        (self.ignored <= MAX_KEYS_LOGGED).then_some(Report::KeyIgnored(key))
    }

    /// A key that counts: kept and reported while under the cap.
    fn accept(&mut self, digit: Digit, now: Instant, key: KeyPress) -> Option<Report> {
        self.last = Some((digit, key.source, now));
        if self.pressed.len() >= MAX_KEYS_LOGGED {
            return None;
        }
        self.pressed.push(key.clone());
        Some(Report::Key(key))
    }

    /// The entry goes on with `digit`; '#' ends it with what it means under `mode`.
    fn enter(&mut self, digit: Digit, mode: &Confirmation) -> Option<Entry> {
        if digit != Digit::Pound {
            if self.entry.len() < MAX_KEYS {
                self.entry.push(digit.as_char());
            }
            return None;
        }
        let what = mode.judge(&self.entry);
        self.entry.clear();
        Some(what)
    }

    /// Whether keys have been entered since the last '#'.
    pub(super) fn pending(&self) -> bool {
        !self.entry.is_empty()
    }
}

impl VerificationCall {
    /// A key heard from `source`.
    pub(super) fn press(&mut self, now: Instant, digit: Digit, source: KeySource) {
        if self.phase != Phase::Script
            || self.held.is_some()
            || self.keys.is_echo(digit, source, now)
        {
            return;
        }
        let at_ms = self.ms_since_start(now);
        let key = KeyPress {
            digit: digit.as_char(),
            source,
            at_ms,
        };
        if self.instructions_at.is_some_and(|t| now < t) {
            if let Some(r) = self.keys.ignore(key) {
                self.out.push_back(Output::Report(r));
            }
            return;
        }
        if self.timings.time_to_key_ms.is_none() {
            self.timings.time_to_key_ms = self
                .timings
                .time_to_answer_ms
                .map(|a| at_ms.saturating_sub(a));
        }
        if let Some(r) = self.keys.accept(digit, now, key) {
            self.out.push_back(Output::Report(r));
        }
        let repeats_left = self.repeats_left;
        if self.spoken.is_none() {
            // Barge-in: the prompt stops at the first key and is not repeated. (A spoken
            // code's reading is not cut: the key is kept for '0#'.)
            self.playout.queue.clear();
            self.playout.pos = 0;
            self.repeats_left = 0;
        }
        match self.keys.enter(digit, &self.confirmation) {
            None | Some(Entry::Ignored) => self.wait_for_keys(now),
            Some(Entry::Again) => self.instructions_again(now, repeats_left),
            Some(Entry::Verdict(verdict)) => {
                if let Confirmation::KeypadCode(_) = self.confirmation {
                    self.code_matched = match verdict {
                        Outcome::Approved => Some(true),
                        Outcome::WrongCode => Some(false),
                        _ => None,
                    };
                }
                if self.cfg.amd.enabled && self.amd.speaking_for(HOLD_AFTER_SPEECH) {
                    self.held = Some(verdict);
                } else {
                    self.decide(now, verdict);
                }
            }
        }
    }

    /// A key that is no verdict: the next must come within the digit timeout (with a spoken
    /// code, only once the outro has played: before, the reading sets the time).
    fn wait_for_keys(&mut self, now: Instant) {
        match self.spoken {
            None | Some(Spoken::Listening) => {
                self.input_deadline = Some(now + self.cfg.digit_timeout);
            }
            Some(Spoken::Waiting | Spoken::Reading | Spoken::Goodbye) => {}
        }
    }

    /// Number matching, '#' alone: the instructions play again from the start while plays
    /// are left (`repeats_left` of them), and the time for a key starts again with them.
    fn instructions_again(&mut self, now: Instant, repeats_left: u32) {
        let Some(kind) = self.confirmation.instructions() else {
            return;
        };
        if repeats_left == 0 {
            self.input_deadline = Some(now + self.cfg.digit_timeout);
            return;
        }
        self.repeats_left = repeats_left - 1;
        self.play(kind);
        self.input_deadline = Some(now + self.cfg.first_key_timeout);
    }
}
