//! systemd's service notifications (`sd_notify(3)`) without libsystemd: one datagram a
//! message to the unix socket `$NOTIFY_SOCKET` names (a path, or an abstract name written
//! `@name`). `READY=1` once the gateway serves, `STATUS=` lines, `WATCHDOG=1` at half of
//! `$WATCHDOG_USEC` while every core task runs, `STOPPING=1` at SIGTERM. Without
//! `$NOTIFY_SOCKET` (not run by systemd) every message is dropped.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where systemd listens for this process's notifications, if it does.
pub struct Notifier {
    to: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd gives a `Type=notify` service: `NOTIFY_SOCKET`, and
    /// `WATCHDOG_USEC` (ignored when `WATCHDOG_PID` names another process).
    pub fn from_env() -> Notifier {
        Notifier::new(
            std::env::var("NOTIFY_SOCKET").ok().as_deref(),
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
        )
    }

    /// From those variables' values; a socket that cannot be used is warned about once and
    /// then ignored (the gateway serves without it).
    pub fn new(socket: Option<&str>, watchdog_usec: Option<&str>, pid: Option<&str>) -> Notifier {
        let to = socket
            .filter(|s| !s.is_empty())
            .and_then(|s| match target(s) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(socket = s, error = %e, "NOTIFY_SOCKET cannot be used");
                    None
                }
            });
        let ours = pid.is_none_or(|p| p.trim().parse() == Ok(std::process::id()));
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours && to.is_some())
            .map(Duration::from_micros);
        Notifier { to, watchdog }
    }

    /// How often to send `WATCHDOG=1` (half the watchdog's period), if systemd watches.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends `msg` (lines `KEY=value`); errors are ignored, as systemd may be gone.
    pub fn notify(&self, msg: &str) {
        if let Some((sock, addr)) = &self.to {
            let _ = sock.send_to_addr(msg.as_bytes(), addr);
        }
    }
}

fn target(socket: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None if socket.starts_with('/') => SocketAddr::from_pathname(socket)?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "neither an absolute path nor an abstract name (@…)",
            ));
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_an_abstract_socket_and_the_watchdog_is_halved() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("callverify-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::new(Some(&format!("@{name}")), Some("3000000"), None);
        assert_eq!(n.watchdog_every(), Some(Duration::from_millis(1500)));
        n.notify("READY=1\nSTATUS=serving");
        let mut buf = [0; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
    }

    #[test]
    fn without_a_socket_or_for_another_pid_there_is_no_watchdog() {
        assert_eq!(
            Notifier::new(None, Some("3000000"), None).watchdog_every(),
            None
        );
        let n = Notifier::new(Some("relative/path"), Some("3000000"), None);
        assert_eq!(n.watchdog_every(), None);
        n.notify("READY=1");
        let other = Notifier::new(Some("@x"), Some("3000000"), Some("1"));
        assert_eq!(other.watchdog_every(), None);
        let bad = Notifier::new(Some("@x"), Some("soon"), None);
        assert_eq!(bad.watchdog_every(), None);
    }
}
