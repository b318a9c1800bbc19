//! Headless Chromium (Debian's chromium) driven through chromium-driver (W3C WebDriver) on
//! loopback, for the tests of the pages people see: navigation, clicks, typing, scripts,
//! screenshots, a phone-sized viewport, and the accessibility basics of a page.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::{V4, free_port};

/// Each wait of the test is bounded by this.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromium-driver in a process group of its own, with the Chromium it started: on drop
/// the whole group is killed (killing chromium-driver alone leaves Chromium running).
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        // Its group was made with `process_group(0)`; nothing needs a grace period.
        crate::stop_group(&mut self.0, Duration::ZERO);
    }
}

/// A WebDriver session.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    /// Where screenshots go.
    pub shots: std::path::PathBuf,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("the driver answers");
        let status = r.status();
        let v: Value = serde_json::from_str(&r.text().await.expect("a body"))
            .expect("the driver answers JSON");
        assert!(status.is_success(), "WebDriver {path}: {status} {v}");
        v["value"].clone()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn go(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        // The reference is the value of the W3C element key.
        v.as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.starts_with(ELEMENT)))
            .and_then(|(_, id)| id.as_str())
            .unwrap_or_else(|| panic!("an element for {css}: {v}"))
            .to_string()
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/click"), json!({})).await;
    }

    pub async fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/clear"), json!({})).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": text }))
            .await;
    }

    pub async fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    pub async fn text(&self, css: &str) -> String {
        let v = self
            .js(&format!(
                "const e = document.querySelector({css:?}); return e ? e.textContent : null;"
            ))
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Waits (bounded) until the screen `name` of the demo page shows.
    pub async fn screen(&self, name: &str) {
        let script = format!("return !document.getElementById('screen-{name}').hidden;");
        self.until(&script, &format!("screen {name}")).await;
    }

    pub async fn until(&self, script: &str, what: &str) {
        let end = Instant::now() + WAIT;
        while self.js(script).await != Value::Bool(true) {
            if Instant::now() > end {
                let shown = self
                    .js("const shown = [...document.querySelectorAll('main section')].filter(s => !s.hidden).map(s => s.id + ': ' + s.innerText).join(' | '); return shown || (location.href + ' ' + document.body.dataset.state + ': ' + document.body.innerText.slice(0, 400));")
                    .await;
                panic!("waited {WAIT:?} for {what}; showing: {shown}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn screenshot(&self, name: &str) {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64"))
            .expect("a PNG");
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setDeviceMetricsOverride",
                   "params": {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}}),
        )
        .await;
    }
}

/// Accessibility basics of the page shown: labelled fields, contrast of the visible text.
pub async fn accessible(b: &Browser, page: &str) {
    let unlabelled = b
        .js("return [...document.querySelectorAll('input, select')].filter(i => i.type !== 'hidden' && i.labels.length === 0 && !i.getAttribute('aria-label')).map(i => i.id);")
        .await;
    assert_eq!(unlabelled, json!([]), "{page}: fields without a label");
    // WCAG 2 contrast of every visible element's own text against its nearest opaque
    // background.
    let low = b
        .js(r#"
const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
const bg = (e) => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
  if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3); } return [255, 255, 255]; };
const out = [];
for (const e of document.querySelectorAll('body *')) {
  if (!e.offsetParent || ![...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
  const s = getComputedStyle(e); if (parseFloat(s.opacity) < 1) continue;
  const a = lum(rgb(s.color)), b = lum(bg(e));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) out.push(e.tagName + '#' + e.id + ' ' + ratio.toFixed(2) + ' ' + e.textContent.trim().slice(0, 30));
}
return out;"#)
        .await;
    assert_eq!(low, json!([]), "{page}: text under 4.5:1 contrast");
}

/// chromium-driver on loopback, and a headless Chromium session at 1280x900 through it.
pub async fn open_browser(shots: &std::path::Path) -> (Driver, Browser) {
    use std::os::unix::process::CommandExt;
    let port = free_port(V4);
    let driver_process = Driver(
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver"),
    );
    crate::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    let driver = format!("http://127.0.0.1:{port}");
    let end = Instant::now() + WAIT;
    while http.get(format!("{driver}/status")).send().await.is_err() {
        assert!(Instant::now() < end, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let session = http
        .post(format!("{driver}/session"))
        .header("content-type", "application/json")
        .body(json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--lang=en-US", "--no-first-run",
                         "--disable-background-networking", "--disable-sync", "--disable-component-update"]
            }
        }}}).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let session: Value = serde_json::from_str(&session).unwrap();
    let id = session["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("a session: {session}"))
        .to_string();
    let b = Browser {
        http: http.clone(),
        base: format!("{driver}/session/{id}"),
        shots: shots.to_path_buf(),
    };
    (driver_process, b)
}
