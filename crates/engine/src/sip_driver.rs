//! The tokio driver of the SIP user agent: it binds the listeners, moves bytes between
//! sockets and [`sip::UserAgent`], sleeps until the user agent's next timer, and hands
//! each call's events to whoever placed the call. All SIP logic stays in the `sip` crate.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip::message::Framer;
use sip::sdp::Offer;
use sip::{
    CallEvent, CallHandle, Event, InviteError, Listener, Output, Transport, TrunkConfig, UaConfig,
    UaError, UserAgent,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tls::{TlsSettings, TlsTrunk};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// How long a TCP connect to a trunk (and its TLS handshake) may take before the trunk
/// counts as unreachable; also the bound on a TLS handshake with a peer that connected.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP or TLS connection on which nothing arrives for this long is closed (a trunk that
/// keeps one open sends keep-alives, RFC 5626 §3.5.1, or reconnects).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Messages read and waiting for the user agent, per queue (requests, responses). A full
/// queue drops datagrams (as a full socket buffer would: retransmissions recover what
/// mattered) and stops reading streams until there is room (TCP then slows the peer).
const BACKLOG_MAX: usize = 4096;

/// Messages waiting to be written on one connection: a peer that does not read loses the
/// connection rather than growing the queue.
const WRITE_QUEUE: usize = 256;

/// Datagrams larger than this are dropped as they are read (RFC 3261 §18.1.1: a message near
/// the path MTU goes over a stream), so a full queue holds at most 64 MiB.
const UDP_MAX: usize = 16 * 1024;

/// Connections peers may have open to the listeners, in all and from one address.
const MAX_ACCEPTED: usize = 256;
const MAX_ACCEPTED_PER_IP: usize = 16;

/// Why the endpoint did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {transport}:{addr}: {source}")]
    Bind {
        /// Its transport.
        transport: Transport,
        /// Its address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The configuration does not make a user agent.
    #[error(transparent)]
    Config(#[from] UaError),
    /// A TLS listener has no certificate, or a TLS trunk no settings to check it with.
    #[error("{0}")]
    Tls(String),
}

/// The endpoint stopped; no call can be placed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The target is not dialable.
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// The endpoint task is gone.
    #[error("the SIP endpoint has stopped")]
    Stopped,
}

enum Command {
    Invite {
        target: String,
        offer: Offer,
        reply:
            oneshot::Sender<Result<(CallHandle, mpsc::UnboundedReceiver<CallEvent>), InviteError>>,
    },
    Hangup(CallHandle),
    Shutdown,
}

enum Net {
    Message {
        transport: Transport,
        local: SocketAddr,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Accepted {
        remote: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
    },
    Closed {
        remote: SocketAddr,
    },
    Unreachable {
        transport: Transport,
        remote: SocketAddr,
    },
}

/// A running SIP endpoint: sockets plus the user agent task.
pub struct SipEndpoint {
    cmd: mpsc::UnboundedSender<Command>,
    listeners: Vec<Listener>,
    task: Option<JoinHandle<()>>,
}

/// A call placed through a [`SipEndpoint`].
pub struct Call {
    /// The user agent's handle.
    pub handle: CallHandle,
    events: mpsc::UnboundedReceiver<CallEvent>,
    cmd: mpsc::UnboundedSender<Command>,
}

impl Call {
    /// The next event; `None` after `Ended` or when the endpoint stopped.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.recv().await
    }

    /// Hangs up (CANCEL or BYE); an `Ended` event follows.
    pub fn hangup(&self) {
        let _ = self.cmd.send(Command::Hangup(self.handle));
    }
}

impl SipEndpoint {
    /// Binds the listeners (port 0 picks a free port), starts the user agent and its
    /// registrations and keep-alives. Trunk and registration events go to the returned
    /// receiver (it may be dropped). For UDP and TCP only: see [`SipEndpoint::start_tls`].
    pub async fn start(
        cfg: UaConfig,
        trunks: Vec<TrunkConfig>,
    ) -> Result<(SipEndpoint, mpsc::UnboundedReceiver<Event>), StartError> {
        SipEndpoint::start_tls(cfg, trunks, TlsSettings::default()).await
    }

    /// As [`SipEndpoint::start`], with TLS: each TLS listener presents `tls.server`, and each
    /// TLS trunk's certificate is checked as `tls.trunks` says before anything is sent to it.
    pub async fn start_tls(
        mut cfg: UaConfig,
        trunks: Vec<TrunkConfig>,
        tls: TlsSettings,
    ) -> Result<(SipEndpoint, mpsc::UnboundedReceiver<Event>), StartError> {
        if let Some(t) = trunks
            .iter()
            .find(|t| t.transport == Transport::Tls && !tls.trunks.contains_key(&t.address))
        {
            return Err(StartError::Tls(format!(
                "trunk {:?} uses TLS but has no certificate check settings",
                t.name
            )));
        }
        // Requests (and the connections' news) and responses wait apart, responses handled
        // first: they finish this gateway's own transactions.
        let (net_tx, net_rx) = mpsc::channel(BACKLOG_MAX);
        let (resp_tx, resp_rx) = mpsc::channel(BACKLOG_MAX);
        let queues = Queues {
            requests: net_tx.clone(),
            responses: resp_tx,
        };
        // SIP is heard only from the trunks' addresses: a gateway that only places calls has
        // nobody else to listen to, and a flood from elsewhere is dropped as it is read.
        let allowed = Allowed {
            trunks: Arc::new(
                trunks
                    .iter()
                    .map(|t| t.address.ip().to_canonical())
                    .collect(),
            ),
            accepted: Arc::default(),
        };
        let (udp, readers) = bind_listeners(&mut cfg.listen, &tls, &queues, &allowed).await?;
        let listeners = cfg.listen.clone();
        let ua = UserAgent::new(cfg, trunks)?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            ua,
            udp,
            conns: HashMap::new(),
            tls: tls.trunks,
            calls: HashMap::new(),
            queues,
            ev_tx,
        };
        let task = tokio::spawn(async move {
            driver.run(cmd_rx, net_rx, resp_rx).await;
            for r in readers {
                r.abort();
            }
        });
        Ok((
            SipEndpoint {
                cmd: cmd_tx,
                listeners,
                task: Some(task),
            },
            ev_rx,
        ))
    }

    /// Whether the user agent's task still runs (it ends only at [`SipEndpoint::shutdown`],
    /// or by a bug: then no call can be placed, and the gateway must stop).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The addresses actually bound (ports filled in).
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// The bound address of the first listener of this transport and address family.
    pub fn local_addr(&self, transport: Transport, ipv6: bool) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.transport == transport && l.addr.is_ipv6() == ipv6)
            .map(|l| l.addr)
    }

    /// Calls `target` (the number, as the user part) offering `offer`.
    pub async fn call(&self, target: &str, offer: Offer) -> Result<Call, CallError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Invite {
                target: target.to_string(),
                offer,
                reply,
            })
            .map_err(|_| CallError::Stopped)?;
        let (handle, events) = rx.await.map_err(|_| CallError::Stopped)??;
        Ok(Call {
            handle,
            events,
            cmd: self.cmd.clone(),
        })
    }

    /// Stops the endpoint: sockets close, calls in progress get no more events.
    pub async fn shutdown(mut self) {
        let _ = self.cmd.send(Command::Shutdown);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SipEndpoint {
    fn drop(&mut self) {
        let _ = self.cmd.send(Command::Shutdown);
    }
}

/// Binds each listener (a port 0 becomes the one bound, written back into `listen`) and
/// starts its reader: the UDP sockets by their address, and the readers' tasks.
async fn bind_listeners(
    listen: &mut [Listener],
    tls: &TlsSettings,
    queues: &Queues,
    allowed: &Allowed,
) -> Result<(HashMap<SocketAddr, Arc<UdpSocket>>, Vec<JoinHandle<()>>), StartError> {
    let mut udp = HashMap::new();
    let mut readers = Vec::new();
    for l in listen {
        let bind_err = |source| StartError::Bind {
            transport: l.transport,
            addr: l.addr,
            source,
        };
        match l.transport {
            Transport::Udp => {
                let sock = Arc::new(UdpSocket::bind(l.addr).await.map_err(bind_err)?);
                l.addr = sock.local_addr().map_err(bind_err)?;
                udp.insert(l.addr, sock.clone());
                readers.push(tokio::spawn(udp_reader(
                    sock,
                    l.addr,
                    queues.clone(),
                    allowed.clone(),
                )));
            }
            Transport::Tcp | Transport::Tls => {
                let tls_acceptor = match (l.transport, &tls.server) {
                    (Transport::Tls, Some(server)) => Some(TlsAcceptor::from(server.clone())),
                    (Transport::Tls, None) => {
                        return Err(StartError::Tls(format!(
                            "listener tls:{} has no certificate",
                            l.addr
                        )));
                    }
                    _ => None,
                };
                let lis = TcpListener::bind(l.addr).await.map_err(bind_err)?;
                l.addr = lis.local_addr().map_err(bind_err)?;
                readers.push(tokio::spawn(stream_acceptor(
                    lis,
                    (l.addr, tls_acceptor),
                    queues.clone(),
                    allowed.clone(),
                )));
            }
        }
    }
    Ok((udp, readers))
}

struct Driver {
    ua: UserAgent,
    udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    tls: HashMap<SocketAddr, TlsTrunk>,
    calls: HashMap<CallHandle, mpsc::UnboundedSender<CallEvent>>,
    /// For the connections the driver opens.
    queues: Queues,
    ev_tx: mpsc::UnboundedSender<Event>,
}

impl Driver {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::UnboundedReceiver<Command>,
        mut net_rx: mpsc::Receiver<Net>,
        mut resp_rx: mpsc::Receiver<Net>,
    ) {
        self.ua.start(Instant::now());
        loop {
            self.flush().await;
            let deadline = self.ua.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Responses first: they finish this gateway's own transactions.
                biased;
                Some(net) = resp_rx.recv() => self.on_net(net),
                cmd = cmd_rx.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(Command::Invite { target, offer, reply }) => {
                        store::fault::point("sip");
                        let r = self.ua.invite(Instant::now(), &target, offer).map(|h| {
                            let (tx, rx) = mpsc::unbounded_channel();
                            self.calls.insert(h, tx);
                            (h, rx)
                        });
                        let _ = reply.send(r);
                    }
                    Some(Command::Hangup(h)) => self.ua.hangup(Instant::now(), h),
                },
                Some(net) = net_rx.recv() => self.on_net(net),
                () = sleep => self.ua.handle_timeout(Instant::now()),
            }
        }
    }

    fn on_net(&mut self, net: Net) {
        let now = Instant::now();
        match net {
            Net::Message {
                transport,
                local,
                from,
                bytes,
            } => self.ua.handle_receive(now, transport, local, from, &bytes),
            Net::Accepted { remote, writer } => {
                self.conns.insert(remote, writer);
            }
            Net::Closed { remote } => {
                self.conns.remove(&remote);
            }
            Net::Unreachable { transport, remote } => {
                self.conns.remove(&remote);
                warn!(%remote, %transport, "SIP: cannot connect");
                self.ua.handle_transport_error(now, transport, remote);
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(out) = self.ua.poll_output() {
            match out {
                Output::Transmit(t) => self.send(t).await,
                Output::Event(e) => self.dispatch(e),
            }
        }
    }

    async fn send(&mut self, t: sip::Transmit) {
        match t.transport {
            Transport::Udp => {
                let Some(sock) = self.udp.get(&t.local) else {
                    warn!(local = %t.local, "no UDP socket for a transmit");
                    return;
                };
                if let Err(e) = sock.send_to(&t.bytes, t.remote).await {
                    debug!(remote = %t.remote, error = %e, "SIP over UDP: send failed");
                }
            }
            Transport::Tcp | Transport::Tls => {
                // Over the connection to or from `remote` when there is one (a response to a
                // request that came over a connection the peer opened goes back over it);
                // otherwise a new one, checked as the trunk's TLS settings say.
                if !self.conns.contains_key(&t.remote) {
                    let tls = match t.transport {
                        Transport::Tls => match self.tls.get(&t.remote) {
                            Some(tls) => Some(tls.clone()),
                            None => {
                                warn!(remote = %t.remote, "SIP over TLS: no connection and no certificate check settings");
                                return;
                            }
                        },
                        _ => None,
                    };
                    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
                    tokio::spawn(connect(t.local, t.remote, tls, rx, self.queues.clone()));
                    self.conns.insert(t.remote, tx);
                }
                let Some(writer) = self.conns.get(&t.remote) else {
                    return;
                };
                if let Err(e) = writer.try_send(t.bytes) {
                    // Full: the peer does not read what it is sent; dropping the queue ends
                    // the connection.
                    if matches!(e, mpsc::error::TrySendError::Full(_)) {
                        warn!(remote = %t.remote, "SIP over a stream: the peer reads nothing; closing");
                    }
                    self.conns.remove(&t.remote);
                }
            }
        }
    }

    fn dispatch(&mut self, e: Event) {
        match e {
            Event::Call(h, ev) => {
                info!(call = %h, event = ?ev, "call");
                let ended = matches!(ev, CallEvent::Ended(_));
                if let Some(tx) = self.calls.get(&h) {
                    let _ = tx.send(ev);
                }
                if ended {
                    self.calls.remove(&h);
                }
            }
            Event::Discarded { from, reason } => {
                debug!(%from, %reason, "SIP message discarded");
            }
            other => {
                info!(event = ?other, "trunk");
                let _ = self.ev_tx.send(other);
            }
        }
    }
}

/// The queues the readers hand what they read to.
#[derive(Clone)]
struct Queues {
    /// Requests, and the connections' news.
    requests: mpsc::Sender<Net>,
    /// Responses, handled first (so that a flood of requests cannot keep the answers to
    /// this gateway's own calls waiting).
    responses: mpsc::Sender<Net>,
}

impl Queues {
    fn for_message(&self, bytes: &[u8]) -> &mpsc::Sender<Net> {
        if bytes.starts_with(b"SIP/2.0 ") {
            &self.responses
        } else {
            &self.requests
        }
    }
}

/// What the readers let through to the user agent.
#[derive(Clone)]
struct Allowed {
    /// The IP addresses SIP is accepted from (the trunks').
    trunks: Arc<std::collections::HashSet<std::net::IpAddr>>,
    /// Connections open that peers opened, by their address.
    accepted: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
}

/// The `reason` labels of `callverify_sip_dropped_total`: a source that is no trunk's, a
/// peer over its cap of connections, a datagram too large, the parser's queue full.
pub const DROP_REASONS: [&str; 4] = ["source", "connections", "too_large", "backlog"];

fn dropped(reason: &'static str) {
    debug_assert!(DROP_REASONS.contains(&reason));
    metrics::counter!("callverify_sip_dropped_total", "reason" => reason).increment(1);
}

impl Allowed {
    fn admits(&self, from: SocketAddr) -> bool {
        let ok = self.trunks.contains(&from.ip().to_canonical());
        if !ok {
            dropped("source");
        }
        ok
    }

    /// Counts a connection a peer opened, unless there are too many already.
    fn accept(&self, from: SocketAddr) -> Option<AcceptedConn> {
        let ip = from.ip().to_canonical();
        let mut open = self
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: usize = open.values().sum();
        let here = open.get(&ip).copied().unwrap_or(0);
        if total >= MAX_ACCEPTED || here >= MAX_ACCEPTED_PER_IP {
            dropped("connections");
            return None;
        }
        *open.entry(ip).or_default() += 1;
        Some(AcceptedConn(self.accepted.clone(), ip))
    }
}

/// A connection a peer opened, counted until it ends.
struct AcceptedConn(
    Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
    std::net::IpAddr,
);

impl Drop for AcceptedConn {
    fn drop(&mut self) {
        let mut open = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

async fn udp_reader(sock: Arc<UdpSocket>, local: SocketAddr, queues: Queues, allowed: Allowed) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((_, from)) if !allowed.admits(from) => {}
            Ok((n, _)) if n > UDP_MAX => dropped("too_large"),
            Ok((n, from)) => {
                let msg = Net::Message {
                    transport: Transport::Udp,
                    local,
                    from,
                    bytes: buf[..n].to_vec(),
                };
                match queues.for_message(&buf[..n]).try_send(msg) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => dropped("backlog"),
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            // ICMP errors surface here on some systems; the socket stays usable.
            Err(e) => debug!(%local, error = %e, "SIP over UDP: receive error"),
        }
    }
}

async fn stream_acceptor(
    lis: TcpListener,
    (local, tls): (SocketAddr, Option<TlsAcceptor>),
    queues: Queues,
    allowed: Allowed,
) {
    loop {
        match lis.accept().await {
            // Closed at once.
            Ok((_, remote)) if !allowed.admits(remote) => {}
            Ok((stream, remote)) => {
                let Some(counted) = allowed.accept(remote) else {
                    continue;
                };
                let queues = queues.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _counted = counted;
                    let (wtx, wrx) = mpsc::channel(WRITE_QUEUE);
                    let accepted = Net::Accepted {
                        remote,
                        writer: wtx,
                    };
                    if queues.requests.send(accepted).await.is_err() {
                        return;
                    }
                    let Some(tls) = tls else {
                        return connection(stream, Transport::Tcp, local, remote, wrx, queues)
                            .await;
                    };
                    match tokio::time::timeout(CONNECT_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(s)) => {
                            connection(s, Transport::Tls, local, remote, wrx, queues).await;
                        }
                        Ok(Err(e)) => {
                            debug!(%remote, error = %e, "SIP over TLS: handshake failed");
                            let _ = queues.requests.send(Net::Closed { remote }).await;
                        }
                        Err(_) => {
                            debug!(%remote, "SIP over TLS: handshake timed out");
                            let _ = queues.requests.send(Net::Closed { remote }).await;
                        }
                    }
                });
            }
            Err(e) => {
                warn!(%local, error = %e, "SIP over TCP: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Opens a connection to a trunk (TLS when `tls` says how to check it) and runs it.
async fn connect(
    local: SocketAddr,
    remote: SocketAddr,
    tls: Option<TlsTrunk>,
    rx: mpsc::Receiver<Vec<u8>>,
    queues: Queues,
) {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let connect = async {
        let sock = if remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        sock.bind(SocketAddr::new(local.ip(), 0))?;
        sock.connect(remote).await
    };
    let unreachable = Net::Unreachable { transport, remote };
    let Ok(Ok(stream)) = tokio::time::timeout(CONNECT_TIMEOUT, connect).await else {
        let _ = queues.requests.send(unreachable).await;
        return;
    };
    let Some(tls) = tls else {
        return connection(stream, transport, local, remote, rx, queues).await;
    };
    let handshake = TlsConnector::from(tls.config).connect(tls.server_name, stream);
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => connection(stream, transport, local, remote, rx, queues).await,
        Ok(Err(e)) => {
            // A certificate that does not check out lands here: nothing was sent.
            warn!(%remote, error = %e, "SIP over TLS: handshake failed");
            metrics::counter!("callverify_sip_tls_failures_total").increment(1);
            let _ = queues.requests.send(unreachable).await;
        }
        Err(_) => {
            warn!(%remote, "SIP over TLS: handshake timed out");
            let _ = queues.requests.send(unreachable).await;
        }
    }
}

/// Reads framed messages from a TCP or TLS connection and writes what the driver queues
/// for it. It ends when the peer closes, sends what cannot be framed, sends nothing for
/// [`IDLE_TIMEOUT`], or when the driver drops its write queue.
async fn connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    transport: Transport,
    local: SocketAddr,
    remote: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    queues: Queues,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
    });
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = tokio::select! {
            r = tokio::time::timeout(IDLE_TIMEOUT, rd.read(&mut buf)) => match r {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => {
                    debug!(%remote, "SIP over a stream: idle, closing");
                    break;
                }
            },
            _ = &mut writer => break,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_message() {
                Ok(Some(bytes)) => {
                    let queue = queues.for_message(&bytes).clone();
                    let msg = Net::Message {
                        transport,
                        local,
                        from: remote,
                        bytes,
                    };
                    // Waits while the queue is full: the peer's sending is slowed.
                    if queue.send(msg).await.is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    debug!(%remote, error = %e, "SIP over a stream: closing an unframeable stream");
                    break 'read;
                }
            }
        }
    }
    writer.abort();
    let _ = queues.requests.send(Net::Closed { remote }).await;
}
