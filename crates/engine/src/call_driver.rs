//! Runs one [`VerificationCall`] in a tokio task: binds its RTP/RTCP socket pair, places the
//! SIP call through a [`SipEndpoint`], and moves SIP events, datagrams and timer expiries
//! into the state machine and its packets out. Pacing is deadline-based (the n-th frame is
//! due n·20 ms after the answer), so a late wake-up does not shift the frames after it.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use media::Codec;
use media::rtp::{MAX_PACKET, StreamStart};
use media::srtp::{MASTER_LEN, Srtp, Suite};
use sip::sdp::{Offer, Sdes, SdesKey};
use sip::{CallEvent, EndReason};
use store::PhoneNumber;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span};

use crate::call::{CallReport, Output, Prompts, Report, ScriptConfig, VerificationCall};
use crate::sip_driver::{CallError, SipEndpoint};

/// Where the calls' media is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaConfig {
    /// The local address for RTP (put in the SDP offer).
    pub address: IpAddr,
    /// Ports to pick RTP/RTCP pairs from (RTP on the even port).
    pub ports: RangeInclusive<u16>,
    /// Codecs offered, in order of preference.
    pub codecs: Vec<Codec>,
    /// Whether to keep a histogram of the intervals between RTP packets sent (benchmarks).
    pub measure_pacing: bool,
}

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

/// Intervals between consecutive RTP packets of one call, in 0.25 ms bins up to 128 ms (the
/// last bin holds everything longer), and when the longest ones happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendIntervals {
    /// Counts per bin.
    pub bins: Vec<u32>,
    /// Sends that came more than 40 ms after the previous one: when, and the interval in
    /// microseconds (the first 64 of the call).
    pub late: Vec<(Instant, u32)>,
}

/// Bin width of [`SendIntervals`], in microseconds.
pub const INTERVAL_BIN_US: u64 = 250;
const INTERVAL_BINS: usize = 513;

impl SendIntervals {
    fn record(&mut self, at: Instant, micros: u64) {
        if self.bins.is_empty() {
            self.bins = vec![0; INTERVAL_BINS];
        }
        let i = ((micros / INTERVAL_BIN_US) as usize).min(INTERVAL_BINS - 1);
        self.bins[i] += 1;
        if micros > 40_000 && self.late.len() < 64 {
            self.late.push((at, micros.min(u64::from(u32::MAX)) as u32));
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &SendIntervals) {
        if self.bins.is_empty() {
            self.bins = vec![0; INTERVAL_BINS];
        }
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
        self.late.extend_from_slice(&other.late);
    }

    /// Intervals recorded.
    pub fn count(&self) -> u64 {
        self.bins.iter().map(|&c| u64::from(c)).sum()
    }

    /// The `q` quantile (0..=1) in milliseconds (upper edge of its bin).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((n as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.bins.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return Some(((i as u64 + 1) * INTERVAL_BIN_US) as f64 / 1000.0);
            }
        }
        None
    }
}

/// A finished verification call.
#[derive(Clone, Debug)]
pub struct Finished {
    /// What the call log keeps.
    pub report: CallReport,
    /// Send intervals, when [`MediaConfig::measure_pacing`] is set.
    pub intervals: SendIntervals,
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
/// as they happen; the final one, [`Report::Finished`], is not among them but returned; when
/// `cancel` completes the call is hung up as `canceled`.
pub async fn verify(
    endpoint: &SipEndpoint,
    media: &MediaConfig,
    script: ScriptConfig,
    prompts: Prompts,
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
    let offer = Offer {
        address: media.address,
        port: local.port(),
        // RFC 4566 §5.2: a numeric session id; 64 random bits, nothing else of the call.
        session_id: sip::random::u64(),
        version: 1,
        codecs: media.codecs.clone(),
        // Offered only where the trunk says (the user agent sets the policy per trunk).
        sdes: Sdes {
            policy: Default::default(),
            key: Some(srtp_key()),
        },
    };
    let ours = offer.sdes.key.clone();
    // SRTP for what callverify sends and for what it receives, once an answer takes the key.
    let mut srtp: Option<(Srtp, Srtp)> = None;
    let mut their_key: Option<SdesKey> = None;
    let started = Instant::now();
    let mut call = endpoint.call(dial, offer).await?;
    let span = info_span!("call", call = %call.handle, to = %target);
    let mut vc = VerificationCall::new(started, script, prompts, StreamStart::random());
    async move {
        info!(rtp = %local, "verification call placed");
        let mut buf = vec![0u8; 2048];
        let mut pkt = [0u8; MAX_PACKET];
        let mut intervals = SendIntervals::default();
        let mut last_send: Option<Instant> = None;
        let mut cancel = std::pin::pin!(cancel);
        let mut cancelled = false;
        loop {
            while let Some(out) = vc.poll_output(&mut pkt) {
                match out {
                    Output::Rtp { to, len } => {
                        let sent = match &mut srtp {
                            Some((tx, _)) => tx.protect_rtp(&pkt[..len]).map(Cow::Owned),
                            None => Ok(Cow::Borrowed(&pkt[..len])),
                        };
                        let Ok(bytes) = sent else { continue };
                        if let Err(e) = rtp.send_to(&bytes, to).await {
                            debug!(%to, error = %e, "RTP send failed");
                        }
                        if media.measure_pacing {
                            let now = Instant::now();
                            if let Some(prev) = last_send {
                                intervals.record(now, (now - prev).as_micros() as u64);
                            }
                            last_send = Some(now);
                        }
                    }
                    Output::Rtcp { to, bytes } => {
                        let sent = match &mut srtp {
                            Some((tx, _)) => tx.protect_rtcp(&bytes),
                            None => Ok(bytes),
                        };
                        if let Ok(bytes) = sent {
                            let _ = rtcp.send_to(&bytes, to).await;
                        }
                    }
                    Output::Hangup => call.hangup(),
                    Output::Report(Report::Finished(report)) => {
                        info!(
                            outcome = report.outcome.name(),
                            detail = report.detail.as_deref().unwrap_or(""),
                            "verification call finished"
                        );
                        return Ok(Finished {
                            report: *report,
                            intervals,
                        });
                    }
                    Output::Report(r) => {
                        match &r {
                            Report::Verdict(o) => info!(outcome = o.name(), "verdict"),
                            Report::Key(k) => info!(source = ?k.source, at_ms = k.at_ms, "key"),
                            Report::KeyIgnored(k) => info!(
                                source = ?k.source,
                                at_ms = k.at_ms,
                                "key before the instructions: ignored"
                            ),
                            other => debug!(report = ?other, "call progress"),
                        }
                        if let Some(tx) = &reports {
                            let _ = tx.send(r);
                        }
                    }
                }
            }
            let deadline = vc.poll_timeout().unwrap_or_else(Instant::now);
            // While frames go out every 20 ms, what arrived is read at each frame: one wake
            // per frame instead of two (this halves the wake-ups of a call; keys are seen at
            // most 20 ms later). Otherwise every datagram wakes the call.
            let pacing = vc.is_pacing();
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    if pacing {
                        while let Ok((n, from, arrival)) = recv_stamped(&rtp, &mut buf, now) {
                            deliver(&mut vc, &mut srtp, arrival, from, &buf[..n]);
                        }
                    }
                    vc.handle_timeout(now);
                }
                ev = call.next_event() => {
                    let ev = ev.unwrap_or(CallEvent::Ended(EndReason::TransportError));
                    match (&ev, &ours) {
                        (CallEvent::Answered { answer }, Some(ours)) => {
                            if let Some(theirs) = &answer.sdes {
                                info!(suite = theirs.suite.name(), "media is SRTP");
                                srtp = Some((
                                    Srtp::new(ours.suite, &ours.master),
                                    Srtp::new(theirs.suite, &theirs.master),
                                ));
                                their_key = Some(theirs.clone());
                            }
                        }
                        // A re-INVITE with a new key of the callee's: what it sends is
                        // checked under the new key (callverify's own key stays).
                        (CallEvent::MediaChanged { answer }, _) => {
                            if let (Some((_, rx)), Some(theirs)) = (&mut srtp, &answer.sdes)
                                && their_key.as_ref() != Some(theirs)
                            {
                                info!(suite = theirs.suite.name(), "SRTP rekeyed by the callee");
                                *rx = Srtp::new(theirs.suite, &theirs.master);
                                their_key = Some(theirs.clone());
                            }
                        }
                        _ => {}
                    }
                    vc.handle_sip(Instant::now(), ev);
                }
                r = rtp.recv_from(&mut buf), if !pacing => {
                    if let Ok((n, from)) = r {
                        deliver(&mut vc, &mut srtp, Instant::now(), from, &buf[..n]);
                    }
                }
                () = &mut cancel, if !cancelled => {
                    cancelled = true;
                    vc.cancel(Instant::now());
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// A fresh SDES master key and salt for one call, from the operating system's generator.
fn srtp_key() -> SdesKey {
    let mut master = [0u8; MASTER_LEN];
    sip::random::fill(&mut master);
    SdesKey {
        tag: 1,
        suite: Suite::AesCm128HmacSha1_80,
        master,
    }
}

/// Hands a received datagram to the call: with SRTP, only once it authenticates and is
/// decrypted (one that does not is counted and dropped).
fn deliver(
    vc: &mut VerificationCall,
    srtp: &mut Option<(Srtp, Srtp)>,
    at: Instant,
    from: SocketAddr,
    bytes: &[u8],
) {
    match srtp {
        None => vc.handle_rtp(at, from, bytes),
        Some((_, rx)) => match rx.unprotect_rtp(bytes) {
            Ok(plain) => vc.handle_rtp(at, from, &plain),
            Err(e) => {
                debug!(%from, error = %e, "SRTP packet dropped");
                vc.handle_unauthenticated();
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_quantiles() {
        let mut h = SendIntervals::default();
        let t = Instant::now();
        for _ in 0..98 {
            h.record(t, 20_000);
        }
        h.record(t, 24_100);
        h.record(t, 900_000);
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_ms(0.5), Some(20.25));
        assert_eq!(h.quantile_ms(0.99), Some(24.25));
        assert_eq!(h.quantile_ms(1.0), Some(128.25));
        assert_eq!(h.late, vec![(t, 900_000)]);
    }
}
