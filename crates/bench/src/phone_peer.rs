//! bench-phone run by a benchmark (`mod phone_peer;` in call-bench and node-bench): started
//! beside this program's binary, with its stdout read into the tone times and its summary;
//! closing its stdin (on [`BenchPhone::finish`] or drop) ends it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running bench-phone.
pub struct BenchPhone {
    child: Child,
    /// Its SIP address (the trunk to call).
    pub sip: SocketAddr,
    /// When each dialled user's tone started, in µs since the Unix epoch.
    tones: Arc<Mutex<HashMap<String, u128>>>,
    summary: Arc<Mutex<Option<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

fn binary() -> PathBuf {
    let here = std::env::current_exe().expect("this program's path");
    let bin = here.with_file_name("bench-phone");
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release -p callverify-bench",
        bin.display()
    );
    bin
}

impl BenchPhone {
    /// Starts one on loopback whose calls press '#' `key_at_ms` after the answer. It runs
    /// under normal scheduling: under SCHED_IDLE a busy gateway starves it.
    pub fn start(key_at_ms: u64) -> BenchPhone {
        let mut child = Command::new(binary())
            .args(["--key-at-ms", &key_at_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bench-phone runs");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines
            .next()
            .and_then(Result::ok)
            .expect("bench-phone says it is ready");
        let port: u16 = ready
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bench-phone said {ready:?}"));
        let tones = Arc::new(Mutex::new(HashMap::new()));
        let summary = Arc::new(Mutex::new(None));
        let reader = {
            let (tones, summary) = (tones.clone(), summary.clone());
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    let mut p = line.splitn(3, ' ');
                    match (p.next(), p.next(), p.next()) {
                        (Some("tone"), Some(user), Some(at)) => {
                            if let (Ok(at), Ok(mut t)) = (at.parse::<u128>(), tones.lock()) {
                                t.insert(user.to_string(), at);
                            }
                        }
                        (Some("summary"), _, _) => {
                            if let Ok(mut s) = summary.lock() {
                                *s = Some(line.clone());
                            }
                        }
                        _ => {}
                    }
                }
            })
        };
        BenchPhone {
            child,
            sip: SocketAddr::from(([127, 0, 0, 1], port)),
            tones,
            summary,
            reader: Some(reader),
        }
    }

    /// When `user`'s tone started, in µs since the Unix epoch.
    pub fn tone_at(&self, user: &str) -> Option<u128> {
        self.tones.lock().ok()?.get(user).copied()
    }

    /// The process id (for its CPU time).
    #[allow(
        dead_code,
        reason = "call-bench reads it; node-bench, which has this module too, does not"
    )]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Ends it: its summary line (`summary answered N ended N rtp_sent N …`).
    pub fn finish(mut self) -> String {
        self.stop();
        self.summary
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_default()
    }

    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for BenchPhone {
    fn drop(&mut self) {
        self.stop();
    }
}
