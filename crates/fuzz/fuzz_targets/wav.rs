//! The WAV loader (hound and the G.711 RIFF reader) and prompt encoding on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(samples) = media::load_wav(data) {
        assert!(!samples.is_empty());
        let _ = media::Prompt::from_samples(samples);
    }
});
