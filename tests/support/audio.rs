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
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).expect("create the WAV");
    for s in pcm {
        w.write_sample(s).expect("write a sample");
    }
    w.finalize().expect("finish the WAV");
    wav
}
