//! The in-band detector on arbitrary audio in arbitrary chunk sizes: events stay in order
//! and every press is released once.
#![no_main]

use dtmf::{Detector, DigitEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let chunk = 1 + data[0] as usize;
    let pcm: Vec<i16> = data[1..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let mut det = Detector::new();
    let mut held = false;
    let mut check = |e: DigitEvent| match e {
        DigitEvent::Pressed { .. } => {
            assert!(!held);
            held = true;
        }
        DigitEvent::Released { start, end, .. } => {
            assert!(held && end > start);
            held = false;
        }
    };
    for c in pcm.chunks(chunk) {
        det.push(c).for_each(&mut check);
    }
    if let Some(e) = det.finish() {
        check(e);
    }
    assert!(!held);
});
