//! `callverify check-config`, run as an operator would run it.

use std::process::Command;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../sip-config/callverify.toml"
);
const VAR: &str = "CALLVERIFY_TRUNK_LOCAL_PBX_PASSWORD";

fn check(path: &str, password: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callverify"));
    cmd.args(["check-config", "--config", path]).env_remove(VAR);
    if let Some(p) = password {
        cmd.env(VAR, p);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_example_passes_with_its_password_variable() {
    let (code, stdout, stderr) = check(EXAMPLE, Some("pa55-word"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("ok (4 listeners, trunks: local-pbx, backup)"),
        "{stdout}"
    );
    assert!(!stdout.contains("pa55-word") && !stderr.contains("pa55-word"));
}

#[test]
fn bad_files_exit_2_with_line_and_reason() {
    let (code, _, stderr) = check(EXAMPLE, None);
    assert_eq!(code, 2);
    assert!(stderr.contains(&format!("{VAR} is not set")), "{stderr}");
    let bad = std::env::temp_dir().join(format!("callverify-bad-{}.toml", std::process::id()));
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let line = text[..text.find("t1_ms = 500").unwrap()].lines().count() + 1;
    std::fs::write(&bad, text.replace("t1_ms = 500", "t1_ms = -5")).unwrap();
    let (code, _, stderr) = check(bad.to_str().unwrap(), Some("x"));
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with(&format!(
            "callverify: bad configuration: {}:{line}: ",
            bad.display()
        )),
        "{stderr}"
    );
    let (code, _, stderr) = check("/nonexistent/callverify.toml", Some("x"));
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/callverify.toml"), "{stderr}");
}

#[test]
fn a_file_that_does_not_name_the_countries_to_call_is_refused_saying_what_to_write() {
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let without = text.replace("allowed_countries = [\"JP\", \"US\", \"GB\"]\n", "");
    assert_ne!(without, text);
    let path = std::env::temp_dir().join(format!(
        "callverify-no-countries-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, without).unwrap();
    let (code, stdout, stderr) = check(path.to_str().unwrap(), Some("x"));
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stderr.contains("[policy] has no allowed_countries")
            && stderr.contains("allowed_countries = [\"*\"] to call every country"),
        "{stderr}"
    );
    // Every country, said explicitly, is accepted.
    let every = text.replace(
        "allowed_countries = [\"JP\", \"US\", \"GB\"]",
        "allowed_countries = [\"*\"]",
    );
    std::fs::write(&path, every).unwrap();
    let (code, _, stderr) = check(path.to_str().unwrap(), Some("x"));
    assert_eq!(code, 0, "{stderr}");
    let _ = std::fs::remove_file(&path);
}
