//! The image and docker-compose.yml, with podman: `docker/podman-check` builds the
//! Dockerfile's image from local Debian bases with this build's callverify, runs the compose
//! file with podman-compose (PostgreSQL, the softphone, the gateway on a podman bridge), has a
//! sign-in challenge to the softphone approved and finds its rows in PostgreSQL, then removes
//! the containers, the network and the volume. Bounded to ten minutes. It needs root and
//! podman, runc, mmdebstrap and podman-compose (.ci/test installs them), and fails without.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callverify_e2e::{V4, free_port, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_callverify");

/// The whole check: the bases are made once per machine (minutes), the image and the run take
/// well under a minute after that.
const CHECK_BOUND: Duration = Duration::from_secs(600);

/// How long the check has to remove what it started once told to stop.
const CLEANUP_BOUND: Duration = Duration::from_secs(90);

/// The check script as a process group of its own: on drop (a timeout, a panic) the group is
/// sent SIGTERM, so that the script stops what it runs and removes its containers, and SIGKILL
/// if the script has not ended within [`CLEANUP_BOUND`].
struct Check(Child);

impl Check {
    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.0.id())])
            .status();
    }
}

impl Drop for Check {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_some() {
            return;
        }
        self.signal("-TERM");
        let started = Instant::now();
        while started.elapsed() < CLEANUP_BOUND {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.signal("-KILL");
        let _ = self.0.wait();
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

#[test]
fn the_compose_file_runs_with_podman_and_its_softphone_approves_a_challenge() {
    for tool in ["podman", "runc", "mmdebstrap", "podman-compose"] {
        assert!(
            on_path(tool),
            "{tool} is not installed, and this test runs the image and the compose file with \
             it: .ci/test installs podman, runc and mmdebstrap from Debian and podman-compose \
             from PyPI"
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = scratch("container");
    let log_path = dir.join("podman-check.log");
    let log = fs::File::create(&log_path).expect("the check's log");
    let port = free_port(V4).to_string();
    let mut check = Check(
        Command::new(root.join("docker/podman-check"))
            .args(["--binary", BIN, "--port", &port])
            .stdin(Stdio::null())
            .process_group(0)
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .spawn()
            .expect("docker/podman-check"),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = check.0.try_wait().expect("its status") {
            break Some(status);
        }
        if started.elapsed() > CHECK_BOUND {
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(check);
    let out = fs::read_to_string(&log_path).unwrap_or_default();
    let lines: Vec<&str> = out.lines().collect();
    let tail = lines[lines.len().saturating_sub(60)..].join("\n");
    let status = status.unwrap_or_else(|| {
        panic!("docker/podman-check did not end within {CHECK_BOUND:?}; its log's end:\n{tail}")
    });
    assert!(
        status.success(),
        "docker/podman-check failed ({status}); its log's end:\n{tail}"
    );
    assert!(
        out.contains("podman-check: challenge approved") && out.contains("podman-check: passed"),
        "{tail}"
    );
    for line in lines.iter().filter(|l| l.starts_with("podman-")) {
        println!("{line}");
    }
    let _ = fs::remove_dir_all(&dir);
}
