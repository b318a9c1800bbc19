//! The configuration file on arbitrary text: a configuration or an error naming the file
//! (and the line when it has one), never a panic; a configuration that parses gives its
//! settings without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match callverify::config::Config::parse(&text, "fuzz.toml", |_| Some("x".repeat(40))) {
        Ok(cfg) => {
            let env = |_: &str| Some("x".repeat(40));
            let _ = cfg.sip_settings(env);
            let _ = cfg.api_settings(env);
            let _ = cfg.store_url(env);
            let _ = cfg.media_settings();
            let _ = cfg.script_settings();
        }
        Err(e) => assert!(e.to_string().contains("fuzz.toml"), "{e}"),
    }
});
