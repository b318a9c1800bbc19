//! What every request the user agent sends begins with, written once: the Via for its
//! route and branch, Max-Forwards, the route set, From, To, Call-ID and CSeq; and the random
//! identifiers that go into them.

use std::net::SocketAddr;

use rsip::Method;

use crate::message::Builder;
use crate::{Transport, random};

/// Where a request goes: over which transport, from which local listener, to which address;
/// and the listener's address as peers know it (its advertised one, behind a NAT), which
/// the request's Via names. A response goes back where its request came from and names
/// nothing of ours: its `sent_by` is unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Route {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub sent_by: SocketAddr,
}

/// The identity of a request: its Call-ID, From and To (with their tags as they go), CSeq
/// number and method.
pub(super) struct Head<'a> {
    pub method: &'a Method,
    pub uri: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
}

/// The start of a request: `METHOD uri`, Via (with `rport`), Max-Forwards, a Route for each
/// of `route_set`, From, To, Call-ID and CSeq, in that order.
pub(super) fn request(
    head: Head<'_>,
    route: &Route,
    branch: &str,
    route_set: &[String],
) -> Builder {
    let mut b = Builder::request(head.method, head.uri)
        .header("Via", via(route, branch))
        .header("Max-Forwards", "70");
    for r in route_set {
        b = b.header("Route", r);
    }
    b.header("From", head.from)
        .header("To", head.to)
        .header("Call-ID", head.call_id)
        .header("CSeq", format!("{} {}", head.cseq, head.method))
}

/// The Via of a request sent over `route` in the transaction `branch`.
pub(super) fn via(route: &Route, branch: &str) -> String {
    format!(
        "SIP/2.0/{} {};branch={branch};rport",
        route.transport.via_name(),
        route.sent_by
    )
}

/// A new branch: the RFC 3261 magic cookie and 128 random bits.
pub(super) fn new_branch() -> String {
    format!("z9hG4bK{}", random::hex(16))
}

/// A new tag: 96 random bits.
pub(super) fn new_tag() -> String {
    random::hex(12)
}

/// A new Call-ID: 128 random bits.
pub(super) fn new_call_id() -> String {
    random::hex(16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message;

    #[test]
    fn a_request_starts_with_its_routing_and_identity_in_order() {
        let route = Route {
            transport: Transport::Tcp,
            local: "127.0.0.1:5070".parse().unwrap(),
            remote: "127.0.0.1:5060".parse().unwrap(),
            sent_by: "127.0.0.1:5070".parse().unwrap(),
        };
        let bytes = request(
            Head {
                method: &Method::Bye,
                uri: "sip:callee@127.0.0.1:5060",
                from: "<sip:a@x>;tag=1",
                to: "<sip:b@x>;tag=2",
                call_id: "c1",
                cseq: 7,
            },
            &route,
            "z9hG4bKabc",
            &["<sip:p1;lr>".to_string(), "<sip:p2;lr>".to_string()],
        )
        .build();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let names: Vec<&str> = text
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split(':').next())
            .collect();
        assert_eq!(
            names,
            [
                "Via",
                "Max-Forwards",
                "Route",
                "Route",
                "From",
                "To",
                "Call-ID",
                "CSeq",
                "Content-Length"
            ]
        );
        let m = message::parse(&bytes).unwrap();
        assert_eq!(
            m.via.value,
            "SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKabc;rport"
        );
        assert_eq!((m.cseq, m.cseq_method), (7, Method::Bye));
        assert_eq!(
            (m.from_tag.as_deref(), m.to_tag.as_deref()),
            (Some("1"), Some("2"))
        );
    }

    #[test]
    fn identifiers_are_random_hex_of_their_length() {
        let b = new_branch();
        assert!(b.starts_with("z9hG4bK") && b.len() == 7 + 32);
        assert_eq!((new_tag().len(), new_call_id().len()), (24, 32));
        assert_ne!(new_call_id(), new_call_id());
    }
}
