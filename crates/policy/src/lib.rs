//! callverify's toll-fraud and abuse policy: which numbers may be called (valid in their
//! country's plan, in an allowed country, of an allowed type: libphonenumber's metadata
//! through the `phonenumber` crate), and the limits every call is counted against (per
//! number, per user, per API key and per country, the cap on challenges waiting for or in a
//! call, fraud blocks).
//!
//! The API checks each new challenge with it; the call runner checks each further phone a
//! challenge calls (a user's fallback phone, or the current primary phone an enrolment must
//! be approved on) before calling it. The store counts and checks the limits in the
//! transaction that admits the call ([`store::Admission`]); this crate says what is counted
//! and how much is allowed, and words the refusals. No HTTP and no SIP here.

use std::collections::BTreeMap;
use std::time::Duration;

use store::{Admission, CountScope, Counter, PhoneNumber, Refused, Store, StoreError};

/// At most `max` calls in any `window`.
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

    fn counter(&self, scope: CountScope, key: &str) -> Counter {
        Counter {
            scope,
            key: key.to_string(),
            max: self.max,
            window_ms: self.window.as_millis() as i64,
        }
    }
}

/// The calls to one country in a window, with other caps for some countries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountryLimit {
    /// The cap of every country not in `overrides`, and the window of all.
    pub limit: RateLimit,
    /// Another cap for these countries (ISO 3166 codes).
    pub overrides: BTreeMap<String, u32>,
}

/// The countries that may be called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Countries {
    /// Every country (the configuration says so with `["*"]`).
    Any,
    /// Only these (ISO 3166 codes such as `JP`); empty: none.
    Only(Vec<String>),
}

/// What kind of number it is, by libphonenumber's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NumberType {
    /// A fixed line.
    FixedLine,
    /// A mobile.
    Mobile,
    /// Either (where the plan does not tell them apart, as in the US).
    FixedLineOrMobile,
    /// Free to the caller (often routed anywhere, and paid by the callee's operator per call).
    TollFree,
    /// Premium rate: the callee earns from the call.
    PremiumRate,
    /// Shared cost.
    SharedCost,
    /// A personal number, forwarded anywhere.
    PersonalNumber,
    /// Voice over IP.
    Voip,
    /// A pager.
    Pager,
    /// A universal access ("company") number.
    Uan,
    /// A voicemail access number.
    Voicemail,
    /// None of the plan's patterns.
    Unknown,
}

impl NumberType {
    /// Every type.
    pub const ALL: [NumberType; 12] = [
        NumberType::FixedLine,
        NumberType::Mobile,
        NumberType::FixedLineOrMobile,
        NumberType::TollFree,
        NumberType::PremiumRate,
        NumberType::SharedCost,
        NumberType::PersonalNumber,
        NumberType::Voip,
        NumberType::Pager,
        NumberType::Uan,
        NumberType::Voicemail,
        NumberType::Unknown,
    ];

    /// The types called unless the configuration says otherwise.
    pub const DEFAULT_ALLOWED: [NumberType; 3] = [
        NumberType::Mobile,
        NumberType::FixedLine,
        NumberType::FixedLineOrMobile,
    ];

    /// Its name in the configuration and in refusals (`premium_rate`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            NumberType::FixedLine => "fixed_line",
            NumberType::Mobile => "mobile",
            NumberType::FixedLineOrMobile => "fixed_line_or_mobile",
            NumberType::TollFree => "toll_free",
            NumberType::PremiumRate => "premium_rate",
            NumberType::SharedCost => "shared_cost",
            NumberType::PersonalNumber => "personal_number",
            NumberType::Voip => "voip",
            NumberType::Pager => "pager",
            NumberType::Uan => "uan",
            NumberType::Voicemail => "voicemail",
            NumberType::Unknown => "unknown",
        }
    }

    /// The type named `name`.
    pub fn from_name(name: &str) -> Option<NumberType> {
        NumberType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    fn of(t: phonenumber::Type) -> NumberType {
        use phonenumber::Type as T;
        match t {
            T::FixedLine => NumberType::FixedLine,
            T::Mobile => NumberType::Mobile,
            T::FixedLineOrMobile => NumberType::FixedLineOrMobile,
            T::TollFree => NumberType::TollFree,
            T::PremiumRate => NumberType::PremiumRate,
            T::SharedCost => NumberType::SharedCost,
            T::PersonalNumber => NumberType::PersonalNumber,
            T::Voip => NumberType::Voip,
            T::Pager => NumberType::Pager,
            T::Uan => NumberType::Uan,
            T::Voicemail => NumberType::Voicemail,
            _ => NumberType::Unknown,
        }
    }
}

/// The policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The countries that may be called (by default none: the configuration must say).
    pub allowed_countries: Countries,
    /// The types of number that may be called.
    pub allowed_number_types: Vec<NumberType>,
    /// Calls per number.
    pub per_number: RateLimit,
    /// Calls per user.
    pub per_user: RateLimit,
    /// Calls per API key.
    pub per_api_key: RateLimit,
    /// Calls per country.
    pub per_country: CountryLimit,
    /// Challenges waiting for or in a call, at most.
    pub max_concurrent_calls: u32,
    /// How long a fraud report blocks the user and the numbers called.
    pub fraud_block: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_countries: Countries::Only(Vec::new()),
            allowed_number_types: NumberType::DEFAULT_ALLOWED.to_vec(),
            per_number: RateLimit::new(5, Duration::from_secs(600)),
            per_user: RateLimit::new(10, Duration::from_secs(600)),
            per_api_key: RateLimit::new(6000, Duration::from_secs(60)),
            per_country: CountryLimit {
                limit: RateLimit::new(200, Duration::from_secs(3600)),
                overrides: BTreeMap::new(),
            },
            max_concurrent_calls: 1000,
            fraud_block: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a refusal is, as the API names it (`country-not-allowed`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// Not a number of any country's plan.
    InvalidNumber,
    /// A country not allowed.
    CountryNotAllowed,
    /// A type of number not allowed (premium rate, shared cost, …).
    NumberTypeNotAllowed,
    /// A rate limit is reached.
    RateLimited,
    /// The cap of challenges waiting for or in a call is reached.
    TooManyCalls,
    /// A fraud report blocks the user or the number.
    FraudBlock,
}

impl RefusalKind {
    /// Its name (the last part of the problem's type).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::InvalidNumber => "invalid-number",
            RefusalKind::CountryNotAllowed => "country-not-allowed",
            RefusalKind::NumberTypeNotAllowed => "number-type-not-allowed",
            RefusalKind::RateLimited => "rate-limited",
            RefusalKind::TooManyCalls => "too-many-calls",
            RefusalKind::FraudBlock => "fraud-block",
        }
    }

    /// A title for people.
    pub fn title(self) -> &'static str {
        match self {
            RefusalKind::InvalidNumber => "The number is not a valid phone number",
            RefusalKind::CountryNotAllowed => "Calls to this country are not allowed",
            RefusalKind::NumberTypeNotAllowed => "Calls to this type of number are not allowed",
            RefusalKind::RateLimited => "Too many calls",
            RefusalKind::TooManyCalls => "The gateway is at its cap of concurrent calls",
            RefusalKind::FraudBlock => "Calls are blocked after a fraud report",
        }
    }

    /// Every kind.
    pub const ALL: [RefusalKind; 6] = [
        RefusalKind::InvalidNumber,
        RefusalKind::CountryNotAllowed,
        RefusalKind::NumberTypeNotAllowed,
        RefusalKind::RateLimited,
        RefusalKind::TooManyCalls,
        RefusalKind::FraudBlock,
    ];

    /// The `reason` label of `callverify_refusals_total`.
    pub fn metric(self) -> &'static str {
        match self {
            RefusalKind::InvalidNumber => "invalid_number",
            RefusalKind::CountryNotAllowed => "country_not_allowed",
            RefusalKind::NumberTypeNotAllowed => "number_type_not_allowed",
            RefusalKind::RateLimited => "rate_limited",
            RefusalKind::TooManyCalls => "too_many_calls",
            RefusalKind::FraudBlock => "fraud_block",
        }
    }
}

/// Why a call may not be made, in words that name no user and mask the number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What.
    pub kind: RefusalKind,
    /// Why, for people.
    pub detail: String,
    /// When to try again (rate limits, the cap, a block), in seconds.
    pub retry_after_s: Option<u64>,
    /// When a fraud block lifts, ms since the epoch.
    pub until_ms: Option<i64>,
}

impl Refusal {
    fn new(kind: RefusalKind, detail: String) -> Refusal {
        metrics::counter!("callverify_refusals_total", "reason" => kind.metric()).increment(1);
        Refusal {
            kind,
            detail,
            retry_after_s: None,
            until_ms: None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

/// What [`Policy::check_number`] found out about a number it allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Its country (ISO 3166), or `001` for numbers of no single country.
    pub country: String,
    /// Its type.
    pub kind: NumberType,
}

impl Policy {
    /// Loads the numbering plans now (they load on first use, which takes a moment) so that
    /// the first challenge is not the one that waits.
    pub fn warm_up() {
        let _ = phonenumber::parse(None, "+819012345678").map(|n| phonenumber::is_valid(&n));
    }

    /// Whether the number may be called at all: valid, of an allowed country and type.
    pub fn check_number(&self, number: &PhoneNumber) -> Result<Checked, Refusal> {
        let masked = number.masked();
        let e164 = number.as_e164().ok_or_else(|| {
            Refusal::new(
                RefusalKind::InvalidNumber,
                format!("{masked} is redacted (kept past the retention period)"),
            )
        })?;
        let parsed = phonenumber::parse(None, e164)
            .map_err(|e| Refusal::new(RefusalKind::InvalidNumber, format!("{masked}: {e}")))?;
        if !phonenumber::is_valid(&parsed) {
            return Err(Refusal::new(
                RefusalKind::InvalidNumber,
                format!("{masked} is not a number in use in any country's plan"),
            ));
        }
        let country = parsed.country().id().map(|c| format!("{c:?}"));
        if let Countries::Only(allowed) = &self.allowed_countries
            && !country
                .as_deref()
                .is_some_and(|c| allowed.iter().any(|a| a.eq_ignore_ascii_case(c)))
        {
            return Err(Refusal::new(
                RefusalKind::CountryNotAllowed,
                format!(
                    "{masked} is in {}; this gateway calls {}",
                    country.as_deref().unwrap_or("no single country"),
                    if allowed.is_empty() {
                        "no country".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
            ));
        }
        let kind = NumberType::of(parsed.number_type(&phonenumber::metadata::DATABASE));
        if !self.allowed_number_types.contains(&kind) {
            let allowed: Vec<&str> = self
                .allowed_number_types
                .iter()
                .map(|t| t.as_str())
                .collect();
            return Err(Refusal::new(
                RefusalKind::NumberTypeNotAllowed,
                format!(
                    "{masked} is a {} number; this gateway calls {} numbers",
                    kind.as_str(),
                    allowed.join(", ")
                ),
            ));
        }
        Ok(Checked {
            country: country.unwrap_or_else(|| "001".into()),
            kind,
        })
    }

    /// What admitting a call to `number` (checked) of `user` by API key `api_key` counts and
    /// checks; `new_challenge` adds the cap on challenges waiting for or in a call.
    pub fn admission(
        &self,
        number: &PhoneNumber,
        checked: &Checked,
        user: Option<&str>,
        api_key: &str,
        new_challenge: bool,
    ) -> Admission {
        let mut counters = vec![
            // A redacted number never passes `check_number`, so never comes here.
            self.per_number
                .counter(CountScope::Phone, number.as_e164().unwrap_or_default()),
            self.per_api_key.counter(CountScope::ApiKey, api_key),
        ];
        if let Some(u) = user {
            counters.push(self.per_user.counter(CountScope::User, u));
        }
        let c = &self.per_country;
        let max = c
            .overrides
            .get(&checked.country)
            .copied()
            .unwrap_or(c.limit.max);
        counters.push(
            RateLimit::new(max, c.limit.window).counter(CountScope::Country, &checked.country),
        );
        Admission {
            counters,
            max_active: new_challenge.then_some(self.max_concurrent_calls),
            blocks: true,
        }
    }

    /// The admission of a challenge that makes no call (approved by a trusted device): only
    /// fraud blocks refuse it.
    pub fn blocks_only(&self) -> Admission {
        Admission {
            blocks: true,
            ..Admission::default()
        }
    }

    /// The refusal of the store's `refused`, for a call to `number`.
    pub fn refusal(&self, refused: Refused, number: &PhoneNumber, now_ms: i64) -> Refusal {
        match refused {
            Refused::Limit { counter, count } => {
                let what = match counter.scope {
                    CountScope::Phone => format!("number {}", number.masked()),
                    CountScope::User => "the user".to_string(),
                    CountScope::ApiKey => "this API key".to_string(),
                    CountScope::Country => format!("country {}", counter.key),
                };
                let window_s = (counter.window_ms / 1000).max(1) as u64;
                let mut r = Refusal::new(
                    RefusalKind::RateLimited,
                    format!(
                        "{what} had {count} calls in the last {window_s} s (limit {})",
                        counter.max
                    ),
                );
                r.retry_after_s = Some(window_s);
                r
            }
            Refused::TooManyCalls { active, cap } => {
                let mut r = Refusal::new(
                    RefusalKind::TooManyCalls,
                    format!(
                        "{} challenges are waiting for or in a call (cap {cap})",
                        active - 1
                    ),
                );
                r.retry_after_s = Some(5);
                r
            }
            Refused::FraudBlock { until_ms } => {
                let mut r = Refusal::new(
                    RefusalKind::FraudBlock,
                    format!(
                        "a fraud report blocks calls for this user or {} until {}",
                        number.masked(),
                        rfc3339(until_ms)
                    ),
                );
                r.retry_after_s = Some(((until_ms - now_ms).max(0) as u64).div_ceil(1000));
                r.until_ms = Some(until_ms);
                r
            }
        }
    }

    /// Checks and counts one more call of a challenge (of `user`, made by API key
    /// `api_key`) to `number`, in one transaction of `store`.
    pub async fn admit_call(
        &self,
        store: &Store,
        user: Option<&str>,
        api_key: &str,
        number: &PhoneNumber,
        now_ms: i64,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let checked = match self.check_number(number) {
            Ok(c) => c,
            Err(r) => return Ok(Err(r)),
        };
        let admission = self.admission(number, &checked, user, api_key, false);
        Ok(store
            .admit_call(user, number, &admission, now_ms)
            .await?
            .map_err(|r| self.refusal(r, number, now_ms)))
    }

    /// The longest window of the limits: counts older than that are of no use.
    pub fn longest_window(&self) -> Duration {
        [
            self.per_number.window,
            self.per_user.window,
            self.per_api_key.window,
            self.per_country.limit.window,
        ]
        .into_iter()
        .max()
        .unwrap_or_default()
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-11-25T05:40:28.123Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap()
    }

    fn us_gb_jp() -> Policy {
        Policy {
            allowed_countries: Countries::Only(vec!["US".into(), "GB".into(), "JP".into()]),
            ..Policy::default()
        }
    }

    #[test]
    fn numbers_are_checked_against_the_plans_and_the_allow_list() {
        let p = Policy {
            allowed_countries: Countries::Only(vec!["JP".into(), "US".into()]),
            ..Policy::default()
        };
        assert_eq!(
            p.check_number(&n("+819012345678")).unwrap(),
            Checked {
                country: "JP".into(),
                kind: NumberType::Mobile
            }
        );
        assert!(p.check_number(&n("+12025550123")).is_ok());
        let uk = p.check_number(&n("+442071838750")).unwrap_err();
        assert_eq!(uk.kind, RefusalKind::CountryNotAllowed);
        assert!(
            uk.detail.contains("GB") && uk.detail.contains("+44 ** **** **50"),
            "{}",
            uk.detail
        );
        // Not a number of Japan's plan (too short for a mobile).
        let bad = p.check_number(&n("+8190123456")).unwrap_err();
        assert_eq!(bad.kind, RefusalKind::InvalidNumber);
        // Every country only when said; no country by default.
        let any = Policy {
            allowed_countries: Countries::Any,
            ..Policy::default()
        };
        assert_eq!(
            any.check_number(&n("+442071838750")).unwrap().kind,
            NumberType::FixedLine
        );
        let none = Policy::default()
            .check_number(&n("+442071838750"))
            .unwrap_err();
        assert_eq!(none.kind, RefusalKind::CountryNotAllowed);
        assert!(none.detail.contains("calls no country"), "{}", none.detail);
    }

    #[test]
    fn costly_types_of_number_are_refused_unless_allowed() {
        let p = us_gb_jp();
        let any = Policy {
            allowed_countries: Countries::Any,
            ..Policy::default()
        };
        for (number, kind, policy) in [
            ("+19002345678", "premium_rate", &p),
            ("+449012345678", "premium_rate", &p),
            ("+81990123456", "premium_rate", &p),
            // Shared cost in the UK's plan of old; libphonenumber's metadata now has 084x
            // as premium rate.
            ("+448431234567", "premium_rate", &p),
            ("+33810123456", "shared_cost", &any),
            ("+447012345678", "personal_number", &p),
            ("+18002345678", "toll_free", &p),
            ("+81570012345", "uan", &p),
        ] {
            let r = policy.check_number(&n(number)).unwrap_err();
            assert_eq!(r.kind, RefusalKind::NumberTypeNotAllowed, "{number}");
            assert!(
                r.detail.contains(&format!("is a {kind} number"))
                    && r.detail
                        .contains("calls mobile, fixed_line, fixed_line_or_mobile"),
                "{number}: {}",
                r.detail
            );
            assert!(!r.detail.contains(&number[3..]), "masked: {}", r.detail);
        }
        let premium = Policy {
            allowed_number_types: vec![NumberType::Mobile, NumberType::PremiumRate],
            ..us_gb_jp()
        };
        assert_eq!(
            premium.check_number(&n("+449012345678")).unwrap().kind,
            NumberType::PremiumRate
        );
        assert!(premium.check_number(&n("+442071838750")).is_err(), "fixed");
        for t in NumberType::ALL {
            assert_eq!(NumberType::from_name(t.as_str()), Some(t));
        }
    }

    #[test]
    fn the_admission_counts_every_scope_with_the_country_override() {
        let mut p = us_gb_jp();
        p.per_country.overrides.insert("JP".into(), 1000);
        let number = n("+819012345678");
        let checked = p.check_number(&number).unwrap();
        let a = p.admission(&number, &checked, Some("alice"), "key_1", true);
        let scopes: Vec<(CountScope, &str, u32)> = a
            .counters
            .iter()
            .map(|c| (c.scope, c.key.as_str(), c.max))
            .collect();
        assert_eq!(
            scopes,
            vec![
                (CountScope::Phone, "+819012345678", 5),
                (CountScope::ApiKey, "key_1", 6000),
                (CountScope::User, "alice", 10),
                (CountScope::Country, "JP", 1000),
            ]
        );
        assert_eq!(a.max_active, Some(1000));
        assert!(a.blocks);
        let a = p.admission(&number, &checked, None, "key_1", false);
        assert_eq!(a.counters.len(), 3);
        assert_eq!(a.max_active, None);
        let r = p.refusal(
            Refused::Limit {
                counter: a.counters[0].clone(),
                count: 5,
            },
            &number,
            0,
        );
        assert_eq!(
            r.detail,
            "number +81 ** **** **78 had 5 calls in the last 600 s (limit 5)"
        );
        assert_eq!(r.retry_after_s, Some(600));
        let r = p.refusal(Refused::FraudBlock { until_ms: 90_500 }, &number, 500);
        assert_eq!((r.retry_after_s, r.until_ms), (Some(90), Some(90_500)));
        assert!(
            r.detail.contains("until 1970-01-01T00:01:30.500Z"),
            "{}",
            r.detail
        );
    }
}
