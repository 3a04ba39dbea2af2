//! `strftime_now(format)`: the current date and time formatted like Python's
//! `datetime.now().strftime(format)` (glibc's directives), in UTC.
//!
//! Templates use it to put today's date in the system prompt (Llama 3.x: `"%d %b %Y"`). The
//! common directives are implemented; an unknown one is written as is, as glibc does. The
//! `-` flag (`%-d`) drops the zero padding.

const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A UTC date and time broken into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Monday.
    weekday: u32,
    /// 1..=366
    yday: u32,
}

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

impl DateTime {
    fn from_unix(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let leap = u32::from(month > 2 && is_leap(year));
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 3).rem_euclid(7) as u32,
            yday: CUMULATIVE[(month - 1) as usize] + day + leap,
        }
    }
}

/// Formats the time `unix_secs` (seconds since the epoch, UTC) like Python's `strftime`.
pub fn strftime(format: &str, unix_secs: i64) -> String {
    let t = DateTime::from_unix(unix_secs);
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let unpadded = chars.peek() == Some(&'-');
        if unpadded {
            chars.next();
        }
        let num = |v: u32, width: usize| if unpadded { v.to_string() } else { format!("{v:0width$}") };
        let Some(d) = chars.next() else {
            out.push('%');
            if unpadded {
                out.push('-');
            }
            break;
        };
        let hour12 = match t.hour % 12 {
            0 => 12,
            h => h,
        };
        let text = match d {
            'Y' => t.year.to_string(),
            'y' => num(t.year.rem_euclid(100) as u32, 2),
            'C' => num(t.year.div_euclid(100) as u32, 2),
            'm' => num(t.month, 2),
            'd' => num(t.day, 2),
            'e' => {
                if unpadded {
                    t.day.to_string()
                } else {
                    format!("{:2}", t.day)
                }
            }
            'j' => num(t.yday, 3),
            'H' => num(t.hour, 2),
            'I' => num(hour12, 2),
            'M' => num(t.minute, 2),
            'S' => num(t.second, 2),
            'p' => if t.hour < 12 { "AM" } else { "PM" }.to_owned(),
            'a' => DAYS[t.weekday as usize][..3].to_owned(),
            'A' => DAYS[t.weekday as usize].to_owned(),
            'b' | 'h' => MONTHS[(t.month - 1) as usize][..3].to_owned(),
            'B' => MONTHS[(t.month - 1) as usize].to_owned(),
            'u' => (t.weekday + 1).to_string(),
            'w' => ((t.weekday + 1) % 7).to_string(),
            'F' => format!("{}-{:02}-{:02}", t.year, t.month, t.day),
            'D' => format!("{:02}/{:02}/{:02}", t.month, t.day, t.year.rem_euclid(100)),
            'T' => format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
            'R' => format!("{:02}:{:02}", t.hour, t.minute),
            'Z' => "UTC".to_owned(),
            'z' => "+0000".to_owned(),
            'n' => "\n".to_owned(),
            't' => "\t".to_owned(),
            '%' => "%".to_owned(),
            other => format!("%{}{other}", if unpadded { "-" } else { "" }),
        };
        out.push_str(&text);
    }
    out
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_glibc() {
        // 2026-11-30 08:05:09 UTC, a Monday.
        let t = 1_796_025_909;
        assert_eq!(strftime("%d %b %Y", t), "30 Nov 2026");
        assert_eq!(strftime("%A %B %-d, %Y %H:%M:%S %I%p %j %y", t), "Monday November 30, 2026 08:05:09 08AM 334 26");
        assert_eq!(strftime("%F %% %q", t), "2026-11-30 % %q");
        assert_eq!(strftime("%d %b %Y", 0), "01 Jan 1970");
        // 2024-02-29 (leap day) 23:59:59.
        assert_eq!(strftime("%F %T %a %j", 1_709_251_199), "2024-02-29 23:59:59 Thu 060");
        assert_eq!(strftime("%Y-%m-%d", 951_782_400), "2000-02-29");
    }
}
