//! The user agent driven with a simulated clock against a scripted peer: what it sends,
//! when, and what it reports, including lost and repeated packets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use media::Codec;
use media::srtp::Suite;
use sip::message::{self, Builder, Incoming};
use sip::sdp::{Offer, Sdes, SdesKey, SrtpPolicy};
use sip::{
    CallEvent, CallHandle, Credentials, EndReason, Event, Listener, Output, Registration, Timers,
    Transport, TrunkConfig, UaConfig, UserAgent,
};

const LOCAL: &str = "127.0.0.1:5070";
const PEER: &str = "127.0.0.1:5060";
const BACKUP: &str = "127.0.0.1:5062";

fn trunk(name: &str, addr: &str) -> TrunkConfig {
    TrunkConfig {
        name: name.into(),
        address: addr.parse().unwrap(),
        transport: Transport::Udp,
        domain: addr.into(),
        from_user: "callverify".into(),
        credentials: Some(Credentials {
            username: "callverify".into(),
            password: "s3cret".into(),
        }),
        register: false,
        options_interval: None,
        srtp: Default::default(),
        responses_from: Default::default(),
    }
}

fn offer() -> Offer {
    Offer {
        address: "127.0.0.1".parse().unwrap(),
        port: 40000,
        session_id: 1,
        version: 1,
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        // Offered only through a trunk whose srtp policy says so.
        sdes: Sdes {
            policy: SrtpPolicy::Off,
            key: Some(SdesKey {
                tag: 1,
                suite: Suite::AesCm128HmacSha1_80,
                master: [7; 30],
            }),
        },
    }
}

const ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 6000 RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\n";

struct Sim {
    ua: UserAgent,
    now: Instant,
    t0: Instant,
    sent: Vec<(Duration, SocketAddr, Incoming)>,
    events: Vec<Event>,
}

impl Sim {
    fn new(trunks: Vec<TrunkConfig>) -> Sim {
        let cfg = UaConfig {
            listen: vec![Listener {
                transport: Transport::Udp,
                addr: LOCAL.parse().unwrap(),
            }],
            user_agent: "callverify-test".into(),
            timers: Timers::default(),
            ring_timeout: Duration::from_secs(45),
        };
        let now = Instant::now();
        Sim {
            ua: UserAgent::new(cfg, trunks).unwrap(),
            now,
            t0: now,
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.ua.poll_output() {
            match o {
                Output::Transmit(t) => {
                    let m = message::parse(&t.bytes).expect("the UA sends parseable messages");
                    self.sent.push((self.now - self.t0, t.remote, m));
                }
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    /// Advances the clock to `at` (since start), running every timer on the way.
    fn run_until(&mut self, at: Duration) {
        let end = self.t0 + at;
        let mut spins = 0;
        while let Some(t) = self.ua.poll_timeout() {
            if t > end {
                break;
            }
            spins += 1;
            assert!(
                spins < 10_000,
                "a timer at {:?} is never cleared",
                t - self.t0
            );
            self.now = t.max(self.now);
            self.ua.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.drain();
    }

    fn receive(&mut self, from: &str, bytes: Vec<u8>) {
        self.ua.handle_receive(
            self.now,
            Transport::Udp,
            LOCAL.parse().unwrap(),
            from.parse().unwrap(),
            &bytes,
        );
        self.drain();
    }

    fn invite(&mut self) -> CallHandle {
        let h = self.ua.invite(self.now, "+81901234567", offer()).unwrap();
        self.drain();
        h
    }

    fn take_sent(&mut self) -> Vec<(Duration, SocketAddr, Incoming)> {
        std::mem::take(&mut self.sent)
    }

    fn last(&self, method: &str) -> Incoming {
        self.sent
            .iter()
            .rev()
            .find(|(_, _, m)| m.method().is_some_and(|x| x.to_string() == method))
            .map(|(_, _, m)| m.clone())
            .unwrap_or_else(|| panic!("no {method} sent"))
    }

    fn methods(&self) -> Vec<String> {
        self.sent
            .iter()
            .map(|(_, _, m)| match m.method() {
                Some(x) => x.to_string(),
                None => m.status().unwrap().to_string(),
            })
            .collect()
    }

    fn call_events(&self) -> Vec<CallEvent> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Call(_, c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    fn ended(&self) -> Option<EndReason> {
        self.call_events().into_iter().find_map(|e| match e {
            CallEvent::Ended(r) => Some(r),
            _ => None,
        })
    }
}

/// A response from the callee to `req` with its To tag.
fn resp(req: &Incoming, code: u16, reason: &str) -> Builder {
    message::response_to(req, PEER.parse().unwrap(), code, reason, Some("callee"))
}

fn ok_with_answer(req: &Incoming) -> Vec<u8> {
    resp(req, 200, "OK")
        .header("Contact", "<sip:callee@127.0.0.1:5060>")
        .body("application/sdp", ANSWER)
        .build()
}

/// A request from the callee inside the dialog that `invite` started.
fn callee_request(invite: &Incoming, method: &str, cseq: u32, branch: &str) -> Builder {
    let from = invite.header("From").unwrap();
    let to = invite.header("To").unwrap();
    Builder::request(&method.parse().unwrap(), "sip:callverify@127.0.0.1:5070")
        .header("Via", format!("SIP/2.0/UDP {PEER};branch={branch};rport"))
        .header("From", format!("{to};tag=callee"))
        .header("To", from)
        .header("Call-ID", invite.call_id.clone())
        .header("CSeq", format!("{cseq} {method}"))
}

#[test]
fn answered_call_acks_end_to_end_and_hangs_up_with_bye() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    let h = s.invite();
    let inv = s.last("INVITE");
    assert_eq!(s.sent[0].1, PEER.parse::<SocketAddr>().unwrap());
    assert!(
        inv.via
            .value
            .starts_with("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK")
    );
    assert!(inv.via.rport);
    assert!(String::from_utf8_lossy(inv.body()).contains("m=audio 40000 RTP/AVP 0 8 101"));
    s.receive(PEER, resp(&inv, 100, "Trying").build());
    s.receive(PEER, resp(&inv, 180, "Ringing").build());
    s.receive(PEER, ok_with_answer(&inv));
    let ack = s.last("ACK");
    assert_ne!(
        ack.via.branch, inv.via.branch,
        "the ACK for a 2xx is a new transaction"
    );
    assert_eq!((ack.cseq, ack.to_tag.as_deref()), (1, Some("callee")));
    assert_eq!(
        ack.request_uri(),
        "sip:callee@127.0.0.1:5060",
        "ACK goes to the Contact"
    );
    let answered = s.call_events().into_iter().find_map(|e| match e {
        CallEvent::Answered { answer } => Some(answer),
        _ => None,
    });
    let answer = answered.expect("answered");
    assert_eq!(answer.codec, Codec::Pcma);
    assert_eq!(answer.telephone_event_pt, Some(96));
    assert_eq!(answer.remote, "127.0.0.1:6000".parse().unwrap());

    // Our ACK was lost: the callee retransmits its 200 and gets the same ACK again.
    s.take_sent();
    s.receive(PEER, ok_with_answer(&inv));
    assert_eq!(s.methods(), vec!["ACK"]);
    assert_eq!(s.last("ACK").via.branch, ack.via.branch);

    s.ua.hangup(s.now, h);
    s.drain();
    let bye = s.last("BYE");
    assert_eq!((bye.cseq, bye.to_tag.as_deref()), (2, Some("callee")));
    s.receive(PEER, resp(&bye, 200, "OK").build());
    assert_eq!(s.ended(), Some(EndReason::Hangup));
    assert_eq!(s.ua.active_calls(), 0);
    // Nothing is retransmitted after the end.
    s.take_sent();
    s.run_until(Duration::from_secs(120));
    assert!(s.sent.is_empty(), "{:?}", s.methods());
}

#[test]
fn a_lost_invite_is_retransmitted_on_timer_a() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    s.run_until(Duration::from_millis(3600));
    let times: Vec<u128> = s.sent.iter().map(|(t, _, _)| t.as_millis()).collect();
    assert_eq!(times, vec![0, 500, 1500, 3500]);
    let inv = s.last("INVITE");
    assert!(
        s.sent
            .iter()
            .all(|(_, _, m)| m.via.branch == inv.via.branch)
    );
    // The retransmission is answered; retransmissions stop.
    s.receive(PEER, resp(&inv, 180, "Ringing").build());
    s.take_sent();
    s.run_until(Duration::from_secs(40));
    assert!(s.sent.is_empty());
}

#[test]
fn no_answer_at_all_ends_at_timer_b_and_marks_the_trunk_down() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    s.run_until(Duration::from_secs(40));
    assert_eq!(
        s.methods().len(),
        7,
        "INVITE at 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5 s"
    );
    assert_eq!(s.ended(), Some(EndReason::Timeout));
    assert!(s.events.contains(&Event::Trunk {
        trunk: "pbx".into(),
        up: false
    }));
}

#[test]
fn a_dead_trunk_fails_over_to_the_next() {
    let mut s = Sim::new(vec![trunk("pbx", PEER), trunk("backup", BACKUP)]);
    s.invite();
    s.run_until(Duration::from_secs(33));
    let (_, to, inv) = s.sent.last().unwrap().clone();
    assert_eq!(to, BACKUP.parse::<SocketAddr>().unwrap());
    assert_eq!(
        s.call_events()[..2],
        [
            CallEvent::Sent {
                trunk: "pbx".into()
            },
            CallEvent::Sent {
                trunk: "backup".into()
            }
        ]
    );
    s.receive(BACKUP, ok_with_answer(&inv));
    assert!(matches!(
        s.call_events().last(),
        Some(CallEvent::Answered { .. })
    ));
    // The next call skips the trunk marked down.
    s.take_sent();
    s.invite();
    assert_eq!(s.sent[0].1, BACKUP.parse::<SocketAddr>().unwrap());
}

#[test]
fn busy_and_decline_are_acked_hop_by_hop() {
    for (code, reason) in [(486, "Busy Here"), (603, "Decline"), (404, "Not Found")] {
        let mut s = Sim::new(vec![trunk("pbx", PEER)]);
        s.invite();
        let inv = s.last("INVITE");
        s.receive(PEER, resp(&inv, 100, "Trying").build());
        s.receive(PEER, resp(&inv, code, reason).build());
        let ack = s.last("ACK");
        assert_eq!(
            ack.via.branch, inv.via.branch,
            "non-2xx ACK is in the transaction"
        );
        assert_eq!(ack.to_tag.as_deref(), Some("callee"));
        assert_eq!(
            s.ended(),
            Some(EndReason::Rejected {
                status: code,
                reason: reason.into()
            })
        );
        // A retransmitted final response is ACKed again, and nothing else happens.
        s.take_sent();
        s.receive(PEER, resp(&inv, code, reason).build());
        assert_eq!(s.methods(), vec!["ACK"]);
    }
}

fn challenge(req: &Incoming, code: u16, nonce: &str) -> Vec<u8> {
    let (name, reason) = if code == 407 {
        ("Proxy-Authenticate", "Proxy Authentication Required")
    } else {
        ("WWW-Authenticate", "Unauthorized")
    };
    resp(req, code, reason)
        .header(
            name,
            format!("Digest realm=\"pbx\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5"),
        )
        .build()
}

#[test]
fn a_challenge_is_answered_once_and_a_refused_password_fails() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    s.receive(PEER, challenge(&inv, 407, "n1"));
    let ack = s.last("ACK");
    assert_eq!(ack.via.branch, inv.via.branch);
    let inv2 = s.last("INVITE");
    assert_eq!((inv2.cseq, inv2.call_id.clone()), (2, inv.call_id.clone()));
    assert_ne!(inv2.via.branch, inv.via.branch);
    let auth = inv2.header("Proxy-Authorization").unwrap();
    assert!(auth.contains("username=\"callverify\"") && auth.contains("nc=00000001"));
    assert!(!auth.contains("s3cret"));
    // The same challenge again: the password was refused. No third INVITE.
    s.receive(PEER, challenge(&inv2, 407, "n2"));
    assert_eq!(s.ended(), Some(EndReason::AuthFailed { status: 407 }));
    assert_eq!(s.methods(), vec!["INVITE", "ACK", "INVITE", "ACK"]);
    s.run_until(Duration::from_secs(60));
    assert_eq!(s.methods().iter().filter(|m| *m == "INVITE").count(), 2);
}

#[test]
fn a_stale_nonce_is_answered_again() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    s.receive(PEER, challenge(&s.last("INVITE"), 401, "n1"));
    let inv2 = s.last("INVITE");
    let stale = resp(&inv2, 401, "Unauthorized")
        .header(
            "WWW-Authenticate",
            "Digest realm=\"pbx\", nonce=\"n2\", stale=true",
        )
        .build();
    s.receive(PEER, stale);
    let inv3 = s.last("INVITE");
    assert_eq!(inv3.cseq, 3);
    assert!(
        inv3.header("Authorization")
            .unwrap()
            .contains("nonce=\"n2\"")
    );
    s.receive(PEER, ok_with_answer(&inv3));
    assert!(matches!(
        s.call_events().last(),
        Some(CallEvent::Answered { .. })
    ));
}

#[test]
fn the_ring_timeout_cancels_and_acks_the_487() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    s.receive(PEER, resp(&inv, 180, "Ringing").build());
    s.take_sent();
    s.run_until(Duration::from_secs(45));
    let cancel = s.last("CANCEL");
    assert_eq!(cancel.via.branch, inv.via.branch);
    assert_eq!((cancel.cseq, cancel.to_tag.clone()), (1, None));
    s.receive(PEER, resp(&cancel, 200, "OK").build());
    s.receive(PEER, resp(&inv, 487, "Request Terminated").build());
    assert_eq!(s.methods(), vec!["CANCEL", "ACK"]);
    assert_eq!(s.ended(), Some(EndReason::NoAnswer));
}

#[test]
fn a_hangup_before_any_provisional_waits_for_one_to_cancel() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    let h = s.invite();
    s.ua.hangup(s.now, h);
    s.drain();
    assert_eq!(
        s.methods(),
        vec!["INVITE"],
        "no CANCEL before a provisional"
    );
    let inv = s.last("INVITE");
    s.receive(PEER, resp(&inv, 100, "Trying").build());
    assert_eq!(s.last("CANCEL").via.branch, inv.via.branch);
    // The callee answered anyway: ACK then BYE, and the call ends as cancelled.
    s.receive(PEER, ok_with_answer(&inv));
    let bye = s.last("BYE");
    s.receive(PEER, resp(&bye, 200, "OK").build());
    assert_eq!(s.ended(), Some(EndReason::Canceled));
    assert!(
        !s.call_events()
            .iter()
            .any(|e| matches!(e, CallEvent::Answered { .. }))
    );
}

#[test]
fn early_media_is_not_an_answer() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    s.receive(
        PEER,
        resp(&inv, 183, "Session Progress")
            .body("application/sdp", ANSWER)
            .build(),
    );
    let ev = s.call_events();
    let CallEvent::Provisional {
        status: 183,
        early_media: Some(early),
    } = &ev[1]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(early.codec, Codec::Pcma);
    assert!(!ev.iter().any(|e| matches!(e, CallEvent::Answered { .. })));
    assert!(!s.methods().contains(&"ACK".to_string()));
}

#[test]
fn a_missing_or_bad_answer_is_acked_then_hung_up() {
    for body in [
        "",
        "v=0\r\nm=audio 6000 RTP/AVP 18\r\nc=IN IP4 127.0.0.1\r\n",
    ] {
        let mut s = Sim::new(vec![trunk("pbx", PEER)]);
        s.invite();
        let inv = s.last("INVITE");
        let mut b = resp(&inv, 200, "OK").header("Contact", "<sip:callee@127.0.0.1:5060>");
        if !body.is_empty() {
            b = b.body("application/sdp", body);
        }
        s.receive(PEER, b.build());
        assert_eq!(s.methods(), vec!["INVITE", "ACK", "BYE"]);
        let bye = s.last("BYE");
        s.receive(PEER, resp(&bye, 200, "OK").build());
        let Some(EndReason::BadAnswer(why)) = s.ended() else {
            panic!("{:?}", s.ended())
        };
        assert!(
            why.contains("no SDP answer") || why.contains("no offered codec"),
            "{why}"
        );
    }
}

fn answered() -> (Sim, Incoming) {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    s.receive(PEER, ok_with_answer(&inv));
    s.take_sent();
    (s, inv)
}

#[test]
fn a_bye_from_the_callee_ends_the_call_and_retransmissions_get_the_same_200() {
    let (mut s, inv) = answered();
    let bye = callee_request(&inv, "BYE", 1, "z9hG4bKbye1").build();
    s.receive(PEER, bye.clone());
    assert_eq!(s.methods(), vec!["200"]);
    assert_eq!(s.ended(), Some(EndReason::RemoteHangup));
    s.receive(PEER, bye);
    assert_eq!(s.methods(), vec!["200", "200"]);
    assert_eq!(
        s.call_events()
            .iter()
            .filter(|e| matches!(e, CallEvent::Ended(_)))
            .count(),
        1
    );
}

#[test]
fn a_reinvite_keeps_the_media_and_a_bad_one_gets_488() {
    let (mut s, inv) = answered();
    let same = callee_request(&inv, "INVITE", 2, "z9hG4bKre1")
        .header("Contact", "<sip:callee@127.0.0.1:5060>")
        .body("application/sdp", ANSWER)
        .build();
    s.receive(PEER, same);
    let (_, to, ok) = s.sent.last().unwrap().clone();
    assert_eq!((ok.status(), to), (Some(200), PEER.parse().unwrap()));
    let body = String::from_utf8_lossy(ok.body()).to_string();
    assert!(body.contains("m=audio 40000 RTP/AVP 8 96"), "{body}");
    assert!(
        body.contains("o=callverify 1 2 "),
        "version goes up: {body}"
    );
    assert!(
        !s.call_events()
            .iter()
            .any(|e| matches!(e, CallEvent::MediaChanged { .. }))
    );
    // Until its ACK comes, the 200 is retransmitted.
    s.take_sent();
    s.run_until(Duration::from_millis(600));
    assert_eq!(s.methods(), vec!["200"]);
    let ack = callee_request(&inv, "ACK", 2, "z9hG4bKre1ack").build();
    s.receive(PEER, ack);
    s.take_sent();
    s.run_until(Duration::from_secs(10));
    assert!(s.sent.is_empty());

    let g729 = ANSWER
        .replace("RTP/AVP 8 96", "RTP/AVP 18")
        .replace("a=rtpmap:8 PCMA/8000\r\n", "");
    let bad = callee_request(&inv, "INVITE", 3, "z9hG4bKre2")
        .body("application/sdp", g729)
        .build();
    s.receive(PEER, bad);
    assert_eq!(s.methods(), vec!["488"]);
    assert!(s.ended().is_none(), "the call goes on");
}

#[test]
fn srtp_keys_go_only_where_the_trunk_says_and_a_reinvite_may_bring_a_new_one() {
    let key = |c: &str| format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{c}\r\n");
    let theirs = key("ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXowMTIzNDU2");
    let rekeyed = key("MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0");
    // A plain trunk: no key in the INVITE, and a key in the answer is not taken.
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    let body = String::from_utf8_lossy(inv.body()).to_string();
    assert!(
        body.contains("RTP/AVP") && !body.contains("crypto"),
        "{body}"
    );
    s.receive(
        PEER,
        resp(&inv, 200, "OK")
            .header("Contact", "<sip:callee@127.0.0.1:5060>")
            .body("application/sdp", format!("{ANSWER}{theirs}"))
            .build(),
    );
    let Some(CallEvent::Answered { answer: a }) = s.call_events().into_iter().nth(1) else {
        panic!("{:?}", s.call_events())
    };
    assert_eq!(a.sdes, None);
    let mut s = Sim::new(vec![TrunkConfig {
        srtp: SrtpPolicy::Mandatory,
        ..trunk("pbx", PEER)
    }]);
    s.invite();
    let inv = s.last("INVITE");
    let body = String::from_utf8_lossy(inv.body()).to_string();
    assert!(body.contains("m=audio 40000 RTP/SAVP 0 8 101"), "{body}");
    assert!(
        body.contains(&key("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH")),
        "{body}"
    );
    let answer = ANSWER.replace("RTP/AVP", "RTP/SAVP") + &theirs;
    s.receive(
        PEER,
        resp(&inv, 200, "OK")
            .header("Contact", "<sip:callee@127.0.0.1:5060>")
            .body("application/sdp", answer.clone())
            .build(),
    );
    let Some(CallEvent::Answered { answer: a }) = s.call_events().into_iter().nth(1) else {
        panic!("{:?}", s.call_events())
    };
    assert_eq!(&a.sdes.expect("their key").master[..3], b"def");
    // The callee re-offers with a new key: it is reported; our answer keeps our key.
    let reoffer = answer.replace(&theirs, &rekeyed);
    s.take_sent();
    s.receive(
        PEER,
        callee_request(&inv, "INVITE", 2, "z9hG4bKre1")
            .header("Contact", "<sip:callee@127.0.0.1:5060>")
            .body("application/sdp", reoffer)
            .build(),
    );
    let (_, _, ok) = s.sent.last().unwrap().clone();
    assert_eq!(ok.status(), Some(200));
    let body = String::from_utf8_lossy(ok.body()).to_string();
    assert!(
        body.contains(&key("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH")),
        "{body}"
    );
    let Some(CallEvent::MediaChanged { answer: a }) = s.call_events().into_iter().last() else {
        panic!("{:?}", s.call_events())
    };
    assert_eq!(&a.sdes.expect("their new key").master[..3], b"012");
    // A re-offer without SRTP is refused: the call stays SRTP.
    let plain = callee_request(&inv, "INVITE", 3, "z9hG4bKre2")
        .body("application/sdp", ANSWER)
        .build();
    s.take_sent();
    s.receive(PEER, plain);
    assert_eq!(s.methods(), vec!["488"]);
}

#[test]
fn requests_for_unknown_dialogs_get_481_and_new_calls_403() {
    let (mut s, inv) = answered();
    let mut other = callee_request(&inv, "BYE", 1, "z9hG4bKx").build();
    other = String::from_utf8(other)
        .unwrap()
        .replace(&inv.call_id, "not-a-call")
        .into_bytes();
    s.receive(PEER, other);
    assert_eq!(s.methods(), vec!["481"]);
    s.take_sent();
    let incoming = Builder::request(&rsip::Method::Invite, "sip:callverify@127.0.0.1:5070")
        .header("Via", "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKin")
        .header("From", "<sip:x@127.0.0.1>;tag=a")
        .header("To", "<sip:callverify@127.0.0.1>")
        .header("Call-ID", "in-1")
        .header("CSeq", "1 INVITE")
        .build();
    s.receive("127.0.0.1:5999", incoming);
    assert_eq!(s.methods(), vec!["403"]);
    assert_eq!(s.sent[0].1, "127.0.0.1:5999".parse::<SocketAddr>().unwrap());
    assert!(s.ended().is_none());
}

#[test]
fn garbage_is_discarded_without_harm() {
    let (mut s, _) = answered();
    for junk in [
        &b""[..],
        b"\x00\xff",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"INVITE x SIP/2.0\r\nVia: x\r\n\r\n",
    ] {
        s.receive(PEER, junk.to_vec());
    }
    assert!(s.sent.is_empty());
    assert_eq!(
        s.events
            .iter()
            .filter(|e| matches!(e, Event::Discarded { .. }))
            .count(),
        4
    );
}

#[test]
fn options_keepalive_marks_trunks_up_and_down() {
    let mut pbx = trunk("pbx", PEER);
    pbx.options_interval = Some(Duration::from_secs(30));
    let mut s = Sim::new(vec![pbx, trunk("backup", BACKUP)]);
    s.ua.start(s.now);
    s.drain();
    let opt = s.last("OPTIONS");
    s.receive(PEER, resp(&opt, 200, "OK").build());
    assert!(s.events.contains(&Event::Trunk {
        trunk: "pbx".into(),
        up: true
    }));
    // From now on the PBX does not answer: down at Timer F of the next probe (30 + 32 s).
    s.run_until(Duration::from_secs(61));
    assert!(!s.events.contains(&Event::Trunk {
        trunk: "pbx".into(),
        up: false
    }));
    s.run_until(Duration::from_secs(62));
    assert!(s.events.contains(&Event::Trunk {
        trunk: "pbx".into(),
        up: false
    }));
    s.take_sent();
    s.invite();
    assert_eq!(s.sent[0].1, BACKUP.parse::<SocketAddr>().unwrap());
}

#[test]
fn register_authenticates_learns_its_public_address_and_refreshes() {
    let mut pbx = trunk("pbx", PEER);
    pbx.register = true;
    let mut s = Sim::new(vec![pbx]);
    s.ua.start(s.now);
    s.drain();
    let r1 = s.last("REGISTER");
    assert_eq!(
        r1.header("Contact").unwrap(),
        "<sip:callverify@127.0.0.1:5070>"
    );
    s.receive(PEER, challenge(&r1, 401, "r1"));
    let r2 = s.last("REGISTER");
    assert_eq!((r2.cseq, r2.call_id.clone()), (2, r1.call_id.clone()));
    assert!(
        r2.header("Authorization")
            .unwrap()
            .contains("uri=\"sip:127.0.0.1:5060\"")
    );
    // The registrar saw us at another address (a NAT): register that one.
    let natted = String::from_utf8(resp(&r2, 200, "OK").header("Expires", "600").build())
        .unwrap()
        .replace(";rport=5060", ";rport=40123;received=203.0.113.7");
    s.receive(PEER, natted.into_bytes());
    let r3 = s.last("REGISTER");
    assert_eq!(
        r3.header("Contact").unwrap(),
        "<sip:callverify@203.0.113.7:40123>"
    );
    s.receive(
        PEER,
        resp(&r3, 200, "OK")
            .header("Contact", "<sip:callverify@203.0.113.7:40123>;expires=120")
            .build(),
    );
    assert!(s.events.contains(&Event::Registration {
        trunk: "pbx".into(),
        state: Registration::Registered { expires: 120 }
    }));
    s.take_sent();
    s.run_until(Duration::from_millis(59_900));
    assert!(s.sent.is_empty());
    s.run_until(Duration::from_millis(60_100));
    assert_eq!(
        s.methods(),
        vec!["REGISTER"],
        "refreshed at half the expiry"
    );
    // Calls now carry the learned Contact.
    s.take_sent();
    s.invite();
    assert_eq!(
        s.last("INVITE").header("Contact").unwrap(),
        "<sip:callverify@203.0.113.7:40123>"
    );
}

#[test]
fn a_bad_target_is_refused() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    assert!(s.ua.invite(s.now, "+8190@evil>", offer()).is_err());
    assert!(s.ua.invite(s.now, "", offer()).is_err());
}

#[test]
fn sha256_is_preferred_when_offered_with_md5() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    let both = resp(&inv, 401, "Unauthorized")
        .header(
            "WWW-Authenticate",
            "Digest realm=\"pbx\", nonce=\"n\", qop=\"auth\", algorithm=MD5",
        )
        .header(
            "WWW-Authenticate",
            "Digest realm=\"pbx\", nonce=\"n\", qop=\"auth\", algorithm=SHA-256",
        )
        .build();
    s.receive(PEER, both);
    let auth = s.last("INVITE").header("Authorization").unwrap();
    assert!(auth.contains("algorithm=SHA-256"), "{auth}");
    let response = auth
        .split("response=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(response.len(), 64, "a SHA-256 digest: {auth}");
}

/// A response that names the INVITE's branch, Call-ID, tags and CSeq (as one seen on the
/// wire would) but comes from another port of the trunk's host, over another transport, or
/// differs in any of those, is dropped: nothing is ACKed and the call is not answered.
#[test]
fn a_forged_answer_is_dropped_unless_it_comes_from_the_trunk_and_matches() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    s.receive(PEER, resp(&inv, 180, "Ringing").build());
    s.take_sent();
    let ok = String::from_utf8(ok_with_answer(&inv)).unwrap();
    let other_port = "127.0.0.1:5999";
    s.receive(other_port, ok.clone().into_bytes());
    let forged = [
        ok.replace(&inv.call_id, "another-call-id"),
        ok.replace(inv.from_tag.as_deref().unwrap(), "another-tag"),
        ok.replace("CSeq: 1 INVITE", "CSeq: 2 INVITE"),
        ok.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
        ok.replace(inv.via.branch.as_deref().unwrap(), "z9hG4bKguessed"),
    ];
    for f in &forged {
        assert_ne!(f, &ok);
        s.receive(PEER, f.clone().into_bytes());
    }
    // Over TCP from the trunk's own address and port: not the transport the INVITE took.
    s.ua.handle_receive(
        s.now,
        Transport::Tcp,
        LOCAL.parse().unwrap(),
        PEER.parse().unwrap(),
        ok.as_bytes(),
    );
    s.drain();
    assert!(s.sent.is_empty(), "{:?}", s.methods());
    assert!(
        !s.call_events()
            .iter()
            .any(|e| matches!(e, CallEvent::Answered { .. }))
    );
    let discarded = s
        .events
        .iter()
        .filter(|e| matches!(e, Event::Discarded { .. }))
        .count();
    assert_eq!(discarded, forged.len() + 2, "{:?}", s.events);
    // The real answer still answers.
    s.receive(PEER, ok.into_bytes());
    assert_eq!(s.methods(), vec!["ACK"]);
    assert!(
        s.call_events()
            .iter()
            .any(|e| matches!(e, CallEvent::Answered { .. }))
    );
}

/// `responses_from = "host"`: another port of the trunk's host may answer; another host may
/// not.
#[test]
fn a_trunk_may_answer_from_another_port_of_its_host_when_configured() {
    let mut s = Sim::new(vec![TrunkConfig {
        responses_from: sip::ResponsesFrom::Host,
        ..trunk("pbx", PEER)
    }]);
    s.invite();
    let inv = s.last("INVITE");
    s.take_sent();
    s.receive("127.0.0.2:5060", ok_with_answer(&inv));
    assert!(s.sent.is_empty(), "{:?}", s.methods());
    s.receive("127.0.0.1:5999", ok_with_answer(&inv));
    assert_eq!(s.methods(), vec!["ACK"]);
}

/// In the dialog, a re-INVITE that moves the media (or a BYE) is taken only from the trunk
/// and with both tags of the dialog: from another port, or with a tag wrong, it gets 481
/// and changes nothing.
#[test]
fn in_dialog_requests_need_the_trunk_and_the_dialogs_tags() {
    let (mut s, inv) = answered();
    let elsewhere = ANSWER.replace("m=audio 6000", "m=audio 7000");
    let reinvite = |cseq: u32, branch: &str| {
        callee_request(&inv, "INVITE", cseq, branch)
            .header("Contact", "<sip:callee@127.0.0.1:5060>")
            .body("application/sdp", elsewhere.clone())
            .build()
    };
    s.receive("127.0.0.1:5999", reinvite(2, "z9hG4bKre-port"));
    let wrong_tag = String::from_utf8(reinvite(3, "z9hG4bKre-tag"))
        .unwrap()
        .replace(";tag=callee", ";tag=guessed");
    s.receive(PEER, wrong_tag.into_bytes());
    let no_tag = String::from_utf8(reinvite(4, "z9hG4bKre-notag"))
        .unwrap()
        .replace(";tag=callee", "");
    s.receive(PEER, no_tag.into_bytes());
    s.receive(
        "127.0.0.1:5999",
        callee_request(&inv, "BYE", 5, "z9hG4bKbye-port").build(),
    );
    assert_eq!(s.methods(), vec!["481", "481", "481", "481"]);
    assert!(s.ended().is_none(), "the call goes on");
    assert!(
        !s.call_events()
            .iter()
            .any(|e| matches!(e, CallEvent::MediaChanged { .. })),
        "{:?}",
        s.call_events()
    );
    // From the trunk with the dialog's tags, the same re-INVITE moves the media.
    s.take_sent();
    s.receive(PEER, reinvite(6, "z9hG4bKre-ok"));
    assert_eq!(s.methods(), vec!["200"]);
    assert!(
        s.call_events().iter().any(
            |e| matches!(e, CallEvent::MediaChanged { answer } if answer.remote.port() == 7000)
        )
    );
    // An older CSeq than one taken is out of order.
    s.take_sent();
    s.receive(
        PEER,
        callee_request(&inv, "BYE", 5, "z9hG4bKbye-old").build(),
    );
    assert_eq!(s.methods(), vec!["500"]);
    assert!(s.ended().is_none());
}

/// One datagram whose Via branch has multi-byte text where the user agent's own branches
/// have their cookie stopped the whole SIP endpoint (a panic slicing inside a character).
#[test]
fn a_branch_with_multibyte_text_is_dropped_without_harm() {
    let (mut s, inv) = answered();
    let ok = String::from_utf8(ok_with_answer(&inv)).unwrap();
    for branch in [
        "z9hG4bKcvé1x00000000",
        "z9hG4bKcvc1é",
        "z9hG4bKcv",
        "z9hG4bKcvc",
        "z9hG4bKcvc18446744073709551616x0",
        "é",
    ] {
        let forged = ok.replace(inv.via.branch.as_deref().unwrap(), branch);
        s.receive(PEER, forged.into_bytes());
    }
    assert!(s.sent.is_empty(), "{:?}", s.methods());
    assert!(s.ended().is_none());
}

/// Call-IDs, tags and branches are fresh random values (at least 64 bits each) that say
/// nothing of the call or of one another.
#[test]
fn identifiers_are_random_and_carry_nothing() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        s.invite();
        let inv = s.last("INVITE");
        let branch = inv.via.branch.clone().unwrap();
        let hex = branch.strip_prefix("z9hG4bK").expect("the RFC 3261 cookie");
        let tag = inv.from_tag.clone().unwrap();
        for (what, v, min) in [
            ("branch", hex, 16),
            ("tag", &tag, 16),
            ("Call-ID", &inv.call_id, 16),
        ] {
            assert!(
                v.len() >= min && v.bytes().all(|b| b.is_ascii_hexdigit()),
                "{what} {v:?} is not {min}+ hex digits"
            );
            assert!(seen.insert(v.to_string()), "{what} {v:?} seen before");
        }
    }
}

/// A copy of a request the user agent answered, sent from elsewhere, does not make it send
/// its answer to the trunk again (no reflection through the user agent).
#[test]
fn a_copied_request_from_elsewhere_gets_no_cached_answer() {
    let (mut s, inv) = answered();
    let bye = callee_request(&inv, "BYE", 2, "z9hG4bKbye-copied").build();
    s.receive(PEER, bye.clone());
    assert_eq!(s.methods(), vec!["200"]);
    s.take_sent();
    s.receive("127.0.0.1:5999", bye.clone());
    assert!(
        s.sent
            .iter()
            .all(|(_, to, _)| to.to_string() == "127.0.0.1:5999"),
        "{:?}",
        s.sent
    );
    // The trunk's own retransmission gets the same 200 again.
    s.take_sent();
    s.receive(PEER, bye);
    assert_eq!(s.methods(), vec!["200"]);
    assert_eq!(s.sent[0].1, PEER.parse::<SocketAddr>().unwrap());
}
