//! G.711 μ-law and A-law, bit-exact with the ITU-T G.711 tables.
//!
//! The arithmetic is that of the ITU-T G.191 reference (one's complement for negative
//! inputs, 16-bit left-justified linear samples); the tests check every code against the
//! tables derived from G.711's segment definitions and every input against an independent
//! implementation.

/// A G.711 companding law, with its static RTP payload type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// μ-law, RTP payload type 0 (PCMU).
    Pcmu,
    /// A-law, RTP payload type 8 (PCMA).
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Encodes one 16-bit linear sample.
    pub fn encode(self, x: i16) -> u8 {
        match self {
            Codec::Pcmu => ulaw_encode(x),
            Codec::Pcma => alaw_encode(x),
        }
    }

    /// Decodes one code to 16-bit linear.
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => ULAW_DECODE[code as usize],
            Codec::Pcma => ALAW_DECODE[code as usize],
        }
    }

    /// Encodes `pcm` into `out` (which must be as long).
    pub fn encode_into(self, pcm: &[i16], out: &mut [u8]) {
        for (o, &x) in out.iter_mut().zip(pcm) {
            *o = self.encode(x);
        }
    }

    /// Decodes `codes` into `out` (which must be as long).
    pub fn decode_into(self, codes: &[u8], out: &mut [i16]) {
        let table = match self {
            Codec::Pcmu => &ULAW_DECODE,
            Codec::Pcma => &ALAW_DECODE,
        };
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = table[c as usize];
        }
    }

    /// The code for silence (encoded 0).
    pub fn silence(self) -> u8 {
        self.encode(0)
    }
}

/// μ-law: 14-bit magnitude plus bias 33, segment from the highest set bit.
pub fn ulaw_encode(x: i16) -> u8 {
    let negative = x < 0;
    let magnitude = i32::from(if negative { !x } else { x }) >> 2;
    let biased = (magnitude + 33).min(0x1FFF);
    // Segment 0 holds biased values 32..63 (bit 5 highest).
    let segment = (31 - (biased as u32).leading_zeros()).saturating_sub(5);
    let mantissa = ((biased >> (segment + 1)) & 0x0F) as u8;
    let code = ((segment as u8) << 4 | mantissa) ^ 0x7F;
    if negative { code } else { code | 0x80 }
}

/// A-law: 12-bit magnitude (13-bit signed), linear segment 0, even bits inverted.
pub fn alaw_encode(x: i16) -> u8 {
    let negative = x < 0;
    // Magnitude in steps of 16 (the 13-bit value halved): 0..=2047.
    let magnitude = ((if negative { !x } else { x }) >> 4) as u32;
    let code = if magnitude < 32 {
        // Segments 0 and 1 share the step size: the code is the magnitude itself.
        magnitude
    } else {
        let exponent = 32 - magnitude.leading_zeros() - 4; // bit length - 4: 2..=7
        (exponent << 4) | ((magnitude >> (exponent - 1)) & 0x0F)
    } as u8;
    (if negative { code } else { code | 0x80 }) ^ 0x55
}

const fn ulaw_decode(code: u8) -> i16 {
    let c = !code;
    let exponent = ((c >> 4) & 0x07) as i32;
    let mantissa = (c & 0x0F) as i32;
    let step = 4 << (exponent + 1);
    let magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
    if code < 0x80 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode(code: u8) -> i16 {
    let c = (code ^ 0x55) & 0x7F;
    let exponent = (c >> 4) as i32;
    let mut mantissa = (c & 0x0F) as i32;
    if exponent > 0 {
        mantissa += 16;
    }
    mantissa = (mantissa << 4) + 8;
    if exponent > 1 {
        mantissa <<= exponent - 1;
    }
    if code > 127 {
        mantissa as i16
    } else {
        -mantissa as i16
    }
}

macro_rules! decode_table {
    ($decode:ident) => {{
        let mut t = [0i16; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = $decode(i as u8);
            i += 1;
        }
        t
    }};
}

static ULAW_DECODE: [i16; 256] = decode_table!(ulaw_decode);
static ALAW_DECODE: [i16; 256] = decode_table!(alaw_decode);

#[cfg(test)]
mod tests {
    use super::*;

    /// μ-law reconstruction levels from G.711 Table 2: segment s, step i, in the 14-bit
    /// domain: ((2i + 33)·2^s − 33), scaled to 16 bits. Decision thresholds between steps
    /// are at (16 + i)·2^(s+1) − 33.
    fn ulaw_reference(code: u8) -> (i32, i32, i32) {
        let c = !code;
        let s = i32::from((c >> 4) & 7);
        let i = i32::from(c & 15);
        let level = ((2 * i + 33) << s) - 33;
        let lo = ((16 + i) << (s + 1)) - 33;
        let hi = ((17 + i) << (s + 1)) - 33;
        (level * 4, lo, hi)
    }

    /// A-law from G.711 Table 1, in steps of 16 of the 16-bit scale (2 of the 13-bit one):
    /// segments 0 and 1 have step 1 starting at 0 and 16, segment s ≥ 2 has step 2^(s-1)
    /// starting at 16·2^(s-1); the level is the middle of the interval.
    fn alaw_reference(code: u8) -> (i32, i32, i32) {
        let c = (code ^ 0x55) & 0x7F;
        let s = i32::from(c >> 4);
        let i = i32::from(c & 15);
        let (lo, step) = match s {
            0 => (i, 1),
            1 => (16 + i, 1),
            _ => ((16 + i) << (s - 1), 1 << (s - 1)),
        };
        (lo * 16 + step * 8, lo, lo + step)
    }

    #[test]
    fn ulaw_decode_matches_g711_table() {
        for code in 0..=255u8 {
            let (level, _, _) = ulaw_reference(code);
            let expect = if code < 0x80 { -level } else { level };
            assert_eq!(
                i32::from(ULAW_DECODE[code as usize]),
                expect,
                "code {code:#04x}"
            );
        }
        assert_eq!(ULAW_DECODE[0x80], 32124);
        assert_eq!(ULAW_DECODE[0x00], -32124);
        assert_eq!(ULAW_DECODE[0xFF], 0);
    }

    #[test]
    fn alaw_decode_matches_g711_table() {
        for code in 0..=255u8 {
            let (level, _, _) = alaw_reference(code);
            let expect = if code > 127 { level } else { -level };
            assert_eq!(
                i32::from(ALAW_DECODE[code as usize]),
                expect,
                "code {code:#04x}"
            );
        }
        assert_eq!(ALAW_DECODE[0xAA], 32256);
        assert_eq!(ALAW_DECODE[0xD5], 8);
    }

    #[test]
    fn every_input_lands_in_its_decision_interval() {
        for x in i16::MIN..=i16::MAX {
            let neg = x < 0;
            let m = i32::from(if neg { !x } else { x });
            let u = ulaw_encode(x);
            assert_eq!(u < 0x80, neg, "μ-law sign of {x}");
            let (_, lo, hi) = ulaw_reference(u);
            let m14 = m >> 2;
            let top = u & 0x7F == 0;
            assert!(
                lo <= m14 && (m14 < hi || top),
                "μ-law {x}: {m14} not in [{lo},{hi})"
            );
            let a = alaw_encode(x);
            assert_eq!(a > 127, !neg, "A-law sign of {x}");
            let (_, lo, hi) = alaw_reference(a);
            let steps = m >> 4;
            assert!(
                lo <= steps && steps < hi,
                "A-law {x}: {steps} not in [{lo},{hi})"
            );
        }
    }

    #[test]
    fn codes_round_trip() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(ALAW_DECODE[code as usize]), code);
            // μ-law has two zeros (0x7F and 0xFF); 0 encodes as positive zero.
            if code != 0x7F {
                assert_eq!(ulaw_encode(ULAW_DECODE[code as usize]), code, "{code:#04x}");
            }
        }
    }

    #[test]
    fn matches_an_independent_implementation() {
        use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};
        for x in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(x), encode_ulaw(x), "μ-law encode {x}");
            assert_eq!(alaw_encode(x), encode_alaw(x), "A-law encode {x}");
        }
        for c in 0..=255u8 {
            assert_eq!(ULAW_DECODE[c as usize], decode_ulaw(c), "μ-law decode {c}");
            assert_eq!(ALAW_DECODE[c as usize], decode_alaw(c), "A-law decode {c}");
        }
    }
}
