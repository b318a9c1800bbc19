//! What the Microsoft Entra external authentication (EAM) provider keeps: its signing keys
//! (the private key sealed by the caller: opaque bytes here), the nonces of the
//! authorization requests it accepted (only their SHA-256, so that a request is accepted
//! once, whichever node sees it), and each browser's EAM sign-in with a secret of its own
//! (only its SHA-256 is stored). Also the phones an administrator imports
//! (`callverify import-phones`): verified without a call.

use sha2::Digest;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{ChallengeId, PhoneNumber, PhoneRole, Result, Store, new_id, users};

/// A signing key of the EAM provider, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEamKey {
    /// Its key id (`kid` in the JWKS and in the tokens' header).
    pub kid: String,
    /// The private key, sealed by the caller (opaque to the store).
    pub sealed_key: Vec<u8>,
    /// Its certificate (DER), published with the key.
    pub certificate: Vec<u8>,
    /// Made, ms since the epoch.
    pub created_ms: i64,
    /// Signs from then on (published before, so that Entra knows it first).
    pub sign_from_ms: i64,
}

/// An EAM sign-in to record: what the answer to Entra will need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEamSession {
    /// The Entra application that asked (`client_id`).
    pub client_id: String,
    /// Where the answer goes (`redirect_uri`).
    pub redirect_uri: String,
    /// Entra's `state`, given back as it came.
    pub state: Option<String>,
    /// Entra's `nonce`, put into the answer's token.
    pub nonce: String,
    /// The `sub` of Entra's id_token_hint.
    pub sub: String,
    /// The user's tenant (`tid`).
    pub tid: String,
    /// The user's object id (`oid`).
    pub oid: String,
    /// The authentication context Entra asked for (`acr`).
    pub acr: String,
    /// The user as the store keeps users (`entra:{tid}:{oid}`, or as configured).
    pub user_id: String,
    /// Entra's `client-request-id`, for the call log.
    pub client_request_id: Option<String>,
    /// The prompts' language.
    pub language: String,
    /// Now, ms since the epoch.
    pub now_ms: i64,
    /// When the sign-in may no longer go on, ms since the epoch.
    pub expires_at_ms: i64,
}

/// A stored EAM sign-in (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EamSession {
    /// Its id (`es_` and 32 hex digits).
    pub id: String,
    /// The Entra application that asked.
    pub client_id: String,
    /// Where the answer goes.
    pub redirect_uri: String,
    /// Entra's `state`.
    pub state: Option<String>,
    /// Entra's `nonce`.
    pub nonce: String,
    /// The hint's `sub`.
    pub sub: String,
    /// The user's tenant.
    pub tid: String,
    /// The user's object id.
    pub oid: String,
    /// The authentication context asked for.
    pub acr: String,
    /// The user as the store keeps users.
    pub user_id: String,
    /// Entra's `client-request-id`.
    pub client_request_id: Option<String>,
    /// The prompts' language.
    pub language: String,
    /// The challenge that calls the user, once made.
    pub challenge_id: Option<ChallengeId>,
    /// Made, ms since the epoch.
    pub created_at_ms: i64,
    /// Expires, ms since the epoch.
    pub expires_at_ms: i64,
    /// When its answer was released to Entra (once).
    pub finished_at_ms: Option<i64>,
}

/// What [`Store::import_phone`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imported {
    /// The user had no verified phone in that role: this one is it now.
    Added,
    /// It replaced the user's verified phone in that role.
    Replaced,
    /// The same number was verified in that role already: nothing written.
    Unchanged,
}

/// SHA-256 of `s`, in hex.
fn sha256_hex(s: &str) -> String {
    crate::hex(&sha2::Sha256::digest(s.as_bytes()))
}

/// Whether `a` and `b` are equal, in a time that does not depend on where they differ.
fn same_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A session's secret: 32 bytes from the operating system's generator, in hex.
fn new_secret() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random generator works");
    crate::hex(&b)
}

const SESSION_COLUMNS: &str = "id, secret_hash, client_id, redirect_uri, state, nonce, sub, tid, \
     oid, acr, user_id, client_request_id, language, challenge_id, created_at, expires_at, \
     finished_at";

fn session_from(r: &AnyRow) -> Result<EamSession> {
    let challenge: Option<String> = r.try_get("challenge_id")?;
    Ok(EamSession {
        id: r.try_get("id")?,
        client_id: r.try_get("client_id")?,
        redirect_uri: r.try_get("redirect_uri")?,
        state: r.try_get("state")?,
        nonce: r.try_get("nonce")?,
        sub: r.try_get("sub")?,
        tid: r.try_get("tid")?,
        oid: r.try_get("oid")?,
        acr: r.try_get("acr")?,
        user_id: r.try_get("user_id")?,
        client_request_id: r.try_get("client_request_id")?,
        language: r.try_get("language")?,
        challenge_id: challenge.map(ChallengeId::from_stored),
        created_at_ms: r.try_get("created_at")?,
        expires_at_ms: r.try_get("expires_at")?,
        finished_at_ms: r.try_get("finished_at")?,
    })
}

impl Store {
    /// Records a nonce as used until `expires_at_ms` (at least until `now_ms`): true the
    /// first time, false for a replay. One INSERT, whose primary key decides, so two nodes
    /// at once cannot both get true. Only the nonce's SHA-256 is kept.
    pub async fn use_eam_nonce(
        &self,
        nonce: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO eam_nonces (nonce_hash, expires_at) VALUES ($1, $2) \
             ON CONFLICT (nonce_hash) DO NOTHING",
        )
        .bind(sha256_hex(nonce))
        .bind(expires_at_ms.max(now_ms))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A new EAM sign-in: its id (`es_` and 128 bits from the operating system's
    /// generator), and its secret (32 bytes from the generator, in hex), returned once: only
    /// its SHA-256 is stored.
    pub async fn create_eam_session(&self, s: &NewEamSession) -> Result<(EamSession, String)> {
        let id = new_id("es");
        let secret = new_secret();
        sqlx::query(
            "INSERT INTO eam_sessions (id, secret_hash, client_id, redirect_uri, state, nonce, \
             sub, tid, oid, acr, user_id, client_request_id, language, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&id)
        .bind(sha256_hex(&secret))
        .bind(&s.client_id)
        .bind(&s.redirect_uri)
        .bind(s.state.as_deref())
        .bind(&s.nonce)
        .bind(&s.sub)
        .bind(&s.tid)
        .bind(&s.oid)
        .bind(&s.acr)
        .bind(&s.user_id)
        .bind(s.client_request_id.as_deref())
        .bind(&s.language)
        .bind(s.now_ms)
        .bind(s.expires_at_ms)
        .execute(&self.pool)
        .await?;
        let session = EamSession {
            id,
            client_id: s.client_id.clone(),
            redirect_uri: s.redirect_uri.clone(),
            state: s.state.clone(),
            nonce: s.nonce.clone(),
            sub: s.sub.clone(),
            tid: s.tid.clone(),
            oid: s.oid.clone(),
            acr: s.acr.clone(),
            user_id: s.user_id.clone(),
            client_request_id: s.client_request_id.clone(),
            language: s.language.clone(),
            challenge_id: None,
            created_at_ms: s.now_ms,
            expires_at_ms: s.expires_at_ms,
            finished_at_ms: None,
        };
        Ok((session, secret))
    }

    /// The EAM sign-in `id`, only if `secret` is its secret (the hashes compared in constant
    /// time) and it has not expired at `now_ms`; `None` otherwise, the same for every kind
    /// of miss.
    pub async fn eam_session(
        &self,
        id: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<Option<EamSession>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM eam_sessions WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        // Hashed even for an unknown id, so that a miss takes the same work.
        let given = sha256_hex(secret);
        let Some(row) = row else {
            return Ok(None);
        };
        let stored: String = row.try_get("secret_hash")?;
        let session = session_from(&row)?;
        let ok = same_in_constant_time(given.as_bytes(), stored.as_bytes())
            && now_ms < session.expires_at_ms;
        Ok(ok.then_some(session))
    }

    /// Records `challenge` as the one that calls the user of EAM sign-in `id`, in place of
    /// `replacing` (none for the first call): a compare-and-set, true only if the session
    /// still had `replacing` and was not answered, so of two "call again" at once one wins
    /// (the caller cancels the other's call).
    pub async fn set_eam_session_challenge(
        &self,
        id: &str,
        replacing: Option<&ChallengeId>,
        challenge: &ChallengeId,
    ) -> Result<bool> {
        let done = match replacing {
            Some(old) => {
                sqlx::query(
                    "UPDATE eam_sessions SET challenge_id = $1 WHERE id = $2 \
                     AND finished_at IS NULL AND challenge_id = $3",
                )
                .bind(challenge.as_str())
                .bind(id)
                .bind(old.as_str())
                .execute(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "UPDATE eam_sessions SET challenge_id = $1 WHERE id = $2 \
                     AND finished_at IS NULL AND challenge_id IS NULL",
                )
                .bind(challenge.as_str())
                .bind(id)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    /// Marks the answer of EAM sign-in `id` released at `now_ms`: true the first time only
    /// (a conditional UPDATE, so two requests at once cannot both release it).
    pub async fn finish_eam_session(&self, id: &str, now_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE eam_sessions SET finished_at = $1 WHERE id = $2 AND finished_at IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The EAM provider's signing keys, oldest first (by when they sign from).
    pub async fn eam_keys(&self) -> Result<Vec<StoredEamKey>> {
        let rows = sqlx::query(
            "SELECT kid, sealed_key, certificate, created_at, sign_from FROM eam_keys \
             ORDER BY sign_from, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredEamKey {
                    kid: r.try_get("kid")?,
                    sealed_key: r.try_get("sealed_key")?,
                    certificate: r.try_get("certificate")?,
                    created_ms: r.try_get("created_at")?,
                    sign_from_ms: r.try_get("sign_from")?,
                })
            })
            .collect()
    }

    /// Adds a signing key (an error if its kid is taken).
    pub async fn add_eam_key(&self, k: &StoredEamKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO eam_keys (kid, sealed_key, certificate, created_at, sign_from) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&k.kid)
        .bind(k.sealed_key.as_slice())
        .bind(k.certificate.as_slice())
        .bind(k.created_ms)
        .bind(k.sign_from_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A phone an administrator vouches for (`import-phones`): verified at once, replacing
    /// the user's verified phone in that role (as an approved enrolment does; a new primary
    /// phone also revokes the user's trusted devices, as there). The same number verified
    /// in that role already: [`Imported::Unchanged`], nothing written.
    pub async fn import_phone(
        &self,
        user_id: &str,
        phone: &PhoneNumber,
        role: PhoneRole,
        language: &str,
        now_ms: i64,
    ) -> Result<Imported> {
        let mut tx = self.pool.begin().await?;
        let current: Vec<String> = sqlx::query_scalar(
            "SELECT phone FROM phones WHERE user_id = $1 AND role = $2 \
             AND verified_at IS NOT NULL AND removed_at IS NULL",
        )
        .bind(user_id)
        .bind(role.as_str())
        .fetch_all(&mut *tx)
        .await?;
        if current.iter().any(|p| p == phone.stored()) {
            return Ok(Imported::Unchanged);
        }
        let replaced =
            users::verify_imported(&mut tx, user_id, phone, role, language, now_ms).await?;
        tx.commit().await?;
        Ok(if replaced > 0 {
            Imported::Replaced
        } else {
            Imported::Added
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison_tells_equal_from_different() {
        assert!(same_in_constant_time(b"abcd", b"abcd"));
        assert!(!same_in_constant_time(b"abcd", b"abce"));
        assert!(!same_in_constant_time(b"abcd", b"abc"));
        assert!(!same_in_constant_time(b"", b"a"));
    }
}
