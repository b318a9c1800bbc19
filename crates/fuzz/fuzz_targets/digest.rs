//! Digest challenge parsing and answering on arbitrary header text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::digest::Challenge;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Challenge::parse(&String::from_utf8_lossy(data)) {
        let _ = c.respond("user", "secret", "INVITE", "sip:+15550100@127.0.0.1", 1, "cnonce");
    }
});
