//! The user agent driven with what its peers could send back, built from what it really
//! sent: responses to its INVITE, CANCEL, BYE, REGISTER and OPTIONS (the right branch,
//! Call-ID, tags and CSeq, then headers replaced, removed or repeated, UTF-8 and bytes put
//! in, the message cut), requests inside and outside its dialogs, and time passing, from the
//! trunk, from another port of its host, from another host and over the other transport.
//!
//! Nothing may panic, and the user agent must not be moved by what did not come from the
//! trunk: a response from anywhere else gets nothing sent and no call event, and a request
//! from anywhere else is at most answered, to its sender.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sip::message::{self, Builder, Incoming};
use sip::sdp::Offer;
use sip::{
    Credentials, Event, Listener, Output, Timers, Transport, TrunkConfig, UaConfig, UserAgent,
};

const LOCAL: &str = "127.0.0.1:5070";
const TRUNK: &str = "127.0.0.1:5060";
const BACKUP: &str = "127.0.0.1:5062";
const OTHER_PORT: &str = "127.0.0.1:5999";
const OTHER_HOST: &str = "127.0.0.2:5060";

#[derive(Arbitrary, Debug)]
enum Step {
    /// A response to the last request of `to` the user agent sent.
    Respond {
        to: Sent,
        status: Status,
        from: Source,
        to_tag: Option<Text>,
        body: Body,
        edits: Vec<Edit>,
    },
    /// A request from the callee's side, in the dialog (its tags) or not.
    Request {
        method: InMethod,
        cseq: u32,
        dialog: bool,
        from: Source,
        body: Body,
        edits: Vec<Edit>,
    },
    /// Any bytes.
    Raw { from: Source, bytes: Vec<u8> },
    /// Time passes.
    Advance { ms: u16 },
    /// Another call.
    Invite,
    /// The oldest call is hung up.
    Hangup,
    /// The TCP connection to the backup trunk fails.
    Unreachable,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Sent {
    Invite,
    Bye,
    Cancel,
    Register,
    Options,
}

#[derive(Arbitrary, Debug)]
enum Status {
    Usual(u8),
    Any(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Source {
    Trunk,
    TrunkOverTcp,
    OtherPort,
    OtherHost,
    Backup,
}

#[derive(Arbitrary, Debug)]
enum InMethod {
    Bye,
    Invite,
    Update,
    Ack,
    Cancel,
    Options,
    Info,
}

#[derive(Arbitrary, Debug)]
enum Body {
    None,
    /// The usual answer, with one line replaced.
    Answer {
        line: u8,
        with: Text,
    },
    Text(Text),
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Set(Header, Text),
    Remove(Header),
    Repeat(Header),
    AddParam(Header, Text),
    Byte { at: u16, value: u8 },
    Insert { at: u16, bytes: Vec<u8> },
    Cut { at: u16 },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Header {
    StatusLine,
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    RecordRoute,
    ContentLength,
    ContentType,
    WwwAuthenticate,
    ProxyAuthenticate,
    Expires,
    MinExpires,
}

impl Header {
    fn name(self) -> &'static str {
        match self {
            Header::StatusLine => "",
            Header::Via => "Via",
            Header::From => "From",
            Header::To => "To",
            Header::CallId => "Call-ID",
            Header::CSeq => "CSeq",
            Header::Contact => "Contact",
            Header::RecordRoute => "Record-Route",
            Header::ContentLength => "Content-Length",
            Header::ContentType => "Content-Type",
            Header::WwwAuthenticate => "WWW-Authenticate",
            Header::ProxyAuthenticate => "Proxy-Authenticate",
            Header::Expires => "Expires",
            Header::MinExpires => "Min-Expires",
        }
    }
}

/// Text for a header value: often a well-formed one, sometimes any UTF-8.
#[derive(Arbitrary, Debug)]
enum Text {
    Branch(Option<char>, u64),
    Tag(String),
    Number(i64),
    Uri(Option<char>),
    Any(String),
}

impl Text {
    fn render(&self) -> String {
        match self {
            Text::Branch(c, n) => {
                format!("z9hG4bK{}{n:x}", c.map(String::from).unwrap_or_default())
            }
            Text::Tag(t) => format!(";tag={t}"),
            Text::Number(n) => n.to_string(),
            Text::Uri(c) => format!(
                "<sip:{}@[::1]:5060;transport=udp;lr>",
                c.map(String::from).unwrap_or_else(|| "x".into())
            ),
            Text::Any(s) => s.clone(),
        }
    }
}

const USUAL: [u16; 18] = [
    100, 180, 183, 200, 202, 301, 401, 403, 404, 407, 408, 423, 486, 487, 488, 503, 600, 603,
];

const ANSWER: [&str; 8] = [
    "v=0",
    "o=- 1 1 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 6000 RTP/AVP 0 101",
    "a=rtpmap:101 telephone-event/8000",
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXowMTIzNDU2",
];

fn body(b: &Body) -> Option<String> {
    match b {
        Body::None => None,
        Body::Answer { line, with } => {
            let mut lines: Vec<String> = ANSWER.iter().map(|l| l.to_string()).collect();
            let i = usize::from(*line) % (lines.len() + 1);
            if i < lines.len() {
                lines[i] = with.render();
            }
            Some(lines.join("\r\n") + "\r\n")
        }
        Body::Text(t) => Some(t.render()),
    }
}

/// Applies the edits to the message's text, then its bytes.
fn edit(msg: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    let text = String::from_utf8_lossy(&msg).into_owned();
    let (head, rest) = match text.split_once("\r\n\r\n") {
        Some((h, r)) => (h.to_string(), r.to_string()),
        None => (text.clone(), String::new()),
    };
    let mut lines: Vec<String> = head.split("\r\n").map(str::to_string).collect();
    let find = |lines: &[String], h: Header| -> Option<usize> {
        if matches!(h, Header::StatusLine) {
            return Some(0);
        }
        let prefix = format!("{}:", h.name().to_ascii_lowercase());
        lines
            .iter()
            .position(|l| l.to_ascii_lowercase().starts_with(&prefix))
    };
    let mut bytes_edits = Vec::new();
    for e in edits.iter().take(8) {
        match e {
            Edit::Set(h, t) => {
                let line = match h {
                    Header::StatusLine => t.render(),
                    h => format!("{}: {}", h.name(), t.render()),
                };
                match find(&lines, *h) {
                    Some(i) => lines[i] = line,
                    None => lines.push(line),
                }
            }
            Edit::Remove(h) => {
                if let Some(i) = find(&lines, *h).filter(|&i| i > 0) {
                    lines.remove(i);
                }
            }
            Edit::Repeat(h) => {
                if let Some(i) = find(&lines, *h) {
                    let l = lines[i].clone();
                    lines.insert(i + 1, l);
                }
            }
            Edit::AddParam(h, t) => {
                if let Some(i) = find(&lines, *h) {
                    lines[i] = format!("{};{}", lines[i], t.render());
                }
            }
            other => bytes_edits.push(other),
        }
    }
    let mut out = format!("{}\r\n\r\n{rest}", lines.join("\r\n")).into_bytes();
    for e in bytes_edits {
        match e {
            Edit::Byte { at, value } if !out.is_empty() => {
                let i = usize::from(*at) % out.len();
                out[i] = *value;
            }
            Edit::Insert { at, bytes } => {
                let i = usize::from(*at) % (out.len() + 1);
                out.splice(i..i, bytes.iter().copied().take(64));
            }
            Edit::Cut { at } => out.truncate(usize::from(*at) % (out.len() + 1)),
            _ => {}
        }
    }
    out
}

struct Sim {
    ua: UserAgent,
    now: Instant,
    /// The last request of each kind sent, and where it went.
    last: Vec<(String, Incoming, SocketAddr, Transport)>,
    calls: Vec<sip::CallHandle>,
}

impl Sim {
    /// Takes what the user agent says; returns the transmits' destinations and whether a
    /// call event came.
    fn drain(&mut self) -> (Vec<SocketAddr>, bool) {
        let (mut to, mut call_event) = (Vec::new(), false);
        while let Some(o) = self.ua.poll_output() {
            match o {
                Output::Transmit(t) => {
                    to.push(t.remote);
                    let m = message::parse(&t.bytes).expect("the user agent sends what parses");
                    if let Some(method) = m.method() {
                        let method = method.to_string();
                        self.last.retain(|(k, ..)| *k != method);
                        self.last.push((method, m, t.remote, t.transport));
                    }
                }
                Output::Event(Event::Call(..)) => call_event = true,
                Output::Event(_) => {}
            }
        }
        (to, call_event)
    }

    fn tick(&mut self) {
        let mut spins = 0;
        while let Some(t) = self.ua.poll_timeout() {
            if t > self.now || spins > 1000 {
                break;
            }
            spins += 1;
            self.ua.handle_timeout(self.now);
            self.drain();
        }
    }

    fn receive(&mut self, from: Source, bytes: &[u8]) -> (Vec<SocketAddr>, bool) {
        let (transport, addr) = match from {
            Source::Trunk => (Transport::Udp, TRUNK),
            Source::TrunkOverTcp => (Transport::Tcp, TRUNK),
            Source::OtherPort => (Transport::Udp, OTHER_PORT),
            Source::OtherHost => (Transport::Udp, OTHER_HOST),
            Source::Backup => (Transport::Tcp, BACKUP),
        };
        let from_addr: SocketAddr = addr.parse().unwrap();
        self.ua.handle_receive(
            self.now,
            transport,
            LOCAL.parse().unwrap(),
            from_addr,
            bytes,
        );
        self.drain()
    }

    fn invite(&mut self) {
        let offer = Offer {
            address: "127.0.0.1".parse().unwrap(),
            port: 40000,
            session_id: 1,
            version: 1,
            codecs: vec![media::Codec::Pcmu, media::Codec::Pcma],
            sdes: Default::default(),
        };
        if let Ok(h) = self.ua.invite(self.now, "+81901234567", offer) {
            self.calls.push(h);
        }
        self.drain();
    }
}

fn trunk(name: &str, addr: &str, transport: Transport) -> TrunkConfig {
    TrunkConfig {
        name: name.into(),
        address: addr.parse().unwrap(),
        transport,
        domain: addr.into(),
        from_user: "callverify".into(),
        credentials: Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        }),
        register: transport == Transport::Udp,
        options_interval: Some(Duration::from_secs(30)),
        srtp: Default::default(),
        responses_from: Default::default(),
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let local: SocketAddr = LOCAL.parse().unwrap();
    let cfg = UaConfig {
        listen: vec![
            Listener::new(Transport::Udp, local),
            Listener::new(Transport::Tcp, local),
        ],
        user_agent: "fuzz".into(),
        timers: Timers::default(),
        ring_timeout: Duration::from_secs(45),
    };
    let trunks = vec![
        trunk("pbx", TRUNK, Transport::Udp),
        trunk("backup", BACKUP, Transport::Tcp),
    ];
    let mut sim = Sim {
        ua: UserAgent::new(cfg, trunks).unwrap(),
        now: Instant::now(),
        last: Vec::new(),
        calls: Vec::new(),
    };
    sim.ua.start(sim.now);
    sim.drain();
    sim.invite();
    for step in steps.iter().take(64) {
        match step {
            Step::Respond {
                to,
                status,
                from,
                to_tag,
                body: b,
                edits,
            } => {
                let method = match to {
                    Sent::Invite => "INVITE",
                    Sent::Bye => "BYE",
                    Sent::Cancel => "CANCEL",
                    Sent::Register => "REGISTER",
                    Sent::Options => "OPTIONS",
                };
                let Some((_, req, went_to, went_over)) =
                    sim.last.iter().find(|(m, ..)| m == method).cloned()
                else {
                    continue;
                };
                let code = match status {
                    Status::Usual(i) => USUAL[usize::from(*i) % USUAL.len()],
                    Status::Any(c) => *c,
                };
                let tag = to_tag.as_ref().map(Text::render);
                let mut r = message::response_to(&req, went_to, code, "Reason", tag.as_deref())
                    .header("Contact", "<sip:callee@127.0.0.1:5060>");
                if code == 401 {
                    r = r.header(
                        "WWW-Authenticate",
                        "Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"",
                    );
                }
                if code == 407 {
                    r = r.header(
                        "Proxy-Authenticate",
                        "Digest realm=\"r\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth\"",
                    );
                }
                if let Some(b) = body(b) {
                    r = r.body("application/sdp", b);
                }
                let bytes = edit(r.build(), edits);
                let from_there = match from {
                    Source::Trunk => went_to.to_string() == TRUNK && went_over == Transport::Udp,
                    Source::Backup => went_to.to_string() == BACKUP,
                    _ => false,
                };
                let (sent, event) = sim.receive(*from, &bytes);
                if !from_there {
                    assert!(
                        sent.is_empty() && !event,
                        "a response from {from:?} (the request went to {went_to}) moved the user agent"
                    );
                }
            }
            Step::Request {
                method,
                cseq,
                dialog,
                from,
                body: b,
                edits,
            } => {
                let Some((_, invite, ..)) = sim.last.iter().find(|(m, ..)| m == "INVITE").cloned()
                else {
                    continue;
                };
                let name = match method {
                    InMethod::Bye => "BYE",
                    InMethod::Invite => "INVITE",
                    InMethod::Update => "UPDATE",
                    InMethod::Ack => "ACK",
                    InMethod::Cancel => "CANCEL",
                    InMethod::Options => "OPTIONS",
                    InMethod::Info => "INFO",
                };
                let ours = invite.header("From").unwrap_or_default();
                let theirs = invite.header("To").unwrap_or_default();
                let (f, t) = if *dialog {
                    (format!("{theirs};tag=callee"), ours)
                } else {
                    (theirs, "<sip:callverify@127.0.0.1>".to_string())
                };
                let mut r =
                    Builder::request(&name.parse().unwrap(), "sip:callverify@127.0.0.1:5070")
                        .header(
                            "Via",
                            format!("SIP/2.0/UDP {TRUNK};branch=z9hG4bKin{cseq};rport"),
                        )
                        .header("From", f)
                        .header("To", t)
                        .header("Call-ID", invite.call_id.clone())
                        .header("CSeq", format!("{cseq} {name}"))
                        .header("Contact", "<sip:callee@127.0.0.1:5060>");
                if let Some(b) = body(b) {
                    r = r.body("application/sdp", b);
                }
                let bytes = edit(r.build(), edits);
                let (sent, event) = sim.receive(*from, &bytes);
                if matches!(from, Source::OtherPort | Source::OtherHost) {
                    let there: SocketAddr = match from {
                        Source::OtherPort => OTHER_PORT.parse().unwrap(),
                        _ => OTHER_HOST.parse().unwrap(),
                    };
                    assert!(!event, "a request from {from:?} moved a call");
                    assert!(
                        sent.iter().all(|&to| to == there),
                        "a request from {from:?} made the user agent send elsewhere: {sent:?}"
                    );
                }
            }
            Step::Raw { from, bytes } => {
                let (sent, event) = sim.receive(*from, bytes);
                if matches!(from, Source::OtherHost) {
                    assert!(!event && sent.iter().all(|a| a.to_string() == OTHER_HOST));
                }
            }
            Step::Advance { ms } => {
                sim.now += Duration::from_millis(u64::from(*ms) * 10);
            }
            Step::Invite => sim.invite(),
            Step::Hangup => {
                if !sim.calls.is_empty() {
                    let h = sim.calls.remove(0);
                    sim.ua.hangup(sim.now, h);
                    sim.drain();
                }
            }
            Step::Unreachable => {
                sim.ua
                    .handle_transport_error(sim.now, Transport::Tcp, BACKUP.parse().unwrap());
                sim.drain();
            }
        }
        sim.tick();
    }
});
