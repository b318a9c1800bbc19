//! One table for the timers of something with several (a call, a trunk), in the shape of
//! quinn-proto's `TimerTable`: each kind of timer is a variant of an enum, set, stopped and
//! read by that variant; the table's next deadline is when its owner wants to be called, and
//! what has expired is fired in the enum's order.

use std::fmt;
use std::marker::PhantomData;
use std::time::Instant;

/// The kinds of timer an owner has.
pub trait TimerKind: Copy + Eq + fmt::Debug + 'static {
    /// Every kind, in the order expired ones fire.
    const ALL: &'static [Self];
    /// Its slot in the table (below [`MAX_TIMERS`]).
    fn index(self) -> usize;
}

/// The most kinds of timer one table holds.
pub const MAX_TIMERS: usize = 16;

/// When each kind of timer fires, if it is set.
#[derive(Clone, Copy)]
pub struct TimerTable<T> {
    at: [Option<Instant>; MAX_TIMERS],
    kind: PhantomData<T>,
}

impl<T: TimerKind> Default for TimerTable<T> {
    fn default() -> Self {
        TimerTable {
            at: [None; MAX_TIMERS],
            kind: PhantomData,
        }
    }
}

impl<T: TimerKind> fmt::Debug for TimerTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(T::ALL.iter().filter_map(|&t| self.get(t).map(|at| (t, at))))
            .finish()
    }
}

impl<T: TimerKind> TimerTable<T> {
    /// Sets `timer` to fire at `at` (replacing any earlier setting).
    pub fn set(&mut self, timer: T, at: Instant) {
        self.at[timer.index()] = Some(at);
    }

    /// When `timer` fires, if it is set.
    pub fn get(&self, timer: T) -> Option<Instant> {
        self.at[timer.index()]
    }

    /// Stops `timer`.
    pub fn stop(&mut self, timer: T) {
        self.at[timer.index()] = None;
    }

    /// The earliest deadline set.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Stops and returns the first timer (in [`TimerKind::ALL`] order) due at `now`.
    pub fn take_expired(&mut self, now: Instant) -> Option<T> {
        let t = T::ALL
            .iter()
            .copied()
            .find(|&t| self.get(t).is_some_and(|at| at <= now))?;
        self.stop(t);
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum T {
        A,
        B,
        C,
    }

    impl TimerKind for T {
        const ALL: &'static [T] = &[T::A, T::B, T::C];
        fn index(self) -> usize {
            self as usize
        }
    }

    #[test]
    fn the_next_deadline_is_the_earliest_and_expired_timers_fire_in_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut table = TimerTable::<T>::default();
        assert_eq!(table.next_timeout(), None);
        table.set(T::C, ms(10));
        table.set(T::B, ms(30));
        table.set(T::A, ms(20));
        assert_eq!(table.next_timeout(), Some(ms(10)));
        assert_eq!(table.take_expired(ms(5)), None);
        // Both due: the enum's order, not the deadlines'.
        assert_eq!(table.take_expired(ms(25)), Some(T::A));
        assert_eq!(table.take_expired(ms(25)), Some(T::C));
        assert_eq!(table.take_expired(ms(25)), None);
        table.stop(T::B);
        assert_eq!(table.next_timeout(), None);
        table.set(T::B, ms(1));
        table.set(T::B, ms(2));
        assert_eq!(
            table.get(T::B),
            Some(ms(2)),
            "a set replaces the earlier one"
        );
    }
}
