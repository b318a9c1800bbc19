//! RADIUS datagrams as they arrive from a NAS or an upstream server: decoded, checked
//! against a secret as a request and as a response, the password revealed, and a packet
//! that decodes encodes to the same octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radius::sign::{self, Secret};
use radius::{Packet, attr};

fuzz_target!(|data: &[u8]| {
    let secret = Secret::new("fuzzing-secret");
    if let Ok(p) = Packet::decode(data) {
        let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        assert_eq!(p.encode().ok().as_deref(), Some(&data[..len]));
        if let Some(hidden) = p.get(attr::USER_PASSWORD) {
            let _ = sign::reveal_password(hidden, &secret, &p.authenticator);
        }
        let _ = sign::response(radius::Code::AccessReject, &p, Vec::new(), &secret);
    }
    let _ = sign::check_request(data, &secret);
    let _ = sign::check_response(data, data.get(1).copied().unwrap_or(0), &[7; 16], &secret, true);
});
