//! The call log: each call as it starts and how it ended, with its keys and steps; listed
//! newest first with filters and keyset pagination. It never holds a whole number.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::{
    CallId, ChallengeId, ChallengeState, Confirmation, Digit, KeySource, Origin, PhoneNumber,
    Result, StepKind, Store, StoreError,
};

/// A call being placed for a challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCall {
    /// Its id (`call_…`).
    pub id: CallId,
    /// The challenge it serves.
    pub challenge_id: ChallengeId,
    /// The number, masked: the call log never holds a whole number.
    pub phone_masked: String,
    /// When the INVITE went out, ms since the epoch.
    pub started_at_ms: i64,
}

/// A key pressed during a call (read from the call's steps of kind `key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key.
    pub digit: Digit,
    /// Where it was heard.
    pub source: KeySource,
    /// Milliseconds since the INVITE.
    pub at_ms: i64,
}

/// One step of a call, for the operator's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallStep {
    /// Milliseconds since the INVITE.
    pub at_ms: i64,
    /// A response, a prompt, a key…
    pub kind: StepKind,
    /// What: the trunk, `180 Ringing`, the prompt's name, `# (in_band)` (a key; one pressed
    /// before the instructions is `# (in_band) before the instructions: ignored`, see
    /// [`CallStep::key_step`]), the outcome…
    pub detail: String,
}

/// The words after a key that was dropped because it came before the instructions.
const IGNORED: &str = " before the instructions: ignored";

impl CallStep {
    /// A step of kind `key`: `digit` heard from `source` `at_ms` after the INVITE, taken or
    /// (`taken` false) dropped because it came before the instructions. Its words
    /// (`# (in_band)`) are what [`CallStep::key`] reads back: the call log keeps a key there
    /// only.
    pub fn key_step(at_ms: i64, digit: Digit, source: KeySource, taken: bool) -> CallStep {
        let ignored = if taken { "" } else { IGNORED };
        CallStep {
            at_ms,
            kind: StepKind::Key,
            detail: format!("{digit} ({source}){ignored}"),
        }
    }

    /// A step of kind `key` for a digit of a code (number matching): that a digit was
    /// heard, from `source`, never which: the call log does not keep codes.
    pub fn hidden_key_step(at_ms: i64, source: KeySource, taken: bool) -> CallStep {
        let ignored = if taken { "" } else { IGNORED };
        CallStep {
            at_ms,
            kind: StepKind::Key,
            detail: format!("a digit ({source}){ignored}"),
        }
    }

    /// The key a step of kind `key` says was pressed and taken (`None` for other steps, and
    /// for a key dropped because it came before the instructions).
    pub fn key(&self) -> Option<KeyRecord> {
        if self.kind != StepKind::Key {
            return None;
        }
        let (digit, rest) = self.detail.split_once(" (")?;
        let source = KeySource::from_name(rest.strip_suffix(')')?)?;
        let mut chars = digit.chars();
        let digit = chars.next().filter(|_| chars.next().is_none())?;
        Some(KeyRecord {
            digit: Digit::from_char(digit)?,
            source,
            at_ms: self.at_ms,
        })
    }
}

/// How a call ended, with what the call log keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct CallEnd {
    /// The outcome (`approved`, `busy`, …; `interrupted` when its node stopped).
    pub outcome: ChallengeState,
    /// The SIP status of a failure.
    pub sip_status: Option<i64>,
    /// Why, in words.
    pub detail: Option<String>,
    /// The trunk used.
    pub trunk: Option<String>,
    /// When it ended, ms since the epoch.
    pub ended_at_ms: i64,
    /// INVITE to ringing.
    pub post_dial_delay_ms: Option<i64>,
    /// INVITE to answer.
    pub time_to_answer_ms: Option<i64>,
    /// Answer to the first key.
    pub time_to_key_ms: Option<i64>,
    /// INVITE to the verdict.
    pub time_to_verdict_ms: Option<i64>,
    /// RTP packets sent.
    pub packets_sent: i64,
    /// RTP packets accepted.
    pub packets_received: i64,
    /// RTP packets lost.
    pub packets_lost: i64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Packets from other sources or SSRCs (or SRTP packets that did not authenticate).
    pub packets_rejected: i64,
    /// Whether the media was SRTP.
    pub srtp: bool,
    /// What happened, in order: the keys among it (see [`CallEnd::keys`]).
    pub steps: Vec<CallStep>,
}

impl CallEnd {
    /// A call that ended with `outcome` at `ended_at_ms`, with no figures, keys or steps.
    pub fn new(outcome: ChallengeState, ended_at_ms: i64) -> CallEnd {
        CallEnd {
            outcome,
            sip_status: None,
            detail: None,
            trunk: None,
            ended_at_ms,
            post_dial_delay_ms: None,
            time_to_answer_ms: None,
            time_to_key_ms: None,
            time_to_verdict_ms: None,
            packets_sent: 0,
            packets_received: 0,
            packets_lost: 0,
            jitter_ms: 0.0,
            packets_rejected: 0,
            srtp: false,
            steps: Vec::new(),
        }
    }

    /// The keys pressed and taken, in order: the steps of kind `key` (the call log keeps a
    /// key only there).
    pub fn keys(&self) -> Vec<KeyRecord> {
        self.steps.iter().filter_map(CallStep::key).collect()
    }
}

/// One call in the call log.
#[derive(Clone, Debug, PartialEq)]
pub struct CallEntry {
    /// Its id.
    pub id: CallId,
    /// The challenge.
    pub challenge_id: ChallengeId,
    /// The masked number.
    pub phone_masked: String,
    /// Started, ms since the epoch.
    pub started_at_ms: i64,
    /// Where its challenge came from.
    pub origin: Origin,
    /// What there made the challenge (for EAM the client-request-id).
    pub origin_ref: Option<String>,
    /// How its challenge is confirmed.
    pub confirmation: Confirmation,
    /// Whether the code entered for its challenge was right (`None`: none entered, or
    /// `pound`). Never the code.
    pub code_matched: Option<bool>,
    /// The end, once the call is over.
    pub end: Option<CallEnd>,
}

/// The calls of one outcome, or those not ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeFilter {
    /// The calls not ended yet (`in_progress`).
    InProgress,
    /// The calls that ended so.
    Ended(ChallengeState),
}

impl OutcomeFilter {
    /// The filter a name gives: `in_progress` or an outcome's (a state's) name.
    pub fn from_name(s: &str) -> Option<OutcomeFilter> {
        match s {
            "in_progress" => Some(OutcomeFilter::InProgress),
            _ => ChallengeState::from_name(s).map(OutcomeFilter::Ended),
        }
    }

    /// Every name [`OutcomeFilter::from_name`] takes, `in_progress` last.
    pub fn names() -> impl Iterator<Item = &'static str> {
        ChallengeState::ALL
            .into_iter()
            .map(ChallengeState::as_str)
            .chain(["in_progress"])
    }
}

/// Which calls to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Only this outcome, or only the calls not ended.
    pub outcome: Option<OutcomeFilter>,
    /// Started at or after (ms since the epoch).
    pub from_ms: Option<i64>,
    /// Started before.
    pub to_ms: Option<i64>,
    /// Only this masked number.
    pub phone_masked: Option<String>,
    /// Only this trunk.
    pub trunk: Option<String>,
    /// Only the calls of challenges from there.
    pub origin: Option<Origin>,
    /// Only the calls of this user's challenges.
    pub user_id: Option<String>,
    /// Only the calls to this number. The call log keeps masked numbers only: a call
    /// matches when its masked number is this one's and its challenge's number, or a phone
    /// its user registered, is this whole number (so a call to a user's fallback phone is
    /// found by that phone's number).
    pub number: Option<PhoneNumber>,
    /// Only the calls of this challenge.
    pub challenge_id: Option<ChallengeId>,
    /// Only this call.
    pub call_id: Option<CallId>,
    /// The operator's log only ([`Store::log`]): only entries of this kind.
    pub kind: Option<crate::LogKind>,
}

/// A value bound to a query built with its placeholders.
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

/// The values of a query being built: each added gives its placeholder (`$3`).
#[derive(Default)]
pub(crate) struct Binds(Vec<Param>);

impl Binds {
    /// Adds a text value: its placeholder.
    pub(crate) fn text(&mut self, s: impl Into<String>) -> String {
        self.0.push(Param::Text(s.into()));
        format!("${}", self.0.len())
    }

    /// Adds an integer value: its placeholder.
    pub(crate) fn int(&mut self, i: i64) -> String {
        self.0.push(Param::Int(i));
        format!("${}", self.0.len())
    }

    /// `sql` with the values bound.
    pub(crate) fn query<'q>(
        self,
        sql: String,
    ) -> sqlx::query::Query<'q, sqlx::Any, <sqlx::Any as sqlx::Database>::Arguments> {
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for p in self.0 {
            q = match p {
                Param::Text(t) => q.bind(t),
                Param::Int(i) => q.bind(i),
            };
        }
        q
    }
}

/// A cursor (`{started_at}~{id}`) as its two parts.
pub(crate) fn parse_cursor(c: &str) -> Result<(i64, String)> {
    c.split_once('~')
        .and_then(|(a, i)| a.parse::<i64>().ok().map(|a| (a, i.to_string())))
        .ok_or_else(|| StoreError::BadCursor(c.to_string()))
}

/// The conditions on the `calls` table (not aliased) of `filter`, but for the cursor.
pub(crate) fn call_conditions(filter: &CallFilter, b: &mut Binds) -> Vec<String> {
    let mut conds: Vec<String> = Vec::new();
    match filter.outcome {
        Some(OutcomeFilter::InProgress) => conds.push("ended_at IS NULL".into()),
        Some(OutcomeFilter::Ended(o)) => conds.push(format!("outcome = {}", b.text(o.as_str()))),
        None => {}
    }
    if let Some(p) = &filter.phone_masked {
        conds.push(format!("phone_masked = {}", b.text(p.clone())));
    }
    if let Some(t) = &filter.trunk {
        conds.push(format!("trunk = {}", b.text(t.clone())));
    }
    if let Some(o) = filter.origin {
        conds.push(format!(
            "challenge_id IN (SELECT id FROM challenges WHERE origin = {})",
            b.text(o.as_str())
        ));
    }
    if let Some(u) = &filter.user_id {
        conds.push(format!(
            "challenge_id IN (SELECT id FROM challenges WHERE user_id = {})",
            b.text(u.clone())
        ));
    }
    if let Some(n) = &filter.number {
        let masked = b.text(n.masked());
        let whole = b.text(n.stored());
        conds.push(format!(
            "phone_masked = {masked} AND EXISTS (SELECT 1 FROM challenges ch WHERE \
             ch.id = calls.challenge_id AND (ch.phone = {whole} OR ch.user_id IN \
             (SELECT user_id FROM phones WHERE phone = {whole})))"
        ));
    }
    if let Some(c) = &filter.challenge_id {
        conds.push(format!("challenge_id = {}", b.text(c.as_str())));
    }
    if let Some(c) = &filter.call_id {
        conds.push(format!("id = {}", b.text(c.as_str())));
    }
    if let Some(f) = filter.from_ms {
        conds.push(format!("started_at >= {}", b.int(f)));
    }
    if let Some(t) = filter.to_ms {
        conds.push(format!("started_at < {}", b.int(t)));
    }
    conds
}

/// `WHERE a AND b`, or nothing for no condition.
pub(crate) fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    }
}

const CALL_COLUMNS: &str = "id, challenge_id, phone_masked, started_at, trunk, outcome, \
     sip_status, detail, ended_at, post_dial_delay_ms, time_to_answer_ms, time_to_key_ms, \
     time_to_verdict_ms, packets_sent, packets_received, packets_lost, jitter_ms, packets_rejected, \
     srtp, (SELECT origin FROM challenges WHERE challenges.id = calls.challenge_id) AS origin, \
     (SELECT origin_ref FROM challenges WHERE challenges.id = calls.challenge_id) AS origin_ref, \
     (SELECT confirmation FROM challenges WHERE challenges.id = calls.challenge_id) AS confirmation, \
     (SELECT code_matched FROM challenges WHERE challenges.id = calls.challenge_id) AS code_matched";

impl Store {
    /// Records a call as it starts.
    pub async fn start_call(&self, c: &NewCall) -> Result<()> {
        sqlx::query(
            "INSERT INTO calls (id, challenge_id, phone_masked, started_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(c.id.as_str())
        .bind(c.challenge_id.as_str())
        .bind(&c.phone_masked)
        .bind(c.started_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records how a call ended, with its steps, once; `false` if it had already ended (or
    /// is unknown).
    pub async fn finish_call(&self, id: &CallId, e: &CallEnd) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE calls SET outcome = $1, sip_status = $2, detail = $3, trunk = $4, \
             ended_at = $5, post_dial_delay_ms = $6, time_to_answer_ms = $7, time_to_key_ms = $8, \
             time_to_verdict_ms = $9, packets_sent = $10, packets_received = $11, \
             packets_lost = $12, jitter_ms = $13, packets_rejected = $14, srtp = $15 \
             WHERE id = $16 AND ended_at IS NULL",
        )
        .bind(e.outcome.as_str())
        .bind(e.sip_status)
        .bind(e.detail.as_deref())
        .bind(e.trunk.as_deref())
        .bind(e.ended_at_ms)
        .bind(e.post_dial_delay_ms)
        .bind(e.time_to_answer_ms)
        .bind(e.time_to_key_ms)
        .bind(e.time_to_verdict_ms)
        .bind(e.packets_sent)
        .bind(e.packets_received)
        .bind(e.packets_lost)
        .bind(e.jitter_ms)
        .bind(e.packets_rejected)
        .bind(i64::from(e.srtp))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for (seq, st) in e.steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO call_steps (call_id, seq, at_ms, kind, detail) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id.as_str())
            .bind(seq as i64)
            .bind(st.at_ms)
            .bind(st.kind.as_str())
            .bind(&st.detail)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Adds `note` to the detail of a call in the log (after what it says already), e.g.
    /// why the phone to call next was refused.
    pub async fn note_call(&self, id: &CallId, note: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE calls SET detail = CASE WHEN detail IS NULL THEN $1 \
             ELSE detail || '; ' || $1 END WHERE id = $2",
        )
        .bind(note)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The rows `sql` (with the call's id as `$1`) selects, each made into a `T`.
    async fn rows_of_call<T>(
        &self,
        sql: &'static str,
        id: &CallId,
        f: impl Fn(&AnyRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        sqlx::query(sql)
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(f)
            .collect()
    }

    /// One call with its steps (and so its keys).
    pub async fn call(&self, id: &CallId) -> Result<Option<CallEntry>> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1");
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut entry = call_from(&row)?;
        if let Some(end) = &mut entry.end {
            end.steps = self
                .rows_of_call(
                    "SELECT at_ms, kind, detail FROM call_steps WHERE call_id = $1 ORDER BY seq",
                    id,
                    |r| {
                        Ok(CallStep {
                            at_ms: r.try_get("at_ms")?,
                            kind: stored(r.try_get("kind")?, StepKind::from_name)?,
                            detail: r.try_get("detail")?,
                        })
                    },
                )
                .await?;
        }
        Ok(Some(entry))
    }

    /// The call log, newest first: up to `limit` calls matching `filter`, after `cursor`
    /// (from the previous page), and the cursor of the next page if there is one. Steps (and
    /// so keys) are not loaded here (see [`Store::call`]).
    pub async fn calls(
        &self,
        filter: &CallFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<(Vec<CallEntry>, Option<String>)> {
        let limit = limit.clamp(1, 500);
        let mut b = Binds::default();
        let mut conds = call_conditions(filter, &mut b);
        if let Some(c) = cursor {
            // Keyset pagination on (started_at, id), newest first.
            let (at, id) = parse_cursor(c)?;
            let at = b.int(at);
            let id = b.text(id);
            conds.push(format!(
                "(started_at < {at} OR (started_at = {at} AND id < {id}))"
            ));
        }
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls {} ORDER BY started_at DESC, id DESC LIMIT {}",
            where_clause(&conds),
            limit + 1
        );
        let q = b.query(sql);
        let rows = q.fetch_all(&self.pool).await?;
        let mut entries: Vec<CallEntry> = rows.iter().map(call_from).collect::<Result<_>>()?;
        let next = if entries.len() > limit as usize {
            entries.truncate(limit as usize);
            entries
                .last()
                .map(|e| format!("{}~{}", e.started_at_ms, e.id))
        } else {
            None
        };
        Ok((entries, next))
    }
}

fn call_from(r: &AnyRow) -> Result<CallEntry> {
    let ended: Option<i64> = r.try_get("ended_at")?;
    let end = match ended {
        None => None,
        Some(ended_at_ms) => Some(CallEnd {
            outcome: stored_outcome(r.try_get("outcome")?)?,
            sip_status: r.try_get("sip_status")?,
            detail: r.try_get("detail")?,
            trunk: r.try_get("trunk")?,
            ended_at_ms,
            post_dial_delay_ms: r.try_get("post_dial_delay_ms")?,
            time_to_answer_ms: r.try_get("time_to_answer_ms")?,
            time_to_key_ms: r.try_get("time_to_key_ms")?,
            time_to_verdict_ms: r.try_get("time_to_verdict_ms")?,
            packets_sent: r.try_get::<Option<i64>, _>("packets_sent")?.unwrap_or(0),
            packets_received: r
                .try_get::<Option<i64>, _>("packets_received")?
                .unwrap_or(0),
            packets_lost: r.try_get::<Option<i64>, _>("packets_lost")?.unwrap_or(0),
            jitter_ms: r.try_get::<Option<f64>, _>("jitter_ms")?.unwrap_or(0.0),
            packets_rejected: r
                .try_get::<Option<i64>, _>("packets_rejected")?
                .unwrap_or(0),
            srtp: r.try_get::<Option<i64>, _>("srtp")?.unwrap_or(0) != 0,
            steps: Vec::new(),
        }),
    };
    Ok(CallEntry {
        id: CallId::from_stored(r.try_get("id")?),
        challenge_id: ChallengeId::from_stored(r.try_get("challenge_id")?),
        phone_masked: r.try_get("phone_masked")?,
        started_at_ms: r.try_get("started_at")?,
        // A call whose challenge is gone (never, as the schema stands) counts as the API's.
        origin: match r.try_get::<Option<String>, _>("origin")? {
            Some(o) => stored(o, Origin::from_name)?,
            None => Origin::Api,
        },
        origin_ref: r.try_get("origin_ref")?,
        confirmation: match r.try_get::<Option<String>, _>("confirmation")? {
            Some(c) => stored(c, Confirmation::from_name)?,
            None => Confirmation::Pound,
        },
        code_matched: r.try_get::<Option<i64>, _>("code_matched")?.map(|v| v != 0),
        end,
    })
}

/// The outcome of an ended call as stored.
fn stored_outcome(name: Option<String>) -> Result<ChallengeState> {
    stored(name.unwrap_or_default(), ChallengeState::from_name)
}

/// The value of a stored name, or [`StoreError::Corrupt`] with the name.
fn stored<T>(name: String, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(&name).ok_or(StoreError::Corrupt(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cursor_no_page_gave_is_its_own_error() {
        let dir = std::env::temp_dir().join(crate::new_id("callverify-store-cursor"));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.join("cv.db").display()))
            .await
            .unwrap();
        for bad in ["bogus", "12", "x~call_1", "~", "1.5~call_1"] {
            match store.calls(&CallFilter::default(), 10, Some(bad)).await {
                Err(StoreError::BadCursor(c)) => assert_eq!(c, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let (page, next) = store
            .calls(&CallFilter::default(), 10, Some("5~call_1"))
            .await
            .unwrap();
        assert!(page.is_empty() && next.is_none());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
