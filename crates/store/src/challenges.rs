//! Challenges: made once per idempotency key and within the limits in the transaction
//! that inserts them, moved only forward (the update names the states they may come from),
//! each change written with its event; read from the copy on a cached store; counted and
//! expired.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::limits::{self, Admission, Refused};
use crate::types::{sql_list, undecided_sql};
/// The reason of a number-matching challenge denied by wrong digits.
pub const WRONG_CODE: &str = "wrong_code";

use crate::{
    ChallengeId, ChallengeState, Confirmation, Origin, PhoneNumber, PhoneRole, Purpose, Result,
    Store, StoreError, users, webhooks,
};

/// A challenge to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewChallenge {
    /// The API key that asks.
    pub api_key_id: String,
    /// Its `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// A digest of the request, to tell a replay from a different request with the same key.
    pub request_hash: String,
    /// The user, when the challenge targets a registered user.
    pub user_id: Option<String>,
    /// The number to call.
    pub phone: PhoneNumber,
    /// Prompt language code.
    pub language: String,
    /// Sign-in or enrolment.
    pub purpose: Purpose,
    /// Where the decision is posted.
    pub callback_url: Option<String>,
    /// For an enrolment: the phone is registered (pending) in this role with the challenge,
    /// and verified when it is approved.
    pub enrol: Option<PhoneRole>,
    /// How long an approved sign-in trusts the device (0: no trusted-device token).
    pub remember_device_ms: i64,
    /// How long a fraud report on it blocks the user and the numbers called (0: no block).
    pub fraud_block_ms: i64,
    /// An enrolment that must first be approved on the user's current primary phone (the
    /// runner calls that phone first, and the new one only if it approves).
    pub confirm_primary: bool,
    /// Where it comes from.
    pub origin: Origin,
    /// What there made it: for EAM the client-request-id, for RADIUS the NAS.
    pub origin_ref: Option<String>,
    /// How the person confirms it (for number matching the store draws the two digits).
    pub confirmation: Confirmation,
    /// Now, in ms since the epoch.
    pub now_ms: i64,
    /// When it expires, in ms since the epoch.
    pub expires_at_ms: i64,
}

/// A stored challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Its id.
    pub id: ChallengeId,
    /// The API key that made it.
    pub api_key_id: String,
    /// The user, if any.
    pub user_id: Option<String>,
    /// The number.
    pub phone: PhoneNumber,
    /// Prompt language code.
    pub language: String,
    /// Sign-in or enrolment.
    pub purpose: Purpose,
    /// Where the decision is posted.
    pub callback_url: Option<String>,
    /// Where it is.
    pub state: ChallengeState,
    /// Why it ended (a failure's detail), if it did.
    pub reason: Option<String>,
    /// The SIP status of a failure.
    pub sip_status: Option<i64>,
    /// Created, ms since the epoch.
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
    /// Expiry.
    pub expires_at_ms: i64,
    /// When decided.
    pub decided_at_ms: Option<i64>,
    /// How long an approval trusts the device (0: not asked).
    pub remember_device_ms: i64,
    /// An enrolment to be approved on the user's current primary phone first.
    pub confirm_primary: bool,
    /// Where it came from.
    pub origin: Origin,
    /// What there made it (for EAM the client-request-id).
    pub origin_ref: Option<String>,
    /// How the person confirms it.
    pub confirmation: Confirmation,
    /// Number matching: the two digits the sign-in page shows (to the user's front end only:
    /// the call log never shows it).
    pub display_code: Option<String>,
    /// Spoken code: how many times a code was typed.
    pub code_attempts: i64,
    /// Whether the code entered (number matching on the phone, spoken code on the page) was
    /// the right one; `None` until one is entered, and for `pound`.
    pub code_matched: Option<bool>,
}

/// One state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The new state.
    pub state: ChallengeState,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Why, if said.
    pub detail: Option<String>,
}

const CHALLENGE_COLUMNS: &str = "id, api_key_id, user_id, phone, language, purpose, callback_url, \
     state, reason, sip_status, created_at, updated_at, expires_at, decided_at, remember_device_ms, \
     confirm_primary, origin, origin_ref, confirmation, display_code, code_attempts, code_matched";

impl Store {
    /// Creates a challenge in `queued` (with its first event), or, when the same API key
    /// sent the same idempotency key before, returns the challenge that request made
    /// (`true`: a replay). The same key with a different request is an error. No limit is
    /// checked (see [`Store::create_admitted`]).
    pub async fn create_challenge(&self, c: &NewChallenge) -> Result<(Challenge, bool)> {
        match self.create_admitted(c, &Admission::default()).await? {
            Ok(made) => Ok(made),
            Err(r) => Err(StoreError::Corrupt(format!(
                "a challenge with no limits was refused: {r:?}"
            ))),
        }
    }

    /// [`Store::create_challenge`] within the limits of `admission`, checked and counted in
    /// the transaction that inserts the challenge: `Ok(Err(refused))` when they refuse it
    /// (then nothing is written, and nothing counted). A replay of an idempotency key is
    /// answered whatever the limits.
    pub async fn create_admitted(
        &self,
        c: &NewChallenge,
        admission: &Admission,
    ) -> Result<std::result::Result<(Challenge, bool), Refused>> {
        if let Some(key) = &c.idempotency_key
            && let Some(found) = self.by_idempotency_key(&c.api_key_id, key).await?
        {
            return Self::replay(found, key, &c.request_hash).map(Ok);
        }
        let id = ChallengeId::new();
        let display_code =
            (c.confirmation == Confirmation::KeypadCode).then(crate::codes::draw_display_code);
        let mut tx = self.pool.begin().await?;
        // The first statement is a write: on SQLite the transaction holds the writer lock
        // from here, so the limits below are read and counted with no other admission
        // between.
        let inserted = sqlx::query(
            "INSERT INTO challenges (id, api_key_id, idempotency_key, request_hash, user_id, \
             phone, language, purpose, callback_url, state, created_at, updated_at, expires_at, \
             remember_device_ms, fraud_block_ms, confirm_primary, origin, origin_ref, \
             confirmation, display_code) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18)",
        )
        .bind(id.as_str())
        .bind(&c.api_key_id)
        .bind(c.idempotency_key.as_deref())
        .bind(&c.request_hash)
        .bind(c.user_id.as_deref())
        .bind(c.phone.stored())
        .bind(&c.language)
        .bind(c.purpose.as_str())
        .bind(c.callback_url.as_deref())
        .bind(c.now_ms)
        .bind(c.expires_at_ms)
        .bind(c.remember_device_ms)
        .bind(c.fraud_block_ms.max(0))
        .bind(i64::from(c.confirm_primary))
        .bind(c.origin.as_str())
        .bind(c.origin_ref.as_deref())
        .bind(c.confirmation.as_str())
        .bind(display_code.as_deref())
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            drop(tx);
            // Two requests with one key at once: the loser finds the winner's row.
            if let Some(key) = &c.idempotency_key
                && let Some(found) = self.by_idempotency_key(&c.api_key_id, key).await?
            {
                return Self::replay(found, key, &c.request_hash).map(Ok);
            }
            return Err(e.into());
        }
        insert_event(&mut tx, &id, ChallengeState::Queued, c.now_ms, None).await?;
        if let Some(role) = c.enrol {
            let user = c
                .user_id
                .as_deref()
                .ok_or_else(|| StoreError::Corrupt("an enrolment challenge needs a user".into()))?;
            users::insert_phone(
                &mut tx,
                user,
                &c.phone,
                role,
                &c.language,
                id.as_str(),
                c.now_ms,
            )
            .await?;
        }
        if let Err(refused) = limits::admit(
            &mut tx,
            self.backend,
            admission,
            c.user_id.as_deref(),
            &c.phone,
            c.now_ms,
        )
        .await?
        {
            tx.rollback().await?;
            return Ok(Err(refused));
        }
        tx.commit().await?;
        let created = self
            .challenge(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("challenge {id} vanished")))?;
        Ok(Ok((created, false)))
    }

    /// The challenge an earlier request with this API key and idempotency key made, if
    /// any (an error if that request's digest was not `hash`).
    pub async fn idempotent(
        &self,
        api_key_id: &str,
        key: &str,
        hash: &str,
    ) -> Result<Option<Challenge>> {
        match self.by_idempotency_key(api_key_id, key).await? {
            Some(found) => Ok(Some(Self::replay(found, key, hash)?.0)),
            None => Ok(None),
        }
    }

    fn replay(found: (Challenge, String), key: &str, hash: &str) -> Result<(Challenge, bool)> {
        if found.1 == hash {
            Ok((found.0, true))
        } else {
            Err(StoreError::IdempotencyConflict(key.to_string()))
        }
    }

    async fn by_idempotency_key(
        &self,
        api_key_id: &str,
        key: &str,
    ) -> Result<Option<(Challenge, String)>> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS}, request_hash FROM challenges \
             WHERE api_key_id = $1 AND idempotency_key = $2"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(api_key_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let hash: Option<String> = r.try_get("request_hash")?;
            Ok((challenge_from(&r)?, hash.unwrap_or_default()))
        })
        .transpose()
    }

    /// The challenge with this id (from the copy on a cached store).
    pub async fn challenge(&self, id: &ChallengeId) -> Result<Option<Challenge>> {
        let Some(cache) = &self.cache else {
            return self.read_challenge(id).await;
        };
        if let Some(c) = cache.get(id.as_str()) {
            return Ok(Some(c));
        }
        let generation = cache.generation(id.as_str());
        let c = self.read_challenge(id).await?;
        if let (Some(c), Some(g)) = (&c, generation) {
            cache.put(c, g);
        }
        Ok(c)
    }

    pub(crate) async fn read_challenge(&self, id: &ChallengeId) -> Result<Option<Challenge>> {
        let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(challenge_from).transpose()
    }

    /// Moves a challenge to `to` at `at_ms` and records the change, only from an earlier
    /// undecided state; `false` when it was not moved (already there or beyond, decided, or
    /// unknown). For a decision, `reason` and `sip_status` are kept with it.
    pub async fn transition(
        &self,
        id: &ChallengeId,
        to: ChallengeState,
        at_ms: i64,
        reason: Option<&str>,
        sip_status: Option<i64>,
    ) -> Result<bool> {
        self.transition_claiming(id, to, at_ms, reason, sip_status, None, None)
            .await
    }

    /// [`Store::transition`] by a call to `called`: a fraud report (0#) then blocks that
    /// number too, besides the challenge's user and number.
    pub async fn transition_called(
        &self,
        id: &ChallengeId,
        to: ChallengeState,
        at_ms: i64,
        reason: Option<&str>,
        sip_status: Option<i64>,
        called: &PhoneNumber,
    ) -> Result<bool> {
        self.transition_claiming(id, to, at_ms, reason, sip_status, None, Some(called))
            .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn transition_claiming(
        &self,
        id: &ChallengeId,
        to: ChallengeState,
        at_ms: i64,
        reason: Option<&str>,
        sip_status: Option<i64>,
        lease_until_ms: Option<i64>,
        called: Option<&PhoneNumber>,
    ) -> Result<bool> {
        let from = to.predecessors();
        if from.is_empty() {
            return Ok(false);
        }
        let decided = if to.is_terminal() { "$2" } else { "NULL" };
        let claim = match lease_until_ms {
            Some(_) => ", claimed_by = $6, lease_until = $7",
            None => "",
        };
        // A code entered: number matching approved by its digits or denied by others, or a
        // spoken code typed right on the page.
        let matched = match (to, reason) {
            (ChallengeState::Approved, _) => {
                ", code_matched = CASE WHEN confirmation = 'pound' THEN NULL ELSE 1 END"
            }
            (ChallengeState::Denied, Some(WRONG_CODE)) => ", code_matched = 0",
            _ => "",
        };
        let sql = format!(
            "UPDATE challenges SET state = $1, updated_at = $2, decided_at = {decided}, \
             reason = COALESCE($3, reason), sip_status = COALESCE($4, sip_status){claim}{matched} \
             WHERE id = $5 AND state IN ({})",
            sql_list(|s| from.contains(&s))
        );
        let mut tx = self.pool.begin().await?;
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(at_ms)
            .bind(reason)
            .bind(sip_status)
            .bind(id.as_str());
        if let Some(until) = lease_until_ms {
            q = q.bind(self.node()).bind(until);
        }
        let done = q.execute(&mut *tx).await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_event(&mut tx, id, to, at_ms, reason).await?;
        if to == ChallengeState::Approved {
            users::on_approved(&mut tx, id.as_str(), at_ms).await?;
        }
        if to == ChallengeState::FraudReported {
            users::on_fraud_reported(&mut tx, id.as_str(), at_ms, called).await?;
        }
        if to == ChallengeState::Denied && reason == Some(WRONG_CODE) {
            users::on_wrong_code(&mut tx, id.as_str(), at_ms, called).await?;
        }
        if to.is_terminal() {
            webhooks::on_decided(&mut tx, id.as_str(), at_ms).await?;
        }
        tx.commit().await?;
        self.announce(id, to);
        Ok(true)
    }

    /// Every state change of a challenge, in order.
    pub async fn events(&self, id: &ChallengeId) -> Result<Vec<StateChange>> {
        let rows = sqlx::query(
            "SELECT state, at, detail FROM challenge_events WHERE challenge_id = $1 ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(StateChange {
                    state: ChallengeState::from_name(&state).ok_or(StoreError::Corrupt(state))?,
                    at_ms: r.try_get("at")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}

/// What a rate limit counts challenges of.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// One number.
    Phone(&'a PhoneNumber),
    /// One user.
    User(&'a str),
    /// One API key.
    ApiKey(&'a str),
}

impl Store {
    /// How many challenges were created for `scope` since `since_ms`.
    pub async fn count_challenges(&self, scope: Scope<'_>, since_ms: i64) -> Result<i64> {
        let (sql, value) = match scope {
            Scope::Phone(p) => (
                "SELECT COUNT(*) FROM challenges WHERE phone = $1 AND created_at >= $2",
                p.stored(),
            ),
            Scope::User(u) => (
                "SELECT COUNT(*) FROM challenges WHERE user_id = $1 AND created_at >= $2",
                u,
            ),
            Scope::ApiKey(k) => (
                "SELECT COUNT(*) FROM challenges WHERE api_key_id = $1 AND created_at >= $2",
                k,
            ),
        };
        Ok(sqlx::query_scalar(sql)
            .bind(value)
            .bind(since_ms)
            .fetch_one(&self.pool)
            .await?)
    }

    /// How many challenges are waiting for or in a call.
    pub async fn active_challenges(&self) -> Result<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM challenges WHERE state IN ({})",
            undecided_sql()
        );
        Ok(sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await?)
    }

    /// Challenges still queued, or whose spoken code was not typed, after their expiry
    /// become `expired`; returns their ids. (A call in progress is bounded by its own
    /// timeouts and decides itself.)
    pub async fn expire_due(&self, now_ms: i64) -> Result<Vec<ChallengeId>> {
        let rows = sqlx::query(
            "SELECT id, state FROM challenges WHERE state IN ('queued', 'code_spoken') \
             AND expires_at <= $1",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut expired = Vec::new();
        for r in rows {
            let (id, state): (String, String) = (r.try_get("id")?, r.try_get("state")?);
            let why = if state == "queued" {
                "not called before its expiry"
            } else {
                "the spoken code was not typed before its expiry"
            };
            let id = ChallengeId::from_stored(id);
            if self
                .transition(&id, ChallengeState::Expired, now_ms, Some(why), None)
                .await?
            {
                expired.push(id);
            }
        }
        Ok(expired)
    }
}

pub(crate) async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &ChallengeId,
    state: ChallengeState,
    at_ms: i64,
    detail: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO challenge_events (challenge_id, state, at, detail) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.as_str())
    .bind(state.as_str())
    .bind(at_ms)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The same state change of several challenges at once, in one statement.
pub(crate) async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ids: &[ChallengeId],
    state: ChallengeState,
    at_ms: i64,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..ids.len())
        .map(|i| format!("(${}, $1, $2, NULL)", i + 3))
        .collect();
    let sql = format!(
        "INSERT INTO challenge_events (challenge_id, state, at, detail) VALUES {}",
        rows.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(state.as_str())
        .bind(at_ms);
    for id in ids {
        q = q.bind(id.as_str());
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

fn challenge_from(r: &AnyRow) -> Result<Challenge> {
    let state: String = r.try_get("state")?;
    let purpose: String = r.try_get("purpose")?;
    let phone: String = r.try_get("phone")?;
    let origin: String = r.try_get("origin")?;
    let confirmation: String = r.try_get("confirmation")?;
    Ok(Challenge {
        id: ChallengeId::from_stored(r.try_get("id")?),
        api_key_id: r.try_get("api_key_id")?,
        user_id: r.try_get("user_id")?,
        phone: PhoneNumber::from_stored(&phone).map_err(|_| StoreError::Corrupt(phone))?,
        language: r.try_get("language")?,
        purpose: Purpose::from_name(&purpose).ok_or(StoreError::Corrupt(purpose))?,
        callback_url: r.try_get("callback_url")?,
        state: ChallengeState::from_name(&state).ok_or(StoreError::Corrupt(state))?,
        reason: r.try_get("reason")?,
        sip_status: r.try_get("sip_status")?,
        created_at_ms: r.try_get("created_at")?,
        updated_at_ms: r.try_get("updated_at")?,
        expires_at_ms: r.try_get("expires_at")?,
        decided_at_ms: r.try_get("decided_at")?,
        remember_device_ms: r.try_get("remember_device_ms")?,
        confirm_primary: r.try_get::<i64, _>("confirm_primary")? != 0,
        origin: Origin::from_name(&origin).ok_or(StoreError::Corrupt(origin))?,
        origin_ref: r.try_get("origin_ref")?,
        confirmation: Confirmation::from_name(&confirmation)
            .ok_or(StoreError::Corrupt(confirmation))?,
        display_code: r.try_get("display_code")?,
        code_attempts: r.try_get("code_attempts")?,
        code_matched: r.try_get::<Option<i64>, _>("code_matched")?.map(|v| v != 0),
    })
}
