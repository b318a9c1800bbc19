//! callverify's call engine: the verification call and the tokio drivers around the sans-IO
//! protocol crates.
//!
//! [`call`] is the verification call as a sans-IO state machine (script, keys, answering
//! machines, SRTP, outcome and timings); [`call_driver`] runs one on a pair of RTP/RTCP sockets
//! beside a SIP call; [`runner`] runs a stored challenge's calls (one, or two for a
//! fallback phone or an enrolment that needs the current phone's approval) and keeps the
//! store up to date; [`sip_driver`] runs the SIP user agent on UDP, TCP and TLS sockets ([`tls`] makes
//! the rustls configurations); [`descriptors`] grows the process's descriptor table at start. The
//! drivers hold no protocol logic: only sockets, timers and channels.

pub mod call;
pub mod call_driver;
pub mod descriptors;
mod legs;
pub mod runner;
pub mod sip_driver;
pub mod tls;

pub use call::{
    CallReport, Confirmation, Outcome, Prompts, Report, ScriptConfig, VerificationCall,
};
pub use call_driver::{MediaConfig, OnSend, VerifyError, verify};
pub use runner::{RunError, Runner};
pub use sip_driver::{Call, CallError, SipEndpoint, StartError};
pub use tls::{TlsError, TlsSettings, TlsTrunk};
