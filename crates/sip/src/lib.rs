//! callverify's SIP user-agent core, sans-IO: it takes bytes and the current time and
//! returns what to send and what happened, never touching a socket or a clock.
//!
//! - [`ua`]: the [`UserAgent`]: outbound calls (INVITE with Timer A/B, ACK, CANCEL on ring
//!   timeout, BYE, digest retry on 401/407), the requests it answers (BYE, re-INVITE,
//!   OPTIONS, 481/488/501), REGISTER refresh and OPTIONS keep-alive with trunk failover.
//! - [`transaction`]: RFC 3261 client transactions and their timers (A, B, E, F, D).
//! - [`timer`]: a table of an owner's timers (a call's, a trunk's), quinn-proto's shape.
//! - [`message`]: parsing (on rsip) and building messages; TCP stream framing.
//! - [`digest`]: RFC 2617 / RFC 7616 client authentication, written here because rsip's
//!   helper prints `nc` in decimal and mishandles `-sess`.
//! - [`sdp`]: the audio subset of RFC 4566 with RFC 3264 offer/answer.
//! - [`status`]: [`SipStatus`], a status code with its class and reason phrase.
//! - [`random`]: identifiers from the operating system's generator (Call-IDs, tags,
//!   branches, cnonces, SDP session ids): nothing on the wire is derived from a counter.
//!
//! Sockets, timers and tasks live in the tokio driver (`callverify-engine`), not here.

use std::fmt;

pub mod digest;
pub mod message;
pub mod random;
pub mod sdp;
pub mod status;
pub mod timer;
pub mod transaction;
pub mod ua;

pub use status::SipStatus;
pub use transaction::Timers;
pub use ua::{
    CallEvent, CallHandle, Credentials, EndReason, Event, InviteError, Listener, Output,
    Registration, ResponsesFrom, Transmit, TrunkConfig, UaConfig, UaError, UserAgent,
};

/// A SIP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Datagrams; requests are retransmitted on Timers A and E.
    Udp,
    /// A stream; no retransmissions, framing by Content-Length.
    Tcp,
    /// TCP inside TLS (RFC 3261 §26.2): as [`Transport::Tcp`] once the connection is up.
    Tls,
}

impl Transport {
    /// The name in a Via header.
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// A stream (TCP or TLS): messages are not retransmitted and are framed by
    /// Content-Length.
    pub fn is_reliable(self) -> bool {
        self != Transport::Udp
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}
