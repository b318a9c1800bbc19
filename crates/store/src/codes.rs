//! The codes of the confirmation modes: the two digits of number matching (shown on the
//! sign-in page, entered on the phone) and the six of a spoken code (read by the call, typed
//! on the page). Both are drawn from the operating system's generator. A spoken code is kept
//! only as a keyed hash, and checked at most [`MAX_CODE_ATTEMPTS`] times, each attempt
//! counted in the statement that allows it.

use hmac::{Hmac, Mac};
use sqlx::Row;

use crate::{Challenge, ChallengeId, ChallengeState, Result, Store, StoreError};

/// How the person confirms a challenge (the mode only: the codes are elsewhere).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Confirmation {
    /// '#' alone approves.
    #[default]
    Pound,
    /// Number matching: the two digits shown on the sign-in page, then '#'.
    KeypadCode,
    /// The call reads a six-digit code; the person types it on the page.
    SpokenCode,
}

impl Confirmation {
    /// Every mode.
    pub const ALL: [Confirmation; 3] = [
        Confirmation::Pound,
        Confirmation::KeypadCode,
        Confirmation::SpokenCode,
    ];

    /// The name as stored, in the API and in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Confirmation::Pound => "pound",
            Confirmation::KeypadCode => "keypad_code",
            Confirmation::SpokenCode => "spoken_code",
        }
    }

    /// The mode of a name.
    pub fn from_name(s: &str) -> Option<Confirmation> {
        Confirmation::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Confirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many times a spoken code may be typed.
pub const MAX_CODE_ATTEMPTS: i64 = 5;

/// A uniform draw below `n` from the operating system's generator (rejection sampling: no
/// bias towards the small values).
fn uniform_below(n: u32) -> u32 {
    let zone = u32::MAX - u32::MAX % n;
    loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).expect("the operating system's random generator works");
        let v = u32::from_le_bytes(b);
        if v < zone {
            return v % n;
        }
    }
}

/// The two digits of number matching: two different digits (so never `00`, `11`, …), each
/// of the 90 pairs equally likely.
pub fn draw_display_code() -> String {
    let pick = uniform_below(90);
    let first = pick / 9;
    let mut second = pick % 9;
    if second >= first {
        second += 1;
    }
    format!("{first}{second}")
}

/// A spoken code: six digits, each of the 10^6 codes equally likely.
pub fn draw_spoken_code() -> String {
    format!("{:06}", uniform_below(1_000_000))
}

/// The keyed hash a spoken code is stored as: HMAC-SHA-256 under `key` of the challenge's
/// id and the code, in hex. Without the key, the stored hash does not give the code away
/// (a million codes are otherwise tried in no time).
pub fn code_hash(key: &[u8], id: &ChallengeId, code: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"callverify spoken code\0");
    mac.update(id.as_str().as_bytes());
    mac.update(b"\0");
    mac.update(code.as_bytes());
    crate::hex(&mac.finalize().into_bytes())
}

/// Whether two strings are equal, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What checking a typed code found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeCheck {
    /// The right code: the challenge is approved (as it now is).
    Matched(Box<Challenge>),
    /// A wrong code; this many attempts are left (0: the challenge is now denied,
    /// `too_many_attempts`).
    Wrong {
        /// Attempts left.
        attempts_left: i64,
    },
    /// Every attempt was made (the challenge is being denied).
    Exhausted,
    /// The challenge is not waiting for a code (not a spoken code, its call has not read it
    /// yet, or it is decided): its state.
    NotWaiting(ChallengeState),
    /// Unknown challenge.
    Unknown,
}

impl Store {
    /// Keeps the keyed hash of the spoken code a call is about to read (a new call of the
    /// challenge replaces the code of the one before, and its attempts start again); only
    /// for a spoken-code challenge in a call.
    pub async fn set_code_hash(&self, id: &ChallengeId, hash: &str) -> Result<bool> {
        let sql = format!(
            "UPDATE challenges SET code_hash = $1, code_attempts = 0 \
             WHERE id = $2 AND confirmation = 'spoken_code' AND state IN ({})",
            crate::types::in_call_sql()
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        self.forget_cached(id);
        Ok(r.rows_affected() == 1)
    }

    /// Checks a code typed for the spoken-code challenge `id` at `now_ms`: the attempt is
    /// counted in the statement that allows it (at most [`MAX_CODE_ATTEMPTS`], only while
    /// the challenge is `code_spoken` and not expired), so that no number of requests at
    /// once gets more. The right code approves the challenge; the last wrong one denies it
    /// (`too_many_attempts`).
    pub async fn check_code(
        &self,
        id: &ChallengeId,
        key: &[u8],
        code: &str,
        now_ms: i64,
    ) -> Result<CodeCheck> {
        let counted = sqlx::query(
            "UPDATE challenges SET code_attempts = code_attempts + 1 \
             WHERE id = $1 AND state = 'code_spoken' AND confirmation = 'spoken_code' \
             AND code_hash IS NOT NULL AND code_attempts < $2 AND expires_at > $3",
        )
        .bind(id.as_str())
        .bind(MAX_CODE_ATTEMPTS)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        self.forget_cached(id);
        if counted.rows_affected() != 1 {
            return Ok(match self.read_challenge(id).await? {
                None => CodeCheck::Unknown,
                Some(c)
                    if c.state == ChallengeState::CodeSpoken
                        && c.code_attempts >= MAX_CODE_ATTEMPTS =>
                {
                    CodeCheck::Exhausted
                }
                Some(c) => CodeCheck::NotWaiting(c.state),
            });
        }
        let row = sqlx::query("SELECT code_hash, code_attempts FROM challenges WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await?;
        let stored: Option<String> = row.try_get("code_hash")?;
        let attempts: i64 = row.try_get("code_attempts")?;
        let stored = stored.ok_or_else(|| StoreError::Corrupt(format!("{id} has no code")))?;
        if same(&stored, &code_hash(key, id, code)) {
            self.transition(id, ChallengeState::Approved, now_ms, None, None)
                .await?;
            let c = self
                .challenge(id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("challenge {id} vanished")))?;
            return Ok(match c.state {
                ChallengeState::Approved => CodeCheck::Matched(Box::new(c)),
                other => CodeCheck::NotWaiting(other),
            });
        }
        sqlx::query("UPDATE challenges SET code_matched = 0 WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        self.forget_cached(id);
        let left = (MAX_CODE_ATTEMPTS - attempts).max(0);
        if left == 0 {
            self.transition(
                id,
                ChallengeState::Denied,
                now_ms,
                Some("too_many_attempts"),
                None,
            )
            .await?;
        }
        Ok(CodeCheck::Wrong {
            attempts_left: left,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_codes_are_two_different_digits_and_every_pair_comes_up() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5000 {
            let c = draw_display_code();
            let b = c.as_bytes();
            assert_eq!(b.len(), 2, "{c}");
            assert!(b.iter().all(u8::is_ascii_digit), "{c}");
            assert_ne!(b[0], b[1], "{c}");
            seen.insert(c);
        }
        // 90 pairs, 5000 draws: each is missed with probability (89/90)^5000, about 1e-24.
        assert_eq!(seen.len(), 90);
    }

    #[test]
    fn spoken_codes_are_six_digits_and_hashes_are_keyed() {
        let c = draw_spoken_code();
        assert!(c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()), "{c}");
        // Every digit comes up in every place (each is missed in 2000 draws with probability
        // 0.9^2000).
        let mut seen = [[false; 10]; 6];
        for _ in 0..2000 {
            for (i, b) in draw_spoken_code().bytes().enumerate() {
                seen[i][usize::from(b - b'0')] = true;
            }
        }
        assert!(seen.iter().all(|place| place.iter().all(|&d| d)));
        let id = ChallengeId::new();
        let h = code_hash(b"key one", &id, "123456");
        assert_eq!(h, code_hash(b"key one", &id, "123456"));
        assert_ne!(h, code_hash(b"key two", &id, "123456"));
        assert_ne!(h, code_hash(b"key one", &ChallengeId::new(), "123456"));
        assert_ne!(h, code_hash(b"key one", &id, "123457"));
        assert!(same(&h, &h.clone()) && !same(&h, &h[1..]) && !same("ab", "ac"));
        for m in Confirmation::ALL {
            assert_eq!(Confirmation::from_name(m.as_str()), Some(m));
        }
        assert_eq!(Confirmation::from_name("Pound"), None);
    }
}
