//! Human-readable sizes and durations for progress lines.

use std::time::Duration;

/// Decimal units, like the sizes quoted in MODELS.md ("850 MB").
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// "68.2 MB/s" (or "-" for an instant).
pub fn rate(n: u64, d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        return "-".into();
    }
    format!("{}/s", bytes((n as f64 / s) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(98_362_432), "98.4 MB");
        assert_eq!(bytes(933_744_000), "933.7 MB");
        assert_eq!(bytes(1_250_000_000), "1.2 GB");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(secs(Duration::from_millis(1234)), "1.2 s");
        assert_eq!(secs(Duration::from_secs(754)), "12m34s");
        assert_eq!(rate(2_000_000, Duration::from_secs(2)), "1.0 MB/s");
    }
}
