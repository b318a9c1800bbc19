//! Digest credentials for a chain of requests (RFC 2617 / RFC 7616): which challenge was
//! answered, how often its nonce was used (`nc`), and when to give up.

use rsip::Method;

use super::Credentials;
use crate::digest::{Algorithm, Challenge};
use crate::message::Incoming;
use crate::random;

/// Credentials sent and the count of uses of the nonce (for `nc`).
#[derive(Clone, Debug, Default)]
pub(super) struct AuthState {
    /// The challenge answered last, with the header it goes into.
    challenge: Option<(Challenge, &'static str)>,
    nc: u32,
    /// Challenges answered for the current request chain.
    tries: u8,
}

impl AuthState {
    /// Takes a 401/407: true when a retry with credentials makes sense. A second challenge
    /// after credentials were sent means they were refused, unless the server only says
    /// the nonce went stale (and three stale nonces are enough).
    pub(super) fn take_challenge(&mut self, resp: &Incoming, have_credentials: bool) -> bool {
        let status = resp.status().unwrap_or(0);
        let (header, reply) = if status == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let challenge = resp
            .headers(header)
            .filter_map(|v| Challenge::parse(&v).ok())
            .max_by_key(|c| c.algorithm == Algorithm::Sha256);
        let Some(challenge) = challenge else {
            return false;
        };
        if !have_credentials || (self.tries >= 1 && !challenge.stale) || self.tries >= 3 {
            return false;
        }
        self.tries += 1;
        self.nc = 0;
        self.challenge = Some((challenge, reply));
        true
    }

    /// The chain was accepted: a later challenge starts a new one.
    pub(super) fn accepted(&mut self) {
        self.tries = 0;
    }

    /// The Authorization header for a request, if a challenge was taken (with a fresh
    /// random cnonce).
    pub(super) fn header(
        &mut self,
        creds: Option<&Credentials>,
        method: Method,
        uri: &str,
    ) -> Option<(&'static str, String)> {
        let (challenge, name) = self.challenge.as_ref()?;
        let creds = creds?;
        self.nc += 1;
        let value = challenge.respond(
            &creds.username,
            &creds.password,
            &method.to_string(),
            uri,
            self.nc,
            &random::hex(16),
        );
        Some((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{self, Builder};

    fn challenge(code: u16, stale: bool) -> Incoming {
        let header = if code == 407 {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let stale = if stale { ", stale=true" } else { "" };
        let bytes = Builder::response(code, "Unauthorized")
            .header("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx")
            .header("From", "<sip:a@x>;tag=1")
            .header("To", "<sip:b@x>;tag=2")
            .header("Call-ID", "c")
            .header("CSeq", "1 INVITE")
            .header(
                header,
                format!("Digest realm=\"r\", nonce=\"n\", qop=\"auth\"{stale}"),
            )
            .build();
        message::parse(&bytes).unwrap()
    }

    fn creds() -> Credentials {
        Credentials {
            username: "u".into(),
            password: "p".into(),
        }
    }

    #[test]
    fn one_challenge_is_answered_and_a_second_means_refused() {
        let mut a = AuthState::default();
        assert!(a.take_challenge(&challenge(401, false), true));
        let (name, value) = a.header(Some(&creds()), Method::Invite, "sip:b@x").unwrap();
        assert_eq!(name, "Authorization");
        assert!(value.contains("nc=00000001"), "{value}");
        assert!(!a.take_challenge(&challenge(401, false), true), "refused");
        // A stale nonce is answered again, three times at most.
        let mut a = AuthState::default();
        assert!(a.take_challenge(&challenge(407, false), true));
        assert!(a.take_challenge(&challenge(407, true), true));
        assert!(a.take_challenge(&challenge(407, true), true));
        assert!(!a.take_challenge(&challenge(407, true), true));
        let (name, _) = a.header(Some(&creds()), Method::Bye, "sip:b@x").unwrap();
        assert_eq!(name, "Proxy-Authorization");
    }

    #[test]
    fn no_credentials_no_retry() {
        let mut a = AuthState::default();
        assert!(!a.take_challenge(&challenge(401, false), false));
        assert!(a.header(None, Method::Invite, "sip:b@x").is_none());
    }
}
