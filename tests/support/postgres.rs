//! A PostgreSQL server of a test's own on loopback.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::net::free_port;
use crate::{BOUND, V4, scratch};

/// A PostgreSQL server of its own, on a free loopback port, for one test: `initdb` into a
/// scratch directory (as the `postgres` user when the tests run as root, since PostgreSQL
/// refuses to run as root), started with `pg_ctl`, stopped on drop.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    as_user: Option<&'static str>,
    /// The URL to connect with (user `callverify`, trust authentication on loopback).
    pub url: String,
}

impl Postgres {
    /// Starts one (bounded by [`BOUND`]).
    pub fn start(name: &str) -> Postgres {
        let bin = postgres_bin_dir();
        let dir = scratch(&format!("postgres-{name}"));
        let data = dir.join("data");
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let as_user = root.then_some("postgres");
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown the scratch directory to postgres");
        }
        let port = free_port(V4);
        let pg = Postgres {
            bin,
            data,
            as_user,
            url: format!("postgres://callverify@127.0.0.1:{port}/postgres"),
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data.display().to_string(),
                "-U",
                "callverify",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            dir.display()
        );
        pg.run(
            "pg_ctl",
            &[
                "-D",
                &pg.data.display().to_string(),
                "-o",
                &opts,
                "-l",
                &dir.join("postgres.log").display().to_string(),
                "-w",
                "-t",
                &BOUND.as_secs().to_string(),
                "start",
            ],
        );
        pg
    }

    /// PostgreSQL's program `tool`, run as the user the server runs as.
    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                let exe = self.bin.join(tool);
                panic!("{} runs (apt-get install postgresql): {e}", exe.display())
            });
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "-t", "10", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Some 40 MB a server: a whole run of the tests would leave a gigabyte behind.
        let _ = fs::remove_dir_all(&self.data);
    }
}

/// Where PostgreSQL's server programs are: on PATH, or Debian's /usr/lib/postgresql/N/bin
/// (the newest).
fn postgres_bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty()
            && let Ok(real) = fs::canonicalize(&p)
        {
            return real.parent().expect("a directory").to_path_buf();
        }
    }
    let mut dirs: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}
