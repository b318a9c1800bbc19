//! callverify's signing keys: their generation and certificates, which one signs and which
//! are published at a time (rotation), the JWKS, and signing.
//!
//! A rotation follows Microsoft's advice for a provider whose keys Entra caches for about a
//! day: a new key is published first and signs only after [`crate::Settings::key_publish`];
//! the key it replaces stays published as long again, so tokens it signed still verify.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rsa::pkcs8::EncodePrivateKey as _;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::jose::{RS256, b64url, rsa_thumbprint};

/// The size of the keys [`KeyRecord::generate`] makes, in bits.
pub const KEY_BITS: usize = 2048;

/// How long a key's certificate is valid: ten years (of 365.25 days).
pub const CERT_VALIDITY: Duration = Duration::from_secs(3_652 * 86_400 + 12 * 3_600);

/// The latest `now` a certificate can be made at (the year 5000, far inside X.509's dates).
const LATEST_MS: i64 = 95_617_584_000_000;

/// Why a key could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The RSA key could not be generated or encoded.
    #[error("could not generate an RSA key: {0}")]
    Generate(String),
    /// The stored private key is not an RSA key in PKCS#8 DER that ring accepts.
    #[error("the signing key {kid:?} is not a usable RSA PKCS#8 key ({why}); rotate to a new key")]
    Pkcs8 {
        /// The key's id.
        kid: String,
        /// What ring said.
        why: String,
    },
    /// The certificate could not be made.
    #[error("could not make the key's certificate: {0}")]
    Certificate(String),
    /// The time given is outside what a certificate can carry.
    #[error("the time {0} ms since the epoch is out of range for a certificate")]
    Time(i64),
    /// The claims to sign are not a JSON object.
    #[error("the claims to sign must be a JSON object")]
    Claims,
    /// ring refused to sign.
    #[error("signing with key {0:?} failed")]
    Sign(String),
}

/// One signing key as kept (in the store or a key file): the private key (PKCS#8 DER), its
/// self-signed certificate (DER), when it was made and from when it signs (ms since epoch).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key id: the RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The private key, PKCS#8 DER. Secret.
    pub pkcs8_der: Vec<u8>,
    /// The self-signed certificate of the public key, DER (the JWK's `x5c`).
    pub cert_der: Vec<u8>,
    /// When the key was made, ms since the epoch.
    pub created_ms: i64,
    /// From when the key signs, ms since the epoch.
    pub sign_from_ms: i64,
}

impl std::fmt::Debug for KeyRecord {
    /// Everything but the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("pkcs8_der", &"<secret>")
            .field("cert_der_len", &self.cert_der.len())
            .field("created_ms", &self.created_ms)
            .field("sign_from_ms", &self.sign_from_ms)
            .finish()
    }
}

impl KeyRecord {
    /// A new RSA-2048 key (from the OS generator), its certificate (subject CN = the issuer's
    /// host, valid for 10 years), kid = the RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn generate(issuer: &str, now_ms: i64, sign_from_ms: i64) -> Result<KeyRecord, KeyError> {
        if !(0..=LATEST_MS).contains(&now_ms) {
            return Err(KeyError::Time(now_ms));
        }
        let pkcs8_der = new_pkcs8()?;
        let (n, e) = public_components(&pkcs8_der, "new")?;
        let kid = rsa_thumbprint(&n, &e);
        let cert_der = certificate(&pkcs8_der, issuer_host(issuer), now_ms)?;
        Ok(KeyRecord {
            kid,
            pkcs8_der,
            cert_der,
            created_ms: now_ms,
            sign_from_ms,
        })
    }

    /// The public JWK: {kty:"RSA", use:"sig", alg:"RS256", kid, n, e, x5c:[standard base64 of
    /// cert_der], x5t#S256}.
    pub fn jwk(&self) -> Result<Value, KeyError> {
        let (n, e) = public_components(&self.pkcs8_der, &self.kid)?;
        Ok(json!({
            "kty": "RSA",
            "use": "sig",
            "alg": RS256,
            "kid": self.kid,
            "n": b64url(&n),
            "e": b64url(&e),
            "x5c": [STANDARD.encode(&self.cert_der)],
            "x5t#S256": b64url(&Sha256::digest(&self.cert_der)),
        }))
    }
}

/// A fresh RSA key from the operating system's generator, as PKCS#8 DER.
fn new_pkcs8() -> Result<Vec<u8>, KeyError> {
    let mut rng = rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, KEY_BITS)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(der.as_bytes().to_vec())
}

/// The modulus and exponent of a PKCS#8 RSA key, as ring reads it.
fn public_components(pkcs8_der: &[u8], kid: &str) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let pair = key_pair(pkcs8_der, kid)?;
    let c: PublicKeyComponents<Vec<u8>> = pair.public().into();
    Ok((c.n, c.e))
}

fn key_pair(pkcs8_der: &[u8], kid: &str) -> Result<RsaKeyPair, KeyError> {
    RsaKeyPair::from_pkcs8(pkcs8_der).map_err(|e| KeyError::Pkcs8 {
        kid: kid.to_owned(),
        why: e.to_string(),
    })
}

/// The host of a base URL (`https://host[:port]/path`), for the certificate's subject.
fn issuer_host(issuer: &str) -> &str {
    let rest = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

/// A self-signed certificate of the key, valid from `now_ms` for [`CERT_VALIDITY`].
fn certificate(pkcs8_der: &[u8], host: &str, now_ms: i64) -> Result<Vec<u8>, KeyError> {
    let cert_err = |e: rcgen::Error| KeyError::Certificate(e.to_string());
    let der = PrivatePkcs8KeyDer::from(pkcs8_der);
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
        .map_err(cert_err)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    // X.520 caps a common name at 64 characters; no one reads this one but a person.
    let cn = if host.is_empty() || host.chars().count() > 64 {
        "callverify"
    } else {
        host
    };
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let since_epoch =
        Duration::from_millis(u64::try_from(now_ms).map_err(|_| KeyError::Time(now_ms))?);
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_after = params.not_before + CERT_VALIDITY;
    let cert = params.self_signed(&kp).map_err(cert_err)?;
    Ok(cert.der().to_vec())
}

/// The keys of a provider, and which of them sign and are published at a time.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    /// Sorted by `sign_from_ms`, then `created_ms`.
    records: Vec<KeyRecord>,
}

impl Keyring {
    /// A keyring of these records, in any order.
    pub fn new(mut records: Vec<KeyRecord>) -> Keyring {
        records.sort_by_key(|r| (r.sign_from_ms, r.created_ms));
        Keyring { records }
    }

    /// All the records, oldest signer first.
    pub fn records(&self) -> &[KeyRecord] {
        &self.records
    }

    /// The key that signs at `now_ms`: the one with the latest sign_from_ms <= now_ms.
    pub fn signer(&self, now_ms: i64) -> Option<&KeyRecord> {
        self.signer_index(now_ms).map(|i| &self.records[i])
    }

    fn signer_index(&self, now_ms: i64) -> Option<usize> {
        self.records.iter().rposition(|r| r.sign_from_ms <= now_ms)
    }

    /// The keys published at `now_ms`: the signer, every key that will sign later, and each
    /// earlier key until `retire_after` (= Settings::key_publish) has passed since the key
    /// after it began to sign (so tokens it signed still verify while Entra's cache refreshes).
    pub fn published(&self, now_ms: i64, retire_after: Duration) -> Vec<&KeyRecord> {
        let retire_ms = crate::duration_ms(retire_after);
        let signer = self.signer_index(now_ms);
        self.records
            .iter()
            .enumerate()
            .filter(|(i, r)| match signer {
                Some(s) if *i < s => {
                    let successor = &self.records[i + 1];
                    now_ms < successor.sign_from_ms.saturating_add(retire_ms)
                }
                _ => r.sign_from_ms > now_ms || Some(*i) == signer,
            })
            .map(|(_, r)| r)
            .collect()
    }

    /// The JWKS document of the keys [`Keyring::published`] at `now_ms`.
    pub fn jwks(&self, now_ms: i64, retire_after: Duration) -> Result<Value, KeyError> {
        let keys = self
            .published(now_ms, retire_after)
            .into_iter()
            .map(KeyRecord::jwk);
        Ok(json!({ "keys": keys.collect::<Result<Vec<_>, _>>()? }))
    }

    /// The key `callverify eam-keys rotate` adds: signs from now + publish (or now with `at_once`).
    /// With no key at all yet (first start), the first key signs at once.
    pub fn next_key(
        &self,
        issuer: &str,
        now_ms: i64,
        publish: Duration,
        at_once: bool,
    ) -> Result<KeyRecord, KeyError> {
        let sign_from_ms = if at_once || self.records.is_empty() {
            now_ms
        } else {
            now_ms.saturating_add(crate::duration_ms(publish))
        };
        KeyRecord::generate(issuer, now_ms, sign_from_ms)
    }
}

/// A key ready to sign (ring's key pair, parsed once).
pub struct Signer {
    kid: String,
    pair: RsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Parses the record's private key for signing.
    pub fn new(r: &KeyRecord) -> Result<Signer, KeyError> {
        Ok(Signer {
            kid: r.kid.clone(),
            pair: key_pair(&r.pkcs8_der, &r.kid)?,
            rng: SystemRandom::new(),
        })
    }

    /// The id of the key, as the tokens' headers name it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact JWS of `claims`, header {alg:"RS256", typ:"JWT", kid}.
    pub fn sign(&self, claims: &Value) -> Result<String, KeyError> {
        if !claims.is_object() {
            return Err(KeyError::Claims);
        }
        let header = json!({"alg": RS256, "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| KeyError::Sign(self.kid.clone()))?;
        Ok(format!("{input}.{}", b64url(&signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Jws, parse_jwks};

    const ISSUER: &str = "https://cv.example.com:8443/base";
    const HOUR_MS: i64 = 3_600_000;
    const PUBLISH: Duration = Duration::from_secs(48 * 3600);
    const PUBLISH_MS: i64 = 48 * HOUR_MS;
    const T0: i64 = 1_767_225_600_000; // 2026-01-01

    fn kids(v: &[&KeyRecord]) -> Vec<String> {
        v.iter().map(|r| r.kid.clone()).collect()
    }

    #[test]
    fn hosts_of_issuers() {
        assert_eq!(
            issuer_host("https://cv.example.com:8443/base"),
            "cv.example.com"
        );
        assert_eq!(issuer_host("https://cv.example.com"), "cv.example.com");
        assert_eq!(issuer_host("http://[::1]:8080/x"), "::1");
        assert_eq!(issuer_host("https://u@h?q"), "h");
        assert_eq!(issuer_host("cv.example"), "cv.example");
    }

    #[test]
    fn generated_key_has_its_thumbprint_as_kid() {
        let r = KeyRecord::generate(ISSUER, T0, T0).unwrap();
        let jwk = r.jwk().unwrap();
        let key = &parse_jwks(&json!({ "keys": [jwk.clone()] }))[0];
        assert_eq!(r.kid, rsa_thumbprint(&key.n, &key.e));
        assert_eq!(key.n.len(), 256);
        assert_eq!(key.e, [1, 0, 1]);
        assert_eq!(jwk["x5t#S256"], b64url(&Sha256::digest(&r.cert_der)));
        assert_eq!(
            STANDARD.decode(jwk["x5c"][0].as_str().unwrap()).unwrap(),
            r.cert_der
        );
        assert!(!format!("{r:?}").contains(&format!("{:?}", &r.pkcs8_der[..16])));
    }

    #[test]
    fn times_a_certificate_cannot_carry_are_refused() {
        assert_eq!(KeyRecord::generate(ISSUER, -1, 0), Err(KeyError::Time(-1)));
        assert_eq!(
            KeyRecord::generate(ISSUER, i64::MAX, 0),
            Err(KeyError::Time(i64::MAX))
        );
    }

    #[test]
    fn signer_signs_tokens_that_verify() {
        let r = KeyRecord::generate(ISSUER, T0, T0).unwrap();
        let signer = Signer::new(&r).unwrap();
        let token = signer.sign(&json!({"sub": "s"})).unwrap();
        let jws = Jws::parse(&token).unwrap();
        assert_eq!(jws.kid.as_deref(), Some(r.kid.as_str()));
        let key = &parse_jwks(&json!({ "keys": [r.jwk().unwrap()] }))[0];
        assert!(jws.verify(key));
        assert_eq!(signer.sign(&json!(["sub"])), Err(KeyError::Claims));
        assert!(!format!("{signer:?}").contains("pair"));
    }

    #[test]
    fn a_broken_stored_key_is_an_error() {
        let mut r = KeyRecord::generate(ISSUER, T0, T0).unwrap();
        r.pkcs8_der.truncate(100);
        assert!(matches!(Signer::new(&r), Err(KeyError::Pkcs8 { .. })));
        assert!(matches!(r.jwk(), Err(KeyError::Pkcs8 { .. })));
    }

    #[test]
    fn first_key_signs_at_once() {
        let ring = Keyring::new(Vec::new());
        assert!(ring.signer(T0).is_none());
        assert!(ring.published(T0, PUBLISH).is_empty());
        let first = ring.next_key(ISSUER, T0, PUBLISH, false).unwrap();
        assert_eq!(first.sign_from_ms, T0);
        let ring = Keyring::new(vec![first.clone()]);
        assert_eq!(ring.signer(T0), Some(&first));
        assert!(ring.signer(T0 - 1).is_none());
    }

    #[test]
    fn rotation_publishes_first_then_signs_then_retires() {
        let old = KeyRecord::generate(ISSUER, T0, T0).unwrap();
        let now = T0 + 100 * HOUR_MS;
        let next = Keyring::new(vec![old.clone()])
            .next_key(ISSUER, now, PUBLISH, false)
            .unwrap();
        assert_eq!(next.sign_from_ms, now + PUBLISH_MS);
        let ring = Keyring::new(vec![next.clone(), old.clone()]);
        let both = vec![old.kid.clone(), next.kid.clone()];

        // Published at once, but the old key signs until key_publish has passed.
        assert_eq!(ring.signer(now).unwrap().kid, old.kid);
        assert_eq!(kids(&ring.published(now, PUBLISH)), both);
        assert_eq!(ring.signer(now + PUBLISH_MS - 1).unwrap().kid, old.kid);
        assert_eq!(ring.signer(now + PUBLISH_MS).unwrap().kid, next.kid);

        // The old key stays published for retire_after after the next one began to sign.
        let switch = now + PUBLISH_MS;
        assert_eq!(kids(&ring.published(switch, PUBLISH)), both);
        assert_eq!(
            kids(&ring.published(switch + PUBLISH_MS - 1, PUBLISH)),
            both
        );
        assert_eq!(
            kids(&ring.published(switch + PUBLISH_MS, PUBLISH)),
            [next.kid.as_str()]
        );

        // Tokens the old key signed still verify against the published set while it is there.
        let token = Signer::new(ring.signer(now).unwrap())
            .unwrap()
            .sign(&json!({}))
            .unwrap();
        let jwks = parse_jwks(&ring.jwks(switch, PUBLISH).unwrap());
        let key = jwks.iter().find(|k| k.kid == old.kid).unwrap();
        assert!(Jws::parse(&token).unwrap().verify(key));
        let jwks = parse_jwks(&ring.jwks(switch + PUBLISH_MS, PUBLISH).unwrap());
        assert!(jwks.iter().all(|k| k.kid != old.kid));
    }

    /// A record that is never parsed (signer and published read only its times).
    fn dummy(kid: &str, sign_from_ms: i64) -> KeyRecord {
        KeyRecord {
            kid: kid.into(),
            pkcs8_der: Vec::new(),
            cert_der: Vec::new(),
            created_ms: 0,
            sign_from_ms,
        }
    }

    #[test]
    fn each_old_key_retires_on_its_successors_schedule() {
        let ring = Keyring::new(vec![dummy("k3", 200), dummy("k1", 0), dummy("k2", 100)]);
        let retire = Duration::from_millis(50);
        let at = |now| kids(&ring.published(now, retire));
        assert_eq!(
            at(-1),
            ["k1", "k2", "k3"],
            "none signs yet: all are to come"
        );
        assert_eq!(at(0), ["k1", "k2", "k3"]);
        assert_eq!(at(149), ["k1", "k2", "k3"]);
        assert_eq!(at(150), ["k2", "k3"]);
        assert_eq!(at(249), ["k2", "k3"]);
        assert_eq!(at(250), ["k3"]);
        assert_eq!(ring.signer(199).map(|r| r.kid.as_str()), Some("k2"));
        assert_eq!(ring.signer(200).map(|r| r.kid.as_str()), Some("k3"));
        assert_eq!(ring.signer(i64::MAX).map(|r| r.kid.as_str()), Some("k3"));
        let far = Keyring::new(vec![dummy("a", 0), dummy("b", i64::MAX - 1)]);
        assert_eq!(
            kids(&far.published(i64::MAX - 1, Duration::MAX)),
            ["a", "b"],
            "no overflow"
        );
    }

    #[test]
    fn at_once_switches_now() {
        let old = KeyRecord::generate(ISSUER, T0, T0).unwrap();
        let now = T0 + HOUR_MS;
        let next = Keyring::new(vec![old.clone()])
            .next_key(ISSUER, now, PUBLISH, true)
            .unwrap();
        assert_eq!(next.sign_from_ms, now);
        let ring = Keyring::new(vec![old.clone(), next.clone()]);
        assert_eq!(ring.signer(now).unwrap().kid, next.kid);
        assert_eq!(
            kids(&ring.published(now, PUBLISH)),
            [old.kid.clone(), next.kid.clone()]
        );
        assert_eq!(
            kids(&ring.published(now + PUBLISH_MS, PUBLISH)),
            [next.kid.as_str()]
        );
    }
}
