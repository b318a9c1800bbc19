//! Users' phones, trusted devices and fraud blocks. Users are the identity service's own ids:
//! nothing is stored of a user but the phones registered for it, the devices it trusts and
//! the blocks its fraud reports made.

use sqlx::{AssertSqlSafe, Row};

use crate::{ChallengeState, PhoneNumber, PhoneRole, Result, Store, StoreError};

/// Where a registered phone is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneState {
    /// Its enrolment call has not been decided yet.
    Pending,
    /// Its enrolment call was approved: it is called for sign-ins.
    Verified,
    /// Its enrolment call ended without approval; register it again.
    Failed,
}

/// A registered phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phone {
    /// Its id (`ph_…`).
    pub id: String,
    /// The user.
    pub user_id: String,
    /// The number.
    pub phone: PhoneNumber,
    /// Primary or fallback.
    pub role: PhoneRole,
    /// Prompt language for its calls.
    pub language: String,
    /// Where it is.
    pub state: PhoneState,
    /// The enrolment challenge (none for a phone an administrator imported).
    pub challenge_id: Option<String>,
    /// Registered, ms since the epoch.
    pub created_at_ms: i64,
    /// Verified, ms since the epoch.
    pub verified_at_ms: Option<i64>,
}

/// A trusted device (the token's secret part is never stored: it is an HMAC of the id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedDevice {
    /// Its id (`td_…`).
    pub id: String,
    /// The user.
    pub user_id: String,
    /// The approved sign-in that made it.
    pub challenge_id: String,
    /// Made, ms since the epoch.
    pub created_at_ms: i64,
    /// Trusted until, ms since the epoch.
    pub expires_at_ms: i64,
    /// Revoked, ms since the epoch.
    pub revoked_at_ms: Option<i64>,
}

impl TrustedDevice {
    /// Whether it still skips the call at `now_ms`.
    pub fn valid_at(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && now_ms < self.expires_at_ms
    }
}

pub(crate) async fn insert_phone(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: &str,
    phone: &PhoneNumber,
    role: PhoneRole,
    language: &str,
    challenge_id: &str,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO phones (id, user_id, phone, role, language, challenge_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(crate::new_id("ph"))
    .bind(user)
    .bind(phone.stored())
    .bind(role.as_str())
    .bind(language)
    .bind(challenge_id)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// In the transaction that approves challenge `id`: an enrolment verifies its phone (which
/// replaces the user's earlier phone in that role; a new primary phone also revokes the
/// user's trusted devices); a sign-in that asked to remember the device makes a trusted
/// device.
pub(crate) async fn on_approved(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    at_ms: i64,
) -> Result<()> {
    let phone = sqlx::query(
        "SELECT id, user_id, role FROM phones WHERE challenge_id = $1 AND verified_at IS NULL \
         AND removed_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(p) = phone {
        let (pid, user, role): (String, String, String) =
            (p.try_get("id")?, p.try_get("user_id")?, p.try_get("role")?);
        sqlx::query("UPDATE phones SET verified_at = $1 WHERE id = $2")
            .bind(at_ms)
            .bind(&pid)
            .execute(&mut **tx)
            .await?;
        replace_in_role(tx, &user, &role, &pid, at_ms).await?;
    }
    sqlx::query(
        "INSERT INTO trusted_devices (id, user_id, challenge_id, created_at, expires_at) \
         SELECT $1, user_id, id, $2, $2 + remember_device_ms FROM challenges \
         WHERE id = $3 AND remember_device_ms > 0 AND user_id IS NOT NULL AND purpose = 'sign_in'",
    )
    .bind(crate::new_id("td"))
    .bind(at_ms)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Phone `pid`, just verified, replaces the user's other verified phones in `role` (they
/// are removed); a new primary phone also revokes the user's trusted devices. Returns how
/// many phones it replaced.
async fn replace_in_role(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: &str,
    role: &str,
    pid: &str,
    at_ms: i64,
) -> Result<u64> {
    let replaced = sqlx::query(
        "UPDATE phones SET removed_at = $1 WHERE user_id = $2 AND role = $3 AND id <> $4 \
         AND verified_at IS NOT NULL AND removed_at IS NULL",
    )
    .bind(at_ms)
    .bind(user)
    .bind(role)
    .bind(pid)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if role == PhoneRole::Primary.as_str() {
        revoke_all(tx, user, at_ms).await?;
    }
    Ok(replaced)
}

/// In the transaction of an import: `phone` is the user's verified phone in `role` from
/// `at_ms` (with no enrolment challenge), replacing the earlier one as an approved
/// enrolment does. Returns how many phones it replaced.
pub(crate) async fn verify_imported(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: &str,
    phone: &PhoneNumber,
    role: PhoneRole,
    language: &str,
    at_ms: i64,
) -> Result<u64> {
    let pid = crate::new_id("ph");
    sqlx::query(
        "INSERT INTO phones (id, user_id, phone, role, language, created_at, verified_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(&pid)
    .bind(user)
    .bind(phone.stored())
    .bind(role.as_str())
    .bind(language)
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    replace_in_role(tx, user, role.as_str(), &pid, at_ms).await
}

async fn revoke_all(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: &str,
    at_ms: i64,
) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE trusted_devices SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(at_ms)
    .bind(user)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// Who and what a block for challenge `id` covers: its user, the numbers called (the
/// challenge's, and `called` if another) and how long its blocks last.
struct Blockable {
    user: Option<String>,
    phones: Vec<String>,
    block_ms: i64,
}

/// [`Blockable`] of challenge `id`, read in the transaction that decides it; `None` for an
/// unknown challenge.
async fn blockable(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    called: Option<&PhoneNumber>,
) -> Result<Option<Blockable>> {
    let Some(row) =
        sqlx::query("SELECT user_id, phone, fraud_block_ms FROM challenges WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
    else {
        return Ok(None);
    };
    let mut phones: Vec<String> = vec![row.try_get("phone")?];
    if let Some(c) = called.and_then(PhoneNumber::as_e164)
        && !phones.iter().any(|p| p == c)
    {
        phones.push(c.to_string());
    }
    Ok(Some(Blockable {
        user: row.try_get("user_id")?,
        phones,
        block_ms: row.try_get("fraud_block_ms")?,
    }))
}

/// In the transaction that decides challenge `id` `fraud_reported`: the user and the
/// numbers called (the challenge's, and `called` if another) are blocked for the
/// challenge's `fraud_block_ms`, and the user's trusted devices are revoked.
pub(crate) async fn on_fraud_reported(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    at_ms: i64,
    called: Option<&PhoneNumber>,
) -> Result<()> {
    let Some(Blockable {
        user,
        phones,
        block_ms,
    }) = blockable(tx, id, called).await?
    else {
        return Ok(());
    };
    if block_ms > 0 {
        block(
            tx,
            user.as_deref(),
            &phones,
            id,
            "fraud reported (0#)",
            at_ms,
            at_ms + block_ms,
        )
        .await?;
    }
    if let Some(u) = &user {
        revoke_all(tx, u, at_ms).await?;
    }
    Ok(())
}

/// Number matching denied by wrong digits (challenge `id`, at `at_ms`): a fraud signal. When
/// the user's decision before this one was also a wrong code, the user and the numbers are
/// blocked as a fraud report blocks them (someone keeps entering digits they were not shown).
pub(crate) async fn on_wrong_code(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    at_ms: i64,
    called: Option<&PhoneNumber>,
) -> Result<()> {
    let Some(Blockable {
        user: Some(user),
        phones,
        block_ms,
    }) = blockable(tx, id, called).await?
    else {
        return Ok(());
    };
    let before: Option<Option<String>> = sqlx::query_scalar(
        "SELECT reason FROM challenges WHERE user_id = $1 AND id <> $2 \
         AND decided_at IS NOT NULL ORDER BY decided_at DESC, created_at DESC LIMIT 1",
    )
    .bind(&user)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    if before.flatten().as_deref() != Some(crate::challenges::WRONG_CODE) || block_ms <= 0 {
        return Ok(());
    }
    block(
        tx,
        Some(&user),
        &phones,
        id,
        "two wrong number-matching codes in a row",
        at_ms,
        at_ms + block_ms,
    )
    .await?;
    revoke_all(tx, &user, at_ms).await?;
    Ok(())
}

/// Blocks calls for `user` and each of `phones` from `at_ms` until `until_ms`, because of
/// challenge `id` (the one place blocks are made: a fraud report, or another trigger).
pub(crate) async fn block(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: Option<&str>,
    phones: &[String],
    id: &str,
    reason: &str,
    at_ms: i64,
    until_ms: i64,
) -> Result<()> {
    for phone in phones {
        sqlx::query(
            "INSERT INTO fraud_blocks (id, user_id, phone, challenge_id, reason, created_at, until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(crate::new_id("fb"))
        .bind(user)
        .bind(phone)
        .bind(id)
        .bind(reason)
        .bind(at_ms)
        .bind(until_ms)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A fraud block: calls for the user and the number are refused until `until_ms` unless
/// lifted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FraudBlock {
    /// Its id (`fb_…`).
    pub id: String,
    /// The user blocked, if the challenge had one.
    pub user_id: Option<String>,
    /// The number blocked.
    pub phone: PhoneNumber,
    /// The challenge whose report made it.
    pub challenge_id: String,
    /// Why.
    pub reason: String,
    /// Made, ms since the epoch.
    pub created_at_ms: i64,
    /// Lifts by itself then.
    pub until_ms: i64,
    /// Lifted early then, through the API.
    pub lifted_at_ms: Option<i64>,
    /// By the key with this id…
    pub lifted_by_key_id: Option<String>,
    /// …and this name.
    pub lifted_by_key_name: Option<String>,
}

impl FraudBlock {
    /// Whether it refuses calls at `now_ms`.
    pub fn holds_at(&self, now_ms: i64) -> bool {
        self.lifted_at_ms.is_none() && now_ms < self.until_ms
    }
}

const PHONE_COLUMNS: &str = "p.id, p.user_id, p.phone, p.role, p.language, p.challenge_id, \
     p.created_at, p.verified_at, c.state";

fn phone_from(r: &sqlx::any::AnyRow) -> Result<Phone> {
    let number: String = r.try_get("phone")?;
    let role: String = r.try_get("role")?;
    let verified_at_ms: Option<i64> = r.try_get("verified_at")?;
    // An imported phone has no enrolment challenge (and is verified).
    let challenge: Option<String> = r.try_get("state")?;
    let decided = match challenge {
        Some(c) => ChallengeState::from_name(&c)
            .ok_or(StoreError::Corrupt(c))?
            .is_terminal(),
        None => true,
    };
    Ok(Phone {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        phone: PhoneNumber::parse(&number).map_err(|_| StoreError::Corrupt(number))?,
        role: PhoneRole::from_name(&role).ok_or(StoreError::Corrupt(role))?,
        language: r.try_get("language")?,
        state: match (verified_at_ms, decided) {
            (Some(_), _) => PhoneState::Verified,
            (None, true) => PhoneState::Failed,
            (None, false) => PhoneState::Pending,
        },
        challenge_id: r.try_get("challenge_id")?,
        created_at_ms: r.try_get("created_at")?,
        verified_at_ms,
    })
}

const TRUSTED_COLUMNS: &str = "id, user_id, challenge_id, created_at, expires_at, revoked_at";

fn trusted_from(r: &sqlx::any::AnyRow) -> Result<TrustedDevice> {
    Ok(TrustedDevice {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        challenge_id: r.try_get("challenge_id")?,
        created_at_ms: r.try_get("created_at")?,
        expires_at_ms: r.try_get("expires_at")?,
        revoked_at_ms: r.try_get("revoked_at")?,
    })
}

impl Store {
    /// A user's phones that are not removed, oldest first.
    pub async fn phones(&self, user_id: &str) -> Result<Vec<Phone>> {
        let sql = format!(
            "SELECT {PHONE_COLUMNS} FROM phones p LEFT JOIN challenges c ON c.id = p.challenge_id \
             WHERE p.user_id = $1 AND p.removed_at IS NULL ORDER BY p.created_at, p.id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(phone_from).collect()
    }

    /// The verified phone of a user in a role.
    pub async fn verified_phone(&self, user_id: &str, role: PhoneRole) -> Result<Option<Phone>> {
        Ok(self
            .phones(user_id)
            .await?
            .into_iter()
            .filter(|p| p.role == role && p.state == PhoneState::Verified)
            .max_by_key(|p| p.verified_at_ms))
    }

    /// Removes a user's phone (a verified one only if `verified_too`); `false` when the
    /// user has no such phone (or it is verified and `verified_too` is not set).
    pub async fn remove_phone(
        &self,
        user_id: &str,
        phone_id: &str,
        now_ms: i64,
        verified_too: bool,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE phones SET removed_at = $1 WHERE id = $2 AND user_id = $3 \
             AND removed_at IS NULL AND (verified_at IS NULL OR $4 = 1)",
        )
        .bind(now_ms)
        .bind(phone_id)
        .bind(user_id)
        .bind(i64::from(verified_too))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A user's fraud blocks, lifted and past ones included, newest first.
    pub async fn fraud_blocks(&self, user_id: &str) -> Result<Vec<FraudBlock>> {
        let rows = sqlx::query(
            "SELECT id, user_id, phone, challenge_id, reason, created_at, until, lifted_at, \
             lifted_by_key_id, lifted_by_key_name FROM fraud_blocks WHERE user_id = $1 \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let phone: String = r.try_get("phone")?;
                Ok(FraudBlock {
                    id: r.try_get("id")?,
                    user_id: r.try_get("user_id")?,
                    phone: PhoneNumber::parse(&phone).map_err(|_| StoreError::Corrupt(phone))?,
                    challenge_id: r.try_get("challenge_id")?,
                    reason: r.try_get("reason")?,
                    created_at_ms: r.try_get("created_at")?,
                    until_ms: r.try_get("until")?,
                    lifted_at_ms: r.try_get("lifted_at")?,
                    lifted_by_key_id: r.try_get("lifted_by_key_id")?,
                    lifted_by_key_name: r.try_get("lifted_by_key_name")?,
                })
            })
            .collect()
    }

    /// Lifts the fraud blocks of a user that hold at `now_ms`, recording that `by` did;
    /// returns how many.
    pub async fn lift_fraud_blocks(
        &self,
        user_id: &str,
        by: &crate::ApiKey,
        now_ms: i64,
    ) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE fraud_blocks SET lifted_at = $1, lifted_by_key_id = $2, lifted_by_key_name = $3 \
             WHERE user_id = $4 AND lifted_at IS NULL AND until > $1",
        )
        .bind(now_ms)
        .bind(&by.id)
        .bind(&by.name)
        .bind(user_id)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// The trusted device with this id.
    pub async fn trusted_device(&self, id: &str) -> Result<Option<TrustedDevice>> {
        let sql = format!("SELECT {TRUSTED_COLUMNS} FROM trusted_devices WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(trusted_from).transpose()
    }

    /// The trusted device an approved sign-in made, if it asked for one.
    pub async fn trusted_device_of(
        &self,
        challenge_id: &crate::ChallengeId,
    ) -> Result<Option<TrustedDevice>> {
        let sql = format!("SELECT {TRUSTED_COLUMNS} FROM trusted_devices WHERE challenge_id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(challenge_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(trusted_from).transpose()
    }

    /// A user's trusted devices, revoked and expired ones included, newest first.
    pub async fn trusted_devices(&self, user_id: &str) -> Result<Vec<TrustedDevice>> {
        let sql = format!(
            "SELECT {TRUSTED_COLUMNS} FROM trusted_devices WHERE user_id = $1 \
             ORDER BY created_at DESC, id DESC"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(trusted_from).collect()
    }

    /// Revokes one of a user's trusted devices (`Some(id)`) or all of them; returns how
    /// many were revoked.
    pub async fn revoke_trusted_devices(
        &self,
        user_id: &str,
        id: Option<&str>,
        now_ms: i64,
    ) -> Result<u64> {
        let r = match id {
            Some(id) => {
                sqlx::query(
                    "UPDATE trusted_devices SET revoked_at = $1 \
                     WHERE user_id = $2 AND id = $3 AND revoked_at IS NULL",
                )
                .bind(now_ms)
                .bind(user_id)
                .bind(id)
                .execute(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "UPDATE trusted_devices SET revoked_at = $1 \
                     WHERE user_id = $2 AND revoked_at IS NULL",
                )
                .bind(now_ms)
                .bind(user_id)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(r.rows_affected())
    }
}
