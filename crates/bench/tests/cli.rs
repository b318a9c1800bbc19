//! The four benchmarks' command lines as a shell sees them: `--help` and `-h` print the
//! options and exit 0 before any benchmark work; an unknown argument or a bad value is
//! refused on stderr with status 2, not a panic (status 101).

use std::process::{Command, Output};

const BENCHES: [(&str, &str); 4] = [
    ("dtmf-bench", env!("CARGO_BIN_EXE_dtmf-bench")),
    ("call-bench", env!("CARGO_BIN_EXE_call-bench")),
    ("poll-bench", env!("CARGO_BIN_EXE_poll-bench")),
    ("node-bench", env!("CARGO_BIN_EXE_node-bench")),
];

fn run(exe: &str, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .output()
        .expect("the benchmark runs")
}

#[test]
fn help_prints_the_options_and_exits_0() {
    for (name, exe) in BENCHES {
        for flag in ["--help", "-h"] {
            let out = run(exe, &[flag]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{name} {flag}: {out:?}");
            assert!(
                text.contains(&format!("Usage: {name} [OPTIONS]")),
                "{name}: {text}"
            );
            assert!(text.contains("Options:"), "{name}: {text}");
        }
    }
}

#[test]
fn unknown_arguments_exit_2_without_a_panic() {
    for (name, exe) in BENCHES {
        for args in [&["--bogus"][..], &["bogus"]] {
            let out = run(exe, args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {err}");
            assert!(err.contains("unexpected argument"), "{name}: {err}");
            assert!(!err.contains("panicked"), "{name}: {err}");
            assert!(out.stdout.is_empty(), "{name}: nothing run");
        }
    }
}

#[test]
fn bad_values_exit_2_without_a_panic() {
    for (name, args) in [
        ("call-bench", &["--workers", "two"][..]),
        ("call-bench", &["--sipp-policy", "fifo"]),
        ("poll-bench", &["--cache", "yes"]),
        ("poll-bench", &["--connections", "1", "--wrk-threads", "2"]),
        ("node-bench", &["--nodes", "1,x"]),
        ("dtmf-bench", &["--profile=yes"]),
    ] {
        let exe = BENCHES.iter().find(|b| b.0 == name).unwrap().1;
        let out = run(exe, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {err}");
        assert!(err.starts_with("error: "), "{name} {args:?}: {err}");
        assert!(!err.contains("panicked"), "{name} {args:?}: {err}");
    }
}
