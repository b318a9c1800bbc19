//! The requests the user agent answers: inside a call's dialog (BYE, re-INVITE or UPDATE,
//! ACK), OPTIONS, and everything else with 403, 481, 405 or 501; and the answers kept for
//! retransmitted requests (Timer J), bounded in number and bytes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use rsip::Method;

use super::headers::Route;
use super::leg::{LegState, LegTimer, Reply};
use super::{ALLOW, CallEvent, EndReason, Output, Transmit, UserAgent};
use crate::message::{self, Builder, Incoming};
use crate::sdp;
use crate::{SipStatus, Transport};

/// At most this many answers to requests (and this many bytes of them) are kept for their
/// retransmissions: a flood of requests from a trunk's address gets its answers, but cannot
/// grow memory without bound.
const MAX_ANSWERED: usize = 4096;
const MAX_ANSWERED_BYTES: usize = 4 << 20;

/// A response to a request we answered, sent again on its retransmissions until `until`.
#[derive(Clone, Debug)]
struct Cached {
    transmit: Transmit,
    until: Instant,
}

/// The answers kept, by server transaction (branch, method, Call-ID).
#[derive(Debug, Default)]
pub(super) struct Answered {
    by_key: HashMap<String, Cached>,
    /// (until, key) of every answer kept, soonest first: an entry whose answer was since
    /// replaced is skipped (so the next expiry and the expiry cost O(log n), not a scan).
    expiries: BinaryHeap<Reverse<(Instant, String)>>,
    bytes: usize,
}

impl Answered {
    /// The answer to send again for a retransmission of `req` from `from`, if it was
    /// answered (to that same sender: a copy from elsewhere gets nothing reflected).
    fn again(&self, req: &Incoming, from: &Route) -> Option<Transmit> {
        let c = self.by_key.get(&server_key(req)?)?;
        (c.transmit.remote == from.remote && c.transmit.transport == from.transport)
            .then(|| c.transmit.clone())
    }

    /// Keeps `transmit` as the answer to `req` until `until`, while within the bounds.
    fn keep(&mut self, req: &Incoming, transmit: Transmit, until: Instant) {
        let Some(key) = server_key(req) else {
            return;
        };
        let size = |key: &str, t: &Transmit| key.len() + t.bytes.len();
        let add = size(&key, &transmit);
        if self.by_key.len() >= MAX_ANSWERED || self.bytes + add > MAX_ANSWERED_BYTES {
            return;
        }
        self.bytes += add;
        let key_len = key.len();
        self.expiries.push(Reverse((until, key.clone())));
        if let Some(old) = self.by_key.insert(key, Cached { transmit, until }) {
            self.bytes = self
                .bytes
                .saturating_sub(key_len + old.transmit.bytes.len());
        }
        if self.expiries.len() > 64 + 2 * self.by_key.len() {
            // Entries of replaced answers: rebuilt from what is kept.
            self.expiries = self
                .by_key
                .iter()
                .map(|(k, c)| Reverse((c.until, k.clone())))
                .collect();
        }
    }

    /// Forgets the answers whose time has passed.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(Reverse((until, _))) = self.expiries.peek() {
            if *until > now {
                break;
            }
            let Some(Reverse((until, key))) = self.expiries.pop() else {
                break;
            };
            if self.by_key.get(&key).is_some_and(|c| c.until == until)
                && let Some(c) = self.by_key.remove(&key)
            {
                self.bytes = self
                    .bytes
                    .saturating_sub(key.len() + c.transmit.bytes.len());
            }
        }
    }

    /// When the next answer is forgotten (or, at worst, an answer since replaced was to
    /// be: then [`Answered::expire`] finds nothing to forget).
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.expiries.peek().map(|Reverse((until, _))| *until)
    }
}

/// The key of a server transaction: branch, method (ACK matches its INVITE) and Call-ID.
fn server_key(req: &Incoming) -> Option<String> {
    let branch = req.via.branch.as_ref()?;
    let method = match req.method()? {
        Method::Ack => Method::Invite,
        m => *m,
    };
    Some(format!("{branch}|{method}|{}", req.call_id))
}

impl UserAgent {
    /// A response to `req` carrying User-Agent.
    fn reply(&self, req: &Incoming, to: Route, status: SipStatus, reason: &str) -> Builder {
        message::response_to(req, to.remote, status.code(), reason, None)
            .header("User-Agent", self.cfg.user_agent.clone())
    }

    /// Sends a response and keeps it for the request's retransmissions (Timer J).
    fn send_reply(&mut self, now: Instant, req: &Incoming, to: Route, b: Builder) {
        let bytes = b.build();
        let transmit = Transmit {
            transport: to.transport,
            local: to.local,
            remote: to.remote,
            bytes: bytes.clone(),
        };
        let until = now + self.cfg.timers.timeout();
        self.answered.keep(req, transmit, until);
        self.transmit(to, bytes);
    }

    /// Sends `status` with its usual phrase ([`SipStatus::reason`]).
    fn respond(&mut self, now: Instant, req: &Incoming, to: Route, status: SipStatus) {
        self.respond_with(now, req, to, status, status.reason());
    }

    /// Sends `status` with words of its own.
    fn respond_with(&mut self, now: Instant, req: &Incoming, to: Route, s: SipStatus, why: &str) {
        let b = self.reply(req, to, s, why);
        self.send_reply(now, req, to, b);
    }

    fn respond_allow(&mut self, now: Instant, req: &Incoming, to: Route, status: SipStatus) {
        let b = self
            .reply(req, to, status, status.reason())
            .header("Allow", ALLOW);
        self.send_reply(now, req, to, b);
    }

    /// The call whose dialog `req` belongs to: both of its tags, from the trunk the call
    /// went through. A BYE or re-INVITE from anywhere else (or with a tag guessed wrong)
    /// belongs to none.
    fn dialog_of(&self, req: &Incoming, from: &Route) -> Option<u64> {
        let h = *self.by_call_id.get(&req.call_id)?;
        let leg = self.legs.get(h)?;
        let ours = leg.remote_tag.is_some()
            && req.to_tag.as_deref() == Some(leg.local_tag.as_str())
            && req.from_tag == leg.remote_tag
            && self.trunks[leg.trunk]
                .cfg
                .sends_requests_from(from.transport, from.remote);
        ours.then_some(h)
    }

    pub(super) fn on_request(&mut self, now: Instant, req: Incoming, from: Route) {
        let method = req.method().copied().unwrap_or(Method::Options);
        if method != Method::Ack
            && let Some(again) = self.answered.again(&req, &from)
        {
            // A retransmitted request (from the same sender): the same answer again.
            self.out.push_back(Output::Transmit(again));
            return;
        }
        let leg = self.dialog_of(&req, &from);
        if let Some(h) = leg
            && method != Method::Ack
            && let Some(leg) = self.legs.get_mut(h)
        {
            // RFC 3261 §12.2.2: a request older than one already taken is out of order.
            if leg.remote_cseq.is_some_and(|seen| req.cseq < seen) {
                let s = SipStatus::SERVER_INTERNAL_ERROR;
                self.respond_with(now, &req, from, s, "CSeq Out of Order");
                return;
            }
            leg.remote_cseq = Some(req.cseq);
        }
        match (method, leg) {
            (Method::Ack, Some(h)) => {
                if let Some(leg) = self.legs.get_mut(h) {
                    leg.timers.stop(LegTimer::ReplyRetransmit);
                    leg.timers.stop(LegTimer::ReplyGiveUp);
                    if let Some(d) = leg.dialog_mut() {
                        d.reply = None;
                    }
                }
            }
            (Method::Ack, None) => {}
            (Method::Bye, Some(h)) => {
                self.respond(now, &req, from, SipStatus::OK);
                if let Some(reason) = self
                    .legs
                    .get(h)
                    .and_then(|l| l.end_reason(EndReason::RemoteHangup, EndReason::RemoteHangup))
                {
                    self.finish(h, now, reason);
                }
            }
            (Method::Invite | Method::Update, Some(h)) => self.on_reinvite(h, now, req, from),
            (Method::Options, _) => self.respond_allow(now, &req, from, SipStatus::OK),
            (Method::Invite, None) if req.to_tag.is_none() => self.respond_with(
                now,
                &req,
                from,
                SipStatus::FORBIDDEN,
                "Forbidden (callverify places calls only)",
            ),
            (_, None) if req.to_tag.is_some() || method == Method::Cancel => {
                self.respond(now, &req, from, SipStatus::CALL_DOES_NOT_EXIST);
            }
            (_, Some(_)) => self.respond_allow(now, &req, from, SipStatus::NOT_IMPLEMENTED),
            (_, None) => self.respond_allow(now, &req, from, SipStatus::METHOD_NOT_ALLOWED),
        }
    }

    /// A re-INVITE or UPDATE in an answered dialog: keep the media (same codec) and answer
    /// 200, or 488 when the new offer leaves nothing callverify can use.
    fn on_reinvite(&mut self, h: u64, now: Instant, req: Incoming, from: Route) {
        let timers = self.cfg.timers;
        let Some(leg) = self.legs.get_mut(h) else {
            return;
        };
        let current = match &leg.state {
            LegState::Confirmed(d) | LegState::Ending { dialog: d, .. } => d.answer.clone(),
            _ => {
                self.respond(now, &req, from, SipStatus::REQUEST_PENDING);
                return;
            }
        };
        let Some(current) = current else {
            self.respond(now, &req, from, SipStatus::NOT_ACCEPTABLE_HERE);
            return;
        };
        let mut ours = leg.offer.clone();
        ours.codecs = vec![current.codec];
        ours.version += 1;
        let body = if req.body().is_empty() {
            // No offer in the re-INVITE: ours goes in the 200 and the answer in the ACK.
            ours.to_sdp()
        } else {
            let parsed = std::str::from_utf8(req.body())
                .map_err(|_| ())
                .and_then(|b| sdp::parse_answer(b, &ours).map_err(|_| ()));
            let Ok(a) = parsed else {
                self.respond(now, &req, from, SipStatus::NOT_ACCEPTABLE_HERE);
                return;
            };
            let body = ours.answer_sdp(a.telephone_event_pt);
            if a != current {
                if let Some(d) = leg.dialog_mut() {
                    d.answer = Some(a.clone());
                }
                self.call_event(h, CallEvent::MediaChanged { answer: a });
            }
            body
        };
        let Some(leg) = self.legs.get_mut(h) else {
            return;
        };
        leg.offer.version = ours.version;
        let contact = leg.contact.clone();
        let b = self
            .reply(&req, from, SipStatus::OK, SipStatus::OK.reason())
            .header("Contact", contact)
            .header("Allow", ALLOW)
            .body("application/sdp", body);
        if req.method() == Some(&Method::Invite) && from.transport == Transport::Udp {
            let bytes = b.clone().build();
            let Some(leg) = self.legs.get_mut(h) else {
                return;
            };
            leg.timers.set(LegTimer::ReplyRetransmit, now + timers.t1);
            leg.timers
                .set(LegTimer::ReplyGiveUp, now + timers.timeout());
            if let Some(d) = leg.dialog_mut() {
                d.reply = Some(Reply {
                    bytes,
                    to: from,
                    interval: timers.t1,
                });
            }
        }
        self.send_reply(now, &req, from, b);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn request(branch: &str, method: &str, padding: usize) -> Incoming {
        let bytes = Builder::request(&method.parse().unwrap(), "sip:callverify@127.0.0.1")
            .header("Via", format!("SIP/2.0/UDP 127.0.0.1:5060;branch={branch}"))
            .header("From", "<sip:a@x>;tag=1")
            .header("To", "<sip:b@x>;tag=2")
            .header("Call-ID", format!("c{}", "x".repeat(padding)))
            .header("CSeq", format!("1 {method}"))
            .build();
        message::parse(&bytes).unwrap()
    }

    fn route(port: u16) -> Route {
        Route {
            transport: Transport::Udp,
            local: "127.0.0.1:5070".parse().unwrap(),
            remote: ([127, 0, 0, 1], port).into(),
            sent_by: "127.0.0.1:5070".parse().unwrap(),
        }
    }

    fn transmit(to: Route, size: usize) -> Transmit {
        Transmit {
            transport: to.transport,
            local: to.local,
            remote: to.remote,
            bytes: vec![b'x'; size],
        }
    }

    #[test]
    fn an_answer_is_sent_again_only_to_its_sender_until_it_expires() {
        let now = Instant::now();
        let mut a = Answered::default();
        let bye = request("z9hG4bK1", "BYE", 0);
        a.keep(
            &bye,
            transmit(route(5060), 100),
            now + Duration::from_secs(32),
        );
        assert!(a.again(&bye, &route(5060)).is_some());
        assert!(
            a.again(&bye, &route(5999)).is_none(),
            "a copy from elsewhere"
        );
        // ACK matches its INVITE's transaction; another method does not.
        let invite = request("z9hG4bK2", "INVITE", 0);
        a.keep(
            &invite,
            transmit(route(5060), 100),
            now + Duration::from_secs(1),
        );
        assert!(
            a.again(&request("z9hG4bK2", "ACK", 0), &route(5060))
                .is_some()
        );
        assert!(
            a.again(&request("z9hG4bK2", "BYE", 0), &route(5060))
                .is_none()
        );
        assert_eq!(a.next_expiry(), Some(now + Duration::from_secs(1)));
        a.expire(now + Duration::from_secs(2));
        assert!(a.again(&invite, &route(5060)).is_none());
        assert!(a.again(&bye, &route(5060)).is_some());
    }

    #[test]
    fn answers_kept_are_bounded_in_bytes() {
        let now = Instant::now();
        let mut a = Answered::default();
        let until = now + Duration::from_secs(32);
        for i in 0..100 {
            let r = request(&format!("z9hG4bK{i}"), "OPTIONS", 0);
            a.keep(&r, transmit(route(5060), 60_000), until);
        }
        assert!(a.bytes <= MAX_ANSWERED_BYTES, "{}", a.bytes);
        assert!(a.by_key.len() < 100);
        a.expire(now + Duration::from_secs(33));
        assert_eq!((a.by_key.len(), a.bytes), (0, 0));
    }
}
