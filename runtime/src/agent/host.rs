//! Facts about this host that an agent advertises: its CPUs and memory.

/// CPUs this process may run on.
pub(super) fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// `(available, total)` memory in bytes, from /proc/meminfo; zeros if it
/// cannot be read.
pub(super) fn memory() -> (u64, u64) {
    std::fs::read_to_string("/proc/meminfo").map_or((0, 0), |text| parse_meminfo(&text))
}

fn parse_meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map_or(0, |kb| kb.saturating_mul(1024))
    };
    (field("MemAvailable"), field("MemTotal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:        8000000 kB\nMemFree:   100 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(parse_meminfo(text), (4_000_000 * 1024, 8_000_000 * 1024));
        assert_eq!(parse_meminfo("garbage"), (0, 0));
    }

    #[test]
    fn this_host_has_cores_and_memory() {
        assert!(cores() >= 1);
        let (available, total) = memory();
        assert!(total > 0 && available <= total, "{available} of {total}");
    }
}
