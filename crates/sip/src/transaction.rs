//! Client transactions (RFC 3261 §17.1): the request, and the rule of its retransmission over
//! UDP and of its overall timeout; the timers themselves are set in the owner's
//! [`TimerTable`]. Only the timing lives here; what a response means is the user agent's
//! business.

use std::time::{Duration, Instant};

use crate::Transport;
use crate::timer::{TimerKind, TimerTable};

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
}

/// Which retransmission rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Timer A doubles without a cap; Timer B ends the wait. Stops on any response.
    Invite,
    /// Timer E doubles up to T2 (and is T2 after a provisional); Timer F ends the wait.
    NonInvite,
}

/// One client transaction's request and the rule of its retransmissions. Its two timers
/// (retransmission: A or E; timeout: B or F) live in its owner's [`TimerTable`], under the
/// kinds it was started with, so that the owner has one place for all its deadlines.
#[derive(Clone, Debug)]
pub struct ClientTx<T> {
    /// The Via branch that identifies it.
    pub branch: String,
    /// The request as sent.
    pub bytes: Vec<u8>,
    kind: Kind,
    reliable: bool,
    interval: Duration,
    retransmit: T,
    timeout: T,
}

impl<T: TimerKind> ClientTx<T> {
    /// A transaction whose request is sent now; its timers are set in `table` under
    /// `retransmit` and `timeout` (no retransmissions over a stream).
    pub fn start(
        kind: Kind,
        (branch, bytes): (String, Vec<u8>),
        transport: Transport,
        (retransmit, timeout): (T, T),
        (timers, now): (&Timers, Instant),
        table: &mut TimerTable<T>,
    ) -> ClientTx<T> {
        let reliable = transport.is_reliable();
        if reliable {
            table.stop(retransmit);
        } else {
            table.set(retransmit, now + timers.t1);
        }
        table.set(timeout, now + timers.timeout());
        ClientTx {
            branch,
            bytes,
            kind,
            reliable,
            interval: timers.t1,
            retransmit,
            timeout,
        }
    }

    /// A provisional response arrived.
    pub fn provisional(&mut self, timers: &Timers, now: Instant, table: &mut TimerTable<T>) {
        match self.kind {
            // Proceeding: no more retransmissions; the TU's ring timeout takes over from B.
            Kind::Invite => self.finish(table),
            // Proceeding: retransmit every T2 until the final response or Timer F.
            Kind::NonInvite => {
                if !self.reliable {
                    self.interval = timers.t2;
                    table.set(self.retransmit, now + timers.t2);
                }
            }
        }
    }

    /// A final response arrived (or the transaction is given up): no more timers.
    pub fn finish(&self, table: &mut TimerTable<T>) {
        table.stop(self.retransmit);
        table.stop(self.timeout);
    }

    /// Its retransmission timer fired: the interval doubles (up to T2 for a non-INVITE), the
    /// timer is set again, and the request is to be sent again.
    pub fn retransmit(
        &mut self,
        timers: &Timers,
        now: Instant,
        table: &mut TimerTable<T>,
    ) -> Vec<u8> {
        self.interval = match self.kind {
            Kind::Invite => self.interval * 2,
            Kind::NonInvite => (self.interval * 2).min(timers.t2),
        };
        table.set(self.retransmit, now + self.interval);
        self.bytes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum T {
        Retransmit,
        Timeout,
    }

    impl TimerKind for T {
        const ALL: &'static [T] = &[T::Timeout, T::Retransmit];
        fn index(self) -> usize {
            self as usize
        }
    }

    /// When the request goes (ms after the start), and when the transaction times out.
    fn sends(kind: Kind, transport: Transport, provisional_at: Option<u64>) -> (Vec<u64>, u64) {
        let timers = Timers::default();
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        let mut tx = ClientTx::start(
            kind,
            ("b".into(), vec![]),
            transport,
            (T::Retransmit, T::Timeout),
            (&timers, t0),
            &mut table,
        );
        let mut sent = vec![0];
        let mut ms = 0;
        loop {
            if provisional_at == Some(ms) {
                tx.provisional(&timers, t0 + Duration::from_millis(ms), &mut table);
            }
            let Some(at) = table.next_timeout() else {
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
            let now = t0 + Duration::from_millis(ms);
            while let Some(t) = table.take_expired(now) {
                match t {
                    T::Timeout => {
                        tx.finish(&mut table);
                        return (sent, ms);
                    }
                    T::Retransmit => {
                        tx.retransmit(&timers, now, &mut table);
                        sent.push(ms);
                    }
                }
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
