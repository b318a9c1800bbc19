//! `callverify api-keys list|revoke|create` against the store a running `serve` uses: the
//! list shows every key and never a secret (a table, or JSON as `GET /v1/api-keys`), a key
//! revoked from the command line is refused by the serving gateway at its next request, and
//! an unknown or already revoked id has its own message and exit status.

use std::path::Path;

use callverify_e2e::{Served, V4, free_port, http, run_cli, scratch, sqlite_config};

const BIN: &str = env!("CARGO_BIN_EXE_callverify");
const SECRET: &str = "0123456789abcdef0123456789abcdef-keys";

#[test]
fn keys_are_listed_and_revoked_while_serving() {
    let bin = Path::new(BIN);
    let dir = scratch("cli-keys");
    let api = format!("127.0.0.1:{}", free_port(V4));
    // Nothing answers at the trunk: the challenges' calls fail, which is no matter here.
    let trunk = format!("127.0.0.1:{}", free_port(V4)).parse().unwrap();
    let path = sqlite_config(&dir, trunk, &api);
    let (code, service, err) = run_cli(bin, &["create-api-key", "idp"], &path);
    assert_eq!(code, Some(0), "{err}");
    let service = service.trim().to_string();
    let (code, operator, err) = run_cli(
        bin,
        &["api-keys", "create", "ops", "--kind", "operator"],
        &path,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(operator.trim().starts_with("cvk_"), "{operator}");
    let (code, _, err) = run_cli(
        bin,
        &[
            "api-keys",
            "create",
            "admin",
            "--phone-admin",
            "--confirmation",
            "keypad_code",
        ],
        &path,
    );
    assert_eq!(code, Some(0), "{err}");
    let _served = Served::start(bin, &path, &api, SECRET, &[], &dir.join("serve.log"));
    let (status, body) = http(
        &api,
        "POST",
        "/v1/challenges",
        &service,
        r#"{"phone_number":"+819012345678"}"#,
    );
    assert_eq!(status, 201, "{body}");

    let (code, table, err) = run_cli(bin, &["api-keys", "list"], &path);
    assert_eq!(code, Some(0), "{err}");
    eprintln!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("ID "), "{table}");
    assert!(!table.contains("cvk_"), "a secret in the list:\n{table}");
    let admin = lines.iter().find(|l| l.contains(" admin ")).unwrap();
    assert!(
        admin.ends_with("phone_admin,confirmation=keypad_code"),
        "{admin}"
    );

    let (code, json, err) = run_cli(bin, &["api-keys", "list", "--json"], &path);
    assert_eq!(code, Some(0), "{err}");
    assert!(!json.contains("cvk_"), "a secret in {json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let keys = v["api_keys"].as_array().unwrap();
    let idp = keys.iter().find(|k| k["name"] == "idp").unwrap();
    assert!(idp["last_used_at"].is_string(), "its challenge: {idp}");
    let id = idp["id"].as_str().unwrap().to_string();
    // The API's list is the same document.
    let (status, listed) = http(&api, "GET", "/v1/api-keys", operator.trim(), "");
    assert_eq!(status, 200, "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed, v);

    let (code, out, err) = run_cli(bin, &["api-keys", "revoke", &id], &path);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("revoked {id} (idp, service)")),
        "{out}"
    );
    let (status, body) = http(&api, "GET", "/v1/calls", &service, "");
    assert_eq!(status, 401, "the serving gateway at once: {body}");
    let (status, body) = http(
        &api,
        "POST",
        "/v1/challenges",
        &service,
        r#"{"phone_number":"+819012345679"}"#,
    );
    assert_eq!(status, 401, "{body}");

    let (code, _, err) = run_cli(bin, &["api-keys", "revoke", &id], &path);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("was revoked already, at 20"), "{err}");
    let (code, _, err) = run_cli(bin, &["api-keys", "revoke", "key_unknown"], &path);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("no API key has the id \"key_unknown\""),
        "{err}"
    );
    let (_, json, _) = run_cli(bin, &["api-keys", "list", "--json"], &path);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let idp = v["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(idp["revoked_at"].is_string(), "{idp}");
}
