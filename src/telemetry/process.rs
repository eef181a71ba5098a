//! The process's own resources, read from `/proc/self` at each scrape (the `procfs`
//! crate): CPU time, memory, file descriptors, threads and start time, under the
//! names every Prometheus client library uses (`process_*`).

/// One reading; a value `/proc` would not give is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<u64>,
}

impl Process {
    /// Reads `/proc/self`; on a system without it every value is absent.
    pub fn read() -> Process {
        let Ok(me) = procfs::process::Process::myself() else {
            return Process::default();
        };
        let mut p = Process::default();
        let ticks = procfs::ticks_per_second() as f64;
        if let Ok(s) = me.stat() {
            p.cpu_seconds = Some((s.utime + s.stime) as f64 / ticks);
            p.resident_bytes = Some(s.rss.saturating_mul(procfs::page_size()));
            p.virtual_bytes = Some(s.vsize);
            p.threads = u64::try_from(s.num_threads).ok();
            if let Ok(boot) = procfs::boot_time_secs() {
                p.start_time_seconds = Some(boot as f64 + s.starttime as f64 / ticks);
            }
        }
        p.open_fds = me.fd_count().ok().map(|n| n as u64);
        if let Ok(l) = me.limits() {
            p.max_fds = match l.max_open_files.soft_limit {
                procfs::process::LimitValue::Value(v) => Some(v),
                procfs::process::LimitValue::Unlimited => None,
            };
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let before = Process::read();
        // Burn some CPU and open a file: the reading must see both.
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = Process::read();
        assert!(after.cpu_seconds.unwrap() >= before.cpu_seconds.unwrap());
        assert!(after.open_fds.unwrap() >= 1);
        assert!(after.max_fds.unwrap() >= after.open_fds.unwrap());
        let rss = after.resident_bytes.unwrap();
        assert!(rss > 1 << 20, "{rss}");
        assert!(after.virtual_bytes.unwrap() >= rss);
        assert!(after.threads.unwrap() >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = after.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 30.0,
            "{start}"
        );
        drop(f);
    }
}
