//! Node statistics: what a worker's node has and uses. Pure parsers of /proc text (through
//! procfs's parsers, fed the text), the CPU usage between two samples, the disk of a path
//! (statvfs), the capacity an operator lets Skiff use, and a thin reader that takes a sample.
//!
//! Units are in the names (`memory_total_mb`). Nothing here sleeps: the worker samples on its own
//! timer and CPU usage is the difference between its last two samples.

use crate::time::Timestamp;
use procfs::{ExplicitSystemInfo, FromRead, FromReadSI, KernelStats, LoadAverage, Meminfo};
use serde::{Deserialize, Serialize};
use std::path::Path;

const MB: u64 = 1024 * 1024;

/// Cumulative CPU time of the whole node, in ticks, from the `cpu` line of /proc/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTicks {
    pub busy: u64,
    pub idle: u64,
    /// The number of CPUs (`cpuN` lines).
    pub count: u32,
}

/// What a sample of /proc says, before CPU usage is worked out.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcSample {
    pub cpu: CpuTicks,
    pub memory_total_mb: u64,
    pub memory_available_mb: u64,
    pub load: [f64; 3],
}

/// The resources a node offers or a set of tasks takes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Resources {
    pub cpus: f64,
    pub memory_mb: u64,
    pub disk_mb: u64,
}

/// Caps an operator puts on what a worker offers (`--max-cpus`, `--max-memory-mb`, `--max-disk-mb`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Caps {
    pub cpus: Option<f64>,
    pub memory_mb: Option<u64>,
    pub disk_mb: Option<u64>,
}

/// A worker's `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    pub node: String,
    pub sampled_at: Timestamp,
    pub cpu_count: u32,
    /// Busy share of all CPUs between the worker's last two samples, 0–100.
    pub cpu_usage_pct: f64,
    pub load_1: f64,
    pub load_5: f64,
    pub load_15: f64,
    pub memory_total_mb: u64,
    pub memory_available_mb: u64,
    /// The filesystem measured: the engine's data root.
    pub disk_path: String,
    pub disk_total_mb: u64,
    pub disk_free_mb: u64,
    /// What Skiff may place here: the smaller of the operator's caps and what the node has.
    pub capacity: Resources,
    /// Tasks on the node that are not finished.
    pub tasks: usize,
}

/// procfs needs system facts to parse /proc/stat; ticks are only compared with each other here.
const SYSTEM: ExplicitSystemInfo =
    ExplicitSystemInfo { boot_time_secs: 0, ticks_per_second: 100, page_size: 4096, is_little_endian: true };

/// Runs one of procfs's parsers on text from /proc: the kernel writes ASCII, so anything else is
/// refused before the parser sees it (the fuzz tests found procfs's meminfo parser slicing
/// inside a multi-byte character), and a panic left in the parser becomes an error.
fn guarded<T>(file: &str, text: &str, parse: impl FnOnce(&[u8]) -> Result<T, String>) -> Result<T, String> {
    if !text.is_ascii() {
        return Err(format!("{file}: not ASCII"));
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(text.as_bytes())))
        .unwrap_or_else(|_| Err(format!("{file}: unreadable")))
}

pub fn parse_cpu(stat: &str) -> Result<CpuTicks, String> {
    let k =
        guarded("/proc/stat", stat, |b| KernelStats::from_read(b, &SYSTEM).map_err(|e| format!("/proc/stat: {e}")))?;
    let t = &k.total;
    let idle = t.idle + t.iowait.unwrap_or(0);
    let busy = t.user + t.nice + t.system + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0) + t.steal.unwrap_or(0);
    Ok(CpuTicks { busy, idle, count: k.cpu_time.len().max(1) as u32 })
}

pub fn parse_meminfo(meminfo: &str) -> Result<(u64, u64), String> {
    let m = guarded("/proc/meminfo", meminfo, |b| Meminfo::from_read(b).map_err(|e| format!("/proc/meminfo: {e}")))?;
    // MemAvailable exists since Linux 3.14; before that, free is the best we have
    let available = m.mem_available.unwrap_or(m.mem_free);
    Ok((m.mem_total / MB, available / MB))
}

pub fn parse_loadavg(loadavg: &str) -> Result<[f64; 3], String> {
    let l =
        guarded("/proc/loadavg", loadavg, |b| LoadAverage::from_read(b).map_err(|e| format!("/proc/loadavg: {e}")))?;
    Ok([f64::from(l.one), f64::from(l.five), f64::from(l.fifteen)])
}

/// Busy share of the CPUs between two samples, 0–100 (0 when no time passed).
pub fn cpu_usage_pct(before: CpuTicks, after: CpuTicks) -> f64 {
    let busy = after.busy.saturating_sub(before.busy);
    let idle = after.idle.saturating_sub(before.idle);
    let total = busy + idle;
    if total == 0 {
        0.0
    } else {
        busy as f64 * 100.0 / total as f64
    }
}

/// What Skiff may use: each resource is the smaller of the cap and what the node has.
pub fn capacity(caps: Caps, cpu_count: u32, memory_total_mb: u64, disk_total_mb: u64) -> Resources {
    let cpus = f64::from(cpu_count);
    Resources {
        cpus: caps.cpus.map_or(cpus, |c| c.min(cpus)),
        memory_mb: caps.memory_mb.map_or(memory_total_mb, |m| m.min(memory_total_mb)),
        disk_mb: caps.disk_mb.map_or(disk_total_mb, |d| d.min(disk_total_mb)),
    }
}

/// Total and free (for unprivileged users, as `df` shows it) megabytes of the filesystem at `path`.
pub fn disk(path: &Path) -> Result<(u64, u64), String> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| "path has a NUL byte".to_string())?;
    // SAFETY: statvfs is plain data; the path is a valid NUL-terminated string; the out pointer is
    // to a local that lives through the call.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut st) != 0 {
            return Err(format!("statvfs {}: {}", path.display(), std::io::Error::last_os_error()));
        }
        st
    };
    let frsize = st.f_frsize as u64;
    Ok(((st.f_blocks as u64).saturating_mul(frsize) / MB, (st.f_bavail as u64).saturating_mul(frsize) / MB))
}

/// Reads /proc once.
pub fn read_proc() -> Result<ProcSample, String> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let cpu = parse_cpu(&read("/proc/stat")?)?;
    let (memory_total_mb, memory_available_mb) = parse_meminfo(&read("/proc/meminfo")?)?;
    let load = parse_loadavg(&read("/proc/loadavg")?)?;
    Ok(ProcSample { cpu, memory_total_mb, memory_available_mb, load })
}

#[cfg(test)]
mod tests {
    use super::*;

    // captured from a real node (2 CPUs, Linux 6.x)
    const STAT: &str = include_str!("../tests/fixtures/proc/stat");
    const MEMINFO: &str = include_str!("../tests/fixtures/proc/meminfo");
    const LOADAVG: &str = include_str!("../tests/fixtures/proc/loadavg");

    /// The value of a field of the fixtures, by hand.
    fn field(text: &str, line_start: &str, index: usize) -> u64 {
        let line = text.lines().find(|l| l.starts_with(line_start)).expect("line");
        line.split_whitespace().nth(index).expect("field").parse().expect("number")
    }

    #[test]
    fn parses_cpu_ticks() {
        let t = parse_cpu(STAT).expect("parses");
        assert_eq!(t.count, 2);
        // cpu user nice system idle iowait irq softirq steal
        let f = |i| field(STAT, "cpu ", i);
        assert_eq!(t.busy, f(1) + f(2) + f(3) + f(6) + f(7) + f(8));
        assert_eq!(t.idle, f(4) + f(5));
    }

    #[test]
    fn cpu_usage_is_the_busy_share_between_samples() {
        let a = CpuTicks { busy: 100, idle: 900, count: 2 };
        let b = CpuTicks { busy: 150, idle: 1050, count: 2 };
        assert_eq!(cpu_usage_pct(a, b), 25.0);
        assert_eq!(cpu_usage_pct(a, a), 0.0);
        // counters never go back; if they seem to, no negative usage
        assert_eq!(cpu_usage_pct(b, a), 0.0);
    }

    #[test]
    fn parses_memory_in_megabytes() {
        let total = field(MEMINFO, "MemTotal:", 1) / 1024;
        let available = field(MEMINFO, "MemAvailable:", 1) / 1024;
        assert_eq!(parse_meminfo(MEMINFO).expect("parses"), (total, available));
        let old_kernel: String =
            MEMINFO.lines().filter(|l| !l.starts_with("MemAvailable:")).map(|l| format!("{l}\n")).collect();
        assert_eq!(parse_meminfo(&old_kernel).expect("parses").1, field(MEMINFO, "MemFree:", 1) / 1024);
    }

    #[test]
    fn parses_load_averages() {
        let load = parse_loadavg(LOADAVG).expect("parses");
        let expected: Vec<f64> =
            LOADAVG.split_whitespace().take(3).map(|v| f64::from(v.parse::<f32>().expect("number"))).collect();
        assert_eq!(load.to_vec(), expected);
    }

    #[test]
    fn refuses_garbage() {
        // found by the fuzz tests: procfs sliced inside a multi-byte character
        assert!(parse_meminfo("HugePages_Total:\u{fffd}").is_err());
        assert!(parse_cpu("nothing here").is_err());
        assert!(parse_meminfo("MemTotal: lots").is_err());
        assert!(parse_loadavg("").is_err());
    }

    #[test]
    fn capacity_is_the_smaller_of_cap_and_node() {
        let none = Caps::default();
        assert_eq!(capacity(none, 2, 1000, 5000), Resources { cpus: 2.0, memory_mb: 1000, disk_mb: 5000 });
        let caps = Caps { cpus: Some(0.5), memory_mb: Some(512), disk_mb: Some(10_000) };
        assert_eq!(capacity(caps, 2, 1000, 5000), Resources { cpus: 0.5, memory_mb: 512, disk_mb: 5000 });
    }

    #[test]
    fn measures_a_real_disk() {
        let (total, free) = disk(Path::new("/")).expect("statvfs /");
        assert!(total > 0 && free <= total);
        assert!(disk(Path::new("/no/such/dir")).is_err());
    }
}
