//! Runs a stored challenge's call: moves the challenge through `calling → ringing →
//! answered → decision` in the store as the call progresses, and writes the call log (the
//! call with its outcome, timings, RTP figures and keys).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::Language;
use policy::Policy;
use store::{
    CallEnd, CallId, CallStep, ChallengeId, ChallengeState, NewCall, PhoneNumber, StepKind, Store,
    StoreError, now_ms,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{Instrument, info, info_span, warn};

use crate::call::{CallReport, Confirmation, Outcome, Prompts, Report, ScriptConfig};
use crate::call_driver::{MediaConfig, VerifyError, verify};
use crate::legs::{Leg, plan};
use crate::sip_driver::SipEndpoint;

mod dispatch;

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
    Unknown(ChallengeId),
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
    /// One permit for each call this node may place at once: a call holds one from before
    /// its claim until it ends, so the capacity is checked and counted in this one place.
    slots: Arc<Semaphore>,
    /// The challenges being called here, with what hangs each up.
    active: Mutex<HashMap<ChallengeId, Arc<Notify>>>,
    /// Stopping: no new calls (the claims of the calls in progress are still renewed).
    draining: std::sync::atomic::AtomicBool,
    /// Wakes the dispatcher at once: a challenge was queued here, or a call ended.
    wake: Notify,
    /// A call's task panicked: this node can no longer be trusted to finish its calls.
    panicked: std::sync::OnceLock<String>,
    /// The key of the spoken codes' hashes (the API checks typed codes with the same key).
    code_key: Vec<u8>,
}

/// Removes a challenge from the active ones when its run ends, however it ends.
struct Active<'a>(&'a Runner, ChallengeId);

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
            slots: Arc::new(Semaphore::new(500)),
            active: Mutex::new(HashMap::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            wake: Notify::new(),
            panicked: std::sync::OnceLock::new(),
            code_key: Vec::new(),
        }
    }

    /// The key that spoken codes are hashed with before they are stored (the API's token
    /// secret: it checks typed codes with it). Empty by default.
    pub fn with_code_key(mut self, key: &[u8]) -> Runner {
        self.code_key = key.to_vec();
        self
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

    /// A challenge was queued: the dispatcher claims it (or an older one) at once if this
    /// node has room for another call.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the challenge `id`, claimed by this node, in a task of its own that holds `slot`
    /// until the call ends; a panic in it is logged and makes [`Runner::failure`] say so.
    fn spawn_call(self: &Arc<Self>, id: ChallengeId, slot: OwnedSemaphorePermit) {
        use futures_util::FutureExt;
        let me = self.clone();
        tokio::spawn(async move {
            let run = std::panic::AssertUnwindSafe(me.call(&id)).catch_unwind();
            let ended = run.await;
            drop(slot);
            me.wake();
            match ended {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(challenge = %id, error = %e, "the challenge's call failed"),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(std::string::ToString::to_string)
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
        self.capacity = calls.clamp(1, Semaphore::MAX_PERMITS);
        self.slots = Arc::new(Semaphore::new(self.capacity));
        self
    }

    /// From now on no new calls: queued challenges are left to other nodes (or the next
    /// start); the calls in progress go on, their claims renewed.
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// A slot for a new call, if one may start here: not stopping, and below the capacity.
    fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if self.draining() {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }

    fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Acquire)
    }

    fn lease_until(&self, now: i64) -> i64 {
        now + self.lease.as_millis() as i64
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

    fn active_map(&self) -> std::sync::MutexGuard<'_, HashMap<ChallengeId, Arc<Notify>>> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many calls this runner is placing (claimed challenges, from their claim to the
    /// end of their call).
    pub fn active_calls(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// Hangs up the call of challenge `id` if this runner is placing it (`true`). The
    /// challenge's state is the caller's to set (the API marks it `canceled` first).
    pub fn cancel(&self, id: &ChallengeId) -> bool {
        match self.active_map().get(id) {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }

    /// Claims the challenge `id` (which must be `queued`) and calls it in this task, in one
    /// of this node's slots, recording everything; returns the state it ended in, or `None`
    /// when it was no longer queued (taken by another node, cancelled, expired) or this node
    /// has no room (it stays queued for [`Runner::dispatch`]).
    pub async fn run(&self, id: &ChallengeId) -> Result<Option<ChallengeState>, RunError> {
        let Some(_slot) = self.slot() else {
            return Ok(None);
        };
        let t = now_ms();
        if !self.store.claim(id, t, self.lease_until(t)).await? {
            return Ok(None);
        }
        self.call(id).await
    }

    /// Calls the challenge `id` that this node has claimed, phone after phone, and records
    /// everything; `None` when someone else decided it since the claim (cancelled).
    async fn call(&self, id: &ChallengeId) -> Result<Option<ChallengeState>, RunError> {
        store::fault::point("call");
        // Registered before the challenge is read, so that a cancel since the claim is seen
        // either here (in its state) or by the call (its hang-up).
        let hangup = Arc::new(Notify::new());
        self.active_map().insert(id.clone(), hangup.clone());
        metrics::gauge!("callverify_active_calls").increment(1.0);
        let _active = Active(self, id.clone());
        let challenge = self
            .store
            .challenge(id)
            .await?
            .ok_or_else(|| RunError::Unknown(id.clone()))?;
        if challenge.state != ChallengeState::Calling {
            return Ok(None);
        }
        let lang = challenge.language.parse().unwrap_or(Language::En);
        let prompts = match self
            .prompts
            .get(&lang)
            .or_else(|| self.prompts.values().next())
        {
            Some(p) => p.clone(),
            None => {
                let failed = (
                    ChallengeState::Failed,
                    Some("no prompts are loaded".into()),
                    None,
                );
                self.decide(id, failed, None).await?;
                return Ok(Some(ChallengeState::Failed));
            }
        };
        let legs = plan(&self.store, self.fallback, &challenge).await?;
        // The call before, if it did not decide: its outcome and its id in the call log.
        let mut before: Option<(Outcome, CallId)> = None;
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
            let Some(confirmation) = self.confirmation_of(&challenge).await? else {
                let failed = (
                    ChallengeState::Failed,
                    Some("the challenge's number-matching code is missing".into()),
                    None,
                );
                self.decide(id, failed, None).await?;
                return Ok(Some(ChallengeState::Failed));
            };
            let (outcome, call_id) = self
                .call_one(
                    id,
                    &leg.phone,
                    (prompts.clone(), confirmation),
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

    /// What the person must do in a call of `challenge`: for number matching the digits the
    /// page shows, for a spoken code a fresh code from the operating system's generator,
    /// whose keyed hash is stored before the call can read it (a further phone's call reads
    /// a new one). `None`: a number-matching challenge without its two digits.
    async fn confirmation_of(
        &self,
        challenge: &store::Challenge,
    ) -> Result<Option<Confirmation>, StoreError> {
        let digits = |s: &str| -> Option<Vec<store::Digit>> {
            s.chars()
                .map(|c| {
                    c.is_ascii_digit()
                        .then(|| store::Digit::from_char(c))
                        .flatten()
                })
                .collect()
        };
        Ok(match challenge.confirmation {
            store::Confirmation::Pound => Some(Confirmation::Pound),
            store::Confirmation::KeypadCode => challenge
                .display_code
                .as_deref()
                .and_then(digits)
                .and_then(|d| <[store::Digit; 2]>::try_from(d).ok())
                .map(Confirmation::KeypadCode),
            store::Confirmation::SpokenCode => {
                let code = store::draw_spoken_code();
                let hash = store::code_hash(&self.code_key, &challenge.id, &code);
                self.store.set_code_hash(&challenge.id, &hash).await?;
                digits(&code)
                    .and_then(|d| <[store::Digit; 6]>::try_from(d).ok())
                    .map(Confirmation::SpokenCode)
            }
        })
    }

    /// Decides the challenge `id`: the one place of its terminal transition, whatever ended
    /// it (a call's verdict, a call that could not be placed, a phone the policy refused, no
    /// prompts). `called`: the phone whose call gave the verdict (a fraud report blocks that
    /// number too).
    async fn decide(
        &self,
        id: &ChallengeId,
        (state, reason, status): Decision,
        called: Option<&PhoneNumber>,
    ) -> Result<bool, StoreError> {
        let (at, reason) = (now_ms(), reason.as_deref());
        match called {
            Some(p) => {
                self.store
                    .transition_called(id, state, at, reason, status, p)
                    .await
            }
            None => self.store.transition(id, state, at, reason, status).await,
        }
    }

    /// A further phone the policy refused: the challenge ends with the outcome of the call
    /// before (or `failed` when there was none), and the refusal is in the log, in the
    /// challenge's reason and in the detail of the call before.
    async fn not_called(
        &self,
        id: &ChallengeId,
        leg: &Leg,
        refusal: &policy::Refusal,
        before: Option<&(Outcome, CallId)>,
    ) -> Result<(), RunError> {
        let which = leg.label.unwrap_or("the fallback phone");
        let note = format!("{which} ({}) was not called: {refusal}", leg.phone);
        warn!(challenge = %id, to = %leg.phone, refusal = %refusal, "{which} was not called");
        let (state, reason, status) = match before {
            Some((outcome, call_id)) => {
                self.store.note_call(call_id, &note).await?;
                let (state, reason, status) = decision(outcome);
                let reason = match reason {
                    Some(r) => format!("{r}; {note}"),
                    None => note,
                };
                (state, reason, status)
            }
            None => (ChallengeState::Failed, note, None),
        };
        self.decide(id, (state, Some(reason), status), None).await?;
        Ok(())
    }

    /// One call of a challenge; an outcome after which the next phone is called (`goes_on`)
    /// does not decide the challenge. `label` names the phone in the reason of a decision
    /// that is not an approval (for an enrolment's two phones). Returns the outcome and the
    /// call's id.
    async fn call_one(
        &self,
        id: &ChallengeId,
        phone: &PhoneNumber,
        (prompts, confirmation): (Prompts, Confirmation),
        hangup: &Notify,
        goes_on: &(dyn Fn(&Outcome) -> bool + Sync),
        label: Option<&str>,
    ) -> Result<(Outcome, CallId), RunError> {
        let call_id = CallId::new();
        let span = info_span!("call", challenge = %id, call = %call_id, to = %phone);
        self.store
            .start_call(&NewCall {
                id: call_id.clone(),
                challenge_id: id.clone(),
                phone_masked: phone.masked(),
                started_at_ms: now_ms(),
            })
            .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let invite = std::time::Instant::now();
        // The digits of a code are not kept in the call log: only that a digit came.
        let hide_digits = confirmation != Confirmation::Pound;
        let call = verify(
            &self.endpoint,
            &self.media,
            self.script.clone(),
            prompts,
            confirmation,
            phone,
            Some(tx),
            hangup.notified(),
        )
        .instrument(span.clone());
        let verdict = |o: &Outcome| (!goes_on(o)).then(|| labelled(decision(o), o, label));
        let follow = self.follow(id, phone, rx, (invite, hide_digits), &verdict);
        let (placed, steps) = tokio::join!(call, follow);
        let report = match placed {
            Ok(f) => f.report,
            Err(e) => return self.not_placed(id, &call_id, &span, e).await,
        };
        let mut steps = steps?;
        if steps.len() < MAX_STEPS {
            steps.push(end_step(&report, invite.elapsed().as_millis() as i64));
        }
        self.ended(&call_id, &span, &report, steps).await?;
        Ok((report.outcome, call_id))
    }

    /// Follows what a call reports as it happens, until it ends: the challenge's progress
    /// (`ringing`, `answered`) and its verdict, in the store as soon as the call gives it
    /// (before the closing prompt plays); returns the steps for the call log. `verdict` is
    /// what an outcome decides (`None`: the next phone is called).
    async fn follow(
        &self,
        id: &ChallengeId,
        phone: &PhoneNumber,
        mut reports: mpsc::UnboundedReceiver<Report>,
        (invite, hide_digits): (std::time::Instant, bool),
        verdict: &(dyn Fn(&Outcome) -> Option<Decision> + Sync),
    ) -> Result<Vec<CallStep>, StoreError> {
        let mut steps = Vec::new();
        while let Some(r) = reports.recv().await {
            if steps.len() < MAX_STEPS
                && let Some(s) = step_of(&r, invite.elapsed().as_millis() as i64, hide_digits)
            {
                steps.push(s);
            }
            let progress = match &r {
                Report::Ringing { .. } => ChallengeState::Ringing,
                Report::Answered { .. } => ChallengeState::Answered,
                // The code was read once: the page may now take it.
                Report::CodeSpoken => ChallengeState::CodeSpoken,
                Report::Verdict(o) => {
                    if let Some(d) = verdict(o) {
                        self.decide(id, d, Some(phone)).await?;
                    }
                    continue;
                }
                _ => continue,
            };
            self.store
                .transition_called(id, progress, now_ms(), None, None, phone)
                .await?;
        }
        Ok(steps)
    }

    /// A call that could not be placed: the challenge and the call end `failed`.
    async fn not_placed(
        &self,
        id: &ChallengeId,
        call_id: &CallId,
        span: &tracing::Span,
        e: VerifyError,
    ) -> Result<(Outcome, CallId), RunError> {
        let reason = e.to_string();
        span.in_scope(|| warn!(error = %reason, "the call could not be placed"));
        metrics::counter!("callverify_calls_total", "outcome" => "failed").increment(1);
        let failed = (ChallengeState::Failed, Some(reason.clone()), None);
        self.decide(id, failed, None).await?;
        self.store
            .finish_call(
                call_id,
                &CallEnd {
                    detail: Some(reason),
                    ..CallEnd::new(ChallengeState::Failed, now_ms())
                },
            )
            .await?;
        Err(e.into())
    }

    /// A placed call's end: its metrics, its log line and its entry in the call log.
    async fn ended(
        &self,
        call_id: &CallId,
        span: &tracing::Span,
        report: &CallReport,
        steps: Vec<CallStep>,
    ) -> Result<(), StoreError> {
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
            );
        });
        let end = CallEnd {
            steps,
            ..call_end(report)
        };
        if !self.store.finish_call(call_id, &end).await? {
            warn!(call = %call_id, "the call had already ended in the log");
        }
        Ok(())
    }
}

/// What decides a challenge: its state, the reason in words and the SIP status of a failure.
type Decision = (ChallengeState, Option<String>, Option<i64>);

/// `d`, the decision of outcome `o` on the phone `label` names (one of an enrolment's two):
/// a decision that is not an approval says which phone did not approve.
fn labelled(d: Decision, o: &Outcome, label: Option<&str>) -> Decision {
    let (state, reason, status) = d;
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
}

/// At most this many steps of a call are kept in the call log.
const MAX_STEPS: usize = 256;

/// What outcome `o` decides.
fn decision(o: &Outcome) -> Decision {
    (
        o.state(),
        o.reason().map(str::to_string),
        o.sip_status().map(i64::from),
    )
}

/// The call log's step for a report, `at_ms` after the INVITE; with `hide_digits` (the
/// modes with a code) a digit key is logged as a digit, never which.
fn step_of(r: &Report, at_ms: i64, hide_digits: bool) -> Option<CallStep> {
    let (kind, detail) = match r {
        Report::Calling { trunk } => (StepKind::Invite, format!("INVITE through {trunk}")),
        Report::Ringing { status } => (StepKind::Sip, status_line(*status)),
        Report::Answered { codec } => (StepKind::Sip, format!("200 OK ({})", codec.name())),
        Report::Prompt(p) => (StepKind::Prompt, p.file_stem().to_string()),
        Report::Key(k) | Report::KeyIgnored(k) => {
            let taken = matches!(r, Report::Key(_));
            if hide_digits && k.digit.is_ascii_digit() {
                return Some(CallStep::hidden_key_step(k.at_ms as i64, k.source, taken));
            }
            let digit = store::Digit::from_char(k.digit)?;
            return Some(CallStep::key_step(k.at_ms as i64, digit, k.source, taken));
        }
        Report::Verdict(o) => (StepKind::Verdict, o.name().to_string()),
        Report::CodeSpoken => (StepKind::Prompt, "the code was read".to_string()),
    };
    Some(CallStep {
        at_ms,
        kind,
        detail,
    })
}

/// The call log's last step, the call's end, `at_ms` after the INVITE.
fn end_step(r: &CallReport, at_ms: i64) -> CallStep {
    let detail = match (&r.outcome, &r.detail) {
        (
            Outcome::Failed {
                status: Some(s), ..
            },
            _,
        ) => format!("failed: {}", status_line(*s)),
        (o, Some(d)) => format!("{}: {d}", o.name()),
        (o, None) => o.name().to_string(),
    };
    CallStep {
        at_ms,
        kind: StepKind::End,
        detail,
    }
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
            confirmation: "pound",
            code_matched: None,
            keys: Vec::new(),
            timings: Default::default(),
            media: Default::default(),
        }
    }

    #[test]
    fn the_call_log_names_sip_statuses_with_their_phrases() {
        let ringing = step_of(&Report::Ringing { status: 180 }, 120, false).unwrap();
        assert_eq!(
            (ringing.kind, ringing.detail.as_str()),
            (StepKind::Sip, "180 Ringing")
        );
        let busy = report(Outcome::Failed {
            status: Some(486),
            reason: "486 Busy Here".into(),
        });
        let end = end_step(&busy, 900);
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

    #[test]
    fn a_codes_digits_are_not_in_the_call_log() {
        use crate::call::KeyPress;
        let key = |digit| {
            Report::Key(KeyPress {
                digit,
                source: store::KeySource::Rfc4733,
                at_ms: 5000,
            })
        };
        // '#' alone: the keys as they came.
        let seven = step_of(&key('7'), 5000, false).unwrap();
        assert_eq!(seven.key().map(|k| k.digit.as_char()), Some('7'));
        // With a code: a digit came, not which; '#' is still '#'.
        let hidden = step_of(&key('7'), 5000, true).unwrap();
        assert_eq!(
            (hidden.kind, hidden.detail.as_str(), hidden.key()),
            (StepKind::Key, "a digit (rfc4733)", None)
        );
        let pound = step_of(&key('#'), 5100, true).unwrap();
        assert_eq!(pound.key().map(|k| k.digit.as_char()), Some('#'));
        let read = step_of(&Report::CodeSpoken, 9000, true).unwrap();
        assert_eq!(
            (read.kind, read.detail.as_str()),
            (StepKind::Prompt, "the code was read")
        );
    }
}
