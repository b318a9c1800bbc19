//! SDP answer checking on arbitrary text: an answer or a clear error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::sdp::{Offer, parse_answer};

fuzz_target!(|data: &[u8]| {
    let offer = Offer {
        address: "127.0.0.1".parse().unwrap(),
        port: 40000,
        session_id: 1,
        version: 1,
        codecs: vec![media::Codec::Pcmu, media::Codec::Pcma],
        sdes: Default::default(),
    };
    if let Ok(a) = parse_answer(&String::from_utf8_lossy(data), &offer) {
        assert!(a.remote.port() != 0);
    }
});
