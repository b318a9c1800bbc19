//! SIP messages on rsip: parsing what arrives into the few facts the user agent needs,
//! building what it sends, and framing a TCP byte stream into messages.
//!
//! rsip tokenizes the start line and headers; this module adds what it lacks for real
//! traffic: compact header names (`v:`, `i:`, ...), folded header lines, the body cut at
//! Content-Length, and limits on size. Everything that arrives from the network is checked
//! here and turned into a typed error, never a panic.

use std::borrow::Cow;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use rsip::headers::ToTypedHeader;
use rsip::message::{HasHeaders, HeadersExt};
use rsip::{Header, Method, SipMessage};

/// The largest message accepted (UDP datagrams and TCP frames alike).
pub const MAX_MESSAGE: usize = 65_535;

/// Why bytes are not a usable SIP message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Larger than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is larger than {MAX_MESSAGE}")]
    TooLarge(usize),
    /// rsip could not tokenize it.
    #[error("not a SIP message: {0}")]
    Syntax(String),
    /// A header every request and response needs is missing or malformed.
    #[error("bad or missing {0} header")]
    Header(&'static str),
    /// The body is shorter than Content-Length says.
    #[error("body has {found} bytes, Content-Length says {expected}")]
    Truncated {
        /// Content-Length.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
}

/// The topmost Via of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopVia {
    /// The raw header value of this one Via (without the others of a comma list).
    pub value: String,
    /// The branch parameter, if any.
    pub branch: Option<String>,
    /// Whether `rport` is present (RFC 3581).
    pub rport: bool,
}

/// A parsed message with the fields the user agent routes and matches on.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// The message as rsip parsed it (body cut at Content-Length).
    pub msg: SipMessage,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// CSeq method.
    pub cseq_method: Method,
    /// The tag of From, if any.
    pub from_tag: Option<String>,
    /// The tag of To, if any.
    pub to_tag: Option<String>,
    /// The topmost Via.
    pub via: TopVia,
    /// A response's reason phrase as sent.
    reason: String,
    /// A request's Request-URI as sent.
    uri: String,
}

impl Incoming {
    /// The status code of a response, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match &self.msg {
            SipMessage::Response(r) => Some(r.status_code.code()),
            SipMessage::Request(_) => None,
        }
    }

    /// The reason phrase of a response as sent (empty for a request).
    pub fn reason(&self) -> String {
        self.reason.clone()
    }

    /// The Request-URI of a request as sent (empty for a response).
    pub fn request_uri(&self) -> &str {
        &self.uri
    }

    /// The request method, `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.msg {
            SipMessage::Request(r) => Some(&r.method),
            SipMessage::Response(_) => None,
        }
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        self.msg.body()
    }

    /// Values of every header of this name, in order (compact forms already expanded).
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = String> + 'a {
        header_values(&self.msg, name)
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).next()
    }

    /// The URI of the first Contact (without angle brackets and header parameters), as sent.
    pub fn contact_uri(&self) -> Option<String> {
        let first = self.headers("Contact").flat_map(|v| list(&v)).next()?;
        let uri = addr_spec(&first);
        (!uri.is_empty()).then(|| uri.to_string())
    }

    /// The Record-Route entries in order, each as sent (`<uri;params>`).
    pub fn record_route(&self) -> Vec<String> {
        self.headers("Record-Route")
            .flat_map(|v| list(&v))
            .collect()
    }

    /// The source address a response to this request goes to (RFC 3261 §18.2.2 with
    /// RFC 3581 rport): the packet's source when the request came over UDP.
    pub fn response_via(&self, from: SocketAddr) -> String {
        let mut v = self.via.value.clone();
        let sent_by_host = v
            .split_whitespace()
            .nth(1)
            .map(|s| s.split(';').next().unwrap_or(""))
            .unwrap_or("");
        let host_ip = host_of(sent_by_host).and_then(|h| h.parse::<IpAddr>().ok());
        if host_ip != Some(from.ip()) && !has_param(&v, "received") {
            let _ = write!(v, ";received={}", from.ip());
        }
        if self.via.rport {
            v = fill_rport(&v, from.port());
        }
        v
    }
}

/// The header's name and value as strings (`None` for those rsip keeps typed only).
fn split_header(h: &Header) -> Option<(String, String)> {
    let s = h.to_string();
    let (n, v) = s.split_once(':')?;
    Some((n.trim().to_string(), v.trim().to_string()))
}

/// Values of every header of this name, in order.
fn header_values<'a>(msg: &'a SipMessage, name: &'a str) -> impl Iterator<Item = String> + 'a {
    msg.headers().iter().filter_map(move |h| {
        let (n, v) = split_header(h)?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// The `tag` parameter of a From or To value (after the `>` of a name-addr).
fn tag_of(value: &str) -> Option<String> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    param(&format!("x{params}"), "tag").filter(|t| !t.is_empty())
}

/// Splits a header value list at commas outside quotes and angle brackets.
pub fn list(value: &str) -> Vec<String> {
    let (mut out, mut cur) = (Vec::new(), String::new());
    let (mut quoted, mut angle) = (false, false);
    for ch in value.chars() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The URI of a name-addr (`"x" <uri>;p`) or addr-spec (`uri;p`).
pub fn addr_spec(entry: &str) -> &str {
    match (entry.find('<'), entry.rfind('>')) {
        (Some(a), Some(b)) if a < b => &entry[a + 1..b],
        _ => entry.split(';').next().unwrap_or("").trim(),
    }
}

fn host_of(sent_by: &str) -> Option<&str> {
    if let Some(rest) = sent_by.strip_prefix('[') {
        return rest.split(']').next();
    }
    sent_by.split(':').next()
}

fn has_param(v: &str, name: &str) -> bool {
    v.split(';').skip(1).any(|p| {
        p.split('=')
            .next()
            .is_some_and(|k| k.trim().eq_ignore_ascii_case(name))
    })
}

fn fill_rport(v: &str, port: u16) -> String {
    let mut parts: Vec<String> = v.split(';').map(str::to_string).collect();
    for p in parts.iter_mut().skip(1) {
        if p.trim().eq_ignore_ascii_case("rport")
            || p.trim().to_ascii_lowercase().starts_with("rport=")
        {
            *p = format!("rport={port}");
        }
    }
    parts.join(";")
}

/// A parameter of a header value (`;name=value`), unquoted.
pub fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

const COMPACT: [(u8, &str); 11] = [
    (b'v', "Via"),
    (b'f', "From"),
    (b't', "To"),
    (b'i', "Call-ID"),
    (b'm', "Contact"),
    (b'l', "Content-Length"),
    (b'c', "Content-Type"),
    (b'k', "Supported"),
    (b's', "Subject"),
    (b'e', "Content-Encoding"),
    (b'o', "Event"),
];

/// Where the header section ends (the index of the blank line's CRLFCRLF), if it does.
fn header_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Expands compact header names and unfolds continuation lines in the header section;
/// borrows when there is nothing to change.
fn normalize(bytes: &[u8]) -> Cow<'_, [u8]> {
    let Some(end) = header_end(bytes) else {
        return Cow::Borrowed(bytes);
    };
    let head = &bytes[..end];
    let compact_name = |line: &[u8]| -> Option<&'static str> {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].trim_ascii_end();
        if name.len() != 1 {
            return None;
        }
        COMPACT
            .iter()
            .find(|(c, _)| name[0].eq_ignore_ascii_case(c))
            .map(|(_, full)| *full)
    };
    let needs = head
        .split(|&b| b == b'\n')
        .skip(1)
        .any(|line| matches!(line.first(), Some(b' ' | b'\t')) || compact_name(line).is_some());
    if !needs {
        return Cow::Borrowed(bytes);
    }
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len() + 64);
    for (i, line) in head.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if i > 0 && matches!(line.first(), Some(b' ' | b'\t')) {
            // A folded line continues the previous header: join with one space.
            let trimmed = line
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .map_or(&[][..], |p| &line[p..]);
            // rsip does not take whitespace before a parameter's ';', so none is added there.
            if !matches!(trimmed.first(), Some(b';' | b',')) {
                out.push(b' ');
            }
            out.extend_from_slice(trimmed);
            continue;
        }
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        match compact_name(line).filter(|_| i > 0) {
            Some(full) => {
                let colon = line.iter().position(|&b| b == b':').unwrap_or(0);
                out.extend_from_slice(full.as_bytes());
                out.extend_from_slice(&line[colon..]);
            }
            None => out.extend_from_slice(line),
        }
    }
    out.extend_from_slice(&bytes[end..]);
    Cow::Owned(out)
}

/// The Content-Length, if there is one; an error when there are several that differ (a
/// message framed one way by one reader and another way by another).
fn content_length(msg: &SipMessage) -> Result<Option<usize>, ParseError> {
    let mut len = None;
    for v in header_values(msg, "Content-Length") {
        let v = v
            .parse::<usize>()
            .map_err(|_| ParseError::Header("Content-Length"))?;
        if len.is_some_and(|l| l != v) {
            return Err(ParseError::Header("Content-Length"));
        }
        len = Some(v);
    }
    Ok(len)
}

/// Parses one message (a UDP datagram or one TCP frame).
pub fn parse(bytes: &[u8]) -> Result<Incoming, ParseError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(ParseError::TooLarge(bytes.len()));
    }
    let (bytes, reason, uri) = start_line(normalize(bytes));
    let mut msg = SipMessage::try_from(&bytes[..]).map_err(|e| {
        // rsip quotes the input in its errors: keep the first characters only.
        ParseError::Syntax(e.to_string().chars().take(120).collect())
    })?;
    if let Some(len) = content_length(&msg)? {
        let body = msg.body_mut();
        if body.len() < len {
            return Err(ParseError::Truncated {
                expected: len,
                found: body.len(),
            });
        }
        body.truncate(len);
    }
    let call_id = msg
        .call_id_header()
        .map_err(|_| ParseError::Header("Call-ID"))?
        .to_string();
    let call_id = call_id
        .split_once(':')
        .map_or(call_id.as_str(), |(_, v)| v)
        .trim()
        .to_string();
    if call_id.is_empty() {
        return Err(ParseError::Header("Call-ID"));
    }
    let cseq = msg
        .cseq_header()
        .ok()
        .and_then(|c| c.typed().ok())
        .ok_or(ParseError::Header("CSeq"))?;
    // Tags are read from the raw values: rsip's typed From/To reject IPv6 hosts.
    let from_tag = tag_of(
        &header_values(&msg, "From")
            .next()
            .ok_or(ParseError::Header("From"))?,
    );
    let to_tag = tag_of(
        &header_values(&msg, "To")
            .next()
            .ok_or(ParseError::Header("To"))?,
    );
    let via = top_via(&msg)?;
    Ok(Incoming {
        msg,
        call_id,
        cseq: cseq.seq,
        cseq_method: cseq.method,
        from_tag,
        to_tag,
        via,
        reason,
        uri,
    })
}

/// Reads the start line of `bytes`: a response's reason phrase (128 characters at most), or
/// a request's Request-URI as text, the request then given a stand-in Request-URI (rsip 0.4
/// rejects IPv6 references such as `[::1]` in URIs). Returns the bytes to parse, the reason
/// and the URI (each empty when the message has none).
fn start_line(mut bytes: Cow<'_, [u8]>) -> (Cow<'_, [u8]>, String, String) {
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    let first_line = String::from_utf8_lossy(&bytes[..line_end]).into_owned();
    let mut reason = String::new();
    let mut uri = String::new();
    if first_line.starts_with("SIP/") {
        reason = first_line
            .splitn(3, ' ')
            .nth(2)
            .unwrap_or("")
            .trim()
            .chars()
            .take(128)
            .collect();
    } else if let [method, u, version] = first_line.split(' ').collect::<Vec<_>>()[..] {
        uri = u.to_string();
        let mut owned = format!("{method} sip:request-uri.invalid {version}").into_bytes();
        owned.extend_from_slice(&bytes[line_end..]);
        bytes = Cow::Owned(owned);
    }
    (bytes, reason, uri)
}

/// The top Via: the first of the first Via header's comma list, which must be `SIP/2.0/…`.
fn top_via(msg: &SipMessage) -> Result<TopVia, ParseError> {
    let via_raw = msg
        .via_header()
        .map_err(|_| ParseError::Header("Via"))?
        .to_string();
    let via_raw = via_raw
        .split_once(':')
        .map_or(via_raw.as_str(), |(_, v)| v)
        .trim();
    // Several Vias may share one line; the top one is the first of the comma list.
    let value = via_raw.split(',').next().unwrap_or("").trim().to_string();
    if !value.to_ascii_uppercase().starts_with("SIP/2.0/") {
        return Err(ParseError::Header("Via"));
    }
    Ok(TopVia {
        branch: param(&value, "branch"),
        rport: has_param(&value, "rport"),
        value,
    })
}

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

/// A request or response being built: the start line, headers and body as text.
#[derive(Clone, Debug)]
pub struct Builder {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Builder {
    /// A request line `METHOD uri SIP/2.0`.
    pub fn request(method: &Method, uri: &str) -> Builder {
        Builder {
            start: format!("{method} {uri} SIP/2.0"),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A status line `SIP/2.0 code reason`.
    pub fn response(code: u16, reason: &str) -> Builder {
        Builder {
            start: format!("SIP/2.0 {code} {reason}"),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Builder {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Builder {
        self.headers
            .push(("Content-Type".into(), content_type.to_string()));
        self.body = body.into();
        self
    }

    /// The bytes on the wire, with Content-Length.
    pub fn build(self) -> Vec<u8> {
        let mut s = self.start;
        s.push_str("\r\n");
        for (n, v) in &self.headers {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response to `req` with its Via, From, To (with `to_tag` added if To has none), Call-ID
/// and CSeq, sent back to `from`.
pub fn response_to(
    req: &Incoming,
    from: SocketAddr,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
) -> Builder {
    let mut b = Builder::response(code, reason);
    let mut first_via = true;
    for h in req.msg.headers().iter() {
        let Some((name, value)) = split_header(h) else {
            continue;
        };
        match h {
            Header::Via(_) => {
                if first_via {
                    first_via = false;
                    // The top Via gets received/rport; the rest of its line stays as it was.
                    let rest: Vec<&str> = value.splitn(2, ',').collect();
                    let mut v = req.response_via(from);
                    if let Some(r) = rest.get(1) {
                        v.push_str(", ");
                        v.push_str(r.trim());
                    }
                    b = b.header("Via", v);
                } else {
                    b = b.header("Via", value);
                }
            }
            Header::From(_) | Header::CallId(_) | Header::CSeq(_) => b = b.header(&name, value),
            Header::To(_) => {
                let v = match (req.to_tag.is_none(), to_tag) {
                    (true, Some(tag)) => format!("{value};tag={tag}"),
                    _ => value,
                };
                b = b.header("To", v);
            }
            _ => {}
        }
    }
    b
}

/// The host part of an address for a URI: `1.2.3.4` or `[::1]`.
pub fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: &str = "SIP/2.0 180 Ringing\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport=5070;received=127.0.0.1\r\n\
        From: \"callverify\" <sip:callverify@127.0.0.1>;tag=abc\r\n\
        To: <sip:+81901234567@127.0.0.1>;tag=xyz\r\n\
        Call-ID: 1234@host\r\n\
        CSeq: 1 INVITE\r\n\
        Contact: <sip:sipp@127.0.0.1:5060;transport=udp>\r\n\
        Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn a_response_gives_its_routing_facts() {
        let m = parse(RESPONSE.as_bytes()).unwrap();
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.call_id, "1234@host");
        assert_eq!((m.cseq, m.cseq_method), (1, Method::Invite));
        assert_eq!(m.from_tag.as_deref(), Some("abc"));
        assert_eq!(m.to_tag.as_deref(), Some("xyz"));
        assert_eq!(m.via.branch.as_deref(), Some("z9hG4bK-1"));
        assert!(m.via.rport);
        assert_eq!(
            m.contact_uri().as_deref(),
            Some("sip:sipp@127.0.0.1:5060;transport=udp")
        );
        assert_eq!(
            m.record_route(),
            vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
        );
    }

    #[test]
    fn compact_names_and_folded_lines_are_understood() {
        let raw = "BYE sip:callverify@127.0.0.1:5070 SIP/2.0\r\n\
            v: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-2;rport\r\n\
            f: <sip:sipp@127.0.0.1>;tag=xyz\r\n\
            t: <sip:callverify@127.0.0.1>\r\n  ;tag=abc\r\n\
            i: 99@h\r\n\
            CSeq: 2 BYE\r\n\
            l: 4\r\n\r\nbodyEXTRA";
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.method(), Some(&Method::Bye));
        assert_eq!(m.call_id, "99@h");
        assert_eq!(m.to_tag.as_deref(), Some("abc"));
        assert_eq!(m.body(), b"body");
        let via = m.response_via("127.0.0.1:40000".parse().unwrap());
        assert_eq!(
            via,
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-2;rport=40000"
        );
        let via = m.response_via("10.0.0.9:5060".parse().unwrap());
        assert!(
            via.ends_with(";rport=5060;received=10.0.0.9") || via.contains("received=10.0.0.9")
        );
    }

    #[test]
    fn ipv6_hosts_and_addr_specs_keep_their_tags() {
        let raw = RESPONSE
            .replace(
                "From: \"callverify\" <sip:callverify@127.0.0.1>;tag=abc",
                "From: <sip:callverify@[::1]:5070>;tag=abc",
            )
            .replace(
                "To: <sip:+81901234567@127.0.0.1>;tag=xyz",
                "To: sip:+81901234567@[::1];tag=xyz",
            );
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.from_tag.as_deref(), Some("abc"));
        assert_eq!(m.to_tag.as_deref(), Some("xyz"));
        let bye = "BYE sip:callverify@[::1]:5070;transport=udp SIP/2.0\r\n\
            Via: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK-3;rport\r\n\
            From: <sip:sipp@[::1]:5060>;tag=xyz\r\n\
            To: <sip:callverify@[::1]:5070>;tag=abc\r\n\
            Call-ID: 7@h\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        let m = parse(bye.as_bytes()).unwrap();
        assert_eq!(m.request_uri(), "sip:callverify@[::1]:5070;transport=udp");
        assert_eq!(
            (m.from_tag.as_deref(), m.to_tag.as_deref()),
            (Some("xyz"), Some("abc"))
        );
        assert_eq!(
            m.response_via("[::1]:5060".parse().unwrap()),
            "SIP/2.0/UDP [::1]:5060;branch=z9hG4bK-3;rport=5060"
        );
    }

    #[test]
    fn broken_messages_are_errors() {
        assert!(matches!(parse(b""), Err(ParseError::Syntax(_))));
        // rsip errors quote the input: one with multi-byte text is cut on a character boundary.
        let long = format!("INVITE sip:x SIP/2.0\r\nVia {}\r\n\r\n", "é".repeat(100));
        assert!(matches!(parse(long.as_bytes()), Err(ParseError::Syntax(_))));
        assert!(matches!(
            parse(b"HELLO\r\n\r\n"),
            Err(ParseError::Syntax(_))
        ));
        let no_callid = RESPONSE.replace("Call-ID: 1234@host\r\n", "");
        assert_eq!(
            parse(no_callid.as_bytes()).unwrap_err(),
            ParseError::Header("Call-ID")
        );
        let short = RESPONSE.replace("Content-Length: 0", "Content-Length: 10");
        assert!(matches!(
            parse(short.as_bytes()),
            Err(ParseError::Truncated { expected: 10, .. })
        ));
        assert!(matches!(
            parse(&vec![b'a'; MAX_MESSAGE + 1]),
            Err(ParseError::TooLarge(_))
        ));
    }

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
        let two = RESPONSE.replace("Content-Length: 0", "Content-Length: 0\r\nl: 3");
        assert_eq!(
            parse(two.as_bytes()).unwrap_err(),
            ParseError::Header("Content-Length")
        );
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
