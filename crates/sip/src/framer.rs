//! Framing a SIP byte stream (TCP, TLS) into messages by Content-Length (RFC 3261 §18.3),
//! with a bound on each message and no re-scan of bytes already searched.

use crate::message::{MAX_MESSAGE, header_end};

/// Splits a TCP byte stream into messages by Content-Length (RFC 3261 §18.3).
#[derive(Default, Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes at the start of `buf` already searched for the end of the headers (a peer that
    /// sends a byte at a time costs one look at each byte, not one at all of them each time).
    searched: usize,
}

/// The stream cannot be framed any more (the connection should be closed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A header section or message larger than [`MAX_MESSAGE`].
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    /// A message without a readable Content-Length, or with several that differ.
    #[error("message on a stream without one valid Content-Length")]
    NoLength,
}

impl Framer {
    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        // Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped.
        let lead = self
            .buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(self.buf.len());
        self.buf.drain(..lead);
        self.searched = self.searched.saturating_sub(lead);
        let from = self.searched.saturating_sub(3);
        let Some(end) = header_end(&self.buf[from..]).map(|e| e + from) else {
            self.searched = self.buf.len();
            return if self.buf.len() > MAX_MESSAGE {
                Err(FrameError::TooLarge)
            } else {
                Ok(None)
            };
        };
        let head = String::from_utf8_lossy(&self.buf[..end]);
        let mut len = None;
        for line in head.split("\r\n").skip(1) {
            if let Some((n, v)) = line.split_once(':') {
                let n = n.trim();
                if n.eq_ignore_ascii_case("Content-Length") || n.eq_ignore_ascii_case("l") {
                    let v = v
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| FrameError::NoLength)?;
                    if len.is_some_and(|l| l != v) {
                        return Err(FrameError::NoLength);
                    }
                    len = Some(v);
                }
            }
        }
        let len = len.ok_or(FrameError::NoLength)?;
        // A length near usize::MAX must not wrap around to a small total.
        let total = len
            .checked_add(end + 4)
            .filter(|&t| t <= MAX_MESSAGE)
            .ok_or(FrameError::TooLarge)?;
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        self.searched = 0;
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Builder;
    use rsip::Method;

    #[test]
    fn a_stream_is_framed_by_content_length() {
        let mut f = Framer::default();
        let one = Builder::request(&Method::Options, "sip:a@127.0.0.1")
            .header("Call-ID", "x")
            .body("text/plain", "hello")
            .build();
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(&one);
        stream.extend_from_slice(&one);
        let (a, b) = stream.split_at(30);
        f.push(a);
        assert_eq!(f.next_message().unwrap(), None);
        f.push(b);
        assert_eq!(f.next_message().unwrap().unwrap(), one);
        assert_eq!(f.next_message().unwrap().unwrap(), one);
        assert_eq!(f.next_message().unwrap(), None);
        f.push(b"OPTIONS sip:a SIP/2.0\r\nCall-ID: y\r\n\r\n");
        assert_eq!(f.next_message(), Err(FrameError::NoLength));
    }

    /// A Content-Length near the largest usize wrapped the total around: in release builds
    /// to 0, an empty "message" handed out again and again without end (the connection's
    /// task spun and queued them until memory ran out); in debug builds a panic.
    #[test]
    fn a_huge_or_doubled_content_length_closes_the_stream() {
        for head in [
            "OPTIONS sip:x SIP/2.0\r\nContent-Length: 18446744073709551615\r\n\r\n",
            "OPTIONS sip:x SIP/2.0\r\nContent-Length: 18446744073709551553\r\n\r\n",
            "OPTIONS sip:x SIP/2.0\r\nl: 65536\r\n\r\n",
        ] {
            let mut f = Framer::default();
            f.push(head.as_bytes());
            assert_eq!(f.next_message(), Err(FrameError::TooLarge), "{head}");
        }
        let mut f = Framer::default();
        f.push(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\nContent-Length: 4\r\n\r\nbody");
        assert_eq!(f.next_message(), Err(FrameError::NoLength));
    }

    /// A message that arrives a byte at a time is framed the same.
    #[test]
    fn a_message_a_byte_at_a_time_is_framed() {
        let one = Builder::request(&Method::Options, "sip:a@127.0.0.1")
            .header("Call-ID", "x")
            .body("text/plain", "hello")
            .build();
        let mut f = Framer::default();
        let mut got = Vec::new();
        for b in one.iter().chain(one.iter()) {
            f.push(&[*b]);
            while let Some(m) = f.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![one.clone(), one]);
    }
}
