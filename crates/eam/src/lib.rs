//! callverify as a Microsoft Entra external authentication method (EAM).
//!
//! Entra sends the browser to callverify for the second factor with an OpenID Connect
//! implicit-flow request (form post) carrying an `id_token_hint` it signed; callverify calls
//! the user's phone and answers with an `id_token` of its own. This crate holds that protocol
//! and nothing else:
//!
//! - [`request`]: the authorization request, its checks and the `acr` to answer;
//! - [`hint`]: the validation of Entra's `id_token_hint` against Entra's keys;
//! - [`token`]: the `id_token` callverify answers with;
//! - [`keys`]: callverify's signing keys, their certificates, rotation and the JWKS;
//! - [`discovery`]: the provider's discovery document;
//! - [`jose`]: base64url, JWKS parsing and compact JWS (RS256 only).
//!
//! It is sans-IO: no sockets, no runtime, no SQL and no clock. The caller passes the time
//! (seconds or milliseconds since the Unix epoch), fetches Entra's keys and keeps callverify's.
//! RSA keys are generated with `rsa` (only that: it has a timing advisory for private-key
//! operations); every signature is made and checked with `ring`.

#![warn(missing_docs)]

pub mod discovery;
pub mod hint;
pub mod jose;
pub mod keys;
pub mod request;
pub mod token;

use std::time::Duration;

/// Microsoft's three redirect URIs (global, US Government, 21Vianet).
pub const MICROSOFT_REDIRECT_URIS: [&str; 3] = [
    "https://login.microsoftonline.com/common/federation/externalauthprovider",
    "https://login.microsoftonline.us/common/federation/externalauthprovider",
    "https://login.partner.microsoftonline.cn/common/federation/externalauthprovider",
];

/// Entra's own discovery document (global cloud), where its `issuer` template and keys are.
pub const ENTRA_DISCOVERY_URL: &str =
    "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration";

/// Which claim of the hint names the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserIdClaim {
    /// The user's immutable object id (`oid`), as Microsoft recommends.
    Oid,
    /// The `preferred_username`, lowercased (not guaranteed unique by Entra).
    PreferredUsername,
}

/// The provider's settings (made by the configuration; defaults in [`Settings::new`]).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The public base URL, no trailing '/': the discovery document's `issuer` and our `iss`.
    pub issuer: String,
    /// The client ids Entra may present (the Entra app's application ids).
    pub client_ids: Vec<String>,
    /// The redirect URIs answers may go to (default [`MICROSOFT_REDIRECT_URIS`]).
    pub redirect_uris: Vec<String>,
    /// The Entra tenant ids (GUIDs) whose users are accepted.
    pub tenants: Vec<String>,
    /// How old a hint's `iat` may be (default 600 s).
    pub hint_max_age: Duration,
    /// How long a new key is published before it signs, and an old one after (default 48 h).
    pub key_publish: Duration,
    /// How long our `id_token` is valid (default 300 s).
    pub token_ttl: Duration,
    /// Which claim of the hint names the user (default [`UserIdClaim::Oid`]).
    pub user_id_claim: UserIdClaim,
    /// Where Entra's discovery document is (default [`ENTRA_DISCOVERY_URL`]).
    pub entra_discovery_url: String,
}

impl Settings {
    /// The defaults for a provider at `issuer` (a trailing '/' is removed); no client or
    /// tenant is allowed until the configuration adds them.
    pub fn new(issuer: &str) -> Settings {
        Settings {
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_ids: Vec::new(),
            redirect_uris: MICROSOFT_REDIRECT_URIS
                .iter()
                .map(|u| (*u).to_owned())
                .collect(),
            tenants: Vec::new(),
            hint_max_age: Duration::from_secs(600),
            key_publish: Duration::from_secs(48 * 3600),
            token_ttl: Duration::from_secs(300),
            user_id_claim: UserIdClaim::Oid,
            entra_discovery_url: ENTRA_DISCOVERY_URL.to_owned(),
        }
    }

    /// The callverify user id of a hint's user: `entra:{tid}:{oid}`, or
    /// `entra:{tid}:{preferred_username lowercased}` (empty if absent: [`hint::validate`]
    /// refuses a hint without the configured claim).
    pub fn user_id(&self, h: &hint::Hint) -> String {
        match self.user_id_claim {
            UserIdClaim::Oid => format!("entra:{}:{}", h.tid, h.oid),
            UserIdClaim::PreferredUsername => {
                let name = h.preferred_username.as_deref().unwrap_or_default();
                format!("entra:{}:{}", h.tid, name.to_lowercase())
            }
        }
    }
}

/// A duration in whole milliseconds as an `i64`, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A duration in whole seconds as an `i64`, saturating.
pub(crate) fn duration_s(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(username: Option<&str>) -> hint::Hint {
        hint::Hint {
            tid: "t".into(),
            oid: "o".into(),
            sub: "s".into(),
            preferred_username: username.map(str::to_owned),
            name: None,
            iat: 0,
        }
    }

    #[test]
    fn defaults() {
        let s = Settings::new("https://cv.example/");
        assert_eq!(s.issuer, "https://cv.example");
        assert_eq!(s.redirect_uris, MICROSOFT_REDIRECT_URIS);
        assert_eq!(s.hint_max_age, Duration::from_secs(600));
        assert_eq!(s.key_publish, Duration::from_secs(172_800));
        assert_eq!(s.token_ttl, Duration::from_secs(300));
        assert_eq!(s.user_id_claim, UserIdClaim::Oid);
    }

    #[test]
    fn user_ids() {
        let mut s = Settings::new("https://cv.example");
        assert_eq!(s.user_id(&hint(Some("A@B"))), "entra:t:o");
        s.user_id_claim = UserIdClaim::PreferredUsername;
        assert_eq!(
            s.user_id(&hint(Some("Ann@Contoso.COM"))),
            "entra:t:ann@contoso.com"
        );
        assert_eq!(s.user_id(&hint(None)), "entra:t:");
    }
}
