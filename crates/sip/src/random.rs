//! Identifiers that an attacker must not guess (Call-IDs, tags, branches, cnonces, SDP
//! session ids, RTP SSRCs and starting points), drawn from the operating system's
//! generator for each use: none is derived from another, from a counter or from a seed, so
//! seeing one on the wire says nothing about the next.

/// Fills `buf` from the operating system's generator.
///
/// # Panics
/// When the operating system has no generator to give (a broken system, not something a
/// peer can cause): nothing unpredictable could be made, and no call must go out.
pub fn fill(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random generator works");
}

/// A random `u64`.
pub fn u64() -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_le_bytes(b)
}

/// `bytes` random bytes in lower-case hex (`2 * bytes` characters).
pub fn hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    fill(&mut b);
    let mut s = String::with_capacity(2 * bytes);
    for x in b {
        s.push(char::from(b"0123456789abcdef"[usize::from(x >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(x & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers_are_fresh_each_time() {
        let a = super::hex(16);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, super::hex(16));
        assert_ne!(super::u64(), super::u64());
    }
}
