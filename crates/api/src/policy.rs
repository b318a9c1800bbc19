//! Toll-fraud and abuse policy, checked before a challenge is made: the number must be a
//! valid number (libphonenumber's metadata, through the `phonenumber` crate) of an allowed
//! country, and the rate limits per number, per user and per API key and the cap on
//! concurrent calls must not be reached. The counts come from the store, so they hold across
//! restarts and across nodes sharing one database.

use std::time::Duration;

use axum::http::StatusCode;
use store::{PhoneNumber, Scope, Store};

use crate::Problem;

/// At most `max` challenges in any `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// How many.
    pub max: u32,
    /// In how long.
    pub window: Duration,
}

impl RateLimit {
    /// `max` per `window`.
    pub const fn new(max: u32, window: Duration) -> RateLimit {
        RateLimit { max, window }
    }
}

/// The policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// ISO 3166 codes of the countries that may be called (`JP`, `US`, …); `None`: any.
    pub allowed_countries: Option<Vec<String>>,
    /// Per number.
    pub per_number: RateLimit,
    /// Per user.
    pub per_user: RateLimit,
    /// Per API key.
    pub per_api_key: RateLimit,
    /// Challenges waiting for or in a call, at most.
    pub max_concurrent_calls: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_countries: None,
            per_number: RateLimit::new(5, Duration::from_secs(600)),
            per_user: RateLimit::new(10, Duration::from_secs(600)),
            per_api_key: RateLimit::new(6000, Duration::from_secs(60)),
            max_concurrent_calls: 1000,
        }
    }
}

fn refused(kind: &'static str, title: &'static str, detail: String) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, kind, title, detail)
}

impl Policy {
    /// Loads the numbering plans now (they load on first use, which takes a moment) so that
    /// the first challenge is not the one that waits.
    pub fn warm_up() {
        let _ = phonenumber::parse(None, "+819012345678").map(|n| phonenumber::is_valid(&n));
    }

    /// Whether the number may be called at all.
    pub fn check_number(&self, number: &PhoneNumber) -> Result<(), Problem> {
        let e164 = number.as_e164().ok_or_else(|| {
            refused(
                "invalid-number",
                "The number is not a valid phone number",
                format!("{number} is redacted"),
            )
        })?;
        let parsed = phonenumber::parse(None, e164).map_err(|e| {
            refused(
                "invalid-number",
                "The number is not a valid phone number",
                format!("{}: {e}", number.masked()),
            )
        })?;
        if !phonenumber::is_valid(&parsed) {
            return Err(refused(
                "invalid-number",
                "The number is not a valid phone number",
                format!(
                    "{} is not a number in use in any country's plan",
                    number.masked()
                ),
            ));
        }
        if let Some(allowed) = &self.allowed_countries {
            let country = parsed.country().id().map(|c| format!("{c:?}"));
            if !country
                .as_deref()
                .is_some_and(|c| allowed.iter().any(|a| a.eq_ignore_ascii_case(c)))
            {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "country-not-allowed",
                    "Calls to this country are not allowed",
                    format!(
                        "{} is in {}; this gateway calls {}",
                        number.masked(),
                        country.as_deref().unwrap_or("no single country"),
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether one more challenge may be made now.
    pub async fn check_rates(
        &self,
        store: &Store,
        number: &PhoneNumber,
        user: Option<&str>,
        api_key_id: &str,
        now_ms: i64,
    ) -> Result<(), Problem> {
        let masked = number.masked();
        let mut checks = vec![
            (
                Scope::Phone(number),
                self.per_number,
                format!("number {masked}"),
            ),
            (
                Scope::ApiKey(api_key_id),
                self.per_api_key,
                "this API key".to_string(),
            ),
        ];
        if let Some(u) = user {
            checks.push((Scope::User(u), self.per_user, format!("user {u:?}")));
        }
        for (scope, limit, what) in checks {
            let since = now_ms - limit.window.as_millis() as i64;
            let n = store.count_challenges(scope, since).await?;
            if n >= i64::from(limit.max) {
                metrics::counter!("callverify_refusals_total", "reason" => "rate_limited")
                    .increment(1);
                return Err(Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "Too many challenges",
                    format!(
                        "{what} had {n} challenges in the last {} s (limit {})",
                        limit.window.as_secs(),
                        limit.max
                    ),
                )
                .with_retry_after(limit.window.as_secs()));
            }
        }
        let active = store.active_challenges().await?;
        if active >= i64::from(self.max_concurrent_calls) {
            metrics::counter!("callverify_refusals_total", "reason" => "too_many_calls")
                .increment(1);
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-calls",
                "The gateway is at its cap of concurrent calls",
                format!(
                    "{active} challenges are waiting for or in a call (cap {})",
                    self.max_concurrent_calls
                ),
            )
            .with_retry_after(5));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked_against_the_plans_and_the_allow_list() {
        let p = Policy {
            allowed_countries: Some(vec!["JP".into(), "US".into()]),
            ..Policy::default()
        };
        let n = |s| PhoneNumber::parse(s).unwrap();
        assert!(p.check_number(&n("+819012345678")).is_ok());
        assert!(p.check_number(&n("+12025550123")).is_ok());
        let uk = p.check_number(&n("+442071838750")).unwrap_err();
        assert_eq!(uk.kind, "country-not-allowed");
        assert!(
            uk.detail.contains("GB") && uk.detail.contains("+44 ** **** **50"),
            "{}",
            uk.detail
        );
        // Not a number of Japan's plan (too short for a mobile).
        let bad = p.check_number(&n("+8190123456")).unwrap_err();
        assert_eq!(bad.kind, "invalid-number");
        assert!(Policy::default().check_number(&n("+442071838750")).is_ok());
    }
}
