//! Ports and links on loopback: free ports for the peers and for callverify's media, a relay
//! that loses the datagrams a test chooses, and a seeded lossy link.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

use sip::Transport;

/// The ports handed out: below the kernel's ephemeral range (32768 and up on Linux), so that
/// between a test choosing a port and its server binding it, no connection another test
/// opens (each takes an ephemeral port for its own end) and no peer that binds port 0 can
/// take it.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A random port of [`PORTS`] (the standard library's randomly keyed hasher, fed the time).
fn random_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    PORTS.start + (h.finish() % u64::from(PORTS.end - PORTS.start)) as u16
}

/// A port free on `ip` for both UDP and TCP right now.
pub fn free_port(ip: IpAddr) -> u16 {
    for _ in 0..1000 {
        let port = random_port();
        let free = UdpSocket::bind((ip, port)).is_ok() && TcpListener::bind((ip, port)).is_ok();
        if free && handed_out(port) {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

/// Notes `port` as handed out by this process: false if it was already. The kernel may give
/// a port that was handed out and not yet bound back to the next caller; a test that asks for
/// two would then get the same one twice.
fn handed_out(port: u16) -> bool {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(port)
}

/// A free even UDP port whose next three ports are free as well: sipp binds its audio RTP
/// and RTCP on the media port and the one after it, and its video pair on the two after those.
pub fn free_media_ports(ip: IpAddr) -> u16 {
    for _ in 0..1000 {
        let base = random_port() & !1;
        if (base..base + 4).all(|p| UdpSocket::bind((ip, p)).is_ok())
            && (base..base + 4).all(handed_out)
        {
            return base;
        }
    }
    panic!("no four free UDP ports in a row on {ip}");
}

/// Whether something listens on `addr` for `transport` (binding it fails).
pub(crate) fn in_use(transport: Transport, addr: SocketAddr) -> bool {
    match transport {
        Transport::Udp => UdpSocket::bind(addr).is_err(),
        Transport::Tcp | Transport::Tls => TcpListener::bind(addr).is_err(),
    }
}

/// An even port on `ip` whose pair (port + 1) is free too, for RTP and RTCP.
pub fn free_rtp_pair(ip: IpAddr) -> u16 {
    for _ in 0..1000 {
        let port = random_port() & !1;
        if UdpSocket::bind((ip, port)).is_ok()
            && UdpSocket::bind((ip, port + 1)).is_ok()
            && handed_out(port)
            && handed_out(port + 1)
        {
            return port;
        }
    }
    panic!("no free RTP port pair on {ip}");
}

/// A UDP relay on loopback standing for a lossy network between callverify and a peer:
/// datagrams from the first sender go to `peer`, the peer's go back to that sender, and
/// `drop(n, bytes)` decides (for the n-th datagram towards the peer) what is lost.
pub struct Relay {
    /// Where callverify sends (use it as the trunk address).
    pub addr: SocketAddr,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying to `peer`.
    pub async fn start(
        peer: SocketAddr,
        drop: impl Fn(usize, &[u8]) -> bool + Send + 'static,
    ) -> Relay {
        use std::sync::atomic::Ordering;
        let front = tokio::net::UdpSocket::bind((peer.ip(), 0))
            .await
            .expect("bind the relay");
        let back = tokio::net::UdpSocket::bind((peer.ip(), 0))
            .await
            .expect("bind the relay");
        let addr = front.local_addr().expect("relay address");
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (d, f) = (dropped.clone(), forwarded.clone());
        let task = tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            let mut n = 0;
            loop {
                tokio::select! {
                    Ok((len, from)) = front.recv_from(&mut a) => {
                        client = Some(from);
                        n += 1;
                        if drop(n, &a[..len]) {
                            d.fetch_add(1, Ordering::Relaxed);
                        } else {
                            f.fetch_add(1, Ordering::Relaxed);
                            let _ = back.send_to(&a[..len], peer).await;
                        }
                    }
                    Ok((len, _)) = back.recv_from(&mut b) => {
                        if let Some(c) = client {
                            let _ = front.send_to(&b[..len], c).await;
                        }
                    }
                }
            }
        });
        Relay {
            addr,
            dropped,
            forwarded,
            task,
        }
    }

    /// Datagrams lost and passed so far, towards the peer.
    pub fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        (
            self.dropped.load(Ordering::Relaxed),
            self.forwarded.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A lossy UDP link on loopback between callverify and a peer: each datagram, either way,
/// is lost with probability `loss` (a seeded generator, so a run can be repeated). Its
/// address is known at once; the peer is given later ([`LossyLink::connect`]), so that the
/// peer's own configuration can name the link (sipp's Contact, for the in-dialog requests).
pub struct LossyLink {
    /// Where callverify sends (the trunk address, and the peer's Contact).
    pub addr: SocketAddr,
    peer: std::sync::Arc<std::sync::OnceLock<SocketAddr>>,
    counts: std::sync::Arc<std::sync::Mutex<(usize, usize)>>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyLink {
    /// Binds it on `ip`.
    pub async fn start(ip: IpAddr, loss: f64, seed: u64) -> LossyLink {
        let front = tokio::net::UdpSocket::bind((ip, 0))
            .await
            .expect("bind the link");
        let back = tokio::net::UdpSocket::bind((ip, 0))
            .await
            .expect("bind the link");
        let addr = front.local_addr().expect("link address");
        let peer = std::sync::Arc::new(std::sync::OnceLock::<SocketAddr>::new());
        let counts = std::sync::Arc::new(std::sync::Mutex::new((0, 0)));
        let (p, c) = (peer.clone(), counts.clone());
        let task = tokio::spawn(async move {
            let mut rng = testaudio::Rng::new(seed);
            let mut lose = move || rng.uniform() < loss;
            let mut client: Option<SocketAddr> = None;
            let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            loop {
                let (bytes, to, sock) = tokio::select! {
                    Ok((len, from)) = front.recv_from(&mut a) => {
                        client = Some(from);
                        (&a[..len], p.get().copied(), &back)
                    }
                    Ok((len, _)) = back.recv_from(&mut b) => (&b[..len], client, &front),
                };
                let Some(to) = to else { continue };
                let lost = lose();
                {
                    let mut c = c.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if lost { c.0 += 1 } else { c.1 += 1 }
                }
                if !lost {
                    let _ = sock.send_to(bytes, to).await;
                }
            }
        });
        LossyLink {
            addr,
            peer,
            counts,
            task,
        }
    }

    /// The peer behind the link.
    pub fn connect(&self, peer: SocketAddr) {
        let _ = self.peer.set(peer);
    }

    /// Datagrams lost and passed so far, both ways.
    pub fn counts(&self) -> (usize, usize) {
        *self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
