//! The user agent: outbound calls (UAC INVITE, ACK, CANCEL, BYE with digest retry), the
//! few requests it answers as a UAS (BYE, re-INVITE, OPTIONS), and per-trunk REGISTER and
//! OPTIONS keep-alive with failover. Sans-IO: bytes and the time come in through
//! [`UserAgent::handle_receive`] and [`UserAgent::handle_timeout`], what to send and what
//! happened come out of [`UserAgent::poll_output`], and [`UserAgent::poll_timeout`] says
//! when to call again.
//!
//! Every request, in dialog or not, is sent to the trunk's configured address (the trunk is
//! the outbound proxy); the Request-URI and Route headers follow RFC 3261 §12.2.1.1 so a
//! proxy on the way routes it.
//!
//! The shape is quinn-proto's: [`endpoint`] only routes what arrives to the call, the
//! registration or the keep-alive it belongs to (or answers it); each call is a
//! [`leg::Leg`] whose state is an enum carrying that state's data; every deadline of a call
//! or a trunk is in its [`TimerTable`](crate::timer::TimerTable), fired in one place.
//!
//! - [`endpoint`]: datagrams and stream messages routed, and the checks that keep forged
//!   responses and requests out.
//! - [`leg`]: one outbound call, from the INVITE to the end.
//! - [`uas`]: the requests the user agent answers.
//! - [`trunk`]: REGISTER, OPTIONS keep-alive and failover.
//! - [`auth`]: digest credentials; [`headers`]: the start of every request.

mod auth;
mod endpoint;
mod headers;
mod leg;
mod legs;
mod trunk;
mod uas;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Transport;
use crate::sdp::{self, Answer, Offer};
use crate::transaction::Timers;

use endpoint::Owner;
use trunk::Trunk;
use uas::Answered;

/// Methods callverify takes as a UAS, for Allow headers.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE";

/// A local address the user agent is reachable at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    /// UDP or TCP.
    pub transport: Transport,
    /// A specific address (not 0.0.0.0 / ::: it goes into Via and Contact).
    pub addr: SocketAddr,
    /// The address peers are told instead of `addr` (Via sent-by, Contact): behind a NAT,
    /// its public address with this listener's port forwarded to it. `None`: `addr`.
    pub advertise: Option<SocketAddr>,
}

impl Listener {
    /// A listener peers reach at its own address.
    pub fn new(transport: Transport, addr: SocketAddr) -> Listener {
        Listener {
            transport,
            addr,
            advertise: None,
        }
    }

    /// The address that goes into Via and Contact of what is sent from it.
    pub fn advertised(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.addr)
    }
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
    /// A listener advertises an unspecified address or port 0.
    #[error(
        "advertised address {0} is unspecified or has port 0; give the address and port peers reach"
    )]
    UnspecifiedAdvertised(SocketAddr),
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

/// The SIP user agent.
#[derive(Debug)]
pub struct UserAgent {
    cfg: UaConfig,
    trunks: Vec<Trunk>,
    legs: legs::Legs,
    by_call_id: HashMap<String, u64>,
    /// The client transactions by branch.
    txs: HashMap<String, Owner>,
    /// The answers to requests, kept for their retransmissions.
    answered: Answered,
    next_handle: u64,
    out: VecDeque<Output>,
    started: bool,
}

fn local_for(listen: &[Listener], transport: Transport, remote: SocketAddr) -> Option<Listener> {
    listen
        .iter()
        .find(|l| l.transport == transport && l.addr.is_ipv4() == remote.is_ipv4())
        .copied()
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
        if let Some(a) = cfg
            .listen
            .iter()
            .filter_map(|l| l.advertise)
            .find(|a| a.ip().is_unspecified() || a.port() == 0)
        {
            return Err(UaError::UnspecifiedAdvertised(a));
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
            ts.push(Trunk::new(t, local));
        }
        Ok(UserAgent {
            cfg,
            trunks: ts,
            legs: legs::Legs::default(),
            by_call_id: HashMap::new(),
            txs: HashMap::new(),
            answered: Answered::default(),
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
        let ring_until = now + self.cfg.ring_timeout;
        let leg = self.new_leg(trunk, target.to_string(), offer, ring_until, Vec::new());
        self.by_call_id.insert(leg.call_id.clone(), handle);
        self.legs.insert(handle, leg);
        self.send_invite(handle, now);
        self.legs.sync();
        Ok(CallHandle(handle))
    }

    /// Ends a call: CANCEL while it rings, BYE once answered. Its `Ended` event follows.
    pub fn hangup(&mut self, now: Instant, call: CallHandle) {
        self.teardown(call.0, now, EndReason::Canceled, EndReason::Hangup);
        self.legs.sync();
    }

    /// The number of calls not yet ended.
    pub fn active_calls(&self) -> usize {
        self.legs.values().filter(|l| !l.is_over()).count()
    }

    /// What to send or report next.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next instant [`UserAgent::handle_timeout`] must be called: the earliest deadline
    /// in the calls' and the trunks' timer tables, or of the answers kept (O(log n) in the
    /// calls: their deadlines are queued, see `legs`).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let trunks = self.trunks.iter().filter_map(|t| t.timers.next_timeout());
        self.legs
            .next_timeout()
            .into_iter()
            .chain(trunks)
            .chain(self.answered.next_expiry())
            .min()
    }

    /// Runs every timer due at `now`: of the calls whose deadline has come, of the trunks.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.answered.expire(now);
        for h in self.legs.take_due(now) {
            self.leg_timers(h, now);
        }
        for i in 0..self.trunks.len() {
            self.trunk_timers(i, now);
        }
        self.legs.sync();
    }

    fn emit(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn transmit(&mut self, route: headers::Route, bytes: Vec<u8>) {
        self.out.push_back(Output::Transmit(Transmit {
            transport: route.transport,
            local: route.local,
            remote: route.remote,
            bytes,
        }));
    }

    fn call_event(&mut self, h: u64, e: CallEvent) {
        self.emit(Event::Call(CallHandle(h), e));
    }
}
