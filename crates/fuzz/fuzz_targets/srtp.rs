//! SRTP and SRTCP unprotect on arbitrary bytes (what a hostile peer can send once a call is
//! keyed), and protect/unprotect round trips of whatever parses as RTP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::srtp::{MASTER_LEN, Srtp, Suite};

fuzz_target!(|data: &[u8]| {
    let master = [7u8; MASTER_LEN];
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
        let mut rx = Srtp::new(suite, &master);
        let _ = rx.unprotect_rtp(data);
        let _ = rx.unprotect_rtcp(data);
        let mut tx = Srtp::new(suite, &master);
        if let Ok(sent) = tx.protect_rtp(data) {
            assert_eq!(rx.unprotect_rtp(&sent).as_deref(), Ok(data));
        }
        if let Ok(sent) = tx.protect_rtcp(data) {
            assert_eq!(rx.unprotect_rtcp(&sent).as_deref(), Ok(data));
        }
    }
});
