//! The operator's log: calls, challenges that made no call (a trusted device's sign-in, one
//! still queued, one that expired before it was called) and refused attempts, in one
//! listing newest first with the call log's filters and keyset pagination; the refusals as
//! they are recorded; and the figures of the calls a filter selects. It never holds a whole
//! number: a challenge's is masked as it is read.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::call_log::{Binds, call_conditions, parse_cursor, where_clause};
use crate::{CallFilter, ChallengeState, Origin, OutcomeFilter, PhoneNumber, Result, Store};

/// What an entry of the log is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogKind {
    /// A call (of a challenge).
    Call,
    /// A challenge that made no call: approved by a trusted device, or not called (yet).
    Challenge,
    /// An attempt refused before any challenge was made (policy, limit, cap, fraud block).
    Refusal,
}

impl LogKind {
    /// Every kind.
    pub const ALL: [LogKind; 3] = [LogKind::Call, LogKind::Challenge, LogKind::Refusal];

    /// Its name in the API (`call`, `challenge`, `refusal`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Call => "call",
            LogKind::Challenge => "challenge",
            LogKind::Refusal => "refusal",
        }
    }

    /// The kind named `s`.
    pub fn from_name(s: &str) -> Option<LogKind> {
        LogKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A refused attempt to record ([`Store::record_refusal`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRefusal {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The API key that asked.
    pub api_key_id: String,
    /// The front end it came through.
    pub origin: Origin,
    /// The user it was for, if named.
    pub user_id: Option<String>,
    /// The number: only its masked form is kept.
    pub phone: PhoneNumber,
    /// The rule, as the problem's type names it (`rate-limited`, `country-not-allowed`, …).
    pub rule: String,
    /// Why, in words that name no user and mask the number.
    pub detail: String,
    /// The Retry-After given, in seconds.
    pub retry_after_s: Option<u64>,
}

/// One entry of the operator's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// What it is.
    pub kind: LogKind,
    /// The call's id (`call_…`), the challenge's (`ch_…`) or the refusal's (`rf_…`).
    pub id: String,
    /// When the call started, the challenge was made, the refusal (first) happened.
    pub at_ms: i64,
    /// The challenge (of a call; a challenge's own id; none for a refusal).
    pub challenge_id: Option<String>,
    /// The user, if the challenge or refused request named one.
    pub user_id: Option<String>,
    /// The number, masked.
    pub phone_masked: String,
    /// The front end.
    pub origin: Origin,
    /// The API key that made the challenge or asked.
    pub api_key_id: Option<String>,
    /// A call's outcome (none while in progress); a challenge's state; none for a refusal.
    pub outcome: Option<ChallengeState>,
    /// The SIP status of a failure.
    pub sip_status: Option<i64>,
    /// A call's detail, a challenge's reason (`trusted_device`), a refusal's words.
    pub detail: Option<String>,
    /// A call's trunk.
    pub trunk: Option<String>,
    /// A call's INVITE to ringing.
    pub post_dial_delay_ms: Option<i64>,
    /// A call's INVITE to its verdict; a challenge's creation to its decision.
    pub time_to_verdict_ms: Option<i64>,
    /// A refusal's rule (`rate-limited`, …).
    pub rule: Option<String>,
    /// A refusal's Retry-After, in seconds.
    pub retry_after_s: Option<i64>,
    /// How many times a refusal happened within the minute its row covers (1 or more).
    pub repeats: Option<i64>,
    /// When a refusal last happened.
    pub last_at_ms: Option<i64>,
}

/// Figures of the calls a filter selects (and of the log's other entries in it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Calls.
    pub calls: i64,
    /// Calls not ended yet.
    pub in_progress: i64,
    /// Calls approved.
    pub approved: i64,
    /// Calls canceled (by the user or the service: neither a success nor a failure).
    pub canceled: i64,
    /// Calls with a time to verdict.
    pub verdicts: i64,
    /// The median time to verdict, ms (nearest rank).
    pub p50_verdict_ms: Option<i64>,
    /// The 95th percentile of the time to verdict, ms (nearest rank).
    pub p95_verdict_ms: Option<i64>,
    /// Challenges approved without a call (a trusted device).
    pub trusted: i64,
    /// Refused attempts (each repeat counted).
    pub refused: i64,
}

/// Refusals of one key within this long of each other share a row.
const REPEAT_WINDOW_MS: i64 = 60_000;

/// A key's refusals past this many rows in [`REPEAT_WINDOW_MS`] add to its latest row.
const ROWS_PER_WINDOW: i64 = 100;

/// The columns every part of the log selects, in this order.
const LOG_COLUMNS: &str = "kind, id, at, challenge_id, user_id, phone, origin, api_key_id, \
     outcome, sip_status, detail, trunk, post_dial_delay_ms, time_to_verdict_ms, rule, \
     retry_after_s, repeats, last_at";

/// The conditions of the challenges without a call (table `challenges` as `ch`) of
/// `filter`; `None` when the filter leaves none.
fn challenge_conditions(filter: &CallFilter, b: &mut Binds) -> Option<Vec<String>> {
    if filter.trunk.is_some() || filter.call_id.is_some() || filter.phone_masked.is_some() {
        return None;
    }
    let mut conds =
        vec!["NOT EXISTS (SELECT 1 FROM calls WHERE calls.challenge_id = ch.id)".into()];
    match filter.outcome {
        Some(OutcomeFilter::InProgress) => conds.push("ch.decided_at IS NULL".into()),
        Some(OutcomeFilter::Ended(o)) => conds.push(format!("ch.state = {}", b.text(o.as_str()))),
        None => {}
    }
    if let Some(o) = filter.origin {
        conds.push(format!("ch.origin = {}", b.text(o.as_str())));
    }
    if let Some(u) = &filter.user_id {
        conds.push(format!("ch.user_id = {}", b.text(u.clone())));
    }
    if let Some(n) = &filter.number {
        conds.push(format!("ch.phone = {}", b.text(n.stored())));
    }
    if let Some(c) = &filter.challenge_id {
        conds.push(format!("ch.id = {}", b.text(c.as_str())));
    }
    if let Some(f) = filter.from_ms {
        conds.push(format!("ch.created_at >= {}", b.int(f)));
    }
    if let Some(t) = filter.to_ms {
        conds.push(format!("ch.created_at < {}", b.int(t)));
    }
    Some(conds)
}

/// The conditions of the refusals (table `refusals`) of `filter`; `None` when the filter
/// leaves none. A refusal keeps the masked number only: a whole number matches the
/// refusals of its masked form.
fn refusal_conditions(filter: &CallFilter, b: &mut Binds) -> Option<Vec<String>> {
    if filter.outcome.is_some()
        || filter.trunk.is_some()
        || filter.call_id.is_some()
        || filter.challenge_id.is_some()
    {
        return None;
    }
    let mut conds = Vec::new();
    if let Some(o) = filter.origin {
        conds.push(format!("origin = {}", b.text(o.as_str())));
    }
    if let Some(u) = &filter.user_id {
        conds.push(format!("user_id = {}", b.text(u.clone())));
    }
    if let Some(n) = &filter.number {
        conds.push(format!("phone_masked = {}", b.text(n.masked())));
    }
    if let Some(p) = &filter.phone_masked {
        conds.push(format!("phone_masked = {}", b.text(p.clone())));
    }
    if let Some(f) = filter.from_ms {
        conds.push(format!("at >= {}", b.int(f)));
    }
    if let Some(t) = filter.to_ms {
        conds.push(format!("at < {}", b.int(t)));
    }
    Some(conds)
}

/// Whether `filter` lets entries of `kind` in.
fn wants(filter: &CallFilter, kind: LogKind) -> bool {
    filter.kind.is_none_or(|k| k == kind)
}

impl Store {
    /// Records a refused attempt. Bounded: the same refusal (key, rule, user, masked number)
    /// within a minute of its row adds one to the row's `repeats`, and a key with 100 rows
    /// in the last minute adds to its latest one, so a key refused in a loop grows the table
    /// by about 100 rows a minute at most (and every request is authenticated).
    pub async fn record_refusal(&self, r: &NewRefusal) -> Result<()> {
        let masked = r.phone.masked();
        let retry = r
            .retry_after_s
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX));
        let since = r.at_ms - REPEAT_WINDOW_MS;
        let mut tx = self.pool.begin().await?;
        let same = sqlx::query(
            "UPDATE refusals SET repeats = repeats + 1, last_at = $1, retry_after_s = $2, \
             detail = $3 WHERE id = (SELECT id FROM refusals WHERE api_key_id = $4 AND \
             rule = $5 AND phone_masked = $6 AND COALESCE(user_id, '') = $7 AND at >= $8 \
             ORDER BY at DESC LIMIT 1)",
        )
        .bind(r.at_ms)
        .bind(retry)
        .bind(&r.detail)
        .bind(&r.api_key_id)
        .bind(&r.rule)
        .bind(&masked)
        .bind(r.user_id.as_deref().unwrap_or(""))
        .bind(since)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if same == 0 {
            let rows: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM refusals WHERE api_key_id = $1 AND at >= $2",
            )
            .bind(&r.api_key_id)
            .bind(since)
            .fetch_one(&mut *tx)
            .await?;
            if rows >= ROWS_PER_WINDOW {
                sqlx::query(
                    "UPDATE refusals SET repeats = repeats + 1, last_at = $1 WHERE id = \
                     (SELECT id FROM refusals WHERE api_key_id = $2 ORDER BY at DESC, id DESC \
                     LIMIT 1)",
                )
                .bind(r.at_ms)
                .bind(&r.api_key_id)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query(
                    "INSERT INTO refusals (id, at, last_at, repeats, api_key_id, origin, \
                     user_id, phone_masked, rule, detail, retry_after_s) \
                     VALUES ($1, $2, $2, 1, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(crate::new_id("rf"))
                .bind(r.at_ms)
                .bind(&r.api_key_id)
                .bind(r.origin.as_str())
                .bind(r.user_id.as_deref())
                .bind(&masked)
                .bind(&r.rule)
                .bind(&r.detail)
                .bind(retry)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The operator's log, newest first: up to `limit` (1 to 500) entries matching
    /// `filter` — calls, challenges that made no call and refusals — after `cursor` (from
    /// the previous page), and the cursor of the next page if there is one. Filters that
    /// concern calls only (trunk, call id, masked number) leave the challenges without a
    /// call out; those a refusal has no answer to (outcome, trunk, call or challenge id)
    /// leave the refusals out. Each part reads at most `limit + 1` rows, by index.
    pub async fn log(
        &self,
        filter: &CallFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<(Vec<LogEntry>, Option<String>)> {
        let limit = limit.clamp(1, 500);
        let take = i64::from(limit) + 1;
        let mut b = Binds::default();
        let cursor = cursor.map(parse_cursor).transpose()?;
        let after = |b: &mut Binds, at: &str, id: &str| -> Option<String> {
            let (a, i) = cursor.as_ref()?;
            let (a, i) = (b.int(*a), b.text(i.clone()));
            Some(format!("({at} < {a} OR ({at} = {a} AND {id} < {i}))"))
        };
        let mut parts = Vec::new();
        if wants(filter, LogKind::Call) {
            let mut conds = call_conditions(filter, &mut b);
            conds.extend(after(&mut b, "started_at", "id"));
            parts.push(format!(
                "SELECT CAST('call' AS TEXT) AS kind, id, started_at AS at, \
                 challenge_id, (SELECT user_id FROM challenges WHERE challenges.id = \
                 calls.challenge_id) AS user_id, phone_masked AS phone, (SELECT origin FROM \
                 challenges WHERE challenges.id = calls.challenge_id) AS origin, (SELECT \
                 api_key_id FROM challenges WHERE challenges.id = calls.challenge_id) AS \
                 api_key_id, outcome, sip_status, detail, trunk, post_dial_delay_ms, \
                 time_to_verdict_ms, CAST(NULL AS TEXT) AS rule, CAST(NULL AS BIGINT) AS \
                 retry_after_s, CAST(NULL AS BIGINT) AS repeats, CAST(NULL AS BIGINT) AS \
                 last_at FROM calls {} ORDER BY started_at DESC, id DESC LIMIT {take}",
                where_clause(&conds)
            ));
        }
        if wants(filter, LogKind::Challenge)
            && let Some(mut conds) = challenge_conditions(filter, &mut b)
        {
            conds.extend(after(&mut b, "ch.created_at", "ch.id"));
            parts.push(format!(
                "SELECT CAST('challenge' AS TEXT) AS kind, ch.id AS id, ch.created_at AS at, \
                 ch.id AS challenge_id, ch.user_id AS user_id, ch.phone AS phone, ch.origin \
                 AS origin, ch.api_key_id AS api_key_id, ch.state AS outcome, ch.sip_status \
                 AS sip_status, ch.reason AS detail, CAST(NULL AS TEXT) AS trunk, \
                 CAST(NULL AS BIGINT) AS post_dial_delay_ms, ch.decided_at - ch.created_at \
                 AS time_to_verdict_ms, CAST(NULL AS TEXT) AS rule, CAST(NULL AS BIGINT) AS \
                 retry_after_s, CAST(NULL AS BIGINT) AS repeats, CAST(NULL AS BIGINT) AS \
                 last_at FROM challenges ch {} ORDER BY ch.created_at DESC, ch.id DESC \
                 LIMIT {take}",
                where_clause(&conds)
            ));
        }
        if wants(filter, LogKind::Refusal)
            && let Some(mut conds) = refusal_conditions(filter, &mut b)
        {
            conds.extend(after(&mut b, "at", "id"));
            parts.push(format!(
                "SELECT CAST('refusal' AS TEXT) AS kind, id, at, CAST(NULL AS TEXT) AS \
                 challenge_id, user_id, phone_masked AS phone, origin, api_key_id, \
                 CAST(NULL AS TEXT) AS outcome, CAST(NULL AS BIGINT) AS sip_status, detail, \
                 CAST(NULL AS TEXT) AS trunk, CAST(NULL AS BIGINT) AS post_dial_delay_ms, \
                 CAST(NULL AS BIGINT) AS time_to_verdict_ms, rule, retry_after_s, repeats, \
                 last_at FROM refusals {} ORDER BY at DESC, id DESC LIMIT {take}",
                where_clause(&conds)
            ));
        }
        if parts.is_empty() {
            return Ok((Vec::new(), None));
        }
        let union = parts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("SELECT {LOG_COLUMNS} FROM ({p}) AS part{i}"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM ({union}) AS log ORDER BY at DESC, id DESC LIMIT {take}"
        );
        let rows = b.query(sql).fetch_all(&self.pool).await?;
        let mut entries: Vec<LogEntry> = rows.iter().map(entry_from).collect::<Result<_>>()?;
        let next = if entries.len() > limit as usize {
            entries.truncate(limit as usize);
            entries.last().map(|e| format!("{}~{}", e.at_ms, e.id))
        } else {
            None
        };
        Ok((entries, next))
    }

    /// The figures of the calls `filter` selects (its outcome and kind aside: the figures
    /// are of every outcome), with the trusted sign-ins and refusals it selects: counts, and
    /// the time to verdict's p50 and p95 by nearest rank. A count and two reads of one row
    /// each, by index; the caller bounds the window (`from_ms`, `to_ms`).
    pub async fn call_stats(&self, filter: &CallFilter) -> Result<CallStats> {
        let filter = CallFilter {
            outcome: None,
            kind: None,
            ..filter.clone()
        };
        let mut b = Binds::default();
        let conds = call_conditions(&filter, &mut b);
        let sql = format!(
            "SELECT COUNT(*) AS calls, \
             COALESCE(SUM(CASE WHEN ended_at IS NULL THEN 1 ELSE 0 END), 0) AS in_progress, \
             COALESCE(SUM(CASE WHEN outcome = 'approved' THEN 1 ELSE 0 END), 0) AS approved, \
             COALESCE(SUM(CASE WHEN outcome = 'canceled' THEN 1 ELSE 0 END), 0) AS canceled, \
             COUNT(time_to_verdict_ms) AS verdicts FROM calls {}",
            where_clause(&conds)
        );
        let row = b.query(sql).fetch_one(&self.pool).await?;
        let mut s = CallStats {
            calls: row.try_get("calls")?,
            in_progress: row.try_get("in_progress")?,
            approved: row.try_get("approved")?,
            canceled: row.try_get("canceled")?,
            verdicts: row.try_get("verdicts")?,
            ..CallStats::default()
        };
        // Nearest rank: the value at rank ceil(p * n).
        let rank = |p: i64| (p * s.verdicts + 99) / 100 - 1;
        for (p, out) in [(50, &mut s.p50_verdict_ms), (95, &mut s.p95_verdict_ms)] {
            if s.verdicts == 0 {
                break;
            }
            let mut b = Binds::default();
            let mut conds = call_conditions(&filter, &mut b);
            conds.push("time_to_verdict_ms IS NOT NULL".into());
            let sql = format!(
                "SELECT time_to_verdict_ms FROM calls {} ORDER BY time_to_verdict_ms \
                 LIMIT 1 OFFSET {}",
                where_clause(&conds),
                rank(p).max(0)
            );
            *out = b
                .query(sql)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get("time_to_verdict_ms"))
                .transpose()?;
        }
        let approved = CallFilter {
            outcome: Some(OutcomeFilter::Ended(ChallengeState::Approved)),
            ..filter.clone()
        };
        let mut b = Binds::default();
        if let Some(conds) = challenge_conditions(&approved, &mut b) {
            let sql = format!(
                "SELECT COUNT(*) AS n FROM challenges ch {} AND ch.reason = 'trusted_device'",
                where_clause(&conds)
            );
            s.trusted = b.query(sql).fetch_one(&self.pool).await?.try_get("n")?;
        }
        let mut b = Binds::default();
        if let Some(conds) = refusal_conditions(&filter, &mut b) {
            let sql = format!(
                "SELECT CAST(COALESCE(SUM(repeats), 0) AS BIGINT) AS n FROM refusals {}",
                where_clause(&conds)
            );
            s.refused = b.query(sql).fetch_one(&self.pool).await?.try_get("n")?;
        }
        Ok(s)
    }
}

fn entry_from(r: &AnyRow) -> Result<LogEntry> {
    let kind_name: String = r.try_get("kind")?;
    let kind = LogKind::from_name(&kind_name).ok_or(crate::StoreError::Corrupt(kind_name))?;
    let phone: String = r.try_get("phone")?;
    // A challenge keeps its whole number (until retention masks it): masked here.
    let phone_masked = match kind {
        LogKind::Challenge => PhoneNumber::from_stored(&phone)
            .map_err(|_| crate::StoreError::Corrupt("a challenge's number".into()))?
            .masked(),
        LogKind::Call | LogKind::Refusal => phone,
    };
    let origin: Option<String> = r.try_get("origin")?;
    let outcome: Option<String> = r.try_get("outcome")?;
    Ok(LogEntry {
        kind,
        id: r.try_get("id")?,
        at_ms: r.try_get("at")?,
        challenge_id: r.try_get("challenge_id")?,
        user_id: r.try_get("user_id")?,
        phone_masked,
        origin: match origin {
            Some(o) => Origin::from_name(&o).ok_or(crate::StoreError::Corrupt(o))?,
            None => Origin::Api,
        },
        api_key_id: r.try_get("api_key_id")?,
        outcome: match outcome {
            Some(o) => Some(ChallengeState::from_name(&o).ok_or(crate::StoreError::Corrupt(o))?),
            None => None,
        },
        sip_status: r.try_get("sip_status")?,
        detail: r.try_get("detail")?,
        trunk: r.try_get("trunk")?,
        post_dial_delay_ms: r.try_get("post_dial_delay_ms")?,
        time_to_verdict_ms: r.try_get("time_to_verdict_ms")?,
        rule: r.try_get("rule")?,
        retry_after_s: r.try_get("retry_after_s")?,
        repeats: r.try_get("repeats")?,
        last_at_ms: r.try_get("last_at")?,
    })
}
