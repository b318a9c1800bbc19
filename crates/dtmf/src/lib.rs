//! DTMF detection for callverify.
//!
//! Two receivers, both sans-IO and free of clocks, sockets and allocation on the hot path:
//!
//! - [`Detector`]: the in-band receiver. Feed it 8 kHz linear samples in chunks of any
//!   size; it reports [`DigitEvent`]s with start and end times counted in samples. It is
//!   built to the ITU-T Q.24 / ETSI ES 201 235-3 receiver limits (frequency tolerance,
//!   twist, level, duration, pause) and to not talk off on speech or music.
//! - [`EventDecoder`]: the RFC 4733 `telephone-event` decoder. Feed it the RTP timestamp,
//!   marker bit and payload of each event packet; it reports each key once, however the
//!   packets were repeated, lost or reordered.
//!
//! What this crate does not do: decode RTP headers or G.711 (see the media crate) or
//! decide what a sequence of digits means (see the call engine).

mod digit;
mod inband;
mod rfc4733;

pub use digit::{COL_HZ, Digit, DigitEvent, ROW_HZ};
pub use inband::{
    CONFIRM_WINDOWS, Detector, DetectorEvents, Kernel, Limits, RELEASE_WINDOWS, SAMPLE_RATE,
};
pub use rfc4733::{EventDecoder, EventError, PacketEvents, TelephoneEvent};
