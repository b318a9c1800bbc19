//! Someone who sees the gateway's SIP (on the path, or on the trunk's host) tries to answer
//! the call in the phone's place: a 200 OK that names the INVITE's branch, Call-ID, tags and
//! CSeq but comes from another port of the trunk's address, or a re-INVITE from there that
//! moves the media to them; then RFC 4733 '#' from the media address they gave. sipp is the
//! real phone (ringing, or answered and silent); a relay in front of it shows the test what
//! went over the wire, as the attacker would see it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callverify_e2e::pcap::{self, Part};
use callverify_e2e::{
    Relay, Sipp, V4, endpoint, free_rtp_pair, media_at, scratch, script, trunk, verify_call,
};
use engine::Outcome;
use media::Language;
use sip::Transport;
use sip::message::{self, Builder, Incoming};
use tokio::net::UdpSocket;

/// The scene of an attack: sipp as the phone behind a relay that keeps a copy of every
/// request callverify sends (what the attacker sees), callverify's endpoint with the relay as
/// its trunk, and the attacker's SIP and RTP sockets on the trunk's host.
struct Scene {
    sipp: Sipp,
    _relay: Relay,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    ep: engine::SipEndpoint,
    /// callverify's SIP address.
    gateway: SocketAddr,
    /// callverify's RTP port.
    port: u16,
    media: engine::MediaConfig,
    sig: UdpSocket,
    rtp: UdpSocket,
}

async fn scene(sipp: Sipp) -> Scene {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let copy = seen.clone();
    let relay = Relay::start(sipp.addr, move |_, bytes| {
        copy.lock().unwrap().push(bytes.to_vec());
        false
    })
    .await;
    let ep = endpoint(
        V4,
        Duration::from_secs(6),
        vec![trunk("sipp", Transport::Udp, relay.addr)],
    )
    .await;
    let gateway = ep.local_addr(Transport::Udp, false).unwrap();
    let port = free_rtp_pair(V4);
    Scene {
        sipp,
        _relay: relay,
        seen,
        ep,
        gateway,
        port,
        media: media_at(V4, port),
        sig: UdpSocket::bind((V4, 0)).await.unwrap(),
        rtp: UdpSocket::bind((V4, 0)).await.unwrap(),
    }
}

/// The first request seen that starts with `method`, once it has gone by.
async fn wait_for(seen: &Mutex<Vec<Vec<u8>>>, method: &str) -> Incoming {
    for _ in 0..500 {
        let found = seen
            .lock()
            .unwrap()
            .iter()
            .find(|b| b.starts_with(method.as_bytes()))
            .cloned();
        if let Some(b) = found {
            return message::parse(&b).expect("callverify sends parseable requests");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {method} went by");
}

fn attacker_sdp(rtp: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

/// RFC 4733 '#' presses from `from` to callverify's RTP port, one every 250 ms for `total`
/// (so some come while the instructions play); returns how many packets went.
async fn press_pound(from: UdpSocket, to: SocketAddr, total: Duration) -> u32 {
    let mut sent = 0;
    let start = tokio::time::Instant::now();
    let mut press = 0u32;
    while start.elapsed() < total {
        for i in 0..4u8 {
            let duration = (160 * (u16::from(i) + 1)).to_be_bytes();
            let end = if i == 3 { 0x8a } else { 0x0a };
            let p = rtp_rs::RtpPacketBuilder::new()
                .payload_type(101)
                .marked(i == 0)
                .sequence(rtp_rs::Seq::from((press * 4 + u32::from(i)) as u16))
                .timestamp(press * 2000)
                .ssrc(0x0bad_cafe)
                .payload(&[11u8, end, duration[0], duration[1]])
                .build()
                .unwrap();
            let _ = from.send_to(&p, to).await;
            sent += 1;
        }
        press += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sent
}

/// While the phone rings, a 200 OK built from the INVITE (right branch, Call-ID, From tag and
/// CSeq, a To tag of its own) arrives from another port of the trunk's IP, with the sender's
/// media address; then '#' from there. Nothing is answered: the call rings out (no_answer)
/// and no key counts. (Before the user agent checked where responses come from, this
/// approved the challenge while the real phone was still ringing.)
#[tokio::test]
async fn a_forged_answer_from_another_port_of_the_trunk_approves_nothing() {
    let Scene {
        sipp,
        _relay,
        seen,
        ep,
        gateway,
        port,
        media,
        sig,
        rtp,
    } = scene(Sipp::start("ring_no_answer", Transport::Udp, V4)).await;
    let attack = tokio::spawn(async move {
        let invite = wait_for(&seen, "INVITE ").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ok = message::response_to(&invite, gateway, 200, "OK", Some("forged"))
            .header(
                "Contact",
                format!("<sip:phone@{}>", sig.local_addr().unwrap()),
            )
            .body("application/sdp", attacker_sdp(rtp.local_addr().unwrap()))
            .build();
        for _ in 0..3 {
            sig.send_to(&ok, gateway).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let presses = press_pound(rtp, (V4, port).into(), Duration::from_secs(5)).await;
        let acks = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.starts_with(b"ACK "))
            .count();
        (presses, acks)
    });
    let r = verify_call(&ep, &media, script(), Language::En).await;
    let (presses, acks) = attack.await.unwrap();
    let exit = sipp.finish().await;
    eprintln!("forged 200 OK x3, {presses} RTP event packets; call: {r:?}");
    assert_eq!(r.outcome, Outcome::NoAnswer, "{r:?}");
    assert!(r.keys.is_empty(), "{r:?}");
    assert_eq!(r.timings.time_to_answer_ms, None);
    assert_eq!(acks, 0, "the forged answer was acknowledged");
    assert!(exit.passed, "sipp saw its CANCEL: {}", exit.log);
    ep.shutdown().await;
}

/// After the real phone answered (sipp, sending silence), a re-INVITE with the dialog's
/// tags (as seen in callverify's ACK) from another port of the trunk's IP moves the media to
/// the sender, which then sends '#'. It gets 481, the media stays, no key counts: the call
/// ends no_input.
#[tokio::test]
async fn a_reinvite_from_another_port_moves_nothing() {
    let silence = testaudio::Signal::new().silence(9000.0).pcm();
    let path = scratch("pcap-forged-reinvite").join("silence.pcap");
    pcap::write(&path, &pcap::rtp(&[Part::Audio(silence)]));
    let Scene {
        sipp,
        _relay,
        seen,
        ep,
        gateway,
        port,
        media,
        sig,
        rtp,
    } = scene(Sipp::callee("forged-reinvite", V4, Some(&path))).await;
    let attack = tokio::spawn(async move {
        let ack = wait_for(&seen, "ACK ").await;
        let from = ack.header("From").unwrap();
        let to = ack.header("To").unwrap();
        let reinvite = Builder::request(&rsip::Method::Invite, ack.request_uri())
            .header(
                "Via",
                format!(
                    "SIP/2.0/UDP {};branch=z9hG4bKforged1;rport",
                    sig.local_addr().unwrap()
                ),
            )
            .header("From", to)
            .header("To", from)
            .header("Call-ID", ack.call_id.clone())
            .header("CSeq", "10 INVITE")
            .header(
                "Contact",
                format!("<sip:phone@{}>", sig.local_addr().unwrap()),
            )
            .body("application/sdp", attacker_sdp(rtp.local_addr().unwrap()))
            .build();
        sig.send_to(&reinvite, gateway).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let answer = tokio::time::timeout(Duration::from_secs(2), sig.recv_from(&mut buf))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|(n, _)| message::parse(&buf[..n]).ok())
            .and_then(|m| m.status());
        let presses = press_pound(rtp, (V4, port).into(), Duration::from_secs(7)).await;
        (answer, presses)
    });
    let r = verify_call(&ep, &media, script(), Language::En).await;
    let (answer, presses) = attack.await.unwrap();
    let exit = sipp.finish().await;
    eprintln!("forged re-INVITE answered {answer:?}, {presses} RTP event packets; call: {r:?}");
    assert_eq!(answer, Some(481), "the forged re-INVITE's answer");
    assert_eq!(r.outcome, Outcome::NoInput, "{r:?}");
    assert!(r.keys.is_empty(), "{r:?}");
    assert!(
        r.media.packets_rejected > 0,
        "the sender's packets were dropped: {r:?}"
    );
    assert!(exit.passed, "{}", exit.log);
    ep.shutdown().await;
}
