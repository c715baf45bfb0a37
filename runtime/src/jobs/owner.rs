//! Which process holds a workflow or a job, and whether it still lives.
//!
//! A holder is recorded as its pid together with the kernel's boot id and
//! the process's start time, so a pid reused by another process after the
//! holder died (or after a reboot) is not mistaken for the holder.

use super::error::Owner;

/// This process, as recorded in the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    pub pid: u32,
    /// The process's start time, in clock ticks since boot (/proc/PID/stat).
    pub start: u64,
    pub boot: String,
    pub host: String,
}

impl Holder {
    /// This process.
    pub(crate) fn me() -> Holder {
        let pid = std::process::id();
        Holder { pid, start: start_time(pid).unwrap_or(0), boot: boot_id(), host: hostname() }
    }

    /// The form stored in the journal: `pid start boot host`.
    pub(crate) fn encode(&self) -> String {
        format!("{} {} {} {}", self.pid, self.start, self.boot, self.host)
    }

    /// Reads a stored holder; `None` if it is not in the stored form.
    pub(crate) fn decode(s: &str) -> Option<Holder> {
        let mut f = s.splitn(4, ' ');
        let pid = f.next()?.parse().ok()?;
        let start = f.next()?.parse().ok()?;
        let boot = f.next()?.to_owned();
        let host = f.next()?.to_owned();
        Some(Holder { pid, start, boot, host })
    }

    /// Whether this holder may still be running. A holder on another host
    /// cannot be checked from here, so it counts as alive.
    pub(crate) fn alive(&self) -> bool {
        if self.host != hostname() {
            return true;
        }
        self.boot == boot_id() && start_time(self.pid) == Some(self.start)
    }

    /// What errors and listings show of it.
    pub(crate) fn owner(&self) -> Owner {
        Owner { pid: self.pid, host: self.host.clone() }
    }
}

/// The start time of process `pid` in clock ticks since boot, or `None` if
/// there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last `)`.
    let (_, rest) = stat.rsplit_once(')')?;
    let state = rest.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // Field 22 of stat; `rest` starts at field 3.
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map_or_else(|_| "-".into(), |s| s.trim().to_owned())
}

fn hostname() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| String::new(), |h| h.trim().to_owned());
    if h.is_empty() || h.contains(' ') { "unknown".into() } else { h }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_round_trips() {
        let me = Holder::me();
        assert!(me.start > 0);
        assert!(me.alive());
        assert_eq!(Holder::decode(&me.encode()), Some(me));
    }

    #[test]
    fn a_reused_pid_or_an_old_boot_is_not_the_holder() {
        let mut other = Holder::me();
        other.start += 1;
        assert!(!other.alive());
        let mut rebooted = Holder::me();
        rebooted.boot = "another-boot".into();
        assert!(!rebooted.alive());
        assert_eq!(Holder::decode("garbage"), None);
    }
}
