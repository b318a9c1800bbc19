//! Digest access authentication for a SIP client (RFC 2617, RFC 7616, RFC 3261 §22):
//! parsing a `WWW-Authenticate` / `Proxy-Authenticate` challenge and building the matching
//! `Authorization` / `Proxy-Authorization` value, with MD5 and SHA-256, their `-sess`
//! variants, `qop=auth` and an 8-hex-digit nonce count.

use std::fmt::Write;

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// The hash of a challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (the default when the challenge names none).
    Md5,
    /// MD5-sess.
    Md5Sess,
    /// SHA-256.
    Sha256,
    /// SHA-256-sess.
    Sha256Sess,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "MD5-SESS" => Some(Algorithm::Md5Sess),
            "SHA-256" => Some(Algorithm::Sha256),
            "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
            _ => None,
        }
    }

    /// The name as written in headers.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    fn hash(self, data: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Md5::digest(data.as_bytes()).to_vec(),
            Algorithm::Sha256 | Algorithm::Sha256Sess => Sha256::digest(data.as_bytes()).to_vec(),
        };
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }
}

/// Why a challenge cannot be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The header is not a Digest challenge.
    #[error("challenge scheme is not Digest: {0:?}")]
    NotDigest(String),
    /// A parameter the challenge needs is absent.
    #[error("Digest challenge has no {0} parameter")]
    Missing(&'static str),
    /// The algorithm is not one this client implements.
    #[error("Digest algorithm {0:?} is not supported (MD5, MD5-sess, SHA-256, SHA-256-sess)")]
    Algorithm(String),
    /// The challenge offers qop values but not `auth` (e.g. only `auth-int`).
    #[error("Digest qop {0:?} offers no \"auth\"")]
    Qop(String),
    /// The header does not parse as auth-params.
    #[error("malformed Digest challenge: {0}")]
    Syntax(String),
}

/// A parsed Digest challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The protection space.
    pub realm: String,
    /// The server's nonce.
    pub nonce: String,
    /// Opaque data to echo back.
    pub opaque: Option<String>,
    /// The hash algorithm.
    pub algorithm: Algorithm,
    /// The server offered `qop=auth` (answered with qop, cnonce and nc).
    pub qop_auth: bool,
    /// The nonce was stale: the credentials were right, retry with the new nonce.
    pub stale: bool,
}

/// Splits `a=b, c="d, e"` into (name, value) pairs, unquoting values.
fn auth_params(s: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| DigestError::Syntax(format!("no '=' in {rest:?}")))?;
        let name = rest[..eq].trim().to_ascii_lowercase();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(DigestError::Syntax(format!("bad parameter name {name:?}")));
        }
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => v.push(c),
                }
            }
            let end =
                end.ok_or_else(|| DigestError::Syntax(format!("unterminated quote in {name}")))?;
            value = v;
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.push((name, value));
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(DigestError::Syntax(format!("expected ',' before {rest:?}")));
        }
    }
    Ok(out)
}

impl Challenge {
    /// Parses the value of a `WWW-Authenticate` or `Proxy-Authenticate` header.
    pub fn parse(header: &str) -> Result<Challenge, DigestError> {
        let header = header.trim();
        let (scheme, params) = header
            .split_once(char::is_whitespace)
            .unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(DigestError::NotDigest(scheme.to_string()));
        }
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = Algorithm::Md5;
        let mut qop = None;
        let mut stale = false;
        for (name, value) in auth_params(params)? {
            match name.as_str() {
                "realm" => realm = Some(value),
                "nonce" => nonce = Some(value),
                "opaque" => opaque = Some(value),
                "algorithm" => {
                    algorithm = Algorithm::parse(&value).ok_or(DigestError::Algorithm(value))?;
                }
                "qop" => qop = Some(value),
                "stale" => stale = value.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        let qop_auth = match qop {
            None => false,
            Some(q) => {
                if q.split(',').any(|v| v.trim().eq_ignore_ascii_case("auth")) {
                    true
                } else {
                    return Err(DigestError::Qop(q));
                }
            }
        };
        Ok(Challenge {
            realm: realm.ok_or(DigestError::Missing("realm"))?,
            nonce: nonce.ok_or(DigestError::Missing("nonce"))?,
            opaque,
            algorithm,
            qop_auth,
            stale,
        })
    }

    /// The credentials' answer to this challenge for one request.
    ///
    /// `nc` is the number of requests already answered with this nonce plus one;
    /// `cnonce` is the client's fresh random nonce (used only with qop or -sess).
    pub fn respond(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let alg = self.algorithm;
        let mut ha1 = alg.hash(&format!("{user}:{}:{password}", self.realm));
        if alg.session() {
            ha1 = alg.hash(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = alg.hash(&format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let response = if self.qop_auth {
            alg.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            alg.hash(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}",
            q(user),
            q(&self.realm),
            q(&self.nonce),
            q(uri),
            alg.name()
        );
        if self.qop_auth || alg.session() {
            let _ = write!(v, ", cnonce=\"{}\"", q(cnonce));
        }
        if self.qop_auth {
            let _ = write!(v, ", qop=auth, nc={nc}");
        }
        if let Some(o) = &self.opaque {
            let _ = write!(v, ", opaque=\"{}\"", q(o));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param<'a>(header: &'a str, name: &str) -> &'a str {
        let key = format!("{name}=");
        let at = header.find(&key).unwrap() + key.len();
        let rest = &header[at..];
        if let Some(r) = rest.strip_prefix('"') {
            &r[..r.find('"').unwrap()]
        } else {
            rest.split(',').next().unwrap()
        }
    }

    #[test]
    fn rfc2617_example() {
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert!(c.qop_auth);
        let h = c.respond(
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert_eq!(param(&h, "response"), "6629fae49393a05397450978507c4ef1");
        assert_eq!(param(&h, "nc"), "00000001");
        assert_eq!(param(&h, "opaque"), "5ccc069c403ebaf9f0171e9517f40e41");
    }

    #[test]
    fn rfc7616_examples_md5_and_sha256() {
        for (alg, want) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let c = Challenge::parse(&format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
            ))
            .unwrap();
            let h = c.respond(
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                1,
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            );
            assert_eq!(param(&h, "response"), want, "{alg}");
            assert_eq!(param(&h, "algorithm"), alg);
        }
    }

    #[test]
    fn without_qop_and_with_sess() {
        // RFC 2069 style (no qop): response = H(HA1:nonce:HA2).
        let c = Challenge::parse(r#"Digest realm="r", nonce="n""#).unwrap();
        let h = c.respond("u", "p", "INVITE", "sip:x@y", 1, "c");
        let ha1 = Algorithm::Md5.hash("u:r:p");
        let ha2 = Algorithm::Md5.hash("INVITE:sip:x@y");
        assert_eq!(
            param(&h, "response"),
            Algorithm::Md5.hash(&format!("{ha1}:n:{ha2}"))
        );
        assert!(!h.contains("nc=") && !h.contains("cnonce"));
        // -sess: HA1 = H(H(user:realm:pass):nonce:cnonce); nc in hex past 9.
        let c =
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-256-sess, qop="auth""#)
                .unwrap();
        let h = c.respond("u", "p", "INVITE", "sip:x@y", 26, "c");
        let a = Algorithm::Sha256;
        let ha1 = a.hash(&format!("{}:n:c", a.hash("u:r:p")));
        let expect = a.hash(&format!(
            "{ha1}:n:0000001a:c:auth:{}",
            a.hash("INVITE:sip:x@y")
        ));
        assert_eq!(param(&h, "response"), expect);
        assert_eq!(param(&h, "nc"), "0000001a");
    }

    #[test]
    fn bad_challenges_are_clear_errors() {
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(DigestError::NotDigest("Basic".into()))
        );
        assert_eq!(
            Challenge::parse("Digest nonce=\"n\""),
            Err(DigestError::Missing("realm"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256"),
            Err(DigestError::Algorithm("SHA-512-256".into()))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""),
            Err(DigestError::Qop("auth-int".into()))
        );
        assert!(matches!(
            Challenge::parse("Digest realm=\"r, nonce=n"),
            Err(DigestError::Syntax(_))
        ));
        assert!(matches!(
            Challenge::parse("Digest realm"),
            Err(DigestError::Syntax(_))
        ));
        let stale = Challenge::parse("digest REALM=\"r\", nonce=n2, stale=TRUE").unwrap();
        assert!(stale.stale && stale.nonce == "n2");
    }
}
