//! packaging/callverify.service passes `systemd-analyze verify` without a warning (its
//! ExecStart pointed at the binary under test, as verify checks the executable), scores
//! "OK" (exposure at most 2.0) in `systemd-analyze security --offline`, keeps the settings
//! the gateway relies on, and its ExecStart's arguments are ones `callverify serve` takes.
//! systemd-analyze must be installed (Debian package systemd; .ci/test installs it).

use std::process::Command;

use callverify_e2e::scratch;

const BIN: &str = env!("CARGO_BIN_EXE_callverify");
const UNIT: &str = include_str!("../../../packaging/callverify.service");

/// The values of `key=` in the unit, in order.
fn values<'u>(unit: &'u str, key: &str) -> Vec<&'u str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

fn analyze(args: &[&str], unit: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_unit_file_verifies_and_is_hardened() {
    let dir = scratch("unit-file");
    let exec = values(UNIT, "ExecStart");
    assert_eq!(exec.len(), 1, "{exec:?}");
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(args[0], "/usr/local/bin/callverify");
    let unit = dir.join("callverify.service");
    std::fs::write(&unit, UNIT.replace(args[0], BIN)).unwrap();

    let (code, said) = analyze(&["verify", "--man=no"], &unit);
    assert_eq!(code, Some(0), "{said}");
    // Unknown or malformed settings are only warnings to verify: none is allowed in ours.
    // (verify also loads the units ours is ordered with, and says what it thinks of the
    // machine's own: Debian's freeradius.service uses MemoryLimit=; those are not ours.)
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| {
            let machines = ["/lib/systemd/", "/usr/lib/systemd/", "/etc/systemd/"];
            !l.trim().is_empty() && !machines.iter().any(|m| l.starts_with(m))
        })
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{said}");
    let (code, said) = analyze(&["security", "--offline=yes", "--threshold=20"], &unit);
    assert_eq!(code, Some(0), "exposure above 2.0:\n{said}");
    let score = said
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default();
    eprintln!("{score}");

    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Restart", "on-failure"),
        ("User", "callverify"),
        ("StateDirectory", "callverify"),
        ("EnvironmentFile", "/etc/callverify/callverify.env"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("CapabilityBoundingSet", ""),
        ("LimitNOFILE", "65536"),
    ] {
        assert_eq!(values(UNIT, key), [value], "{key}");
    }
    let secs = |key| values(UNIT, key)[0].parse::<u64>().unwrap();
    assert!(secs("WatchdogSec") >= 2, "the pings come at half of it");
    // serve lets calls finish for up to 60 s after SIGTERM.
    assert!(secs("TimeoutStopSec") > 60);

    // The arguments are serve's: with a configuration that is not there it says so (a
    // usage error would be clap's, with status 2 too, but another message).
    let out = Command::new(BIN)
        .args(&args[1..args.len() - 1])
        .arg(dir.join("absent.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad configuration"), "{err}");
}
