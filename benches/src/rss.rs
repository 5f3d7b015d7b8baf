//! Memory of the current process, from /proc/self/status.

/// Peak resident set size of this process in MB (`VmHWM`; 0 if unknown).
pub fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

/// Resident set size of this process now, in MB (`VmRSS`; 0 if unknown).
// Shared with the job benches, which only report the peak.
#[allow(dead_code)]
pub fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
