//! The call's SRTP (RFC 3711) once the answer took callverify's SDES key: one context for
//! what callverify sends (under its key) and one for what it receives (under the callee's),
//! and the wall clock the RTCP sender reports carry.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use media::srtp::{Srtp, SrtpError};
use sip::sdp::SdesKey;
use tracing::info;

/// Both directions of an SRTP call.
#[derive(Debug)]
pub(super) struct CallSrtp {
    tx: Srtp,
    rx: Srtp,
    /// The callee's key that `rx` checks under.
    theirs: SdesKey,
}

impl CallSrtp {
    /// The contexts for a call that offered `ours` and was answered with `theirs`.
    pub(super) fn new(ours: &SdesKey, theirs: &SdesKey) -> CallSrtp {
        info!(suite = theirs.suite.name(), "media is SRTP");
        CallSrtp {
            tx: Srtp::new(ours.suite, &ours.master),
            rx: Srtp::new(theirs.suite, &theirs.master),
            theirs: theirs.clone(),
        }
    }

    /// A re-INVITE brought `theirs`: when it is a new key, what the callee sends is checked
    /// under it from now on (callverify's own key stays).
    pub(super) fn rekey(&mut self, theirs: &SdesKey) {
        if self.theirs == *theirs {
            return;
        }
        info!(suite = theirs.suite.name(), "SRTP rekeyed by the callee");
        self.rx = Srtp::new(theirs.suite, &theirs.master);
        self.theirs = theirs.clone();
    }

    /// Checks and decrypts a received RTP packet.
    pub(super) fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.rx.unprotect_rtp(packet)
    }

    /// Protects the RTP packet `buf[..len]` in place (`buf` has room for the tag after it).
    pub(super) fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.tx.protect_rtp_in_place(buf, len)
    }

    /// Protects an RTCP packet.
    pub(super) fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.tx.protect_rtcp(packet)
    }
}

/// The wall clock at `now`, from the wall time `wall` read at `start`: time passed in, as the
/// call reads no clock of its own.
pub(super) fn wall_clock(wall: SystemTime, start: Instant, now: Instant) -> SystemTime {
    let since = now.saturating_duration_since(start);
    wall.checked_add(since).unwrap_or(wall)
}

/// `t` in NTP format (seconds since 1900 in the high 32 bits).
pub(super) fn ntp(t: SystemTime) -> u64 {
    let since_unix = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since_unix.as_secs() + 2_208_988_800;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}
