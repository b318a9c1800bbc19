//! The authorization request Entra posts to the provider, its checks, and the `acr` to answer.
//!
//! Until the client and the redirect URI are known to be ones the settings allow, nothing
//! about a request is trusted enough to redirect the browser anywhere: those refusals are
//! [`Refusal::NoRedirect`].

use std::collections::HashSet;

use serde_json::Value;

use crate::Settings;

/// The longest value of a field accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 16 * 1024;

/// The longest name of a field accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The most fields a request may have, known or not.
pub const MAX_FIELDS: usize = 64;

/// The `acr` values a possession factor (a phone call) satisfies, in no order of preference.
pub const POSSESSION_ACRS: [&str; 4] = [
    "possessionorinherence",
    "possession",
    "knowledgeorpossession",
    "knowledgeorpossessionorinherence",
];

/// The `acr` answered when the request asks for none.
pub const DEFAULT_ACR: &str = "possessionorinherence";

/// The `amr` of a phone call: confirmation by telephone.
pub const AMR_TEL: &str = "tel";

/// An authorization request as Entra posts it (form fields; also from a GET query). Fields it
/// does not know are ignored (the reference says so). Each value at most 16 KiB, at most 64
/// fields, duplicates refused.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    /// `scope`: must contain `openid`.
    pub scope: String,
    /// `response_type`: must be `id_token`.
    pub response_type: String,
    /// `response_mode`: absent or `form_post`.
    pub response_mode: Option<String>,
    /// `client_id`: the id callverify gave Entra.
    pub client_id: String,
    /// `redirect_uri`: where the answer is posted.
    pub redirect_uri: String,
    /// `nonce`: echoed in the token.
    pub nonce: String,
    /// `state`: echoed in the answer when present.
    pub state: Option<String>,
    /// `id_token_hint`: Entra's token naming the user.
    pub id_token_hint: String,
    /// `claims`: the OIDC claims request (JSON), with the `acr` and `amr` asked for.
    pub claims: Option<String>,
    /// `client-request-id`: Entra's id of the request, for the logs.
    pub client_request_id: Option<String>,
    /// `ui_locales`: the languages the user prefers.
    pub ui_locales: Option<String>,
}

/// Why a request is refused. `NoRedirect` ones get an error page and are never redirected
/// (unknown or missing client_id or redirect_uri); `Redirect` ones are answered to the
/// redirect_uri with an OAuth error code and the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Shown to the user; the browser is not sent anywhere.
    NoRedirect(String),
    /// Posted to the redirect URI as `error` and `error_description`.
    Redirect {
        /// The OAuth error code.
        error: &'static str,
        /// What was wrong, for the operator.
        description: String,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoRedirect(why) => f.write_str(why),
            Refusal::Redirect { error, description } => write!(f, "{error}: {description}"),
        }
    }
}

fn redirect(error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal::Redirect {
        error,
        description: description.into(),
    }
}

fn invalid_request(description: impl Into<String>) -> Refusal {
    redirect("invalid_request", description)
}

/// The fields of a request, as read before any is checked.
#[derive(Default)]
struct Fields {
    scope: Option<String>,
    response_type: Option<String>,
    response_mode: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    nonce: Option<String>,
    state: Option<String>,
    id_token_hint: Option<String>,
    claims: Option<String>,
    client_request_id: Option<String>,
    ui_locales: Option<String>,
}

impl Fields {
    /// Where a known field goes; `None` for a field to ignore.
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "scope" => &mut self.scope,
            "response_type" => &mut self.response_type,
            "response_mode" => &mut self.response_mode,
            "client_id" => &mut self.client_id,
            "redirect_uri" => &mut self.redirect_uri,
            "nonce" => &mut self.nonce,
            "state" => &mut self.state,
            "id_token_hint" => &mut self.id_token_hint,
            "claims" => &mut self.claims,
            "client-request-id" => &mut self.client_request_id,
            "ui_locales" => &mut self.ui_locales,
            _ => return None,
        })
    }
}

impl AuthRequest {
    /// Reads a request from its decoded form (or query) pairs. Every refusal here is
    /// [`Refusal::NoRedirect`]: too many fields, a name or value too long, a field given
    /// twice, or no `client_id` or `redirect_uri`. Other missing fields are left empty for
    /// [`AuthRequest::check`]; an empty optional field counts as absent.
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(
        pairs: I,
    ) -> Result<AuthRequest, Refusal> {
        let mut fields = Fields::default();
        let mut seen = HashSet::new();
        for (count, (name, value)) in pairs.into_iter().enumerate() {
            if count >= MAX_FIELDS {
                return Err(Refusal::NoRedirect(format!(
                    "the request has more than {MAX_FIELDS} fields"
                )));
            }
            check_sizes(&name, &value)?;
            if !seen.insert(name.clone()) {
                return Err(Refusal::NoRedirect(format!(
                    "the request gives {} twice",
                    shown(&name)
                )));
            }
            if let Some(slot) = fields.slot(&name) {
                *slot = Some(value).filter(|v| !v.is_empty());
            }
        }
        let client_id = fields
            .client_id
            .ok_or_else(|| Refusal::NoRedirect("the request has no client_id".into()))?;
        let redirect_uri = fields
            .redirect_uri
            .ok_or_else(|| Refusal::NoRedirect("the request has no redirect_uri".into()))?;
        Ok(AuthRequest {
            scope: fields.scope.unwrap_or_default(),
            response_type: fields.response_type.unwrap_or_default(),
            response_mode: fields.response_mode,
            client_id,
            redirect_uri,
            nonce: fields.nonce.unwrap_or_default(),
            state: fields.state,
            id_token_hint: fields.id_token_hint.unwrap_or_default(),
            claims: fields.claims,
            client_request_id: fields.client_request_id,
            ui_locales: fields.ui_locales,
        })
    }

    /// client_id in settings.client_ids and redirect_uri exactly one of settings.redirect_uris
    /// (both checked first, NoRedirect), then scope contains openid, response_type is id_token,
    /// response_mode absent or form_post, nonce and id_token_hint present (Redirect
    /// invalid_request, invalid_scope or unsupported_response_type).
    pub fn check(&self, s: &Settings) -> Result<(), Refusal> {
        if !s.client_ids.contains(&self.client_id) {
            return Err(Refusal::NoRedirect(
                "the request's client_id is not one this provider knows; add it to the EAM client ids".into(),
            ));
        }
        if !s.redirect_uris.contains(&self.redirect_uri) {
            return Err(Refusal::NoRedirect(
                "the request's redirect_uri is not one of the allowed redirect URIs".into(),
            ));
        }
        if !self.scope.split(' ').any(|scope| scope == "openid") {
            return Err(redirect("invalid_scope", "the scope must include openid"));
        }
        match self.response_type.as_str() {
            "id_token" => {}
            "" => return Err(invalid_request("the request has no response_type")),
            _ => {
                return Err(redirect(
                    "unsupported_response_type",
                    "only response_type id_token is supported",
                ));
            }
        }
        if self
            .response_mode
            .as_deref()
            .is_some_and(|m| m != "form_post")
        {
            return Err(invalid_request("only response_mode form_post is supported"));
        }
        if self.nonce.is_empty() {
            return Err(invalid_request("the request has no nonce"));
        }
        if self.id_token_hint.is_empty() {
            return Err(invalid_request("the request has no id_token_hint"));
        }
        Ok(())
    }

    /// The acr to answer: the first of the request's claims.id_token.acr.values that a
    /// possession factor satisfies (possessionorinherence, possession, knowledgeorpossession,
    /// knowledgeorpossessionorinherence), in the order requested; with no acr requested,
    /// "possessionorinherence". If amr values are requested and "tel" is not among them, or no
    /// requested acr is satisfied, Redirect access_denied. A claims value that is not JSON
    /// (or not of the claims request's shape): Redirect invalid_request.
    pub fn acr(&self) -> Result<&'static str, Refusal> {
        let Some(claims) = &self.claims else {
            return Ok(DEFAULT_ACR);
        };
        let claims: Value = serde_json::from_str(claims)
            .map_err(|_| invalid_request("the claims parameter is not JSON"))?;
        if !claims.is_object() {
            return Err(invalid_request("the claims parameter is not a JSON object"));
        }
        let id_token = match claims.get("id_token") {
            None | Some(Value::Null) => return Ok(DEFAULT_ACR),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err(invalid_request("claims.id_token is not an object")),
        };
        let amr = requested_values(id_token, "amr")?;
        if !amr.is_empty() && !amr.contains(&AMR_TEL) {
            return Err(redirect(
                "access_denied",
                "the request does not accept the telephone method (amr tel)",
            ));
        }
        let acr = requested_values(id_token, "acr")?;
        if acr.is_empty() {
            return Ok(DEFAULT_ACR);
        }
        acr.iter()
            .find_map(|wanted| POSSESSION_ACRS.iter().copied().find(|p| p == wanted))
            .ok_or_else(|| {
                redirect(
                    "access_denied",
                    "no requested acr is satisfied by a possession factor",
                )
            })
    }
}

/// The fields [`AuthRequest`] reads; others are ignored.
const KNOWN_FIELDS: [&str; 11] = [
    "scope",
    "response_type",
    "response_mode",
    "client_id",
    "redirect_uri",
    "nonce",
    "state",
    "id_token_hint",
    "claims",
    "client-request-id",
    "ui_locales",
];

/// A field's name as a refusal may show it: only the names we know, never what a client
/// made up (the refusal may reach a page or a log).
fn shown(name: &str) -> String {
    if KNOWN_FIELDS.contains(&name) {
        format!("the field {name}")
    } else {
        "an unknown field".to_owned()
    }
}

fn check_sizes(name: &str, value: &str) -> Result<(), Refusal> {
    if name.len() > MAX_NAME_LEN {
        return Err(Refusal::NoRedirect(format!(
            "a field name is longer than {MAX_NAME_LEN} bytes"
        )));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(Refusal::NoRedirect(format!(
            "{} is longer than {MAX_VALUE_LEN} bytes",
            shown(name)
        )));
    }
    Ok(())
}

/// The values a claims request asks for one claim: `{"values": [..]}` or `{"value": ".."}`;
/// empty when the claim is not requested or requested with no values (`null`, `{}`).
fn requested_values<'a>(id_token: &'a Value, claim: &str) -> Result<Vec<&'a str>, Refusal> {
    let shape = || invalid_request(format!("claims.id_token.{claim} is not a claims request"));
    let request = match id_token.get(claim) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(request)) => request,
        Some(_) => return Err(shape()),
    };
    let mut values = match request.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_str().ok_or_else(shape))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(shape()),
    };
    match request.get("value") {
        None | Some(Value::Null) => {}
        Some(Value::String(value)) => values.insert(0, value.as_str()),
        Some(_) => return Err(shape()),
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "600b719b-3766-4dc5-95a6-3c4a8dc31885";
    const MS_CLAIMS: &str = r#"{"id_token":{"acr":{"essential":true,"values":["possessionorinherence"]},"amr":{"essential":true,"values":["face","fido","fpt","hwk","iris","otp","pop","retina","sc","sms","swk","tel","vbm"]}}}"#;

    fn settings() -> Settings {
        let mut s = Settings::new("https://cv.example");
        s.client_ids = vec![CLIENT.into()];
        s
    }

    fn pairs() -> Vec<(String, String)> {
        [
            ("scope", "openid"),
            ("response_type", "id_token"),
            ("response_mode", "form_post"),
            ("client_id", CLIENT),
            ("redirect_uri", crate::MICROSOFT_REDIRECT_URIS[0]),
            ("nonce", "n-0S6_WzA2Mj"),
            ("state", "opaque"),
            ("id_token_hint", "a.b.c"),
            ("claims", MS_CLAIMS),
            ("client-request-id", "2a6e8f5c-0000-4000-8000-000000000000"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    fn with(name: &str, value: Option<&str>) -> Vec<(String, String)> {
        let mut p: Vec<_> = pairs().into_iter().filter(|(k, _)| k != name).collect();
        if let Some(v) = value {
            p.push((name.to_owned(), v.to_owned()));
        }
        p
    }

    fn request(p: Vec<(String, String)>) -> AuthRequest {
        AuthRequest::from_pairs(p).unwrap()
    }

    fn error_of(r: Result<impl std::fmt::Debug, Refusal>) -> &'static str {
        match r {
            Err(Refusal::Redirect { error, .. }) => error,
            other => panic!("expected a redirected refusal, got {other:?}"),
        }
    }

    #[test]
    fn microsofts_request_is_accepted() {
        let r = request(pairs());
        assert_eq!(r.check(&settings()), Ok(()));
        assert_eq!(r.acr(), Ok("possessionorinherence"));
        assert_eq!(r.state.as_deref(), Some("opaque"));
        assert_eq!(
            r.client_request_id.as_deref(),
            Some("2a6e8f5c-0000-4000-8000-000000000000")
        );
        assert_eq!(r.ui_locales, None);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut p = pairs();
        p.push(("prompt".into(), "login".into()));
        p.push(("x-unknown".into(), "x".repeat(MAX_VALUE_LEN)));
        p.push(("ui_locales".into(), "fr-FR en".into()));
        let r = request(p);
        assert_eq!(r.check(&settings()), Ok(()));
        assert_eq!(r.ui_locales.as_deref(), Some("fr-FR en"));
    }

    #[test]
    fn duplicates_are_refused() {
        for name in ["nonce", "client_id", "redirect_uri", "unknown"] {
            let mut p = pairs();
            p.push((name.into(), "again".into()));
            p.push((name.into(), "again".into()));
            assert!(
                matches!(AuthRequest::from_pairs(p), Err(Refusal::NoRedirect(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn refusals_never_repeat_a_made_up_field_name() {
        let mut p = pairs();
        p.push(("<script>".into(), "1".into()));
        p.push(("<script>".into(), "2".into()));
        let Err(Refusal::NoRedirect(why)) = AuthRequest::from_pairs(p) else {
            panic!("duplicates are refused");
        };
        assert!(!why.contains("script"), "{why}");
        let mut p = pairs();
        p.push(("<b>".into(), "x".repeat(MAX_VALUE_LEN + 1)));
        let Err(Refusal::NoRedirect(why)) = AuthRequest::from_pairs(p) else {
            panic!("long values are refused");
        };
        assert!(!why.contains("<b>"), "{why}");
        let mut p = pairs();
        p.push(("nonce".into(), "again".into()));
        let refused = AuthRequest::from_pairs(p).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the request gives the field nonce twice"
        );
    }

    #[test]
    fn sizes_are_capped() {
        let long = "x".repeat(MAX_VALUE_LEN + 1);
        assert!(matches!(
            AuthRequest::from_pairs(with("state", Some(&long))),
            Err(Refusal::NoRedirect(_))
        ));
        assert!(AuthRequest::from_pairs(with("state", Some(&long[1..]))).is_ok());
        let mut p = pairs();
        p.push(("n".repeat(MAX_NAME_LEN + 1), String::new()));
        assert!(matches!(
            AuthRequest::from_pairs(p),
            Err(Refusal::NoRedirect(_))
        ));
        let mut p = pairs();
        let room = MAX_FIELDS - p.len();
        p.extend((0..room).map(|i| (format!("f{i}"), String::new())));
        assert!(
            AuthRequest::from_pairs(p.clone()).is_ok(),
            "64 fields are read"
        );
        p.push(("one-more".into(), String::new()));
        assert!(matches!(
            AuthRequest::from_pairs(p),
            Err(Refusal::NoRedirect(_))
        ));
    }

    #[test]
    fn no_client_or_redirect_uri_is_never_redirected() {
        for name in ["client_id", "redirect_uri"] {
            assert!(matches!(
                AuthRequest::from_pairs(with(name, None)),
                Err(Refusal::NoRedirect(_))
            ));
            assert!(matches!(
                AuthRequest::from_pairs(with(name, Some(""))),
                Err(Refusal::NoRedirect(_))
            ));
        }
    }

    #[test]
    fn unknown_client_or_redirect_uri_is_never_redirected() {
        let cases = [
            with("client_id", Some("another-client")),
            with("client_id", Some(&CLIENT.to_uppercase())),
            with("redirect_uri", Some("https://evil.example/callback")),
            with(
                "redirect_uri",
                Some("https://login.microsoftonline.com/common/federation/externalauthprovider/"),
            ),
            with(
                "redirect_uri",
                Some(
                    "https://login.microsoftonline.com/common/federation/externalauthprovider?x=1",
                ),
            ),
        ];
        for p in cases {
            // Even with every other field wrong: the client and redirect URI come first.
            let mut p: Vec<_> = p
                .into_iter()
                .filter(|(k, _)| !["scope", "nonce", "response_type"].contains(&k.as_str()))
                .collect();
            p.push(("response_type".into(), "code".into()));
            assert!(matches!(
                request(p).check(&settings()),
                Err(Refusal::NoRedirect(_))
            ));
        }
        let mut s = settings();
        s.client_ids.clear();
        assert!(matches!(
            request(pairs()).check(&s),
            Err(Refusal::NoRedirect(_))
        ));
    }

    #[test]
    fn every_redirected_refusal_of_check() {
        let s = settings();
        let cases = [
            (with("scope", None), "invalid_scope"),
            (with("scope", Some("profile email")), "invalid_scope"),
            (with("scope", Some("openidx")), "invalid_scope"),
            (with("response_type", None), "invalid_request"),
            (
                with("response_type", Some("code")),
                "unsupported_response_type",
            ),
            (
                with("response_type", Some("id_token token")),
                "unsupported_response_type",
            ),
            (with("response_mode", Some("query")), "invalid_request"),
            (with("response_mode", Some("fragment")), "invalid_request"),
            (with("nonce", None), "invalid_request"),
            (with("id_token_hint", None), "invalid_request"),
        ];
        for (p, error) in cases {
            assert_eq!(error_of(request(p).check(&s)), error);
        }
        assert_eq!(
            request(with("scope", Some("profile openid"))).check(&s),
            Ok(())
        );
        assert_eq!(request(with("response_mode", None)).check(&s), Ok(()));
    }

    fn acr_of(claims: &str) -> Result<&'static str, Refusal> {
        request(with("claims", Some(claims))).acr()
    }

    #[test]
    fn acr_is_the_first_requested_that_possession_satisfies() {
        assert_eq!(request(with("claims", None)).acr(), Ok(DEFAULT_ACR));
        assert_eq!(acr_of(r#"{"id_token":{}}"#), Ok(DEFAULT_ACR));
        assert_eq!(acr_of(r#"{"userinfo":{}}"#), Ok(DEFAULT_ACR));
        assert_eq!(acr_of(r#"{"id_token":{"acr":null}}"#), Ok(DEFAULT_ACR));
        assert_eq!(
            acr_of(
                r#"{"id_token":{"acr":{"values":["knowledge","possession","knowledgeorpossession"]}}}"#
            ),
            Ok("possession")
        );
        assert_eq!(
            acr_of(r#"{"id_token":{"acr":{"values":["knowledgeorpossessionorinherence"]}}}"#),
            Ok("knowledgeorpossessionorinherence")
        );
        assert_eq!(
            acr_of(r#"{"id_token":{"acr":{"value":"knowledgeorpossession"}}}"#),
            Ok("knowledgeorpossession")
        );
        assert_eq!(
            acr_of(r#"{"id_token":{"amr":{"values":["tel"]}}}"#),
            Ok(DEFAULT_ACR)
        );
    }

    #[test]
    fn every_refusal_of_acr() {
        let cases = [
            (
                r#"{"id_token":{"acr":{"values":["knowledge","inherence","knowledgeorinherence"]}}}"#,
                "access_denied",
            ),
            (
                r#"{"id_token":{"acr":{"value":"inherence"}}}"#,
                "access_denied",
            ),
            (
                r#"{"id_token":{"amr":{"values":["face","fido","sms"]}}}"#,
                "access_denied",
            ),
            (
                r#"{"id_token":{"acr":{"values":["possession"]},"amr":{"values":["otp"]}}}"#,
                "access_denied",
            ),
            ("not json", "invalid_request"),
            (r#"{"id_token":{"acr":"#, "invalid_request"),
            (r#"{"id_token":"acr"}"#, "invalid_request"),
            (r#"{"id_token":{"acr":["possession"]}}"#, "invalid_request"),
            (
                r#"{"id_token":{"acr":{"values":"possession"}}}"#,
                "invalid_request",
            ),
            (r#"{"id_token":{"acr":{"values":[1]}}}"#, "invalid_request"),
            (
                r#"{"id_token":{"acr":{"value":["possession"]}}}"#,
                "invalid_request",
            ),
            (
                r#"{"id_token":{"amr":{"values":[null]}}}"#,
                "invalid_request",
            ),
        ];
        for (claims, error) in cases {
            assert_eq!(error_of(acr_of(claims)), error, "{claims}");
        }
        assert_eq!(error_of(acr_of("[]")), "invalid_request");
    }
}
