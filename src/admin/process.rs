//! Process metrics from `/proc`, under the standard names every Prometheus client library
//! uses, so existing dashboards and alerts work unchanged.
//!
//! | metric | kind | source |
//! | --- | --- | --- |
//! | `process_cpu_seconds_total` | counter | `utime + stime` in `/proc/self/stat`, over the clock tick |
//! | `process_open_fds` | gauge | entries of `/proc/self/fd` (the directory's own descriptor included, as client_golang counts) |
//! | `process_max_fds` | gauge | soft `Max open files` in `/proc/self/limits` (`+Inf` when unlimited) |
//! | `process_virtual_memory_bytes` | gauge | `VmSize` in `/proc/self/status` |
//! | `process_resident_memory_bytes` | gauge | `VmRSS` in `/proc/self/status` |
//! | `process_start_time_seconds` | gauge | `btime` in `/proc/stat` plus `starttime` of `/proc/self/stat` over the clock tick |
//!
//! Reading is blocking file I/O and allocates: it belongs on the admin thread, never on a
//! packet core. A source that cannot be read or parsed leaves its metrics out (a scrape
//! still answers); the parsers never panic on what the kernel wrote.
//!
//! # Non-goals
//!
//! Other operating systems (the router runs on Linux only: glommio needs io_uring), other
//! processes than this one, per-thread figures.

use std::fs;

use super::prometheus::{Exposition, Value};

/// One reading of this process's figures; `None` where the source could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors; `Some(None)` when unlimited.
    pub max_fds: Option<Option<u64>>,
    /// Virtual memory size, in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// Resident set size, in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads every source once.
    pub fn read() -> Self {
        let ticks = clock_ticks_per_second();
        let stat = fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| parse_stat(&text));
        let memory = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|text| parse_status(&text));
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_boot_time(&text));
        ProcessStats {
            cpu_seconds: stat.map(|s| s.cpu_ticks as f64 / ticks as f64),
            open_fds: fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as u64),
            max_fds: fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|text| parse_max_fds(&text)),
            virtual_memory_bytes: memory.map(|m| m.virtual_bytes),
            resident_memory_bytes: memory.map(|m| m.resident_bytes),
            start_time_seconds: match (stat, boot_time) {
                (Some(s), Some(boot)) => Some(boot as f64 + s.start_ticks as f64 / ticks as f64),
                _ => None,
            },
        }
    }

    /// Writes the figures that were read, one family each (see the module docs).
    pub fn write(&self, w: &mut Exposition<'_>) {
        if let Some(v) = self.cpu_seconds {
            w.counter(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                v,
            );
        }
        if let Some(v) = self.open_fds {
            w.gauge("process_open_fds", "Number of open file descriptors.", v);
        }
        if let Some(v) = self.max_fds {
            let v = v.map_or(Value::F64(f64::INFINITY), Value::U64);
            w.gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                v,
            );
        }
        if let Some(v) = self.virtual_memory_bytes {
            w.gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                v,
            );
        }
        if let Some(v) = self.resident_memory_bytes {
            w.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                v,
            );
        }
        if let Some(v) = self.start_time_seconds {
            w.gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                v,
            );
        }
    }
}

/// Reads this process's figures and writes them into `w`.
pub fn write_process_metrics(w: &mut Exposition<'_>) {
    ProcessStats::read().write(w);
}

/// The kernel's clock tick (`USER_HZ`), the unit of the times in `/proc/self/stat`.
/// Linux fixes it at 100 for user space on every architecture this router builds for
/// (x86-64, arm64), whatever the kernel's internal HZ; no `sysconf` (and no `unsafe`) needed.
fn clock_ticks_per_second() -> u64 {
    100
}

/// The fields of `/proc/self/stat` used here, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// `utime + stime` (fields 14 and 15).
    cpu_ticks: u64,
    /// `starttime` (field 22): ticks after boot.
    start_ticks: u64,
}

/// Parses `/proc/self/stat` (proc(5)). The second field, the command name in parentheses,
/// may hold spaces and `)`, so fields are counted after the *last* `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name.
    let mut fields = after_comm.split_ascii_whitespace();
    let mut field = |n: usize| -> Option<u64> { fields.nth(n)?.parse().ok() };
    let utime = field(14 - 3)?;
    let stime = field(0)?;
    let start_ticks = field(22 - 16)?;
    Some(Stat {
        cpu_ticks: utime.checked_add(stime)?,
        start_ticks,
    })
}

/// Memory figures of `/proc/self/status`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Memory {
    virtual_bytes: u64,
    resident_bytes: u64,
}

/// Parses `VmSize` and `VmRSS` of `/proc/self/status` (`VmRSS:\t  2096 kB`).
fn parse_status(text: &str) -> Option<Memory> {
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find_map(|l| l.strip_prefix(key))?;
        let mut words = line.split_ascii_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => n.checked_mul(1024),
            _ => None,
        }
    };
    Some(Memory {
        virtual_bytes: kib("VmSize:")?,
        resident_bytes: kib("VmRSS:")?,
    })
}

/// Parses the soft limit of `Max open files` in `/proc/self/limits`: `Some(None)` when
/// unlimited.
fn parse_max_fds(text: &str) -> Option<Option<u64>> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    match line.split_ascii_whitespace().next()? {
        "unlimited" => Some(None),
        soft => soft.parse().ok().map(Some),
    }
}

/// Parses `btime` (boot time, seconds since the epoch) of `/proc/stat`.
fn parse_boot_time(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("btime "))?;
    line.trim().parse().ok()
}

#[cfg(test)]
mod test {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    const STAT: &str = "14813 (we ird) (name)) R 14765 14765 8727 0 -1 4194304 104 0 0 0 \
                        250 130 0 0 20 0 1 0 2361713 2998272 416 18446744073709551615 0\n";

    #[test]
    fn stat_with_parentheses_in_the_name() {
        assert_eq!(
            parse_stat(STAT),
            Some(Stat {
                cpu_ticks: 380,
                start_ticks: 2_361_713
            })
        );
    }

    #[test]
    fn stat_malformed() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x) R 1 2 3"), None);
        assert_eq!(
            parse_stat("1 (x R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"),
            None
        );
        let not_digits = STAT.replace("250", "2x0");
        assert_eq!(parse_stat(&not_digits), None);
    }

    #[test]
    fn status_memory() {
        let text = "Name:\tilp-router\nVmPeak:\t 9000 kB\nVmSize:\t    3892 kB\n\
                    VmHWM:\t 3000 kB\nVmRSS:\t    2096 kB\nThreads:\t1\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                virtual_bytes: 3892 * 1024,
                resident_bytes: 2096 * 1024
            })
        );
        assert_eq!(parse_status("VmSize:\t 1 kB\n"), None);
        assert_eq!(parse_status("VmSize:\t 1 MB\nVmRSS:\t 1 kB\n"), None);
        assert_eq!(
            parse_status("VmSize:\t 99999999999999999999 kB\nVmRSS:\t 1 kB\n"),
            None
        );
    }

    #[test]
    fn limits_max_fds() {
        let head = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63704                63704                processes \n";
        let finite = format!("{head}Max open files            20000                1048576              files     \n");
        let unlimited = format!("{head}Max open files            unlimited            unlimited            files     \n");
        assert_eq!(parse_max_fds(&finite), Some(Some(20_000)));
        assert_eq!(parse_max_fds(&unlimited), Some(None));
        assert_eq!(parse_max_fds(head), None);
        assert_eq!(parse_max_fds("Max open files  lots\n"), None);
    }

    #[test]
    fn boot_time() {
        let text = "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 5\nctxt 6\nbtime 1796161707\nprocesses 7\n";
        assert_eq!(parse_boot_time(text), Some(1_796_161_707));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
        assert_eq!(parse_boot_time("btime soon\n"), None);
    }

    #[test]
    fn live_values_are_plausible() {
        let stats = ProcessStats::read();
        let rss = stats.resident_memory_bytes.expect("VmRSS");
        let vsize = stats.virtual_memory_bytes.expect("VmSize");
        assert!(rss > 0);
        assert!(vsize >= rss);
        let fds = stats.open_fds.expect("open fds");
        assert!(fds >= 3, "{fds}");
        if let Some(Some(max)) = stats.max_fds {
            assert!(max >= fds, "{max} < {fds}");
        }
        assert!(stats.max_fds.is_some());
        let cpu = stats.cpu_seconds.expect("cpu");
        assert!(cpu >= 0.0);
        assert!(cpu.is_finite());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        let start = stats.start_time_seconds.expect("start time");
        // The test binary started moments ago; allow for btime's one-second granularity.
        assert!(start <= now + 2.0, "start {start} is after now {now}");
        assert!(
            start >= now - 3600.0,
            "start {start} is over an hour before now {now}"
        );
    }

    #[test]
    fn written_families() {
        let stats = ProcessStats {
            cpu_seconds: Some(1.5),
            open_fds: Some(12),
            max_fds: Some(None),
            virtual_memory_bytes: Some(4096),
            resident_memory_bytes: Some(2048),
            start_time_seconds: Some(1_796_161_707.25),
        };
        let mut out = String::new();
        stats.write(&mut Exposition::new(&mut out));
        assert_eq!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total 1.5\n\
             # HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\n\
             process_open_fds 12\n\
             # HELP process_max_fds Maximum number of open file descriptors.\n\
             # TYPE process_max_fds gauge\n\
             process_max_fds +Inf\n\
             # HELP process_virtual_memory_bytes Virtual memory size in bytes.\n\
             # TYPE process_virtual_memory_bytes gauge\n\
             process_virtual_memory_bytes 4096\n\
             # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes 2048\n\
             # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
             # TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds 1796161707.25\n"
        );
        let mut none = String::new();
        ProcessStats::default().write(&mut Exposition::new(&mut none));
        assert_eq!(none, "");
    }
}
