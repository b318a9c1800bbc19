//! One outbound call (a leg): the INVITE and its responses, the ACK, CANCEL and BYE with
//! their retries, failover to the next trunk, and the end. What a leg knows in each state is
//! carried by that state ([`LegState`]), so that, say, a dialog's route set cannot exist
//! before the answer nor a BYE before the dialog; every deadline is in its [`TimerTable`].

mod responses;
mod timers;

use std::time::{Duration, Instant};

use rsip::Method;

use super::auth::AuthState;
use super::endpoint::Owner;
use super::headers::{self, Head, Route};
use super::{ALLOW, CallEvent, EndReason, UserAgent};
use crate::message::{Builder, Incoming};
use crate::sdp::{Answer, Offer};
use crate::timer::TimerTable;
use crate::transaction::{ClientTx, Kind};

pub(super) use timers::LegTimer;

/// Where a leg is, with what it knows there. (Its variants differ in size; a leg lives in
/// the user agent's map and changes state a few times in its life, so none is boxed.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum LegState {
    /// INVITE sent, nothing heard; `hangup` is a hang-up waiting for a provisional to send
    /// its CANCEL (RFC 3261 §9.1: no CANCEL before one).
    Calling { hangup: Option<EndReason> },
    /// A provisional arrived.
    Proceeding,
    /// CANCEL sent; waiting for the INVITE's final response.
    Cancelling {
        reason: EndReason,
        cancel: ClientTx<LegTimer>,
    },
    /// Answered: the 2xx was ACKed.
    Confirmed(Dialog),
    /// BYE sent (its CSeq, and the credentials for its retries).
    Ending {
        reason: EndReason,
        dialog: Dialog,
        bye: ClientTx<LegTimer>,
        cseq: u32,
        auth: AuthState,
    },
    /// Ended and reported; kept a while to absorb retransmissions (the dialog, if there
    /// was one, to ACK a retransmitted 2xx again).
    Lingering { dialog: Option<Dialog> },
}

/// A confirmed dialog (RFC 3261 §12.1.2), as its UAC keeps it.
#[derive(Debug)]
pub(super) struct Dialog {
    /// The callee's Contact: the Request-URI of requests in the dialog.
    pub remote_target: Option<String>,
    /// Record-Route in reverse.
    pub route_set: Vec<String>,
    /// The media the answer settled (`None`: the answer was unusable; the leg is ending).
    pub answer: Option<Answer>,
    /// The ACK of the 2xx, sent again for each retransmitted 2xx.
    ack: Vec<u8>,
    /// Our 200 to a re-INVITE, retransmitted until its ACK.
    pub reply: Option<Reply>,
}

/// Our 200 to a re-INVITE, with where it goes and the current retransmission interval.
#[derive(Debug)]
pub(super) struct Reply {
    pub bytes: Vec<u8>,
    pub to: Route,
    pub interval: Duration,
}

/// A finished INVITE transaction kept to re-ACK retransmitted final responses.
#[derive(Clone, Debug)]
struct Completed {
    branch: String,
    cseq: u32,
    ack: Vec<u8>,
    until: Instant,
}

/// One outbound call.
#[derive(Debug)]
pub(super) struct Leg {
    pub target: String,
    pub offer: Offer,
    pub trunk: usize,
    pub tried: Vec<usize>,
    pub route: Route,
    pub call_id: String,
    pub local_tag: String,
    pub from: String,
    to: String,
    ruri: String,
    pub contact: String,
    cseq: u32,
    invite_cseq: u32,
    invite: Option<ClientTx<LegTimer>>,
    /// The credentials the current INVITE carried, for the ACK of its 2xx (RFC 3261
    /// §13.2.2.4: "The ACK MUST contain the same credentials as the INVITE").
    invite_credentials: Option<(&'static str, String)>,
    completed: Vec<Completed>,
    auth: AuthState,
    /// The callee's tag, from a provisional (an early dialog) or the answer.
    pub remote_tag: Option<String>,
    /// The highest CSeq of the callee's requests in the dialog (RFC 3261 §12.2.2).
    pub remote_cseq: Option<u32>,
    pub state: LegState,
    pub timers: TimerTable<LegTimer>,
    /// The branches of this leg's client transactions (to forget them with the leg).
    pub branches: Vec<String>,
    /// The answers of other forks than the one taken (a proxy forked the INVITE and more
    /// than one phone answered), each ended at once with an ACK and a BYE.
    forks: Vec<Fork>,
}

/// An answer from another fork than the dialog's (RFC 3261 §13.2.2.4: ACKed, then ended
/// with a BYE): its tag, and the ACK and BYE sent again for each retransmission of its 2xx
/// (the sign that they were lost).
#[derive(Debug)]
struct Fork {
    remote_tag: Option<String>,
    ack: Vec<u8>,
    bye: Vec<u8>,
    /// The BYE's branch: its response ends nothing.
    bye_branch: String,
}

impl Leg {
    /// Whether its end has been reported.
    pub fn is_over(&self) -> bool {
        matches!(self.state, LegState::Lingering { .. })
    }

    /// Whether a failure of its trunk may move it to the next (nothing heard, and no
    /// hang-up wanted).
    pub fn may_fail_over(&self) -> bool {
        matches!(self.state, LegState::Calling { hangup: None })
    }

    /// How it ends if it ends now by a failure: the reason of a hang-up under way, or
    /// `early` before an answer, `confirmed` after one; `None` when it has ended.
    pub fn end_reason(&self, early: EndReason, confirmed: EndReason) -> Option<EndReason> {
        match &self.state {
            LegState::Calling { hangup: Some(r) }
            | LegState::Cancelling { reason: r, .. }
            | LegState::Ending { reason: r, .. } => Some(r.clone()),
            LegState::Calling { hangup: None } | LegState::Proceeding => Some(early),
            LegState::Confirmed(_) => Some(confirmed),
            LegState::Lingering { .. } => None,
        }
    }

    /// The dialog, while answered (ending included).
    pub fn dialog_mut(&mut self) -> Option<&mut Dialog> {
        match &mut self.state {
            LegState::Confirmed(d) | LegState::Ending { dialog: d, .. } => Some(d),
            _ => None,
        }
    }

    fn take_state(&mut self) -> LegState {
        std::mem::replace(&mut self.state, LegState::Lingering { dialog: None })
    }

    /// A request inside the dialog (ACK for 2xx, BYE): Request-URI and Route from it.
    fn in_dialog(&self, dialog: &Dialog, method: Method, cseq: u32, branch: &str) -> Builder {
        self.in_dialog_with(dialog, self.remote_tag.as_deref(), method, cseq, branch)
    }

    /// As [`Leg::in_dialog`], in the dialog of the callee's tag `remote_tag` (a fork's).
    fn in_dialog_with(
        &self,
        dialog: &Dialog,
        remote_tag: Option<&str>,
        method: Method,
        cseq: u32,
        branch: &str,
    ) -> Builder {
        let target = dialog.remote_target.as_deref().unwrap_or(&self.ruri);
        let to = match remote_tag {
            Some(tag) => format!("{};tag={tag}", self.to),
            None => self.to.clone(),
        };
        let head = Head {
            method: &method,
            uri: target,
            from: &self.from,
            to: &to,
            call_id: &self.call_id,
            cseq,
        };
        headers::request(head, &self.route, branch, &dialog.route_set)
    }

    /// The ACK for a non-2xx final response: same branch and Request-URI as the INVITE.
    fn non_2xx_ack(&self, resp: &Incoming, branch: &str) -> Vec<u8> {
        let to = resp.header("To").unwrap_or_else(|| self.to.clone());
        let head = Head {
            method: &Method::Ack,
            uri: &self.ruri,
            from: &self.from,
            to: &to,
            call_id: &self.call_id,
            cseq: self.invite_cseq,
        };
        headers::request(head, &self.route, branch, &[]).build()
    }

    fn set_completed_timer(&mut self) {
        match self.completed.iter().map(|c| c.until).min() {
            Some(at) => self.timers.set(LegTimer::Completed, at),
            None => self.timers.stop(LegTimer::Completed),
        }
    }
}

impl UserAgent {
    /// A leg through trunk `trunk` (not yet sent), ringing at most until `ring_until`.
    pub(super) fn new_leg(
        &mut self,
        trunk: usize,
        target: String,
        mut offer: Offer,
        ring_until: Instant,
        mut tried: Vec<usize>,
    ) -> Leg {
        tried.push(trunk);
        let tr = &self.trunks[trunk];
        offer.sdes.policy = tr.cfg.srtp;
        let local_tag = headers::new_tag();
        let domain = &tr.cfg.domain;
        let mut timers = TimerTable::default();
        timers.set(LegTimer::Ring, ring_until);
        Leg {
            ruri: format!("sip:{target}@{domain}"),
            from: format!("<sip:{}@{domain}>;tag={local_tag}", tr.cfg.from_user),
            to: format!("<sip:{target}@{domain}>"),
            contact: tr.contact(),
            route: tr.route(),
            target,
            offer,
            trunk,
            tried,
            call_id: headers::new_call_id(),
            local_tag,
            cseq: 0,
            invite_cseq: 0,
            invite: None,
            invite_credentials: None,
            completed: Vec::new(),
            auth: AuthState::default(),
            remote_tag: None,
            remote_cseq: None,
            state: LegState::Calling { hangup: None },
            timers,
            branches: Vec::new(),
            forks: Vec::new(),
        }
    }

    /// Forgets a leg and its transactions.
    pub(super) fn remove_leg(&mut self, h: u64) -> Option<Leg> {
        let leg = self.legs.remove(h)?;
        for b in &leg.branches {
            self.txs.remove(b);
        }
        if self.by_call_id.get(&leg.call_id) == Some(&h) {
            self.by_call_id.remove(&leg.call_id);
        }
        Some(leg)
    }

    pub(super) fn send_invite(&mut self, h: u64, now: Instant) {
        let Some(trunk) = self.legs.get(h).map(|l| l.trunk) else {
            return;
        };
        let branch = self.branch(Owner::Call(h));
        let creds = self.trunks[trunk].cfg.credentials.clone();
        let trunk_name = self.trunks[trunk].cfg.name.clone();
        let (ua, timers) = (self.cfg.user_agent.clone(), self.cfg.timers);
        let Some(leg) = self.legs.get_mut(h) else {
            return;
        };
        leg.cseq += 1;
        leg.invite_cseq = leg.cseq;
        let head = Head {
            method: &Method::Invite,
            uri: &leg.ruri,
            from: &leg.from,
            to: &leg.to,
            call_id: &leg.call_id,
            cseq: leg.cseq,
        };
        let mut b =
            headers::request(head, &leg.route, &branch, &[]).header("Contact", &leg.contact);
        leg.invite_credentials = leg.auth.header(creds.as_ref(), Method::Invite, &leg.ruri);
        if let Some((name, value)) = &leg.invite_credentials {
            b = b.header(name, value);
        }
        let bytes = b
            .header("Allow", ALLOW)
            .header("User-Agent", ua)
            .body("application/sdp", leg.offer.to_sdp())
            .build();
        let first = leg.invite.is_none() && leg.completed.is_empty();
        leg.invite = Some(ClientTx::start(
            Kind::Invite,
            (branch, bytes.clone()),
            leg.route.transport,
            (LegTimer::InviteRetransmit, LegTimer::InviteTimeout),
            (&timers, now),
            &mut leg.timers,
        ));
        let route = leg.route;
        self.transmit(route, bytes);
        if first {
            self.call_event(h, CallEvent::Sent { trunk: trunk_name });
        }
    }

    /// Sends the CANCEL of the leg's INVITE: it is cancelling for `reason`.
    fn send_cancel(&mut self, h: u64, now: Instant, reason: EndReason) {
        let (ua, timers) = (self.cfg.user_agent.clone(), self.cfg.timers);
        let Some(leg) = self.legs.get_mut(h) else {
            return;
        };
        let Some(branch) = leg.invite.as_ref().map(|tx| tx.branch.clone()) else {
            // No INVITE to cancel (its final response came): the call is over.
            leg.state = LegState::Proceeding;
            self.finish(h, now, reason);
            return;
        };
        let head = Head {
            method: &Method::Cancel,
            uri: &leg.ruri,
            from: &leg.from,
            to: &leg.to,
            call_id: &leg.call_id,
            cseq: leg.invite_cseq,
        };
        let bytes = headers::request(head, &leg.route, &branch, &[])
            .header("User-Agent", ua)
            .build();
        // Its timeout is the wait for the INVITE's final response: the same 64·T1.
        let cancel = ClientTx::start(
            Kind::NonInvite,
            (branch, bytes.clone()),
            leg.route.transport,
            (LegTimer::CancelRetransmit, LegTimer::CancelTimeout),
            (&timers, now),
            &mut leg.timers,
        );
        leg.state = LegState::Cancelling { reason, cancel };
        let route = leg.route;
        self.transmit(route, bytes);
    }

    /// Sends a BYE in `dialog` (again, with `auth`, after a challenge): it is ending for
    /// `reason`.
    fn send_bye(
        &mut self,
        h: u64,
        now: Instant,
        reason: EndReason,
        dialog: Dialog,
        mut auth: AuthState,
    ) {
        if !self.legs.contains_key(h) {
            return;
        }
        let branch = self.branch(Owner::Call(h));
        let timers = self.cfg.timers;
        let ua = self.cfg.user_agent.clone();
        let Some(trunk) = self.legs.get(h).map(|l| l.trunk) else {
            return;
        };
        let creds = self.trunks[trunk].cfg.credentials.clone();
        let Some(leg) = self.legs.get_mut(h) else {
            return;
        };
        leg.cseq += 1;
        let cseq = leg.cseq;
        let mut b = leg
            .in_dialog(&dialog, Method::Bye, cseq, &branch)
            .header("User-Agent", ua);
        let target = dialog.remote_target.as_deref().unwrap_or(&leg.ruri);
        if let Some((name, value)) = auth.header(creds.as_ref(), Method::Bye, target) {
            b = b.header(name, value);
        }
        let bytes = b.build();
        let bye = ClientTx::start(
            Kind::NonInvite,
            (branch, bytes.clone()),
            leg.route.transport,
            (LegTimer::ByeRetransmit, LegTimer::ByeTimeout),
            (&timers, now),
            &mut leg.timers,
        );
        leg.state = LegState::Ending {
            reason,
            dialog,
            bye,
            cseq,
            auth,
        };
        let route = leg.route;
        self.transmit(route, bytes);
    }

    /// Starts ending a call: CANCEL (`early`) before an answer, BYE (`confirmed`) after.
    pub(super) fn teardown(
        &mut self,
        h: u64,
        now: Instant,
        early: EndReason,
        confirmed: EndReason,
    ) {
        let Some(leg) = self.legs.get_mut(h) else {
            return;
        };
        match leg.take_state() {
            LegState::Calling { hangup: None } => {
                // RFC 3261 §9.1: no CANCEL before a provisional; it goes when one arrives.
                leg.timers.stop(LegTimer::Ring);
                leg.state = LegState::Calling {
                    hangup: Some(early),
                };
            }
            LegState::Proceeding => {
                leg.timers.stop(LegTimer::Ring);
                self.send_cancel(h, now, early);
            }
            LegState::Confirmed(dialog) => {
                self.send_bye(h, now, confirmed, dialog, AuthState::default());
            }
            // Already ending, or over.
            other => leg.state = other,
        }
    }

    /// Reports the end once and keeps the leg a while to absorb retransmissions.
    pub(super) fn finish(&mut self, h: u64, now: Instant, reason: EndReason) {
        let linger = self.cfg.timers.timeout();
        let Some(leg) = self.legs.get_mut(h) else {
            return;
        };
        let mut dialog = match leg.take_state() {
            LegState::Lingering { dialog } => {
                leg.state = LegState::Lingering { dialog };
                return;
            }
            LegState::Confirmed(d) | LegState::Ending { dialog: d, .. } => Some(d),
            _ => None,
        };
        if let Some(d) = &mut dialog {
            d.reply = None;
        }
        leg.state = LegState::Lingering { dialog };
        for t in [
            LegTimer::InviteRetransmit,
            LegTimer::InviteTimeout,
            LegTimer::CancelRetransmit,
            LegTimer::CancelTimeout,
            LegTimer::ByeRetransmit,
            LegTimer::ByeTimeout,
            LegTimer::ReplyRetransmit,
            LegTimer::ReplyGiveUp,
            LegTimer::Ring,
        ] {
            leg.timers.stop(t);
        }
        leg.timers.set(LegTimer::Linger, now + linger);
        self.call_event(h, CallEvent::Ended(reason));
    }

    /// Tries the next trunk after this one failed (timeout, unreachable, 503); false when
    /// there is none left, or the leg may not move (a hang-up is under way).
    pub(super) fn failover(&mut self, h: u64, now: Instant) -> bool {
        let Some(leg) = self.legs.get(h) else {
            return false;
        };
        if !leg.may_fail_over() {
            return false;
        }
        let Some(next) = self.pick_trunk(&leg.tried) else {
            return false;
        };
        let Some(leg) = self.remove_leg(h) else {
            return false;
        };
        // The ring timeout runs from the first attempt.
        let ring_until = leg.timers.get(LegTimer::Ring).unwrap_or(now);
        let fresh = self.new_leg(next, leg.target, leg.offer, ring_until, leg.tried);
        self.by_call_id.insert(fresh.call_id.clone(), h);
        self.legs.insert(h, fresh);
        self.send_invite(h, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::message;
    use crate::ua::{Listener, Output, TrunkConfig, UaConfig};
    use crate::{Timers, Transport};

    const PEER: &str = "127.0.0.1:5060";

    fn ua() -> UserAgent {
        ua_with(None)
    }

    fn ua_with(credentials: Option<crate::Credentials>) -> UserAgent {
        let cfg = UaConfig {
            listen: vec![Listener::new(
                Transport::Udp,
                "127.0.0.1:5070".parse().unwrap(),
            )],
            user_agent: "t".into(),
            timers: Timers::default(),
            ring_timeout: Duration::from_secs(45),
        };
        let trunk = TrunkConfig {
            name: "pbx".into(),
            address: PEER.parse().unwrap(),
            transport: Transport::Udp,
            domain: PEER.into(),
            from_user: "callverify".into(),
            credentials,
            register: false,
            options_interval: None,
            srtp: Default::default(),
            responses_from: Default::default(),
        };
        UserAgent::new(cfg, vec![trunk]).unwrap()
    }

    fn offer() -> Offer {
        Offer {
            address: "127.0.0.1".parse().unwrap(),
            port: 40000,
            session_id: 1,
            version: 1,
            codecs: vec![media::Codec::Pcmu],
            sdes: Default::default(),
        }
    }

    /// The requests sent since the last call, by method.
    fn sent(ua: &mut UserAgent) -> Vec<message::Incoming> {
        let mut out = Vec::new();
        while let Some(o) = ua.poll_output() {
            if let Output::Transmit(t) = o {
                out.push(message::parse(&t.bytes).unwrap());
            }
        }
        out
    }

    fn respond(ua: &mut UserAgent, now: Instant, req: &message::Incoming, code: u16, sdp: bool) {
        let mut b = message::response_to(req, PEER.parse().unwrap(), code, "R", Some("callee"))
            .header("Contact", "<sip:callee@127.0.0.1:5060>");
        if sdp {
            b = b.body(
                "application/sdp",
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
            );
        }
        ua.handle_receive(
            now,
            Transport::Udp,
            "127.0.0.1:5070".parse().unwrap(),
            PEER.parse().unwrap(),
            &b.build(),
        );
    }

    fn state(ua: &UserAgent) -> &'static str {
        match &ua.legs[&1].state {
            LegState::Calling { hangup: None } => "calling",
            LegState::Calling { hangup: Some(_) } => "calling, hang-up waiting",
            LegState::Proceeding => "proceeding",
            LegState::Cancelling { .. } => "cancelling",
            LegState::Confirmed(_) => "confirmed",
            LegState::Ending { .. } => "ending",
            LegState::Lingering { .. } => "lingering",
        }
    }

    #[test]
    fn a_hang_up_before_any_provisional_waits_for_one_and_an_answer_then_is_ended() {
        let now = Instant::now();
        let mut ua = ua();
        ua.invite(now, "+81901234567", offer()).unwrap();
        let invite = sent(&mut ua).remove(0);
        assert_eq!(state(&ua), "calling");
        assert!(ua.legs[&1].timers.get(LegTimer::Ring).is_some());
        ua.hangup(now, crate::CallHandle(1));
        assert_eq!(state(&ua), "calling, hang-up waiting");
        assert!(sent(&mut ua).is_empty(), "no CANCEL before a provisional");
        assert!(ua.legs[&1].timers.get(LegTimer::Ring).is_none());
        respond(&mut ua, now, &invite, 180, false);
        assert_eq!(state(&ua), "cancelling");
        assert_eq!(sent(&mut ua)[0].method(), Some(&Method::Cancel));
        // Answered while the CANCEL was on its way: ACK, then BYE.
        respond(&mut ua, now, &invite, 200, true);
        assert_eq!(state(&ua), "ending");
        let methods: Vec<_> = sent(&mut ua).iter().map(|m| m.method().copied()).collect();
        assert_eq!(methods, vec![Some(Method::Ack), Some(Method::Bye)]);
        assert!(ua.legs[&1].timers.get(LegTimer::CancelTimeout).is_none());
    }

    #[test]
    fn the_end_lingers_with_the_dialog_to_ack_a_retransmitted_answer() {
        let now = Instant::now();
        let mut ua = ua();
        ua.invite(now, "+81901234567", offer()).unwrap();
        let invite = sent(&mut ua).remove(0);
        respond(&mut ua, now, &invite, 200, true);
        assert_eq!(state(&ua), "confirmed");
        sent(&mut ua);
        ua.finish(1, now, EndReason::Hangup);
        assert_eq!(state(&ua), "lingering");
        assert!(ua.legs[&1].timers.get(LegTimer::Linger).is_some());
        respond(&mut ua, now, &invite, 200, true);
        assert_eq!(sent(&mut ua)[0].method(), Some(&Method::Ack));
        // After 64·T1 the leg is forgotten.
        ua.handle_timeout(now + Duration::from_secs(33));
        assert!(ua.legs.is_empty() && ua.txs.is_empty() && ua.by_call_id.is_empty());
    }

    #[test]
    fn the_ack_of_an_answer_carries_the_credentials_of_the_invite() {
        let now = Instant::now();
        let mut ua = ua_with(Some(crate::Credentials {
            username: "callverify".into(),
            password: "secret".into(),
        }));
        ua.invite(now, "+81901234567", offer()).unwrap();
        let invite = sent(&mut ua).remove(0);
        assert_eq!(invite.header("Proxy-Authorization"), None);
        let challenge = message::response_to(&invite, PEER.parse().unwrap(), 407, "R", None)
            .header(
                "Proxy-Authenticate",
                "Digest realm=\"proxy\", nonce=\"n1\", qop=\"auth\"",
            )
            .build();
        let udp = "127.0.0.1:5070".parse().unwrap();
        ua.handle_receive(now, Transport::Udp, udp, PEER.parse().unwrap(), &challenge);
        let out = sent(&mut ua);
        let methods: Vec<_> = out.iter().map(|m| m.method().copied()).collect();
        assert_eq!(methods, [Some(Method::Ack), Some(Method::Invite)]);
        // The ACK of the 407 is hop by hop: no credentials.
        assert_eq!(out[0].header("Proxy-Authorization"), None);
        let credentials = out[1].header("Proxy-Authorization").expect("credentials");
        respond(&mut ua, now, &out[1], 200, true);
        assert_eq!(state(&ua), "confirmed");
        let ack = sent(&mut ua).remove(0);
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.header("Proxy-Authorization"), Some(credentials));
    }

    #[test]
    fn a_second_answer_from_another_fork_is_acked_and_ended_along_its_route() {
        let now = Instant::now();
        let mut ua = ua();
        ua.invite(now, "+81901234567", offer()).unwrap();
        let invite = sent(&mut ua).remove(0);
        respond(&mut ua, now, &invite, 200, true);
        assert_eq!(state(&ua), "confirmed");
        sent(&mut ua);
        let sdp = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 6002 RTP/AVP 0\r\n";
        let fork = message::response_to(&invite, PEER.parse().unwrap(), 200, "OK", Some("fork"))
            .header("Record-Route", "<sip:127.0.0.1:5060;lr>")
            .header("Contact", "<sip:other@127.0.0.1:6060>")
            .body("application/sdp", sdp)
            .build();
        let udp = "127.0.0.1:5070".parse().unwrap();
        for _ in 0..2 {
            // The 2xx, then its retransmission: each gets the ACK and the BYE.
            ua.handle_receive(now, Transport::Udp, udp, PEER.parse().unwrap(), &fork);
            let out = sent(&mut ua);
            let methods: Vec<_> = out.iter().map(|m| m.method().copied()).collect();
            assert_eq!(methods, [Some(Method::Ack), Some(Method::Bye)]);
            for m in &out {
                assert_eq!(m.to_tag.as_deref(), Some("fork"));
                assert_eq!(
                    m.header("Route").as_deref(),
                    Some("<sip:127.0.0.1:5060;lr>")
                );
                assert_eq!(m.request_uri(), "sip:other@127.0.0.1:6060");
            }
        }
        // The dialog taken goes on; the fork's BYE is answered without a word.
        assert_eq!(state(&ua), "confirmed");
        let bye = {
            ua.handle_receive(now, Transport::Udp, udp, PEER.parse().unwrap(), &fork);
            sent(&mut ua).remove(1)
        };
        let ok = message::response_to(&bye, PEER.parse().unwrap(), 200, "OK", None).build();
        ua.handle_receive(now, Transport::Udp, udp, PEER.parse().unwrap(), &ok);
        let events: Vec<_> = std::iter::from_fn(|| ua.poll_output()).collect();
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(state(&ua), "confirmed");
    }
}
