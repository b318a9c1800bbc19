//! API keys: made with a secret shown once (only its SHA-256 is stored), looked up by
//! secret or by name, listed, revoked. Nothing caches a key: each request reads it here, so
//! a revoked key fails at once on every node sharing the database.

use sqlx::{AssertSqlSafe, Row};

use crate::{Confirmation, Result, Store, StoreError, new_id};

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Identity services: create and read challenges.
    Service,
    /// Operators (who run the gateway): read the call log, list and revoke API keys.
    Operator,
}

impl KeyKind {
    /// Its name (`service`, `operator`), as stored and as `create-api-key --kind` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Service => "service",
            KeyKind::Operator => "operator",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<KeyKind> {
        [KeyKind::Service, KeyKind::Operator]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

/// A stored API key (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id (`key_…`).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// What it may do.
    pub kind: KeyKind,
    /// A service key that may replace users' verified phones without the old phone's
    /// approval, and remove verified phones.
    pub phone_admin: bool,
    /// How the challenges this key makes are confirmed when a request does not say (`None`:
    /// the gateway's `[call] confirmation`).
    pub confirmation: Option<Confirmation>,
}

/// A key as `api-keys list` and `GET /v1/api-keys` show it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyEntry {
    /// The key.
    pub key: ApiKey,
    /// When it was made, ms since the epoch.
    pub created_at_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
    /// When it was last used as far as the store knows: its newest challenge or refused
    /// attempt still kept (`None` for an operator key, which makes neither, or one unused).
    pub last_used_ms: Option<i64>,
}

/// What [`Store::revoke_api_key_by_id`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// The key is revoked now.
    Revoked(ApiKeyEntry),
    /// It had been revoked already (at its `revoked_at_ms`).
    AlreadyRevoked(ApiKeyEntry),
    /// No key has this id.
    Unknown,
}

/// The keys at most listed (they are made by hand: far fewer).
const MAX_LISTED: i64 = 10_000;

const ENTRY_COLUMNS: &str = "k.id, k.name, k.kind, k.phone_admin, k.confirmation, \
     k.created_at, k.revoked_at, \
     (SELECT MAX(c.created_at) FROM challenges c WHERE c.api_key_id = k.id) AS last_challenge, \
     (SELECT MAX(r.last_at) FROM refusals r WHERE r.api_key_id = k.id) AS last_refusal";

fn entry_of(r: &sqlx::any::AnyRow) -> Result<ApiKeyEntry> {
    let kind: String = r.try_get("kind")?;
    let last_challenge: Option<i64> = r.try_get("last_challenge")?;
    let last_refusal: Option<i64> = r.try_get("last_refusal")?;
    Ok(ApiKeyEntry {
        key: ApiKey {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            kind: KeyKind::from_name(&kind).ok_or(StoreError::Corrupt(kind))?,
            phone_admin: r.try_get::<i64, _>("phone_admin")? != 0,
            confirmation: confirmation_of(r)?,
        },
        created_at_ms: r.try_get("created_at")?,
        revoked_at_ms: r.try_get("revoked_at")?,
        last_used_ms: last_challenge.max(last_refusal),
    })
}

fn secret_hash(secret: &str) -> String {
    use sha2::Digest;
    crate::hex(&sha2::Sha256::digest(secret.as_bytes()))
}

impl Store {
    /// Makes an API key; returns it and its secret (`cvk_…`), which is shown once: only
    /// its SHA-256 is stored.
    pub async fn create_api_key(
        &self,
        name: &str,
        kind: KeyKind,
        now_ms: i64,
    ) -> Result<(ApiKey, String)> {
        self.create_api_key_with(name, kind, false, now_ms).await
    }

    /// [`Store::create_api_key`], a service key with `phone_admin` if asked (ignored for
    /// other kinds).
    pub async fn create_api_key_with(
        &self,
        name: &str,
        kind: KeyKind,
        phone_admin: bool,
        now_ms: i64,
    ) -> Result<(ApiKey, String)> {
        let id = new_id("key");
        let secret = new_id("cvk");
        let phone_admin = phone_admin && kind == KeyKind::Service;
        sqlx::query(
            "INSERT INTO api_keys (id, name, kind, secret_hash, created_at, phone_admin) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(name)
        .bind(kind.as_str())
        .bind(secret_hash(&secret))
        .bind(now_ms)
        .bind(i64::from(phone_admin))
        .execute(&self.pool)
        .await?;
        Ok((
            ApiKey {
                id,
                name: name.into(),
                kind,
                phone_admin,
                confirmation: None,
            },
            secret,
        ))
    }

    /// The key whose secret this is, unless unknown or revoked.
    pub async fn api_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT id, name, kind, phone_admin, confirmation FROM api_keys \
             WHERE secret_hash = $1 AND revoked_at IS NULL",
        )
        .bind(secret_hash(secret))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(ApiKey {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                kind: KeyKind::from_name(&kind).ok_or(StoreError::Corrupt(kind))?,
                phone_admin: r.try_get::<i64, _>("phone_admin")? != 0,
                confirmation: confirmation_of(&r)?,
            })
        })
        .transpose()
    }

    /// The oldest key of `kind` named `name` that is not revoked, if any (for a key the
    /// gateway makes for itself, such as the demo page's, to be made once, not per start).
    pub async fn api_key_named(&self, name: &str, kind: KeyKind) -> Result<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT id, phone_admin, confirmation FROM api_keys WHERE name = $1 AND kind = $2 \
             AND revoked_at IS NULL ORDER BY created_at, id LIMIT 1",
        )
        .bind(name)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ApiKey {
                id: r.try_get("id")?,
                name: name.into(),
                kind,
                phone_admin: r.try_get::<i64, _>("phone_admin")? != 0,
                confirmation: confirmation_of(&r)?,
            })
        })
        .transpose()
    }

    /// Sets (or, with `None`, clears) the confirmation mode of the challenges key `id` makes
    /// when a request names none; `false` for an unknown or revoked key.
    pub async fn set_key_confirmation(
        &self,
        id: &str,
        confirmation: Option<Confirmation>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE api_keys SET confirmation = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(confirmation.map(Confirmation::as_str))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Every key, revoked ones included, oldest first (at most 10,000).
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyEntry>> {
        // Only constants are formatted in.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM api_keys k ORDER BY k.created_at, k.id LIMIT $1"
        )))
        .bind(MAX_LISTED)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_of).collect()
    }

    /// The key with id `id`, revoked or not.
    pub async fn api_key_entry(&self, id: &str) -> Result<Option<ApiKeyEntry>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM api_keys k WHERE k.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(entry_of).transpose()
    }

    /// Whether key `id` exists and is not revoked (for what was admitted with it and lasts:
    /// event streams, long polls).
    pub async fn api_key_live(&self, id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT id FROM api_keys WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Revokes key `id` at `now_ms`, telling an unknown id and one revoked already apart.
    pub async fn revoke_api_key_by_id(&self, id: &str, now_ms: i64) -> Result<Revocation> {
        let revoked = self.revoke_api_key(id, now_ms).await?;
        Ok(match (revoked, self.api_key_entry(id).await?) {
            (_, None) => Revocation::Unknown,
            (true, Some(e)) => Revocation::Revoked(e),
            (false, Some(e)) => Revocation::AlreadyRevoked(e),
        })
    }

    /// Revokes a key: its secret stops working.
    pub async fn revoke_api_key(&self, id: &str, now_ms: i64) -> Result<bool> {
        let r =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }
}

/// The confirmation column of a key's row.
fn confirmation_of(r: &sqlx::any::AnyRow) -> Result<Option<Confirmation>> {
    let name: Option<String> = r.try_get("confirmation")?;
    name.map(|n| Confirmation::from_name(&n).ok_or(StoreError::Corrupt(n)))
        .transpose()
}
