//! RADIUS (RFC 2865) for callverify's front end to VPNs and network gear, sans-IO.
//!
//! - [`Packet`]: a datagram decoded (every length checked, nothing read past the packet) and
//!   encoded, its [`Attribute`]s kept in order.
//! - [`sign`]: what the shared secret proves. Every Access-Request must carry a valid
//!   Message-Authenticator (RFC 3579, the mitigation for the BlastRADIUS forgery); every
//!   response is built with one as its first attribute and its Response Authenticator; a
//!   proxied request is built and its answer checked the same way; User-Password is hidden
//!   and revealed (RFC 2865 §5.2).
//! - [`Recent`]: the requests in progress and the answers of the last seconds, so that a
//!   NAS's retransmission (same source, Identifier and Request Authenticator) is answered
//!   once and never starts a second call (RFC 5080 §2.2.2).
//!
//! No sockets, clocks or tasks: the server that moves the datagrams is `api::radius`.
//! Not here: accounting, CoA, EAP, CHAP and MS-CHAP (an Access-Request without
//! User-Password is answered Access-Reject by the server), RADIUS over TCP or TLS.

mod packet;
mod recent;
pub mod sign;

pub use packet::{Attribute, Code, DecodeError, MAX_LEN, MIN_LEN, Packet, attr};
pub use recent::{Admission, Recent, RequestKey};
