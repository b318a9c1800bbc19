//! SIP status codes with their class and reason phrase (RFC 3261 §21, and RFC 6228's 199
//! and RFC 4028's 422 that trunks send), instead of bare integers and private tables.

use std::fmt;

/// A SIP response's status code (100 to 699 on the wire; any `u16` is kept as it came).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SipStatus(u16);

impl SipStatus {
    /// 100 Trying.
    pub const TRYING: SipStatus = SipStatus(100);
    /// 180 Ringing.
    pub const RINGING: SipStatus = SipStatus(180);
    /// 183 Session Progress.
    pub const SESSION_PROGRESS: SipStatus = SipStatus(183);
    /// 200 OK.
    pub const OK: SipStatus = SipStatus(200);
    /// 401 Unauthorized.
    pub const UNAUTHORIZED: SipStatus = SipStatus(401);
    /// 403 Forbidden.
    pub const FORBIDDEN: SipStatus = SipStatus(403);
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: SipStatus = SipStatus(405);
    /// 407 Proxy Authentication Required.
    pub const PROXY_AUTHENTICATION_REQUIRED: SipStatus = SipStatus(407);
    /// 408 Request Timeout.
    pub const REQUEST_TIMEOUT: SipStatus = SipStatus(408);
    /// 481 Call/Transaction Does Not Exist.
    pub const CALL_DOES_NOT_EXIST: SipStatus = SipStatus(481);
    /// 486 Busy Here.
    pub const BUSY_HERE: SipStatus = SipStatus(486);
    /// 487 Request Terminated.
    pub const REQUEST_TERMINATED: SipStatus = SipStatus(487);
    /// 488 Not Acceptable Here.
    pub const NOT_ACCEPTABLE_HERE: SipStatus = SipStatus(488);
    /// 491 Request Pending.
    pub const REQUEST_PENDING: SipStatus = SipStatus(491);
    /// 500 Server Internal Error.
    pub const SERVER_INTERNAL_ERROR: SipStatus = SipStatus(500);
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: SipStatus = SipStatus(501);
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: SipStatus = SipStatus(503);
    /// 600 Busy Everywhere.
    pub const BUSY_EVERYWHERE: SipStatus = SipStatus(600);
    /// 603 Decline.
    pub const DECLINE: SipStatus = SipStatus(603);

    /// The status `code`.
    pub const fn new(code: u16) -> SipStatus {
        SipStatus(code)
    }

    /// The number.
    pub const fn code(self) -> u16 {
        self.0
    }

    /// 1xx: the request goes on.
    pub fn is_provisional(self) -> bool {
        (100..200).contains(&self.0)
    }

    /// 2xx.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }

    /// 200 and above: the transaction's answer.
    pub fn is_final(self) -> bool {
        self.0 >= 200
    }

    /// The usual reason phrase, for responses callverify sends and for people reading the
    /// log; empty for a code with none registered here.
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Trying",
            180 => "Ringing",
            181 => "Call Is Being Forwarded",
            182 => "Queued",
            183 => "Session Progress",
            199 => "Early Dialog Terminated",
            200 => "OK",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Moved Temporarily",
            305 => "Use Proxy",
            380 => "Alternative Service",
            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            410 => "Gone",
            413 => "Request Entity Too Large",
            414 => "Request-URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Unsupported URI Scheme",
            420 => "Bad Extension",
            421 => "Extension Required",
            422 => "Session Interval Too Small",
            423 => "Interval Too Brief",
            480 => "Temporarily Unavailable",
            481 => "Call/Transaction Does Not Exist",
            482 => "Loop Detected",
            483 => "Too Many Hops",
            484 => "Address Incomplete",
            485 => "Ambiguous",
            486 => "Busy Here",
            487 => "Request Terminated",
            488 => "Not Acceptable Here",
            491 => "Request Pending",
            493 => "Undecipherable",
            500 => "Server Internal Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Server Time-out",
            505 => "Version Not Supported",
            513 => "Message Too Large",
            600 => "Busy Everywhere",
            603 => "Decline",
            604 => "Does Not Exist Anywhere",
            606 => "Not Acceptable",
            _ => "",
        }
    }
}

impl From<u16> for SipStatus {
    fn from(code: u16) -> SipStatus {
        SipStatus(code)
    }
}

impl From<SipStatus> for u16 {
    fn from(s: SipStatus) -> u16 {
        s.0
    }
}

/// The number alone (`486`); [`SipStatus::reason`] gives the words.
impl fmt::Display for SipStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_has_its_class_and_phrase() {
        assert_eq!(SipStatus::BUSY_HERE.reason(), "Busy Here");
        assert_eq!(SipStatus::RINGING.to_string(), "180");
        assert_eq!(SipStatus::new(299).reason(), "");
        assert!(SipStatus::SESSION_PROGRESS.is_provisional());
        assert!(!SipStatus::SESSION_PROGRESS.is_final());
        assert!(SipStatus::OK.is_success() && SipStatus::OK.is_final());
        assert!(SipStatus::DECLINE.is_final() && !SipStatus::DECLINE.is_success());
        assert_eq!(u16::from(SipStatus::from(487)), 487);
        // The phrases callverify sends keep their words.
        for (s, words) in [
            (
                SipStatus::CALL_DOES_NOT_EXIST,
                "Call/Transaction Does Not Exist",
            ),
            (SipStatus::NOT_ACCEPTABLE_HERE, "Not Acceptable Here"),
            (SipStatus::REQUEST_PENDING, "Request Pending"),
            (SipStatus::METHOD_NOT_ALLOWED, "Method Not Allowed"),
            (SipStatus::NOT_IMPLEMENTED, "Not Implemented"),
        ] {
            assert_eq!(s.reason(), words);
        }
    }
}
