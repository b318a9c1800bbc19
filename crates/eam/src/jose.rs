//! The little of JOSE the provider needs: base64url, RSA keys of a JWKS, the RFC 7638
//! thumbprint, and compact JWS signed RS256 (parsing and verification; signing is in
//! [`crate::keys::Signer`]).
//!
//! Only RS256 is accepted: the algorithm is never taken from the token to choose how to
//! verify, so `none` and the HMAC key-confusion attack have nothing to work with.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// The longest compact JWS accepted, in bytes (Entra's hints are about 1.5 KiB).
pub const MAX_JWS_LEN: usize = 16 * 1024;

/// The most keys [`parse_jwks`] keeps.
pub const MAX_JWKS_KEYS: usize = 64;

/// The only signature algorithm accepted and made.
pub const RS256: &str = "RS256";

/// Base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes strict base64url: no padding, no other alphabet, no stray trailing bits.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// An RSA public key of a JWKS, by its key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaPublicJwk {
    /// The key id (`kid`) that tokens name it by.
    pub kid: String,
    /// The modulus, big-endian, without leading zeros.
    pub n: Vec<u8>,
    /// The public exponent, big-endian, without leading zeros.
    pub e: Vec<u8>,
}

/// The RSA signature keys of a JWKS document (`kty` RSA, `use` absent or `sig`, `alg` absent
/// or RS256, with a kid); others skipped. At most [`MAX_JWKS_KEYS`] keys kept.
pub fn parse_jwks(doc: &Value) -> Vec<RsaPublicJwk> {
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(rsa_signature_key)
        .take(MAX_JWKS_KEYS)
        .collect()
}

/// One JWK, if it is an RSA key for RS256 signatures with a kid and well-formed n and e.
fn rsa_signature_key(key: &Value) -> Option<RsaPublicJwk> {
    let field = |name: &str| key.get(name).and_then(Value::as_str);
    if field("kty") != Some("RSA") {
        return None;
    }
    if key.get("use").is_some() && field("use") != Some("sig") {
        return None;
    }
    if key.get("alg").is_some() && field("alg") != Some(RS256) {
        return None;
    }
    let kid = field("kid").filter(|k| !k.is_empty())?;
    let n = without_leading_zeros(b64url_decode(field("n")?)?);
    let e = without_leading_zeros(b64url_decode(field("e")?)?);
    if n.is_empty() || e.is_empty() {
        return None;
    }
    Some(RsaPublicJwk {
        kid: kid.to_owned(),
        n,
        e,
    })
}

/// Some encoders keep a sign byte in front of the modulus; ring wants the minimal form.
fn without_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// The RFC 7638 thumbprint of an RSA key (SHA-256, base64url): its members `e`, `kty`, `n`
/// in that order, with no whitespace.
pub fn rsa_thumbprint(n: &[u8], e: &[u8]) -> String {
    let canonical = format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64url(e), b64url(n));
    b64url(&Sha256::digest(canonical.as_bytes()))
}

/// Why a compact JWS was refused before any signature was checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// It is longer than [`MAX_JWS_LEN`].
    #[error("the token is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The most accepted.
        max: usize,
    },
    /// It is not three base64url parts of a JSON header, a JSON object and a signature.
    #[error("the token is not a compact JWS: {0}")]
    Malformed(String),
    /// Its header names another algorithm than RS256 (or none).
    #[error("the token is signed with {0:?}; only RS256 is accepted")]
    Algorithm(String),
}

/// A compact JWS, parsed (not yet verified): at most 16 KiB, three parts, header `alg` must be
/// `RS256` (anything else, `none` above all, is refused), payload a JSON object.
#[derive(Debug, Clone)]
pub struct Jws {
    /// The header's key id, if it has one.
    pub kid: Option<String>,
    /// The payload's claims (not to be trusted before [`Jws::verify`]).
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jws {
    /// Parses a compact JWS and checks its form and algorithm; the signature is checked by
    /// [`Jws::verify`].
    pub fn parse(token: &str) -> Result<Jws, JoseError> {
        if token.len() > MAX_JWS_LEN {
            return Err(JoseError::TooLong {
                len: token.len(),
                max: MAX_JWS_LEN,
            });
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = parts[..] else {
            return Err(malformed(format!("{} parts instead of 3", parts.len())));
        };
        let header = json_object(header, "header")?;
        let kid = header_kid(&header)?;
        let claims = json_object(payload, "payload")?;
        let signature =
            b64url_decode(signature).ok_or_else(|| malformed("the signature is not base64url"))?;
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        Ok(Jws {
            kid,
            claims,
            signing_input,
            signature,
        })
    }

    /// Whether the signature is a valid RS256 signature by `key` (2048 to 8192 bits).
    pub fn verify(&self, key: &RsaPublicJwk) -> bool {
        RsaPublicKeyComponents {
            n: &key.n,
            e: &key.e,
        }
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            self.signing_input.as_bytes(),
            &self.signature,
        )
        .is_ok()
    }
}

/// The most characters of a value from an unverified token that an error repeats.
pub const MAX_SHOWN_CHARS: usize = 64;

/// The first [`MAX_SHOWN_CHARS`] characters of a value from an unverified token, for errors
/// and logs.
pub fn clip(s: &str) -> String {
    s.chars().take(MAX_SHOWN_CHARS).collect()
}

fn malformed(why: impl Into<String>) -> JoseError {
    JoseError::Malformed(why.into())
}

/// Checks the header's algorithm (RS256 only, no extensions it must understand) and returns
/// its kid.
fn header_kid(header: &Map<String, Value>) -> Result<Option<String>, JoseError> {
    match header.get("alg") {
        Some(Value::String(alg)) if alg == RS256 => {}
        Some(Value::String(alg)) => return Err(JoseError::Algorithm(clip(alg))),
        Some(_) => return Err(malformed("the header's alg is not a string")),
        None => return Err(malformed("the header has no alg")),
    }
    // RFC 7515 §4.1.11: an extension marked critical that we do not implement must fail.
    if header.contains_key("crit") {
        return Err(malformed("the header has critical extensions (crit)"));
    }
    match header.get("kid") {
        None => Ok(None),
        Some(Value::String(kid)) => Ok(Some(kid.clone())),
        Some(_) => Err(malformed("the header's kid is not a string")),
    }
}

/// Decodes one base64url part that must hold a JSON object.
fn json_object(part: &str, what: &str) -> Result<Map<String, Value>, JoseError> {
    let bytes =
        b64url_decode(part).ok_or_else(|| malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(malformed(format!("the {what} is not a JSON object"))),
        Err(e) => Err(malformed(format!("the {what} is not JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example of RFC 7638 §3.1.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn thumbprint_is_rfc7638s_example() {
        let n = b64url_decode(RFC7638_N).unwrap();
        let e = b64url_decode("AQAB").unwrap();
        assert_eq!(
            rsa_thumbprint(&n, &e),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn base64url_is_strict() {
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(b64url_decode("-_8="), None, "padding");
        assert_eq!(b64url_decode("+/8"), None, "the standard alphabet");
        assert_eq!(b64url_decode("-_9"), None, "non-zero trailing bits");
        assert_eq!(b64url_decode("A"), None, "an impossible length");
        assert_eq!(b64url_decode("ab cd"), None, "whitespace");
    }

    #[test]
    fn jwks_keeps_only_rsa_signature_keys() {
        let key = |extra: Value| {
            let mut k = json!({"kty": "RSA", "kid": "k", "n": "AMGi", "e": "AQAB"});
            for (name, value) in extra.as_object().unwrap() {
                k[name] = value.clone();
            }
            k
        };
        let doc = json!({"keys": [
            key(json!({"kid": "plain"})),
            key(json!({"kid": "sig", "use": "sig", "alg": "RS256"})),
            key(json!({"kid": "enc", "use": "enc"})),
            key(json!({"kid": "ps", "alg": "PS256"})),
            key(json!({"kid": "ec", "kty": "EC"})),
            key(json!({"kid": ""})),
            key(json!({"kid": 7})),
            key(json!({"kid": "badn", "n": "AMG="})),
            key(json!({"kid": "zero", "e": "AA"})),
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            "not an object",
        ]});
        let keys = parse_jwks(&doc);
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["plain", "sig"]);
        assert_eq!(keys[0].n, [0xc1, 0xa2], "the leading zero is dropped");
        assert_eq!(keys[0].e, [1, 0, 1]);
        assert!(parse_jwks(&json!({"keys": "x"})).is_empty());
        assert!(parse_jwks(&json!([])).is_empty());
    }

    #[test]
    fn jwks_keeps_at_most_64_keys() {
        let keys: Vec<Value> = (0..100)
            .map(|i| json!({"kty": "RSA", "kid": format!("k{i}"), "n": "AQAB", "e": "AQAB"}))
            .collect();
        let parsed = parse_jwks(&json!({ "keys": keys }));
        assert_eq!(parsed.len(), MAX_JWKS_KEYS);
        assert_eq!(parsed[63].kid, "k63");
    }

    fn compact(header: &Value, payload: &Value) -> String {
        let h = b64url(header.to_string().as_bytes());
        let p = b64url(payload.to_string().as_bytes());
        format!("{h}.{p}.{}", b64url(b"signature"))
    }

    #[test]
    fn parse_reads_kid_and_claims() {
        let t = compact(
            &json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}),
            &json!({"sub": "s"}),
        );
        let jws = Jws::parse(&t).unwrap();
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.claims["sub"], "s");
        let t = compact(&json!({"alg": "RS256"}), &json!({}));
        assert_eq!(Jws::parse(&t).unwrap().kid, None);
    }

    #[test]
    fn parse_refuses_other_algorithms_and_headers() {
        for alg in ["none", "HS256", "RS512", "PS256", "rs256", ""] {
            let t = compact(&json!({"alg": alg}), &json!({}));
            assert_eq!(
                Jws::parse(&t).unwrap_err(),
                JoseError::Algorithm(alg.into())
            );
        }
        for header in [
            json!({}),
            json!({"alg": null}),
            json!({"alg": ["RS256"]}),
            json!({"alg": "RS256", "kid": 1}),
            json!({"alg": "RS256", "crit": ["exp"]}),
            json!(["RS256"]),
        ] {
            let t = compact(&header, &json!({}));
            assert!(
                matches!(Jws::parse(&t), Err(JoseError::Malformed(_))),
                "{header}"
            );
        }
    }

    #[test]
    fn errors_repeat_at_most_64_characters_of_the_token() {
        let alg = "é".repeat(1000);
        let t = compact(&json!({ "alg": alg }), &json!({}));
        assert_eq!(
            Jws::parse(&t).unwrap_err(),
            JoseError::Algorithm("é".repeat(64))
        );
    }

    #[test]
    fn parse_refuses_malformed_tokens() {
        let good = compact(&json!({"alg": "RS256"}), &json!({"a": 1}));
        let (h, rest) = good.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        let not_object = b64url(b"[1,2]");
        let not_json = b64url(b"{\"a\":");
        let cases = [
            String::new(),
            format!("{h}.{p}"),
            format!("{h}.{p}.{s}.{s}"),
            format!("{h}.{p}.{s}."),
            format!("{h}=.{p}.{s}"),
            format!("{h}.{p}.{s}="),
            format!("{h}.{p}.*{s}"),
            format!("{h}.{not_object}.{s}"),
            format!("{h}.{not_json}.{s}"),
            format!("{h}.{p}é.{s}"),
        ];
        for token in cases {
            assert!(
                matches!(Jws::parse(&token), Err(JoseError::Malformed(_))),
                "{token:?}"
            );
        }
        assert!(Jws::parse(&good).is_ok());
    }

    #[test]
    fn parse_refuses_an_overlong_token() {
        let pad = "x".repeat(MAX_JWS_LEN);
        let t = compact(&json!({"alg": "RS256"}), &json!({ "pad": pad }));
        assert!(matches!(Jws::parse(&t), Err(JoseError::TooLong { .. })));
        let room = MAX_JWS_LEN - compact(&json!({"alg": "RS256"}), &json!({"pad": ""})).len();
        let pad = "x".repeat(room / 4 * 3);
        let t = compact(&json!({"alg": "RS256"}), &json!({ "pad": pad }));
        assert!(t.len() <= MAX_JWS_LEN);
        assert!(Jws::parse(&t).is_ok(), "a token of at most 16 KiB is read");
    }
}
