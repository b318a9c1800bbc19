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
        writer: mpsc::UnboundedSender<Vec<u8>>,
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
        let (net_tx, net_rx) = mpsc::unbounded_channel();
        // SIP is heard only from the trunks' addresses: a gateway that only places calls has
        // nobody else to listen to, and a flood from elsewhere is dropped as it is read.
        let allowed = Allowed {
            trunks: Arc::new(
                trunks
                    .iter()
                    .map(|t| t.address.ip().to_canonical())
                    .collect(),
            ),
            requests_waiting: Arc::default(),
            responses_waiting: Arc::default(),
        };
        let (backlog, resp_backlog) = (
            allowed.requests_waiting.clone(),
            allowed.responses_waiting.clone(),
        );
        let (resp_tx, resp_rx) = mpsc::unbounded_channel();
        let mut udp = HashMap::new();
        let mut readers = Vec::new();
        for l in &mut cfg.listen {
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
                        (net_tx.clone(), resp_tx.clone()),
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
                        net_tx.clone(),
                        allowed.clone(),
                    )));
                }
            }
        }
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
            net_tx,
            ev_tx,
            backlog,
            resp_backlog,
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

struct Driver {
    ua: UserAgent,
    udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    conns: HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>,
    tls: HashMap<SocketAddr, TlsTrunk>,
    calls: HashMap<CallHandle, mpsc::UnboundedSender<CallEvent>>,
    net_tx: mpsc::UnboundedSender<Net>,
    ev_tx: mpsc::UnboundedSender<Event>,
    /// UDP requests read and not yet handled.
    backlog: Arc<std::sync::atomic::AtomicUsize>,
    /// UDP responses read and not yet handled.
    resp_backlog: Arc<std::sync::atomic::AtomicUsize>,
}

impl Driver {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::UnboundedReceiver<Command>,
        mut net_rx: mpsc::UnboundedReceiver<Net>,
        mut resp_rx: mpsc::UnboundedReceiver<Net>,
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
                Some(net) = resp_rx.recv() => {
                    self.resp_backlog.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    self.on_net(net);
                }
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
                Some(net) = net_rx.recv() => {
                    if matches!(net, Net::Message { transport: Transport::Udp, .. }) {
                        self.backlog.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    self.on_net(net);
                }
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
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(connect(t.local, t.remote, tls, rx, self.net_tx.clone()));
                    self.conns.insert(t.remote, tx);
                }
                let writer = &self.conns[&t.remote];
                if writer.send(t.bytes).is_err() {
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

/// What the readers let through to the user agent.
#[derive(Clone)]
struct Allowed {
    /// The IP addresses SIP is accepted from (the trunks').
    trunks: Arc<std::collections::HashSet<std::net::IpAddr>>,
    /// UDP requests read and waiting for the user agent.
    requests_waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// UDP responses read and waiting (kept apart and handled first, so that a flood of
    /// requests cannot keep the answers to this gateway's own calls waiting).
    responses_waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// Datagrams waiting for the user agent beyond this are dropped (as a full socket buffer
/// would): a flood cannot grow the queue without bound; retransmissions recover what
/// mattered.
const BACKLOG_MAX: usize = 4096;

impl Allowed {
    fn admits(&self, from: SocketAddr) -> bool {
        let ok = self.trunks.contains(&from.ip().to_canonical());
        if !ok {
            metrics::counter!("callverify_sip_dropped_total", "reason" => "source").increment(1);
        }
        ok
    }
}

async fn udp_reader(
    sock: Arc<UdpSocket>,
    local: SocketAddr,
    (requests, responses): (mpsc::UnboundedSender<Net>, mpsc::UnboundedSender<Net>),
    allowed: Allowed,
) {
    use std::sync::atomic::Ordering;
    let mut buf = vec![0u8; 65_536];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((_, from)) if !allowed.admits(from) => {}
            Ok((n, from)) => {
                let response = buf[..n].starts_with(b"SIP/2.0 ");
                let (tx, waiting) = if response {
                    (&responses, &allowed.responses_waiting)
                } else {
                    (&requests, &allowed.requests_waiting)
                };
                if waiting.load(Ordering::Relaxed) >= BACKLOG_MAX {
                    metrics::counter!("callverify_sip_dropped_total", "reason" => "backlog")
                        .increment(1);
                    continue;
                }
                waiting.fetch_add(1, Ordering::Relaxed);
                let msg = Net::Message {
                    transport: Transport::Udp,
                    local,
                    from,
                    bytes: buf[..n].to_vec(),
                };
                if tx.send(msg).is_err() {
                    return;
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
    tx: mpsc::UnboundedSender<Net>,
    allowed: Allowed,
) {
    loop {
        match lis.accept().await {
            // Closed at once.
            Ok((_, remote)) if !allowed.admits(remote) => {}
            Ok((stream, remote)) => {
                let tx = tx.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let (wtx, wrx) = mpsc::unbounded_channel();
                    if tx
                        .send(Net::Accepted {
                            remote,
                            writer: wtx,
                        })
                        .is_err()
                    {
                        return;
                    }
                    let Some(tls) = tls else {
                        return connection(stream, Transport::Tcp, local, remote, wrx, tx).await;
                    };
                    match tokio::time::timeout(CONNECT_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(s)) => connection(s, Transport::Tls, local, remote, wrx, tx).await,
                        Ok(Err(e)) => {
                            debug!(%remote, error = %e, "SIP over TLS: handshake failed");
                            let _ = tx.send(Net::Closed { remote });
                        }
                        Err(_) => {
                            debug!(%remote, "SIP over TLS: handshake timed out");
                            let _ = tx.send(Net::Closed { remote });
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
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    tx: mpsc::UnboundedSender<Net>,
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
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(stream)) => stream,
        _ => {
            let _ = tx.send(Net::Unreachable { transport, remote });
            return;
        }
    };
    let Some(tls) = tls else {
        return connection(stream, transport, local, remote, rx, tx).await;
    };
    let handshake = TlsConnector::from(tls.config).connect(tls.server_name, stream);
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => connection(stream, transport, local, remote, rx, tx).await,
        Ok(Err(e)) => {
            // A certificate that does not check out lands here: nothing was sent.
            warn!(%remote, error = %e, "SIP over TLS: handshake failed");
            metrics::counter!("callverify_sip_tls_failures_total").increment(1);
            let _ = tx.send(Net::Unreachable { transport, remote });
        }
        Err(_) => {
            warn!(%remote, "SIP over TLS: handshake timed out");
            let _ = tx.send(Net::Unreachable { transport, remote });
        }
    }
}

/// Reads framed messages from a TCP or TLS connection and writes what the driver queues
/// for it.
async fn connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    transport: Transport,
    local: SocketAddr,
    remote: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    tx: mpsc::UnboundedSender<Net>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
    });
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_message() {
                Ok(Some(bytes)) => {
                    let msg = Net::Message {
                        transport,
                        local,
                        from: remote,
                        bytes,
                    };
                    if tx.send(msg).is_err() {
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
    let _ = tx.send(Net::Closed { remote });
}
