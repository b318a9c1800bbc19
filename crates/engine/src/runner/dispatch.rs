//! The dispatcher: claims queued challenges as this node's slots allow, renews this node's
//! claims, marks `interrupted` the challenges whose node stopped, and hangs up the calls
//! someone else decided.

use std::sync::Arc;
use std::time::Duration;

use store::{ChallengeId, ChallengeState, StoreError, now_ms};
use tracing::{info, warn};

use super::Runner;

impl Runner {
    /// Takes the queued challenges (those this node or another accepted and nobody is
    /// calling) as capacity allows: at once when woken ([`Runner::wake`], or a call here
    /// ended), and every half second at most (sooner with a short lease). It also renews this
    /// node's claims and marks `interrupted` the challenges whose node's claim lapsed.
    /// Meanwhile it follows the store's changes: a challenge this node is calling that someone
    /// cancelled (through any node's API) or marked interrupted is hung up at once. Runs until
    /// this task is aborted.
    pub fn dispatch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut changes = me.store.subscribe();
            let renew_every = me.lease / 3;
            let mut renewed = tokio::time::Instant::now();
            let mut swept = tokio::time::Instant::now() - Duration::from_secs(60);
            loop {
                me.claim_queued().await;
                let now = tokio::time::Instant::now();
                if now.duration_since(renewed) >= renew_every {
                    renewed = now;
                    if let Err(e) = me.renew().await {
                        warn!(error = %e, "renewing this node's claims");
                    }
                }
                if now.duration_since(swept) >= Duration::from_secs(1) {
                    swept = now;
                    match me.store.interrupt_lapsed(now_ms()).await {
                        Ok(ids) => {
                            for id in ids {
                                warn!(challenge = %id, "interrupted: the node calling it stopped");
                            }
                        }
                        Err(e) => warn!(error = %e, "looking for lapsed claims"),
                    }
                }
                me.follow_changes(&mut changes, renew_every.min(Duration::from_millis(500)))
                    .await;
            }
        })
    }

    /// Claims queued challenges and calls them while this node has room: each claim takes
    /// a slot first, so a node without room claims nothing. With room for many, one claim
    /// takes up to [`store::MAX_CLAIM`] at once (the oldest), one slot each.
    async fn claim_queued(self: &Arc<Self>) {
        loop {
            let mut slots = Vec::new();
            while slots.len() < store::MAX_CLAIM {
                match self.slot() {
                    Some(slot) => slots.push(slot),
                    None => break,
                }
            }
            if slots.is_empty() {
                return;
            }
            let t = now_ms();
            let ids = match self
                .store
                .claim_oldest(t, self.lease_until(t), slots.len())
                .await
            {
                Ok(ids) => ids,
                Err(e) => {
                    warn!(error = %e, "claiming queued challenges");
                    return;
                }
            };
            let full = ids.len() == slots.len();
            // The slots left over go back with `slots` dropped.
            for (id, slot) in ids.into_iter().zip(slots.drain(..)) {
                self.spawn_call(id, slot);
            }
            if !full {
                return;
            }
        }
    }

    /// Follows the store's changes for `tick`, or until woken: hangs up the calls here
    /// that someone else decided.
    async fn follow_changes(
        &self,
        changes: &mut tokio::sync::broadcast::Receiver<store::Change>,
        tick: Duration,
    ) {
        let tick = tokio::time::sleep(tick);
        tokio::pin!(tick);
        loop {
            tokio::select! {
                () = &mut tick => return,
                () = self.wake.notified() => return,
                change = changes.recv() => match change {
                    Ok(c) if decided_elsewhere(c.state) => self.hang_up_decided(&c.id),
                    Ok(_) if cfg!(debug_assertions) => store::fault::point("dispatcher"),
                    Ok(_) => {}
                    // Missed some: read the state of every call in progress.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Err(e) = self.hang_up_all_decided().await {
                            warn!(error = %e, "reading the calls' challenges");
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        (&mut tick).await;
                        return;
                    }
                },
            }
        }
    }

    /// Hangs up the call of challenge `id`, if this node is placing it, because someone
    /// else decided the challenge.
    fn hang_up_decided(&self, id: &ChallengeId) {
        if self.cancel(id) {
            info!(challenge = %id, "decided elsewhere (cancelled or interrupted): hanging up");
        }
    }

    /// Hangs up every call in progress here whose challenge someone else decided.
    async fn hang_up_all_decided(&self) -> Result<(), StoreError> {
        let active: Vec<ChallengeId> = self.active_map().keys().cloned().collect();
        for id in active {
            if let Some(c) = self.store.challenge(&id).await?
                && decided_elsewhere(c.state)
            {
                self.hang_up_decided(&id);
            }
        }
        Ok(())
    }

    /// Renews this node's claims; hangs up the calls whose claim was lost (the other nodes
    /// took this node for stopped and marked the challenge `interrupted`) or whose challenge
    /// was cancelled, in case the change's notification did not come.
    async fn renew(&self) -> Result<(), StoreError> {
        let held = self.store.renew_claims(self.lease_until(now_ms())).await?;
        let active: Vec<ChallengeId> = self.active_map().keys().cloned().collect();
        for id in active.iter().filter(|id| !held.contains(id)) {
            if let Some(c) = self.store.challenge(id).await?
                && decided_elsewhere(c.state)
            {
                warn!(challenge = %id, state = %c.state, "no longer this node's call: hanging up");
                self.cancel(id);
            }
        }
        Ok(())
    }
}

/// The decisions made about a call from outside it: cancelled through an API (of any node),
/// or interrupted because its node's claim lapsed. (A call's own verdicts are not: its
/// closing prompt plays on.)
fn decided_elsewhere(state: ChallengeState) -> bool {
    matches!(
        state,
        ChallengeState::Canceled | ChallengeState::Interrupted
    )
}
