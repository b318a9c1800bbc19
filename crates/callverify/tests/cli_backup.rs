//! `callverify backup FILE` while `serve` runs on the same SQLite database and writes to it
//! (challenges made through the API, their calls failing against a trunk nobody answers):
//! each copy opens with sqlite3, passes `PRAGMA integrity_check` and holds every challenge
//! made before it began. An existing FILE is refused; a PostgreSQL store is pointed to
//! pg_dump.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use callverify_e2e::{
    Served, V4, create_api_key, free_port, http, run_cli, scratch, sqlite_config,
};

const BIN: &str = env!("CARGO_BIN_EXE_callverify");
const SECRET: &str = "0123456789abcdef0123456789abcdef-backup";

/// `sqlite3 FILE SQL`'s output (sqlite3 must be installed: .ci/test installs it).
fn sqlite3(file: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(file)
        .arg(sql)
        .output()
        .expect("sqlite3 (Debian package sqlite3)");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_backup_taken_while_serving_and_writing_is_whole() {
    let bin = Path::new(BIN);
    let dir = scratch("cli-backup");
    let api = format!("127.0.0.1:{}", free_port(V4));
    let trunk = format!("127.0.0.1:{}", free_port(V4)).parse().unwrap();
    let path = sqlite_config(&dir, trunk, &api);
    let key = create_api_key(bin, &path, "idp", "service");
    let _served = Served::start(bin, &path, &api, SECRET, &[], &dir.join("serve.log"));

    // A writer: challenges to numbers of their own (the per-number limit is 5 in 10 min).
    let made: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (made, stop, api, key) = (made.clone(), stop.clone(), api.clone(), key.clone());
        move || {
            for i in 0..2000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = format!(r#"{{"phone_number":"+8190{:08}"}}"#, 10_000_000 + i);
                let (status, answer) = http(&api, "POST", "/v1/challenges", &key, &body);
                assert_eq!(status, 201, "{answer}");
                let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
                made.lock()
                    .unwrap()
                    .push(v["id"].as_str().unwrap().to_string());
            }
        }
    });
    let made_before = |n: usize| loop {
        let got = made.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(!writer.is_finished(), "the writer stopped");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };

    let mut copies = Vec::new();
    for round in 1..=3 {
        let before = made_before(round * 20);
        let file = dir.join(format!("backup-{round}.db"));
        let (code, out, err) = run_cli(bin, &["backup", file.to_str().unwrap()], &path);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("a copy of the store"), "{out}");
        copies.push((file, before));
    }
    let written_meanwhile = made.lock().unwrap().len();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer");

    for (file, before) in &copies {
        assert_eq!(
            sqlite3(file, "PRAGMA integrity_check"),
            "ok",
            "{}",
            file.display()
        );
        let ids = sqlite3(file, "SELECT id FROM challenges");
        let ids: std::collections::HashSet<&str> = ids.lines().collect();
        let missing: Vec<&String> = before
            .iter()
            .filter(|id| !ids.contains(id.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{}: {missing:?} missing",
            file.display()
        );
        assert_eq!(sqlite3(file, "SELECT count(*) FROM api_keys"), "1");
        eprintln!(
            "{}: {} challenges ({} made before it began)",
            file.display(),
            ids.len(),
            before.len()
        );
    }
    eprintln!("{written_meanwhile} challenges made while the backups ran");

    // An existing file is never written over.
    let (first, _) = &copies[0];
    let size = std::fs::metadata(first).unwrap().len();
    let (code, _, err) = run_cli(bin, &["backup", first.to_str().unwrap()], &path);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("the file exists"), "{err}");
    assert_eq!(std::fs::metadata(first).unwrap().len(), size);

    // PostgreSQL: pg_dump, said before any connection is tried.
    let pg = dir.join("pg.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("sqlite://{}", dir.join("cv.db").display()),
        "postgres://cv@127.0.0.1:1/cv",
    );
    std::fs::write(&pg, text).unwrap();
    let (code, _, err) = run_cli(bin, &["backup", dir.join("pg.db").to_str().unwrap()], &pg);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("pg_dump"), "{err}");
    assert!(!dir.join("pg.db").exists());
}
