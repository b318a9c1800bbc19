//! The requests in progress and the answers of the last seconds (RFC 5080 §2.2.2): a NAS
//! that hears nothing sends the same request again (same source, Identifier and Request
//! Authenticator) while the phone rings; that must neither start a second call nor be
//! answered twice differently. And a request seen once is not heard again later: a
//! captured Access-Request sent again (from a forged source, after its answer was
//! forgotten) would call the user's phone a second time.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What names one request of one NAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey {
    /// The configured client (NAS) it came from, by its index: what the caps count.
    pub client: usize,
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
    /// Its Request Authenticator was seen from this client before, in another request or
    /// in one whose answer is forgotten: a replay, dropped.
    Replayed,
    /// Its client has as many requests in progress as it may, or the table is full of
    /// requests in progress and answers still kept: dropped (the NAS sends it again).
    Full,
}

enum Entry {
    InProgress,
    Answered(Vec<u8>),
}

/// A client's Request Authenticator, remembered for the replay window.
type Seen = (usize, [u8; 16]);

/// The table, bounded: requests in progress per client, entries and remembered
/// authenticators in all. An answer is never forgotten before its time to make room (its
/// NAS's retransmission would then be a new request): the table refuses instead.
pub struct Recent {
    entries: HashMap<RequestKey, Entry>,
    in_progress: HashMap<usize, usize>,
    /// Answered entries by the time they are forgotten, oldest first.
    expiry: VecDeque<(Instant, RequestKey)>,
    /// Authenticators by the time they are forgotten.
    seen: HashMap<Seen, Instant>,
    seen_expiry: VecDeque<(Instant, Seen)>,
    keep: Duration,
    replay_window: Duration,
    per_client: usize,
    max_entries: usize,
    max_seen: usize,
}

/// Authenticators remembered per entry the table may hold: the replay window is longer
/// than an answer is kept.
const SEEN_PER_ENTRY: usize = 10;

impl Recent {
    /// A table that keeps answers for `keep`, refuses a client's authenticator seen in the
    /// last `replay_window` (at least `keep`), lets each client have `per_client` requests
    /// in progress, and holds `max_entries` entries (and ten times as many authenticators)
    /// at most.
    pub fn new(
        keep: Duration,
        replay_window: Duration,
        per_client: usize,
        max_entries: usize,
    ) -> Recent {
        Recent {
            entries: HashMap::new(),
            in_progress: HashMap::new(),
            expiry: VecDeque::new(),
            seen: HashMap::new(),
            seen_expiry: VecDeque::new(),
            keep,
            replay_window: replay_window.max(keep),
            per_client,
            max_entries,
            max_seen: max_entries.saturating_mul(SEEN_PER_ENTRY),
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
        let seen = (key.client, key.authenticator);
        if self.seen.contains_key(&seen) {
            return Admission::Replayed;
        }
        let busy = self.in_progress.get(&key.client).copied().unwrap_or(0);
        if busy >= self.per_client
            || self.entries.len() >= self.max_entries
            || self.seen.len() >= self.max_seen
        {
            return Admission::Full;
        }
        self.entries.insert(key, Entry::InProgress);
        *self.in_progress.entry(key.client).or_default() += 1;
        let until = now + self.replay_window;
        self.seen.insert(seen, until);
        self.seen_expiry.push_back((until, seen));
        Admission::New
    }

    /// Request `key` is answered with `bytes` at `now`: its retransmissions get them for
    /// the next `keep`.
    pub fn answered(&mut self, now: Instant, key: RequestKey, bytes: Vec<u8>) {
        if let Some(e) = self.entries.get_mut(&key) {
            if matches!(e, Entry::InProgress) {
                *e = Entry::Answered(bytes);
                self.release(key.client);
                self.expiry.push_back((now + self.keep, key));
            } else {
                *e = Entry::Answered(bytes);
            }
        }
    }

    /// Request `key` ends unanswered: a retransmission is a new request.
    pub fn abandoned(&mut self, key: RequestKey) {
        if let Some(Entry::InProgress) = self.entries.get(&key) {
            self.entries.remove(&key);
            self.seen.remove(&(key.client, key.authenticator));
            self.release(key.client);
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

    fn release(&mut self, client: usize) {
        if let Some(n) = self.in_progress.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.in_progress.remove(&client);
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
        while let Some((until, seen)) = self.seen_expiry.front().copied() {
            if until > now {
                break;
            }
            self.seen_expiry.pop_front();
            // Only the remembrance this entry made (an abandoned one may be seen again).
            if self.seen.get(&seen) == Some(&until) {
                self.seen.remove(&seen);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16, id: u8) -> RequestKey {
        RequestKey {
            client: 0,
            from: SocketAddr::from(([127, 0, 0, 1], port)),
            identifier: id,
            authenticator: [id; 16],
        }
    }

    const KEEP: Duration = Duration::from_secs(30);
    const WINDOW: Duration = Duration::from_secs(300);

    #[test]
    fn a_retransmission_is_held_while_in_progress_then_answered_alike_for_thirty_seconds() {
        let t0 = Instant::now();
        let mut r = Recent::new(KEEP, WINDOW, 10, 100);
        assert_eq!(r.admit(t0, key(1, 1)), Admission::New);
        assert_eq!(r.admit(t0, key(1, 1)), Admission::InProgress);
        // Another identifier or another authenticator is another request.
        assert_eq!(r.admit(t0, key(1, 2)), Admission::New);
        let mut other = key(1, 1);
        other.authenticator[0] ^= 1;
        assert_eq!(r.admit(t0, other), Admission::New);
        assert_eq!(r.in_progress(), 3);
        r.answered(t0 + Duration::from_secs(5), key(1, 1), b"accept".to_vec());
        assert_eq!(r.in_progress(), 2);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(
            r.admit(at(34), key(1, 1)),
            Admission::Answered(b"accept".to_vec())
        );
        // Its answer forgotten, the request is a replay until the window ends.
        assert_eq!(r.admit(at(35), key(1, 1)), Admission::Replayed);
        assert_eq!(r.admit(at(299), key(1, 1)), Admission::Replayed);
        assert_eq!(r.admit(at(300), key(1, 1)), Admission::New);
    }

    #[test]
    fn an_authenticator_seen_from_another_port_or_identifier_is_a_replay() {
        let t0 = Instant::now();
        let mut r = Recent::new(KEEP, WINDOW, 10, 100);
        assert_eq!(r.admit(t0, key(1, 1)), Admission::New);
        let mut forged = key(2, 1);
        assert_eq!(r.admit(t0, forged), Admission::Replayed, "another port");
        forged.identifier = 9;
        assert_eq!(
            r.admit(t0, forged),
            Admission::Replayed,
            "another identifier"
        );
        // Another client may use the same authenticator (its secret differs).
        forged.client = 1;
        assert_eq!(r.admit(t0, forged), Admission::New);
        // Abandoned (never answered): the NAS's retransmission is heard again.
        r.abandoned(key(1, 1));
        assert_eq!(r.admit(t0, key(1, 1)), Admission::New);
    }

    #[test]
    fn each_client_has_its_cap_and_a_kept_answer_is_never_pushed_out() {
        let t0 = Instant::now();
        let mut r = Recent::new(KEEP, WINDOW, 2, 3);
        assert_eq!(r.admit(t0, key(1, 1)), Admission::New);
        assert_eq!(r.admit(t0, key(2, 2)), Admission::New);
        assert_eq!(
            r.admit(t0, key(3, 3)),
            Admission::Full,
            "two in progress for the client, whatever its source ports or addresses"
        );
        let mut other_client = key(3, 3);
        other_client.client = 1;
        assert_eq!(r.admit(t0, other_client), Admission::New);
        r.answered(t0, key(1, 1), b"a".to_vec());
        // Full of entries: the answer (kept 30 s) is not forgotten to make room.
        assert_eq!(r.admit(t0, key(1, 4)), Admission::Full);
        assert_eq!(r.admit(t0, key(1, 1)), Admission::Answered(b"a".to_vec()));
        // Once it lapses there is room again.
        let later = t0 + KEEP;
        assert_eq!(r.admit(later, key(1, 4)), Admission::New);
        r.abandoned(key(2, 2));
        r.abandoned(key(1, 4));
        r.abandoned(other_client);
        assert_eq!(r.in_progress(), 0);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn the_authenticators_remembered_are_capped_too() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut r = Recent::new(second, WINDOW, 10, 2);
        // Ten authenticators per entry: 20, two a second.
        for id in 1..=20u8 {
            let at = t0 + second * u32::from((id - 1) / 2);
            assert_eq!(r.admit(at, key(1, id)), Admission::New, "{id}");
            r.answered(at, key(1, id), vec![id]);
        }
        // The answers lapse; their authenticators are still remembered.
        let later = t0 + second * 11;
        assert_eq!(r.admit(later, key(1, 21)), Admission::Full);
        assert_eq!(r.len(), 0);
        assert_eq!(
            r.admit(t0 + WINDOW + second * 10, key(1, 21)),
            Admission::New
        );
    }
}
