//! What arrives is routed, as `quinn_proto::Endpoint::handle` routes a datagram: a
//! response to the client transaction its branch names (a call's, a registration's or a
//! keep-alive's), only if it came from where the request went and names the request; a
//! request to the dialog it belongs to, or to the answers of [`super::uas`]. The work of
//! each is done by its owner.

use std::net::SocketAddr;
use std::time::Instant;

use rsip::Method;

use super::headers::{self, Route};
use super::{EndReason, Event, UserAgent};
use crate::Transport;
use crate::message::{self, Incoming};

/// Who a client transaction belongs to: responses find it through its branch, which is
/// random and says nothing of its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    Call(u64),
    Register(usize),
    Options(usize),
}

/// Whether a response names the request it claims to answer: its Call-ID, From tag, CSeq
/// number and method.
fn answers(msg: &Incoming, call_id: &str, from_tag: &str, cseq: u32, method: Method) -> bool {
    msg.call_id == call_id
        && msg.from_tag.as_deref() == Some(from_tag)
        && msg.cseq == cseq
        && msg.cseq_method == method
}

impl UserAgent {
    /// A new branch for a client transaction of `owner`, under which its responses are
    /// found.
    pub(super) fn branch(&mut self, owner: Owner) -> String {
        let branch = headers::new_branch();
        self.txs.insert(branch.clone(), owner);
        if let Owner::Call(h) = owner
            && let Some(leg) = self.legs.get_mut(h)
        {
            leg.branches.push(branch.clone());
        }
        branch
    }

    /// Takes bytes that arrived on `local` from `from`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        transport: Transport,
        local: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        self.receive(now, transport, local, from, bytes);
        self.legs.sync();
    }

    fn receive(
        &mut self,
        now: Instant,
        transport: Transport,
        local: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        let msg = match message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.emit(Event::Discarded {
                    from,
                    reason: e.to_string(),
                });
                return;
            }
        };
        if msg.status().is_some() {
            if let Err(why) = self.on_response(now, msg, transport, from) {
                self.emit(Event::Discarded { from, reason: why });
            }
        } else {
            let reply = Route {
                transport,
                local,
                remote: from,
                sent_by: local,
            };
            self.on_request(now, msg, reply);
        }
    }

    /// A response goes to the transaction its branch names, and only if it came from where
    /// the request went and names the same Call-ID, From tag, CSeq number and method: a
    /// forged response from anywhere else is dropped (the reason is returned).
    fn on_response(
        &mut self,
        now: Instant,
        msg: Incoming,
        transport: Transport,
        from: SocketAddr,
    ) -> Result<(), String> {
        let status = msg.status().unwrap_or(0);
        let owner = msg
            .via
            .branch
            .as_deref()
            .and_then(|b| self.txs.get(b))
            .copied()
            .ok_or_else(|| format!("response {status} matches no transaction"))?;
        let trunk = match owner {
            Owner::Call(h) => self.legs.get(h).map(|l| l.trunk),
            Owner::Register(i) | Owner::Options(i) => Some(i),
        }
        .filter(|&i| i < self.trunks.len())
        .ok_or_else(|| format!("response {status} for a transaction that ended"))?;
        if !self.trunks[trunk].cfg.sends_responses_from(transport, from) {
            return Err(format!(
                "response {status} over {transport} from {from}, not from trunk {:?}",
                self.trunks[trunk].cfg.name
            ));
        }
        let mismatch = |what: &str| format!("response {status} with another {what}");
        match owner {
            Owner::Call(h) => {
                let Some(leg) = self.legs.get(h) else {
                    return Err(mismatch("call"));
                };
                if msg.call_id != leg.call_id {
                    return Err(mismatch("Call-ID"));
                }
                if msg.from_tag.as_deref() != Some(leg.local_tag.as_str()) {
                    return Err(mismatch("From tag"));
                }
                match msg.cseq_method {
                    Method::Invite => self.on_invite_response(h, now, msg),
                    Method::Cancel => self.on_cancel_response(h, now, msg),
                    Method::Bye => self.on_bye_response(h, now, msg),
                    _ => Err(mismatch("CSeq method")),
                }
            }
            Owner::Register(i) => {
                let tr = &self.trunks[i];
                if !answers(
                    &msg,
                    &tr.reg_call_id,
                    &tr.reg_tag,
                    tr.reg_seq,
                    Method::Register,
                ) {
                    return Err(mismatch("Call-ID, From tag or CSeq"));
                }
                self.on_register_response(i, now, msg);
                Ok(())
            }
            Owner::Options(i) => {
                let tr = &self.trunks[i];
                let (call_id, tag) = (&tr.options_call_id, &tr.options_tag);
                if !answers(&msg, call_id, tag, tr.options_seq, Method::Options) {
                    return Err(mismatch("Call-ID, From tag or CSeq"));
                }
                self.on_options_response(i, now, msg);
                Ok(())
            }
        }
    }

    /// The transport could not reach `remote` (TCP connect refused, ...): transactions
    /// waiting on it fail now instead of at Timer B/F.
    pub fn handle_transport_error(
        &mut self,
        now: Instant,
        transport: Transport,
        remote: SocketAddr,
    ) {
        let hit = |r: &Route| r.transport == transport && r.remote == remote;
        let handles: Vec<u64> = self
            .legs
            .iter()
            .filter(|(_, l)| hit(&l.route) && !l.is_over())
            .map(|(h, _)| *h)
            .collect();
        for i in 0..self.trunks.len() {
            if hit(&self.trunks[i].route()) {
                // The keep-alive says down at once; the next one is scheduled as usual.
                self.end_options(i);
                self.set_trunk_up(i, false);
            }
        }
        for h in handles {
            if self.legs.get(h).is_some_and(super::leg::Leg::may_fail_over) && self.failover(h, now)
            {
                continue;
            }
            let Some(reason) = self
                .legs
                .get(h)
                .and_then(|l| l.end_reason(EndReason::TransportError, EndReason::Hangup))
            else {
                continue;
            };
            self.finish(h, now, reason);
        }
        self.legs.sync();
    }
}
