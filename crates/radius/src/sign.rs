//! What a shared secret proves: the Message-Authenticator (RFC 3579 §3.2), the Response
//! Authenticator (RFC 2865 §3) and the hidden User-Password (RFC 2865 §5.2).
//!
//! The BlastRADIUS forgery (CVE-2024-3596) turns a Reject into an Accept by an MD5 collision
//! on the Response Authenticator; a Message-Authenticator (HMAC-MD5 keyed by the secret)
//! that the receiver requires stops it. So every request callverify accepts must carry one,
//! and every packet it sends carries one first.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use thiserror::Error;

use crate::packet::{Attribute, Code, DecodeError, MIN_LEN, Packet, attr};

type HmacMd5 = Hmac<Md5>;

/// A shared secret (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret of these octets.
    pub fn new(octets: impl Into<Vec<u8>>) -> Secret {
        Secret(octets.into())
    }

    fn mac(&self) -> HmacMd5 {
        // HMAC takes a key of any length.
        HmacMd5::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} octets)", self.0.len())
    }
}

/// Why a packet is not accepted as signed by the secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    /// Not a RADIUS packet.
    #[error("not a RADIUS packet: {0}")]
    Decode(#[from] DecodeError),
    /// No Message-Authenticator where one is required.
    #[error("no Message-Authenticator")]
    NoMessageAuthenticator,
    /// A Message-Authenticator that is not the packet's HMAC under the secret, not 16
    /// octets, or given twice.
    #[error("a Message-Authenticator that the secret does not make")]
    BadMessageAuthenticator,
    /// A response whose Response Authenticator the secret does not make.
    #[error("a Response Authenticator that the secret does not make")]
    BadResponseAuthenticator,
    /// A response of another code than Access-Accept, -Reject or -Challenge, or to another
    /// request.
    #[error("{0}")]
    NotTheResponse(&'static str),
}

/// Why a User-Password cannot be hidden or revealed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PasswordError {
    /// RFC 2865 allows 1 to 128 octets.
    #[error("a password of {0} octets (1 to 128 fit)")]
    Length(usize),
}

/// Where each Message-Authenticator's value is in a packet of `len` octets.
fn message_authenticators(bytes: &[u8], len: usize) -> Result<Vec<(usize, usize)>, DecodeError> {
    let mut found = Vec::new();
    let mut at = MIN_LEN;
    while at < len {
        let (kind, value) = Packet::attribute_at(bytes, at, len)?;
        if kind == attr::MESSAGE_AUTHENTICATOR {
            found.push((at + 2, value.len()));
        }
        at += value.len() + 2;
    }
    Ok(found)
}

/// The HMAC-MD5 of `packet` with its Message-Authenticator's value (at `at`) zeroed and,
/// for a response, the request's authenticator in place of its own.
fn hmac_of(secret: &Secret, packet: &[u8], at: usize, authenticator: Option<&[u8; 16]>) -> HmacMd5 {
    let mut copy = packet.to_vec();
    copy[at..at + 16].fill(0);
    if let Some(a) = authenticator {
        copy[4..20].copy_from_slice(a);
    }
    let mut mac = secret.mac();
    mac.update(&copy);
    mac
}

/// The one Message-Authenticator of a packet, checked: `Ok(false)` when there is none.
fn check_message_authenticator(
    secret: &Secret,
    packet: &[u8],
    authenticator: Option<&[u8; 16]>,
) -> Result<bool, SignError> {
    match message_authenticators(packet, packet.len())?.as_slice() {
        [] => Ok(false),
        [(at, 16)] => hmac_of(secret, packet, *at, authenticator)
            .verify_slice(&packet[*at..*at + 16])
            .map(|()| true)
            .map_err(|_| SignError::BadMessageAuthenticator),
        _ => Err(SignError::BadMessageAuthenticator),
    }
}

/// Decodes an Access-Request (or any request) and checks its Message-Authenticator, which
/// it must carry.
pub fn check_request(datagram: &[u8], secret: &Secret) -> Result<Packet, SignError> {
    let len = Packet::length(datagram)?;
    let bytes = &datagram[..len];
    let packet = Packet::decode(bytes)?;
    if !check_message_authenticator(secret, bytes, None)? {
        return Err(SignError::NoMessageAuthenticator);
    }
    Ok(packet)
}

/// Fills the Message-Authenticator of an encoded packet whose first attribute is a
/// zeroed one.
fn fill_message_authenticator(secret: &Secret, bytes: &mut [u8], authenticator: Option<&[u8; 16]>) {
    let at = MIN_LEN + 2;
    let mac = hmac_of(secret, bytes, at, authenticator)
        .finalize()
        .into_bytes();
    bytes[at..at + 16].copy_from_slice(&mac);
}

/// The response to `request`: `code`, a Message-Authenticator first, `attributes`, then
/// the request's Proxy-State attributes in their order (RFC 2865 §5.33), with its Response
/// Authenticator.
pub fn response(
    code: Code,
    request: &Packet,
    attributes: Vec<Attribute>,
    secret: &Secret,
) -> Result<Vec<u8>, DecodeError> {
    let mut all = Vec::with_capacity(attributes.len() + 2);
    all.push(Attribute::new(attr::MESSAGE_AUTHENTICATOR, [0; 16]));
    all.extend(attributes);
    all.extend(
        request
            .all(attr::PROXY_STATE)
            .map(|v| Attribute::new(attr::PROXY_STATE, v)),
    );
    let mut bytes = Packet {
        code,
        identifier: request.identifier,
        authenticator: request.authenticator,
        attributes: all,
    }
    .encode()?;
    fill_message_authenticator(secret, &mut bytes, Some(&request.authenticator));
    let auth = response_authenticator(secret, &bytes, &request.authenticator);
    bytes[4..20].copy_from_slice(&auth);
    Ok(bytes)
}

/// MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret).
fn response_authenticator(secret: &Secret, response: &[u8], request_auth: &[u8; 16]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(&response[..4]);
    md5.update(request_auth);
    md5.update(&response[MIN_LEN..]);
    md5.update(&secret.0);
    md5.finalize().into()
}

/// An Access-Request to send (to an upstream server): a Message-Authenticator first, then
/// `attributes`; `authenticator` must come from the OS generator.
pub fn request(
    identifier: u8,
    authenticator: [u8; 16],
    attributes: Vec<Attribute>,
    secret: &Secret,
) -> Result<Vec<u8>, DecodeError> {
    let mut all = Vec::with_capacity(attributes.len() + 1);
    all.push(Attribute::new(attr::MESSAGE_AUTHENTICATOR, [0; 16]));
    all.extend(attributes);
    let mut bytes = Packet {
        code: Code::AccessRequest,
        identifier,
        authenticator,
        attributes: all,
    }
    .encode()?;
    fill_message_authenticator(secret, &mut bytes, None);
    Ok(bytes)
}

/// Checks the answer to a request sent with `identifier` and `authenticator`: an
/// Access-Accept, -Reject or -Challenge with the Response Authenticator the secret makes,
/// and a valid Message-Authenticator (required when `require_message_authenticator`).
pub fn check_response(
    datagram: &[u8],
    identifier: u8,
    authenticator: &[u8; 16],
    secret: &Secret,
    require_message_authenticator: bool,
) -> Result<Packet, SignError> {
    let len = Packet::length(datagram)?;
    let bytes = &datagram[..len];
    let packet = Packet::decode(bytes)?;
    if packet.identifier != identifier {
        return Err(SignError::NotTheResponse("a response to another request"));
    }
    if !matches!(
        packet.code,
        Code::AccessAccept | Code::AccessReject | Code::AccessChallenge
    ) {
        return Err(SignError::NotTheResponse(
            "not an Access-Accept, Access-Reject or Access-Challenge",
        ));
    }
    let expected = response_authenticator(secret, bytes, authenticator);
    if !same(&expected, &packet.authenticator) {
        return Err(SignError::BadResponseAuthenticator);
    }
    if !check_message_authenticator(secret, bytes, Some(authenticator))?
        && require_message_authenticator
    {
        return Err(SignError::NoMessageAuthenticator);
    }
    Ok(packet)
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The keystream block of RFC 2865 §5.2: MD5(secret + previous).
fn block(secret: &Secret, previous: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(&secret.0);
    md5.update(previous);
    md5.finalize().into()
}

/// User-Password hidden for a request with `authenticator` (padded with NULs to 16s).
pub fn hide_password(
    password: &[u8],
    secret: &Secret,
    authenticator: &[u8; 16],
) -> Result<Vec<u8>, PasswordError> {
    if password.is_empty() || password.len() > 128 {
        return Err(PasswordError::Length(password.len()));
    }
    let mut out = password.to_vec();
    out.resize(password.len().div_ceil(16) * 16, 0);
    let mut previous = authenticator.to_vec();
    for chunk in out.chunks_mut(16) {
        let b = block(secret, &previous);
        chunk.iter_mut().zip(b).for_each(|(c, k)| *c ^= k);
        previous = chunk.to_vec();
    }
    Ok(out)
}

/// The password a hidden User-Password of a request with `authenticator` carries, its NUL
/// padding removed.
pub fn reveal_password(
    hidden: &[u8],
    secret: &Secret,
    authenticator: &[u8; 16],
) -> Result<Vec<u8>, PasswordError> {
    if hidden.is_empty() || hidden.len() > 128 || !hidden.len().is_multiple_of(16) {
        return Err(PasswordError::Length(hidden.len()));
    }
    let mut out = Vec::with_capacity(hidden.len());
    let mut previous: &[u8] = authenticator;
    for chunk in hidden.chunks(16) {
        let b = block(secret, previous);
        out.extend(chunk.iter().zip(b).map(|(c, k)| c ^ k));
        previous = chunk;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("xyzzy5461")
    }

    /// RFC 2865 §7.1's example: "nemo" with password "arctangent", secret "xyzzy5461".
    const RFC_AUTH: [u8; 16] = [
        0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57, 0xbd, 0x83, 0xd5, 0xcb, 0x98, 0xf4, 0x22,
        0x7a,
    ];
    const RFC_HIDDEN: [u8; 16] = [
        0x0d, 0xbe, 0x70, 0x8d, 0x93, 0xd4, 0x13, 0xce, 0x31, 0x96, 0xe4, 0x3f, 0x78, 0x2a, 0x0a,
        0xee,
    ];

    #[test]
    fn the_rfcs_example_password_is_hidden_and_revealed() {
        let hidden = hide_password(b"arctangent", &secret(), &RFC_AUTH).unwrap();
        assert_eq!(hidden, RFC_HIDDEN);
        assert_eq!(
            reveal_password(&hidden, &secret(), &RFC_AUTH).unwrap(),
            b"arctangent"
        );
        for (len, hidden_len) in [(16, 16), (17, 32), (100, 112), (128, 128)] {
            let long = vec![b'p'; len];
            let hidden = hide_password(&long, &secret(), &RFC_AUTH).unwrap();
            assert_eq!(hidden.len(), hidden_len);
            assert_eq!(
                reveal_password(&hidden, &secret(), &RFC_AUTH).unwrap(),
                long
            );
        }
        for bad in [0, 15, 17, 144] {
            assert_eq!(
                reveal_password(&vec![1; bad], &secret(), &RFC_AUTH),
                Err(PasswordError::Length(bad))
            );
        }
        assert!(hide_password(&[b'p'; 129], &secret(), &RFC_AUTH).is_err());
        assert!(hide_password(b"", &secret(), &RFC_AUTH).is_err());
    }

    /// RFC 5997 §6's example Status-Server (secret "xyzzy5461"): its Message-Authenticator
    /// checks, and one flipped bit or another secret does not.
    #[test]
    fn rfc_5997s_example_message_authenticator_is_checked() {
        let packet: [u8; 38] = [
            0x0c, 0xda, 0x00, 0x26, 0x8a, 0x54, 0xf4, 0x68, 0x6f, 0xb3, 0x94, 0xc5, 0x28, 0x66,
            0xe3, 0x02, 0x18, 0x5d, 0x06, 0x23, 0x50, 0x12, 0x5a, 0x66, 0x5e, 0x2e, 0x1e, 0x84,
            0x11, 0xf3, 0xe2, 0x43, 0x82, 0x20, 0x97, 0xc8, 0x4f, 0xa3,
        ];
        let p = check_request(&packet, &secret()).unwrap();
        assert_eq!(p.code, Code::Other(12));
        let mut forged = packet;
        forged[37] ^= 1;
        assert_eq!(
            check_request(&forged, &secret()),
            Err(SignError::BadMessageAuthenticator)
        );
        assert_eq!(
            check_request(&packet, &Secret::new("another")),
            Err(SignError::BadMessageAuthenticator)
        );
    }

    fn nas_request(attrs: Vec<Attribute>) -> Vec<u8> {
        request(42, RFC_AUTH, attrs, &secret()).unwrap()
    }

    #[test]
    fn a_request_without_or_with_two_message_authenticators_is_refused() {
        let unsigned = Packet {
            code: Code::AccessRequest,
            identifier: 1,
            authenticator: RFC_AUTH,
            attributes: vec![Attribute::new(attr::USER_NAME, "nemo")],
        }
        .encode()
        .unwrap();
        assert_eq!(
            check_request(&unsigned, &secret()),
            Err(SignError::NoMessageAuthenticator)
        );
        let signed = nas_request(vec![Attribute::new(attr::USER_NAME, "nemo")]);
        let p = check_request(&signed, &secret()).unwrap();
        assert_eq!(p.get(attr::USER_NAME), Some(&b"nemo"[..]));
        // A second one appended, with the first one recomputed to cover it: still refused.
        let mut p2 = p.clone();
        p2.attributes
            .push(Attribute::new(attr::MESSAGE_AUTHENTICATOR, [0; 16]));
        p2.attributes.remove(0);
        let twice = request(42, RFC_AUTH, p2.attributes, &secret()).unwrap();
        assert_eq!(
            check_request(&twice, &secret()),
            Err(SignError::BadMessageAuthenticator)
        );
        // One of the wrong size.
        let mut short = Packet::decode(&signed).unwrap();
        short.attributes[0].value.truncate(8);
        assert_eq!(
            check_request(&short.encode().unwrap(), &secret()),
            Err(SignError::BadMessageAuthenticator)
        );
    }

    #[test]
    fn a_response_carries_its_message_authenticator_first_and_checks_on_the_other_side() {
        let req = Packet::decode(&nas_request(vec![
            Attribute::new(attr::USER_NAME, "nemo"),
            Attribute::new(attr::PROXY_STATE, "one"),
            Attribute::new(attr::PROXY_STATE, "two"),
        ]))
        .unwrap();
        let bytes = response(
            Code::AccessAccept,
            &req,
            vec![Attribute::new(attr::CLASS, "staff")],
            &secret(),
        )
        .unwrap();
        let p = check_response(&bytes, 42, &RFC_AUTH, &secret(), true).unwrap();
        assert_eq!(p.code, Code::AccessAccept);
        let kinds: Vec<u8> = p.attributes.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [
                attr::MESSAGE_AUTHENTICATOR,
                attr::CLASS,
                attr::PROXY_STATE,
                attr::PROXY_STATE
            ]
        );
        assert_eq!(
            p.all(attr::PROXY_STATE).collect::<Vec<_>>(),
            [b"one", b"two"]
        );
        // The Response Authenticator covers the attributes; the Message-Authenticator too.
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            check_response(&flipped, 42, &RFC_AUTH, &secret(), true),
            Err(SignError::BadResponseAuthenticator)
        );
        assert_eq!(
            check_response(&bytes, 42, &[0; 16], &secret(), true),
            Err(SignError::BadResponseAuthenticator)
        );
        assert!(matches!(
            check_response(&bytes, 43, &RFC_AUTH, &secret(), true),
            Err(SignError::NotTheResponse(_))
        ));
        assert_eq!(
            check_response(&bytes, 42, &RFC_AUTH, &Secret::new("other"), true),
            Err(SignError::BadResponseAuthenticator)
        );
    }

    #[test]
    fn a_response_without_message_authenticator_passes_only_when_not_required() {
        let mut plain = Packet {
            code: Code::AccessReject,
            identifier: 42,
            authenticator: RFC_AUTH,
            attributes: vec![Attribute::new(attr::REPLY_MESSAGE, "no")],
        }
        .encode()
        .unwrap();
        let auth = response_authenticator(&secret(), &plain, &RFC_AUTH);
        plain[4..20].copy_from_slice(&auth);
        assert!(check_response(&plain, 42, &RFC_AUTH, &secret(), false).is_ok());
        assert_eq!(
            check_response(&plain, 42, &RFC_AUTH, &secret(), true),
            Err(SignError::NoMessageAuthenticator)
        );
    }
}
