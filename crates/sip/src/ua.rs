//! The user agent: outbound calls (UAC INVITE, ACK, CANCEL, BYE with digest retry), the
//! few requests it answers as a UAS (BYE, re-INVITE, OPTIONS), and per-trunk REGISTER and
//! OPTIONS keep-alive with failover. Sans-IO: bytes and the time come in through
//! [`UserAgent::handle_receive`] and [`UserAgent::handle_timeout`], what to send and what
//! happened come out of [`UserAgent::poll_output`].
//!
//! Every request, in dialog or not, is sent to the trunk's configured address (the trunk is
//! the outbound proxy); the Request-URI and Route headers follow RFC 3261 §12.2.1.1 so a
//! proxy on the way routes it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsip::Method;

use crate::digest::Challenge;
use crate::message::{self, Builder, Incoming, addr_spec, param};
use crate::sdp::{self, Answer, Offer};
use crate::transaction::{ClientTx, Fired, Kind, Timers};
use crate::{Transport, random};

/// Methods callverify takes as a UAS, for Allow headers.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE";
/// Expiry asked for in REGISTER, in seconds.
const REGISTER_EXPIRES: u32 = 600;
/// Wait before trying a failed registration again.
const REGISTER_RETRY: Duration = Duration::from_secs(60);

/// A local address the user agent is reachable at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    /// UDP or TCP.
    pub transport: Transport,
    /// A specific address (not 0.0.0.0 / ::: it goes into Via and Contact).
    pub addr: SocketAddr,
}

/// Digest credentials for a trunk.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username.
    pub username: String,
    /// The password (from the environment; never printed).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: ***** }}",
            self.username
        )
    }
}

/// One trunk, PBX or softphone that calls go through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkConfig {
    /// Its name in logs and events.
    pub name: String,
    /// Where requests are sent.
    pub address: SocketAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// Host part of Request-URI, From and To (e.g. `sip.example.net` or `127.0.0.1:5060`).
    pub domain: String,
    /// User part of From and Contact.
    pub from_user: String,
    /// Credentials for 401/407 challenges.
    pub credentials: Option<Credentials>,
    /// REGISTER (and refresh) at start.
    pub register: bool,
    /// OPTIONS keep-alive interval; `None` for none.
    pub options_interval: Option<Duration>,
    /// SRTP with SDES keys for the calls through it (only over TLS, which keeps the keys
    /// secret: the configuration checks that).
    pub srtp: sdp::SrtpPolicy,
    /// Where its responses may come from.
    pub responses_from: ResponsesFrom,
}

/// Where a trunk's responses (and, over UDP, its in-dialog requests) are accepted from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponsesFrom {
    /// Only its address and port over its transport (over TCP and TLS: the connection the
    /// request went on). Anything else, however right its branch and tags, is dropped.
    #[default]
    Address,
    /// Any port of its host over its transport: for a trunk that answers from other ports
    /// than the one requests go to.
    Host,
}

impl TrunkConfig {
    /// Whether a response that arrived over `transport` from `from` may be this trunk's.
    fn sends_responses_from(&self, transport: Transport, from: SocketAddr) -> bool {
        transport == self.transport
            && match self.responses_from {
                ResponsesFrom::Address => from == self.address,
                ResponsesFrom::Host => same_ip(from, self.address),
            }
    }

    /// Whether a request inside a dialog through this trunk (BYE, re-INVITE) may come from
    /// `from`: as its responses over UDP; over TCP and TLS also a connection the trunk
    /// opened from its host (a proxy opens one for its requests, from a port of its own).
    fn sends_requests_from(&self, transport: Transport, from: SocketAddr) -> bool {
        self.sends_responses_from(transport, from)
            || (transport == self.transport
                && transport.is_reliable()
                && same_ip(from, self.address))
    }
}

fn same_ip(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip().to_canonical() == b.ip().to_canonical()
}

/// The user agent's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UaConfig {
    /// Local addresses; each trunk needs one of its transport and address family.
    pub listen: Vec<Listener>,
    /// The User-Agent header.
    pub user_agent: String,
    /// T1 and T2.
    pub timers: Timers,
    /// How long a call may ring before it is cancelled.
    pub ring_timeout: Duration,
}

/// Why a user agent cannot be made from a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UaError {
    /// A listener has an unspecified address.
    #[error("listen address {0} is unspecified; give the address peers reach")]
    Unspecified(SocketAddr),
    /// No listener matches a trunk's transport and address family.
    #[error("trunk {trunk:?} needs a {transport} listener for {address}")]
    NoListener {
        /// The trunk.
        trunk: String,
        /// Its transport.
        transport: Transport,
        /// Its address.
        address: SocketAddr,
    },
    /// No trunks configured.
    #[error("no trunk is configured")]
    NoTrunk,
}

/// A call's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

impl fmt::Display for CallHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

/// Bytes to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// UDP or TCP.
    pub transport: Transport,
    /// The local listener address to send from (for TCP: the connection's Via address).
    pub local: SocketAddr,
    /// Destination.
    pub remote: SocketAddr,
    /// The message.
    pub bytes: Vec<u8>,
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// callverify hung up an answered call (BYE).
    Hangup,
    /// The callee hung up (BYE from the far end).
    RemoteHangup,
    /// The ring timeout passed; the call was cancelled.
    NoAnswer,
    /// [`UserAgent::hangup`] before an answer; the call was cancelled.
    Canceled,
    /// A final response 300–699 (486 busy, 603 decline, 404, ...).
    Rejected {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The credentials were refused (a second 401/407, or none configured).
    AuthFailed {
        /// 401 or 407.
        status: u16,
    },
    /// No response at all (Timer B) from every trunk tried.
    Timeout,
    /// The transport could not reach the trunk.
    TransportError,
    /// The callee answered without a usable SDP answer; callverify sent BYE.
    BadAnswer(String),
}

impl EndReason {
    /// The SIP status that describes a failure (408 for a timeout, 503 when unreachable).
    pub fn sip_status(&self) -> Option<u16> {
        match self {
            EndReason::Rejected { status, .. } | EndReason::AuthFailed { status } => Some(*status),
            EndReason::Timeout => Some(408),
            EndReason::TransportError => Some(503),
            EndReason::BadAnswer(_) => Some(488),
            _ => None,
        }
    }
}

/// Something that happened to a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEvent {
    /// The INVITE went out through this trunk (again after a failover).
    Sent {
        /// The trunk's name.
        trunk: String,
    },
    /// A provisional response other than 100.
    Provisional {
        /// 180, 183, ...
        status: u16,
        /// A 183's SDP (early media): where the callee sends audio before answering.
        early_media: Option<Answer>,
    },
    /// The callee answered (200 with a usable SDP answer, ACK sent).
    Answered {
        /// The media the answer settled.
        answer: Answer,
    },
    /// A re-INVITE or UPDATE moved the callee's media (codec kept).
    MediaChanged {
        /// The new media.
        answer: Answer,
    },
    /// The call is over; no event follows.
    Ended(EndReason),
}

/// Registration state of a trunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Registered for this long.
    Registered {
        /// Seconds granted.
        expires: u32,
    },
    /// The registrar refused or did not answer; tried again later.
    Failed {
        /// The status, `None` for no answer.
        status: Option<u16>,
    },
}

/// What the user agent reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A call's progress.
    Call(CallHandle, CallEvent),
    /// A trunk answered OPTIONS again (`up`) or stopped answering.
    Trunk {
        /// The trunk's name.
        trunk: String,
        /// Whether it is up.
        up: bool,
    },
    /// A REGISTER result.
    Registration {
        /// The trunk's name.
        trunk: String,
        /// The result.
        state: Registration,
    },
    /// A message that was dropped, and why (for debug logs and counters).
    Discarded {
        /// Its source.
        from: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// What [`UserAgent::poll_output`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes.
    Transmit(Transmit),
    /// Report this.
    Event(Event),
}

/// Why a call could not be started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// The number has characters a SIP user part cannot carry.
    #[error("target {0:?} is not a dialable user part")]
    BadTarget(String),
}

/// Who a client transaction belongs to: responses find it through its branch, which is
/// random and says nothing of its owner (see [`UserAgent::branch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Call(u64),
    Register(usize),
    Options(usize),
}

/// A new branch: the RFC 3261 magic cookie and 128 random bits.
fn new_branch() -> String {
    format!("z9hG4bK{}", random::hex(16))
}

/// A new tag: 96 random bits.
fn new_tag() -> String {
    random::hex(12)
}

/// A new Call-ID: 128 random bits.
fn new_call_id() -> String {
    random::hex(16)
}

/// Credentials sent and the count of uses of the nonce (for `nc`).
#[derive(Clone, Debug, Default)]
struct AuthState {
    /// The challenge answered last, with the header it goes into.
    challenge: Option<(Challenge, &'static str)>,
    nc: u32,
    /// Challenges answered for the current request chain.
    tries: u8,
}

impl AuthState {
    /// Takes a 401/407: true when a retry with credentials makes sense.
    fn take_challenge(&mut self, resp: &Incoming, have_credentials: bool) -> bool {
        let status = resp.status().unwrap_or(0);
        let (header, reply) = if status == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let challenge = resp
            .headers(header)
            .filter_map(|v| Challenge::parse(&v).ok())
            .max_by_key(|c| c.algorithm == crate::digest::Algorithm::Sha256);
        let Some(challenge) = challenge else {
            return false;
        };
        // A second challenge after credentials were sent means they were refused, unless
        // the server only says the nonce went stale.
        if !have_credentials || (self.tries >= 1 && !challenge.stale) || self.tries >= 3 {
            return false;
        }
        self.tries += 1;
        self.nc = 0;
        self.challenge = Some((challenge, reply));
        true
    }

    /// The Authorization header for a request, if a challenge was taken (with a fresh
    /// random cnonce).
    fn header(
        &mut self,
        creds: Option<&Credentials>,
        method: &Method,
        uri: &str,
    ) -> Option<(&'static str, String)> {
        let (challenge, name) = self.challenge.as_ref()?;
        let creds = creds?;
        self.nc += 1;
        let value = challenge.respond(
            &creds.username,
            &creds.password,
            &method.to_string(),
            uri,
            self.nc,
            &random::hex(16),
        );
        Some((name, value))
    }
}

/// Where a leg's requests go.
#[derive(Clone, Copy, Debug)]
struct Route {
    transport: Transport,
    local: SocketAddr,
    remote: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// INVITE sent, nothing heard.
    Calling,
    /// A provisional arrived.
    Proceeding,
    /// 2xx arrived and was ACKed.
    Confirmed,
    /// Ended and reported; kept a while to absorb retransmissions.
    Done,
}

/// A finished INVITE transaction kept to re-ACK retransmitted final responses.
#[derive(Clone, Debug)]
struct Completed {
    branch: String,
    cseq: u32,
    ack: Vec<u8>,
    until: Instant,
}

/// Our 200 to a re-INVITE, retransmitted until its ACK (RFC 3261 §13.3.1.4).
#[derive(Clone, Debug)]
struct UasRetransmit {
    bytes: Vec<u8>,
    to: Route,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// One outbound call.
#[derive(Debug)]
struct Leg {
    target: String,
    offer: Offer,
    trunk: usize,
    tried: Vec<usize>,
    route: Route,
    call_id: String,
    local_tag: String,
    from: String,
    to: String,
    ruri: String,
    contact: String,
    cseq: u32,
    invite_cseq: u32,
    invite: Option<ClientTx>,
    completed: Vec<Completed>,
    auth: AuthState,
    phase: Phase,
    ring_deadline: Instant,
    remote_tag: Option<String>,
    remote_target: Option<String>,
    route_set: Vec<String>,
    answer: Option<Answer>,
    ack: Option<Vec<u8>>,
    /// Why the call is being torn down (CANCEL or BYE in flight, or wanted).
    ending: Option<EndReason>,
    cancel: Option<ClientTx>,
    /// After a CANCEL: when to stop waiting for the 487 (64·T1).
    cancel_deadline: Option<Instant>,
    bye: Option<ClientTx>,
    /// The CSeq of the BYE in flight.
    bye_cseq: u32,
    bye_auth: AuthState,
    uas: Option<UasRetransmit>,
    linger_until: Option<Instant>,
    /// The highest CSeq of the callee's requests in the dialog (RFC 3261 §12.2.2).
    remote_cseq: Option<u32>,
    /// The branches of this leg's client transactions (to forget them with the leg).
    branches: Vec<String>,
}

/// A trunk and its keep-alive and registration state.
#[derive(Debug)]
struct Trunk {
    cfg: TrunkConfig,
    local: SocketAddr,
    /// Our address as the trunk sees it (Via received/rport of a REGISTER response).
    public: Option<SocketAddr>,
    up: Option<bool>,
    options: Option<ClientTx>,
    next_options: Option<Instant>,
    options_seq: u32,
    /// The Call-ID and From tag of the OPTIONS in flight.
    options_call_id: String,
    options_tag: String,
    register: Option<ClientTx>,
    next_register: Option<Instant>,
    reg_call_id: String,
    reg_tag: String,
    reg_seq: u32,
    reg_expires: u32,
    reg_auth: AuthState,
    /// The Contact of the last successful REGISTER.
    registered_contact: Option<String>,
    /// This registration already moved its Contact to the address the registrar saw once
    /// (a registrar that reports another address each time must not start a loop).
    public_moved: bool,
}

impl Trunk {
    fn route(&self) -> Route {
        Route {
            transport: self.cfg.transport,
            local: self.local,
            remote: self.cfg.address,
        }
    }

    fn contact_addr(&self) -> SocketAddr {
        self.public.unwrap_or(self.local)
    }

    fn contact(&self) -> String {
        let t = match self.cfg.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        };
        format!("<sip:{}@{}{t}>", self.cfg.from_user, self.contact_addr())
    }
}

/// A cached response to a request we answered, resent on its retransmissions (Timer J).
#[derive(Clone, Debug)]
struct Cached {
    transmit: Transmit,
    until: Instant,
}

/// The SIP user agent.
#[derive(Debug)]
pub struct UserAgent {
    cfg: UaConfig,
    trunks: Vec<Trunk>,
    legs: HashMap<u64, Leg>,
    by_call_id: HashMap<String, u64>,
    /// The client transactions by branch.
    txs: HashMap<String, Owner>,
    answered: HashMap<String, Cached>,
    /// The bytes of the answers kept.
    answered_bytes: usize,
    next_handle: u64,
    out: VecDeque<Output>,
    started: bool,
}

/// At most this many answers to requests (and this many bytes of them) are kept for their
/// retransmissions: a flood of requests from a trunk's address gets its answers, but cannot
/// grow memory without bound.
const MAX_ANSWERED: usize = 4096;
const MAX_ANSWERED_BYTES: usize = 4 << 20;

/// The longest registration honoured, whatever the registrar grants (a day).
const MAX_REGISTER_EXPIRES: u32 = 86_400;

fn local_for(listen: &[Listener], transport: Transport, remote: SocketAddr) -> Option<SocketAddr> {
    listen
        .iter()
        .find(|l| l.transport == transport && l.addr.is_ipv4() == remote.is_ipv4())
        .map(|l| l.addr)
}

fn via(route: &Route, branch: &str) -> String {
    format!(
        "SIP/2.0/{} {};branch={branch};rport",
        route.transport.via_name(),
        route.local
    )
}

fn dialable(target: &str) -> bool {
    !target.is_empty()
        && target.len() <= 64
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-_.*#".contains(&b))
}

impl UserAgent {
    /// A user agent for these listeners and trunks. Its Call-IDs, tags, branches and
    /// cnonces come from the operating system's generator.
    pub fn new(cfg: UaConfig, trunks: Vec<TrunkConfig>) -> Result<UserAgent, UaError> {
        if let Some(l) = cfg.listen.iter().find(|l| l.addr.ip().is_unspecified()) {
            return Err(UaError::Unspecified(l.addr));
        }
        if trunks.is_empty() {
            return Err(UaError::NoTrunk);
        }
        let mut ts = Vec::new();
        for t in trunks {
            let local = local_for(&cfg.listen, t.transport, t.address).ok_or_else(|| {
                UaError::NoListener {
                    trunk: t.name.clone(),
                    transport: t.transport,
                    address: t.address,
                }
            })?;
            ts.push(Trunk {
                local,
                public: None,
                up: None,
                options: None,
                next_options: None,
                options_seq: 0,
                options_call_id: String::new(),
                options_tag: String::new(),
                register: None,
                next_register: None,
                reg_call_id: new_call_id(),
                reg_tag: new_tag(),
                reg_seq: 0,
                reg_expires: REGISTER_EXPIRES,
                reg_auth: AuthState::default(),
                registered_contact: None,
                public_moved: false,
                cfg: t,
            });
        }
        Ok(UserAgent {
            cfg,
            trunks: ts,
            legs: HashMap::new(),
            by_call_id: HashMap::new(),
            txs: HashMap::new(),
            answered: HashMap::new(),
            answered_bytes: 0,
            next_handle: 1,
            out: VecDeque::new(),
            started: false,
        })
    }

    /// Starts registrations and keep-alives (sends the first ones now).
    pub fn start(&mut self, now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        for i in 0..self.trunks.len() {
            if self.trunks[i].cfg.register {
                self.send_register(i, now);
            }
            if self.trunks[i].cfg.options_interval.is_some() {
                self.send_options(i, now);
            }
        }
    }

    /// Calls `target` (the user part: an E.164 number such as `+81901234567`) through the
    /// first trunk that is not down, offering `offer`.
    pub fn invite(
        &mut self,
        now: Instant,
        target: &str,
        offer: Offer,
    ) -> Result<CallHandle, InviteError> {
        if !dialable(target) {
            return Err(InviteError::BadTarget(target.chars().take(64).collect()));
        }
        let handle = self.next_handle;
        self.next_handle += 1;
        let trunk = self.pick_trunk(&[]).unwrap_or(0);
        let leg = self.new_leg(trunk, target.to_string(), offer, now, Vec::new());
        self.by_call_id.insert(leg.call_id.clone(), handle);
        self.legs.insert(handle, leg);
        self.send_invite(handle, now);
        Ok(CallHandle(handle))
    }

    /// Ends a call: CANCEL while it rings, BYE once answered. Its `Ended` event follows.
    pub fn hangup(&mut self, now: Instant, call: CallHandle) {
        self.teardown(call.0, now, EndReason::Canceled, EndReason::Hangup);
    }

    /// The number of calls not yet ended.
    pub fn active_calls(&self) -> usize {
        self.legs
            .values()
            .filter(|l| l.phase != Phase::Done)
            .count()
    }

    /// What to send or report next.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next instant [`UserAgent::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut add = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for leg in self.legs.values() {
            add(leg.invite.as_ref().and_then(ClientTx::poll_timeout));
            add(leg.cancel.as_ref().and_then(ClientTx::poll_timeout));
            add(leg.bye.as_ref().and_then(ClientTx::poll_timeout));
            add(leg.cancel_deadline);
            add(leg.uas.as_ref().map(|u| u.next.min(u.give_up)));
            add(leg.linger_until);
            add(leg.completed.iter().map(|c| c.until).min());
            if matches!(leg.phase, Phase::Calling | Phase::Proceeding) && leg.ending.is_none() {
                add(Some(leg.ring_deadline));
            }
        }
        for tr in &self.trunks {
            add(tr.options.as_ref().and_then(ClientTx::poll_timeout));
            add(tr.register.as_ref().and_then(ClientTx::poll_timeout));
            // A probe still waiting for its answer postpones the next one.
            add(tr.next_options.filter(|_| tr.options.is_none()));
            add(tr.next_register.filter(|_| tr.register.is_none()));
        }
        add(self.answered.values().map(|c| c.until).min());
        t
    }

    fn emit(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn transmit(&mut self, route: Route, bytes: Vec<u8>) {
        self.out.push_back(Output::Transmit(Transmit {
            transport: route.transport,
            local: route.local,
            remote: route.remote,
            bytes,
        }));
    }

    /// Sends a request that starts a client transaction, and returns the transaction.
    fn send_request(
        &mut self,
        kind: Kind,
        branch: String,
        route: Route,
        bytes: Vec<u8>,
        now: Instant,
    ) -> ClientTx {
        let tx = ClientTx::new(
            kind,
            branch,
            bytes.clone(),
            route.transport,
            &self.cfg.timers,
            now,
        );
        self.transmit(route, bytes);
        tx
    }

    fn call_event(&mut self, h: u64, e: CallEvent) {
        self.emit(Event::Call(CallHandle(h), e));
    }

    fn pick_trunk(&self, tried: &[usize]) -> Option<usize> {
        let fresh = |i: &usize| !tried.contains(i);
        (0..self.trunks.len())
            .filter(fresh)
            .find(|&i| self.trunks[i].up != Some(false))
            .or_else(|| (0..self.trunks.len()).find(fresh))
    }

    fn new_leg(
        &mut self,
        trunk: usize,
        target: String,
        mut offer: Offer,
        now: Instant,
        mut tried: Vec<usize>,
    ) -> Leg {
        tried.push(trunk);
        let tr = &self.trunks[trunk];
        offer.sdes.policy = tr.cfg.srtp;
        let local_tag = new_tag();
        let domain = &tr.cfg.domain;
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
            call_id: new_call_id(),
            local_tag,
            cseq: 0,
            invite_cseq: 0,
            invite: None,
            completed: Vec::new(),
            auth: AuthState::default(),
            phase: Phase::Calling,
            ring_deadline: now + self.cfg.ring_timeout,
            remote_tag: None,
            remote_target: None,
            route_set: Vec::new(),
            answer: None,
            ack: None,
            ending: None,
            cancel: None,
            cancel_deadline: None,
            bye: None,
            bye_cseq: 0,
            bye_auth: AuthState::default(),
            uas: None,
            linger_until: None,
            remote_cseq: None,
            branches: Vec::new(),
        }
    }

    /// A new branch for a client transaction of `owner`, under which its responses are
    /// found.
    fn branch(&mut self, owner: Owner) -> String {
        let branch = new_branch();
        self.txs.insert(branch.clone(), owner);
        if let Owner::Call(h) = owner
            && let Some(leg) = self.legs.get_mut(&h)
        {
            leg.branches.push(branch.clone());
        }
        branch
    }

    /// Forgets a trunk's transaction that ended: its late responses match nothing.
    fn forget(&mut self, tx: Option<ClientTx>) {
        if let Some(tx) = tx {
            self.txs.remove(&tx.branch);
        }
    }

    /// Forgets a leg and its transactions.
    fn remove_leg(&mut self, h: u64) -> Option<Leg> {
        let leg = self.legs.remove(&h)?;
        for b in &leg.branches {
            self.txs.remove(b);
        }
        if self.by_call_id.get(&leg.call_id) == Some(&h) {
            self.by_call_id.remove(&leg.call_id);
        }
        Some(leg)
    }

    fn send_invite(&mut self, h: u64, now: Instant) {
        let Some(trunk) = self.legs.get(&h).map(|l| l.trunk) else {
            return;
        };
        let branch = self.branch(Owner::Call(h));
        let creds = self.trunks[trunk].cfg.credentials.clone();
        let ua = self.cfg.user_agent.clone();
        let Some(leg) = self.legs.get_mut(&h) else {
            return;
        };
        leg.cseq += 1;
        leg.invite_cseq = leg.cseq;
        let mut b = Builder::request(&Method::Invite, &leg.ruri)
            .header("Via", via(&leg.route, &branch))
            .header("Max-Forwards", "70")
            .header("From", &leg.from)
            .header("To", &leg.to)
            .header("Call-ID", &leg.call_id)
            .header("CSeq", format!("{} INVITE", leg.cseq))
            .header("Contact", &leg.contact);
        if let Some((name, value)) = leg.auth.header(creds.as_ref(), &Method::Invite, &leg.ruri) {
            b = b.header(name, value);
        }
        let bytes = b
            .header("Allow", ALLOW)
            .header("User-Agent", ua)
            .body("application/sdp", leg.offer.to_sdp())
            .build();
        let first = leg.invite.is_none() && leg.completed.is_empty();
        let (route, trunk) = (leg.route, self.trunks[leg.trunk].cfg.name.clone());
        let tx = self.send_request(Kind::Invite, branch, route, bytes, now);
        if let Some(leg) = self.legs.get_mut(&h) {
            leg.invite = Some(tx);
        }
        if first {
            self.call_event(h, CallEvent::Sent { trunk });
        }
    }

    /// A request inside the leg's dialog (ACK for 2xx, BYE): Request-URI and Route from
    /// the dialog.
    fn in_dialog(&self, leg: &Leg, method: Method, cseq: u32, branch: &str) -> Builder {
        let target = leg
            .remote_target
            .clone()
            .unwrap_or_else(|| leg.ruri.clone());
        let mut to = leg.to.clone();
        if let Some(tag) = &leg.remote_tag {
            to = format!("{to};tag={tag}");
        }
        let mut b = Builder::request(&method, &target)
            .header("Via", via(&leg.route, branch))
            .header("Max-Forwards", "70");
        for r in &leg.route_set {
            b = b.header("Route", r);
        }
        b.header("From", &leg.from)
            .header("To", to)
            .header("Call-ID", &leg.call_id)
            .header("CSeq", format!("{cseq} {method}"))
            .header("User-Agent", self.cfg.user_agent.clone())
    }

    /// The ACK for a non-2xx final response: same branch and Request-URI as the INVITE.
    fn non_2xx_ack(&self, leg: &Leg, resp: &Incoming, branch: &str) -> Vec<u8> {
        let to = resp.header("To").unwrap_or_else(|| leg.to.clone());
        Builder::request(&Method::Ack, &leg.ruri)
            .header("Via", via(&leg.route, branch))
            .header("Max-Forwards", "70")
            .header("From", &leg.from)
            .header("To", to)
            .header("Call-ID", &leg.call_id)
            .header("CSeq", format!("{} ACK", leg.invite_cseq))
            .build()
    }

    fn send_cancel(&mut self, h: u64, now: Instant) {
        let timers = self.cfg.timers;
        let Some(leg) = self.legs.get(&h) else {
            return;
        };
        let Some(invite) = &leg.invite else {
            return;
        };
        let bytes = Builder::request(&Method::Cancel, &leg.ruri)
            .header("Via", via(&leg.route, &invite.branch))
            .header("Max-Forwards", "70")
            .header("From", &leg.from)
            .header("To", &leg.to)
            .header("Call-ID", &leg.call_id)
            .header("CSeq", format!("{} CANCEL", leg.invite_cseq))
            .header("User-Agent", self.cfg.user_agent.clone())
            .build();
        let (branch, route) = (invite.branch.clone(), leg.route);
        let tx = self.send_request(Kind::NonInvite, branch, route, bytes, now);
        if let Some(leg) = self.legs.get_mut(&h) {
            leg.cancel = Some(tx);
            leg.cancel_deadline = Some(now + timers.timeout());
        }
    }

    fn send_bye(&mut self, h: u64, now: Instant) {
        if !self.legs.contains_key(&h) {
            return;
        }
        let branch = self.branch(Owner::Call(h));
        let Some(mut leg) = self.legs.remove(&h) else {
            return;
        };
        leg.cseq += 1;
        leg.bye_cseq = leg.cseq;
        let mut b = self.in_dialog(&leg, Method::Bye, leg.cseq, &branch);
        let creds = self.trunks[leg.trunk].cfg.credentials.clone();
        let target = leg
            .remote_target
            .clone()
            .unwrap_or_else(|| leg.ruri.clone());
        if let Some((name, value)) = leg.bye_auth.header(creds.as_ref(), &Method::Bye, &target) {
            b = b.header(name, value);
        }
        leg.bye = Some(self.send_request(Kind::NonInvite, branch, leg.route, b.build(), now));
        self.legs.insert(h, leg);
    }

    /// Starts ending a call: CANCEL (`early`) before an answer, BYE (`confirmed`) after.
    fn teardown(&mut self, h: u64, now: Instant, early: EndReason, confirmed: EndReason) {
        let Some(leg) = self.legs.get_mut(&h) else {
            return;
        };
        if leg.ending.is_some() || leg.phase == Phase::Done {
            return;
        }
        match leg.phase {
            Phase::Calling => {
                // RFC 3261 §9.1: no CANCEL before a provisional; it goes when one arrives.
                leg.ending = Some(early);
            }
            Phase::Proceeding => {
                leg.ending = Some(early);
                self.send_cancel(h, now);
            }
            Phase::Confirmed => {
                leg.ending = Some(confirmed);
                self.send_bye(h, now);
            }
            Phase::Done => {}
        }
    }

    /// Reports the end once and keeps the leg a while to absorb retransmissions.
    fn finish(&mut self, h: u64, now: Instant, reason: EndReason) {
        let linger = self.cfg.timers.timeout();
        let Some(leg) = self.legs.get_mut(&h) else {
            return;
        };
        if leg.phase == Phase::Done {
            return;
        }
        leg.phase = Phase::Done;
        leg.ending = None;
        leg.cancel_deadline = None;
        if let Some(tx) = &mut leg.invite {
            tx.finish();
        }
        if let Some(tx) = &mut leg.cancel {
            tx.finish();
        }
        if let Some(tx) = &mut leg.bye {
            tx.finish();
        }
        leg.uas = None;
        leg.linger_until = Some(now + linger);
        self.call_event(h, CallEvent::Ended(reason));
    }

    /// Tries the next trunk after this one failed (timeout, unreachable, 503); false when
    /// there is none left.
    fn failover(&mut self, h: u64, now: Instant) -> bool {
        let Some(leg) = self.legs.get(&h) else {
            return false;
        };
        if leg.ending.is_some() {
            return false;
        }
        let Some(next) = self.pick_trunk(&leg.tried) else {
            return false;
        };
        let Some(leg) = self.remove_leg(h) else {
            return false;
        };
        let mut fresh = self.new_leg(next, leg.target, leg.offer, now, leg.tried);
        // The ring timeout runs from the first attempt.
        fresh.ring_deadline = leg.ring_deadline;
        self.by_call_id.insert(fresh.call_id.clone(), h);
        self.legs.insert(h, fresh);
        self.send_invite(h, now);
        true
    }

    fn set_trunk_up(&mut self, i: usize, up: bool) {
        if self.trunks[i].up != Some(up) {
            self.trunks[i].up = Some(up);
            let trunk = self.trunks[i].cfg.name.clone();
            self.emit(Event::Trunk { trunk, up });
        }
    }

    /// The transport could not reach `remote` (TCP connect refused, ...): transactions
    /// waiting on it fail now instead of at Timer B/F.
    pub fn handle_transport_error(
        &mut self,
        now: Instant,
        transport: Transport,
        remote: SocketAddr,
    ) {
        let hit = |r: &Route| r.transport == transport && r.remote == remote;
        let handles: Vec<u64> = self
            .legs
            .iter()
            .filter(|(_, l)| hit(&l.route) && l.phase != Phase::Done)
            .map(|(h, _)| *h)
            .collect();
        for i in 0..self.trunks.len() {
            if hit(&self.trunks[i].route()) {
                // The keep-alive says down at once; the next one is scheduled as usual.
                let done = self.trunks[i].options.take();
                self.forget(done);
                self.set_trunk_up(i, false);
            }
        }
        for h in handles {
            let Some(phase) = self.legs.get(&h).map(|l| l.phase) else {
                continue;
            };
            if phase == Phase::Calling && self.failover(h, now) {
                continue;
            }
            let fallback = match phase {
                Phase::Calling | Phase::Proceeding => EndReason::TransportError,
                Phase::Confirmed => EndReason::Hangup,
                Phase::Done => continue,
            };
            let ending = self.legs.get(&h).and_then(|l| l.ending.clone());
            self.finish(h, now, ending.unwrap_or(fallback));
        }
    }

    /// Takes bytes that arrived on `local` from `from`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        transport: Transport,
        local: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        let msg = match message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.emit(Event::Discarded {
                    from,
                    reason: e.to_string(),
                });
                return;
            }
        };
        let reply = Route {
            transport,
            local,
            remote: from,
        };
        if msg.status().is_some() {
            if let Err(why) = self.on_response(now, msg, transport, from) {
                self.emit(Event::Discarded { from, reason: why });
            }
        } else {
            self.on_request(now, msg, reply);
        }
    }

    /// A response goes to the transaction its branch names, and only if it came from where
    /// the request went and names the same Call-ID, From tag, CSeq number and method: a
    /// forged response from anywhere else is dropped (the reason is returned).
    fn on_response(
        &mut self,
        now: Instant,
        msg: Incoming,
        transport: Transport,
        from: SocketAddr,
    ) -> Result<(), String> {
        let status = msg.status().unwrap_or(0);
        let owner = msg
            .via
            .branch
            .as_deref()
            .and_then(|b| self.txs.get(b))
            .copied()
            .ok_or_else(|| format!("response {status} matches no transaction"))?;
        let trunk = match owner {
            Owner::Call(h) => self.legs.get(&h).map(|l| l.trunk),
            Owner::Register(i) | Owner::Options(i) => Some(i),
        }
        .filter(|&i| i < self.trunks.len())
        .ok_or_else(|| format!("response {status} for a transaction that ended"))?;
        if !self.trunks[trunk].cfg.sends_responses_from(transport, from) {
            return Err(format!(
                "response {status} over {transport} from {from}, not from trunk {:?}",
                self.trunks[trunk].cfg.name
            ));
        }
        let mismatch = |what: &str| format!("response {status} with another {what}");
        match owner {
            Owner::Call(h) => {
                let Some(leg) = self.legs.get(&h) else {
                    return Err(mismatch("call"));
                };
                if msg.call_id != leg.call_id {
                    return Err(mismatch("Call-ID"));
                }
                if msg.from_tag.as_deref() != Some(leg.local_tag.as_str()) {
                    return Err(mismatch("From tag"));
                }
                match msg.cseq_method {
                    Method::Invite => self.on_invite_response(h, now, msg),
                    Method::Cancel => self.on_cancel_response(h, msg),
                    Method::Bye => self.on_bye_response(h, now, msg),
                    _ => Err(mismatch("CSeq method")),
                }
            }
            Owner::Register(i) => {
                let tr = &self.trunks[i];
                if !answers(
                    &msg,
                    &tr.reg_call_id,
                    &tr.reg_tag,
                    tr.reg_seq,
                    Method::Register,
                ) {
                    return Err(mismatch("Call-ID, From tag or CSeq"));
                }
                self.on_register_response(i, now, msg);
                Ok(())
            }
            Owner::Options(i) => {
                let tr = &self.trunks[i];
                let (call_id, tag) = (&tr.options_call_id, &tr.options_tag);
                if !answers(&msg, call_id, tag, tr.options_seq, Method::Options) {
                    return Err(mismatch("Call-ID, From tag or CSeq"));
                }
                self.on_options_response(i, now, msg);
                Ok(())
            }
        }
    }

    fn on_cancel_response(&mut self, h: u64, msg: Incoming) -> Result<(), String> {
        let Some(leg) = self.legs.get_mut(&h) else {
            return Ok(());
        };
        if msg.cseq != leg.invite_cseq {
            return Err("CANCEL response with another CSeq".into());
        }
        if let Some(tx) = &mut leg.cancel
            && msg.via.branch.as_deref() == Some(tx.branch.as_str())
            && msg.status().unwrap_or(0) >= 200
        {
            tx.finish();
        }
        Ok(())
    }

    fn on_invite_response(&mut self, h: u64, now: Instant, msg: Incoming) -> Result<(), String> {
        let status = msg.status().unwrap_or(0);
        let branch = msg.via.branch.clone().unwrap_or_default();
        let timers = self.cfg.timers;
        let Some(leg) = self.legs.get_mut(&h) else {
            return Ok(());
        };
        let current = leg.invite.as_ref().is_some_and(|tx| tx.branch == branch)
            && msg.cseq == leg.invite_cseq;
        if !current {
            // A retransmitted final response to an earlier (challenged) INVITE: ACK again.
            let Some(c) = leg
                .completed
                .iter()
                .find(|c| c.branch == branch && c.cseq == msg.cseq)
            else {
                return Err(format!("INVITE response {status} for another CSeq"));
            };
            let (route, ack) = (leg.route, c.ack.clone());
            self.transmit(route, ack);
            return Ok(());
        }
        match status {
            100..=199 => {
                if leg.phase == Phase::Done || leg.phase == Phase::Confirmed {
                    return Ok(());
                }
                if let Some(tx) = &mut leg.invite {
                    tx.provisional(&timers, now);
                }
                let first = leg.phase == Phase::Calling;
                leg.phase = Phase::Proceeding;
                if msg.to_tag.is_some() && leg.remote_tag.is_none() {
                    leg.remote_tag = msg.to_tag.clone();
                }
                if first && leg.ending.is_some() {
                    // A hang-up waited for this provisional to send its CANCEL.
                    self.send_cancel(h, now);
                }
                if status > 100 {
                    let early_media = if msg.body().is_empty() {
                        None
                    } else {
                        let offer = self.legs.get(&h).map(|l| &l.offer);
                        std::str::from_utf8(msg.body())
                            .ok()
                            .zip(offer)
                            .and_then(|(b, offer)| sdp::parse_answer(b, offer).ok())
                    };
                    self.call_event(
                        h,
                        CallEvent::Provisional {
                            status,
                            early_media,
                        },
                    );
                }
            }
            200..=299 => self.on_invite_2xx(h, now, msg),
            _ => self.on_invite_failure(h, now, msg),
        }
        Ok(())
    }

    fn on_invite_2xx(&mut self, h: u64, now: Instant, msg: Incoming) {
        let Some(mut leg) = self.legs.remove(&h) else {
            return;
        };
        if leg.phase == Phase::Confirmed || leg.phase == Phase::Done {
            // A retransmitted 2xx (our ACK was lost): ACK it again, end to end.
            if msg.to_tag == leg.remote_tag
                && let Some(ack) = leg.ack.clone()
            {
                self.transmit(leg.route, ack);
            }
            self.legs.insert(h, leg);
            return;
        }
        if let Some(tx) = &mut leg.invite {
            tx.finish();
        }
        leg.phase = Phase::Confirmed;
        leg.remote_tag = msg.to_tag.clone();
        leg.remote_target = msg.contact_uri();
        // The UAC's route set is the Record-Route list in reverse (RFC 3261 §12.1.2).
        leg.route_set = msg.record_route().into_iter().rev().collect();
        // The ACK of a 2xx is a transaction of its own that nothing answers.
        let ack = self
            .in_dialog(&leg, Method::Ack, leg.invite_cseq, &new_branch())
            .build();
        leg.ack = Some(ack.clone());
        let answer = std::str::from_utf8(msg.body())
            .map_err(|_| "SDP answer is not UTF-8".to_string())
            .and_then(|b| {
                if b.trim().is_empty() {
                    Err("200 OK has no SDP answer".to_string())
                } else {
                    sdp::parse_answer(b, &leg.offer).map_err(|e| e.to_string())
                }
            });
        leg.cancel_deadline = None;
        let ending = leg.ending.take();
        if let (None, Ok(answer)) = (&ending, &answer) {
            leg.answer = Some(answer.clone());
        }
        self.transmit(leg.route, ack);
        self.legs.insert(h, leg);
        match (ending, answer) {
            // Answered while the CANCEL was on its way: hang up at once.
            (Some(reason), _) => self.teardown(h, now, reason.clone(), reason),
            (None, Ok(answer)) => self.call_event(h, CallEvent::Answered { answer }),
            (None, Err(why)) => self.teardown(
                h,
                now,
                EndReason::BadAnswer(why.clone()),
                EndReason::BadAnswer(why),
            ),
        }
    }

    fn on_invite_failure(&mut self, h: u64, now: Instant, msg: Incoming) {
        let status = msg.status().unwrap_or(0);
        let timers = self.cfg.timers;
        let Some(mut leg) = self.legs.remove(&h) else {
            return;
        };
        let Some(tx) = leg.invite.take() else {
            self.legs.insert(h, leg);
            return;
        };
        let ack = self.non_2xx_ack(&leg, &msg, &tx.branch);
        leg.completed.push(Completed {
            branch: tx.branch.clone(),
            cseq: leg.invite_cseq,
            ack: ack.clone(),
            until: now + timers.d(leg.route.transport),
        });
        self.transmit(leg.route, ack);
        let (phase, ending, trunk) = (leg.phase, leg.ending.clone(), leg.trunk);
        let retry = (status == 401 || status == 407)
            && ending.is_none()
            && phase != Phase::Done
            && leg
                .auth
                .take_challenge(&msg, self.trunks[trunk].cfg.credentials.is_some());
        if retry {
            leg.phase = Phase::Calling;
        }
        self.legs.insert(h, leg);
        if phase == Phase::Done {
            return;
        }
        if let Some(reason) = ending {
            // The 487 (or any final response) to a cancelled INVITE.
            self.finish(h, now, reason);
            return;
        }
        if retry {
            self.send_invite(h, now);
            return;
        }
        if status == 401 || status == 407 {
            self.finish(h, now, EndReason::AuthFailed { status });
            return;
        }
        // 503 from the trunk: the service behind it is down; another trunk may do.
        if status == 503 && self.failover(h, now) {
            return;
        }
        let reason = msg.reason();
        self.finish(h, now, EndReason::Rejected { status, reason });
    }

    fn on_bye_response(&mut self, h: u64, now: Instant, msg: Incoming) -> Result<(), String> {
        let status = msg.status().unwrap_or(0);
        let Some(leg) = self.legs.get_mut(&h) else {
            return Ok(());
        };
        let Some(tx) = &mut leg.bye else {
            return Err(format!("BYE response {status} with no BYE in flight"));
        };
        if msg.via.branch.as_deref() != Some(tx.branch.as_str()) || msg.cseq != leg.bye_cseq {
            return Err(format!("BYE response {status} for another BYE"));
        }
        if status < 200 {
            let timers = self.cfg.timers;
            tx.provisional(&timers, now);
            return Ok(());
        }
        tx.finish();
        let has = self.trunks[leg.trunk].cfg.credentials.is_some();
        if (status == 401 || status == 407) && leg.bye_auth.take_challenge(&msg, has) {
            self.send_bye(h, now);
            return Ok(());
        }
        let reason = leg.ending.clone().unwrap_or(EndReason::Hangup);
        self.finish(h, now, reason);
        Ok(())
    }

    /// A response to `req` carrying User-Agent.
    fn reply(&self, req: &Incoming, to: Route, code: u16, reason: &str) -> Builder {
        message::response_to(req, to.remote, code, reason, None)
            .header("User-Agent", self.cfg.user_agent.clone())
    }

    /// Sends a response and keeps it for the request's retransmissions (Timer J).
    fn send_reply(&mut self, now: Instant, req: &Incoming, to: Route, b: Builder) {
        let bytes = b.build();
        if self.answered.len() < MAX_ANSWERED
            && self.answered_bytes + bytes.len() <= MAX_ANSWERED_BYTES
            && let Some(key) = server_key(req)
        {
            let transmit = Transmit {
                transport: to.transport,
                local: to.local,
                remote: to.remote,
                bytes: bytes.clone(),
            };
            let until = now + self.cfg.timers.timeout();
            self.answered_bytes += key.len() + bytes.len();
            if let Some(old) = self.answered.insert(key, Cached { transmit, until }) {
                self.answered_bytes = self.answered_bytes.saturating_sub(old.transmit.bytes.len());
            }
        }
        self.transmit(to, bytes);
    }

    fn respond(&mut self, now: Instant, req: &Incoming, to: Route, code: u16, reason: &str) {
        let b = self.reply(req, to, code, reason);
        self.send_reply(now, req, to, b);
    }

    fn respond_allow(&mut self, now: Instant, req: &Incoming, to: Route, code: u16, reason: &str) {
        let b = self.reply(req, to, code, reason).header("Allow", ALLOW);
        self.send_reply(now, req, to, b);
    }

    fn on_request(&mut self, now: Instant, req: Incoming, reply: Route) {
        let method = req.method().cloned().unwrap_or(Method::Options);
        if method != Method::Ack
            && let Some(key) = server_key(&req)
            && let Some(c) = self.answered.get(&key)
            && c.transmit.remote == reply.remote
            && c.transmit.transport == reply.transport
        {
            // A retransmitted request (from the same sender): the same answer again.
            let t = c.transmit.clone();
            self.out.push_back(Output::Transmit(t));
            return;
        }
        // A request belongs to a dialog only with both of its tags and from the trunk the
        // call went through: a BYE or re-INVITE from anywhere else (or with a tag guessed
        // wrong) is answered 481 and changes nothing.
        let leg = self.by_call_id.get(&req.call_id).copied().filter(|h| {
            self.legs.get(h).is_some_and(|l| {
                l.remote_tag.is_some()
                    && req.to_tag.as_deref() == Some(l.local_tag.as_str())
                    && req.from_tag == l.remote_tag
                    && self.trunks[l.trunk]
                        .cfg
                        .sends_requests_from(reply.transport, reply.remote)
            })
        });
        if let Some(h) = leg
            && method != Method::Ack
            && let Some(leg) = self.legs.get_mut(&h)
        {
            // RFC 3261 §12.2.2: a request older than one already taken is out of order.
            if leg.remote_cseq.is_some_and(|seen| req.cseq < seen) {
                self.respond(now, &req, reply, 500, "CSeq Out of Order");
                return;
            }
            leg.remote_cseq = Some(req.cseq);
        }
        match (method, leg) {
            (Method::Ack, Some(h)) => {
                if let Some(leg) = self.legs.get_mut(&h) {
                    leg.uas = None;
                }
            }
            (Method::Ack, None) => {}
            (Method::Bye, Some(h)) => {
                self.respond(now, &req, reply, 200, "OK");
                if let Some(leg) = self.legs.get(&h)
                    && leg.phase != Phase::Done
                {
                    let reason = leg.ending.clone().unwrap_or(EndReason::RemoteHangup);
                    self.finish(h, now, reason);
                }
            }
            (Method::Invite | Method::Update, Some(h)) => self.on_reinvite(h, now, req, reply),
            (Method::Options, _) => self.respond_allow(now, &req, reply, 200, "OK"),
            (Method::Invite, None) if req.to_tag.is_none() => self.respond(
                now,
                &req,
                reply,
                403,
                "Forbidden (callverify places calls only)",
            ),
            (_, None) if req.to_tag.is_some() || method == Method::Cancel => {
                self.respond(now, &req, reply, 481, "Call/Transaction Does Not Exist")
            }
            (_, Some(_)) => self.respond_allow(now, &req, reply, 501, "Not Implemented"),
            (_, None) => self.respond_allow(now, &req, reply, 405, "Method Not Allowed"),
        }
    }

    /// A re-INVITE or UPDATE in a confirmed dialog: keep the media (same codec) and answer
    /// 200, or 488 when the new offer leaves nothing callverify can use.
    fn on_reinvite(&mut self, h: u64, now: Instant, req: Incoming, reply: Route) {
        let Some(leg) = self.legs.get(&h) else {
            return;
        };
        if leg.phase != Phase::Confirmed {
            self.respond(now, &req, reply, 491, "Request Pending");
            return;
        }
        let Some(current) = leg.answer.clone() else {
            self.respond(now, &req, reply, 488, "Not Acceptable Here");
            return;
        };
        let mut ours = leg.offer.clone();
        ours.codecs = vec![current.codec];
        ours.version += 1;
        let body = if req.body().is_empty() {
            // No offer in the re-INVITE: ours goes in the 200 and the answer in the ACK.
            Some(ours.to_sdp())
        } else {
            let parsed = std::str::from_utf8(req.body())
                .map_err(|_| ())
                .and_then(|b| sdp::parse_answer(b, &ours).map_err(|_| ()));
            match parsed {
                Ok(a) => {
                    let body = ours.answer_sdp(a.telephone_event_pt);
                    if a != current {
                        if let Some(leg) = self.legs.get_mut(&h) {
                            leg.answer = Some(a.clone());
                        }
                        self.call_event(h, CallEvent::MediaChanged { answer: a });
                    }
                    Some(body)
                }
                Err(()) => {
                    self.respond(now, &req, reply, 488, "Not Acceptable Here");
                    return;
                }
            }
        };
        let Some(leg) = self.legs.get_mut(&h) else {
            return;
        };
        leg.offer.version = ours.version;
        let contact = leg.contact.clone();
        let mut b = self
            .reply(&req, reply, 200, "OK")
            .header("Contact", contact)
            .header("Allow", ALLOW);
        if let Some(body) = body {
            b = b.body("application/sdp", body);
        }
        let timers = self.cfg.timers;
        if req.method() == Some(&Method::Invite) && reply.transport == Transport::Udp {
            let bytes = b.clone().build();
            let Some(leg) = self.legs.get_mut(&h) else {
                return;
            };
            leg.uas = Some(UasRetransmit {
                bytes,
                to: reply,
                interval: timers.t1,
                next: now + timers.t1,
                give_up: now + timers.timeout(),
            });
        }
        self.send_reply(now, &req, reply, b);
    }

    fn send_options(&mut self, i: usize, now: Instant) {
        let branch = self.branch(Owner::Options(i));
        let (tag, call_id) = (new_tag(), new_call_id());
        let tr = &mut self.trunks[i];
        if let Some(old) = tr.options.take() {
            self.txs.remove(&old.branch);
        }
        tr.options_seq += 1;
        tr.options_call_id = call_id.clone();
        tr.options_tag = tag.clone();
        let route = tr.route();
        let uri = format!("sip:{}", tr.cfg.domain);
        let bytes = Builder::request(&Method::Options, &uri)
            .header("Via", via(&route, &branch))
            .header("Max-Forwards", "70")
            .header(
                "From",
                format!("<sip:{}@{}>;tag={tag}", tr.cfg.from_user, tr.cfg.domain),
            )
            .header("To", format!("<{uri}>"))
            .header("Call-ID", call_id)
            .header("CSeq", format!("{} OPTIONS", tr.options_seq))
            .header("Accept", "application/sdp")
            .header("User-Agent", self.cfg.user_agent.clone())
            .build();
        tr.next_options = tr.cfg.options_interval.map(|d| now + d);
        let tx = self.send_request(Kind::NonInvite, branch, route, bytes, now);
        self.trunks[i].options = Some(tx);
    }

    fn on_options_response(&mut self, i: usize, now: Instant, msg: Incoming) {
        let timers = self.cfg.timers;
        let tr = &mut self.trunks[i];
        let Some(tx) = &mut tr.options else {
            return;
        };
        if msg.via.branch.as_deref() != Some(tx.branch.as_str()) {
            return;
        }
        if msg.status().unwrap_or(0) < 200 {
            tx.provisional(&timers, now);
            return;
        }
        // Any final response, even 4xx/5xx, shows the trunk's SIP stack is alive — except
        // 503, which is how a proxy says the service behind it is down.
        let done = tr.options.take();
        self.forget(done);
        self.set_trunk_up(i, msg.status() != Some(503));
    }

    fn send_register(&mut self, i: usize, now: Instant) {
        let branch = self.branch(Owner::Register(i));
        let ua = self.cfg.user_agent.clone();
        let tr = &mut self.trunks[i];
        if let Some(old) = tr.register.take() {
            self.txs.remove(&old.branch);
        }
        tr.reg_seq += 1;
        tr.next_register = None;
        let route = tr.route();
        let uri = format!("sip:{}", tr.cfg.domain);
        let aor = format!("<sip:{}@{}>", tr.cfg.from_user, tr.cfg.domain);
        let mut b = Builder::request(&Method::Register, &uri)
            .header("Via", via(&route, &branch))
            .header("Max-Forwards", "70")
            .header("From", format!("{aor};tag={}", tr.reg_tag))
            .header("To", aor)
            .header("Call-ID", tr.reg_call_id.clone())
            .header("CSeq", format!("{} REGISTER", tr.reg_seq))
            .header("Contact", tr.contact())
            .header("Expires", tr.reg_expires.to_string());
        let creds = tr.cfg.credentials.clone();
        if let Some((name, value)) = tr.reg_auth.header(creds.as_ref(), &Method::Register, &uri) {
            b = b.header(name, value);
        }
        let bytes = b.header("User-Agent", ua).build();
        let tx = self.send_request(Kind::NonInvite, branch, route, bytes, now);
        self.trunks[i].register = Some(tx);
    }

    fn on_register_response(&mut self, i: usize, now: Instant, msg: Incoming) {
        let timers = self.cfg.timers;
        let status = msg.status().unwrap_or(0);
        let tr = &mut self.trunks[i];
        let Some(tx) = &mut tr.register else {
            return;
        };
        if msg.via.branch.as_deref() != Some(tx.branch.as_str()) {
            return;
        }
        if status < 200 {
            tx.provisional(&timers, now);
            return;
        }
        let done = tr.register.take();
        let name = tr.cfg.name.clone();
        self.forget(done);
        let tr = &mut self.trunks[i];
        match status {
            200..=299 => {
                tr.reg_auth.tries = 0;
                // RFC 3581: the registrar saw us at received:rport; register that address
                // if it differs from what we put in Contact (we are behind a NAT).
                let seen = param(&msg.via.value, "received")
                    .and_then(|ip| ip.parse().ok())
                    .map(|ip| {
                        let port = param(&msg.via.value, "rport")
                            .and_then(|p| p.parse().ok())
                            .unwrap_or(tr.local.port());
                        SocketAddr::new(ip, port)
                    });
                let ours = addr_spec(&tr.contact()).to_string();
                let granted = msg
                    .headers("Contact")
                    .flat_map(|v| message::list(&v))
                    .find(|c| addr_spec(c) == ours)
                    .and_then(|c| param(&c, "expires"))
                    .and_then(|e| e.parse().ok())
                    .or_else(|| msg.header("Expires").and_then(|e| e.parse().ok()))
                    .unwrap_or(tr.reg_expires)
                    .min(MAX_REGISTER_EXPIRES);
                // Over TCP the source port is the connection's, not a listener: keep ours.
                if let Some(seen) = seen
                    && tr.cfg.transport == Transport::Udp
                    && seen != tr.contact_addr()
                    && !tr.public_moved
                {
                    tr.public = Some(seen);
                    tr.public_moved = true;
                    self.send_register(i, now);
                    return;
                }
                tr.public_moved = false;
                tr.registered_contact = Some(ours);
                let refresh = Duration::from_secs(u64::from(granted.max(2)) / 2);
                tr.next_register = Some(now + refresh);
                self.emit(Event::Registration {
                    trunk: name,
                    state: Registration::Registered { expires: granted },
                });
            }
            401 | 407 => {
                let has = tr.cfg.credentials.is_some();
                if tr.reg_auth.take_challenge(&msg, has) {
                    self.send_register(i, now);
                } else {
                    tr.reg_auth = AuthState::default();
                    tr.next_register = Some(now + REGISTER_RETRY);
                    self.emit(Event::Registration {
                        trunk: name,
                        state: Registration::Failed {
                            status: Some(status),
                        },
                    });
                }
            }
            423 => {
                let min = msg
                    .header("Min-Expires")
                    .and_then(|e| e.parse::<u32>().ok());
                match min {
                    Some(min) if min > tr.reg_expires && min <= 86_400 => {
                        tr.reg_expires = min;
                        self.send_register(i, now);
                    }
                    _ => {
                        tr.next_register = Some(now + REGISTER_RETRY);
                        self.emit(Event::Registration {
                            trunk: name,
                            state: Registration::Failed {
                                status: Some(status),
                            },
                        });
                    }
                }
            }
            _ => {
                tr.reg_auth = AuthState::default();
                tr.next_register = Some(now + REGISTER_RETRY);
                self.emit(Event::Registration {
                    trunk: name,
                    state: Registration::Failed {
                        status: Some(status),
                    },
                });
            }
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timers = self.cfg.timers;
        let mut freed = 0;
        self.answered.retain(|k, c| {
            let keep = c.until > now;
            if !keep {
                freed += k.len() + c.transmit.bytes.len();
            }
            keep
        });
        self.answered_bytes = self.answered_bytes.saturating_sub(freed);
        let handles: Vec<u64> = self.legs.keys().copied().collect();
        for h in handles {
            self.leg_timers(h, now, &timers);
        }
        for i in 0..self.trunks.len() {
            self.trunk_timers(i, now, &timers);
        }
    }

    fn leg_timers(&mut self, h: u64, now: Instant, timers: &Timers) {
        let Some(leg) = self.legs.get_mut(&h) else {
            return;
        };
        let route = leg.route;
        leg.completed.retain(|c| c.until > now);
        if leg.linger_until.is_some_and(|t| now >= t) {
            self.remove_leg(h);
            return;
        }
        let mut sends = Vec::new();
        let invite_timeout = tick(&mut leg.invite, timers, now, &mut sends);
        // The CANCEL's own Timer F needs no action: cancel_deadline ends the wait.
        tick(&mut leg.cancel, timers, now, &mut sends);
        let bye_timeout = tick(&mut leg.bye, timers, now, &mut sends);
        let mut uas_send = None;
        if let Some(u) = &mut leg.uas {
            if now >= u.give_up {
                leg.uas = None;
            } else if now >= u.next {
                u.interval = (u.interval * 2).min(timers.t2);
                u.next = now + u.interval;
                uas_send = Some((u.to, u.bytes.clone()));
            }
        }
        let cancel_expired = leg.cancel_deadline.is_some_and(|t| now >= t);
        let ring_expired = matches!(leg.phase, Phase::Calling | Phase::Proceeding)
            && leg.ending.is_none()
            && now >= leg.ring_deadline;
        let phase = leg.phase;
        let ending = leg.ending.clone();
        let trunk = leg.trunk;
        for bytes in sends {
            self.transmit(route, bytes);
        }
        if let Some((to, bytes)) = uas_send {
            self.transmit(to, bytes);
        }
        if invite_timeout && phase == Phase::Calling {
            // Timer B: the trunk did not answer at all.
            self.set_trunk_up(trunk, false);
            if ending.is_none() && self.failover(h, now) {
                return;
            }
            self.finish(h, now, ending.unwrap_or(EndReason::Timeout));
            return;
        }
        if cancel_expired || bye_timeout {
            self.finish(h, now, ending.unwrap_or(EndReason::Hangup));
            return;
        }
        if ring_expired {
            self.teardown(h, now, EndReason::NoAnswer, EndReason::NoAnswer);
        }
    }

    fn trunk_timers(&mut self, i: usize, now: Instant, timers: &Timers) {
        let tr = &mut self.trunks[i];
        let route = tr.route();
        let mut sends = Vec::new();
        let options_timeout = tick(&mut tr.options, timers, now, &mut sends);
        let register_timeout = tick(&mut tr.register, timers, now, &mut sends);
        let options_due = tr.options.is_none() && tr.next_options.is_some_and(|t| now >= t);
        let register_due = tr.register.is_none() && tr.next_register.is_some_and(|t| now >= t);
        for bytes in sends {
            self.transmit(route, bytes);
        }
        if options_timeout {
            let done = self.trunks[i].options.take();
            self.forget(done);
            self.set_trunk_up(i, false);
        }
        if register_timeout {
            let done = self.trunks[i].register.take();
            self.forget(done);
            let tr = &mut self.trunks[i];
            tr.reg_auth = AuthState::default();
            tr.next_register = Some(now + REGISTER_RETRY);
            let trunk = tr.cfg.name.clone();
            self.set_trunk_up(i, false);
            self.emit(Event::Registration {
                trunk,
                state: Registration::Failed { status: None },
            });
        }
        if options_due {
            self.send_options(i, now);
        }
        if register_due {
            self.send_register(i, now);
        }
    }
}

/// Whether a response names the request it claims to answer: its Call-ID, From tag, CSeq
/// number and method.
fn answers(msg: &Incoming, call_id: &str, from_tag: &str, cseq: u32, method: Method) -> bool {
    msg.call_id == call_id
        && msg.from_tag.as_deref() == Some(from_tag)
        && msg.cseq == cseq
        && msg.cseq_method == method
}

/// Runs a client transaction's timers due at `now`: a retransmission goes into `sends`;
/// true when Timer B or F fired.
fn tick(
    tx: &mut Option<ClientTx>,
    timers: &Timers,
    now: Instant,
    sends: &mut Vec<Vec<u8>>,
) -> bool {
    let Some(tx) = tx else {
        return false;
    };
    match tx.handle_timeout(timers, now) {
        Some(Fired::Retransmit) => {
            sends.push(tx.bytes.clone());
            false
        }
        Some(Fired::Timeout) => true,
        None => false,
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
