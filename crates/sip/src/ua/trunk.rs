//! The trunks: REGISTER with refresh (and the address a registrar reports for us, RFC
//! 3581), OPTIONS keep-alive marking a trunk up or down, and which trunk a call tries next.
//!
//! Our address in a trunk's Contact is its listener's advertised address when one is
//! configured (behind a NAT with the port forwarded: the operator's word, stable whatever
//! the NAT's mappings do); otherwise the address a registrar saw us at (Via received and
//! rport of its 2xx), once it has said; otherwise the listener's own.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsip::Method;

use super::auth::AuthState;
use super::endpoint::Owner;
use super::headers::{self, Head, Route};
use super::{Event, Listener, Registration, TrunkConfig, UserAgent};
use crate::Transport;
use crate::message::{self, Incoming, addr_spec, param};
use crate::timer::{TimerKind, TimerTable};
use crate::transaction::{ClientTx, Kind};

/// Expiry asked for in REGISTER, in seconds.
const REGISTER_EXPIRES: u32 = 600;
/// Wait before trying a failed registration again.
const REGISTER_RETRY: Duration = Duration::from_secs(60);
/// The longest registration honoured, whatever the registrar grants (a day).
const MAX_REGISTER_EXPIRES: u32 = 86_400;

/// A trunk's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TrunkTimer {
    /// The OPTIONS in flight gets no answer (Timer F): the trunk is down.
    OptionsTimeout,
    /// The REGISTER in flight gets no answer (Timer F).
    RegisterTimeout,
    /// Timer E of the OPTIONS in flight.
    OptionsRetransmit,
    /// Timer E of the REGISTER in flight.
    RegisterRetransmit,
    /// The next keep-alive (set only while none is in flight).
    NextOptions,
    /// The registration's refresh, or the retry after a failure.
    NextRegister,
}

impl TimerKind for TrunkTimer {
    const ALL: &'static [TrunkTimer] = &[
        TrunkTimer::OptionsTimeout,
        TrunkTimer::RegisterTimeout,
        TrunkTimer::OptionsRetransmit,
        TrunkTimer::RegisterRetransmit,
        TrunkTimer::NextOptions,
        TrunkTimer::NextRegister,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// A trunk and its keep-alive and registration state.
#[derive(Debug)]
pub(super) struct Trunk {
    pub cfg: TrunkConfig,
    /// The listener its requests are sent from.
    pub local: SocketAddr,
    /// That listener's advertised address, if it has one.
    advertised: Option<SocketAddr>,
    /// Our address as the trunk sees it (Via received/rport of a REGISTER response).
    public: Option<SocketAddr>,
    /// Whether its keep-alive last said it is up (`None` before the first).
    pub up: Option<bool>,
    options: Option<ClientTx<TrunkTimer>>,
    /// When the next keep-alive is due; [`TrunkTimer::NextOptions`] is set to it once the
    /// one in flight has ended (a probe waiting for its answer postpones the next).
    next_options: Option<Instant>,
    pub options_seq: u32,
    /// The Call-ID and From tag of the OPTIONS in flight.
    pub options_call_id: String,
    pub options_tag: String,
    register: Option<ClientTx<TrunkTimer>>,
    pub reg_call_id: String,
    pub reg_tag: String,
    pub reg_seq: u32,
    reg_expires: u32,
    reg_auth: AuthState,
    /// This registration already moved its Contact to the address the registrar saw once
    /// (a registrar that reports another address each time must not start a loop).
    public_moved: bool,
    pub timers: TimerTable<TrunkTimer>,
}

impl Trunk {
    /// A trunk reached from the listener `local`.
    pub fn new(cfg: TrunkConfig, local: Listener) -> Trunk {
        Trunk {
            cfg,
            local: local.addr,
            advertised: local.advertise,
            public: None,
            up: None,
            options: None,
            next_options: None,
            options_seq: 0,
            options_call_id: String::new(),
            options_tag: String::new(),
            register: None,
            reg_call_id: headers::new_call_id(),
            reg_tag: headers::new_tag(),
            reg_seq: 0,
            reg_expires: REGISTER_EXPIRES,
            reg_auth: AuthState::default(),
            public_moved: false,
            timers: TimerTable::default(),
        }
    }

    /// Where its requests go.
    pub fn route(&self) -> Route {
        Route {
            transport: self.cfg.transport,
            local: self.local,
            remote: self.cfg.address,
            sent_by: self.advertised.unwrap_or(self.local),
        }
    }

    /// Our address in Contact: the advertised one, else the one a registrar saw, else the
    /// listener's.
    fn contact_addr(&self) -> SocketAddr {
        self.advertised.or(self.public).unwrap_or(self.local)
    }

    /// The Contact of the calls and registrations through it.
    pub fn contact(&self) -> String {
        let t = match self.cfg.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        };
        format!("<sip:{}@{}{t}>", self.cfg.from_user, self.contact_addr())
    }

    /// Whether `branch` is that of the OPTIONS or the REGISTER in flight.
    fn in_flight(tx: Option<&ClientTx<TrunkTimer>>, branch: Option<&str>) -> bool {
        tx.is_some_and(|tx| Some(tx.branch.as_str()) == branch)
    }
}

impl UserAgent {
    /// The first trunk not tried yet that is not down (or, if all are down, the first not
    /// tried).
    pub(super) fn pick_trunk(&self, tried: &[usize]) -> Option<usize> {
        let fresh = |i: &usize| !tried.contains(i);
        (0..self.trunks.len())
            .filter(fresh)
            .find(|&i| self.trunks[i].up != Some(false))
            .or_else(|| (0..self.trunks.len()).find(fresh))
    }

    pub(super) fn set_trunk_up(&mut self, i: usize, up: bool) {
        if self.trunks[i].up != Some(up) {
            self.trunks[i].up = Some(up);
            let trunk = self.trunks[i].cfg.name.clone();
            self.emit(Event::Trunk { trunk, up });
        }
    }

    /// Ends the trunk's OPTIONS in flight, if any: its late answers match nothing, and the
    /// next keep-alive is due when it was scheduled.
    pub(super) fn end_options(&mut self, i: usize) {
        let tr = &mut self.trunks[i];
        if let Some(tx) = tr.options.take() {
            tx.finish(&mut tr.timers);
            self.txs.remove(&tx.branch);
        }
        if let Some(at) = tr.next_options {
            tr.timers.set(TrunkTimer::NextOptions, at);
        }
    }

    fn end_register(&mut self, i: usize) {
        let tr = &mut self.trunks[i];
        if let Some(tx) = tr.register.take() {
            tx.finish(&mut tr.timers);
            self.txs.remove(&tx.branch);
        }
    }

    pub(super) fn send_options(&mut self, i: usize, now: Instant) {
        self.end_options(i);
        let branch = self.branch(Owner::Options(i));
        let (tag, call_id) = (headers::new_tag(), headers::new_call_id());
        let timers = self.cfg.timers;
        let ua = self.cfg.user_agent.clone();
        let tr = &mut self.trunks[i];
        tr.options_seq += 1;
        tr.options_call_id = call_id.clone();
        tr.options_tag = tag.clone();
        let route = tr.route();
        let uri = format!("sip:{}", tr.cfg.domain);
        let from = format!("<sip:{}@{}>;tag={tag}", tr.cfg.from_user, tr.cfg.domain);
        let head = Head {
            method: &Method::Options,
            uri: &uri,
            from: &from,
            to: &format!("<{uri}>"),
            call_id: &call_id,
            cseq: tr.options_seq,
        };
        let bytes = headers::request(head, &route, &branch, &[])
            .header("Accept", "application/sdp")
            .header("User-Agent", ua)
            .build();
        tr.next_options = tr.cfg.options_interval.map(|d| now + d);
        tr.timers.stop(TrunkTimer::NextOptions);
        tr.options = Some(ClientTx::start(
            Kind::NonInvite,
            (branch, bytes.clone()),
            route.transport,
            (TrunkTimer::OptionsRetransmit, TrunkTimer::OptionsTimeout),
            (&timers, now),
            &mut tr.timers,
        ));
        self.transmit(route, bytes);
    }

    pub(super) fn on_options_response(&mut self, i: usize, now: Instant, msg: Incoming) {
        let timers = self.cfg.timers;
        let tr = &mut self.trunks[i];
        if !Trunk::in_flight(tr.options.as_ref(), msg.via.branch.as_deref()) {
            return;
        }
        let status = msg.status().unwrap_or(0);
        if status < 200 {
            if let Some(tx) = &mut tr.options {
                tx.provisional(&timers, now, &mut tr.timers);
            }
            return;
        }
        // Any final response, even 4xx/5xx, shows the trunk's SIP stack is alive — except
        // 503, which is how a proxy says the service behind it is down.
        self.end_options(i);
        self.set_trunk_up(i, status != 503);
    }

    pub(super) fn send_register(&mut self, i: usize, now: Instant) {
        self.end_register(i);
        let branch = self.branch(Owner::Register(i));
        let timers = self.cfg.timers;
        let ua = self.cfg.user_agent.clone();
        let tr = &mut self.trunks[i];
        tr.reg_seq += 1;
        tr.timers.stop(TrunkTimer::NextRegister);
        let route = tr.route();
        let uri = format!("sip:{}", tr.cfg.domain);
        let aor = format!("<sip:{}@{}>", tr.cfg.from_user, tr.cfg.domain);
        let head = Head {
            method: &Method::Register,
            uri: &uri,
            from: &format!("{aor};tag={}", tr.reg_tag),
            to: &aor,
            call_id: &tr.reg_call_id,
            cseq: tr.reg_seq,
        };
        let mut b = headers::request(head, &route, &branch, &[])
            .header("Contact", tr.contact())
            .header("Expires", tr.reg_expires.to_string());
        let creds = tr.cfg.credentials.clone();
        if let Some((name, value)) = tr.reg_auth.header(creds.as_ref(), Method::Register, &uri) {
            b = b.header(name, value);
        }
        let bytes = b.header("User-Agent", ua).build();
        tr.register = Some(ClientTx::start(
            Kind::NonInvite,
            (branch, bytes.clone()),
            route.transport,
            (TrunkTimer::RegisterRetransmit, TrunkTimer::RegisterTimeout),
            (&timers, now),
            &mut tr.timers,
        ));
        self.transmit(route, bytes);
    }

    /// The registration failed (`status`, `None` for no answer): tried again later.
    fn registration_failed(&mut self, i: usize, status: Option<u16>, now: Instant) {
        let tr = &mut self.trunks[i];
        tr.timers
            .set(TrunkTimer::NextRegister, now + REGISTER_RETRY);
        let trunk = tr.cfg.name.clone();
        self.emit(Event::Registration {
            trunk,
            state: Registration::Failed { status },
        });
    }

    pub(super) fn on_register_response(&mut self, i: usize, now: Instant, msg: Incoming) {
        let timers = self.cfg.timers;
        let status = msg.status().unwrap_or(0);
        let tr = &mut self.trunks[i];
        if !Trunk::in_flight(tr.register.as_ref(), msg.via.branch.as_deref()) {
            return;
        }
        if status < 200 {
            if let Some(tx) = &mut tr.register {
                tx.provisional(&timers, now, &mut tr.timers);
            }
            return;
        }
        self.end_register(i);
        match status {
            200..=299 => self.registered(i, now, &msg),
            401 | 407 => {
                let tr = &mut self.trunks[i];
                let has = tr.cfg.credentials.is_some();
                if tr.reg_auth.take_challenge(&msg, has) {
                    self.send_register(i, now);
                } else {
                    tr.reg_auth = AuthState::default();
                    self.registration_failed(i, Some(status), now);
                }
            }
            423 => {
                let min = msg
                    .header("Min-Expires")
                    .and_then(|e| e.parse::<u32>().ok());
                let tr = &mut self.trunks[i];
                match min {
                    Some(min) if min > tr.reg_expires && min <= MAX_REGISTER_EXPIRES => {
                        tr.reg_expires = min;
                        self.send_register(i, now);
                    }
                    _ => self.registration_failed(i, Some(status), now),
                }
            }
            _ => {
                self.trunks[i].reg_auth = AuthState::default();
                self.registration_failed(i, Some(status), now);
            }
        }
    }

    /// A 2xx to REGISTER: registered for what the registrar granted (refreshed at half of
    /// it), unless it saw us at another address than our Contact, which is then registered
    /// once more with that address (RFC 3581: we are behind a NAT).
    fn registered(&mut self, i: usize, now: Instant, msg: &Incoming) {
        let tr = &mut self.trunks[i];
        tr.reg_auth.accepted();
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
        // Over TCP the source port is the connection's, not a listener: keep ours. An
        // advertised address is kept whatever the registrar saw.
        if let Some(seen) = seen
            && tr.cfg.transport == Transport::Udp
            && tr.advertised.is_none()
            && seen != tr.contact_addr()
            && !tr.public_moved
        {
            tr.public = Some(seen);
            tr.public_moved = true;
            self.send_register(i, now);
            return;
        }
        tr.public_moved = false;
        let refresh = Duration::from_secs(u64::from(granted.max(2)) / 2);
        tr.timers.set(TrunkTimer::NextRegister, now + refresh);
        let trunk = tr.cfg.name.clone();
        self.emit(Event::Registration {
            trunk,
            state: Registration::Registered { expires: granted },
        });
    }

    /// Fires the trunk's timers due at `now`.
    pub(super) fn trunk_timers(&mut self, i: usize, now: Instant) {
        let timers = self.cfg.timers;
        while let Some(t) = self.trunks[i].timers.take_expired(now) {
            let tr = &mut self.trunks[i];
            match t {
                TrunkTimer::OptionsRetransmit | TrunkTimer::RegisterRetransmit => {
                    let tx = match t {
                        TrunkTimer::OptionsRetransmit => &mut tr.options,
                        _ => &mut tr.register,
                    };
                    if let Some(tx) = tx {
                        let bytes = tx.retransmit(&timers, now, &mut tr.timers);
                        let route = tr.route();
                        self.transmit(route, bytes);
                    }
                }
                TrunkTimer::OptionsTimeout => {
                    self.end_options(i);
                    self.set_trunk_up(i, false);
                }
                TrunkTimer::RegisterTimeout => {
                    self.end_register(i);
                    self.trunks[i].reg_auth = AuthState::default();
                    self.set_trunk_up(i, false);
                    self.registration_failed(i, None, now);
                }
                TrunkTimer::NextOptions => self.send_options(i, now),
                TrunkTimer::NextRegister => self.send_register(i, now),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ua::ResponsesFrom;

    fn trunk(transport: Transport) -> Trunk {
        let cfg = TrunkConfig {
            name: "pbx".into(),
            address: "127.0.0.1:5060".parse().unwrap(),
            transport,
            domain: "pbx.example".into(),
            from_user: "callverify".into(),
            credentials: None,
            register: false,
            options_interval: None,
            srtp: Default::default(),
            responses_from: ResponsesFrom::Address,
        };
        Trunk::new(
            cfg,
            Listener::new(transport, "127.0.0.1:5070".parse().unwrap()),
        )
    }

    #[test]
    fn the_contact_names_the_transport_and_the_address_seen() {
        assert_eq!(
            trunk(Transport::Udp).contact(),
            "<sip:callverify@127.0.0.1:5070>"
        );
        let mut t = trunk(Transport::Tls);
        assert_eq!(t.contact(), "<sip:callverify@127.0.0.1:5070;transport=tls>");
        t.public = Some("203.0.113.7:40000".parse().unwrap());
        assert_eq!(
            t.contact(),
            "<sip:callverify@203.0.113.7:40000;transport=tls>"
        );
        assert_eq!(t.route().remote, "127.0.0.1:5060".parse().unwrap());
        // An advertised address wins over the one seen; the Via names it too, and the
        // requests still leave from the listener.
        t.advertised = Some("198.51.100.7:5061".parse().unwrap());
        assert_eq!(
            t.contact(),
            "<sip:callverify@198.51.100.7:5061;transport=tls>"
        );
        let route = t.route();
        assert_eq!(
            (route.local, route.sent_by),
            (
                "127.0.0.1:5070".parse().unwrap(),
                "198.51.100.7:5061".parse().unwrap()
            )
        );
    }
}
