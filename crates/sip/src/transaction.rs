//! Client transaction timers (RFC 3261 §17.1): retransmission over UDP and the overall
//! timeout, as plain data the user agent polls. Only the timing lives here; what a response
//! means is the user agent's business.

use std::time::{Duration, Instant};

use crate::Transport;

/// RFC 3261 timer values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate (T1, 500 ms by default).
    pub t1: Duration,
    /// Largest retransmit interval for non-INVITE requests (T2, 4 s by default).
    pub t2: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        }
    }
}

impl Timers {
    /// Timer B / F / H / J: 64·T1.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D (absorbing retransmitted final responses to an INVITE): 32 s over UDP.
    pub fn d(&self, transport: Transport) -> Duration {
        match transport {
            Transport::Udp => Duration::from_secs(32).max(self.timeout()),
            Transport::Tcp | Transport::Tls => Duration::ZERO,
        }
    }

    /// Timer K (absorbing retransmitted responses to a non-INVITE request): T4 = 5 s.
    pub fn k(&self, transport: Transport) -> Duration {
        match transport {
            Transport::Udp => Duration::from_secs(5),
            Transport::Tcp | Transport::Tls => Duration::ZERO,
        }
    }
}

/// Which retransmission rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Timer A doubles without a cap; Timer B ends the wait. Stops on any response.
    Invite,
    /// Timer E doubles up to T2 (and is T2 after a provisional); Timer F ends the wait.
    NonInvite,
}

/// One client transaction's request and its timers.
#[derive(Clone, Debug)]
pub struct ClientTx {
    /// The Via branch that identifies it.
    pub branch: String,
    /// The request as sent.
    pub bytes: Vec<u8>,
    kind: Kind,
    reliable: bool,
    interval: Duration,
    next_retransmit: Option<Instant>,
    /// Timer B or F; `None` once a response ended the wait.
    deadline: Option<Instant>,
}

/// What a timer asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fired {
    /// Send the request again.
    Retransmit,
    /// Timer B or F: the transaction timed out.
    Timeout,
}

impl ClientTx {
    /// A transaction whose request is sent now.
    pub fn new(
        kind: Kind,
        branch: String,
        bytes: Vec<u8>,
        transport: Transport,
        timers: &Timers,
        now: Instant,
    ) -> ClientTx {
        let reliable = transport.is_reliable();
        ClientTx {
            branch,
            bytes,
            kind,
            reliable,
            interval: timers.t1,
            next_retransmit: (!reliable).then(|| now + timers.t1),
            deadline: Some(now + timers.timeout()),
        }
    }

    /// A provisional response arrived.
    pub fn provisional(&mut self, timers: &Timers, now: Instant) {
        match self.kind {
            // Proceeding: no more retransmissions; the TU's ring timeout takes over from B.
            Kind::Invite => {
                self.next_retransmit = None;
                self.deadline = None;
            }
            // Proceeding: retransmit every T2 until the final response or Timer F.
            Kind::NonInvite => {
                if !self.reliable {
                    self.interval = timers.t2;
                    self.next_retransmit = Some(now + timers.t2);
                }
            }
        }
    }

    /// A final response arrived: no more timers.
    pub fn finish(&mut self) {
        self.next_retransmit = None;
        self.deadline = None;
    }

    /// The next instant a timer fires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_retransmit, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, timers: &Timers, now: Instant) -> Option<Fired> {
        if self.deadline.is_some_and(|d| now >= d) {
            self.finish();
            return Some(Fired::Timeout);
        }
        match self.next_retransmit {
            Some(at) if now >= at => {
                self.interval = match self.kind {
                    Kind::Invite => self.interval * 2,
                    Kind::NonInvite => (self.interval * 2).min(timers.t2),
                };
                self.next_retransmit = Some(now + self.interval);
                Some(Fired::Retransmit)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sends(kind: Kind, transport: Transport, provisional_at: Option<u64>) -> (Vec<u64>, u64) {
        let timers = Timers::default();
        let t0 = Instant::now();
        let mut tx = ClientTx::new(kind, "b".into(), vec![], transport, &timers, t0);
        let mut sent = vec![0];
        let mut ms = 0;
        loop {
            if provisional_at == Some(ms) {
                tx.provisional(&timers, t0 + Duration::from_millis(ms));
            }
            let Some(at) = tx.poll_timeout() else {
                return (sent, u64::MAX);
            };
            let next = (at - t0).as_millis() as u64;
            ms = match provisional_at {
                Some(p) if p > ms && p < next => p,
                _ => next,
            };
            if provisional_at == Some(ms) {
                continue;
            }
            match tx.handle_timeout(&timers, t0 + Duration::from_millis(ms)) {
                Some(Fired::Retransmit) => sent.push(ms),
                Some(Fired::Timeout) => return (sent, ms),
                None => {}
            }
        }
    }

    #[test]
    fn timer_a_doubles_and_timer_b_ends_at_64_t1() {
        let (sent, end) = sends(Kind::Invite, Transport::Udp, None);
        assert_eq!(sent, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(end, 32_000);
    }

    #[test]
    fn timer_e_is_capped_at_t2_and_timer_f_ends_at_64_t1() {
        let (sent, end) = sends(Kind::NonInvite, Transport::Udp, None);
        assert_eq!(&sent[..6], &[0, 500, 1500, 3500, 7500, 11500]);
        assert!(sent.windows(2).skip(4).all(|w| w[1] - w[0] == 4000));
        assert_eq!(end, 32_000);
    }

    #[test]
    fn a_provisional_stops_invite_retransmission_and_slows_non_invite() {
        let (sent, end) = sends(Kind::Invite, Transport::Udp, Some(600));
        assert_eq!((sent, end), (vec![0, 500], u64::MAX));
        let (sent, _) = sends(Kind::NonInvite, Transport::Udp, Some(600));
        assert_eq!(&sent[..3], &[0, 500, 4600]);
    }

    #[test]
    fn tcp_sends_once_and_still_times_out() {
        assert_eq!(sends(Kind::Invite, Transport::Tcp, None), (vec![0], 32_000));
        assert_eq!(
            sends(Kind::NonInvite, Transport::Tcp, None),
            (vec![0], 32_000)
        );
    }
}
