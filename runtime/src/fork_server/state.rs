//! What a forked child inherits from its server rather than from its
//! parent at the spawn: the process state the parent had when it started
//! the server. A spawn compares it with the parent's state now, and
//! executes the child (and starts a new server) if it changed.

use std::os::unix::fs::MetadataExt;

/// Credentials, capabilities, `no_new_privs`, seccomp mode, umask, control
/// group, resource limits, and what stdout and stderr are.
#[derive(PartialEq, Eq, Debug)]
pub(crate) struct Fingerprint {
    status: Vec<String>,
    cgroup: String,
    limits: String,
    stdio: [Option<(u64, u64)>; 2],
}

/// The lines of /proc/self/status that a child inherits and that do not
/// change on their own.
const INHERITED: &[&str] = &[
    "Umask:",
    "Uid:",
    "Gid:",
    "Groups:",
    "CapInh:",
    "CapPrm:",
    "CapEff:",
    "CapBnd:",
    "CapAmb:",
    "NoNewPrivs:",
    "Seccomp:",
    "Seccomp_filters:",
];

impl Fingerprint {
    /// This process's state now; a part /proc cannot tell is left empty.
    pub(crate) fn now() -> Fingerprint {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let status = read("/proc/self/status")
            .lines()
            .filter(|l| INHERITED.iter().any(|k| l.starts_with(k)))
            .map(str::to_owned)
            .collect();
        let stdio = ["/proc/self/fd/1", "/proc/self/fd/2"]
            .map(|p| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())));
        Fingerprint { status, cgroup: read("/proc/self/cgroup"), limits: read("/proc/self/limits"), stdio }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_stable_and_sees_a_changed_limit() {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let before = Fingerprint::now();
        assert!(before.status.iter().any(|l| l.starts_with("Uid:")), "{before:?}");
        assert_eq!(Fingerprint::now(), before);
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("limit");
        setrlimit(Resource::RLIMIT_NOFILE, soft - 1, hard).expect("lowered");
        let changed = Fingerprint::now();
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("restored");
        assert_ne!(changed, before);
    }
}
