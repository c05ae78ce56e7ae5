//! What Linux's /proc tells about a process the benches time.

use std::time::Duration;

/// User + system CPU of process `pid` so far (utime and stime of /proc/<pid>/stat, the
/// counters getrusage reports); zero once the process is gone.
pub fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    // USER_HZ is 100 on every Linux ABI.
    Duration::from_millis(ticks * 10)
}
