//! The pages a user sees during an EAM sign-in, in English or Japanese, in the tone of
//! Microsoft's own sign-in pages: the call in progress (its state followed live), no phone
//! to call, a request that cannot be used, and the form that takes the browser back to
//! Entra. Every value put into a page is HTML-escaped; the page's script reads its settings
//! from a JSON block, never from the URL.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use media::Language;

/// The page's language: the first of `ui_locales` (space-separated, as OpenID Connect sends
/// it), else of `Accept-Language` (by weight), that callverify speaks; else English.
pub(crate) fn language(ui_locales: Option<&str>, accept_language: Option<&str>) -> Language {
    let known = |tag: &str| {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        Language::from_code(&primary.to_ascii_lowercase())
    };
    if let Some(l) = ui_locales.and_then(|u| u.split_ascii_whitespace().take(16).find_map(known)) {
        return l;
    }
    let mut weighted: Vec<(u16, &str)> = accept_language
        .unwrap_or_default()
        .split(',')
        .take(16)
        .filter_map(|part| {
            let mut it = part.split(';');
            let tag = it.next()?.trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1000), |q| {
                    q.trim()
                        .parse::<f32>()
                        .ok()
                        .map(|v| (v.clamp(0.0, 1.0) * 1000.0) as u16)
                })?;
            (q > 0).then_some((q, tag))
        })
        .collect();
    weighted.sort_by_key(|w| std::cmp::Reverse(w.0));
    weighted
        .into_iter()
        .find_map(|(_, t)| known(t))
        .unwrap_or(Language::En)
}

/// Hidden form fields, escaped.
fn hidden_inputs(fields: &[(&str, &str)]) -> String {
    use std::fmt::Write;
    fields.iter().fold(String::new(), |mut out, (k, v)| {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        );
        out
    })
}

/// HTML-escapes text for an element or a quoted attribute.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The texts of the pages in one language.
pub(crate) struct Texts {
    pub title: &'static str,
    /// "{phone}" is replaced.
    pub calling: &'static str,
    pub cancel: &'static str,
    pub again: &'static str,
    pub other_phone: &'static str,
    pub continue_: &'static str,
    pub back: &'static str,
    pub no_phone_title: &'static str,
    pub no_phone: &'static str,
    /// "{help}" is replaced.
    pub ask_help: &'static str,
    pub ask_admin: &'static str,
    pub invalid_title: &'static str,
    pub invalid: &'static str,
    pub expired_title: &'static str,
    pub unavailable: &'static str,
    pub not_now: &'static str,
    pub not_allowed: &'static str,
    pub signing_in: &'static str,
    pub returning: &'static str,
    pub elapsed: &'static str,
    /// Number matching: "{phone}" is replaced.
    pub calling_keypad: &'static str,
    /// Number matching, above the number shown.
    pub keypad_lead: &'static str,
    /// A spoken code: "{phone}" is replaced.
    pub calling_spoken: &'static str,
    pub code_label: &'static str,
    pub code_submit: &'static str,
    /// "{n}" is replaced.
    pub code_wrong: &'static str,
    pub code_format: &'static str,
    pub code_spoken_state: &'static str,
    pub code_answered_state: &'static str,
    pub keypad_answered_state: &'static str,
}

const EN: Texts = Texts {
    title: "Verify your identity",
    calling: "We're calling your phone {phone}. Answer it and press # to sign in.",
    cancel: "Cancel",
    again: "Call again",
    other_phone: "Call my other phone",
    continue_: "Continue",
    back: "Back to sign-in",
    no_phone_title: "We can't call you",
    no_phone: "There's no phone registered for your sign-in verification.",
    ask_help: "To add one, contact {help}.",
    ask_admin: "To add one, contact your administrator.",
    invalid_title: "This sign-in request can't be used",
    invalid: "Go back to the app or website you were signing in to and try again.",
    expired_title: "This sign-in has expired",
    unavailable: "We can't place calls right now. Try again in a few minutes.",
    not_now: "Too many calls were made to your phone. Try again later.",
    not_allowed: "Your phone number can't be called by this service. Contact your administrator.",
    signing_in: "Signing you in…",
    returning: "Taking you back…",
    elapsed: "{s} s",
    calling_keypad: "We're calling your phone {phone}. Answer it, then enter the number below on your phone's keypad and press #.",
    keypad_lead: "Enter this number on your phone's keypad, then press #:",
    calling_spoken: "We're calling your phone {phone}. Answer it and listen: the call reads you a 6-digit code to type here.",
    code_label: "Code from the call",
    code_submit: "Verify",
    code_wrong: "That code isn't right. You can try {n} more times.",
    code_format: "Enter the 6 digits you heard.",
    code_spoken_state: "Type the code you heard on the call.",
    code_answered_state: "Call answered. Listen for your code.",
    keypad_answered_state: "Call answered. Enter the number shown here on your keypad, then press #.",
};

const JA: Texts = Texts {
    title: "本人確認",
    calling: "お使いの電話 {phone} に電話をかけています。電話に出て # を押すと、サインインできます。",
    cancel: "キャンセル",
    again: "もう一度電話する",
    other_phone: "別の電話にかける",
    continue_: "続行",
    back: "サインインに戻る",
    no_phone_title: "電話をおかけできません",
    no_phone: "サインインの確認に使う電話が登録されていません。",
    ask_help: "登録については {help} にお問い合わせください。",
    ask_admin: "登録については管理者にお問い合わせください。",
    invalid_title: "このサインイン要求は使用できません",
    invalid: "サインインしようとしていたアプリまたは Web サイトに戻って、もう一度お試しください。",
    expired_title: "このサインインは有効期限が切れています",
    unavailable: "現在、電話をおかけできません。数分後にもう一度お試しください。",
    not_now: "お使いの電話への発信回数が多すぎます。しばらくしてからもう一度お試しください。",
    not_allowed: "お使いの電話番号には、このサービスから発信できません。管理者にお問い合わせください。",
    signing_in: "サインインしています…",
    returning: "元のページに戻っています…",
    elapsed: "{s} 秒",
    calling_keypad: "お使いの電話 {phone} に電話をかけています。電話に出たら、下の数字を電話のキーパッドで入力し、続けて # を押してください。",
    keypad_lead: "電話のキーパッドでこの数字を入力し、続けて # を押してください。",
    calling_spoken: "お使いの電話 {phone} に電話をかけています。電話に出ると、6桁の確認コードをお伝えします。そのコードをここに入力してください。",
    code_label: "お電話でお伝えしたコード",
    code_submit: "確認",
    code_wrong: "コードが正しくありません。あと{n}回入力できます。",
    code_format: "お聞きになった6桁の数字を入力してください。",
    code_spoken_state: "お電話でお伝えしたコードを入力してください。",
    code_answered_state: "電話がつながりました。確認コードをお聞きください。",
    keypad_answered_state: "電話がつながりました。ここに表示されている数字をキーパッドで入力し、続けて # を押してください。",
};

/// The texts in `lang`.
pub(crate) fn texts(lang: Language) -> &'static Texts {
    match lang {
        Language::Ja => &JA,
        Language::En => &EN,
    }
}

/// What each state of the call says, for the page's script: `[state, text]`.
fn state_texts(lang: Language) -> serde_json::Value {
    let (en, ja) = (
        [
            ("queued", "Calling…"),
            ("calling", "Calling…"),
            ("ringing", "Your phone is ringing."),
            (
                "answered",
                "Call answered. Listen to the message, then press #.",
            ),
            ("approved", "Verified. Signing you in…"),
            ("no_answer", "You didn't answer the call."),
            ("busy", "Your phone was busy."),
            (
                "voicemail",
                "The call went to voicemail. Answer the call yourself, then press #.",
            ),
            ("no_input", "We didn't hear you press #."),
            ("hung_up", "The call ended before you pressed #."),
            ("failed", "We couldn't complete the call."),
            ("expired", "The call timed out."),
            ("interrupted", "The call was interrupted."),
            ("declined", "The call was declined."),
            ("denied", "The sign-in was denied."),
            (
                "fraud_reported",
                "You reported this sign-in as fraud. It has been blocked.",
            ),
            ("canceled", "The sign-in was canceled."),
        ],
        [
            ("queued", "発信しています…"),
            ("calling", "発信しています…"),
            ("ringing", "電話を呼び出しています。"),
            (
                "answered",
                "電話がつながりました。音声案内を聞いて # を押してください。",
            ),
            ("approved", "確認できました。サインインしています…"),
            ("no_answer", "電話に応答がありませんでした。"),
            ("busy", "お使いの電話は話し中でした。"),
            (
                "voicemail",
                "留守番電話につながりました。ご自身で電話に出て # を押してください。",
            ),
            ("no_input", "# の入力を確認できませんでした。"),
            ("hung_up", "# が押される前に通話が終了しました。"),
            ("failed", "通話を完了できませんでした。"),
            ("expired", "通話がタイムアウトしました。"),
            ("interrupted", "通話が中断されました。"),
            ("declined", "通話が拒否されました。"),
            ("denied", "サインインが拒否されました。"),
            (
                "fraud_reported",
                "このサインインを不正として報告しました。ブロックされています。",
            ),
            ("canceled", "サインインはキャンセルされました。"),
        ],
    );
    let pairs: &[(&str, &str)] = match lang {
        Language::Ja => &ja,
        Language::En => &en,
    };
    serde_json::Value::Object(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
            .collect(),
    )
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;background:#f2f2f2;font-family:'Segoe UI','Segoe UI Web',-apple-system,BlinkMacSystemFont,'Hiragino Sans','Yu Gothic UI',Meiryo,'IPAGothic',sans-serif;color:#1b1b1b}\
main{max-width:440px;margin:8vh auto 0;background:#fff;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}\
@media (max-width:600px){main{margin:0;min-height:100vh;box-shadow:none;padding:24px}}\
.brand{font-size:15px;font-weight:600;color:#1b1b1b;margin:0 0 16px}\
h1{font-size:24px;font-weight:600;margin:0 0 12px}\
p{font-size:15px;line-height:1.5;margin:0 0 12px}\
.status{display:flex;align-items:center;gap:10px;min-height:28px;color:#1b1b1b}\
.elapsed{margin-left:auto;color:#595959;font-size:13px}\
.dot{width:10px;height:10px;border-radius:50%;background:#0067b8;flex:none;animation:pulse 1.2s infinite}\
.done .dot{animation:none;background:#107c10}.failed .dot{animation:none;background:#a4262c}\
@keyframes pulse{50%{opacity:.25}}\
.actions{display:flex;flex-wrap:wrap;gap:8px;justify-content:flex-end;margin-top:24px}\
button{font:inherit;font-size:15px;min-width:108px;min-height:32px;padding:4px 12px;border:1px solid #8a8a8a;background:#fff;color:#1b1b1b;cursor:pointer}\
button.primary{background:#0067b8;border-color:#0067b8;color:#fff}\
button:focus-visible{outline:2px solid #1b1b1b;outline-offset:2px}\
.code{font-size:40px;font-weight:600;letter-spacing:.15em;margin:8px 0 4px;text-align:center}\
label{display:block;font-size:15px;margin:16px 0 6px}\
.row{display:flex;gap:8px}\
input{font:inherit;font-size:20px;letter-spacing:.2em;width:10em;padding:4px 8px;border:1px solid #666;border-radius:0}\
input:focus-visible{outline:2px solid #1b1b1b;outline-offset:2px}\
input[aria-invalid=true]{border-color:#a4262c}\
.err{color:#a4262c;min-height:1.5em;margin:6px 0 0}\
[hidden]{display:none!important}";

/// A whole page: `body` is HTML already escaped.
pub(crate) fn html(lang: Language, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>\
         <p class=\"brand\">callverify</p>{body}</main></body></html>",
        lang.code(),
        esc(title)
    )
}

/// A page as an HTTP response: never cached, never framed, no referrer, scripts and
/// styles only from the page itself; forms may post only here and to `form_to` (Entra's
/// redirect URI, when the page posts there).
pub(crate) fn respond(status: StatusCode, page: String, form_to: Option<&str>) -> Response {
    let mut form_action = "'self'".to_string();
    if let Some(to) = form_to.and_then(origin_of) {
        form_action.push(' ');
        form_action.push_str(&to);
    }
    let csp = format!(
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src 'self' data:; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut r = (status, page).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// The scheme, host and port of a URL, for a CSP source.
fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let o = u.origin();
    o.is_tuple().then(|| o.ascii_serialization())
}

/// A page that can only send the user back (nothing was sent to Entra, and nothing will be).
pub(crate) fn dead_end(lang: Language, status: StatusCode, title: &str) -> Response {
    let t = texts(lang);
    let body = format!("<h1>{}</h1><p>{}</p>", esc(title), esc(t.invalid));
    respond(status, html(lang, title, &body), None)
}

/// The form that takes the browser to Entra's `redirect_uri` with `fields`: posted by the
/// page's script at once, or by the user's button where scripts do not run.
pub(crate) fn post_back(
    lang: Language,
    redirect_uri: &str,
    fields: &[(&str, &str)],
    heading: &str,
    message: Option<&str>,
) -> Response {
    let t = texts(lang);
    let inputs = hidden_inputs(fields);
    let note = message
        .map(|m| format!("<p>{}</p>", esc(m)))
        .unwrap_or_default();
    let body = format!(
        "<h1>{}</h1>{note}<form id=\"back\" method=\"post\" action=\"{}\">{inputs}\
         <noscript><div class=\"actions\"><button class=\"primary\" type=\"submit\">{}</button></div></noscript>\
         </form><script>document.getElementById('back').submit();</script>",
        esc(heading),
        esc(redirect_uri),
        esc(t.continue_)
    );
    respond(
        StatusCode::OK,
        html(lang, heading, &body),
        Some(redirect_uri),
    )
}

/// What the page of a call in progress shows and needs.
pub(crate) struct CallPage<'a> {
    pub lang: Language,
    /// The issuer's path, where the provider's routes are.
    pub prefix: &'a str,
    pub session: &'a str,
    pub secret: &'a str,
    pub challenge: &'a str,
    pub poll_token: &'a str,
    /// Masked.
    pub phone: &'a str,
    pub state: &'a str,
    pub other_phone: bool,
    /// A message instead of the call's state (a call that could not be made).
    pub problem: Option<&'a str>,
    /// How the user confirms: `pound`, `keypad_code`, `spoken_code`.
    pub confirmation: &'a str,
    /// Number matching: the number to enter on the phone.
    pub display_code: Option<&'a str>,
}

/// The page of a call in progress: its state, live; "call my other phone" (when the user has
/// one), "call again" once the call failed, and cancel. The session's secret travels in the page's forms only.
pub(crate) fn call_page(p: &CallPage<'_>) -> Response {
    let t = texts(p.lang);
    let cfg = serde_json::json!({
        "status": format!("{}/eam/challenges/{}", p.prefix, p.challenge),
        "token": p.poll_token,
        "state": p.state,
        "states": state_texts(p.lang),
        "elapsed": t.elapsed,
        "problem": p.problem.is_some(),
        "confirmation": p.confirmation,
        "check": format!("{}/eam/challenges/{}/check", p.prefix, p.challenge),
        "codeWrong": t.code_wrong,
        "codeFormat": t.code_format,
        "modeStates": {
            "keypad_code": { "answered": t.keypad_answered_state },
            "spoken_code": { "answered": t.code_answered_state, "code_spoken": t.code_spoken_state },
        },
    });
    // A JSON block cannot end the script early.
    let cfg = cfg.to_string().replace("</", "<\\/");
    let hidden = format!(
        "<input type=\"hidden\" name=\"session\" value=\"{}\">\
         <input type=\"hidden\" name=\"secret\" value=\"{}\">",
        esc(p.session),
        esc(p.secret)
    );
    let calling = match p.confirmation {
        "keypad_code" => t.calling_keypad,
        "spoken_code" => t.calling_spoken,
        _ => t.calling,
    }
    .replace("{phone}", p.phone);
    // Number matching: the number, filled in by the script from the challenge (the page's
    // poll token reads it). A spoken code: the field it is typed in.
    let confirm = match p.confirmation {
        "keypad_code" => format!(
            "<div id=\"number\"><p>{lead}</p><p class=\"code\" id=\"code\">{code}</p></div>",
            lead = esc(t.keypad_lead),
            code = esc(p.display_code.unwrap_or_default())
        ),
        "spoken_code" => format!(
            "<form id=\"codeform\" novalidate><label for=\"codein\">{label}</label>\
             <div class=\"row\"><input id=\"codein\" name=\"code\" inputmode=\"numeric\" \
             autocomplete=\"one-time-code\" maxlength=\"6\" pattern=\"[0-9]{{6}}\" aria-describedby=\"codeerr\">\
             <button class=\"primary\" type=\"submit\" id=\"codego\">{submit}</button></div>\
             <p class=\"err\" id=\"codeerr\"></p></form>",
            label = esc(t.code_label),
            submit = esc(t.code_submit)
        ),
        _ => String::new(),
    };
    let status = p.problem.unwrap_or_default();
    let other = if p.other_phone {
        format!(
            "<button type=\"submit\" name=\"action\" value=\"other\" id=\"other\">{}</button>",
            esc(t.other_phone)
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>{title}</h1><p id=\"calling\">{calling}</p>\
         <div class=\"status\" id=\"status\" role=\"status\" aria-live=\"polite\"><span class=\"dot\"></span>\
         <span id=\"state\">{status}</span><span class=\"elapsed\" id=\"elapsed\"></span></div>{confirm}\
         <form id=\"finish\" method=\"post\" action=\"{prefix}/eam/finish\">{hidden}\
         <noscript><div class=\"actions\"><button class=\"primary\" type=\"submit\">{cont}</button></div></noscript></form>\
         <form id=\"act\" method=\"post\" action=\"{prefix}/eam/action\">{hidden}<div class=\"actions\">\
         {other}<button type=\"submit\" name=\"action\" value=\"again\" id=\"again\" hidden>{again}</button>\
         <button type=\"submit\" name=\"action\" value=\"cancel\" id=\"cancel\">{cancel}</button></div></form>\
         <script type=\"application/json\" id=\"cfg\">{cfg}</script><script>{SCRIPT}</script>",
        title = esc(t.title),
        calling = esc(&calling),
        status = esc(status),
        prefix = esc(p.prefix),
        cont = esc(t.continue_),
        again = esc(t.again),
        cancel = esc(t.cancel),
    );
    respond(StatusCode::OK, html(p.lang, t.title, &body), None)
}

/// Follows the call: long polls its state with the poll token, shows it with the time
/// since the page opened, submits the finish form once the call is decided in a way that
/// ends the sign-in, and offers "call again" (and the other phone) when it failed.
const SCRIPT: &str = r#"
(() => {
  const cfg = JSON.parse(document.getElementById('cfg').textContent);
  const $ = (id) => document.getElementById(id);
  const start = Date.now();
  const ends = ['approved', 'declined', 'denied', 'fraud_reported', 'canceled'];
  const retry = ['no_answer', 'busy', 'voicemail', 'no_input', 'hung_up', 'failed', 'expired', 'interrupted'];
  let state = cfg.state, done = false;
  const tick = setInterval(() => { $('elapsed').textContent = cfg.elapsed.replace('{s}', Math.floor((Date.now() - start) / 1000)); }, 1000);
  const mode = (cfg.modeStates || {})[cfg.confirmation] || {};
  const show = (s, c) => {
    state = s;
    if (!cfg.problem) $('state').textContent = mode[s] || cfg.states[s] || s;
    if (c && c.display_code && $('number')) { $('code').textContent = c.display_code; $('number').hidden = ends.includes(s) || retry.includes(s); }
    if ($('codeform')) $('codeform').hidden = s !== 'code_spoken';
    document.body.dataset.state = s;
    const failed = retry.includes(s) || cfg.problem;
    $('status').className = 'status' + (s === 'approved' ? ' done' : failed ? ' failed' : '');
    $('again').hidden = !failed;
    if ($('other')) $('other').hidden = s === 'approved' || ends.includes(s);
    if (ends.includes(s) || failed) { clearInterval(tick); }
    if (ends.includes(s) && !done) { done = true; $('finish').submit(); }
  };
    show(state);
  // One click places one call: the buttons are disabled once the form is on its way.
  $('act').addEventListener('submit', () => { setTimeout(() => { for (const b of document.querySelectorAll('button')) b.disabled = true; }, 0); });
  const poll = async () => {
    while (!done && !retry.includes(state) && !cfg.problem) {
      try {
        const r = await fetch(cfg.status + '?wait=20&since=' + encodeURIComponent(state), { headers: { Authorization: 'Bearer ' + cfg.token }, cache: 'no-store' });
        if (r.ok) { const c = await r.json(); show(c.state, c); }
        else { await new Promise((k) => setTimeout(k, 2000)); }
      } catch (e) { await new Promise((k) => setTimeout(k, 2000)); }
    }
  };
  if ($('codeform')) $('codeform').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = $('codein'), err = $('codeerr');
    const code = input.value.replace(/[\s-]/g, '');
    if (!/^[0-9]{6}$/.test(code)) { input.setAttribute('aria-invalid', 'true'); err.textContent = cfg.codeFormat; input.focus(); return; }
    $('codego').disabled = true;
    try {
      const r = await fetch(cfg.check, { method: 'POST', headers: { Authorization: 'Bearer ' + cfg.token, 'Content-Type': 'application/json' }, body: JSON.stringify({ code }), cache: 'no-store' });
      const body = await r.json().catch(() => ({}));
      if (r.ok) { input.removeAttribute('aria-invalid'); err.textContent = ''; show(body.state || state, body); }
      else if (typeof body.attempts_left === 'number' && body.attempts_left > 0) {
        input.setAttribute('aria-invalid', 'true'); err.textContent = cfg.codeWrong.replace('{n}', body.attempts_left); input.value = ''; input.focus();
      } else { input.setAttribute('aria-invalid', 'true'); err.textContent = ''; }
    } catch (x) { err.textContent = cfg.codeFormat; }
    $('codego').disabled = false;
  });
  poll();
})();
"#;

/// The page of a user with no phone to call: says so and whom to ask, and takes the
/// browser back to Entra with `access_denied`.
pub(crate) fn no_phone(
    lang: Language,
    help: Option<&str>,
    redirect_uri: &str,
    fields: &[(&str, &str)],
) -> Response {
    let t = texts(lang);
    let ask = match help {
        Some(h) => t.ask_help.replace("{help}", h),
        None => t.ask_admin.to_string(),
    };
    let inputs = hidden_inputs(fields);
    let body = format!(
        "<h1>{}</h1><p>{}</p><p id=\"help\">{}</p><form id=\"back\" method=\"post\" action=\"{}\">{inputs}\
         <div class=\"actions\"><button class=\"primary\" type=\"submit\" id=\"back-button\">{}</button></div></form>",
        esc(t.no_phone_title),
        esc(t.no_phone),
        esc(&ask),
        esc(redirect_uri),
        esc(t.back)
    );
    respond(
        StatusCode::OK,
        html(lang, t.no_phone_title, &body),
        Some(redirect_uri),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_comes_from_ui_locales_then_accept_language() {
        assert_eq!(language(Some("ja-JP en"), Some("en")), Language::Ja);
        assert_eq!(
            language(Some("fr de"), Some("ja;q=0.5, en;q=0.9")),
            Language::En
        );
        assert_eq!(language(None, Some("fr, ja;q=0.8, en;q=0.7")), Language::Ja);
        assert_eq!(language(None, Some("en;q=0, ja;q=0.1")), Language::Ja);
        assert_eq!(language(None, None), Language::En);
        assert_eq!(language(None, Some("ja;q=bad, ,;;,")), Language::En);
    }

    #[test]
    fn values_are_escaped() {
        assert_eq!(esc("\"><script>&'"), "&quot;&gt;&lt;script&gt;&amp;&#39;");
        let r = post_back(
            Language::En,
            "https://login.example/cb",
            &[("state", "\"><script>alert(1)</script>")],
            "x",
            None,
        );
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("form-action 'self' https://login.example"),
            "{csp}"
        );
    }
}
