//! Checks of a benchmark's command line, shared by the four binaries' unit tests
//! (`#[cfg(test)] mod cli_check;` in each).

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

/// `P`'s options are exactly `options` (long names, in order, besides `--help`), its
/// `--help` lists each with its help text, and each help says what it defaults to.
pub fn help_lists<P: CommandFactory>(options: &[&str]) {
    P::command().debug_assert();
    let mut cmd = P::command();
    cmd.build();
    let help = cmd.render_help().to_string();
    assert!(help.contains("-h, --help"), "{help}");
    // Help texts may be wrapped: compare with whitespace runs as single spaces.
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = words(&help);
    let mut declared = Vec::new();
    for arg in cmd.get_arguments() {
        let long = arg.get_long().expect("every option has a long name");
        if long == "help" {
            continue;
        }
        declared.push(long);
        assert!(
            help.contains(&format!("--{long}")),
            "--{long} missing:\n{help}"
        );
        let text = arg
            .get_help()
            .expect("every option has a help text")
            .to_string();
        assert!(!text.contains('\n'), "--{long}: the help is one line");
        assert!(
            flat.contains(&words(&text)),
            "--{long}'s help missing:\n{help}"
        );
        assert!(
            !arg.get_default_values().is_empty() || text.contains("default"),
            "--{long}: the help does not say the default"
        );
    }
    assert_eq!(declared, options);
}

/// The kind of error `P` gives for `argv` (after the program's name), or a panic if it
/// parses.
pub fn error_kind<P: Parser + std::fmt::Debug>(argv: &[&str]) -> ErrorKind {
    let argv = std::iter::once("bench").chain(argv.iter().copied());
    P::try_parse_from(argv).expect_err("refused").kind()
}

/// `P` refuses an unknown option and a stray word as unknown arguments.
pub fn refuses_unknown<P: Parser + std::fmt::Debug>() {
    assert_eq!(error_kind::<P>(&["--bogus"]), ErrorKind::UnknownArgument);
    assert_eq!(error_kind::<P>(&["bogus"]), ErrorKind::UnknownArgument);
    assert_eq!(error_kind::<P>(&["-x"]), ErrorKind::UnknownArgument);
}

/// `P` parsed from `argv` (after the program's name).
pub fn parse<P: Parser>(argv: &[&str]) -> P {
    let argv = std::iter::once("bench").chain(argv.iter().copied());
    P::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"))
}
