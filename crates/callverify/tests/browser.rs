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
use serde_json::{Value, json};

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
    // to the button; Enter in the field submits.
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
        "signin-btn",
        "Tab moves from the user name to the button"
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
    // field, with the numbers it calls.
    b.type_in("#phone", "+44 20 7183 8750").await;
    b.click("#register-btn").await;
    b.until(
        "return !document.getElementById('phone-error').hidden;",
        "the refusal",
    )
    .await;
    let refusal = b.text("#phone-error").await;
    assert!(
        refusal.contains("calls only its own numbers: 090-1234-5678, 090-1111-2222"),
        "{refusal}"
    );
    assert_eq!(
        b.js("return document.getElementById('phone').getAttribute('aria-invalid');")
            .await,
        "true"
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
    // The verification step: the call is placed from there.
    b.screen("verify").await;
    b.click("#call-btn").await;
    b.screen("calling").await;
    b.click("#cancel-btn").await;
    b.screen("failed").await;
    assert_eq!(b.text("#failed-title").await, "Canceled");
    assert!(b.text("#failed-text").await.contains("Call again"));
    b.screenshot("5a-canceled").await;
    // Every way a challenge can fail has its words, in both languages.
    let words = b
        .js("return ['en', 'ja'].map(l => ['denied','fraud_reported','no_input','voicemail','no_answer','busy','declined','hung_up','failed','canceled','expired','interrupted','wrong_code','wrong_code_spoken','check_number','check_number_signin','try_later','error'].filter(s => !(T[l].fail[s] && T[l].fail[s][0] && T[l].fail[s][1])));")
        .await;
    assert_eq!(words, json!([[], []]), "failure states without words");

    // Next sign-in: "don't ask again" ticked on the verification step; the page moves on
    // by itself when '#' is pressed.
    b.click("#screen-failed button[data-action=restart]").await;
    b.screen("signin").await;
    b.type_in("#user", "alice").await;
    b.click("#signin-btn").await;
    b.screen("verify").await;
    b.click("#remember").await;
    b.click("#call-btn").await;
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

/// The log's rows as the console shows them: each its first cell (the entry's link), its
/// outcome and its cause, joined by " | ".
const ROWS: &str = "return [...document.querySelectorAll('#log tbody tr')].map(r => [...r.cells].slice(0, 4).filter((_, i) => i !== 1).map(c => c.textContent).join(' | '));";

/// Searches the console's log for `q` as `by` (a user id, a number, a challenge or a call
/// id), and waits for the answer.
async fn search(b: &Browser, by: &str, q: &str) {
    b.js(&format!(
        "document.getElementById('f-by').value = {by:?}; document.getElementById('f-kind').value = ''; document.getElementById('f-outcome').value = '';"
    ))
    .await;
    b.type_in("#f-q", q).await;
    b.click("#apply-btn").await;
    b.until(
        &format!(
            "return new URLSearchParams(location.hash.slice(1)).get('q') === {q:?} && document.getElementById('log-status').textContent !== 'Loading…' && document.getElementById('tiles-title').textContent.startsWith('Figures: ');"
        ),
        &format!("the search for {by} {q}"),
    )
    .await;
}

/// Screenshots of the console as it is, at 1280x900 and at 390x844 (where nothing is wider
/// than the screen and each row starts with its link), back at 1280x900.
async fn both_sizes(b: &Browser, name: &str) {
    accessible(b, name).await;
    b.js("window.scrollTo(0, 0);").await;
    b.screenshot(name).await;
    b.viewport(390, 844, true).await;
    b.until(
        "return document.querySelector('#chart-outcomes svg') && +document.querySelector('#chart-outcomes svg').getAttribute('width') <= 390;",
        "the charts drawn at the phone's width",
    )
    .await;
    // The layout settles at the new width within a moment: what is wider, if anything.
    let mut wider = json!(null);
    for _ in 0..50 {
        wider = b
            .js("return window.innerWidth === 390 && document.documentElement.scrollWidth <= 390 ? [] : [window.innerWidth, document.documentElement.scrollWidth, 'scale ' + visualViewport.scale, ...[...document.querySelectorAll('body *')].filter(e => e.offsetParent && (e.getBoundingClientRect().right > 390 || e.scrollWidth > e.clientWidth + 1)).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right) + ' ' + e.scrollWidth + '/' + e.clientWidth).slice(0, 12)];")
            .await;
        if wider == json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        wider,
        json!([]),
        "{name}: nothing wider than the phone's screen"
    );
    assert_eq!(
        b.js("return [...document.querySelectorAll('#log tbody tr')].every(r => r.cells[0].querySelector('button, span') && r.cells[0].getBoundingClientRect().top <= r.cells[1].getBoundingClientRect().top);")
            .await,
        true,
        "{name}: each row's link comes first"
    );
    b.js("window.scrollTo(0, document.getElementById('tiles-title').offsetTop - 8);")
        .await;
    b.screenshot(&format!("{name}-390x844")).await;
    b.viewport(1280, 900, false).await;
    b.js("window.scrollTo(0, 0);").await;
}

/// The console: the log with its calls, the trusted sign-in and a refused attempt (the
/// number's limit), the figures, searched by user, number, challenge and call (each a URL
/// of its own that a reload and the back button keep), the plain-language causes, a call's
/// timeline relative to the answer, canceled shown neutral, the charts, the refresh that
/// keeps the focus; each state at 1280x900 and 390x844.
async fn console(b: &Browser, site: &str, operator_key: &str) {
    // The number that is not in service, registered until its limit refuses (10 in 600 s):
    // ten calls answered 404, then a refused attempt.
    let http = reqwest::Client::new();
    for i in 0..11 {
        let r = http
            .post(format!("{site}/demo/api/register"))
            .header("content-type", "application/json")
            .body(json!({"user_id": "flood", "phone_number": "+819055556666"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            if i < 10 { 201 } else { 429 },
            "registration {i}"
        );
    }

    b.viewport(1280, 900, false).await;
    b.go(&format!("{site}/console")).await;
    accessible(b, "console").await;
    b.type_in("#key", operator_key).await;
    b.click("#open-btn").await;
    // Every call ended (the refresh brings them in), the refusal and the trusted sign-in.
    b.until(
        "const t = document.querySelector('#log tbody').textContent; return t.includes('Refused') && t.includes('Trusted sign-in') && !t.includes('in progress') && document.querySelectorAll('#log tbody tr').length === 15 || (document.getElementById('apply-btn').click(), false);",
        "the log: 13 calls, the trusted sign-in and the refusal, every call ended",
    )
    .await;
    // The figures: 13 calls, 12 decided (the canceled one counts neither way), 2 approved.
    b.until(
        "return document.getElementById('t-calls').firstChild.textContent === '13';",
        "the figures",
    )
    .await;
    assert_eq!(b.text("#t-trusted").await, "1no call made");
    assert_eq!(b.text("#t-refused").await, "1before any call");
    assert!(
        b.text("#t-rate")
            .await
            .starts_with("16.7 %2 of 12 decided calls"),
        "{}",
        b.text("#t-rate").await
    );
    assert!(
        b.text("#t-p50").await.contains(" s"),
        "{}",
        b.text("#t-p50").await
    );
    assert!(
        b.text("#t-p95").await.ends_with(" s"),
        "{}",
        b.text("#t-p95").await
    );
    both_sizes(b, "8-console").await;
    // Every outcome in the filter and every state of a challenge has its words; the SIP
    // statuses say what to do; the confirmation is named, never its code.
    let missing = b
        .js("return [...document.querySelectorAll('#f-outcome option')].map(o => o.value).filter(o => o && o !== 'in_progress' && !OUTCOMES[o]);")
        .await;
    assert_eq!(missing, json!([]), "outcomes without words");
    let said = b
        .js("return [404, 408, 480, 486, 503, 603, 599, 488].map(s => sipCause(s)).concat([cause({ outcome: 'no_input' }), cause({ outcome: 'voicemail' }), cause({ outcome: 'denied', detail: 'wrong_code' }), confirmation({ confirmation: 'keypad_code', code_matched: true }), confirmation({ confirmation: 'spoken_code', code_matched: false }), confirmation({ confirmation: 'pound', code_matched: null }), confirmation({})]);")
        .await;
    assert_eq!(
        said,
        json!([
            "the number does not exist or is not reachable through the trunk: check the number",
            "no answer: the phone rang until the time-out, or the network gave up",
            "no answer: the phone is off, out of coverage or not registered",
            "busy: the phone was on another call",
            "trunk trouble: the trunk is unavailable or overloaded; try again or use another trunk",
            "declined: the user rejected the call",
            "trunk trouble (SIP 599): try again or use another trunk",
            "the phone and the gateway could not agree on audio: check the trunk's codecs",
            "answered but no key was pressed",
            "an answering machine answered: nothing was approved",
            "the digits typed did not match the number shown: denied",
            "number matching — code matched",
            "spoken code — code did not match",
            "press #",
            ""
        ])
    );

    // By user: alice's three calls and her trusted sign-in, newest first.
    search(b, "user_id", "demo:alice").await;
    let rows = b.js(ROWS).await;
    let rows: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows[0].starts_with("Trusted sign-in ch_"), "{rows:?}");
    assert!(
        rows[0].ends_with("approved | approved by a trusted device: no call was made"),
        "{rows:?}"
    );
    assert!(
        rows[1].ends_with("approved | the user confirmed the sign-in on the call"),
        "{rows:?}"
    );
    assert!(
        rows[2].ends_with(
            "canceled | canceled by the user or the service before the verdict (not a failure)"
        ),
        "{rows:?}"
    );
    assert_eq!(
        b.js(
            "return document.querySelector('#log tbody tr:nth-child(3) td:nth-child(3)').className;"
        )
        .await,
        "neutral",
        "canceled is not coloured as a failure"
    );
    assert!(b.text("#tiles-title").await.ends_with("user demo:alice"));
    assert!(b.text("#outcomes-title").await.contains("user demo:alice"));
    assert_eq!(b.text("#t-calls").await, "31 canceled");
    assert_eq!(b.text("#t-rate").await, "100.0 %2 of 2 decided calls");
    let trusted = b
        .js("return document.querySelector('#log tbody tr:first-child button').dataset.open;")
        .await;
    let trusted = trusted.as_str().unwrap().to_string();
    let call = b
        .js("return document.querySelector('#log tbody tr:nth-child(2) button').dataset.open;")
        .await;
    let call = call.as_str().unwrap().to_string();
    both_sizes(b, "8a-console-by-user").await;

    // By number, typed whole: shown masked; the ten calls answered 404 and the refusal.
    search(b, "", "+81 90 5555 6666").await;
    let rows = b.js(ROWS).await;
    let rows: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 11, "{rows:?}");
    // The refusal came when the eleventh was asked for, maybe before some calls started.
    // Its entry names the key that asked.
    let refused = |r: &str| {
        r.starts_with("Refused key key_")
            && r.ends_with(" | refused | Refused: a rate limit was reached (per number, user, key or country); try again after 600 s")
    };
    assert_eq!(rows.iter().filter(|r| refused(r)).count(), 1, "{rows:?}");
    assert!(
        rows.iter().filter(|r| !refused(r)).all(|r| r.ends_with(
            "failed (SIP 404) | the number does not exist or is not reachable through the trunk: check the number"
        )),
        "{rows:?}"
    );
    let page = b
        .js("return document.querySelector('main').innerText;")
        .await;
    assert!(
        !page.as_str().unwrap().contains("5555"),
        "the whole number is never shown"
    );
    assert!(b.text("#log tbody").await.contains("+81 ** **** **66"));
    assert_eq!(b.text("#t-refused").await, "1before any call");
    assert!(b.text("#tiles-title").await.ends_with("number (+81…66)"));
    both_sizes(b, "8b-console-by-number-refused").await;

    // By challenge: the trusted sign-in, opened: no call.
    search(b, "", &trusted).await;
    assert_eq!(b.js(ROWS).await.as_array().unwrap().len(), 1);
    b.click("#log tbody tr:first-child button").await;
    b.until(
        "return !document.getElementById('detail').hidden;",
        "the sign-in's detail",
    )
    .await;
    assert!(
        b.text("#detail-title")
            .await
            .starts_with("Trusted sign-in ch_")
    );
    assert!(
        b.text("#detail-facts")
            .await
            .contains("none: a trusted device approved it")
    );
    both_sizes(b, "8c-console-by-challenge-trusted").await;

    // By call: the call and its timeline, relative to the answer.
    search(b, "call_id", &call).await;
    assert_eq!(b.js(ROWS).await.as_array().unwrap().len(), 1);
    b.click("#log tbody tr:first-child button").await;
    b.until(
        &format!("return document.getElementById('detail-title').textContent === 'Call {call}';"),
        "the call's detail",
    )
    .await;
    assert_eq!(b.text("#keys .digit").await, "#");
    let steps = b.text("#steps").await;
    for want in [
        "200 OK (PCMU)",
        "greeting",
        "verdict",
        "approved",
        "s after answer",
        "s after INVITE (before the answer)",
    ] {
        assert!(steps.contains(want), "{want} in the timeline: {steps}");
    }
    assert!(b.text("#keys").await.contains("s after answer"));
    let facts = b.text("#detail-facts").await;
    assert!(
        facts.contains("Jitter") && facts.contains("the user confirmed"),
        "{facts}"
    );
    b.js("document.getElementById('detail').scrollIntoView();")
        .await;
    b.screenshot("8d-console-by-call-timeline").await;
    both_sizes(b, "8d-console-by-call").await;

    // One URL per call: a reload shows the same search and call; back goes to the search
    // before (the trusted sign-in).
    let url = b.js("return location.href;").await;
    assert!(
        url.as_str().unwrap().contains(&format!("open={call}")),
        "{url}"
    );
    b.post("/refresh", json!({})).await;
    b.until(
        &format!("return document.getElementById('detail-title').textContent === 'Call {call}' && document.getElementById('f-q').value === {call:?};"),
        "the call again after a reload",
    )
    .await;
    b.post("/back", json!({})).await;
    b.post("/back", json!({})).await;
    b.until(
        &format!("return document.getElementById('f-q').value === {trusted:?} && document.getElementById('detail-title').textContent.startsWith('Trusted sign-in');"),
        "the search before, with its entry open",
    )
    .await;

    // Refused attempts only.
    b.js("document.getElementById('f-q').value = ''; document.getElementById('f-kind').value = 'refusal';").await;
    b.click("#apply-btn").await;
    b.until(
        "return [...document.querySelectorAll('#log tbody tr')].length === 1 && document.querySelector('#log tbody').textContent.includes('Refused');",
        "only the refusal",
    )
    .await;

    // The refresh (every 10 s) redraws nothing that did not change, and keeps the focus.
    b.js("document.getElementById('f-kind').value = ''; document.getElementById('f-by').value = ''; document.getElementById('f-q').value = 'demo:alice';").await;
    b.click("#apply-btn").await;
    b.until(
        "return document.querySelectorAll('#log tbody tr').length === 4;",
        "alice's entries",
    )
    .await;
    b.js("window.__row = document.querySelector('#log tbody tr:nth-child(2)'); window.__row.querySelector('button').focus(); window.__was = document.getElementById('refreshed').textContent;").await;
    b.until(
        "return document.getElementById('refreshed').textContent !== window.__was;",
        "a refresh",
    )
    .await;
    assert_eq!(
        b.js(&format!("return document.activeElement.dataset.open === {call:?} && document.querySelector('#log tbody tr:nth-child(2)') === window.__row;")).await,
        true,
        "the refresh kept the focus and the rows"
    );
    b.click("#auto").await;
    assert_eq!(b.js("return timer === null;").await, true, "paused");
    b.click("#auto").await;

    // The charts: labelled time axes, titles that follow the filter.
    b.until(
        "return document.querySelectorAll('#chart-outcomes rect').length > 0 && document.querySelectorAll('#chart-verdict circle').length === 3;",
        "the charts of alice's calls",
    )
    .await;
    let charts = b.text(".charts").await;
    for want in [
        "Hour the calls started (local time)",
        "When the call started (local time)",
        "Seconds",
        "Calls",
        "user demo:alice",
    ] {
        assert!(charts.contains(want), "{want} in the charts: {charts}");
    }
    accessible(b, "console with a call").await;
    b.js("document.getElementById('charts-title').scrollIntoView();")
        .await;
    b.screenshot("8e-console-charts").await;
    b.viewport(390, 844, true).await;
    b.until(
        "return +document.querySelector('#chart-outcomes svg').getAttribute('width') <= 390;",
        "the charts at the phone's width",
    )
    .await;
    b.js("document.getElementById('charts-title').scrollIntoView();")
        .await;
    b.screenshot("9-console-charts-390x844").await;
    b.viewport(1280, 900, false).await;
}

/// The tests of this file one at a time: each runs a gateway, baresip and Chromium.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The checks every state of the demo page passes, in `lang` at `width` px: in Japanese, no
/// 検証, no English sentence, no half-width space after 。 or inside 14日間; in both, no
/// "SIP" in the user's text, nothing wider than the screen, サインイン on one line, one
/// live region.
async fn page_checks(b: &Browser, what: &str, lang: &str) {
    let found = b
        .js(&format!(
            r#"
const lang = {lang:?};
const text = document.querySelector('main').innerText;
const out = [];
if (lang === 'ja') {{
  if (text.includes('検証')) out.push('検証');
  const en = text.match(/[A-Za-z]{{2,}}(?:[ ,']+[A-Za-z]{{2,}}){{2,}}/);
  if (en) out.push('English: ' + en[0]);
  if (/。 /.test(text)) out.push('a space after 。');
  if (/\d+ 日|日 間/.test(text)) out.push('a space in 14日間');
}}
if (/SIP|\(\d{{3}}\)/.test(text)) out.push('a SIP status in the text');
if (document.documentElement.scrollWidth > window.innerWidth) out.push('wider than the screen');
const walker = document.createTreeWalker(document.querySelector('main'), NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {{
  for (let i = n.textContent.indexOf('サインイン'); i >= 0; i = n.textContent.indexOf('サインイン', i + 1)) {{
    const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 5);
    const lines = new Set([...r.getClientRects()].map(x => Math.round(x.top)));
    if (lines.size > 1) out.push('サインイン broken across lines: ' + n.textContent);
  }}
}}
const live = document.querySelectorAll('[aria-live], [role=alert], [role=status]').length;
if (live !== 1) out.push(live + ' live regions');
return out;"#
        ))
        .await;
    assert_eq!(found, json!([]), "{what}");
}

/// Screenshots of the demo page's state `name` in English and Japanese at 1280x900 and
/// 390x844 (`demo-<name>-<lang>-<size>.png`), each with [`accessible`] and [`page_checks`];
/// ends in English at 1280x900.
async fn every_way(b: &Browser, name: &str) {
    for lang in ["en", "ja"] {
        b.click(&format!("#lang-{lang}")).await;
        for (w, h) in [(1280, 900), (390, 844)] {
            b.viewport(w, h, w < 500).await;
            let what = format!("demo: {name} ({lang}, {w}x{h})");
            accessible(b, &what).await;
            page_checks(b, &what, lang).await;
            b.screenshot(&format!("demo-{name}-{lang}-{w}x{h}")).await;
        }
    }
    b.click("#lang-en").await;
    b.viewport(1280, 900, false).await;
}

/// The text of the call's state line once it says `want`.
async fn call_state_is(b: &Browser, want: &str) {
    b.until(
        &format!("return document.getElementById('call-state').textContent === {want:?};"),
        want,
    )
    .await;
}

/// The sign-in form: the focus ring (at least 3:1 against the card, not on the heading that
/// takes the focus), an empty user name refused by its field.
async fn sign_in_form(b: &Browser, site: &str) {
    b.go(&format!("{site}/demo")).await;
    b.until("return document.body.dataset.ready === 'true';", "the page")
        .await;
    b.click("#lang-en").await;
    // The heading that takes the focus shows no ring.
    let heading = b
        .js("const h = document.querySelector('#screen-signin h1'); h.tabIndex = -1; h.focus(); return [document.activeElement === h, getComputedStyle(h).outlineStyle];")
        .await;
    assert_eq!(heading, json!([true, "none"]), "no ring around a heading");
    // The keyboard's ring on the button: Tab from the user name.
    let user = b.find("#user").await;
    b.post(
        &format!("/element/{user}/value"),
        json!({"text": "\u{E004}"}),
    )
    .await;
    let ring = b
        .js(r#"
const e = document.activeElement, s = getComputedStyle(e);
const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
let p = e.parentElement; while (p && rgb(getComputedStyle(p).backgroundColor).length === 4 && rgb(getComputedStyle(p).backgroundColor)[3] === 0) p = p.parentElement;
const a = lum(rgb(s.outlineColor)), b = lum(rgb(getComputedStyle(p || document.body).backgroundColor));
return [e.id, e.matches(':focus-visible'), s.outlineStyle, parseFloat(s.outlineWidth) >= 2, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];"#)
        .await;
    assert_eq!(ring[0], "signin-btn", "{ring}");
    assert_eq!(ring[1], true, "{ring}");
    assert_eq!(ring[2], "solid", "{ring}");
    assert_eq!(ring[3], true, "{ring}");
    assert!(
        ring[4].as_f64().unwrap_or(0.0) >= 3.0,
        "focus ring contrast: {ring}"
    );
    every_way(b, "01-sign-in").await;
    // An empty user name: said by the field, which is marked invalid.
    b.click("#signin-btn").await;
    b.until(
        "return !document.getElementById('signin-error').hidden;",
        "the error",
    )
    .await;
    let tied = b
        .js("const u = document.getElementById('user'); return [u.getAttribute('aria-invalid'), u.getAttribute('aria-describedby'), document.getElementById('live').textContent];")
        .await;
    assert_eq!(
        tied,
        json!(["true", "signin-error", "Enter your user name."]),
        "the error is tied to its field and announced once"
    );
    every_way(b, "02-sign-in-empty-user").await;
}

/// Registration: numbers refused by the field (bad, not the demo's), a national format,
/// the phone ringing, a reload that follows the same call, no answer.
async fn register_and_ring(b: &Browser) {
    b.type_in("#user", "bob").await;
    b.click("#signin-btn").await;
    b.screen("register").await;
    assert_eq!(
        b.js("return document.getElementById('country').value;")
            .await,
        "JP",
        "the first allowed country is the default"
    );
    every_way(b, "03-register").await;
    // Too short for Japan's plan: the field says so.
    b.type_in("#phone", "090-12").await;
    b.click("#register-btn").await;
    b.until(
        "return !document.getElementById('phone-error').hidden;",
        "the bad number",
    )
    .await;
    let tied = b
        .js("const p = document.getElementById('phone'); return [p.getAttribute('aria-invalid'), p.getAttribute('aria-describedby')];")
        .await;
    assert_eq!(tied, json!(["true", "phone-hint phone-error"]));
    assert!(
        b.text("#phone-error")
            .await
            .contains("valid phone number in Japan")
    );
    every_way(b, "04-bad-number").await;
    // A real Tokyo number, not one of the demo's.
    b.type_in("#phone", "(03) 1234-5678").await;
    b.click("#register-btn").await;
    b.until(
        "return document.getElementById('phone-error').textContent.includes('its own numbers');",
        "not a demo number",
    )
    .await;
    every_way(b, "05-not-a-demo-number").await;
    // The national format, full-width as a Japanese keyboard types it: the number that
    // rings and is never answered.
    b.type_in("#phone", "０９０－１１１１－２２２２").await;
    assert_eq!(
        b.js("return document.getElementById('phone').getAttribute('aria-invalid');")
            .await,
        Value::Null,
        "typing clears the error"
    );
    every_way(b, "06-national-format").await;
    b.click("#register-btn").await;
    b.screen("calling").await;
    assert_eq!(b.text("#calling-number").await, "+81 ** **** **22");
    call_state_is(b, "Your phone is ringing.").await;
    b.until(
        "return /\\(0:0[1-9]\\)/.test(document.getElementById('elapsed').textContent);",
        "the elapsed time",
    )
    .await;
    every_way(b, "07-ringing").await;
    // A reload follows the same call: no second one.
    let before = b
        .js("return JSON.parse(sessionStorage.getItem('callverify-demo-flow')).flow.challenge.id;")
        .await;
    b.post("/refresh", json!({})).await;
    b.until(
        "return document.body && document.body.dataset.ready === 'true';",
        "the page again",
    )
    .await;
    b.screen("calling").await;
    let after = b
        .js("return [JSON.parse(sessionStorage.getItem('callverify-demo-flow')).flow.challenge.id, performance.getEntriesByType('resource').filter(e => e.name.includes('/demo/api/register')).length];")
        .await;
    assert_eq!(after, json!([before, 0]), "the same call, not a second one");
    call_state_is(b, "Your phone is ringing.").await;
    every_way(b, "08-resumed-after-reload").await;
    b.screen("failed").await;
    assert_eq!(b.text("#failed-title").await, "Your phone wasn't answered");
    every_way(b, "09-no-answer").await;
}

/// A call answered with no key (waiting for the key, then no input), a number not in
/// service (check the number), then the limit's Retry-After.
async fn no_key_then_not_in_service(b: &Browser, site: &str) {
    b.click("#screen-failed button[data-action=restart]").await;
    b.type_in("#user", "bob").await;
    b.click("#signin-btn").await;
    b.screen("register").await;
    b.type_in("#phone", "090 3333 4444").await;
    b.click("#register-btn").await;
    b.screen("calling").await;
    call_state_is(b, "Answered: press # now.").await;
    every_way(b, "10-answered-waiting-for-the-key").await;
    b.screen("failed").await;
    assert_eq!(b.text("#failed-title").await, "We didn't hear a key");
    every_way(b, "11-no-input").await;
    // Not in service (SIP 404): "check the number", and the button goes back to the form.
    b.click("#screen-failed button[data-action=restart]").await;
    b.type_in("#user", "bob").await;
    b.click("#signin-btn").await;
    b.screen("register").await;
    b.type_in("#phone", "+81 90 5555 6666").await;
    b.click("#register-btn").await;
    b.screen("failed").await;
    assert_eq!(
        b.text("#failed-title").await,
        "We couldn't reach that number"
    );
    assert!(b.text("#failed-text").await.starts_with("Check the number"));
    assert_eq!(b.text("#retry-btn").await, "Change the number");
    every_way(b, "12-check-the-number").await;
    // The number's limit (10 calls in 600 s): nine more registrations of it, then the
    // page's is refused with Retry-After, and its button waits saying how long.
    let http = reqwest::Client::new();
    for _ in 0..9 {
        let r = http
            .post(format!("{site}/demo/api/register"))
            .header("content-type", "application/json")
            .body(json!({"user_id": "flood", "phone_number": "+819055556666"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    b.click("#retry-btn").await;
    b.screen("register").await;
    b.click("#register-btn").await;
    b.until(
        "return document.getElementById('register-btn').disabled && !document.getElementById('phone-error').hidden;",
        "the wait",
    )
    .await;
    assert!(
        b.text("#phone-error").await.contains("Wait 10 minutes"),
        "{}",
        b.text("#phone-error").await
    );
    let waiting = b.text("#register-btn").await;
    assert!(
        waiting == "Try again in 10:00" || waiting.starts_with("Try again in 9:5"),
        "{waiting}"
    );
    every_way(b, "13-retry-after").await;
}

/// Registration approved, then a sign-in with "don't ask again" on the verification step,
/// then one on the trusted device.
async fn approved_then_remembered(b: &Browser) -> Value {
    b.type_in("#phone", "090-1234-5678").await;
    b.js("for (const id of Object.keys(waits)) { waits[id].until = 0; tick(id); }")
        .await;
    b.click("#register-btn").await;
    b.screen("verified").await;
    every_way(b, "14-verification-succeeded").await;
    b.click("#done-btn").await;
    b.screen("done").await;
    b.click("#screen-done button[data-action=restart]").await;
    b.type_in("#user", "bob").await;
    b.click("#signin-btn").await;
    b.screen("verify").await;
    assert_eq!(
        b.text("#remember-label").await,
        "Don't ask again for 14 days"
    );
    every_way(b, "15-verification-step").await;
    b.click("#remember").await;
    b.click("#call-btn").await;
    b.screen("calling").await;
    let real = b
        .js("return JSON.parse(sessionStorage.getItem('callverify-demo-flow')).flow.challenge;")
        .await;
    every_way(b, "16-calling").await;
    b.screen("done").await;
    assert!(b.text("#done-text").await.contains("won't ask again"));
    every_way(b, "17-signed-in-remembered").await;
    b.click("#screen-done button[data-action=restart]").await;
    b.type_in("#user", "bob").await;
    b.click("#signin-btn").await;
    b.screen("done").await;
    assert!(b.text("#done-text").await.contains("no call was needed"));
    every_way(b, "18-signed-in-trusted").await;
    real
}

/// Number matching and the spoken code as the page draws them from a challenge that has
/// them (a challenge made up in the page: the gateway on this branch has only '#'), and the
/// code's check through the demo's backend for a real challenge, whose answer the page
/// words like any problem.
async fn number_matching_and_spoken_code(b: &Browser, real: &Value) {
    let made_up = "flow = { kind: 'sign_in', user: 'bob', remember: false, challenge: null }; show('calling'); \
         flow.challenge = { id: 'ch_x', state: 'answered', confirmation: 'keypad_code', display_code: '47', \
         phone_number: '+81 ** **** **78', created_at: new Date(Date.now() - 9000).toISOString() }; showState(flow.challenge, true);";
    b.js(made_up).await;
    assert_eq!(b.text("#display-code").await, "47");
    every_way(b, "19-number-matching").await;
    b.js("flow.challenge = Object.assign({}, flow.challenge, { state: 'code_spoken', confirmation: 'spoken_code', display_code: null, code_attempts_left: 5 }); showState(flow.challenge, true);")
        .await;
    let input = b
        .js("const c = document.getElementById('code'); return [c.inputMode, c.autocomplete, !document.getElementById('form-code').hidden];")
        .await;
    assert_eq!(input, json!(["numeric", "one-time-code", true]));
    every_way(b, "20-spoken-code").await;
    b.js("showProblem(document.getElementById('code-error'), { type: 'https://callverify.invalid/problems/wrong-code', attempts_left: 4 }, document.getElementById('code'));")
        .await;
    assert_eq!(
        b.text("#code-error").await,
        "That code isn't right. 4 attempts left."
    );
    every_way(b, "21-wrong-code").await;
    b.js("fail({ key: 'wrong_code' });").await;
    b.screen("failed").await;
    every_way(b, "22-number-did-not-match").await;
    // A real challenge and its poll token (the remembered sign-in's): the backend passes the
    // code on to the gateway's check, and the page words the answer like any problem (no
    // such route before the spoken codes are merged, or not a spoken-code challenge after).
    b.js(&format!(
        "flow = {{ kind: 'sign_in', user: 'bob', remember: false }}; show('calling'); \
         flow.challenge = Object.assign({real}, {{ state: 'code_spoken', confirmation: 'spoken_code' }}); \
         showState(flow.challenge, true);"
    ))
    .await;
    b.type_in("#code", "１２３４５６").await;
    b.click("#code-btn").await;
    b.until(
        "return !document.getElementById('code-error').hidden;",
        "the check's answer",
    )
    .await;
    let said = b.text("#code-error").await;
    assert!(
        [
            "We couldn't check the code. Try again in a moment.",
            "The call hasn't read the code yet: wait for it, then type it."
        ]
        .contains(&said.as_str()),
        "{said}"
    );
    every_way(b, "23-code-check-answered").await;
}
/// Another phone: after a sign-in, "Add another phone" registers the demo's other phone (the
/// usual phone approves first, then the new one); the next sign-in's verification step
/// offers "Call my other phone", as does the failed screen once the usual call is canceled,
/// and the call to the other phone is approved.
async fn call_my_other_phone(b: &Browser, site: &str) {
    b.js("localStorage.clear(); sessionStorage.clear();").await;
    b.go(&format!("{site}/demo")).await;
    b.screen("signin").await;
    b.click("#lang-en").await;
    // A user of their own (bob's calls are near the per-user limit): the usual phone first.
    b.type_in("#user", "dana").await;
    b.click("#signin-btn").await;
    b.screen("register").await;
    b.type_in("#phone", "090-1234-5678").await;
    b.click("#register-btn").await;
    b.screen("verified").await;
    b.click("#done-btn").await;
    b.screen("done").await;
    assert_eq!(
        b.js("return document.getElementById('add-phone-btn').hidden;")
            .await,
        true,
        "another phone is added after a sign-in"
    );
    b.click("#screen-done button[data-action=restart]").await;
    b.type_in("#user", "dana").await;
    b.click("#signin-btn").await;
    b.screen("verify").await;
    let hidden = "return ['other-btn', 'other-calling-btn', 'other-failed-btn'].map(id => document.getElementById(id).hidden);";
    assert_eq!(
        b.js(hidden).await,
        json!([true, true, true]),
        "no other phone yet"
    );
    b.click("#call-btn").await;
    b.screen("done").await;
    assert_eq!(b.text("#add-phone-btn").await, "Add another phone");
    every_way(b, "27-signed-in-add-another-phone").await;
    b.click("#add-phone-btn").await;
    b.screen("register").await;
    assert_eq!(b.text("#register-title").await, "Add another phone");
    every_way(b, "28-add-another-phone").await;
    b.type_in("#phone", "090-7777-8888").await;
    b.click("#register-btn").await;
    b.screen("verified").await;
    assert!(
        b.text("#verified-text")
            .await
            .starts_with("Your other phone is registered."),
        "{}",
        b.text("#verified-text").await
    );
    every_way(b, "29-other-phone-registered").await;
    b.click("#done-btn").await;
    b.screen("done").await;
    b.click("#screen-done button[data-action=restart]").await;
    b.type_in("#user", "dana").await;
    b.click("#signin-btn").await;
    b.screen("verify").await;
    assert_eq!(
        b.text("#other-btn").await,
        "Call my other phone +81 ** **** **88"
    );
    every_way(b, "30-verification-step-with-another-phone").await;
    // The usual phone, canceled at once: the failed screen offers the other phone too.
    b.click("#call-btn").await;
    b.screen("calling").await;
    assert_eq!(b.text("#calling-number").await, "+81 ** **** **78");
    assert_eq!(
        b.js("return document.getElementById('other-calling-btn').hidden;")
            .await,
        false,
        "the calling screen offers the other phone"
    );
    b.click("#cancel-btn").await;
    b.screen("failed").await;
    assert_eq!(
        b.text("#other-failed-btn").await,
        "Call my other phone +81 ** **** **88"
    );
    every_way(b, "31-canceled-call-my-other-phone").await;
    b.click("#other-failed-btn").await;
    b.until(
        "return !document.getElementById('screen-calling').hidden \
         && document.getElementById('calling-number').textContent === '+81 ** **** **88';",
        "the call to the other phone",
    )
    .await;
    every_way(b, "32-calling-my-other-phone").await;
    b.screen("done").await;
    assert!(b.text("#done-text").await.contains("Verified by a call"));
}

/// The modes with real challenges of the gateway (`?confirmation=` in the page's address):
/// number matching shows the two digits the API drew for this challenge (the softphone
/// presses '#' alone, which is not enough: the call asks again, and the user cancels); a
/// spoken code is read to the softphone (a person, for answering-machine detection: it says
/// nothing), the code field appears when the challenge is `code_spoken`, and a wrong code is
/// answered by the gateway's check with the attempts left.
async fn real_modes(b: &Browser, site: &str) {
    b.js("localStorage.clear(); sessionStorage.clear();").await;
    b.go(&format!("{site}/demo?confirmation=keypad_code")).await;
    b.click("#lang-en").await;
    b.type_in("#user", "bob").await;
    b.click("#signin-btn").await;
    b.screen("verify").await;
    b.click("#call-btn").await;
    b.screen("calling").await;
    b.until(
        "return /^[0-9]{2}$/.test(document.getElementById('display-code').textContent);",
        "the number to enter",
    )
    .await;
    let shown = b.text("#display-code").await;
    let drawn = b
        .js("return JSON.parse(sessionStorage.getItem('callverify-demo-flow')).flow.challenge;")
        .await;
    assert_eq!(drawn["confirmation"], "keypad_code", "{drawn}");
    assert_eq!(
        drawn["display_code"].as_str(),
        Some(shown.as_str()),
        "{drawn}"
    );
    let d = shown.as_bytes();
    assert_ne!(d[0], d[1], "two different digits: {shown}");
    every_way(b, "24-number-matching-real-call").await;
    b.click("#cancel-btn").await;
    b.screen("failed").await;
    b.click("#screen-failed button[data-action=restart]").await;
    b.screen("signin").await;

    b.go(&format!("{site}/demo?confirmation=spoken_code")).await;
    b.screen("signin").await;
    b.click("#lang-en").await;
    b.type_in("#user", "bob").await;
    b.click("#signin-btn").await;
    b.screen("verify").await;
    b.click("#call-btn").await;
    b.screen("calling").await;
    b.until(
        "return !document.getElementById('form-code').hidden \
         && !!flow && !!flow.challenge && flow.challenge.state === 'code_spoken';",
        "the code field, once the call has read the code",
    )
    .await;
    let c = b
        .js("return JSON.parse(sessionStorage.getItem('callverify-demo-flow')).flow.challenge;")
        .await;
    assert_eq!(c["confirmation"], "spoken_code", "{c}");
    assert!(c.get("display_code").is_none_or(Value::is_null), "{c}");
    every_way(b, "25-spoken-code-real-call").await;
    b.type_in("#code", "000000").await;
    b.click("#code-btn").await;
    b.until(
        "return !document.getElementById('code-error').hidden;",
        "the check's answer",
    )
    .await;
    // One in a million: the softphone's code was 000000.
    let said = b.text("#code-error").await;
    let answer = b
        .js("return document.getElementById('code-error').dataset.shown;")
        .await;
    assert_eq!(said, "That code isn't right. 4 attempts left.", "{answer}");
    every_way(b, "26-spoken-code-wrong-real").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_and_the_console_in_chromium() {
    let _one = ONE_AT_A_TIME.lock().await;
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

/// Every state of the demo page, in English and Japanese at 1280x900 and 390x844, each
/// screenshot with the page's checks: the sign-in form and its focus ring, registration's
/// refusals and a national format, ringing, a reload that resumes the call, no answer, a
/// call answered waiting for its key, no input, a number not in service, the limit's
/// Retry-After, a registration approved, the verification step with "don't ask again", the
/// trusted device, number matching and the spoken code, another phone added and called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_in_every_state() {
    let _one = ONE_AT_A_TIME.lock().await;
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: apt-get install chromium chromium-driver (.ci/test does)"
        );
    }
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    let (demo, addr, _) = start_demo();
    let (_driver, b) = open_browser(&shots).await;
    let site = format!("http://{addr}");
    sign_in_form(&b, &site).await;
    register_and_ring(&b).await;
    no_key_then_not_in_service(&b, &site).await;
    let real = approved_then_remembered(&b).await;
    number_matching_and_spoken_code(&b, &real).await;
    call_my_other_phone(&b, &site).await;
    real_modes(&b, &site).await;
    let _ = b.call(reqwest::Method::DELETE, "", None).await;
    let _ = sigterm(demo.0.id());
    let mut demo = demo;
    let end = Instant::now() + WAIT;
    while demo.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "the demo did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("screenshots in {}", shots.display());
}
