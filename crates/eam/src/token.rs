//! The `id_token` callverify answers Entra with once the call approved the sign-in.

use serde_json::json;

use crate::Settings;
use crate::hint::Hint;
use crate::keys::{KeyError, Signer};
use crate::request::AMR_TEL;

/// The id_token callverify answers with: iss (settings.issuer), aud (client_id), sub (the
/// hint's sub), nonce, iat = nbf = now_s, exp = now_s + settings.token_ttl, acr, amr ["tel"],
/// tid and oid echoed; signed by `signer`.
pub fn id_token(
    signer: &Signer,
    settings: &Settings,
    client_id: &str,
    hint: &Hint,
    nonce: &str,
    acr: &str,
    now_s: i64,
) -> Result<String, KeyError> {
    let claims = json!({
        "iss": settings.issuer,
        "aud": client_id,
        "sub": hint.sub,
        "nonce": nonce,
        "iat": now_s,
        "nbf": now_s,
        "exp": now_s.saturating_add(crate::duration_s(settings.token_ttl)),
        "acr": acr,
        "amr": [AMR_TEL],
        "tid": hint.tid,
        "oid": hint.oid,
    });
    signer.sign(&claims)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::jose::{Jws, parse_jwks};
    use crate::keys::KeyRecord;

    #[test]
    fn token_carries_every_claim_and_verifies() {
        let record = KeyRecord::generate("https://cv.example", 0, 0).unwrap();
        let signer = Signer::new(&record).unwrap();
        let hint = Hint {
            tid: "t-1".into(),
            oid: "o-1".into(),
            sub: "s-1".into(),
            preferred_username: Some("ann@contoso.com".into()),
            name: Some("Ann".into()),
            iat: 99,
        };
        let s = Settings::new("https://cv.example");
        let token = id_token(&signer, &s, "client", &hint, "n-1", "possession", 1_000).unwrap();
        let jws = Jws::parse(&token).unwrap();
        assert!(jws.verify(&parse_jwks(&json!({ "keys": [record.jwk().unwrap()] }))[0]));
        assert_eq!(
            Value::Object(jws.claims),
            json!({
                "iss": "https://cv.example", "aud": "client", "sub": "s-1", "nonce": "n-1",
                "iat": 1_000, "nbf": 1_000, "exp": 1_300, "acr": "possession", "amr": ["tel"],
                "tid": "t-1", "oid": "o-1",
            })
        );
    }
}
