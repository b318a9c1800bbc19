//! Our JOSE against a library this project did not write (`jsonwebtoken`) and our
//! certificates against `x509-parser`: tokens each side signs verify on the other, changed
//! ones do not, and the tokens an attacker would forge are refused.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use eam::hint::{self, HintError};
use eam::jose::{JoseError, Jws, MAX_JWS_LEN, RsaPublicJwk, b64url, b64url_decode, parse_jwks};
use eam::keys::{KeyRecord, Keyring, Signer};
use eam::{Settings, token};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePrivateKey as _;
use serde::Deserialize;
use serde_json::{Value, json};

const ISSUER: &str = "https://verify.example.com";
const CLIENT: &str = "600b719b-3766-4dc5-95a6-3c4a8dc31885";
const TID: &str = "14c2f153-90a7-4689-9db7-9543bf084dad";
const ENTRA_TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";

/// One key, made once for the whole file (generation takes a fraction of a second).
fn record() -> &'static KeyRecord {
    static RECORD: OnceLock<KeyRecord> = OnceLock::new();
    RECORD.get_or_init(|| KeyRecord::generate(ISSUER, now_s() * 1000, 0).unwrap())
}

fn now_s() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn our_jwk() -> RsaPublicJwk {
    parse_jwks(&json!({ "keys": [record().jwk().unwrap()] })).remove(0)
}

/// jsonwebtoken's signing key for our record (it reads PKCS#1).
fn their_encoding_key() -> EncodingKey {
    let key = rsa::RsaPrivateKey::from_pkcs8_der(&record().pkcs8_der).unwrap();
    EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes())
}

fn their_header() -> Header {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(record().kid.clone());
    h
}

#[derive(Debug, Deserialize, PartialEq)]
struct OurClaims {
    iss: String,
    aud: String,
    sub: String,
    nonce: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    acr: String,
    amr: Vec<String>,
    tid: String,
    oid: String,
}

fn a_hint() -> hint::Hint {
    hint::Hint {
        tid: TID.into(),
        oid: "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee".into(),
        sub: "mBfcvuhSHkDWVgV72x2ruIYdSsPSvcj2R0qfc6mGEAA".into(),
        preferred_username: None,
        name: None,
        iat: 0,
    }
}

#[test]
fn our_id_token_verifies_with_jsonwebtoken_with_every_claim_checked() {
    let signer = Signer::new(record()).unwrap();
    let now = now_s();
    let hint = a_hint();
    let token = token::id_token(
        &signer,
        &Settings::new(ISSUER),
        CLIENT,
        &hint,
        "nonce-1",
        "possession",
        now,
    )
    .unwrap();

    let jwk = record().jwk().unwrap();
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[CLIENT]);
    v.set_issuer(&[ISSUER]);
    v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    v.validate_nbf = true;
    v.leeway = 0;
    v.sub = Some(hint.sub.clone());
    let data = jsonwebtoken::decode::<OurClaims>(&token, &key, &v).unwrap();
    assert_eq!(data.header.alg, Algorithm::RS256);
    assert_eq!(data.header.kid.as_deref(), Some(record().kid.as_str()));
    assert_eq!(data.header.typ.as_deref(), Some("JWT"));
    assert_eq!(
        data.claims,
        OurClaims {
            iss: ISSUER.into(),
            aud: CLIENT.into(),
            sub: hint.sub.clone(),
            nonce: "nonce-1".into(),
            iat: now,
            nbf: now,
            exp: now + 300,
            acr: "possession".into(),
            amr: vec!["tel".into()],
            tid: TID.into(),
            oid: hint.oid.clone(),
        }
    );

    // The same token under another audience or issuer is refused by jsonwebtoken too.
    let mut other = v.clone();
    other.set_audience(&["another-client"]);
    assert!(jsonwebtoken::decode::<OurClaims>(&token, &key, &other).is_err());
    let mut other = v;
    other.set_issuer(&["https://other.example"]);
    assert!(jsonwebtoken::decode::<OurClaims>(&token, &key, &other).is_err());
}

#[test]
fn our_jwks_is_read_by_jsonwebtoken() {
    let ring = Keyring::new(vec![record().clone()]);
    let jwks: JwkSet = serde_json::from_value(
        ring.jwks(now_s() * 1000, std::time::Duration::ZERO)
            .unwrap(),
    )
    .unwrap();
    let jwk = jwks.find(&record().kid).unwrap();
    assert_eq!(jwk.common.x509_chain.as_ref().map(Vec::len), Some(1));
    assert!(jwk.common.x509_sha256_fingerprint.is_some());
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let token = Signer::new(record())
        .unwrap()
        .sign(&json!({"sub": "s"}))
        .unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    assert_eq!(
        jsonwebtoken::decode::<Value>(&token, &key, &v)
            .unwrap()
            .claims,
        json!({"sub": "s"})
    );
}

#[test]
fn jsonwebtokens_tokens_verify_with_ours() {
    let token = jsonwebtoken::encode(
        &their_header(),
        &json!({"sub": "s", "n": 1}),
        &their_encoding_key(),
    )
    .unwrap();
    let jws = Jws::parse(&token).unwrap();
    assert_eq!(jws.kid.as_deref(), Some(record().kid.as_str()));
    assert_eq!(jws.claims["sub"], "s");
    assert!(jws.verify(&our_jwk()));
}

/// The token with one byte of one decoded part changed (the part re-encoded).
fn with_byte_changed(token: &str, part: usize, at: usize, new: u8) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut bytes = b64url_decode(&parts[part]).unwrap();
    assert_ne!(bytes[at], new);
    bytes[at] = new;
    parts[part] = b64url(&bytes);
    parts.join(".")
}

/// Where `needle` is in a decoded part.
fn position(token: &str, part: usize, needle: &str) -> usize {
    let bytes = b64url_decode(token.split('.').nth(part).unwrap()).unwrap();
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap()
}

#[test]
fn a_changed_byte_anywhere_fails_verification() {
    let token = jsonwebtoken::encode(
        &their_header(),
        &json!({"sub": "subject"}),
        &their_encoding_key(),
    )
    .unwrap();
    let key = our_jwk();
    assert!(Jws::parse(&token).unwrap().verify(&key));

    // In the header: "JWT" becomes "JWU" (still a valid header, so only the signature can tell).
    let header = with_byte_changed(&token, 0, position(&token, 0, "JWT") + 2, b'U');
    // In the payload: "subject" becomes "sUbject".
    let payload = with_byte_changed(&token, 1, position(&token, 1, "subject") + 1, b'U');
    let mut changed = vec![header, payload];
    let signature = b64url_decode(token.split('.').nth(2).unwrap()).unwrap();
    for at in [0, 1, 128, signature.len() - 1] {
        changed.push(with_byte_changed(&token, 2, at, signature[at] ^ 0x01));
    }
    for t in changed {
        let jws = Jws::parse(&t).unwrap();
        assert!(!jws.verify(&key), "{t}");
    }
}

#[test]
fn alg_none_is_refused() {
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64url(br#"{"sub":"s"}"#);
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert!(Jws::parse(&token).is_err(), "{token}");
    }
    assert_eq!(
        Jws::parse(&format!("{header}.{payload}.")).unwrap_err(),
        JoseError::Algorithm("none".into())
    );
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    // The classic key confusion: the attacker MACs with the public key an RS256 verifier uses.
    let jwk = record().jwk().unwrap();
    let public = serde_json::to_vec(&jwk).unwrap();
    let key = our_jwk();
    for secret in [public.as_slice(), &key.n, record().cert_der.as_slice()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(record().kid.clone());
        let token = jsonwebtoken::encode(
            &header,
            &json!({"sub": "s"}),
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        assert_eq!(
            Jws::parse(&token).unwrap_err(),
            JoseError::Algorithm("HS256".into())
        );
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(record().kid.clone());
    let token =
        jsonwebtoken::encode(&header, &hint_claims(), &EncodingKey::from_secret(&key.n)).unwrap();
    let settings = hint_settings();
    let refused = hint::validate(&token, &[key], ENTRA_TEMPLATE, &settings, CLIENT, now_s());
    assert_eq!(refused, Err(HintError::Algorithm("HS256".into())));
}

fn hint_settings() -> Settings {
    let mut s = Settings::new(ISSUER);
    s.client_ids = vec![CLIENT.into()];
    s.tenants = vec![TID.into()];
    s
}

fn hint_claims() -> Value {
    json!({
        "ver": "2.0", "iss": format!("https://login.microsoftonline.com/{TID}/v2.0"),
        "sub": "mBfcvuhSHkDWVgV72x2ruIYdSsPSvcj2R0qfc6mGEAA", "aud": CLIENT,
        "exp": now_s() - 1, "iat": now_s(), "nbf": now_s(), "name": "Test User 2",
        "preferred_username": "testuser2@contoso.com", "oid": "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee", "tid": TID,
    })
}

#[test]
fn a_hint_signed_by_jsonwebtoken_is_validated() {
    // Entra signs with a library of its own; this one stands in for it, exp already passed.
    let token =
        jsonwebtoken::encode(&their_header(), &hint_claims(), &their_encoding_key()).unwrap();
    let hint = hint::validate(
        &token,
        &[our_jwk()],
        ENTRA_TEMPLATE,
        &hint_settings(),
        CLIENT,
        now_s(),
    )
    .unwrap();
    assert_eq!(hint.tid, TID);
    assert_eq!(hint.oid, "951ddb04-b16d-45f3-bbf7-b0fa18fa7aee");
}

#[test]
fn overlong_tokens_and_wrong_part_counts_and_bad_base64_are_refused() {
    let long = jsonwebtoken::encode(
        &their_header(),
        &json!({ "pad": "x".repeat(MAX_JWS_LEN) }),
        &their_encoding_key(),
    )
    .unwrap();
    assert!(matches!(Jws::parse(&long), Err(JoseError::TooLong { .. })));

    let token =
        jsonwebtoken::encode(&their_header(), &json!({"sub": "s"}), &their_encoding_key()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let malformed = [
        format!("{}.{}", parts[0], parts[1]),
        format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1].replace(['-', '_'], "+"),
            parts[2]
        ),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}==", parts[0], parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            STANDARD.encode(b64url_decode(parts[2]).unwrap())
        ),
        format!("{}.{}!.{}", parts[0], parts[1], parts[2]),
    ];
    for t in malformed {
        if t == token {
            continue; // the substitution changed nothing in this token
        }
        assert!(
            matches!(Jws::parse(&t), Err(JoseError::Malformed(_))),
            "{t}"
        );
    }
}

#[test]
fn the_certificate_carries_exactly_the_jwks_key() {
    let (rest, cert) = x509_parser::parse_x509_certificate(&record().cert_der).unwrap();
    assert!(rest.is_empty());
    let x509_parser::public_key::PublicKey::RSA(rsa) = cert.public_key().parsed().unwrap() else {
        panic!("the certificate's key is not RSA");
    };
    let strip = |b: &[u8]| {
        b.iter()
            .skip_while(|x| **x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    let jwk = our_jwk();
    assert_eq!(strip(rsa.modulus), jwk.n);
    assert_eq!(strip(rsa.exponent), jwk.e);

    let cn: Vec<&str> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cn, ["verify.example.com"]);
    assert_eq!(cert.subject(), cert.issuer(), "self-signed");
    let validity = cert.validity();
    let years = (validity.not_after.timestamp() - validity.not_before.timestamp()) / (365 * 86_400);
    assert_eq!(years, 10);
    assert!((validity.not_before.timestamp() - record().created_ms / 1000).abs() <= 1);

    // Its self-signature verifies with the key it carries.
    let ok = RsaPublicKeyComponents {
        n: &jwk.n,
        e: &jwk.e,
    }
    .verify(
        &RSA_PKCS1_2048_8192_SHA256,
        cert.tbs_certificate.as_ref(),
        &cert.signature_value.data,
    );
    assert!(ok.is_ok());
}
