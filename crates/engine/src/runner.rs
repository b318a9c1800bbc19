//! Runs a stored challenge's call: moves the challenge through `calling → ringing →
//! answered → decision` in the store as the call progresses, and writes the call log (the
//! call with its outcome, timings, RTP figures and keys).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::Language;
use policy::Policy;
use store::{
    CallEnd, CallStep, ChallengeState, KeyRecord, NewCall, PhoneNumber, StepKind, Store,
    StoreError, now_ms,
};
use tokio::sync::{Notify, mpsc};
use tracing::{Instrument, info, info_span, warn};

use crate::call::{CallReport, Outcome, Prompts, Report, ScriptConfig};
use crate::call_driver::{MediaConfig, VerifyError, verify};
use crate::legs::{Leg, plan};
use crate::sip_driver::SipEndpoint;

/// Why a challenge's call could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The call could not be placed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The challenge does not exist.
    #[error("no challenge {0}")]
    Unknown(String),
}

/// Places the calls of stored challenges.
pub struct Runner {
    store: Store,
    endpoint: Arc<SipEndpoint>,
    media: MediaConfig,
    script: ScriptConfig,
    prompts: HashMap<Language, Prompts>,
    fallback: bool,
    /// What a further phone of a challenge is checked against before it is called.
    policy: Arc<Policy>,
    /// How long a claim holds unless renewed (renewed every third of it).
    lease: Duration,
    /// The most calls at once on this node.
    capacity: usize,
    /// The challenges being called here, with what hangs each up.
    active: Mutex<HashMap<String, Arc<Notify>>>,
    /// Stopping: no new calls (the claims of the calls in progress are still renewed).
    draining: std::sync::atomic::AtomicBool,
    /// Claimed by the dispatcher and not yet among the active ones (so that a burst of
    /// claims stays within the capacity).
    starting: std::sync::atomic::AtomicUsize,
    /// A call's task panicked: this node can no longer be trusted to finish its calls.
    panicked: std::sync::OnceLock<String>,
}

/// Removes a challenge from the active ones when its run ends, however it ends.
struct Active<'a>(&'a Runner, String);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active_map().remove(&self.1);
        metrics::gauge!("callverify_active_calls").decrement(1.0);
    }
}

impl Runner {
    /// A runner that places calls through `endpoint` and records them in `store`.
    pub fn new(
        store: Store,
        endpoint: Arc<SipEndpoint>,
        media: MediaConfig,
        script: ScriptConfig,
        prompts: HashMap<Language, Prompts>,
    ) -> Runner {
        Runner {
            store,
            endpoint,
            media,
            script,
            prompts,
            fallback: false,
            policy: Arc::new(Policy::default()),
            lease: Duration::from_secs(15),
            capacity: 500,
            active: Mutex::new(HashMap::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            starting: std::sync::atomic::AtomicUsize::new(0),
            panicked: std::sync::OnceLock::new(),
        }
    }

    /// Why this runner cannot go on, if it cannot: a call's task panicked, or the SIP
    /// endpoint stopped. The gateway then stops so that a supervisor restarts it (the
    /// challenges left in a call become `interrupted`).
    pub fn failure(&self) -> Option<String> {
        if let Some(why) = self.panicked.get() {
            return Some(why.clone());
        }
        (!self.endpoint.is_running()).then(|| "the SIP endpoint stopped".to_string())
    }

    /// Calls the queued challenge `id` in a task of its own (see [`Runner::run`]); a panic
    /// in it is logged and makes [`Runner::failure`] say so.
    pub fn spawn_run(self: &Arc<Self>, id: String) {
        let (me, challenge) = (self.clone(), id.clone());
        self.spawn_call(id, async move { me.run(&challenge).await.map(|_| ()) });
    }

    /// Runs a challenge's call in a task of its own: the one way calls start, from the API
    /// and from the dispatcher.
    fn spawn_call(
        self: &Arc<Self>,
        id: String,
        call: impl std::future::Future<Output = Result<(), RunError>> + Send + 'static,
    ) {
        use futures_util::FutureExt;
        let me = self.clone();
        tokio::spawn(async move {
            let run = std::panic::AssertUnwindSafe(call).catch_unwind();
            match run.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(challenge = %id, error = %e, "the challenge's call failed"),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(challenge = %id, panic = %what, "a call's task panicked");
                    let _ = me.panicked.set(format!("a call's task panicked: {what}"));
                }
            }
        });
    }

    /// How long this node's claim on a challenge it calls holds unless renewed (15 s by
    /// default): a node that stops lets its claims lapse and the other nodes mark those
    /// challenges `interrupted`.
    pub fn with_lease(mut self, lease: Duration) -> Runner {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// The most calls this node places at once (500 by default); challenges beyond wait
    /// queued for this node or another.
    pub fn with_capacity(mut self, calls: usize) -> Runner {
        self.capacity = calls.max(1);
        self
    }

    /// From now on no new calls: queued challenges are left to other nodes (or the next
    /// start); the calls in progress go on, their claims renewed.
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether a new call may start here: not stopping, and below the capacity with the
    /// calls in progress and those claimed and about to start.
    fn may_start(&self) -> bool {
        let starting = self.starting.load(std::sync::atomic::Ordering::Acquire);
        !self.draining() && self.active_calls() + starting < self.capacity
    }

    fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Acquire)
    }

    fn lease_until(&self, now: i64) -> i64 {
        now + self.lease.as_millis() as i64
    }

    /// Takes the queued challenges (those this node or another accepted and nobody is
    /// calling) as capacity allows, renews this node's claims, and marks `interrupted` the
    /// challenges whose node's claim lapsed, every half second at most (sooner with a short
    /// lease). Meanwhile it follows the store's changes: a challenge this node is calling
    /// that someone cancelled (through any node's API) or marked interrupted is hung up at
    /// once. Runs until this task is aborted.
    pub fn dispatch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut changes = me.store.subscribe();
            let renew_every = me.lease / 3;
            let mut renewed = tokio::time::Instant::now();
            let mut swept = tokio::time::Instant::now() - Duration::from_secs(60);
            loop {
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
                while me.may_start() {
                    let t = now_ms();
                    match me.store.claim_next(t, me.lease_until(t)).await {
                        Ok(Some(id)) => {
                            me.starting
                                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                            let (r, challenge) = (me.clone(), id.clone());
                            me.spawn_call(id, async move {
                                r.run_claimed(&challenge).await.map(|_| ())
                            });
                        }
                        Ok(None) => break,
                        Err(e) => {
                            warn!(error = %e, "claiming a queued challenge");
                            break;
                        }
                    }
                }
                let tick = tokio::time::sleep(renew_every.min(Duration::from_millis(500)));
                tokio::pin!(tick);
                loop {
                    tokio::select! {
                        () = &mut tick => break,
                        change = changes.recv() => match change {
                            Ok(c) if decided_elsewhere(c.state) => me.hang_up_decided(&c.id),
                            Ok(_) if cfg!(debug_assertions) => store::fault::point("dispatcher"),
                            Ok(_) => {}
                            // Missed some: read the state of every call in progress.
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                if let Err(e) = me.hang_up_all_decided().await {
                                    warn!(error = %e, "reading the calls' challenges");
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                (&mut tick).await;
                                break;
                            }
                        },
                    }
                }
            }
        })
    }

    /// Hangs up the call of challenge `id`, if this node is placing it, because someone
    /// else decided the challenge.
    fn hang_up_decided(&self, id: &str) {
        if self.cancel(id) {
            info!(challenge = %id, "decided elsewhere (cancelled or interrupted): hanging up");
        }
    }

    /// Hangs up every call in progress here whose challenge someone else decided.
    async fn hang_up_all_decided(&self) -> Result<(), StoreError> {
        let active: Vec<String> = self.active_map().keys().cloned().collect();
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
        let active: Vec<String> = self.active_map().keys().cloned().collect();
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

    /// Whether a user's sign-in that ends `no_answer` or `busy` on the primary phone calls
    /// the user's verified fallback phone next (off by default).
    pub fn with_fallback(mut self, on: bool) -> Runner {
        self.fallback = on;
        self
    }

    /// The policy that a challenge's further phones (a fallback, the current primary phone an
    /// enrolment must be approved on) are checked and counted against before they are
    /// called (by default none is allowed: [`Policy::default`] allows no country).
    pub fn with_policy(mut self, policy: Arc<Policy>) -> Runner {
        self.policy = policy;
        self
    }

    /// The SIP endpoint.
    pub fn endpoint(&self) -> &Arc<SipEndpoint> {
        &self.endpoint
    }

    fn active_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many challenges are being called by this runner.
    pub fn active_calls(&self) -> usize {
        self.active_map().len()
    }

    /// Hangs up the call of challenge `id` if this runner is placing it (`true`). The
    /// challenge's state is the caller's to set (the API marks it `canceled` first).
    pub fn cancel(&self, id: &str) -> bool {
        match self.active_map().get(id) {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }

    /// Claims and calls the challenge `id` (which must be `queued`) and records everything;
    /// returns the state it ended in, or `None` when it was no longer queued (taken by
    /// another node, cancelled, expired) or this node is at its capacity (it stays queued
    /// for [`Runner::dispatch`]).
    pub async fn run(&self, id: &str) -> Result<Option<ChallengeState>, RunError> {
        if !self.may_start() {
            return Ok(None);
        }
        let t = now_ms();
        self.call(id, Some(self.lease_until(t))).await
    }

    /// Calls the challenge `id` that this node has claimed.
    async fn run_claimed(&self, id: &str) -> Result<Option<ChallengeState>, RunError> {
        self.call(id, None).await
    }

    async fn call(
        &self,
        id: &str,
        claim_until: Option<i64>,
    ) -> Result<Option<ChallengeState>, RunError> {
        store::fault::point("call");
        // Registered before the claim, so that a cancel in between is not lost.
        let hangup = Arc::new(Notify::new());
        self.active_map().insert(id.to_string(), hangup.clone());
        if claim_until.is_none() {
            // The dispatcher's claim is now among the active ones.
            self.starting
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
        metrics::gauge!("callverify_active_calls").increment(1.0);
        let _active = Active(self, id.to_string());
        let challenge = self
            .store
            .challenge(id)
            .await?
            .ok_or_else(|| RunError::Unknown(id.to_string()))?;
        match claim_until {
            Some(until) => {
                if !self.store.claim(id, now_ms(), until).await? {
                    return Ok(None);
                }
            }
            // Claimed by the dispatcher before it was registered (read since): canceled in
            // between?
            None => {
                if challenge.state != ChallengeState::Calling {
                    return Ok(None);
                }
            }
        }
        let lang = challenge.language.parse().unwrap_or(Language::En);
        let prompts = match self
            .prompts
            .get(&lang)
            .or_else(|| self.prompts.values().next())
        {
            Some(p) => p.clone(),
            None => {
                let reason = "no prompts are loaded";
                self.store
                    .transition(id, ChallengeState::Failed, now_ms(), Some(reason), None)
                    .await?;
                return Ok(Some(ChallengeState::Failed));
            }
        };
        let legs = plan(&self.store, self.fallback, &challenge).await?;
        // The call before, if it did not decide: its outcome and its id in the call log.
        let mut before: Option<(Outcome, String)> = None;
        for (i, leg) in legs.iter().enumerate() {
            if !leg.admitted
                && let Err(refusal) = self
                    .policy
                    .admit_call(
                        &self.store,
                        challenge.user_id.as_deref(),
                        &challenge.api_key_id,
                        &leg.phone,
                        now_ms(),
                    )
                    .await?
            {
                self.not_called(id, leg, &refusal, before.as_ref()).await?;
                break;
            }
            let next = i + 1 < legs.len();
            let goes_on = |o: &Outcome| next && (leg.goes_on)(o);
            let (outcome, call_id) = self
                .call_one(
                    id,
                    &leg.phone,
                    prompts.clone(),
                    &hangup,
                    &goes_on,
                    leg.label,
                )
                .await?;
            if !goes_on(&outcome) {
                break;
            }
            info!(challenge = %id, outcome = outcome.name(), "calling the next phone");
            before = Some((outcome, call_id));
        }
        Ok(self.store.challenge(id).await?.map(|c| c.state))
    }

    /// A further phone the policy refused: the challenge ends with the outcome of the call
    /// before (or `failed` when there was none), and the refusal is in the log, in the
    /// challenge's reason and in the detail of the call before.
    async fn not_called(
        &self,
        id: &str,
        leg: &Leg,
        refusal: &policy::Refusal,
        before: Option<&(Outcome, String)>,
    ) -> Result<(), RunError> {
        let which = leg.label.unwrap_or("the fallback phone");
        let note = format!("{which} ({}) was not called: {refusal}", leg.phone);
        warn!(challenge = %id, to = %leg.phone, refusal = %refusal, "{which} was not called");
        let (state, reason, status) = match before {
            Some((outcome, call_id)) => {
                self.store.note_call(call_id, &note).await?;
                let reason = match outcome.reason() {
                    Some(r) => format!("{r}; {note}"),
                    None => note,
                };
                (outcome.state(), reason, outcome.sip_status().map(i64::from))
            }
            None => (ChallengeState::Failed, note, None),
        };
        self.store
            .transition(id, state, now_ms(), Some(&reason), status)
            .await?;
        Ok(())
    }

    /// One call of a challenge; an outcome after which the next phone is called (`goes_on`)
    /// does not decide the challenge. `label` names the phone in the reason of a decision
    /// that is not an approval (for an enrolment's two phones). Returns the outcome and the
    /// call's id.
    async fn call_one(
        &self,
        id: &str,
        phone: &PhoneNumber,
        prompts: Prompts,
        hangup: &Notify,
        goes_on: &(dyn Fn(&Outcome) -> bool + Sync),
        label: Option<&str>,
    ) -> Result<(Outcome, String), RunError> {
        let call_id = store::new_id("call");
        let span = info_span!("call", challenge = %id, call = %call_id, to = %phone);
        self.store
            .start_call(&NewCall {
                id: call_id.clone(),
                challenge_id: id.to_string(),
                phone_masked: phone.masked(),
                started_at_ms: now_ms(),
            })
            .await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let invite = std::time::Instant::now();
        let call = verify(
            &self.endpoint,
            &self.media,
            self.script.clone(),
            prompts,
            phone,
            Some(tx),
            hangup.notified(),
        )
        .instrument(span.clone());
        let decides = |o: &Outcome| !goes_on(o);
        let decision = |o: &Outcome| {
            let (state, reason) = (o.state(), o.reason().map(str::to_string));
            let status = o.sip_status().map(i64::from);
            match label {
                Some(which) if state != ChallengeState::Approved => {
                    let what = reason.unwrap_or_else(|| o.name().to_string());
                    (
                        state,
                        Some(format!("{which} did not approve: {what}")),
                        status,
                    )
                }
                _ => (state, reason, status),
            }
        };
        let record = async {
            let mut finished = None;
            let mut steps = Vec::new();
            while let Some(r) = rx.recv().await {
                if steps.len() < MAX_STEPS
                    && let Some(s) = step_of(&r, invite.elapsed().as_millis() as i64)
                {
                    steps.push(s);
                }
                let step = match &r {
                    Report::Ringing { .. } => Some((ChallengeState::Ringing, None, None)),
                    Report::Answered { .. } => Some((ChallengeState::Answered, None, None)),
                    Report::Verdict(o) if decides(o) => Some(decision(o)),
                    Report::Finished(f) => {
                        finished = Some((**f).clone());
                        decides(&f.outcome).then(|| decision(&f.outcome))
                    }
                    _ => None,
                };
                if let Some((state, reason, status)) = step {
                    self.store
                        .transition_called(id, state, now_ms(), reason.as_deref(), status, phone)
                        .await?;
                }
            }
            Ok::<_, StoreError>(finished.map(|f| (f, steps)))
        };
        let (placed, recorded) = tokio::join!(call, record);
        let (report, steps) = match placed {
            Ok(f) => recorded?.unwrap_or((f.report, Vec::new())),
            Err(e) => {
                let reason = e.to_string();
                span.in_scope(|| warn!(error = %reason, "the call could not be placed"));
                metrics::counter!("callverify_calls_total", "outcome" => "failed").increment(1);
                self.store
                    .transition(id, ChallengeState::Failed, now_ms(), Some(&reason), None)
                    .await?;
                self.store
                    .finish_call(
                        &call_id,
                        &CallEnd {
                            detail: Some(reason),
                            ..CallEnd::new(ChallengeState::Failed, now_ms())
                        },
                    )
                    .await?;
                return Err(e.into());
            }
        };
        let name = report.outcome.name();
        metrics::counter!("callverify_calls_total", "outcome" => name).increment(1);
        if let Some(ms) = report.timings.post_dial_delay_ms {
            metrics::histogram!("callverify_post_dial_delay_seconds").record(ms as f64 / 1e3);
        }
        if let Some(ms) = report.timings.time_to_verdict_ms {
            metrics::histogram!("callverify_time_to_verdict_seconds").record(ms as f64 / 1e3);
        }
        span.in_scope(|| {
            info!(
                outcome = name,
                detail = report.detail.as_deref(),
                "call ended"
            )
        });
        let end = CallEnd {
            steps,
            ..call_end(&report)
        };
        if !self.store.finish_call(&call_id, &end).await? {
            warn!(call = %call_id, "the call had already ended in the log");
        }
        Ok((report.outcome, call_id))
    }
}

/// At most this many steps of a call are kept in the call log.
const MAX_STEPS: usize = 256;

/// The decisions made about a call from outside it: cancelled through an API (of any node),
/// or interrupted because its node's claim lapsed. (A call's own verdicts are not: its
/// closing prompt plays on.)
fn decided_elsewhere(state: ChallengeState) -> bool {
    matches!(
        state,
        ChallengeState::Canceled | ChallengeState::Interrupted
    )
}

/// The call log's step for a report, `at_ms` after the INVITE.
fn step_of(r: &Report, at_ms: i64) -> Option<CallStep> {
    let (kind, detail) = match r {
        Report::Calling { trunk } => (StepKind::Invite, format!("INVITE through {trunk}")),
        Report::Ringing { status } => (StepKind::Sip, status_line(*status)),
        Report::Answered { codec } => (StepKind::Sip, format!("200 OK ({})", codec.name())),
        Report::Prompt(p) => (StepKind::Prompt, p.file_stem().to_string()),
        Report::Key(k) => {
            return Some(CallStep {
                at_ms: k.at_ms as i64,
                kind: StepKind::Key,
                detail: format!("{} ({})", k.digit, k.source),
            });
        }
        Report::KeyIgnored(k) => {
            return Some(CallStep {
                at_ms: k.at_ms as i64,
                kind: StepKind::Key,
                detail: format!(
                    "{} ({}) before the instructions: ignored",
                    k.digit, k.source
                ),
            });
        }
        Report::Verdict(o) => (StepKind::Verdict, o.name().to_string()),
        Report::Finished(f) => (
            StepKind::End,
            match (&f.outcome, &f.detail) {
                (
                    Outcome::Failed {
                        status: Some(s), ..
                    },
                    _,
                ) => format!("failed: {}", status_line(*s)),
                (o, Some(d)) => format!("{}: {d}", o.name()),
                (o, None) => o.name().to_string(),
            },
        ),
    };
    Some(CallStep {
        at_ms,
        kind,
        detail,
    })
}

/// `180 Ringing`: a status with its usual reason phrase, for people reading the log.
fn status_line(code: u16) -> String {
    let s = sip::SipStatus::from(code);
    format!("{s} {}", s.reason())
}

fn call_end(r: &CallReport) -> CallEnd {
    let t = &r.timings;
    let ms = |v: Option<u64>| v.map(|x| x as i64);
    CallEnd {
        outcome: r.outcome.state(),
        sip_status: r.outcome.sip_status().map(i64::from),
        detail: r.detail.clone(),
        trunk: r.trunk.clone(),
        ended_at_ms: now_ms(),
        post_dial_delay_ms: ms(t.post_dial_delay_ms),
        time_to_answer_ms: ms(t.time_to_answer_ms),
        time_to_key_ms: ms(t.time_to_key_ms),
        time_to_verdict_ms: ms(t.time_to_verdict_ms),
        packets_sent: r.media.packets_sent as i64,
        packets_received: r.media.packets_received as i64,
        packets_lost: r.media.packets_lost,
        jitter_ms: r.media.jitter_ms,
        packets_rejected: r.media.packets_rejected as i64,
        srtp: r.media.srtp,
        keys: r
            .keys
            .iter()
            .filter_map(|k| {
                Some(KeyRecord {
                    // A report's keys are made from a Digit, so every one reads back.
                    digit: store::Digit::from_char(k.digit)?,
                    source: k.source,
                    at_ms: k.at_ms as i64,
                })
            })
            .collect(),
        steps: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome) -> CallReport {
        CallReport {
            outcome,
            detail: None,
            trunk: None,
            keys: Vec::new(),
            timings: Default::default(),
            media: Default::default(),
        }
    }

    #[test]
    fn the_call_log_names_sip_statuses_with_their_phrases() {
        let ringing = step_of(&Report::Ringing { status: 180 }, 120).unwrap();
        assert_eq!(
            (ringing.kind, ringing.detail.as_str()),
            (StepKind::Sip, "180 Ringing")
        );
        let busy = report(Outcome::Failed {
            status: Some(486),
            reason: "486 Busy Here".into(),
        });
        let end = step_of(&Report::Finished(Box::new(busy.clone())), 900).unwrap();
        assert_eq!(
            (end.kind, end.detail.as_str()),
            (StepKind::End, "failed: 486 Busy Here")
        );
        let logged = call_end(&busy);
        assert_eq!(
            (logged.outcome, logged.sip_status),
            (ChallengeState::Failed, Some(486))
        );
        let logged = call_end(&report(Outcome::Busy));
        assert_eq!(
            (logged.outcome, logged.sip_status),
            (ChallengeState::Busy, None)
        );
    }
}
