//! The requests in progress and the answers of the last seconds (RFC 5080 §2.2.2): a NAS
//! that hears nothing sends the same request again (same source, Identifier and Request
//! Authenticator) while the phone rings; that must neither start a second call nor be
//! answered twice differently.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What names one request of one NAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey {
    /// Where it came from.
    pub from: SocketAddr,
    /// Its Identifier.
    pub identifier: u8,
    /// Its Request Authenticator.
    pub authenticator: [u8; 16],
}

/// What to do with a request that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Never seen: handle it (and tell [`Recent::answered`] or [`Recent::abandoned`]).
    New,
    /// A retransmission of one being handled: nothing to send yet.
    InProgress,
    /// A retransmission of one answered: send this answer again.
    Answered(Vec<u8>),
    /// Its NAS has as many requests in progress as it may, or the table is full of them:
    /// dropped (the NAS sends it again).
    Full,
}

enum Entry {
    InProgress,
    Answered(Vec<u8>),
}

/// The table, bounded: requests in progress per NAS address, and entries in all (the
/// oldest answers are forgotten first).
pub struct Recent {
    entries: HashMap<RequestKey, Entry>,
    in_progress: HashMap<IpAddr, usize>,
    /// Answered entries by the time they are forgotten, oldest first.
    expiry: VecDeque<(Instant, RequestKey)>,
    keep: Duration,
    per_client: usize,
    max_entries: usize,
}

impl Recent {
    /// A table that keeps answers for `keep`, lets each NAS address have `per_client`
    /// requests in progress, and holds `max_entries` entries at most.
    pub fn new(keep: Duration, per_client: usize, max_entries: usize) -> Recent {
        Recent {
            entries: HashMap::new(),
            in_progress: HashMap::new(),
            expiry: VecDeque::new(),
            keep,
            per_client,
            max_entries,
        }
    }

    /// Admits a request that arrived at `now`.
    pub fn admit(&mut self, now: Instant, key: RequestKey) -> Admission {
        self.expire(now);
        match self.entries.get(&key) {
            Some(Entry::InProgress) => return Admission::InProgress,
            Some(Entry::Answered(bytes)) => return Admission::Answered(bytes.clone()),
            None => {}
        }
        let busy = self.in_progress.get(&key.from.ip()).copied().unwrap_or(0);
        if busy >= self.per_client {
            return Admission::Full;
        }
        while self.entries.len() >= self.max_entries {
            // Forget the oldest answer to make room; with none, the table is all requests
            // in progress.
            let Some((_, old)) = self.expiry.pop_front() else {
                return Admission::Full;
            };
            self.entries.remove(&old);
        }
        self.entries.insert(key, Entry::InProgress);
        *self.in_progress.entry(key.from.ip()).or_default() += 1;
        Admission::New
    }

    /// Request `key` is answered with `bytes` at `now`: its retransmissions get them for
    /// the next `keep`.
    pub fn answered(&mut self, now: Instant, key: RequestKey, bytes: Vec<u8>) {
        let was = self
            .entries
            .get(&key)
            .map(|e| matches!(e, Entry::InProgress));
        if was == Some(true) {
            self.release(key.from.ip());
            self.expiry.push_back((now + self.keep, key));
        }
        if let Some(e) = self.entries.get_mut(&key) {
            *e = Entry::Answered(bytes);
        }
    }

    /// Request `key` ends unanswered: a retransmission is a new request.
    pub fn abandoned(&mut self, key: RequestKey) {
        if let Some(Entry::InProgress) = self.entries.get(&key) {
            self.entries.remove(&key);
            self.release(key.from.ip());
        }
    }

    /// How many requests are in progress.
    pub fn in_progress(&self) -> usize {
        self.in_progress.values().sum()
    }

    /// How many entries (in progress and answered) are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.in_progress.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.in_progress.remove(&ip);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((until, key)) = self.expiry.front().copied() {
            if until > now {
                break;
            }
            self.expiry.pop_front();
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16, id: u8) -> RequestKey {
        RequestKey {
            from: SocketAddr::from(([127, 0, 0, 1], port)),
            identifier: id,
            authenticator: [id; 16],
        }
    }

    #[test]
    fn a_retransmission_is_held_while_in_progress_then_answered_alike_for_thirty_seconds() {
        let t0 = Instant::now();
        let mut r = Recent::new(Duration::from_secs(30), 10, 100);
        assert_eq!(r.admit(t0, key(1, 1)), Admission::New);
        assert_eq!(r.admit(t0, key(1, 1)), Admission::InProgress);
        // Another identifier, another port or another authenticator is another request.
        assert_eq!(r.admit(t0, key(1, 2)), Admission::New);
        assert_eq!(r.admit(t0, key(2, 1)), Admission::New);
        let mut other = key(1, 1);
        other.authenticator[0] ^= 1;
        assert_eq!(r.admit(t0, other), Admission::New);
        assert_eq!(r.in_progress(), 4);
        r.answered(t0 + Duration::from_secs(5), key(1, 1), b"accept".to_vec());
        assert_eq!(r.in_progress(), 3);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(
            r.admit(at(34), key(1, 1)),
            Admission::Answered(b"accept".to_vec())
        );
        assert_eq!(r.admit(at(35), key(1, 1)), Admission::New);
    }

    #[test]
    fn each_nas_has_its_cap_and_the_table_forgets_its_oldest_answers_first() {
        let t0 = Instant::now();
        let mut r = Recent::new(Duration::from_secs(30), 2, 3);
        assert_eq!(r.admit(t0, key(1, 1)), Admission::New);
        assert_eq!(r.admit(t0, key(1, 2)), Admission::New);
        assert_eq!(r.admit(t0, key(1, 3)), Admission::Full, "two in progress");
        r.answered(t0, key(1, 1), b"a".to_vec());
        assert_eq!(r.admit(t0, key(1, 3)), Admission::New);
        r.answered(t0, key(1, 2), b"b".to_vec());
        // Full of entries: the oldest answer (1) goes.
        assert_eq!(r.admit(t0, key(1, 4)), Admission::New);
        assert_eq!(r.len(), 3);
        assert_eq!(r.admit(t0, key(1, 2)), Admission::Answered(b"b".to_vec()));
        r.abandoned(key(1, 3));
        r.abandoned(key(1, 4));
        assert_eq!(r.in_progress(), 0);
        assert_eq!(
            r.admit(t0, key(1, 3)),
            Admission::New,
            "abandoned: new again"
        );
        // All in progress: nothing to forget.
        let mut full = Recent::new(Duration::from_secs(30), 10, 2);
        assert_eq!(full.admit(t0, key(1, 1)), Admission::New);
        assert_eq!(full.admit(t0, key(2, 1)), Admission::New);
        assert_eq!(full.admit(t0, key(3, 1)), Admission::Full);
    }
}
