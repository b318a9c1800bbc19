//! A verification call to baresip, a real softphone: it answers by itself and plays a WAV
//! that ends with a '#' tone as its microphone; the call must be approved.

use callverify_e2e::{
    BOUND, Baresip, KEY_AT_MS, V4, endpoint, free_rtp_pair, keys_wav, media_at, prompts,
    prompts_heard, script, trunk, verify_call,
};
use dtmf::Digit;
use engine::Outcome;
use engine::call::KeySource;
use media::{Language, PromptKind};
use sip::Transport;

#[tokio::test]
async fn baresip_pressing_pound_in_its_audio_is_approved() {
    // '#' while the instructions play, and long enough a WAV for the closing prompt (the
    // phone hangs up when its WAV ends).
    let wav = keys_wav(
        "baresip-pound-wav",
        &[Digit::Pound],
        KEY_AT_MS,
        KEY_AT_MS + 9000.0,
    );
    let phone = Baresip::start_saying("verify-pound", &wav);
    let ep = endpoint(
        V4,
        BOUND,
        vec![trunk("softphone", Transport::Udp, phone.addr)],
    )
    .await;
    let media = media_at(V4, free_rtp_pair(V4));
    let r = verify_call(&ep, &media, script(), Language::Ja).await;
    assert_eq!(r.outcome, Outcome::Approved, "{r:?}\n{}", phone.log());
    assert_eq!(r.keys.len(), 1, "{r:?}");
    assert_eq!(
        (r.keys[0].digit, r.keys[0].source),
        ('#', KeySource::InBand)
    );
    assert!(r.media.packets_received > 50, "{r:?}");
    ep.shutdown().await;
    // What the phone heard: the greeting whole, the instructions cut short by the '#'
    // (barge-in), then the closing prompt.
    let heard = prompts_heard(
        &phone.heard(),
        &prompts(Language::Ja),
        &[
            PromptKind::Greeting,
            PromptKind::Instructions,
            PromptKind::Verified,
        ],
    );
    let kinds: Vec<PromptKind> = heard.iter().map(|h| h.1).collect();
    assert_eq!(kinds, [PromptKind::Greeting, PromptKind::Verified]);
}

/// A phone that lets the call ring until the test answers it, saying a WAV written only
/// after the call came in (what a test does once it knows the number a sign-in page
/// shows): the call waits, then is approved.
#[tokio::test]
async fn a_call_rings_until_answered_and_plays_a_wav_written_meanwhile() {
    let dir = callverify_e2e::scratch("baresip-later-wav");
    let wav = dir.join("later.wav");
    let phone = Baresip::start_answering_on_command("answer-later", &wav, BOUND);
    let ep = endpoint(
        V4,
        BOUND,
        vec![trunk("softphone", Transport::Udp, phone.addr)],
    )
    .await;
    let media = media_at(V4, free_rtp_pair(V4));
    let t0 = std::time::Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let made = keys_wav(
            "baresip-later-keys",
            &[Digit::Pound],
            KEY_AT_MS,
            KEY_AT_MS + 3000.0,
        );
        std::fs::copy(made, &wav).expect("copy the WAV");
        let asked = t0.elapsed();
        phone.answer();
        (phone, asked)
    });
    let r = verify_call(&ep, &media, script(), Language::En).await;
    let ended = t0.elapsed();
    let (phone, asked) = answer.await.expect("the answering thread");
    assert_eq!(r.outcome, Outcome::Approved, "{r:?}\n{}", phone.log());
    // It answered when told to, not by itself: the answer came after the test asked.
    let invite = ended.as_millis() as u64 - r.timings.duration_ms;
    let answered = invite + r.timings.time_to_answer_ms.unwrap_or_default();
    assert!(
        answered + 50 >= asked.as_millis() as u64,
        "answered {answered} ms, asked {asked:?}, {:?}",
        r.timings
    );
    ep.shutdown().await;
}
