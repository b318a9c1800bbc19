//! The process's table of file descriptors, grown once at start to what its calls need.
//!
//! Each call opens two sockets (RTP and RTCP), and each HTTP connection one. The kernel's
//! table of a process's descriptors starts small and doubles when it is full; in a process
//! with more than one thread each doubling waits for an RCU grace period, and every thread
//! that opens a descriptor meanwhile waits with it. call-bench saw runtime threads stalled
//! up to 16 ms, off the CPU, as the 128th, 256th, 512th and 1,024th call opened their
//! sockets: every call on those threads sent late. Growing the table at start, before any
//! call, takes those waits out of the calls.

use std::os::fd::AsFd;

use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// What [`reserve`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// Descriptors asked for.
    pub wanted: u64,
    /// The process's open-file limit (soft) now: raised towards `wanted` as far as the hard
    /// limit allows.
    pub limit: u64,
    /// Descriptors the table now holds without growing (at least `min(wanted, limit)`).
    pub table: u64,
}

impl Reserved {
    /// Whether the limit leaves room for all that was asked for.
    pub fn is_enough(&self) -> bool {
        self.limit >= self.wanted
    }
}

/// Raises the open-file limit to `wanted` (up to the hard limit) and grows the descriptor
/// table to hold that many descriptors: one descriptor is duplicated to the highest number
/// wanted, then closed. Call it before the runtime's threads open sockets.
pub fn reserve(wanted: u64) -> std::io::Result<Reserved> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    let mut limit = soft;
    if soft < wanted {
        let raised = wanted.min(hard);
        if setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
            limit = raised;
        }
    }
    let top = wanted.min(limit).saturating_sub(1);
    let probe = std::fs::File::open("/dev/null")?;
    let table = match i32::try_from(top) {
        Ok(top) if top > 2 => {
            let fd = fcntl(probe.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(top))
                .map_err(std::io::Error::from)?;
            nix::unistd::close(fd).map_err(std::io::Error::from)?;
            u64::try_from(top).unwrap_or(0) + 1
        }
        _ => 0,
    };
    Ok(Reserved {
        wanted,
        limit,
        table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's size as the kernel reports it (`FDSize` in /proc/self/status).
    fn table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn the_table_is_grown_to_what_is_wanted_and_no_descriptor_is_left_open() {
        let open = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let before = open();
        let wanted = 3000;
        let r = reserve(wanted).unwrap();
        assert_eq!(open(), before, "the probe and its copy are closed");
        assert_eq!(r.wanted, wanted);
        if r.is_enough() {
            assert_eq!(r.table, wanted);
            assert!(
                table_size() >= wanted,
                "FDSize {} after reserving {wanted}",
                table_size()
            );
        } else {
            // The hard limit is below 3,000 here: the table grows to the limit.
            assert_eq!(r.table, r.limit);
            assert!(table_size() >= r.limit);
        }
    }

    #[test]
    fn a_small_reservation_changes_nothing() {
        let r = reserve(2).unwrap();
        assert_eq!(r.table, 0);
        assert!(r.limit >= 2);
    }
}
