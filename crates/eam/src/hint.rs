//! The validation of Entra's `id_token_hint`: who the user is, and that Entra said so.
//!
//! Entra issues the hint already expired (it is a hint, not a credential), so `exp` is not
//! checked; `iat` bounds its age instead.

use serde_json::{Map, Value};

use crate::Settings;
use crate::UserIdClaim;
use crate::jose::{JoseError, Jws, RsaPublicJwk, clip};

/// How far ahead of `now` a hint's `iat` may be (clock skew), in seconds.
pub const MAX_FUTURE_SKEW_S: i64 = 60;

/// The placeholder of Entra's issuer template for the tenant id.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// What callverify uses of a validated id_token_hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// The user's tenant (a GUID).
    pub tid: String,
    /// The user's immutable object id in the tenant.
    pub oid: String,
    /// The user's pairwise subject, echoed in our token.
    pub sub: String,
    /// The user's name to display (not unique).
    pub preferred_username: Option<String>,
    /// The user's full name, if Entra gave it.
    pub name: Option<String>,
    /// When Entra issued the hint, seconds since the epoch.
    pub iat: i64,
}

/// Why a hint was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HintError {
    /// It is not a compact JWS with a JSON payload.
    #[error("the id_token_hint is malformed: {0}")]
    Malformed(String),
    /// It is signed with another algorithm than RS256.
    #[error("the id_token_hint is signed with {0:?}; Entra signs RS256")]
    Algorithm(String),
    /// Its kid (its first 64 characters) names none of Entra's keys known (refetch Entra's
    /// keys once, then refuse).
    #[error("the id_token_hint is signed by a key ({0:?}) not among Entra's published keys")]
    UnknownKey(Option<String>),
    /// The signature does not verify with the key its kid names.
    #[error("the id_token_hint's signature does not verify with Entra's key")]
    BadSignature,
    /// Its issuer is not Entra's for the hint's tenant.
    #[error("the id_token_hint's issuer {0:?} is not Entra's issuer for its tenant")]
    Issuer(String),
    /// Its tenant is not one the settings allow.
    #[error("the id_token_hint is from tenant {0:?}, which is not in the EAM's allowed tenants")]
    Tenant(String),
    /// It was issued for another client.
    #[error("the id_token_hint was issued for another client id (aud)")]
    Audience,
    /// It was issued too long ago.
    #[error("the id_token_hint was issued {age_s} s ago, more than the hint's maximum age")]
    TooOld {
        /// Its age in seconds.
        age_s: i64,
    },
    /// It was issued more than a minute in the future (check the clocks).
    #[error("the id_token_hint was issued in the future; check this server's clock")]
    FromTheFuture,
    /// A claim the validation needs is missing or not of its type.
    #[error("the id_token_hint has no valid {0} claim")]
    MissingClaim(&'static str),
}

impl From<JoseError> for HintError {
    fn from(e: JoseError) -> HintError {
        match e {
            JoseError::Algorithm(alg) => HintError::Algorithm(alg),
            other @ (JoseError::TooLong { .. } | JoseError::Malformed(_)) => {
                HintError::Malformed(other.to_string())
            }
        }
    }
}

/// Validates a hint: RS256 (via jose::Jws), signed by one of `keys` (the kid selects it; an
/// unknown kid is UnknownKey so the caller can refetch Entra's keys once), iss equal to
/// `issuer_template` (Entra's discovery `issuer`, "https://login.microsoftonline.com/{tenantid}/v2.0")
/// with {tenantid} replaced by the hint's tid, tid in settings.tenants, aud equal to
/// `client_id` (string or array containing it), iat within settings.hint_max_age of now (and
/// not more than 60 s ahead of now). exp is NOT checked (Entra issues the hint expired). tid,
/// oid, sub required, and preferred_username when the user id claim is PreferredUsername.
pub fn validate(
    token: &str,
    keys: &[RsaPublicJwk],
    issuer_template: &str,
    settings: &Settings,
    client_id: &str,
    now_s: i64,
) -> Result<Hint, HintError> {
    let jws = Jws::parse(token)?;
    // Keys sharing a kid (a JWKS mid-rotation may repeat one) are each tried.
    let mut named = keys
        .iter()
        .filter(|k| jws.kid.as_deref() == Some(k.kid.as_str()))
        .peekable();
    if named.peek().is_none() {
        return Err(HintError::UnknownKey(jws.kid.as_deref().map(clip)));
    }
    if !named.any(|key| jws.verify(key)) {
        return Err(HintError::BadSignature);
    }
    let c = &jws.claims;
    let tid = string(c, "tid")?;
    if !settings.tenants.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
        return Err(HintError::Tenant(tid.to_owned()));
    }
    check_issuer(c, issuer_template, tid)?;
    check_audience(c, client_id)?;
    let iat = check_iat(c, settings, now_s)?;
    let preferred_username = optional_string(c, "preferred_username")?;
    if settings.user_id_claim == UserIdClaim::PreferredUsername && preferred_username.is_none() {
        return Err(HintError::MissingClaim("preferred_username"));
    }
    Ok(Hint {
        tid: tid.to_owned(),
        oid: string(c, "oid")?.to_owned(),
        sub: string(c, "sub")?.to_owned(),
        preferred_username,
        name: optional_string(c, "name")?,
        iat,
    })
}

/// A required, non-empty string claim.
fn string<'a>(c: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, HintError> {
    c.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(HintError::MissingClaim(name))
}

/// An optional string claim (absent, null or empty: `None`; another type: refused).
fn optional_string(
    c: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, HintError> {
    match c.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        Some(_) => Err(HintError::MissingClaim(name)),
    }
}

fn check_issuer(c: &Map<String, Value>, template: &str, tid: &str) -> Result<(), HintError> {
    let iss = string(c, "iss")?;
    if iss != template.replace(TENANT_PLACEHOLDER, tid) {
        return Err(HintError::Issuer(iss.to_owned()));
    }
    Ok(())
}

fn check_audience(c: &Map<String, Value>, client_id: &str) -> Result<(), HintError> {
    let ours = match c.get("aud") {
        Some(Value::String(aud)) => aud == client_id,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client_id)),
        _ => return Err(HintError::MissingClaim("aud")),
    };
    if ours {
        Ok(())
    } else {
        Err(HintError::Audience)
    }
}

fn check_iat(c: &Map<String, Value>, settings: &Settings, now_s: i64) -> Result<i64, HintError> {
    let iat = c
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(HintError::MissingClaim("iat"))?;
    if iat > now_s.saturating_add(MAX_FUTURE_SKEW_S) {
        return Err(HintError::FromTheFuture);
    }
    let age_s = now_s.saturating_sub(iat);
    if age_s > crate::duration_s(settings.hint_max_age) {
        return Err(HintError::TooOld { age_s });
    }
    Ok(iat)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use serde_json::json;

    use super::*;
    use crate::jose::parse_jwks;
    use crate::keys::{KeyRecord, Signer};

    const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
    const TID: &str = "14c2f153-90a7-4689-9db7-9543bf084dad";
    const OTHER_TID: &str = "9122040d-6c67-4c5b-b112-36a304b66dad";
    const CLIENT: &str = "600b719b-3766-4dc5-95a6-3c4a8dc31885";
    const NOW: i64 = 1_536_093_791 + 30;

    /// Two Entra-like keys: the first is published, the second is not.
    fn entra_keys() -> &'static (Signer, Signer, Vec<RsaPublicJwk>) {
        static KEYS: OnceLock<(Signer, Signer, Vec<RsaPublicJwk>)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let a = KeyRecord::generate("https://login.microsoftonline.com", 0, 0).unwrap();
            let b = KeyRecord::generate("https://login.microsoftonline.com", 0, 0).unwrap();
            let jwks = parse_jwks(&json!({ "keys": [a.jwk().unwrap()] }));
            (Signer::new(&a).unwrap(), Signer::new(&b).unwrap(), jwks)
        })
    }

    fn settings() -> Settings {
        let mut s = Settings::new("https://cv.example");
        s.client_ids = vec![CLIENT.into()];
        s.tenants = vec![TID.into()];
        s
    }

    /// The claims of Microsoft's example hint (a directory member), exp before iat.
    fn microsofts_claims() -> Value {
        json!({
            "ver": "2.0",
            "iss": format!("https://login.microsoftonline.com/{TID}/v2.0"),
            "sub": "mBfcvuhSHkDWVgV72x2ruIYdSsPSvcj2R0qfc6mGEAA",
            "aud": CLIENT,
            "exp": 1_536_093_790,
            "iat": 1_536_093_791,
            "nbf": 1_536_093_791,
            "name": "Test User 2",
            "preferred_username": "testuser2@contoso.com",
            "oid": "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee",
            "tid": TID,
        })
    }

    fn signed(claims: &Value) -> String {
        entra_keys().0.sign(claims).unwrap()
    }

    fn check(token: &str, s: &Settings) -> Result<Hint, HintError> {
        validate(token, &entra_keys().2, TEMPLATE, s, CLIENT, NOW)
    }

    fn changed(name: &str, value: Value) -> String {
        let mut c = microsofts_claims();
        if value.is_null() {
            c.as_object_mut().unwrap().remove(name);
        } else {
            c[name] = value;
        }
        signed(&c)
    }

    #[test]
    fn a_hint_like_microsofts_example_is_accepted() {
        let hint = check(&signed(&microsofts_claims()), &settings()).unwrap();
        assert_eq!(
            hint,
            Hint {
                tid: TID.into(),
                oid: "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee".into(),
                sub: "mBfcvuhSHkDWVgV72x2ruIYdSsPSvcj2R0qfc6mGEAA".into(),
                preferred_username: Some("testuser2@contoso.com".into()),
                name: Some("Test User 2".into()),
                iat: 1_536_093_791,
            }
        );
        assert_eq!(
            settings().user_id(&hint),
            format!("entra:{TID}:951ddb04-b16d-45f3-bbf7-b0fa18fa7aee")
        );
    }

    #[test]
    fn signed_by_another_key() {
        let token = entra_keys().1.sign(&microsofts_claims()).unwrap();
        let other_kid = entra_keys().1.kid().to_owned();
        assert_eq!(
            check(&token, &settings()),
            Err(HintError::UnknownKey(Some(other_kid)))
        );
        // The same signature under the published key's kid: the signature is what fails.
        let ours = signed(&microsofts_claims());
        let (our_header, _) = ours.split_once('.').unwrap();
        let (_, their_rest) = token.split_once('.').unwrap();
        let forged = format!("{our_header}.{their_rest}");
        assert_eq!(check(&forged, &settings()), Err(HintError::BadSignature));
    }

    #[test]
    fn every_key_of_the_kid_is_tried() {
        let (signer, _, jwks) = entra_keys();
        let mut decoy = jwks[0].clone();
        decoy.n[10] ^= 1;
        let token = signer.sign(&microsofts_claims()).unwrap();
        let both = [decoy.clone(), jwks[0].clone()];
        assert!(validate(&token, &both, TEMPLATE, &settings(), CLIENT, NOW).is_ok());
        let refused = validate(&token, &[decoy], TEMPLATE, &settings(), CLIENT, NOW);
        assert_eq!(refused, Err(HintError::BadSignature));
    }

    #[test]
    fn unknown_or_missing_kid() {
        assert_eq!(
            validate(
                &signed(&microsofts_claims()),
                &[],
                TEMPLATE,
                &settings(),
                CLIENT,
                NOW
            ),
            Err(HintError::UnknownKey(Some(entra_keys().0.kid().to_owned())))
        );
        let header = crate::jose::b64url(br#"{"alg":"RS256"}"#);
        let token = signed(&microsofts_claims());
        let (_, rest) = token.split_once('.').unwrap();
        assert_eq!(
            check(&format!("{header}.{rest}"), &settings()),
            Err(HintError::UnknownKey(None))
        );
    }

    #[test]
    fn an_unknown_kid_is_repeated_clipped() {
        let header = crate::jose::b64url(
            json!({"alg": "RS256", "kid": "k".repeat(5000)})
                .to_string()
                .as_bytes(),
        );
        let token = signed(&microsofts_claims());
        let (_, rest) = token.split_once('.').unwrap();
        let refused = check(&format!("{header}.{rest}"), &settings());
        assert_eq!(refused, Err(HintError::UnknownKey(Some("k".repeat(64)))));
    }

    #[test]
    fn another_tenant() {
        let token = changed("tid", json!(OTHER_TID));
        assert_eq!(
            check(&token, &settings()),
            Err(HintError::Tenant(OTHER_TID.into()))
        );
        // Its issuer names the tenant too: a hint of tenant A claiming B's issuer.
        let mut s = settings();
        s.tenants.push(OTHER_TID.into());
        assert!(matches!(check(&token, &s), Err(HintError::Issuer(_))));
    }

    #[test]
    fn another_audience() {
        assert_eq!(
            check(&changed("aud", json!("another-client")), &settings()),
            Err(HintError::Audience)
        );
        assert_eq!(
            check(&changed("aud", json!(["a", "b"])), &settings()),
            Err(HintError::Audience)
        );
        assert!(check(&changed("aud", json!(["a", CLIENT])), &settings()).is_ok());
        assert_eq!(
            check(&changed("aud", Value::Null), &settings()),
            Err(HintError::MissingClaim("aud"))
        );
        assert_eq!(
            check(&changed("aud", json!(7)), &settings()),
            Err(HintError::MissingClaim("aud"))
        );
    }

    #[test]
    fn old_iat() {
        let s = settings();
        let oldest = NOW - 600;
        assert!(check(&changed("iat", json!(oldest)), &s).is_ok());
        assert_eq!(
            check(&changed("iat", json!(oldest - 1)), &s),
            Err(HintError::TooOld { age_s: 601 })
        );
        assert!(matches!(
            check(&changed("iat", json!(i64::MIN)), &s),
            Err(HintError::TooOld { .. })
        ));
    }

    #[test]
    fn iat_in_the_future() {
        let s = settings();
        assert!(check(&changed("iat", json!(NOW + 60)), &s).is_ok());
        assert_eq!(
            check(&changed("iat", json!(NOW + 61)), &s),
            Err(HintError::FromTheFuture)
        );
        assert_eq!(
            check(&changed("iat", json!(u64::MAX)), &s),
            Err(HintError::MissingClaim("iat"))
        );
        assert_eq!(
            check(&changed("iat", json!("1536093791")), &s),
            Err(HintError::MissingClaim("iat"))
        );
        assert_eq!(
            check(&changed("iat", json!(1.5e9)), &s),
            Err(HintError::MissingClaim("iat"))
        );
    }

    #[test]
    fn missing_claims() {
        for name in ["oid", "sub", "tid", "iss", "iat"] {
            assert_eq!(
                check(&changed(name, Value::Null), &settings()),
                Err(HintError::MissingClaim(name))
            );
        }
        assert_eq!(
            check(&changed("oid", json!("")), &settings()),
            Err(HintError::MissingClaim("oid"))
        );
        assert_eq!(
            check(&changed("oid", json!(1)), &settings()),
            Err(HintError::MissingClaim("oid"))
        );
        let hint = check(&changed("preferred_username", Value::Null), &settings()).unwrap();
        assert_eq!(hint.preferred_username, None);
        let mut s = settings();
        s.user_id_claim = UserIdClaim::PreferredUsername;
        let token = changed("preferred_username", Value::Null);
        assert_eq!(
            check(&token, &s),
            Err(HintError::MissingClaim("preferred_username"))
        );
    }

    #[test]
    fn wrong_iss_form() {
        for iss in [
            "https://sts.windows.net/14c2f153-90a7-4689-9db7-9543bf084dad/",
            "https://login.microsoftonline.com/14c2f153-90a7-4689-9db7-9543bf084dad/v2.0/",
            "https://login.microsoftonline.com/{tenantid}/v2.0",
            "https://login.microsoftonline.com/common/v2.0",
            "https://evil.example/14c2f153-90a7-4689-9db7-9543bf084dad/v2.0",
        ] {
            assert_eq!(
                check(&changed("iss", json!(iss)), &settings()),
                Err(HintError::Issuer(iss.into()))
            );
        }
    }

    #[test]
    fn exp_is_not_checked_but_the_form_is() {
        assert!(check(&changed("exp", json!(0)), &settings()).is_ok());
        assert!(matches!(
            check("a.b", &settings()),
            Err(HintError::Malformed(_))
        ));
        let none = format!(
            "{}.{}.",
            crate::jose::b64url(br#"{"alg":"none"}"#),
            crate::jose::b64url(b"{}")
        );
        assert_eq!(
            check(&none, &settings()),
            Err(HintError::Algorithm("none".into()))
        );
    }
}
