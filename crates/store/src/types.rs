//! The domain's types: phone numbers, challenge ids and states, where a key was heard and
//! the kinds of a call's steps.

use std::fmt;

/// A phone number in E.164 form ('+', a country code not starting with 0, 8 to 15 digits
/// in all), or what is left of one after the retention period: its masked form only.
/// `Display` and `Debug` show only its country code and last two digits
/// (`+81 ** **** **78`); [`PhoneNumber::as_e164`] gives the whole number, for dialing only,
/// and nothing for a redacted one, which cannot be dialed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// The whole number.
    E164(String),
    /// Only the masked form was kept.
    Redacted(String),
}

/// Why a string is not an E.164 number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadNumber(pub String);

impl PhoneNumber {
    /// Checks and keeps `s`.
    pub fn parse(s: &str) -> Result<PhoneNumber, BadNumber> {
        let digits = s.strip_prefix('+').ok_or_else(|| {
            BadNumber("the number must start with + and the country code (E.164)".into())
        })?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadNumber(
                "the number may hold only digits after the +".into(),
            ));
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(BadNumber(format!(
                "{} digits after the +: E.164 numbers have 8 to 15 and do not start with 0",
                digits.len()
            )));
        }
        Ok(PhoneNumber(Repr::E164(s.to_string())))
    }

    /// A number as the store keeps it: E.164, or the masked form of a redacted one.
    pub(crate) fn from_stored(s: &str) -> Result<PhoneNumber, BadNumber> {
        if let Ok(n) = PhoneNumber::parse(s) {
            return Ok(n);
        }
        let masked = s.len() <= 40
            && s.starts_with('+')
            && s.contains(' ')
            && s.contains('*')
            && s[1..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b' ');
        if masked {
            Ok(PhoneNumber(Repr::Redacted(s.to_string())))
        } else {
            Err(BadNumber("neither an E.164 number nor a masked one".into()))
        }
    }

    /// What the store keeps: the whole number, or the mask of a redacted one.
    pub(crate) fn stored(&self) -> &str {
        match &self.0 {
            Repr::E164(s) | Repr::Redacted(s) => s,
        }
    }

    /// The same number with only its masked form left: it still shows, it cannot be dialed.
    pub fn redacted(&self) -> PhoneNumber {
        PhoneNumber(Repr::Redacted(self.masked()))
    }

    /// Whether only the masked form is left.
    pub fn is_redacted(&self) -> bool {
        matches!(self.0, Repr::Redacted(_))
    }

    /// The whole number, to dial it; `None` once redacted.
    pub fn as_e164(&self) -> Option<&str> {
        match &self.0 {
            Repr::E164(s) => Some(s),
            Repr::Redacted(_) => None,
        }
    }

    /// The country calling code (`81` of `+819012345678`).
    pub fn country_code(&self) -> &str {
        match &self.0 {
            Repr::E164(s) => {
                let digits = &s[1..];
                &digits[..country_code_len(digits)]
            }
            // The mask starts with `+<code> `.
            Repr::Redacted(m) => m[1..].split(' ').next().unwrap_or(""),
        }
    }

    /// The number as logs, the API, the call log and webhooks show it: the country code
    /// and the last two digits, the other digits as `*` in groups of four from the right
    /// (`+81 ** **** **78`), so that no one reading it can dial the number.
    pub fn masked(&self) -> String {
        let whole = match &self.0 {
            Repr::E164(s) => s,
            Repr::Redacted(m) => return m.clone(),
        };
        let cc = self.country_code();
        let national = &whole[1 + cc.len()..];
        let n = national.len();
        let mut out = format!("+{cc}");
        for (i, b) in national.bytes().enumerate() {
            if (n - i).is_multiple_of(4) || i == 0 {
                out.push(' ');
            }
            out.push(if i + 2 >= n { char::from(b) } else { '*' });
        }
        out
    }
}

/// The length of the ITU-T E.164 country calling code at the start of `digits`: the codes
/// are prefix-free, 1 and 7 are one digit, these are two, and all others three.
fn country_code_len(digits: &str) -> usize {
    const TWO: [&str; 44] = [
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
        "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
        "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if TWO.iter().any(|c| digits.starts_with(c)) {
        2
    } else {
        3
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

/// Now, in milliseconds since the Unix epoch (the store's time; 0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A random identifier with a prefix (`ch_…` for challenges, `call_…` for calls): 128 bits
/// from the operating system's generator, in hex.
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the operating system's random generator works");
    format!("{prefix}_{}", hex(&b))
}

/// `bytes` in lowercase hex, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// A challenge's id: `ch_` and 32 lowercase hex digits (128 bits from the operating
/// system's generator). `Display`, `as_str` and JSON give it as it is stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ChallengeId(String);

/// A call's id: `call_` and 32 lowercase hex digits (128 bits from the operating system's
/// generator). `Display`, `as_str` and JSON give it as it is stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CallId(String);

/// What the two ids share: a prefix, the same constructors and the same text.
macro_rules! random_id {
    ($t:ident, $prefix:literal) => {
        // A default id would be a random one: `new` says so, `Default` would not.
        #[allow(clippy::new_without_default)]
        impl $t {
            /// A fresh id, from the operating system's generator.
            pub fn new() -> $t {
                $t(new_id($prefix))
            }

            /// An id from outside (a path, a token): only the shape this store makes, the
            /// prefix and 32 lowercase hex digits; `None` for anything else.
            pub fn parse(s: &str) -> Option<$t> {
                let hex = s.strip_prefix(concat!($prefix, "_"))?;
                let ok = hex.len() == 32
                    && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                ok.then(|| $t(s.to_string()))
            }

            /// An id as read back from the store (or written by a test), kept as it is
            /// without checking its shape: rows of older versions may differ. Not for new
            /// ids ([`Self::new`]) nor for ids from outside ([`Self::parse`]).
            pub fn from_stored(s: String) -> $t {
                $t(s)
            }

            /// The id as stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

random_id!(ChallengeId, "ch");
random_id!(CallId, "call");

/// Where a challenge is (../shared/DESIGN.md): `queued → calling → ringing → answered →
/// approved`, or one terminal failure. A decided challenge never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeState {
    /// Waiting for a call to be placed.
    Queued,
    /// The INVITE is out.
    Calling,
    /// The phone rings.
    Ringing,
    /// The call was answered; the prompt plays.
    Answered,
    /// A spoken-code challenge whose call has read the code: waiting for the user to type
    /// it on the sign-in page (`POST /v1/challenges/{id}/check`).
    CodeSpoken,
    /// '#' was pressed.
    Approved,
    /// Other keys, then '#'.
    Denied,
    /// '0' then '#'.
    FraudReported,
    /// Answered, no key before the timeout.
    NoInput,
    /// An answering machine answered.
    Voicemail,
    /// Nobody answered.
    NoAnswer,
    /// Busy.
    Busy,
    /// The callee declined.
    Declined,
    /// The callee hung up before a verdict.
    HungUp,
    /// Trunk, network or SIP failure (with the SIP status kept).
    Failed,
    /// Cancelled through the API.
    Canceled,
    /// Not decided before its expiry.
    Expired,
    /// The gateway stopped during the call.
    Interrupted,
}

impl ChallengeState {
    /// Every state.
    pub const ALL: [ChallengeState; 18] = [
        ChallengeState::Queued,
        ChallengeState::Calling,
        ChallengeState::Ringing,
        ChallengeState::Answered,
        ChallengeState::CodeSpoken,
        ChallengeState::Approved,
        ChallengeState::Denied,
        ChallengeState::FraudReported,
        ChallengeState::NoInput,
        ChallengeState::Voicemail,
        ChallengeState::NoAnswer,
        ChallengeState::Busy,
        ChallengeState::Declined,
        ChallengeState::HungUp,
        ChallengeState::Failed,
        ChallengeState::Canceled,
        ChallengeState::Expired,
        ChallengeState::Interrupted,
    ];

    /// The name as stored and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeState::Queued => "queued",
            ChallengeState::Calling => "calling",
            ChallengeState::Ringing => "ringing",
            ChallengeState::Answered => "answered",
            ChallengeState::CodeSpoken => "code_spoken",
            ChallengeState::Approved => "approved",
            ChallengeState::Denied => "denied",
            ChallengeState::FraudReported => "fraud_reported",
            ChallengeState::NoInput => "no_input",
            ChallengeState::Voicemail => "voicemail",
            ChallengeState::NoAnswer => "no_answer",
            ChallengeState::Busy => "busy",
            ChallengeState::Declined => "declined",
            ChallengeState::HungUp => "hung_up",
            ChallengeState::Failed => "failed",
            ChallengeState::Canceled => "canceled",
            ChallengeState::Expired => "expired",
            ChallengeState::Interrupted => "interrupted",
        }
    }

    /// The state of a stored name.
    pub fn from_name(s: &str) -> Option<ChallengeState> {
        ChallengeState::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the challenge is decided (it never changes again).
    pub fn is_terminal(self) -> bool {
        self.rank().is_none()
    }

    /// Order of the states before a decision; `None` for the terminal ones.
    fn rank(self) -> Option<u8> {
        match self {
            ChallengeState::Queued => Some(0),
            ChallengeState::Calling => Some(1),
            ChallengeState::Ringing => Some(2),
            ChallengeState::Answered => Some(3),
            ChallengeState::CodeSpoken => Some(4),
            _ => None,
        }
    }

    /// The states a challenge may move to `self` from: any earlier undecided state (a
    /// state may be skipped, e.g. an answer without ringing), never a decided one.
    pub fn predecessors(self) -> Vec<ChallengeState> {
        let limit = self.rank().unwrap_or(u8::MAX);
        ChallengeState::ALL
            .into_iter()
            .filter(|s| s.rank().is_some_and(|r| r < limit))
            .collect()
    }

    /// Whether the challenge is in a call: placed (`calling`, `ringing`, `answered`), not
    /// decided. A `code_spoken` challenge is not: its code was read, and it waits for the
    /// page whether or not the call still runs.
    pub(crate) fn in_call(self) -> bool {
        self.rank().is_some_and(|r| (1..=3).contains(&r))
    }
}

/// The states `keep` selects, in their order, as an SQL list: `'calling', 'ringing'`.
pub(crate) fn sql_list(keep: impl Fn(ChallengeState) -> bool) -> String {
    ChallengeState::ALL
        .into_iter()
        .filter(|&s| keep(s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `'calling', 'ringing', 'answered'`: the states of a challenge in a call, as an SQL list.
pub(crate) fn in_call_sql() -> String {
    sql_list(ChallengeState::in_call)
}

/// `'queued', 'calling', 'ringing', 'answered'`: the states of a challenge waiting for or in
/// a call, as an SQL list.
pub(crate) fn undecided_sql() -> String {
    sql_list(|s| !s.is_terminal())
}

impl fmt::Display for ChallengeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a challenge was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A sign-in.
    SignIn,
    /// Registering a phone.
    Enroll,
}

impl Purpose {
    /// The name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "sign_in",
            Purpose::Enroll => "enroll",
        }
    }

    /// The purpose of a stored name.
    pub fn from_name(s: &str) -> Option<Purpose> {
        match s {
            "sign_in" => Some(Purpose::SignIn),
            "enroll" => Some(Purpose::Enroll),
            _ => None,
        }
    }
}

/// Where a challenge came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `POST /v1/challenges`, from an identity service.
    Api,
    /// Microsoft Entra's external authentication (the EAM provider's sign-in page).
    Eam,
    /// A RADIUS client (a VPN's access server).
    Radius,
}

impl Origin {
    /// Every origin.
    pub const ALL: [Origin; 3] = [Origin::Api, Origin::Eam, Origin::Radius];

    /// The name as stored, in JSON and in `GET /v1/calls?origin=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Api => "api",
            Origin::Eam => "eam",
            Origin::Radius => "radius",
        }
    }

    /// The origin of a stored name.
    pub fn from_name(s: &str) -> Option<Origin> {
        Origin::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked_and_masked() {
        let n = PhoneNumber::parse("+819012345678").unwrap();
        assert_eq!(n.to_string(), "+81 ** **** **78");
        assert_eq!(format!("{n:?}"), "PhoneNumber(+81 ** **** **78)");
        assert_eq!(n.country_code(), "81");
        // Whatever the length, only the country code and the last two digits are shown.
        for (e164, shown) in [
            ("+12025550123", "+1 ** **** **23"),
            ("+447012345678", "+44 ** **** **78"),
            ("+35312345678", "+353 **** **78"),
            ("+3551234567", "+355 *** **67"),
            ("+4412345678", "+44 **** **78"),
            ("+123456789012345", "+1 ** **** **** **45"),
        ] {
            let n = PhoneNumber::parse(e164).unwrap();
            assert_eq!(n.masked(), shown, "{e164}");
            let digits: String = n.masked().chars().filter(char::is_ascii_digit).collect();
            assert_eq!(
                digits,
                format!("{}{}", n.country_code(), &e164[e164.len() - 2..])
            );
        }
        assert_eq!(n.as_e164(), Some("+819012345678"));
        // Redacted: it shows as before and cannot be dialed; the store reads it back.
        let r = n.redacted();
        assert!(r.is_redacted() && !n.is_redacted());
        assert_eq!(r.as_e164(), None);
        assert_eq!((r.to_string(), r.country_code()), (n.to_string(), "81"));
        assert_eq!(format!("{r:?}"), "PhoneNumber(+81 ** **** **78)");
        assert_eq!(PhoneNumber::from_stored(r.stored()), Ok(r.clone()));
        assert_eq!(PhoneNumber::from_stored("+819012345678"), Ok(n.clone()));
        let short = PhoneNumber::parse("+3551234567").unwrap().redacted();
        assert_eq!(
            (short.masked(), short.country_code()),
            ("+355 *** **67".into(), "355")
        );
        for bad in ["", "+", "81 ** **78", "+81 12 3456 78", "+81 ** **** **7x"] {
            assert!(PhoneNumber::from_stored(bad).is_err(), "{bad}");
        }
        for bad in [
            "819012345678",
            "+8190-1234",
            "+0123456789",
            "+1234567",
            "+1234567890123456",
            "+",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_queries_name_the_states_in_a_call() {
        assert_eq!(in_call_sql(), "'calling', 'ringing', 'answered'");
        assert_eq!(
            undecided_sql(),
            "'queued', 'calling', 'ringing', 'answered', 'code_spoken'"
        );
        assert_eq!(
            sql_list(|s| ChallengeState::Answered.predecessors().contains(&s)),
            "'queued', 'calling', 'ringing'"
        );
    }

    #[test]
    fn states_move_forward_and_a_decision_is_final() {
        use ChallengeState::*;
        assert_eq!(Calling.predecessors(), vec![Queued]);
        assert_eq!(Answered.predecessors(), vec![Queued, Calling, Ringing]);
        assert_eq!(
            Approved.predecessors(),
            vec![Queued, Calling, Ringing, Answered, CodeSpoken]
        );
        assert_eq!(
            CodeSpoken.predecessors(),
            vec![Queued, Calling, Ringing, Answered]
        );
        assert!(Queued.predecessors().is_empty());
        for s in ChallengeState::ALL {
            assert_eq!(ChallengeState::from_name(s.as_str()), Some(s));
            assert_eq!(
                s.is_terminal(),
                !matches!(s, Queued | Calling | Ringing | Answered | CodeSpoken)
            );
        }
        assert!(new_id("ch").starts_with("ch_") && new_id("ch").len() == 35);
        for k in StepKind::ALL {
            assert_eq!(StepKind::from_name(k.as_str()), Some(k));
        }
        for k in [KeySource::InBand, KeySource::Rfc4733] {
            assert_eq!(KeySource::from_name(k.as_str()), Some(k));
        }
        assert_eq!(StepKind::from_name("bogus"), None);
        assert_ne!(new_id("ch"), new_id("ch"));
    }

    #[test]
    fn ids_are_made_fresh_and_parsed_only_in_their_shape() {
        let (ch, call) = (ChallengeId::new(), CallId::new());
        assert_ne!(ch, ChallengeId::new());
        assert_eq!(ChallengeId::parse(ch.as_str()), Some(ch.clone()));
        assert_eq!(CallId::parse(call.as_str()), Some(call.clone()));
        assert_eq!(ch.to_string(), ch.as_str());
        let hex = "0123456789abcdef0123456789abcdef";
        assert!(ChallengeId::parse(&format!("ch_{hex}")).is_some());
        assert!(CallId::parse(&format!("call_{hex}")).is_some());
        for bad in [
            String::new(),
            "ch_".into(),
            format!("ch_{hex}0"),
            format!("ch_{}", &hex[1..]),
            format!("ch_{}", hex.to_uppercase()),
            format!("ch_{}g", &hex[1..]),
            format!("ch_{}é", &hex[2..]),
            format!("call_{hex}"),
            format!("CH_{hex}"),
            format!(" ch_{hex}"),
        ] {
            assert_eq!(ChallengeId::parse(&bad), None, "{bad}");
        }
        assert_eq!(CallId::parse(&format!("ch_{hex}")), None);
        assert_eq!(CallId::from_stored("call_01".into()).as_str(), "call_01");
    }
}

/// Where a key was heard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// The in-band detector, on the decoded audio.
    InBand,
    /// RFC 4733 telephone-event packets.
    Rfc4733,
}

impl KeySource {
    /// The name as stored, in reports and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::InBand => "in_band",
            KeySource::Rfc4733 => "rfc4733",
        }
    }

    /// The source of a stored name.
    pub fn from_name(s: &str) -> Option<KeySource> {
        [KeySource::InBand, KeySource::Rfc4733]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a step of a call in the call log is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// The INVITE went out.
    Invite,
    /// A SIP response.
    Sip,
    /// A prompt started.
    Prompt,
    /// A key, heard or ignored.
    Key,
    /// The verdict.
    Verdict,
    /// The call ended.
    End,
}

impl StepKind {
    /// Every kind.
    pub const ALL: [StepKind; 6] = [
        StepKind::Invite,
        StepKind::Sip,
        StepKind::Prompt,
        StepKind::Key,
        StepKind::Verdict,
        StepKind::End,
    ];

    /// The name as stored and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Invite => "invite",
            StepKind::Sip => "sip",
            StepKind::Prompt => "prompt",
            StepKind::Key => "key",
            StepKind::Verdict => "verdict",
            StepKind::End => "end",
        }
    }

    /// The kind of a stored name.
    pub fn from_name(s: &str) -> Option<StepKind> {
        StepKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registered phone's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneRole {
    /// Called first.
    Primary,
    /// Called when the primary ends `no_answer` or `busy` (if the gateway is set to).
    Fallback,
}

impl PhoneRole {
    /// The name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneRole::Primary => "primary",
            PhoneRole::Fallback => "fallback",
        }
    }

    /// The role of a stored name.
    pub fn from_name(s: &str) -> Option<PhoneRole> {
        match s {
            "primary" => Some(PhoneRole::Primary),
            "fallback" => Some(PhoneRole::Fallback),
            _ => None,
        }
    }
}
