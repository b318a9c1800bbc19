//! The provider's discovery document (OpenID Connect Discovery 1.0), as Entra reads it.

use serde_json::{Value, json};

use crate::jose::RS256;
use crate::request::POSSESSION_ACRS;

/// Where the discovery document is served, under the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Where Entra sends the browser (the `authorization_endpoint`), under the issuer.
pub const AUTHORIZE_PATH: &str = "/eam/authorize";

/// Where the provider's keys are published (the `jwks_uri`), under the issuer.
pub const JWKS_PATH: &str = "/eam/jwks";

/// The discovery document: issuer, authorization_endpoint = issuer+AUTHORIZE_PATH,
/// jwks_uri = issuer+JWKS_PATH, scopes_supported ["openid"], response_types_supported
/// ["id_token"], response_modes_supported ["form_post"], grant_types_supported ["implicit"],
/// subject_types_supported ["public"], id_token_signing_alg_values_supported ["RS256"],
/// claim_types_supported ["normal"], claims_supported [iss, aud, sub, exp, iat, nonce, acr,
/// amr, tid, oid], acr_values_supported (the four possession-satisfied ones).
pub fn document(issuer: &str) -> Value {
    let issuer = issuer.trim_end_matches('/');
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{AUTHORIZE_PATH}"),
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "scopes_supported": ["openid"],
        "response_types_supported": ["id_token"],
        "response_modes_supported": ["form_post"],
        "grant_types_supported": ["implicit"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [RS256],
        "claim_types_supported": ["normal"],
        "claims_supported": ["iss", "aud", "sub", "exp", "iat", "nonce", "acr", "amr", "tid", "oid"],
        "acr_values_supported": POSSESSION_ACRS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_what_entra_requires() {
        let d = document("https://cv.example/");
        assert_eq!(d["issuer"], "https://cv.example");
        assert_eq!(
            d["authorization_endpoint"],
            "https://cv.example/eam/authorize"
        );
        assert_eq!(d["jwks_uri"], "https://cv.example/eam/jwks");
        assert_eq!(d["scopes_supported"], json!(["openid"]));
        assert_eq!(d["response_types_supported"], json!(["id_token"]));
        assert_eq!(d["response_modes_supported"], json!(["form_post"]));
        assert_eq!(d["subject_types_supported"], json!(["public"]));
        assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]));
        assert_eq!(d["claim_types_supported"], json!(["normal"]));
        assert_eq!(d["acr_values_supported"].as_array().map(Vec::len), Some(4));
        assert_eq!(d["claims_supported"].as_array().map(Vec::len), Some(10));
    }
}
