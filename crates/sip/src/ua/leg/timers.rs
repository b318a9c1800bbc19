//! A leg's timers, and what each does when it fires.

use std::time::Instant;

use super::LegState;
use crate::timer::TimerKind;
use crate::ua::{EndReason, UserAgent};

/// A leg's timers, fired in this order when several are due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::ua) enum LegTimer {
    /// The leg is forgotten (its end has been reported and retransmissions absorbed).
    Linger,
    /// The earliest completed INVITE transaction stops absorbing retransmissions (Timer D).
    Completed,
    /// Timer A of the INVITE.
    InviteRetransmit,
    /// Timer E of the CANCEL.
    CancelRetransmit,
    /// Timer E of the BYE.
    ByeRetransmit,
    /// Our 200 to a re-INVITE goes again until its ACK (RFC 3261 §13.3.1.4).
    ReplyRetransmit,
    /// ... and no longer after 64·T1.
    ReplyGiveUp,
    /// Timer B: no answer at all to the INVITE.
    InviteTimeout,
    /// The wait for the INVITE's final response after a CANCEL (64·T1).
    CancelTimeout,
    /// Timer F of the BYE.
    ByeTimeout,
    /// The ring timeout: the call is cancelled as not answered.
    Ring,
}

impl TimerKind for LegTimer {
    const ALL: &'static [LegTimer] = &[
        LegTimer::Linger,
        LegTimer::Completed,
        LegTimer::InviteRetransmit,
        LegTimer::CancelRetransmit,
        LegTimer::ByeRetransmit,
        LegTimer::ReplyRetransmit,
        LegTimer::ReplyGiveUp,
        LegTimer::InviteTimeout,
        LegTimer::CancelTimeout,
        LegTimer::ByeTimeout,
        LegTimer::Ring,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl UserAgent {
    /// Fires the leg's timers due at `now`.
    pub(in crate::ua) fn leg_timers(&mut self, h: u64, now: Instant) {
        let timers = self.cfg.timers;
        loop {
            let Some(leg) = self.legs.get_mut(h) else {
                return;
            };
            let Some(t) = leg.timers.take_expired(now) else {
                return;
            };
            let route = leg.route;
            match t {
                LegTimer::Linger => {
                    self.remove_leg(h);
                    return;
                }
                LegTimer::Completed => {
                    leg.completed.retain(|c| c.until > now);
                    leg.set_completed_timer();
                }
                LegTimer::InviteRetransmit => {
                    if let Some(tx) = &mut leg.invite {
                        let bytes = tx.retransmit(&timers, now, &mut leg.timers);
                        self.transmit(route, bytes);
                    }
                }
                LegTimer::CancelRetransmit => {
                    if let LegState::Cancelling { cancel, .. } = &mut leg.state {
                        let bytes = cancel.retransmit(&timers, now, &mut leg.timers);
                        self.transmit(route, bytes);
                    }
                }
                LegTimer::ByeRetransmit => {
                    if let LegState::Ending { bye, .. } = &mut leg.state {
                        let bytes = bye.retransmit(&timers, now, &mut leg.timers);
                        self.transmit(route, bytes);
                    }
                }
                LegTimer::ReplyRetransmit => {
                    let reply = match &mut leg.state {
                        LegState::Confirmed(d) | LegState::Ending { dialog: d, .. } => {
                            d.reply.as_mut()
                        }
                        _ => None,
                    };
                    if let Some(reply) = reply {
                        reply.interval = (reply.interval * 2).min(timers.t2);
                        leg.timers
                            .set(LegTimer::ReplyRetransmit, now + reply.interval);
                        let (to, bytes) = (reply.to, reply.bytes.clone());
                        self.transmit(to, bytes);
                    }
                }
                LegTimer::ReplyGiveUp => {
                    leg.timers.stop(LegTimer::ReplyRetransmit);
                    if let Some(d) = leg.dialog_mut() {
                        d.reply = None;
                    }
                }
                LegTimer::InviteTimeout => {
                    let LegState::Calling { hangup } = &leg.state else {
                        continue;
                    };
                    let reason = hangup.clone().unwrap_or(EndReason::Timeout);
                    // Timer B: the trunk did not answer at all.
                    let trunk = leg.trunk;
                    self.set_trunk_up(trunk, false);
                    if self.failover(h, now) {
                        return;
                    }
                    self.finish(h, now, reason);
                }
                LegTimer::CancelTimeout | LegTimer::ByeTimeout => {
                    if let Some(reason) = leg.end_reason(EndReason::Hangup, EndReason::Hangup) {
                        self.finish(h, now, reason);
                    }
                }
                LegTimer::Ring => {
                    if matches!(
                        leg.state,
                        LegState::Calling { hangup: None } | LegState::Proceeding
                    ) {
                        self.teardown(h, now, EndReason::NoAnswer, EndReason::NoAnswer);
                    }
                }
            }
        }
    }
}
