//! How the person confirms the sign-in: '#' alone, number matching (the two digits shown on
//! the sign-in page, then '#'), or a spoken code (the call reads six digits, the person types
//! them on the page). The codes are secrets: nothing here prints them.

use std::fmt;
use std::time::{Duration, Instant};

use dtmf::Digit;
use media::PromptKind;

use super::playout::{Mark, Segment};
use super::report::{Outcome, Report};
use super::{CLOSING_TAIL_FRAMES, Output, Phase, VerificationCall};

/// Silence after "your code is" and after "again, your code is", before the first digit.
const AFTER_INTRO: Duration = Duration::from_millis(400);

/// Silence between two digits of a spoken code.
const BETWEEN_DIGITS: Duration = Duration::from_millis(360);

/// Silence between the two readings of a spoken code.
const BETWEEN_READINGS: Duration = Duration::from_millis(1000);

/// Silence between the second reading's last digit and the outro.
const BEFORE_OUTRO: Duration = Duration::from_millis(600);

/// How the person confirms the sign-in.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Confirmation {
    /// '#' alone approves (today's behaviour).
    #[default]
    Pound,
    /// Number matching: these two digits (shown on the sign-in page) then '#'.
    KeypadCode([Digit; 2]),
    /// The call reads these six digits; the user types them on the page.
    SpokenCode([Digit; 6]),
}

/// The mode only: the code is a secret and never printed.
impl fmt::Debug for Confirmation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Confirmation::Pound => "Pound",
            Confirmation::KeypadCode(_) => "KeypadCode",
            Confirmation::SpokenCode(_) => "SpokenCode",
        })
    }
}

impl Confirmation {
    /// The mode's name, as in the API and the call log: `"pound"`, `"keypad_code"` or
    /// `"spoken_code"`.
    pub fn name(&self) -> &'static str {
        match self {
            Confirmation::Pound => "pound",
            Confirmation::KeypadCode(_) => "keypad_code",
            Confirmation::SpokenCode(_) => "spoken_code",
        }
    }

    /// The instructions that ask for the key(s), repeated until a key; `None` when the call
    /// reads a code instead.
    pub(super) fn instructions(&self) -> Option<PromptKind> {
        match self {
            Confirmation::Pound => Some(PromptKind::Instructions),
            Confirmation::KeypadCode(_) => Some(PromptKind::KeypadInstructions),
            Confirmation::SpokenCode(_) => None,
        }
    }

    /// What an entry of keys finished by '#' means.
    pub(super) fn judge(&self, entry: &str) -> Entry {
        match (self, entry) {
            (_, "0") => Entry::Verdict(Outcome::FraudReported),
            (Confirmation::Pound, "") => Entry::Verdict(Outcome::Approved),
            (Confirmation::Pound, _) => Entry::Verdict(Outcome::Denied),
            (Confirmation::KeypadCode(_), "") => Entry::Again,
            (Confirmation::KeypadCode(code), typed) => {
                let matches = typed.len() == code.len()
                    && typed
                        .chars()
                        .zip(code.iter())
                        .all(|(t, d)| t == d.as_char());
                Entry::Verdict(if matches {
                    Outcome::Approved
                } else {
                    Outcome::WrongCode
                })
            }
            (Confirmation::SpokenCode(_), _) => Entry::Ignored,
        }
    }

    /// The reading of a spoken code, as the playout's segments: the intro, the six digits,
    /// a pause, "again", the six digits, the outro; marked where the first reading's last
    /// digit ends and where the outro ends. `None` for the other modes, or if a "digit" of
    /// the code is not 0–9.
    pub(super) fn reading(&self) -> Option<Vec<Segment>> {
        let Confirmation::SpokenCode(code) = self else {
            return None;
        };
        // The event codes of '0'-'9' are 0-9; the other keys' (10-15) speak no digit.
        let digits: Vec<PromptKind> = code
            .iter()
            .map(|d| PromptKind::digit(d.event_code()))
            .collect::<Option<_>>()?;
        let mut out = Vec::with_capacity(40);
        let read = |out: &mut Vec<Segment>, intro: PromptKind| {
            out.push(Segment::Prompt(intro));
            out.push(silence(AFTER_INTRO));
            for (i, &d) in digits.iter().enumerate() {
                if i > 0 {
                    out.push(silence(BETWEEN_DIGITS));
                }
                out.push(Segment::Prompt(d));
            }
        };
        read(&mut out, PromptKind::CodeIntro);
        out.push(Segment::Mark(Mark::FirstReading));
        out.push(silence(BETWEEN_READINGS));
        read(&mut out, PromptKind::CodeAgain);
        out.push(silence(BEFORE_OUTRO));
        out.push(Segment::Prompt(PromptKind::CodeOutro));
        out.push(Segment::Mark(Mark::Outro));
        Some(out)
    }
}

/// `d` of silence, in whole frames.
fn silence(d: Duration) -> Segment {
    Segment::Silence((d.as_millis() / super::FRAME.as_millis()) as u32)
}

/// What a '#' makes of the keys before it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry {
    /// A verdict.
    Verdict(Outcome),
    /// Number matching, '#' alone: not a verdict; the instructions play again.
    Again,
    /// A spoken code: anything but '0#' is no verdict.
    Ignored,
}

/// Where a spoken-code call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Spoken {
    /// The greeting plays, or the call waits for answering-machine detection to say human.
    Waiting,
    /// The code is being read.
    Reading,
    /// The outro has played: keys (for '0#') until the deadline.
    Listening,
    /// "Goodbye" plays; then the call hangs up with [`Outcome::CodeSpoken`].
    Goodbye,
}

impl VerificationCall {
    /// A spoken code starts to be read once the greeting has played and answering-machine
    /// detection says the far end is a person.
    pub(super) fn read_code_if_human(&mut self, now: Instant) {
        if self.phase != Phase::Script
            || self.spoken != Some(Spoken::Waiting)
            || self.outcome.is_some()
            || self.held.is_some()
            || !self.playout.queue.is_empty()
            || self.instructions_at.is_some_and(|t| now < t)
        {
            return;
        }
        let Some(m) = &self.media else {
            return;
        };
        if !self
            .amd
            .says_human(&self.cfg.amd, now.saturating_duration_since(m.epoch))
        {
            if let Some(ms) = self.amd.unsure(&self.cfg.amd) {
                self.detail = Some(format!(
                    "{:.1} s of speech, longer than a person's hello: not sure a person \
                     answered, the code was not read",
                    ms as f64 / 1000.0
                ));
                self.decide(now, Outcome::Voicemail);
            }
            return;
        }
        let Some(reading) = self.confirmation.reading() else {
            self.decide(
                now,
                Outcome::Failed {
                    status: None,
                    reason: "the spoken code has a key that is not a digit 0-9".into(),
                },
            );
            return;
        };
        self.spoken = Some(Spoken::Reading);
        // The reading has its own length; the keys' deadline counts from its end.
        self.input_deadline = None;
        self.playout.queue.extend(reading);
    }

    /// The playout passed `mark` of the reading.
    pub(super) fn passed(&mut self, mark: Mark) {
        match mark {
            Mark::FirstReading if !self.code_read => {
                self.code_read = true;
                self.out.push_back(Output::Report(Report::CodeSpoken));
            }
            Mark::FirstReading => {}
            Mark::Outro => {
                if self.spoken != Some(Spoken::Reading) {
                    return;
                }
                // An entry under way (a '0' waiting for its '#', however long ago) gets the
                // digit timeout from now (set by the next `handle_timeout`, which knows the
                // time); without one, goodbye at once.
                if self.keys.pending() {
                    self.spoken = Some(Spoken::Listening);
                    self.input_deadline = None;
                } else {
                    self.say_goodbye();
                }
            }
        }
    }

    /// "Goodbye" plays; '0#' still reports fraud until the hang-up.
    pub(super) fn say_goodbye(&mut self) {
        self.spoken = Some(Spoken::Goodbye);
        self.input_deadline = None;
        self.playout.queue.clear();
        self.playout.pos = 0;
        self.play(PromptKind::Goodbye);
        self.playout
            .queue
            .push_back(Segment::Silence(CLOSING_TAIL_FRAMES));
    }

    /// Once "goodbye" has played: the call ends with [`Outcome::CodeSpoken`].
    pub(super) fn end_after_goodbye(&mut self, now: Instant) {
        if self.phase == Phase::Script
            && self.spoken == Some(Spoken::Goodbye)
            && self.playout.queue.is_empty()
            && self.outcome.is_none()
        {
            self.set_outcome(now, Outcome::CodeSpoken);
            self.hang_up();
        }
    }
}
