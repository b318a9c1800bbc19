//! The calls' legs by handle, with a queue of their timers' deadlines, so that the user
//! agent's next deadline costs O(log n) and a timeout runs only the legs that are due.
//!
//! Scanning every leg's timer table for each message and each timeout (what the user agent
//! did before) cost O(n) per event: at 5,000 calls the SIP task spent most of its time there
//! and, in one poll of up to 128 messages, held a worker for tens of milliseconds.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use super::leg::Leg;

#[derive(Debug, Default)]
pub(super) struct Legs {
    map: HashMap<u64, Leg>,
    /// (deadline, handle): for every leg with a timer, at least its earliest deadline.
    /// An entry that no longer matches the leg's queued deadline is skipped when reached.
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    /// The deadline each leg is queued for (its entry in `due`).
    queued: HashMap<u64, Instant>,
    /// Legs lent out mutably (their timers may have changed) since they were last queued.
    touched: Vec<u64>,
}

impl Legs {
    pub(super) fn get(&self, h: u64) -> Option<&Leg> {
        self.map.get(&h)
    }

    /// The leg, noted as touched: its timers are queued again at the next [`Legs::sync`].
    pub(super) fn get_mut(&mut self, h: u64) -> Option<&mut Leg> {
        let leg = self.map.get_mut(&h)?;
        self.touched.push(h);
        Some(leg)
    }

    pub(super) fn insert(&mut self, h: u64, leg: Leg) {
        self.map.insert(h, leg);
        self.touched.push(h);
    }

    pub(super) fn remove(&mut self, h: u64) -> Option<Leg> {
        self.queued.remove(&h);
        self.map.remove(&h)
    }

    pub(super) fn contains_key(&self, h: u64) -> bool {
        self.map.contains_key(&h)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&u64, &Leg)> {
        self.map.iter()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Leg> {
        self.map.values()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Queues the touched legs' earliest deadlines where they come sooner than the one
    /// queued (a later one is found when the earlier entry is reached).
    pub(super) fn sync(&mut self) {
        for h in std::mem::take(&mut self.touched) {
            let Some(next) = self.map.get(&h).and_then(|l| l.timers.next_timeout()) else {
                continue;
            };
            if self.queued.get(&h).is_none_or(|&q| next < q) {
                self.queued.insert(h, next);
                self.due.push(Reverse((next, h)));
            }
        }
        // Entries skipped over grow the heap only while they wait; past a bound, rebuild it
        // from what is queued.
        if self.due.len() > 64 + 4 * self.queued.len() {
            self.due = self
                .queued
                .iter()
                .map(|(&h, &at)| Reverse((at, h)))
                .collect();
        }
    }

    /// The earliest queued deadline (perhaps of a timer since stopped: then the timeout
    /// finds nothing to do), or of a leg touched since the last sync.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        let touched = self
            .touched
            .iter()
            .filter_map(|h| self.map.get(h)?.timers.next_timeout());
        self.due
            .peek()
            .map(|Reverse((at, _))| *at)
            .into_iter()
            .chain(touched)
            .min()
    }

    /// The legs whose queued deadline is at or before `now`, taken off the queue (and
    /// noted as touched, so that whatever timers they still have are queued again).
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<u64> {
        self.sync();
        let mut due = Vec::new();
        while let Some(&Reverse((at, h))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            if self.queued.get(&h) == Some(&at) {
                self.queued.remove(&h);
                due.push(h);
                self.touched.push(h);
            }
        }
        due
    }
}

#[cfg(test)]
impl std::ops::Index<&u64> for Legs {
    type Output = Leg;
    fn index(&self, h: &u64) -> &Leg {
        &self.map[h]
    }
}
