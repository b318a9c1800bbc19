use std::fmt;

/// One key of the 4x4 DTMF keypad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digit {
    /// Key 0.
    D0,
    /// Key 1.
    D1,
    /// Key 2.
    D2,
    /// Key 3.
    D3,
    /// Key 4.
    D4,
    /// Key 5.
    D5,
    /// Key 6.
    D6,
    /// Key 7.
    D7,
    /// Key 8.
    D8,
    /// Key 9.
    D9,
    /// Key `*`.
    Star,
    /// Key `#`.
    Pound,
    /// Key A.
    A,
    /// Key B.
    B,
    /// Key C.
    C,
    /// Key D.
    D,
}

/// The low-group (row) frequencies in Hz.
pub const ROW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// The high-group (column) frequencies in Hz.
pub const COL_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

const KEYPAD: [[Digit; 4]; 4] = [
    [Digit::D1, Digit::D2, Digit::D3, Digit::A],
    [Digit::D4, Digit::D5, Digit::D6, Digit::B],
    [Digit::D7, Digit::D8, Digit::D9, Digit::C],
    [Digit::Star, Digit::D0, Digit::Pound, Digit::D],
];

/// All sixteen digits, in RFC 4733 event-code order (0-9, *, #, A-D).
pub const ALL_DIGITS: [Digit; 16] = [
    Digit::D0,
    Digit::D1,
    Digit::D2,
    Digit::D3,
    Digit::D4,
    Digit::D5,
    Digit::D6,
    Digit::D7,
    Digit::D8,
    Digit::D9,
    Digit::Star,
    Digit::Pound,
    Digit::A,
    Digit::B,
    Digit::C,
    Digit::D,
];

impl Digit {
    /// All sixteen digits, in RFC 4733 event-code order.
    pub const ALL: [Digit; 16] = ALL_DIGITS;

    /// The key as the character printed on it.
    pub fn as_char(self) -> char {
        b"0123456789*#ABCD"[self.event_code() as usize] as char
    }

    /// The digit for a keypad character (`a`-`d` accepted in lower case too).
    pub fn from_char(c: char) -> Option<Digit> {
        let code = match c {
            '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => c as u8 - b'A' + 12,
            'a'..='d' => c as u8 - b'a' + 12,
            _ => return None,
        };
        Digit::from_event_code(code)
    }

    /// The digit for an RFC 4733 event code (0-15); other codes are not DTMF keys.
    pub fn from_event_code(code: u8) -> Option<Digit> {
        ALL_DIGITS.get(code as usize).copied()
    }

    /// The RFC 4733 event code of this digit.
    pub fn event_code(self) -> u8 {
        self as u8
    }

    /// The (row, column) tone frequencies of this digit in Hz.
    pub fn frequencies(self) -> (f32, f32) {
        let (r, c) = self.keypad_position();
        (ROW_HZ[r], COL_HZ[c])
    }

    pub(crate) fn keypad_position(self) -> (usize, usize) {
        for (r, row) in KEYPAD.iter().enumerate() {
            for (c, d) in row.iter().enumerate() {
                if *d == self {
                    return (r, c);
                }
            }
        }
        unreachable!("every digit is on the keypad")
    }

    pub(crate) fn at(row: usize, col: usize) -> Digit {
        KEYPAD[row][col]
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// A key press seen by the in-band [`Detector`](crate::Detector); times count samples
/// from the first sample pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigitEvent {
    /// The key is down: reported as soon as the tone is confirmed (about 30 ms into it),
    /// so that a caller can act before the key is released.
    Pressed {
        /// The key.
        digit: Digit,
        /// Estimated first sample of the tone.
        start: u64,
    },
    /// The key was released (or the stream ended while it was down).
    Released {
        /// The key.
        digit: Digit,
        /// Estimated first sample of the tone.
        start: u64,
        /// Estimated sample just after the tone.
        end: u64,
    },
}

impl DigitEvent {
    /// The key this event is about.
    pub fn digit(&self) -> Digit {
        match *self {
            DigitEvent::Pressed { digit, .. } | DigitEvent::Released { digit, .. } => digit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_codes_and_positions_agree() {
        for (code, d) in Digit::ALL.iter().enumerate() {
            assert_eq!(d.event_code() as usize, code);
            assert_eq!(Digit::from_char(d.as_char()), Some(*d));
            let (r, c) = d.keypad_position();
            assert_eq!(Digit::at(r, c), *d);
        }
        assert_eq!(Digit::Pound.frequencies(), (941.0, 1477.0));
        assert_eq!(Digit::from_char('x'), None);
        assert_eq!(Digit::from_event_code(16), None);
    }
}
