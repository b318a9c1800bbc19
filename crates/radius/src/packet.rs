//! The RADIUS packet (RFC 2865 §3, §5): a header of 20 octets and attributes of type,
//! length and value.

use thiserror::Error;

/// The shortest packet: the header alone.
pub const MIN_LEN: usize = 20;
/// The longest packet RFC 2865 allows.
pub const MAX_LEN: usize = 4096;

/// The attribute types callverify reads or writes (RFC 2865, 2869, 3162, 3579).
pub mod attr {
    /// User-Name.
    pub const USER_NAME: u8 = 1;
    /// User-Password (hidden with the secret).
    pub const USER_PASSWORD: u8 = 2;
    /// CHAP-Password.
    pub const CHAP_PASSWORD: u8 = 3;
    /// NAS-IP-Address.
    pub const NAS_IP_ADDRESS: u8 = 4;
    /// Framed-IP-Address.
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    /// Reply-Message (text for the user).
    pub const REPLY_MESSAGE: u8 = 18;
    /// State (sent in an Access-Challenge, returned unchanged in the next request).
    pub const STATE: u8 = 24;
    /// Class (returned by the NAS in its accounting).
    pub const CLASS: u8 = 25;
    /// Vendor-Specific.
    pub const VENDOR_SPECIFIC: u8 = 26;
    /// Session-Timeout.
    pub const SESSION_TIMEOUT: u8 = 27;
    /// Calling-Station-Id.
    pub const CALLING_STATION_ID: u8 = 31;
    /// NAS-Identifier.
    pub const NAS_IDENTIFIER: u8 = 32;
    /// Proxy-State (copied into the response, in order).
    pub const PROXY_STATE: u8 = 33;
    /// CHAP-Challenge.
    pub const CHAP_CHALLENGE: u8 = 60;
    /// EAP-Message.
    pub const EAP_MESSAGE: u8 = 79;
    /// Message-Authenticator (HMAC-MD5 of the packet, RFC 3579 §3.2).
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

/// A packet's code (RFC 2865 §3); only the authentication ones are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1.
    AccessRequest,
    /// 2.
    AccessAccept,
    /// 3.
    AccessReject,
    /// 11.
    AccessChallenge,
    /// Any other (accounting, Status-Server, CoA …).
    Other(u8),
}

impl Code {
    /// The code's octet.
    pub fn octet(self) -> u8 {
        match self {
            Code::AccessRequest => 1,
            Code::AccessAccept => 2,
            Code::AccessReject => 3,
            Code::AccessChallenge => 11,
            Code::Other(c) => c,
        }
    }

    /// The code of an octet.
    pub fn of(octet: u8) -> Code {
        match octet {
            1 => Code::AccessRequest,
            2 => Code::AccessAccept,
            3 => Code::AccessReject,
            11 => Code::AccessChallenge,
            c => Code::Other(c),
        }
    }

    /// Its name, for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Code::AccessRequest => "Access-Request",
            Code::AccessAccept => "Access-Accept",
            Code::AccessReject => "Access-Reject",
            Code::AccessChallenge => "Access-Challenge",
            Code::Other(_) => "other",
        }
    }
}

/// One attribute: its type and value (1 to 253 octets on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The type.
    pub kind: u8,
    /// The value.
    pub value: Vec<u8>,
}

impl Attribute {
    /// An attribute.
    pub fn new(kind: u8, value: impl Into<Vec<u8>>) -> Attribute {
        Attribute {
            kind,
            value: value.into(),
        }
    }
}

/// Why a datagram is no RADIUS packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Fewer octets than the header, or than its Length says.
    #[error("{found} octets, fewer than the {expected} the packet needs")]
    Short {
        /// What the packet needs.
        expected: usize,
        /// What arrived.
        found: usize,
    },
    /// A Length below 20 or above 4096.
    #[error("a Length of {0} (RADIUS allows 20 to 4096)")]
    Length(usize),
    /// An attribute whose length is below 3 (no value) or runs past the packet.
    #[error("the attribute at octet {at} has a length of {len}, which does not fit the packet")]
    Attribute {
        /// Its offset in the packet.
        at: usize,
        /// Its length octet.
        len: usize,
    },
    /// A packet too long to encode.
    #[error("the packet would be {0} octets, more than RADIUS's 4096")]
    TooLong(usize),
    /// An attribute value of 0 or more than 253 octets.
    #[error("attribute {kind} has a value of {len} octets (1 to 253 fit)")]
    Value {
        /// Its type.
        kind: u8,
        /// Its length.
        len: usize,
    },
}

/// A RADIUS packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Its code.
    pub code: Code,
    /// Its Identifier (matches a response to its request).
    pub identifier: u8,
    /// Its Authenticator: the Request Authenticator of a request, the Response Authenticator
    /// of a response.
    pub authenticator: [u8; 16],
    /// Its attributes in order.
    pub attributes: Vec<Attribute>,
}

impl Packet {
    /// Decodes a datagram. Octets past the packet's Length are padding and ignored (RFC 2865
    /// §3); a datagram shorter than its Length is refused.
    pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
        let len = Self::length(bytes)?;
        let mut authenticator = [0; 16];
        authenticator.copy_from_slice(&bytes[4..20]);
        let mut attributes = Vec::new();
        let mut at = MIN_LEN;
        while at < len {
            let (kind, value) = Self::attribute_at(bytes, at, len)?;
            attributes.push(Attribute::new(kind, value));
            at += value.len() + 2;
        }
        Ok(Packet {
            code: Code::of(bytes[0]),
            identifier: bytes[1],
            authenticator,
            attributes,
        })
    }

    /// The packet's Length, checked against the datagram.
    pub(crate) fn length(bytes: &[u8]) -> Result<usize, DecodeError> {
        let short = |expected| DecodeError::Short {
            expected,
            found: bytes.len(),
        };
        let header = bytes.get(..MIN_LEN).ok_or_else(|| short(MIN_LEN))?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return Err(DecodeError::Length(len));
        }
        if bytes.len() < len {
            return Err(short(len));
        }
        Ok(len)
    }

    /// The attribute at offset `at` of a packet of `len` octets: its type and value.
    pub(crate) fn attribute_at(
        bytes: &[u8],
        at: usize,
        len: usize,
    ) -> Result<(u8, &[u8]), DecodeError> {
        let bad = |l| DecodeError::Attribute { at, len: l };
        let head = bytes
            .get(at..at + 2)
            .filter(|_| at + 2 <= len)
            .ok_or(bad(0))?;
        let alen = usize::from(head[1]);
        // An empty value (a length of 2) is refused as RFC 2865 gives every type one octet
        // at least, and so that what decodes encodes the same.
        if alen < 3 || at + alen > len {
            return Err(bad(alen));
        }
        Ok((head[0], &bytes[at + 2..at + alen]))
    }

    /// The first value of attribute `kind`.
    pub fn get(&self, kind: u8) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.value.as_slice())
    }

    /// Every value of attribute `kind`, in order.
    pub fn all(&self, kind: u8) -> impl Iterator<Item = &[u8]> {
        self.attributes
            .iter()
            .filter(move |a| a.kind == kind)
            .map(|a| a.value.as_slice())
    }

    /// The packet on the wire, with its authenticator as it is.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::with_capacity(64);
        out.push(self.code.octet());
        out.push(self.identifier);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.authenticator);
        for a in &self.attributes {
            if a.value.is_empty() || a.value.len() > 253 {
                return Err(DecodeError::Value {
                    kind: a.kind,
                    len: a.value.len(),
                });
            }
            out.push(a.kind);
            out.push(a.value.len() as u8 + 2);
            out.extend_from_slice(&a.value);
        }
        if out.len() > MAX_LEN {
            return Err(DecodeError::TooLong(out.len()));
        }
        let len = (out.len() as u16).to_be_bytes();
        out[2..4].copy_from_slice(&len);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[(u8, &[u8])]) -> Vec<u8> {
        Packet {
            code: Code::AccessRequest,
            identifier: 7,
            authenticator: [9; 16],
            attributes: attrs.iter().map(|(k, v)| Attribute::new(*k, *v)).collect(),
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn a_packet_decodes_to_what_was_encoded_and_padding_is_ignored() {
        let mut bytes = request(&[(attr::USER_NAME, b"alice"), (attr::STATE, b"\0\x01")]);
        assert_eq!(bytes.len(), 20 + 7 + 4);
        bytes.extend_from_slice(&[0xff; 5]);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.code, Code::AccessRequest);
        assert_eq!(p.identifier, 7);
        assert_eq!(p.get(attr::USER_NAME), Some(&b"alice"[..]));
        assert_eq!(p.get(attr::STATE), Some(&b"\0\x01"[..]));
        assert_eq!(p.encode().unwrap(), bytes[..31]);
    }

    #[test]
    fn every_length_that_does_not_fit_is_refused() {
        let good = request(&[(attr::USER_NAME, b"alice")]);
        assert!(matches!(
            Packet::decode(&good[..19]),
            Err(DecodeError::Short { expected: 20, .. })
        ));
        assert!(matches!(
            Packet::decode(&good[..good.len() - 1]),
            Err(DecodeError::Short { .. })
        ));
        for (len, what) in [(19u16, "below the header"), (4097, "above 4096")] {
            let mut b = good.clone();
            b[2..4].copy_from_slice(&len.to_be_bytes());
            b.resize(4200, 0);
            assert_eq!(
                Packet::decode(&b),
                Err(DecodeError::Length(len.into())),
                "{what}"
            );
        }
        for alen in [0u8, 1, 2, 8, 255] {
            let mut b = good.clone();
            b[21] = alen;
            assert!(
                matches!(
                    Packet::decode(&b),
                    Err(DecodeError::Attribute { at: 20, .. })
                ),
                "attribute length {alen}"
            );
        }
        // One octet of an attribute's header left at the end.
        let mut b = good.clone();
        b.push(1);
        let len = (b.len() as u16).to_be_bytes();
        b[2..4].copy_from_slice(&len);
        assert!(matches!(
            Packet::decode(&b),
            Err(DecodeError::Attribute { .. })
        ));
    }

    #[test]
    fn values_that_do_not_fit_an_attribute_are_not_encoded() {
        let p = |v: Vec<u8>| Packet {
            code: Code::AccessAccept,
            identifier: 1,
            authenticator: [0; 16],
            attributes: vec![Attribute::new(attr::CLASS, v)],
        };
        assert!(p(vec![1; 253]).encode().is_ok());
        assert!(matches!(
            p(vec![1; 254]).encode(),
            Err(DecodeError::Value { len: 254, .. })
        ));
        assert!(matches!(
            p(vec![]).encode(),
            Err(DecodeError::Value { len: 0, .. })
        ));
        let mut big = p(vec![1; 253]);
        big.attributes = vec![Attribute::new(attr::CLASS, vec![1; 253]); 17];
        assert!(matches!(big.encode(), Err(DecodeError::TooLong(_))));
    }
}
