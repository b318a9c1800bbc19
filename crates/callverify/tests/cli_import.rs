//! `callverify import-phones`, run as an administrator would run it, against a SQLite store:
//! the good rows imported, the refused ones told one per line with their number masked, the
//! summary, the exit status, and the phones the store then holds.

use std::path::{Path, PathBuf};
use std::process::Command;

use callverify_e2e::scratch;
use store::{PhoneNumber, PhoneRole, PhoneState, Store};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../sip-config/callverify.toml"
);

/// The shipped configuration with its store in `dir` and only Japan to call.
fn config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replacen(
            "url = \"sqlite://callverify.db\"",
            &format!("url = \"sqlite://{}\"", dir.join("cv.db").display()),
            1,
        )
        .replacen(
            "allowed_countries = [\"JP\", \"US\", \"GB\"]",
            "allowed_countries = [\"JP\"]",
            1,
        );
    let path = dir.join("callverify.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `import-phones` with `args`: its exit status, stdout and stderr.
fn import(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callverify"))
        .arg("import-phones")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("CALLVERIFY_TRUNK_LOCAL_PBX_PASSWORD", "x")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const ENTRA_USER: &str = "entra:14c2f153-90a7-4689-9db7-9543bf084dad:0f5d9a43";

fn csv(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn phones(dir: &Path, user: &str) -> Vec<(String, PhoneRole, String)> {
    let url = format!("sqlite://{}", dir.join("cv.db").display());
    let store = Store::open(&url).await.unwrap();
    store
        .phones(user)
        .await
        .unwrap()
        .into_iter()
        .inspect(|p| {
            assert_eq!(
                (p.state, p.challenge_id.as_deref()),
                (PhoneState::Verified, None)
            );
        })
        .map(|p| (p.phone.as_e164().unwrap().to_string(), p.role, p.language))
        .collect()
}

#[tokio::test]
async fn good_rows_are_imported_and_refused_ones_told_with_exit_status_3() {
    let dir = scratch("cli-import-phones");
    let cfg = config(&dir);
    let file = csv(
        &dir,
        "phones.csv",
        &format!(
            "user_id,number,role,language\n\
             {ENTRA_USER},+819012345678,primary,\n\
             {ENTRA_USER},+819012345679,fallback,en\n\
             alice@example.edu,+819011112222,primary,ja\n\
             bob,+442079460958,primary\n\
             carol,+819033334444,spare\n\
             \n\
             dave,not-a-number,primary\n"
        ),
    );
    let (code, stdout, stderr) = import(&cfg, &[&file, "--dry-run"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        stdout,
        "would import 3 (0 replaced, 0 unchanged), refused 3\n"
    );
    assert!(
        phones(&dir, ENTRA_USER).await.is_empty(),
        "a dry run writes nothing"
    );

    let (code, stdout, stderr) = import(&cfg, &[&file]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(stdout, "imported 3 (0 replaced, 0 unchanged), refused 3\n");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert_eq!(
        lines[0],
        "line 5: +44 ** **** **58 is in GB; this gateway calls JP"
    );
    assert_eq!(
        lines[1],
        "line 6: role \"spare\": expected primary or fallback"
    );
    assert!(lines[2].starts_with("line 8: the number: "), "{stderr}");
    assert!(
        !stderr.contains("2079460958"),
        "numbers are masked: {stderr}"
    );
    assert_eq!(
        phones(&dir, ENTRA_USER).await,
        vec![
            ("+819012345678".into(), PhoneRole::Primary, "en".into()),
            ("+819012345679".into(), PhoneRole::Fallback, "en".into()),
        ]
    );
    assert_eq!(phones(&dir, "alice@example.edu").await.len(), 1);
    assert!(phones(&dir, "bob").await.is_empty());

    // Again, with one user's primary phone changed: nothing refused, exit status 0.
    let file = csv(
        &dir,
        "again.csv",
        &format!(
            "user_id,number,role\r\n\
             {ENTRA_USER},+819012345678,primary\r\n\
             alice@example.edu,+819055556666,primary\r\n"
        ),
    );
    let (code, stdout, stderr) = import(&cfg, &[&file]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "imported 2 (1 replaced, 1 unchanged), refused 0\n");
    assert!(stderr.is_empty(), "{stderr}");
    let alice = phones(&dir, "alice@example.edu").await;
    assert_eq!(alice.len(), 1);
    assert_eq!(
        PhoneNumber::parse(&alice[0].0).unwrap().masked(),
        "+81 ** **** **66"
    );
}

#[tokio::test]
async fn a_file_that_cannot_be_read_or_has_no_header_exits_2_importing_nothing() {
    let dir = scratch("cli-import-phones-bad");
    let cfg = config(&dir);
    let missing = dir.join("missing.csv").display().to_string();
    let (code, stdout, stderr) = import(&cfg, &[&missing]);
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert!(stderr.contains("missing.csv: cannot read it"), "{stderr}");
    let headless = csv(&dir, "headless.csv", "bob,+819012345678,primary\n");
    let (code, _, stderr) = import(&cfg, &[&headless]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("its first line must be the header user_id,number,role"),
        "{stderr}"
    );
    assert!(phones(&dir, "bob").await.is_empty());
}
