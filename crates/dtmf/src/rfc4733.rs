//! RFC 4733 telephone-event decoding.
//!
//! All packets of one event carry the RTP timestamp of its start; the sender repeats the
//! packet while the key is held (growing `duration`) and sends the end packet (E bit)
//! three times. The decoder therefore keys events by timestamp: the first packet seen for
//! a newer timestamp presses the key (whether or not the marker packet arrived), the first
//! end packet releases it, and anything for the current event after its end, or for an older
//! timestamp, is a repeat or a late packet and is ignored. Timestamps are compared in serial
//! arithmetic (RFC 1982) so that wrap-around is handled.

use crate::digit::Digit;

/// A key press seen in RFC 4733 events; times are RTP timestamps (8 kHz for DTMF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TelephoneEvent {
    /// The key went down at `timestamp`.
    Pressed {
        /// The key.
        digit: Digit,
        /// The RTP timestamp shared by all packets of the event.
        timestamp: u32,
    },
    /// The key was released after `duration` timestamp units.
    Released {
        /// The key.
        digit: Digit,
        /// The RTP timestamp shared by all packets of the event.
        timestamp: u32,
        /// Duration in timestamp units, from the end packet (or the longest seen).
        duration: u32,
    },
}

/// Why an event payload was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The payload is shorter than the 4 bytes of an event.
    #[error("telephone-event payload is {0} bytes, expected at least 4")]
    TooShort(usize),
}

#[derive(Clone, Copy, Debug)]
struct Current {
    timestamp: u32,
    digit: Digit,
    duration: u32,
    ended: bool,
}

/// Decodes one RTP stream's telephone-event packets into key presses (sans-IO).
#[derive(Clone, Debug, Default)]
pub struct EventDecoder {
    current: Option<Current>,
}

/// Events produced by one packet: at most a release of an unfinished earlier event, then a
/// press and a release of the new one.
pub type PacketEvents = std::iter::Flatten<std::array::IntoIter<Option<TelephoneEvent>, 3>>;

fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl EventDecoder {
    /// A decoder with no event in progress.
    pub fn new() -> Self {
        EventDecoder::default()
    }

    /// Takes one telephone-event packet: its RTP timestamp and payload (the marker bit is
    /// not needed: a lost first packet must not lose the key).
    ///
    /// Codes other than the 16 DTMF keys (flash, tones) are ignored.
    pub fn push(&mut self, timestamp: u32, payload: &[u8]) -> Result<PacketEvents, EventError> {
        let mut out = [None; 3];
        if payload.len() < 4 {
            return Err(EventError::TooShort(payload.len()));
        }
        let end = payload[1] & 0x80 != 0;
        let duration = u32::from(u16::from_be_bytes([payload[2], payload[3]]));
        let Some(digit) = Digit::from_event_code(payload[0]) else {
            return Ok(out.into_iter().flatten());
        };

        match &mut self.current {
            Some(cur) if cur.timestamp == timestamp => {
                if !cur.ended {
                    cur.duration = cur.duration.max(duration);
                    if end {
                        cur.ended = true;
                        out[0] = Some(released(cur));
                    }
                }
            }
            Some(cur) if !newer(timestamp, cur.timestamp) => {}
            _ => {
                if let Some(prev) = self.current.take().filter(|c| !c.ended) {
                    out[0] = Some(released(&prev));
                }
                let cur = Current {
                    timestamp,
                    digit,
                    duration,
                    ended: end,
                };
                out[1] = Some(TelephoneEvent::Pressed { digit, timestamp });
                if end {
                    out[2] = Some(released(&cur));
                }
                self.current = Some(cur);
            }
        }
        Ok(out.into_iter().flatten())
    }

    /// The digit currently held down, if any.
    pub fn active(&self) -> Option<Digit> {
        self.current.filter(|c| !c.ended).map(|c| c.digit)
    }

    /// Releases an event whose end packets never came (call it when the stream ends or has
    /// been silent for longer than the sender's update interval allows).
    pub fn finish(&mut self) -> Option<TelephoneEvent> {
        let cur = self.current.as_mut().filter(|c| !c.ended)?;
        cur.ended = true;
        Some(released(cur))
    }
}

fn released(c: &Current) -> TelephoneEvent {
    TelephoneEvent::Released {
        digit: c.digit,
        timestamp: c.timestamp,
        duration: c.duration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(code: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [code, if end { 0x8a } else { 0x0a }, d[0], d[1]]
    }

    /// The packets a sender makes for one key: updates every 160 units, then 3 end packets.
    fn key(code: u8, ts: u32, updates: u16) -> Vec<(u32, [u8; 4])> {
        let mut v: Vec<_> = (0..updates)
            .map(|i| (ts, payload(code, false, i * 160)))
            .collect();
        v.extend((0..3).map(|_| (ts, payload(code, true, updates * 160))));
        v
    }

    fn run(packets: &[(u32, [u8; 4])]) -> Vec<TelephoneEvent> {
        let mut dec = EventDecoder::new();
        let mut events = Vec::new();
        for (ts, p) in packets {
            events.extend(dec.push(*ts, p).unwrap());
        }
        events.extend(dec.finish());
        events
    }

    fn digits(events: &[TelephoneEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                TelephoneEvent::Released { digit, .. } => Some(digit.as_char()),
                TelephoneEvent::Pressed { .. } => None,
            })
            .collect()
    }

    #[test]
    fn repeated_end_packets_report_once() {
        let events = run(&key(11, 1000, 5));
        assert_eq!(
            events,
            vec![
                TelephoneEvent::Pressed {
                    digit: Digit::Pound,
                    timestamp: 1000
                },
                TelephoneEvent::Released {
                    digit: Digit::Pound,
                    timestamp: 1000,
                    duration: 800
                },
            ]
        );
    }

    #[test]
    fn lost_start_packets_still_press_the_key() {
        let packets = key(0, 5000, 6);
        assert_eq!(digits(&run(&packets[4..])), "0");
        // Only one end packet of three survives.
        assert_eq!(digits(&run(&packets[8..])), "0");
    }

    #[test]
    fn reordered_and_late_packets_are_ignored() {
        let mut packets = key(0, 100, 4);
        packets.extend(key(11, 2000, 4));
        // A late update of the first key arrives after the second key started.
        packets.insert(9, packets[2]);
        // The second key's end packets arrive before one of its updates.
        packets.swap(11, 13);
        assert_eq!(digits(&run(&packets)), "0#");
    }

    #[test]
    fn same_digit_twice_is_two_keys() {
        let mut packets = key(11, 100, 4);
        packets.extend(key(11, 1500, 4));
        assert_eq!(digits(&run(&packets)), "##");
    }

    #[test]
    fn missing_end_is_released_by_the_next_key_or_finish() {
        let mut packets = key(1, 100, 4);
        packets.truncate(4);
        packets.extend(key(2, 2000, 4));
        packets.extend(key(3, 4000, 2).into_iter().take(2));
        assert_eq!(digits(&run(&packets)), "123");
    }

    #[test]
    fn timestamps_wrap() {
        let mut packets = key(4, u32::MAX - 100, 3);
        packets.extend(key(5, 700, 3));
        packets.push((u32::MAX - 100, payload(4, true, 480)));
        assert_eq!(digits(&run(&packets)), "45");
    }

    #[test]
    fn short_and_non_dtmf_payloads() {
        let mut dec = EventDecoder::new();
        assert_eq!(
            dec.push(1, &[11, 0x80]).err(),
            Some(EventError::TooShort(2))
        );
        assert_eq!(dec.push(1, &payload(16, false, 0)).unwrap().count(), 0);
        assert_eq!(dec.active(), None);
    }
}
