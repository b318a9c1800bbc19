//! callverify's SIP user-agent core, sans-IO: it takes bytes and the current time and
//! returns what to send, never touching a socket or a clock.
//!
//! So far it holds [`digest`] (RFC 2617 / RFC 7616 client authentication, written here
//! because rsip's helper prints `nc` in decimal and mishandles `-sess`) and [`sdp`] (the
//! audio subset of RFC 4566 with RFC 3264 offer/answer). Transactions, dialogs and the
//! tokio driver are not here yet.

pub mod digest;
pub mod sdp;
