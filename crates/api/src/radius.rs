//! callverify's RADIUS front end (RFC 2865 over UDP), as Microsoft's NPS extension and
//! Duo's Authentication Proxy are for VPNs and network gear: the NAS sends an
//! Access-Request with the user's password; an upstream RADIUS server checks the password
//! (the first factor); on its Access-Accept the user's phone is called as for any sign-in
//! challenge (same policy, limits and dispatcher); the NAS gets Access-Accept with the
//! upstream's attributes when the call is approved, Access-Reject otherwise.
//!
//! - Only known NAS addresses are heard, and only requests with a valid
//!   Message-Authenticator (BlastRADIUS); everything else is dropped and counted in
//!   `callverify_radius_dropped_total{reason}`. Every answer carries a Message-Authenticator
//!   first.
//! - A NAS's retransmission of a request in progress is not a second call; an answer is
//!   sent again for [`Settings::keep_answers`] ([`radius::Recent`]).
//! - Number matching (`keypad_code`) answers at once with an Access-Challenge that shows the
//!   two digits; the NAS's next request (with its State) gets the call's verdict. A spoken
//!   code is asked for by an Access-Challenge once the call has read it; the next request
//!   carries it as its password.
//!
//! The packets and their signatures are the sans-IO crate `radius`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media::Language;
use radius::sign::{self, Secret, SignError};
use radius::{Admission, Attribute, Code, Packet, Recent, RequestKey, attr};
use store::{ApiKey, ChallengeId, ChallengeState, CodeCheck, Confirmation, PhoneRole, now_ms};
use tokio::net::UdpSocket;
use tracing::{info, warn};

use crate::AppState;
use crate::challenges::{SignInCall, create_sign_in};

/// Why a datagram was dropped unanswered (the values of
/// `callverify_radius_dropped_total{reason}`).
pub const DROP_REASONS: [&str; 8] = [
    "unknown_client",
    "malformed",
    "no_message_authenticator",
    "bad_message_authenticator",
    "not_access_request",
    "replayed",
    "busy",
    "too_long",
];

/// The answers sent (`callverify_radius_requests_total{answer}`).
pub const ANSWERS: [&str; 3] = ["accept", "reject", "challenge"];

/// What the upstream answered (`callverify_radius_upstream_total{answer}`): `invalid` a
/// datagram that did not check, `unreachable` no answer after every try.
pub const UPSTREAM_ANSWERS: [&str; 5] = ["accept", "reject", "challenge", "invalid", "unreachable"];

/// A NAS that may ask: its name (in the call log), its address or network, its secret.
#[derive(Clone, Debug)]
pub struct Client {
    /// Its name.
    pub name: String,
    /// Where its requests come from.
    pub network: ipnet::IpNet,
    /// Its shared secret.
    pub secret: Secret,
}

/// The upstream RADIUS server that checks passwords (`[radius.upstream]`).
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Its address.
    pub address: SocketAddr,
    /// Its shared secret.
    pub secret: Secret,
    /// How long to wait for each try.
    pub timeout: Duration,
    /// How many times to send the request again after a timeout.
    pub retries: u32,
    /// Refuse its answers without a Message-Authenticator (servers without the BlastRADIUS
    /// fixes send none).
    pub require_message_authenticator: bool,
}

/// The front end's settings (`[radius]`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The NAS that may ask.
    pub clients: Vec<Client>,
    /// The first factor; `None`: the NAS checked it (callverify is its second server).
    pub upstream: Option<Upstream>,
    /// The user id a User-Name maps to: `{user}` (the name without its realm), `{realm}`,
    /// `{name}` (as sent).
    pub user_id: String,
    /// Whether `user@realm` and `REALM\user` lose their realm in `{user}`.
    pub strip_realm: bool,
    /// The prompts' language.
    pub language: Language,
    /// Requests one NAS address may have in progress.
    pub max_pending_per_client: usize,
    /// How long an answer is sent again to a retransmission.
    pub keep_answers: Duration,
}

/// Sign-ins waiting for the NAS's next request (an Access-Challenge was sent) at most.
const MAX_SESSIONS: usize = 10_000;

/// Requests in progress and answers kept, at most, of all the NAS together (an answer is at
/// most 4096 octets; most are under 200). Ten times as many authenticators are remembered
/// against replays.
const MAX_RECENT: usize = 16_384;

/// The RADIUS front end, bound.
pub struct Server {
    socket: UdpSocket,
    settings: Settings,
}

impl Server {
    /// Binds `settings.listen`.
    pub async fn bind(settings: Settings) -> std::io::Result<Server> {
        let socket = UdpSocket::bind(settings.listen).await?;
        Ok(Server { socket, settings })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves until the socket fails (a core task: its end makes the gateway unready).
    /// Challenges are made with `key`.
    pub async fn run(self, state: AppState, key: ApiKey) -> std::io::Error {
        let settings = self.settings;
        // A request is handled for the challenge's lifetime and 30 s at most, then its
        // answer kept: its authenticator is refused for longer than that.
        let replay_window =
            state.cfg.challenge_ttl + Duration::from_secs(30) + settings.keep_answers * 2;
        let front = Arc::new(Front {
            recent: Mutex::new(Recent::new(
                settings.keep_answers,
                replay_window,
                settings.max_pending_per_client,
                MAX_RECENT,
            )),
            sessions: Mutex::new(HashMap::new()),
            socket: self.socket,
            settings,
            state,
            key,
        });
        let mut buf = vec![0u8; radius::MAX_LEN + 1];
        loop {
            match front.socket.recv_from(&mut buf).await {
                Ok((n, from)) => front.received(&buf[..n], from),
                // An ICMP error of an earlier send, or a signal: not the socket's end.
                Err(e) if transient(&e) => {}
                Err(e) => return e,
            }
        }
    }
}

fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionReset | Interrupted | WouldBlock
    )
}

fn dropped(reason: &'static str) {
    metrics::counter!("callverify_radius_dropped_total", "reason" => reason).increment(1);
}

/// A sign-in waiting for the NAS's next request, by the State sent.
struct Session {
    challenge: ChallengeId,
    client: String,
    /// The NAS's address: the next request must come from it.
    nas: IpAddr,
    user_name: String,
    /// The upstream's Accept attributes, for the Accept.
    attributes: Vec<Attribute>,
    confirmation: Confirmation,
    until: Instant,
}

struct Front {
    socket: UdpSocket,
    settings: Settings,
    state: AppState,
    key: ApiKey,
    recent: Mutex<Recent>,
    sessions: Mutex<HashMap<[u8; 16], Session>>,
}

/// `m` locked, also after a task panicked holding it (the tables stay consistent: each
/// change is one call).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request being handled: if its task ends without answering (a panic), the table
/// forgets it, so that the NAS's retransmission is heard and its slot is free.
struct Pending {
    front: Arc<Front>,
    key: RequestKey,
    answered: bool,
}

impl Pending {
    /// It was answered (and the table told so).
    fn disarm(&mut self) {
        self.answered = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            lock(&self.front.recent).abandoned(self.key);
        }
    }
}

/// What a request is answered with.
struct Answer {
    code: Code,
    attributes: Vec<Attribute>,
}

impl Answer {
    fn reject(message: &str) -> Answer {
        Answer {
            code: Code::AccessReject,
            attributes: vec![reply_message(message)],
        }
    }

    fn accept(attributes: Vec<Attribute>) -> Answer {
        Answer {
            code: Code::AccessAccept,
            attributes,
        }
    }

    fn challenge(state: [u8; 16], message: &str) -> Answer {
        Answer {
            code: Code::AccessChallenge,
            attributes: vec![reply_message(message), Attribute::new(attr::STATE, state)],
        }
    }
}

fn reply_message(text: &str) -> Attribute {
    // Reply-Message holds 253 octets; ours are shorter, and cut at a character if not.
    let mut end = text.len().min(253);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Attribute::new(attr::REPLY_MESSAGE, &text.as_bytes()[..end])
}

/// 16 octets from the OS generator.
fn random16() -> Option<[u8; 16]> {
    let mut b = [0; 16];
    getrandom::fill(&mut b).ok()?;
    Some(b)
}

impl Front {
    /// The configured client that holds `ip` (the most specific network), with its index.
    fn client(&self, ip: IpAddr) -> Option<(usize, &Client)> {
        self.settings
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.network.contains(&ip))
            .max_by_key(|(_, c)| c.network.prefix_len())
    }

    /// A datagram from `from`: dropped, answered again, or handled in a task of its own.
    fn received(self: &Arc<Front>, datagram: &[u8], from: SocketAddr) {
        if datagram.len() > radius::MAX_LEN {
            return dropped("too_long");
        }
        let ip = canonical(from.ip());
        let Some((index, client)) = self.client(ip) else {
            return dropped("unknown_client");
        };
        let packet = match sign::check_request(datagram, &client.secret) {
            Ok(p) => p,
            Err(SignError::NoMessageAuthenticator) => return dropped("no_message_authenticator"),
            Err(SignError::BadMessageAuthenticator) => {
                return dropped("bad_message_authenticator");
            }
            Err(_) => return dropped("malformed"),
        };
        if packet.code != Code::AccessRequest {
            return dropped("not_access_request");
        }
        let key = RequestKey {
            client: index,
            from,
            identifier: packet.identifier,
            authenticator: packet.authenticator,
        };
        let admitted = lock(&self.recent).admit(Instant::now(), key);
        match admitted {
            Admission::New => {}
            Admission::InProgress => {
                metrics::counter!("callverify_radius_retransmissions_total").increment(1);
                return;
            }
            Admission::Answered(bytes) => {
                metrics::counter!("callverify_radius_retransmissions_total").increment(1);
                let _ = self.socket.try_send_to(&bytes, from);
                return;
            }
            Admission::Replayed => return dropped("replayed"),
            Admission::Full => return dropped("busy"),
        }
        let mut pending = Pending {
            front: self.clone(),
            key,
            answered: false,
        };
        let client = client.clone();
        tokio::spawn(async move {
            let front = pending.front.clone();
            // Every wait inside is bounded by the challenge's expiry; this bounds them all.
            let bound = front.state.cfg.challenge_ttl + Duration::from_secs(30);
            let answer = tokio::time::timeout(bound, front.handle(&client, &packet, from))
                .await
                .unwrap_or_else(|_| Answer::reject("the sign-in took too long"));
            front.answer(&client, &packet, key, answer).await;
            pending.disarm();
        });
    }

    async fn answer(&self, client: &Client, request: &Packet, key: RequestKey, answer: Answer) {
        let name = match answer.code {
            Code::AccessAccept => "accept",
            Code::AccessChallenge => "challenge",
            _ => "reject",
        };
        let bytes = match sign::response(answer.code, request, answer.attributes, &client.secret) {
            Ok(b) => b,
            Err(e) => {
                // The upstream's attributes did not fit: the NAS gets a Reject, not nothing.
                warn!(nas = %client.name, error = %e, "a RADIUS answer does not fit a packet: rejecting");
                match sign::response(
                    Code::AccessReject,
                    request,
                    vec![reply_message("the answer did not fit")],
                    &client.secret,
                ) {
                    Ok(b) => b,
                    Err(_) => {
                        lock(&self.recent).abandoned(key);
                        return;
                    }
                }
            }
        };
        metrics::counter!("callverify_radius_requests_total", "answer" => name).increment(1);
        if let Err(e) = self.socket.send_to(&bytes, key.from).await {
            warn!(nas = %client.name, error = %e, "a RADIUS answer could not be sent");
        }
        lock(&self.recent).answered(Instant::now(), key, bytes);
    }

    async fn handle(&self, client: &Client, request: &Packet, from: SocketAddr) -> Answer {
        let Some(user_name) = request
            .get(attr::USER_NAME)
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|s| !s.chars().any(char::is_control))
        else {
            return Answer::reject("User-Name is missing or not text");
        };
        let password = match request.get(attr::USER_PASSWORD) {
            Some(hidden) => {
                match sign::reveal_password(hidden, &client.secret, &request.authenticator) {
                    Ok(p) => p,
                    Err(_) => return Answer::reject("the User-Password is malformed"),
                }
            }
            None => {
                return Answer::reject(
                    "only PAP (User-Password) is supported: CHAP, MS-CHAP and EAP are not",
                );
            }
        };
        if let Some(state) = request.get(attr::STATE) {
            return self
                .next_step(client, from, user_name, state, &password)
                .await;
        }
        let tag = crate::user_tag(&self.state.cfg.token_secret, user_name);
        let attributes = match &self.settings.upstream {
            Some(up) => match first_factor(up, request, &password).await {
                FirstFactor::Accepted(attrs) => attrs,
                FirstFactor::Rejected(messages) => {
                    info!(nas = %client.name, user = %tag, "the upstream rejected the password: no call");
                    let mut attributes = messages;
                    if attributes.is_empty() {
                        attributes.push(reply_message("the password was not accepted"));
                    }
                    return Answer {
                        code: Code::AccessReject,
                        attributes,
                    };
                }
                FirstFactor::Failed(why) => {
                    warn!(nas = %client.name, user = %tag, why, "the first factor could not be checked: rejecting");
                    return Answer::reject("the password could not be checked now");
                }
            },
            None => Vec::new(),
        };
        let Some(user_id) = user_id(&self.settings, user_name) else {
            return Answer::reject("the user name maps to no user");
        };
        self.call(client, from, user_name, &user_id, attributes)
            .await
    }

    /// The password is right (or the NAS checked it): the user's phone is called.
    async fn call(
        &self,
        client: &Client,
        from: SocketAddr,
        user_name: &str,
        user_id: &str,
        attributes: Vec<Attribute>,
    ) -> Answer {
        let st = &self.state;
        let tag = crate::user_tag(&st.cfg.token_secret, user_id);
        let phone = match st.store.verified_phone(user_id, PhoneRole::Primary).await {
            Ok(Some(p)) => p.phone,
            Ok(None) => {
                info!(nas = %client.name, user = %tag, "a RADIUS sign-in of a user with no verified phone");
                return Answer::reject("no phone is registered for this user");
            }
            Err(e) => {
                warn!(error = %e, "the store cannot be read: rejecting a RADIUS sign-in");
                return Answer::reject("the sign-in cannot be made now");
            }
        };
        let call = SignInCall {
            user_id: user_id.to_string(),
            phone,
            language: self.settings.language,
            enrol: None,
            origin: store::Origin::Radius,
            origin_ref: Some(format!("{} {}", client.name, canonical(from.ip()))),
        };
        let c = match create_sign_in(st, &self.key, call).await {
            Ok(c) => c,
            Err(p) => {
                info!(nas = %client.name, user = %tag, refused = p.kind, "a RADIUS sign-in was refused");
                return Answer::reject(p.title);
            }
        };
        info!(challenge = %c.id, nas = %client.name, user = %tag, "a RADIUS sign-in is calling");
        let until = Instant::now() + remaining(c.expires_at_ms);
        // The sign-in, as it waits for the NAS's next request.
        let waiting = |attributes| Session {
            challenge: c.id.clone(),
            client: client.name.clone(),
            nas: canonical(from.ip()),
            user_name: user_name.to_string(),
            attributes,
            confirmation: c.confirmation,
            until,
        };
        match c.confirmation {
            Confirmation::KeypadCode => {
                let Some(code) = c.display_code.clone() else {
                    return Answer::reject("the sign-in has no code");
                };
                self.ask(
                    waiting(attributes),
                    &format!(
                        "Your phone is ringing: answer it, enter {code} then # on its keypad, \
                         then continue here."
                    ),
                )
            }
            confirmation => {
                let spoken = confirmation == Confirmation::SpokenCode;
                match self.verdict(&c.id, until, spoken).await {
                    Some(ChallengeState::Approved) => Answer::accept(attributes),
                    Some(ChallengeState::CodeSpoken) => self.ask(
                        waiting(attributes),
                        "Type the 6-digit code the call read to you.",
                    ),
                    s => Answer::reject(&refused(s)),
                }
            }
        }
    }

    /// An Access-Challenge with a new State that names `session`.
    fn ask(&self, session: Session, message: &str) -> Answer {
        let Some(state) = random16() else {
            return Answer::reject("the sign-in cannot be made now");
        };
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            let now = Instant::now();
            sessions.retain(|_, s| s.until > now);
        }
        if sessions.len() >= MAX_SESSIONS {
            return Answer::reject("too many sign-ins are waiting: try again later");
        }
        sessions.insert(state, session);
        Answer::challenge(state, message)
    }

    /// The NAS's request after an Access-Challenge: its State names the sign-in.
    async fn next_step(
        &self,
        client: &Client,
        from: SocketAddr,
        user_name: &str,
        state: &[u8],
        password: &[u8],
    ) -> Answer {
        let taken = <[u8; 16]>::try_from(state).ok().and_then(|s| {
            let mut sessions = lock(&self.sessions);
            let found = sessions.get(&s)?;
            // Another NAS (or another address of its network), or another user, naming
            // this State gets nothing of it.
            if found.client != client.name
                || found.nas != canonical(from.ip())
                || found.user_name != user_name
            {
                return None;
            }
            sessions.remove(&s)
        });
        let Some(session) = taken.filter(|s| s.until > Instant::now()) else {
            return Answer::reject("the sign-in is unknown or has expired: start again");
        };
        if session.confirmation == Confirmation::KeypadCode {
            return match self.verdict(&session.challenge, session.until, false).await {
                Some(ChallengeState::Approved) => Answer::accept(session.attributes),
                s => Answer::reject(&refused(s)),
            };
        }
        let code = String::from_utf8_lossy(password);
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return self.ask(session, "Type the 6 digits the call read to you.");
        }
        let st = &self.state;
        let checked = st
            .store
            .check_code(&session.challenge, &st.cfg.token_secret, code, now_ms())
            .await;
        match checked {
            Ok(CodeCheck::Matched(c)) => {
                info!(challenge = %c.id, nas = %client.name, "the spoken code matched: approved");
                Answer::accept(session.attributes)
            }
            Ok(CodeCheck::Wrong { attempts_left }) if attempts_left > 0 => {
                let message = format!("That code is wrong: {attempts_left} attempts are left.");
                self.ask(session, &message)
            }
            Ok(CodeCheck::Wrong { .. } | CodeCheck::Exhausted) => {
                Answer::reject("the code was typed wrong too many times")
            }
            Ok(CodeCheck::NotWaiting(s)) => Answer::reject(&refused(Some(s))),
            Ok(CodeCheck::Unknown) => Answer::reject("the sign-in is unknown"),
            Err(e) => {
                warn!(error = %e, "the store cannot check a RADIUS spoken code");
                Answer::reject("the code cannot be checked now")
            }
        }
    }

    /// Waits (until `until`) for challenge `id` to be decided, or for its code to be read
    /// when `spoken`: its state then, `None` if still undecided.
    async fn verdict(
        &self,
        id: &ChallengeId,
        until: Instant,
        spoken: bool,
    ) -> Option<ChallengeState> {
        let mut rx = self.state.store.subscribe();
        loop {
            match self.state.store.challenge(id).await {
                Ok(Some(c)) if c.state.is_terminal() => return Some(c.state),
                Ok(Some(c)) if spoken && c.state == ChallengeState::CodeSpoken => {
                    return Some(c.state);
                }
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(e) => warn!(error = %e, "a RADIUS sign-in cannot read its challenge"),
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            // Announced by this node's store, or read again each second (other nodes).
            let tick = (now + Duration::from_secs(1)).min(until);
            let _ = tokio::time::timeout_at(tick.into(), rx.recv()).await;
        }
    }
}

/// What the NAS is told of a challenge that was not approved.
fn refused(state: Option<ChallengeState>) -> String {
    match state {
        None => "the sign-in was not confirmed in time".to_string(),
        Some(s) => format!("the sign-in was not approved ({s})"),
    }
}

/// The time left before `expires_at_ms`.
fn remaining(expires_at_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(expires_at_ms - now_ms()).unwrap_or(0))
}

/// An IPv4 address as itself, not as an IPv4-mapped IPv6 one (a dual-stack socket's).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The user id `name` maps to under `[radius] user_id` and `strip_realm`; `None` when it
/// is empty or longer than a user id may be.
pub fn user_id(settings: &Settings, name: &str) -> Option<String> {
    let (user, realm) = if settings.strip_realm {
        if let Some((user, realm)) = name.rsplit_once('@') {
            (user, realm)
        } else if let Some((realm, user)) = name.split_once('\\') {
            (user, realm)
        } else {
            (name, "")
        }
    } else {
        (name, "")
    };
    if user.is_empty() {
        return None;
    }
    let id = settings
        .user_id
        .replace("{user}", user)
        .replace("{realm}", realm)
        .replace("{name}", name);
    (!id.is_empty() && id.len() <= 255).then_some(id)
}

/// What the upstream said of the password.
enum FirstFactor {
    /// Access-Accept: its attributes to pass on when the call is approved.
    Accepted(Vec<Attribute>),
    /// Access-Reject (or an Access-Challenge, which is not relayed): its Reply-Messages.
    Rejected(Vec<Attribute>),
    /// No valid answer.
    Failed(&'static str),
}

/// Tunnel-Password (RFC 2868 §3.5): hidden with the upstream's secret and our request's
/// authenticator.
const TUNNEL_PASSWORD: u8 = 69;

/// Microsoft's vendor id (RFC 2548), whose MS-CHAP-MPPE-Keys (12), MS-MPPE-Send-Key (16)
/// and MS-MPPE-Recv-Key (17) are hidden the same way.
const MICROSOFT: [u8; 4] = [0, 0, 0x01, 0x37];

/// The attributes of the upstream's Accept that are passed on: all but those that belong
/// to the exchange between two servers (signatures, State, Proxy-State, EAP) and those
/// hidden under the upstream's secret, which the NAS could not read (garbage keys).
fn passed_on(a: &Attribute) -> bool {
    let between_servers = [
        attr::MESSAGE_AUTHENTICATOR,
        attr::PROXY_STATE,
        attr::STATE,
        attr::EAP_MESSAGE,
        attr::USER_PASSWORD,
        TUNNEL_PASSWORD,
    ];
    if between_servers.contains(&a.kind) {
        return false;
    }
    let hidden_vsa = a.kind == attr::VENDOR_SPECIFIC
        && a.value.get(..4) == Some(&MICROSOFT[..])
        && matches!(a.value.get(4), Some(12 | 16 | 17));
    !hidden_vsa
}

/// The NAS's request sent on to the upstream: its attributes with the password hidden
/// again under the upstream's secret and a new authenticator, a Message-Authenticator of
/// its own; sent again after each timeout, its answer checked.
async fn first_factor(up: &Upstream, request: &Packet, password: &[u8]) -> FirstFactor {
    let (Some(authenticator), Some([identifier, ..])) = (random16(), random16()) else {
        return FirstFactor::Failed("the OS generator failed");
    };
    let Ok(hidden) = sign::hide_password(password, &up.secret, &authenticator) else {
        return FirstFactor::Failed("the password does not fit a User-Password");
    };
    let mut attributes: Vec<Attribute> = request
        .attributes
        .iter()
        .filter(|a| {
            ![
                attr::USER_PASSWORD,
                attr::MESSAGE_AUTHENTICATOR,
                attr::PROXY_STATE,
            ]
            .contains(&a.kind)
        })
        .cloned()
        .collect();
    attributes.push(Attribute::new(attr::USER_PASSWORD, hidden));
    let Ok(bytes) = sign::request(identifier, authenticator, attributes, &up.secret) else {
        return FirstFactor::Failed("the request does not fit a packet");
    };
    let local: SocketAddr = if up.address.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(socket) = UdpSocket::bind(local).await else {
        return FirstFactor::Failed("no socket for the upstream");
    };
    if socket.connect(up.address).await.is_err() {
        return FirstFactor::Failed("the upstream's address cannot be reached");
    }
    let mut buf = vec![0u8; radius::MAX_LEN];
    for _ in 0..=up.retries {
        if socket.send(&bytes).await.is_err() {
            return FirstFactor::Failed("the request could not be sent to the upstream");
        }
        let deadline = tokio::time::Instant::now() + up.timeout;
        loop {
            let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(n)) => n,
                // Port unreachable: the upstream is not there now; try again after the
                // timeout as for a loss.
                Ok(Err(_)) => {
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
            };
            let checked = sign::check_response(
                &buf[..n],
                identifier,
                &authenticator,
                &up.secret,
                up.require_message_authenticator,
            );
            let answer = match checked {
                Ok(p) => p,
                Err(e) => {
                    // A forged or stray datagram on our port: not the answer; keep waiting.
                    metrics::counter!("callverify_radius_upstream_total", "answer" => "invalid")
                        .increment(1);
                    warn!(error = %e, "an invalid answer from the upstream RADIUS server was ignored");
                    continue;
                }
            };
            return match answer.code {
                Code::AccessAccept => {
                    metrics::counter!("callverify_radius_upstream_total", "answer" => "accept")
                        .increment(1);
                    FirstFactor::Accepted(answer.attributes.into_iter().filter(passed_on).collect())
                }
                code => {
                    let name = if code == Code::AccessChallenge {
                        "challenge"
                    } else {
                        "reject"
                    };
                    metrics::counter!("callverify_radius_upstream_total", "answer" => name)
                        .increment(1);
                    FirstFactor::Rejected(
                        answer
                            .attributes
                            .into_iter()
                            .filter(|a| a.kind == attr::REPLY_MESSAGE)
                            .collect(),
                    )
                }
            };
        }
    }
    metrics::counter!("callverify_radius_upstream_total", "answer" => "unreachable").increment(1);
    FirstFactor::Failed("the upstream did not answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(template: &str, strip: bool) -> Settings {
        Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            clients: Vec::new(),
            upstream: None,
            user_id: template.into(),
            strip_realm: strip,
            language: Language::En,
            max_pending_per_client: 10,
            keep_answers: Duration::from_secs(30),
        }
    }

    #[test]
    fn user_names_map_to_user_ids_with_and_without_their_realm() {
        let s = settings("{user}", true);
        assert_eq!(user_id(&s, "alice@example.com").as_deref(), Some("alice"));
        assert_eq!(user_id(&s, "EXAMPLE\\alice").as_deref(), Some("alice"));
        assert_eq!(user_id(&s, "a@b@example.com").as_deref(), Some("a@b"));
        assert_eq!(user_id(&s, "alice").as_deref(), Some("alice"));
        assert_eq!(user_id(&s, "@example.com"), None);
        assert_eq!(user_id(&s, ""), None);
        let s = settings("entra:{realm}:{user}", true);
        assert_eq!(user_id(&s, "bob@corp").as_deref(), Some("entra:corp:bob"));
        let s = settings("{name}", false);
        assert_eq!(user_id(&s, "bob@corp").as_deref(), Some("bob@corp"));
        let s = settings("{user}", false);
        assert_eq!(user_id(&s, "bob@corp").as_deref(), Some("bob@corp"));
        assert_eq!(user_id(&s, &"x".repeat(256)), None);
    }

    #[test]
    fn the_upstreams_signatures_state_and_hidden_values_are_not_passed_on() {
        let cisco = Attribute::new(attr::VENDOR_SPECIFIC, *b"\0\0\0\x09\x01\x05ab=c");
        let ms_class = Attribute::new(attr::VENDOR_SPECIFIC, *b"\0\0\x017\x19\x04ab");
        for a in [
            Attribute::new(attr::CLASS, "staff"),
            Attribute::new(attr::FRAMED_IP_ADDRESS, [10, 8, 0, 7]),
            Attribute::new(attr::SESSION_TIMEOUT, [0, 0, 14, 16]),
            Attribute::new(attr::REPLY_MESSAGE, "hello"),
            cisco,
            ms_class,
        ] {
            assert!(passed_on(&a), "{a:?}");
        }
        for kind in [
            attr::MESSAGE_AUTHENTICATOR,
            attr::PROXY_STATE,
            attr::STATE,
            attr::EAP_MESSAGE,
            TUNNEL_PASSWORD,
        ] {
            assert!(!passed_on(&Attribute::new(kind, [0; 18])), "{kind}");
        }
        for vendor_type in [12u8, 16, 17] {
            let mut v = MICROSOFT.to_vec();
            v.extend([vendor_type, 20]);
            v.extend([7; 18]);
            let a = Attribute::new(attr::VENDOR_SPECIFIC, v);
            assert!(!passed_on(&a), "MS vendor type {vendor_type}");
        }
    }

    #[test]
    fn a_long_reply_message_is_cut_at_a_character() {
        let a = reply_message(&"あ".repeat(100));
        assert_eq!(a.value.len(), 252);
        assert!(std::str::from_utf8(&a.value).is_ok());
    }
}
