//! The scripted peer the user agent's tests drive it against: a simulated clock, what it
//! sent, what it reported, and the responses and requests a callee would send.
#![allow(dead_code, unused_imports)]

pub use std::net::SocketAddr;
pub use std::time::{Duration, Instant};

pub use media::Codec;
pub use media::srtp::Suite;
pub use sip::message::{self, Builder, Incoming};
pub use sip::sdp::{Offer, Sdes, SdesKey, SrtpPolicy};
pub use sip::{
    CallEvent, CallHandle, Credentials, EndReason, Event, Listener, Output, Registration, Timers,
    Transport, TrunkConfig, UaConfig, UserAgent,
};

pub const LOCAL: &str = "127.0.0.1:5070";

pub const PEER: &str = "127.0.0.1:5060";

pub const BACKUP: &str = "127.0.0.1:5062";

pub fn trunk(name: &str, addr: &str) -> TrunkConfig {
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

pub fn offer() -> Offer {
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

pub const ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 6000 RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\n";

pub struct Sim {
    pub ua: UserAgent,
    pub now: Instant,
    pub t0: Instant,
    pub sent: Vec<(Duration, SocketAddr, Incoming)>,
    /// The listener each message was sent from.
    pub sent_from: Vec<SocketAddr>,
    pub events: Vec<Event>,
}

impl Sim {
    pub fn new(trunks: Vec<TrunkConfig>) -> Sim {
        Sim::with_listener(
            Listener::new(Transport::Udp, LOCAL.parse().unwrap()),
            trunks,
        )
    }

    /// A user agent with the one listener `listener` (at [`LOCAL`]).
    pub fn with_listener(listener: Listener, trunks: Vec<TrunkConfig>) -> Sim {
        let cfg = UaConfig {
            listen: vec![listener],
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
            sent_from: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn drain(&mut self) {
        while let Some(o) = self.ua.poll_output() {
            match o {
                Output::Transmit(t) => {
                    let m = message::parse(&t.bytes).expect("the UA sends parseable messages");
                    self.sent.push((self.now - self.t0, t.remote, m));
                    self.sent_from.push(t.local);
                }
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    /// Advances the clock to `at` (since start), running every timer on the way.
    pub fn run_until(&mut self, at: Duration) {
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

    pub fn receive(&mut self, from: &str, bytes: Vec<u8>) {
        self.ua.handle_receive(
            self.now,
            Transport::Udp,
            LOCAL.parse().unwrap(),
            from.parse().unwrap(),
            &bytes,
        );
        self.drain();
    }

    pub fn invite(&mut self) -> CallHandle {
        let h = self.ua.invite(self.now, "+81901234567", offer()).unwrap();
        self.drain();
        h
    }

    pub fn take_sent(&mut self) -> Vec<(Duration, SocketAddr, Incoming)> {
        self.sent_from.clear();
        std::mem::take(&mut self.sent)
    }

    pub fn last(&self, method: &str) -> Incoming {
        self.sent
            .iter()
            .rev()
            .find(|(_, _, m)| m.method().is_some_and(|x| x.to_string() == method))
            .map_or_else(|| panic!("no {method} sent"), |(_, _, m)| m.clone())
    }

    pub fn methods(&self) -> Vec<String> {
        self.sent
            .iter()
            .map(|(_, _, m)| match m.method() {
                Some(x) => x.to_string(),
                None => m.status().unwrap().to_string(),
            })
            .collect()
    }

    pub fn call_events(&self) -> Vec<CallEvent> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Call(_, c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn ended(&self) -> Option<EndReason> {
        self.call_events().into_iter().find_map(|e| match e {
            CallEvent::Ended(r) => Some(r),
            _ => None,
        })
    }
}

/// A response from the callee to `req` with its To tag.
pub fn resp(req: &Incoming, code: u16, reason: &str) -> Builder {
    message::response_to(req, PEER.parse().unwrap(), code, reason, Some("callee"))
}

pub fn ok_with_answer(req: &Incoming) -> Vec<u8> {
    resp(req, 200, "OK")
        .header("Contact", "<sip:callee@127.0.0.1:5060>")
        .body("application/sdp", ANSWER)
        .build()
}

/// A request from the callee inside the dialog that `invite` started.
pub fn callee_request(invite: &Incoming, method: &str, cseq: u32, branch: &str) -> Builder {
    let from = invite.header("From").unwrap();
    let to = invite.header("To").unwrap();
    Builder::request(&method.parse().unwrap(), "sip:callverify@127.0.0.1:5070")
        .header("Via", format!("SIP/2.0/UDP {PEER};branch={branch};rport"))
        .header("From", format!("{to};tag=callee"))
        .header("To", from)
        .header("Call-ID", invite.call_id.clone())
        .header("CSeq", format!("{cseq} {method}"))
}

pub fn challenge(req: &Incoming, code: u16, nonce: &str) -> Vec<u8> {
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

pub fn answered() -> (Sim, Incoming) {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    s.receive(PEER, ok_with_answer(&inv));
    s.take_sent();
    (s, inv)
}
