//! The prompt playout: the recorded prompts of a language and the queue of prompts and
//! silences the call sends, frame by frame.

use std::collections::VecDeque;
use std::sync::Arc;

use media::{Codec, Prompt, PromptKind};

/// The recorded prompts of one language: one of each [`PromptKind`].
#[derive(Clone, Debug)]
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
        let i = PromptKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default();
        &self.all[i]
    }
}

/// One stretch of what the call sends.
#[derive(Clone, Debug)]
pub(super) enum Segment {
    /// A prompt, to its end.
    Prompt(PromptKind),
    /// This many frames of silence.
    Silence(u32),
}

/// The audio to send, frame by frame.
#[derive(Debug, Default)]
pub(super) struct Playout {
    pub(super) queue: VecDeque<Segment>,
    /// Frames already sent of the segment in front.
    pub(super) pos: usize,
    /// A prompt whose first frame was just taken.
    pub(super) started: Option<PromptKind>,
}

impl Playout {
    /// The next frame's payload (`None`: silence), moving on.
    pub(super) fn next_frame<'a>(
        &mut self,
        prompts: &'a Prompts,
        codec: Codec,
    ) -> Option<&'a [u8]> {
        loop {
            let seg = self.queue.front()?.clone();
            let len = match &seg {
                Segment::Prompt(k) => prompts.get(*k).frames(codec).len(),
                Segment::Silence(n) => *n as usize,
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
            }
            return match seg {
                Segment::Prompt(k) => Some(&prompts.get(k).frames(codec)[i][..]),
                Segment::Silence(_) => None,
            };
        }
    }

    /// Moves on by one frame, sending nothing (the frame's time has passed).
    pub(super) fn advance(&mut self, prompts: &Prompts) {
        let _ = self.next_frame(prompts, Codec::Pcmu);
    }
}
