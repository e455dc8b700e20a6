//! Server-side figures read from `/proc`: resident memory and user CPU time of the server PIDs.

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`; 100 on Linux).
pub const TICKS_PER_SEC: u64 = 100;

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User and system CPU time in clock ticks (fields 14 and 15 of `/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are fixed.
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

/// Sum of RSS over every PID (a server and, say, its Redis).
pub fn total_rss_kib(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| rss_kib(*p)).sum()
}

/// Sum of user ticks over every PID.
pub fn total_user_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| cpu_ticks(*p))
        .map(|(u, _)| u)
        .sum()
}

/// Sum of system (kernel) ticks over every PID.
pub fn total_sys_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| cpu_ticks(*p))
        .map(|(_, s)| s)
        .sum()
}
