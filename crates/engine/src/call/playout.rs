//! The prompt playout: the recorded prompts of a language and the queue of prompts and
//! silences the call sends, frame by frame.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use media::{Codec, Prompt, PromptKind};

/// The recorded prompts of one language: one of each [`PromptKind`].
#[derive(Clone)]
pub struct Prompts {
    /// Indexed by the kind's place in [`PromptKind::ALL`].
    all: Arc<[Arc<Prompt>]>,
}

impl Prompts {
    /// The prompts of `lang` from a loaded library; `None` when one is missing.
    pub fn from_library(lib: &media::PromptLibrary, lang: media::Language) -> Option<Prompts> {
        let all: Option<Vec<Arc<Prompt>>> = PromptKind::ALL
            .into_iter()
            .map(|k| lib.get(lang, k))
            .collect();
        Some(Prompts { all: all?.into() })
    }

    /// The same prompt for every kind (fuzzing and tests that only count frames).
    pub fn uniform(prompt: Arc<Prompt>) -> Prompts {
        Prompts {
            all: PromptKind::ALL.map(|_| prompt.clone()).to_vec().into(),
        }
    }

    /// The prompt of `kind`.
    pub fn get(&self, kind: PromptKind) -> &Arc<Prompt> {
        // `PromptKind::ALL` lists the kinds in declaration order (media's tests say so), so
        // a kind's discriminant is its place: no search on every frame sent.
        &self.all[kind as usize]
    }
}

/// How many prompts, not their samples.
impl fmt::Debug for Prompts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prompts({} kinds)", self.all.len())
    }
}

/// One stretch of what the call sends.
#[derive(Clone)]
pub(super) enum Segment {
    /// A prompt, to its end.
    Prompt(PromptKind),
    /// This many frames of silence.
    Silence(u32),
    /// No audio: a point in the playout that the call acts on once the audio before it is
    /// out.
    Mark(Mark),
}

/// A point in a spoken code's reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mark {
    /// The first reading's last digit has played.
    FirstReading,
    /// The outro has played.
    Outro,
}

/// The audio to send, frame by frame.
#[derive(Default)]
pub(super) struct Playout {
    pub(super) queue: VecDeque<Segment>,
    /// Frames already sent of the segment in front.
    pub(super) pos: usize,
    /// A prompt whose first frame was just taken.
    pub(super) started: Option<PromptKind>,
    /// Marks passed since the call last looked (at most the two of a reading).
    pub(super) reached: Vec<Mark>,
}

/// How much is queued, not what: the queue may hold a spoken code's digits.
impl fmt::Debug for Playout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Playout")
            .field("segments", &self.queue.len())
            .field("pos", &self.pos)
            .field("reached", &self.reached)
            .finish()
    }
}

impl Playout {
    /// The next frame's payload (`None`: silence), moving on.
    pub(super) fn next_frame<'a>(
        &mut self,
        prompts: &'a Prompts,
        codec: Codec,
    ) -> Option<&'a [u8]> {
        loop {
            self.pass_marks();
            let seg = self.queue.front()?.clone();
            let len = match &seg {
                Segment::Prompt(k) => prompts.get(*k).frames(codec).len(),
                Segment::Silence(n) => *n as usize,
                Segment::Mark(_) => 0,
            };
            if self.pos >= len {
                self.queue.pop_front();
                self.pos = 0;
                continue;
            }
            if self.pos == 0
                && let Segment::Prompt(k) = seg
            {
                self.started = Some(k);
            }
            let i = self.pos;
            self.pos += 1;
            if self.pos >= len {
                self.queue.pop_front();
                self.pos = 0;
                // A mark right after this segment is reached with its last frame.
                self.pass_marks();
            }
            return match seg {
                Segment::Prompt(k) => prompts.get(k).frames(codec).get(i).map(|f| &f[..]),
                Segment::Silence(_) | Segment::Mark(_) => None,
            };
        }
    }

    /// Takes the marks at the front of the queue.
    fn pass_marks(&mut self) {
        while let Some(Segment::Mark(m)) = self.queue.front() {
            self.reached.push(*m);
            self.queue.pop_front();
            self.pos = 0;
        }
    }

    /// Moves on by one frame, sending nothing (the frame's time has passed).
    pub(super) fn advance(&mut self, prompts: &Prompts) {
        let _ = self.next_frame(prompts, Codec::Pcmu);
    }
}
