//! What the load generator asks of the operating system: the shared monotonic clock,
//! CPU time and resident memory of a process (its own or the broker's, from `/proc`),
//! the load average, and the file-descriptor limit.

use std::io;
use std::time::Duration;

use rustix::time::{clock_gettime, ClockId};

/// Nanoseconds of `CLOCK_MONOTONIC`: the same clock in every process of this machine,
/// so a timestamp written by one load process can be read by another.
pub(crate) fn monotonic_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    // The monotonic clock is never negative.
    (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64)
}

/// User and system CPU time a process has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CpuTime {
    /// User time, seconds.
    pub user: f64,
    /// System time, seconds.
    pub system: f64,
}

impl CpuTime {
    /// Total seconds.
    pub(crate) fn total(&self) -> f64 {
        self.user + self.system
    }

    /// CPU used between `earlier` and `self`, as a fraction of `wall` (1.0 = one core).
    pub(crate) fn fraction_since(&self, earlier: &CpuTime, wall: Duration) -> f64 {
        let secs = wall.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        ((self.total() - earlier.total()) / secs).max(0.0)
    }
}

/// The CPU time of this process (all threads).
pub(crate) fn self_cpu() -> io::Result<CpuTime> {
    cpu_of("self")
}

/// The CPU time of process `pid` (all threads).
pub(crate) fn pid_cpu(pid: u32) -> io::Result<CpuTime> {
    cpu_of(&pid.to_string())
}

fn cpu_of(pid: &str) -> io::Result<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&stat, rustix::param::clock_ticks_per_second()).ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))
}

/// `utime` and `stime` (fields 14 and 15) of a `/proc/PID/stat` line, in seconds. The
/// command name (field 2) is in parentheses and may itself hold spaces and parentheses,
/// so fields are counted from the last `)`.
fn parse_stat(stat: &str, ticks_per_second: u64) -> Option<CpuTime> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // After ")": field 3 (state) is index 0, so utime (14) is index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let hz = ticks_per_second.max(1) as f64;
    Some(CpuTime {
        user: utime as f64 / hz,
        system: stime as f64 / hz,
    })
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub(crate) fn pid_rss_kib(pid: u32) -> io::Result<u64> {
    rss_of(&pid.to_string())
}

/// Resident memory of this process in KiB.
pub(crate) fn self_rss_kib() -> io::Result<u64> {
    rss_of("self")
}

fn rss_of(pid: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vmrss(&status).ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..].split_ascii_whitespace().next()?.parse().ok()
}

/// Busy and total time of each core so far, in clock ticks (`/proc/stat`), so that a
/// window can tell how busy each core was, whoever kept it busy.
pub(crate) fn core_ticks() -> Option<Vec<(u64, u64)>> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    Some(parse_core_ticks(&text))
}

fn parse_core_ticks(stat: &str) -> Vec<(u64, u64)> {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .filter_map(|l| {
            let ticks: Vec<u64> = l.split_ascii_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal [guest guest_nice: inside user]
            let total: u64 = ticks.iter().take(8).sum();
            let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
            Some((total - idle, total))
        })
        .collect()
}

/// The 1-, 5- and 15-minute load averages, if readable.
pub(crate) fn loadavg() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_ascii_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// How many CPUs this process may run on (its affinity mask, as `taskset` sets it).
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Raises the open-file limit so that `wanted` descriptors fit: the soft limit up to
/// the hard one, and the hard one too when allowed (root). Returns the soft limit now
/// in force.
pub(crate) fn raise_nofile(wanted: u64) -> io::Result<u64> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft >= wanted {
        return Ok(soft);
    }
    if hard < wanted && rlimit::setrlimit(rlimit::Resource::NOFILE, wanted, wanted).is_ok() {
        return Ok(wanted);
    }
    let target = wanted.min(hard);
    rlimit::setrlimit(rlimit::Resource::NOFILE, target, hard)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "1234 (we ird) (name) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 3 0 100 200 300";
        let cpu = parse_stat(line, 100).unwrap();
        assert_eq!(cpu, CpuTime { user: 2.5, system: 0.75 });
        assert_eq!(cpu.total(), 3.25);
        assert_eq!(parse_stat("garbage", 100), None);
    }

    #[test]
    fn own_cpu_and_memory_are_readable() {
        let cpu = self_cpu().unwrap();
        assert!(cpu.total() >= 0.0);
        assert!(self_rss_kib().unwrap() > 0);
        assert!(pid_rss_kib(std::process::id()).unwrap() > 0);
        assert!(loadavg().is_some());
    }

    #[test]
    fn core_ticks_are_parsed() {
        let stat = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 4 1 2 50 3 0 0 0 0 0\ncpu1 6 0 8 47 0 0 1 0 0 0\nintr 1 2\n";
        assert_eq!(parse_core_ticks(stat), [(7, 60), (15, 62)]);
        assert!(!core_ticks().unwrap_or_default().is_empty());
    }

    #[test]
    fn vmrss_is_parsed() {
        assert_eq!(parse_vmrss("Name:\tx\nVmRSS:\t   12345 kB\nThreads: 1\n"), Some(12345));
        assert_eq!(parse_vmrss("Name:\tx\n"), None);
    }

    #[test]
    fn fractions() {
        let a = CpuTime { user: 1.0, system: 0.0 };
        let b = CpuTime { user: 1.5, system: 0.5 };
        assert_eq!(b.fraction_since(&a, Duration::from_secs(2)), 0.5);
        assert_eq!(b.fraction_since(&a, Duration::ZERO), 0.0);
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a && a > 0);
    }
}
