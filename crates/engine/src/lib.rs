//! callverify's call engine: the tokio drivers around the sans-IO protocol crates.
//!
//! So far it holds [`sip_driver`], which runs the SIP user agent on UDP and TCP sockets.
//! The verification call itself (RTP, prompts, DTMF) joins it in a later step. No SIP
//! logic lives here: only sockets, timers and channels.

pub mod sip_driver;

pub use sip_driver::{Call, CallError, SipEndpoint, StartError};
