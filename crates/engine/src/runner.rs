//! Runs a stored challenge's call: moves the challenge through `calling → ringing →
//! answered → decision` in the store as the call progresses, and writes the call log (the
//! call with its outcome, timings, RTP figures and keys).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use media::Language;
use store::{CallEnd, ChallengeState, KeyRecord, NewCall, Store, StoreError};
use tokio::sync::mpsc;
use tracing::warn;

use crate::call::{CallReport, KeySource, Outcome, Prompts, Report, ScriptConfig};
use crate::call_driver::{MediaConfig, VerifyError, verify};
use crate::sip_driver::SipEndpoint;

/// The challenge state an outcome decides.
pub fn state_of(outcome: &Outcome) -> ChallengeState {
    match outcome {
        Outcome::Approved => ChallengeState::Approved,
        Outcome::Denied => ChallengeState::Denied,
        Outcome::FraudReported => ChallengeState::FraudReported,
        Outcome::NoInput => ChallengeState::NoInput,
        Outcome::Voicemail => ChallengeState::Voicemail,
        Outcome::NoAnswer => ChallengeState::NoAnswer,
        Outcome::Busy => ChallengeState::Busy,
        Outcome::Declined => ChallengeState::Declined,
        Outcome::HungUp => ChallengeState::HungUp,
        Outcome::Canceled => ChallengeState::Canceled,
        Outcome::Failed { .. } => ChallengeState::Failed,
    }
}

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
    /// The store.
    pub store: Store,
    /// The SIP endpoint calls go through.
    pub endpoint: Arc<SipEndpoint>,
    /// Media settings.
    pub media: MediaConfig,
    /// Script settings.
    pub script: ScriptConfig,
    /// Prompts per language.
    pub prompts: HashMap<Language, Prompts>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Runner {
    /// Calls the challenge `id` (which must be `queued`) and records everything; returns
    /// the state it ended in, or `None` when it was no longer queued (taken by another
    /// node, cancelled).
    pub async fn run(&self, id: &str) -> Result<Option<ChallengeState>, RunError> {
        let challenge = self
            .store
            .challenge(id)
            .await?
            .ok_or_else(|| RunError::Unknown(id.to_string()))?;
        if !self
            .store
            .transition(id, ChallengeState::Calling, now_ms(), None, None)
            .await?
        {
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
                let reason = "no prompts are loaded";
                self.store
                    .transition(id, ChallengeState::Failed, now_ms(), Some(reason), None)
                    .await?;
                return Ok(Some(ChallengeState::Failed));
            }
        };
        let call_id = store::new_id("call");
        self.store
            .start_call(&NewCall {
                id: call_id.clone(),
                challenge_id: id.to_string(),
                phone_masked: challenge.phone.masked(),
                started_at_ms: now_ms(),
            })
            .await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let call = verify(
            &self.endpoint,
            &self.media,
            self.script.clone(),
            prompts,
            &challenge.phone,
            Some(tx),
            std::future::pending(),
        );
        let record = async {
            let mut finished = None;
            while let Some(r) = rx.recv().await {
                let step = match &r {
                    Report::Ringing { .. } => Some((ChallengeState::Ringing, None, None)),
                    Report::Answered { .. } => Some((ChallengeState::Answered, None, None)),
                    Report::Verdict(o) => Some(decision(o)),
                    Report::Finished(f) => {
                        finished = Some((**f).clone());
                        Some(decision(&f.outcome))
                    }
                    _ => None,
                };
                if let Some((state, reason, status)) = step {
                    self.store
                        .transition(id, state, now_ms(), reason.as_deref(), status)
                        .await?;
                }
            }
            Ok::<_, StoreError>(finished)
        };
        let (placed, recorded) = tokio::join!(call, record);
        let finished = match placed {
            Ok(f) => Some(f.report),
            Err(e) => {
                let reason = e.to_string();
                self.store
                    .transition(id, ChallengeState::Failed, now_ms(), Some(&reason), None)
                    .await?;
                self.store
                    .finish_call(
                        &call_id,
                        &CallEnd {
                            outcome: "failed".into(),
                            detail: Some(reason),
                            ended_at_ms: now_ms(),
                            ..CallEnd::default()
                        },
                    )
                    .await?;
                return Err(e.into());
            }
        };
        let report = recorded?.or(finished);
        if let Some(report) = report
            && !self.store.finish_call(&call_id, &call_end(&report)).await?
        {
            warn!(call = %call_id, "the call had already ended in the log");
        }
        Ok(self.store.challenge(id).await?.map(|c| c.state))
    }
}

fn decision(o: &Outcome) -> (ChallengeState, Option<String>, Option<i64>) {
    match o {
        Outcome::Failed { status, reason } => (
            ChallengeState::Failed,
            Some(reason.clone()),
            status.map(i64::from),
        ),
        other => (state_of(other), None, None),
    }
}

fn call_end(r: &CallReport) -> CallEnd {
    let t = &r.timings;
    let ms = |v: Option<u64>| v.map(|x| x as i64);
    CallEnd {
        outcome: r.outcome.name().into(),
        sip_status: match &r.outcome {
            Outcome::Failed { status, .. } => status.map(i64::from),
            _ => None,
        },
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
        keys: r
            .keys
            .iter()
            .map(|k| KeyRecord {
                digit: k.digit.to_string(),
                source: match k.source {
                    KeySource::InBand => "in_band".into(),
                    KeySource::Rfc4733 => "rfc4733".into(),
                },
                at_ms: k.at_ms as i64,
            })
            .collect(),
    }
}
