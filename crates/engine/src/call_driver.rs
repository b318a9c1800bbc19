//! Runs one [`VerificationCall`] in a tokio task: binds its RTP/RTCP socket pair, places the
//! SIP call through a [`SipEndpoint`], and moves SIP events, datagrams and timer expiries
//! into the state machine and its packets out. Pacing is deadline-based (the n-th frame is
//! due n·20 ms after the answer), so a late wake-up does not shift the frames after it.
//! The call's protocol state, SRTP included, is in [`VerificationCall`]; this only moves
//! bytes, timers and events.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use media::Codec;
use media::rtp::{MAX_PACKET, StreamStart};
use media::srtp::MAX_OVERHEAD;
use sip::sdp::Offer;
use sip::{CallEvent, EndReason};
use store::PhoneNumber;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span};

use crate::call::{
    CallReport, Confirmation, Output, Prompts, Report, ScriptConfig, VerificationCall,
};
use crate::sip_driver::{Call, CallError, SipEndpoint};

/// Where the calls' media is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaConfig {
    /// The local address RTP is bound to (and named in the SDP, without `public_address`).
    pub address: IpAddr,
    /// Behind a NAT: the public address the SDP names instead (o= and c=), whose ports
    /// are forwarded to `address`'s.
    pub public_address: Option<IpAddr>,
    /// Ports to pick RTP/RTCP pairs from (RTP on the even port).
    pub ports: RangeInclusive<u16>,
    /// Codecs offered, in order of preference.
    pub codecs: Vec<Codec>,
    /// Called right after each RTP packet is sent (benchmarks measure the pacing with it).
    pub on_send: Option<OnSend>,
}

impl MediaConfig {
    /// The address the SDP names: the public one behind a NAT, else the bound one.
    pub fn sdp_address(&self) -> IpAddr {
        self.public_address.unwrap_or(self.address)
    }
}

/// A function called with the time right after each RTP packet of a call is sent.
#[derive(Clone)]
pub struct OnSend(pub Arc<dyn Fn(Instant) + Send + Sync>);

impl fmt::Debug for OnSend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnSend")
    }
}

impl PartialEq for OnSend {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OnSend {}

/// Why a verification call could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No free RTP/RTCP port pair.
    #[error("no free RTP/RTCP port pair on {address} in {first}-{last}: {source}")]
    NoPorts {
        /// The media address.
        address: IpAddr,
        /// The range's first port.
        first: u16,
        /// The range's last port.
        last: u16,
        /// The last bind error.
        source: std::io::Error,
    },
    /// The SIP endpoint refused or has stopped.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The number is only kept masked (past the retention period): it cannot be dialed.
    #[error("the number {0} is redacted: it cannot be dialed")]
    Redacted(PhoneNumber),
}

/// A finished verification call.
#[derive(Clone, Debug)]
pub struct Finished {
    /// What the call log keeps.
    pub report: CallReport,
}

/// Reads one waiting datagram without blocking, with the time the kernel received it
/// (`SO_TIMESTAMPNS`), so that jitter is measured on arrival even when the datagram is read
/// up to a frame later. Falls back to `now` when the kernel gave no time.
fn recv_stamped(
    sock: &UdpSocket,
    buf: &mut [u8],
    now: Instant,
) -> std::io::Result<(usize, SocketAddr, Instant)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    use std::os::fd::AsRawFd;
    sock.try_io(tokio::io::Interest::READABLE, || {
        let mut iov = [std::io::IoSliceMut::new(buf)];
        let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let msg = recvmsg::<SockaddrStorage>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(std::io::Error::from)?;
        let from = msg
            .address
            .and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::from(*v4))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
            })
            .ok_or_else(|| std::io::Error::other("datagram without a source address"))?;
        let mut arrival = now;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    let at = std::time::UNIX_EPOCH
                        + Duration::new(ts.tv_sec().max(0) as u64, ts.tv_nsec().max(0) as u32);
                    let age = std::time::SystemTime::now()
                        .duration_since(at)
                        .unwrap_or_default();
                    arrival = now
                        .checked_sub(age.min(Duration::from_secs(1)))
                        .unwrap_or(now);
                }
            }
        }
        Ok((msg.bytes, from, arrival))
    })
}

async fn bind_pair(media: &MediaConfig) -> Result<(UdpSocket, UdpSocket), VerifyError> {
    let seed = sip::random::u64();
    let first = *media.ports.start() & !1;
    let last = *media.ports.end();
    let pairs = u64::from(last.saturating_sub(first) / 2 + 1);
    let mut last_err = std::io::Error::other("empty port range");
    for i in 0..pairs.min(64) {
        // A random start, then consecutive pairs, so that calls rarely collide.
        let k = (seed.wrapping_add(i.wrapping_mul(0x9e37_79b9))) % pairs;
        let port = first + 2 * k as u16;
        match UdpSocket::bind(SocketAddr::new(media.address, port)).await {
            Ok(rtp) => match UdpSocket::bind(SocketAddr::new(media.address, port + 1)).await {
                Ok(rtcp) => {
                    // Arrival times for jitter (see `recv_stamped`); without them the
                    // read time stands in.
                    let _ = nix::sys::socket::setsockopt(
                        &rtp,
                        nix::sys::socket::sockopt::ReceiveTimestampns,
                        &true,
                    );
                    return Ok((rtp, rtcp));
                }
                Err(e) => last_err = e,
            },
            Err(e) => last_err = e,
        }
    }
    Err(VerifyError::NoPorts {
        address: media.address,
        first,
        last,
        source: last_err,
    })
}

/// Places one verification call to `target` and runs it to its end. Reports go to `reports`
/// as they happen; the final report ([`Output::Finished`]) is returned; when
/// `cancel` completes the call is hung up as `canceled`. `confirmation`: what the person
/// must do to approve ('#', the two digits shown on the page, or listen to a code).
#[allow(clippy::too_many_arguments)]
pub async fn verify(
    endpoint: &SipEndpoint,
    media: &MediaConfig,
    script: ScriptConfig,
    prompts: Prompts,
    confirmation: Confirmation,
    target: &PhoneNumber,
    reports: Option<mpsc::UnboundedSender<Report>>,
    cancel: impl Future<Output = ()>,
) -> Result<Finished, VerifyError> {
    let dial = target
        .as_e164()
        .ok_or_else(|| VerifyError::Redacted(target.clone()))?;
    let (rtp, rtcp) = bind_pair(media).await?;
    let local = rtp.local_addr().map_err(|source| VerifyError::NoPorts {
        address: media.address,
        first: *media.ports.start(),
        last: *media.ports.end(),
        source,
    })?;
    // Keyed always; the key is offered only where the trunk says (the user agent sets the
    // policy per trunk).
    let offer = Offer::new(
        media.sdp_address(),
        local.port(),
        media.codecs.clone(),
        true,
    );
    let key = offer.sdes.key.clone();
    let (started, wall) = (Instant::now(), SystemTime::now());
    let call = endpoint.call(dial, offer).await?;
    let span = info_span!("call", call = %call.handle, to = %target);
    let mut vc = VerificationCall::new(started, wall, script, prompts, StreamStart::random(), key);
    vc.confirm_by(confirmation);
    // The task stays here and is run by reference: moved into the future that runs it, the
    // call's state (kilobytes) would be kept twice in every call's task.
    let mut task = CallTask {
        vc,
        call,
        rtp,
        rtcp,
        on_send: media.on_send.clone(),
        reports,
        buf: vec![0u8; 2048],
    };
    span.in_scope(|| info!(rtp = %local, "verification call placed"));
    task.run(cancel).instrument(span).await
}

/// One call's sockets, SIP call and state machine.
struct CallTask {
    vc: VerificationCall,
    call: Call,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    on_send: Option<OnSend>,
    reports: Option<mpsc::UnboundedSender<Report>>,
    /// Received datagrams.
    buf: Vec<u8>,
}

impl CallTask {
    async fn run(&mut self, cancel: impl Future<Output = ()>) -> Result<Finished, VerifyError> {
        let mut cancel = std::pin::pin!(cancel);
        let mut cancelled = false;
        loop {
            if let Some(report) = self.transmit().await {
                return Ok(Finished { report });
            }
            self.wait(cancel.as_mut(), &mut cancelled).await;
        }
    }

    /// Sends what the call asks for and forwards its reports; the final report once given.
    async fn transmit(&mut self) -> Option<CallReport> {
        // Room for the SRTP tag after the packet.
        let mut pkt = [0u8; MAX_PACKET + MAX_OVERHEAD];
        while let Some(out) = self.vc.poll_output(&mut pkt) {
            match out {
                Output::Rtp { to, len } => {
                    if let Err(e) = self.rtp.send_to(&pkt[..len], to).await {
                        debug!(%to, error = %e, "RTP send failed");
                    }
                    if let Some(OnSend(f)) = &self.on_send {
                        f(Instant::now());
                    }
                }
                Output::Rtcp { to, bytes } => {
                    let _ = self.rtcp.send_to(&bytes, to).await;
                }
                Output::Hangup => self.call.hangup(),
                Output::Finished(report) => {
                    info!(
                        outcome = report.outcome.name(),
                        detail = report.detail.as_deref().unwrap_or(""),
                        "verification call finished"
                    );
                    return Some(*report);
                }
                Output::Report(r) => {
                    log_report(&r);
                    self.forward(r);
                }
            }
        }
        None
    }

    fn forward(&self, r: Report) {
        if let Some(tx) = &self.reports {
            let _ = tx.send(r);
        }
    }

    /// Waits for the call's next deadline, a SIP event, a datagram or the cancellation,
    /// and hands it to the call.
    async fn wait(&mut self, cancel: Pin<&mut impl Future<Output = ()>>, cancelled: &mut bool) {
        let deadline = self.vc.poll_timeout().unwrap_or_else(Instant::now);
        // While frames go out every 20 ms, what arrived is read at each frame: one wake
        // per frame instead of two (this halves the wake-ups of a call; keys are seen at
        // most 20 ms later). Otherwise every datagram wakes the call.
        let pacing = self.vc.is_pacing();
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(deadline.into()) => {
                let now = Instant::now();
                if pacing {
                    while let Ok((n, from, arrival)) = recv_stamped(&self.rtp, &mut self.buf, now) {
                        self.vc.handle_rtp(arrival, from, &self.buf[..n]);
                    }
                }
                self.vc.handle_timeout(now);
            }
            ev = self.call.next_event() => {
                let ev = ev.unwrap_or(CallEvent::Ended(EndReason::TransportError));
                self.vc.handle_sip(Instant::now(), ev);
            }
            r = self.rtp.recv_from(&mut self.buf), if !pacing => {
                if let Ok((n, from)) = r {
                    self.vc.handle_rtp(Instant::now(), from, &self.buf[..n]);
                }
            }
            () = cancel, if !*cancelled => {
                *cancelled = true;
                self.vc.cancel(Instant::now());
            }
        }
    }
}

/// The call's progress in the log (no number, no key).
fn log_report(r: &Report) {
    match r {
        Report::Verdict(o) => info!(outcome = o.name(), "verdict"),
        Report::Key(k) => info!(source = ?k.source, at_ms = k.at_ms, "key"),
        Report::KeyIgnored(k) => info!(
            source = ?k.source,
            at_ms = k.at_ms,
            "key before the instructions: ignored"
        ),
        other => debug!(report = ?other, "call progress"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdp_names_the_public_address_when_there_is_one() {
        let mut media = MediaConfig {
            address: "10.0.0.2".parse().unwrap(),
            public_address: None,
            ports: 30000..=30001,
            codecs: vec![Codec::Pcmu],
            on_send: None,
        };
        assert_eq!(media.sdp_address(), media.address);
        media.public_address = Some("198.51.100.7".parse().unwrap());
        let offer = Offer::new(media.sdp_address(), 30000, media.codecs.clone(), false);
        let sdp = offer.to_sdp();
        assert!(sdp.contains("c=IN IP4 198.51.100.7\r\n"), "{sdp}");
        assert!(!sdp.contains("10.0.0.2"), "{sdp}");
    }
}
