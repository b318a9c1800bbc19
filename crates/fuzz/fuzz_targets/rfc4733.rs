//! The RFC 4733 decoder on arbitrary packet sequences: records of a 4-byte timestamp, a
//! length byte and that many payload bytes. Every press must be released at most once.
#![no_main]

use dtmf::{EventDecoder, TelephoneEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dec = EventDecoder::new();
    let mut held = 0i32;
    let mut rest = data;
    while rest.len() >= 5 {
        let ts = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = (rest[4] as usize).min(rest.len() - 5);
        let payload = &rest[5..5 + len];
        rest = &rest[5 + len..];
        if let Ok(events) = dec.push(ts, payload) {
            for e in events {
                held += match e {
                    TelephoneEvent::Pressed { .. } => 1,
                    TelephoneEvent::Released { .. } => -1,
                };
                assert!((0..=1).contains(&held), "press/release out of step");
            }
        }
    }
    if dec.finish().is_some() {
        held -= 1;
    }
    assert_eq!(held, 0);
});
