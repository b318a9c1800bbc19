//! Voice activity detection for answering-machine detection, on webrtc-vad (libfvad).
//!
//! webrtc-vad's `Vad` owns a raw pointer to its C state and is therefore not `Send`, so a
//! call task that moves between tokio worker threads could not hold one. [`Vad`] wraps it;
//! see the `Send` impl for why that is sound. It also refuses the frames libfvad would
//! reject (webrtc-vad panics on an empty slice) instead of passing them on.

use crate::prompt::FRAME_SAMPLES;

/// A voice detector for 8 kHz audio in 20 ms frames.
pub struct Vad(webrtc_vad::Vad);

// SAFETY: the wrapped value exclusively owns one heap-allocated libfvad instance (created by
// `fvad_new`, freed in its `Drop`). libfvad keeps all state in that instance, with no
// globals and no thread-local storage, so using it from another thread after a move is
// sound. `Vad` is not `Sync` and every method takes `&mut self`, so it is never used from
// two threads at once.
#[allow(unsafe_code)]
unsafe impl Send for Vad {}

impl Vad {
    /// A detector in webrtc's "aggressive" mode: fewer noise frames called voice, which
    /// matters more here than catching every quiet syllable.
    pub fn new() -> Vad {
        Vad(webrtc_vad::Vad::new_with_rate_and_mode(
            webrtc_vad::SampleRate::Rate8kHz,
            webrtc_vad::VadMode::Aggressive,
        ))
    }

    /// Whether this 20 ms frame (160 samples) holds voice; frames of another length are
    /// not voice.
    pub fn is_voice(&mut self, frame: &[i16]) -> bool {
        frame.len() == FRAME_SAMPLES && self.0.is_voice_segment(frame).unwrap_or(false)
    }
}

impl Default for Vad {
    fn default() -> Self {
        Vad::new()
    }
}

impl std::fmt::Debug for Vad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vad")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn speech_is_voice_and_silence_is_not() {
        assert_send::<Vad>();
        let mut vad = Vad::new();
        assert!(!vad.is_voice(&[0; FRAME_SAMPLES]));
        assert!(!vad.is_voice(&[]));
        assert!(!vad.is_voice(&[0; 17]));
        let prompt = crate::wav::load_wav_file(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prompts/en/greeting.wav"),
        )
        .unwrap();
        let voiced = prompt
            .chunks_exact(FRAME_SAMPLES)
            .filter(|f| vad.is_voice(f))
            .count();
        let frames = prompt.len() / FRAME_SAMPLES;
        assert!(voiced * 2 > frames, "{voiced} of {frames} frames voiced");
        // Moved to another thread and used there.
        let handle = std::thread::spawn(move || vad.is_voice(&[0; FRAME_SAMPLES]));
        assert!(!handle.join().unwrap());
    }
}
