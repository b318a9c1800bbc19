//! What the responses to a leg's requests do: to its INVITE (provisional, 2xx, failure,
//! with the ACKs), to its CANCEL and to its BYE.

use std::time::Instant;

use rsip::Method;

use super::{Completed, Dialog, Fork, LegState, LegTimer};
use crate::message::Incoming;
use crate::sdp;
use crate::ua::auth::AuthState;
use crate::ua::endpoint::Owner;
use crate::ua::headers;
use crate::ua::{CallEvent, EndReason, UserAgent};

impl UserAgent {
    pub(in crate::ua) fn on_invite_response(
        &mut self,
        h: u64,
        now: Instant,
        msg: Incoming,
    ) -> Result<(), String> {
        let status = msg.status().unwrap_or(0);
        let branch = msg.via.branch.clone().unwrap_or_default();
        let timers = self.cfg.timers;
        let Some(leg) = self.legs.get_mut(h) else {
            return Ok(());
        };
        let current = leg.invite.as_ref().is_some_and(|tx| tx.branch == branch)
            && msg.cseq == leg.invite_cseq;
        if !current {
            // A retransmitted final response to an earlier (challenged) INVITE: ACK again.
            let Some(c) = leg
                .completed
                .iter()
                .find(|c| c.branch == branch && c.cseq == msg.cseq)
            else {
                return Err(format!("INVITE response {status} for another CSeq"));
            };
            let (route, ack) = (leg.route, c.ack.clone());
            self.transmit(route, ack);
            return Ok(());
        }
        match status {
            100..=199 => {
                let first = match &leg.state {
                    LegState::Calling { .. } => true,
                    LegState::Proceeding | LegState::Cancelling { .. } => false,
                    _ => return Ok(()),
                };
                if let Some(tx) = &mut leg.invite {
                    tx.provisional(&timers, now, &mut leg.timers);
                }
                if msg.to_tag.is_some() && leg.remote_tag.is_none() {
                    leg.remote_tag = msg.to_tag.clone();
                }
                if first {
                    match leg.take_state() {
                        // A hang-up waited for this provisional to send its CANCEL.
                        LegState::Calling {
                            hangup: Some(reason),
                        } => self.send_cancel(h, now, reason),
                        _ => leg.state = LegState::Proceeding,
                    }
                }
                if status > 100 {
                    let early_media = if msg.body().is_empty() {
                        None
                    } else {
                        let offer = self.legs.get(h).map(|l| &l.offer);
                        std::str::from_utf8(msg.body())
                            .ok()
                            .zip(offer)
                            .and_then(|(b, offer)| sdp::parse_answer(b, offer).ok())
                    };
                    self.call_event(
                        h,
                        CallEvent::Provisional {
                            status,
                            early_media,
                        },
                    );
                }
            }
            200..=299 => self.on_invite_2xx(h, now, msg),
            _ => self.on_invite_failure(h, now, msg),
        }
        Ok(())
    }

    fn on_invite_2xx(&mut self, h: u64, now: Instant, msg: Incoming) {
        let Some(leg) = self.legs.get_mut(h) else {
            return;
        };
        let ending = match leg.take_state() {
            LegState::Calling { hangup } => hangup,
            LegState::Proceeding => None,
            LegState::Cancelling { reason, .. } => Some(reason),
            answered @ (LegState::Confirmed(_)
            | LegState::Ending { .. }
            | LegState::Lingering { .. }) => {
                leg.state = answered;
                // A retransmitted 2xx (our ACK was lost): ACK it again, end to end.
                let ack = match &leg.state {
                    LegState::Confirmed(d)
                    | LegState::Ending { dialog: d, .. }
                    | LegState::Lingering { dialog: Some(d) } => Some(d.ack.clone()),
                    _ => None,
                };
                match ack {
                    Some(ack) if msg.to_tag == leg.remote_tag => {
                        let route = leg.route;
                        self.transmit(route, ack);
                    }
                    // Another phone answered too (a proxy forked the INVITE), or one
                    // answered after the call ended.
                    _ => self.end_fork(h, &msg),
                }
                return;
            }
        };
        if let Some(tx) = &leg.invite {
            tx.finish(&mut leg.timers);
        }
        for t in [
            LegTimer::Ring,
            LegTimer::CancelRetransmit,
            LegTimer::CancelTimeout,
        ] {
            leg.timers.stop(t);
        }
        leg.remote_tag = msg.to_tag.clone();
        let answer = std::str::from_utf8(msg.body())
            .map_err(|_| "SDP answer is not UTF-8".to_string())
            .and_then(|b| {
                if b.trim().is_empty() {
                    Err("200 OK has no SDP answer".to_string())
                } else {
                    sdp::parse_answer(b, &leg.offer).map_err(|e| e.to_string())
                }
            });
        let mut dialog = Dialog {
            remote_target: msg.contact_uri(),
            // The UAC's route set is the Record-Route list in reverse (RFC 3261 §12.1.2).
            route_set: msg.record_route().into_iter().rev().collect(),
            answer: None,
            ack: Vec::new(),
            reply: None,
        };
        // The ACK of a 2xx is a transaction of its own that nothing answers; it carries the
        // INVITE's credentials (RFC 3261 §13.2.2.4), which a proxy may check.
        let mut ack = leg.in_dialog(
            &dialog,
            Method::Ack,
            leg.invite_cseq,
            &headers::new_branch(),
        );
        if let Some((name, value)) = &leg.invite_credentials {
            ack = ack.header(name, value);
        }
        dialog.ack = ack
            .header("User-Agent", self.cfg.user_agent.clone())
            .build();
        if let (None, Ok(answer)) = (&ending, &answer) {
            dialog.answer = Some(answer.clone());
        }
        let (route, ack) = (leg.route, dialog.ack.clone());
        match (ending, answer) {
            // Answered while the CANCEL was on its way: hang up at once.
            (Some(reason), _) => {
                self.transmit(route, ack);
                self.send_bye(h, now, reason, dialog, AuthState::default());
            }
            (None, Ok(answer)) => {
                leg.state = LegState::Confirmed(dialog);
                self.transmit(route, ack);
                self.call_event(h, CallEvent::Answered { answer });
            }
            (None, Err(why)) => {
                self.transmit(route, ack);
                self.send_bye(
                    h,
                    now,
                    EndReason::BadAnswer(why),
                    dialog,
                    AuthState::default(),
                );
            }
        }
    }

    /// A 2xx from another fork than the dialog's: ACKed along its own route and ended with
    /// a BYE (RFC 3261 §13.2.2.4), both sent again for each retransmission of it. Its
    /// BYE's response is absorbed. Forks past a few more are only ACKed (a proxy forks to
    /// the phones registered for one number; a flood of tags must not grow the leg).
    fn end_fork(&mut self, h: u64, msg: &Incoming) {
        const MAX_FORKS: usize = 8;
        let Some(leg) = self.legs.get(h) else {
            return;
        };
        if let Some(f) = leg.forks.iter().find(|f| f.remote_tag == msg.to_tag) {
            let (route, ack, bye) = (leg.route, f.ack.clone(), f.bye.clone());
            self.transmit(route, ack);
            self.transmit(route, bye);
            return;
        }
        let room = leg.forks.len() < MAX_FORKS;
        let bye_branch = if room {
            self.branch(Owner::Call(h))
        } else {
            headers::new_branch()
        };
        let ua = self.cfg.user_agent.clone();
        let Some(leg) = self.legs.get_mut(h) else {
            return;
        };
        let fork = Dialog {
            remote_target: msg.contact_uri(),
            route_set: msg.record_route().into_iter().rev().collect(),
            answer: None,
            ack: Vec::new(),
            reply: None,
        };
        let tag = msg.to_tag.as_deref();
        let mut ack = leg.in_dialog_with(
            &fork,
            tag,
            Method::Ack,
            leg.invite_cseq,
            &headers::new_branch(),
        );
        if let Some((name, value)) = &leg.invite_credentials {
            ack = ack.header(name, value);
        }
        let ack = ack.header("User-Agent", ua.clone()).build();
        let route = leg.route;
        if !room {
            self.transmit(route, ack);
            return;
        }
        let bye = leg
            .in_dialog_with(&fork, tag, Method::Bye, leg.invite_cseq + 1, &bye_branch)
            .header("User-Agent", ua)
            .build();
        leg.forks.push(Fork {
            remote_tag: msg.to_tag.clone(),
            ack: ack.clone(),
            bye: bye.clone(),
            bye_branch,
        });
        self.transmit(route, ack);
        self.transmit(route, bye);
    }

    fn on_invite_failure(&mut self, h: u64, now: Instant, msg: Incoming) {
        let status = msg.status().unwrap_or(0);
        let timers = self.cfg.timers;
        let Some(leg) = self.legs.get_mut(h) else {
            return;
        };
        let Some(tx) = leg.invite.take() else {
            return;
        };
        tx.finish(&mut leg.timers);
        let ack = leg.non_2xx_ack(&msg, &tx.branch);
        leg.completed.push(Completed {
            branch: tx.branch.clone(),
            cseq: leg.invite_cseq,
            ack: ack.clone(),
            until: now + timers.d(leg.route.transport),
        });
        leg.set_completed_timer();
        let route = leg.route;
        self.transmit(route, ack);
        let Some(leg) = self.legs.get_mut(h) else {
            return;
        };
        let ending = match &leg.state {
            LegState::Calling { hangup } => hangup.clone(),
            LegState::Proceeding => None,
            LegState::Cancelling { reason, .. } => Some(reason.clone()),
            // A final response after the answer, or after the end: acknowledged, no more.
            _ => return,
        };
        if let Some(reason) = ending {
            // The 487 (or any final response) to a cancelled INVITE.
            self.finish(h, now, reason);
            return;
        }
        if status == 401 || status == 407 {
            let has = self.trunks[leg.trunk].cfg.credentials.is_some();
            if leg.auth.take_challenge(&msg, has) {
                leg.state = LegState::Calling { hangup: None };
                self.send_invite(h, now);
            } else {
                self.finish(h, now, EndReason::AuthFailed { status });
            }
            return;
        }
        // 503 from the trunk: the service behind it is down; another trunk may do.
        if status == 503 {
            leg.state = LegState::Calling { hangup: None };
            if self.failover(h, now) {
                return;
            }
        }
        let reason = msg.reason();
        self.finish(h, now, EndReason::Rejected { status, reason });
    }

    pub(in crate::ua) fn on_cancel_response(
        &mut self,
        h: u64,
        _now: Instant,
        msg: Incoming,
    ) -> Result<(), String> {
        let Some(leg) = self.legs.get_mut(h) else {
            return Ok(());
        };
        if msg.cseq != leg.invite_cseq {
            return Err("CANCEL response with another CSeq".into());
        }
        if let LegState::Cancelling { cancel, .. } = &leg.state
            && msg.via.branch.as_deref() == Some(cancel.branch.as_str())
            && msg.status().unwrap_or(0) >= 200
        {
            // The CANCEL is answered; the wait for the INVITE's final response goes on.
            leg.timers.stop(LegTimer::CancelRetransmit);
        }
        Ok(())
    }

    pub(in crate::ua) fn on_bye_response(
        &mut self,
        h: u64,
        now: Instant,
        msg: Incoming,
    ) -> Result<(), String> {
        let status = msg.status().unwrap_or(0);
        let timers = self.cfg.timers;
        let Some(leg) = self.legs.get_mut(h) else {
            return Ok(());
        };
        if leg
            .forks
            .iter()
            .any(|f| msg.via.branch.as_deref() == Some(f.bye_branch.as_str()))
        {
            // The answer to the BYE that ended another fork's answer.
            return Ok(());
        }
        let (bye, cseq) = match &mut leg.state {
            LegState::Ending { bye, cseq, .. } => (bye, *cseq),
            // A late answer to a BYE of a call that has ended.
            LegState::Lingering { .. } => return Ok(()),
            _ => return Err(format!("BYE response {status} with no BYE in flight")),
        };
        if msg.via.branch.as_deref() != Some(bye.branch.as_str()) || msg.cseq != cseq {
            return Err(format!("BYE response {status} for another BYE"));
        }
        if status < 200 {
            bye.provisional(&timers, now, &mut leg.timers);
            return Ok(());
        }
        bye.finish(&mut leg.timers);
        let has = self.trunks[leg.trunk].cfg.credentials.is_some();
        let LegState::Ending {
            reason,
            dialog,
            mut auth,
            ..
        } = leg.take_state()
        else {
            return Ok(());
        };
        if (status == 401 || status == 407) && auth.take_challenge(&msg, has) {
            self.send_bye(h, now, reason, dialog, auth);
            return Ok(());
        }
        leg.state = LegState::Confirmed(dialog);
        self.finish(h, now, reason);
        Ok(())
    }
}
