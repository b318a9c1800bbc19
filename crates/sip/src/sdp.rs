//! SDP for one audio stream: the offer callverify makes (RFC 4566) and the checking of the
//! callee's answer (RFC 3264 offer/answer).
//!
//! The offer lists PCMU, PCMA and telephone-event/8000 with a 20 ms ptime. The answer must
//! accept an audio stream on a port other than 0 with one of those codecs, and says where to
//! send media, which codec and payload type to use, and which payload type carries RFC 4733
//! events (if any).
//!
//! With SDES (RFC 4568), the offer carries an a=crypto line with callverify's SRTP master key
//! (in RTP/SAVP when the trunk requires SRTP, in RTP/AVP when SRTP is optional), and the
//! answer's a=crypto line with the same tag and suite gives the callee's key.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use media::Codec;
use media::srtp::{MASTER_LEN, Suite};

/// Whether a trunk's calls use SRTP with SDES keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SrtpPolicy {
    /// Plain RTP; no keys in the offer.
    #[default]
    Off,
    /// RTP/AVP with a=crypto: SRTP when the answer has a matching a=crypto, RTP otherwise.
    Optional,
    /// RTP/SAVP: an answer without a matching a=crypto is unusable.
    Mandatory,
}

/// An SDES key: the a=crypto tag, the suite and the master key and salt.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesKey {
    /// The a=crypto tag.
    pub tag: u32,
    /// The crypto suite.
    pub suite: Suite,
    /// Master key (16 bytes) then master salt (14 bytes).
    pub master: [u8; MASTER_LEN],
}

impl std::fmt::Debug for SdesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        write!(f, "SdesKey({} {})", self.tag, self.suite.name())
    }
}

impl SdesKey {
    /// A fresh AES_CM_128_HMAC_SHA1_80 master key and salt under tag 1, from the operating
    /// system's generator.
    pub fn random() -> SdesKey {
        let mut master = [0u8; MASTER_LEN];
        crate::random::fill(&mut master);
        SdesKey {
            tag: 1,
            suite: Suite::AesCm128HmacSha1_80,
            master,
        }
    }

    fn attribute(&self) -> String {
        format!(
            "a=crypto:{} {} inline:{}\r\n",
            self.tag,
            self.suite.name(),
            BASE64.encode(self.master)
        )
    }

    /// An a=crypto value (`tag suite inline:key[|lifetime]`), if it is one callverify can
    /// use (a supported suite, one key, no MKI, no session parameters).
    fn parse(value: &str) -> Option<SdesKey> {
        let mut f = value.split_whitespace();
        let tag = f.next()?.parse().ok()?;
        let suite = Suite::from_name(f.next()?)?;
        let key = f.next()?.strip_prefix("inline:")?;
        if f.next().is_some() {
            return None;
        }
        let mut parts = key.split('|');
        let master = BASE64.decode(parts.next()?).ok()?.try_into().ok()?;
        match (parts.next(), parts.next()) {
            (None, None) => {}
            // A lifetime (2^n or a number) is fine; an MKI is not supported.
            (Some(l), None) if !l.contains(':') => {}
            _ => return None,
        }
        Some(SdesKey { tag, suite, master })
    }
}

/// What callverify offers for SRTP: the trunk's policy (set by the user agent) and the key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sdes {
    /// The trunk's policy; the user agent sets it for the trunk a call goes to.
    pub policy: SrtpPolicy,
    /// callverify's key, when the call may use SRTP.
    pub key: Option<SdesKey>,
}

impl Sdes {
    fn offered(&self) -> Option<&SdesKey> {
        self.key.as_ref().filter(|_| self.policy != SrtpPolicy::Off)
    }
}

/// The payload type callverify offers for telephone-event.
pub const OFFER_TELEPHONE_EVENT_PT: u8 = 101;

/// What callverify offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Address for the o= and c= lines (where callverify receives RTP).
    pub address: IpAddr,
    /// Local RTP port.
    pub port: u16,
    /// Session id for the o= line.
    pub session_id: u64,
    /// Session version for the o= line (incremented on each new offer).
    pub version: u64,
    /// Codecs in order of preference.
    pub codecs: Vec<Codec>,
    /// SRTP keys (SDES).
    pub sdes: Sdes,
}

impl Offer {
    /// A fresh offer for one call: a random session id (RFC 4566 §5.2: numeric; 64 random
    /// bits, nothing else of the call) and, with `srtp`, a fresh SDES key, both from the
    /// operating system's generator ([`crate::random`]). The key is offered only where the
    /// trunk says: the user agent sets the policy for the trunk the call goes to.
    pub fn new(address: IpAddr, port: u16, codecs: Vec<Codec>, srtp: bool) -> Offer {
        Offer {
            address,
            port,
            session_id: crate::random::u64(),
            version: 1,
            codecs,
            sdes: Sdes {
                policy: SrtpPolicy::default(),
                key: srtp.then(SdesKey::random),
            },
        }
    }

    /// The SDP body, with CRLF line ends.
    pub fn to_sdp(&self) -> String {
        self.render(OFFER_TELEPHONE_EVENT_PT)
    }

    /// This description as an answer to a peer's offer: telephone-event under the payload
    /// type the offer used for it (RFC 3264 §6.1), or under ours when it had none.
    pub fn answer_sdp(&self, telephone_event_pt: Option<u8>) -> String {
        self.render(telephone_event_pt.unwrap_or(OFFER_TELEPHONE_EVENT_PT))
    }

    fn render(&self, te: u8) -> String {
        let ip = match self.address {
            IpAddr::V4(_) => "IP4",
            IpAddr::V6(_) => "IP6",
        };
        let mut s = String::new();
        let _ = write!(
            s,
            "v=0\r\no=callverify {} {} IN {ip} {}\r\ns=callverify\r\n",
            self.session_id, self.version, self.address
        );
        let _ = write!(s, "c=IN {ip} {}\r\nt=0 0\r\n", self.address);
        let pts: Vec<String> = self
            .codecs
            .iter()
            .map(|c| c.payload_type().to_string())
            .chain(std::iter::once(te.to_string()))
            .collect();
        let proto = match self.sdes.policy {
            SrtpPolicy::Mandatory if self.sdes.key.is_some() => "RTP/SAVP",
            _ => "RTP/AVP",
        };
        let _ = write!(s, "m=audio {} {proto} {}\r\n", self.port, pts.join(" "));
        for c in &self.codecs {
            let _ = write!(s, "a=rtpmap:{} {}/8000\r\n", c.payload_type(), c.name());
        }
        let _ = write!(s, "a=rtpmap:{te} telephone-event/8000\r\n");
        let _ = write!(s, "a=fmtp:{te} 0-15\r\na=ptime:20\r\na=sendrecv\r\n");
        if let Some(key) = self.sdes.offered() {
            s += &key.attribute();
        }
        s
    }
}

/// Media direction of the answer (RFC 3264 §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Both ways (the default).
    SendRecv,
    /// The callee only sends.
    SendOnly,
    /// The callee only receives: callverify would hear no key.
    RecvOnly,
    /// No media.
    Inactive,
}

/// What the answer settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Where to send RTP.
    pub remote: SocketAddr,
    /// The codec for audio (the first of the answer's list that was offered).
    pub codec: Codec,
    /// Its payload type.
    pub codec_pt: u8,
    /// Payload type of telephone-event/8000, if the callee accepted it.
    pub telephone_event_pt: Option<u8>,
    /// The callee's a=ptime, if any.
    pub ptime: Option<u32>,
    /// The media direction.
    pub direction: Direction,
    /// The callee's SRTP key, when the answer took callverify's SDES offer: SRTP both ways.
    pub sdes: Option<SdesKey>,
}

/// Why an answer is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A line is not `x=value` or a field does not parse.
    #[error("SDP line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// The body has no m=audio line.
    #[error("SDP answer has no audio m-line")]
    NoAudio,
    /// The audio stream was declined (port 0).
    #[error("SDP answer rejected the audio stream (port 0)")]
    Rejected,
    /// The audio transport is not RTP/AVP (or RTP/SAVP when SRTP was offered).
    #[error("SDP answer uses transport {0:?}, expected RTP/AVP")]
    Transport(String),
    /// SRTP was required (or RTP/SAVP answered) without a usable a=crypto for the offered one.
    #[error("SDP answer has no a=crypto matching the offered SRTP key")]
    NoSrtpKey,
    /// No offered codec is in the answer.
    #[error("SDP answer has no offered codec (answer formats: {0})")]
    NoCommonCodec(String),
    /// No c= line applies to the audio stream.
    #[error("SDP answer has no connection address for the audio stream")]
    NoConnection,
}

struct Media {
    /// An m=audio line (other media are parsed so that their a= lines attach to them).
    audio: bool,
    port: u16,
    proto: String,
    formats: Vec<String>,
    connection: Option<IpAddr>,
    rtpmaps: Vec<(u8, String)>,
    ptime: Option<u32>,
    direction: Option<Direction>,
    crypto: Vec<SdesKey>,
}

fn connection(value: &str, line: usize) -> Result<IpAddr, SdpError> {
    let err = |reason: String| SdpError::Syntax { line, reason };
    let mut f = value.split_whitespace();
    let (net, kind, addr) = (f.next(), f.next(), f.next());
    if net != Some("IN") || !matches!(kind, Some("IP4" | "IP6")) {
        return Err(err(format!(
            "c= expects IN IP4|IP6 <address>, found {value:?}"
        )));
    }
    // Multicast TTL and count suffixes (addr/ttl) are not used for calls; drop them.
    let addr = addr
        .ok_or_else(|| err("c= has no address".into()))?
        .split('/')
        .next()
        .unwrap_or("");
    addr.parse()
        .map_err(|_| err(format!("c= address {addr:?} is not an IP address")))
}

fn direction(attr: &str) -> Option<Direction> {
    match attr {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

/// Checks the callee's answer against `offer` and says what to use.
pub fn parse_answer(body: &str, offer: &Offer) -> Result<Answer, SdpError> {
    let session = Session::read(body)?;
    let audio_lines: Vec<&Media> = session.medias.iter().filter(|m| m.audio).collect();
    if audio_lines.is_empty() {
        return Err(SdpError::NoAudio);
    }
    let Some(audio) = audio_lines.iter().find(|m| m.port != 0) else {
        return Err(SdpError::Rejected);
    };
    let sdes = srtp_key(audio, &offer.sdes)?;
    let (codec, codec_pt, telephone_event_pt) = formats(audio, &offer.codecs)?;
    let ip = audio
        .connection
        .or(session.connection)
        .ok_or(SdpError::NoConnection)?;
    Ok(Answer {
        remote: SocketAddr::new(ip, audio.port),
        codec,
        codec_pt,
        telephone_event_pt,
        ptime: audio.ptime,
        direction: audio
            .direction
            .or(session.direction)
            .unwrap_or(Direction::SendRecv),
        sdes,
    })
}

/// An answer's lines, read: the session's connection and direction, and its media.
struct Session {
    connection: Option<IpAddr>,
    direction: Option<Direction>,
    medias: Vec<Media>,
}

impl Session {
    fn read(body: &str) -> Result<Session, SdpError> {
        let mut session = Session {
            connection: None,
            direction: None,
            medias: Vec::new(),
        };
        for (i, raw) in body.lines().enumerate() {
            let line = i + 1;
            let text = raw.trim_end_matches('\r');
            if text.is_empty() {
                continue;
            }
            let err = |reason: String| SdpError::Syntax { line, reason };
            let (key, value) = text
                .split_once('=')
                .ok_or_else(|| err(format!("expected x=value, found {text:?}")))?;
            if key.len() != 1 {
                return Err(err(format!("type {key:?} is not one letter")));
            }
            match key {
                "m" => session.medias.push(media_line(value, err)?),
                "c" => {
                    let addr = connection(value, line)?;
                    match session.medias.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => session.connection = Some(addr),
                    }
                }
                "a" => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    match session.medias.last_mut() {
                        Some(m) => attribute(m, name, arg, err)?,
                        None => session.direction = direction(name).or(session.direction),
                    }
                }
                _ => {}
            }
        }
        Ok(session)
    }
}

/// An `m=` line's value: `audio 6000 RTP/AVP 0 101`.
fn media_line(value: &str, err: impl Fn(String) -> SdpError) -> Result<Media, SdpError> {
    let mut f = value.split_whitespace();
    let kind = f.next().ok_or_else(|| err("m= is empty".into()))?;
    let port = f.next().ok_or_else(|| err("m= has no port".into()))?;
    let port = port.split('/').next().unwrap_or("");
    let port: u16 = port
        .parse()
        .map_err(|_| err(format!("m= port {port:?} is not a number")))?;
    let proto = f
        .next()
        .ok_or_else(|| err("m= has no transport".into()))?
        .to_string();
    Ok(Media {
        audio: kind == "audio",
        port,
        proto,
        formats: f.map(str::to_string).collect(),
        connection: None,
        rtpmaps: Vec::new(),
        ptime: None,
        direction: None,
        crypto: Vec::new(),
    })
}

/// An `a=` line of a media section.
fn attribute(
    m: &mut Media,
    name: &str,
    arg: &str,
    err: impl Fn(String) -> SdpError,
) -> Result<(), SdpError> {
    match name {
        "rtpmap" => {
            let (pt, enc) = arg
                .split_once(' ')
                .ok_or_else(|| err(format!("bad rtpmap {arg:?}")))?;
            let pt: u8 = pt
                .parse()
                .map_err(|_| err(format!("rtpmap payload type {pt:?}")))?;
            m.rtpmaps.push((pt, enc.trim().to_ascii_lowercase()));
        }
        "ptime" => m.ptime = arg.trim().parse().ok(),
        "crypto" => m.crypto.extend(SdesKey::parse(arg)),
        other => m.direction = direction(other).or(m.direction),
    }
    Ok(())
}

/// The callee's SRTP key, if the answer takes the offered one (by answering its tag with its
/// suite); an error when the answer's transport or the policy needs one and there is none.
fn srtp_key(audio: &Media, ours: &Sdes) -> Result<Option<SdesKey>, SdpError> {
    let offered = ours.offered();
    let savp = audio.proto.eq_ignore_ascii_case("RTP/SAVP");
    let avp = audio.proto.eq_ignore_ascii_case("RTP/AVP");
    if !(avp || savp && offered.is_some()) {
        return Err(SdpError::Transport(audio.proto.clone()));
    }
    let sdes = offered.and_then(|ours| {
        audio
            .crypto
            .iter()
            .find(|k| k.tag == ours.tag && k.suite == ours.suite)
            .cloned()
    });
    if sdes.is_none() && (savp || ours.policy == SrtpPolicy::Mandatory && offered.is_some()) {
        return Err(SdpError::NoSrtpKey);
    }
    Ok(sdes)
}

/// The first of the answer's formats that is an offered codec (its codec and payload type),
/// and its telephone-event payload type, if any.
fn formats(audio: &Media, offered: &[Codec]) -> Result<(Codec, u8, Option<u8>), SdpError> {
    let encoding = |pt: u8| {
        audio
            .rtpmaps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, e)| e.as_str())
    };
    let mut chosen = None;
    let mut te = None;
    for f in &audio.formats {
        let Ok(pt) = f.parse::<u8>() else { continue };
        let enc = encoding(pt);
        if te.is_none() && enc.is_some_and(|e| e.starts_with("telephone-event/8000")) {
            te = Some(pt);
            continue;
        }
        if chosen.is_some() {
            continue;
        }
        // A static payload type may come without rtpmap (RFC 3551).
        let codec = match enc {
            Some(e) if e.starts_with("pcmu/8000") => Some(Codec::Pcmu),
            Some(e) if e.starts_with("pcma/8000") => Some(Codec::Pcma),
            Some(_) => None,
            None if pt == 0 => Some(Codec::Pcmu),
            None if pt == 8 => Some(Codec::Pcma),
            None => None,
        };
        if let Some(c) = codec.filter(|c| offered.contains(c)) {
            chosen = Some((c, pt));
        }
    }
    let (codec, pt) = chosen.ok_or_else(|| SdpError::NoCommonCodec(audio.formats.join(" ")))?;
    Ok((codec, pt, te))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        Offer {
            address: "127.0.0.1".parse().unwrap(),
            port: 40000,
            session_id: 42,
            version: 1,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            sdes: Sdes::default(),
        }
    }

    fn keyed(policy: SrtpPolicy) -> Offer {
        Offer {
            sdes: Sdes {
                policy,
                key: Some(SdesKey {
                    tag: 1,
                    suite: Suite::AesCm128HmacSha1_80,
                    master: std::array::from_fn(|i| i as u8),
                }),
            },
            ..offer()
        }
    }

    #[test]
    fn a_new_offer_draws_its_session_id_and_key() {
        let addr = "127.0.0.1".parse().unwrap();
        let a = Offer::new(addr, 40000, vec![Codec::Pcmu], true);
        let b = Offer::new(addr, 40000, vec![Codec::Pcmu], true);
        assert_ne!(a.session_id, b.session_id);
        let (ka, kb) = (a.sdes.key.clone().unwrap(), b.sdes.key.unwrap());
        assert_ne!(ka.master, kb.master);
        assert_eq!((ka.tag, ka.suite), (1, Suite::AesCm128HmacSha1_80));
        // Offered only once the user agent sets the trunk's policy.
        assert_eq!(a.sdes.policy, SrtpPolicy::Off);
        assert!(!a.to_sdp().contains("a=crypto"));
        let plain = Offer::new(addr, 40000, vec![Codec::Pcmu], false);
        assert_eq!(plain.sdes.key, None);
        assert_eq!((plain.port, plain.version), (40000, 1));
    }

    #[test]
    fn the_origin_and_connection_name_the_offers_address_in_offers_and_answers() {
        // Behind a NAT the offer is made for the public address; RTP is bound elsewhere.
        let public = Offer {
            address: "198.51.100.7".parse().unwrap(),
            ..offer()
        };
        for sdp in [public.to_sdp(), public.answer_sdp(Some(96))] {
            assert!(
                sdp.contains("o=callverify 42 1 IN IP4 198.51.100.7\r\n")
                    && sdp.contains("c=IN IP4 198.51.100.7\r\n")
                    && sdp.contains("m=audio 40000 "),
                "{sdp}"
            );
        }
        let v6 = Offer {
            address: "2001:db8::7".parse().unwrap(),
            ..offer()
        };
        let sdp = v6.to_sdp();
        assert!(
            sdp.contains("o=callverify 42 1 IN IP6 2001:db8::7\r\n")
                && sdp.contains("c=IN IP6 2001:db8::7\r\n"),
            "{sdp}"
        );
    }

    #[test]
    fn srtp_offers_and_answers() {
        // Off: no key in the offer, even when there is one.
        let s = keyed(SrtpPolicy::Off).to_sdp();
        assert!(s.contains("RTP/AVP") && !s.contains("a=crypto"), "{s}");
        let key = "inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";
        let s = keyed(SrtpPolicy::Optional).to_sdp();
        assert!(s.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{s}");
        assert!(
            s.contains(&format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 {key}\r\n")),
            "{s}"
        );
        let s = keyed(SrtpPolicy::Mandatory).to_sdp();
        assert!(s.contains("m=audio 40000 RTP/SAVP 0 8 101\r\n"), "{s}");
        // A baresip-style answer: its own key under our tag.
        let theirs = "inline:ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXowMTIzNDU2";
        let answer = |proto: &str, crypto: &str| {
            format!(
                "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 {proto} 0 101\r\na=rtpmap:101 telephone-event/8000\r\n{crypto}"
            )
        };
        let with_key = format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 {theirs}|2^31\r\n");
        for policy in [SrtpPolicy::Optional, SrtpPolicy::Mandatory] {
            for proto in ["RTP/AVP", "RTP/SAVP"] {
                let a = parse_answer(&answer(proto, &with_key), &keyed(policy)).unwrap();
                let k = a.sdes.expect("the callee's key");
                assert_eq!(&k.master[..3], b"def");
                assert_eq!(format!("{k:?}"), "SdesKey(1 AES_CM_128_HMAC_SHA1_80)");
            }
        }
        // Optional and no key in an RTP/AVP answer: plain RTP.
        let a = parse_answer(&answer("RTP/AVP", ""), &keyed(SrtpPolicy::Optional)).unwrap();
        assert_eq!(a.sdes, None);
        // Mandatory without a key, a key under another tag or suite, an MKI, or SAVP
        // without a key: unusable.
        for (policy, body) in [
            (SrtpPolicy::Mandatory, answer("RTP/AVP", "")),
            (SrtpPolicy::Mandatory, answer("RTP/SAVP", "")),
            (SrtpPolicy::Optional, answer("RTP/SAVP", "")),
            (
                SrtpPolicy::Mandatory,
                answer("RTP/SAVP", &with_key.replace("crypto:1", "crypto:2")),
            ),
            (
                SrtpPolicy::Mandatory,
                answer("RTP/SAVP", &with_key.replace("_80", "_32")),
            ),
            (
                SrtpPolicy::Mandatory,
                answer("RTP/SAVP", &with_key.replace("2^31", "2^31|1:4")),
            ),
        ] {
            assert_eq!(
                parse_answer(&body, &keyed(policy)),
                Err(SdpError::NoSrtpKey),
                "{body}"
            );
        }
        // A key answered to an offer without one is ignored; SAVP is refused.
        let a = parse_answer(&answer("RTP/AVP", &with_key), &offer()).unwrap();
        assert_eq!(a.sdes, None);
        assert_eq!(
            parse_answer(&answer("RTP/SAVP", &with_key), &offer()),
            Err(SdpError::Transport("RTP/SAVP".into()))
        );
    }

    #[test]
    fn the_offer() {
        let s = offer().to_sdp();
        assert!(s.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{s}");
        assert!(
            s.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n")
        );
        assert!(s.contains("c=IN IP4 127.0.0.1\r\n"));
        let v6 = Offer {
            address: "::1".parse().unwrap(),
            ..offer()
        }
        .to_sdp();
        assert!(v6.contains("c=IN IP6 ::1\r\n") && v6.contains("o=callverify 42 1 IN IP6 ::1"));
        // Our own offer read as an answer selects PCMU and 101.
        let a = parse_answer(&s, &offer()).unwrap();
        assert_eq!(
            (a.codec, a.codec_pt, a.telephone_event_pt),
            (Codec::Pcmu, 0, Some(101))
        );
    }

    #[test]
    fn sipp_style_answer() {
        let body = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let a = parse_answer(body, &offer()).unwrap();
        assert_eq!(a.remote, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(
            (a.codec, a.telephone_event_pt, a.direction),
            (Codec::Pcmu, None, Direction::SendRecv)
        );
    }

    #[test]
    fn softphone_style_answer_with_media_level_connection() {
        let body = "v=0\no=- 1 2 IN IP6 ::1\ns=baresip\nt=0 0\nm=audio 10002 RTP/AVP 8 96\nc=IN IP6 ::1\na=rtpmap:8 PCMA/8000\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15\na=ptime:20\na=sendrecv\n";
        let a = parse_answer(body, &offer()).unwrap();
        assert_eq!(a.remote, "[::1]:10002".parse().unwrap());
        assert_eq!(
            (a.codec, a.codec_pt, a.telephone_event_pt, a.ptime),
            (Codec::Pcma, 8, Some(96), Some(20))
        );
    }

    #[test]
    fn first_offered_codec_of_the_answer_wins_and_video_is_skipped() {
        let body = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=sendonly\r\nm=audio 7000 RTP/AVP 9 8 0\r\na=rtpmap:9 G722/8000\r\na=recvonly\r\n";
        let a = parse_answer(body, &offer()).unwrap();
        assert_eq!(
            (a.codec, a.codec_pt, a.direction),
            (Codec::Pcma, 8, Direction::RecvOnly)
        );
        let pcmu_only = Offer {
            codecs: vec![Codec::Pcmu],
            ..offer()
        };
        assert_eq!(parse_answer(body, &pcmu_only).unwrap().codec, Codec::Pcmu);
    }

    #[test]
    fn unusable_answers() {
        let o = offer();
        assert_eq!(
            parse_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 RTP/AVP 96\r\n", &o),
            Err(SdpError::NoAudio)
        );
        assert_eq!(parse_answer("", &o), Err(SdpError::NoAudio));
        assert_eq!(
            parse_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n", &o),
            Err(SdpError::Rejected)
        );
        assert_eq!(
            parse_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/SAVP 0\r\n", &o),
            Err(SdpError::Transport("RTP/SAVP".into()))
        );
        assert_eq!(
            parse_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 9 18\r\n", &o),
            Err(SdpError::NoCommonCodec("9 18".into()))
        );
        assert_eq!(
            parse_answer("v=0\r\nm=audio 5 RTP/AVP 0\r\n", &o),
            Err(SdpError::NoConnection)
        );
        for (body, line) in [
            ("v=0\r\nthis is not sdp\r\n", 2),
            ("v=0\r\nc=IN IP4 not-an-ip\r\n", 2),
            ("v=0\r\nm=audio x RTP/AVP 0\r\n", 2),
            (
                "v=0\r\nm=audio 5 RTP/AVP 0\r\na=rtpmap:300 PCMU/8000\r\n",
                3,
            ),
            ("xy=1\r\n", 1),
        ] {
            match parse_answer(body, &o) {
                Err(SdpError::Syntax { line: l, .. }) => assert_eq!(l, line, "{body:?}"),
                other => panic!("{body:?}: {other:?}"),
            }
        }
    }
}
