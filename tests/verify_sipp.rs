//! Verification calls end to end against sipp as the phone: keys as RFC 4733 events (sipp's
//! own capture) and as in-band tones (captures made here from synthesised audio), fraud
//! reports, no key, busy, no answer, a hang-up, and a '#' injected from another port.

use std::time::Duration;

use callverify_e2e::pcap::{self, Part};
use callverify_e2e::{
    BOUND, KEY_AT_MS, Sipp, V4, endpoint, free_rtp_pair, media_at, scratch, script, trunk,
    verify_call,
};
use dtmf::Digit;
use engine::Outcome;
use engine::call::KeySource;
use media::Language;
use sip::Transport;
use testaudio::Signal;

/// Runs one verification call to `sipp` and checks that sipp's scenario passed too.
async fn call(sipp: Sipp, ring: Duration) -> engine::CallReport {
    let ep = endpoint(V4, ring, vec![trunk("sipp", Transport::Udp, sipp.addr)]).await;
    let media = media_at(V4, free_rtp_pair(V4));
    let report = verify_call(&ep, &media, script(), Language::En).await;
    let exit = sipp.finish().await;
    assert!(exit.passed, "{report:?}\n{}", exit.log);
    ep.shutdown().await;
    report
}

fn keys(r: &engine::CallReport) -> String {
    r.keys.iter().map(|k| k.digit).collect()
}

fn capture(name: &str, parts: &[Part]) -> std::path::PathBuf {
    let path = scratch(&format!("pcap-{name}")).join(format!("{name}.pcap"));
    pcap::write(&path, &pcap::rtp(parts));
    path
}

fn silence(ms: f64) -> Vec<i16> {
    Signal::new().silence(ms).pcm()
}

#[tokio::test]
async fn pound_as_rfc4733_from_sipps_capture_approves() {
    let sipp = Sipp::callee_pressing_pound("rfc4733-pound", V4);
    let r = call(sipp, BOUND).await;
    assert_eq!(r.outcome, Outcome::Approved, "{r:?}");
    assert_eq!(keys(&r), "#");
    assert_eq!(r.keys[0].source, KeySource::Rfc4733);
    assert!(r.timings.post_dial_delay_ms.is_some() && r.timings.time_to_answer_ms >= Some(300));
    assert!(r.timings.time_to_key_ms.is_some());
    assert!(r.media.packets_sent > 100, "{:?}", r.media);
    assert_eq!(r.media.packets_rejected, 0);
}

#[tokio::test]
async fn pound_in_band_inside_pcmu_speech_approves() {
    let hello = testaudio::speech::speak("en-us", 160, "Hello?").expect("espeak-ng and sox");
    let gap = (KEY_AT_MS - 400.0 - hello.len() as f64 / 8.0).max(1200.0);
    let audio = Signal::new()
        .silence(400.0)
        .then(&Signal::from_pcm(&hello))
        .silence(gap)
        .digit(Digit::Pound, -10.0, 160.0)
        .silence(1500.0)
        .pcm();
    let pcap = capture("inband-pound", &[Part::Audio(audio)]);
    let sipp = Sipp::callee("inband-pound", V4, Some(&pcap));
    let r = call(sipp, BOUND).await;
    assert_eq!(r.outcome, Outcome::Approved, "{r:?}");
    assert_eq!(keys(&r), "#");
    assert_eq!(r.keys[0].source, KeySource::InBand);
    // The tone starts 400 ms + the spoken hello + the gap after the answer. The answer's
    // time is when callverify received the 200 OK, and sipp starts its audio when it sent
    // it: one packet (20 ms) either way.
    let expected = 400 + hello.len() as u64 / 8 + gap as u64;
    let key = r.timings.time_to_key_ms.unwrap();
    assert!(
        key + 20 >= expected && key < expected + 400,
        "key after {key} ms, tone at {expected} ms"
    );
}

#[tokio::test]
async fn zero_then_pound_reports_fraud() {
    let pcap = capture(
        "zero-pound",
        &[
            Part::Audio(silence(KEY_AT_MS)),
            Part::Key(Digit::D0, 120),
            Part::Audio(silence(300.0)),
            Part::Key(Digit::Pound, 120),
            Part::Audio(silence(1000.0)),
        ],
    );
    let sipp = Sipp::callee("zero-pound", V4, Some(&pcap));
    let r = call(sipp, BOUND).await;
    assert_eq!(r.outcome, Outcome::FraudReported, "{r:?}");
    assert_eq!(keys(&r), "0#");
}

#[tokio::test]
async fn other_keys_then_pound_deny() {
    let pcap = capture(
        "one-two-pound",
        &[
            Part::Audio(silence(KEY_AT_MS)),
            Part::Key(Digit::D1, 100),
            Part::Audio(silence(200.0)),
            Part::Key(Digit::D2, 100),
            Part::Audio(silence(200.0)),
            Part::Key(Digit::Pound, 100),
            Part::Audio(silence(500.0)),
        ],
    );
    let sipp = Sipp::callee("one-two-pound", V4, Some(&pcap));
    let r = call(sipp, BOUND).await;
    assert_eq!(r.outcome, Outcome::Denied, "{r:?}");
    assert_eq!(keys(&r), "12#");
}

/// A voicemail greeting that says "Hello" and has a '#' 800 ms after the answer (the attack:
/// the victim's greeting set to end in the tone) does not approve: the '#' comes while the
/// greeting plays, before anyone asked for a key, and is dropped. The same '#' during the
/// instructions approves.
#[tokio::test]
async fn a_pound_before_the_instructions_is_dropped_and_one_during_them_approves() {
    let hello = testaudio::speech::speak("en-us", 200, "Hello").expect("espeak-ng and sox");
    let at = |pound_ms: f64| {
        let hello_ms = hello.len() as f64 / 8.0;
        Signal::new()
            .then(&Signal::from_pcm(&hello[..hello.len().min(6000)]))
            .silence((pound_ms - hello_ms.min(750.0)).max(50.0))
            .digit(Digit::Pound, -10.0, 160.0)
            .silence(9000.0)
            .pcm()
    };
    let early = capture("greeting-pound-800ms", &[Part::Audio(at(800.0))]);
    let r = call(Sipp::callee("greeting-pound", V4, Some(&early)), BOUND).await;
    eprintln!(
        "'#' 800 ms after the answer: {} ({:?})",
        r.outcome.name(),
        r.detail
    );
    assert!(
        matches!(r.outcome, Outcome::NoInput | Outcome::Voicemail),
        "{r:?}"
    );
    assert!(r.keys.is_empty(), "{r:?}");
    let late = capture("greeting-pound-late", &[Part::Audio(at(KEY_AT_MS))]);
    let r = call(Sipp::callee("instructions-pound", V4, Some(&late)), BOUND).await;
    assert_eq!(r.outcome, Outcome::Approved, "{r:?}");
    assert_eq!(keys(&r), "#");
}

#[tokio::test]
async fn no_key_is_no_input() {
    let sipp = Sipp::callee("no-key", V4, None);
    let r = call(sipp, BOUND).await;
    assert_eq!(r.outcome, Outcome::NoInput, "{r:?}");
    assert!(r.keys.is_empty());
    assert_eq!(r.timings.time_to_key_ms, None);
    // Decided 4 s (the first-key timeout) after the instructions started (the greeting's
    // end).
    let answered = r.timings.time_to_answer_ms.unwrap();
    let verdict = r.timings.time_to_verdict_ms.unwrap();
    let expected = callverify_e2e::prompts(Language::En)
        .get(media::PromptKind::Greeting)
        .duration_ms()
        + 4000;
    assert!(
        (expected..expected + 100).contains(&(verdict - answered)),
        "{r:?}"
    );
}

#[tokio::test]
async fn busy_is_busy() {
    let r = call(Sipp::start("busy", Transport::Udp, V4), BOUND).await;
    assert_eq!(r.outcome, Outcome::Busy, "{r:?}");
    assert!(r.timings.post_dial_delay_ms.is_some());
    assert_eq!(r.timings.time_to_answer_ms, None);
}

#[tokio::test]
async fn declined_is_declined() {
    let r = call(Sipp::start("decline", Transport::Udp, V4), BOUND).await;
    assert_eq!(r.outcome, Outcome::Declined, "{r:?}");
}

#[tokio::test]
async fn ringing_past_the_ring_timeout_is_no_answer() {
    let sipp = Sipp::start("ring_no_answer", Transport::Udp, V4);
    let r = call(sipp, Duration::from_secs(2)).await;
    assert_eq!(r.outcome, Outcome::NoAnswer, "{r:?}");
    let pdd = r.timings.post_dial_delay_ms.unwrap();
    assert!(r.timings.duration_ms >= pdd + 1900, "{r:?}");
}

#[tokio::test]
async fn a_bye_after_the_answer_is_hung_up() {
    let r = call(Sipp::start("bye_from_callee", Transport::Udp, V4), BOUND).await;
    assert_eq!(r.outcome, Outcome::HungUp, "{r:?}");
    assert!(r.timings.time_to_answer_ms.is_some());
}

#[tokio::test]
async fn a_pound_sent_from_another_port_is_ignored() {
    // sipp plays 3 s of silence from the negotiated port; meanwhile the test sends RFC 4733
    // '#' events with sipp's SSRC from another port of the same host to callverify's RTP
    // port, before and after the real stream starts.
    let pcap = capture("silence", &[Part::Audio(silence(3000.0))]);
    let sipp = Sipp::callee("injected-pound", V4, Some(&pcap));
    let ep = endpoint(V4, BOUND, vec![trunk("sipp", Transport::Udp, sipp.addr)]).await;
    let port = free_rtp_pair(V4);
    let media = media_at(V4, port);
    let injector = tokio::net::UdpSocket::bind((V4, 0)).await.unwrap();
    let inject = tokio::spawn(async move {
        let mut sent = 0u32;
        for burst in 0..30u32 {
            for i in 0..4u8 {
                let duration = (160 * (u16::from(i) + 1)).to_be_bytes();
                let end = if i == 3 { 0x8a } else { 0x0a };
                let payload = [11u8, end, duration[0], duration[1]];
                let p = rtp_rs::RtpPacketBuilder::new()
                    .payload_type(101)
                    .marked(i == 0)
                    .sequence(rtp_rs::Seq::from((burst * 4 + u32::from(i)) as u16))
                    .timestamp(burst * 8000)
                    .ssrc(pcap::SSRC)
                    .payload(&payload)
                    .build()
                    .unwrap();
                let _ = injector.send_to(&p, (V4, port)).await;
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    });
    let r = verify_call(&ep, &media, script(), Language::En).await;
    let sent = inject.await.unwrap();
    eprintln!(
        "injected {sent} packets; call: {:?}; {:?}",
        r.outcome, r.media
    );
    let exit = sipp.finish().await;
    assert!(exit.passed, "{}", exit.log);
    assert_eq!(r.outcome, Outcome::NoInput, "{r:?}");
    assert!(r.keys.is_empty());
    // Those sent before the answer found no call listening; every one after it is counted.
    assert!(
        r.media.packets_rejected > 0 && r.media.packets_rejected <= u64::from(sent),
        "{r:?}"
    );
    assert!(
        r.media.packets_received >= 100,
        "sipp's own stream was accepted: {r:?}"
    );
    ep.shutdown().await;
}

#[tokio::test]
async fn an_unknown_number_fails_with_its_sip_status() {
    let r = call(Sipp::start("not_found", Transport::Udp, V4), BOUND).await;
    assert_eq!(
        r.outcome,
        Outcome::Failed {
            status: Some(404),
            reason: "404 Not Found".into()
        },
        "{r:?}"
    );
}

#[tokio::test]
async fn an_answering_machine_greeting_ending_in_pound_is_voicemail() {
    // The attack on phone sign-in: a voicemail greeting recorded with the '#' tone after it.
    let greeting = testaudio::speech::voicemail_greeting().expect("espeak-ng and sox");
    let audio = Signal::from_pcm(&greeting)
        .silence(300.0)
        .digit(Digit::Pound, -10.0, 200.0)
        .silence(1500.0)
        .pcm();
    let pcap = capture("voicemail", &[Part::Audio(audio)]);
    let sipp = Sipp::callee("voicemail", V4, Some(&pcap));
    let r = call(sipp, BOUND).await;
    assert_eq!(r.outcome, Outcome::Voicemail, "{r:?}");
    assert!(r.keys.is_empty(), "{r:?}");
    let detail = r.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("continuous speech"), "{detail}");
    eprintln!("voicemail: {detail}");
}

/// 20 % of the SIP datagrams lost, both ways and for every request and response of the
/// dialog (the link is sipp's Contact too): retransmissions (RFC 3261 timers, T1 = 100 ms
/// here; sipp retransmits its 200) still complete each call with its verdict.
#[tokio::test]
async fn twenty_percent_sip_loss_is_recovered_by_retransmission() {
    use callverify_e2e::{KEY_AT_MS, LossyLink, SIPP_POUND, callee_scenario_after, endpoint_with};
    let pcap = std::path::Path::new(SIPP_POUND);
    let (mut lost, mut passed) = (0, 0);
    for seed in 1..=5u64 {
        let link = LossyLink::start(V4, 0.2, seed).await;
        let dir = scratch(&format!("sip-loss-{seed}"));
        let file = callee_scenario_after(
            &dir,
            Some(pcap),
            Duration::from_millis(300),
            Duration::from_millis(KEY_AT_MS as u64),
        );
        let text = std::fs::read_to_string(&file).unwrap().replace(
            "Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>",
            &format!("Contact: <sip:sipp@{};transport=UDP>", link.addr),
        );
        std::fs::write(&file, text).unwrap();
        let sipp = Sipp::start_file(dir, &file, V4, &[]);
        link.connect(sipp.addr);
        let timers = sip::Timers {
            t1: Duration::from_millis(100),
            ..sip::Timers::default()
        };
        let (ep, _) = endpoint_with(
            V4,
            BOUND,
            vec![trunk("sipp", Transport::Udp, link.addr)],
            timers,
        )
        .await;
        let media = media_at(V4, free_rtp_pair(V4));
        let r = verify_call(&ep, &media, script(), Language::En).await;
        assert_eq!(r.outcome, Outcome::Approved, "seed {seed}: {r:?}");
        assert_eq!(keys(&r), "#");
        let _ = sipp.finish().await;
        ep.shutdown().await;
        let (l, p) = link.counts();
        lost += l;
        passed += p;
    }
    eprintln!(
        "5 calls of 5 approved; {lost} of {} SIP datagrams lost",
        lost + passed
    );
    assert!(lost > 0, "the link lost nothing");
}

/// A flood of INVITEs, OPTIONS and garbage at the gateway's SIP port from `source` (one
/// socket, as fast as it can send, for as long as the call lasts) while the gateway calls
/// sipp: the call's report, how many datagrams were sent, and whether any was answered.
async fn call_under_flood(
    name: &str,
    source: std::net::IpAddr,
) -> (engine::CallReport, usize, bool) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    // The flood takes a core for itself and the call shares the other with sipp (and, in
    // a test run, with the other tests): it is slower than usual, and bounded longer.
    let bound = 3 * BOUND;
    let sipp = Sipp::callee_pressing_pound(name, V4);
    let ep = endpoint(V4, BOUND, vec![trunk("sipp", Transport::Udp, sipp.addr)]).await;
    let target = ep
        .local_addr(Transport::Udp, false)
        .expect("a UDP listener");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let s = std::net::UdpSocket::bind((source, 0)).unwrap();
            let me = s.local_addr().unwrap();
            let started = std::time::Instant::now();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < bound {
                let msg = match n % 3 {
                    0 => format!(
                        "INVITE sip:+819012345678@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{n}\r\n\
                         From: <sip:flood@{me}>;tag={n}\r\nTo: <sip:+819012345678@{target}>\r\nCall-ID: flood-{n}\r\n\
                         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                    ),
                    1 => format!(
                        "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKo{n}\r\n\
                         From: <sip:flood@{me}>;tag=o{n}\r\nTo: <sip:{target}>\r\nCall-ID: options-{n}\r\n\
                         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                    ),
                    _ => format!("\u{1}garbage {n} \u{0}\u{ff}"),
                };
                let _ = s.send_to(msg.as_bytes(), target);
                n += 1;
            }
            sent.store(n, Ordering::Relaxed);
            s.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 2048];
            s.recv_from(&mut buf).is_ok()
        })
    };
    let media = media_at(V4, free_rtp_pair(V4));
    let r = callverify_e2e::verify_call_within(&ep, &media, script(), Language::En, bound).await;
    stop.store(true, Ordering::Relaxed);
    let answered = flood.join().unwrap();
    let _ = sipp.finish().await;
    ep.shutdown().await;
    (r, sent.load(Ordering::Relaxed), answered)
}

/// A flood from 127.0.0.2 (not a trunk): dropped as it is read, answered nothing; the call
/// is approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_at_the_sip_port_does_not_stop_an_outgoing_call() {
    let (r, n, answered) = call_under_flood("flood", "127.0.0.2".parse().unwrap()).await;
    assert_eq!(r.outcome, Outcome::Approved, "{r:?}");
    assert_eq!(keys(&r), "#");
    assert!(!answered, "the flood got an answer");
    assert!(n > 1000, "the flood sent {n}");
    eprintln!(
        "approved while {n} datagrams flooded the SIP port from elsewhere ({} ms call)",
        r.timings.duration_ms
    );
}

/// The same flood from the trunk's own address (so it is read and answered): the answers
/// to the gateway's own INVITE are handled first, and the call is approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_the_trunks_address_does_not_stop_an_outgoing_call() {
    let (r, n, _) = call_under_flood("flood-trunk", V4).await;
    assert_eq!(r.outcome, Outcome::Approved, "{r:?}");
    assert_eq!(keys(&r), "#");
    assert!(n > 1000, "the flood sent {n}");
    eprintln!(
        "approved while {n} datagrams flooded the SIP port from the trunk's address ({} ms call)",
        r.timings.duration_ms
    );
}
