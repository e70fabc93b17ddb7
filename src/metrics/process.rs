//! The standard `process_*` series (the names every Prometheus client library uses): resident
//! and virtual memory, CPU seconds, open and allowed file descriptors, threads, start time. Read
//! from `/proc/self` at each scrape; the parsers are pure and tested on fixed text.
//!
//! A figure that cannot be read is left out of the page, never guessed.

use super::{Kind, Page};

/// What `/proc/self/stat` says, in its own units (clock ticks, pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfStat {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    pub threads: u64,
    /// Since boot.
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses and may hold spaces
/// and parentheses itself, so the fields are counted from the last `)`.
pub fn parse_self_stat(text: &str) -> Option<SelfStat> {
    let (_, rest) = text.rsplit_once(')')?;
    // field 3 (the state) is the first after the name
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(SelfStat {
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
        vsize_bytes: field(23)?,
        rss_pages: field(24)?,
    })
}

/// The boot time, in seconds since the epoch, from `/proc/stat`'s `btime` line.
pub fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The process's figures, in base units.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Figures {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    threads: f64,
    start_time_seconds: Option<f64>,
}

fn figures(stat: &SelfStat, boot_time: Option<u64>, ticks_per_second: u64, page_size: u64) -> Figures {
    let tps = ticks_per_second.max(1) as f64;
    Figures {
        cpu_seconds: (stat.utime_ticks + stat.stime_ticks) as f64 / tps,
        resident_bytes: (stat.rss_pages * page_size) as f64,
        virtual_bytes: stat.vsize_bytes as f64,
        threads: stat.threads as f64,
        start_time_seconds: boot_time.map(|b| b as f64 + stat.start_ticks as f64 / tps),
    }
}

/// A `sysconf` value, or the usual Linux one when it cannot be read.
fn sysconf(name: libc::c_int, usual: u64) -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0).unwrap_or(usual)
}

/// The soft limit on open files.
fn max_fds() -> Option<u64> {
    // SAFETY: getrlimit with a valid pointer to a local rlimit.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        (libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0).then_some(lim.rlim_cur)
    }
}

/// Writes every `process_*` family this process can read.
pub fn write(page: &mut Page) {
    let stat = std::fs::read_to_string("/proc/self/stat").ok().and_then(|t| parse_self_stat(&t));
    if let Some(stat) = stat {
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|t| parse_boot_time(&t));
        let f = figures(&stat, boot, sysconf(libc::_SC_CLK_TCK, 100), sysconf(libc::_SC_PAGESIZE, 4096));
        page.single("process_cpu_seconds_total", Kind::Counter, "User and system CPU time spent.", f.cpu_seconds);
        page.single("process_resident_memory_bytes", Kind::Gauge, "Resident memory size.", f.resident_bytes);
        page.single("process_virtual_memory_bytes", Kind::Gauge, "Virtual memory size.", f.virtual_bytes);
        page.single("process_threads", Kind::Gauge, "Threads of the process.", f.threads);
        if let Some(start) = f.start_time_seconds {
            page.single("process_start_time_seconds", Kind::Gauge, "Start time since the Unix epoch.", start);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // the directory's own descriptor, open while it is read, is not one of the process's
        let open = dir.count().saturating_sub(1);
        page.single("process_open_fds", Kind::Gauge, "Open file descriptors.", open as f64);
    }
    if let Some(max) = max_fds() {
        page.single("process_max_fds", Kind::Gauge, "The limit on open file descriptors.", max as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // a command name with a space and a parenthesis, as a thread may be named
    const STAT: &str = "4242 (skiff (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 7 0 \
                        123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn self_stat_fields_are_counted_from_the_last_parenthesis() {
        let s = parse_self_stat(STAT).expect("parses");
        assert_eq!(
            s,
            SelfStat {
                utime_ticks: 250,
                stime_ticks: 50,
                threads: 7,
                start_ticks: 123456,
                vsize_bytes: 104_857_600,
                rss_pages: 2560
            }
        );
        assert_eq!(parse_self_stat("4242 (cut short) S 1 2"), None);
        assert_eq!(parse_self_stat(""), None);
    }

    #[test]
    fn figures_are_in_base_units() {
        let s = parse_self_stat(STAT).expect("parses");
        let boot = parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n");
        assert_eq!(boot, Some(1_700_000_000));
        let f = figures(&s, boot, 100, 4096);
        assert_eq!(f.cpu_seconds, 3.0);
        assert_eq!(f.resident_bytes, 2560.0 * 4096.0);
        assert!(f.start_time_seconds.is_some_and(|t| (t - 1_700_001_234.56).abs() < 1e-3), "{f:?}");
        assert_eq!(f.threads, 7.0);
    }

    #[test]
    fn this_process_has_its_series() {
        let mut page = Page::new();
        write(&mut page);
        let text = page.into_string();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(&format!("\n{name}")), "{name} in:\n{text}");
        }
    }
}
