//! The `/demo` login page and the `/console`, in a real browser: Debian's chromium, headless,
//! driven through chromium-driver (W3C WebDriver) on loopback. The gateway is
//! `callverify demo --serve` (SQLite, baresip answering every call and pressing '#').
//!
//! The demo page goes through the enrolment (more information is required → register a
//! phone → we're calling your phone → verification succeeded → done) and a sign-in with
//! "don't ask again", then a sign-in on the trusted device with no call, in English and in
//! Japanese; the console shows the calls with their '#' and their timeline. Screenshots go
//! to `target/tmp/browser/` (one at 390x844). Accessibility basics are checked in the page:
//! every field has a label, the keyboard reaches and submits the form, text contrast is at
//! least 4.5:1.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use callverify_e2e::{Browser, Killed, V4, WAIT, accessible, free_port, open_browser, sigterm};
use serde_json::json;

/// `callverify demo --serve` on a free loopback port (baresip as the phone), once it serves:
/// the process, its address and the operator key it printed.
fn start_demo() -> (Killed, String, String) {
    let addr = format!("127.0.0.1:{}", free_port(V4));
    let mut demo = Command::new(env!("CARGO_BIN_EXE_callverify"))
        .args(["demo", "--serve", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("callverify demo --serve");
    let out = BufReader::new(demo.stdout.take().unwrap());
    let demo = Killed(demo);
    let mut operator_key = String::new();
    let mut lines = out.lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(k) = line.strip_prefix("operator key (for the console): ") {
            operator_key = k.to_string();
        }
        if line.starts_with("serving until") {
            break;
        }
    }
    assert!(
        operator_key.starts_with("cvk_"),
        "the demo printed its operator key"
    );
    // The rest of what it prints (it says when it stops).
    std::thread::spawn(move || lines.for_each(drop));

    (demo, addr, operator_key)
}

/// The demo page in English: the keyboard, then a registration refused and one made (its
/// call approved).
async fn demo_page_in_english(b: &Browser, site: &str) {
    // The demo page, in English. The keyboard: focus starts in the user field; Tab moves
    // to the checkbox; Enter in the field submits.
    b.go(&format!("{site}/demo")).await;
    b.click("#lang-en").await;
    assert_eq!(b.text("#screen-signin h1").await, "Sign in");
    accessible(b, "demo").await;
    b.screenshot("1-sign-in").await;
    let user = b.find("#user").await;
    b.js("document.getElementById('user').focus();").await;
    b.post(
        &format!("/element/{user}/value"),
        json!({"text": "alice\u{E004}"}),
    )
    .await;
    assert_eq!(
        b.js("return document.activeElement.id;").await,
        "remember",
        "Tab moves from the user name to the checkbox"
    );
    b.post(
        &format!("/element/{user}/value"),
        json!({"text": "\u{E007}"}),
    )
    .await;

    // First sign-in: more information is required; register the phone.
    b.screen("register").await;
    assert_eq!(
        b.text("#screen-register h1").await,
        "More information is required"
    );
    accessible(b, "demo: register").await;
    b.screenshot("2-more-information-required").await;
    // A number the demo does not call (it calls only its own): the reason is shown by the
    // field.
    b.type_in("#phone", "+44 20 7183 8750").await;
    b.click("#register-btn").await;
    b.until(
        "return !document.getElementById('register-error').hidden;",
        "the refusal",
    )
    .await;
    let refusal = b.text("#register-error").await;
    assert!(
        refusal.contains("registers only +81 ** **** **78"),
        "{refusal}"
    );
    b.type_in("#phone", "+81 90 1234 5678").await;
    b.click("#register-btn").await;
    b.screen("calling").await;
    assert_eq!(
        b.text("#screen-calling h1").await,
        "We're calling your phone"
    );
    assert_eq!(b.text("#calling-number").await, "+81 ** **** **78");
    b.screenshot("3-calling").await;
    b.screen("verified").await;
    assert_eq!(
        b.text("#screen-verified h1").await,
        "Verification succeeded"
    );
    b.screenshot("4-verification-succeeded").await;
    b.click("#done-btn").await;
    b.screen("done").await;
}

/// A sign-in canceled on the page, the words for every failure, then a sign-in that asks to
/// remember the device (from the page the registration ended on).
async fn cancel_then_remember(b: &Browser) {
    // A sign-in called at once and canceled on the page: the call hangs up, and the page
    // says what happened and what to do.
    b.click("#screen-done button[data-action=restart]").await;
    b.screen("signin").await;
    b.type_in("#user", "alice").await;
    b.click("#signin-btn").await;
    b.screen("calling").await;
    b.click("#cancel-btn").await;
    b.screen("failed").await;
    assert_eq!(b.text("#failed-title").await, "Canceled");
    assert!(b.text("#failed-text").await.contains("Try again"));
    b.screenshot("5a-canceled").await;
    // Every way a challenge can fail has its words, in both languages.
    let words = b
        .js("return ['en', 'ja'].map(l => ['denied','fraud_reported','no_input','voicemail','no_answer','busy','declined','hung_up','failed','canceled','expired','interrupted'].filter(s => !(T[l].fail[s] && T[l].fail[s][0] && T[l].fail[s][1])));")
        .await;
    assert_eq!(words, json!([[], []]), "failure states without words");

    // Next sign-in: the phone is called at once; "don't ask again" ticked; the page moves
    // on by itself when '#' is pressed.
    b.click("#screen-failed button[data-action=restart]").await;
    b.screen("signin").await;
    b.type_in("#user", "alice").await;
    b.click("#remember").await;
    b.click("#signin-btn").await;
    b.screen("calling").await;
    b.screen("done").await;
    let done = b.text("#done-text").await;
    assert!(
        done.contains("Verified by a call") && done.contains("won't ask again"),
        "{done}"
    );
    let token = b
        .js("return localStorage.getItem('callverify-trusted:alice');")
        .await;
    assert!(
        token.as_str().is_some_and(|t| t.starts_with("cvt_")),
        "the trusted-device token is kept: {token}"
    );
    b.screenshot("5-signed-in").await;
}

/// The demo page in Japanese on a phone-sized screen (from the page the English steps
/// ended on), on the trusted device: no call, and the
/// page never held an API key.
async fn demo_page_in_japanese(b: &Browser) {
    // On the trusted device, in Japanese, on a phone-sized screen: no call.
    b.viewport(390, 844, true).await;
    b.click("#screen-done button[data-action=restart]").await;
    b.click("#lang-ja").await;
    assert_eq!(b.text("#screen-signin h1").await, "サインイン");
    assert_eq!(
        b.js("return document.documentElement.lang;").await,
        "ja",
        "the page says its language"
    );
    accessible(b, "demo (ja)").await;
    assert_eq!(
        b.js("return document.documentElement.scrollWidth <= window.innerWidth;")
            .await,
        true,
        "nothing wider than the phone's screen"
    );
    b.screenshot("6-sign-in-ja-390x844").await;
    b.type_in("#user", "alice").await;
    b.click("#signin-btn").await;
    b.screen("done").await;
    assert_eq!(b.text("#screen-done h1").await, "サインインしました");
    assert!(
        b.text("#done-text").await.contains("通話は不要"),
        "approved by the trusted device"
    );
    b.screenshot("7-signed-in-trusted-ja-390x844").await;
    // The page never held an API key: only poll tokens and the trusted-device token.
    let leaked = b
        .js("return document.documentElement.outerHTML.includes('cvk_') || JSON.stringify(localStorage).includes('cvk_');")
        .await;
    assert_eq!(leaked, false);
    let polls = b
        .js("return performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/challenges/')).length;")
        .await;
    assert!(polls.as_u64().unwrap_or(0) >= 2, "the page polled: {polls}");
}

/// The console: the three calls, filters and pages, the latest call's '#' and its timeline,
/// the charts.
async fn console(b: &Browser, site: &str, operator_key: &str) {
    // The console: the three calls, the latest one's '#' and its timeline.
    b.viewport(1280, 900, false).await;
    b.go(&format!("{site}/console")).await;
    accessible(b, "console").await;
    b.type_in("#key", operator_key).await;
    b.click("#open-btn").await;
    // The last call plays its closing prompt after the verdict: until it has ended, the
    // log says "in progress"; Apply reloads.
    b.until(
        "const o = [...document.querySelectorAll('#calls tbody tr td:nth-child(3)')].map(t => t.textContent); \
         if (o.join() === 'approved,canceled,approved') return true; \
         document.getElementById('apply-btn').click(); return false;",
        "the three calls in the log, ended",
    )
    .await;
    // Filters and pages.
    b.js("document.getElementById('f-outcome').value = 'canceled';")
        .await;
    b.click("#apply-btn").await;
    b.until(
        "const o = [...document.querySelectorAll('#calls tbody tr td:nth-child(3)')].map(t => t.textContent); return o.join() === 'canceled';",
        "only the canceled call",
    )
    .await;
    b.js("document.getElementById('f-outcome').value = '';")
        .await;
    b.type_in("#f-rows", "2").await;
    b.click("#apply-btn").await;
    let rows = "return [...document.querySelectorAll('#calls tbody tr td:nth-child(3)')].map(t => t.textContent).join();";
    let page_is = |want: &'static str| format!("{} === {want:?};", &rows[..rows.len() - 1]);
    b.until(&page_is("approved,canceled"), "the first page of 2")
        .await;
    b.click("#next-btn").await;
    b.until(&page_is("approved"), "the second page").await;
    assert_eq!(b.text("#page-no").await, "page 2");
    b.click("#first-btn").await;
    b.until(&page_is("approved,canceled"), "the first page again")
        .await;
    b.click("#calls tbody tr:first-child button").await;
    b.until(
        "return !document.getElementById('detail').hidden;",
        "the call's detail",
    )
    .await;
    assert_eq!(b.text("#keys .digit").await, "#");
    let steps = b.text("#steps").await;
    for want in ["200 OK (PCMU)", "greeting", "verdict", "approved"] {
        assert!(steps.contains(want), "{want} in the timeline: {steps}");
    }
    assert!(
        b.text("#detail-facts").await.contains("Jitter"),
        "RTP figures shown"
    );
    b.until(
        "return document.querySelectorAll('#chart-outcomes rect').length > 0 && document.querySelectorAll('#chart-verdict circle').length === 3;",
        "the charts",
    )
    .await;
    accessible(b, "console with a call").await;
    b.screenshot("8-console").await;
    b.js("document.getElementById('detail').scrollIntoView();")
        .await;
    b.screenshot("8b-console-timeline").await;
    b.js("document.getElementById('charts-title').scrollIntoView();")
        .await;
    b.screenshot("8c-console-charts").await;
    b.viewport(390, 844, true).await;
    b.screenshot("9-console-390x844").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_and_the_console_in_chromium() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: apt-get install chromium chromium-driver (.ci/test does)"
        );
    }
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    let (demo, addr, operator_key) = start_demo();
    let (_driver, b) = open_browser(&shots).await;
    let site = format!("http://{addr}");
    demo_page_in_english(&b, &site).await;
    cancel_then_remember(&b).await;
    demo_page_in_japanese(&b).await;
    console(&b, &site, &operator_key).await;
    let _ = b.call(reqwest::Method::DELETE, "", None).await;
    // SIGTERM: the demo stops by itself.
    let mut demo = demo;
    // The demo may have ended already.
    let _ = sigterm(demo.0.id());
    let end = Instant::now() + WAIT;
    loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < end, "the demo did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("screenshots in {}", shots.display());
}
